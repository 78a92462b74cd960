"""``hashlab cluster``: an index map learned from trained weights (k-means weight sharing, Deep Compression).

Reads the Linear weight matrices of a trained dense MLP from a safetensors file or a torch state
dict, clusters them with :func:`hashlab.maps.cluster.cluster_weights` and writes a format-v2
index file whose ``initial_tables`` hold the cluster centres, so ``hashlab train`` starts from
them. torch and safetensors are imported only when a file needs them.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from ..io.errors import EnvironmentProblem, InputError, UsageError
from ..io.format import save_index_file
from ..io.paths import check_input_file, check_output_path
from ..maps.cluster import INITS, WeightsError, check_cluster_params, cluster_weights, quantization_report
from ..maps.spec import SCOPES

__all__ = ["register", "run", "read_weights"]

_CHECKPOINT_FORMAT = "hashlab.train-checkpoint"  # trainers.torch_backend.checkpoint.CHECKPOINT_FORMAT
_ARB_LAYER = re.compile(r"(.*)\.linear\.indices")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster", help="cluster a trained MLP's weights into shared tables (Deep Compression) -> index file",
        description="Cluster the Linear weights of a trained dense MLP into --table-size shared values with "
                    "1-D k-means (Han et al. 2016, Deep Compression, section 3) and write a format-v2 index "
                    "file whose initial tables hold the cluster centres: `hashlab train` then fine-tunes the "
                    "shared values from there. WEIGHTS: a safetensors file or a torch state dict / "
                    "`hashlab train --checkpoint` file (docs/CLI.md, 'hashlab cluster').")
    p.add_argument("weights", metavar="WEIGHTS",
                   help="safetensors file or torch state dict: its 2-D float tensors named *.weight, in file "
                        "order, are the Linear layers; an ArbMLP state dict or training checkpoint gives each "
                        "layer's virtual weight sign * table[indices]")
    p.add_argument("--table-size", type=int, required=True, metavar="N", help="entries per table (cluster count)")
    p.add_argument("--scope", choices=SCOPES, default="layer",
                   help="one table per layer, or one table for the whole network (default: layer)")
    p.add_argument("--init", choices=INITS, default="linear",
                   help="k-means start: linear (evenly spaced min..max; Deep Compression's best), density "
                        "(quantiles), random (sampled weights) (default: linear)")
    p.add_argument("--seed", type=int, default=0, help="seed of --init random, in [0, 2**63) (default: 0)")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations (default: 20)")
    p.add_argument("--layers", default=None, metavar="NAME,NAME",
                   help="comma-separated tensor names to use, in forward order (default: every 2-D float "
                        "*.weight tensor in file order)")
    p.add_argument("-o", "--output", required=True, help="path of the index file to write")
    p.set_defaults(func=run)


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError as e:
        raise EnvironmentProblem(0, f"reading a safetensors weights file needs the safetensors package ({e}); "
                                    "install it with: pip install safetensors") from None
    try:
        return dict(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InputError(f"weights file {path} is not a readable safetensors file of numpy dtypes "
                         f"({type(e).__name__}: {str(e)[:200]}); bfloat16 needs a torch state dict") from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise EnvironmentProblem(0, f"reading a torch weights file needs torch ({e}); install it with: "
                                    "pip install 'hashlab[torch]', or save the weights as safetensors") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise InputError(f"weights file {path} is neither safetensors nor a torch file loadable with "
                         f"weights_only=True ({type(e).__name__}: {str(e)[:200]})") from None
    if isinstance(obj, dict) and obj.get("format") == _CHECKPOINT_FORMAT:
        obj = obj.get("model")
    if not isinstance(obj, dict):
        raise InputError(f"weights file {path} holds a {type(obj).__name__}, not a state dict (name -> tensor); "
                         "save model.state_dict()")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            v = v.detach()
            out[str(k)] = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
    return out


def _arb_weights(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ArbMLP state dict: each layer's virtual weight ``sign * table[indices]`` (``-1`` = 0), keyed ``P.weight``."""
    out = {}
    for key, idx in tensors.items():
        m = _ARB_LAYER.fullmatch(key)
        if m is None:
            continue
        table = tensors.get(f"{m[1]}.linear.table")
        if table is None or table.ndim != 1 or idx.ndim != 2:
            raise InputError(f"{key}: an ArbMLP layer needs a 1-D {m[1]}.linear.table and 2-D indices")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -1 or idx.max() >= table.size):
            raise InputError(f"{key}: indices outside [-1, {table.size})")
        w = np.where(idx >= 0, table[np.maximum(idx, 0)], 0).astype(table.dtype)
        sign = tensors.get(f"{m[1]}.linear.sign")
        out[f"{m[1]}.weight"] = w * sign if sign is not None else w
    return out


