"""One SGD step of a VirtualLinear layer too large for its index array: time, peak memory, and what a map would need.

Builds ``VirtualLinear.from_spec(HashSpec(kind=--kind, table_size=--table-size, sign=True), IN, OUT)`` (no index
array, no weight matrix), runs ``--steps`` SGD steps (forward, backward, update) on random inputs of ``--batch``
rows, and prints per step its seconds, the table's change (it trained) and, on CUDA, the peak memory allocated,
beside the bytes the materialised layer would hold: an int32 key per weight (2 on the CPU for small tables) plus
the float32 weight matrix it gathers.

Examples::

    python benchmarks/bench_virtual_huge.py --shape 20000x20000 --batch 8             # CPU, about a minute
    python benchmarks/bench_virtual_huge.py --device cuda --shape 100000x100000 --table-size 1000000 --batch 64
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hashlab import HashSpec
from trainers.torch_backend.virtual import VirtualLinear


def parse_shape(text: str) -> tuple[int, int]:
    try:
        i, o = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not IN_FEATURESxOUT_FEATURES, e.g. 20000x20000") from None
    if i < 1 or o < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r} needs positive sizes")
    return i, o


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shape", type=parse_shape, default=(20000, 20000), metavar="INxOUT", help="default 20000x20000")
    p.add_argument("--table-size", type=int, default=1_000_000, help="table entries (default: 1,000,000)")
    p.add_argument("--kind", default="xxhash", choices=["xxhash", "uniform"], help="hash kind (default: xxhash)")
    p.add_argument("--batch", type=int, default=8, help="input rows (default: 8)")
    p.add_argument("--steps", type=int, default=2, help="SGD steps; the first includes compilation (default: 2)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="hash seed and the seed of inputs and table (default: 0)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device; run on the CPU with a smaller --shape")
    in_f, out_f = args.shape
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    layer = VirtualLinear.from_spec(
        HashSpec(kind=args.kind, table_size=args.table_size, sign=True, seed=args.seed), in_f, out_f
    ).to(device)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    x = torch.randn(args.batch, in_f, device=device)
    weights = in_f * out_f
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU",
        "torch": torch.__version__,
        "shape": [in_f, out_f],
        "weights": weights,
        "table_size": args.table_size,
        "batch": args.batch,
        "materialised_bytes": weights * (4 + 4),  # int32 key + float32 weight
        "resident_bytes": sum(q.numel() * q.element_size() for q in layer.parameters()) + layer.hash.nbytes,
        "steps": [],
    }
    print(
        f"# VirtualLinear {in_f} x {out_f} ({weights:.3g} weights), table {args.table_size}, batch {args.batch}, "
        f"{result['device']}; the materialised layer would hold {result['materialised_bytes'] / 2**30:.1f} GiB "
        f"(int32 keys + float32 W), this one {result['resident_bytes'] / 2**20:.1f} MiB"
    )
    for step in range(args.steps):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        before = layer.table.detach().clone()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        layer(x).square().mean().backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        row = {
            "step": step,
            "seconds": seconds,
            "table_change": float((layer.table.detach() - before).abs().max()),
            "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        }
        result["steps"].append(row)
        peak = f", peak {row['peak_bytes'] / 2**30:.2f} GiB allocated" if row["peak_bytes"] is not None else ""
        print(f"step {step}: {seconds:.2f} s, largest table change {row['table_change']:.3g}{peak}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
