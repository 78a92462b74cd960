"""HashSpec / Architecture validation: every bad input names the problem and the fix."""
from __future__ import annotations

import pytest
from hypothesis import given

from hashlab import ARCHITECTURES, Architecture, HashSpec, SpecError
from tests.hashlab.maps.test_hashes import specs

BAD_SPECS = [
    ({"kind": "md5"}, "unknown hash kind"),
    ({"scope": "net"}, "unknown table scope"),
    ({"table_size": 0}, "table_size"),
    ({"table_size": 2.5}, "table_size"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": -0.1}, "sparsity"),
    ({"kind": "dirichlet"}, "alpha > 0"),
    ({"kind": "dirichlet", "alpha": 0.0}, "alpha > 0"),
    ({"kind": "dirichlet", "alpha": float("inf")}, "alpha > 0"),
    ({"kind": "uniform", "alpha": 1.0}, "only used by the dirichlet"),
    ({"kind": "neighborhood"}, "radius"),
    ({"kind": "neighborhood", "radius": -1}, "radius"),
    ({"kind": "modulus", "radius": 3}, "only used by the neighborhood"),
    ({"sign": 1}, "sign"),
    ({"version": 2}, "version 2"),
]


@pytest.mark.parametrize("kwargs,match", BAD_SPECS, ids=[m + "-" + str(k) for k, m in BAD_SPECS])
def test_bad_specs_raise_clear_errors(kwargs, match):
    with pytest.raises(SpecError, match=match):
        HashSpec(**kwargs)


@given(specs())
def test_spec_dict_round_trip(spec):
    assert HashSpec.from_dict(spec.to_dict()) == spec


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(SpecError, match="unknown HashSpec field"):
        HashSpec.from_dict({"kind": "uniform", "colour": "red"})


def test_architecture_parse_presets_and_sizes():
    assert Architecture.parse("mnist-mlp").features == (784, 200, 200, 10)
    assert ARCHITECTURES["cifar10-mlp"].num_weights == 3072 * 2000 + 4 * 2000 * 2000 + 2000 * 10  # 22.16M
    assert Architecture.parse("5-3-2").layer_shapes == [(3, 5), (2, 3)]
    with pytest.raises(SpecError, match="784-200-200-10"):
        Architecture.parse("mnist")
    with pytest.raises(SpecError, match="at least 2"):
        Architecture((5,))
    with pytest.raises(SpecError, match="feature size"):
        Architecture((5, 0))
