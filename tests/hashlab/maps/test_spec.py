"""HashSpec / Architecture validation: every bad input names the problem and the fix."""

from __future__ import annotations

import dataclasses

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


def test_to_dict_writes_the_schema_version_last():
    d = HashSpec(kind="modulus", table_size=7).to_dict()
    assert list(d)[-1] == "version" and d["version"] == HashSpec.SCHEMA_VERSION == 1
    assert "version" not in {f.name for f in dataclasses.fields(HashSpec)}  # a property of the dict, not the spec


def test_dict_from_before_the_added_fields_still_loads():
    """A version-1 dict written before compression, hash_bias and block_size existed is the spec without them."""
    old = {
        "kind": "uniform",
        "table_size": 50,
        "seed": 3,
        "sparsity": 0.5,
        "scope": "layer",
        "alpha": None,
        "radius": None,
        "sign": True,
        "version": 1,
    }
    spec = HashSpec.from_dict(old)
    assert spec == HashSpec(kind="uniform", table_size=50, seed=3, sparsity=0.5, sign=True)
    assert (spec.compression, spec.hash_bias, spec.block_size) == (None, False, None)
    assert spec.to_dict() == old  # and it writes the same dict back
    assert set(HashSpec.ADDED_FIELDS) == {"compression", "hash_bias", "block_size"}
    assert HashSpec.from_dict({k: v for k, v in old.items() if k != "version"}) == spec  # hand-written: version 1


@pytest.mark.parametrize(
    "version,match",
    [
        (
            2,
            "HashSpec dict version 2 is not supported; this hashlab reads version 1; the dict was written by a "
            "newer hashlab: upgrade hashlab",
        ),
        (0, "HashSpec dict version 0 is not supported.*the only one"),
        ("1", "HashSpec dict version '1' is not supported"),
        (True, "HashSpec dict version True is not supported"),
    ],
)
def test_from_dict_refuses_an_unknown_version(version, match):
    d = {**HashSpec().to_dict(), "version": version}
    with pytest.raises(SpecError, match=match):
        HashSpec.from_dict(d)
    with pytest.raises(SpecError, match="version 2"):  # checked before the fields a newer version may have
        HashSpec.from_dict({**d, "version": 2, "new_field": 1})


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
