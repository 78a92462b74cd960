"""Figures of map statistics and of the Dirichlet hash (matplotlib, Agg backend, no pyplot state).

* :func:`report_figures`: ``load_histogram.png``, ``locality.png``, ``entropy.png``,
  ``degeneracy.png`` for a :class:`~hashlab.stats.MapReport` (``hashlab stats FILE --plot DIR``).
* :func:`dirichlet_heatmap`: the paper's Figure 1, entry probabilities drawn from
  ``Dir(alpha)`` over 1000 entries for several alpha (``hashlab figure dirichlet-heatmap``).
* :func:`entropy_vs_alpha`: expected entropy against alpha for a table of 1000, with the
  uniform table's ``ln 1000 = 6.91`` nats (``hashlab figure entropy-vs-alpha``).

Every PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..io.atomic import atomic_open
from ..maps.hashes import dirichlet_probabilities
from .entropy import entropy_nats
from .theory import dirichlet_entropy_sd, dirichlet_expected_entropy, dirichlet_multinomial_expected_entropy

__all__ = [
    "report_figures",
    "load_histogram_figure",
    "locality_figure",
    "entropy_figure",
    "degeneracy_figure",
    "symmetry_figure",
    "dirichlet_heatmap",
    "entropy_vs_alpha",
    "save_figure",
    "DEFAULT_ALPHAS",
]

DEFAULT_ALPHAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _nats_to_bits(v: Any) -> Any:
    return v / math.log(2)


def _bits_to_nats(v: Any) -> Any:
    return v * math.log(2)


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Render ``fig`` with the Agg backend and write it to ``path`` as PNG, atomically."""
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return path


def _new(width: float, height: float, **kw) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", **kw)
    return fig


def load_histogram_figure(report) -> Figure:
    """One panel per layer: entries per load value, against a uniform hash's Binomial expectation."""
    layers = report.layers
    ncol = min(3, len(layers))
    nrow = math.ceil(len(layers) / ncol)
    fig = _new(4.2 * ncol, 3.2 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, lay in zip(axes, layers):
        b = lay.balance
        top = max(b.max_load, int(b.expected_max_load) + 1, 1)
        low = min(b.min_load, int(scipy.stats.binom.ppf(1e-4, b.nonzero, 1.0 / b.num_entries)))
        wide = top - low > 80 and top > 20 * max(low, 1)
        shown = b.loads
        if wide:  # geometric bins from 1; empty entries are counted in the title
            edges = np.unique(np.round(np.geomspace(1, top + 1, 40)).astype(np.int64)) - 0.5
            shown = b.loads[b.loads > 0]
        elif top - low > 80:
            edges = np.unique(np.linspace(low, top + 1, 50).astype(np.int64)) - 0.5
        else:
            edges = np.arange(low - 0.5, top + 1.5)
        ax.hist(shown, bins=edges, color=_COLORS[0], alpha=0.75, label="this map")
        cdf = scipy.stats.binom.cdf(edges, b.nonzero, 1.0 / b.num_entries)
        expect = b.num_entries * np.diff(cdf)
        ax.stairs(expect, edges, color="black", lw=1.5, ls="--", label="uniform hash (Binomial)")
        if wide:
            ax.set_xscale("log")
        ax.set_xlabel("load (non-zeroed weights per entry)" + (", log bins" if wide else ""))
        ax.set_ylabel("entries")
        empty = f", {b.empty_entries} empty" if wide and b.empty_entries else ""
        ax.set_title(
            f"{lay.name} ({lay.out_features}x{lay.in_features}, n={b.num_entries:,}): "
            f"H = {b.entropy_nats:.2f} nats{empty}",
            fontsize=10,
        )
        ax.legend(fontsize=8)
    for ax in axes[len(layers) :]:
        ax.set_visible(False)
    fig.suptitle("Load histogram: how many entries are read by k weights", fontsize=12)
    return fig


def locality_figure(report) -> Figure:
    """Nearest-partner curves (identifier order, grid) and the pair curve, observed vs uniform hash."""
    if report.locality is None:
        raise ValueError("the report has no locality section; compute it with map_report(imap, locality=True)")
    fig = _new(15, 4.4)
    axes = fig.subplots(1, 3)
    parts = [(lay.name, lay.locality) for lay in report.layers]
    for ax, metric, title, xlabel in (
        (axes[0], "id", "Nearest partner, identifier order", "distance d = |i - i'| (weights)"),
        (axes[1], "grid", "Nearest partner, 2-D grid", "distance d = max(|drow|, |dcol|) (weights)"),
    ):
        for c, (name, loc) in enumerate(parts):
            st = getattr(loc, metric)
            color = _COLORS[c % len(_COLORS)]
            ax.plot(st.thresholds, st.fraction_within, color=color, marker="o", ms=3, lw=1.6, label=f"{name}")
            ax.plot(st.thresholds, st.expected_fraction_within, color=color, ls="--", lw=1.1)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of co-bucketed weights\nwith a partner within d")
        ax.set_title(title, fontsize=11)
        ax.grid(alpha=0.3)
    ax = axes[2]
    for c, (name, loc) in enumerate(parts):
        st = loc.id
        color = _COLORS[c % len(_COLORS)]
        ok = st.pair_fraction > 0
        ax.plot(st.pair_thresholds[ok], st.pair_fraction[ok], color=color, marker="o", ms=3, lw=1.6, label=name)
        ax.plot(st.pair_thresholds, st.expected_pair_fraction, color=color, ls="--", lw=1.1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("distance d = |i - i'| (weights)")
    ax.set_ylabel("fraction of co-bucketed pairs within d")
    ax.set_title("Co-bucketed pairs, identifier order (zero fractions not drawn)", fontsize=11)
    ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], color="gray", lw=1.6, marker="o", ms=3), Line2D([], [], color="gray", ls="--")]
    labels += ["observed (solid)", "uniform random hash (dashed)"]
    axes[0].legend(handles, labels, fontsize=8, loc="upper left")
    fig.suptitle("Collision locality: distance between weights that share a table entry", fontsize=12)
    return fig


