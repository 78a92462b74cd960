"""The optimizer controls of the balance study: how much of "balance helps" belongs to SGD.

Under plain SGD an entry's gradient is the sum over the weights that read it (Chang & Lipson 2018,
section 2), so an entry with load L steps about L times further than a dense weight; a Dirichlet
map with small alpha puts most weights on a few entries. The ``balance_controls`` study trains the
balance grid under four *arms*: the paper's SGD, SGD with load-normalized table gradients
(``table_grad_scale="load"``), Adam, and Adam with the normalization. This module turns its rows
into the report's numbers:

* :func:`arm_gaps`: per sparsity and arm, the gap ``acc(alpha_high) - acc(alpha_low)`` (paired over
  train seeds, t interval, paired t-test), and the part of the paper arm's gap that remains under the
  arm (the paired difference of the two gaps, and their ratio), with the share of it the arm removes
  and Fieller's confidence set for that share (:func:`share_removed`).
* :func:`residual_gaps`: per sparsity and alpha, each arm's gap to ``alpha_high`` with its paired
  test, and whether a gap remains under *every* arm (the part that belongs to the sharing pattern).
* :func:`map_predictors`: which map statistic best predicts that residual gap (Spearman's rho over
  every (alpha, sparsity, seed) point, ``scipy.stats.spearmanr``).

Every function takes the rows of ``results.csv`` (:data:`analysis.runs.ROW_COLUMNS`); only seeds
complete at every compared point enter a test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from .inference import ALPHA, MARGIN, Interval, PairedDifference, RatioSet, fieller_ratio, mean_ci, paired_difference

__all__ = [
    "STUDY",
    "PAPER",
    "ArmGap",
    "ResidualGap",
    "Predictor",
    "arms_of",
    "accuracy_by_seed",
    "arm_gaps",
    "share_removed",
    "interactions",
    "residual_gaps",
    "map_predictors",
    "map_statistics_for_predictors",
]

STUDY = "balance_controls"
PAPER = ("sgd", "none")
"""The paper's arm ``(optimizer, table_grad_scale)``; its runs are the balance study's."""


def arms_of(rows: list[dict]) -> list[tuple[str, str]]:
    """The arms present among the control rows, the paper's first."""
    have = {(r.get("optimizer") or "sgd", r.get("table_grad_scale") or "none") for r in _control_rows(rows)}
    order = [PAPER, ("sgd", "load"), ("adam", "none"), ("adam", "load")]
    return sorted(have, key=lambda a: (order.index(a) if a in order else len(order), a))


def _control_rows(rows: list[dict]) -> list[dict]:
    """The control study's rows plus the balance rows it reuses (its paper arm) at the same grid points."""
    ctl = [r for r in rows if r["study"] == STUDY]
    if not ctl:
        return []
    grid = {(r["alpha"], r["sparsity"]) for r in ctl}
    seeds = {r["train_seed"] for r in ctl}
    paper = [
        r
        for r in rows
        if r["study"] == "balance"
        and (r["alpha"], r["sparsity"]) in grid
        and r["train_seed"] in seeds
        and r["epochs"] == ctl[0]["epochs"]
    ]
    return ctl + paper


def accuracy_by_seed(rows: list[dict]) -> dict[tuple, dict[int, float]]:
    """``{(optimizer, table_grad_scale, sparsity, alpha): {train_seed: test_accuracy}}`` of the control grid."""
    out: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in _control_rows(rows):
        arm = (r.get("optimizer") or "sgd", r.get("table_grad_scale") or "none")
        out[(*arm, r["sparsity"], r["alpha"])][r["train_seed"]] = r["test_accuracy"]
    return dict(out)


