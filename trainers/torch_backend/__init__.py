"""PyTorch trainer for ArbNets: reads hashlab index files (format versions 1-4), never hashlab's hash generators.

Public API (torch is imported on first use, so ``TrainConfig`` is importable without it)::

    from trainers.torch_backend import ArbLinear, ArbConv2d, ArbEmbedding, ArbMLP, TrainConfig, train, train_group
    from trainers.torch_backend import arbify, strip, save_arbnet, load_arbnet

``train`` and ``train_group`` (:mod:`trainers.torch_backend.training`, :mod:`trainers.torch_backend.group`)
train the ArbMLP of one or several index files; ``fit(model, data, config)`` trains any module (e.g. an arbified
``LeNet5``, :mod:`.cnn`) with the same recipe.

``ArbLinear``, ``ArbConv2d`` and ``ArbEmbedding`` (:mod:`.layers`, :mod:`.conv2d`, :mod:`.embedding`) read their
weights from a shared table through an index map. ``VirtualLinear.from_spec(spec, in_features, out_features)``
(:mod:`.virtual`) stores no map: it recomputes each weight's entry from the spec inside the matmul.
``arbify(model, index_map, skip=...)`` turns the ``nn.Linear``,
``nn.Conv2d`` and ``nn.Embedding`` layers of any module into them, and ``strip(model)`` turns them back into plain
layers holding the virtual weights, for deployment and export (:mod:`trainers.torch_backend.convert`).

``save_arbnet(model, path)`` / ``load_arbnet(path)`` write and read a trained ArbMLP as one small
safetensors file: tables, dense parameters and the map (:mod:`trainers.torch_backend.modelfile`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import ConfigError, TrainConfig

__all__ = [
    "ArbLayer",
    "ArbLinear",
    "VirtualLinear",
    "ArbConv2d",
    "ArbEmbedding",
    "ArbMLP",
    "LeNet5",
    "TrainConfig",
    "ConfigError",
    "DatasetError",
    "gather_weight",
    "arbify",
    "strip",
    "train",
    "fit",
    "train_group",
    "save_arbnet",
    "load_arbnet",
]

_LAZY = {
    "ArbLayer": "layers",
    "ArbLinear": "layers",
    "VirtualLinear": "virtual",
    "ArbConv2d": "conv2d",
    "ArbEmbedding": "embedding",
    "ArbMLP": "models",
    "LeNet5": "cnn",
    "DatasetError": "data",
    "gather_weight": "functional",
    "arbify": "convert",
    "strip": "convert",
    "train": "training",
    "fit": "training",
    "train_group": "group",
    "save_arbnet": "modelfile",
    "load_arbnet": "modelfile",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
