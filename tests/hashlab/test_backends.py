"""One dispatch function picks a backend's kernel set, for the map generators and the analyses alike."""

from __future__ import annotations

import pytest

from hashlab import ARCHITECTURES, HashSpec, build_map
from hashlab.backends import BACKENDS, select
from hashlab.maps import kernels as MK
from hashlab.stats import kernels as SK


@pytest.mark.parametrize("module", [MK, SK], ids=["maps", "stats"])
def test_each_stage_has_one_named_set_per_backend(module):
    sets = [module.kernels(b) for b in BACKENDS]
    assert [type(s) for s in sets] == [type(sets[0])] * len(BACKENDS)
    assert all(callable(k) for s in sets for k in s)
    assert sets[0] is not sets[1] and sets[0]._fields == sets[1]._fields


@pytest.mark.parametrize("backend", ["cuda", "", None, 0, "NUMBA"])
def test_an_unknown_backend_is_refused_with_the_choices(backend):
    with pytest.raises(ValueError, match=r"unknown backend .*; choose one of \('numba', 'numpy'\)"):
        select({"numba": 1, "numpy": 2}, backend)
    with pytest.raises(ValueError, match="unknown backend"):
        SK.kernels(backend)


def test_build_map_refuses_an_unknown_backend_before_any_work():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        build_map(HashSpec(kind="dirichlet", alpha=1.0), ARCHITECTURES["cifar10-mlp"], backend="gpu")
