"""The compression study: a hashed LeNet-5 on Fashion-MNIST against the other ways to make it that small.

For each compression ratio of the profile (``analysis/studies/compression.toml``) and each training seed it
trains (a) LeNet-5 hashed from scratch (xxhash + sign, HashedNets), (b) the trained dense LeNet-5 arbified with
the same map and fine-tuned, (c) the trained dense LeNet-5 clustered by k-means into the same table sizes and
fine-tuned, and (d) a LeNet-5 narrowed to the same number of stored values, besides the dense network itself;
it records each model's test accuracy and its size on disk as it ships (and gzipped). The design, its recipe and
what it can and cannot conclude are written in the study file.

Every finished run is a JSON record under ``OUT/runs/`` and its model file under ``OUT/models/``, written
atomically as it ends, so a killed study resumes where it stopped (the same command again). Then
:mod:`analysis.report_compression` writes ``results.csv``, ``summary.csv``, ``figures/`` and ``REPORT.md``.

    python -m analysis.compression_study --profile compression --data-root ../shared/data  # ~2 core-hours
    python -m analysis.compression_study --profile smoke --out /tmp/c --data-root ../shared/data  # a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import multiprocessing
import os
import platform
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from hashlab import HashSpec
from hashlab._version import __version__
from hashlab.io.atomic import atomic_write_json
from hashlab.io.errors import InputError

from .engines import default_workers, die_with_parent
from .runs import git_commit
from .study import STUDY_DIR, StudyError

__all__ = [
    "STUDY_FILE",
    "DEFAULT_OUT",
    "METHODS",
    "CompressionRun",
    "CompressionDesign",
    "load_design",
    "narrow_widths",
    "diverged_at",
    "execute",
    "run_study",
    "check_out",
    "done_ids",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
STUDY_FILE = STUDY_DIR / "compression.toml"
DEFAULT_OUT = REPO / "analysis" / "results" / "compression"
METHODS = ("dense", "hashed", "arbified", "clustered", "narrow")
"""The five methods; ``arbified`` and ``clustered`` start from the ``dense`` model of their seed."""
FINE_TUNED = ("arbified", "clustered")
HASH_SEED_OFFSET = 1000
"""Replicate ``r`` hashes with hash seed ``1000 + r`` (training seed ``r``), as the reproduction's profiles do."""
_RECIPE_KEYS = {
    "optimizer",
    "lr",
    "momentum",
    "batch_size",
    "val_fraction",
    "val_split",
    "lr_metric",
    "lr_patience",
    "lr_factor",
    "stop_after_drops",
    "stop_patience",
    "epochs",
}
_PROFILE_KEYS = {"description", "ratios", "train_seeds", "epochs", "finetune_epochs", "limit_train"}


@dataclass(frozen=True)
class CompressionRun:
    """One training run of the study.

    Attributes:
        method: one of :data:`METHODS`.
        ratio: the compression ratio (``"1/16"``), ``None`` for ``dense``.
        seed: the training seed (initialisation, validation split, batch order); the hash seed is ``1000 + seed``.
    """

    method: str
    ratio: str | None
    seed: int

    @property
    def run_id(self) -> str:
        """File stem of the run's record and model: ``dense-s0``, ``hashed-1_16-s0``."""
        if self.ratio is None:
            return f"{self.method}-s{self.seed}"
        return f"{self.method}-{self.ratio.replace('/', '_')}-s{self.seed}"

    @property
    def hash_seed(self) -> int:
        return HASH_SEED_OFFSET + self.seed

    @property
    def parent(self) -> CompressionRun | None:
        """The dense run a fine-tuned method starts from, else ``None``."""
        return CompressionRun("dense", None, self.seed) if self.method in FINE_TUNED else None


