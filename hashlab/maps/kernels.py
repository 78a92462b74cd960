"""Index-generation kernels: numba versions and their plain-numpy reference twins.

Every random choice in hashlab is a *stateless* function of ``(stream seed, counter)``:
the counter is a weight's identifier and the random bits are ``xxh64(counter, seed)``
(XXH64, Collet 2012-2019; the 8-byte little-endian encoding of the counter is hashed).
This makes generation embarrassingly parallel and bit-reproducible: the same seed gives the
same indices on every run, thread count and platform.

Each ``*_nb`` kernel (numba, ``parallel=True``) has a ``*_ref`` twin written with vectorised
numpy. The twins are what a reader checks the math against; ``tests/hashlab/maps/test_kernels.py``
shows that each pair agrees bit for bit, and that :func:`xxh64_u64_ref` and
:func:`xxh64_key_ref` equal the reference ``xxhash`` library.

:func:`kernels` is the stage's one registry: a backend's :class:`MapKernels` fills one layer
(the ``*_fill_nb`` kernels, or the ``*_fill_ref`` twins that call the ``*_ref`` hashes), and
:func:`hashlab.maps.hashes.build_map` calls them by name.

Conventions
-----------
* ``ids`` are int64 identifiers (row-major position of a weight, see :mod:`hashlab.maps.hashes`).
* Outputs named ``idx`` are int64 entries in ``[0, n)``; callers narrow the dtype.
* All uint64 arithmetic wraps modulo 2**64, as in the C reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numba as nb
import numpy as np

from ..backends import BACKENDS, select

__all__ = [
    "xxh64_u64_ref",
    "xxh64_key_ref",
    "uniform_ref",
    "categorical_ref",
    "neighborhood_ref",
    "xxhash_index_ref",
    "block_ref",
    "sign_ref",
    "unit_float_ref",
    "guide_table",
    "GUIDE_BITS",
    "uniform_fill_nb",
    "categorical_fill_nb",
    "neighborhood_fill_nb",
    "modulus_fill",
    "xxhash_index_fill_nb",
    "block_fill_nb",
    "sign_fill_nb",
    "fill_mask_nb",
    "mask_positions_ref",
    "divide_magic",
    "uniform_fill_ref",
    "categorical_fill_ref",
    "neighborhood_fill_ref",
    "modulus_fill_ref",
    "xxhash_index_fill_ref",
    "block_fill_ref",
    "sign_fill_ref",
    "mask_ref",
    "MapKernels",
    "kernels",
    "BACKENDS",
]

_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)
_LEN8 = np.uint64(8)
_LEN12 = np.uint64(12)
_MASK32 = np.uint64(0xFFFFFFFF)
_U = [np.uint64(k) for k in range(65)]  # typed shift amounts
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


# --------------------------------------------------------------------------- numpy twins
def _rotl_ref(x, r):
    return (x << _U[r]) | (x >> _U[64 - r])


def _avalanche_ref(h):
    h = h ^ (h >> _U[33])
    h = h * _P2
    h = h ^ (h >> _U[29])
    h = h * _P3
    return h ^ (h >> _U[32])


def _lane_ref(h, lane):
    k1 = _rotl_ref(lane * _P2, 31) * _P1
    h = h ^ k1
    return _rotl_ref(h, 27) * _P1 + _P4


def xxh64_u64_ref(x, seed):
    """XXH64 of the 8-byte little-endian encoding of each ``x`` (numpy reference).

    Parameters
    ----------
    x : ndarray of uint64, any shape
    seed : int or numpy.uint64, in [0, 2**64)

    Returns
    -------
    ndarray of uint64, same shape as ``x``
        ``xxhash.xxh64_intdigest(int(v).to_bytes(8, "little"), seed)`` for each ``v``.
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.uint64(seed) + _P5 + _LEN8 + np.zeros_like(x)
        return _avalanche_ref(_lane_ref(h, x))


