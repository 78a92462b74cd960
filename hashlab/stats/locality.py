"""Collision locality: how far apart are the weights that share a table entry?

Definitions (``docs/STATS.md`` is the normative text)
------------------------------------------------------
Within one layer of shape ``(R, C)`` (``R = out_features``, ``C = in_features``), weight
``(row, col)`` has identifier ``i = row * C + col``. Two non-zeroed weights of the layer are
*co-bucketed* if they read the same entry. Two distances between weights are used:

* identifier order: ``|i - i'|``;
* the 2-D grid (Chebyshev, "chessboard" distance): ``max(|row - row'|, |col - col'|)``.

For each non-zeroed weight that has at least one co-bucketed partner, the *nearest-partner
distance* is the smallest distance to a partner. ``LocalityStats`` holds its exact
distribution, the fraction of co-bucketed weights whose nearest partner lies within ``d``,
and the expectation of that fraction under a uniform random hash. For identifier order it
also counts the *co-bucketed pairs* within ``d`` against their expectation under any hash
that ignores position (uniform included), which does not depend on the map's balance.

Null model ("uniform random hash")
----------------------------------
Each weight is independently non-zeroed with probability ``1 - s`` (``s`` = the layer's
realized sparsity) and then reads an entry drawn uniformly from the ``n`` entries of its
table. A given other weight is then a co-bucketed partner with probability ``pi = (1 - s) / n``,
independently of the others. For a weight with ``m_d`` other weights within distance ``d``,
``P(nearest partner <= d) = 1 - (1 - pi) ** m_d``; summing over the layer's positions gives the
expected count. Pair expectation: a position-blind hash makes every pair of positions equally
likely to collide, so the expected fraction of co-bucketed pairs within ``d`` is the fraction
of all position pairs within ``d``.

Algorithms (no pair enumeration)
--------------------------------
A stable counting sort by entry (O(N + n)) lists each bucket in identifier order; the
identifier-order nearest partner is an adjacent element. The grid nearest partner uses a
per-bucket column sweep (:mod:`hashlab.stats.kernels`); both feed histograms directly. Pairs
within ``d`` come from one sweep in identifier order that needs no sort (O(N) per threshold).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from . import kernels as SK

_T = TypeVar("_T")

__all__ = [
    "LocalityStats",
    "LayerLocality",
    "layer_locality",
    "nearest_partners",
    "pool_locality",
    "default_thresholds",
    "pair_thresholds",
    "line_window_profile",
    "expected_nearest_counts",
    "expected_pair_fraction",
    "METRICS",
]

METRICS = ("id", "grid")


def default_thresholds(max_distance: int) -> np.ndarray:
    """Distances ``1, 2, 4, ...`` up to the first power of two ``>= max_distance`` (int64)."""
    top = max(1, int(max_distance))
    return 2 ** np.arange(0, int(np.ceil(np.log2(top))) + 1, dtype=np.int64)


def pair_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """The pair curve's distances: every other nearest-partner threshold (``1, 4, 16, ...`` by default).

    Pair counting costs O(N) per threshold, the nearest-partner curve nothing extra.
    """
    return np.asarray(thresholds, dtype=np.int64)[::2]


def line_window_profile(length: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """How many other positions of a line of ``length`` lie within distance ``d`` of each position.

    Parameters
    ----------
    length : int, >= 1
    d : int, >= 0

    Returns
    -------
    values : ndarray of int64
        Distinct values of ``min(x, d) + min(length - 1 - x, d)`` over positions ``x``.
    counts : ndarray of int64
        How many positions take each value; ``counts.sum() == length``.
        O(min(d, length)) work.
    """
    half = (length + 1) // 2  # positions x with k = min(x, length-1-x) in [0, half)
    kk = np.arange(min(d, half), dtype=np.int64)
    vals = kk + np.minimum(length - 1 - kk, d)
    mult = np.where(kk == length - 1 - kk, 1, 2).astype(np.int64)
    rest = length - int(mult.sum())
    if rest > 0:
        vals = np.append(vals, 2 * d)
        mult = np.append(mult, rest)
    return vals, mult


def _geom(log_q: float, exponent: np.ndarray | int) -> np.ndarray:
    """``q ** exponent`` given ``log q`` (``-inf`` when q = 0), stable for huge exponents."""
    exponent = np.asarray(exponent, dtype=np.float64)
    if log_q == -np.inf:
        return (exponent == 0).astype(np.float64)
    return np.exp(log_q * exponent)


def _line_sum(length: int, d: int, pi: float) -> float:
    """``sum_x q ** a(x)`` over a line, ``a(x) = min(x, d) + min(length-1-x, d)``, ``q = 1 - pi``; O(1).

    Positions pair up by ``k = min(x, length-1-x)``: ``a = k + D`` while ``k <= length-1-D``,
    ``a = length - 1`` for ``length - D <= k < D``, ``a = 2D`` for ``k >= D`` (``D = min(d, length-1)``);
    each range is a geometric or constant sum.
    """
    if length <= 1:
        return float(length)
    big_d = min(d, length - 1)
    log_q = np.log1p(-pi) if pi < 1 else -np.inf
    kmax = (length - 1) // 2

    def a_of(k: int) -> int:
        return k + big_d if k <= length - 1 - big_d and k < big_d else (length - 1 if k < big_d else 2 * big_d)

    cnt1 = max(0, min(big_d - 1, length - 1 - big_d, kmax) + 1)
    if log_q == 0.0:
        geo = float(cnt1)
    elif log_q == -np.inf:
        geo = 1.0 if (cnt1 > 0 and big_d == 0) else 0.0
    else:
        geo = float(np.exp(big_d * log_q) * -np.expm1(cnt1 * log_q) / -np.expm1(log_q))
    cnt2 = max(0, min(big_d - 1, kmax) - max(length - big_d, 0) + 1)
    cnt3 = max(0, kmax - big_d + 1)
    half = geo + cnt2 * float(_geom(log_q, length - 1)) + cnt3 * float(_geom(log_q, 2 * big_d))
    total = 2.0 * half
    if length % 2 == 1:
        total -= float(_geom(log_q, a_of(kmax)))
    return total


@functools.lru_cache(maxsize=4096)
def _expected_one(metric: str, rows: int, cols: int, n: int, sparsity: float, d: int) -> tuple[float, float]:
    total = rows * cols
    keep = 1.0 - sparsity
    pi = keep / n
    log_q = float(np.log1p(-pi)) if pi < 1 else -np.inf
    co = keep * total * (1.0 - float(_geom(log_q, total - 1)))
    if metric == "id":
        s_d = _line_sum(total, d, pi)
    elif metric == "grid":
        if d >= max(rows, cols) - 1:
            s_d = total * float(_geom(log_q, total - 1))
        else:
            vr, mr = line_window_profile(rows, d)
            vc, mc = line_window_profile(cols, d)
            others = (vr[:, None] + 1) * (vc[None, :] + 1) - 1
            s_d = float((mr[:, None] * mc[None, :] * _geom(log_q, others)).sum())
    else:
        raise ValueError(f"unknown locality metric {metric!r}; choose one of {METRICS}")
    return keep * (total - s_d), co


def expected_nearest_counts(
    metric: str, shape: tuple[int, int], n: int, sparsity: float, thresholds: np.ndarray
) -> tuple[np.ndarray, float]:
    """Expected nearest-partner counts under the uniform-hash null model (module docstring).

    Parameters
    ----------
    metric : {"id", "grid"}
    shape : (R, C)
        The layer's ``(out_features, in_features)``.
    n : int
        Entries of the table the layer reads.
    sparsity : float in [0, 1]
        Realized fraction of zeroed weights in the layer.
    thresholds : ndarray of int64, shape (T,)

    Returns
    -------
    within : ndarray of float64, shape (T,)
        Expected number of weights that are non-zeroed and have a partner within ``d``:
        ``(1 - s) * sum_x (1 - (1 - pi) ** m_d(x))`` with ``pi = (1 - s) / n``.
    co_bucketed : float
        Expected number of non-zeroed weights with at least one partner in the layer.

    Raises
    ------
    ValueError
        If ``metric`` is unknown.
    """
    rows, cols = int(shape[0]), int(shape[1])
    res = [_expected_one(metric, rows, cols, int(n), float(sparsity), int(d)) for d in np.asarray(thresholds)]
    co = _expected_one(metric, rows, cols, int(n), float(sparsity), 1)[1]
    return np.array([r[0] for r in res], dtype=np.float64), co


def expected_pair_fraction(length: int, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of the ``length * (length - 1) / 2`` position pairs of a line within distance ``d``.

    Returns
    -------
    ndarray of float64, shape (T,)
        ``sum_{k=1}^{D} (length - k) / (length (length - 1) / 2)`` with ``D = min(d, length - 1)``.
    """
    if length < 2:
        return np.ones(len(thresholds))
    big_d = np.minimum(np.asarray(thresholds, dtype=np.float64), length - 1)
    return (big_d * length - big_d * (big_d + 1) / 2) / (length * (length - 1) / 2)


