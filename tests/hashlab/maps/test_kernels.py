"""numba kernels agree bit for bit with their numpy twins; XXH64 equals the reference library."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from hashlab.maps import kernels as K

seeds = st.integers(0, 2**64 - 1)
u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
id_arrays = st.lists(st.integers(0, 2**40), min_size=0, max_size=300).map(lambda v: np.array(v, dtype=np.int64))
tables = st.integers(1, 70000)


@given(st.lists(u64, max_size=50), seeds)
def test_xxh64_u64_matches_xxhash_library(values, seed):
    x = np.array(values, dtype=np.uint64)
    expected = np.array([xxhash.xxh64_intdigest(v.to_bytes(8, "little"), seed) for v in values], dtype=np.uint64)
    np.testing.assert_array_equal(K.xxh64_u64_ref(x, seed), expected)


@given(st.lists(st.tuples(u32, u32, u32), max_size=50), seeds)
def test_xxh64_key_matches_xxhash_library(keys, seed):
    layer = np.array([k[0] for k in keys], dtype=np.uint64)
    row = np.array([k[1] for k in keys], dtype=np.uint64)
    col = np.array([k[2] for k in keys], dtype=np.uint64)
    lane = layer | (row << np.uint64(32))
    expected = np.array([xxhash.xxh64_intdigest(struct.pack("<III", *k), seed) for k in keys], dtype=np.uint64)
    np.testing.assert_array_equal(K.xxh64_key_ref(lane, col, seed), expected)


@given(id_arrays, tables, st.integers(0, 100000), st.integers(1, 3000), seeds)
def test_reference_hashes_stay_in_the_table(ids, n, radius, m, seed):
    inner = np.cumsum(np.random.default_rng(seed % 2**32).dirichlet(np.full(m, 1.0)))[:-1]
    s = np.uint64(seed)
    for a, size in (
        (K.uniform_ref(ids, n, s), n),
        (K.neighborhood_ref(ids, n, radius, s), n),
        (K.categorical_ref(ids, inner, s), m),
    ):
        assert a.dtype == np.int64 and (a.size == 0 or (a.min() >= 0 and a.max() < size))


def test_categorical_never_picks_zero_probability_entries():
    p = np.zeros(10)
    p[[2, 7]] = [0.25, 0.75]
    ids = np.arange(20000, dtype=np.int64)
    idx = K.categorical_ref(ids, np.cumsum(p)[:-1], np.uint64(3))
    counts = np.bincount(idx, minlength=10)
    assert set(np.flatnonzero(counts)) == {2, 7}
    assert abs(counts[7] / ids.size - 0.75) < 0.02  # 0.02 is > 6 standard errors


def test_unit_float_is_in_half_open_interval():
    h = np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)
    u = K.unit_float_ref(h)
    assert u[0] == 0.0 and u[1] < 1.0 and u[2] == 0.5


# ------------------------------------------------------------------ layer kernels of build_map's numba path
starts = st.integers(0, 2**40)
sizes = st.integers(0, 3000)
out_dtypes = st.sampled_from([np.int16, np.int32, np.int64])


@given(st.integers(1, 3000), st.sampled_from([0.001, 0.05, 1.0, 100.0]), seeds, st.integers(1, 16))
def test_guide_table_cells_are_the_categorical_draw_at_their_left_edge(n, alpha, seed, bits):
    inner = np.cumsum(np.random.default_rng(seed % 2**32).dirichlet(np.full(n, alpha)))[:-1]
    g = K.guide_table(inner, bits)
    edges = np.arange(2**bits + 1) / 2**bits
    np.testing.assert_array_equal(g, [np.sum(inner <= e) for e in edges])
    assert np.all(np.diff(g) >= 0)


@given(starts, sizes, st.integers(1, 3000), st.sampled_from([0.001, 0.05, 1.0, 100.0]), seeds)
def test_categorical_guide_table_kernel_is_bit_identical_to_the_binary_search(start, size, n, alpha, seed):
    p = np.random.default_rng(seed % 2**32).dirichlet(np.full(n, alpha))  # alpha=0.001: long runs of equal CDF values
    inner = np.cumsum(p)[:-1]
    ids = np.arange(start, start + size, dtype=np.int64)
    out = K.categorical_fill_nb(start, inner, K.guide_table(inner), np.uint64(seed), np.empty(size, np.int32))
    np.testing.assert_array_equal(out, K.categorical_ref(ids, inner, np.uint64(seed)))


def test_categorical_guide_table_on_the_paper_table_matches_the_reference_on_a_million_draws():
    inner = np.cumsum(np.random.default_rng(5).dirichlet(np.full(1000, 0.1)))[:-1]
    ids = np.arange(10**6, dtype=np.int64) + 12345
    out = K.categorical_fill_nb(12345, inner, K.guide_table(inner), np.uint64(9), np.empty(10**6, np.int16))
    np.testing.assert_array_equal(out, K.categorical_ref(ids, inner, np.uint64(9)))


@given(starts, sizes, tables, st.integers(0, 100000), seeds, out_dtypes)
def test_fill_kernels_agree_with_the_reference_twins(start, size, n, radius, seed, dt):
    ids = np.arange(start, start + size, dtype=np.int64)
    s = np.uint64(seed)
    if dt is np.int16:
        n = min(n, 32768)
    np.testing.assert_array_equal(K.uniform_fill_nb(start, n, s, np.empty(size, dt)), K.uniform_ref(ids, n, s))
    np.testing.assert_array_equal(
        K.neighborhood_fill_nb(start, n, radius, s, np.empty(size, dt)), K.neighborhood_ref(ids, n, radius, s)
    )
    np.testing.assert_array_equal(K.modulus_fill(start, n, np.empty(size, dt)), ids % n)


@given(st.integers(0, 2**32 - 1), st.integers(0, 60), st.integers(0, 60), tables, seeds)
def test_xxhash_and_sign_fill_kernels_agree_with_the_reference_twins(layer, rows, cols, n, seed):
    r, c = np.divmod(np.arange(rows * cols, dtype=np.int64), max(cols, 1))
    np.testing.assert_array_equal(
        K.xxhash_index_fill_nb(layer, n, np.uint64(seed), np.empty((rows, cols), np.int32)),
        K.xxhash_index_ref(layer, r, c, n, seed).reshape(rows, cols),
    )
    np.testing.assert_array_equal(
        K.sign_fill_nb(layer, np.uint64(seed), np.empty((rows, cols), np.int8)),
        K.sign_ref(layer, r, c, seed).reshape(rows, cols),
    )


def _masked_reference(values, n_zero, seed):
    ref = values.copy()
    ref[K.mask_positions_ref(values.size, n_zero, seed)] = -1
    return ref


@given(st.integers(0, 5000), st.floats(0, 1), seeds)
def test_fill_mask_zeroes_exactly_the_smallest_mask_hashes(size, frac, seed):
    n_zero = int(round(frac * size))
    values = K.uniform_ref(np.arange(size, dtype=np.int64), 1000, np.uint64(1)).astype(np.int16)
    out = values.copy()
    K.fill_mask_nb(out, n_zero, np.uint64(seed), lambda pos: values[pos])
    np.testing.assert_array_equal(out, _masked_reference(values, n_zero, seed))


@given(
    st.integers(1, 3000),
    st.floats(0.01, 1),
    seeds,
    st.sampled_from([(0, 0), (0, 2**63), (2**63, 2**64 - 1), (2**62, 2**62 + 1000)]),
)
def test_fill_mask_falls_back_to_the_exact_selection_when_the_window_misses(size, frac, seed, window):
    n_zero = max(1, int(round(frac * size)))
    values = K.uniform_ref(np.arange(size, dtype=np.int64), 1000, np.uint64(1)).astype(np.int32)
    out = values.copy()

    def refill(pos):
        if pos is None:
            out[:] = values
            return None
        return values[pos]

    K.fill_mask_nb(out, n_zero, np.uint64(seed), refill, _window=tuple(np.uint64(w) for w in window))
    np.testing.assert_array_equal(out, _masked_reference(values, n_zero, seed))


@given(st.lists(st.sampled_from([-2, -1, 0, 5, 999]), max_size=400), out_dtypes)
def test_mask_census_counts_zeros_and_lists_candidates_in_order(values, dt):
    out = np.array(values, dtype=dt)
    zeros, pos = K._mask_census(out)
    assert zeros == np.count_nonzero(out == K.ZERO_INDEX)
    assert pos.dtype == np.int64
    np.testing.assert_array_equal(pos, np.flatnonzero(out == -2))


_EDGE_U64 = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
divisors = st.one_of(
    st.integers(1, 70000),
    st.integers(1, 2**64 - 1),
    st.sampled_from([1, 2, 3, 7, 1000, 1024, 2**31 - 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]),
)


@given(st.lists(u64, max_size=200), divisors)
def test_divide_magic_mod_is_exactly_the_remainder(values, d):
    mp, sh1, sh2 = K.divide_magic(d)
    got = [int(K._mod_magic(np.uint64(v), np.uint64(d), mp, sh1, sh2)) for v in values + _EDGE_U64]
    assert got == [v % d for v in values + _EDGE_U64]


def test_divide_magic_refuses_a_divisor_outside_the_uint64_range():
    for d in (0, 2**64):
        with pytest.raises(ValueError, match="divisor"):
            K.divide_magic(d)


@given(st.integers(0, 5 * K.MASK_CHUNK + 7), st.floats(0, 1), seeds, st.sampled_from([None, 0, 1, 3]), out_dtypes)
def test_chunked_mask_equals_the_reference_selection_across_chunks_and_candidate_overflow(size, frac, seed, cap, dt):
    # cap 0..3 makes most chunks overflow their candidate list and be rescanned
    n_zero = int(round(frac * size))
    values = K.uniform_ref(np.arange(size, dtype=np.int64), 1000, np.uint64(1)).astype(dt)
    out = values.copy()
    K.fill_mask_nb(out, n_zero, np.uint64(seed), lambda pos: values[pos], _cap=cap)
    np.testing.assert_array_equal(out, _masked_reference(values, n_zero, seed))


@given(st.integers(0, 50), st.integers(1, 70000), st.integers(0, 2**31 - 1), seeds)
def test_neighborhood_fill_wraps_negative_positions_like_python_mod(start, n, radius, seed):
    # the first radius identifiers can step below 0: Python's (and numpy's) mod wraps them to n - ...
    ids = np.arange(start, start + 300, dtype=np.int64)
    np.testing.assert_array_equal(
        K.neighborhood_fill_nb(start, n, radius, np.uint64(seed), np.empty(300, np.int32)),
        K.neighborhood_ref(ids, n, radius, np.uint64(seed)),
    )


@given(starts, st.integers(0, 40), st.integers(1, 40), tables, st.integers(0, 3000), st.floats(0, 1), seeds, out_dtypes)
def test_both_backends_of_the_registry_fill_a_layer_bit_for_bit_alike(start, rows, cols, n, radius, frac, seed, dt):
    if dt is np.int16:
        n = min(n, 32768)
    inner = np.cumsum(np.random.default_rng(seed % 2**32).dirichlet(np.full(min(n, 3000), 0.5)))[:-1]
    guide = K.guide_table(inner)
    s = np.uint64(seed)
    size = rows * cols
    n_zero = int(round(frac * size))
    values = K.uniform_ref(np.arange(size, dtype=np.int64), n, np.uint64(1)).astype(dt)
    layers = {}
    for backend in K.BACKENDS:
        k = K.kernels(backend)
        layers[backend] = [
            k.uniform(start, n, s, np.empty(size, dt)),
            k.categorical(start, inner, guide, s, np.empty(size, dt)),
            k.neighborhood(start, n, radius, s, np.empty(size, dt)),
            k.modulus(start, n, np.empty(size, dt)),
            k.xxhash_index(rows, n, s, np.empty((rows, cols), dt)),
            k.block(start, cols, radius % (cols + 2) + 1, n, s, np.empty(size, dt)),
            k.sign(rows, s, np.empty((rows, cols), np.int8)),
            k.mask(values.copy(), n_zero, s, lambda pos: values[pos]),
        ]
    for got, want in zip(layers["numba"], layers["numpy"]):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@given(starts, st.integers(1, 6), st.integers(1, 12), st.integers(1, 15), st.integers(1, 40), seeds)
def test_block_hash_reads_contiguous_runs_from_the_hash_of_each_block_start(start, rows, cols, block, n, seed):
    """ROBE-Z by its definition, one weight at a time: block start ``xxh64(first identifier) mod n``, then ``+j``."""
    s = np.uint64(seed)
    got = K.block_fill_nb(start, cols, block, n, s, np.empty(rows * cols, np.int32)).reshape(rows, cols)
    for r in range(rows):
        for c in range(cols):
            first = start + r * cols + (c // block) * block  # identifier of the block's first weight
            head = int(K.xxh64_u64_ref(np.array([first], np.uint64), s)[0]) % n
            assert got[r, c] == (head + c % block) % n
    np.testing.assert_array_equal(
        got.reshape(-1), K.block_ref(start + np.arange(rows * cols), np.arange(rows * cols) % cols, block, n, s)
    )


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="numba"):
        K.kernels("cuda")
