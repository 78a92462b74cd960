"""Forward + backward time of ArbLinear against a dense nn.Linear of the same shape, in the same run.

Prints, per layer shape, the median time of one ``forward -> sum -> backward`` step of both
layers (torch.utils.benchmark, blocked autorange) and their ratio ``ArbLinear / Linear``.
The index map is uniform random over a table of ``--table-size`` entries (optionally with
zeros and signs); the identity map (``--table-size 0``) shows the contiguous-view fast path.

Examples::

    python benchmarks/bench_arblinear.py                       # MNIST and CIFAR-10 MLP layer shapes
    python benchmarks/bench_arblinear.py --shapes 784x200 --sparsity 0.5 --sign --threads 1
"""
from __future__ import annotations

import argparse
import platform

import torch
from torch import nn
from torch.utils.benchmark import Timer

from trainers.torch_backend.layers import ArbLinear

# (in_features, out_features) of the paper's MLPs: MNIST 784-200-200-10, CIFAR-10 3072-2000x5-10
PAPER_SHAPES = ["784x200", "200x200", "200x10", "3072x2000", "2000x2000", "2000x10"]


def parse_shape(text: str) -> tuple[int, int]:
    try:
        i, o = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not IN_FEATURESxOUT_FEATURES, e.g. 784x200") from None
    return i, o


def make_layers(in_f: int, out_f: int, table_size: int, sparsity: float, sign: bool, device: torch.device,
                generator: torch.Generator) -> tuple[ArbLinear, nn.Linear]:
    n = table_size or in_f * out_f
    if table_size:
        idx = torch.randint(0, n, (out_f, in_f), generator=generator)
    else:
        idx = torch.arange(n).view(out_f, in_f)
    if sparsity:
        idx[torch.rand(out_f, in_f, generator=generator) < sparsity] = -1
    sgn = torch.randint(0, 2, (out_f, in_f), generator=generator) * 2 - 1 if sign else None
    return ArbLinear(in_f, out_f, idx, n, sign=sgn, device=device), nn.Linear(in_f, out_f, device=device)


def time_step(layer: nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    step()  # warm up
    return Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time).median


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in PAPER_SHAPES],
                   metavar="INxOUT", help=f"layer shapes (default: {' '.join(PAPER_SHAPES)})")
    p.add_argument("--batch-size", type=int, default=200, help="rows of the input batch (default: 200)")
    p.add_argument("--table-size", type=int, default=1000, help="table entries; 0 = identity map (default: 1000)")
    p.add_argument("--sparsity", type=float, default=0.0, help="fraction of weights fixed at zero (default: 0)")
    p.add_argument("--sign", action="store_true", help="add a sign hash")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds per measurement (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random index maps and inputs (default: 0)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    print(f"# ArbLinear vs nn.Linear, forward+backward, batch {args.batch_size}, table "
          f"{args.table_size or 'identity'}, sparsity {args.sparsity}, sign {args.sign}; torch {torch.__version__}, "
          f"{name}, {torch.get_num_threads()} threads")
    print(f"{'in x out':>12} {'Linear ms':>10} {'ArbLinear ms':>13} {'ratio':>7}")
    for in_f, out_f in args.shapes:
        arb, dense = make_layers(in_f, out_f, args.table_size, args.sparsity, args.sign, device, g)
        x = torch.randn(args.batch_size, in_f, generator=g).to(device)
        t_dense = time_step(dense, x, args.min_run_time)
        t_arb = time_step(arb, x, args.min_run_time)
        print(f"{f'{in_f}x{out_f}':>12} {t_dense * 1e3:10.3f} {t_arb * 1e3:13.3f} {t_arb / t_dense:7.2f}")


if __name__ == "__main__":
    main()
