"""Read the weight matrices of a trained dense MLP (or an ArbMLP) from a safetensors or torch file.

Used by ``hashlab cluster`` and the clustering study (:mod:`analysis.clustering`). torch and
safetensors are imported only when a file needs them.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EnvironmentProblem, InputError

__all__ = ["read_weights"]

_CHECKPOINT_FORMAT = "hashlab.train-checkpoint"  # trainers.torch_backend.checkpoint.CHECKPOINT_FORMAT
_ARB_LAYER = re.compile(r"(.*)\.linear\.indices")


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _import(module: str, what: str, fix: str) -> Any:
    """``importlib.import_module(module)``, or :class:`EnvironmentProblem` naming ``what`` needs it and ``fix``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EnvironmentProblem(0, f"reading {what} needs {module.split('.')[0]} ({e}); {fix}") from None


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    st = _import("safetensors.numpy", "a safetensors weights file", "install it with: pip install safetensors")
    try:
        return dict(st.load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InputError(
            f"weights file {path} is not a readable safetensors file of numpy dtypes "
            f"({type(e).__name__}: {str(e)[:200]}); bfloat16 needs a torch state dict"
        ) from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    torch = _import(
        "torch",
        "a torch weights file",
        "install it with: pip install 'hashlab[torch]', or save the weights as safetensors",
    )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise InputError(
            f"weights file {path} is neither safetensors nor a torch file loadable with "
            f"weights_only=True ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == _CHECKPOINT_FORMAT:
        obj = obj.get("model")
    if not isinstance(obj, dict):
        raise InputError(
            f"weights file {path} holds a {type(obj).__name__}, not a state dict (name -> tensor); "
            "save model.state_dict()"
        )
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
    candidates = arb or {
        k: v
        for k, v in tensors.items()
        if (k == "weight" or k.endswith(".weight")) and v.ndim == 2 and v.dtype.kind == "f"
    }
    if layers is None:
        if not candidates:
            raise InputError(
                f"weights file {path} has no 2-D float tensor named *.weight (found: "
                f"{', '.join(list(tensors)[:8]) or 'nothing'}); pass --layers NAME,NAME"
            )
        names = list(candidates)
    else:
        names = layers
        pool = arb or tensors
        missing = [n for n in names if n not in pool]
        if missing:
            raise InputError(f"weights file {path} has no tensor {missing[0]!r}; it has: {', '.join(list(pool)[:12])}")
        candidates = pool
    return names, [candidates[n] for n in names]
