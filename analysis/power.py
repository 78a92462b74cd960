"""Power analysis of the confirmatory design on the pilot grids (docs/REPRODUCTION.md, "Power analysis").

``python -m analysis.power`` reads the design (``analysis/studies/confirmatory.toml``) and each
dataset's pilot (the committed 6-epoch grid, 3 paired seeds per cell) and prints, per claim and
primary part, the pilot's per-seed mean and SD, the planning values and the seeds needed.

The planning rule, fixed before the confirmatory runs:

* SD: the pilot SD of the per-seed primary value, raised to its one-sided 80 % upper confidence
  limit ``s * sqrt((n - 1) / chi2.ppf(0.2, n - 1))`` (Browne 1995; with 3 seeds, 2.12 s): the SD
  rests on 2 degrees of freedom.
* Effect: half the pilot's mean when it has the claimed sign (the pilot's early stopping inflated
  effects 1.6-2.7x), never below the SESOI; the SESOI when the pilot points the other way.
* Seeds: a one-sided paired t-test at the design's alpha and power (statsmodels ``TTestPower``;
  the exact sign-flip test of the mean has the t-test's asymptotic efficiency), each part of an
  intersection-union claim at power ``power ** (1 / parts)``. The design's seeds are this, at
  least 10 and at most 20 (the budget: 370 converged runs per dataset, about 5 hours on the 2-core
  CPU); the table gives the power the planned seeds reach, at the planning effect and at the SESOI.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .design import PILOT_STUDY, ClaimDesign, Design, load_design, pilot_path, read_pilot

__all__ = ["PowerRow", "power_rows", "seeds_needed", "power_at", "sd_upper", "needed_text", "markdown", "main"]


def sd_upper(sd: float, n: int, confidence: float = 0.8) -> float:
    """One-sided upper confidence limit of a normal SD from ``n`` values (Browne 1995)."""
    import scipy.stats

    return sd * math.sqrt((n - 1) / scipy.stats.chi2.ppf(1 - confidence, n - 1))


def seeds_needed(effect: float, sd: float, alpha: float, power: float) -> float:
    """Seeds for a one-sided paired t-test of ``effect`` (> 0) with per-seed SD ``sd``.

    2.0 when 2 seeds already reach ``power`` (statsmodels' root finder returns NaN there, since its
    bracket starts above 2); NaN from the solver otherwise means more than it searched (> 1000).
    """
    from statsmodels.stats.power import TTestPower

    if sd == 0 or power_at(2, effect, sd, alpha) >= power:
        return 2.0
    return float(TTestPower().solve_power(effect_size=effect / sd, alpha=alpha, power=power, alternative="larger"))


def power_at(n: int, effect: float, sd: float, alpha: float) -> float:
    """Power of a one-sided paired t-test with ``n`` seeds."""
    from statsmodels.stats.power import TTestPower

    if sd == 0:
        return 1.0
    return float(TTestPower().power(effect_size=effect / sd, nobs=n, alpha=alpha, alternative="larger"))


@dataclass(frozen=True)
class PowerRow:
    """One line of the power table (units: the claim's, e.g. pp)."""

    dataset: str
    claim: int
    part: str
    pilot_n: int
    pilot_mean: float
    pilot_sd: float
    sd_plan: float
    effect_plan: float
    part_power: float
    seeds_needed: float
    seeds_planned: int
    power_plan: float
    power_sesoi: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def power_rows(design: Design, dataset: str, rows: list[dict[str, Any]]) -> list[PowerRow]:
    """The power table of ``design`` on one dataset's pilot ``rows`` (results.csv rows)."""
    from .confirm import primary_values

    out = []
    for c in design.claims:
        seeds, values = primary_values(rows, c, study=PILOT_STUDY.get(c.study, c.study))
        parts = ["primary"] if "primary" in values else [f"s={s:g}" for s in c.sparsities]
        part_power = design.power ** (1 / len(parts))
        for part in parts:
            out.append(_row(design, dataset, c, part, values[part], part_power))
    return out


def _row(design: Design, dataset: str, c: ClaimDesign, part: str, v: np.ndarray, part_power: float) -> PowerRow:
    sign = 1 if c.direction == "greater" else -1
    mean, sd = float(np.mean(v)), float(np.std(v, ddof=1))
    sd_plan = sd_upper(sd, len(v))
    effect = max(c.sesoi, sign * mean / 2)
    return PowerRow(
        dataset=dataset,
        claim=c.claim,
        part=part,
        pilot_n=len(v),
        pilot_mean=mean,
        pilot_sd=sd,
        sd_plan=sd_plan,
        effect_plan=effect,
        part_power=part_power,
        seeds_needed=seeds_needed(effect, sd_plan, design.alpha, part_power),
        seeds_planned=c.seeds,
        power_plan=power_at(c.seeds, effect, sd_plan, design.alpha),
        power_sesoi=power_at(c.seeds, c.sesoi, sd_plan, design.alpha),
    )


def needed_text(seeds: float) -> str:
    """A seed count for a table: rounded up, or "> 1000" (infinite: the effect cannot be reached)."""
    return "> 1000" if not math.isfinite(seeds) or seeds > 1000 else f"{math.ceil(seeds)}"


def markdown(rows: list[PowerRow]) -> str:
    """The power table as Markdown."""
    lines = [
        "| dataset | claim | part | pilot mean | pilot SD (n) | SD plan | effect plan | seeds needed | seeds planned "
        "| power (plan) | power (SESOI) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        need = needed_text(r.seeds_needed)
        lines.append(
            f"| {r.dataset} | {r.claim} | {r.part} | {r.pilot_mean:+.2f} | {r.pilot_sd:.2f} ({r.pilot_n}) | "
            f"{r.sd_plan:.2f} | {r.effect_plan:.2f} | {need} | {r.seeds_planned} | {r.power_plan:.2f} | "
            f"{r.power_sesoi:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.power",
        description="Power analysis of the confirmatory design on the committed pilot grids (prints a Markdown table).",
    )
    p.add_argument("--design", default="confirmatory", help="design name or path (default: confirmatory)")
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], help="datasets whose pilots to read")
    p.add_argument("--json", action="store_true", help="print the rows as JSON lines instead")
    args = p.parse_args(argv)
    design = load_design(args.design)
    rows = []
    for ds in args.datasets:
        pilot = read_pilot(design, ds)
        if not pilot:
            p.error(f"no pilot at {pilot_path(design, ds)}; run the paper profile for {ds} first")
        rows += power_rows(design, ds, pilot)
    if args.json:
        import json

        for r in rows:
            print(json.dumps(r.to_dict()))
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
