"""Index generation speed, as ratios against baselines measured in the same run.

Baselines, all over the same layers as the map (kept alive together, as ``build_map`` keeps them):

* the **write floor**: ``numpy.full(out * in, 0, int32)`` per layer, the least any generator must do;
* **numpy choice**: ``Generator.choice(n, size, p=p)`` per layer with the Dirichlet table's ``p``
  (the textbook way to draw categorical indices), against ``build_map(kind="dirichlet")``;
* the map without sparsity, for the **sparsity overhead** (``sparsity=0.5``: half the weights zeroed;
  as a ratio and in ns per weight, since a faster dense fill raises the ratio at the same cost)
  and the sign-hash overhead (timed interleaved with it);
* optionally (``--numpy-twin``) the plain-numpy reference twin ``backend="numpy"``.

Wall times are the best of ``--repeat`` runs after one warm-up (numba compile / page faults).
On a machine shared with other jobs, ``NUMBA_NUM_THREADS=1`` gives steadier ratios.
Numba uses all cores it sees (``NUMBA_NUM_THREADS`` limits them).

    python benchmarks/bench_build.py --arch cifar10-mlp
    python benchmarks/bench_build.py --arch mnist-mlp --repeat 5 --numpy-twin --json /tmp/build.json
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
from hashlab.maps.hashes import dirichlet_probabilities

KINDS = [
    ("identity", {}),
    ("modulus", {}),
    ("uniform", {}),
    ("dirichlet", {"alpha": 1.0}),
    ("neighborhood", {"radius": 10}),
    ("xxhash", {}),
]
SPARSE = [("uniform", {}), ("dirichlet", {"alpha": 1.0}), ("neighborhood", {"radius": 10}), ("xxhash", {})]


def _best_time(fn, repeat: int) -> float:
    return _best_times([fn], repeat)[0]


def _best_times(fns, repeat: int) -> list[float]:
    """Best of ``repeat`` timings of each function, run interleaved so that load changes on a shared
    machine hit all of them alike; one warm-up call each first (numba compile / page faults)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [min(ts) for ts in times]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arch", default="cifar10-mlp", help="preset or feature sizes (default: cifar10-mlp, 22.16M weights)"
    )
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--numpy-twin", action="store_true", help="also time the numpy reference twin (slow)")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    arch = Architecture.parse(args.arch)
    n_weights = arch.num_weights
    n = args.table_size
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numba threads {numba.get_num_threads()}, numpy {np.__version__}, numba {numba.__version__}"
    )

    def floor_fn():
        return [np.full(o * i, 0, np.int32) for o, i in arch.layer_shapes]

    print(
        f"arch {arch.name}: {n_weights:,} weights, table {n}; floor = int32 np.full per layer, timed "
        "interleaved with each kind"
    )
    res: dict = {
        "arch": list(arch.features),
        "table_size": n,
        "weights": n_weights,
        "numba_threads": numba.get_num_threads(),
        "kinds": {},
        "sparsity": {},
    }

    print(
        f"{'hash':<16}{'numba ms':>10}{'floor ms':>10}{'/ floor':>9}{'Mweights/s':>12}"
        + (f"{'numpy ms':>10}{'numpy/numba':>13}" if args.numpy_twin else "")
    )
    for kind, kw in KINDS:
        spec = HashSpec(kind=kind, table_size=n, seed=0, **kw)
        floor, t_nb = _best_times([floor_fn, lambda: build_map(spec, arch)], args.repeat)
        row = {"numba_s": t_nb, "floor_s": floor, "floor_ratio": t_nb / floor}
        line = f"{kind:<16}{t_nb * 1e3:>10.1f}{floor * 1e3:>10.1f}{t_nb / floor:>9.1f}{n_weights / t_nb / 1e6:>12.1f}"
        if args.numpy_twin:
            t_np = _best_time(lambda: build_map(spec, arch, backend="numpy"), 1)
            row |= {"numpy_s": t_np, "numpy_ratio": t_np / t_nb}
            line += f"{t_np * 1e3:>10.1f}{t_np / t_nb:>13.1f}"
        res["kinds"][kind] = row
        print(line)

    probs = [dirichlet_probabilities(n, 1.0, 0, k) for k in range(len(arch.layer_shapes))]
    rng = np.random.default_rng(0)
    t_choice = _best_time(lambda: [rng.choice(n, size=o * i, p=pk) for (o, i), pk in zip(arch.layer_shapes, probs)], 1)
    t_dir = res["kinds"]["dirichlet"]["numba_s"]
    res["dirichlet_vs_choice"] = {"choice_s": t_choice, "speedup": t_choice / t_dir}
    print(
        f"\ndirichlet(alpha=1): numpy Generator.choice(p=...) {t_choice * 1e3:.1f} ms, build_map "
        f"{t_dir * 1e3:.1f} ms: {t_choice / t_dir:.1f}x faster"
    )

    print(
        f"\n{'sparsity 0.5':<16}{'dense ms':>10}{'sparse ms':>11}{'overhead':>10}{'ns/weight':>11}{'+sign ms':>10}"
        f"{'overhead':>10}"
    )
    for kind, kw in SPARSE:
        dense, t_sp, t_sg = _best_times(
            [
                lambda: build_map(HashSpec(kind=kind, table_size=n, **kw), arch),
                lambda: build_map(HashSpec(kind=kind, table_size=n, sparsity=0.5, **kw), arch),
                lambda: build_map(HashSpec(kind=kind, table_size=n, sign=True, **kw), arch),
            ],
            args.repeat,
        )
        res["sparsity"][kind] = {
            "dense_s": dense,
            "sparse_s": t_sp,
            "overhead": t_sp / dense - 1,
            "overhead_ns_per_weight": (t_sp - dense) / n_weights * 1e9,
            "sign_s": t_sg,
            "sign_overhead": t_sg / dense - 1,
        }
        print(
            f"{kind:<16}{dense * 1e3:>10.1f}{t_sp * 1e3:>11.1f}{t_sp / dense - 1:>+10.0%}"
            f"{(t_sp - dense) / n_weights * 1e9:>+11.2f}{t_sg * 1e3:>10.1f}{t_sg / dense - 1:>+10.0%}"
        )
    if args.json:
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
