"""build_model_map: a hash spec over any model's layer shapes (Linear, Conv2d, Embedding), per-layer budgets."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashlab import (
    Architecture,
    HashSpec,
    LayerShape,
    SpecError,
    build_map,
    build_model_map,
    load_index_file,
    save_index_file,
)
from hashlab.io.format import read_header
from hashlab.maps.regenerate import regenerate_map, regenerated_shapes
from tests.hashlab.maps.test_hashes import archs, specs

MODEL = [  # a small CNN with an embedding: the three layer kinds arbify passes
    LayerShape("embedding", (50, 8), "emb"),
    LayerShape("conv2d", (6, 2, 3, 3), "features.0"),  # groups=2 over 4 input channels
    LayerShape("linear", (10, 24), "head"),
]


def _same_arrays(a, b) -> None:
    assert a.table_sizes == b.table_sizes
    for la, lb in zip(a.layers, b.layers):
        assert la.indices.dtype == lb.indices.dtype and la.table == lb.table
        np.testing.assert_array_equal(la.indices, lb.indices)
        assert (la.sign is None) == (lb.sign is None)
        if la.sign is not None:
            np.testing.assert_array_equal(la.sign, lb.sign)


@given(specs(), archs)
def test_linear_shapes_that_chain_give_build_maps_arrays(spec, arch):
    """The same identifiers, streams and kernels as build_map: an MLP's layers hash alike in both builders."""
    _same_arrays(build_model_map(spec, arch.layer_shapes), build_map(spec, arch))


@given(specs(), st.sampled_from(["numba", "numpy"]))
def test_a_model_map_has_one_layer_per_shape_and_rebuilds_from_its_spec(spec, backend):
    imap = build_model_map(spec, MODEL, backend=backend)
    assert [lay.name for lay in imap.layers] == ["emb", "features.0", "head"]
    assert [lay.indices.shape for lay in imap.layers] == [(50, 8), (6, 18), (10, 24)]
    assert [lay.attrs for lay in imap.layers] == [s.attrs() for s in MODEL]
    assert imap.spec["builder"] == "hashlab.build_model_map" and "budgets" not in imap.spec
    assert regenerated_shapes(imap.spec) == [s.matrix_shape for s in MODEL]
    _same_arrays(regenerate_map(imap.spec, backend="numpy"), imap)
    imap.validate()


def test_compression_sizes_each_layer_and_budgets_override_it():
    spec = HashSpec(kind="xxhash", sign=True, compression="1/8")
    assert build_model_map(spec, MODEL).table_sizes == (50, 14, 30)  # ceil(400/8), ceil(108/8), ceil(240/8)
    budgets = {"emb": "1/64", 1: 5, "head": 1.0}  # by name or position; int = entries, else a ratio
    imap = build_model_map(spec, MODEL, budgets=budgets)
    assert imap.table_sizes == (7, 5, 240)
    assert imap.spec["budgets"] == ["1/64", 5, "1"]
    assert build_model_map(spec, MODEL, budgets=[Fraction(1, 64), 5, 1.0]).table_sizes == (7, 5, 240)
    _same_arrays(regenerate_map(imap.spec), imap)


def test_global_scope_is_one_table_with_global_identifiers():
    spec = HashSpec(kind="modulus", table_size=7, scope="global")
    imap = build_model_map(spec, MODEL)
    assert imap.table_sizes == (7,) and [lay.table for lay in imap.layers] == [0, 0, 0]
    flat = np.concatenate([lay.indices.ravel() for lay in imap.layers])
    np.testing.assert_array_equal(flat, np.arange(flat.size) % 7)  # identifiers run on across the layers


def test_block_kind_gives_each_embedding_row_one_contiguous_run():
    imap = build_model_map(HashSpec(kind="block", sign=True, compression="1/4"), MODEL)
    emb = imap.layers[0].indices.astype(np.int64)
    n = imap.table_sizes[0]
    np.testing.assert_array_equal(np.diff(emb, axis=1) % n, 1)  # +1 along each row, wrapping at n
    assert imap.layers[0].sign is not None