def _paired(acc: dict, a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Accuracies at cells ``a`` and ``b`` over the train seeds both have, and those seeds."""
    common = sorted(set(acc.get(a, {})) & set(acc.get(b, {})))
    return (np.array([acc[a][s] for s in common]), np.array([acc[b][s] for s in common]), common)


def share_removed(paper_gaps, arm_gaps, level: float = 1 - ALPHA) -> RatioSet:
    """The share of the paper arm's α gap that an arm removes, ``1 - mean(g_arm) / mean(g_paper)``,
    with Fieller's confidence set (:func:`~analysis.inference.fieller_ratio`, Fieller 1954).

    The ratio ``mean(g_arm) / mean(g_paper)`` gets Fieller's set from the paired per-seed gaps (the
    same train seed under both arms: their covariance enters), with a t quantile on ``n - 1``
    degrees of freedom; the set is mapped to the share by ``1 - r``. A paper gap not
    distinguishable from 0 gives an unbounded set (the complement of an interval, or every value),
    and the result says so in its ``kind``; it is never clipped to a finite interval or to [0, 1]
    (a share below 0: the arm widens the gap; above 1: it reverses it).

    Parameters
    ----------
    paper_gaps, arm_gaps : array_like of float, shape (n,), n >= 2
        Per train seed, in the same seed order: accuracy at the balanced α minus at the low α
        (any unit, the same for both), under the paper's arm and under the arm.
    level : float
        Confidence level (default 0.95).

    Returns
    -------
    RatioSet
        On the share scale: ``estimate = 1 - mean(arm) / mean(paper)`` and the set's bounds.

    Raises
    ------
    ValueError
        As :func:`~analysis.inference.fieller_ratio` (unpaired lengths, fewer than 2 seeds, a
        non-finite gap).
    """
    return fieller_ratio(arm_gaps, paper_gaps, level).affine(-1.0, 1.0)


@dataclass(frozen=True)
class ArmGap:
    """The balance gap under one arm at one sparsity, and how it compares with the paper's arm.

    ``gap``: ``acc(alpha_high) - acc(alpha_low)`` paired over seeds. ``vs_paper``: the paired
    difference ``gap_arm - gap_paper`` over seeds (negative: the arm removes part of the gap).
    ``remaining``: ``mean gap_arm / mean gap_paper`` (the share of the paper's gap that remains;
    None when the paper's gap is not above ``MARGIN``). ``share``: the share removed,
    ``1 - mean gap_arm / mean gap_paper``, with its Fieller set (:func:`share_removed`; None for the
    paper arm or with fewer than 2 common seeds).
    """

    sparsity: float
    arm: tuple[str, str]
    alpha_low: float
    alpha_high: float
    gap: PairedDifference
    vs_paper: PairedDifference | None
    remaining: float | None
    share: RatioSet | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity,
            "arm": "/".join(self.arm),
            "alpha_low": self.alpha_low,
            "alpha_high": self.alpha_high,
            "gap": self.gap.to_dict(),
            "vs_paper": None if self.vs_paper is None else self.vs_paper.to_dict(),
            "remaining": self.remaining,
            "share_removed": None if self.share is None else self.share.to_dict(),
        }


def _alphas(acc: dict) -> list[float]:
    return sorted({k[3] for k in acc})


def _default_low(alphas: list[float]) -> float:
    """The default low-alpha comparison point: alpha = 0.01 when the grid has it, else the smallest alpha."""
    return 0.01 if 0.01 in alphas else alphas[0]


def arm_gaps(rows: list[dict], alpha_low: float | None = None, alpha_high: float | None = None) -> list[ArmGap]:
    """Per sparsity and arm: the gap between ``alpha_high`` (default: the largest) and ``alpha_low``
    (default 0.01, else the smallest), and its paired comparison with the paper arm's gap.

    Raises
    ------
    ValueError
        If ``alpha_low`` or ``alpha_high`` is not in the control grid.
    """
    acc = accuracy_by_seed(rows)
    if not acc:
        return []
    alphas = _alphas(acc)
    lo = _default_low(alphas) if alpha_low is None else alpha_low
    hi = alphas[-1] if alpha_high is None else alpha_high
    if lo not in alphas or hi not in alphas:
        raise ValueError(f"alpha_low={lo} and alpha_high={hi} must be in the control grid {alphas}")
    if lo >= hi:
        return []  # a grid of one alpha has no gap
    out, arms = [], arms_of(rows)
    for s in sorted({k[2] for k in acc}):
        pl, ph, pseeds = _paired(acc, (*PAPER, s, lo), (*PAPER, s, hi))
        paper_gap = dict(zip(pseeds, ph - pl))
        for arm in arms:
            a_lo, a_hi, seeds = _paired(acc, (*arm, s, lo), (*arm, s, hi))
            if not seeds:
                continue
            gap = paired_difference(a_lo, a_hi)
            vs, remaining, share = None, None, None
            if arm != PAPER:
                both = [x for x in seeds if x in paper_gap]
                if both:
                    g_arm = {x: v for x, v in zip(seeds, a_hi - a_lo)}
                    g_p, g_a = [paper_gap[x] for x in both], [g_arm[x] for x in both]
                    vs = paired_difference(g_p, g_a)
                    pg = float(np.mean(g_p))
                    remaining = float(np.mean(g_a)) / pg if pg > MARGIN else None
                    share = share_removed(g_p, g_a) if len(both) >= 2 else None
            out.append(ArmGap(s, arm, lo, hi, gap, vs, remaining, share))
    return out


def interactions(rows: list[dict], dense: float = 0.0, sparse: float = 0.9) -> dict[tuple[str, str], PairedDifference]:
    """The paper's claim 2 under each arm: per seed, the α gap at ``dense`` minus the α gap at ``sparse``.

    The gap is :func:`arm_gaps`'s (``acc(alpha_high) - acc(alpha_low)``, same seed); the value is paired
    over the seeds complete at all four cells (t interval, paired t-test, :func:`paired_difference`).

    Returns
    -------
    dict of (optimizer, table_grad_scale) to PairedDifference
        Arms without both sparsities or with no common seed are left out.
    """
    acc = accuracy_by_seed(rows)
    if not acc:
        return {}
    alphas = _alphas(acc)
    lo, hi = _default_low(alphas), alphas[-1]
    out = {}
    for arm in arms_of(rows):
        cells = [(*arm, s, a) for s in (dense, sparse) for a in (lo, hi)]
        if any(c not in acc for c in cells):
            continue
        seeds = sorted(set.intersection(*(set(acc[c]) for c in cells)))
        if not seeds:
            continue
        d_lo, d_hi, s_lo, s_hi = ([acc[c][x] for x in seeds] for c in cells)
        sparse_gap = np.subtract(s_hi, s_lo)
        out[arm] = paired_difference(sparse_gap, np.subtract(d_hi, d_lo))  # dense gap - sparse gap
    return out


@dataclass(frozen=True)
class ResidualGap:
    """At one (sparsity, alpha): each arm's paired gap to ``alpha_high``, and the smallest of them.

    ``remains``: every control arm's gap interval lies above 0 (p < ``ALPHA``), each judged on its own
    gap: no control removes it, so it belongs to the sharing pattern (within these controls and this
    training length). The paper arm's gap is reported but does not gate the verdict (a bimodal paper
    arm that is not significant says nothing about what the controls leave; issue 21).
    """

    sparsity: float
    alpha: float
    alpha_high: float
    gaps: dict[tuple[str, str], PairedDifference]
    best_arm: tuple[str, str]
    remains: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity,
            "alpha": self.alpha,
            "alpha_high": self.alpha_high,
            "gaps": {"/".join(a): g.to_dict() for a, g in self.gaps.items()},
            "best_arm": "/".join(self.best_arm),
            "remains": self.remains,
        }


def residual_gaps(rows: list[dict]) -> list[ResidualGap]:
    """For every sparsity and every alpha below the largest: each arm's gap to the largest alpha."""
    acc = accuracy_by_seed(rows)
    if not acc:
        return []
    alphas, arms = _alphas(acc), arms_of(rows)
    hi = alphas[-1]
    out = []
    for s in sorted({k[2] for k in acc}):
        for a in alphas[:-1]:
            gaps = {}
            for arm in arms:
                lo_acc, hi_acc, seeds = _paired(acc, (*arm, s, a), (*arm, s, hi))
                if seeds:
                    gaps[arm] = paired_difference(lo_acc, hi_acc)
            if not gaps:
                continue
            best = min(gaps, key=lambda k: gaps[k].diff.mean)
            controls = [g for arm, g in gaps.items() if arm != PAPER]
            remains = (
                bool(controls)
                and all(g.diff.n >= 2 and g.diff.low > 0 and g.p_value < ALPHA for g in controls)
                and len(gaps) == len(arms)
            )
            out.append(ResidualGap(s, a, hi, gaps, best, remains))
    return out