@dataclass
class LocalityStats:
    """Nearest-partner distances of one layer (or several pooled) under one metric.

    Attributes
    ----------
    name : str
        Layer name, or ``"total"`` for the pool of all layers.
    metric : {"id", "grid"}
    co_bucketed : int
        Non-zeroed weights with at least one partner in the same layer and entry.
    isolated : int
        Non-zeroed weights alone in their entry within their layer.
    histogram : ndarray of int64
        ``histogram[d]`` = co-bucketed weights whose nearest partner is at distance ``d``.
    thresholds : ndarray of int64, shape (T,)
    within : ndarray of int64, shape (T,)
        Co-bucketed weights whose nearest partner is within ``thresholds[t]``.
    expected_within : ndarray of float64, shape (T,)
        Its expectation under the uniform-hash null (see module docstring).
    expected_co_bucketed : float
        Expected ``co_bucketed`` under the null.
    pair_thresholds : ndarray of int64 or None
        ``metric == "id"`` only: distances of the pair curve (:func:`pair_thresholds`).
    pairs_within : ndarray of int64 or None
        Co-bucketed unordered pairs with ``|i - i'| <= pair_thresholds[t]``.
    pairs_total : int or None
        All co-bucketed unordered pairs, ``sum_e L_e (L_e - 1) / 2``.
    expected_pair_fraction : ndarray of float64 or None
        Expected ``pairs_within / pairs_total`` for a position-blind hash.
    """

    name: str
    metric: str
    co_bucketed: int
    isolated: int
    histogram: np.ndarray
    thresholds: np.ndarray
    within: np.ndarray
    expected_within: np.ndarray
    expected_co_bucketed: float
    pair_thresholds: np.ndarray | None = None
    pairs_within: np.ndarray | None = None
    pairs_total: int | None = None
    expected_pair_fraction: np.ndarray | None = None
    _null: list = field(default_factory=list, repr=False)  # (metric, shape, n, sparsity) per layer

    @property
    def fraction_within(self) -> np.ndarray:
        """``within / co_bucketed`` (NaN where there is no co-bucketed weight)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.within / np.float64(self.co_bucketed) if self.co_bucketed else np.full(len(self.within), np.nan)

    @property
    def expected_fraction_within(self) -> np.ndarray:
        """``expected_within / expected_co_bucketed``."""
        if self.expected_co_bucketed <= 0:
            return np.full(len(self.within), np.nan)
        return self.expected_within / self.expected_co_bucketed

    @property
    def pair_fraction(self) -> np.ndarray | None:
        """``pairs_within / pairs_total`` (id metric only)."""
        if self.pairs_within is None:
            return None
        return (
            self.pairs_within / np.float64(self.pairs_total)
            if self.pairs_total
            else np.full(len(self.pairs_within), np.nan)
        )

    def quantile(self, q: float) -> float:
        """Smallest distance ``d`` with at least a fraction ``q`` of co-bucketed weights within ``d``.

        Raises
        ------
        ValueError
            If ``q`` is not in (0, 1]. Returns NaN when nothing is co-bucketed.
        """
        if not 0 < q <= 1:
            raise ValueError(f"quantile q must be in (0, 1], got {q}")
        if self.co_bucketed == 0:
            return float("nan")
        cum = np.cumsum(self.histogram)
        return float(np.searchsorted(cum, q * self.co_bucketed - 1e-9 * self.co_bucketed, side="left"))

    @property
    def mean(self) -> float:
        """Mean nearest-partner distance over co-bucketed weights (NaN if none)."""
        if self.co_bucketed == 0:
            return float("nan")
        return float((np.arange(len(self.histogram)) * self.histogram).sum() / self.co_bucketed)

    def expected_quantile(self, q: float = 0.5) -> float:
        """Smallest integer ``d`` where the null's expected fraction within ``d`` reaches ``q``.

        Found by bisection on the closed form (O(log D) evaluations). NaN if the null
        expects no co-bucketed weight.
        """
        if not self._null:
            return float("nan")
        co = sum(expected_nearest_counts(mt, sh, n, s, np.array([1]))[1] for mt, sh, n, s in self._null)
        if co <= 0:
            return float("nan")

        def frac(d: int) -> float:
            th = np.array([d], dtype=np.int64)
            return sum(expected_nearest_counts(mt, sh, n, s, th)[0][0] for mt, sh, n, s in self._null) / co

        top = max(_extent(mt, sh) for mt, sh, _, _ in self._null)
        if frac(1) >= q:
            return 1.0
        lo, hi = 1, 2
        while hi < top and frac(hi) < q:  # exponential search keeps evaluations at small d
            lo, hi = hi, min(2 * hi, top)
        while hi - lo > 1:  # frac(lo) < q <= frac(hi)
            mid = (lo + hi) // 2
            if frac(mid) >= q:
                hi = mid
            else:
                lo = mid
        return float(hi)

    def log2_histogram(self) -> list[list[int]]:
        """``[[lo, hi, count], ...]``: co-bucketed weights with nearest partner in ``[lo, hi)``, lo = 2**k."""
        out = []
        lo = 1
        while lo < len(self.histogram):
            hi = lo * 2
            out.append([lo, hi, int(self.histogram[lo:hi].sum())])
            lo = hi
        return out

    def to_dict(self) -> dict[str, Any]:
        """Tidy JSON-ready dict (schema in ``docs/STATS.md``)."""
        d: dict[str, Any] = {
            "metric": self.metric,
            "co_bucketed": int(self.co_bucketed),
            "isolated": int(self.isolated),
            "expected_co_bucketed": float(self.expected_co_bucketed),
            "nearest": {
                "min": _maybe_int(self.quantile(1e-12)) if self.co_bucketed else None,
                "median": _maybe_int(self.quantile(0.5)),
                "max": int(len(self.histogram) - 1) if self.co_bucketed else None,
                "mean": _finite(self.mean),
                "expected_median": _finite(self.expected_quantile(0.5)),
                "log2_histogram": self.log2_histogram(),
            },
            "curve": [
                {"d": int(t), "within": int(w), "fraction": _finite(f), "expected_fraction": _finite(e)}
                for t, w, f, e in zip(self.thresholds, self.within, self.fraction_within, self.expected_fraction_within)
            ],
        }
        pair_th, pair_frac, pair_exp = self.pair_thresholds, self.pair_fraction, self.expected_pair_fraction
        if self.pairs_within is not None:
            assert self.pairs_total is not None and pair_th is not None and pair_frac is not None
            assert pair_exp is not None  # the four pair fields are set together (id metric)
            d["pairs"] = {
                "total": int(self.pairs_total),
                "curve": [
                    {"d": int(t), "within": int(w), "fraction": _finite(f), "expected_fraction": _finite(e)}
                    for t, w, f, e in zip(pair_th, self.pairs_within, pair_frac, pair_exp)
                ],
            }
        return d


def _extent(metric: str, shape: tuple[int, int]) -> int:
    return shape[0] * shape[1] - 1 if metric == "id" else max(shape) - 1


def _maybe_int(x: float) -> int | None:
    return None if np.isnan(x) else int(x)


def _finite(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


@dataclass
class LayerLocality:
    """Both metrics for one layer: ``id`` (identifier order) and ``grid`` (Chebyshev on the matrix)."""

    id: LocalityStats
    grid: LocalityStats


def layer_locality(
    name: str, indices: np.ndarray, n: int, thresholds: np.ndarray | None = None, backend: str = "numba"
) -> LayerLocality:
    """Nearest-partner and pair statistics of one layer.

    Parameters
    ----------
    name : str
    indices : ndarray of shape (out_features, in_features), int16 or int32
        Entries in ``[0, n)`` or ``-1`` (zeroed, excluded).
    n : int
        Size of the table the layer reads.
    thresholds : ndarray of int64, optional
        Distances ``d`` of the curves; default :func:`default_thresholds` of the largest
        identifier distance.
    backend : {"numba", "numpy"}

    Returns
    -------
    LayerLocality

    Raises
    ------
    ValueError
        If ``indices`` is not 2-D or ``backend`` is unknown.
    """
    if indices.ndim != 2:
        raise ValueError(f"layer {name!r}: indices must be 2-D (out_features, in_features), got {indices.shape}")
    if indices.size >= 2**31:
        raise ValueError(
            f"layer {name!r} has {indices.size} weights; locality supports layers below 2**31 "
            "weights (run with locality=False / --no-locality)"
        )
    kern = SK.kernels(backend)
    rows, cols = indices.shape
    flat = indices.reshape(-1)
    total = flat.size
    if thresholds is None:
        thresholds = default_thresholds(max(total - 1, 1))
    thresholds = np.asarray(thresholds, dtype=np.int64)
    starts, ids = kern.bucket_sort(flat, n)
    loads = np.diff(starts)
    zeroed = total - ids.size
    sparsity = zeroed / total if total else 0.0
    hists = dict(zip(("id", "grid"), kern.nearest_histograms(starts, ids, cols)))
    del ids
    pair_th = pair_thresholds(thresholds)
    pairs = kern.layer_pair_counts(flat, n, np.minimum(pair_th, max(total - 1, 0)))
    pairs_total = int((loads * (loads - 1) // 2).sum())
    out = {}
    for metric, hist in hists.items():
        co = int(hist.sum())
        cum = np.cumsum(hist)
        within = cum[np.minimum(thresholds, len(cum) - 1)]
        exp_within, exp_co = expected_nearest_counts(metric, (rows, cols), n, sparsity, thresholds)
        stats = LocalityStats(
            name=name,
            metric=metric,
            co_bucketed=co,
            isolated=total - zeroed - co,
            histogram=hist.astype(np.int64),
            thresholds=thresholds,
            within=within.astype(np.int64),
            expected_within=exp_within,
            expected_co_bucketed=exp_co,
            _null=[(metric, (rows, cols), n, sparsity)],
        )
        if metric == "id":
            stats.pair_thresholds = pair_th
            stats.pairs_within = pairs.astype(np.int64)
            stats.pairs_total = pairs_total
            stats.expected_pair_fraction = expected_pair_fraction(total, pair_th)
        out[metric] = stats
    return LayerLocality(id=out["id"], grid=out["grid"])


def nearest_partners(indices: np.ndarray, n: int, backend: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    """Each weight's distance to the nearest other weight that reads the same entry.

    The per-weight view behind the nearest-partner curves of :func:`layer_locality`: where in the
    matrix the collisions are close (a map for a heatmap, or for picking out one bucket).

    Parameters
    ----------
    indices : ndarray of shape (out_features, in_features), int16 or int32
        Entries in ``[0, n)`` or ``-1`` (zeroed).
    n : int
        Size of the table the layer reads.
    backend : {"numba", "numpy"}

    Returns
    -------
    d_id, d_grid : ndarray of shape (out_features, in_features), int64
        Identifier distance ``min |id - id'|`` and grid (Chebyshev) distance
        ``min max(|row - row'|, |col - col'|)`` to the nearest bucket partner; ``-1`` for a
        zeroed weight or one alone in its bucket.

    Raises
    ------
    ValueError
        If ``indices`` is not 2-D or ``backend`` is unknown.
    """
    if indices.ndim != 2:
        raise ValueError(f"indices must be 2-D (out_features, in_features), got shape {indices.shape}")
    kern = SK.kernels(backend)
    flat = indices.reshape(-1)
    starts, ids = kern.bucket_sort(flat, n)
    d_id, d_grid = kern.nearest_partners(starts, ids, indices.shape[1])
    out_id = np.full(flat.size, -1, dtype=np.int64)
    out_grid = np.full(flat.size, -1, dtype=np.int64)
    out_id[ids], out_grid[ids] = d_id, d_grid
    return out_id.reshape(indices.shape), out_grid.reshape(indices.shape)


def _given(x: _T | None) -> _T:
    """``x``, known not to be None (the pair fields of the id metric are set on every layer)."""
    assert x is not None
    return x


def pool_locality(parts: list[LocalityStats], name: str = "total") -> LocalityStats:
    """Pool per-layer statistics of one metric (same thresholds): counts add, histograms add.

    The pooled pair expectation weights each layer's expected fraction by its number of
    co-bucketed pairs (pairs never span layers).

    Raises
    ------
    ValueError
        If ``parts`` is empty, mixes metrics, or has different thresholds.
    """
    if not parts:
        raise ValueError("pool_locality needs at least one LocalityStats")
    metric = parts[0].metric
    th = parts[0].thresholds
    for p in parts:
        if p.metric != metric or not np.array_equal(p.thresholds, th):
            raise ValueError("pool_locality: every part must have the same metric and thresholds")
    hist = np.zeros(max(len(p.histogram) for p in parts), np.int64)
    for p in parts:
        hist[: len(p.histogram)] += p.histogram
    pooled = LocalityStats(
        name=name,
        metric=metric,
        co_bucketed=sum(p.co_bucketed for p in parts),
        isolated=sum(p.isolated for p in parts),
        histogram=hist,
        thresholds=th,
        within=np.sum([p.within for p in parts], axis=0).astype(np.int64),
        expected_within=np.sum([p.expected_within for p in parts], axis=0),
        expected_co_bucketed=float(sum(p.expected_co_bucketed for p in parts)),
        _null=[x for p in parts for x in p._null],
    )
    if parts[0].pairs_within is not None:
        pooled.pair_thresholds = parts[0].pair_thresholds
        pooled.pairs_within = np.sum([_given(p.pairs_within) for p in parts], axis=0).astype(np.int64)
        pooled.pairs_total = int(sum(_given(p.pairs_total) for p in parts))
        w = np.array([p.pairs_total for p in parts], dtype=np.float64)
        fr = np.array([p.expected_pair_fraction for p in parts])
        pooled.expected_pair_fraction = (w[:, None] * fr).sum(axis=0) / w.sum() if w.sum() else fr.mean(axis=0)
    return pooled
