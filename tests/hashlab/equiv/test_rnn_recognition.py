"""Recognising unrolled RNNs (tied steps = global modulus hash) across layers, with witnesses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import Architecture, HashSpec, IndexMap, build_map
from hashlab.equiv import recognize_rnn
from hashlab.maps.rnn import RNNGeometry, rnn_map

rnn_geometries = st.builds(RNNGeometry, st.integers(0, 6), st.integers(1, 6), st.integers(2, 6), st.booleans())


def relabeled(imap: IndexMap, seed: int) -> IndexMap:
    perm = np.random.default_rng(seed).permutation(imap.table_sizes[0])

    def apply(a):
        return None if a is None else np.where(a >= 0, perm[np.maximum(a, 0)], -1).astype(a.dtype)

    layers = [
        dataclasses.replace(lay, indices=apply(np.asarray(lay.indices)), bias_indices=apply(lay.bias_indices))
        for lay in imap.layers
    ]
    return dataclasses.replace(imap, layers=tuple(layers))


@settings(max_examples=40)
@given(rnn_geometries, st.integers(0, 2**32 - 1))
def test_rnn_maps_are_recognised_up_to_relabeling(g, seed):
    for imap in (rnn_map(g), relabeled(rnn_map(g), seed)):
        v = recognize_rnn(imap)
        assert v.is_rnn and v.witness is None and len(v.groups) == 1
        (grp,) = v.groups
        assert grp.geometry == g and grp.start == 0 and grp.modulus
        assert grp.layers == tuple(f"rnn.t{t}" for t in range(g.steps))


@settings(max_examples=40)
@given(rnn_geometries, st.integers(0, 2**32 - 1))
def test_an_untied_weight_splits_the_run_and_is_named(g, seed):
    imap = rnn_map(g)
    t = 1 + seed % (g.steps - 1)
    r, c = divmod(seed % g.step_weights, g.input_size + g.hidden_size)
    idx = np.array(imap.layers[t].indices)
    idx[r, c] = (idx[r, c] + 1) % g.step_weights if g.step_weights > 1 else -1
    layers = list(imap.layers)
    layers[t] = dataclasses.replace(layers[t], indices=idx)
    v = recognize_rnn(dataclasses.replace(imap, layers=tuple(layers)))
    runs = [(grp.start, grp.geometry.steps) for grp in v.groups]
    want = [(s, n) for s, n in ((0, t), (t + 1, g.steps - t - 1)) if n >= 2]
    assert runs == want
    if not want:
        w = v.witness
        assert w.kind == "should_share" and [(x.row, x.col) for x in w.weights] == [(r, c), (r, c)]
        assert w.weights[0].entry != w.weights[1].entry


def test_sign_and_bias_must_be_tied_too():
    g = RNNGeometry(2, 3, 2)
    imap = rnn_map(g)
    sign = np.ones(g.step_shape, dtype=np.int8)
    flipped = sign.copy()
    flipped[1, 2] = -1
    layers = (dataclasses.replace(imap.layers[0], sign=sign), dataclasses.replace(imap.layers[1], sign=flipped))
    w = recognize_rnn(dataclasses.replace(imap, layers=layers)).witness
    assert w.kind == "not_tied" and (w.weights[0].row, w.weights[0].col) == (1, 2)
    b = np.array(imap.layers[1].bias_indices)
    b[0] = b[1]
    layers = (imap.layers[0], dataclasses.replace(imap.layers[1], bias_indices=b))
    w = recognize_rnn(dataclasses.replace(imap, layers=layers)).witness
    assert w.kind == "not_tied" and w.weights[0].col is None and "share one bias" in w.reason


@pytest.mark.parametrize(
    "arch, kind, scope, want",
    [
        ((64, 32, 10), "neighborhood", "layer", "shape"),
        ((64, 32, 32, 32, 10), "uniform", "global", "should_share"),  # fc1, fc2: one shape, one table, not tied
        ((8, 8, 8), "uniform", "layer", "table"),  # one table per layer
        ((16, 32, 32), "uniform", "global", "shape"),  # 32x16 has more rows than columns
    ],
    ids=["neighborhood", "mlp-same-shape", "per-layer-tables", "too-many-rows"],
)
def test_mlp_maps_are_not_rnns_and_say_why(arch, kind, scope, want):
    params = {"radius": 2} if kind == "neighborhood" else {}
    imap = build_map(HashSpec(kind=kind, table_size=50, scope=scope, **params), Architecture(arch))
    v = recognize_rnn(imap)
    assert not v.is_rnn and v.witness.kind == want


def test_global_modulus_over_equal_layers_is_an_autonomous_rnn():
    """build_map(modulus, n = 32*32, global) ties the two 32x32 layers: an RNN with no input."""
    imap = build_map(HashSpec(kind="modulus", table_size=1024, scope="global"), Architecture((64, 32, 32, 32)))
    v = recognize_rnn(imap)
    (grp,) = v.groups
    assert grp.layers == ("fc1", "fc2") and grp.geometry == RNNGeometry(0, 32, 2, bias=False) and grp.modulus
    other = build_map(HashSpec(kind="modulus", table_size=1000, scope="global"), Architecture((64, 32, 32, 32)))
    assert not recognize_rnn(other).is_rnn  # n = 1000 shifts fc2 against fc1 by 1024 mod 1000


def test_single_layer_map_is_not_an_rnn():
    v = recognize_rnn(rnn_map(RNNGeometry(3, 4, 1)))
    assert not v.is_rnn and v.witness.kind == "shape" and "one layer" in v.witness.reason
