"""Time of the full ``hashlab stats`` report, as a ratio to ``numpy.bincount`` over the same indices.

For each hash kind, builds the map of ``--arch`` (default: the paper's CIFAR-10 MLP,
3072-2000x5-10, 22.16M virtual weights, one table of 1000 entries per layer), warms the numba
kernels up on it once (compilation excluded), then reports the best of ``--repeat`` runs of

* ``bincount``: ``numpy.bincount(indices + 1)`` per layer (the baseline: one counting pass);
* ``balance``: loads, entropy, load tests, uniformity tests
  (``map_report(locality=False, degeneracy=False)``);
* ``full``: everything ``hashlab stats`` computes, locality and degeneracy included (``map_report``),
  with the per-part breakdown of the best full run (``MapReport.timings``: balance = load counting,
  tests = entropy, uniformity tests and E[max], locality, degeneracy, theory) and the ratio of
  everything but locality,
* ``locality parts``: the three locality kernels called directly on every layer (stable counting
  sort by entry, both nearest-partner histograms, the pair sweep), best of ``--repeat``,

each with its ratio to ``bincount`` measured in the same run. Numba uses all cores it sees
(``NUMBA_NUM_THREADS`` limits them).

Examples::

    python benchmarks/bench_stats.py                        # CIFAR-10 MLP, Dirichlet(alpha=1) hash
    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_stats.py   # one thread, as numpy.bincount
    python benchmarks/bench_stats.py --kind uniform dirichlet neighborhood --repeat 3
    python benchmarks/bench_stats.py --arch mnist-mlp --json /tmp/bench_stats.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from hashlab import Architecture, HashSpec, build_map
from hashlab.io.atomic import atomic_write_json
from hashlab.stats import kernels as SK
from hashlab.stats import map_report
from hashlab.stats.locality import default_thresholds, pair_thresholds

SPECS = {  # name: (kind, parameters)
    "uniform": ("uniform", {}),
    "dirichlet": ("dirichlet", {"alpha": 1.0}),
    "dirichlet0.1": ("dirichlet", {"alpha": 0.1}),
    "neighborhood": ("neighborhood", {"radius": 0}),
    "modulus": ("modulus", {}),
    "xxhash": ("xxhash", {}),
}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bincount_all(imap) -> None:
    for lay in imap.layers:
        np.bincount(lay.indices.reshape(-1) + 1, minlength=imap.table_sizes[lay.table] + 1)


def locality_parts(imap, repeat: int) -> dict[str, float]:
    """Seconds of the locality kernels over all layers: bucket sort, nearest partners, pairs (best of ``repeat``)."""
    out = {"sort_s": 0.0, "nearest_s": 0.0, "pairs_s": 0.0}
    for lay in imap.layers:
        flat, n, cols = lay.indices.reshape(-1), imap.table_sizes[lay.table], lay.indices.shape[1]
        th = np.minimum(pair_thresholds(default_thresholds(max(flat.size - 1, 1))), max(flat.size - 1, 0))
        starts, ids = SK.bucket_sort_nb(flat, n)
        out["sort_s"] += best_of(lambda: SK.bucket_sort_nb(flat, n), repeat)
        out["nearest_s"] += best_of(lambda: SK.nearest_histograms_nb(starts, ids, cols), repeat)
        out["pairs_s"] += best_of(lambda: SK.layer_pair_counts_nb(flat, n, th), repeat)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="cifar10-mlp", help="preset or sizes (default: cifar10-mlp)")
    p.add_argument(
        "--kind",
        nargs="+",
        default=["dirichlet"],
        choices=sorted(SPECS),
        help="hash kinds to time (dirichlet: alpha=1; default: dirichlet)",
    )
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept (default: 2)")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    arch = Architecture.parse(args.arch)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numba threads {numba.get_num_threads()}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
        f", numpy {np.__version__}, numba {numba.__version__}"
    )
    print(
        f"map: {arch.name} {'-'.join(map(str, arch.features))}, {arch.num_weights:,} virtual weights, "
        f"table {args.table_size} per layer"
    )
    rows = []
    for kind in args.kind:
        imap = build_map(HashSpec(kind=SPECS[kind][0], table_size=args.table_size, **SPECS[kind][1]), arch)
        t = time.perf_counter()
        map_report(imap)  # compile / load the numba caches
        warm = time.perf_counter() - t
        base = best_of(lambda: bincount_all(imap), max(args.repeat, 3))
        bal = best_of(lambda: map_report(imap, locality=False, degeneracy=False), args.repeat)
        reports = []

        def full_run():
            t0 = time.perf_counter()
            r = map_report(imap)
            reports.append((time.perf_counter() - t0, r))

        full = best_of(full_run, args.repeat)
        parts = min(reports, key=lambda tr: tr[0])[1].timings
        rest = full - parts.get("locality_s", 0.0)
        loc = locality_parts(imap, args.repeat)
        rows.append(
            {
                "locality_parts_s": loc,
                "locality_parts_ratio": {k: v / base for k, v in loc.items()},
                "kind": kind,
                "weights": arch.num_weights,
                "bincount_s": base,
                "balance_s": bal,
                "full_s": full,
                "parts_s": parts,
                "parts_ratio": {k: v / base for k, v in parts.items()},
                "balance_ratio": bal / base,
                "full_ratio": full / base,
                "all_but_locality_ratio": rest / base,
                "first_call_s": warm,
            }
        )
        print(
            f"{kind:>12}: bincount {base * 1e3:7.1f} ms | balance {bal:6.2f} s ({bal / base:6.1f}x bincount) | "
            f"full report {full:6.2f} s ({full / base:7.1f}x bincount) | first call {warm:5.1f} s"
        )
        print(
            " " * 14
            + "parts of the best full run: "
            + ", ".join(f"{k[:-2]} {v:.2f} s ({v / base:.1f}x)" for k, v in parts.items())
            + f"; all but locality {rest / base:.1f}x bincount"
        )
        print(
            " " * 14
            + "locality kernels alone: "
            + ", ".join(f"{k[:-2]} {v:.2f} s ({v / base:.1f}x)" for k, v in loc.items())
        )
    if args.json:
        atomic_write_json(
            args.json,
            {
                "arch": list(arch.features),
                "table_size": args.table_size,
                "numba_threads": numba.get_num_threads(),
                "results": rows,
            },
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
