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

Conventions
-----------
* ``ids`` are int64 identifiers (row-major position of a weight, see :mod:`hashlab.maps.hashes`).
* Outputs named ``idx`` are int64 entries in ``[0, n)``; callers narrow the dtype.
* All uint64 arithmetic wraps modulo 2**64, as in the C reference.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "xxh64_u64_ref", "xxh64_u64_nb", "xxh64_key_ref", "xxh64_key_nb",
    "uniform_ref", "uniform_nb", "categorical_ref", "categorical_nb",
    "neighborhood_ref", "neighborhood_nb", "xxhash_index_ref", "xxhash_index_nb",
    "sign_ref", "sign_nb", "unit_float_ref", "guide_table", "GUIDE_BITS", "uniform_fill_nb", "categorical_fill_nb",
    "neighborhood_fill_nb", "modulus_fill", "xxhash_index_fill_nb", "sign_fill_nb", "fill_mask_nb",
    "mask_positions_ref",
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


@nb.njit(parallel=True, cache=True)
def xxh64_u64_nb(x, seed):
    """numba twin of :func:`xxh64_u64_ref` for 1-D uint64 ``x``."""
    out = np.empty(x.shape[0], np.uint64)
    s = np.uint64(seed)
    for i in nb.prange(x.shape[0]):
        out[i] = _xxh64_u64(np.uint64(x[i]), s)
    return out


@nb.njit(parallel=True, cache=True)
def xxh64_key_nb(lane, tail, seed):
    """numba twin of :func:`xxh64_key_ref` for 1-D ``lane`` and ``tail`` of equal length."""
    out = np.empty(lane.shape[0], np.uint64)
    s = np.uint64(seed)
    for i in nb.prange(lane.shape[0]):
        out[i] = _xxh64_key(np.uint64(lane[i]), np.uint64(tail[i]), s)
    return out


@nb.njit(parallel=True, cache=True)
def uniform_nb(ids, n, seed):
    """numba twin of :func:`uniform_ref`."""
    out = np.empty(ids.shape[0], np.int64)
    s = np.uint64(seed)
    un = np.uint64(n)
    for i in nb.prange(ids.shape[0]):
        out[i] = np.int64(_xxh64_u64(np.uint64(ids[i]), s) % un)
    return out


@nb.njit(parallel=True, cache=True)
def categorical_nb(ids, inner_cdf, seed):
    """numba twin of :func:`categorical_ref` (binary search, same comparisons)."""
    out = np.empty(ids.shape[0], np.int64)
    s = np.uint64(seed)
    m = inner_cdf.shape[0]
    for i in nb.prange(ids.shape[0]):
        h = _xxh64_u64(np.uint64(ids[i]), s)
        u = np.float64(h >> np.uint64(11)) * _INV53
        out[i] = _cdf_search(inner_cdf, u, 0, m)
    return out


@nb.njit(parallel=True, cache=True)
def neighborhood_nb(ids, n, radius, seed):
    """numba twin of :func:`neighborhood_ref`."""
    out = np.empty(ids.shape[0], np.int64)
    s = np.uint64(seed)
    width = np.uint64(2 * radius + 1)
    for i in nb.prange(ids.shape[0]):
        off = np.int64(_xxh64_u64(np.uint64(ids[i]), s) % width) - radius
        v = (ids[i] + off) % n
        out[i] = v + n if v < 0 else v
    return out


@nb.njit(parallel=True, cache=True)
def xxhash_index_nb(layer, rows, cols, n, seed):
    """numba twin of :func:`xxhash_index_ref` for 1-D ``rows``/``cols``."""
    out = np.empty(rows.shape[0], np.int64)
    s = np.uint64(seed)
    un = np.uint64(n)
    lay = np.uint64(layer)
    for i in nb.prange(rows.shape[0]):
        lane = lay | (np.uint64(rows[i]) << np.uint64(32))
        out[i] = np.int64(_xxh64_key(lane, np.uint64(cols[i]), s) % un)
    return out


