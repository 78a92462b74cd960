"""REPORT.md, tables and figure of the compression study (:mod:`analysis.compression_study`).

Reads the run records under ``OUT/runs/`` and writes, in ``OUT``:

* ``results.csv``: one row per run (accuracy, file bytes, gzipped bytes, stored values, training length);
* ``summary.csv``: per method and ratio, the mean test accuracy over seeds with its t interval, and the sizes;
* ``comparisons.csv``: paired differences over seeds (hashed - narrow, every method - dense) with t intervals;
* ``figures/accuracy_vs_size.png``: test accuracy against file size on disk, and gzipped;
* ``REPORT.md``.

The study is descriptive (its design, ``analysis/studies/compression.toml``, says why): the report gives effects
with intervals and calls nothing significant. Records written before the design's divergence rule (amendment 1)
have no ``diverged`` fields; none of them diverged (each passed the bitwise reload check, which NaN outputs fail).
"""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from hashlab.io.atomic import atomic_write_text

from .formatting import ci, p_value, pp
from .inference import Interval, mean_ci, paired_difference

__all__ = ["read_records", "results_table", "summary_table", "comparisons_table", "write_report"]

_ORDER = {"dense": 0, "hashed": 1, "arbified": 2, "clustered": 3, "narrow": 4}
_LABEL = {
    "dense": "dense",
    "hashed": "(a) hashed from scratch",
    "arbified": "(b) arbified + fine-tuned",
    "clustered": "(c) k-means + fine-tuned",
    "narrow": "(d) narrowed LeNet-5",
}
_COLUMNS = [
    "run_id",
    "method",
    "ratio",
    "train_seed",
    "hash_seed",
    "widths",
    "stored_values",
    "table_entries",
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "epochs_trained",
    "lr",
    "diverged",
    "diverged_attempts",
    "lr_drops",
    "stopped_by_rule",
    "file_bytes",
    "gzip_bytes",
    "wall_time_s",
    "profile",
    "git_commit",
    "finished_at",
]


