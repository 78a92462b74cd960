"""One training run of the reproduction: its config, its key, and how it is executed.

A :class:`RunConfig` names everything that decides a run's result: the map (hash kind, its
parameter, sparsity, table size, ``hash_seed``) and the training (dataset, ``train_seed``,
epochs, batch size, data root, device, the paper's optimizer settings). Its :attr:`~RunConfig.key`
is a SHA-256 of those fields, so a finished run is found again, and a changed setting is a new
run, never a silently reused one.

:func:`execute_run` builds the map with hashlab, computes its statistics, writes it as an index
file, trains it with ``trainers.torch_backend`` *from that file*, and writes
``OUT/runs/<key>.json`` (the tidy row, the run config and the full training results) atomically.
It is a module-level function of plain arguments, so a process pool and Ray can both call it.
:func:`execute_group` does the same for several runs that differ only in their map
(:func:`group_key`), trained as one batched model (``trainers.torch_backend.group.train_group``):
each record is what :func:`execute_run` writes, up to float rounding of the batched kernels.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashlab.maps.spec import ARCHITECTURES, DEFAULT_TABLE_SIZE, Architecture, HashSpec
from trainers.torch_backend.config import TrainConfig  # no torch import: scripts import libraries, never the reverse

if TYPE_CHECKING:
    from trainers.torch_backend.results import TrainResult

__all__ = [
    "RunConfig",
    "ARCH_OF_DATASET",
    "ROW_COLUMNS",
    "RUN_FIELDS",
    "KEY_DEFAULTS",
    "MAP_FIELDS",
    "MEMBER_FIELDS",
    "execute_run",
    "execute_group",
    "group_key",
    "run_path",
    "git_commit",
]

ARCH_OF_DATASET = {"mnist": "mnist-mlp", "fashion-mnist": "mnist-mlp", "cifar10": "cifar10-mlp"}
"""The paper's MLP per dataset (section 4.3); Fashion-MNIST, the CIFAR-10 stand-in, uses MNIST's."""

ROW_COLUMNS = [
    "dataset",
    "study",
    "arch",
    "kind",
    "alpha",
    "radius",
    "sign",
    "sparsity",
    "table_size",
    "compression",
    "hash_bias",
    "hash_seed",
    "train_seed",
    "recipe",
    "epochs",
    "batch_size",
    "limit_train",
    "optimizer",
    "lr",
    "table_grad_scale",
    "stop_after_drops",
    "test_accuracy",
    "final_train_accuracy",
    "test_loss",
    "lr_drops",
    "epochs_trained",
    "stopped_by_rule",
    "parameters",
    "entropy_nats",
    "entropy_bits",
    "entropy_normalized",
    "max_load",
    "mean_load",
    "compression_ratio",
    "locality_id_median",
    "locality_grid_median",
    "run_key",
    "hashlab_version",
    "git_commit",
    "torch_version",
    "device",
    "wall_time_s",
    "finished_at",
]
"""Columns of ``results.csv``, one row per run."""


RUN_FIELDS = (
    "dataset",
    "study",
    "kind",
    "sparsity",
    "hash_seed",
    "train_seed",
    "epochs",
    "alpha",
    "radius",
    "sign",
    "table_size",
    "batch_size",
    "limit_train",
    "data_root",
    "device",
    "lr",
    "momentum",
    "lr_factor",
    "lr_patience",
    "optimizer",
    "table_grad_scale",
    "arch",
    "compression",
    "hash_bias",
    "recipe",
    "stop_after_drops",
    "stop_patience",
    "verify_md5",
    "val_fraction",
    "val_split",
)
"""The keys of :meth:`RunConfig.to_dict`, in order: the flat form of a run stored in its record."""

KEY_DEFAULTS = {
    "optimizer": "sgd",
    "table_grad_scale": "none",
    "arch": None,
    "compression": None,
    "hash_bias": False,
    "recipe": "paper",
    "stop_after_drops": None,
    "stop_patience": 4,
    "verify_md5": True,
    "val_fraction": None,
    "val_split": None,
}
"""Run fields added after the first records were committed: defaults for older run dicts, the value
a dict without them means. The run dict's counterpart of ``HashSpec.ADDED_FIELDS`` and
``TrainConfig.ADDED_FIELDS`` (a map or training field has the same default here): :meth:`RunConfig.from_dict`
migrates an older dict by filling these in, and :attr:`RunConfig.key` leaves a field out at this
value, so a run that an older dict can express keeps the key of that dict. The run dict has no
``"version"`` key (the key hashes the dict, so adding one would change every committed key); a
new field must be added here, with the default that reproduces the results recorded before it
existed, and a change that no default can express needs a new record layout."""

_SPEC_FIELDS = {
    "kind": "kind",
    "hash_seed": "seed",
    "sparsity": "sparsity",
    "alpha": "alpha",
    "radius": "radius",
    "sign": "sign",
    "table_size": "table_size",
    "compression": "compression",
    "hash_bias": "hash_bias",
}
"""Run field -> :class:`hashlab.HashSpec` field."""
_TRAIN_FIELDS = {
    "dataset": "dataset",
    "train_seed": "seed",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "limit_train": "limit_train",
    "data_root": "data_root",
    "device": "device",
    "lr": "lr",
    "momentum": "momentum",
    "lr_factor": "lr_factor",
    "lr_patience": "lr_patience",
    "optimizer": "optimizer",
    "table_grad_scale": "table_grad_scale",
    "stop_after_drops": "stop_after_drops",
    "stop_patience": "stop_patience",
    "verify_md5": "verify_md5",
}
"""Run field -> :class:`~trainers.torch_backend.config.TrainConfig` field (the rest come from the recipe)."""
_RECIPE_OVERRIDES = ("val_fraction", "val_split")
"""Training fields a run may set over its recipe's; ``None`` in the run dict (and out of the key): the recipe's."""


@functools.cache
def _recipe_default(recipe: str, name: str) -> Any:
    return getattr(TrainConfig.from_recipe(recipe), name)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one run's result (a key of the reproduction's result store).

    A run is a map (:class:`hashlab.HashSpec` over an architecture) trained with a
    :class:`~trainers.torch_backend.config.TrainConfig`. Build one from its flat fields with
    :meth:`from_fields` (or :meth:`from_dict`, the record form); :meth:`to_dict` gives those flat
    fields back (:data:`RUN_FIELDS`):

    - map: ``kind``, ``alpha``, ``radius``, ``sign``, ``sparsity``, ``table_size``,
      ``compression``, ``hash_bias`` as in :class:`hashlab.HashSpec`; ``hash_seed`` is its ``seed``;
      the tables are per layer (``scope="layer"``).
    - training: ``dataset``, ``epochs``, ``batch_size``, ``limit_train``, ``data_root``, ``device``,
      ``lr``, ``momentum``, ``lr_factor``, ``lr_patience``, ``optimizer``, ``table_grad_scale``,
      ``stop_after_drops``, ``stop_patience``, ``verify_md5``, ``val_fraction``, ``val_split`` as in
      ``TrainConfig`` (the last two None: the recipe's; ``epochs`` is the cap under a stopping rule;
      ``verify_md5=False`` reads CIFAR-10 files that are not the official release, such as the rebuilt
      copy in ``../shared/data``); ``train_seed`` is its ``seed``; one torch thread per run.

    Parameters
    ----------
    study : str
        The study this run belongs to.
    spec : hashlab.HashSpec
        The map. ``hash_seed`` seeds it; maps of the same ``train_seed`` and table sizes get
        identical initial tables and batches: the paired design.
    train : trainers.torch_backend.config.TrainConfig
        The training: ``TrainConfig.from_recipe(recipe, ...)`` with the run's training fields and
        ``num_threads=1``; ``train.seed`` (``train_seed``) seeds the table initialisation and the
        mini-batch order.
    recipe : str
        A recipe of ``trainers.torch_backend.config.RECIPES``: the model family, validation split and
        schedule metric; the run's own fields (lr, momentum, schedule, epochs, batch size...) override
        the recipe's. ``"paper"``: Linear-ELU-BN, plateau on training accuracy, no validation set;
        ``"hashednets"``: jfainberg/hashed_nets' ReLU + dropout MLP, LR on the validation loss of a
        held-out 10%.
    arch : str or None
        MLP layer sizes, e.g. ``"784-1000-10"`` (``hashlab.Architecture.parse``); None: the paper's
        MLP of the dataset (:data:`ARCH_OF_DATASET`).

    Raises
    ------
    ValueError
        If ``train`` is not the recipe's config of the run's training fields, or ``spec`` has
        global tables.

    Notes
    -----
    Fields added after the first results were committed (:data:`KEY_DEFAULTS`) enter the key only
    when they differ from their default, so a run planned before they existed keeps its key.
    """

    study: str
    spec: HashSpec
    train: TrainConfig
    recipe: str = "paper"
    arch: str | None = None

    def __post_init__(self) -> None:
        if self.spec.scope != "layer":
            raise ValueError(f"a reproduction run has one table per layer, got scope {self.spec.scope!r}")
        own = {t: getattr(self.train, t) for t in (*_TRAIN_FIELDS.values(), *_RECIPE_OVERRIDES)}
        want = TrainConfig.from_recipe(self.recipe, num_threads=1, **own)
        if self.train != want:
            raise ValueError(
                f"a run's TrainConfig is recipe {self.recipe!r} with the run's training fields and "
                "num_threads=1; build it with RunConfig.from_fields"
            )

    @classmethod
    def from_fields(
        cls,
        *,
        dataset: str,
        study: str,
        kind: str,
        sparsity: float,
        hash_seed: int,
        train_seed: int,
        epochs: int,
        alpha: float | None = None,
        radius: int | None = None,
        sign: bool = False,
        table_size: int | None = None,
        batch_size: int = 200,
        limit_train: int | None = None,
        data_root: str | None = None,
        device: str = "auto",
        lr: float = 0.1,
        momentum: float = 0.9,
        lr_factor: float = 0.1,
        lr_patience: int = 4,
        optimizer: str = "sgd",
        table_grad_scale: str = "none",
        arch: str | None = None,
        compression: str | None = None,
        hash_bias: bool = False,
        recipe: str = "paper",
        stop_after_drops: int | None = None,
        stop_patience: int = 4,
        verify_md5: bool = True,
        val_fraction: float | None = None,
        val_split: str | None = None,
    ) -> RunConfig:
        """The run of these flat fields (:data:`RUN_FIELDS`); ``table_size`` defaults to 1000 without
        ``compression``; ``val_fraction`` / ``val_split`` None: the recipe's (a tuning run holds out a
        validation split the paper's recipe does not).

        Raises
        ------
        hashlab.SpecError, trainers.torch_backend.ConfigError
            On an invalid map or training field (both are ValueErrors).
        """
        flat = dict(locals())
        if compression is None and table_size is None:
            flat["table_size"] = DEFAULT_TABLE_SIZE
        spec = HashSpec(**{h: flat[r] for r, h in _SPEC_FIELDS.items()})
        own = {t: flat[r] for r, t in _TRAIN_FIELDS.items()}
        own.update({k: flat[k] for k in _RECIPE_OVERRIDES if flat[k] is not None})
        train = TrainConfig.from_recipe(recipe, num_threads=1, **own)
        return cls(study=study, spec=spec, train=train, recipe=recipe, arch=arch)

    def to_dict(self) -> dict[str, Any]:
        """The flat fields, in the order of :data:`RUN_FIELDS` (the form stored in records)."""
        flat: dict[str, Any] = {"study": self.study, "arch": self.arch, "recipe": self.recipe}
        flat.update({r: getattr(self.spec, h) for r, h in _SPEC_FIELDS.items()})
        flat.update({r: getattr(self.train, t) for r, t in _TRAIN_FIELDS.items()})
        for k in _RECIPE_OVERRIDES:  # None where the recipe's: the key of every run that does not set them is kept
            v = getattr(self.train, k)
            flat[k] = None if v == _recipe_default(self.recipe, k) else v
        return {k: flat[k] for k in RUN_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; a dict written before the fields of :data:`KEY_DEFAULTS` existed
        gets their defaults.

        Raises
        ------
        ValueError
            On unknown keys (and as :meth:`from_fields`).
        """
        unknown = sorted(set(d) - set(RUN_FIELDS))
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {unknown}; known fields: {list(RUN_FIELDS)}")
        return cls.from_fields(**{**KEY_DEFAULTS, **d})

    def replace(self, **fields: Any) -> RunConfig:
        """This run with some flat fields changed (:data:`RUN_FIELDS`)."""
        return self.from_dict({**self.to_dict(), **fields})

    @property
    def key(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of every field (those of
        :data:`KEY_DEFAULTS` only when they differ from their default)."""
        d = {k: v for k, v in self.to_dict().items() if not (k in KEY_DEFAULTS and v == KEY_DEFAULTS[k])}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def hash_spec(self) -> HashSpec:
        """The map's :class:`hashlab.HashSpec` (``spec``)."""
        return self.spec

    def architecture(self) -> Architecture:
        """The MLP this run trains (``hashlab.Architecture``)."""
        if self.arch is not None:
            return Architecture.parse(self.arch)
        return ARCHITECTURES[ARCH_OF_DATASET[self.train.dataset]]

    def train_config(self) -> TrainConfig:
        """The run's :class:`~trainers.torch_backend.config.TrainConfig` (``train``)."""
        return self.train


MAP_FIELDS = ("study", "kind", "alpha", "radius", "sign", "sparsity", "hash_seed")
MEMBER_FIELDS = (*MAP_FIELDS, "table_grad_scale")
"""What the members of one group may differ in: the map, and the load normalisation of its table's gradient."""
"""Run fields that change only the map (and the study label), not the network or its training."""


def group_key(run: RunConfig) -> str | None:
    """Runs with equal keys can train as one group; ``None`` for a run that must train alone.

    Equal keys mean equal everything but :data:`MEMBER_FIELDS` (the map and ``table_grad_scale``): the
    same dataset, architecture, table budget, training seed and recipe, so the maps have the same layer
    and table sizes and the members see the same mini-batches. ``train_group`` trains the paper's recipe with SGD
    and no table-read biases only: other runs get ``None``.
    """
    if run.train.optimizer != "sgd" or run.recipe != "paper" or run.spec.hash_bias or run.train.val_fraction:
        return None
    d = {k: v for k, v in run.to_dict().items() if k not in MEMBER_FIELDS}
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def run_path(out: str | Path, run: RunConfig) -> Path:
    """Where the finished run's record lives: ``OUT/runs/<key>.json``."""
    return Path(out) / "runs" / f"{run.key}.json"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (``+dirty`` when tracked files differ), or ``"unknown"`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def map_statistics(imap) -> dict[str, Any]:
    """The map columns of a row: per-table entropy (paper eq. 7, mean over the layers' tables), loads,
    compression and collision locality (median distance to the nearest co-bucketed weight)."""
    from hashlab.stats import map_report

    rep = map_report(imap, locality=True, degeneracy=False)  # the report computes degeneracy where it uses it
    tables = rep.tables
    h = sum(t.entropy_nats for t in tables) / len(tables)
    return {
        "entropy_nats": h,
        "entropy_bits": h / math.log(2),
        "entropy_normalized": sum(t.entropy_normalized for t in tables) / len(tables),
        "max_load": max(int(t.max_load) for t in tables),
        "mean_load": sum(t.mean_load for t in tables) / len(tables),
        "compression_ratio": rep.total.compression_ratio,
        "locality_id_median": _nan_to_none(rep.locality.id.quantile(0.5)),
        "locality_grid_median": _nan_to_none(rep.locality.grid.quantile(0.5)),
    }


def execute_run(run: RunConfig | dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Build, analyze, save and train one run; write its record atomically; return its row.

    Parameters
    ----------
    run : RunConfig or its dict
    out : path-like
        The reproduction's output folder; the record goes to ``OUT/runs/<key>.json``.

    Returns
    -------
    dict
        The row (keys :data:`ROW_COLUMNS`).

    Raises
    ------
    hashlab.SpecError, trainers.torch_backend.ConfigError, DatasetError
        On an invalid run config or missing data (before training starts).
    """
    from hashlab import build_map, save_index_file
    from trainers.torch_backend.training import train

    run = RunConfig.from_dict(run) if isinstance(run, dict) else run
    t0 = time.perf_counter()
    spec, tcfg = run.hash_spec(), run.train_config()
    imap = build_map(spec, run.architecture())
    stats = map_statistics(imap)
    with tempfile.TemporaryDirectory(prefix="hashlab-run-") as tmp:
        result = train(save_index_file(imap, Path(tmp) / "map.safetensors"), tcfg, progress=False)
    return _write_record(run, out, result, stats, time.perf_counter() - t0)


def execute_group(runs: Sequence[RunConfig | dict[str, Any]], out: str | Path) -> list[dict[str, Any]]:
    """:func:`execute_run` for runs of one :func:`group_key`, trained as one batched model.

    Builds and analyzes every map, writes each as an index file, trains them with
    ``train_group`` (one batched ArbMLP, each member as if alone, up to float rounding), and
    writes each run's record atomically as it is known; a record's ``group`` field lists the
    runs it was trained with. ``wall_time_s`` is the group's wall time divided by its size.

    Returns
    -------
    list of dict
        The rows, in the order of ``runs``.

    Raises
    ------
    ValueError
        If the runs do not share one group key (or one of them has none).
    hashlab.SpecError, trainers.torch_backend.ConfigError, DatasetError
        As :func:`execute_run`, before training starts.
    """
    from hashlab import build_map, save_index_file
    from trainers.torch_backend.group import train_group

    configs = [RunConfig.from_dict(r) if isinstance(r, dict) else r for r in runs]
    keys = {group_key(r) for r in configs}
    if not configs or len(keys) != 1 or None in keys:
        raise ValueError(
            "execute_group needs one or more runs of one group key (same training, maps aside); "
            "run the others with execute_run"
        )
    t0 = time.perf_counter()
    maps = [build_map(r.hash_spec(), r.architecture()) for r in configs]
    stats = [map_statistics(m) for m in maps]
    with tempfile.TemporaryDirectory(prefix="hashlab-group-") as tmp:
        files = [save_index_file(m, Path(tmp) / f"map{i}.safetensors") for i, m in enumerate(maps)]
        results = train_group(
            files,
            configs[0].train_config(),
            progress=False,
            table_grad_scales=[r.train_config().table_grad_scale for r in configs],
        )
    wall = (time.perf_counter() - t0) / len(configs)
    group = [r.key for r in configs]
    return [_write_record(r, out, res, st, wall, group=group) for r, res, st in zip(configs, results, stats)]


def _write_record(
    run: RunConfig,
    out: str | Path,
    result: TrainResult,
    stats: dict[str, Any],
    wall: float,
    group: list[str] | None = None,
) -> dict[str, Any]:
    """The run's row; writes ``OUT/runs/<key>.json`` (row, run, training results[, group]) atomically."""
    from hashlab.io.atomic import atomic_write_json

    row = {
        **{k: v for k, v in run.to_dict().items() if k in ROW_COLUMNS},
        "test_accuracy": result.test_accuracy,
        "final_train_accuracy": result.final_epoch.train_accuracy,
        "test_loss": result.test_loss,
        "lr_drops": result.lr_drops,
        "epochs_trained": len(result.epochs),
        "stopped_by_rule": result.stopped_by_rule,
        "parameters": result.model.parameters,
        **stats,
        "run_key": run.key,
        "hashlab_version": result.versions.hashlab,
        "git_commit": git_commit(),
        "torch_version": result.versions.torch,
        "device": result.device.label,
        "wall_time_s": wall,
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    record: dict[str, Any] = {"row": row, "run": run.to_dict(), "results": result.to_dict()}
    if group is not None:
        record["group"] = group
    atomic_write_json(run_path(out, run), record)
    return row
