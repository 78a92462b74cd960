"""Power analysis of the tuned optimizer controls (issue 21) on the committed pilot controls.

``python -m analysis.power_controls`` reads the 6-epoch pilot of the ``balance_controls`` study
(``analysis/results/<dataset>/runs``, 3 paired seeds per cell: SGD lr 0.1, SGD + load, Adam lr 1e-3)
and prints, per primary part of the design (``analysis/studies/controls_tuned.toml``,
docs/REPRODUCTION.md "Tuned optimizer controls"), the pilot's per-seed mean and SD, the planning
values and the seeds needed, by the confirmatory design's planning rule (:mod:`analysis.power`):

* SD: the pilot SD raised to its one-sided 80 % upper confidence limit (Browne 1995);
* effect: half the pilot's mean in the direction tested, never below the SESOI;
* seeds: a paired t-test at the part's level (one-sided; a Holm family of ``k`` planned at
  ``alpha / k``, its worst step; two-sided tests at ``alpha / 2`` per side) and power 0.8 (each part
  of an intersection-union test over ``k`` arms at ``0.8 ** (1 / k)``).

Arms without a pilot borrow the nearest pilot arm (``PROXY``): SGD + sqrt-load and the two halves of
the load normalization borrow SGD + load, AdamW borrows Adam; the hot-versus-cold difference, with
no pilot at all, is planned at its SESOI with the SD of SGD + load's removed gap.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .power import needed_text, power_at, sd_upper, seeds_needed

__all__ = ["PlanRow", "pilot_values", "plan_rows", "markdown", "main", "PROXY", "ALPHA_LOW", "ALPHA_HIGH"]

ALPHA_LOW, ALPHA_HIGH = 0.01, 1000.0
"""The primary cells' Dirichlet α: the pilot's default low point and the balanced map."""
PROXY = {
    "sgd/load": "sgd/load",
    "sgd/sqrt_load": "sgd/load",
    "adam/none": "adam/none",
    "adamw/none": "adam/none",
}
"""The pilot arm whose per-seed values plan each tuned arm (the pilot has SGD, SGD + load, Adam)."""


@dataclass(frozen=True)
class PlanRow:
    """One line of the power table (pp)."""

    dataset: str
    part: str
    pilot_n: int
    pilot_mean: float
    pilot_sd: float
    sd_plan: float
    effect_plan: float
    level: float
    seeds_needed: float
    seeds_planned: int
    power_plan: float
    power_sesoi: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pilot_values(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per-seed pilot values (pp), by name: ``gap/<arm>/s=<sparsity>`` (accuracy at α = 1000 minus at
    α = 0.01) for the pilot's arms, ``removed/<arm>`` (the paper arm's dense gap minus the arm's) and
    ``interaction/<arm>`` (dense gap minus sparsity-0.9 gap).

    Raises
    ------
    ValueError
        If the rows lack the pilot's control cells.
    """
    from .controls import accuracy_by_seed

    acc = accuracy_by_seed(rows)
    out: dict[str, np.ndarray] = {}
    seeds: list[int] | None = None
    for arm in (("sgd", "none"), ("sgd", "load"), ("adam", "none")):
        for s in (0.0, 0.5, 0.9):
            lo, hi = acc.get((*arm, s, ALPHA_LOW)), acc.get((*arm, s, ALPHA_HIGH))
            if not lo or not hi:
                raise ValueError(
                    f"the pilot lacks arm {'/'.join(arm)} at sparsity {s:g}, α = {ALPHA_LOW:g} or {ALPHA_HIGH:g}; "
                    "run the paper profile (balance_controls study) first"
                )
            seeds = sorted(set(lo) & set(hi)) if seeds is None else [x for x in seeds if x in lo and x in hi]
    assert seeds is not None
    for arm in (("sgd", "none"), ("sgd", "load"), ("adam", "none")):
        name = "/".join(arm)
        for s in (0.0, 0.5, 0.9):
            lo, hi = acc[(*arm, s, ALPHA_LOW)], acc[(*arm, s, ALPHA_HIGH)]
            out[f"gap/{name}/s={s:g}"] = np.array([100 * (hi[x] - lo[x]) for x in seeds])
        out[f"interaction/{name}"] = out[f"gap/{name}/s=0"] - out[f"gap/{name}/s=0.9"]
    for label in ("sgd/load", "adam/none"):
        out[f"removed/{label}"] = out["gap/sgd/none/s=0"] - out[f"gap/{label}/s=0"]
    return out


