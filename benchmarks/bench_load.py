"""Cost of the v2 checksum: load time of a ~100 MB index file with and without ``verify``, same run.

Prints the median of ``--repeats`` loads for ``load_index_file(path, verify=v, validate=w)`` and
the ratios against the cheapest load (mmap, no verification, no value check). The file is built
once (uniform map, one int32 table) in a temporary folder; the page cache is warm after the
first load, so this measures hashing and checking, not the disk.

    python benchmarks/bench_load.py                  # ~100 MB
    python benchmarks/bench_load.py --weights 10000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hashlab import Architecture, HashSpec, build_map, load_index_file, save_index_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=int, default=25_000_000, help="virtual weights (int32 indices: 4 bytes each)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    side = int(args.weights**0.5)
    imap = build_map(HashSpec(kind="modulus", table_size=100_000), Architecture((side, side)))
    with tempfile.TemporaryDirectory() as d:
        path = save_index_file(imap, Path(d) / "big.safetensors")
        size = path.stat().st_size
        rows = {}
        for verify in (False, True):
            for validate in (False, True):
                times = []
                for _ in range(args.repeats + 1):
                    t = time.perf_counter()
                    load_index_file(path, verify=verify, validate=validate)
                    times.append(time.perf_counter() - t)
                rows[(verify, validate)] = statistics.median(times[1:])
    base = rows[(False, False)]
    print(f"file {size / 1e6:.1f} MB, {imap.num_weights:,} weights; median of {args.repeats} loads (mmap=True)")
    for (verify, validate), t in rows.items():
        print(
            f"verify={verify!s:5} validate={validate!s:5}: {1000 * t:8.1f} ms  ({t / base:6.1f}x the bare load, "
            f"{t / rows[(False, True)]:.2f}x the default-without-verify)"
        )


if __name__ == "__main__":
    main()
