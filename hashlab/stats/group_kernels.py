"""Identical rows and columns of a layer: numba grouping kernels and their numpy twins.

A weight's position key is ``0`` if it is zeroed (``-1``) else ``2 (index + 1) + (sign < 0)``;
rows (columns) are identical when their key sequences are equal (:mod:`hashlab.stats.degeneracy`
describes the algorithm and uses these kernels through :func:`hashlab.stats.kernels.kernels`).
``tests/hashlab/stats/test_degeneracy.py`` shows both twins agree with brute force.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..maps.kernels import _P1, _P2, _P3
from ..maps.kernels import _avalanche as _final  # the XXH64 avalanche: rows hash like identifiers

__all__ = [
    "position_keys",
    "row_groups_ref",
    "col_groups_ref",
    "line_groups_ref",
    "line_groups_nb",
]

_SEED = np.uint64(0x9E3779B97F4A7C15)


# --------------------------------------------------------------------------- numpy twins
def position_keys(indices: np.ndarray, sign: np.ndarray | None) -> np.ndarray:
    """Key of each weight: ``0`` if zeroed, else ``2 (index + 1) + (sign < 0)``.

    Parameters
    ----------
    indices : ndarray of shape (R, C), int16 or int32, in [-1, n)
    sign : ndarray of shape (R, C), int8 in {-1, +1}, or None

    Returns
    -------
    ndarray of shape (R, C), int64, >= 0
    """
    idx = indices.astype(np.int64)
    key = 2 * (idx + 1)
    if sign is not None:
        key += sign < 0
    key[idx < 0] = 0
    return key


def _groups_ref(keys: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)].astype(np.int64)


def row_groups_ref(indices: np.ndarray, sign: np.ndarray | None) -> np.ndarray:
    """Group identical rows (numpy reference, ``numpy.unique(axis=0)``).

    Returns
    -------
    ndarray of shape (R,), int64
        ``g[o]`` = the smallest row index whose key row equals row ``o``'s.
    """
    return _groups_ref(position_keys(indices, sign))


def col_groups_ref(indices: np.ndarray, sign: np.ndarray | None) -> np.ndarray:
    """Group identical columns (numpy reference); ``g[c]`` = the smallest equal column, shape (C,)."""
    return _groups_ref(np.ascontiguousarray(position_keys(indices, sign).T))


# --------------------------------------------------------------------------- numba kernels
@nb.njit(inline="always")
def _multiplier(i, stream):
    """Odd pseudo-random 64-bit multiplier of line ``i`` (SplitMix64 of ``i`` in one of two streams)."""
    z = np.uint64(i) * _P1 + _SEED * np.uint64(stream + 1)
    z = (z ^ (z >> np.uint64(30))) * _P2
    z = (z ^ (z >> np.uint64(27))) * _P3
    return (z ^ (z >> np.uint64(31))) | np.uint64(1)


@nb.njit(parallel=True, cache=True)
def _line_hashes(indices, sign, has_sign, threads):
    """Row and column hashes of the position keys in one pass over the matrix, in memory order.

    Linear hashes: ``h_row[r] = sum_c key[r, c] * A[c]`` and ``h_col[c] = sum_r key[r, c] * B[r]``
    modulo 2**64, with odd pseudo-random multipliers ``A``, ``B`` (:func:`_multiplier`), then the
    XXH64 avalanche. Two different lines collide with probability about 2**-51 (keys differ by
    less than 2**13); collisions are harmless anyway (:func:`_group` compares exactly). Both sums
    vectorise, and workers over blocks of rows keep partial column sums that simply add up.
    """
    nr, nc = indices.shape
    nt = max(1, min(threads, nr))
    per = (nr + nt - 1) // nt
    amul = np.empty(nc, np.uint64)
    for c in range(nc):
        amul[c] = _multiplier(c, 0)
    hrow = np.empty(nr, np.uint64)
    hcol = np.zeros((nt, nc), np.uint64)
    two = np.uint64(2)
    for t in nb.prange(nt):
        hc = hcol[t]
        for r in range(t * per, min(nr, (t + 1) * per)):
            bm = _multiplier(r, 1)
            acc = np.uint64(0)
            if has_sign:
                for c in range(nc):
                    v = np.int64(indices[r, c]) + 1
                    k = (np.uint64(2 * v) + np.uint64(sign[r, c] < 0)) * np.uint64(v > 0)
                    acc += k * amul[c]
                    hc[c] += k * bm
            else:
                for c in range(nc):
                    v = np.int64(indices[r, c]) + 1
                    k = np.uint64(v) * two * np.uint64(v > 0)
                    acc += k * amul[c]
                    hc[c] += k * bm
            hrow[r] = _final(acc)
    outc = np.empty(nc, np.uint64)
    for c in range(nc):
        h = np.uint64(0)
        for t in range(nt):
            h += hcol[t, c]
        outc[c] = _final(h)
    return hrow, outc


@nb.njit(inline="always")
def _same(indices, sign, has_sign, r1, c1, r2, c2):
    """``_key(r1, c1) == _key(r2, c2)`` with one comparison in the common case (equal indices)."""
    va = indices[r1, c1]
    vb = indices[r2, c2]
    if va != vb:
        return va < 0 and vb < 0  # two zeroed weights are equal whatever else
    if has_sign and va >= 0:
        return (sign[r1, c1] < 0) == (sign[r2, c2] < 0)
    return True


@nb.njit(inline="always")
def _equal(indices, sign, has_sign, a, b, by_row):
    if by_row:
        for c in range(indices.shape[1]):
            if not _same(indices, sign, has_sign, a, c, b, c):
                return False
    else:
        for r in range(indices.shape[0]):
            if not _same(indices, sign, has_sign, r, a, r, b):
                return False
    return True


@nb.njit(cache=True)
def _group(hashes, order, indices, sign, has_sign, by_row):
    """Label each row (column) with the smallest equal one; exact within runs of equal hashes."""
    m = hashes.shape[0]
    label = np.empty(m, np.int64)
    reps = np.empty(m, np.int64)
    s = 0
    while s < m:
        e = s + 1
        while e < m and hashes[order[e]] == hashes[order[s]]:
            e += 1
        nrep = 0
        for j in range(s, e):  # ascending index within the run (stable sort)
            a = order[j]
            found = -1
            for q in range(nrep):
                if _equal(indices, sign, has_sign, reps[q], a, by_row):
                    found = reps[q]
                    break
            if found < 0:
                reps[nrep] = a
                nrep += 1
                found = a
            label[a] = found
        s = e
    return label


@nb.njit(cache=True)
def _first_of_runs(hashes, order):
    """Label each column with the first (smallest) member of its run of equal hashes (stable order)."""
    m = hashes.shape[0]
    label = np.empty(m, np.int64)
    s = 0
    while s < m:
        e = s + 1
        while e < m and hashes[order[e]] == hashes[order[s]]:
            e += 1
        for j in range(s, e):
            label[order[j]] = order[s]
        s = e
    return label


@nb.njit(cache=True)
def _cols_equal_labels(indices, sign, has_sign, label):
    """True if every column equals column ``label[c]``, checked row by row in memory order."""
    nr, nc = indices.shape
    moved = np.empty(nc, np.int64)
    k = 0
    for c in range(nc):
        if label[c] != c:
            moved[k] = c
            k += 1
    for r in range(nr):
        for q in range(k):
            c = moved[q]
            if not _same(indices, sign, has_sign, r, c, r, label[c]):
                return False
    return True


def _col_groups_confirmed(hashes: np.ndarray, indices: np.ndarray, sign: np.ndarray, has_sign: bool) -> np.ndarray:
    """Column labels as :func:`_group` gives them, confirmed in one row-major pass when no hash collides.

    :func:`_group` compares columns down their length, a strided walk that costs several times a
    pass in memory order on maps with many identical columns (Neighborhood(0): every column
    equals one of the first ``n``). Here each column is first labelled with the first member of
    its run of equal hashes, and all those equalities are checked together row by row. If any
    fails (two different columns share a 64-bit hash), :func:`_group` decides exactly instead,
    so the labels are always those of :func:`_group`.
    """
    order = np.argsort(hashes, kind="stable")
    label = _first_of_runs(hashes, order)
    if _cols_equal_labels(indices, sign, has_sign, label):
        return label
    return _group(hashes, order, indices, sign, has_sign, False)


_NO_SIGN = np.ones((1, 1), np.int8)


def line_groups_nb(indices: np.ndarray, sign: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """numba twin of :func:`line_groups_ref`: hash every row and column in one pass over
    the matrix (:func:`_line_hashes`), sort the hashes, then confirm exactly within equal hashes
    (columns: all at once in memory order, :func:`_col_groups_confirmed`)."""
    indices = np.ascontiguousarray(indices)
    has_sign = sign is not None
    sg = np.ascontiguousarray(sign) if has_sign else _NO_SIGN
    hr, hc = _line_hashes(indices, sg, has_sign, nb.get_num_threads())
    rows = _group(hr, np.argsort(hr, kind="stable"), indices, sg, has_sign, True)
    cols = _col_groups_confirmed(hc, indices, sg, has_sign)
    return rows, cols


def line_groups_ref(indices: np.ndarray, sign: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(row_groups_ref(...), col_groups_ref(...))``."""
    return row_groups_ref(indices, sign), col_groups_ref(indices, sign)
