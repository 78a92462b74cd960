"""Typed, validated training configuration (no torch import: the CLI derives its flags from it)."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from hashlab.configs import check_int, dataclass_from_dict

__all__ = ["TrainConfig", "ConfigError", "DATASET_NAMES", "OPTIMIZERS", "TABLE_GRAD_SCALES"]

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw")
TABLE_GRAD_SCALES = ("none", "load", "sqrt_load")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_MAX_SEED = 2**63 - 1


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train an ArbNet on an image-classification dataset (Chang & Lipson 2018, section 4).

    Defaults follow the paper: SGD with learning rate 0.1 and momentum 0.9, learning rate
    divided by 10 after 4 epochs without a gain in *training* accuracy, no validation set.

    Args:
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        data_root: torchvision data root (holding ``MNIST/raw``, ``FashionMNIST/raw`` or
            ``cifar-10-batches-py``). ``None``: the environment variable ``HASHLAB_DATA_ROOT``.
        download: let torchvision download a missing dataset into ``data_root``.
        verify_md5: check CIFAR-10 files against the official md5s (torchvision's check).
            ``False`` reads any files in the official pickle format (own or test data).
        epochs: training epochs, >= 1.
        batch_size: training mini-batch size, >= 2 (BatchNorm needs two samples).
        eval_batch_size: batch size of the test-set evaluation (memory only, not results).
        lr: initial SGD learning rate, > 0.
        momentum: SGD momentum, in [0, 1).
        lr_factor: factor applied to the learning rate on a plateau, in (0, 1).
        lr_patience: number of consecutive epochs without a gain in training accuracy after
            which the learning rate is multiplied by ``lr_factor``, >= 1.
        optimizer: ``"sgd"`` (with ``momentum``; the paper's, default), ``"adam"`` or ``"adamw"``
            (torch's, default betas; ``momentum`` is then unused; Adam usually wants
            ``lr`` about 1e-3). The plateau schedule above applies to all three.
        weight_decay: L2 penalty (``"sgd"``, ``"adam"``) or decoupled decay (``"adamw"``) on
            every parameter (tables, biases, BatchNorm), >= 0. Default 0 (the paper's).
        table_grad_scale: ``"none"`` (the paper's), ``"load"`` or ``"sqrt_load"``: multiply each
            table entry's gradient by ``mean_load / load`` or its square root (load = number of
            non-zeroed weights reading the entry), see
            :meth:`~trainers.torch_backend.models.ArbMLP.set_table_grad_scale`.
        seed: seeds the model initialisation and the shuffling, in [0, 2**63).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        num_threads: CPU threads torch uses during training (restored afterwards); ``None``
            keeps torch's default (one per core). Default 1: on a 2-core CPU the paper's MNIST
            MLP trains only ~1.2x faster with 2 threads on an idle machine, but ~10x slower
            with 2 threads when another process competes for the cores.
        limit_train: if set, train on the first ``limit_train`` training samples only (quick runs).
        deterministic: call ``torch.use_deterministic_algorithms(True)`` during training (and set
            ``CUBLAS_WORKSPACE_CONFIG`` on CUDA); ops without a deterministic kernel then raise.
            See docs/TRAINING.md, "Determinism".
        version: schema version of this dataclass; only 1 exists.

    Raises:
        ConfigError: on any invalid field (a :class:`ValueError`).
    """

    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = "mnist"
    data_root: str | None = None
    download: bool = False
    verify_md5: bool = True
    epochs: int = 20
    batch_size: int = 200
    eval_batch_size: int = 1000
    lr: float = 0.1
    momentum: float = 0.9
    lr_factor: float = 0.1
    lr_patience: int = 4
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    weight_decay: float = 0.0
    table_grad_scale: Literal["none", "load", "sqrt_load"] = "none"
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = 1
    limit_train: int | None = None
    deterministic: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.version != 1:
            raise ConfigError(f"TrainConfig version {self.version} is not supported; this trainer reads version 1")
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root):
            raise ConfigError(f"data_root must be a non-empty path string or None, got {self.data_root!r}")
        for name in ("download", "verify_md5", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_int("epochs", self.epochs, 1, 10**6, "e.g. 5")
        _check_int("batch_size", self.batch_size, 2, 10**7, "BatchNorm needs at least 2 samples per batch")
        _check_int("eval_batch_size", self.eval_batch_size, 1, 10**7, "e.g. 1000")
        _check_int("lr_patience", self.lr_patience, 1, 10**6, "the paper uses 4")
        _check_int("seed", self.seed, 0, _MAX_SEED, "any integer in [0, 2**63)")
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, 1, 4096, "or None for torch's default")
        if self.limit_train is not None:
            _check_int("limit_train", self.limit_train, 2, 10**9, "or None for the whole training set")
        _check_float("lr", self.lr, lambda v: v > 0, "> 0 (the paper uses 0.1)")
        _check_float("momentum", self.momentum, lambda v: 0 <= v < 1, "in [0, 1) (the paper uses 0.9)")
        _check_float("lr_factor", self.lr_factor, lambda v: 0 < v < 1, "in (0, 1) (0.1 divides by 10)")
        self._check_optimizer()
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    def _check_optimizer(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)} "
                              "(sgd is the paper's)")
        _check_float("weight_decay", self.weight_decay, lambda v: v >= 0, ">= 0 (0 = none, the paper's)")
        if self.table_grad_scale not in TABLE_GRAD_SCALES:
            raise ConfigError(f"unknown table_grad_scale {self.table_grad_scale!r}; choose one of "
                              f"{', '.join(TABLE_GRAD_SCALES)} ('none' is the paper's)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (the form stored in results files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; rejects unknown keys with a clear message."""
        return dataclass_from_dict(cls, d, ConfigError)


def _check_int(name: str, value: Any, lo: int, hi: int, hint: str) -> None:
    check_int(name, value, lo, hi, ConfigError, hint)


def _check_float(name: str, value: Any, ok, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{name} must be a finite number {hint}, got {value!r}")
