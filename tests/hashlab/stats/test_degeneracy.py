"""Degeneracy (identical rows / columns, rank bound): known answers and brute force on random maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import ARCHITECTURES, Architecture, HashSpec, LayerMap, build_map, index_dtype
from hashlab.stats import format_report, layer_degeneracy, map_degeneracy, map_report
from hashlab.stats.group_kernels import (
    _NO_SIGN,
    _col_groups_confirmed,
    _group,
    _line_hashes,
    col_groups_ref,
    line_groups_nb,
    line_groups_ref,
    row_groups_ref,
)
from hashlab.stats.kernels import BACKENDS, kernels


def brute_groups(indices, sign, by_row):
    """The definition, position by position: W[o, i] is 0 if zeroed, else (index, sign)."""
    mat = indices if by_row else indices.T
    sg = None if sign is None else (sign if by_row else sign.T)

    def key(a):
        return tuple(
            (0, 0) if mat[a, j] < 0 else (int(mat[a, j]) + 1, 1 if sg is None else int(sg[a, j]))
            for j in range(mat.shape[1])
        )

    keys = [key(a) for a in range(mat.shape[0])]
    return np.array([next(b for b in range(a + 1) if keys[b] == keys[a]) for a in range(len(keys))])


@pytest.fixture(scope="module")
def mnist_modulus():
    return build_map(HashSpec(kind="modulus", table_size=1000), ARCHITECTURES["mnist-mlp"])


@pytest.fixture(scope="module")
def modulus_report(mnist_modulus):
    return map_report(mnist_modulus, locality=False)


def test_modulus_on_the_mnist_mlp_has_125_5_5_distinct_rows(mnist_modulus, modulus_report):
    deg = modulus_report.degeneracy
    assert [d.distinct_rows for d in deg.layers] == [125, 5, 5]  # period 1000 / gcd(784, 1000); 1000 / 200
    assert [d.distinct_cols for d in deg.layers] == [784, 200, 200]
    assert [d.largest_row_group for d in deg.layers] == [2, 40, 2]
    assert [d.rank_bound for d in deg.layers] == [125, 5, 5]
    assert [d.random_rank for d in deg.layers] == [125, 5, 5]  # the bound is reached
    assert deg.degenerate_layers == ["fc0", "fc1", "fc2"] and (deg.distinct_rows, deg.rows) == (135, 410)
    # row o of fc0 equals row o + 125 (784 * 125 = 98000 = 0 mod 1000)
    assert deg.layers[0].row_groups[130] == 5 and deg.layers[0].row_groups[5] == 5
    ref = map_degeneracy(mnist_modulus, backend="numpy", rank_limit=0)
    for d, r in zip(deg.layers, ref.layers):
        assert d.row_groups.tolist() == r.row_groups.tolist() and d.col_groups.tolist() == r.col_groups.tolist()


def test_modulus_report_text_warns_and_json_carries_the_counts(modulus_report):
    rep = modulus_report
    text = format_report(rep)
    assert "WARNING: fc0: rank bound 125 < min(out, in) = 200" in text
    assert "WARNING: fc2: rank bound 5 < min(out, in) = 10" in text
    d = rep.to_dict()
    assert d["version"] == 3 and d["degeneracy"]["distinct_rows"] == 135
    assert d["layers"][0]["degeneracy"]["distinct_rows"] == 125
    assert d["layers"][0]["degeneracy"]["random_ranks"] == [125, 125]


@pytest.mark.parametrize(
    "spec",
    [HashSpec(kind="neighborhood", radius=1, table_size=1000, seed=3), HashSpec(kind="identity")],
    ids=["neighborhood-r1", "identity"],
)
def test_radius_one_and_identity_have_every_row_distinct_and_full_rank(spec):
    rep = map_report(build_map(spec, ARCHITECTURES["mnist-mlp"]), locality=False, rank_draws=1)
    for d, (out_f, in_f) in zip(rep.degeneracy.layers, ARCHITECTURES["mnist-mlp"].layer_shapes):
        assert (d.distinct_rows, d.distinct_cols, d.largest_row_group) == (out_f, in_f, 1)
        assert d.rank_bound == d.full_rank == min(out_f, in_f) and not d.degenerate
        assert d.random_rank == d.full_rank
    assert "WARNING" not in format_report(rep)


@st.composite
def layers(draw):
    """Small layers over tiny tables (so rows and columns repeat), with zeros, optional sign."""
    o, i = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    n = draw(st.sampled_from([1, 2, 3, 40000]))  # 40000: int32 indices
    hi = min(n, 3) - 1
    vals = np.array(draw(st.lists(st.integers(-1, hi), min_size=o * i, max_size=o * i)), dtype=index_dtype(n))
    sign = None
    if draw(st.booleans()):
        sign = np.array(draw(st.lists(st.sampled_from([-1, 1]), min_size=o * i, max_size=o * i)), np.int8)
        sign = sign.reshape(o, i)
    return LayerMap("l", vals.reshape(o, i), 0, sign=sign)


@settings(max_examples=100, deadline=None)
@given(layers())
def test_groups_match_brute_force_for_both_backends(layer):
    rows = brute_groups(layer.indices, layer.sign, True)
    cols = brute_groups(layer.indices, layer.sign, False)
    for backend in BACKENDS:
        got_r, got_c = kernels(backend).line_groups(layer.indices, layer.sign)
        assert got_r.tolist() == rows.tolist() and got_c.tolist() == cols.tolist()
    assert row_groups_ref(layer.indices, layer.sign).tolist() == rows.tolist()
    assert col_groups_ref(layer.indices, layer.sign).tolist() == cols.tolist()
    d = layer_degeneracy(layer)
    assert d.distinct_rows == len(set(rows.tolist())) and d.distinct_cols == len(set(cols.tolist()))
    assert d.largest_row_group == np.bincount(rows).max()
    assert d.random_rank <= d.rank_bound  # the bound holds for table values drawn at random
    vals = np.random.default_rng(1).standard_normal(layer.indices.max() + 2)
    w = np.where(layer.indices >= 0, vals[layer.indices], 0.0) * (1 if layer.sign is None else layer.sign)
    assert d.random_rank == np.linalg.matrix_rank(w)  # the distinct submatrix keeps the rank


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(["modulus", "uniform", "neighborhood"]),
    scope=st.sampled_from(["layer", "global"]),
    sparsity=st.sampled_from([0.0, 0.5]),
    sign=st.booleans(),
    n=st.integers(2, 12),
    seed=st.integers(0, 9),
)
def test_built_maps_match_brute_force(kind, scope, sparsity, sign, n, seed):
    spec = HashSpec(
        kind=kind,
        table_size=n,
        scope=scope,
        sparsity=sparsity,
        sign=sign,
        seed=seed,
        radius=0 if kind == "neighborhood" else None,
    )
    imap = build_map(spec, Architecture((6, 8, 4)))
    for lay, d, dref in zip(imap.layers, map_degeneracy(imap).layers, map_degeneracy(imap, backend="numpy").layers):
        assert d.row_groups.tolist() == dref.row_groups.tolist() == brute_groups(lay.indices, lay.sign, True).tolist()
        assert d.col_groups.tolist() == dref.col_groups.tolist() == brute_groups(lay.indices, lay.sign, False).tolist()


def test_sign_counts_only_where_the_weight_is_not_zeroed():
    idx = np.array([[0, 1, -1], [0, 1, -1], [0, 1, -1]], np.int16)
    sign = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1]], np.int8)
    d = layer_degeneracy(LayerMap("l", idx, 0, sign=sign))
    assert d.row_groups.tolist() == [0, 0, 2]  # row 1 differs only under a zero; row 2 flips a live sign


def test_colliding_hashes_never_merge_different_rows():
    rng = np.random.default_rng(0)
    idx = rng.integers(-1, 2, size=(40, 5)).astype(np.int16)
    equal = np.zeros(40, np.uint64)  # every row in one hash run: grouping must fall back on exact equality
    labels = _group(equal, np.arange(40), idx, np.ones((1, 1), np.int8), False, True)
    assert labels.tolist() == brute_groups(idx, None, True).tolist()


@settings(max_examples=60, deadline=None)
@given(layers(), st.sampled_from(["true", "colliding", "split"]))
def test_columns_confirmed_in_memory_order_equal_the_exact_grouping(layer, hashes):
    """The row-major confirmation returns _group's labels; with colliding hashes (every column in one
    run) it must see the mismatch and fall back on the exact grouping; equal columns given different
    hashes stay apart, as in _group."""
    sg = _NO_SIGN if layer.sign is None else layer.sign
    has = layer.sign is not None
    hc = _line_hashes(layer.indices, sg, has, 1)[1]
    if hashes == "colliding":
        hc = np.zeros_like(hc)
    elif hashes == "split":
        hc = np.arange(hc.size, dtype=np.uint64)
    got = _col_groups_confirmed(hc, layer.indices, sg, has)
    assert got.tolist() == _group(hc, np.argsort(hc, kind="stable"), layer.indices, sg, has, False).tolist()
    if hashes == "true":
        assert got.tolist() == brute_groups(layer.indices, layer.sign, False).tolist()


def test_rank_limit_skips_the_rank_and_bad_arguments_are_clear_errors(mnist_modulus):
    d = layer_degeneracy(mnist_modulus.layers[0], rank_limit=0)
    assert d.random_ranks is None and d.random_rank is None and d.rank_bound == 125
    assert d.to_dict()["random_rank"] is None
    with pytest.raises(ValueError, match="rank_limit >= 0"):
        layer_degeneracy(mnist_modulus.layers[0], rank_limit=-1)
    with pytest.raises(ValueError, match="LayerMap"):
        layer_degeneracy(mnist_modulus.layers[0].indices)
    with pytest.raises(ValueError, match="backend"):
        layer_degeneracy(mnist_modulus.layers[0], backend="cuda")
    with pytest.raises(ValueError, match="rank_draws >= 1"):
        map_report(mnist_modulus, rank_draws=0)


@settings(max_examples=60, deadline=None)
@given(layers(), st.integers(1, 5))
def test_line_hashes_do_not_depend_on_the_worker_split_and_equal_lines_hash_equal(layer, threads):
    """The fused pass sums partial column hashes over blocks of rows: any split gives the same bits;
    identical rows (columns) get identical hashes, so grouping only ever confirms within a hash run."""
    sg = _NO_SIGN if layer.sign is None else layer.sign
    has = layer.sign is not None
    hr1, hc1 = _line_hashes(layer.indices, sg, has, 1)
    hr, hc = _line_hashes(layer.indices, sg, has, threads)
    assert hr.tolist() == hr1.tolist() and hc.tolist() == hc1.tolist()
    rows, cols = line_groups_nb(layer.indices, layer.sign)
    assert (hr == hr[rows]).all() and (hc == hc[cols]).all()
    ref_rows, ref_cols = line_groups_ref(layer.indices, layer.sign)
    assert rows.tolist() == ref_rows.tolist() and cols.tolist() == ref_cols.tolist()


def test_line_hashes_separate_the_distinct_rows_of_a_large_random_layer():
    """2000 x 3072 Dirichlet-like layer: every row and column distinct, and no two share a hash."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 1000, size=(2000, 3072)).astype(np.int16)
    hr, hc = _line_hashes(idx, _NO_SIGN, False, 2)
    assert np.unique(hr).size == 2000 and np.unique(hc).size == 3072
    rows, cols = line_groups_nb(idx, None)
    assert (rows == np.arange(2000)).all() and (cols == np.arange(3072)).all()
