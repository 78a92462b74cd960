"""Rebuilding a map from the spec it records: identical arrays for every builder, clear refusals otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import (
    Architecture,
    ConvGeometry,
    HashSpec,
    IndexMap,
    RNNGeometry,
    SpecError,
    build_map,
    build_model_map,
    cluster_weights,
    conv_map,
    rnn_map,
)
from hashlab.maps.regenerate import REGENERATORS, regenerable, regenerate_map, regenerated_shapes
from tests.hashlab.maps.test_hashes import archs, specs


def assert_same_arrays(a: IndexMap, b: IndexMap) -> None:
    assert a.table_sizes == b.table_sizes and len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert la.table == lb.table
        for what in ("indices", "sign", "bias_indices", "bias_sign"):
            x, y = getattr(la, what), getattr(lb, what)
            assert (x is None) == (y is None), what
            if x is not None:
                assert x.dtype == y.dtype, what
                np.testing.assert_array_equal(x, y)


@settings(max_examples=60)
@given(specs(), archs, st.sampled_from([None, "1/64", "3/7"]), st.booleans(), st.sampled_from(["numba", "numpy"]))
def test_a_build_map_spec_rebuilds_its_map(spec, arch, ratio, hash_bias, backend):
    if ratio is not None and spec.kind != "identity":
        spec = dataclasses.replace(spec, table_size=None, compression=ratio)
    spec = dataclasses.replace(spec, hash_bias=hash_bias)
    imap = build_map(spec, arch)
    assert regenerable(imap.spec)
    assert regenerated_shapes(imap.spec) == arch.layer_shapes
    assert_same_arrays(regenerate_map(imap.spec, backend=backend), imap)


GEOMETRIES = [
    ("conv1d", ConvGeometry(2, 4, (9,), 3, stride=2, padding=1)),
    ("conv2d-groups", ConvGeometry(4, 6, (7, 6), (3, 2), dilation=(2, 1), groups=2, bias=False)),
    ("conv3d", ConvGeometry(1, 2, (4, 4, 3), 2)),
]


@pytest.mark.parametrize("geometry", [g for _, g in GEOMETRIES], ids=[n for n, _ in GEOMETRIES])
def test_a_conv_spec_rebuilds_its_map(geometry):
    imap = conv_map(geometry, name="features.0")
    assert regenerated_shapes(imap.spec) == [(imap.layers[0].out_features, imap.layers[0].in_features)]
    assert_same_arrays(regenerate_map(imap.spec), imap)


@pytest.mark.parametrize("bias", [True, False])
def test_an_rnn_spec_rebuilds_its_map(bias):
    imap = rnn_map(RNNGeometry(input_size=3, hidden_size=5, steps=4, bias=bias))
    assert regenerated_shapes(imap.spec) == [(5, 8)] * 4
    assert_same_arrays(regenerate_map(imap.spec), imap)


def test_shapes_come_without_building():
    # 3 x 10**9 weights: building would take minutes and gigabytes; the shapes are instant
    spec = build_map(HashSpec(kind="uniform", table_size=7), Architecture((2, 3))).spec
    huge = spec | {"architecture": [100_000, 30_000, 10]}
    assert regenerated_shapes(huge) == [(30_000, 100_000), (10, 30_000)]


def _clustered() -> IndexMap:
    return cluster_weights([np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)], 3, iters=2)


NOT_REBUILDABLE = [
    ("cluster", lambda: _clustered().spec, "cannot be rebuilt from their spec"),
    ("composed", lambda: {"builder": "golden", "parts": []}, "builder 'golden' cannot be rebuilt"),
    ("no-builder", lambda: {"kind": "uniform"}, "builder None cannot be rebuilt"),
    ("not-a-dict", lambda: ["hashlab.build_map"], "builder None cannot be rebuilt"),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in NOT_REBUILDABLE], ids=[c[0] for c in NOT_REBUILDABLE])
def test_specs_of_other_builders_are_refused_with_the_fix(make, match):
    spec = make()
    assert not regenerable(spec)
    for fn in (regenerate_map, regenerated_shapes):
        with pytest.raises(SpecError, match=match) as e:
            fn(spec)
        assert "packed" in str(e.value) and "hashlab.build_map" in str(e.value)


def _spec(**changes):
    return build_map(HashSpec(kind="uniform", table_size=7), Architecture((2, 3))).spec | changes


INVALID = [
    ("no-architecture", lambda: {k: v for k, v in _spec().items() if k != "architecture"}, "needs 'architecture'"),
    ("bad-architecture", lambda: _spec(architecture=[2, "3"]), "needs 'architecture'"),
    ("bad-kind", lambda: _spec(kind="md5"), "unknown hash kind 'md5'"),
    ("newer-spec", lambda: _spec(version=2), "version 2 is not supported"),
    ("unknown-field", lambda: _spec(colour="red"), None),  # informative keys are ignored, like the format's check
    ("bad-name", lambda: _spec(architecture_name=3), "architecture_name must be a string"),
    ("conv-op", lambda: conv_map(GEOMETRIES[0][1]).spec | {"builder": "conv2d"}, "describes a conv1d geometry"),
    ("conv-field", lambda: conv_map(GEOMETRIES[0][1]).spec | {"groups": 0}, "groups"),
    ("rnn-field", lambda: rnn_map(RNNGeometry(2, 3, 2)).spec | {"steps": "2"}, "steps"),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_specs_are_refused_as_spec_errors(make, match):
    spec = make()
    if match is None:
        regenerate_map(spec)
        return
    with pytest.raises(SpecError, match=match):
        regenerated_shapes(spec)
    with pytest.raises(SpecError, match=match):
        regenerate_map(spec)


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        regenerate_map(_spec(), backend="cuda")


def test_the_registry_names_every_builder_that_records_a_spec():
    built = {
        build_map(HashSpec(), Architecture((2, 3))).spec["builder"],
        build_model_map(HashSpec(), [(2, 3)]).spec["builder"],
        *(conv_map(g).spec["builder"] for _, g in GEOMETRIES),
        rnn_map(RNNGeometry(2, 3, 2)).spec["builder"],
    }
    assert built == set(REGENERATORS)
