"""``hashlab figure NAME``: paper figures (Dirichlet heatmap, entropy against alpha) as PNG."""

from __future__ import annotations

import argparse

FIGURES = ("dirichlet-heatmap", "entropy-vs-alpha")


def _alphas(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--alphas takes comma-separated numbers such as 0.1,1,10, got {text!r}"
        ) from None
    if not vals or any(not v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--alphas must be positive numbers, got {text!r}")
    return vals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figure",
        help="draw a paper figure as PNG (dirichlet-heatmap, entropy-vs-alpha)",
        description="dirichlet-heatmap: the paper's Figure 1, multinomial parameters drawn from "
        "Dirichlet(alpha) over the table for several alpha. entropy-vs-alpha: expected "
        "entropy of a Dirichlet table against alpha, with the uniform table's ln n.",
    )
    p.add_argument("name", choices=FIGURES, help="which figure")
    p.add_argument("-o", "--output", required=True, help="PNG path to write")
    p.add_argument("--table-size", type=int, default=1000, help="entries n (default: 1000)")
    p.add_argument(
        "--alphas",
        type=_alphas,
        default=None,
        help="comma-separated alphas (heatmap default: 0.001,0.01,0.1,1,10,100,1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the Dirichlet draws (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.paths import check_output_path

    if args.table_size < 2:
        raise ValueError(f"--table-size must be >= 2, got {args.table_size}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    check_output_path(args.output, "--output")
    from ..stats.plots import DEFAULT_ALPHAS, dirichlet_heatmap, entropy_vs_alpha  # matplotlib: slow import

    if args.name == "dirichlet-heatmap":
        path = dirichlet_heatmap(args.output, n=args.table_size, alphas=args.alphas or DEFAULT_ALPHAS, seed=args.seed)
    else:
        path = entropy_vs_alpha(args.output, n=args.table_size, alphas=args.alphas)
    print(f"wrote {path}")
    return 0
