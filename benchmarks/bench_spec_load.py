"""Size and load time of a spec-only index file (format v4) against the same map stored as arrays, same run.

Builds the map of ``--arch`` (default: the CIFAR-10 MLP, 22.16M weights) under a uniform hash, writes it
as v4 (``storage="spec"``: the spec and a SHA-256 of the indices), as v4 ``"packed"`` and as v3 (int16
arrays), and prints each file's size and its load time with ``load_index_file``
defaults (v3: memory-mapped, checksum and value checks; v4 spec: rebuild with the numba kernels, SHA-256
of the rebuilt arrays, value checks), with the ratio to the v3 load and the parts of the spec-only load
(``build_map`` alone, the SHA-256 alone). Times are the best of ``--repeats`` after one warm-up (as in
``bench_build.py``: steadier on a shared machine than a median). Numba runs on ``--threads`` threads
(default 1: one core).

    python benchmarks/bench_spec_load.py                        # CIFAR-10 MLP, 1 thread
    python benchmarks/bench_spec_load.py --arch mnist-mlp --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numba

from hashlab import Architecture, HashSpec, build_map, load_index_file, save_index_file
from hashlab.io.format import indices_checksum


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: numba compile or cache load, page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="cifar10-mlp", help="preset or sizes such as 784-200-200-10")
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="numba threads (default 1: one core)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    numba.set_num_threads(args.threads)
    spec, arch = HashSpec(kind="uniform", table_size=args.table_size), Architecture.parse(args.arch)
    imap = build_map(spec, arch)
    with tempfile.TemporaryDirectory() as d:
        files = {
            "v4 spec": save_index_file(imap, Path(d) / "spec.safetensors", storage="spec"),
            "v4 packed": save_index_file(imap, Path(d) / "packed.safetensors", storage="packed"),
            "v3 arrays": save_index_file(imap, Path(d) / "v3.safetensors", version=3),
        }
        times = {name: _best(lambda path=path: load_index_file(path), args.repeats) for name, path in files.items()}
        sizes = {name: path.stat().st_size for name, path in files.items()}
    t_build = _best(lambda: build_map(spec, arch), args.repeats)
    t_hash = _best(lambda: indices_checksum(imap.layers), args.repeats)
    base = times["v3 arrays"]
    print(
        f"{args.arch}: {imap.num_weights:,} weights, uniform table {args.table_size}; "
        f"numba threads {args.threads}; best of {args.repeats}"
    )
    for name in files:
        print(
            f"{name:9}: {sizes[name]:>12,} bytes ({sizes[name] / sizes['v3 arrays']:.2e} of v3)  "
            f"load {1000 * times[name]:8.1f} ms ({times[name] / base:5.2f}x the v3 load)"
        )
    print(
        f"v4 spec load parts: build_map {1000 * t_build:.1f} ms ({t_build / times['v4 spec']:.0%}), "
        f"SHA-256 of the indices {1000 * t_hash:.1f} ms ({t_hash / times['v4 spec']:.0%}), "
        "the rest header and value checks"
    )


if __name__ == "__main__":
    main()