@dataclass(frozen=True)
class CompressionDesign:
    """The study file, checked: dataset, the hash of (a) and (b), the two recipes and the profiles."""

    dataset: str
    hash: dict[str, Any]
    train: dict[str, Any]
    finetune: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    retry_lr_factor: float | None = None
    """A run whose loss or parameters become non-finite is retrained once at this factor times its LR (None: not)."""

    def runs(self, profile: str) -> list[CompressionRun]:
        """The profile's runs, seed by seed: dense, then per ratio hashed, narrow, arbified, clustered."""
        prof = self.profile(profile)
        out: list[CompressionRun] = []
        for seed in prof["train_seeds"]:
            out.append(CompressionRun("dense", None, seed))
            for ratio in prof["ratios"]:
                out += [CompressionRun(m, ratio, seed) for m in ("hashed", "narrow", "arbified", "clustered")]
        return out

    def profile(self, name: str) -> dict[str, Any]:
        if name not in self.profiles:
            raise StudyError(f"unknown profile {name!r} of {STUDY_FILE.name}; choose one of {', '.join(self.profiles)}")
        return self.profiles[name]

    def config(self, run: CompressionRun, profile: str, data_root: str | None = None) -> Any:
        """The :class:`~trainers.torch_backend.TrainConfig` of ``run`` under ``profile`` (imports torch's side)."""
        from trainers.torch_backend import TrainConfig

        prof = self.profile(profile)
        recipe = dict(self.finetune if run.method in FINE_TUNED else self.train)
        cap = prof.get("finetune_epochs" if run.method in FINE_TUNED else "epochs")
        if cap is not None:
            recipe["epochs"] = cap
        return TrainConfig(
            dataset=self.dataset,  # type: ignore[arg-type]
            data_root=data_root,
            seed=run.seed,
            device="cpu",
            num_threads=1,
            limit_train=prof.get("limit_train"),
            **recipe,
        )

    def spec(self, run: CompressionRun) -> HashSpec:
        """The hashed map's spec of a run with a ratio (the same for hashed, arbified and, by size, clustered)."""
        if run.ratio is None:
            raise ValueError("a dense run has no map")
        return HashSpec(compression=run.ratio, seed=run.hash_seed, **self.hash)


