"""REPORT.md, claims.json and figures of the confirmatory design (never edited by hand).

:func:`write_confirm_report` evaluates the design (:func:`analysis.confirm.evaluate`) on a
``confirm`` profile's rows and writes ``OUT/claims.json``, ``OUT/REPORT.md`` and
``OUT/figures/confirm_effects.png`` (each claim's per-seed primary values with the interval and the
SESOI) and ``confirm_cells.png`` (per-seed accuracy of every confirmatory cell, stuck runs marked).
While fewer seeds than planned are done, the report says so at the top and every verdict is
provisional.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.io.atomic import atomic_write_json, atomic_write_text

from .confirm import (
    ClaimVerdict,
    Test,
    cell_outcomes,
    crossed,
    evaluate,
    primary_values,
    run_test,
)
from .design import PILOT_STUDY, ClaimDesign, Design, read_pilot
from .formatting import p_value
from .report import STAND_IN, _machine

__all__ = ["write_confirm_report", "training_summary", "length_table"]


def _f(x: float, unit: str = "") -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.2f}{unit}"


def _iv(t: Test) -> str:
    return f"{_f(t.effect)} [{_f(t.low)}, {_f(t.high)}]"


def training_summary(rows: list[dict[str, Any]], stuck_below: float) -> dict[str, Any]:
    """How the runs trained: LR drops, the stopping rule, epochs, stuck runs, wall time."""
    drops = [int(r["lr_drops"]) for r in rows]
    epochs = [int(r["epochs_trained"]) for r in rows]
    return {
        "runs": len(rows),
        "with_lr_drop": sum(d >= 1 for d in drops),
        "with_two_lr_drops": sum(d >= 2 for d in drops),
        "stopped_by_rule": sum(bool(r["stopped_by_rule"]) for r in rows),
        "epochs_trained_median": float(np.median(epochs)) if epochs else float("nan"),
        "epochs_trained_max": max(epochs, default=0),
        "stuck": sum(float(r["test_accuracy"]) < stuck_below for r in rows),
        "wall_time_s": float(sum(float(r["wall_time_s"]) for r in rows)),
    }


def _restricted(c: ClaimDesign) -> ClaimDesign:
    """Claim 1 or 2 on the cells the 30-epoch study has: alpha in {1, 1000} against 1e-3."""
    return dataclasses.replace(c, better=(1.0, 1000.0), worse=(0.001,))


def length_table(design: Design, converged: list[dict], pilot: list[dict]) -> list[dict[str, Any]]:
    """Each claim's primary test at 6 epochs (the pilot, 3 seeds) and converged; claims 1 and 2
    also on the cells of the 30-epoch ``epochs`` study (alpha 1 and 1000 against 1e-3) at 6, 30
    epochs and converged."""
    out = []
    level = 1 - design.alpha
    for c in design.claims:
        versions = [
            (c, "design cells", {"6 epochs (pilot)": (pilot, PILOT_STUDY.get(c.study)), "converged": (converged, None)})
        ]
        if c.claim in (1, 2):
            r = _restricted(c)
            versions.append(
                (
                    r,
                    "alpha 1, 1000 vs 1e-3",
                    {
                        "6 epochs (pilot)": (pilot, "balance"),
                        "30 epochs (pilot)": (pilot, "epochs"),
                        "converged": (converged, None),
                    },
                )
            )
        for cd, cells, sources in versions:
            for length, (rows, study) in sources.items():
                _, values = primary_values(rows, cd, study=study)
                parts = ["primary"] if "primary" in values else [f"s={s:g}" for s in cd.sparsities]
                for part in parts:
                    t = run_test(part, values[part], cd.direction, cd.margin, level)
                    out.append({"claim": c.claim, "cells": cells, "part": part, "length": length, **t.to_dict()})
    return out


def _bound(t: Test, direction: str) -> str:
    return f"{'≥' if direction == 'greater' else '≤'} {_f(t.bound)}"


def _verdict_line(v: ClaimVerdict, c: ClaimDesign) -> str:
    t = v.primary
    effect = "; ".join(f"{x.label}: {_iv(x)}" for x in t) if len(t) > 1 else _iv(t[0])
    bound = "; ".join(f"{x.label}: {_bound(x, c.direction)}" for x in t) if len(t) > 1 else _bound(t[0], c.direction)
    return (
        f"| {v.claim} | {c.statement} | **{v.verdict}** | {effect} {c.unit} | {bound} | {p_value(v.p)} | "
        f"{p_value(max(x.p_wilcoxon for x in t))} | {p_value(max(x.p_tost for x in t))} | "
        f"{v.seeds} / {v.seeds_planned} |"
    )


def _figures(
    verdicts: list[ClaimVerdict], design: Design, rows: list[dict], out: Path, dataset: str
) -> dict[str, Path]:
    from matplotlib.figure import Figure

    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, v in zip(axes, verdicts):
        c = design.claim(v.claim)
        _, values = primary_values(rows, c)
        parts = ["primary"] if "primary" in values else [f"s={s:g}" for s in c.sparsities]
        for i, (part, t) in enumerate(zip(parts, v.primary)):
            y = values[part]
            jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(y))
            ax.scatter(i + jitter, y, s=12, alpha=0.6, color="C0")
            ax.errorbar([i], [t.effect], yerr=[[t.effect - t.low], [t.high - t.effect]], fmt="o", color="k", capsize=4)
        sign = 1 if c.direction == "greater" else -1
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(sign * c.sesoi, color="C3", lw=0.8, ls="--", label=f"SESOI {sign * c.sesoi:+g}")
        ax.set_xticks(range(len(parts)), parts)
        ax.set_title(f"claim {v.claim}: {v.verdict} (n={v.seeds})", fontsize=10)
        ax.set_ylabel(c.unit, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{dataset}: per-seed primary values, mean and 95% sign-flip interval")
    paths["effects"] = figdir / "confirm_effects.png"
    fig.savefig(paths["effects"], dpi=110)

    cells = cell_outcomes(rows, design.stuck_below)
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax = fig.subplots()
    labels = [f"{x.study.replace('confirm_', '')}\n{x.label}\ns={x.sparsity:g}" for x in cells]
    for i, cell in enumerate(cells):
        acc = [
            100 * float(r["test_accuracy"])
            for r in rows
            if r["study"] == cell.study and float(r["sparsity"]) == cell.sparsity and _label_of(r) == cell.label
        ]
        acc_arr = np.array(acc)
        stuck = acc_arr < 100 * design.stuck_below
        x = i + np.random.default_rng(i).uniform(-0.2, 0.2, len(acc_arr))
        ax.scatter(x[~stuck], acc_arr[~stuck], s=10, color="C0", alpha=0.7)
        ax.scatter(x[stuck], acc_arr[stuck], s=14, color="C3", marker="x", alpha=0.8)
    ax.set_xticks(range(len(cells)), labels, fontsize=6)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{dataset}: every confirmatory run (x: stuck, below {100 * design.stuck_below:g}%)")
    paths["cells"] = figdir / "confirm_cells.png"
    fig.savefig(paths["cells"], dpi=110)
    return paths


def _label_of(r: dict) -> str:
    from .confirm import _label

    return _label(r)


def write_confirm_report(
    rows: list[dict[str, Any]],
    out: str | Path,
    *,
    design: Design,
    dataset: str,
    planned: int,
    missing: int,
    engine: str,
    workers: int,
) -> Path:
    """Write ``claims.json``, the figures and ``REPORT.md`` of ``design`` on ``rows``; returns the report's path."""
    out = Path(out)
    verdicts = evaluate(rows, design)
    cells = cell_outcomes(rows, design.stuck_below)
    cross = crossed(rows)
    summary = training_summary(rows, design.stuck_below)
    pilot = read_pilot(design, dataset)
    lengths = length_table(design, rows, pilot) if pilot else []
    figs = _figures(verdicts, design, rows, out, dataset)
    provisional = any(v.seeds < v.seeds_planned for v in verdicts) or missing > 0
    atomic_write_json(
        out / "claims.json",
        {
            "dataset": dataset,
            "design": design.name,
            "profile": design.profile,
            "provisional": provisional,
            "runs": {"planned": planned, "finished": len(rows), "missing": missing},
            "training": summary,
            "claims": [v.to_dict() for v in verdicts],
            "cells": [c.to_dict() for c in cells],
            "crossed": [c.to_dict() for c in cross],
            "training_length": lengths,
            "commits": sorted({r["git_commit"] for r in rows}),
        },
    )
    L = [
        f"# Confirmatory reproduction of Chang & Lipson (2018): {dataset}",
        "",
        f"Generated by `python -m analysis.reproduce --profile {design.profile} --dataset {dataset}` from "
        f"{len(rows)} finished runs (of {planned} planned; {missing} not run yet) on "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Do not edit: rerun the command.",
        "",
    ]
    if provisional:
        L += [
            f"> **Provisional.** {missing} of {planned} planned runs are not done; each claim below is "
            "judged on its complete seeds so far (n / planned). The design's verdicts are those at the "
            "planned seeds; until then these are interim looks, not confirmatory results.",
            "",
        ]
    if dataset == "fashion-mnist":
        L += [STAND_IN, ""]
    L += [
        f"Design: `analysis/studies/{design.name}.toml` (pre-registered; docs/REPRODUCTION.md, "
        f'"Confirmatory design"). {design.description}. Level α = {design.alpha:g} per claim.',
        "",
        "## Verdicts",
        "",
        "Primary value per seed (paired train and hash seed), mean and two-sided 95% interval by inverting the exact "
        "sign-flip test; one-sided bound: the 95% confidence bound in the claimed direction that goes with p (the "
        "end of the 90% inversion; it excludes 0 exactly when p < 0.05, where the two-sided interval may not); p: "
        "exact sign-flip test, one-sided in the claimed direction; Wilcoxon: signed-rank, same direction "
        "(sensitivity); TOST: equivalence within the design's margin.",
        "",
        "| claim | statement | verdict | primary effect [95% CI] | one-sided 95% bound | p | Wilcoxon p | TOST p "
        "| seeds / planned |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    L += [_verdict_line(v, design.claim(v.claim)) for v in verdicts]
    L += ["", "Aggregation rule (from the design file):", "", "```", design.aggregation, "```", ""]
    for v in verdicts:
        c = design.claim(v.claim)
        L += [
            f"### Claim {v.claim}: {c.statement}",
            "",
            f"Primary: {' '.join(c.rationale.split())}. SESOI {c.sesoi:g} {c.unit}, equivalence margin ±{c.margin:g}.",
            "",
        ]
        if v.secondary:
            L += [
                f"Secondary ({c.secondary}); Holm-adjusted within the claim:",
                "",
                "| test | n | effect [95% CI] | p | p (Holm) | TOST p |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            L += [
                f"| {t.label} | {t.n} | {_iv(t)} | {p_value(t.p)} | {p_value(t.p_holm)} | {p_value(t.p_tost)} |"
                for t in v.secondary
            ]
            L += [""]
    L += [
        "## Training",
        "",
        f"{summary['runs']} runs: {summary['with_lr_drop']} with at least one LR drop, {summary['with_two_lr_drops']} "
        f"with two or more; {summary['stopped_by_rule']} stopped by the rule (4 epochs after the second drop), the "
        f"others at the 60-epoch cap; median {summary['epochs_trained_median']:g} epochs. {summary['stuck']} runs "
        f"stuck (test accuracy below {100 * design.stuck_below:g}%). Total training time "
        f"{summary['wall_time_s'] / 3600:.1f} h ({_machine(rows)}; engine `{engine}` with {workers} workers).",
        "",
        "## Cells",
        "",
        "Per cell: runs, stuck runs with the exact Clopper-Pearson 95% interval of the rate, mean test accuracy of all "
        "runs (percentile-bootstrap 95% interval, inside [0, 100] %), mean of the runs that learned, median epochs.",
        "",
        "| study | map | sparsity | n | stuck (rate [95% CI]) | mean acc. % [95% CI] | learned mean % | min LR drops "
        "| median epochs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in cells:
        learned = "n/a" if math.isnan(cell.learned_mean) else f"{cell.learned_mean:.2f}"
        L.append(
            f"| {cell.study} | {cell.label} | {cell.sparsity:g} | {cell.n} | {cell.stuck} "
            f"({100 * cell.stuck_rate:.0f}% [{100 * cell.stuck_low:.0f}, {100 * cell.stuck_high:.0f}]) | "
            f"{cell.mean:.2f} [{cell.low:.2f}, {cell.high:.2f}] | {learned} | {cell.lr_drops_min} | "
            f"{cell.epochs_trained_median:g} |"
        )
    L += ["", "## Hash seed against train seed", ""]
    if cross:
        L += [
            "Two-way random-effects ANOVA (method of moments) of test accuracy (pp²) over hash seeds × train seeds, "
            "crossed; F tests of each effect against the residual (interaction).",
            "",
            "| cell | hash × train | var map | var training | var residual | map share | p (map) | p (training) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for x in cross:
            k = x.components
            L.append(
                f"| {x.label}, s={x.sparsity:g} | {len(x.hash_seeds)} × {len(x.train_seeds)} | {k['var_hash']:.3f} | "
                f"{k['var_train']:.3f} | {k['var_resid']:.3f} | {100 * k['share_hash']:.0f}% | "
                f"{p_value(k['p_hash'])} | {p_value(k['p_train'])} |"
            )
    else:
        L += ["No complete 2 × 2 part of the crossed study yet."]
    if lengths:
        L += [
            "",
            "## How the verdicts move with training length",
            "",
            "The same primary values on the 6-epoch pilot (3 seeds: the exact test cannot reach p < 0.125), on the "
            "30-epoch `epochs` study where it has the cells (claims 1 and 2 on alpha 1 and 1000 against 1e-3), and "
            "converged.",
            "",
            "| claim | cells | part | training | n | effect [95% CI] | p |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in lengths:
            L.append(
                f"| {r['claim']} | {r['cells']} | {r['part']} | {r['length']} | {r['n']} | "
                f"{_f(r['effect'])} [{_f(r['low'])}, {_f(r['high'])}] | {p_value(r['p'])} |"
            )
    L += [
        "",
        "## Figures",
        "",
        *[f"![{k}](figures/{p.name})" for k, p in figs.items()],
        "",
        f"Commits: {', '.join(sorted({r['git_commit'] for r in rows}))}.",
        "",
    ]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(L))
    return path