def entropy_figure(report) -> Figure:
    """Per-layer (and total) entropy bars in nats, with ``ln n`` (a perfectly balanced table) marked."""
    rows = [(lay.name, lay.balance) for lay in report.layers] + [("total", report.total)]
    fig = _new(max(5.0, 1.1 * len(rows) + 2.5), 4.2)
    ax = fig.subplots()
    x = np.arange(len(rows))
    h = [b.entropy_nats for _, b in rows]
    hmax = [math.log(b.num_entries) for _, b in rows]
    ax.bar(x, hmax, width=0.7, color="none", edgecolor="gray", ls="--", lw=1.2, label="ln n (balanced table)")
    bars = ax.bar(x, h, width=0.55, color=[_COLORS[0]] * (len(rows) - 1) + [_COLORS[1]], label="measured H")
    for rect, b, top in zip(bars, (b for _, b in rows), hmax):
        ax.annotate(
            f"{b.entropy_nats:.2f}\n({b.entropy_normalized:.0%})",
            (rect.get_x() + rect.get_width() / 2, max(rect.get_height(), top)),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_xticks(x, [f"{name}\nn={b.num_entries:,}" for name, b in rows], fontsize=9)
    ax.set_ylabel("entropy of entry usage (nats)")
    ax.set_ylim(0, max(hmax) * 1.22)
    sec = ax.secondary_yaxis("right", functions=(_nats_to_bits, _bits_to_nats))
    sec.set_ylabel("bits")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Entropy per layer (paper eq. 7); % = H / ln n", fontsize=11)
    return fig


def degeneracy_figure(report) -> Figure:
    """Per layer: distinct rows, distinct columns, rank bound and random-table rank, as fractions of full."""
    if report.degeneracy is None:
        raise ValueError("the report has no degeneracy part; compute it with map_report(imap, degeneracy=True)")
    degs = [lay.degeneracy for lay in report.layers]
    fig = _new(max(5.0, 1.3 * len(degs) + 2.5), 4.2)
    ax = fig.subplots()
    x = np.arange(len(degs))
    parts = [
        ("distinct rows / out", [d.distinct_rows / d.out_features for d in degs]),
        ("distinct cols / in", [d.distinct_cols / d.in_features for d in degs]),
        ("rank bound / min(out, in)", [d.rank_bound / d.full_rank for d in degs]),
        (
            "random rank / min(out, in)",
            [np.nan if d.random_rank is None else d.random_rank / d.full_rank for d in degs],
        ),
    ]
    w = 0.8 / len(parts)
    for j, (label, vals) in enumerate(parts):
        ax.bar(x + (j - 1.5) * w, vals, width=w, color=_COLORS[j], label=label)
    ax.axhline(1.0, color="gray", ls="--", lw=1)
    ax.set_xticks(x, [f"{d.name}\n{d.out_features}x{d.in_features}\nbound {d.rank_bound:,}" for d in degs], fontsize=9)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("fraction of full")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.set_title("Degeneracy: identical rows / columns and rank(W) (missing bar: rank not computed)", fontsize=10)
    return fig


def symmetry_figure(report) -> Figure:
    """Per layer and for the network: ``log2 |Aut|``, the part from identical units hatched; refused: a cross.

    Reads ``report.symmetry.to_dict()`` (:func:`hashlab.equiv.symmetry.map_symmetry`, attached by ``hashlab stats``).
    """
    if report.symmetry is None:
        raise ValueError(
            "the report has no symmetry part; attach one with report.symmetry = hashlab.equiv.map_symmetry(imap)"
        )
    d = report.symmetry.to_dict()
    groups = list(d["layers"]) + ([d["network"]] if d.get("network") is not None else [])
    fig = _new(max(5.0, 1.1 * len(groups) + 2.5), 4.0)
    ax = fig.subplots()
    x = np.arange(len(groups))
    total = [g.get("log2_order", np.nan) if "refused" not in g else np.nan for g in groups]
    ident = [g.get("identical_log2_order", np.nan) if "refused" not in g else np.nan for g in groups]
    ax.bar(x, total, width=0.6, color=_COLORS[0], label="log2 |Aut|")
    ax.bar(x, ident, width=0.6, color="none", edgecolor="k", hatch="//", label="from identical rows / columns")
    top = np.nanmax(total + [1.0])
    for k, g in enumerate(groups):
        if "refused" in g:
            ax.text(k, 0.02 * top, "refused", ha="center", va="bottom", rotation=90, fontsize=8)
        else:
            ax.text(k, g["log2_order"] + 0.01 * top, f"{g['log2_order']:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [g["name"] for g in groups], fontsize=9)
    ax.set_ylim(0, 1.15 * top)
    ax.set_ylabel("log2 |Aut| (bits)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Symmetry: log2 of the automorphism group of each sharing pattern (0 = trivial)", fontsize=10)
    return fig


def report_figures(report, outdir: str | os.PathLike) -> list[Path]:
    """Write ``load_histogram.png``, ``entropy.png`` and (if computed) ``locality.png``,
    ``degeneracy.png`` and ``symmetry.png`` into ``outdir``."""
    outdir = Path(outdir)
    paths = [
        save_figure(load_histogram_figure(report), outdir / "load_histogram.png"),
        save_figure(entropy_figure(report), outdir / "entropy.png"),
    ]
    if report.locality is not None:
        paths.append(save_figure(locality_figure(report), outdir / "locality.png"))
    if report.degeneracy is not None:
        paths.append(save_figure(degeneracy_figure(report), outdir / "degeneracy.png"))
    if report.symmetry is not None:
        paths.append(save_figure(symmetry_figure(report), outdir / "symmetry.png"))
    return paths


def dirichlet_heatmap(
    path: str | os.PathLike, n: int = 1000, alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0
) -> Path:
    """The paper's Figure 1: entry probabilities ``p ~ Dir(alpha)`` over ``n`` entries, one row per alpha.

    Colour is ``n p_e`` (1 = the uniform share) on a log scale; each row is labelled with its
    entropy. Draws come from :func:`hashlab.dirichlet_probabilities` (table 0, ``seed``), i.e.
    exactly the probabilities a Dirichlet map with that seed uses.
    """
    if not alphas:
        raise ValueError("give at least one alpha")
    ps = np.array([dirichlet_probabilities(n, float(a), seed, 0) for a in alphas])
    fig = _new(11, 0.55 * len(alphas) + 1.8)
    ax = fig.subplots()
    shown = np.clip(ps * n, 1e-3, None)
    im = ax.imshow(
        shown,
        aspect="auto",
        interpolation="nearest",
        cmap="magma",
        norm=LogNorm(vmin=1e-3, vmax=max(shown.max(), 10.0)),
    )
    ax.set_yticks(
        range(len(alphas)), [f"alpha={a:g}  (H={entropy_nats(p):.2f} nats)" for a, p in zip(alphas, ps)], fontsize=9
    )
    ax.set_xlabel(f"table entry (0..{n - 1})")
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("n x probability (1 = uniform share; <=1e-3 clipped)")
    ax.set_title(
        f"Multinomial parameters p ~ Dirichlet(alpha) over {n} entries (paper Fig. 1; seed {seed}); "
        f"uniform table: ln {n} = {math.log(n):.2f} nats",
        fontsize=10,
    )
    return save_figure(fig, path)


def entropy_vs_alpha(
    path: str | os.PathLike,
    n: int = 1000,
    alphas: Sequence[float] | None = None,
    draws: Sequence[int] = (156_800, 2_000),
    seeds: int = 5,
) -> Path:
    """Expected entropy of a Dirichlet table against alpha, with the uniform table's ``ln n`` line.

    Plots ``E[H(p)]`` +- 1 sd (closed form), the entropies of drawn ``p`` for ``seeds`` seeds,
    and the mean plug-in entropy a map with ``m`` weights would measure, for each ``m`` in
    ``draws`` (defaults: the MNIST MLP's first and last layer).
    """
    grid = np.logspace(-3, 3, 49) if alphas is None else np.asarray(alphas, dtype=np.float64)
    mean = np.array([dirichlet_expected_entropy(n, a) for a in grid])
    sd = np.array([dirichlet_entropy_sd(n, a) for a in grid])
    fig = _new(7.5, 4.8)
    ax = fig.subplots()
    ax.fill_between(grid, mean - sd, mean + sd, color=_COLORS[0], alpha=0.25, lw=0)
    ax.plot(grid, mean, color=_COLORS[0], lw=2, label="E[H(p)], p ~ Dir(alpha) (+-1 sd band)")
    pts = grid[:: max(1, len(grid) // 12)]
    for s in range(seeds):
        hs = []
        for a in pts:
            p = dirichlet_probabilities(n, float(a), s, 0)
            hs.append(entropy_nats(p))
        ax.scatter(pts, hs, s=12, color="black", zorder=3, label="H of drawn p (5 seeds)" if s == 0 else None)
    for c, m in enumerate(draws):
        plug = [dirichlet_multinomial_expected_entropy(int(m), n, a) for a in grid]
        ax.plot(
            grid, plug, color=_COLORS[1 + c], ls="-.", lw=1.4, label=f"E[plug-in H] measured from m = {m:,} weights"
        )
    ax.axhline(math.log(n), color="gray", ls="--", lw=1.2)
    ax.annotate(
        f"uniform table: ln {n} = {math.log(n):.2f} nats",
        (grid[0], math.log(n)),
        xytext=(0, 4),
        textcoords="offset points",
        fontsize=9,
        color="dimgray",
    )
    ax.set_xscale("log")
    ax.set_xlabel("Dirichlet concentration alpha (log scale)")
    ax.set_ylabel("entropy of entry usage (nats)")
    ax.set_ylim(0, math.log(n) * 1.12)
    sec = ax.secondary_yaxis("right", functions=(_nats_to_bits, _bits_to_nats))
    sec.set_ylabel("bits")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Entropy of a Dirichlet hash's table against alpha (n = {n} entries)", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)
