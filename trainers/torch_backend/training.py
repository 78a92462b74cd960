"""Train an ArbMLP from an index file as in the paper, and write a results JSON.

Chang & Lipson 2018, section 4 (the defaults): SGD (learning rate 0.1, momentum 0.9), learning
rate divided by 10 after 4 epochs without a gain in training accuracy, no validation set, test
accuracy reported after training. Other networks and recipes (HashedNets: ReLU, dropout, a
held-out validation set watched by the schedule) are :class:`TrainConfig` fields. :func:`train`
returns a :class:`~trainers.torch_backend.results.TrainResult`; see docs/TRAINING.md for the
results schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from tqdm.auto import tqdm

from hashlab._version import __version__ as hashlab_version
from hashlab.io.atomic import atomic_write_json
from hashlab.io.errors import DeviceUnavailable
from hashlab.io.format import load_index_file
from hashlab.io.paths import check_output_path
from hashlab.maps.indexmap import IndexMap

from .checkpoint import Checkpointer, file_sha256
from .config import TrainConfig
from .data import DATASETS, DeviceData, load_config_data, resolve_data_root, split_validation
from .models import ArbMLP
from .results import (
    RESULTS_SCHEMA,
    RESULTS_VERSION,
    DataInfo,
    DeviceInfo,
    EpochRecord,
    IndexFileInfo,
    LayerSummary,
    ModelInfo,
    TrainResult,
    Versions,
    stop_rule_met,
)

__all__ = [
    "train",
    "fit",
    "TrainResult",
    "resolve_device",
    "make_optimizer",
    "make_scheduler",
    "train_epoch",
    "evaluate",
    "mse_loss",
    "LOSS_FUNCTIONS",
    "RESULTS_SCHEMA",
    "RESULTS_VERSION",
    "PAPER_CONFIG",
]

PAPER_CONFIG = TrainConfig()
"""The default configuration of :func:`train`: the paper's recipe (a frozen dataclass, shared safely)."""


def mse_loss(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error between ``logits`` ``(N, C)`` and the one-hot ``target`` ``(N,)``, summed over classes.

    ``reduction``: ``"mean"`` over samples (the training loss) or ``"sum"``.
    """
    per_sample = (logits - F.one_hot(target, logits.shape[1]).to(logits.dtype)).square().sum(1)  # (N,)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


LOSS_FUNCTIONS: dict[str, Callable[..., Tensor]] = {"cross_entropy": F.cross_entropy, "mse": mse_loss}
"""``TrainConfig.loss`` -> ``f(logits, target, reduction="mean" | "sum")``."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; other names are checked for availability.

    Raises:
        hashlab.io.errors.DeviceUnavailable: (a ValueError, exit code 4) if the named device is not
            available on this machine.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device {name!r} requested but torch.cuda.is_available() is False; use --device cpu or --device auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but MPS is not available; use --device cpu")
    return device


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config.optimizer`` over the model's (deduplicated) parameters.

    ``"sgd"``: ``SGD(lr, momentum, weight_decay)`` (the paper's); ``"adam"``:
    ``Adam(lr, weight_decay)``; ``"adamw"``: ``AdamW(lr, weight_decay)`` (decoupled decay);
    torch's default betas and eps. The plateau schedule (:func:`make_scheduler`) drives ``lr``
    in every case.
    """
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # TrainConfig validates it first


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs without a gain.

    Step it once per epoch with that epoch's ``config.lr_metric``: training accuracy (the
    paper's), validation loss (a gain is a decrease, ``mode="min"``) or validation accuracy.
    torch's counter reduces when the number of bad epochs *exceeds* ``patience``, so
    ``patience = lr_patience - 1``: the ``lr_patience``-th consecutive epoch without a strict
    gain (``threshold=0``, absolute) over the best value so far triggers the reduction, and
    the count restarts.
    """
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min" if config.lr_metric == "val_loss" else "max",
        factor=config.lr_factor,
        patience=config.lr_patience - 1,
        threshold=0.0,
        threshold_mode="abs",
        cooldown=0,
        min_lr=0.0,
    )


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    batch_size: int,
    generator: torch.Generator,
    progress: bool = False,
    desc: str = "",
    loss_fn: Callable[..., Tensor] = F.cross_entropy,
) -> tuple[float, float]:
    """One pass over ``data`` in a random order drawn from ``generator`` (a CPU generator).

    Batches are slices of one permutation; a trailing batch of a single sample is skipped
    (BatchNorm cannot train on it).

    Args:
        loss_fn: ``f(logits, target)`` -> mean loss of the batch (:data:`LOSS_FUNCTIONS`).

    Returns:
        ``(accuracy, loss)``: fraction of correctly classified training samples and mean
        loss, accumulated over the epoch's batches in training mode.
    """
    model.train()
    n = len(data)
    order = torch.randperm(n, generator=generator).to(data.labels.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.labels.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.labels.device)
    seen = 0
    starts = [s for s in range(0, n, batch_size) if min(batch_size, n - s) >= 2]
    for s in tqdm(starts, desc=desc, leave=False, disable=not progress, unit="batch"):
        x, y = data.batch(order[s : s + batch_size])
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            correct += (logits.argmax(1) == y).sum()
            loss_sum += loss.detach().to(torch.float64) * len(y)
        seen += len(y)
    return int(correct) / seen, float(loss_sum) / seen


