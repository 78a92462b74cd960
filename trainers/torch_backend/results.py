"""Typed results of a training run (schema ``hashlab.train-results`` v1, docs/TRAINING.md).

:func:`~trainers.torch_backend.training.train` returns a :class:`TrainResult` and
:func:`~trainers.torch_backend.group.train_group` a list of them; :meth:`TrainResult.to_dict`
is the results JSON, key for key and in the same order as the dict the trainer wrote before the
results were typed, and :meth:`TrainResult.from_dict` reads such a dict back. No torch import:
analysis code can read results files without it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import TrainConfig

__all__ = [
    "TrainResult",
    "EpochRecord",
    "Versions",
    "DeviceInfo",
    "DataInfo",
    "LayerSummary",
    "IndexFileInfo",
    "ModelInfo",
    "RESULTS_SCHEMA",
    "RESULTS_VERSION",
    "stop_rule_met",
]

RESULTS_SCHEMA = "hashlab.train-results"
RESULTS_VERSION = 1

_R = TypeVar("_R", bound="_Record")


def stop_rule_met(lrs: list[float], after_drops: int | None, patience: int) -> bool:
    """Whether training ends now under :attr:`TrainConfig.stop_after_drops <.config.TrainConfig>`.

    A drop is an epoch whose learning rate is below the previous epoch's. The rule is met once
    ``patience`` epochs have run since the ``after_drops``-th drop (that epoch included), e.g.
    ``after_drops=2, patience=4``: four epochs from the second drop on (a third drop may fall among them).

    Args:
        lrs: the learning rate of each epoch trained so far, in order.
        after_drops: the drop that starts the count; ``None``: never met (train every epoch).
        patience: epochs to run from that drop on, >= 1.

    Returns:
        ``True`` when no further epoch should run.
    """
    if after_drops is None:
        return False
    drops = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]]
    return len(drops) >= after_drops and len(lrs) - drops[after_drops - 1] >= patience


class _Record:
    """A part of the results: ``to_dict`` is its fields (a part with optional keys overrides it),
    ``from_dict`` its inverse."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls: type[_R], d: dict[str, Any]) -> _R:
        return cls(**d)


@dataclass(frozen=True)
class EpochRecord(_Record):
    """One training epoch.

    Args:
        epoch: 1-based epoch number.
        train_accuracy, train_loss: accumulated over the epoch's batches in training mode.
        lr: learning rate during the epoch (before the schedule's step at its end).
        wall_time_s: seconds the epoch took (a group's epoch time for :func:`train_group`).
        val_accuracy, val_loss: on the held-out validation set (eval mode); ``None`` without one,
            and then absent from :meth:`to_dict`.
    """

    epoch: int
    train_accuracy: float
    train_loss: float
    lr: float
    wall_time_s: float
    val_accuracy: float | None = None
    val_loss: float | None = None

    def metric(self, name: str) -> float:
        """The value of ``TrainConfig.lr_metric`` ``name`` (``"train_accuracy"``, ``"val_loss"``, ...)."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"epoch {self.epoch} has no {name} (no validation set)")
        return value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "epoch": self.epoch,
            "train_accuracy": self.train_accuracy,
            "train_loss": self.train_loss,
            "lr": self.lr,
        }
        if self.val_accuracy is not None or self.val_loss is not None:
            d["val_accuracy"], d["val_loss"] = self.val_accuracy, self.val_loss
        d["wall_time_s"] = self.wall_time_s
        return d


@dataclass(frozen=True)
class Versions(_Record):
    """Versions of the software that trained the model."""

    hashlab: str
    torch: str
    torchvision: str
    numpy: str
    python: str


@dataclass(frozen=True)
class DeviceInfo:
    """The device that trained the model.

    Args:
        type: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        name: the torch device, e.g. ``"cuda:0"``.
        torch_threads: ``torch.get_num_threads()`` during training.
        cuda_name: the GPU's name (CUDA only).
        cpu, cpu_count: the processor and ``os.cpu_count()`` (other devices only).
    """

    type: str
    name: str
    torch_threads: int
    cuda_name: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "name": self.name, "torch_threads": self.torch_threads}
        if self.type == "cuda":
            d["cuda_name"] = self.cuda_name
        else:
            d["cpu"], d["cpu_count"] = self.cpu, self.cpu_count
        return d

    @property
    def label(self) -> str:
        """The GPU's name on CUDA, else the torch device name."""
        return self.cuda_name or self.name


@dataclass(frozen=True)
class DataInfo(_Record):
    """The dataset as trained on (``load_device_data``, ``split_validation``).

    Args:
        dataset, root: dataset name and torchvision data root.
        shape, num_classes: image shape ``(C, H, W)`` and number of classes.
        train_size, test_size: samples trained and tested on (after ``limit_train`` and the
            validation split).
        mean, std: per-channel normalisation statistics of the whole training split.
        normalisation: how pixels were normalised, in words.
        warning: a note when the statistics look unlike the official dataset's, else ``None``.
        val_size, validation: size of the held-out validation set and ``{"fraction", "split"}``;
            ``None`` without one, and then absent from :meth:`to_dict`.
    """

    dataset: str
    root: str
    shape: list[int]
    num_classes: int
    train_size: int
    test_size: int
    mean: list[float]
    std: list[float]
    normalisation: str
    warning: str | None
    val_size: int | None = None
    validation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.val_size is None and self.validation is None:
            del d["val_size"], d["validation"]
        return d


