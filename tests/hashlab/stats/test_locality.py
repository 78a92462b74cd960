"""Collision locality: closed-form null expectations vs direct sums, and what separates the hashes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashlab import ARCHITECTURES, Architecture, HashSpec, IndexMap, LayerMap, build_map
from hashlab.stats.locality import (
    _line_sum,
    default_thresholds,
    expected_nearest_counts,
    expected_pair_fraction,
    layer_locality,
    line_window_profile,
    nearest_partners,
    pool_locality,
)


def others_within(rows, cols, d, metric):
    """For every position, how many other positions lie within distance d (direct O(N^2) count)."""
    ids = np.arange(rows * cols)
    if metric == "id":
        dist = np.abs(ids[:, None] - ids[None, :])
    else:
        r, c = ids // cols, ids % cols
        dist = np.maximum(np.abs(r[:, None] - r[None, :]), np.abs(c[:, None] - c[None, :]))
    return (dist <= d).sum(axis=1) - 1


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 50),
    st.floats(0, 0.9),
    st.lists(st.integers(0, 30), min_size=1, max_size=4),
    st.sampled_from(["id", "grid"]),
)
def test_expected_nearest_counts_equal_the_direct_sum(rows, cols, n, sparsity, ds, metric):
    keep = 1 - sparsity
    q = 1 - keep / n
    th = np.array(ds, dtype=np.int64)
    within, co = expected_nearest_counts(metric, (rows, cols), n, sparsity, th)
    for t, d in enumerate(th):
        m = others_within(rows, cols, d, metric)
        assert within[t] == pytest.approx(keep * (1 - q**m).sum(), rel=1e-9, abs=1e-9)
    assert co == pytest.approx(keep * rows * cols * (1 - q ** (rows * cols - 1)), rel=1e-9, abs=1e-9)


@given(st.integers(1, 200), st.integers(0, 300), st.floats(0, 1))
def test_line_sum_closed_form_equals_direct_sum(length, d, pi):
    x = np.arange(length)
    a = np.minimum(x, d) + np.minimum(length - 1 - x, d)
    assert _line_sum(length, d, pi) == pytest.approx(((1 - pi) ** a).sum(), rel=1e-10, abs=1e-10)
    vals, counts = line_window_profile(length, d)
    assert counts.sum() == length
    assert sorted(np.repeat(vals, counts)) == sorted(a)


@given(st.integers(1, 60), st.lists(st.integers(0, 80), min_size=1, max_size=5))
def test_expected_pair_fraction_counts_position_pairs(length, ds):
    diff = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
    pairs = length * (length - 1) / 2
    got = expected_pair_fraction(length, np.array(ds))
    for d, g in zip(ds, got):
        want = ((diff <= d).sum() - length) / 2 / pairs if pairs else 1.0
        assert g == pytest.approx(want)


def test_uniform_hash_curves_match_their_expectation_over_seeds():
    """Pooled over 40 seeds, a uniform hash's nearest-partner curves sit on the null's expectation."""
    arch = Architecture((80, 60))
    th = default_thresholds(80 * 60)
    parts_id, parts_grid = [], []
    for seed in range(40):
        imap = build_map(HashSpec(kind="uniform", table_size=150, seed=seed, sparsity=0.2), arch)
        loc = layer_locality("fc0", imap.layers[0].indices, 150, th)
        parts_id.append(loc.id)
        parts_grid.append(loc.grid)
    for pooled in (pool_locality(parts_id), pool_locality(parts_grid)):
        np.testing.assert_allclose(pooled.fraction_within, pooled.expected_fraction_within, atol=0.01)
        assert pooled.co_bucketed == pytest.approx(pooled.expected_co_bucketed, rel=0.01)
    pid = pool_locality(parts_id)
    np.testing.assert_allclose(pid.pair_fraction, pid.expected_pair_fraction, rtol=0.05, atol=1e-4)


def test_neighborhood_r0_spreads_collisions_exactly_n_apart():
    """Neighborhood(r=0) is i mod n: every partner is exactly n identifiers away, never closer."""
    n = 1000
    imap = build_map(HashSpec(kind="neighborhood", radius=0, table_size=n), ARCHITECTURES["mnist-mlp"])
    for lay in imap.layers:
        loc = layer_locality(lay.name, lay.indices, n)
        assert loc.id.co_bucketed == lay.num_weights
        assert np.flatnonzero(loc.id.histogram).tolist() == [n]
        below = loc.id.pair_thresholds < n
        assert np.all(loc.id.pairs_within[below] == 0)
        assert np.all(loc.id.expected_pair_fraction[below] > 0)
        assert loc.id.fraction_within[0] == 0 < loc.id.expected_fraction_within[0]


def test_convolution_like_map_has_all_collisions_at_grid_distance_one():
    """A Toeplitz (1-D convolution) matrix shares an entry along each diagonal: grid distance 1."""
    rows, cols = 40, 60
    r, c = np.divmod(np.arange(rows * cols), cols)
    idx = (c - r + rows - 1).astype(np.int16).reshape(rows, cols)
    n = rows + cols - 1
    imap = IndexMap((LayerMap("conv", idx, 0),), (n,))
    loc = layer_locality("conv", imap.layers[0].indices, n)
    assert loc.grid.fraction_within[0] == 1.0
    assert loc.grid.expected_fraction_within[0] < 0.2
    assert loc.grid.quantile(0.5) == 1


def test_dirichlet_pairs_follow_position_blind_expectation_while_nearest_partners_are_closer():
    imap = build_map(HashSpec(kind="dirichlet", alpha=0.1, table_size=1000), Architecture((300, 200)))
    loc = layer_locality("fc0", imap.layers[0].indices, 1000)
    np.testing.assert_allclose(loc.id.pair_fraction, loc.id.expected_pair_fraction, rtol=0.05, atol=1e-4)
    assert loc.id.quantile(0.5) < 0.5 * loc.id.expected_quantile(0.5)


def test_quantiles_and_mean_read_the_histogram():
    imap = IndexMap((LayerMap("x", np.array([[0, 0, 1, 2, 1, 0]], dtype=np.int16), 0),), (3,))
    loc = layer_locality("x", imap.layers[0].indices, 3)
    # entry 0 at ids 0, 1, 5 -> nearest 1, 1, 4; entry 1 at ids 2, 4 -> 2, 2; entry 2 alone
    np.testing.assert_array_equal(np.flatnonzero(loc.id.histogram), [1, 2, 4])
    assert (loc.id.co_bucketed, loc.id.isolated) == (5, 1)
    assert loc.id.quantile(0.5) == 2 and loc.id.mean == pytest.approx(10 / 5)
    assert loc.id.pairs_total == 4


def test_pool_locality_rejects_mismatched_parts():
    imap = build_map(HashSpec(kind="uniform", table_size=20), Architecture((10, 8, 4)))
    a = layer_locality("a", imap.layers[0].indices, 20)
    b = layer_locality("b", imap.layers[1].indices, 20, thresholds=np.array([1, 2]))
    with pytest.raises(ValueError, match="same metric and thresholds"):
        pool_locality([a.id, b.id])
    with pytest.raises(ValueError, match="at least one"):
        pool_locality([])


def _brute_nearest(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(idx.shape)
    d_id = np.full(idx.shape, -1, dtype=np.int64)
    d_grid = np.full(idx.shape, -1, dtype=np.int64)
    for r, c in zip(*np.nonzero(idx >= 0)):
        same = idx == idx[r, c]
        same[r, c] = False
        if same.any():
            d_id[r, c] = np.abs((rows * idx.shape[1] + cols)[same] - (r * idx.shape[1] + c)).min()
            d_grid[r, c] = np.maximum(np.abs(rows[same] - r), np.abs(cols[same] - c)).min()
    return d_id, d_grid


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(
    "spec",
    [
        HashSpec(kind="uniform", table_size=37, seed=3, sparsity=0.3),
        HashSpec(kind="neighborhood", radius=2, table_size=50, seed=1),
        HashSpec(kind="dirichlet", alpha=0.01, table_size=40, seed=2),
    ],
    ids=["uniform-sparse", "neighborhood", "dirichlet-skewed"],
)
def test_nearest_partners_are_the_brute_force_distances_and_feed_the_histograms(spec, backend):
    layer = build_map(spec, Architecture((23, 17, 5))).layers[0]
    d_id, d_grid = nearest_partners(layer.indices, spec.table_size, backend)
    want_id, want_grid = _brute_nearest(np.asarray(layer.indices))
    np.testing.assert_array_equal(d_id, want_id)
    np.testing.assert_array_equal(d_grid, want_grid)
    loc = layer_locality("fc0", layer.indices, spec.table_size, backend=backend)
    np.testing.assert_array_equal(np.bincount(d_id[d_id >= 0], minlength=loc.id.histogram.size), loc.id.histogram)


def test_nearest_partners_refuses_a_flat_array():
    with pytest.raises(ValueError, match="must be 2-D"):
        nearest_partners(np.zeros(5, dtype=np.int32), 3)