def test_pairs_are_linear_layers_with_default_names():
    imap = build_model_map(HashSpec(table_size=5), [(3, 4), LayerShape("embedding", (6, 2))])
    assert [lay.name for lay in imap.layers] == ["layer0", "layer1"]
    assert imap.layers[0].attrs == {"layer": {"kind": "linear", "weight_shape": [3, 4]}}


def test_a_model_map_file_stores_only_its_spec_and_loads_back(tmp_path):
    imap = build_model_map(HashSpec(kind="uniform", sign=True, compression="1/4"), MODEL, budgets={"head": 16})
    path = save_index_file(imap, tmp_path / "model.safetensors")
    header, _ = read_header(path)
    assert header["__metadata__"]["storage"] == "spec" and path.stat().st_size < 2000
    again = load_index_file(path)
    _same_arrays(again, imap)
    assert [lay.name for lay in again.layers] == ["emb", "features.0", "head"]
    assert again.layers[1].attrs == {"layer": {"kind": "conv2d", "weight_shape": [6, 2, 3, 3]}}


def test_layer_shapes_describe_the_map_matrix():
    conv = LayerShape("conv2d", (16, 3, 5, 5), "c")
    assert conv.matrix_shape == (16, 75) and conv.num_weights == 1200
    assert LayerShape.from_dict(conv.to_dict()) == LayerShape("conv2d", (16, 3, 5, 5))
    assert LayerShape("linear", [np.int64(3), 4]).weight_shape == (3, 4)


BAD = [  # (id, call, message)
    ("kind", lambda: LayerShape("conv1d", (2, 2, 2)), "unknown layer kind 'conv1d'"),
    ("conv-dims", lambda: LayerShape("conv2d", (2, 2)), "a conv2d weight_shape must be 4 sizes"),
    ("zero-size", lambda: LayerShape("linear", (0, 2)), "a linear weight_shape must be 2 sizes in [1, 2**31 - 1]"),
    ("spec-type", lambda: build_model_map({"kind": "uniform"}, MODEL), "spec must be a HashSpec"),
    ("hash-bias", lambda: build_model_map(HashSpec(hash_bias=True), MODEL), "drop hash_bias"),
    ("empty", lambda: build_model_map(HashSpec(), []), "shapes must be a non-empty list"),
    ("bad-item", lambda: build_model_map(HashSpec(), [(3, 4, 5)]), "shapes[0] must be a LayerShape"),
    (
        "dup-name",
        lambda: build_model_map(HashSpec(), [LayerShape("linear", (2, 2), "a")] * 2),
        "layer names must be unique, got ['a']",
    ),
    (
        "global-budgets",
        lambda: build_model_map(HashSpec(scope="global"), MODEL, budgets={"emb": 3}),
        "per-layer budgets need one table per layer (scope='layer')",
    ),
    (
        "identity-budgets",
        lambda: build_model_map(HashSpec(kind="identity"), MODEL, budgets={"emb": 3}),
        "the identity hash has one entry per weight",
    ),
    (
        "unknown-budget",
        lambda: build_model_map(HashSpec(), MODEL, budgets={"fc": 3}),
        "budget key 'fc' is neither a layer name nor a position in [0, 3)",
    ),
    ("twice", lambda: build_model_map(HashSpec(), MODEL, budgets={"emb": 3, 0: 4}), "has two budgets"),
    ("ratio", lambda: build_model_map(HashSpec(), MODEL, budgets={"emb": "2"}), "must lie in (0, 1]"),
    ("entries", lambda: build_model_map(HashSpec(), MODEL, budgets={"emb": 0}), "an int >= 1, got 0"),
    ("list-length", lambda: build_model_map(HashSpec(), MODEL, budgets=[1, 2]), "a list of 3 budgets"),
    (
        "architecture",
        lambda: Architecture(tuple(MODEL)),
        "build their map with hashlab.build_model_map(spec, shapes)",
    ),
]


@pytest.mark.parametrize("call,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        call()
