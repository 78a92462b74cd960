"""Bit-packed index and sign arrays: the tensors of a ``packed`` index file (format v4, docs/FORMAT.md).

A layer reading a table of ``n`` entries stores each index ``i`` in ``[-1, n)`` as the code ``i + 1`` in
``[0, n]`` (code 0: the weight is fixed at zero) with ``b = n.bit_length() = ceil(log2(n + 1))`` bits; a sign
in {-1, +1} takes one bit (1: +1). The codes of an array, in C order, form one bit stream: code ``j`` fills
stream bits ``[j b, (j + 1) b)``, least significant bit first, and stream bit ``p`` is bit ``p mod 8``
(least significant first) of byte ``p div 8``. The last byte's unused bits are zero, so every array has
exactly one packed form.

Plain numpy, in chunks of :data:`CHUNK` values (about 32 bytes of scratch per value of a chunk).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHUNK",
    "code_bits",
    "packed_size",
    "pack_codes",
    "unpack_codes",
    "pack_indices",
    "unpack_indices",
    "pack_signs",
    "unpack_signs",
    "PackError",
]

CHUNK = 1 << 16
"""Values per chunk (a multiple of 8, so that every chunk starts on a byte)."""


class PackError(ValueError):
    """A packed array breaks the packing rules (wrong size, a code over its bound, non-zero padding)."""


def code_bits(table_size: int) -> int:
    """Bits per packed index of a table of ``table_size`` entries: ``ceil(log2(table_size + 1))``.

    Parameters
    ----------
    table_size : int
        ``n >= 1``; the codes are ``0..n`` (``n + 1`` values: the ``n`` entries and "fixed at zero").

    Returns
    -------
    int
        ``table_size.bit_length()``, in ``[1, 31]`` for ``n <= 2**31 - 1``.

    Raises
    ------
    ValueError
        If ``table_size`` is not an integer in ``[1, 2**31 - 1]``.
    """
    if isinstance(table_size, bool) or not isinstance(table_size, (int, np.integer)) or not 1 <= table_size < 2**31:
        raise ValueError(f"table_size must be an integer in [1, 2**31 - 1], got {table_size!r}")
    return int(table_size).bit_length()


def packed_size(count: int, bits: int) -> int:
    """Bytes of ``count`` codes of ``bits`` bits each: ``ceil(count * bits / 8)``."""
    return -(-count * bits // 8)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integer codes below ``2**bits`` into a little-endian bit stream.

    Parameters
    ----------
    codes : ndarray of any shape, integer, values in ``[0, 2**bits)``
        Read in C order.
    bits : int
        In ``[1, 32]``.

    Returns
    -------
    ndarray of shape (ceil(codes.size * bits / 8),), uint8
        The stream, unused bits of the last byte zero.

    Raises
    ------
    ValueError
        If ``bits`` is out of range or a code does not fit in ``bits`` bits.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    flat = np.ascontiguousarray(codes).reshape(-1)
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"codes must lie in [0, 2**{bits}), got [{flat.min()}, {flat.max()}]")
    out = np.empty(packed_size(flat.size, bits), np.uint8)
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start : start + CHUNK].astype("<u4")  # (m,)
        stream = np.unpackbits(chunk.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]  # (m, b)
        packed = np.packbits(stream.reshape(-1), bitorder="little")
        first = start * bits // 8  # exact: start is a multiple of 8
        out[first : first + packed.size] = packed
    return out


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`.

    Parameters
    ----------
    packed : ndarray of shape (ceil(count * bits / 8),), uint8
    bits : int
        In ``[1, 32]``.
    count : int
        Number of codes.

    Returns
    -------
    ndarray of shape (count,), uint32

    Raises
    ------
    PackError
        If ``packed`` has the wrong size or a non-zero unused bit.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape != (packed_size(count, bits),):
        raise PackError(
            f"{count} codes of {bits} bits take {packed_size(count, bits)} bytes, got {packed.dtype} {packed.shape}"
        )
    _check_padding(packed, count * bits)
    out = np.empty(count, np.uint32)
    for start in range(0, count, CHUNK):
        m = min(CHUNK, count - start)
        first = start * bits // 8
        stream = np.unpackbits(packed[first : first + packed_size(m, bits)], count=m * bits, bitorder="little")
        full = np.zeros((m, 32), np.uint8)  # (m, 32): each code's bits, zero-extended to 32
        full[:, :bits] = stream.reshape(m, bits)
        out[start : start + m] = np.packbits(full, axis=1, bitorder="little").view("<u4").reshape(-1)
    return out


def _check_padding(packed: np.ndarray, used_bits: int) -> None:
    spare = 8 * packed.size - used_bits
    if spare and int(packed[-1]) >> (8 - spare):
        raise PackError(f"the {spare} unused bits of the last byte must be zero, got byte {int(packed[-1]):#04x}")


def pack_indices(indices: np.ndarray, table_size: int) -> np.ndarray:
    """Pack indices in ``[-1, table_size)`` as codes ``index + 1`` of :func:`code_bits` bits.

    Parameters
    ----------
    indices : ndarray of any shape, int16 or int32, values in ``[-1, table_size)``
    table_size : int

    Returns
    -------
    ndarray of shape (ceil(indices.size * code_bits(table_size) / 8),), uint8

    Raises
    ------
    ValueError
        If an index lies outside ``[-1, table_size)``.
    """
    bits = code_bits(table_size)
    flat = np.asarray(indices).reshape(-1)
    if flat.size and (int(flat.min()) < -1 or int(flat.max()) >= table_size):
        raise ValueError(f"indices must lie in [-1, {table_size}), got [{flat.min()}, {flat.max()}]")
    return pack_codes(flat.astype(np.int64) + 1, bits)


def unpack_indices(packed: np.ndarray, table_size: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`pack_indices`.

    Parameters
    ----------
    packed : ndarray, uint8
    table_size : int
    shape : tuple of int
    dtype : numpy dtype
        int16 or int32 (``hashlab.index_dtype(table_size)``).

    Returns
    -------
    ndarray of shape ``shape``, ``dtype``, values in ``[-1, table_size)``

    Raises
    ------
    PackError
        If ``packed`` has the wrong size or non-zero padding, or a code exceeds ``table_size``.
    """
    count = int(np.prod(shape, dtype=np.int64))
    codes = unpack_codes(packed, code_bits(table_size), count)
    if count and int(codes.max()) > table_size:
        raise PackError(f"packed index code {int(codes.max())} exceeds the table's {table_size} entries")
    out = np.empty(count, dtype)
    np.subtract(codes, 1, out=out, casting="unsafe")  # codes <= table_size fit dtype after - 1
    return out.reshape(shape)


def pack_signs(sign: np.ndarray) -> np.ndarray:
    """Pack signs in {-1, +1} to one bit each (1: +1).

    Parameters
    ----------
    sign : ndarray of any shape, int8, values in {-1, +1}

    Returns
    -------
    ndarray of shape (ceil(sign.size / 8),), uint8

    Raises
    ------
    ValueError
        If a value is neither -1 nor +1.
    """
    flat = np.asarray(sign).reshape(-1)
    if flat.size and not np.all((flat == 1) | (flat == -1)):
        raise ValueError("sign values must be -1 or +1")
    return np.packbits(flat > 0, bitorder="little")


def unpack_signs(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_signs`.

    Returns
    -------
    ndarray of shape ``shape``, int8, values in {-1, +1}

    Raises
    ------
    PackError
        If ``packed`` has the wrong size or non-zero padding.
    """
    count = int(np.prod(shape, dtype=np.int64))
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape != (packed_size(count, 1),):
        raise PackError(f"{count} signs take {packed_size(count, 1)} bytes, got {packed.dtype} {packed.shape}")
    _check_padding(packed, count)
    bits = np.unpackbits(packed, count=count, bitorder="little").astype(np.int8)
    return (2 * bits - 1).astype(np.int8).reshape(shape)
