"""numba kernels agree bit for bit with their numpy twins; XXH64 equals the reference library."""
from __future__ import annotations

import struct

import numpy as np
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
    np.testing.assert_array_equal(K.xxh64_u64_nb(x, np.uint64(seed)), expected)


@given(st.lists(st.tuples(u32, u32, u32), max_size=50), seeds)
def test_xxh64_key_matches_xxhash_library(keys, seed):
    layer = np.array([k[0] for k in keys], dtype=np.uint64)
    row = np.array([k[1] for k in keys], dtype=np.uint64)
    col = np.array([k[2] for k in keys], dtype=np.uint64)
    lane = layer | (row << np.uint64(32))
    expected = np.array([xxhash.xxh64_intdigest(struct.pack("<III", *k), seed) for k in keys], dtype=np.uint64)
    np.testing.assert_array_equal(K.xxh64_key_ref(lane, col, seed), expected)
    np.testing.assert_array_equal(K.xxh64_key_nb(lane, col, np.uint64(seed)), expected)


@given(id_arrays, tables, seeds)
def test_uniform_twins_agree(ids, n, seed):
    a = K.uniform_nb(ids, n, np.uint64(seed))
    np.testing.assert_array_equal(a, K.uniform_ref(ids, n, np.uint64(seed)))
    assert a.size == 0 or (a.min() >= 0 and a.max() < n)


@given(id_arrays, st.integers(1, 3000), st.floats(0.01, 100), seeds)
def test_categorical_twins_agree(ids, n, alpha, seed):
    p = np.random.default_rng(seed % 2**32).dirichlet(np.full(n, alpha))
    inner = np.cumsum(p)[:-1]
    a = K.categorical_nb(ids, inner, np.uint64(seed))
    np.testing.assert_array_equal(a, K.categorical_ref(ids, inner, np.uint64(seed)))
    assert a.size == 0 or (a.min() >= 0 and a.max() < n)


@given(id_arrays, tables, st.integers(0, 100000), seeds)
def test_neighborhood_twins_agree(ids, n, radius, seed):
    a = K.neighborhood_nb(ids, n, radius, np.uint64(seed))
    np.testing.assert_array_equal(a, K.neighborhood_ref(ids, n, radius, np.uint64(seed)))
    assert a.size == 0 or (a.min() >= 0 and a.max() < n)


@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(u32, u32), max_size=200), tables, seeds)
def test_xxhash_index_and_sign_twins_agree(layer, rc, n, seed):
    rows = np.array([r for r, _ in rc], dtype=np.int64)
    cols = np.array([c for _, c in rc], dtype=np.int64)
    np.testing.assert_array_equal(K.xxhash_index_nb(layer, rows, cols, n, np.uint64(seed)),
                                  K.xxhash_index_ref(layer, rows, cols, n, seed))
    s = K.sign_nb(layer, rows, cols, np.uint64(seed))
    np.testing.assert_array_equal(s, K.sign_ref(layer, rows, cols, seed))
    assert s.dtype == np.int8 and set(np.unique(s)) <= {-1, 1}


def test_categorical_never_picks_zero_probability_entries():
    p = np.zeros(10)
    p[[2, 7]] = [0.25, 0.75]
    ids = np.arange(20000, dtype=np.int64)
    idx = K.categorical_nb(ids, np.cumsum(p)[:-1], np.uint64(3))
    counts = np.bincount(idx, minlength=10)
    assert set(np.flatnonzero(counts)) == {2, 7}
    assert abs(counts[7] / ids.size - 0.75) < 0.02  # 0.02 is > 6 standard errors


def test_unit_float_is_in_half_open_interval():
    h = np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)
    u = K.unit_float_ref(h)
    assert u[0] == 0.0 and u[1] < 1.0 and u[2] == 0.5
