"""The REPORT.md section, figure and ``controls.json`` of the balance study's optimizer controls
(is the balance effect about the network or about SGD?).

Numbers come from :mod:`analysis.controls`; this module only lays them out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hashlab.io.atomic import atomic_write_json

from .controls import (
    STUDY,
    arm_gaps,
    arms_of,
    cell_intervals,
    interactions,
    map_predictors,
    map_statistics_for_predictors,
    residual_gaps,
)
from .formatting import ci, p_value, pp
from .inference import ALPHA, RatioSet

__all__ = ["controls_section", "ARM_NAMES"]

ARM_NAMES = {
    ("sgd", "none"): "SGD (paper)",
    ("sgd", "load"): "SGD + load-normalized",
    ("adam", "none"): "Adam",
    ("adam", "load"): "Adam + load-normalized",
}


def _name(arm: tuple[str, str]) -> str:
    return ARM_NAMES.get(arm, "/".join(arm))


def _figure(rows: list[dict], path: Path, dataset: str, epochs: int) -> Path | None:
    from matplotlib.figure import Figure

    from hashlab.stats.plots import save_figure

    cells = cell_intervals(rows)
    if not cells:
        return None
    sparsities = sorted({k[2] for k in cells})
    fig = Figure(figsize=(4.0 * len(sparsities), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sparsities), sharey=True))
    arms = arms_of(rows)
    for ax, s in zip(axes, sparsities):
        for arm in arms:
            alphas = sorted(k[3] for k in cells if k[:3] == (*arm, s))
            if not alphas:
                continue
            iv = [cells[(*arm, s, a)] for a in alphas]
            (line,) = ax.plot(
                alphas,
                [100 * c.mean for c in iv],
                marker="o",
                ms=3.5,
                label=_name(arm),
                ls="--" if arm[1] != "none" else "-",
            )  # dashed: load-normalized
            low, high = (np.clip([100 * getattr(c, k) for c in iv], 0, 100) for k in ("low", "high"))
            ax.fill_between(alphas, low, high, color=line.get_color(), alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_title(f"sparsity {s:g}", fontsize=9)
        ax.set_xlabel("Dirichlet α (higher = more balanced)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Balance under optimizer controls: {dataset}, {epochs} epochs (mean, 95% CI over seeds)", fontsize=9)
    return save_figure(fig, path, dpi=130)


def share_text(share: RatioSet | None) -> str:
    """A share removed with its Fieller set, in %, saying so when the set is unbounded."""
    if share is None:
        return ""
    est = "n/a" if math.isnan(share.estimate) else f"{100 * share.estimate:.0f}%"
    if share.kind == "interval":
        return f"{est} [{100 * share.low:.0f}%, {100 * share.high:.0f}%]"
    if share.kind == "complement":
        return f"{est}, set unbounded: ≤ {100 * share.low:.0f}% or ≥ {100 * share.high:.0f}%"
    if share.kind == "ray":
        side = f"≥ {100 * share.low:.0f}%" if math.isfinite(share.low) else f"≤ {100 * share.high:.0f}%"
        return f"{est}, set unbounded: {side}"
    return f"{est}, set unbounded: any value" if share.kind == "all" else f"{est}, empty set"


def _statistics_of():
    """``row -> PREDICTORS`` of the row's map, rebuilt from the row's run config (deterministic in the hash seed)."""
    from hashlab import build_map

    from .runs import RUN_FIELDS, RunConfig

    names = set(RUN_FIELDS)
    cache: dict[tuple, dict[str, float]] = {}

    def of(row: dict) -> dict[str, float]:
        run = RunConfig.from_dict({k: v for k, v in row.items() if k in names})
        key = (run.hash_spec(), run.architecture().features)
        if key not in cache:
            cache[key] = map_statistics_for_predictors(build_map(run.hash_spec(), run.architecture()))
        return cache[key]

    return of


def controls_section(rows: list[dict], out: str | Path, dataset: str, epochs: int) -> list[str]:
    """The report lines of the control study (empty without its rows); writes the figure and ``controls.json``."""
    if not any(r["study"] == STUDY for r in rows):
        return []
    out = Path(out)
    arms = arms_of(rows)
    gaps, residual, inter = arm_gaps(rows), residual_gaps(rows), interactions(rows)
    preds, points = map_predictors(rows, _statistics_of())
    fig = _figure(rows, out / "figures" / "fig5_balance_under_optimizer_controls.png", dataset, epochs)
    atomic_write_json(
        out / "controls.json",
        {
            "dataset": dataset,
            "arms": ["/".join(a) for a in arms],
            "gaps": [g.to_dict() for g in gaps],
            "residual": [g.to_dict() for g in residual],
            "interaction": {"/".join(a): d.to_dict() for a, d in inter.items()},
            "predictors": [p.to_dict() for p in preds],
            "points": points,
        },
    )
    ctl = [r for r in rows if r["study"] == STUDY]
    lrs = {(r["optimizer"], r["table_grad_scale"]): r["lr"] for r in ctl}
    L = [
        "Under plain SGD an entry's gradient is the sum over the weights that read it (paper, section 2), so an "
        "entry of load L steps about L times further than a dense weight; a Dirichlet map with small α loads a few "
        "entries heavily. Is the balance effect then an optimization artifact? The `balance_controls` study trains "
        "the balance grid under four recipes (arms): the paper's SGD (its runs are the balance study's); SGD with "
        'load-normalized table gradients (`table_grad_scale="load"`: each entry\'s gradient times '
        "mean load / load, so every entry steps like one of a balanced map); Adam (per-entry adaptive steps, lr "
        f"{lrs.get(('adam', 'none'), 0.001):g}, Kingma & Ba's default); and Adam with the normalization (Adam is "
        "invariant to a constant per-entry gradient scale up to its ε, so this arm should match Adam). Same maps, "
        f"paired seeds, {epochs} epochs and plateau schedule as the balance study.",
        "",
    ]
    if fig is not None:
        L += [f"![fig5](figures/{fig.name})", ""]
    # the accuracy grid
    cells = cell_intervals(rows)
    alphas = sorted({k[3] for k in cells})
    L += [
        "Test accuracy (%), mean [95% CI] over seeds:",
        "",
        "| sparsity | arm | " + " | ".join(f"α = {a:g}" for a in alphas) + " |",
        "|---|---|" + "---|" * len(alphas),
    ]
    for s in sorted({k[2] for k in cells}):
        for arm in arms:
            L.append(
                f"| {s:g} | {_name(arm)} | "
                + " | ".join(ci(cells[(*arm, s, a)]) if (*arm, s, a) in cells else "" for a in alphas)
                + " |"
            )
    L.append("")
    same = [(k[2], k[3]) for k in cells if k[:2] == ("adam", "none") and ("adam", "load", *k[2:]) in cells]
    if same:
        worst = max(abs(cells[("adam", "none", *c)].mean - cells[("adam", "load", *c)].mean) for c in same)
        L += [
            f"Check: Adam with and without the load normalization differ by at most {100 * worst:.3f} pp in any "
            f"cell mean (over {len(same)} cells), as Adam's invariance to a per-entry gradient scale predicts.",
            "",
        ]
    if gaps:
        lo, hi = gaps[0].alpha_low, gaps[0].alpha_high
        L += [
            f"### How much of the gap between α = {lo:g} and α = {hi:g} remains under each control",
            "",
            f"Gap: accuracy at α = {hi:g} minus at α = {lo:g}, paired over seeds (t interval, paired t-test). "
            "Change: the paired difference of the arm's gap and the paper arm's gap (negative = the control "
            "removes part of it). Remaining: the arm's mean gap / the paper's mean gap. Share removed: 1 − "
            "remaining, with Fieller's 95% set (paired covariance, t on n − 1 df; Fieller 1954); when the "
            "paper's gap is not distinguishable from 0 the set is unbounded and is shown as such.",
            "",
            "| sparsity | arm | seeds | gap, 95% CI | p | change vs paper, 95% CI | p | remaining "
            "| share removed [Fieller 95%] |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g in gaps:
            vs = ("", "") if g.vs_paper is None else (pp(g.vs_paper.diff), p_value(g.vs_paper.p_value))
            rem = "" if g.remaining is None else f"{100 * g.remaining:.0f}%"
            L.append(
                f"| {g.sparsity:g} | {_name(g.arm)} | {g.gap.diff.n} | {pp(g.gap.diff)} "
                f"| {p_value(g.gap.p_value)} | {vs[0]} | {vs[1]} | {rem} | {share_text(g.share)} |"
            )
        L.append("")
    if inter:
        L += [
            "### The paper's claim 2 under each arm",
            "",
            "Per seed: the gap at sparsity 0 minus the gap at sparsity 0.9 (paired t interval and test); "
            "positive: the balance effect shrinks with sparsity, as the paper claims.",
            "",
            "| arm | seeds | dense gap − sparse gap, 95% CI | p |",
            "|---|---|---|---|",
        ]
        L += [f"| {_name(a)} | {d.diff.n} | {pp(d.diff)} | {p_value(d.p_value)} |" for a, d in inter.items()]
        L.append("")
    if residual:
        L += [
            "### Where a gap remains that no control removes",
            "",
            f"Each arm's gap to α = {residual[0].alpha_high:g} at each α (paired over seeds, p of the paired "
            f"t-test). *Remains* when every control arm's interval lies above 0 with p < {ALPHA}, each judged "
            "on its own gap (the paper arm's is shown but does not decide): that part of the gap belongs to the "
            "sharing pattern, not to how SGD steps (within these controls and this training length).",
            "",
            "| sparsity | α | " + " | ".join(_name(a) for a in arms) + " | smallest gap | remains under every arm |",
            "|---|---|" + "---|" * len(arms) + "---|---|",
        ]
        for rg in residual:
            cellv = [f"{pp(rg.gaps[a].diff)}, p = {p_value(rg.gaps[a].p_value)}" if a in rg.gaps else "" for a in arms]
            L.append(
                f"| {rg.sparsity:g} | {rg.alpha:g} | "
                + " | ".join(cellv)
                + f" | {_name(rg.best_arm)} | {'**yes**' if rg.remains else 'no'} |"
            )
        L.append("")
        remain = [rg for rg in residual if rg.remains]
        if remain:
            by_s: dict[float, list[float]] = {}
            for rg in remain:
                by_s.setdefault(rg.sparsity, []).append(rg.alpha)
            where = "; ".join(
                f"sparsity {s:g}: α ∈ {{{', '.join(f'{a:g}' for a in al)}}}" for s, al in sorted(by_s.items())
            )
            L += [f"A gap that no control removes remains at {where}.", ""]
        else:
            L += ["No α has a gap that every control leaves significant.", ""]
    if preds:
        L += [
            "### Which map statistic predicts the remaining gap",
            "",
            "For every (sparsity, α below the largest, seed), the remaining gap is the accuracy difference to the "
            "largest α under the arm that leaves the smallest gap there; each candidate statistic is computed on "
            f"the map that seed trained (hash seed). Spearman's rank correlation over the {preds[0].n} points "
            "(`scipy.stats.spearmanr`). The points mix sparsities and α, so a statistic that tracks α alone "
            "also correlates; the table ranks candidates, it does not establish a cause.",
            "",
            "| statistic | definition | Spearman ρ | p |",
            "|---|---|---|---|",
        ]
        for p in preds:
            rho = "n/a: the same on every map" if math.isnan(p.rho) else f"{p.rho:+.3f}"
            L.append(f"| `{p.name}` | {p.description} | {rho} | {p_value(p.p_value)} |")
        L += [
            "",
            f"Best predictor: `{preds[0].name}` (ρ = {preds[0].rho:+.3f}). Every number of this section is in "
            "`controls.json`.",
            "",
        ]
    return L