@dataclass(frozen=True)
class LayerSummary(_Record):
    """One layer of the index file: sizes, table, whether it has a sign hash, a table-read bias, zeros."""

    name: str
    in_features: int
    out_features: int
    table: int
    sign: bool
    bias_from_table: bool
    zeros: int


@dataclass(frozen=True)
class IndexFileInfo:
    """The index file trained: its path, the spec in its header and a summary of its map."""

    path: str
    spec: dict[str, Any] | None
    table_sizes: list[int]
    layers: list[LayerSummary]
    num_weights: int
    num_entries: int
    compression_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "spec": self.spec,
            "table_sizes": list(self.table_sizes),
            "layers": [lay.to_dict() for lay in self.layers],
            "num_weights": self.num_weights,
            "num_entries": self.num_entries,
            "compression_ratio": self.compression_ratio,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexFileInfo:
        return cls(**{**d, "layers": [LayerSummary(**lay) for lay in d["layers"]]})


@dataclass(frozen=True)
class ModelInfo:
    """The trained network: trainable parameters, table entries and the resolved network options."""

    parameters: int
    table_entries: int
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "table_entries": self.table_entries, "options": dict(self.options)}


@dataclass(frozen=True)
class TrainResult:
    """What :func:`~trainers.torch_backend.training.train` reports about one trained model.

    Args:
        config: the training configuration.
        versions: software versions.
        device: the device it trained on.
        index_file: the index file it was built from.
        model: sizes and network options of the model.
        data: the dataset as trained on.
        epochs: one record per epoch, in order.
        test_accuracy, test_loss: on the test split after training (eval mode).
        wall_time_s: seconds from the call to the end of training and evaluation (a group's
            whole time for :func:`~trainers.torch_backend.group.train_group`).

    :meth:`to_dict` is the results JSON (schema :data:`RESULTS_SCHEMA` v1, docs/TRAINING.md).
    """

    config: TrainConfig
    versions: Versions
    device: DeviceInfo
    index_file: IndexFileInfo
    model: ModelInfo
    data: DataInfo
    epochs: list[EpochRecord]
    test_accuracy: float
    test_loss: float
    wall_time_s: float

    @property
    def seed(self) -> int:
        """``config.seed``."""
        return self.config.seed

    @property
    def final_epoch(self) -> EpochRecord:
        """The last epoch's record."""
        return self.epochs[-1]

    @property
    def lr_drops(self) -> int:
        """How many times the learning rate dropped from one epoch to the next."""
        return sum(1 for a, b in zip(self.epochs, self.epochs[1:]) if b.lr < a.lr)

    @property
    def stopped_by_rule(self) -> bool:
        """Whether the stopping rule (``config.stop_after_drops``) ended training, rather than the
        ``config.epochs`` cap (both when the rule is met in the last allowed epoch)."""
        return stop_rule_met([e.lr for e in self.epochs], self.config.stop_after_drops, self.config.stop_patience)

    def to_dict(self) -> dict[str, Any]:
        """The results JSON-ready dict (the form written by ``train(..., out=...)``)."""
        return {
            "schema": RESULTS_SCHEMA,
            "schema_version": RESULTS_VERSION,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "versions": self.versions.to_dict(),
            "device": self.device.to_dict(),
            "index_file": self.index_file.to_dict(),
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "epochs": [e.to_dict() for e in self.epochs],
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "wall_time_s": self.wall_time_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        """Inverse of :meth:`to_dict` (a results JSON read back).

        Raises:
            ValueError: if ``d`` is not a results dict of schema ``hashlab.train-results`` v1.
        """
        if d.get("schema") != RESULTS_SCHEMA or d.get("schema_version") != RESULTS_VERSION:
            raise ValueError(
                f"not a {RESULTS_SCHEMA} v{RESULTS_VERSION} dict (schema {d.get('schema')!r}, "
                f"version {d.get('schema_version')!r})"
            )
        return cls(
            config=TrainConfig.from_dict(d["config"]),
            versions=Versions(**d["versions"]),
            device=DeviceInfo(**d["device"]),
            index_file=IndexFileInfo.from_dict(d["index_file"]),
            model=ModelInfo(**d["model"]),
            data=DataInfo.from_dict(d["data"]),
            epochs=[EpochRecord.from_dict(e) for e in d["epochs"]],
            test_accuracy=d["test_accuracy"],
            test_loss=d["test_loss"],
            wall_time_s=d["wall_time_s"],
        )
