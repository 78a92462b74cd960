"""Training checkpoints: the whole training state at an epoch end, written atomically, resumed exactly.

A checkpoint (``torch.save`` of plain dicts, lists, numbers, strings and tensors; read back with
``torch.load(weights_only=True)``, so no pickled code runs) holds:

* ``format`` ``"hashlab.train-checkpoint"``, ``version`` 1;
* ``config``: the :class:`TrainConfig` as a dict, and ``index_file``: the SHA-256 of the index file;
* ``epoch`` (completed epochs) and ``history`` (the per-epoch results so far);
* ``model``, ``optimizer``, ``scheduler``: their ``state_dict()``;
* ``rng``: the CPU (and CUDA) global RNG states and the shuffle generator's state.

Resuming restores all of it, so on CPU a run killed after any epoch and rerun with the same
command ends bit-identical to an uninterrupted run (docs/TRAINING.md, "Checkpoints").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from hashlab.io.atomic import atomic_open
from hashlab.io.errors import InputError

from .config import TrainConfig
from .results import EpochRecord

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "IGNORED_FIELDS",
    "file_sha256",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "hashlab.train-checkpoint"
CHECKPOINT_VERSION = 1
IGNORED_FIELDS = ("data_root", "download")
"""Config fields that may differ between a checkpoint and the run that resumes it (they do not change results)."""


class CheckpointError(InputError):
    """A checkpoint is unreadable, of another format, or belongs to a different configuration or index file."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 8 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state(shuffle: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state training touches: global CPU, global CUDA (if used), the shuffle generator."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator, device: torch.device) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (see the module docstring) to ``path`` atomically: old or new, never torn."""
    with atomic_open(path, "wb") as f:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, f)


def load_checkpoint(path: str | os.PathLike, config: TrainConfig, index_sha256: str) -> dict[str, Any] | None:
    """Read the checkpoint at ``path`` if it exists and check it belongs to this run.

    Returns:
        The state dict, or ``None`` if ``path`` does not exist (a fresh run).

    Raises:
        CheckpointError: if the file is not a readable checkpoint of this format, or its
            config (apart from :data:`IGNORED_FIELDS`) or index file differ from this run's;
            the message names every differing field with both values.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:200]}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a hashlab training checkpoint; delete it or pass another --checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has version {state.get('version')!r}; this trainer reads version {CHECKPOINT_VERSION}"
        )
    try:  # TrainConfig.from_dict migrates an older checkpoint's config (fields added later: their defaults)
        saved = TrainConfig.from_dict(dict(state.get("config") or {})).to_dict()
    except (ValueError, TypeError) as e:  # ConfigError
        raise CheckpointError(
            f"checkpoint {path} holds a configuration this trainer cannot read ({e}); delete it "
            "to start over, or resume it with the trainer that wrote it"
        ) from None
    now = config.to_dict()
    diff = [
        f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
        for k in sorted(set(saved) | set(now))
        if k not in IGNORED_FIELDS and saved.get(k) != now.get(k)
    ]
    if diff:
        raise CheckpointError(
            f"checkpoint {path} was written with a different configuration ({'; '.join(diff)}); "
            "rerun with the checkpoint's settings, or delete it / pass another --checkpoint"
        )
    if state.get("index_file") != index_sha256:
        raise CheckpointError(
            f"checkpoint {path} was written for another index file (SHA-256 "
            f"{str(state.get('index_file'))[:16]}..., this one {index_sha256[:16]}...); "
            "use the same index file, or delete the checkpoint"
        )
    return state


class Checkpointer:
    """Saves the training state at each epoch end and restores it at the start of a rerun.

    A checkpoint already at ``path`` is read and checked when the object is made, so a
    mismatch fails before any data is loaded.

    Args:
        path: the checkpoint file (``--checkpoint``); its folder is created if missing.
        config: this run's configuration (compared with a saved one).
        index_sha256: :func:`file_sha256` of this run's index file.

    Raises:
        CheckpointError: see :func:`load_checkpoint`.
    """

    def __init__(self, path: str | os.PathLike, config: TrainConfig, index_sha256: str) -> None:
        self.path, self.config, self.index_sha256 = Path(path), config, index_sha256
        self.state = load_checkpoint(self.path, config, index_sha256)

    def resume(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        shuffle: torch.Generator,
        device: torch.device,
    ) -> tuple[int, list[EpochRecord]]:
        """Load the saved state into the objects; return ``(completed epochs, history)`` (``(0, [])`` if none)."""
        state, self.state = self.state, None
        if state is None:
            return 0, []
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], shuffle, device)
            epoch, history = int(state["epoch"]), [EpochRecord.from_dict(e) for e in state["history"]]
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {self.path} does not fit this model ({type(e).__name__}: "
                f"{str(e)[:200]}); delete it to start over"
            ) from None
        return epoch, history

    def save(
        self,
        epoch: int,
        history: list[EpochRecord],
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        shuffle: torch.Generator,
        device: torch.device,
    ) -> None:
        """Write the state after ``epoch`` completed epochs."""
        save_checkpoint(
            self.path,
            {
                "config": self.config.to_dict(),
                "index_file": self.index_sha256,
                "epoch": epoch,
                "history": [e.to_dict() for e in history],
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(shuffle, device),
            },
        )
