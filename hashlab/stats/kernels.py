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
    "nearest_partner_ref", "nearest_partner_nb", "pair_counts_ref", "pair_counts_nb", "kernels", "BACKENDS",
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


@nb.njit(inline="always")
def _first_geq(ids, p, hi, t):
    """First position in [p, hi) with ids[pos] >= t (galloping from p), or hi."""
    step = 1
    q = p
    while q < hi and ids[q] < t:
        p = q + 1
        q = p + step - 1
        step *= 2
    if q > hi:
        q = hi
    while p < q:
        mid = (p + q) >> 1
        if ids[mid] < t:
            p = mid + 1
        else:
            q = mid
    return p


@nb.njit(inline="always")
def _last_leq(ids, lo, p, t):
    """Last position in [lo, p] with ids[pos] <= t (galloping down from p), or lo - 1."""
    step = 1
    q = p
    while q >= lo and ids[q] > t:
        p = q - 1
        q = p - step + 1
        step *= 2
    if q < lo:
        q = lo - 1
    # answer in [q, p]; ids[p + 1] > t if p + 1 was tested
    while q < p:
        mid = (q + p + 1) >> 1
        if ids[mid] <= t:
            q = mid
        else:
            p = mid - 1
    return q


_CELL_SIDE = 2.0  # cell side in units of the mean spacing sqrt(area / load): ~4 members per cell
_PROBE_ROWS = 0  # rows scanned each way before the grid search (0: only the id-order bound)


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
def _row_probe(ids, rowv, colv, lo, hi, j, cols, rows, big, max_rows):
    """Identifier-order distance, and the grid distance if rows within ``max_rows`` prove it.

    Returns ``(d_id, best, proven)``: ``best`` is an upper bound of the grid distance, exact
    when ``proven``. Rows are visited nearest first, skipping rows with no bucket member.
    """
    v = ids[j]
    r = rowv[j]
    c = colv[j]
    did = big
    best = big
    if j > lo:
        did = v - ids[j - 1]
        best = max(r - rowv[j - 1], abs(c - colv[j - 1]))
    if j + 1 < hi:
        dn = ids[j + 1] - v
        if dn < did:
            did = dn
        g = max(rowv[j + 1] - r, abs(c - colv[j + 1]))
        if g < best:
            best = g
    down = 1
    up = 1
    pd = j + 1
    pu = j - 1
    while True:
        if down < big and (down >= best or r + down >= rows or pd >= hi):
            down = big
        if up < big and (up >= best or r - up < 0 or pu < lo):
            up = big
        if down == big and up == big:
            return did, best, True
        if min(down, up) > max_rows:
            return did, best, False  # every member with |row offset| <= max_rows was seen
        if down <= up:
            rr = r + down
            p = _first_geq(ids, pd, hi, rr * cols + c)
            if p < hi and rowv[p] == rr:
                g = max(down, colv[p] - c)
                if g < best:
                    best = g
            if p - 1 > j and rowv[p - 1] == rr:
                g = max(down, c - colv[p - 1])
                if g < best:
                    best = g
            pd = p
            if p < hi and rowv[p] > rr:
                down = rowv[p] - r  # the rows in between hold no member
            else:
                down += 1
        else:
            rr = r - up
            p = _last_leq(ids, lo, pu, rr * cols + c)
            if p >= lo and rowv[p] == rr:
                g = max(up, c - colv[p])
                if g < best:
                    best = g
            if p + 1 < j and rowv[p + 1] == rr:
                g = max(up, colv[p + 1] - c)
                if g < best:
                    best = g
            pu = p
            if p >= lo and rowv[p] < rr:
                up = r - rowv[p]
            else:
                up += 1


