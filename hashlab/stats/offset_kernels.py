"""Histogram of Neighborhood offsets ``(h(i) - i) mod n`` in one pass: numba kernel and numpy twin.

:func:`hashlab.stats.theory.neighborhood_offset_check` only needs how many weights have each
residue ``(index - identifier) mod n``. The numpy route (:func:`offset_residues_ref`, as
:func:`hashlab.stats.theory.neighborhood_offsets` does it) builds the identifiers, masks, casts,
subtracts and reduces modulo ``n`` in five int64 passes over the layer: about 12 ``numpy.bincount``
on the paper's CIFAR-10 MLP map. The numba kernel keeps ``identifier mod n`` in a counter that wraps
at ``n`` (no division) and counts in one pass over the int16/int32 indices.

A Neighborhood(0) (modulus) map puts every weight on residue 0; one histogram would then be a
chain of dependent increments of one counter in memory. So each worker first probes its first
4096 weights: if at least 15/16 of them have residue 0 it counts residue 0 in a register
behind a well-predicted branch (about 3x faster there), else it counts into four interleaved
lanes (weight ``i`` into lane ``i mod 4``). Both loops count every weight exactly; the probe only
picks the faster one.

``tests/hashlab/stats/test_theory.py`` shows the twins agree exactly (integer counts). Callers
take them as ``offset_residues`` of :func:`hashlab.stats.kernels.kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["offset_residues_ref", "offset_residues_nb"]

_CHUNK = 1 << 16  # positions per parallel work item
_LANES = 4
_PROBE = 4096  # weights probed per worker to pick the loop (either loop gives the same counts)


def _check(idx: np.ndarray, n: int, start: int) -> None:
    if idx.ndim != 1:
        raise ValueError(f"idx must be 1-D (a flattened layer), got shape {idx.shape}")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n (table entries) must be an integer >= 1, got {n!r}")
    if start < 0:
        raise ValueError(f"start (identifier of the first weight) must be >= 0, got {start}")


def offset_residues_ref(idx: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Weights per residue ``(idx[i] - (start + i)) mod n`` over non-zeroed weights (numpy reference).

    Parameters
    ----------
    idx : ndarray of int16 or int32, shape (N,)
        One layer's flattened indices (row-major), ``-1`` = zeroed (skipped).
    n : int
        Table size, >= 1.
    start : int
        Identifier of ``idx[0]`` (0 for ``scope="layer"``; the weights of earlier layers for
        ``scope="global"``), >= 0.

    Returns
    -------
    ndarray of int64, shape (n,)
        ``out[d]`` = non-zeroed weights with ``(idx[i] - start - i) mod n == d``; sums to the
        non-zeroed count.

    Raises
    ------
    ValueError
        If ``idx`` is not 1-D, ``n < 1`` or ``start < 0``.
    """
    _check(idx, n, start)
    ids = np.arange(idx.size, dtype=np.int64) + int(start)
    keep = idx >= 0
    return np.bincount(np.mod(idx[keep].astype(np.int64) - ids[keep], n), minlength=n).astype(np.int64)


@nb.njit(inline="always")
def _residue(v, r, n):
    d = v - r  # v in [0, n) and r in [0, n): d in (-n, n)
    if d < 0:
        d += n
    if d >= n:  # an index beyond the table: still counted by its residue, as the twin does
        d = d % n
    return d


@nb.njit(parallel=True, cache=True)
def _residue_kernel(idx, n, start, threads):
    size = idx.shape[0]
    nchunks = max(1, (size + _CHUNK - 1) // _CHUNK)
    nt = min(threads, nchunks)
    per = (nchunks + nt - 1) // nt
    local = np.zeros((nt, _LANES, n), np.int64)
    zeros = np.zeros(nt, np.int64)
    for t in nb.prange(nt):
        a = min(size, t * per * _CHUNK)
        b = min(size, (t + 1) * per * _CHUNK)
        h = local[t]
        # Probe: if nearly every weight of the first _PROBE has residue 0 (a modulus-like map), count
        # residue 0 in a register behind a well-predicted branch; else into interleaved lanes.
        r = (start + a) % n
        hits = 0
        probe = min(b - a, _PROBE)
        for i in range(a, a + probe):
            v = np.int64(idx[i])
            hits += v >= 0 and _residue(v, r, n) == 0
            r += 1
            if r == n:
                r = 0
        r = (start + a) % n
        if 16 * hits >= 15 * probe:
            z = 0
            for i in range(a, b):
                v = np.int64(idx[i])
                if v == r:
                    z += 1
                elif v >= 0:
                    h[0, _residue(v, r, n)] += 1
                r += 1
                if r == n:
                    r = 0
            zeros[t] = z
        else:
            for i in range(a, b):
                v = np.int64(idx[i])
                if v >= 0:
                    h[i & (_LANES - 1), _residue(v, r, n)] += 1
                r += 1
                if r == n:
                    r = 0
    out = np.zeros(n, np.int64)
    for t in range(nt):
        out[0] += zeros[t]
        for lane in range(_LANES):
            for d in range(n):
                out[d] += local[t, lane, d]
    return out


def offset_residues_nb(idx: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """numba twin of :func:`offset_residues_ref` (one pass, wrapping counter, per-worker lanes)."""
    _check(idx, n, start)
    return _residue_kernel(idx, int(n), int(start), nb.get_num_threads())