def _keys(d: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise StudyError(f"{STUDY_FILE.name}: [{where}] must be a table")
    extra = set(d) - allowed
    if extra:
        raise StudyError(f"{STUDY_FILE.name}: [{where}] has unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")
    return dict(d)


def load_design(path: str | os.PathLike = STUDY_FILE) -> CompressionDesign:
    """Read and check the study file.

    Raises:
        StudyError: naming the field and the fix, on an unknown key, a bad ratio, seed list or recipe.
    """
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    if raw.get("version") != 1 or raw.get("name") != "compression":
        raise StudyError(f"{path}: not a version-1 compression study (version = 1, name = 'compression')")
    train = _keys(raw.get("train"), _RECIPE_KEYS, "train")
    finetune = _keys(raw.get("finetune"), _RECIPE_KEYS, "finetune")
    profiles = {}
    for name, prof in dict(raw.get("profiles", {})).items():
        prof = _keys(prof, _PROFILE_KEYS, f"profiles.{name}")
        for r in prof.get("ratios", []):
            try:
                ok = 0 < Fraction(r) <= 1 and Fraction(r).numerator == 1
            except (ValueError, ZeroDivisionError, TypeError):
                ok = False
            if not ok:
                raise StudyError(f"{path}: profiles.{name}: ratio {r!r} must be '1/k' with k >= 1, e.g. '1/16'")
        seeds = prof.get("train_seeds")
        if not seeds or not all(isinstance(s, int) and 0 <= s < 2**62 for s in seeds) or len(set(seeds)) != len(seeds):
            raise StudyError(f"{path}: profiles.{name}: train_seeds must be distinct non-negative ints, e.g. [0, 1, 2]")
        profiles[name] = prof
    if not profiles:
        raise StudyError(f"{path}: no [profiles.NAME] tables")
    retry = raw.get("diverged_retry_lr_factor")
    if retry is not None and not (isinstance(retry, (int, float)) and 0 < retry < 1):
        raise StudyError(f"{path}: diverged_retry_lr_factor must be a number in (0, 1), e.g. 0.2, got {retry!r}")
    return CompressionDesign(str(raw["dataset"]), dict(raw["hash"]), train, finetune, profiles, retry)


def narrow_widths(target: int, base: Sequence[int] = (6, 16, 120, 84)) -> tuple[int, int, int, int]:
    """LeNet-5 widths ``round(base * s)`` (each >= 1) whose parameter count is closest to ``target``.

    One factor ``s`` scales every width (the network narrowed uniformly, as HashedNets' "NN" baseline narrows its
    hidden layers); ``s`` is searched on a grid of 4,000 log-spaced values in [1e-3, 1]; ties go to the larger.

    Raises:
        ValueError: if ``target`` is below the parameter count of the narrowest LeNet-5 (every width 1).
    """
    from trainers.torch_backend.cnn import LeNet5

    smallest = LeNet5.parameter_count((1, 1, 1, 1))
    if target < smallest:
        raise ValueError(f"no LeNet-5 has {target} parameters; the narrowest (widths 1) has {smallest}")
    best: tuple[int, tuple[int, int, int, int]] | None = None
    for i in range(4000):
        s = 10 ** (-3 + 3 * i / 3999)
        w = tuple(max(1, round(b * s)) for b in base)
        gap = abs(LeNet5.parameter_count(w) - target)  # type: ignore[arg-type]
        if best is None or gap <= best[0]:
            best = (gap, w)  # type: ignore[assignment]
    assert best is not None
    return best[1]


# -- one run (in a worker process) -------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import torch

    return {"hashlab": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _dense_file(out: Path, seed: int) -> Path:
    return out / "models" / f"{CompressionRun('dense', None, seed).run_id}.safetensors"


def _hashed_map_and_target(design: CompressionDesign, run: CompressionRun) -> tuple[Any, int]:
    """The hashed map of ``run``'s ratio on LeNet-5, and its stored values (table entries + dense biases)."""
    import torch

    import hashlab
    from trainers.torch_backend.cnn import LeNet5
    from trainers.torch_backend.convert import layer_shapes, model_layers

    net = LeNet5()
    imap = hashlab.build_model_map(design.spec(run), layer_shapes(net))
    biases = sum(int(m.bias.numel()) for _, m in model_layers(net) if isinstance(m.bias, torch.Tensor))
    return imap, sum(imap.table_sizes) + biases


def _build(design: CompressionDesign, run: CompressionRun, out: Path) -> tuple[Any, Any, tuple[int, int, int, int]]:
    """``(model, index map or None, widths)`` of ``run``, before training (seeded by the training seed)."""
    import safetensors.torch
    import torch
    from torch import nn

    import hashlab
    from trainers.torch_backend.cnn import LENET5_WIDTHS, LeNet5
    from trainers.torch_backend.convert import arbify, layer_shapes, model_layers

    widths: tuple[int, int, int, int] = LENET5_WIDTHS
    if run.method == "dense":
        with torch.random.fork_rng():
            torch.manual_seed(run.seed)  # dense, hashed and narrow: the initialisation is the training seed's
            return LeNet5(), None, widths
    hashed, target = _hashed_map_and_target(design, run)
    with torch.random.fork_rng():
        torch.manual_seed(run.seed)
        if run.method == "narrow":
            widths = narrow_widths(target)
            return LeNet5(widths), None, widths
        if run.method == "hashed":
            return (*arbify(LeNet5(), hashed, init="map"), widths)
        dense_file = _dense_file(out, run.seed)
        if not dense_file.exists():
            raise FileNotFoundError(
                f"{dense_file} is missing: {run.run_id} starts from it; delete its record to retrain"
            )
        model: nn.Module = LeNet5()
        model.load_state_dict(safetensors.torch.load_file(dense_file))
        if run.method == "clustered":
            weights = [_weight(m).detach().numpy() for _, m in model_layers(model)]
            clusters = hashlab.cluster_layers(
                weights, layer_shapes(model), hashed.table_sizes, source=dense_file.name, init="linear"
            )
            model, imap = arbify(model, clusters, init="weights")
        else:
            model, imap = arbify(model, hashed, init="weights")
        return model, imap, widths


def _weight(module: Any) -> Any:
    return module.weight


def _save(model: Any, imap: Any, path: Path) -> int:
    """Write the model file as it ships; its size in bytes."""
    import safetensors.torch

    from trainers.torch_backend.modelfile import save_arbnet

    path.parent.mkdir(parents=True, exist_ok=True)
    if imap is None:
        tmp = path.with_suffix(".tmp")
        safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)
    else:
        save_arbnet(model, path, index_map=imap)
    return path.stat().st_size


def _reloads_identically(model: Any, imap: Any, path: Path, widths: tuple[int, int, int, int], x: Any) -> bool:
    """Whether the model read back from its file computes bitwise the same logits on ``x``."""
    import safetensors.torch
    import torch

    from trainers.torch_backend.cnn import LeNet5
    from trainers.torch_backend.modelfile import load_arbnet

    back: torch.nn.Module = LeNet5(widths)
    if imap is None:
        back.load_state_dict(safetensors.torch.load_file(path))
    else:
        back = load_arbnet(path, model=back)
    model.eval()
    back.eval()
    with torch.no_grad():  # bitwise, NaN included (a diverged model reloads to its NaNs)
        return bool(torch.allclose(model(x), back(x), rtol=0.0, atol=0.0, equal_nan=True))


def diverged_at(epochs: Sequence[Any], model: Any) -> int | None:
    """The first epoch (1-based) whose training or validation loss is not finite; ``len(epochs)`` if only the
    trained parameters are; ``None`` for a run that did not diverge."""
    import torch

    for e in epochs:
        losses = [e.train_loss] + ([] if e.val_loss is None else [e.val_loss])
        if not all(math.isfinite(v) for v in losses):
            return int(e.epoch)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return len(epochs)
    return None


def execute(
    run: CompressionRun, design: CompressionDesign, profile: str, out: str | os.PathLike, data_root: str
) -> dict[str, Any]:
    """Train, evaluate and save one run; write its record ``OUT/runs/<run_id>.json`` atomically and return it.

    Raises:
        FileNotFoundError: for a fine-tuned method whose dense model file is missing.
        RuntimeError: if the saved model file does not reload to the same outputs (NaNs included).
        trainers.torch_backend.DatasetError: if the dataset is missing.
    """
    import torch

    from trainers.torch_backend.data import load_config_data, split_validation
    from trainers.torch_backend.training import evaluate, fit

    t0 = time.perf_counter()
    out = Path(out)
    torch.set_num_threads(1)
    config = design.config(run, profile, data_root)
    train_data, test_data, info = load_config_data(config, data_root, torch.device("cpu"))
    train_data, val_data = split_validation(train_data, config.val_fraction, config.val_split, config.seed)
    attempts: list[dict[str, Any]] = []
    while True:  # the design's divergence rule: a diverged run is retrained once at retry_lr_factor x its LR
        model, imap, widths = _build(design, run, out)
        epochs = fit(model, train_data, config, val_data=val_data)
        bad = diverged_at(epochs, model)
        if bad is None or design.retry_lr_factor is None or attempts:
            break
        attempts.append({"lr": config.lr, "diverged_at_epoch": bad})
        config = dataclasses.replace(config, lr=config.lr * design.retry_lr_factor)
    if bad is not None:
        attempts.append({"lr": config.lr, "diverged_at_epoch": bad})
    test_acc, test_loss = evaluate(model, test_data, config.eval_batch_size)
    path = out / "models" / f"{run.run_id}.safetensors"
    size = _save(model, imap, path)
    if not _reloads_identically(model, imap, path, widths, test_data.batch(slice(0, 1000))[0]):
        raise RuntimeError(f"{path} does not reload to the trained model's outputs")
    lrs = [e.lr for e in epochs]
    stored = sum(p.numel() for p in model.parameters())
    record = {
        "schema": "hashlab.compression-run",
        "schema_version": 1,
        "run_id": run.run_id,
        "method": run.method,
        "ratio": run.ratio,
        "train_seed": run.seed,
        "hash_seed": None if run.method in ("dense", "narrow") else run.hash_seed,
        "widths": list(widths),
        "stored_values": stored,
        "table_entries": None if imap is None else sum(imap.table_sizes),
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_size": len(test_data),
        "val_accuracy": epochs[-1].val_accuracy if epochs else None,
        "lr": config.lr,
        "diverged": bad is not None,
        "diverged_attempts": attempts,
        "epochs_trained": len(epochs),
        "lr_drops": sum(b < a for a, b in zip(lrs, lrs[1:])),
        "stopped_by_rule": len(epochs) < config.epochs,
        "file": str(path.relative_to(out)),
        "file_bytes": size,
        "gzip_bytes": len(gzip.compress(path.read_bytes(), 9, mtime=0)),
        "history": [dataclasses.asdict(e) for e in epochs],
        "config": config.to_dict() | {"data_root": None},
        "profile": profile,
        "data": {k: info[k] for k in ("dataset", "train_size", "test_size")}
        | {"train_used": len(train_data), "val_size": 0 if val_data is None else len(val_data)},
        "device": {"type": "cpu", "cpu": platform.machine(), "torch_threads": torch.get_num_threads()},
        "versions": _versions(),
        "git_commit": git_commit(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": time.perf_counter() - t0,
    }
    atomic_write_json(out / "runs" / f"{run.run_id}.json", record)
    return record


def _execute(run: dict[str, Any], profile: str, out: str, data_root: str, study_file: str) -> dict[str, Any]:
    return execute(CompressionRun(**run), load_design(study_file), profile, out, data_root)


# -- the study ---------------------------------------------------------------------------------------------------


def done_ids(out: str | os.PathLike) -> set[str]:
    """Run ids that have a record in ``OUT/runs``."""
    return {p.stem for p in (Path(out) / "runs").glob("*.json")}


def check_out(out: str | os.PathLike, profile: str) -> None:
    """Refuse an output folder that holds another profile's runs (run ids repeat across profiles).

    Raises:
        StudyError: naming the folder, the profile found and the fix.
    """
    for path in sorted((Path(out) / "runs").glob("*.json")):
        try:
            found = json.loads(path.read_text()).get("profile")
        except (OSError, ValueError) as e:
            raise StudyError(f"{path} is not a readable run record ({e}); delete it to rerun that run") from e
        if found != profile:
            raise StudyError(
                f"{out} holds runs of profile {found!r} ({path.name}), not {profile!r}: give this profile its own --out"
            )


def run_study(
    profile: str,
    out: str | os.PathLike = DEFAULT_OUT,
    data_root: str | os.PathLike = "../shared/data",
    workers: int = 1,
    progress: bool = True,
    study_file: str | os.PathLike = STUDY_FILE,
) -> Iterator[tuple[CompressionRun, dict[str, Any] | None, str | None]]:
    """Run the profile's runs that have no record yet, ``workers`` at a time (spawned processes, one thread each).

    A fine-tuned run waits for its dense run. Yields ``(run, record, None)`` as each finishes, or
    ``(run, None, error)`` if it failed (its dependents are then skipped with that error); the others go on.
    """
    from tqdm.auto import tqdm

    design = load_design(study_file)
    out = Path(out)
    check_out(out, profile)
    done = done_ids(out)
    todo = [r for r in design.runs(profile) if r.run_id not in done]
    ready = [r for r in todo if r.parent is None or r.parent.run_id in done]
    waiting = [r for r in todo if r not in ready]
    ctx = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(todo), desc=f"compression ({profile})", unit="run", disable=not progress)
    args = (profile, str(out), str(data_root), str(study_file))
    with ProcessPoolExecutor(
        max(1, workers), mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures: dict[Future, CompressionRun] = {pool.submit(_execute, dataclasses.asdict(r), *args): r for r in ready}
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                run = futures.pop(fut)
                bar.update()
                try:
                    record, error = fut.result(), None
                except Exception as e:  # one failed run does not stop the others
                    record, error = None, f"{type(e).__name__}: {e}"
                yield run, record, error
                children = [r for r in waiting if r.parent == run]
                waiting = [r for r in waiting if r not in children]
                for child in children:
                    if error is None:
                        futures[pool.submit(_execute, dataclasses.asdict(child), *args)] = child
                    else:
                        bar.update()
                        yield child, None, f"skipped: its dense run {run.run_id} failed"
    bar.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.compression_study",
        description=(
            "The compression study (analysis/studies/compression.toml): LeNet-5 on Fashion-MNIST hashed, arbified, "
            "clustered and narrowed at each ratio, test accuracy against model file size. Resumes from OUT/runs; "
            "writes OUT/REPORT.md, results.csv, summary.csv and figures/."
        ),
    )
    p.add_argument("--profile", default="compression", help="compression (the study, default) or smoke")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default analysis/results/compression)")
    p.add_argument(
        "--data-root",
        default=os.environ.get("HASHLAB_DATA_ROOT", "../shared/data"),
        help="torchvision data root holding FashionMNIST/raw (default $HASHLAB_DATA_ROOT or ../shared/data)",
    )
    p.add_argument("--workers", type=int, default=None, help="parallel runs, one core each (default: the cores)")
    p.add_argument("--report-only", action="store_true", help="train nothing; write the report from OUT/runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Exit status: 0 done, 1 some run failed, 2 bad input (nothing run)."""
    from trainers.torch_backend.data import DATASETS, resolve_data_root

    from .report_compression import write_report

    args = _parser().parse_args(argv)
    try:
        design = load_design()
        runs = design.runs(args.profile)
        if args.workers is not None and args.workers < 1:
            raise StudyError(f"--workers must be >= 1, got {args.workers}")
        check_out(args.out, args.profile)
        if not args.report_only:
            root = resolve_data_root(args.data_root)
            raw = root / DATASETS[design.dataset].folder
            if not raw.is_dir():
                raise StudyError(f"{raw} does not exist: point --data-root at the folder holding FashionMNIST/raw")
    except (StudyError, InputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    if not args.report_only:
        workers = args.workers or min(default_workers(), len(runs))
        for run, _, error in run_study(args.profile, args.out, args.data_root, workers, not args.no_progress):
            if error is not None:
                failed += 1
                print(f"{run.run_id}: {error}", file=sys.stderr)
    if not args.no_report:
        try:
            path = write_report(args.out, design, args.profile)
        except FileNotFoundError as e:  # --report-only on a folder with no runs
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