@nb.njit(cache=True)
def _grid_search(q, r, c, cr, cc, best, size, ncr, ncc, cbase, cstart, crow, ccol):
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
            row0 = cbase + rr * ncc
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
def _grid_shape(starts, rows, cols):
    nbuckets = starts.shape[0] - 1
    size = np.ones(nbuckets, np.int64)
    ncr = np.ones(nbuckets, np.int64)
    ncc = np.ones(nbuckets, np.int64)
    cbase = np.zeros(nbuckets + 1, np.int64)
    for e in range(nbuckets):
        load = starts[e + 1] - starts[e]
        if load > 0:
            size[e] = max(np.int64(_CELL_SIDE * np.sqrt(rows * cols / load)), 1)
            ncr[e] = (rows + size[e] - 1) // size[e]
            ncc[e] = (cols + size[e] - 1) // size[e]
        cbase[e + 1] = cbase[e] + (ncr[e] * ncc[e] if load > 0 else 0)
    return size, ncr, ncc, cbase


@nb.njit(parallel=True, cache=True)
def _grid_build(starts, rowv, colv, size, ncc, cbase):
    """Counting-sort each bucket's members into its cells; returns cell-ordered copies (int32)."""
    m = rowv.shape[0]
    nbuckets = starts.shape[0] - 1
    cstart = np.empty(cbase[nbuckets] + 1, np.int64)
    cfill = np.zeros(cbase[nbuckets], np.int64)
    cstart[cbase[nbuckets]] = m
    tcr = np.empty(m, np.int32)
    tcc = np.empty(m, np.int32)
    crow = np.empty(m, np.int32)
    ccol = np.empty(m, np.int32)
    ccr = np.empty(m, np.int32)
    ccc = np.empty(m, np.int32)
    corig = np.empty(m, np.int32)
    cbucket = np.empty(m, np.int32)
    for e in nb.prange(nbuckets):
        lo = starts[e]
        hi = starts[e + 1]
        if hi == lo:
            continue
        base = cbase[e]
        sz = size[e]
        inv = 1.0 / sz
        w = ncc[e]
        for j in range(lo, hi):
            a = _divmod_fast(np.int64(rowv[j]), sz, inv)[0]
            b = _divmod_fast(np.int64(colv[j]), sz, inv)[0]
            tcr[j] = a
            tcc[j] = b
            cfill[base + a * w + b] += 1
        acc = lo
        for cell in range(base, cbase[e + 1]):
            cstart[cell] = acc
            acc += cfill[cell]
            cfill[cell] = cstart[cell]
        for j in range(lo, hi):
            cell = base + tcr[j] * w + tcc[j]
            p = cfill[cell]
            cfill[cell] = p + 1
            crow[p] = rowv[j]
            ccol[p] = colv[j]
            ccr[p] = tcr[j]
            ccc[p] = tcc[j]
            corig[p] = j
            cbucket[p] = e
    return cstart, crow, ccol, ccr, ccc, corig, cbucket


