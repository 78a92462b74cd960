"""Time of :func:`hashlab.equiv.automorphism_group`, as a ratio to ``numpy.bincount`` over the same indices.

For each case, the group is computed once to warm up (numba kernels, igraph import), then the best of
``--repeat`` runs is reported in seconds and as a ratio to ``numpy.bincount(indices + 1)`` over the same
layers (one counting pass: the baseline of ``bench_stats.py``), measured in the same run, with the
group's order, how it was settled (colour refinement alone, or bliss on the quotient, with the graph's
size) and its ``seconds`` per part where it matters. Cases:

* the paper's MNIST MLP (784-200-200-10, table 1000 per layer): fc0 (156,800 weights) and the whole
  network for the modulus, uniform, Dirichlet(1e-3), Dirichlet(1000), Neighborhood(1) and
  Neighborhood(500) hashes;
* patterns with large groups, which go to bliss: a 256 x 256 circulant (cyclic group), a 300-element
  DeepSets layer (``S_300``), a group convolution on the 16 x 16 torus (256 translations);
* ``--cifar``: the CIFAR-10 MLP (3072-2000x5-10, 22.16M weights): fc0 (6.1M), fc1 (4M) and the whole
  network for the Dirichlet(1) and modulus hashes.

Numba uses all cores it sees; for one core run::

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_symmetry.py
    NUMBA_NUM_THREADS=1 python benchmarks/bench_symmetry.py --cifar --repeat 1 --json /tmp/bench_symmetry.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

from hashlab import ARCHITECTURES, HashSpec, IndexMap, LayerMap, build_map
from hashlab.equiv import automorphism_group
from hashlab.io.atomic import atomic_write_json
from hashlab.maps import circulant_map, deepsets_map, group_conv_map, torus_group_table

MNIST_SPECS = {
    "modulus": {"kind": "modulus"},
    "uniform": {"kind": "uniform"},
    "dirichlet1e-3": {"kind": "dirichlet", "alpha": 1e-3},
    "dirichlet1000": {"kind": "dirichlet", "alpha": 1000.0},
    "neighborhood1": {"kind": "neighborhood", "radius": 1},
    "neighborhood500": {"kind": "neighborhood", "radius": 500},
}
CIFAR_SPECS = {"dirichlet1": {"kind": "dirichlet", "alpha": 1.0}, "modulus": {"kind": "modulus"}}


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def layers_of(obj: LayerMap | IndexMap) -> tuple[LayerMap, ...]:
    return (obj,) if isinstance(obj, LayerMap) else obj.layers


def bincount(obj: LayerMap | IndexMap) -> None:
    for lay in layers_of(obj):
        np.bincount(lay.indices.reshape(-1) + 1)


def cases(cifar: bool) -> list[tuple[str, LayerMap | IndexMap]]:
    out: list[tuple[str, LayerMap | IndexMap]] = []
    for name, spec in MNIST_SPECS.items():
        imap = build_map(HashSpec(table_size=1000, seed=0, **spec), ARCHITECTURES["mnist-mlp"])
        out += [(f"mnist {name} fc0", imap.layers[0]), (f"mnist {name} network", imap)]
    out += [
        ("circulant 256", circulant_map(256).layers[0]),
        ("deepsets 300", deepsets_map(300).layers[0]),
        ("group conv 16x16 torus", group_conv_map(torus_group_table(16, 16)).layers[0]),
    ]
    if cifar:
        for name, spec in CIFAR_SPECS.items():
            imap = build_map(HashSpec(table_size=1000, seed=0, **spec), ARCHITECTURES["cifar10-mlp"])
            out += [
                (f"cifar10 {name} fc0", imap.layers[0]),
                (f"cifar10 {name} fc1", imap.layers[1]),
                (f"cifar10 {name} network", imap),
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cifar", action="store_true", help="also the CIFAR-10 MLP's layers and network (22.16M weights)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the best is kept (default: 3)")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numba threads {numba.get_num_threads()}, numpy {np.__version__}"
    )
    rows = []
    for name, obj in cases(args.cifar):
        weights = sum(lay.num_weights for lay in layers_of(obj))
        automorphism_group(obj, time_limit=None)  # warm up: numba kernels, igraph
        base, _ = best_of(lambda: bincount(obj), max(args.repeat, 3))
        secs, g = best_of(lambda: automorphism_group(obj, time_limit=None), args.repeat)
        how = g.method + (f" ({g.bliss_graph[0]:,} vertices, {g.bliss_graph[1]:,} edges)" if g.bliss_graph else "")
        rows.append(
            {
                "case": name,
                "weights": weights,
                "bincount_s": base,
                "seconds": secs,
                "ratio": secs / base,
                "log2_order": g.log2_order,
                "structure": g.structure,
                "method": g.method,
                "bliss_graph": None if g.bliss_graph is None else list(g.bliss_graph),
            }
        )
        print(
            f"{name:>28}: {weights:>11,} weights | {secs:7.3f} s = {secs / base:7.1f}x bincount "
            f"({base * 1e3:6.1f} ms) | log2|Aut| {g.log2_order:9.2f} | {how}"
        )
    if args.json:
        atomic_write_json(args.json, {"numba_threads": numba.get_num_threads(), "results": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
