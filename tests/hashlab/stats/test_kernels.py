"""Analysis kernels: numba and numpy twins agree exactly, and both equal brute-force / scipy answers."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest
import scipy.spatial
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab.stats import kernels as SK


@st.composite
def layers(draw, max_side=14, max_n=25):
    """A layer's (rows, cols, n, flat int16/int32 indices) with zeroed (-1) weights mixed in."""
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_n))
    dtype = draw(st.sampled_from([np.int16, np.int32]))
    style = draw(st.sampled_from(["random", "modulus", "diagonal", "block"]))
    ids = np.arange(rows * cols)
    if style == "random":
        vals = draw(st.lists(st.integers(-1, n - 1), min_size=rows * cols, max_size=rows * cols))
        idx = np.array(vals)
    elif style == "modulus":
        idx = ids % n
    elif style == "diagonal":  # a convolution-like Toeplitz map: entry = col - row (mod n)
        idx = (ids % cols - ids // cols) % n
    else:  # 2x2 blocks share an entry
        idx = ((ids // cols) // 2 * 7 + (ids % cols) // 2) % n
    return rows, cols, n, idx.astype(dtype)


def brute_nearest(starts, ids, cols):
    d_id = np.full(ids.size, -1)
    d_grid = np.full(ids.size, -1)
    for e in range(starts.size - 1):
        seg = ids[starts[e] : starts[e + 1]].astype(np.int64)
        for k, v in enumerate(seg):
            others = np.delete(seg, k)
            if others.size:
                d_id[starts[e] + k] = np.abs(others - v).min()
                d_grid[starts[e] + k] = np.maximum(
                    np.abs(others // cols - v // cols), np.abs(others % cols - v % cols)
                ).min()
    return d_id, d_grid


@given(layers())
def test_loads_twins_agree_with_bincount(layer):
    _, _, n, idx = layer
    loads_nb, zero_nb = SK.loads_nb(idx, n)
    loads_np, zero_np = SK.loads_ref(idx, n)
    np.testing.assert_array_equal(loads_nb, loads_np)
    assert zero_nb == zero_np == int((idx == -1).sum())
    np.testing.assert_array_equal(loads_nb, [int((idx == e).sum()) for e in range(n)])


@given(layers(), st.randoms(use_true_random=False))
def test_sign_sums_twins_agree(layer, rnd):
    _, _, n, idx = layer
    sign = np.array([rnd.choice((-1, 1)) for _ in range(idx.size)], dtype=np.int8)
    expected = [int(sign[idx == e].sum()) for e in range(n)]
    np.testing.assert_array_equal(SK.sign_sums_nb(idx, sign, n), expected)
    np.testing.assert_array_equal(SK.sign_sums_ref(idx, sign, n), expected)


@given(layers())
def test_bucket_sort_twins_agree_and_sort_by_entry_then_id(layer):
    _, _, n, idx = layer
    s_nb, i_nb = SK.bucket_sort_nb(idx, n)
    s_np, i_np = SK.bucket_sort_ref(idx, n)
    np.testing.assert_array_equal(s_nb, s_np)
    np.testing.assert_array_equal(i_nb, i_np)
    assert i_nb.dtype == i_np.dtype
    keep = np.flatnonzero(idx >= 0)
    np.testing.assert_array_equal(i_nb, keep[np.lexsort((keep, idx[keep]))])


@given(layers())
def test_nearest_partner_twins_agree_with_brute_force(layer):
    _, cols, n, idx = layer
    starts, ids = SK.bucket_sort_ref(idx, n)
    expected = brute_nearest(starts, ids, cols)
    for got in (SK.nearest_partner_nb(starts, ids, cols), SK.nearest_partner_ref(starts, ids, cols)):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


@given(layers(), st.lists(st.integers(0, 300), min_size=1, max_size=6))
def test_pair_counts_twins_agree_with_brute_force(layer, thresholds):
    _, _, n, idx = layer
    th = np.array(thresholds, dtype=np.int64)
    starts, ids = SK.bucket_sort_ref(idx, n)
    expected = []
    for d in th:
        count = 0
        for e in range(n):
            seg = ids[starts[e] : starts[e + 1]].astype(np.int64)
            diff = np.abs(seg[:, None] - seg[None, :])
            count += int(((diff <= d).sum() - seg.size) // 2)
        expected.append(count)
    np.testing.assert_array_equal(SK.pair_counts_ref(starts, ids, th), expected)
    np.testing.assert_array_equal(SK.layer_pair_counts_ref(idx, n, th), expected)
    np.testing.assert_array_equal(SK.layer_pair_counts_nb(idx, n, th), expected)


@given(layers())
def test_nearest_histograms_twins_agree_with_brute_force(layer):
    _, cols, n, idx = layer
    starts, ids = SK.bucket_sort_ref(idx, n)
    expected = [
        np.bincount(d[d >= 0]) if (d >= 0).any() else np.zeros(1, np.int64) for d in brute_nearest(starts, ids, cols)
    ]
    for got in (SK.nearest_histograms_nb(starts, ids, cols), SK.nearest_histograms_ref(starts, ids, cols)):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[0].dtype == got[1].dtype == np.int64


def test_pair_counts_reject_negative_thresholds():
    idx = np.zeros(4, np.int16)
    for fn in (SK.layer_pair_counts_nb, SK.layer_pair_counts_ref):
        with pytest.raises(ValueError, match=">= 0"):
            fn(idx, 1, np.array([1, -2]))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 3 * (1 << 16)),
    st.integers(1, 300),
    st.sampled_from([np.int16, np.int32]),
    st.floats(0.0, 0.9),
    st.lists(st.integers(0, 1 << 18), min_size=1, max_size=14),
    st.integers(0, 2**32 - 1),
)
def test_grouped_pair_sweep_equals_the_reference(size, n, dtype, sparsity, thresholds, seed):
    """Thresholds in groups of four (padding, duplicates, thresholds that become live inside a chunk or
    never), on one and on several work chunks, zeroed weights mixed in."""
    rng = np.random.default_rng(seed)
    idx = np.where(rng.random(size) < sparsity, -1, rng.integers(0, n, size=size)).astype(dtype)
    th = np.array(thresholds, dtype=np.int64)
    want = SK.layer_pair_counts_ref(idx, n, th)
    np.testing.assert_array_equal(SK.layer_pair_counts_nb(idx, n, th), want)
    old = nb.get_num_threads()
    try:
        nb.set_num_threads(1)
        np.testing.assert_array_equal(SK.layer_pair_counts_nb(idx, n, th), want)
    finally:
        nb.set_num_threads(old)


PARALLEL_CASES = [  # (rows, cols, n, style): several work chunks and workers, id distances past the histogram cap
    pytest.param(300, 700, 50, "uniform", id="uniform-300x700-n50"),
    pytest.param(256, 1024, 3000, "sparse", id="sparse-buckets-256x1024-n3000"),
    pytest.param(200, 800, 400, "modulus", id="modulus-200x800-n400"),
]


@pytest.mark.parametrize("rows, cols, n, style", PARALLEL_CASES)
def test_layer_kernels_agree_with_the_references_on_mid_size_layers(rows, cols, n, style):
    """Sizes where the sweep runs in several chunks, buckets span workers, and distances pass _HIST_CAP."""
    rng = np.random.default_rng(rows + cols + n)
    ids = np.arange(rows * cols)
    if style == "uniform":
        idx = rng.integers(-1, n, size=ids.size)
    elif style == "sparse":
        idx = np.where(rng.random(ids.size) < 0.05, rng.integers(0, n, size=ids.size), -1)
    else:
        idx = ids % n
    idx = idx.astype(np.int16)
    starts, sorted_ids = SK.bucket_sort_nb(idx, n)
    th = np.array([0, 1, 3, 100, 5000, 70000, ids.size - 1, 10 * ids.size])
    np.testing.assert_array_equal(SK.layer_pair_counts_nb(idx, n, th), SK.pair_counts_ref(starts, sorted_ids, th))
    for got, want in zip(
        SK.nearest_histograms_nb(starts, sorted_ids, cols), SK.nearest_histograms_ref(starts, sorted_ids, cols)
    ):
        np.testing.assert_array_equal(got, want)
    if style == "sparse":
        assert len(SK.nearest_histograms_nb(starts, sorted_ids, cols)[0]) > SK._HIST_CAP


GRID_CASES = [  # (rows, cols, n, style): sizes where the grid search needs several rings
    pytest.param(60, 90, 40, "uniform", id="uniform-60x90-n40"),
    pytest.param(50, 70, 7, "skewed", id="skewed-50x70-n7"),
    pytest.param(40, 40, 1200, "uniform", id="sparse-buckets-40x40-n1200"),
    pytest.param(30, 100, 100, "modulus", id="modulus-30x100-n100"),
]


@pytest.mark.parametrize("rows, cols, n, style", GRID_CASES)
def test_grid_nearest_matches_scipy_kdtree(rows, cols, n, style):
    """The grid distance equals scipy's Chebyshev k-d tree query (an independent computation)."""
    rng = np.random.default_rng(rows * cols + n)
    ids = np.arange(rows * cols)
    if style == "uniform":
        idx = rng.integers(-1, n, size=ids.size)
    elif style == "skewed":
        idx = rng.choice(n, size=ids.size, p=rng.dirichlet(np.full(n, 0.2)))
    else:
        idx = ids % n
    idx = idx.astype(np.int16)
    starts, sorted_ids = SK.bucket_sort_nb(idx, n)
    d_id, d_grid = SK.nearest_partner_nb(starts, sorted_ids, cols)
    np.testing.assert_array_equal((d_id, d_grid), SK.nearest_partner_ref(starts, sorted_ids, cols))
    expected = np.full(sorted_ids.size, -1)
    for e in range(n):
        seg = sorted_ids[starts[e] : starts[e + 1]]
        if seg.size >= 2:
            pts = np.stack([seg // cols, seg % cols], axis=1)
            dist, _ = scipy.spatial.cKDTree(pts).query(pts, k=2, p=np.inf)
            expected[starts[e] : starts[e + 1]] = dist[:, 1]
    np.testing.assert_array_equal(d_grid, expected)


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="numba"):
        SK.kernels("cuda")


@st.composite
def sweep_layers(draw):
    """Layers whose buckets exceed the all-pairs cutoff, so the column sweep runs (zeroed weights mixed in)."""
    rows = draw(st.integers(2, 90))
    cols = draw(st.integers(2, 90))
    n = draw(st.integers(1, max(1, rows * cols // (2 * SK._BRUTE))))
    sparsity = draw(st.sampled_from([0.0, 0.3, 0.9]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=rows * cols)
    idx[rng.random(idx.size) < sparsity] = -1
    return rows, cols, n, idx.astype(np.int16)


@given(sweep_layers())
def test_column_sweep_equals_the_reference(layer):
    """The column sweep (buckets above the all-pairs cutoff, half-windows, the outward scan) is exact."""
    _, cols, n, idx = layer
    starts, ids = SK.bucket_sort_nb(idx, n)
    got = SK.nearest_partner_nb(starts, ids, cols)
    want = SK.nearest_partner_ref(starts, ids, cols)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


SWEEP_CASES = [  # (rows, cols, style): the scan past the half-window, int32 rows, window edges
    pytest.param(64, 2000, "two-clusters", id="far-partners-64x2000"),
    pytest.param(20000, 3, "uniform", id="int32-rows-20000x3"),
    pytest.param(3, 5000, "uniform", id="wide-3x5000"),
    pytest.param(400, 400, "corners", id="corners-400x400"),
]


@pytest.mark.parametrize("rows, cols, style", SWEEP_CASES)
def test_column_sweep_edge_cases_equal_the_reference(rows, cols, style):
    rng = np.random.default_rng(rows + cols)
    idx = np.full(rows * cols, -1, np.int64)
    r, c = np.divmod(np.arange(rows * cols), cols)
    if style == "two-clusters":  # bucket 0: 60 members top left, one bottom right (its partner ~1990 columns away)
        idx[(r < 10) & (c < 6)] = 0
        idx[(r == rows - 1) & (c == cols - 1)] = 0
        idx[rng.random(idx.size) < 0.01] = 1
    elif style == "corners":  # bucket 0: a cluster in the middle and one member in each corner
        idx[(abs(r - rows // 2) < 4) & (abs(c - cols // 2) < 4)] = 0
        idx[[0, cols - 1, (rows - 1) * cols, rows * cols - 1]] = 0
        idx[rng.random(idx.size) < 0.002] = 1
    else:
        idx = rng.integers(-1, 7, size=idx.size)
    idx = idx.astype(np.int16)
    starts, ids = SK.bucket_sort_nb(idx, 2 if style != "uniform" else 7)
    got = SK.nearest_partner_nb(starts, ids, cols)
    want = SK.nearest_partner_ref(starts, ids, cols)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    for g, w in zip(SK.nearest_histograms_nb(starts, ids, cols), SK.nearest_histograms_ref(starts, ids, cols)):
        np.testing.assert_array_equal(g, w)


def test_row_type_keeps_sentinels_above_every_distance():
    assert SK._row_proto(2000, 3072).dtype == np.int16
    assert SK._row_proto(20000, 3).dtype == np.int32
    assert SK._row_proto(9000, 9000).dtype == np.int32
    assert SK._row_proto(2**29 + 5, 3) is None


@pytest.mark.parametrize("thresholds", [[7], [10**6], [0, 7, 10**6], [1, 3]], ids=["n-1", "beyond", "mixed", "small"])
def test_pair_counts_of_thresholds_covering_the_whole_layer_skip_the_sweep_and_agree(thresholds):
    rng = np.random.default_rng(3)
    idx = rng.integers(-1, 3, size=8).astype(np.int16)  # N = 8: d >= 7 counts every pair of a bucket
    want = SK.layer_pair_counts_ref(idx, 3, np.array(thresholds))
    assert np.array_equal(SK.layer_pair_counts_nb(idx, 3, np.array(thresholds)), want)
    loads = np.bincount(idx[idx >= 0], minlength=3)
    for d, got in zip(thresholds, want):
        if d >= 7:
            assert got == int((loads * (loads - 1) // 2).sum())