@nb.njit(parallel=True, cache=True)
def _grid_pass(d_grid, proven, size, ncr, ncc, cbase, cstart, crow, ccol, ccr, ccc, corig, cbucket):
    """Settle every open weight, cell by cell.

    The 3 x 3 block of cells around a cell is the same for all its members, so its points are
    gathered once into a small buffer and each member takes a branch-free minimum over it.
    A member whose best distance exceeds its distance to the block's outside (rare) continues
    with the ring search of :func:`_grid_search`.
    """
    m = crow.shape[0]
    big = np.iinfo(np.int64).max
    nchunks = (m + _CHUNK - 1) // _CHUNK
    for k in nb.prange(nchunks):
        br = np.empty(64, np.int32)
        bc = np.empty(64, np.int32)
        q = k * _CHUNK
        stop = min(m, (k + 1) * _CHUNK)
        # start at a cell boundary: a cell that straddles chunks belongs to the earlier chunk
        while q > 0 and q < stop and ccr[q] == ccr[q - 1] and ccc[q] == ccc[q - 1] and cbucket[q] == cbucket[q - 1]:
            q += 1
        while q < m and (q < stop or (ccr[q] == ccr[q - 1] and ccc[q] == ccc[q - 1] and cbucket[q] == cbucket[q - 1])):
            e = cbucket[q]
            cr = ccr[q]
            cc = ccc[q]
            cell = cbase[e] + cr * ncc[e] + cc
            a = q
            b = cstart[cell + 1]
            q = b
            any_open = False
            for u in range(a, b):
                if not proven[corig[u]]:
                    any_open = True
                    break
            if not any_open:
                continue
            lo_cell = max(cc - 1, 0)
            hi_cell = min(cc + 1, ncc[e] - 1)
            count = 0
            for rr in range(max(cr - 1, 0), min(cr + 1, ncr[e] - 1) + 1):
                row0 = cbase[e] + rr * ncc[e]
                count += cstart[row0 + hi_cell + 1] - cstart[row0 + lo_cell]
            if count > br.shape[0]:
                br = np.empty(2 * count, np.int32)
                bc = np.empty(2 * count, np.int32)
            nbuf = 0
            for rr in range(max(cr - 1, 0), min(cr + 1, ncr[e] - 1) + 1):
                row0 = cbase[e] + rr * ncc[e]
                for p in range(cstart[row0 + lo_cell], cstart[row0 + hi_cell + 1]):
                    br[nbuf] = crow[p]
                    bc[nbuf] = ccol[p]
                    nbuf += 1
            sz = size[e]
            for u in range(a, b):
                j = corig[u]
                if proven[j]:
                    continue
                r = crow[u]
                c = ccol[u]
                best = d_grid[j]
                for v in range(nbuf):
                    g = np.int64(max(abs(br[v] - r), abs(bc[v] - c)))
                    g = big if g == 0 else g  # g == 0 only for the member itself
                    best = min(best, g)
                bound = big
                if cr - 1 > 0:
                    bound = min(bound, r - (cr - 1) * sz + 1)
                if cr + 1 < ncr[e] - 1:
                    bound = min(bound, (cr + 2) * sz - r)
                if cc - 1 > 0:
                    bound = min(bound, c - (cc - 1) * sz + 1)
                if cc + 1 < ncc[e] - 1:
                    bound = min(bound, (cc + 2) * sz - c)
                if best > bound and bound != big:
                    best = _grid_search(u, r, c, cr, cc, best, sz, ncr[e], ncc[e], cbase[e], cstart, crow, ccol)
                d_grid[j] = best


@nb.njit(parallel=True, cache=True)
def _probe_pass(starts, ids, cols, max_rows):
    m = ids.shape[0]
    nbuckets = starts.shape[0] - 1
    d_id = np.empty(m, np.int64)
    d_grid = np.empty(m, np.int64)
    rowv = np.empty(m, np.int32)
    colv = np.empty(m, np.int32)
    proven = np.empty(m, np.bool_)
    big = np.iinfo(np.int64).max
    nchunks = (m + _CHUNK - 1) // _CHUNK
    rmax = np.zeros(max(nchunks, 1), np.int64)
    nopen = np.zeros(max(nchunks, 1), np.int64)
    inv_cols = 1.0 / cols
    for k in nb.prange(nchunks):
        for j in range(k * _CHUNK, min(m, (k + 1) * _CHUNK)):
            rj, cj = _divmod_fast(np.int64(ids[j]), cols, inv_cols)
            rowv[j] = rj
            colv[j] = cj
            if rj + 1 > rmax[k]:
                rmax[k] = rj + 1
    rows = rmax.max()
    for k in nb.prange(nchunks):
        a = k * _CHUNK
        b = min(m, a + _CHUNK)
        e = np.searchsorted(starts, a, side="right") - 1
        for j in range(a, b):
            while starts[e + 1] <= j and e < nbuckets - 1:
                e += 1
            if max_rows == 0:  # fast path: identifier-order neighbours only
                lo = starts[e]
                hi = starts[e + 1]
                dj = big
                dg = big
                if j > lo:
                    dj = np.int64(ids[j]) - ids[j - 1]
                    dg = max(rowv[j] - rowv[j - 1], abs(colv[j] - colv[j - 1]))
                if j + 1 < hi:
                    dj = min(dj, np.int64(ids[j + 1]) - ids[j])
                    dg = min(dg, max(rowv[j + 1] - rowv[j], abs(colv[j + 1] - colv[j])))
                ok = dg <= 1 or hi - lo < 2
            else:
                dj, dg, ok = _row_probe(ids, rowv, colv, starts[e], starts[e + 1], j, cols, rows, big, max_rows)
            d_id[j] = -1 if dj == big else dj
            d_grid[j] = dg
            proven[j] = ok
            if not ok:
                nopen[k] += 1
    return d_id, d_grid, rowv, colv, proven, rows, nopen.sum()


