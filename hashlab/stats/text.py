"""Text of a :class:`~hashlab.stats.balance.MapReport`: what ``hashlab stats`` prints.

:func:`format_report` lays out the balance, sign, locality, degeneracy, symmetry and theory sections as
aligned columns; the numbers come from the report's fields (docs/STATS.md defines them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .balance import BalanceStats, MapReport
from .degeneracy import MapDegeneracy
from .locality import LayerLocality

__all__ = ["format_report", "degeneracy_lines"]


# --------------------------------------------------------------------------- text output
def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-99 else "<1e-99"


def _describe_spec(spec: dict[str, Any]) -> str:
    if not spec:
        return "(no spec recorded)"
    kind = spec.get("kind", "?")
    extra = ""
    if spec.get("alpha") is not None:
        extra = f"(alpha={spec['alpha']:g})"
    elif spec.get("radius") is not None:
        extra = f"(r={spec['radius']})"
    elif spec.get("block_size") is not None:
        extra = f"(block={spec['block_size']})"
    arch = spec.get("architecture")
    sizes = "-".join(map(str, arch)) if arch else ""
    name = spec.get("architecture_name", "")
    arch_s = (sizes if name in ("", sizes) else f"{name} {sizes}") if arch else "?"
    layers = spec.get("layers")
    if not arch and isinstance(layers, list) and all(isinstance(x, dict) for x in layers):  # build_model_map
        arch_s = ", ".join(f"{x.get('kind', '?')} {'x'.join(map(str, x.get('weight_shape', [])))}" for x in layers)
        if spec.get("budgets") is not None:
            arch_s += f"; per-layer budgets {spec['budgets']}"
    budget = (
        f"compression {spec['compression']}"
        if spec.get("compression") is not None
        else f"table_size {spec.get('table_size', '?')}"
    ) + (", hashed biases" if spec.get("hash_bias") else "")
    return (
        f"{kind}{extra}, {budget}, scope {spec.get('scope', '?')}, "
        f"seed {spec.get('seed', '?')}, sparsity {spec.get('sparsity', 0):g}, sign {spec.get('sign', False)}; "
        f"architecture {arch_s}"
    )


_SMALL_EXPECTED = 5.0  # below this mean load the chi-square approximation is rough


def _balance_row(label: str, shape: str, table: str, b: BalanceStats) -> list[str]:
    mark = "*" if b.nonzero and b.nonzero / b.num_entries < _SMALL_EXPECTED else ""
    return [
        label,
        shape,
        table,
        f"{b.num_entries:,}",
        f"{b.num_weights:,}",
        f"{b.sparsity:.3f}",
        f"{b.compression_ratio:.1f}",
        f"{b.entropy_nats:.3f}",
        f"{b.entropy_bits:.3f}",
        f"{b.entropy_normalized:.3f}",
        f"{b.min_load:,}",
        f"{b.mean_load:.1f}",
        f"{b.max_load:,}",
        f"{b.expected_max_load:.1f}",
        _fmt_p(b.chi2_p) + mark,
        _fmt_p(b.g_p) + mark,
    ]


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    out = []
    for r in [header] + rows:
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def format_report(report: MapReport) -> str:
    """Human-readable multi-line table of a :class:`MapReport` (what ``hashlab stats`` prints)."""
    lines = []
    if report.source:
        lines.append(f"index map {report.source}")
    lines.append(f"spec      {_describe_spec(report.spec)}")
    t = report.total
    lines.append(
        f"network   {len(report.layers)} layers, {t.num_weights:,} virtual weights, "
        f"{len(report.table_sizes)} table(s) with {t.num_entries:,} entries: compression ratio "
        f"{t.compression_ratio:.2f}, realized sparsity {t.sparsity:.4f}"
    )
    lines.append("")
    lines.append(
        "balance: entropy of entry usage H (paper eq. 7; a uniform table of n entries has ln n nats);"
        " loads = non-zeroed weights per entry"
    )
    header = [
        "layer",
        "shape",
        "table",
        "n",
        "weights",
        "sparsity",
        "compr.",
        "H nats",
        "H bits",
        "H/ln n",
        "min",
        "mean",
        "max",
        "E[max]",
        "chi2 p",
        "G p",
    ]
    rows = [_balance_row(r.name, f"{r.out_features}x{r.in_features}", str(r.table), r.balance) for r in report.layers]
    shared = [tb for tb in report.tables if sum(r.table == tb.table for r in report.layers) > 1]
    rows += [_balance_row(tb.name, "", "", tb) for tb in shared]
    rows.append(_balance_row("total", "", "all", t))
    lines += _table(header, rows, left=2)
    lines.append(
        "  E[max]: expected max load of a uniform random hash (balls into bins); chi2/G p: uniform-usage"
        " tests (scipy.stats); total: over all (table, entry) pairs, tests summed over tables"
    )
    if any(r[-1].endswith("*") for r in rows):
        lines.append(
            f"  *: mean load below {_SMALL_EXPECTED:g}, where the chi-square approximation of these p-values is rough"
        )
    srows = [
        [r.name, f"{s.fraction_plus:.4f}", _fmt_p(s.binom_p), _fmt_p(s.entry_chi2_p)]
        for r in report.layers
        if (s := r.balance.sign) is not None
    ]
    if srows:
        lines.append("")
        lines.append("sign hash xi: fraction +1, binomial p, per-entry sign-sum chi2 p")
        lines += _table(["layer", "frac +1", "binom p", "entry p"], srows)
    if report.locality is not None:
        lines.append("")
        lines.append(
            "locality: distance from each weight to the nearest other weight of its layer in the same entry;"
            " id = |i - i'|, grid = max(|drow|, |dcol|); (u) = expected under a uniform random hash"
        )
        ref = _pair_ref(report.locality, report.table_sizes)
        lheader = [
            "layer",
            "co-bucketed",
            "id median",
            "(u)",
            "grid median",
            "(u)",
            "grid <=1",
            "(u)",
            f"pairs |di|<={ref}",
            "(u)",
        ]
        lrows = [_locality_row(r.name, r.locality, ref) for r in report.layers if r.locality is not None]
        lrows.append(_locality_row("total", report.locality, ref))
        lines += _table(lheader, lrows)
        lines.append(
            "  grid <=1: fraction of co-bucketed weights with a partner at grid distance 1; "
            f"pairs: fraction of co-bucketed pairs with |i - i'| <= {ref}"
        )
    if report.degeneracy is not None:
        lines += degeneracy_lines(report.degeneracy)
    if report.symmetry is not None:
        lines += [""] + list(report.symmetry.lines())
    lines += _theory_lines(report.theory)
    return "\n".join(lines)


def _theory_lines(th: dict[str, Any] | None) -> list[str]:
    if not th:
        return []
    out = ["", f"theory ({th['kind']} hash)"]
    if "dirichlet" in th:
        out.append(
            "  entropy in nats; E[H(p)] = psi(n a + 1) - psi(a + 1) for p ~ Dir(a); E[H_hat] = mean plug-in "
            "entropy of m draws (Dirichlet-multinomial); z = (measured - E[H_hat]) / sd"
        )
        rows = [
            [
                f"table {c['table']}",
                f"{c['m']:,}",
                f"{c['n']:,}",
                f"{c['measured']:.4f}",
                f"{c['drawn']:.4f}",
                f"{c['expected']:.4f} +- {c['expected_sd']:.4f}",
                f"{c['expected_plugin']:.4f}",
                f"{c['z_measured']:+.2f}",
            ]
            for c in th["dirichlet"]
        ]
        out += [
            "  " + x
            for x in _table(["table", "m", "n", "measured", "H(p drawn)", "E[H(p)] +- sd", "E[H_hat]", "z"], rows)
        ]
    if "offsets" in th:
        o = th["offsets"]
        out.append(
            f"  offsets (h(i) - i) mod n against U{{-{o['radius']}..{o['radius']}}}: {o['count']:,} weights, "
            f"{o['outside']} outside the support, chi2 p = {_fmt_p(o['p_value'])}"
        )
    if "exactly_balanced" in th:
        out.append(f"  every table exactly balanced (max - min load <= 1): {all(th['exactly_balanced'])}")
    return out


def _pair_ref(pooled: LayerLocality, table_sizes: tuple[int, ...]) -> int:
    """Pair-curve distance shown in the text table: the largest threshold <= half the smallest table.

    Below ``n / 2`` a modulus-like hash (Neighborhood r = 0) has no co-bucketed pair at all.
    """
    th = pooled.id.pair_thresholds
    assert th is not None  # the identifier metric always carries its pair curve
    half = max(1, min(table_sizes) // 2)
    return int(th[max(0, int(np.searchsorted(th, half, side="right")) - 1)])


def _locality_row(name: str, loc: LayerLocality, ref: int) -> list[str]:
    def q(x: float) -> str:
        return "-" if not np.isfinite(x) else f"{x:,.0f}"

    def pct(x: float) -> str:
        return "-" if x is None or not np.isfinite(x) else f"{x:.4f}"

    i, g = loc.id, loc.grid
    th, frac, expected = i.pair_thresholds, i.pair_fraction, i.expected_pair_fraction
    assert th is not None and frac is not None and expected is not None  # the identifier metric's pair curve
    k = int(np.searchsorted(th, ref))
    ok = k < len(th)
    pf = frac[k] if ok else float("nan")
    pe = expected[k] if ok else float("nan")
    g1 = g.fraction_within[0] if g.thresholds[0] == 1 else float("nan")
    g1e = g.expected_fraction_within[0] if g.thresholds[0] == 1 else float("nan")
    return [
        name,
        f"{i.co_bucketed:,}",
        q(i.quantile(0.5)),
        q(i.expected_quantile(0.5)),
        q(g.quantile(0.5)),
        q(g.expected_quantile(0.5)),
        pct(g1),
        pct(g1e),
        pct(pf),
        pct(pe),
    ]


# --------------------------------------------------------------------------- text
def degeneracy_lines(deg: MapDegeneracy) -> list[str]:
    """The degeneracy section of :func:`format_report`: a table of distinct rows and columns, then warnings.

    Parameters
    ----------
    deg : MapDegeneracy

    Returns
    -------
    list of str
        Lines without newlines, starting with an empty one.
    """
    out = [
        "",
        "degeneracy: identical (index, sign) rows compute the same pre-activation, identical columns merge "
        "inputs; rank(W) <= min(distinct rows, distinct cols) for any table values",
    ]
    header = [
        "layer",
        "shape",
        "distinct rows",
        "distinct cols",
        "max row group",
        "max col group",
        "rank bound",
        "min(out,in)",
        "random rank",
    ]

    def row(d):
        rr = "-" if d.random_rank is None else f"{d.random_rank:,}"
        return [
            d.name,
            f"{d.out_features}x{d.in_features}",
            f"{d.distinct_rows:,}",
            f"{d.distinct_cols:,}",
            f"{d.largest_row_group:,}",
            f"{d.largest_col_group:,}",
            f"{d.rank_bound:,}",
            f"{d.full_rank:,}",
            rr,
        ]

    rows = [row(d) for d in deg.layers]
    rows.append(
        [
            "total",
            "",
            f"{deg.distinct_rows:,} / {deg.rows:,}",
            f"{deg.distinct_cols:,} / {deg.cols:,}",
            "",
            "",
            f"{deg.rank_bound:,}",
            f"{deg.full_rank:,}",
            "",
        ]
    )
    out += _table(header, rows, 2)
    out.append(
        f"  random rank: numpy.linalg.matrix_rank of W with N(0, 1) table values, max of {deg.rank_draws} "
        f"seeded draws, on the distinct rows x distinct cols submatrix when it has <= {deg.rank_limit:,} "
        "entries ('-' above)"
    )
    for d in deg.layers:
        if d.degenerate:
            out.append(
                f"  WARNING: {d.name}: rank bound {d.rank_bound:,} < min(out, in) = {d.full_rank:,}: only "
                f"{d.distinct_rows:,} of {d.out_features:,} output units and {d.distinct_cols:,} of "
                f"{d.in_features:,} inputs are distinct"
            )
    return out