def read_records(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run record of ``OUT/runs/*.json``, in run-id order."""
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]


def _ratio_key(r: Any) -> float:
    return 2.0 if r is None or (isinstance(r, float) and math.isnan(r)) else float(Fraction(str(r)))


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run, sorted by ratio (dense first), method and seed."""
    rows = [{k: r.get(k) for k in _COLUMNS} for r in records]
    for row, r in zip(rows, records):  # records written before the divergence rule: none diverged (module doc)
        row["lr"] = r.get("lr", r.get("config", {}).get("lr"))
        row["diverged"] = bool(r.get("diverged", False))
        row["diverged_attempts"] = len(r.get("diverged_attempts", []))
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df["widths"] = df["widths"].map(lambda w: "-".join(map(str, w)) if isinstance(w, list) else w)
    df = df.astype({"hash_seed": "Int64", "table_entries": "Int64"})
    key = df["ratio"].map(_ratio_key) * -1, df["method"].map(_ORDER), df["train_seed"]
    df = df.assign(_r=key[0], _m=key[1]).sort_values(["_r", "_m", "train_seed"]).drop(columns=["_r", "_m"])
    return df.reset_index(drop=True)


def _bounded(iv: Interval) -> Interval:
    """An accuracy interval clipped to [0, 1] (the t interval can cross the scale's ends)."""
    return Interval(iv.mean, max(0.0, iv.low), min(1.0, iv.high), iv.n)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and ratio: seeds, mean accuracy and 95% t interval (clipped to [0, 1]), sizes, training length."""
    dense_bytes = df.loc[df.method == "dense", "file_bytes"].mean()
    rows = []
    for (ratio, method), g in df.groupby([df.ratio.fillna("1"), "method"], sort=False):
        iv = _bounded(mean_ci(g.test_accuracy))
        rows.append(
            {
                "ratio": None if method == "dense" else ratio,
                "method": method,
                "seeds": len(g),
                "accuracy": iv.mean,
                "accuracy_low": iv.low,
                "accuracy_high": iv.high,
                "accuracy_sd": float(g.test_accuracy.std(ddof=1)) if len(g) > 1 else math.nan,
                "stored_values": int(g.stored_values.iloc[0]),
                "file_bytes": float(g.file_bytes.mean()),
                "gzip_bytes": float(g.gzip_bytes.mean()),
                "other_bytes": float(g.file_bytes.mean() - 4 * g.stored_values.iloc[0]),
                "file_ratio": float(dense_bytes / g.file_bytes.mean()) if dense_bytes == dense_bytes else math.nan,
                "epochs_mean": float(g.epochs_trained.mean()),
                "stopped_by_rule": int(g.stopped_by_rule.sum()),
            }
        )
    return pd.DataFrame(rows)


def comparisons_table(df: pd.DataFrame) -> pd.DataFrame:
    """Paired differences of test accuracy over training seeds: hashed - narrow, and each method - dense, per ratio.

    Pairs are the seeds both sides have. Each row: ``ratio``, ``comparison``, ``seeds``, ``diff`` and its 95% t
    interval (fractions), and the paired t-test's ``p_value`` (NaN below 2 seeds; shown, never used as a verdict).
    """
    acc = df.pivot_table(index="train_seed", columns=["method", df.ratio.fillna("-")], values="test_accuracy")
    rows = []
    ratios = sorted({r for r in df.ratio.dropna()}, key=_ratio_key, reverse=True)
    pairs = [("narrow", "hashed")] + [("dense", m) for m in ("hashed", "arbified", "clustered", "narrow")]
    for ratio in ratios:
        for a, b in pairs:
            ka, kb = (a, "-" if a == "dense" else ratio), (b, ratio)
            if ka not in acc.columns or kb not in acc.columns:
                continue
            both = acc[[ka, kb]].dropna()
            if both.empty:
                continue
            d = paired_difference(both[ka], both[kb])
            rows.append(
                {
                    "ratio": ratio,
                    "comparison": f"{b} - {a}",
                    "seeds": len(both),
                    "diff": d.diff.mean,
                    "diff_low": d.diff.low,
                    "diff_high": d.diff.high,
                    "p_value": d.p_value,
                }
            )
    return pd.DataFrame(rows)


def _figure(df: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"dense": "black", "hashed": "C0", "arbified": "C1", "clustered": "C2", "narrow": "C3"}
    markers = {"1/4": "o", "1/16": "s", "1/64": "^"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, col, title in zip(axes, ("file_bytes", "gzip_bytes"), ("model file on disk", "model file, gzip -9")):
        for _, s in summary.iterrows():
            m = s.method
            ax.errorbar(
                s[col],
                100 * s.accuracy,
                yerr=[[100 * (s.accuracy - s.accuracy_low)], [100 * (s.accuracy_high - s.accuracy)]],
                color=colours[m],
                marker=markers.get(s.ratio, "*"),
                markersize=8 if m != "dense" else 12,
                capsize=3,
                linestyle="none",
            )
        runs = df.assign(x=df[col], y=100 * df.test_accuracy)
        for m, g in runs.groupby("method"):
            ax.scatter(g.x, g.y, s=8, color=colours[m], alpha=0.35)
        ax.set_xscale("log")
        ax.set_xlabel(f"bytes ({title})")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%), mean and 95% t interval over seeds")
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="none", label=_LABEL[m]) for m, c in colours.items()]
    handles += [
        plt.Line2D([], [], color="grey", marker=mk, linestyle="none", label=f"ratio {r}") for r, mk in markers.items()
    ]
    axes[1].legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle("LeNet-5 on Fashion-MNIST: accuracy against model size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _kb(b: float) -> str:
    return f"{b:,.0f}"


def _report(df: pd.DataFrame, summary: pd.DataFrame, comps: pd.DataFrame, design: Any, profile: str) -> str:
    dense = summary[summary.method == "dense"]
    seeds = sorted(df.train_seed.unique().tolist())
    commits = sorted(df.git_commit.unique().tolist())
    lines = [
        "# Compression study: LeNet-5 on Fashion-MNIST",
        "",
        f"Profile `{profile}`: {len(df)} runs, training seeds {seeds}. Design, recipe and what the study can conclude:",
        "`analysis/studies/compression.toml` (written before the runs; its amendment 1, the divergence rule, after 36",
        "of them). Regenerate with `python -m analysis.compression_study --report-only`.",
        "",
        "**Descriptive study.** With the seeds above a t interval is wide and an exact paired test cannot reach",
        "significance, so nothing below is called significant or absent: read the effects and their 95% intervals.",
        "Accuracies are on the 10,000 test images, each read once per run after training.",
        "",
        "## Accuracy and size",
        "",
        "Stored values: table entries plus dense parameters (biases), the parameter count of the narrowed network.",
        "File: the trained model as it ships (`save_arbnet`: map as its spec for hashed and arbified, bit-packed",
        "indices for k-means; dense and narrowed: the `state_dict` as safetensors). x smaller: dense file / this file.",
        "Other bytes: the file beyond its float32 values (4 bytes each): headers, the map (its spec and SHA-256 for",
        "hashed and arbified, bit-packed indices for k-means) and metadata.",
        "",
        "| ratio | method | seeds | stored values | file bytes | other bytes | gzip bytes | x smaller |"
        " test accuracy % [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, s in summary.iterrows():
        iv = Interval(s.accuracy, s.accuracy_low, s.accuracy_high, int(s.seeds))
        lines.append(
            f"| {s.ratio if isinstance(s.ratio, str) else '1'} | {_LABEL[s.method]} | {s.seeds} | "
            f"{s.stored_values:,} | {_kb(s.file_bytes)} | {_kb(s.other_bytes)} | "
            f"{_kb(s.gzip_bytes)} | {s.file_ratio:.1f} | {ci(iv)} |"
        )
    lines += [
        "",
        "![accuracy against size](figures/accuracy_vs_size.png)",
        "",
        "## Paired differences over seeds",
        "",
        "Test accuracy of the first method minus the second, per ratio, paired by training seed (the same",
        "initialisation, validation split and batch order); 95% t interval. The p-value of the paired t-test is shown",
        "for completeness only.",
        "",
        "| ratio | difference | seeds | pp [95% CI] | p (t) |",
        "|---|---|---|---|---|",
    ]
    for _, c in comps.iterrows():
        iv = Interval(c["diff"], c.diff_low, c.diff_high, int(c.seeds))
        lines.append(f"| {c.ratio} | {c.comparison} | {c.seeds} | {pp(iv)} | {p_value(c.p_value)} |")
    drops = df.groupby("method").lr_drops.mean()
    lines += [
        "",
        "## Training length",
        "",
        "| method | runs | epochs (mean, min-max) | LR drops (mean) | stopped by the rule | diverged, retried |"
        " still diverged | wall time (s, median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, g in sorted(df.groupby("method"), key=lambda kv: _ORDER[kv[0]]):
        retried = g[g.diverged_attempts > 0]
        where = ", ".join(f"{r.run_id} (LR {r.lr:g})" for r in retried.itertuples()) or "none"
        lines.append(
            f"| {_LABEL[m]} | {len(g)} | {g.epochs_trained.mean():.1f}, {g.epochs_trained.min()}-"
            f"{g.epochs_trained.max()} | {drops[m]:.1f} | {int(g.stopped_by_rule.sum())} of {len(g)} | {where} | "
            f"{int(g.diverged.sum())} | {g.wall_time_s.median():.0f} |"
        )
    lines += [
        "",
        f"Recipe (train): {json.dumps(design.train)}.",
        f"Recipe (fine-tune of (b) and (c)): {json.dumps(design.finetune)}.",
        f"Hash of (a) and (b): {json.dumps(design.hash)} per Conv2d and Linear layer, hash seed 1000 + training seed.",
        "Divergence rule (amendment 1 of the design file): a run whose loss or parameters become non-finite is",
        f"retrained once from the same start at {design.retry_lr_factor} x its LR; the table above names the",
        "retried runs with the LR they finished at.",
        "",
        "## Provenance",
        "",
        f"Commits: {', '.join(f'`{c}`' for c in commits)}. Machine: CPU, one torch thread per run. Every run's",
        "record (`runs/*.json`: config, per-epoch history, versions, wall time) and model file (`models/`) is beside",
        "this report; `results.csv` has one row per run, `summary.csv` and `comparisons.csv` the tables above.",
    ]
    if dense.empty:
        lines.insert(4, "\n**Partial:** no dense run has finished yet.\n")
    return "\n".join(lines) + "\n"


def write_report(out: str | os.PathLike, design: Any, profile: str) -> Path:
    """Write the CSVs, the figure and ``REPORT.md`` from ``OUT/runs``; return the report's path.

    Raises:
        FileNotFoundError: if ``OUT/runs`` holds no record.
    """
    out = Path(out)
    records = read_records(out)
    if not records:
        raise FileNotFoundError(f"{out / 'runs'} holds no run record; run the study first")
    df = results_table(records)
    summary = summary_table(df)
    comps = comparisons_table(df)
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "comparisons.csv", comps.to_csv(index=False))
    _figure(df, summary, out / "figures" / "accuracy_vs_size.png")
    path = out / "REPORT.md"
    atomic_write_text(path, _report(df, summary, comps, design, profile))
    return path