@torch.no_grad()
def evaluate(
    model: nn.Module, data: DeviceData, batch_size: int, loss_fn: Callable[..., Tensor] = F.cross_entropy
) -> tuple[float, float]:
    """``(accuracy, mean loss)`` of ``model`` in eval mode (BatchNorm running statistics, no dropout).

    ``loss_fn(logits, target, reduction="sum")`` gives the summed loss (:data:`LOSS_FUNCTIONS`).
    """
    model.eval()
    correct, loss_sum = 0, 0.0
    for s in range(0, len(data), batch_size):
        x, y = data.batch(slice(s, s + batch_size))
        logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss_fn(logits, y, reduction="sum"))
    return correct / len(data), loss_sum / len(data)


def _versions() -> Versions:
    return Versions(
        hashlab=hashlab_version,
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        numpy=np.__version__,
        python=platform.python_version(),
    )


def _device_info(device: torch.device) -> DeviceInfo:
    if device.type == "cuda":
        return DeviceInfo(
            type=device.type,
            name=str(device),
            torch_threads=torch.get_num_threads(),
            cuda_name=torch.cuda.get_device_name(device),
        )
    return DeviceInfo(
        type=device.type,
        name=str(device),
        torch_threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
    )


@contextlib.contextmanager
def _deterministic(on: bool, device: torch.device):
    """``torch.use_deterministic_algorithms(on)`` for the block (previous setting restored); on CUDA
    also ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` if unset, which cuBLAS needs for reproducible matmuls."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _fit(
    imap: IndexMap,
    config: TrainConfig,
    device: torch.device,
    root: Path,
    progress: bool,
    checkpointer: Checkpointer | None = None,
) -> tuple[ArbMLP, DataInfo, list[EpochRecord], float, float]:
    """Load the data, build and train the model, evaluate it: the body of :func:`train`."""
    train_data, test_data, data_info = load_config_data(config, root, device)
    train_data, val_data = split_validation(train_data, config.val_fraction, config.val_split, config.seed)
    if val_data is not None:
        data_info.update(
            train_size=len(train_data),
            val_size=len(val_data),
            validation={"fraction": config.val_fraction, "split": config.val_split},
        )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = ArbMLP(imap, device=device, **config.model_options())
    model.set_table_grad_scale(config.table_grad_scale)
    epochs = _optimise(model, train_data, config, device, progress, checkpointer, val_data)
    test_acc, test_loss = evaluate(model, test_data, config.eval_batch_size, LOSS_FUNCTIONS[config.loss])
    return model, DataInfo.from_dict(data_info), epochs, test_acc, test_loss


def _optimise(
    model: nn.Module,
    train_data: DeviceData,
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    checkpointer: Checkpointer | None,
    val_data: DeviceData | None,
) -> list[EpochRecord]:
    """The optimizer, schedule and seeded batch order of ``config``, and its epochs (resumed from ``checkpointer``
    when it holds some): the training of :func:`train` and :func:`fit`."""
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # the global RNG during training is seeded and checkpointed too
        done, epochs = (
            (0, list[EpochRecord]())
            if checkpointer is None
            else checkpointer.resume(model, optimizer, scheduler, shuffle, device)
        )
        _train_epochs(
            model,
            optimizer,
            scheduler,
            train_data,
            config,
            shuffle,
            progress,
            done,
            epochs,
            checkpointer,
            device,
            val_data,
        )
    return epochs


def _train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    train_data: DeviceData,
    config: TrainConfig,
    shuffle: torch.Generator,
    progress: bool,
    done: int,
    epochs: list[EpochRecord],
    checkpointer: Checkpointer | None,
    device: torch.device,
    val_data: DeviceData | None = None,
) -> None:
    """Epochs ``done + 1 .. config.epochs``, appending to ``epochs``; checkpoint after each if asked.

    Ends earlier when the stopping rule is met (:func:`~.results.stop_rule_met`, ``config.stop_after_drops``).

    With ``val_data``, each epoch ends with an evaluation on it (eval mode), recorded as
    ``val_accuracy`` / ``val_loss``; the scheduler steps on ``config.lr_metric``
    (:meth:`EpochRecord.metric`).
    """
    loss_fn = LOSS_FUNCTIONS[config.loss]
    bar = tqdm(
        range(done + 1, config.epochs + 1),
        desc="epochs",
        disable=not progress,
        unit="epoch",
        initial=done,
        total=config.epochs,
    )
    for epoch in bar:
        if stop_rule_met([e.lr for e in epochs], config.stop_after_drops, config.stop_patience):
            break
        te = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        acc, loss = train_epoch(
            model, optimizer, train_data, config.batch_size, shuffle, progress, desc=f"epoch {epoch}", loss_fn=loss_fn
        )
        val_acc, val_loss = (
            (None, None) if val_data is None else evaluate(model, val_data, config.eval_batch_size, loss_fn)
        )
        partial = EpochRecord(
            epoch=epoch,
            train_accuracy=acc,
            train_loss=loss,
            lr=lr,
            wall_time_s=0.0,
            val_accuracy=val_acc,
            val_loss=val_loss,
        )
        scheduler.step(partial.metric(config.lr_metric))
        epochs.append(dataclasses.replace(partial, wall_time_s=time.perf_counter() - te))
        bar.set_postfix(acc=f"{acc:.4f}", loss=f"{loss:.4f}", lr=f"{lr:g}")
        if checkpointer is not None:
            checkpointer.save(epoch, epochs, model, optimizer, scheduler, shuffle, device)
    bar.close()


def fit(
    model: nn.Module,
    train_data: DeviceData,
    config: TrainConfig,
    *,
    val_data: DeviceData | None = None,
    progress: bool = False,
) -> list[EpochRecord]:
    """Train any classifier ``model`` in place with ``config``'s recipe: what :func:`train` does to its ArbMLP.

    The optimizer (:func:`make_optimizer`), the plateau schedule (:func:`make_scheduler`), the stopping rule
    (``config.stop_after_drops``), the loss and the batch size are ``config``'s; the batch order comes from a
    ``torch.Generator`` seeded with ``config.seed``, and the global torch RNG (dropout) is seeded with it inside
    :func:`torch.random.fork_rng`, so the caller's state is restored. ``config.dataset``, the model fields,
    ``deterministic`` and ``num_threads`` are not read: initialise the model (seeded), set the threads and the
    determinism yourself. For a CNN on
    :class:`~.data.DeviceData`, whose images are flat, start the model with ``nn.Unflatten(1, shape)``.

    Args:
        model: a module mapping float32 ``(B, C*H*W)`` to logits ``(B, num_classes)``, on ``train_data``'s device.
        train_data: the training split (:func:`~.data.load_device_data`).
        config: the recipe (``epochs`` is the cap when the stopping rule is on).
        val_data: evaluated after every epoch and recorded (``val_accuracy``, ``val_loss``); needed when
            ``config.lr_metric`` watches it.
        progress: tqdm bars over epochs and batches.

    Returns:
        One :class:`~.results.EpochRecord` per epoch trained (its ``lr`` the rate the epoch trained at).

    Raises:
        ValueError: if ``config.lr_metric`` watches a validation metric and ``val_data`` is ``None``, or
            ``config.table_grad_scale`` is not ``"none"`` (an :class:`ArbMLP`'s option, applied by :func:`train`).
    """
    if config.table_grad_scale != "none":
        raise ValueError(
            f"fit does not scale table gradients (table_grad_scale={config.table_grad_scale!r} is an ArbMLP's "
            "option): train the ArbMLP with train(), or set table_grad_scale='none'"
        )
    if val_data is None and config.lr_metric != "train_accuracy":
        raise ValueError(f"lr_metric {config.lr_metric!r} watches a validation split: pass val_data")
    return _optimise(model, train_data, config, train_data.labels.device, progress, None, val_data)


def check_map_fits(imap: IndexMap, config: TrainConfig, index_path: Path) -> None:
    """Raise ``ValueError`` unless the map's input/output sizes fit ``config.dataset``."""
    spec = DATASETS[config.dataset]
    first, last = imap.layers[0], imap.layers[-1]
    if first.in_features != spec.num_features or last.out_features != spec.num_classes:
        raise ValueError(
            f"index file {index_path} maps {first.in_features} inputs to {last.out_features} outputs, but "
            f"{config.dataset} has {spec.num_features} features ({'x'.join(map(str, spec.shape))}) and "
            f"{spec.num_classes} classes; build a map for it, e.g. `hashlab build --arch {spec.arch_preset} ...`"
        )


def make_result(
    config: TrainConfig,
    index_path: Path,
    imap: IndexMap,
    device_info: DeviceInfo,
    model: ArbMLP,
    data_info: DataInfo,
    epochs: list[EpochRecord],
    test_acc: float,
    test_loss: float,
    wall_time_s: float,
) -> TrainResult:
    """The :class:`TrainResult` of one trained model (schema ``hashlab.train-results`` v1, docs/TRAINING.md)."""
    index_file = IndexFileInfo(
        path=str(index_path),
        spec=imap.spec,
        table_sizes=list(imap.table_sizes),
        layers=[
            LayerSummary(
                name=lay.name,
                in_features=lay.in_features,
                out_features=lay.out_features,
                table=lay.table,
                sign=lay.sign is not None,
                bias_from_table=lay.bias_indices is not None,
                zeros=int((np.asarray(lay.indices) < 0).sum()),
            )
            for lay in imap.layers
        ],
        num_weights=imap.num_weights,
        num_entries=imap.num_entries,
        compression_ratio=imap.compression_ratio,
    )
    return TrainResult(
        config=config,
        versions=_versions(),
        device=device_info,
        index_file=index_file,
        model=ModelInfo(
            parameters=sum(p.numel() for p in model.parameters()),
            table_entries=model.num_entries,
            options=config.model_options(),
        ),
        data=data_info,
        epochs=list(epochs),
        test_accuracy=test_acc,
        test_loss=test_loss,
        wall_time_s=wall_time_s,
    )


def train(
    index_file: str | os.PathLike,
    config: TrainConfig = PAPER_CONFIG,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> TrainResult:
    """Train the :class:`ArbMLP` of ``index_file`` on ``config.dataset`` and report test accuracy.

    The network (:meth:`TrainConfig.model_options`), loss, optimizer, validation split and
    schedule all come from ``config``; its defaults are the paper's.

    The model is initialised under ``torch.manual_seed(config.seed)`` inside
    :func:`torch.random.fork_rng` (the caller's global RNG state is restored afterwards); the
    shuffling uses a separate ``torch.Generator`` seeded with ``config.seed``. On CPU two runs
    with the same config give identical results; on CUDA the table gradient is computed in a
    fixed order too (:class:`~trainers.torch_backend.functional.TableGather`).

    Args:
        index_file: an index file, format version 1, 2 or 3 (``hashlab build``). Only this file is read;
            no hash is recomputed.
        config: the training configuration.
        out: if given, the results JSON (:meth:`TrainResult.to_dict`) is written there atomically.
        progress: show tqdm bars over epochs and batches; ``None`` shows them when stderr is a tty.
        checkpoint: if given, the full training state is written there atomically after every
            epoch, and a run that finds a checkpoint there resumes from it (same config and
            index file required); on CPU the result is identical to an uninterrupted run.
            See :mod:`trainers.torch_backend.checkpoint`.

    Returns:
        The :class:`~trainers.torch_backend.results.TrainResult`; its ``to_dict()`` is the results
        JSON (schema ``hashlab.train-results`` v1, docs/TRAINING.md).

    Raises:
        FileNotFoundError: if ``index_file`` does not exist.
        hashlab.io.format.FormatError: if it is not a valid index file.
        trainers.torch_backend.data.DatasetError: if the dataset is missing or corrupt.
        ValueError: if the map's input/output sizes do not fit the dataset, the device is unavailable,
            or ``val_fraction`` leaves no validation sample or fewer than 2 training samples.
        hashlab.io.errors.UsageError, EnvironmentProblem: if ``out`` or ``checkpoint`` cannot be
            written (checked before any work).
        trainers.torch_backend.checkpoint.CheckpointError: if ``checkpoint`` belongs to another run.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    t0 = time.perf_counter()
    progress = sys.stderr.isatty() if progress is None else progress
    for path, what in ((out, "results output"), (checkpoint, "checkpoint")):
        if path is not None:
            check_output_path(path, what)
    index_path = Path(index_file).resolve()
    imap = load_index_file(index_path, mmap=True, validate=True)
    check_map_fits(imap, config, index_path)
    device = resolve_device(config.device)
    root = resolve_data_root(config.data_root)
    checkpointer = None if checkpoint is None else Checkpointer(checkpoint, config, file_sha256(index_path))
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        with _deterministic(config.deterministic, device):
            device_info = _device_info(device)
            model, data_info, epochs, test_acc, test_loss = _fit(imap, config, device, root, progress, checkpointer)
    finally:
        torch.set_num_threads(threads)

    result = make_result(
        config, index_path, imap, device_info, model, data_info, epochs, test_acc, test_loss, time.perf_counter() - t0
    )
    if out is not None:
        atomic_write_json(out, result.to_dict())
    return result