def read_weights(path: str | Path, layers: list[str] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The Linear weight matrices of a weights file, in forward order.

    Without ``layers``: every 2-D float tensor whose name ends in ``.weight`` (or is ``weight``), in
    the file's order (a torch ``state_dict`` lists modules in registration order, i.e. forward
    order for an ``nn.Sequential`` MLP; safetensors files are read in their header's order,
    which ``safetensors.torch.save_file`` sorts by name: pass ``layers`` if names do not sort in
    forward order, e.g. ``fc10`` before ``fc2``). An ArbMLP state dict or a ``hashlab train
    --checkpoint`` file gives each layer's virtual weight ``sign * table[indices]``, named
    ``blocks.K.weight``.

    Raises:
        InputError: unreadable file, no matching tensor, or an unknown / unsuitable name in ``layers``.
        EnvironmentProblem: safetensors or torch is needed but missing.
    """
    path = Path(path)
    tensors = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
    arb = _arb_weights(tensors)
    candidates = arb or {k: v for k, v in tensors.items()
                         if (k == "weight" or k.endswith(".weight")) and v.ndim == 2 and v.dtype.kind == "f"}
    if layers is None:
        if not candidates:
            raise InputError(f"weights file {path} has no 2-D float tensor named *.weight (found: "
                             f"{', '.join(list(tensors)[:8]) or 'nothing'}); pass --layers NAME,NAME")
        names = list(candidates)
    else:
        names = layers
        pool = arb or tensors
        missing = [n for n in names if n not in pool]
        if missing:
            raise InputError(f"weights file {path} has no tensor {missing[0]!r}; it has: {', '.join(list(pool)[:12])}")
        candidates = pool
    return names, [candidates[n] for n in names]


def run(args: argparse.Namespace) -> int:
    check_cluster_params(args.table_size, args.scope, args.init, args.seed, args.iters)
    check_output_path(args.output, "--output")
    path = check_input_file(args.weights, "weights file", "train a dense model first, e.g. `hashlab build --kind "
                            "identity` then `hashlab train MAP --checkpoint dense.pt`")
    layers = None
    if args.layers is not None:
        layers = [s.strip() for s in args.layers.split(",") if s.strip()]
        if not layers:
            raise UsageError("--layers is empty; give comma-separated tensor names such as fc1.weight,fc2.weight")
    names, mats = read_weights(path, layers)
    try:
        imap = cluster_weights(mats, args.table_size, scope=args.scope, init=args.init, seed=args.seed,
                               iters=args.iters, source=f"{path.name} ({', '.join(names)})")
    except WeightsError as e:  # a property of the input file, not of the command line
        raise InputError(f"weights file {path}: {e} (tensors: {', '.join(names)})") from None
    out = save_index_file(imap, args.output)
    print(f"clustered {len(names)} layers of {path.name} into {len(imap.table_sizes)} table(s) of "
          f"{args.table_size} ({args.scope} scope, {args.init} init): {imap.num_weights:,} weights, compression "
          f"ratio {imap.compression_ratio:.1f}")
    print(f"{'layer':<24} {'shape':>11} {'distinct':>9} {'used':>6} {'max |err|':>10} {'mean |err|':>10}")
    for name, r in zip(names, quantization_report(mats, imap)):
        shape = "x".join(map(str, r["shape"]))
        print(f"{name:<24} {shape:>11} {r['distinct']:>9,} {r['entries_used']:>6} {r['max_abs_error']:>10.3g} "
              f"{r['mean_abs_error']:>10.3g}")
    print(f"wrote {out}")
    return 0