def _nearest_kernel(starts, ids, cols, max_rows):
    d_id, d_grid, rowv, colv, proven, rows, nopen = _probe_pass(starts, ids, cols, max_rows)
    if nopen:
        size, ncr, ncc, cbase = _grid_shape(starts, rows, cols)
        grid = _grid_build(starts, rowv, colv, size, ncc, cbase)
        _grid_pass(d_grid, proven, size, ncr, ncc, cbase, *grid)
    d_grid[d_grid == np.iinfo(np.int64).max] = -1
    return d_id, d_grid


def nearest_partner_nb(starts: np.ndarray, ids: np.ndarray, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`nearest_partner_ref`.

    Stage 1, per weight: the identifier-order neighbours give the 1-D distance and a first
    bound on the grid distance, which settles it when it is 1 (line-like and block-like
    buckets: convolutions, modulus, blocks). ``_PROBE_ROWS > 0`` would also visit rows
    ``row +- 1 .. +- _PROBE_ROWS`` (galloping search, rows without members skipped). Stage 2, for the weights not yet settled: each bucket
    gets a grid of square cells sized to hold about one member each, searched ring by ring
    until the best distance is no larger than the distance to any unvisited cell. Expected
    O(1) work per weight for position-independent hashes; exact in every case.
    """
    return _nearest_kernel(starts, ids, np.int64(in_features), np.int64(_PROBE_ROWS))


@nb.njit(parallel=True, cache=True)
def _pair_kernel(starts, ids, thresholds):
    nt = thresholds.shape[0]
    nbuckets = starts.shape[0] - 1
    local = np.zeros((nbuckets, nt), np.int64)
    for e in nb.prange(nbuckets):
        lo = starts[e]
        hi = starts[e + 1]
        size = hi - lo
        if size < 2:
            continue
        span = np.int64(ids[hi - 1]) - np.int64(ids[lo])
        for t in range(nt):
            d = thresholds[t]
            if d >= span:
                local[e, t] = size * (size - 1) // 2
                continue
            # branch-free merge of the sorted ids with the sorted queries ids + d:
            # each step either counts ids[k] <= ids[i] + d (k += 1) or closes query i
            i = lo
            k = lo
            acc = 0
            while k < hi:
                c = np.int64(ids[k]) <= np.int64(ids[i]) + d
                k += c
                acc += (1 - c) * (k - i - 1)
                i += 1 - c
            # queries left once k == hi see every later member
            rest = hi - i
            acc += rest * (rest - 1) // 2
            local[e, t] = acc
    return local.sum(axis=0)


def pair_counts_nb(starts: np.ndarray, ids: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """numba twin of :func:`pair_counts_ref`: per bucket and threshold, one monotone pointer; O(M * T)."""
    return _pair_kernel(starts, ids, np.ascontiguousarray(thresholds, dtype=np.int64))


def kernels(backend: str):
    """The kernel set of ``backend``: ``(loads, sign_sums, bucket_sort, nearest_partner, pair_counts)``.

    Raises
    ------
    ValueError
        If ``backend`` is not ``"numba"`` or ``"numpy"``.
    """
    if backend == "numba":
        return loads_nb, sign_sums_nb, bucket_sort_nb, nearest_partner_nb, pair_counts_nb
    if backend == "numpy":
        return loads_ref, sign_sums_ref, bucket_sort_ref, nearest_partner_ref, pair_counts_ref
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