@dataclass(frozen=True)
class Predictor:
    """Spearman's rank correlation between a map statistic and the residual gap, over ``n`` points."""

    name: str
    description: str
    rho: float
    p_value: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "rho": self.rho,
            "p_value": self.p_value,
            "n": self.n,
        }


PREDICTORS = {
    "entropy_normalized": "table entropy / ln(table size), mean over layers (paper eq. 7)",
    "unused_entries": "share of table entries that no weight reads, mean over layers",
    "top1pct_share": "share of the non-zeroed weights on the 1% most loaded entries, mean over layers",
    "distinct_rows": "distinct rows of W / rows, over all layers (docs/STATS.md, Degeneracy)",
    "rank_bound": "sum of the layers' rank bounds / sum of min(out_features, in_features)",
}
"""Candidate map statistics for the residual gap (computed by :func:`map_statistics_for_predictors`)."""


def map_statistics_for_predictors(imap) -> dict[str, float]:
    """The :data:`PREDICTORS` of one map (an :class:`hashlab.IndexMap`)."""
    from hashlab.stats.degeneracy import map_degeneracy
    from hashlab.stats.entropy import entropy_nats

    ent, unused, top = [], [], []
    for lay in imap.layers:
        idx = lay.indices[lay.indices >= 0].astype(np.int64)
        n = imap.table_sizes[lay.table]
        loads = np.bincount(idx, minlength=n).astype(np.float64)
        ent.append(entropy_nats(loads) / math.log(n))
        unused.append(float((loads == 0).mean()))
        k = max(1, n // 100)
        top.append(float(np.sort(loads)[-k:].sum() / loads.sum()))
    deg = map_degeneracy(imap, rank_limit=0)
    return {
        "entropy_normalized": float(np.mean(ent)),
        "unused_entries": float(np.mean(unused)),
        "top1pct_share": float(np.mean(top)),
        "distinct_rows": deg.distinct_rows / deg.rows,
        "rank_bound": deg.rank_bound / deg.full_rank,
    }


def map_predictors(rows: list[dict], statistics_of) -> tuple[list[Predictor], list[dict[str, Any]]]:
    """Rank the :data:`PREDICTORS` by how well they predict the residual gap.

    The residual gap of a point (sparsity, alpha < alpha_high, seed) is ``acc(alpha_high) - acc(alpha)``
    under the arm with the smallest mean gap at that (sparsity, alpha) (:func:`residual_gaps`), for that
    seed; the statistic is that of the map the seed's runs trained (its hash seed).

    Parameters
    ----------
    rows : list of dict
    statistics_of : callable
        ``statistics_of(row) -> dict`` of the :data:`PREDICTORS` for the map of ``row`` (the report
        builds the map from the row's spec and calls :func:`map_statistics_for_predictors`).

    Returns
    -------
    predictors : list of Predictor
        By decreasing ``|rho|``.
    points : list of dict
        The points used (sparsity, alpha, train_seed, gap and every statistic).
    """
    acc = accuracy_by_seed(rows)
    res = residual_gaps(rows)
    if not res:
        return [], []
    by_cell = {
        (
            r.get("optimizer") or "sgd",
            r.get("table_grad_scale") or "none",
            r["sparsity"],
            r["alpha"],
            r["train_seed"],
        ): r
        for r in _control_rows(rows)
    }
    points = []
    for g in res:
        lo_acc, hi_acc, seeds = _paired(
            acc, (*g.best_arm, g.sparsity, g.alpha), (*g.best_arm, g.sparsity, g.alpha_high)
        )
        for seed, a, b in zip(seeds, lo_acc, hi_acc):
            row = by_cell[(*g.best_arm, g.sparsity, g.alpha, seed)]
            points.append(
                {
                    "sparsity": g.sparsity,
                    "alpha": g.alpha,
                    "train_seed": seed,
                    "arm": "/".join(g.best_arm),
                    "gap": float(b - a),
                    **statistics_of(row),
                }
            )
    preds = []
    gaps = np.array([p["gap"] for p in points])
    for name, desc in PREDICTORS.items():
        x = np.array([p[name] for p in points])
        if len(points) < 3 or np.ptp(x) == 0 or np.ptp(gaps) == 0:
            preds.append(Predictor(name, desc, math.nan, math.nan, len(points)))
            continue
        r = scipy.stats.spearmanr(x, gaps)
        preds.append(Predictor(name, desc, float(r.statistic), float(r.pvalue), len(points)))
    preds.sort(key=lambda p: -abs(p.rho) if not math.isnan(p.rho) else 0.0)
    return preds, points


def cell_intervals(rows: list[dict]) -> dict[tuple, Interval]:
    """``{(optimizer, table_grad_scale, sparsity, alpha): Interval}`` of test accuracy over seeds."""
    return {k: mean_ci(list(v.values())) for k, v in accuracy_by_seed(rows).items()}
