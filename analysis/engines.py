"""Run many :class:`~analysis.runs.RunConfig` to completion: a local process pool, or Ray.

Both engines call :func:`analysis.runs.execute_run`, which writes each finished run's record
atomically to ``OUT/runs/<key>.json``; runs whose record exists are skipped, so an interrupted
reproduction resumes where it stopped and no run is recorded twice. A tqdm bar shows runs done
out of the total, with the ETA.

* ``local`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` of ``workers``
  processes started with ``spawn`` (torch is never forked), one torch thread each. The default
  is one worker per CPU core available to this process; on one GPU several workers share it.
  On Linux each worker asks the kernel to end it when the reproduction's process dies
  (``PR_SET_PDEATHSIG``), so a killed reproduction leaves no orphan workers training.
* ``ray``: the same runs as Ray tasks (``num_cpus=1`` each). ``address=None`` starts a local
  Ray instance with ``workers`` CPUs; ``address="auto"`` or ``"ray://HOST:PORT"`` joins a cluster
  whose nodes have this package installed and the data root at the same path.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from hashlab.io.errors import EXIT_ENVIRONMENT

from .runs import RunConfig, execute_run, run_path

__all__ = ["ENGINES", "EngineError", "RunFailure", "default_workers", "pending", "run_all"]

ENGINES = ("local", "ray")


class EngineError(RuntimeError):
    """The engine cannot run (e.g. Ray is not installed or its cluster cannot be reached): exit code 4."""

    exit_code = EXIT_ENVIRONMENT


@dataclass
class RunFailure:
    """A run that raised: its config and the error's one-line text."""

    run: RunConfig
    error: str


@dataclass
class Progress:
    """What :func:`run_all` did: how many runs were done before, finished now, and failed."""

    total: int
    skipped: int
    finished: int = 0
    failures: list[RunFailure] = field(default_factory=list)


def default_workers() -> int:
    """CPU cores available to this process (``os.sched_getaffinity`` where it exists)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pending(runs: Iterable[RunConfig], out: str | Path) -> list[RunConfig]:
    """The runs of ``runs`` with no record under ``out`` yet, in order."""
    return [r for r in runs if not run_path(out, r).exists()]


def run_all(runs: list[RunConfig], out: str | Path, *, engine: str = "local", workers: int | None = None,
            address: str | None = None, progress: bool = True,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> Progress:
    """Run every run of ``runs`` that has no record under ``out`` yet.

    Parameters
    ----------
    runs : list of RunConfig
    out : path-like
        The reproduction's folder (records go to ``OUT/runs/``).
    engine : {"local", "ray"}
    workers : int, optional
        Concurrent runs (default: :func:`default_workers`).
    address : str, optional
        Ray cluster address (``engine="ray"`` only); None starts a local instance.
    progress : bool
        Show the tqdm bar.
    on_row : callable, optional
        Called with each finished run's row, in completion order (e.g. to rewrite results.csv).

    Returns
    -------
    Progress
        Counts and the failed runs (a failed run is reported, not retried, and the others go on).

    Raises
    ------
    EngineError
        If ``engine`` is unknown, or Ray cannot be imported or reached.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    todo = pending(runs, out)
    state = Progress(total=len(runs), skipped=len(runs) - len(todo))
    bar = tqdm(total=len(runs), initial=state.skipped, unit="run", desc="reproduce", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    submit = _run_local if engine == "local" else _run_ray
    try:
        for run, row, error in submit(todo, str(out), workers, address):
            if error is None:
                state.finished += 1
                if on_row is not None:
                    on_row(row)
            else:
                state.failures.append(RunFailure(run, error))
                bar.write(f"run {run.key} ({run.study} {run.kind} sparsity {run.sparsity:g} "
                          f"train seed {run.train_seed}) failed: {error}")
            bar.update(1)
    finally:
        bar.close()
    return state


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Pool initializer: SIGTERM this worker when its parent dies (Linux; elsewhere a no-op).

    Without it a reproduction killed by SIGTERM or SIGKILL leaves its spawned workers running
    (re-parented to init), still training runs no one waits for.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: keep the old behaviour
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _run_local(todo: list[RunConfig], out: str, workers: int, address: str | None):
    if address is not None:
        raise ValueError("--address only applies to --engine ray")
    if not todo:
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(execute_run, run.to_dict(), out): run for run in todo}
        try:
            for fut in as_completed(futures):
                run = futures[fut]
                try:
                    yield run, fut.result(), None
                except Exception as e:  # one failed run does not stop the others
                    yield run, None, _one_line(e)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _run_ray(todo: list[RunConfig], out: str, workers: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise EngineError("Ray is not installed; install the extra: pip install -e \".[ray]\"") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as e:
            raise EngineError(f"cannot start or reach Ray ({_one_line(e)})") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        refs = {task.remote(run.to_dict(), out): run for run in todo}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            run = refs[done[0]]
            try:
                yield run, ray.get(done[0]), None
            except Exception as e:
                cause = getattr(e, "cause", None) or e
                yield run, None, _one_line(cause)
    finally:
        if started_here:
            ray.shutdown()
