"""Forward + backward time of ArbLinear against a dense nn.Linear and against the uniform map, in one run.

For every layer shape, batch size and index map, prints the median time of one
``forward -> sum -> backward`` step (torch.utils.benchmark, blocked autorange) of
``nn.Linear`` and of ``ArbLinear`` (plan-based gather, :class:`TableGather`), and the ratios
``ArbLinear / Linear`` and ``ArbLinear(map) / ArbLinear(uniform)``; ``--ref`` also times the
reference twin (``index_select`` + autograd ``index_add_``, ``gather_weight_ref``). The resident
index memory of each layer is printed in bytes per virtual weight. ``--virtual`` also times
:class:`~trainers.torch_backend.virtual.VirtualLinear` of the same spec (hash on the fly: no index
array, no stored W), with its ratios to ``nn.Linear`` and to the materialised ArbLinear, and each
layer's resident bytes (parameters plus index buffers).

Maps are built with hashlab's numpy backend for ``--device cpu`` (numba's parallel kernels, run
in the same process before torch, slowed torch's CPU kernels 30-50x on a 2-core box) and with
its numba backend for ``--device cuda``.

Maps (a table of ``--table-size`` entries, default 1000 as in the paper's MNIST runs, or
``in*out / --compression``; built with ``hashlab.build_map``):
uniform, Dirichlet alpha=1e-3 (hot entries), uniform with sparsity 0.5 and 0.9, neighborhood r=1.

Examples::

    python benchmarks/bench_arblinear.py --threads 1 --skip-large
    python benchmarks/bench_arblinear.py --device cuda --json arblinear-cuda.json
    python benchmarks/bench_arblinear.py --threads 1 --virtual --sign --maps uniform sparse-0.9 --shapes 3072x2000
    python benchmarks/bench_arblinear.py --virtual --shapes 10240x10240 --batch-sizes 512   # RzLinear's table shape
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch
from torch import nn
from torch.utils.benchmark import Timer

from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend import functional
from trainers.torch_backend.functional import gather_weight_ref
from trainers.torch_backend.layers import ArbLinear
from trainers.torch_backend.virtual import VirtualLinear

SHAPES = ["784x200", "3072x2000", "8192x8192"]
MAPS = {
    "uniform": dict(kind="uniform"),
    "dirichlet-1e-3": dict(kind="dirichlet", alpha=1e-3),
    "sparse-0.5": dict(kind="uniform", sparsity=0.5),
    "sparse-0.9": dict(kind="uniform", sparsity=0.9),
    "neighborhood-r1": dict(kind="neighborhood", radius=1),
}


def parse_shape(text: str) -> tuple[int, int]:
    try:
        i, o = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not IN_FEATURESxOUT_FEATURES, e.g. 784x200") from None
    return i, o


class RefArbLinear(nn.Module):
    """The reference twin as a layer: ``gather_weight_ref`` (index_select, autograd index_add_)."""

    def __init__(self, layer: ArbLinear) -> None:
        super().__init__()
        self.table, self.bias = layer.table, layer.bias
        self.register_buffer("indices", layer.indices)
        self.register_buffer("sign", None if layer.sign is None else layer.sign.to(layer.table.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, gather_weight_ref(self.table, self.indices, self.sign), self.bias)


def make_spec(in_f: int, out_f: int, map_kw: dict, table_size: int, compression: float | None, sign: bool, seed: int):
    n = table_size if compression is None else max(1, round(in_f * out_f / compression))
    return HashSpec(table_size=n, seed=seed, sign=sign, **map_kw)


def resident_bytes(layer: nn.Module) -> int:
    """Parameters and index buffers a layer keeps between steps (its transient tiles not counted)."""
    params = sum(p.numel() * p.element_size() for p in layer.parameters())
    return (
        params + int(getattr(layer, "index_bytes", 0)) + (layer.hash.nbytes if isinstance(layer, VirtualLinear) else 0)
    )


def make_layer(
    in_f: int,
    out_f: int,
    map_kw: dict,
    table_size: int,
    compression: float | None,
    sign: bool,
    seed: int,
    device: torch.device,
) -> ArbLinear:
    spec = make_spec(in_f, out_f, map_kw, table_size, compression, sign, seed)
    n = spec.table_size
    # numba's threads slow torch's CPU kernels in this process; on CUDA they do not matter, and
    # numpy takes minutes for the 8192x8192 maps
    imap = build_map(spec, Architecture((in_f, out_f)), backend="numba" if device.type == "cuda" else "numpy")
    lay = imap.layers[0]
    return ArbLinear(
        in_f, out_f, np.asarray(lay.indices), n, sign=None if lay.sign is None else np.asarray(lay.sign), device=device
    )


def time_steps(layers: list[nn.Module], x: torch.Tensor, min_run_time: float, rounds: int = 3) -> list[float]:
    """Median seconds of one forward+backward step of each layer.

    Each round times every layer once (torch.utils.benchmark, blocked autorange over
    ``min_run_time / rounds`` s); a layer's time is its median over the rounds, so the layers
    share the noise of a busy machine instead of one of them catching a slow spell.
    """

    def stepper(layer: nn.Module):
        def step() -> None:
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize()

        step()  # warm up
        return step

    steps = [stepper(layer) for layer in layers]
    times: list[list[float]] = [[] for _ in layers]
    for _ in range(rounds):
        for step, ts in zip(steps, times):
            ts.append(
                Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time / rounds).median
            )
    return [sorted(ts)[len(ts) // 2] for ts in times]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=[parse_shape(s) for s in SHAPES],
        metavar="INxOUT",
        help=f"layer shapes (default: {' '.join(SHAPES)})",
    )
    p.add_argument("--skip-large", action="store_true", help="skip shapes with more than 2**24 weights (8192x8192)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[200, 4096], help="input rows (default: 200 4096)")
    p.add_argument("--maps", nargs="+", choices=list(MAPS), default=list(MAPS), help="index maps (default: all)")
    p.add_argument("--table-size", type=int, default=1000, help="table entries per layer (default: 1000)")
    p.add_argument(
        "--compression", type=float, default=None, help="instead of --table-size: table size = in*out/compression"
    )
    p.add_argument("--sign", action="store_true", help="add a sign hash to every map")
    p.add_argument("--ref", action="store_true", help="also time the reference twin (index_select + index_add_)")
    p.add_argument(
        "--virtual",
        action="store_true",
        help="also time VirtualLinear (hash on the fly: numba on the CPU, Triton on CUDA)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--skew-factor",
        type=float,
        default=functional.SKEW_FACTOR,
        help="off the CPU, segments sum by float64 prefix differences when the largest holds more "
        f"than this times the mean (default: {functional.SKEW_FACTOR}; inf: always segment_reduce)",
    )
    p.add_argument(
        "--min-run-time",
        type=float,
        default=1.0,
        help="seconds of timing per layer, spread over 3 interleaved rounds (default: 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the index maps and inputs (default: 0)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    functional.SKEW_FACTOR = args.skew_factor
    device = torch.device(args.device)
    shapes = [s for s in args.shapes if not (args.skip_large and s[0] * s[1] > 2**24)]
    g = torch.Generator().manual_seed(args.seed)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    table = f"compression {args.compression}" if args.compression else f"table {args.table_size}"
    header = (
        f"ArbLinear vs nn.Linear, forward+backward, {table}, sign {args.sign}; "
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} threads"
        + (f", skew factor {args.skew_factor:g}" if device.type != "cpu" else "")
    )
    print("# " + header)
    cols = f"{'in x out':>10} {'batch':>6} {'map':>16} {'Linear ms':>10} {'Arb ms':>9} {'/Linear':>8} {'/uniform':>9}"
    extra = f" {'ref ms':>8} {'ref/Lin':>8}" if args.ref else ""
    extra += f" {'virt ms':>8} {'virt/Lin':>8} {'virt/Arb':>8} {'Arb MiB':>8} {'virt MiB':>8}" if args.virtual else ""
    print(cols + extra + f" {'B/weight':>9}")
    rows = []
    for in_f, out_f in shapes:
        layers = {
            m: make_layer(in_f, out_f, MAPS[m], args.table_size, args.compression, args.sign, args.seed, device)
            for m in args.maps
        }
        virtual = {
            m: VirtualLinear.from_spec(
                make_spec(in_f, out_f, MAPS[m], args.table_size, args.compression, args.sign, args.seed), in_f, out_f
            ).to(device)
            for m in (args.maps if args.virtual else [])
        }
        dense = nn.Linear(in_f, out_f, device=device)
        for batch in args.batch_sizes:
            x = torch.randn(batch, in_f, generator=g).to(device)
            names = list(layers)
            candidates = [dense, *layers.values()] + ([RefArbLinear(layers[m]) for m in names] if args.ref else [])
            candidates += list(virtual.values())
            t_all = time_steps(candidates, x, args.min_run_time * len(candidates))
            t_dense, t_arb = t_all[0], t_all[1 : 1 + len(names)]
            t_ref = t_all[1 + len(names) : 1 + 2 * len(names)] if args.ref else []
            t_virt = t_all[len(t_all) - len(virtual) :] if virtual else []
            t_uniform = t_arb[names.index("uniform")] if "uniform" in names else None
            for j, m in enumerate(names):
                t = t_arb[j]
                row = {
                    "shape": f"{in_f}x{out_f}",
                    "batch": batch,
                    "map": m,
                    "linear_s": t_dense,
                    "arb_s": t,
                    "ratio_linear": t / t_dense,
                    "ratio_uniform": None if t_uniform is None else t / t_uniform,
                    "index_bytes_per_weight": layers[m].index_bytes / (in_f * out_f),
                }
                line = (
                    f"{row['shape']:>10} {batch:>6} {m:>16} {t_dense * 1e3:10.3f} {t * 1e3:9.3f} "
                    f"{row['ratio_linear']:8.3f} "
                    + (f"{row['ratio_uniform']:9.3f}" if t_uniform is not None else f"{'-':>9}")
                )
                if args.ref:
                    row["ref_s"] = t_ref[j]
                    line += f" {row['ref_s'] * 1e3:8.3f} {row['ref_s'] / t_dense:8.3f}"
                if virtual:
                    row["virtual_s"] = t_virt[j]
                    row["arb_resident_bytes"] = resident_bytes(layers[m])
                    row["virtual_resident_bytes"] = resident_bytes(virtual[m])
                    row["linear_resident_bytes"] = resident_bytes(dense)
                    line += (
                        f" {t_virt[j] * 1e3:8.3f} {t_virt[j] / t_dense:8.3f} {t_virt[j] / t:8.3f}"
                        f" {row['arb_resident_bytes'] / 2**20:8.2f} {row['virtual_resident_bytes'] / 2**20:8.3f}"
                    )
                print(line + f" {row['index_bytes_per_weight']:9.2f}", flush=True)
                rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"header": header, "args": {k: v for k, v in vars(args).items() if k != "shapes"}, "rows": rows},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