def xxh64_key_ref(lane, tail, seed):
    """XXH64 of a 12-byte key: 8-byte little-endian ``lane`` then 4-byte ``tail`` (numpy reference).

    HashedNets' layer-wise key ``(layer, row, col)`` as three little-endian uint32 is
    ``lane = layer | row << 32`` and ``tail = col``.

    Parameters
    ----------
    lane : ndarray of uint64
    tail : ndarray of uint64, values in [0, 2**32)
    seed : int or numpy.uint64

    Returns
    -------
    ndarray of uint64, broadcast shape of ``lane`` and ``tail``
    """
    lane = np.asarray(lane, dtype=np.uint64)
    tail = np.asarray(tail, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.uint64(seed) + _P5 + _LEN12 + np.zeros(np.broadcast(lane, tail).shape, np.uint64)
        h = _lane_ref(h, lane)
        h = h ^ ((tail & _MASK32) * _P1)
        h = _rotl_ref(h, 23) * _P2 + _P3
        return _avalanche_ref(h)


def unit_float_ref(h):
    """Map uint64 hashes to float64 in [0, 1) using their top 53 bits (numpy reference)."""
    return (np.asarray(h, np.uint64) >> _U[11]).astype(np.float64) * _INV53


def uniform_ref(ids, n, seed):
    """Uniform hash, paper eq. 2: ``xxh64(id, seed) mod n``.

    Parameters
    ----------
    ids : ndarray of int64, shape (N,), non-negative
    n : int, table size, >= 1
    seed : numpy.uint64, stream seed

    Returns
    -------
    ndarray of int64, shape (N,), in [0, n)
    """
    return (xxh64_u64_ref(ids.astype(np.uint64), seed) % np.uint64(n)).astype(np.int64)


def categorical_ref(ids, inner_cdf, seed):
    """Categorical draw per identifier, paper eq. 9 (numpy reference).

    ``u = top53(xxh64(id, seed)) / 2**53`` and the entry is the number of ``inner_cdf``
    values ``<= u`` (``np.searchsorted(..., side="right")``).

    Parameters
    ----------
    ids : ndarray of int64, shape (N,)
    inner_cdf : ndarray of float64, shape (n - 1,), the cumulative sum of the entry
        probabilities without its last element; non-decreasing.
    seed : numpy.uint64

    Returns
    -------
    ndarray of int64, shape (N,), in [0, n)
    """
    u = unit_float_ref(xxh64_u64_ref(ids.astype(np.uint64), seed))
    return np.searchsorted(inner_cdf, u, side="right").astype(np.int64)


def neighborhood_ref(ids, n, radius, seed):
    """Neighborhood hash, paper eq. 10: ``(id + U{-r..r}) mod n`` (numpy reference).

    The offset is ``xxh64(id, seed) mod (2r + 1) - r``.

    Parameters
    ----------
    ids : ndarray of int64, shape (N,)
    n : int, table size
    radius : int, >= 0
    seed : numpy.uint64

    Returns
    -------
    ndarray of int64, shape (N,), in [0, n)
    """
    width = np.uint64(2 * radius + 1)
    off = (xxh64_u64_ref(ids.astype(np.uint64), seed) % width).astype(np.int64) - radius
    return np.mod(ids + off, n)


def xxhash_index_ref(layer, rows, cols, n, seed):
    """HashedNets index (Chen et al. 2015): ``xxh64(<layer,row,col as 3 x uint32 LE>, seed) mod n``.

    Parameters
    ----------
    layer : int, in [0, 2**32)
    rows, cols : ndarray of int64, same shape, in [0, 2**32)
    n : int
    seed : int, in [0, 2**64)

    Returns
    -------
    ndarray of int64, same shape, in [0, n)
    """
    lane = np.uint64(layer) | (rows.astype(np.uint64) << _U[32])
    h = xxh64_key_ref(lane, cols.astype(np.uint64), np.uint64(seed))
    return (h % np.uint64(n)).astype(np.int64)


def block_ref(ids, cols, block, n, seed):
    """Block hash (ROBE-Z, Desai et al. 2022): each run of ``block`` weights of a row reads a contiguous run of entries.

    A row is cut into blocks of ``block`` consecutive columns (the last one shorter when ``block`` does not divide
    the row); the block starting at identifier ``b`` starts at entry ``xxh64(b, seed) mod n``, and its ``j``-th weight
    reads ``(xxh64(b, seed) mod n + j) mod n``: the table is a circular array, as in ROBE.

    Parameters
    ----------
    ids : ndarray of int64, shape (N,), non-negative
        Identifiers of the weights.
    cols : ndarray of int64, shape (N,)
        The column of each weight in its row, ``>= 0``.
    block : int, >= 1
        Weights per block.
    n : int, table size, >= 1
    seed : numpy.uint64, stream seed

    Returns
    -------
    ndarray of int64, shape (N,), in [0, n)
    """
    j = np.asarray(cols, dtype=np.int64) % block  # offset inside the block
    return (uniform_ref(np.asarray(ids, dtype=np.int64) - j, n, seed) + j % n) % n


def sign_ref(layer, rows, cols, seed):
    """Sign hash xi in {-1, +1}: ``+1`` where the top bit of the keyed xxh64 is 0.

    Returns
    -------
    ndarray of int8, same shape as ``rows``
    """
    lane = np.uint64(layer) | (rows.astype(np.uint64) << _U[32])
    h = xxh64_key_ref(lane, cols.astype(np.uint64), np.uint64(seed))
    return (1 - 2 * (h >> _U[63]).astype(np.int8)).astype(np.int8)


# --------------------------------------------------------------------------- numba kernels
@nb.njit(inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@nb.njit(inline="always")
def _cdf_search(inner_cdf, u, lo, hi):
    """First position ``pos`` in ``[lo, hi)`` with ``inner_cdf[pos] > u`` (``hi`` if none): binary search."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if inner_cdf[mid] <= u:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(inline="always")
def _avalanche(h):
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


@nb.njit(inline="always")
def _lane(h, lane):
    k1 = _rotl(lane * _P2, 31) * _P1
    h ^= k1
    return _rotl(h, 27) * _P1 + _P4


@nb.njit(inline="always")
def _xxh64_u64(x, seed):
    return _avalanche(_lane(seed + _P5 + _LEN8, x))


@nb.njit(inline="always")
def _xxh64_key(lane, tail, seed):
    h = _lane(seed + _P5 + _LEN12, lane)
    h ^= (tail & _MASK32) * _P1
    h = _rotl(h, 23) * _P2 + _P3
    return _avalanche(h)


def divide_magic(d):
    """Constants that turn ``h mod d`` for every uint64 ``h`` into multiplications (exact).

    Granlund & Montgomery (1994), "Division by invariant integers using multiplication", Thm. 4.2
    (Hacker's Delight, 2nd ed., sec. 10-8): with ``l = ceil(log2 d)`` and ``m = ceil(2**(64 + l) / d)``,
    ``2**(64 + l) <= m d <= 2**(64 + l) + 2**l``, so ``floor(h m / 2**(64 + l)) = floor(h / d)`` for every
    ``0 <= h < 2**64``. ``m`` has 65 bits, ``m = 2**64 + mp``; :func:`_mod_magic` forms the quotient
    as ``(t + ((h - t) >> sh1)) >> sh2`` with ``t = mulhi(h, mp)`` (no overflow, as libdivide's
    "add" path). ``d = 1`` takes ``mp = 0, sh1 = sh2 = 0`` (quotient ``h``).

    Parameters
    ----------
    d : int, in [1, 2**64)

    Returns
    -------
    (mp, sh1, sh2) : three numpy.uint64

    Raises
    ------
    ValueError
        If ``d`` is outside ``[1, 2**64)``.
    """
    d = int(d)
    if not 1 <= d < 2**64:
        raise ValueError(f"divisor must be in [1, 2**64), got {d}")
    if d == 1:
        return np.uint64(0), np.uint64(0), np.uint64(0)
    lg = (d - 1).bit_length()  # the l of the docstring
    m = -(-(1 << (64 + lg)) // d)
    assert (1 << 64) <= m < (1 << 65) and m * d - (1 << (64 + lg)) <= (1 << lg)
    return np.uint64(m - (1 << 64)), np.uint64(1), np.uint64(lg - 1)


@nb.njit(inline="always")
def _mulhi(a, b):
    """High 64 bits of the 128-bit product of uint64 ``a`` and ``b``, from 32-bit halves (vectorises)."""
    al = a & _MASK32
    ah = a >> np.uint64(32)
    bl = b & _MASK32
    bh = b >> np.uint64(32)
    lh = al * bh
    hl = ah * bl
    mid = ((al * bl) >> np.uint64(32)) + (lh & _MASK32) + (hl & _MASK32)
    return ah * bh + (lh >> np.uint64(32)) + (hl >> np.uint64(32)) + (mid >> np.uint64(32))


@nb.njit(inline="always")
def _mod_magic(h, d, mp, sh1, sh2):
    """``h % d`` for uint64 ``h`` with ``(mp, sh1, sh2) = divide_magic(d)``: exact, no division instruction."""
    t = _mulhi(h, mp)
    return h - ((t + ((h - t) >> sh1)) >> sh2) * d


# --------------------------------------------------------------------------- layer kernels
# ``build_map``'s numba path: each kernel derives identifiers from the loop counter (no identifier
# array) and writes entries straight into the layer's int16 / int32 output, in simple loops that
# numba / LLVM can vectorise. Every entry equals the ``*_ref`` twin's (tests/hashlab/maps/test_kernels.py).

GUIDE_BITS = 14
"""The Dirichlet guide table has ``2**GUIDE_BITS`` cells (16 per entry for a table of 1000)."""
ZERO_INDEX = -1  # hashlab.maps.indexmap.ZERO: a weight fixed at zero
_CANDIDATE = -2  # marks a mask candidate inside fill_mask_nb, never left in a result


def guide_table(inner_cdf, bits=GUIDE_BITS):
    """Guide table of a categorical CDF (Chen & Asau 1974; Devroye 1986, sec. III.2.4).

    ``guide[g]`` is the entry :func:`categorical_ref` draws for ``u = g / 2**bits``: the number of
    ``inner_cdf`` values ``<= g / 2**bits`` (exact: ``g / 2**bits`` is a float64). For any ``u`` in
    ``[g / 2**bits, (g + 1) / 2**bits)`` the entry lies in ``[guide[g], guide[g + 1]]``, so a binary
    search of that short range (usually empty) gives exactly the full binary search's answer.

    Parameters
    ----------
    inner_cdf : ndarray of float64, shape (n - 1,), non-decreasing
    bits : int, in [1, 30]

    Returns
    -------
    ndarray of int32, shape (2**bits + 1,), non-decreasing, in [0, n - 1]
    """
    cells = np.arange((1 << bits) + 1, dtype=np.float64) / float(1 << bits)
    return np.searchsorted(inner_cdf, cells, side="right").astype(np.int32)


@nb.njit(parallel=True, cache=True)
def _uniform_fill(start, n, mp, sh1, sh2, seed, out):
    s = np.uint64(seed)
    un = np.uint64(n)
    for i in nb.prange(out.shape[0]):
        out[i] = np.int64(_mod_magic(_xxh64_u64(np.uint64(start + i), s), un, mp, sh1, sh2))
    return out


def uniform_fill_nb(start, n, seed, out):
    """``out[i] = uniform_ref([start + i], n, seed)`` for every ``i`` (``out``: 1-D int16/int32/int64).

    The ``mod n`` is :func:`divide_magic`'s exact multiply-shift (a vectorised loop; a 64-bit division
    per weight was 2/3 of the time).
    """
    return _uniform_fill(np.int64(start), np.int64(n), *divide_magic(n), np.uint64(seed), out)


@nb.njit(parallel=True, cache=True)
def categorical_fill_nb(start, inner_cdf, guide, seed, out):
    """``out[i] = categorical_ref([start + i], inner_cdf, seed)``, searching only the guide cell's range.

    ``guide`` is :func:`guide_table` of ``inner_cdf`` with ``GUIDE_BITS`` bits: the cell of ``u`` is
    the top ``GUIDE_BITS`` of its 53 bits, so ``g / 2**bits <= u < (g + 1) / 2**bits`` exactly.
    """
    s = np.uint64(seed)
    gshift = np.uint64(53 - GUIDE_BITS)
    for i in nb.prange(out.shape[0]):
        hb = _xxh64_u64(np.uint64(start + i), s) >> np.uint64(11)
        g = np.int64(hb >> gshift)
        lo = np.int64(guide[g])
        hi = np.int64(guide[g + 1])
        out[i] = _cdf_search(inner_cdf, np.float64(hb) * _INV53, lo, hi) if lo < hi else lo
    return out


@nb.njit(parallel=True, cache=True)
def _neighborhood_fill(start, n, radius, seed, wmagic, nmagic, out):
    s = np.uint64(seed)
    width = np.uint64(2 * radius + 1)
    un = np.uint64(n)
    for i in nb.prange(out.shape[0]):
        off = np.int64(_mod_magic(_xxh64_u64(np.uint64(start + i), s), width, wmagic[0], wmagic[1], wmagic[2]))
        v = start + i + off - radius
        # Python's v mod n, also for v < 0: n - 1 - ((-v - 1) mod n)
        m = np.int64(_mod_magic(np.uint64(v if v >= 0 else -v - 1), un, nmagic[0], nmagic[1], nmagic[2]))
        out[i] = m if v >= 0 else n - 1 - m
    return out


def neighborhood_fill_nb(start, n, radius, seed, out):
    """``out[i] = neighborhood_ref([start + i], n, radius, seed)`` for every ``i``.

    Both ``mod``s (by ``2 radius + 1`` and by ``n``) are :func:`divide_magic`'s exact multiply-shift.
    """
    wmagic = np.array(divide_magic(2 * radius + 1), np.uint64)
    nmagic = np.array(divide_magic(n), np.uint64)
    return _neighborhood_fill(np.int64(start), np.int64(n), np.int64(radius), np.uint64(seed), wmagic, nmagic, out)


@nb.njit(parallel=True, cache=True)
def _ramp_nb(s0, n, out):
    """``out[i] = (s0 + i) mod n`` for ``0 <= s0 < n`` and ``out.size <= n``: one wrap at most."""
    for i in nb.prange(out.shape[0]):
        v = s0 + i
        out[i] = v - n if v >= n else v


def modulus_fill(start, n, out):
    """``out[i] = (start + i) mod n``: one period (numba), then doubling copies (memory speed)."""
    size = out.shape[0]
    first = min(n, size)
    _ramp_nb(np.int64(start % n), np.int64(n), out[:first])
    filled = first
    while filled < size:  # filled is a multiple of n, so the copy continues the period
        c = min(filled, size - filled)
        out[filled : filled + c] = out[:c]
        filled += c
    return out


@nb.njit(parallel=True, cache=True)
def _xxhash_index_fill(layer, n, mp, sh1, sh2, seed, out):
    s = np.uint64(seed)
    un = np.uint64(n)
    lay = np.uint64(layer)
    for r in nb.prange(out.shape[0]):
        lane = lay | (np.uint64(r) << np.uint64(32))
        row = out[r]  # a 0-based view: numba's wraparound check on out[r, c] keeps LLVM from vectorising
        for c in range(row.shape[0]):
            row[c] = np.int64(_mod_magic(_xxh64_key(lane, np.uint64(c), s), un, mp, sh1, sh2))
    return out


def xxhash_index_fill_nb(layer, n, seed, out):
    """``out[r, c] = xxhash_index_ref(layer, [r], [c], n, seed)`` for the 2-D ``out``.

    The ``mod n`` is :func:`divide_magic`'s exact multiply-shift.
    """
    return _xxhash_index_fill(np.int64(layer), np.int64(n), *divide_magic(n), np.uint64(seed), out)


@nb.njit(parallel=True, cache=True)
def _block_fill(start, cols, block, n, mp, sh1, sh2, seed, out):
    s = np.uint64(seed)
    un = np.uint64(n)
    rows = out.shape[0] // cols
    for r in nb.prange(rows):
        base = r * cols
        for b0 in range(0, cols, block):
            e = np.int64(_mod_magic(_xxh64_u64(np.uint64(start + base + b0), s), un, mp, sh1, sh2))
            for c in range(b0, min(b0 + block, cols)):
                out[base + c] = e
                e += 1
                if e == n:
                    e = 0
    return out


def block_fill_nb(start, cols, block, n, seed, out):
    """``out[i] = block_ref([start + i], [i % cols], block, n, seed)`` for the 1-D ``out`` of ``rows * cols`` weights.

    One hash per block (its first weight's identifier), then a ramp that wraps at ``n``; rows in parallel.
    """
    return _block_fill(
        np.int64(start), np.int64(cols), np.int64(block), np.int64(n), *divide_magic(n), np.uint64(seed), out
    )


@nb.njit(parallel=True, cache=True)
def sign_fill_nb(layer, seed, out):
    """``out[r, c] = sign_ref(layer, [r], [c], seed)`` for the 2-D int8 ``out``."""
    s = np.uint64(seed)
    lay = np.uint64(layer)
    for r in nb.prange(out.shape[0]):
        lane = lay | (np.uint64(r) << np.uint64(32))
        for c in range(out.shape[1]):
            out[r, c] = 1 - 2 * np.int8(_xxh64_key(lane, np.uint64(c), s) >> np.uint64(63))
    return out


MASK_CHUNK = 4096
"""Weights per chunk of :func:`_mask_chunks_nb` (int16: 8 KiB, stays in L1 between its loops)."""


@nb.njit(cache=True)
def _mark_chunk(o, first, s, lo, width):
    """``o[j] = -1`` where ``h = xxh64(first + j, s) < lo``, ``-2`` where ``lo <= h < lo + width``.

    ``o`` is a 0-based view: indexing the layer with ``first + j`` makes numba check for negative
    indices, which keeps LLVM from vectorising (4-10x slower). Two conditional stores, no reduction.
    """
    for j in range(o.shape[0]):
        h = _xxh64_u64(np.uint64(first + j), s)
        if h < lo:
            o[j] = ZERO_INDEX
        if h - lo < width:  # wraps to a huge value below lo
            o[j] = _CANDIDATE


@nb.njit(cache=True)
def _census_chunk(o, first, cand):
    """Count the ``-1`` in ``o``; list the first ``cand.size`` positions of ``-2`` (plus ``first``) in order.

    Returns ``(zeros, candidates)``; ``candidates > cand.size`` means the list was cut short.
    """
    zeros = 0
    for j in range(o.shape[0]):
        zeros += np.int64(o[j] == ZERO_INDEX)
    k = 0
    cap = cand.shape[0]
    for j in range(o.shape[0]):
        if o[j] == _CANDIDATE:  # rare: well predicted
            if k < cap:
                cand[k] = first + j
            k += 1
    return zeros, k


@nb.njit(parallel=True, cache=True)
def _mask_chunks_nb(seed, lo, width, out, cap):
    """Mark ``out`` as :func:`_mark_chunk` does and take the census, one L1-sized chunk at a time.

    Returns
    -------
    zeros : ndarray of int64, shape (chunks,), ``-1`` per chunk
    cands : ndarray of int64, shape (chunks,), ``-2`` per chunk
    pos : ndarray of int64, shape (chunks, cap), the first ``min(cands, cap)`` positions of ``-2``
        of each chunk, in increasing order
    """
    size = out.shape[0]
    chunks = (size + MASK_CHUNK - 1) // MASK_CHUNK
    zeros = np.empty(chunks, np.int64)
    cands = np.empty(chunks, np.int64)
    pos = np.empty((chunks, cap), np.int64)
    s = np.uint64(seed)
    for ch in nb.prange(chunks):
        a = ch * MASK_CHUNK
        o = out[a : min(a + MASK_CHUNK, size)]
        _mark_chunk(o, a, s, lo, width)
        zeros[ch], cands[ch] = _census_chunk(o, a, pos[ch])
    return zeros, cands, pos


@nb.njit(cache=True)
def _mask_census(out):
    """Count the ``-1`` in ``out`` and list the (rare) positions of ``-2`` in increasing order.

    The census of a whole array, serial; :func:`fill_mask_nb` uses it only to rescan a chunk whose
    candidates overflowed :func:`_mask_chunks_nb`'s list (each chunk takes its own census there)."""
    size = out.shape[0]
    zeros = 0
    cands = 0
    for i in range(size):
        zeros += np.int64(out[i] == ZERO_INDEX)
        cands += np.int64(out[i] == _CANDIDATE)
    pos = np.empty(cands, np.int64)
    k = 0
    for i in range(size):
        if out[i] == _CANDIDATE:
            pos[k] = i
            k += 1
    return zeros, pos


def _mask_window(n_zero: int, size: int) -> tuple[np.uint64, np.uint64]:
    """Hash range ``[lo, hi)`` that holds the ``n_zero``-th smallest of ``size`` uniform uint64 hashes
    with overwhelming probability (8 binomial sd either side: a miss has probability below 1e-14 and
    only costs the exact fallback)."""
    p = n_zero / size
    delta = 8.0 * np.sqrt(p * (1.0 - p) / size) + 16.0 / size
    lo, hi = max(0.0, p - delta), p + delta
    return np.uint64(min(int(lo * 2.0**64), 2**64 - 1)), np.uint64(min(int(hi * 2.0**64), 2**64 - 1))


def mask_positions_ref(size: int, n_zero: int, seed) -> np.ndarray:
    """Positions in ``[0, size)`` with the ``n_zero`` smallest ``xxh64(position, seed)`` (numpy reference).

    XXH64 of a fixed 8-byte input is a bijection of the 64-bit values, so the hashes never tie
    and the set is well defined.

    Returns
    -------
    ndarray of int64, shape (n_zero,), in no particular order
    """
    if n_zero <= 0:
        return np.zeros(0, np.int64)
    h = xxh64_u64_ref(np.arange(size, dtype=np.uint64), np.uint64(seed))
    return np.argpartition(h, n_zero - 1)[:n_zero].astype(np.int64)


def fill_mask_nb(out, n_zero, seed, refill, _window=None, _cap=None):
    """Zero the ``n_zero`` positions of ``mask_positions_ref(out.size, n_zero, seed)`` in the filled ``out``.

    One parallel hash pass over L1-sized chunks: positions whose mask hash falls below a window
    around the expected ``n_zero``-th smallest hash are zeroed, and each chunk counts its zeros and
    lists the few inside the window while it is still in cache; of these candidates the smallest
    hashes are zeroed and the others get their entries back from ``refill``. If the window
    misses (probability below 1e-14), the layer is refilled and masked exactly.

    Parameters
    ----------
    out : ndarray of int16 or int32, shape (N,), the layer's entries (never -1 or -2 on entry)
    n_zero : int, in [0, N]
    seed : numpy.uint64, mask stream seed
    refill : callable
        ``refill(positions)`` -> the entries at those int64 positions (the reference twin);
        ``refill(None)`` refills all of ``out`` in place.

    Returns
    -------
    out
    """
    size = out.shape[0]
    if n_zero <= 0 or size == 0:
        return out
    lo, hi = _window if _window is not None else _mask_window(n_zero, size)
    if _cap is None:  # 4x the expected candidates of a chunk: overflowing chunks are rescanned
        _cap = 16 + int(4 * float(hi - lo) * 2.0**-64 * min(size, MASK_CHUNK))
    zeros, cands, pos = _mask_chunks_nb(np.uint64(seed), lo, hi - lo, out, _cap)
    below = int(zeros.sum())
    cand = pos[np.arange(_cap) < cands[:, None]]  # row-major: increasing positions
    if np.any(cands > _cap):
        cand = np.concatenate(
            [
                _mask_census(out[a : a + MASK_CHUNK])[1] + a if cands[ch] > _cap else pos[ch, : cands[ch]]
                for ch, a in enumerate(range(0, size, MASK_CHUNK))
            ]
        )
    need = n_zero - below
    if 0 <= need <= cand.size:
        if cand.size:
            h = xxh64_u64_ref(cand.astype(np.uint64), np.uint64(seed))
            order = np.argsort(h)
            out[cand[order[:need]]] = ZERO_INDEX
            keep = cand[order[need:]]
            out[keep] = refill(keep)
        return out
    refill(None)  # the window missed the n_zero-th smallest hash: redo the layer exactly
    out[mask_positions_ref(size, n_zero, seed)] = ZERO_INDEX
    return out


# --------------------------------------------------------------------------- layer twins and the registry
def uniform_fill_ref(start, n, seed, out):
    """numpy twin of :func:`uniform_fill_nb`: ``out[i] = uniform_ref([start + i], n, seed)``; returns ``out``."""
    out[:] = uniform_ref(np.arange(out.shape[0], dtype=np.int64) + start, n, seed)
    return out


def categorical_fill_ref(start, inner_cdf, guide, seed, out):
    """numpy twin of :func:`categorical_fill_nb` (the full binary search; ``guide`` is not needed)."""
    out[:] = categorical_ref(np.arange(out.shape[0], dtype=np.int64) + start, inner_cdf, seed)
    return out


def neighborhood_fill_ref(start, n, radius, seed, out):
    """numpy twin of :func:`neighborhood_fill_nb`: ``out[i] = neighborhood_ref([start + i], n, radius, seed)``."""
    out[:] = neighborhood_ref(np.arange(out.shape[0], dtype=np.int64) + start, n, radius, seed)
    return out


def modulus_fill_ref(start, n, out):
    """numpy twin of :func:`modulus_fill`: ``out[i] = (start + i) mod n``."""
    out[:] = (np.arange(out.shape[0], dtype=np.int64) + start) % n
    return out


def xxhash_index_fill_ref(layer, n, seed, out):
    """numpy twin of :func:`xxhash_index_fill_nb`: ``out[r, c] = xxhash_index_ref(layer, [r], [c], n, seed)``."""
    local = np.arange(out.size, dtype=np.int64)
    cols = out.shape[1]
    out[...] = xxhash_index_ref(layer, local // cols, local % cols, n, seed).reshape(out.shape)
    return out


def block_fill_ref(start, cols, block, n, seed, out):
    """numpy twin of :func:`block_fill_nb`: ``out[i] = block_ref([start + i], [i % cols], block, n, seed)``."""
    local = np.arange(out.shape[0], dtype=np.int64)
    out[:] = block_ref(local + start, local % cols, block, n, seed)
    return out


def sign_fill_ref(layer, seed, out):
    """numpy twin of :func:`sign_fill_nb`: ``out[r, c] = sign_ref(layer, [r], [c], seed)`` (int8 ``out``)."""
    local = np.arange(out.size, dtype=np.int64)
    cols = out.shape[1]
    out[...] = sign_ref(layer, local // cols, local % cols, seed).reshape(out.shape)
    return out


def mask_ref(out, n_zero, seed, refill):
    """numpy twin of :func:`fill_mask_nb`: zero the positions of :func:`mask_positions_ref` (``refill`` unused)."""
    out[mask_positions_ref(out.shape[0], n_zero, seed)] = ZERO_INDEX
    return out


class MapKernels(NamedTuple):
    """The layer kernels of one backend, by name: each fills a preallocated layer array in place.

    Both backends give bit-identical layers. Identifiers are ``start + i`` for position ``i``
    of the flattened layer; outputs are int16, int32 or int64 arrays (int8 for ``sign``).

    Attributes
    ----------
    uniform : callable ``(start, n, seed, out) -> out``
        Uniform hash, paper eq. 2 (:func:`uniform_ref`).
    categorical : callable ``(start, inner_cdf, guide, seed, out) -> out``
        Dirichlet draw, paper eq. 9 (:func:`categorical_ref`; ``guide`` = :func:`guide_table`).
    neighborhood : callable ``(start, n, radius, seed, out) -> out``
        Neighborhood hash, paper eq. 10 (:func:`neighborhood_ref`).
    modulus : callable ``(start, n, out) -> out``
        ``(start + i) mod n``, paper eq. 1.
    xxhash_index : callable ``(layer, n, seed, out) -> out``
        HashedNets index of the 2-D ``out`` (:func:`xxhash_index_ref`).
    block : callable ``(start, cols, block, n, seed, out) -> out``
        ROBE-Z block hash of the 1-D ``out`` holding rows of ``cols`` weights (:func:`block_ref`).
    sign : callable ``(layer, seed, out) -> out``
        Sign hash xi in {-1, +1} of the 2-D int8 ``out`` (:func:`sign_ref`).
    mask : callable ``(out, n_zero, seed, refill) -> out``
        Zero the ``n_zero`` positions of :func:`mask_positions_ref` in the filled 1-D ``out``
        (``refill`` as in :func:`fill_mask_nb`).
    """

    uniform: Callable[..., Any]
    categorical: Callable[..., Any]
    neighborhood: Callable[..., Any]
    modulus: Callable[..., Any]
    xxhash_index: Callable[..., Any]
    block: Callable[..., Any]
    sign: Callable[..., Any]
    mask: Callable[..., Any]


_KERNELS = {
    "numba": MapKernels(
        uniform=uniform_fill_nb,
        categorical=categorical_fill_nb,
        neighborhood=neighborhood_fill_nb,
        modulus=modulus_fill,
        xxhash_index=xxhash_index_fill_nb,
        block=block_fill_nb,
        sign=sign_fill_nb,
        mask=fill_mask_nb,
    ),
    "numpy": MapKernels(
        uniform=uniform_fill_ref,
        categorical=categorical_fill_ref,
        neighborhood=neighborhood_fill_ref,
        modulus=modulus_fill_ref,
        xxhash_index=xxhash_index_fill_ref,
        block=block_fill_ref,
        sign=sign_fill_ref,
        mask=mask_ref,
    ),
}


def kernels(backend: str) -> MapKernels:
    """The :class:`MapKernels` of ``backend`` (:func:`hashlab.backends.select`; ValueError if unknown)."""
    return select(_KERNELS, backend)
