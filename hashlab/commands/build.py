"""``hashlab build``: write an index file for an architecture and a hash spec."""
from __future__ import annotations

import argparse

from ..io.format import save_index_file
from ..io.paths import check_output_path
from ..maps.hashes import BACKENDS, build_map
from ..maps.spec import ARCHITECTURES, Architecture, HashSpec
from .dataclass_args import add_dataclass_arguments, dataclass_from_args

_HELP = {
    "kind": "hash function (paper eq. 1, 2, 8-9, 10; xxhash = HashedNets)",
    "table_size": "entries per table, n",
    "seed": "random seed, in [0, 2**63)",
    "sparsity": "fraction of virtual weights fixed at zero, in [0, 1)",
    "scope": "one table per layer, or one table for the whole network",
    "alpha": "Dirichlet concentration (dirichlet only)",
    "radius": "neighborhood radius r (neighborhood only)",
    "sign": "add a sign hash xi in {-1,+1}",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build an index map and write it as an index file (format v2)",
                       description="Build an index map for an MLP architecture and write it atomically "
                                   "as a format-v2 index file (docs/FORMAT.md).")
    p.add_argument("--arch", default="mnist-mlp",
                   help=f"preset ({', '.join(ARCHITECTURES)}) or feature sizes like 784-200-200-10 "
                        "(default: mnist-mlp)")
    add_dataclass_arguments(p, HashSpec, help=_HELP)
    p.add_argument("--backend", choices=BACKENDS, default="numba", help="index generator (default: numba)")
    p.add_argument("-o", "--output", required=True, help="path of the index file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = dataclass_from_args(HashSpec, args)
    arch = Architecture.parse(args.arch)
    check_output_path(args.output, "--output")
    imap = build_map(spec, arch, backend=args.backend)
    path = save_index_file(imap, args.output)
    print(f"wrote {path}: {len(imap.layers)} layers, {imap.num_weights:,} virtual weights, "
          f"{imap.num_entries:,} table entries (compression ratio {imap.compression_ratio:.1f})")
    return 0
