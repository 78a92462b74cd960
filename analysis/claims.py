"""The paper's six claims (Chang & Lipson 2018, section 5), judged on the reproduction's rows.

Each ``claim_N(rows)`` returns a :class:`ClaimResult`: the paper's statement, one
:class:`Finding` per sparsity (the numbers, the test, its p-value and a verdict) and an overall
verdict. Rows are dicts with the columns of ``results.csv`` (:data:`analysis.runs.ROW_COLUMNS`);
only complete seeds enter a comparison (a seed missing at any grid point of a sparsity is left out
of that sparsity's tests, and the finding says how many seeds were used).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .inference import (
    ALPHA,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Curvature,
    PairedDifference,
    Trend,
    levels_off_at,
    mean_ci,
    paired_difference,
    quadratic_term,
    trend_test,
    verdict,
)

__all__ = [
    "CLAIMS",
    "Finding",
    "ClaimResult",
    "grid_table",
    "claim_1",
    "claim_2",
    "claim_3",
    "claim_4",
    "claim_5",
    "claim_6",
    "judge_all",
    "combine",
]

CLAIMS = {
    1: "On MNIST, higher alpha (more balance) raises accuracy at every sparsity.",
    2: "The alpha effect is small when sparse and large when dense (paper: CIFAR-10).",
    3: "Against entropy (Figure 3), accuracy is linear at high sparsity and concave at low sparsity.",
    4: "A larger neighborhood radius (more noise) lowers accuracy.",
    5: "A larger radius lowers accuracy less when the network is sparse.",
    6: "Radius 0 (the modulus hash) is an outlier (paper: CIFAR-10, sparsity 0.1).",
}
LOW_SPARSITY, HIGH_SPARSITY = (0.0, 0.1), (0.7, 0.9)
"""Claim 3's 'low' and 'high' sparsity groups."""
OUTLIER_SPARSITY = 0.1
"""Claim 6's cell in the paper (CIFAR-10, sparsity 0.1): the claim's verdict is the one there."""


@dataclass
class Finding:
    """One tested comparison (usually one sparsity) of a claim."""

    label: str
    verdict: str
    seeds: int
    ends: PairedDifference | None = None
    trend: Trend | None = None
    curvature: Curvature | None = None
    levels_off: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "verdict": self.verdict,
            "seeds": self.seeds,
            "ends": None if self.ends is None else self.ends.to_dict(),
            "trend": None if self.trend is None else self.trend.to_dict(),
            "curvature": None if self.curvature is None else self.curvature.to_dict(),
            "levels_off": self.levels_off,
            "note": self.note,
        }


@dataclass
class ClaimResult:
    """A claim, its findings and the overall verdict."""

    number: int
    statement: str
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "statement": self.statement,
            "verdict": self.verdict,
            "summary": self.summary,
            "findings": [f.to_dict() for f in self.findings],
        }


def _select(rows: Iterable[dict], **eq) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in eq.items())]


def grid_table(
    rows: list[dict], param: str, values: list, metric: str = "test_accuracy"
) -> tuple[np.ndarray, list[int]]:
    """``(seeds, len(values))`` table of ``metric`` by train seed and grid value; complete seeds only.

    Returns
    -------
    table : ndarray of float64
    seeds : list of int
        The train seeds of the table's rows, ascending.
    """
    by_seed: dict[int, dict] = defaultdict(dict)
    for r in rows:
        by_seed[r["train_seed"]][r[param]] = r[metric]
    seeds = sorted(s for s, d in by_seed.items() if all(v in d for v in values))
    return np.array([[by_seed[s][v] for v in values] for s in seeds], dtype=np.float64).reshape(
        len(seeds), len(values)
    ), seeds


