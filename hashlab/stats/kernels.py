"""Analysis kernels: numba versions and their plain-numpy reference twins.

Every ``*_nb`` kernel (numba, ``parallel=True``, ``cache=True``) has a ``*_ref`` twin
written with vectorised numpy; ``tests/hashlab/stats/test_kernels.py`` shows each pair
agrees exactly (all outputs are integers). The analysis in :mod:`hashlab.stats` and
:mod:`hashlab.stats.locality` calls them through :func:`kernels`.

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

import numba as nb
import numpy as np

__all__ = [
    "loads_ref", "loads_nb", "sign_sums_ref", "sign_sums_nb", "bucket_sort_ref", "bucket_sort_nb",
    "nearest_partner_ref", "nearest_partner_nb", "nearest_histograms_ref", "nearest_histograms_nb",
    "pair_counts_ref", "layer_pair_counts_ref", "layer_pair_counts_nb", "kernels", "BACKENDS",
]

BACKENDS = ("numba", "numpy")
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
    return np.bincount(idx[keep].astype(np.int64), weights=sign[keep].astype(np.float64),
                       minlength=n).round().astype(np.int64)


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


_CELL_SIDE = 1.4  # cell side in mean spacings sqrt(bounding-box area / load): ~2 members per cell
_HIST_CAP = 1 << 16  # identifier distances below this go to per-worker histograms, larger ones to a list


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


@nb.njit(cache=True)
def _grid_search(q, r, c, cr, cc, best, size, ncr, ncc, cstart, crow, ccol):
    """Exact grid distance from point ``q`` at ``(r, c)`` in cell ``(cr, cc)``, block by block.

    Block ``k`` is the ``(2k+1) x (2k+1)`` cells around ``(cr, cc)``; the cells of one cell-row
    of a block are consecutive, so their members form one contiguous range. Block 1 is
    scanned whole, then each ring ``k >= 2`` (full top and bottom rows, two side cells per row
    in between), until no unvisited point can be closer than ``best``.
    """
    big = np.iinfo(np.int64).max
    k = 1
    while True:
        for dr in range(-k, k + 1):
            rr = cr + dr
            if rr < 0 or rr >= ncr:
                continue
            if dr > 0:
                gap = rr * size - r
            elif dr < 0:
                gap = r - (rr * size + size - 1)
            else:
                gap = 0
            if gap >= best:
                continue
            row0 = rr * ncc
            if k == 1 or dr == -k or dr == k:
                lo_cell = max(cc - k, 0)
                hi_cell = min(cc + k, ncc - 1)
                for p in range(cstart[row0 + lo_cell], cstart[row0 + hi_cell + 1]):
                    g = max(abs(crow[p] - r), abs(ccol[p] - c))
                    if g < best and p != q:
                        best = g
            else:
                for side in (cc - k, cc + k):
                    if 0 <= side < ncc:
                        for p in range(cstart[row0 + side], cstart[row0 + side + 1]):
                            g = max(abs(crow[p] - r), abs(ccol[p] - c))
                            if g < best:
                                best = g
        # every point outside the block is at least `bound` away
        bound = big
        if cr - k > 0:
            bound = min(bound, r - (cr - k) * size + 1)
        if cr + k < ncr - 1:
            bound = min(bound, (cr + k + 1) * size - r)
        if cc - k > 0:
            bound = min(bound, c - (cc - k) * size + 1)
        if cc + k < ncc - 1:
            bound = min(bound, (cc + k + 1) * size - c)
        if best <= bound or bound == big:
            return best
        k += 1


@nb.njit(cache=True)
def _cell_shape(size, rv, cv):
    """Origin, cell side and cell counts of one bucket's grid (members ``rv[:size]``, ``cv[:size]``)."""
    rmin = np.int64(rv[0])  # members come in identifier order: rows ascending
    rmax = np.int64(rv[size - 1])
    cmin = np.int64(cv[0])
    cmax = np.int64(cv[0])
    for j in range(size):
        cmin = min(cmin, np.int64(cv[j]))
        cmax = max(cmax, np.int64(cv[j]))
    area = (rmax - rmin + 1) * (cmax - cmin + 1)
    side = max(np.int64(_CELL_SIDE * np.sqrt(area / size)), 1)
    return rmin, cmin, side, (rmax - rmin) // side + 1, (cmax - cmin) // side + 1


