"""Analysis kernels: numba versions and their plain-numpy reference twins.

Every ``*_nb`` kernel (numba, ``parallel=True``, ``cache=True``) has a ``*_ref`` twin
written with vectorised numpy; ``tests/hashlab/stats/test_kernels.py`` shows each pair
agrees exactly (all outputs are integers). :func:`kernels` is the one registry of the stats
stage: it gives a backend's :class:`StatsKernels`, these kernels together with the grouping
kernels of :mod:`hashlab.stats.group_kernels` and the offset kernels of
:mod:`hashlab.stats.offset_kernels`, and every analysis calls them by name through it.

Conventions
-----------
* ``idx`` is one layer's flattened index array (int16 or int32, row-major, ``-1`` = zeroed).
  Position ``i`` in it is the weight's identifier ``row * in_features + col``.
* ``n`` is the size of the table the layer reads.
* A *bucket* is the set of a layer's non-zeroed weights that read one entry.
* ``starts`` (int64, shape ``(n + 1,)``) and ``ids`` (int32, shape ``(M,)``, ``M`` non-zeroed
  weights) describe the layer sorted by ``(entry, identifier)``: bucket ``e`` is
  ``ids[starts[e]:starts[e + 1]]``, in increasing identifier order.
* Distances are integers. ``-1`` marks "no other weight in the bucket".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numba as nb
import numpy as np
from numba.extending import overload

from ..backends import BACKENDS, select
from .group_kernels import line_groups_nb, line_groups_ref
from .offset_kernels import offset_residues_nb, offset_residues_ref

__all__ = [
    "loads_ref",
    "loads_nb",
    "sign_sums_ref",
    "sign_sums_nb",
    "bucket_sort_ref",
    "bucket_sort_nb",
    "nearest_partner_ref",
    "nearest_partner_nb",
    "nearest_histograms_ref",
    "nearest_histograms_nb",
    "pair_counts_ref",
    "layer_pair_counts_ref",
    "layer_pair_counts_nb",
    "StatsKernels",
    "kernels",
    "BACKENDS",
]

_CHUNK = 1 << 16  # positions per parallel work item


# --------------------------------------------------------------------------- numpy twins
def loads_ref(idx: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Count the weights reading each entry (numpy reference).

    Parameters
    ----------
    idx : ndarray of int16 or int32, shape (N,)
        Entries in ``[0, n)`` or ``-1``.
    n : int
        Table size.

    Returns
    -------
    loads : ndarray of int64, shape (n,)
        ``loads[e]`` = number of weights with ``idx == e``.
    zeroed : int
        Number of weights with ``idx == -1``.
    """
    shifted = idx.astype(np.int64) + 1
    counts = np.bincount(shifted, minlength=n + 1)
    return counts[1:].astype(np.int64), int(counts[0])


def sign_sums_ref(idx: np.ndarray, sign: np.ndarray, n: int) -> np.ndarray:
    """Sum of the sign hash xi over the weights reading each entry (numpy reference).

    Parameters
    ----------
    idx : ndarray of int16 or int32, shape (N,)
    sign : ndarray of int8, shape (N,), values in {-1, +1}
    n : int

    Returns
    -------
    ndarray of int64, shape (n,)
        ``sum(sign[idx == e])``; zeroed weights are ignored.
    """
    keep = idx >= 0
    return (
        np.bincount(idx[keep].astype(np.int64), weights=sign[keep].astype(np.float64), minlength=n)
        .round()
        .astype(np.int64)
    )


def _id_dtype(size: int):
    return np.int32 if size < 2**31 else np.int64


