"""Bit packing of index and sign arrays (format v4 "packed"): the documented bit order, a bit-by-bit reference
twin, round trips and refusal of malformed streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashlab.io.bitpack import (
    CHUNK,
    PackError,
    code_bits,
    pack_codes,
    pack_indices,
    pack_signs,
    packed_size,
    unpack_codes,
    unpack_indices,
    unpack_signs,
)


def pack_ref(codes: list[int], bits: int) -> bytes:
    """docs/FORMAT.md, word for word: code j fills stream bits [j b, (j + 1) b), least significant bit first;
    stream bit p is bit p mod 8 of byte p div 8; unused bits zero."""
    out = bytearray(math.ceil(len(codes) * bits / 8))
    for j, code in enumerate(codes):
        for q in range(bits):
            p = j * bits + q
            out[p // 8] |= ((code >> q) & 1) << (p % 8)
    return bytes(out)


def test_a_hand_computed_stream():
    # n = 4: 3 bits; indices -1, 0, 3 -> codes 0, 1, 4 -> stream bits (LSB first) 000 100 001: bits 3 and 8 set
    assert code_bits(4) == 3
    assert pack_indices(np.array([-1, 0, 3], np.int16), 4).tolist() == [0b00001000, 0b00000001]
    assert pack_signs(np.array([1, -1, -1, 1, 1, 1, 1, 1, -1, 1], np.int8)).tolist() == [0b11111001, 0b00000010]


@pytest.mark.parametrize(
    "n,bits",
    [(1, 1), (2, 2), (3, 2), (4, 3), (1000, 10), (1023, 10), (1024, 11), (2**15 - 1, 15), (2**15, 16), (2**31 - 1, 31)],
)
def test_code_bits_is_ceil_log2_of_n_plus_1(n, bits):
    assert code_bits(n) == bits == math.ceil(math.log2(n + 1))


@pytest.mark.parametrize("bad", [0, -3, 2**31, 1.0, True, "8"])
def test_code_bits_refuses_impossible_table_sizes(bad):
    with pytest.raises(ValueError, match=r"table_size must be an integer in \[1, 2\*\*31 - 1\]"):
        code_bits(bad)


codes_and_bits = st.integers(1, 32).flatmap(
    lambda b: st.tuples(st.lists(st.integers(0, 2**b - 1), max_size=70), st.just(b))
)


@given(codes_and_bits)
def test_packing_matches_the_bit_by_bit_reference(case):
    codes, bits = case
    packed = pack_codes(np.array(codes, np.uint64), bits)
    assert packed.dtype == np.uint8 and packed.shape == (packed_size(len(codes), bits),)
    assert packed.tobytes() == pack_ref(codes, bits)
    assert unpack_codes(packed, bits, len(codes)).tolist() == codes


@given(st.integers(1, 2**31 - 1).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(-1, min(n, 300) - 1)))))
def test_indices_round_trip_in_their_dtype(case):
    n, values = case
    dtype = np.int16 if n <= 2**15 else np.int32
    indices = np.array(values, dtype).reshape(-1, 1) if values else np.zeros((0, 1), dtype)
    back = unpack_indices(pack_indices(indices, n), n, indices.shape, dtype)
    assert back.dtype == dtype and back.shape == indices.shape
    np.testing.assert_array_equal(back, indices)


@pytest.mark.parametrize("count", [CHUNK - 1, CHUNK, CHUNK + 13, 3 * CHUNK + 5])
@pytest.mark.parametrize("n", [1, 1000, 40000])
def test_streams_longer_than_a_chunk(count, n):
    rng = np.random.default_rng(count + n)
    dtype = np.int16 if n <= 2**15 else np.int32
    indices = rng.integers(-1, n, size=(count,)).astype(dtype)
    packed = pack_indices(indices, n)
    assert packed.size == packed_size(count, code_bits(n))
    np.testing.assert_array_equal(unpack_indices(packed, n, (count,), dtype), indices)
    head = indices[:100].astype(np.int64) + 1
    assert packed[: packed_size(96, code_bits(n))].tobytes() == pack_ref(head[:96].tolist(), code_bits(n))


@given(st.lists(st.sampled_from([-1, 1]), max_size=40), st.integers(1, 3))
def test_signs_round_trip(values, rows):
    sign = np.array(values * rows, np.int8).reshape(rows, -1)
    packed = pack_signs(sign)
    assert packed.tobytes() == pack_ref([int(v > 0) for v in sign.reshape(-1)], 1)
    np.testing.assert_array_equal(unpack_signs(packed, sign.shape), sign)


def test_the_largest_int16_table_does_not_wrap():
    n = 2**15  # 16-bit codes, up to 32768: index 32767 is the largest int16
    indices = np.array([-1, 0, 32767], np.int16)
    np.testing.assert_array_equal(unpack_indices(pack_indices(indices, n), n, (3,), np.int16), indices)


MALFORMED = [
    ("padding", lambda: (np.array([0b10000000], np.uint8), 3, 2), "unused bits of the last byte must be zero"),
    ("short", lambda: (np.zeros(1, np.uint8), 3, 3), "3 codes of 3 bits take 2 bytes"),
    ("long", lambda: (np.zeros(3, np.uint8), 3, 3), "take 2 bytes"),
    ("dtype", lambda: (np.zeros(2, np.int8), 3, 3), "take 2 bytes, got int8"),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_streams_are_refused(make, match):
    packed, bits, count = make()
    with pytest.raises(PackError, match=match):
        unpack_codes(packed, bits, count)


def test_a_code_over_the_table_is_refused():
    packed = pack_codes(np.array([0, 5, 7]), 3)  # n = 4: codes 0..4; 5 and 7 fit 3 bits but name no entry
    with pytest.raises(PackError, match="code 7 exceeds the table's 4 entries"):
        unpack_indices(packed, 4, (3,), np.int16)


def test_signs_with_bad_padding_or_values_are_refused():
    with pytest.raises(PackError, match="unused bits"):
        unpack_signs(np.array([0b00001000], np.uint8), (3,))
    with pytest.raises(PackError, match="3 signs take 1 bytes"):
        unpack_signs(np.zeros(2, np.uint8), (3,))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        pack_signs(np.array([1, 0], np.int8))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: pack_indices(np.array([4], np.int16), 4), r"must lie in \[-1, 4\)"),
        (lambda: pack_indices(np.array([-2], np.int16), 4), r"must lie in \[-1, 4\)"),
        (lambda: pack_codes(np.array([8]), 3), r"must lie in \[0, 2\*\*3\)"),
        (lambda: pack_codes(np.array([1]), 33), r"bits must be in \[1, 32\]"),
        (lambda: unpack_codes(np.zeros(0, np.uint8), 0, 0), r"bits must be in \[1, 32\]"),
    ],
    ids=["index-high", "index-low", "code", "bits-pack", "bits-unpack"],
)
def test_values_that_do_not_fit_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
