"""The literature's known uses of weight sharing: shapes, tables, their groups and their ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hashlab import IndexMap, LayerMap
from hashlab.equiv import automorphism_group, describe_map, find_ties, recognize_rnn
from hashlab.io.format import load_index_file, save_index_file
from hashlab.maps import (
    circulant_map,
    deepsets_map,
    shared_layers_map,
    toeplitz_map,
    transpose_tied_map,
)


@pytest.mark.parametrize("n, order", [(1, 1), (2, 2), (3, 3), (16, 16)])
def test_circulant_layers_have_the_cyclic_group(n, order):
    lay = circulant_map(n).layers[0]
    o, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    assert np.array_equal(lay.indices, (i - o) % n)
    assert automorphism_group(lay).order == order


def test_a_circulant_with_channels_and_bias():
    imap = circulant_map(5, 2, 3, bias=True)
    lay = imap.layers[0]
    assert lay.indices.shape == (15, 10) and imap.table_sizes == (5 * 2 * 3 + 3,)
    assert np.array_equal(lay.bias_indices, 30 + np.repeat(np.arange(3), 5))
    assert automorphism_group(lay).order == 5 and imap.spec["builder"] == "circulant_map"


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (5, 8), (8, 3)])
def test_toeplitz_layers_read_one_entry_per_diagonal_and_are_rigid(shape):
    r, c = shape
    imap = toeplitz_map(r, c)
    lay = imap.layers[0]
    assert imap.table_sizes == (r + c - 1,)
    assert all(len(set(np.diagonal(lay.indices, k).tolist())) == 1 for k in range(-r + 1, c))
    assert automorphism_group(lay).order == 1


@pytest.mark.parametrize("n", [2, 5, 10])
def test_deepsets_layers_have_the_symmetric_group(n):
    lay = deepsets_map(n).layers[0]
    assert set(np.unique(lay.indices).tolist()) == {0, 1} and np.all(np.diagonal(lay.indices) == 0)
    assert automorphism_group(lay).order == math.factorial(n)


def test_deepsets_with_channels_permutes_the_elements_of_every_channel_alike():
    imap = deepsets_map(6, 2, 3, bias=True)
    lay = imap.layers[0]
    assert lay.indices.shape == (18, 12) and imap.table_sizes == (2 * 2 * 3 + 3,)
    g = automorphism_group(lay)
    assert g.order == math.factorial(6) and g.kind == "symmetric"


def test_transpose_tying_is_one_global_table_and_is_recognised():
    imap = transpose_tied_map(6, 4)
    enc, dec = imap.layers
    assert imap.table_sizes == (24,) and enc.table == dec.table == 0
    assert np.array_equal(dec.indices, enc.indices.T) and enc.indices.shape == (4, 6)
    ties = find_ties(imap)
    assert [(t.a, t.b, t.kind) for t in ties] == [("fc0", "fc1", "transpose")]
    assert "transposed" in ties[0].describe()
    # the dense encoder leaves no symmetry, in each layer or the network
    assert automorphism_group(imap).order == 1


def test_tying_across_layers_is_recognised_as_ties_and_as_an_rnn_without_input(tmp_path):
    imap = shared_layers_map(8, 3)
    assert imap.table_sizes == (64,) and all(np.array_equal(x.indices, imap.layers[0].indices) for x in imap.layers)
    assert [(t.a, t.b, t.kind) for t in find_ties(imap)] == [
        ("fc0", "fc1", "same"),
        ("fc0", "fc2", "same"),
        ("fc1", "fc2", "same"),
    ]
    rnn = recognize_rnn(imap)
    assert rnn.is_rnn and rnn.groups[0].geometry.input_size == 0
    back = load_index_file(save_index_file(imap, tmp_path / "shared.safetensors"))
    assert [(t.a, t.b) for t in find_ties(back)] == [("fc0", "fc1"), ("fc0", "fc2"), ("fc1", "fc2")]
    assert describe_map(back).rnn.is_rnn


def test_shared_circulant_layers_make_a_cyclically_equivariant_network():
    imap = shared_layers_map(8, 3, base=circulant_map(8))
    g = automorphism_group(imap)
    assert g.order == 8 and g.kind == "cyclic" and g.joined == (True, True)


def test_ties_need_one_table():
    imap = shared_layers_map(4, 2)
    other = type(imap)(
        (imap.layers[0], type(imap.layers[1])("fc1", imap.layers[1].indices, 1)), (16, 16), {"builder": "test"}
    )
    assert find_ties(other) == ()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: circulant_map(0), "n must be an integer >= 1"),
        (lambda: toeplitz_map(3, 0), "in_features must be an integer >= 1"),
        (lambda: deepsets_map(4, in_channels=True), "in_channels must be an integer >= 1"),
        (lambda: transpose_tied_map(0, 3), "in_features must be"),
        (lambda: shared_layers_map(4, 0), "depth must be"),
        (lambda: shared_layers_map(4, 2, base=circulant_map(5)), "not 4x4"),
        (lambda: shared_layers_map(4, 2, base="circulant"), "base must be an IndexMap"),
    ],
)
def test_builders_refuse_bad_sizes(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ties_need_equal_signs_and_bias_entries():
    base = shared_layers_map(4, 2)
    a, b = base.layers
    flipped = LayerMap("fc1", b.indices, 0, sign=np.where(np.eye(4, dtype=bool), -1, 1).astype(np.int8))
    assert find_ties(IndexMap((a, flipped), base.table_sizes)) == ()
    biased = LayerMap("fc1", b.indices, 0, bias_indices=np.zeros(4, b.indices.dtype))
    assert find_ties(IndexMap((a, biased), base.table_sizes)) == ()
    with pytest.raises(ValueError, match="expected an IndexMap"):
        find_ties(a)
