"""REPORT.md and figures of a reproduction, generated from its rows (never edited by hand).

:func:`write_report` writes ``OUT/figures/fig2_accuracy_vs_alpha.png``, ``fig3_accuracy_vs_entropy.png``,
``fig4_accuracy_vs_radius.png`` (the paper's Figures 2-4: one line per sparsity, 95% confidence
bands over paired seeds), ``OUT/claims.json`` and ``OUT/REPORT.md``: for each claim the paper's
statement, our numbers, the test, its p-value and the verdict; the profile, grid, seeds,
epochs, machine and wall time.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from collections import defaultdict
from pathlib import Path

import numpy as np

from hashlab.io.atomic import atomic_write_json, atomic_write_text

from .claims import ClaimResult, cell_means, claim_1, judge_all
from .formatting import ci, p_value, pp
from .inference import EQUIVALENCE_MARGIN, mean_ci

__all__ = ["write_report", "figures", "STAND_IN"]

STAND_IN = (
    "**Fashion-MNIST is a stand-in.** The paper's CIFAR-10 claims (2, 5, 6) were made on CIFAR-10 "
    "with five hidden layers of 2000; CIFAR-10 is not available on the machines that produced this "
    "report, so Fashion-MNIST on the MNIST MLP (784-200-200-10) stands in for it. Agreement or "
    "disagreement here says nothing direct about CIFAR-10."
)
_PARAM = {"balance": ("alpha", "Dirichlet α"), "noise": ("radius", "radius r")}


# --------------------------------------------------------------------------- figures
def _line_figure(rows: list[dict], study: str, x_of, xlabel: str, title: str, path: Path, xscale: str | None):
    from matplotlib.figure import Figure

    from hashlab.stats.plots import save_figure

    param = _PARAM[study][0]
    cells = cell_means(rows, study, param)
    if not cells:
        return None
    fig = Figure(figsize=(6.6, 4.4), layout="constrained")
    ax = fig.subplots()
    for s, by_value in sorted(cells.items()):
        values = sorted(by_value)
        order = np.argsort([x_of(study, s, v) for v in values])
        xs = np.asarray([x_of(study, s, v) for v in values])[order]
        iv = [by_value[values[i]] for i in order]
        m = np.array([100 * c.mean for c in iv])
        (line,) = ax.plot(xs, m, marker="o", ms=3.5, label=f"sparsity {s:g}")
        low, high = (np.clip([100 * getattr(c, k) for c in iv], 0, 100) for k in ("low", "high"))
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, lw=0)  # display clipped to [0, 100]
        runs = [
            (x_of(study, s, r[param]), 100 * r["test_accuracy"])
            for r in rows
            if r["study"] == study and r["sparsity"] == s
        ]
        ax.scatter([x for x, _ in runs], [y for _, y in runs], s=6, color=line.get_color(), alpha=0.5, lw=0)
    if xscale == "log":
        ax.set_xscale("log")
    elif xscale == "symlog":
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=130)


def figures(rows: list[dict], out: str | Path, dataset: str, epochs: int) -> dict[str, Path]:
    """The paper's Figures 2-4 from ``rows`` under ``OUT/figures/``; returns the paths written."""
    fdir = Path(out) / "figures"
    ent: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        ent[(r["study"], r["sparsity"], r.get("alpha"), r.get("radius"))].append(r["entropy_nats"])

    def entropy_of(study, s, v):
        return float(np.mean(ent[(study, s, v, None)]))

    band = "mean, 95% CI, dots: runs"
    made = {
        "fig2": _line_figure(
            rows,
            "balance",
            lambda st, s, v: v,
            "Dirichlet α (higher = more balanced)",
            f"Figure 2: {dataset}, accuracy against α, {epochs} epochs ({band})",
            fdir / "fig2_accuracy_vs_alpha.png",
            "log",
        ),
        "fig3": _line_figure(
            rows,
            "balance",
            entropy_of,
            "entropy of table use (nats; ln 1000 = 6.91)",
            f"Figure 3: {dataset}, accuracy against entropy ({band})",
            fdir / "fig3_accuracy_vs_entropy.png",
            None,
        ),
        "fig4": _line_figure(
            rows,
            "noise",
            lambda st, s, v: v,
            "Neighborhood radius r (higher = noisier; 0 = modulus)",
            f"Figure 4: {dataset}, accuracy against radius, {epochs} epochs ({band})",
            fdir / "fig4_accuracy_vs_radius.png",
            "symlog",
        ),
    }
    return {k: v for k, v in made.items() if v is not None}


