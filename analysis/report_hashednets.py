"""REPORT.md, figure and ``hashednets.json`` of the HashedNets study, beside the published figures.

The study (``analysis/studies/hashednets.toml``) trains MNIST 784-1000-10 hashed at compression
1/8 and 1/64 and the plain network of equal parameter count ("NN" in Chen et al. 2015), each over
paired seeds, with the recipe of the best-known PyTorch port. :data:`PUBLISHED` holds the port's
own numbers, each with where it comes from.
"""

from __future__ import annotations

import datetime as _dt
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.io.atomic import atomic_write_json, atomic_write_text

from .formatting import ci, p_value, pct, pp
from .inference import ALPHA, Interval, mean_ci, paired_difference

__all__ = ["STUDY", "PUBLISHED", "comparisons", "write_hashednets_report"]

STUDY = "hashednets"
_PORT = "jfainberg/hashed_nets @ 8ccc6b8"
PUBLISHED = [
    {
        "compression": "1/64",
        "model": "hashed",
        "accuracy": 0.9683,
        "parameters": None,
        "source": f"{_PORT}, README.md (`mnist.py --compress 0.015625 --hashed`), one run",
    },
    {
        "compression": "1/64",
        "model": "hashed",
        "accuracy": 0.9685,
        "parameters": 12433,
        "source": f"{_PORT}, example.ipynb output, one run (torch seed 1, hash seed 2)",
    },
    {
        "compression": "1/64",
        "model": "NN",
        "accuracy": 0.9409,
        "parameters": 12730,
        "source": f"{_PORT}, README.md and example.ipynb output, one run",
    },
    {
        "compression": "1/8",
        "model": "hashed",
        "accuracy": 0.9848,
        "parameters": 99385,
        "source": f"{_PORT}, example.ipynb output, one run",
    },
    {
        "compression": "1/8",
        "model": "NN",
        "accuracy": 0.9825,
        "parameters": 99385,
        "source": f"{_PORT}, example.ipynb output, one run",
    },
]
"""Published MNIST test accuracies of the port, with their source (read from the repository's files)."""


def _model(row: dict) -> str:
    return "NN" if row["kind"] == "identity" else "hashed"


def _hidden(row: dict) -> int:
    """Hidden width of a row's one-hidden-layer MLP (``arch`` ``"784-h-10"``)."""
    return int(str(row["arch"]).split("-")[1])


def _ratio_of(row: dict, hidden_of_nn: dict[int, str]) -> str:
    """The compression a row belongs to: its own, or (NN) the one whose hidden width round(h c) it has,
    h the hashed network's hidden width."""
    if row.get("compression"):
        return row["compression"]
    return hidden_of_nn.get(_hidden(row), f"width {_hidden(row)}")


def comparisons(rows: list[dict]) -> list[dict[str, Any]]:
    """Per compression: hashed and NN accuracy over seeds (mean, t interval) and hashed - NN paired by train seed."""
    rs = [r for r in rows if r["study"] == STUDY]
    ratios = sorted({r["compression"] for r in rs if r.get("compression")}, key=lambda c: -Fraction(c))
    hidden = {round(_hidden(r) * Fraction(r["compression"])): r["compression"] for r in rs if r.get("compression")}
    out = []
    for c in ratios:
        by = {
            m: {r["train_seed"]: r for r in rs if _model(r) == m and _ratio_of(r, hidden) == c}
            for m in ("hashed", "NN")
        }
        seeds = sorted(set(by["hashed"]) & set(by["NN"]))
        entry: dict[str, Any] = {"compression": c}
        for m in ("hashed", "NN"):
            accs = [by[m][s]["test_accuracy"] for s in sorted(by[m])]
            entry[m] = {
                "accuracy": mean_ci(accs).to_dict(),
                "runs": len(accs),
                "range": [min(accs), max(accs)] if accs else None,
                "parameters": sorted({by[m][s]["parameters"] for s in by[m]}),
                "arch": sorted({str(by[m][s]["arch"]) for s in by[m]}),
            }
        diff = (
            paired_difference(
                [by["NN"][s]["test_accuracy"] for s in seeds], [by["hashed"][s]["test_accuracy"] for s in seeds]
            )
            if seeds
            else None
        )
        entry["hashed_minus_nn"] = None if diff is None else diff.to_dict()
        entry["published"] = [p for p in PUBLISHED if p["compression"] == c]
        out.append(entry)
    return out


def _inside(value: float, d: dict) -> str:
    if d["n"] < 2:
        return "n/a (one run)"
    return "inside" if d["low"] <= value <= d["high"] else ("above" if value > d["high"] else "below")


