"""PyTorch trainer for ArbNets: reads hashlab index files (format versions 1-4), never hashlab's hash generators.

Public API (torch is imported on first use, so ``TrainConfig`` is importable without it)::

    from trainers.torch_backend import ArbLinear, ArbMLP, TrainConfig, arbify, train, train_group
    from trainers.torch_backend import save_arbnet, load_arbnet

``train`` and ``train_group`` (:mod:`trainers.torch_backend.training`, :mod:`trainers.torch_backend.group`)
train the ArbMLP of one or several index files.

``arbify(model, index_map, skip=...)`` turns the ``nn.Linear`` layers of any module into
``ArbLinear`` layers of a map (:mod:`trainers.torch_backend.convert`).

``save_arbnet(model, path)`` / ``load_arbnet(path)`` write and read a trained ArbMLP as one small
safetensors file: tables, dense parameters and the map (:mod:`trainers.torch_backend.modelfile`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ConfigError, TrainConfig

__all__ = [
    "ArbLinear",
    "ArbMLP",
    "TrainConfig",
    "ConfigError",
    "DatasetError",
    "gather_weight",
    "arbify",
    "train",
    "train_group",
    "save_arbnet",
    "load_arbnet",
]

_LAZY = {
    "ArbLinear": "layers",
    "ArbMLP": "models",
    "DatasetError": "data",
    "gather_weight": "functional",
    "arbify": "convert",
    "train": "training",
    "train_group": "group",
    "save_arbnet": "modelfile",
    "load_arbnet": "modelfile",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
