"""Evaluate a pre-registered confirmatory design (:mod:`analysis.design`) on the reproduction's runs.

Per claim: the per-seed primary values (:func:`primary_values`), the exact sign-flip test in the
claimed direction, the opposite test, the equivalence test (TOST) at the design's margin, the
interval by inverting the sign-flip test (always inside the values' range, so inside [-100, 100]
pp for a difference of accuracies), the Wilcoxon signed-rank test as a sensitivity check, the
secondary tests with Holm-adjusted p-values, and the verdict by the design's one aggregation rule
(:func:`decide`). Beside them: per cell, the rate of stuck runs with its exact Clopper-Pearson
interval and the mean accuracy of the runs that learned; and the crossed sub-study's variance
components (map against training). Statistics from :mod:`analysis.exact` (scipy.stats and
statsmodels underneath).

Rows are dicts with the columns of ``results.csv`` (:data:`analysis.runs.ROW_COLUMNS`), as
:func:`analysis.reproduce.load_rows` gives them or as read back from the CSV (strings). A seed is
one ``(train_seed, hash_seed)`` pair; only seeds with every cell a value needs count, so a partial
run is evaluated on its complete seeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import exact
from .design import ClaimDesign, Design

__all__ = [
    "HOLDS",
    "REVERSED",
    "FAILS",
    "INCONCLUSIVE",
    "Test",
    "ClaimVerdict",
    "CellOutcome",
    "CrossedResult",
    "accuracy_table",
    "primary_values",
    "evaluate_claim",
    "evaluate",
    "cell_outcomes",
    "crossed",
    "decide",
]

HOLDS, REVERSED, FAILS, INCONCLUSIVE = "holds", "reversed", "does not hold", "inconclusive"
Seed = tuple[int, int]
"""A paired replicate: ``(train_seed, hash_seed)``."""


def _num(x: Any) -> float:
    return float("nan") if x in (None, "") else float(x)


def accuracy_table(
    rows: Iterable[dict[str, Any]], study: str, param: str
) -> dict[tuple[float, float], dict[Seed, dict]]:
    """``{(level, sparsity): {seed: {"acc": pp, "entropy": normalized entropy}}}`` of one study's runs.

    Parameters
    ----------
    rows : iterable of dict
    study : str
    param : {"alpha", "radius"}

    Returns
    -------
    dict
        Test accuracy in percentage points and the map's normalized entropy per cell and seed.
    """
    out: dict[tuple[float, float], dict[Seed, dict]] = {}
    for r in rows:
        if r["study"] != study:
            continue
        cell = (_num(r[param]), _num(r["sparsity"]))
        seed = (int(r["train_seed"]), int(r["hash_seed"]))
        out.setdefault(cell, {})[seed] = {
            "acc": 100 * _num(r["test_accuracy"]),
            "entropy": _num(r["entropy_normalized"]),
        }
    return out


def _complete(table: dict, cells: list[tuple[float, float]]) -> list[Seed]:
    seeds = [set(table.get(c, {})) for c in cells]
    return sorted(set.intersection(*seeds)) if seeds else []


def _contrast(table: dict, c: ClaimDesign, s: float, seed: Seed) -> float:
    good = np.mean([table[(v, s)][seed]["acc"] for v in c.better])
    bad = np.mean([table[(v, s)][seed]["acc"] for v in c.worse])
    return float(good - bad)


def _curvature(table: dict, c: ClaimDesign, s: float, seed: Seed) -> float:
    x = [table[(v, s)][seed]["entropy"] for v in c.levels]
    y = [table[(v, s)][seed]["acc"] for v in c.levels]
    return exact.quadratic_curvature(x, y)


def primary_values(
    rows: Iterable[dict[str, Any]], c: ClaimDesign, study: str | None = None
) -> tuple[list[Seed], dict[str, np.ndarray]]:
    """The per-seed values of claim ``c``'s primary comparison and of its parts.

    Parameters
    ----------
    rows : iterable of dict
    c : ClaimDesign
    study : str, optional
        Read the cells from this study instead of ``c.study`` (the power analysis reads the
        pilot's ``balance`` / ``noise`` grids).

    Returns
    -------
    seeds : list of (int, int)
        The complete seeds, in order.
    values : dict of str to ndarray of shape (len(seeds),)
        ``"primary"``: the value the primary test takes (for ``across = "every"``: absent, the
        test is per sparsity); ``"s=<sparsity>"``: the contrast (or curvature) at each sparsity.
        Unit: ``c.unit``.
    """
    table = accuracy_table(rows, study or c.study, c.param)
    seeds = _complete(table, c.cells)
    part = _curvature if c.test == "curvature" else _contrast
    parts = {f"s={s:g}": np.array([part(table, c, s, k) for k in seeds]) for s in c.sparsities}
    values = dict(parts)
    if c.test in ("difference", "curvature"):
        a, b = (parts[f"s={s:g}"] for s in c.sparsities)
        values["primary"] = a - b
    elif c.across == "mean":
        values["primary"] = np.mean(list(parts.values()), axis=0) if seeds else np.array([])
    return seeds, values


@dataclass(frozen=True)
class Test:
    """One test of a claim on per-seed values: effect, interval, p-values.

    ``p`` is one-sided in the claimed direction, ``p_reverse`` in the opposite one, ``p_tost`` the
    equivalence test at ``margin``; the interval is the two-sided ``level`` sign-flip inversion;
    ``p_wilcoxon`` the signed-rank test in the claimed direction; ``p_holm`` the Holm-adjusted
    ``p`` among a claim's secondary tests (None for a primary). ``bound`` is the one-sided ``level``
    confidence bound in the claimed direction (a lower bound for ``"greater"``, an upper one for
    ``"less"``): the matching end of the two-sided ``2 level - 1`` sign-flip inversion, so it is the
    interval that goes with the one-sided ``p`` (``p < 1 - level`` exactly when the bound excludes 0,
    up to the bisection's last float), where the two-sided ``[low, high]`` may cross 0 beside a
    significant ``p``.
    """

    label: str
    n: int
    effect: float
    low: float
    high: float
    p: float
    p_reverse: float
    p_tost: float
    p_wilcoxon: float
    margin: float
    exact: bool
    bound: float = float("nan")
    p_holm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_test(label: str, d: np.ndarray, direction: str, margin: float, level: float) -> Test:
    """:class:`Test` of per-seed values ``d`` (claimed sign ``direction``), NaNs for n < 2."""
    n = len(d)
    if n < 2:
        nan = float("nan")
        return Test(label, n, float(np.mean(d)) if n else nan, nan, nan, nan, nan, nan, nan, margin, False)
    rev = "less" if direction == "greater" else "greater"
    main = exact.sign_flip_test(d, alternative=direction)
    ci = exact.sign_flip_interval(d, level=level)
    one_sided = exact.sign_flip_interval(d, level=2 * level - 1)  # its ends are the one-sided level bounds
    return Test(
        label=label,
        n=n,
        effect=float(np.mean(d)),
        low=ci.low,
        high=ci.high,
        p=main.p,
        p_reverse=exact.sign_flip_test(d, alternative=rev).p,
        p_tost=exact.tost(d, margin, level=level).p,
        p_wilcoxon=_wilcoxon(d, direction),
        margin=margin,
        exact=main.exact,
        bound=one_sided.low if direction == "greater" else one_sided.high,
    )


def _wilcoxon(d: np.ndarray, direction: str) -> float:
    if np.all(d == 0):
        return 1.0
    return exact.wilcoxon(d, alternative=direction).p


def decide(tests: list[Test], alpha: float) -> str:
    """The design's aggregation rule over a claim's primary test(s): holds when every part is significant
    in the claimed direction and not equivalent to 0 within the margin (a significant effect smaller than
    the margin is no effect of interest: Lakens et al. 2018, amendment 1 of the design); reversed when a
    part is significant the other way and not equivalent; does not hold when a part is equivalent.

    Returns
    -------
    {"holds", "reversed", "does not hold", "inconclusive"}
    """
    if not tests or any(np.isnan(t.p) for t in tests):
        return INCONCLUSIVE
    trivial = [t.p_tost < alpha for t in tests]  # equivalent: any effect is smaller than the margin
    if all(t.p < alpha and not eq for t, eq in zip(tests, trivial)):
        return HOLDS
    if any(t.p_reverse < alpha and not eq for t, eq in zip(tests, trivial)):
        return REVERSED
    if any(trivial):
        return FAILS
    return INCONCLUSIVE


@dataclass(frozen=True)
class ClaimVerdict:
    """One claim's verdict with its primary test(s) and secondary tests.

    ``primary`` holds one test, or one per sparsity for ``across = "every"`` (then ``p`` is the
    intersection-union p: the largest).
    """

    claim: int
    statement: str
    verdict: str
    seeds_planned: int
    seeds: int
    unit: str
    sesoi: float
    primary: list[Test]
    secondary: list[Test] = field(default_factory=list)

    @property
    def p(self) -> float:
        """The primary p-value (the largest over an intersection-union test's parts)."""
        return max((t.p for t in self.primary), default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "statement": self.statement,
            "verdict": self.verdict,
            "p": self.p,
            "seeds_planned": self.seeds_planned,
            "seeds": self.seeds,
            "unit": self.unit,
            "sesoi": self.sesoi,
            "primary": [t.to_dict() for t in self.primary],
            "secondary": [t.to_dict() for t in self.secondary],
        }


def _secondary(rows: list[dict], c: ClaimDesign, seeds_values: dict[str, np.ndarray], level: float) -> list[Test]:
    """The claim's secondary tests (design file ``secondary``), Holm-adjusted within the claim."""
    tests: list[Test] = []
    if c.claim == 1:
        table = accuracy_table(rows, c.study, c.param)
        levels = sorted(c.better + c.worse, reverse=True)
        for s in c.sparsities:
            for hi, lo in zip(levels, levels[1:]):
                seeds = _complete(table, [(hi, s), (lo, s)])
                d = np.array([table[(hi, s)][k]["acc"] - table[(lo, s)][k]["acc"] for k in seeds])
                tests.append(run_test(f"{c.param} {hi:g} - {lo:g} at sparsity {s:g}", d, c.direction, c.margin, level))
    elif c.claim == 3:
        dense, sparse = (f"s={s:g}" for s in c.sparsities)
        tests.append(
            run_test(f"b2 at sparsity {c.sparsities[0]:g} (concave: < 0)", seeds_values[dense], "less", c.margin, level)
        )
        tests.append(
            run_test(f"b2 at sparsity {c.sparsities[1]:g} (linear: ~ 0)", seeds_values[sparse], "less", c.margin, level)
        )
    elif c.test == "contrast" and c.across == "mean":
        for s in c.sparsities:
            tests.append(run_test(f"at sparsity {s:g}", seeds_values[f"s={s:g}"], c.direction, c.margin, level))
    ok = [t for t in tests if not np.isnan(t.p)]
    if ok:
        adjusted = iter(exact.holm([t.p for t in ok]))
        tests = [t if np.isnan(t.p) else _with_holm(t, next(adjusted)) for t in tests]
    return tests


def _with_holm(t: Test, p: float) -> Test:
    return Test(**{**asdict(t), "p_holm": p})


def evaluate_claim(rows: list[dict[str, Any]], c: ClaimDesign, alpha: float) -> ClaimVerdict:
    """Claim ``c``'s tests and verdict on ``rows`` (the complete seeds of its cells)."""
    level = 1 - alpha
    seeds, values = primary_values(rows, c)
    if "primary" in values:
        primary = [run_test("primary", values["primary"], c.direction, c.margin, level)]
    else:
        primary = [
            run_test(f"at sparsity {s:g}", values[f"s={s:g}"], c.direction, c.margin, level) for s in c.sparsities
        ]
    return ClaimVerdict(
        claim=c.claim,
        statement=c.statement,
        verdict=decide(primary, alpha),
        seeds_planned=c.seeds,
        seeds=len(seeds),
        unit=c.unit,
        sesoi=c.sesoi,
        primary=primary,
        secondary=_secondary(rows, c, values, level),
    )


def evaluate(rows: list[dict[str, Any]], design: Design) -> list[ClaimVerdict]:
    """Every claim of ``design`` on ``rows``, in the design's order."""
    return [evaluate_claim(rows, c, design.alpha) for c in design.claims]


@dataclass(frozen=True)
class CellOutcome:
    """Stuck runs and accuracy of one cell (``study``, map ``label``, ``sparsity``).

    ``stuck`` of ``n`` runs had test accuracy below the design's threshold; ``stuck_low`` /
    ``stuck_high`` bound the rate (exact Clopper-Pearson, 95%); ``mean`` / ``low`` / ``high`` is the
    mean accuracy (pp) of all runs with a percentile-bootstrap interval, ``learned_mean`` that of
    the runs that were not stuck (NaN if none).
    """

    study: str
    label: str
    sparsity: float
    n: int
    stuck: int
    stuck_rate: float
    stuck_low: float
    stuck_high: float
    mean: float
    low: float
    high: float
    learned_mean: float
    lr_drops_min: int
    epochs_trained_median: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(r: dict[str, Any]) -> str:
    if r["kind"] == "dirichlet":
        return f"alpha={_num(r['alpha']):g}"
    if r["kind"] == "neighborhood":
        return f"radius={int(_num(r['radius']))}"
    return str(r["kind"])


def cell_outcomes(rows: list[dict[str, Any]], stuck_below: float, level: float = 0.95) -> list[CellOutcome]:
    """Per cell (study, map, sparsity): stuck rate with its Clopper-Pearson interval and accuracies."""
    cells: dict[tuple[str, str, float], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["study"], _label(r), _num(r["sparsity"])), []).append(r)
    out = []
    for (study, label, s), rs in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        acc = np.array([100 * _num(r["test_accuracy"]) for r in rs])
        stuck = acc < 100 * stuck_below
        cp = exact.clopper_pearson(int(stuck.sum()), len(acc), level=level)
        mi = exact.mean_interval(acc, level=level)
        out.append(
            CellOutcome(
                study=study,
                label=label,
                sparsity=s,
                n=len(acc),
                stuck=int(stuck.sum()),
                stuck_rate=cp.rate,
                stuck_low=cp.low,
                stuck_high=cp.high,
                mean=float(acc.mean()),
                low=mi.low,
                high=mi.high,
                learned_mean=float(acc[~stuck].mean()) if (~stuck).any() else float("nan"),
                lr_drops_min=min(int(_num(r.get("lr_drops"))) for r in rs),
                epochs_trained_median=float(np.median([_num(r.get("epochs_trained")) for r in rs])),
            )
        )
    return out


@dataclass(frozen=True)
class CrossedResult:
    """The crossed sub-study at one cell: hash seeds x train seeds, variance split (pp^2)."""

    label: str
    sparsity: float
    hash_seeds: list[int]
    train_seeds: list[int]
    components: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def crossed(rows: list[dict[str, Any]], study: str = "crossed") -> list[CrossedResult]:
    """Variance components (map vs training) per cell of the crossed study, on its complete part."""
    cells: dict[tuple[str, float], dict[tuple[int, int], float]] = {}
    for r in rows:
        if r["study"] == study:
            cells.setdefault((_label(r), _num(r["sparsity"])), {})[(int(r["hash_seed"]), int(r["train_seed"]))] = (
                100 * _num(r["test_accuracy"])
            )
    out = []
    for (label, s), acc in sorted(cells.items()):
        hs = sorted({h for h, _ in acc})
        ts = sorted({t for _, t in acc})
        hs = [h for h in hs if all((h, t) in acc for t in ts)]
        ts = [t for t in ts if all((h, t) in acc for h in hs)]
        if len(hs) < 2 or len(ts) < 2:
            continue
        table = np.array([[acc[(h, t)] for t in ts] for h in hs])
        out.append(CrossedResult(label, s, hs, ts, exact.variance_components(table).to_dict()))
    return out