def bucket_sort_ref(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort a layer's non-zeroed identifiers by ``(entry, identifier)`` (numpy reference).

    Returns
    -------
    starts : ndarray of int64, shape (n + 1,)
    ids : ndarray of int32 (int64 if the layer has 2**31 weights or more), shape (M,)
        See the module conventions.
    """
    order = np.argsort(idx, kind="stable").astype(_id_dtype(idx.shape[0]))
    n_zero = int(np.count_nonzero(idx < 0))
    ids = order[n_zero:]
    loads = np.bincount(idx[ids].astype(np.int64), minlength=n)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(loads, out=starts[1:])
    return starts, ids


def _bucket_of(starts: np.ndarray, m: int) -> np.ndarray:
    return np.repeat(np.arange(starts.shape[0] - 1, dtype=np.int64), np.diff(starts))[:m]


def nearest_partner_ref(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each weight to the nearest other weight in its bucket (numpy reference).

    Parameters
    ----------
    starts, ids : see the module conventions
    in_features : int
        Columns of the layer's matrix, ``C``; ``(row, col) = divmod(id, C)``.

    Returns
    -------
    d_id : ndarray of int64, shape (M,)
        ``min |id - id'|`` over the other weights ``id'`` of the bucket, or ``-1``.
    d_grid : ndarray of int64, shape (M,)
        ``min max(|row - row'|, |col - col'|)`` (Chebyshev distance on the matrix), or ``-1``.
        Both are aligned with ``ids``.

    Notes
    -----
    Vectorised row scan: at step ``delta`` every still-open weight looks up, by binary search
    in the ``(entry, id)``-sorted keys, the bucket members of rows ``row +- delta`` closest to
    its column; a weight closes once ``delta`` reaches its best distance.
    """
    m = ids.shape[0]
    cols = np.int64(in_features)
    ids = ids.astype(np.int64)
    bucket = _bucket_of(starts, m)
    lo = starts[bucket]
    hi = starts[bucket + 1]
    pos = np.arange(m, dtype=np.int64)
    big = np.iinfo(np.int64).max
    has_prev = pos > lo
    has_next = pos + 1 < hi
    prev_id = np.where(has_prev, ids[np.maximum(pos - 1, 0)], 0)
    next_id = np.where(has_next, ids[np.minimum(pos + 1, m - 1)], 0)
    d_id = np.minimum(np.where(has_prev, ids - prev_id, big), np.where(has_next, next_id - ids, big))
    row, col = np.divmod(ids, cols)

    def cheb(other: np.ndarray, ok: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        orow, ocol = np.divmod(other, cols)
        return np.where(ok, np.maximum(np.abs(orow - r), np.abs(ocol - c)), big)

    best = np.minimum(cheb(prev_id, has_prev, row, col), cheb(next_id, has_next, row, col))
    rows = (ids.max() // cols + 1) if m else 0
    key = bucket * (rows + 1) * cols + ids  # strictly increasing
    active = np.flatnonzero(best < big)
    delta = 1
    while active.size:
        keep = (delta < best[active]) & ((row[active] + delta < rows) | (row[active] - delta >= 0))
        active = active[keep]
        if not active.size:
            break
        b, r, c = bucket[active], row[active], col[active]
        for sgn in (1, -1):
            rr = r + sgn * delta
            inside = (rr >= 0) & (rr < rows)
            p = np.searchsorted(key, b * (rows + 1) * cols + np.clip(rr, 0, rows) * cols + c, side="left")
            for q in (p, p - 1):
                ok = inside & (q >= lo[active]) & (q < hi[active])
                other = ids[np.clip(q, 0, m - 1)]
                ok &= (other // cols) == rr
                best[active] = np.minimum(best[active], cheb(other, ok, r, c))
        delta += 1
    d_id = np.where(d_id == big, -1, d_id)
    best = np.where(best == big, -1, best)
    return d_id, best


def pair_counts_ref(starts: np.ndarray, ids: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of unordered same-bucket pairs with ``|id - id'| <= d``, per threshold (numpy reference).

    Parameters
    ----------
    starts, ids : see the module conventions
    thresholds : ndarray of int64, shape (T,), each >= 0

    Returns
    -------
    ndarray of int64, shape (T,)
    """
    m = ids.shape[0]
    if m == 0:
        return np.zeros(thresholds.shape[0], np.int64)
    bucket = _bucket_of(starts, m)
    ids = ids.astype(np.int64)
    span = np.int64(2) * (ids.max() + 1)
    key = bucket * span + ids
    pos = np.arange(m, dtype=np.int64)
    out = np.empty(thresholds.shape[0], np.int64)
    for t, d in enumerate(thresholds):
        d = min(int(d), int(span // 2))
        out[t] = int((np.searchsorted(key, key + d, side="right") - pos - 1).sum())
    return out


# --------------------------------------------------------------------------- numba kernels
@nb.njit(parallel=True, cache=True)
def _loads_kernel(idx, n, threads):
    size = idx.shape[0]
    nchunks = max(1, (size + _CHUNK - 1) // _CHUNK)
    nt = min(threads, nchunks)
    per = (nchunks + nt - 1) // nt
    local = np.zeros((nt, n + 1), np.int64)
    for t in nb.prange(nt):
        a = min(size, t * per * _CHUNK)
        b = min(size, (t + 1) * per * _CHUNK)
        for i in range(a, b):
            local[t, np.int64(idx[i]) + 1] += 1
    counts = local.sum(axis=0)
    return counts[1:].copy(), counts[0]


def loads_nb(idx: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """numba twin of :func:`loads_ref` (per-thread histograms, then a reduction)."""
    loads, zeroed = _loads_kernel(idx, n, nb.get_num_threads())
    return loads, int(zeroed)


@nb.njit(cache=True)
def _sign_sums_serial(idx, sign, n):
    out = np.zeros(n, np.int64)
    for i in range(idx.shape[0]):
        e = np.int64(idx[i])
        if e >= 0:
            out[e] += sign[i]
    return out


def sign_sums_nb(idx: np.ndarray, sign: np.ndarray, n: int) -> np.ndarray:
    """numba twin of :func:`sign_sums_ref` (one pass; memory bound)."""
    return _sign_sums_serial(idx, sign, n)


@nb.njit(parallel=True, cache=True)
def _bucket_sort_kernel(idx, n, threads, out_dtype):
    size = idx.shape[0]
    nt = max(1, min(threads, (size + _CHUNK - 1) // _CHUNK))
    per = (size + nt - 1) // nt
    hist = np.zeros((nt, n), np.int64)
    for t in nb.prange(nt):
        for i in range(min(size, t * per), min(size, (t + 1) * per)):
            e = np.int64(idx[i])
            if e >= 0:
                hist[t, e] += 1
    starts = np.zeros(n + 1, np.int64)
    offs = np.empty((nt, n), np.int64)
    acc = 0
    for e in range(n):
        starts[e] = acc
        for t in range(nt):
            offs[t, e] = acc
            acc += hist[t, e]
    starts[n] = acc
    ids = np.empty(acc, out_dtype)
    for t in nb.prange(nt):
        o = offs[t]
        for i in range(min(size, t * per), min(size, (t + 1) * per)):
            e = np.int64(idx[i])
            if e >= 0:
                ids[o[e]] = i
                o[e] += 1
    return starts, ids


def bucket_sort_nb(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`bucket_sort_ref`: a parallel stable counting sort, O(N + n)."""
    return _bucket_sort_kernel(idx, n, nb.get_num_threads(), _id_dtype(idx.shape[0]))


_HIST_CAP = 1 << 16  # identifier distances below this go to per-worker histograms, larger ones to a list
_LANES = 32  # columns per vector chunk of the column sweep (a compile-time trip count: fully vectorised)
_HW_MAX = 128  # widest half-window of the column sweep; farther partners are found by the scalar scan
_HW_FACTOR = 0.9  # half-window in mean spacings sqrt(area / load): a partner lies beyond it for ~1% of weights
_BRUTE = 48  # buckets up to this load compare all pairs
_NSUB = 4  # interleaved grid histograms: consecutive increments rarely hit the same counter


def _as_like(x, like):
    """``x`` cast to the element type of array ``like`` (numba only; keeps vector lanes narrow)."""
    return x


@overload(_as_like, inline="always")
def _as_like_ov(x, like):
    dtype = like.dtype

    def impl(x, like):
        return dtype(x)

    return impl


@nb.njit(inline="always")
def _divmod_fast(x, d, inv):
    """``divmod(x, d)`` for 0 <= x < 2**52 via a float reciprocal and one exact correction."""
    q = np.int64(x * inv)
    r = x - q * d
    if r < 0:
        q -= 1
        r += d
    elif r >= d:
        q += 1
        r -= d
    return q, r


@nb.njit(inline="always")
def _window_chunk(prv, nxt, b, off, o0, r, m):
    """``min(m, min_k max(off[o0 + k], min(r - prv[b + k], nxt[b + k] - r)))`` over ``_LANES`` columns.

    Unsigned indices and a constant trip count let LLVM emit straight vector code (no slices:
    a slice in this loop costs reference-count calls).
    """
    b = np.uint64(b)
    o0 = np.uint64(o0)
    for k in range(_LANES):
        j = b + np.uint64(k)
        up = _as_like(r - prv[j], prv)
        dn = _as_like(nxt[j] - r, prv)
        g = up if up < dn else dn
        o = off[o0 + np.uint64(k)]
        g = g if g > o else o
        m = m if m < g else g
    return m


@nb.njit(inline="always")
def _bucket_columns(size, rv, cv, nr, dg, prv, nxt, offt, hw, pad, cols, big):
    """Exact grid distances ``dg[:size]`` of one bucket by a sweep over its members in identifier order.

    ``rv``, ``cv``: members' rows and column slots (column + ``pad``), rows ascending. ``prv[s]`` /
    ``nxt[s]`` hold the row of the last member above / the first member below the sweep in
    column slot ``s`` (``-big`` / ``big`` if none), so a member's grid distance is
    ``min over columns c' of max(|c' - c|, min(r - prv[c'], nxt[c'] - r))``. Columns within
    ``hw`` are scanned in vector chunks; if the minimum found exceeds ``hw`` the scan continues
    column by column until no unscanned column can be closer. An empty slot (``-big`` / ``big``)
    reads as a gap of at least ``big - r``, which the caller keeps above every real distance, so
    no lane needs a test. ``prv`` / ``nxt`` are left all-empty on return.
    """
    for j in range(size - 1, -1, -1):  # next member down in the same column, and first member per column
        c = cv[j]
        nr[j] = nxt[c]
        nxt[c] = rv[j]
    nch = 2 * hw // _LANES
    o0 = _HW_MAX - hw
    for j in range(size):
        r = rv[j]
        c = np.int64(cv[j])
        m = _as_like(min(r - prv[c], nr[j] - r), prv)  # own column: the members above and below
        a = c - hw
        for i in range(nch):
            m = _window_chunk(prv, nxt, a + i * _LANES, offt, o0 + i * _LANES, r, m)
        best = np.int64(m)
        if best > hw:  # columns at offsets -hw .. hw-1 are done; go on outward
            k = hw
            while k < best:
                cc = c - k
                if k > hw and cc >= pad:
                    best = min(best, max(k, min(r - np.int64(prv[cc]), np.int64(nxt[cc]) - r)))
                cc = c + k
                if cc < cols + pad:
                    best = min(best, max(k, min(r - np.int64(prv[cc]), np.int64(nxt[cc]) - r)))
                if c - k <= pad and c + k >= cols + pad - 1:
                    break
                k += 1
        nxt[c] = nr[j]
        prv[c] = r
        dg[j] = best
    for j in range(size):
        prv[cv[j]] = -big


@nb.njit(cache=True)
def _bucket_brute(size, rv, cv, dg):
    """Exact grid distances ``dg[:size]`` of a small bucket by comparing all pairs."""
    for j in range(size):
        dg[j] = np.iinfo(np.int64).max
    for j in range(size):
        rj = np.int64(rv[j])
        cj = np.int64(cv[j])
        for q in range(j + 1, size):
            g = max(np.int64(rv[q]) - rj, abs(np.int64(cv[q]) - cj))
            dg[j] = min(dg[j], g)
            dg[q] = min(dg[q], g)


@nb.njit(parallel=True, cache=True)
def _nearest_buckets(starts, ids, cols, threads, points, cap, d_id_out, d_grid_out, proto):
    """Nearest partners bucket by bucket, in worker-local buffers.

    ``points``: write ``d_id_out`` / ``d_grid_out`` aligned with ``ids`` (``-1`` for a lone
    member). Otherwise histogram them: returns per-worker histograms of identifier distances
    below ``cap`` and of grid distances, and the larger identifier distances (per worker a list
    in ``ovf[starts[first bucket]:]`` of ``novf`` values). ``proto``'s dtype (int16 or int32)
    holds rows in the column sweep; the caller picks int16 only when rows fit with room for the
    empty-column sentinels.
    """
    nbk = starts.shape[0] - 1
    m = ids.shape[0]
    maxload = 1
    last = 0
    for e in range(nbk):
        maxload = max(maxload, starts[e + 1] - starts[e])
        if starts[e + 1] > starts[e]:
            last = max(last, np.int64(ids[starts[e + 1] - 1]))
    rows = last // cols + 1
    nt = max(1, min(threads, nbk))
    bb = np.empty(nt + 1, np.int64)
    for w in range(nt):
        bb[w] = np.searchsorted(starts, (m * w) // nt)
    bb[nt] = nbk
    hid = np.zeros((nt, cap if not points else 1), np.int64)
    hgrid = np.zeros((nt, _NSUB, max(rows, cols) + 1 if not points else 1), np.int64)
    ovf = np.empty(m if not points else 0, np.int64)
    novf = np.zeros(nt, np.int64)
    inv_cols = 1.0 / cols
    big = _as_like(np.iinfo(proto.dtype).max // 2 + 1, proto)  # 2**14 (int16) or 2**30 (int32)
    pad = _HW_MAX
    far = np.int64(1) << 62  # "no neighbour on this side"
    for w in nb.prange(nt):
        prv = np.full(cols + 2 * pad, -big, proto.dtype)
        nxt = np.full(cols + 2 * pad, big, proto.dtype)
        offt = np.empty(2 * _HW_MAX, proto.dtype)
        for k in range(2 * _HW_MAX):
            offt[k] = abs(k - _HW_MAX)
        offt[_HW_MAX] = big  # the own column is handled apart (its member must not count itself)
        rv = np.empty(maxload, proto.dtype)
        cv = np.empty(maxload, np.int32)
        nr = np.empty(maxload, proto.dtype)
        dg = np.empty(maxload, np.int64)
        ov = starts[bb[w]]
        hid_w = hid[w]
        hgrid_w = hgrid[w]
        for e in range(bb[w], bb[w + 1]):
            lo = starts[e]
            size = starts[e + 1] - lo
            if size == 0:
                continue
            if size == 1:
                if points:
                    d_id_out[lo] = -1
                    d_grid_out[lo] = -1
                continue
            gap_prev = far
            cur = np.int64(ids[lo])
            for j in range(size):  # row, column and identifier-order nearest partner of each member
                r, c = _divmod_fast(cur, cols, inv_cols)
                rv[j] = r
                cv[j] = c + pad
                gap = far
                if j + 1 < size:
                    nxt_id = np.int64(ids[np.uint64(lo + j + 1)])
                    gap = nxt_id - cur
                    cur = nxt_id
                dj = min(gap_prev, gap)
                gap_prev = gap
                if points:
                    d_id_out[lo + j] = dj
                elif dj < cap:
                    hid_w[np.uint64(dj)] += 1
                else:
                    ovf[ov] = dj
                    ov += 1
            if size <= _BRUTE:
                _bucket_brute(size, rv, cv, dg)
            else:
                span = np.int64(rv[size - 1]) - np.int64(rv[0]) + 1
                hw = np.int64(_HW_FACTOR * np.sqrt(span * cols / size))
                hw = min(max((hw + _LANES // 2 - 1) // (_LANES // 2) * (_LANES // 2), _LANES // 2), _HW_MAX)
                _bucket_columns(size, rv, cv, nr, dg, prv, nxt, offt, hw, pad, cols, big)
            if points:
                for j in range(size):
                    d_grid_out[lo + j] = dg[j]
            else:
                for j in range(size):
                    hgrid_w[np.uint64(j) & np.uint64(_NSUB - 1), np.uint64(dg[j])] += 1
        novf[w] = ov - starts[bb[w]]
    return hid, hgrid, ovf, novf, bb


def _trim(hist: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(hist)
    return hist[: nz[-1] + 1].copy() if nz.size else np.zeros(1, np.int64)


def _row_proto(rows: int, cols: int) -> np.ndarray | None:
    """The narrowest row type whose empty-column sentinel ``big`` (2**14 or 2**30) keeps
    ``r + big`` in range and ``big - r`` above every grid distance; None if neither does."""
    for dtype, big in ((np.int16, 2**14), (np.int32, 2**30)):
        if rows + max(rows, cols, _HW_MAX) < big:
            return np.zeros(1, dtype)
    return None


def _nearest_run(starts, ids, in_features, points, cap, d_id, d_grid):
    cols = int(in_features)
    proto = _row_proto(int(ids.max()) // cols + 1, cols)
    if proto is None:  # over 2**29 rows (a layer of at most 3 columns): the numpy reference is exact
        return None
    return _nearest_buckets(starts, ids, np.int64(cols), nb.get_num_threads(), points, cap, d_id, d_grid, proto)


def nearest_partner_nb(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`nearest_partner_ref`, bucket by bucket in parallel.

    Per bucket, in buffers local to the worker: the identifier-order neighbours give the 1-D
    distance. The grid distance comes from one sweep over the bucket's members in identifier
    (row-major) order that keeps, per column, the row of the last member above and of the next
    member below: a member's grid distance is then the minimum over columns ``c'`` of
    ``max(|c' - c|, row gap in column c')``, scanned in vector chunks over a half-window of about
    0.9 mean spacings (``sqrt(rows * in_features / load)``) and, for the ~1% of members whose
    partner lies farther, column by column outward until no unscanned column can be closer.
    Buckets of at most 48 members compare all pairs. Exact always; O(half-window) vector work
    per weight for position-blind hashes, O(1) for line- and block-like buckets.
    """
    m = ids.shape[0]
    d_id = np.empty(m, np.int64)
    d_grid = np.empty(m, np.int64)
    if m and _nearest_run(starts, ids, in_features, True, 1, d_id, d_grid) is None:
        return nearest_partner_ref(starts, ids, in_features)
    return d_id, d_grid


def nearest_histograms_ref(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the nearest-partner distances (numpy reference).

    Returns
    -------
    hist_id, hist_grid : ndarray of int64
        ``np.bincount`` of the non-negative ``d_id`` / ``d_grid`` of :func:`nearest_partner_ref`
        (length: the largest distance + 1; ``[0]`` when no weight has a partner).
    """
    d_id, d_grid = nearest_partner_ref(starts, ids, in_features)
    h_id, h_grid = (
        np.bincount(d[d >= 0]).astype(np.int64) if (d >= 0).any() else np.zeros(1, np.int64) for d in (d_id, d_grid)
    )
    return h_id, h_grid


def nearest_histograms_nb(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`nearest_histograms_ref`: :func:`nearest_partner_nb`'s per-bucket work
    with per-worker histograms instead of per-weight arrays (no O(M) output)."""
    if ids.shape[0] == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    empty = np.empty(0, np.int64)
    out = _nearest_run(starts, ids, in_features, False, _HIST_CAP, empty, empty)
    if out is None:
        return nearest_histograms_ref(starts, ids, in_features)
    hid, hgrid, ovf, novf, bb = out
    h_id = hid.sum(axis=0)
    extra = np.concatenate([ovf[starts[bb[w]] : starts[bb[w]] + novf[w]] for w in range(len(novf))])
    if extra.size:
        h_id = np.concatenate([h_id, np.zeros(int(extra.max()) + 1 - h_id.size, np.int64)])
        h_id += np.bincount(extra, minlength=h_id.size)
    return _trim(h_id), _trim(hgrid.sum(axis=(0, 1)))


_GROUP = 4  # pair thresholds per sweep: four accumulators and four read pointers stay in registers


@nb.njit(cache=True)
def _pair_gather(idx, cnt, x0, x1, d, on, acc):
    """``acc[q] += on[q] * sum_{x0 <= x < x1} cnt_x[idx[x - d[q]] + 1]`` for the ``_GROUP`` thresholds ``d``,
    updating ``cnt`` (``cnt_x[e + 1]`` = members of bucket ``e`` with identifier ``<= x``) on the way.

    Unsigned indices (no negative-index wraparound, no vector gathers) and one register accumulator
    per threshold keep the loop at a few instructions per look-up. Callers pass ``x - d[q] >= 0``,
    or ``d[q] = 0`` with ``on[q] = 0`` for a threshold not yet active.
    """
    p0 = np.uint64(d[0])
    p1 = np.uint64(d[1])
    p2 = np.uint64(d[2])
    p3 = np.uint64(d[3])
    a0 = np.int64(0)
    a1 = np.int64(0)
    a2 = np.int64(0)
    a3 = np.int64(0)
    for xi in range(x0, x1):
        x = np.uint64(xi)
        e = np.uint64(np.int64(idx[x]) + 1)
        cnt[e] += np.int64(e > 0)
        a0 += cnt[np.uint64(np.int64(idx[x - p0]) + 1)]
        a1 += cnt[np.uint64(np.int64(idx[x - p1]) + 1)]
        a2 += cnt[np.uint64(np.int64(idx[x - p2]) + 1)]
        a3 += cnt[np.uint64(np.int64(idx[x - p3]) + 1)]
    acc[0] += on[0] * a0
    acc[1] += on[1] * a1
    acc[2] += on[2] * a2
    acc[3] += on[3] * a3


@nb.njit(parallel=True, cache=True)
def _pair_sweep(idx, n, th, threads):
    """Per chunk of identifiers, ``S_t = sum_x cnt[idx[x - th[t]]]`` where ``cnt[e]`` counts bucket
    ``e``'s members with identifier ``<= x`` (see :func:`layer_pair_counts_nb`); ``th`` ascending.

    Thresholds go ``_GROUP`` at a time through :func:`_pair_gather`; a chunk is cut where a
    threshold becomes active (``x = th[t]``), so every call has a fixed set of live thresholds.
    """
    size = idx.shape[0]
    nth = th.shape[0]
    ng = (nth + _GROUP - 1) // _GROUP
    nt = max(1, min(threads, size // _CHUNK))
    per = (size + nt - 1) // nt
    cnt0 = np.zeros((nt, n + 1), np.int64)
    for k in nb.prange(nt - 1):
        for x in range(k * per, min(size, (k + 1) * per)):
            cnt0[k + 1, np.int64(idx[x]) + 1] += 1
    for k in range(1, nt):
        cnt0[k] += cnt0[k - 1]
    sums = np.zeros((nt, ng * _GROUP), np.int64)
    loads1 = np.zeros(n + 1, np.int64)
    for k in nb.prange(nt):
        a = k * per
        b = min(size, a + per)
        d = np.zeros(_GROUP, np.int64)
        on = np.zeros(_GROUP, np.int64)
        for g in range(ng):
            cnt = cnt0[k].copy()
            cnt[0] = 0  # slot of the zeroed weights (-1): stays 0
            x = a
            while x < b:
                stop = b
                for q in range(_GROUP):
                    t = g * _GROUP + q
                    live = t < nth and th[min(t, nth - 1)] <= x
                    d[q] = th[t] if live else 0
                    on[q] = 1 if live else 0
                    if t < nth and not live:
                        stop = min(stop, th[t])
                _pair_gather(idx, cnt, x, stop, d, on, sums[k, g * _GROUP : (g + 1) * _GROUP])
                x = stop
            if k == nt - 1 and g == 0:
                loads1[:] = cnt  # the last chunk ends with every bucket's load
    return sums.sum(axis=0)[:nth].copy(), loads1


@nb.njit(cache=True)
def _pair_tail(idx, loads1, th):
    """``sum_{w >= size - th[t]} loads1[idx[w] + 1]`` per (ascending) threshold, one backward pass."""
    size = idx.shape[0]
    out = np.zeros(th.shape[0], np.int64)
    acc = 0
    t = 0
    for w in range(size - 1, -2, -1):
        while t < th.shape[0] and size - th[t] > w:
            out[t] = acc
            t += 1
        if t == th.shape[0] or w < 0:
            break
        acc += loads1[np.int64(idx[w]) + 1]
    while t < th.shape[0]:
        out[t] = acc
        t += 1
    return out


def _check_thresholds(thresholds) -> np.ndarray:
    th = np.asarray(thresholds, dtype=np.int64).reshape(-1)
    if th.size and th.min() < 0:
        raise ValueError(f"pair thresholds must be >= 0, got {th.min()}")
    return th


def layer_pair_counts_ref(idx: np.ndarray, n: int, thresholds: np.ndarray) -> np.ndarray:
    """Co-bucketed pairs of one layer within ``|i - i'| <= d`` per threshold (numpy reference).

    Parameters
    ----------
    idx : ndarray of int16 or int32, shape (N,)
        One layer's flattened entries in ``[0, n)`` or ``-1``.
    n : int
    thresholds : ndarray of int64, shape (T,), each >= 0

    Returns
    -------
    ndarray of int64, shape (T,)
        :func:`pair_counts_ref` on :func:`bucket_sort_ref`.

    Raises
    ------
    ValueError
        If a threshold is negative.
    """
    th = _check_thresholds(thresholds)
    return pair_counts_ref(*bucket_sort_ref(idx, n), th)


def layer_pair_counts_nb(idx: np.ndarray, n: int, thresholds: np.ndarray) -> np.ndarray:
    """numba twin of :func:`layer_pair_counts_ref`: one sweep in identifier order, no sort.

    With ``cnt_x[e]`` = members of bucket ``e`` with identifier ``<= x`` (``x`` clipped to
    ``N - 1``), every weight ``w`` of bucket ``e`` has ``cnt_{w+d}[e] - cnt_w[e]`` partners in
    ``(w, w + d]``, so ``pairs(d) = sum_w cnt_{w+d}[e_w] - sum_e L_e (L_e + 1) / 2``. One pass over
    ``x`` keeps ``cnt_x`` and adds ``cnt_x[e_{x-d}]`` for every threshold (T independent gathers
    from an L1-resident table; no dependent chain), the weights with ``w + d >= N`` add their
    bucket's load. O(N T), in parallel over chunks of ``x`` that start from prefix counts; the
    thresholds go four per pass, each with a register accumulator and unsigned indices (about
    0.3 ns per weight and threshold on one core, against 1 ns for one loop over all thresholds
    with signed, wrap-around indexing).
    """
    th = _check_thresholds(thresholds)
    size = idx.shape[0]
    if th.size == 0:
        return np.zeros(0, np.int64)
    if size == 0:
        return np.zeros(th.size, np.int64)
    th_c = np.minimum(th, size - 1)
    uniq, inv = np.unique(th_c, return_inverse=True)
    # d >= N - 1 takes every pair of a bucket: no sweep (and no tail pass over the whole layer) for it
    part = uniq[uniq < size - 1]
    out = np.empty(uniq.size, np.int64)
    if part.size:
        sums, loads1 = _pair_sweep(idx, n, part, nb.get_num_threads())
        own = int((loads1 * (loads1 + 1) // 2).sum())
        out[: part.size] = sums + _pair_tail(idx, loads1, part) - own
    else:
        loads1 = np.bincount(idx.astype(np.int64) + 1, minlength=n + 1)
        loads1[0] = 0  # zeroed weights have no partners
    out[part.size :] = int((loads1 * (loads1 - 1) // 2).sum())
    return out[inv.reshape(-1)]


class StatsKernels(NamedTuple):
    """The analysis kernels of one backend, by name (the numba set or its numpy reference twins).

    Every field is a function of the module's conventions; the two sets give identical
    (integer) results, so a backend only changes the speed.

    Attributes
    ----------
    loads : callable ``(idx, n) -> (loads, zeroed)``
        Weights per entry, int64 of shape (n,), and the zeroed count (:func:`loads_ref`).
    sign_sums : callable ``(idx, sign, n) -> sums``
        Sum of the sign hash per entry, int64 of shape (n,) (:func:`sign_sums_ref`).
    bucket_sort : callable ``(idx, n) -> (starts, ids)``
        The layer sorted by ``(entry, identifier)`` (:func:`bucket_sort_ref`).
    nearest_partners : callable ``(starts, ids, in_features) -> (d_id, d_grid)``
        Each weight's distance to its nearest bucket partner, int64 aligned with ``ids``
        (:func:`nearest_partner_ref`).
    nearest_histograms : callable ``(starts, ids, in_features) -> (hist_id, hist_grid)``
        Histograms of the nearest-partner distances, int64 (:func:`nearest_histograms_ref`).
    layer_pair_counts : callable ``(idx, n, thresholds) -> pairs``
        Co-bucketed pairs within each identifier distance, int64 of shape (T,)
        (:func:`layer_pair_counts_ref`).
    line_groups : callable ``(indices, sign) -> (row_groups, col_groups)``
        Identical rows and columns of a 2-D layer, int64
        (:func:`hashlab.stats.group_kernels.line_groups_ref`).
    offset_residues : callable ``(idx, n, start) -> counts``
        Weights per residue ``(idx[i] - start - i) mod n``, int64 of shape (n,)
        (:func:`hashlab.stats.offset_kernels.offset_residues_ref`).
    """

    loads: Callable[[np.ndarray, int], tuple[np.ndarray, int]]
    sign_sums: Callable[[np.ndarray, np.ndarray, int], np.ndarray]
    bucket_sort: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    nearest_partners: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    nearest_histograms: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
    layer_pair_counts: Callable[[np.ndarray, int, np.ndarray], np.ndarray]
    line_groups: Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]
    offset_residues: Callable[[np.ndarray, int, int], np.ndarray]


_KERNELS = {
    "numba": StatsKernels(
        loads=loads_nb,
        sign_sums=sign_sums_nb,
        bucket_sort=bucket_sort_nb,
        nearest_partners=nearest_partner_nb,
        nearest_histograms=nearest_histograms_nb,
        layer_pair_counts=layer_pair_counts_nb,
        line_groups=line_groups_nb,
        offset_residues=offset_residues_nb,
    ),
    "numpy": StatsKernels(
        loads=loads_ref,
        sign_sums=sign_sums_ref,
        bucket_sort=bucket_sort_ref,
        nearest_partners=nearest_partner_ref,
        nearest_histograms=nearest_histograms_ref,
        layer_pair_counts=layer_pair_counts_ref,
        line_groups=line_groups_ref,
        offset_residues=offset_residues_ref,
    ),
}


def kernels(backend: str) -> StatsKernels:
    """The :class:`StatsKernels` of ``backend`` (:func:`hashlab.backends.select`; ValueError if unknown)."""
    return select(_KERNELS, backend)