# --------------------------------------------------------------------------- tables
def _grid_markdown(rows: list[dict], study: str) -> list[str]:
    param, label = _PARAM[study]
    cells = cell_means(rows, study, param)
    if not cells:
        return []
    values = sorted({v for by in cells.values() for v in by})
    lines = ["| sparsity | " + " | ".join(f"{label} = {v:g}" for v in values) + " |", "|---|" + "---|" * len(values)]
    for s, by in sorted(cells.items()):
        lines.append(f"| {s:g} | " + " | ".join(ci(by[v]) if v in by else "" for v in values) + " |")
    return ["Test accuracy (%), mean [95% CI] over seeds:", ""] + lines + [""]


def _findings_markdown(c: ClaimResult) -> list[str]:
    lines = [
        "| comparison | seeds | trend test (Page's L), one-sided p | ends: paired difference, 95% CI | "
        "paired t p | levels off at | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in c.findings:
        trend = (
            ""
            if f.trend is None
            else (
                "n/a (needs >= 2 seeds and >= 3 grid values)"
                if math.isnan(f.trend.p_value)
                else f"L = {f.trend.statistic:.0f}, p = {p_value(f.trend.p_value)} ({f.trend.direction})"
            )
        )
        if f.curvature is not None:
            cv = f.curvature
            trend = (
                f"quadratic coef {100 * cv.coef:+.3f} pp/sd² [{100 * cv.low:+.3f}, {100 * cv.high:+.3f}], "
                f"p = {p_value(cv.p_value)}; linear p = {p_value(cv.linear_p_value)}"
            )
        ends = "" if f.ends is None else pp(f.ends.diff)
        tp = "" if f.ends is None else p_value(f.ends.p_value)
        lev = "" if f.levels_off is None else f"{f.levels_off:g}"
        lines.append(f"| {f.label} | {f.seeds} | {trend} | {ends} | {tp} | {lev} | {f.verdict or '-'} |")
    return lines + [""]


def _radius_zero_structure(rows: list[dict]) -> list[str]:
    """Why radius 0 can be an outlier: the modulus map's identical rows (a rank bound), next to radius 1."""
    from hashlab import ARCHITECTURES, HashSpec, build_map
    from hashlab.stats.degeneracy import map_degeneracy

    from .runs import ARCH_OF_DATASET

    noise = [r for r in rows if r["study"] == "noise" and r["radius"] in (0, 1)]
    if not noise:
        return []
    dataset, table, seed = noise[0]["dataset"], noise[0]["table_size"], min(r["hash_seed"] for r in noise)
    arch = ARCHITECTURES[ARCH_OF_DATASET[dataset]]
    lines = [
        f"Map structure (hash seed {seed}, table {table} per layer; docs/STATS.md, *Degeneracy*): distinct rows "
        "of W per layer (output units that compute the same pre-activation for every table), the rank bound "
        "min(distinct rows, distinct columns), the rank of W for random table values, and the test accuracy.",
        "",
        "| sparsity | radius | distinct rows per layer | rank bound | random-table rank | test accuracy (%) |",
        "|---|---|---|---|---|---|",
    ]
    for s in sorted({r["sparsity"] for r in noise}):
        for radius in (0, 1):
            imap = build_map(
                HashSpec(kind="neighborhood", radius=radius, table_size=table, seed=seed, sparsity=s), arch
            )
            deg = map_degeneracy(imap)
            acc = mean_ci([r["test_accuracy"] for r in noise if r["radius"] == radius and r["sparsity"] == s])
            lines.append(
                f"| {s:g} | {radius} | "
                + " / ".join(f"{d.distinct_rows} of {d.out_features}" for d in deg.layers)
                + " | "
                + " / ".join(str(d.rank_bound) for d in deg.layers)
                + " | "
                + " / ".join("" if d.random_rank is None else str(d.random_rank) for d in deg.layers)
                + f" | {ci(acc)} |"
            )
    return lines + [""]


def _controls_markdown(rows: list[dict]) -> list[str]:
    ctl = [r for r in rows if r["study"] == "controls"]
    if not ctl:
        return []
    names = {
        "identity": "identity (no sharing)",
        "uniform": "uniform",
        "modulus": "modulus",
        "xxhash": "xxhash + sign (HashedNets)",
    }
    kinds = [k for k in names if any(r["kind"] == k for r in ctl)]
    sparsities = sorted({r["sparsity"] for r in ctl})
    lines = ["| sparsity | " + " | ".join(names[k] for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for s in sparsities:
        cells = [ci(mean_ci([r["test_accuracy"] for r in ctl if r["kind"] == k and r["sparsity"] == s])) for k in kinds]
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    return ["Test accuracy (%), mean [95% CI] over seeds:", ""] + lines + [""]


def _epochs_markdown(rows: list[dict], epochs: int) -> list[str]:
    longer = [r for r in rows if r["study"] == "epochs"]
    if not longer:
        return []
    alphas = sorted({r["alpha"] for r in longer})
    e_long = longer[0]["epochs"]
    short = [
        r
        for r in rows
        if r["study"] == "balance" and r["alpha"] in alphas and r["sparsity"] in {x["sparsity"] for x in longer}
    ]
    lines = [
        f"The balance claim (1) on the subset α ∈ {{{', '.join(f'{a:g}' for a in alphas)}}} trained for "
        f"{epochs} epochs (the balance study) and for {e_long} epochs (the epochs study), same seeds and maps:",
        "",
        "| sparsity | epochs | α = " + f"{alphas[-1]:g} minus α = {alphas[0]:g} | Page p | verdict |",
        "|---|---|---|---|---|",
    ]
    for label, rs in ((epochs, short), (e_long, longer)):
        c = claim_1([{**r, "study": "balance"} for r in rs])  # the epochs rows judged as a balance study
        for f in c.findings:
            lines.append(
                f"| {f.label.split()[-1]} | {label} | {pp(f.ends.diff) if f.ends else ''} | "
                f"{p_value(f.trend.p_value) if f.trend else ''} | {f.verdict} |"
            )
    return lines + [""]


def _machine(rows: list[dict]) -> str:
    """The runs' devices, and the CPU of the machine writing the report (model name from /proc/cpuinfo)."""
    model = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    devices = ", ".join(sorted({r["device"] for r in rows}))
    return f"runs on {devices}; report written on {model}, {os.cpu_count()} cores"


def write_report(
    rows: list[dict], out: str | Path, *, profile, dataset: str, planned: int, missing: int, engine: str, workers: int
) -> Path:
    """Write figures, ``claims.json`` and ``REPORT.md`` for ``rows`` (see the module docstring); a profile of
    the HashedNets study alone gets its own report (:mod:`analysis.report_hashednets`)."""
    out = Path(out)
    if {r["study"] for r in rows} == {"hashednets"}:
        from .report_hashednets import write_hashednets_report

        return write_hashednets_report(
            rows,
            out,
            profile=profile,
            dataset=dataset,
            planned=planned,
            missing=missing,
            machine=f"{_machine(rows)}; engine `{engine}` with {workers} workers",
        )
    epochs = profile.epochs
    figs = figures(rows, out, dataset, epochs)
    claims = judge_all(rows)
    atomic_write_json(
        out / "claims.json", {"dataset": dataset, "profile": profile.name, "claims": [c.to_dict() for c in claims]}
    )
    wall = sum(r["wall_time_s"] for r in rows)
    stamps = sorted(r["finished_at"] for r in rows)
    commits = sorted({r["git_commit"] for r in rows})
    studies = sorted({r["study"] for r in rows})
    L = [
        f"# Reproduction of Chang & Lipson (2018): {dataset}, profile `{profile.name}`",
        "",
        f"Generated by `python -m analysis.reproduce --profile {profile.name} --dataset {dataset}` from "
        f"{len(rows)} finished runs (of {planned} planned; {missing} not run yet) on "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Do not edit: rerun the command.",
        "",
    ]
    if dataset == "fashion-mnist":
        L += [STAND_IN, ""]
    if missing:
        L += [
            f"**Partial results:** {missing} of {planned} runs have not finished; verdicts use complete seeds "
            "only, and rerunning the command resumes the rest.",
            "",
        ]
    L += ["## Verdicts", "", "| # | the paper's claim (section 5) | verdict | evidence |", "|---|---|---|---|"]
    for c in claims:
        L.append(f"| {c.number} | {c.statement} | **{c.verdict}** | {c.summary} |")
    L += [
        "",
        "## Setup",
        "",
        f"- Profile `{profile.name}`: {profile.description}. Studies: {', '.join(studies)}.",
        f"- Paired seeds: train seeds {list(profile.train_seeds)} (table init and mini-batch order), hash seeds "
        f"{list(profile.hash_seeds)} (the maps); replicate i uses the i-th of each. Within one train seed every "
        "map with 1000-entry tables starts from the same table values and sees the same batches (common random "
        "numbers), so differences between grid points are paired comparisons.",
        f"- Network: the paper's MLP for {dataset} (Linear-ELU-BatchNorm per layer), one table of "
        f"{rows[0]['table_size']} entries per layer. Recipe: SGD lr 0.1, momentum 0.9, LR ÷ 10 after 4 epochs "
        f"without a gain in training accuracy, no validation set; {epochs} epochs, batch {profile.batch_size}"
        + (f", first {profile.limit_train} training samples only" if profile.limit_train else "")
        + ". The paper "
        "gives neither epochs nor batch size: see *Sensitivity to training length* below.",
        f"- Machine: {_machine(rows)}; engine `{engine}` with {workers} workers, one torch thread each.",
        f"- Wall time: {wall / 3600:.2f} h of run time in total ({wall / max(len(rows), 1):.1f} s per run); "
        f"first run finished {stamps[0]}, last {stamps[-1]}.",
        f"- Code: git {', '.join(c[:12] for c in commits)}; hashlab {rows[0]['hashlab_version']}, "
        f"torch {rows[0]['torch_version']}. Every run is a row of `results.csv`; `claims.json` holds the numbers "
        "below.",
        "",
    ]
    for c in claims:
        L += [f"## Claim {c.number}: {c.statement}", ""]
        if c.number in (1, 4):
            L += _grid_markdown(rows, "balance" if c.number == 1 else "noise")
        L += _findings_markdown(c)
        L += [f"Verdict: **{c.verdict}** ({c.summary}).", ""]
        if c.number == 6:
            L += _radius_zero_structure(rows)
            ctl = [r for r in rows if r["study"] == "controls" and r["kind"] == "modulus"]
            if ctl:
                L += [
                    "The controls study trains the modulus hash itself (the same map as radius 0): "
                    + ", ".join(
                        f"sparsity {s:g}: {ci(mean_ci([r['test_accuracy'] for r in ctl if r['sparsity'] == s]))}"
                        for s in sorted({r["sparsity"] for r in ctl})
                    )
                    + ".",
                    "",
                ]
    if any(r["study"] == "controls" for r in rows):
        L += ["## Controls", ""] + _controls_markdown(rows)
    if any(r["study"] == "epochs" for r in rows):
        L += ["## Sensitivity to training length", ""] + _epochs_markdown(rows, epochs)
    if any(r["study"] == "balance_controls" for r in rows):
        from .report_controls import controls_section

        L += ["## Balance under optimizer controls", ""] + controls_section(rows, out, dataset, epochs)
    if figs:
        L += ["## Figures", ""] + [f"![{k}](figures/{p.name})" for k, p in figs.items()] + [""]
    L += [
        "## Methods",
        "",
        "- Cell means with two-sided 95% Student-t intervals over seeds (`analysis/inference.py`). With 3 seeds "
        "and outcomes that split between seeds (a run that learns next to one stuck near chance, as at α ≤ 0.01), "
        "these intervals are wide and can reach past 0 or 100%: the tables report them as computed; the figures clip "
        "the bands to [0, 100] and show every run as a dot.",
        "- Ordered trends (claims 1, 4, and the effect across sparsity in 2, 5): Page's L test with seeds as "
        "blocks (`scipy.stats.page_trend_test`), one-sided in the claimed direction; reported, not part of the "
        "verdict (a plateau at the top of the grid made it fail for effects of +77 pp).",
        "- Ends: the paired difference between the grid's ends (claimed-better minus other) over seeds, with its "
        "t interval and the two-sided paired t-test (`scipy.stats.ttest_rel`).",
        f"- Verdict: **does not hold** when the ends' interval lies inside ±{100 * EQUIVALENCE_MARGIN:.1f} pp "
        "(equivalence: the margin is above the test-set noise of one run, about 0.2 pp on MNIST and 0.35 pp on "
        "Fashion-MNIST) or the difference is significant the other way; otherwise **holds** when the ends' interval "
        "is above 0; **inconclusive** otherwise. Claim 1 ('at every sparsity') holds when it holds at each and does "
        "not hold when it does not hold at one; claim 4 is judged on the per-seed mean over sparsities (claim 5 says "
        "the effect is smaller when sparse); claim 6 at the paper's sparsity 0.1.",
        "- Claim 3: OLS of accuracy on entropy with a quadratic term (entropy standardised), t test on the "
        "quadratic coefficient with heteroscedasticity-robust HC3 errors (statsmodels); low sparsity = {0, 0.1} "
        "(concave expected: interval below 0), high = {0.7, 0.9} (linear expected: interval containing 0 and a "
        "significant linear term). A non-significant quadratic term is absence of evidence of curvature, not proof "
        "of linearity.",
        "- Claim 6: radius 1 minus radius 0, paired; an outlier when radius 1 is more accurate (against the trend "
        "that less noise is better).",
        "- **These verdicts are exploratory.** With 3 seeds an exact paired test cannot reach p < 0.125, so every "
        "interval above rests on normality, which bimodal cells (runs that learn beside runs stuck near chance) "
        "break. The confirmatory answers are the pre-registered design's (`confirmatory/REPORT.md`).",
        "- Levels off at: the smallest α from which on the paired difference to the largest α has an interval "
        "containing 0.",
        "",
    ]
    atomic_write_text(out / "REPORT.md", "\n".join(L))
    return out / "REPORT.md"