def _row(dataset, part, v, sesoi, level, seeds, sign=1, sd_only=False, power=0.8) -> PlanRow:
    mean, sd = float(np.mean(v)), float(np.std(v, ddof=1))
    sd_plan = sd_upper(sd, len(v))
    effect = sesoi if sd_only else max(sesoi, sign * mean / 2)
    return PlanRow(
        dataset=dataset,
        part=part,
        pilot_n=len(v),
        pilot_mean=math.nan if sd_only else mean,
        pilot_sd=sd,
        sd_plan=sd_plan,
        effect_plan=effect,
        level=level,
        seeds_needed=seeds_needed(effect, sd_plan, level, power),
        seeds_planned=seeds,
        power_plan=power_at(seeds, effect, sd_plan, level),
        power_sesoi=power_at(seeds, sesoi, sd_plan, level),
    )


def plan_rows(dataset: str, rows: list[dict[str, Any]], design: dict[str, Any]) -> list[PlanRow]:
    """The power table of the design's primary parts on one dataset's pilot rows.

    Parameters
    ----------
    design : dict
        ``analysis/studies/controls_tuned.toml`` as read by ``tomllib`` (its ``[primary]`` tables).
    """
    v = pilot_values(rows)
    alpha, seeds = design["alpha"], design["confirmatory"]["seeds"]
    p = design["primary"]
    tuned = p["removed"]["arms"]
    out = []
    for arm in tuned:  # P1: removed gap, one-sided, Holm over the arms
        out.append(
            _row(
                dataset,
                f"P1 removed {arm}",
                v[f"removed/{PROXY[arm]}"],
                p["removed"]["sesoi"],
                alpha / len(tuned),
                seeds,
            )
        )
    arms_p2 = len(design["tuning"]["arms"]) + 1  # every tuned arm and the paper's sgd lr 0.1
    for s in (0.0, 0.5, 0.9):  # P2: every arm's gap > 0 at each sparsity (intersection-union: each part at alpha,
        for arm in ("sgd/none", "sgd/load", "adam/none"):  # at power 0.8 ** (1 / arms) so that all hold at 0.8)
            x = v[f"gap/{arm}/s={s:g}"]
            out.append(
                _row(
                    dataset, f"P2 gap {arm} s={s:g}", x, p["remains"]["sesoi"], alpha, seeds, power=0.8 ** (1 / arms_p2)
                )
            )
    out.append(  # P3: hot minus cold, two-sided, no pilot: SESOI with the removed gap's SD
        _row(dataset, "P3 hot - cold", v["removed/sgd/load"], p["hot_cold"]["sesoi"], alpha / 2, seeds, sd_only=True)
    )
    for arm in ("sgd/none", "sgd/load", "adam/none"):  # P4: interaction per arm, two-sided, Holm over the arms
        x = v[f"interaction/{arm}"]
        sign = 1 if np.mean(x) >= 0 else -1
        k = len(p["interaction"]["arms"])
        out.append(_row(dataset, f"P4 interaction {arm}", x, p["interaction"]["sesoi"], alpha / 2 / k, seeds, sign))
    return out


def markdown(rows: list[PlanRow]) -> str:
    """The table as Markdown."""
    lines = [
        "| dataset | part | pilot mean (pp) | pilot SD (n) | SD plan | effect plan | level | seeds needed | seeds "
        "| power (plan) | power (SESOI) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        need = needed_text(r.seeds_needed)
        mean = "none" if math.isnan(r.pilot_mean) else f"{r.pilot_mean:+.2f}"
        lines.append(
            f"| {r.dataset} | {r.part} | {mean} | {r.pilot_sd:.2f} ({r.pilot_n}) | {r.sd_plan:.2f} "
            f"| {r.effect_plan:.2f} | {r.level:.4f} | {need} | {r.seeds_planned} | {r.power_plan:.2f} "
            f"| {r.power_sesoi:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tomllib

    from .reproduce import load_rows
    from .study import STUDY_DIR

    p = argparse.ArgumentParser(
        prog="python -m analysis.power_controls",
        description="Power analysis of the tuned optimizer controls on the committed pilot controls (Markdown).",
    )
    p.add_argument("--results", default="analysis/results", help="folder holding <dataset>/runs (default: %(default)s)")
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    args = p.parse_args(argv)
    with open(STUDY_DIR / "controls_tuned.toml", "rb") as f:
        design = tomllib.load(f)
    out = []
    for ds in args.datasets:
        rows = load_rows(f"{args.results}/{ds}")
        if not rows:
            p.error(f"no runs under {args.results}/{ds}/runs; run the paper profile for {ds} first")
        out += plan_rows(ds, rows, design)
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