@nb.njit(parallel=True, cache=True)
def sign_nb(layer, rows, cols, seed):
    """numba twin of :func:`sign_ref` for 1-D ``rows``/``cols``."""
    out = np.empty(rows.shape[0], np.int8)
    s = np.uint64(seed)
    lay = np.uint64(layer)
    for i in nb.prange(rows.shape[0]):
        lane = lay | (np.uint64(rows[i]) << np.uint64(32))
        out[i] = 1 - 2 * np.int8(_xxh64_key(lane, np.uint64(cols[i]), s) >> np.uint64(63))
    return out


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
def uniform_fill_nb(start, n, seed, out):
    """``out[i] = uniform_ref([start + i], n, seed)`` for every ``i`` (``out``: 1-D int16/int32/int64)."""
    s = np.uint64(seed)
    un = np.uint64(n)
    for i in nb.prange(out.shape[0]):
        out[i] = np.int64(_xxh64_u64(np.uint64(start + i), s) % un)
    return out


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
def neighborhood_fill_nb(start, n, radius, seed, out):
    """``out[i] = neighborhood_ref([start + i], n, radius, seed)`` for every ``i``."""
    s = np.uint64(seed)
    width = np.uint64(2 * radius + 1)
    for i in nb.prange(out.shape[0]):
        off = np.int64(_xxh64_u64(np.uint64(start + i), s) % width) - radius
        v = (start + i + off) % n
        out[i] = v + n if v < 0 else v
    return out


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
        out[filled:filled + c] = out[:c]
        filled += c
    return out


@nb.njit(parallel=True, cache=True)
def xxhash_index_fill_nb(layer, n, seed, out):
    """``out[r, c] = xxhash_index_ref(layer, [r], [c], n, seed)`` for the 2-D ``out``."""
    s = np.uint64(seed)
    un = np.uint64(n)
    lay = np.uint64(layer)
    for r in nb.prange(out.shape[0]):
        lane = lay | (np.uint64(r) << np.uint64(32))
        for c in range(out.shape[1]):
            out[r, c] = np.int64(_xxh64_key(lane, np.uint64(c), s) % un)
    return out


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


@nb.njit(parallel=True, cache=True)
def _mask_pass(seed, lo, width, out):
    """``-1`` where ``h = xxh64(i, seed) < lo``, ``-2`` where ``lo <= h < lo + width``.

    Two conditional stores and no reduction, so the loop vectorises (about 1 ns a weight).
    """
    s = np.uint64(seed)
    for i in nb.prange(out.shape[0]):
        h = _xxh64_u64(np.uint64(i), s)
        if h < lo:
            out[i] = ZERO_INDEX
        if h - lo < width:  # wraps to a huge value below lo
            out[i] = _CANDIDATE


@nb.njit(cache=True)
def _mask_census(out):
    """Count the ``-1`` in ``out`` and list the (rare) positions of ``-2`` in increasing order.

    Two serial passes: a branch-free count of both markers (vectorised, about 0.2 ns a weight), then a
    scan whose store branch is almost never taken (well predicted). Serial: every parallel region costs
    a thread synchronisation, which is slow on a busy machine. (The previous census counted per block
    of 64 with a ``min`` bound that kept LLVM from vectorising: twice as slow.)"""
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


def fill_mask_nb(out, n_zero, seed, refill, _window=None):
    """Zero the ``n_zero`` positions of ``mask_positions_ref(out.size, n_zero, seed)`` in the filled ``out``.

    One parallel hash pass: positions whose mask hash falls below a window around the expected
    ``n_zero``-th smallest hash are zeroed; the few inside the window are candidates, of which the
    smallest hashes are zeroed and the others get their entries back from ``refill``. If the window
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
    _mask_pass(np.uint64(seed), lo, hi - lo, out)
    below, cand = _mask_census(out)
    need = n_zero - int(below)
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
