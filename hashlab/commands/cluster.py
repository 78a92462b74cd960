"""``hashlab cluster``: an index map learned from trained weights (k-means weight sharing, Deep Compression).

Reads the Linear weight matrices of a trained dense MLP from a safetensors file or a torch state
dict (:func:`hashlab.io.weights.read_weights`), clusters them with
:func:`hashlab.maps.cluster.cluster_weights` and writes a format-v2 index file whose
``initial_tables`` hold the cluster centres, so ``hashlab train`` starts from them. torch and
safetensors are imported only when a file needs them.
"""

from __future__ import annotations

import argparse

from ..io.errors import InputError, UsageError
from ..io.format import save_index_file
from ..io.paths import check_input_file, check_output_path
from ..io.weights import read_weights
from ..maps.cluster import INITS, WeightsError, check_cluster_params, cluster_weights, quantization_report
from ..maps.spec import SCOPES

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="cluster a trained MLP's weights into shared tables (Deep Compression) -> index file",
        description="Cluster the Linear weights of a trained dense MLP into --table-size shared values with "
        "1-D k-means (Han et al. 2016, Deep Compression, section 3) and write a format-v2 index "
        "file whose initial tables hold the cluster centres: `hashlab train` then fine-tunes the "
        "shared values from there. WEIGHTS: a safetensors file or a torch state dict / "
        "`hashlab train --checkpoint` file (docs/CLI.md, 'hashlab cluster').",
    )
    p.add_argument(
        "weights",
        metavar="WEIGHTS",
        help="safetensors file or torch state dict: its 2-D float tensors named *.weight, in file "
        "order, are the Linear layers; an ArbMLP state dict or training checkpoint gives each "
        "layer's virtual weight sign * table[indices]",
    )
    p.add_argument("--table-size", type=int, required=True, metavar="N", help="entries per table (cluster count)")
    p.add_argument(
        "--scope",
        choices=SCOPES,
        default="layer",
        help="one table per layer, or one table for the whole network (default: layer)",
    )
    p.add_argument(
        "--init",
        choices=INITS,
        default="linear",
        help="k-means start: linear (evenly spaced min..max; Deep Compression's best), density "
        "(quantiles), random (sampled weights) (default: linear)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --init random, in [0, 2**63) (default: 0)")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations (default: 20)")
    p.add_argument(
        "--layers",
        default=None,
        metavar="NAME,NAME",
        help="comma-separated tensor names to use, in forward order (default: every 2-D float "
        "*.weight tensor in file order)",
    )
    p.add_argument("-o", "--output", required=True, help="path of the index file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_cluster_params(args.table_size, args.scope, args.init, args.seed, args.iters)
    check_output_path(args.output, "--output")
    path = check_input_file(
        args.weights,
        "weights file",
        "train a dense model first, e.g. `hashlab build --kind "
        "identity` then `hashlab train MAP --checkpoint dense.pt`",
    )
    layers = None
    if args.layers is not None:
        layers = [s.strip() for s in args.layers.split(",") if s.strip()]
        if not layers:
            raise UsageError("--layers is empty; give comma-separated tensor names such as fc1.weight,fc2.weight")
    names, mats = read_weights(path, layers)
    try:
        imap = cluster_weights(
            mats,
            args.table_size,
            scope=args.scope,
            init=args.init,
            seed=args.seed,
            iters=args.iters,
            source=f"{path.name} ({', '.join(names)})",
        )
    except WeightsError as e:  # a property of the input file, not of the command line
        raise InputError(f"weights file {path}: {e} (tensors: {', '.join(names)})") from None
    out = save_index_file(imap, args.output)
    print(
        f"clustered {len(names)} layers of {path.name} into {len(imap.table_sizes)} table(s) of "
        f"{args.table_size} ({args.scope} scope, {args.init} init): {imap.num_weights:,} weights, compression "
        f"ratio {imap.compression_ratio:.1f}"
    )
    print(f"{'layer':<24} {'shape':>11} {'distinct':>9} {'used':>6} {'max |err|':>10} {'mean |err|':>10}")
    for name, r in zip(names, quantization_report(mats, imap)):
        shape = "x".join(map(str, r["shape"]))
        print(
            f"{name:<24} {shape:>11} {r['distinct']:>9,} {r['entries_used']:>6} {r['max_abs_error']:>10.3g} "
            f"{r['mean_abs_error']:>10.3g}"
        )
    print(f"wrote {out}")
    return 0