def combine(verdicts: list[str]) -> str:
    """A claim 'at every sparsity': holds if all hold, does not hold if any does not, else inconclusive."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return INCONCLUSIVE


def _grid(rows: list[dict], study: str, param: str, exclude=()) -> tuple[list[float], list]:
    rs = [r for r in rows if r["study"] == study]
    sparsities = sorted({r["sparsity"] for r in rs})
    values = sorted({r[param] for r in rs} - set(exclude))
    return sparsities, values


def _ordered_claim(
    number: int, rows: list[dict], study: str, param: str, direction: str, exclude=(), across: str = "every"
) -> ClaimResult:
    """Claims 1 and 4: an ordered effect of ``param``, judged at every sparsity (claim 1: holds if it holds at
    each) or on its mean over sparsities (claim 4: the paper says it is smaller when sparse, claim 5)."""
    sparsities, values = _grid(rows, study, param, exclude)
    findings = []
    for s in sparsities:
        t, seeds = grid_table(_select(rows, study=study, sparsity=s), param, values)
        if len(values) < 2 or len(seeds) == 0:
            findings.append(Finding(f"sparsity {s:g}", INCONCLUSIVE, len(seeds), note="no complete seed"))
            continue
        trend = (
            trend_test(t, direction)
            if len(seeds) >= 2 and len(values) >= 3
            else Trend(math.nan, math.nan, direction, len(seeds), len(values))
        )
        # the claimed-better end minus the other end
        better, worse = (t[:, -1], t[:, 0]) if direction == "increasing" else (t[:, 0], t[:, -1])
        ends = paired_difference(worse, better)
        lev = levels_off_at(values, t) if direction == "increasing" and len(seeds) >= 2 else None
        findings.append(
            Finding(f"sparsity {s:g}", verdict(trend, ends), len(seeds), ends=ends, trend=trend, levels_off=lev)
        )
    n_hold = sum(f.verdict == HOLDS for f in findings)
    if across == "every":
        return ClaimResult(
            number,
            CLAIMS[number],
            combine([f.verdict for f in findings]),
            findings,
            f"holds at {n_hold} of {len(findings)} sparsities",
        )
    # "mean": the claimed-better end minus the other, per seed averaged over the sparsities
    ends = _mean_over_sparsities(rows, study, param, sparsities, values, direction)
    v = verdict(Trend(math.nan, math.nan, direction, ends.diff.n, len(values)), ends)
    findings.append(Finding("mean over sparsities (the claim's verdict)", v, ends.diff.n, ends=ends))
    return ClaimResult(
        number,
        CLAIMS[number],
        v,
        findings,
        f"mean over sparsities {100 * ends.diff.mean:+.2f} pp "
        f"[{100 * ends.diff.low:+.2f}, {100 * ends.diff.high:+.2f}]; "
        f"holds at {n_hold} of {len(sparsities)} sparsities",
    )


def _mean_over_sparsities(rows, study, param, sparsities, values, direction) -> PairedDifference:
    per_seed: dict[int, list[float]] = defaultdict(list)
    for s in sparsities:
        t, seeds = grid_table(_select(rows, study=study, sparsity=s), param, values)
        for seed, row in zip(seeds, t):
            per_seed[seed].append(row[-1] - row[0] if direction == "increasing" else row[0] - row[-1])
    d = np.array([np.mean(v) for v in per_seed.values() if len(v) == len(sparsities)])
    return paired_difference(np.zeros(len(d)), d)


def claim_1(rows: list[dict]) -> ClaimResult:
    """Higher alpha raises accuracy at every sparsity (balance study; Page test, alpha ascending)."""
    return _ordered_claim(1, rows, "balance", "alpha", "increasing")


def claim_4(rows: list[dict]) -> ClaimResult:
    """A larger radius lowers accuracy (noise study, radius >= 1; radius 0 is claim 6's), on the mean over
    sparsities."""
    return _ordered_claim(4, rows, "noise", "radius", "decreasing", exclude=(0,), across="mean")


def _effect_claim(number: int, rows: list[dict], study: str, param: str, low_end, high_end) -> ClaimResult:
    """Claims 2 and 5: the effect ``acc(high_end) - acc(low_end)`` shrinks as sparsity grows."""
    sparsities, _ = _grid(rows, study, param)
    effects: dict[int, dict[float, float]] = defaultdict(dict)
    for s in sparsities:
        t, seeds = grid_table(_select(rows, study=study, sparsity=s), param, [low_end, high_end])
        for seed, (lo, hi) in zip(seeds, t):
            effects[seed][s] = hi - lo
    seeds = sorted(k for k, d in effects.items() if all(s in d for s in sparsities))
    table = np.array([[effects[k][s] for s in sparsities] for k in seeds], dtype=np.float64).reshape(
        len(seeds), len(sparsities)
    )
    findings = [
        Finding(
            f"sparsity {s:g}: effect {param} {high_end:g} vs {low_end:g}",
            "",
            len(seeds),
            ends=paired_difference(np.zeros(len(seeds)), table[:, j]),
        )
        for j, s in enumerate(sparsities)
    ]
    if len(seeds) < 1 or len(sparsities) < 2:
        return ClaimResult(number, CLAIMS[number], INCONCLUSIVE, findings, "too few sparsities or seeds")
    trend = (
        trend_test(table, "decreasing")
        if len(seeds) >= 2 and len(sparsities) >= 3
        else Trend(math.nan, math.nan, "decreasing", len(seeds), len(sparsities))
    )
    ends = paired_difference(table[:, -1], table[:, 0])  # dense effect minus sparse effect: claimed > 0
    v = verdict(trend, ends)
    summary = (
        f"effect at sparsity {sparsities[0]:g} minus effect at sparsity {sparsities[-1]:g}: "
        f"{100 * ends.diff.mean:+.2f} pp [{100 * ends.diff.low:+.2f}, {100 * ends.diff.high:+.2f}]"
    )
    findings.append(Finding("trend of the effect across sparsity", v, len(seeds), ends=ends, trend=trend))
    return ClaimResult(number, CLAIMS[number], v, findings, summary)


def claim_2(rows: list[dict]) -> ClaimResult:
    """The alpha effect (largest minus smallest alpha) is smaller when sparse (Page test across sparsity)."""
    _, values = _grid(rows, "balance", "alpha")
    if len(values) < 2:
        return ClaimResult(2, CLAIMS[2], INCONCLUSIVE, [], "fewer than 2 alpha values")
    return _effect_claim(2, rows, "balance", "alpha", values[0], values[-1])


def claim_5(rows: list[dict]) -> ClaimResult:
    """The radius effect (smallest radius >= 1 minus largest) is smaller when sparse."""
    _, values = _grid(rows, "noise", "radius", exclude=(0,))
    if len(values) < 2:
        return ClaimResult(5, CLAIMS[5], INCONCLUSIVE, [], "fewer than 2 radii >= 1")
    # effect = acc(smallest radius) - acc(largest radius): ordered (low_end=largest, high_end=smallest)
    return _effect_claim(5, rows, "noise", "radius", values[-1], values[0])


def claim_3(rows: list[dict]) -> ClaimResult:
    """Accuracy against entropy: concave (quadratic term < 0) at low sparsity, no curvature at high sparsity."""
    sparsities, _ = _grid(rows, "balance", "alpha")
    findings, low_v, high_v = [], [], []
    for s in sparsities:
        rs = _select(rows, study="balance", sparsity=s)
        c = quadratic_term([r["entropy_nats"] for r in rs], [r["test_accuracy"] for r in rs])
        if s in LOW_SPARSITY:
            v = HOLDS if c.high < 0 else FAILS if c.low > 0 else INCONCLUSIVE
            low_v.append(v)
            label = f"sparsity {s:g} (low: concave expected)"
        elif s in HIGH_SPARSITY:
            v = (
                HOLDS
                if c.low <= 0 <= c.high and c.linear_p_value < ALPHA
                else FAILS
                if not c.low <= 0 <= c.high
                else INCONCLUSIVE
            )
            high_v.append(v)
            label = f"sparsity {s:g} (high: linear expected)"
        else:
            v, label = "", f"sparsity {s:g} (not part of the claim)"
        findings.append(Finding(label, v, len({r["train_seed"] for r in rs}), curvature=c))
    parts = low_v + high_v
    overall = INCONCLUSIVE if not low_v or not high_v else combine(parts)
    return ClaimResult(
        3,
        CLAIMS[3],
        overall,
        findings,
        f"concave at {low_v.count(HOLDS)} of {len(low_v)} low sparsities, no detectable curvature "
        f"at {high_v.count(HOLDS)} of {len(high_v)} high sparsities",
    )


def claim_6(rows: list[dict]) -> ClaimResult:
    """Radius 0 against radius 1 at each sparsity: an outlier is radius 0 significantly below radius 1; the
    verdict is the one at the paper's sparsity 0.1 (:data:`OUTLIER_SPARSITY`)."""
    sparsities, values = _grid(rows, "noise", "radius")
    findings = []
    if 0 not in values or 1 not in values:
        return ClaimResult(6, CLAIMS[6], INCONCLUSIVE, [], "radius 0 and 1 not both in the grid")
    for s in sparsities:
        t, seeds = grid_table(_select(rows, study="noise", sparsity=s), "radius", [0, 1])
        ends = paired_difference(t[:, 0], t[:, 1])  # radius 1 minus radius 0: > 0 means radius 0 is worse
        d = ends.diff
        v = verdict(Trend(math.nan, math.nan, "increasing", d.n, 2), ends)
        findings.append(Finding(f"sparsity {s:g}: radius 1 minus radius 0", v, len(seeds), ends=ends))
    at = [f for f, s in zip(findings, sparsities) if s == OUTLIER_SPARSITY]
    overall = at[0].verdict if at else INCONCLUSIVE
    n_hold = sum(f.verdict == HOLDS for f in findings)
    return ClaimResult(
        6,
        CLAIMS[6],
        overall,
        findings,
        f"judged at the paper's sparsity {OUTLIER_SPARSITY:g}; radius 0 significantly below radius 1 at {n_hold} "
        f"of {len(findings)} sparsities",
    )


def judge_all(rows: list[dict]) -> list[ClaimResult]:
    """Every claim whose study has rows, in order."""
    have = {r["study"] for r in rows}
    out = []
    for fn, study in (
        (claim_1, "balance"),
        (claim_2, "balance"),
        (claim_3, "balance"),
        (claim_4, "noise"),
        (claim_5, "noise"),
        (claim_6, "noise"),
    ):
        if study in have:
            out.append(fn(rows))
    return out


def cell_means(rows: list[dict], study: str, param: str) -> dict[float, dict[Any, Any]]:
    """``{sparsity: {value: Interval}}`` of test accuracy over seeds, for tables and figures."""
    out: dict[float, dict[Any, Any]] = defaultdict(dict)
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["study"] == study:
            groups[(r["sparsity"], r[param])].append(r["test_accuracy"])
    for (s, v), accs in sorted(groups.items(), key=lambda kv: (kv[0][0], -math.inf if kv[0][1] is None else kv[0][1])):
        out[s][v] = mean_ci(accs)
    return dict(out)
