"""PyTorch trainer for ArbNets: reads hashlab index files (format v1 and v2), never hashlab's hash generators.

Public API (torch is imported on first use, so ``TrainConfig`` is importable without it)::

    from trainers.torch_backend import ArbLinear, ArbMLP, TrainConfig, arbify
    from trainers.torch_backend.train import train   # (``train`` is also the submodule's name)

``arbify(model, index_map, skip=...)`` turns the ``nn.Linear`` layers of any module into
``ArbLinear`` layers of a map (:mod:`trainers.torch_backend.convert`).
"""
from __future__ import annotations

import importlib
from typing import Any

from .config import ConfigError, TrainConfig

__all__ = ["ArbLinear", "ArbMLP", "TrainConfig", "ConfigError", "DatasetError", "gather_weight", "arbify"]

_LAZY = {"ArbLinear": "layers", "ArbMLP": "models", "DatasetError": "data", "gather_weight": "functional",
         "arbify": "convert"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
