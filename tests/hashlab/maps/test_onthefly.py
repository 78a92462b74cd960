"""Hashing on the fly: the per-row kernels give build_map's indices and signs bit for bit, in O(1) memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import ZERO, Architecture, HashSpec, SpecError, build_map
from hashlab.maps.onthefly import LayerHash, mask_threshold, mask_threshold_ref
from tests.hashlab.maps.test_hashes import BIG_CASES, archs, specs


def _dense(layer) -> tuple[np.ndarray, np.ndarray]:
    idx = layer.indices.astype(np.int64)
    sign = layer.sign if layer.sign is not None else np.ones(idx.shape, np.int8)
    return idx, sign


def _check_every_layer(spec: HashSpec, arch: Architecture) -> None:
    imap = build_map(spec, arch)
    for k, layer in enumerate(imap.layers):
        lh = LayerHash.from_spec(spec, arch.layer_shapes, k)
        assert lh.table == layer.table and lh.n == spec.table_plan(arch.layer_shapes).weights[layer.table]
        idx, sign = _dense(layer)
        got, got_sign = lh.entries()
        np.testing.assert_array_equal(got, idx)
        np.testing.assert_array_equal(got_sign, sign)
        ref, ref_sign = lh.entries_ref()
        np.testing.assert_array_equal(ref, idx)
        np.testing.assert_array_equal(ref_sign, sign)


@settings(max_examples=60, deadline=None)
@given(specs(), archs)
def test_the_kernels_and_their_twin_rebuild_build_maps_indices_and_signs(spec, arch):
    _check_every_layer(spec, arch)


@pytest.mark.parametrize("spec", BIG_CASES, ids=lambda s: f"{s.kind}-n{s.table_size}-s{s.sparsity}-{s.scope}")
def test_layers_big_enough_for_build_maps_numba_path_are_rebuilt_too(spec):
    _check_every_layer(spec, Architecture((210, 160, 40)))


def test_a_row_range_is_that_slice_of_the_layer():
    spec = HashSpec(kind="dirichlet", alpha=0.3, table_size=50, seed=3, sparsity=0.4, sign=True)
    lh = LayerHash.from_spec(spec, [(37, 29)], 0)
    whole, whole_sign = lh.entries()
    part, part_sign = lh.entries(5, 19)
    np.testing.assert_array_equal(part, whole[5:19])
    np.testing.assert_array_equal(part_sign, whole_sign[5:19])
    with pytest.raises(ValueError, match="not inside"):
        lh.entries(30, 38)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 5000), frac=st.floats(0, 1), seed=st.integers(0, 2**64 - 1), collect=st.sampled_from([0, 3]))
def test_the_radix_select_finds_the_partitions_threshold(size, frac, seed, collect):
    """``collect=0`` forces all four 16-bit passes; 3 stops early on a small bin."""
    n_zero = min(size, max(1, round(frac * size)))
    t = mask_threshold(size, n_zero, np.uint64(seed), _collect=collect)
    assert t == mask_threshold_ref(size, n_zero, np.uint64(seed))


def test_the_threshold_zeroes_exactly_the_maps_zeros_on_a_large_layer():
    spec = HashSpec(kind="uniform", table_size=1000, seed=11, sparsity=0.9)
    arch = Architecture((3000, 400))  # 1.2M weights: build_map's windowed numba mask
    lh = LayerHash.from_spec(spec, arch.layer_shapes, 0)
    got, _ = lh.entries()
    want = build_map(spec, arch).layers[0].indices
    np.testing.assert_array_equal(got == ZERO, want == ZERO)
    assert int((got == ZERO).sum()) == round(0.9 * 1_200_000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reading_rows_gathers_the_table_and_scattering_adds_in_row_major_order(dtype):
    spec = HashSpec(kind="xxhash", table_size=64, seed=5, sparsity=0.3, sign=True)
    lh = LayerHash.from_spec(spec, [(23, 41)], 0)
    rng = np.random.default_rng(0)
    table = rng.normal(size=64).astype(dtype)
    idx, sign = lh.entries_ref()
    live = idx >= 0
    want_w = np.where(live, table[np.where(live, idx, 0)] * sign, 0).astype(dtype)
    w = np.empty(23 * 41, dtype)
    np.testing.assert_array_equal(lh.read_rows(table, 0, 23, w).reshape(23, 41), want_w)

    grad = rng.normal(size=(23, 41)).astype(dtype)
    acc = np.zeros(64, dtype)
    w2 = np.empty(23 * 41, dtype)
    for r0 in range(0, 23, 7):  # in tiles, as a layer does
        r1 = min(23, r0 + 7)
        lh.read_scatter_rows(table, r0, r1, w2[r0 * 41 : r1 * 41], grad[r0:r1].ravel(), acc)
    want_acc = np.zeros(64, dtype)
    np.add.at(want_acc, idx[live], (grad * sign)[live])  # unbuffered, in the order given: row-major
    np.testing.assert_array_equal(acc, want_acc)
    np.testing.assert_array_equal(w2.reshape(23, 41), want_w)


def test_resident_bytes_do_not_grow_with_the_layer():
    small = LayerHash.from_spec(HashSpec(kind="xxhash", table_size=1000, sign=True), [(10, 10)], 0)
    huge = LayerHash.from_spec(HashSpec(kind="xxhash", table_size=1000, sign=True), [(100_000, 100_000)], 0)
    assert small.nbytes == huge.nbytes < 256


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(SpecError, match="HashSpec"):
        LayerHash.from_spec({"kind": "uniform"}, [(3, 4)], 0)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="out of range"):
        LayerHash.from_spec(HashSpec(kind="uniform", table_size=10), [(3, 4)], 1)
    with pytest.raises(SpecError, match=">= 1"):
        LayerHash.from_spec(HashSpec(kind="uniform", table_size=10), [(0, 4)], 0)
    with pytest.raises(ValueError, match="n_zero"):
        mask_threshold(10, 11, np.uint64(0))