@nb.njit(cache=True)
def _bucket_grid(size, rv, cv, dg, rmin, cmin, side, ncr, ncc, cstart, cfill, pcell, crow, ccol, corig, br, bc):
    """Lower ``dg[j]`` to the exact grid distance for every member with ``dg[j] > 1`` (one bucket).

    The members are counting-sorted into square cells of ``side``; the 3 x 3 block of cells
    around a cell is the same for all its members, so its points are gathered once into
    ``br, bc`` and each open member takes a branch-free minimum over them. A member whose best
    distance exceeds its distance to the block's outside (rare) continues with the ring search
    of :func:`_grid_search`. All arrays are the worker's, sized by the caller.
    """
    big = np.iinfo(np.int64).max
    big32 = np.int32(2147483647)
    ncell = ncr * ncc
    inv = 1.0 / side
    for k in range(ncell + 1):
        cstart[k] = 0
    for j in range(size):
        a = _divmod_fast(np.int64(rv[j]) - rmin, side, inv)[0]
        b = _divmod_fast(np.int64(cv[j]) - cmin, side, inv)[0]
        cell = a * ncc + b
        pcell[j] = cell
        cstart[cell + 1] += 1
    for k in range(ncell):
        cstart[k + 1] += cstart[k]
        cfill[k] = cstart[k]
    for j in range(size):
        p = cfill[pcell[j]]
        cfill[pcell[j]] = p + 1
        crow[p] = rv[j] - rmin
        ccol[p] = cv[j] - cmin
        corig[p] = j
    for cr in range(ncr):
        for cc in range(ncc):
            cell = cr * ncc + cc
            a = cstart[cell]
            b = cstart[cell + 1]
            any_open = False
            for u in range(a, b):
                if dg[corig[u]] > 1:
                    any_open = True
                    break
            if not any_open:
                continue
            lo_cell = max(cc - 1, 0)
            hi_cell = min(cc + 1, ncc - 1)
            nbuf = 0
            for rr in range(max(cr - 1, 0), min(cr + 1, ncr - 1) + 1):
                row0 = rr * ncc
                for p in range(cstart[row0 + lo_cell], cstart[row0 + hi_cell + 1]):
                    br[nbuf] = crow[p]
                    bc[nbuf] = ccol[p]
                    nbuf += 1
            for u in range(a, b):
                j = corig[u]
                if dg[j] <= 1:
                    continue
                r = crow[u]
                c = ccol[u]
                m32 = big32
                for v in range(nbuf):
                    g = max(abs(br[v] - r), abs(bc[v] - c))
                    g = big32 if g == 0 else g  # g == 0 only for the member itself
                    m32 = min(m32, g)
                best = min(dg[j], np.int64(m32))
                bound = big
                if cr - 1 > 0:
                    bound = min(bound, np.int64(r) - (cr - 1) * side + 1)
                if cr + 1 < ncr - 1:
                    bound = min(bound, (cr + 2) * side - r)
                if cc - 1 > 0:
                    bound = min(bound, np.int64(c) - (cc - 1) * side + 1)
                if cc + 1 < ncc - 1:
                    bound = min(bound, (cc + 2) * side - c)
                if best > bound and bound != big:
                    best = _grid_search(u, np.int64(r), np.int64(c), cr, cc, best, side, ncr, ncc, cstart, crow, ccol)
                dg[j] = best


