"""Per-model training throughput of a group of K ArbMLPs trained as one batched model vs one after another.

For K in ``--ks``, builds K maps of one architecture (Dirichlet, different seeds), and times
SGD training steps (forward, backward, step; batch ``--batch-size``, random inputs) of

* ``ArbMLPGroup`` (``trainers.torch_backend.group``: one batched gather and ``baddbmm`` per layer), and
* the K ``ArbMLP`` trained one after another (K optimizer steps per batch),

(maps built with hashlab's numpy backend: numba's threads slow torch in the same process),
and prints per-model samples/s of both and their ratio (group / sequential), in the same run.

Examples::

    python benchmarks/bench_group.py --threads 1
    python benchmarks/bench_group.py --arch cifar10-mlp --ks 1 8 --device cuda --json group.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend.group import ArbMLPGroup, GroupSGD
from trainers.torch_backend.models import ArbMLP


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(steps_fns, steps: int, device: torch.device, repeats: int = 5) -> list[float]:
    """Median seconds per step of each function, timed in alternating blocks of ``steps`` steps.

    Alternating the blocks spreads the noise of a shared machine over all candidates.
    """
    for fn in steps_fns:
        fn()  # warm up
    sync(device)
    times: list[list[float]] = [[] for _ in steps_fns]
    for _ in range(repeats):
        for fn, ts in zip(steps_fns, times):
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(device)
            ts.append((time.perf_counter() - t) / steps)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="mnist-mlp", help="architecture preset or sizes, e.g. 784-200-200-10")
    p.add_argument("--ks", nargs="+", type=int, default=[1, 8, 32], help="group sizes (default: 1 8 32)")
    p.add_argument("--table-size", type=int, default=1000, help="entries per layer table (default: 1000)")
    p.add_argument("--batch-size", type=int, default=200, help="mini-batch size (default: 200)")
    p.add_argument("--steps", type=int, default=10, help="steps per timing block (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    arch = Architecture.parse(args.arch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    header = (
        f"ArbMLP group vs sequential, {args.arch}, table {args.table_size}, batch {args.batch_size}; "
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads"
    )
    print("# " + header)
    print(f"{'K':>4} {'group samples/s/model':>22} {'sequential samples/s/model':>27} {'ratio':>7}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, arch.features[0], generator=g).to(device)
    y = torch.randint(0, arch.features[-1], (args.batch_size,), generator=g).to(device)
    rows = []
    for k in args.ks:
        maps = [
            build_map(HashSpec(kind="dirichlet", alpha=1.0, table_size=args.table_size, seed=s), arch, backend="numpy")
            for s in range(k)
        ]
        models = []
        for imap in maps:
            torch.manual_seed(0)
            models.append(ArbMLP(imap, device=device))
        group = ArbMLPGroup(models, maps)
        gopt = GroupSGD(group, lr=0.01, momentum=0.9)
        opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in models]

        def group_step() -> None:
            gopt.zero_grad()
            logits = group(x)  # (K, B, C)
            F.cross_entropy(logits.transpose(1, 2), y.unsqueeze(0).expand(k, -1), reduction="none").mean(
                1
            ).sum().backward()
            gopt.step()

        def sequential_step() -> None:
            for m, o in zip(models, opts):
                o.zero_grad()
                F.cross_entropy(m(x), y).backward()
                o.step()

        t_group, t_seq = time_steps([group_step, sequential_step], args.steps, device)
        row = {
            "k": k,
            "group_samples_per_s_per_model": args.batch_size / t_group,
            "sequential_samples_per_s_per_model": args.batch_size / t_seq,
            "ratio": t_seq / t_group,
        }
        rows.append(row)
        print(
            f"{k:>4} {row['group_samples_per_s_per_model']:22.0f} {row['sequential_samples_per_s_per_model']:27.0f} "
            f"{row['ratio']:7.2f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
