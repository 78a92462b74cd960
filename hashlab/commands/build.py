"""``hashlab build``: write an index file for an architecture and a hash spec."""

from __future__ import annotations

import argparse

from ..io.format import save_index_file
from ..io.paths import check_output_path
from ..maps.hashes import BACKENDS, build_map
from ..maps.spec import ARCHITECTURES, DEFAULT_TABLE_SIZE, Architecture, HashSpec
from .dataclass_args import add_dataclass_arguments, dataclass_from_args

_BUDGET = ("table_size", "compression")  # one of the two, as a mutually exclusive pair of flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build an index map and write it as an index file",
        description="Build an index map for an MLP architecture and write it atomically "
        "as an index file (format v4: the spec and a SHA-256 of the indices, which readers rebuild; docs/FORMAT.md).",
    )
    p.add_argument(
        "--arch",
        default="mnist-mlp",
        help=f"preset ({', '.join(ARCHITECTURES)}) or feature sizes like 784-200-200-10 (default: mnist-mlp)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--table-size",
        dest="table_size",
        type=int,
        default=None,
        metavar="INT",
        help=f"weight entries per table, n (default: {DEFAULT_TABLE_SIZE} unless --compression)",
    )
    budget.add_argument(
        "--compression",
        dest="compression",
        default=None,
        metavar="RATIO",
        help="instead of --table-size: HashedNets' compression factor, table entries per virtual "
        "weight, in (0, 1], such as 1/64 or 0.015625 (a compression ratio of 64); each layer's "
        "table gets ceil(weights x RATIO) weight entries (the whole network's with --scope "
        "global)",
    )
    add_dataclass_arguments(p, HashSpec, skip=_BUDGET)
    p.add_argument("--backend", choices=BACKENDS, default="numba", help="index generator (default: numba)")
    p.add_argument("-o", "--output", required=True, help="path of the index file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = dataclass_from_args(HashSpec, args)
    arch = Architecture.parse(args.arch)
    check_output_path(args.output, "--output")
    imap = build_map(spec, arch, backend=args.backend)
    path = save_index_file(imap, args.output)
    print(
        f"wrote {path}: {len(imap.layers)} layers, {imap.num_weights:,} virtual weights, "
        f"{imap.num_entries:,} table entries (compression ratio {imap.compression_ratio:.1f})"
    )
    plan = spec.table_plan(arch.layer_shapes)
    sizes = ", ".join(f"{w:,}" + (f" + {b:,} bias" if b else "") for w, b in zip(plan.weights, plan.biases))
    budget = f"compression {spec.compression}" if spec.compression is not None else f"table size {spec.table_size}"
    print(f"table sizes ({budget}, scope {spec.scope}): {sizes}")
    return 0
