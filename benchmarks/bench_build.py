"""Index generation speed, as ratios against baselines measured in the same run.

Baselines: the plain-numpy reference twin (``backend="numpy"``), and a memory-write floor
(writing the same number of int64 values with ``numpy.arange``, the least any generator
must do). Wall times are medians of ``--repeat`` runs after one warm-up (numba compile).

    python benchmarks/bench_build.py --arch cifar10-mlp
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hashlab import Architecture, HashSpec, build_map

CASES = [
    ("uniform", {}), ("dirichlet", {"alpha": 1.0}), ("neighborhood", {"radius": 10}),
    ("xxhash", {}), ("modulus", {}), ("uniform+sign+sparsity", {}),
]


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up: numba compile / page faults
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="cifar10-mlp", help="preset or feature sizes (default: cifar10-mlp, 22.16M weights)")
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    arch = Architecture.parse(args.arch)
    n_weights = arch.num_weights
    floor = _median_time(lambda: [np.arange(o * i, dtype=np.int64) for o, i in arch.layer_shapes], args.repeat)
    print(f"arch {arch.name}: {n_weights:,} weights, table {args.table_size}; "
          f"memory-write floor {floor * 1e3:.1f} ms")
    print(f"{'hash':<24}{'numba ms':>10}{'numpy ms':>10}{'numpy/numba':>13}{'numba/floor':>13}{'Mweights/s':>12}")
    for name, kw in CASES:
        kind = name.split("+")[0]
        extra = {"sign": True, "sparsity": 0.5} if "+" in name else {}
        spec = HashSpec(kind=kind, table_size=args.table_size, seed=0, **kw, **extra)
        t_nb = _median_time(lambda: build_map(spec, arch, backend="numba"), args.repeat)
        t_np = _median_time(lambda: build_map(spec, arch, backend="numpy"), 1)
        print(f"{name:<24}{t_nb * 1e3:>10.1f}{t_np * 1e3:>10.1f}{t_np / t_nb:>13.2f}{t_nb / floor:>13.2f}"
              f"{n_weights / t_nb / 1e6:>12.1f}")


if __name__ == "__main__":
    main()