@nb.njit(parallel=True, cache=True)
def _nearest_buckets(starts, ids, cols, threads, points, cap, d_id_out, d_grid_out):
    """Nearest partners bucket by bucket, in worker-local buffers.

    ``points``: write ``d_id_out`` / ``d_grid_out`` aligned with ``ids`` (``-1`` for a lone
    member). Otherwise histogram them: returns per-worker histograms of identifier distances
    below ``cap`` and of grid distances, and the larger identifier distances (per worker a list
    in ``ovf[starts[first bucket]:]`` of ``novf`` values).
    """
    nbk = starts.shape[0] - 1
    m = ids.shape[0]
    big = np.iinfo(np.int64).max
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
    hid = np.zeros((nt if not points else 0, cap), np.int64)
    hgrid = np.zeros((nt if not points else 0, max(rows, cols) + 1), np.int64)
    ovf = np.empty(m if not points else 0, np.int64)
    novf = np.zeros(nt, np.int64)
    inv_cols = 1.0 / cols
    for w in nb.prange(nt):
        rv = np.empty(maxload, np.int32)
        cv = np.empty(maxload, np.int32)
        did = np.empty(maxload, np.int64)
        dg = np.empty(maxload, np.int64)
        pcell = np.empty(maxload, np.int64)
        crow = np.empty(maxload, np.int32)
        ccol = np.empty(maxload, np.int32)
        corig = np.empty(maxload, np.int32)
        br = np.empty(maxload, np.int32)
        bc = np.empty(maxload, np.int32)
        cstart = np.empty(maxload + 2, np.int64)
        cfill = np.empty(maxload + 2, np.int64)
        ov = starts[bb[w]]
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
            for j in range(size):
                r, c = _divmod_fast(np.int64(ids[lo + j]), cols, inv_cols)
                rv[j] = r
                cv[j] = c
            nopen = 0
            for j in range(size):
                dj = big
                gj = big
                if j > 0:
                    dj = np.int64(ids[lo + j]) - np.int64(ids[lo + j - 1])
                    gj = np.int64(max(rv[j] - rv[j - 1], abs(cv[j] - cv[j - 1])))
                if j + 1 < size:
                    dj = min(dj, np.int64(ids[lo + j + 1]) - np.int64(ids[lo + j]))
                    gj = min(gj, np.int64(max(rv[j + 1] - rv[j], abs(cv[j + 1] - cv[j]))))
                did[j] = dj
                dg[j] = gj
                nopen += gj > 1
            if nopen:
                rmin, cmin, side, ncr, ncc = _cell_shape(size, rv, cv)
                if ncr * ncc + 1 > cstart.shape[0]:
                    cstart = np.empty(2 * (ncr * ncc + 1), np.int64)
                    cfill = np.empty(2 * (ncr * ncc + 1), np.int64)
                _bucket_grid(size, rv, cv, dg, rmin, cmin, side, ncr, ncc, cstart, cfill, pcell, crow, ccol, corig,
                             br, bc)
            if points:
                for j in range(size):
                    d_id_out[lo + j] = did[j]
                    d_grid_out[lo + j] = dg[j]
            else:
                for j in range(size):
                    d = did[j]
                    if d < cap:
                        hid[w, d] += 1
                    else:
                        ovf[ov] = d
                        ov += 1
                    hgrid[w, dg[j]] += 1
        novf[w] = ov - starts[bb[w]]
    return hid, hgrid, ovf, novf, bb


