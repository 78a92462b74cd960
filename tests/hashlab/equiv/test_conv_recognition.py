"""Structural recognition of convolutions: recovered geometry, relabeling invariance, truthful witnesses."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hashlab import Architecture, HashSpec, LayerMap, build_map, index_dtype
from hashlab.equiv import recognize_conv, same_sharing, sharing_graph
from hashlab.equiv.conv_recognition import LayerFacts, is_recognizable
from hashlab.equiv.witness import Witness
from hashlab.maps.conv import ConvGeometry, conv_map, conv_taps
from tests.hashlab.maps.test_conv import conv_geometries


def relabel(layer: LayerMap, perm: np.ndarray) -> LayerMap:
    """The same layer with table entry e renamed perm[e] (a permutation of the table)."""

    def apply(a):
        return None if a is None else np.where(a >= 0, perm[np.maximum(a, 0)], -1).astype(a.dtype)

    return dataclasses.replace(layer, indices=apply(np.asarray(layer.indices)), bias_indices=apply(layer.bias_indices))


def tamper(indices: np.ndarray, seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Change the sharing structure at one live weight: make it read another weight's entry, or drop it."""
    idx = np.array(indices)
    flat = idx.reshape(-1)
    live = np.flatnonzero(flat >= 0)
    p = int(live[seed % live.size])
    others = np.unique(flat[live][flat[live] != flat[p]])
    flat[p] = others[seed % others.size] if others.size else -1
    return idx, divmod(p, idx.shape[1])


def assert_witness_true(layer: LayerMap, w: Witness) -> None:
    """Every weight the witness names reads what it says, and its claim holds in the map."""
    idx = np.asarray(layer.indices)
    for ref in w.weights:
        got = layer.bias_indices[ref.row] if ref.col is None else idx[ref.row, ref.col]
        assert got == ref.entry, (ref, got)
    a = w.weights
    taps = conv_taps(w.geometry) if w.geometry is not None else None
    pos = lambda ref: (ref.row, ref.col)  # noqa: E731
    if w.kind in ("repeat_in_row", "repeat_in_column"):
        assert a[0].entry == a[1].entry >= 0 and pos(a[0]) != pos(a[1])
        assert (a[0].row == a[1].row) if w.kind == "repeat_in_row" else (a[0].col == a[1].col)
    elif w.kind == "should_not_share":
        assert a[0].entry == a[1].entry >= 0 and pos(a[0]) != pos(a[1])
        if taps is not None:
            assert taps[pos(a[0])] != taps[pos(a[1])]
    elif w.kind == "should_share":
        assert a[0].entry != a[1].entry and a[0].entry >= 0
        assert taps[pos(a[0])] == taps[pos(a[1])] >= 0
    elif w.kind == "should_be_zero":
        assert a[0].entry >= 0 and taps[pos(a[0])] == -1
    elif w.kind == "should_be_nonzero":
        assert a[0].entry == -1 and taps[pos(a[0])] >= 0
    elif w.kind == "sign":
        assert a[0].entry == a[1].entry and layer.sign[pos(a[0])] != layer.sign[pos(a[1])]
    else:
        assert w.kind in ("stride", "padding", "output_size", "bias", "empty"), w.kind


@settings(max_examples=60)
@given(conv_geometries())
def test_conv_maps_are_recognised_from_the_index_array_alone(g):
    lay = conv_map(g).layers[0]
    v = recognize_conv(lay, use_attrs=False)
    if is_recognizable(g):
        assert v.is_conv, v.witness
    if v.is_conv:  # sound whatever the geometry: the recovered geometry rebuilds this very map
        assert same_sharing(conv_map(v.geometry).layers[0].indices, lay.indices)
        assert v.geometry.bias == g.bias and v.source in ("search", "dense")
    else:
        assert_witness_true(lay, v.witness)


