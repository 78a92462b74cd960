"""Relabeling-invariant views of a map and the per-layer report behind `hashlab check FILE`."""

from __future__ import annotations

import dataclasses
import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hashlab import Architecture, HashSpec, IndexMap, LayerMap, build_map
from hashlab.equiv import canonical_labels, describe_map, modulus_offset, same_sharing, sharing_graph
from hashlab.maps.conv import ConvGeometry, conv_map
from hashlab.maps.rnn import RNNGeometry, rnn_map

index_arrays = arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.integers(-1, 7))


@settings(max_examples=60)
@given(index_arrays, st.integers(0, 2**32 - 1))
def test_canonical_labels_are_invariant_under_relabeling(a, seed):
    perm = np.random.default_rng(seed).permutation(8)
    b = np.where(a >= 0, perm[np.maximum(a, 0)], -1)
    ca = canonical_labels(a)
    np.testing.assert_array_equal(ca, canonical_labels(b))
    assert same_sharing(a, b)
    live = ca[ca >= 0]
    # first occurrences in row-major order are 0, 1, 2, ...
    assert np.array_equal(np.unique(live), np.arange(np.unique(live).size))
    assert list(dict.fromkeys(live.tolist())) == list(range(np.unique(live).size))


@settings(max_examples=40)
@given(index_arrays, index_arrays)
def test_same_sharing_agrees_with_networkx_isomorphism(a, b):
    """VF2 on the bipartite weight-entry graphs, weight nodes pinned by position, is the independent oracle."""
    la, lb = (LayerMap("x", x.astype(np.int16), 0) for x in (a, b))
    iso = a.shape == b.shape and nx.is_isomorphic(
        sharing_graph(la), sharing_graph(lb), node_match=lambda u, v: u.get("pos") == v.get("pos")
    )
    assert same_sharing(a, b) == iso


def test_modulus_offset_reads_the_hash_back():
    imap = build_map(HashSpec(kind="modulus", table_size=100, scope="global"), Architecture((10, 7, 5)))
    assert [modulus_offset(lay, 100) for lay in imap.layers] == [0, 70]
    uni = build_map(HashSpec(kind="uniform", table_size=100), Architecture((10, 7)))
    assert modulus_offset(uni.layers[0], 100) is None


def test_describe_map_on_every_kind_of_layer():
    cmap = conv_map(ConvGeometry(2, 3, (6, 6), 3, padding=1))
    mlp = build_map(HashSpec(kind="identity"), Architecture((108, 20))).layers[0]
    nb = build_map(HashSpec(kind="neighborhood", radius=2, table_size=50), Architecture((20, 16))).layers[0]
    layers = (
        cmap.layers[0],
        dataclasses.replace(mlp, name="mlp", table=1),
        dataclasses.replace(nb, name="nb", table=2),
        LayerMap("empty", np.full((4, 16), -1, dtype=np.int16), 2),
    )
    imap = IndexMap(layers=layers, table_sizes=(cmap.table_sizes[0], 2160, 50))
    rep = describe_map(imap)
    assert [lay.kind for lay in rep.layers] == ["convolution", "dense", "arbitrary", "empty"]
    assert rep.layers[0].summary.startswith("conv2d 2x6x6 -> 3x6x6, kernel 3x3")
    assert rep.layers[2].conv.witness.kind == "repeat_in_row"
    assert "at most once per output position" in rep.layers[2].reasons[0]
    assert not rep.rnn.is_rnn
    json.dumps(rep.to_dict())  # the --json output is plain JSON


def test_describe_map_groups_rnn_steps_and_ignores_attrs_on_request():
    rep = describe_map(rnn_map(RNNGeometry(5, 7, 4)))
    assert [lay.kind for lay in rep.layers] == ["rnn"] * 4
    assert rep.layers[0].summary.startswith("step 1/4 of an Elman RNN") and "modulus" in rep.layers[0].reasons[-1]
    conv = conv_map(ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2))
    a, b = describe_map(conv).layers[0], describe_map(conv, use_attrs=False).layers[0]
    assert a.conv.source == "attrs" and b.conv.source == "search" and a.summary == b.summary


@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "neighborhood"])
def test_hash_maps_are_described_as_arbitrary_with_a_witness(kind):
    params = {"alpha": 1.0} if kind == "dirichlet" else {"radius": 3} if kind == "neighborhood" else {}
    rep = describe_map(build_map(HashSpec(kind=kind, table_size=500, **params), Architecture((64, 32, 10))))
    for lay in rep.layers:
        assert lay.kind == "arbitrary" and lay.reasons[0].startswith("not a convolution: w(")