def _figure(comps: list[dict], path: Path) -> Path | None:
    from matplotlib.figure import Figure

    from hashlab.stats.plots import save_figure

    if not comps:
        return None
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.subplots()
    xs = np.arange(len(comps))
    for dx, m, color in ((-0.12, "hashed", "tab:blue"), (0.12, "NN", "tab:orange")):
        iv = [c[m]["accuracy"] for c in comps]
        mean = np.array([100 * (1 - d["mean"]) for d in iv])
        err = np.array([[100 * (d["mean"] - d["low"]) for d in iv], [100 * (d["high"] - d["mean"]) for d in iv]])
        ax.errorbar(xs + dx, mean, yerr=err, fmt="o", color=color, capsize=3, label=f"{m}: ours, mean, 95% CI")
        pub = [[100 * (1 - p["accuracy"]) for p in c["published"] if p["model"] == m] for c in comps]
        for x, vals in zip(xs + dx, pub):
            ax.scatter([x] * len(vals), vals, marker="x", color=color, s=30)
    ax.scatter([], [], marker="x", color="gray", label="published (jfainberg/hashed_nets, one run)")
    ax.set_xticks(xs, [f"compression {c['compression']}" for c in comps])
    ax.set_ylabel("MNIST test error (%)")
    ax.set_title("HashedNets vs the plain network of equal size (784-1000-10)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=130)


def write_hashednets_report(
    rows: list[dict], out: str | Path, *, profile, dataset: str, planned: int, missing: int, machine: str
) -> Path:
    """Write ``OUT/hashednets.json``, ``OUT/figures/hashednets_test_error.png`` and ``OUT/REPORT.md``."""
    out = Path(out)
    comps = comparisons(rows)
    atomic_write_json(out / "hashednets.json", {"dataset": dataset, "profile": profile.name, "comparisons": comps})
    fig = _figure(comps, out / "figures" / "hashednets_test_error.png")
    rs = [r for r in rows if r["study"] == STUDY]
    wall = sum(r["wall_time_s"] for r in rs)
    commits = sorted({r["git_commit"][:12] for r in rs})
    L = [
        f"# HashedNets (Chen et al., ICML 2015) on {dataset}: hashed vs plain network of equal size",
        "",
        f"Generated by `python -m analysis.reproduce --profile {profile.name} --dataset {dataset}` from {len(rs)} "
        f"finished runs (of {planned} planned; {missing} not run yet) on "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Do not edit: rerun the command.",
        "",
    ]
    if missing:
        L += [
            f"**Partial results:** {missing} of {planned} runs have not finished; rerunning the command resumes them.",
            "",
        ]
    L += [
        "## Results",
        "",
        "MNIST test accuracy (%), mean [95% t interval] over the train seeds; hashed minus NN paired by train "
        "seed (same data order and held-out split), paired t-test.",
        "",
        "| compression | hashed: ours | NN: ours | hashed − NN, 95% CI | paired t p | parameters (hashed / NN) |",
        "|---|---|---|---|---|---|",
    ]
    for c in comps:
        d = c["hashed_minus_nn"]
        diff = "" if d is None else pp(Interval(**d["diff"]))
        p = "" if d is None or d["p_value"] is None or math.isnan(d["p_value"]) else p_value(d["p_value"])
        L.append(
            f"| {c['compression']} | {ci(Interval(**c['hashed']['accuracy']))} (n={c['hashed']['runs']}) | "
            f"{ci(Interval(**c['NN']['accuracy']))} (n={c['NN']['runs']}) | {diff} | {p} | "
            f"{'/'.join(f'{x:,}' for x in c['hashed']['parameters'])} / "
            f"{'/'.join(f'{x:,}' for x in c['NN']['parameters'])} |"
        )
    L += [
        "",
        "## Beside the published figures",
        "",
        "A published figure is one run; it is set against our mean's interval and against the range of our "
        "single runs.",
        "",
        "| compression | model | published | where it comes from | our mean [95% CI] | our runs | published value is |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comps:
        for pub in c["published"]:
            ours, rng = c[pub["model"]]["accuracy"], c[pub["model"]]["range"]
            runs = "" if rng is None else f"{pct(rng[0])}–{pct(rng[1])}"
            within = (
                ""
                if rng is None
                else (
                    ", within our runs' range" if rng[0] <= pub["accuracy"] <= rng[1] else ", outside our runs' range"
                )
            )
            L.append(
                f"| {c['compression']} | {pub['model']} | {pct(pub['accuracy'])} | {pub['source']} | "
                f"{ci(Interval(**ours))} | {runs} | {_inside(pub['accuracy'], ours)} our interval{within} |"
            )
    L += [
        "",
        "The paper's own Table 1 (MNIST test error of HashNet and NN at several compression factors) could not be "
        "retrieved from the sources reachable from this machine (only the abstract), so it is not quoted; the "
        "paper tuned each model with Bayesian optimisation, the port and this study use one fixed recipe.",
        "",
    ]
    if fig is not None:
        L += [f"![test error](figures/{fig.name})", ""]
    seeds = sorted({(r["train_seed"], r["hash_seed"]) for r in rs})
    L += [
        "## Setup",
        "",
        "- Networks: 784-1000-10, ReLU, dropout 0.25 on the input and on the hidden layer, no BatchNorm, softmax "
        "cross-entropy (the port's log-softmax + NLL). *Hashed*: every layer's weights in ceil(weights × c) "
        "buckets (xxhash, with a sign hash), the hidden biases in ceil(1000 × c) signed buckets of the same table, "
        "the output bias dense (as the port). *NN*: the plain 784-h-10 network with h = round(1000 × c) (the "
        "port's `get_equivalent_compression` for one hidden layer), about as many parameters.",
        "- Recipe (the port's `mnist.py` defaults): SGD lr 0.01, momentum 0.9, batch 50, 50 epochs, a random 10% "
        "of the training set held out (seeded), LR ÷ 10 after 3 epochs without a lower validation loss "
        "(`ReduceLROnPlateau(patience=2)`; the port's relative threshold 1e-4 is 0 here). Test accuracy of the "
        "final model on the 10,000 test images.",
        f"- Seeds (train, hash): {seeds}. The port's figures are single runs (torch seed 1, hash seed 2).",
        f"- Machine: {machine}. Run time {wall / 3600:.2f} h in total. Code: git {', '.join(commits)}.",
        "- Every run is a row of `results.csv`; every number above is in `hashednets.json`.",
        "",
        f"Significance level {ALPHA}; intervals are two-sided Student-t over seeds (`analysis/inference.py`).",
        "",
    ]
    atomic_write_text(out / "REPORT.md", "\n".join(L))
    return out / "REPORT.md"
