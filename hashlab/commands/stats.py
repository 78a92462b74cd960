"""``hashlab stats FILE``: balance, uniformity, sign, locality, degeneracy and symmetry report of an index file."""

from __future__ import annotations

import argparse
import time

from ..io.atomic import atomic_write_json
from ..io.paths import check_output_dir, check_output_path
from ..stats.kernels import BACKENDS
from .inputs import add_max_table_entries, add_symmetry_flags, load_input_map, symmetry_bounds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="report entropy, load balance, uniformity tests and collision locality of an index file",
        description="Print per-layer and whole-network statistics of an index file (format v1, v2 or v3): "
        "entropy of entry usage in nats and bits (paper eq. 7), load min/mean/max against the "
        "balls-into-bins expectation, chi-square and G uniformity tests, realized sparsity, compression "
        "ratio, sign balance, the distance between weights that share an entry, degeneracy "
        "(identical rows and columns, rank bound), and symmetry (log2 of the automorphism group of each "
        "layer's sharing pattern and of the network, Ravanbakhsh et al. 2017). Definitions: docs/STATS.md.",
    )
    p.add_argument("file", help="index file written by `hashlab build` (or any writer of docs/FORMAT.md, v1 to v3)")
    p.add_argument(
        "--json", metavar="OUT.json", help="also write the report as JSON (schema hashlab.stats v3; v2 keys unchanged)"
    )
    p.add_argument("--loads", action="store_true", help="include every entry's load in the JSON")
    p.add_argument("--plot", metavar="DIR", help="also write PNG figures into DIR")
    p.add_argument(
        "--no-locality",
        dest="locality",
        action="store_false",
        help="skip the collision-locality analysis (balance only)",
    )
    p.add_argument(
        "--no-degeneracy",
        dest="degeneracy",
        action="store_false",
        help="skip the identical-rows/columns and rank analysis",
    )
    p.add_argument(
        "--rank-limit",
        type=int,
        default=None,
        metavar="ENTRIES",
        help="compute the random-table rank only for layers whose distinct-rows x distinct-columns "
        "submatrix has at most this many entries (default 1048576; 0: never)",
    )
    add_symmetry_flags(p)
    p.add_argument("--backend", choices=BACKENDS, default="numba", help="analysis kernels (default: numba)")
    p.add_argument("--time", action="store_true", help="print how long loading and each analysis took")
    add_max_table_entries(p)  # refuse oversized tables before allocating
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..stats import format_report, map_report
    from ..stats.degeneracy import RANK_LIMIT

    rank_limit = RANK_LIMIT if args.rank_limit is None else args.rank_limit
    if rank_limit < 0:
        raise ValueError(f"--rank-limit must be >= 0 (0 skips the rank), got {rank_limit}")
    max_weights, time_limit = symmetry_bounds(args)
    if args.json is not None:  # check outputs before any work
        check_output_path(args.json, "--json output")
    if args.plot is not None:
        check_output_dir(args.plot, "--plot folder")
    t0 = time.perf_counter()
    imap = load_input_map(args.file, args)
    t_load = time.perf_counter() - t0
    report = map_report(
        imap,
        locality=args.locality,
        backend=args.backend,
        source=str(args.file),
        degeneracy=args.degeneracy,
        rank_limit=rank_limit,
    )
    if not args.no_symmetry:
        from ..equiv.symmetry import map_symmetry

        t1 = time.perf_counter()
        report.symmetry = map_symmetry(imap, max_weights=max_weights, time_limit=time_limit, backend=args.backend)
        report.timings["symmetry_s"] = time.perf_counter() - t1
    print(format_report(report))
    if args.json:
        atomic_write_json(args.json, report.to_dict(include_loads=args.loads))
        print(f"\nwrote {args.json}")
    if args.plot:
        from ..stats.plots import report_figures

        for path in report_figures(report, args.plot):
            print(f"wrote {path}")
    if args.time:
        parts = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in report.timings.items())
        print(f"\ntime: load {t_load:.2f} s, {parts}")
    return 0