@settings(max_examples=60)
@given(conv_geometries())
def test_given_the_grid_the_exact_geometry_is_recovered(g):
    v = recognize_conv(
        conv_map(g).layers[0],
        use_attrs=False,
        in_shape=(g.in_channels, *g.in_size),
        out_shape=(g.out_channels, *g.out_size),
    )
    if is_recognizable(g):
        assert v.is_conv and v.source == "hint" and v.geometry == g.canonical()


@settings(max_examples=30)
@given(conv_geometries())
def test_attrs_geometry_is_verified_and_returned(g):
    v = recognize_conv(conv_map(g).layers[0])
    assert v.is_conv and v.source == "attrs" and v.geometry == g and v.candidates == 1


@pytest.mark.parametrize(
    "g",
    [
        ConvGeometry(3, 16, (12, 12), 5, stride=2, padding=2),
        ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2),
        ConvGeometry(2, 4, (9, 7), (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
        ConvGeometry(3, 6, (17,), 4, stride=3, padding=2, dilation=2, groups=3, bias=False),
        ConvGeometry(2, 3, (6, 6), 1),
    ],
    ids=["lenet-like", "grouped-dilated", "anisotropic", "conv1d", "1x1"],
)
def test_typical_geometries_are_found_by_search_exactly(g):
    v = recognize_conv(conv_map(g).layers[0], use_attrs=False)
    assert v.is_conv and v.source == "search" and v.geometry == g.canonical()


@settings(max_examples=40)
@given(conv_geometries(max_size=7), st.integers(0, 2**32 - 1), st.booleans())
def test_relabeling_the_table_changes_nothing(g, seed, tampered):
    lay = conv_map(g).layers[0]
    if tampered:  # also for maps that are not convolutions: same verdict, same witness positions
        assume(np.any(lay.indices >= 0))
        lay = dataclasses.replace(lay, indices=tamper(lay.indices, seed)[0])
    perm = np.random.default_rng(seed).permutation(g.table_size)
    for use_attrs in (True, False):
        a, b = recognize_conv(lay, use_attrs=use_attrs), recognize_conv(relabel(lay, perm), use_attrs=use_attrs)
        assert (a.is_conv, a.geometry, a.source, a.candidates) == (b.is_conv, b.geometry, b.source, b.candidates)
        if not a.is_conv:
            assert a.witness.kind == b.witness.kind and a.witness.candidate == b.witness.candidate
            assert [(r.row, r.col) for r in a.witness.weights] == [(r.row, r.col) for r in b.witness.weights]
            assert [perm[r.entry] if r.entry >= 0 else -1 for r in a.witness.weights] == [
                r.entry for r in b.witness.weights
            ]


@settings(max_examples=40)
@given(conv_geometries(max_size=7), st.integers(0, 2**32 - 1))
def test_a_single_changed_weight_is_caught_and_named(g, seed):
    lay = conv_map(g).layers[0]
    assume(np.any(lay.indices >= 0))
    idx, (r, c) = tamper(lay.indices, seed)
    bad = dataclasses.replace(lay, indices=idx)
    for v in (recognize_conv(bad), recognize_conv(bad, use_attrs=False)):
        if v.is_conv:  # another geometry may explain the changed map; then it must rebuild it exactly
            assert same_sharing(conv_map(v.geometry).layers[0].indices, idx)
            assert v.source != "attrs" and v.geometry.canonical() != g.canonical()
            continue
        assert_witness_true(bad, v.witness)
        if v.notes:  # the attrs geometry was refuted: its witness names the changed weight unless a
            # universal witness (which refutes every geometry) was found first
            assert (r, c) in [(w.row, w.col) for w in v.witness.weights] or v.witness.candidate == ""
    v = recognize_conv(bad)
    assert v.is_conv or v.notes or v.witness.candidate == ""


def _pos_match(a, b):
    return a.get("pos") == b.get("pos")


@settings(max_examples=25)
@given(conv_geometries(max_size=6))
def test_networkx_isomorphism_agrees_on_small_maps(g):
    """Independent cross-check: VF2 on the bipartite weight-entry graph, weights pinned by position."""
    lay = conv_map(g).layers[0]
    v = recognize_conv(lay, use_attrs=False)
    if v.is_conv:
        rebuilt = conv_map(v.geometry).layers[0]
        assert nx.is_isomorphic(sharing_graph(lay), sharing_graph(rebuilt), node_match=_pos_match)
    if np.any(lay.indices >= 0):
        idx, _ = tamper(lay.indices, 0)
        tampered = dataclasses.replace(lay, indices=idx)
        assert not nx.is_isomorphic(sharing_graph(lay), sharing_graph(tampered), node_match=_pos_match)
        assert not same_sharing(lay.indices, idx)


HASH_CASES = [
    (kind, params, n, sparsity)
    for kind, params in [
        ("uniform", {}),
        ("dirichlet", {"alpha": 0.5}),
        ("dirichlet", {"alpha": 50.0}),
        ("neighborhood", {"radius": 1}),
        ("neighborhood", {"radius": 2}),
        ("neighborhood", {"radius": 10}),
        ("xxhash", {}),
    ]
    for n in (50, 1000, 10**5)
    for sparsity in (0.0, 0.5)
]


@pytest.mark.parametrize(
    "kind, params, n, sparsity",
    HASH_CASES,
    ids=[f"{k}-{'-'.join(map(str, p.values()))}-n{n}-s{s}" for k, p, n, s in HASH_CASES],
)
def test_random_dirichlet_and_neighborhood_maps_are_rejected_with_a_witness(kind, params, n, sparsity):
    imap = build_map(HashSpec(kind=kind, table_size=n, sparsity=sparsity, seed=7, **params), Architecture((64, 32, 10)))
    rejected = 0
    for lay in imap.layers:
        v = recognize_conv(lay)
        if LayerFacts(lay).dense:  # a huge table may give every weight its own entry: then it *is* an MLP layer
            assert v.is_conv and v.source == "dense"
            continue
        assert not v.is_conv and v.geometry is None
        assert_witness_true(lay, v.witness)
        rejected += 1
    assert rejected >= 1


def test_neighborhood_witness_is_a_repeat_in_one_output_row():
    lay = build_map(HashSpec(kind="neighborhood", radius=2, table_size=50), Architecture((64, 32, 10))).layers[0]
    w = recognize_conv(lay).witness
    assert w.kind == "repeat_in_row" and w.candidate == "" and w.weights[0].row == w.weights[1].row == 0
    assert "at most once per output position" in w.reason


def test_dense_layer_is_the_degenerate_convolution():
    lay = build_map(HashSpec(kind="identity"), Architecture((20, 10))).layers[0]
    v = recognize_conv(lay)
    assert v.is_conv and v.source == "dense"
    assert v.geometry == ConvGeometry(20, 10, (1,), 1, bias=False)
    # a kernel covering the whole input is dense too, and rebuilds the same map
    full = conv_map(ConvGeometry(2, 3, (5, 5), 5)).layers[0]
    v = recognize_conv(full, use_attrs=False)
    assert v.is_conv and same_sharing(conv_map(v.geometry).layers[0].indices, full.indices)


def test_pruned_dense_layer_is_rejected_with_a_zero_witness():
    lay = build_map(HashSpec(kind="identity", sparsity=0.3), Architecture((40, 20))).layers[0]
    v = recognize_conv(lay)
    assert not v.is_conv and v.witness.kind == "should_be_nonzero"
    assert_witness_true(lay, v.witness)


def test_a_weight_outside_the_window_is_named():
    g = ConvGeometry(1, 2, (6, 6), 3, padding=1)
    lay = conv_map(g).layers[0]
    idx = np.array(lay.indices)
    r, c = 0, int(np.flatnonzero(idx[0] < 0)[-1])  # a structural zero of the first output row
    idx[r, c] = 0
    v = recognize_conv(dataclasses.replace(lay, indices=idx))
    assert not v.is_conv and (r, c) in [(w.row, w.col) for w in v.witness.weights]


def test_empty_layer_and_sign_hash():
    empty = LayerMap("e", np.full((4, 6), -1, dtype=np.int16), 0)
    v = recognize_conv(empty)
    assert not v.is_conv and v.witness.kind == "empty"
    lay = conv_map(ConvGeometry(2, 2, (5, 5), 3)).layers[0]
    entry_sign = np.where(np.arange(lay.indices.max() + 1) % 2, 1, -1).astype(np.int8)
    signed = dataclasses.replace(
        lay, sign=np.where(lay.indices >= 0, entry_sign[np.maximum(lay.indices, 0)], 1).astype(np.int8)
    )
    assert recognize_conv(signed, use_attrs=False).is_conv  # one sign per kernel entry: kernel = sign * table
    flipped = np.array(signed.sign)
    r, c = np.argwhere(lay.indices >= 0)[3]
    flipped[r, c] *= -1
    bad = dataclasses.replace(signed, sign=flipped)
    v = recognize_conv(bad)
    assert not v.is_conv and v.witness.kind == "sign" and (r, c) in [(w.row, w.col) for w in v.witness.weights]
    assert_witness_true(bad, v.witness)


def test_bias_sharing_is_checked_per_channel():
    g = ConvGeometry(2, 3, (5, 5), 3)
    lay = conv_map(g).layers[0]
    assert "own dense bias" in recognize_conv(dataclasses.replace(lay, bias_indices=None)).bias
    b = np.array(lay.bias_indices)
    b[4] = b[-1]  # output 4 of channel 0 reads channel 2's bias
    v = recognize_conv(dataclasses.replace(lay, bias_indices=b))
    assert not v.is_conv and v.witness.kind == "bias" and [w.row for w in v.witness.weights] == [0, 4]
    b = np.array(lay.bias_indices)
    b[:9] = 0  # channel 0's bias reads kernel entry 0
    v = recognize_conv(dataclasses.replace(lay, bias_indices=b))
    assert not v.is_conv and v.witness.kind == "bias" and "separate from its kernel" in v.witness.reason
    nobias = conv_map(dataclasses.replace(g, bias=False)).layers[0]
    v = recognize_conv(nobias)
    assert v.is_conv and not v.geometry.bias and v.bias == "fixed at zero (no bias)"


def test_wrong_attrs_are_reported_and_the_true_geometry_found():
    g = ConvGeometry(2, 4, (8, 8), 3, padding=1)
    lay = conv_map(g).layers[0]
    lying = dataclasses.replace(
        lay, attrs={"conv": dataclasses.replace(g, kernel_size=(3, 3), padding=(1, 1), groups=2).to_dict()}
    )
    v = recognize_conv(lying)
    assert v.is_conv and v.source == "search" and v.geometry == g
    assert any("does not match the map" in n for n in v.notes)


def test_bad_hints_raise_value_error():
    lay = conv_map(ConvGeometry(2, 4, (8, 8), 3, padding=1)).layers[0]
    with pytest.raises(ValueError, match="product 128"):
        recognize_conv(lay, in_shape=(2, 8, 7))
    with pytest.raises(ValueError, match="different spatial dimensionalities"):
        recognize_conv(lay, in_shape=(2, 64), out_shape=(4, 8, 8))


def test_large_conv_map_is_recognised_quickly_enough_for_the_cli():
    """A 12.6M-weight map (a 3x32x32 input -> 16 channels, the CLI's first example) goes through the O(N log N) path."""
    g = ConvGeometry(3, 16, (32, 32), 5, stride=2, padding=2)
    v = recognize_conv(conv_map(g).layers[0], use_attrs=False)
    assert v.is_conv and v.geometry == g and v.candidates == 1


def test_index_dtype_of_relabeled_layers_is_kept():
    lay = conv_map(ConvGeometry(1, 1, (4,), 2)).layers[0]
    assert relabel(lay, np.arange(3)[::-1].copy()).indices.dtype == index_dtype(3)