def _trim(hist: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(hist)
    return hist[:nz[-1] + 1].copy() if nz.size else np.zeros(1, np.int64)


def nearest_partner_nb(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`nearest_partner_ref`, bucket by bucket in parallel.

    Per bucket, in buffers local to the worker: the identifier-order neighbours give the 1-D
    distance and a first bound on the grid distance, which settles it when it is 1 (line-like
    and block-like buckets: convolutions, modulus, blocks). If any member stays open, the
    bucket's members are counting-sorted into square cells about 1.4 mean spacings of the
    bucket's bounding box wide, and each open member scans the 3 x 3 block of cells around its
    own, then rings of cells until the best distance is no larger than the distance to any
    unvisited cell. Expected O(1) work per weight for position-independent hashes; exact always.
    """
    m = ids.shape[0]
    d_id = np.empty(m, np.int64)
    d_grid = np.empty(m, np.int64)
    if m:
        _nearest_buckets(starts, ids, np.int64(in_features), nb.get_num_threads(), True, 1, d_id, d_grid)
    return d_id, d_grid


def nearest_histograms_ref(starts: np.ndarray, ids: np.ndarray, in_features: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the nearest-partner distances (numpy reference).

    Returns
    -------
    hist_id, hist_grid : ndarray of int64
        ``np.bincount`` of the non-negative ``d_id`` / ``d_grid`` of :func:`nearest_partner_ref`
        (length: the largest distance + 1; ``[0]`` when no weight has a partner).
    """
    d_id, d_grid = nearest_partner_ref(starts, ids, in_features)
    return tuple(np.bincount(d[d >= 0]).astype(np.int64) if (d >= 0).any() else np.zeros(1, np.int64)
                 for d in (d_id, d_grid))


def nearest_histograms_nb(starts: np.ndarray, ids: np.ndarray, in_features: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`nearest_histograms_ref`: :func:`nearest_partner_nb`'s per-bucket work
    with per-worker histograms instead of per-weight arrays (no O(M) output)."""
    if ids.shape[0] == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    empty = np.empty(0, np.int64)
    hid, hgrid, ovf, novf, bb = _nearest_buckets(starts, ids, np.int64(in_features), nb.get_num_threads(), False,
                                                 _HIST_CAP, empty, empty)
    h_id = hid.sum(axis=0)
    extra = np.concatenate([ovf[starts[bb[w]]:starts[bb[w]] + novf[w]] for w in range(len(novf))])
    if extra.size:
        h_id = np.concatenate([h_id, np.zeros(int(extra.max()) + 1 - h_id.size, np.int64)])
        h_id += np.bincount(extra, minlength=h_id.size)
    return _trim(h_id), _trim(hgrid.sum(axis=0))


@nb.njit(parallel=True, cache=True)
def _pair_sweep(idx, n, th, threads):
    """Per chunk of identifiers, ``S_t = sum_x cnt[idx[x - th[t]]]`` where ``cnt[e]`` counts bucket
    ``e``'s members with identifier ``<= x`` (see :func:`layer_pair_counts_nb`)."""
    size = idx.shape[0]
    nth = th.shape[0]
    nt = max(1, min(threads, size // _CHUNK))
    per = (size + nt - 1) // nt
    cnt0 = np.zeros((nt, n + 1), np.int64)
    for k in nb.prange(nt - 1):
        for x in range(k * per, min(size, (k + 1) * per)):
            cnt0[k + 1, np.int64(idx[x]) + 1] += 1
    for k in range(1, nt):
        cnt0[k] += cnt0[k - 1]
    sums = np.zeros((nt, nth), np.int64)
    for k in nb.prange(nt):
        cnt = cnt0[k].copy()
        cnt[0] = 0  # slot of the zeroed weights (-1): stays 0
        acc = np.zeros(nth, np.int64)
        x = k * per
        b = min(size, x + per)
        na = 0
        while x < b:
            while na < nth and th[na] <= x:
                na += 1
            stop = min(b, th[na]) if na < nth else b
            for y in range(x, stop):
                e = np.int64(idx[y]) + 1
                cnt[e] += np.int64(e > 0)
                for t in range(na):
                    acc[t] += cnt[np.int64(idx[y - th[t]]) + 1]
            x = stop
        sums[k] = acc
        if k == nt - 1:
            cnt0[k] = cnt  # the last chunk ends with every bucket's load
    return sums.sum(axis=0), cnt0[nt - 1].copy()


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
    bucket's load. O(N T), in parallel over chunks of ``x`` that start from prefix counts.
    """
    th = _check_thresholds(thresholds)
    size = idx.shape[0]
    if th.size == 0:
        return np.zeros(0, np.int64)
    if size == 0:
        return np.zeros(th.size, np.int64)
    th_c = np.minimum(th, size - 1)
    uniq, inv = np.unique(th_c, return_inverse=True)
    sums, loads1 = _pair_sweep(idx, n, uniq, nb.get_num_threads())
    tail = _pair_tail(idx, loads1, uniq)
    own = int((loads1 * (loads1 + 1) // 2).sum())
    return (sums + tail - own)[inv.reshape(-1)].astype(np.int64)


def kernels(backend: str):
    """The kernel set of ``backend``: ``(loads, sign_sums, bucket_sort, nearest_histograms, layer_pair_counts)``.

    Raises
    ------
    ValueError
        If ``backend`` is not ``"numba"`` or ``"numpy"``.
    """
    if backend == "numba":
        return loads_nb, sign_sums_nb, bucket_sort_nb, nearest_histograms_nb, layer_pair_counts_nb
    if backend == "numpy":
        return loads_ref, sign_sums_ref, bucket_sort_ref, nearest_histograms_ref, layer_pair_counts_ref
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
