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

With ``group_size=K > 1`` either engine trains up to K runs that differ only in their map
(:func:`analysis.runs.group_key`) as one task, one batched model
(:func:`analysis.runs.execute_group`); the others run alone. A group's runs are recorded when
the whole group finishes, so a killed reproduction loses the groups in flight.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hashlab.io.errors import EXIT_ENVIRONMENT

from .runs import RunConfig, execute_group, execute_run, group_key, run_path

__all__ = [
    "ENGINES",
    "EngineError",
    "RunFailure",
    "default_workers",
    "die_with_parent",
    "pending",
    "plan_tasks",
    "run_all",
]

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


def plan_tasks(todo: list[RunConfig], group_size: int) -> list[list[RunConfig]]:
    """``todo`` cut into tasks: runs of one :func:`~analysis.runs.group_key` in chunks of at most
    ``group_size``, in the order of their first run; runs without a group key alone."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    groups: dict[str, list[RunConfig]] = {}
    tasks: list[list[RunConfig]] = []
    for run in todo:
        key = group_key(run) if group_size > 1 else None
        if key is None:
            tasks.append([run])
            continue
        if key not in groups or len(groups[key]) == group_size:
            groups[key] = []
            tasks.append(groups[key])
        groups[key].append(run)
    return tasks


def _execute(task: list[dict[str, Any]], out: str) -> list[dict[str, Any]]:
    """One task of the pool or of Ray: a run alone, or a group."""
    return [execute_run(task[0], out)] if len(task) == 1 else execute_group(list(task), out)


def run_all(
    runs: list[RunConfig],
    out: str | Path,
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    group_size: int = 1,
) -> Progress:
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
    group_size : int
        Train up to this many runs that differ only in their map as one batched model (default 1:
        every run alone). A group's records equal solo runs' up to float rounding.

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
    tasks = plan_tasks(todo, group_size)
    state = Progress(total=len(runs), skipped=len(runs) - len(todo))
    bar = tqdm(
        total=len(runs),
        initial=state.skipped,
        unit="run",
        desc="reproduce",
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    submit = _run_local if engine == "local" else _run_ray
    try:
        for run, row, error in submit(tasks, str(out), workers, address):
            if error is None:
                state.finished += 1
                if on_row is not None:
                    on_row(row)
            else:
                state.failures.append(RunFailure(run, error))
                bar.write(
                    f"run {run.key} ({run.study} {run.spec.kind} sparsity {run.spec.sparsity:g} "
                    f"train seed {run.train.seed}) failed: {error}"
                )
            bar.update(1)
    finally:
        bar.close()
    return state


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
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


def _task_results(task: list[RunConfig], get):
    """Yield ``(run, row, error)`` for every run of a finished task (``get()`` returns its rows or raises)."""
    try:
        rows = get()
    except Exception as e:  # one failed task does not stop the others
        error = _one_line(e)
        for run in task:
            yield run, None, error
        return
    for run, row in zip(task, rows):
        yield run, row, None


def _run_local(tasks: list[list[RunConfig]], out: str, workers: int, address: str | None):
    if address is not None:
        raise ValueError("--address only applies to --engine ray")
    if not tasks:
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = {pool.submit(_execute, [r.to_dict() for r in task], out): task for task in tasks}
        try:
            for fut in as_completed(futures):
                yield from _task_results(futures[fut], fut.result)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _run_ray(tasks: list[list[RunConfig]], out: str, workers: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise EngineError('Ray is not installed; install the extra: pip install -e ".[ray]"') from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as e:
            raise EngineError(f"cannot start or reach Ray ({_one_line(e)})") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_execute)
        refs = {remote.remote([r.to_dict() for r in task], out): task for task in tasks}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)

            def get(ref=done[0]):
                try:
                    return ray.get(ref)
                except Exception as e:
                    raise (getattr(e, "cause", None) or e) from None

            yield from _task_results(refs[done[0]], get)
    finally:
        if started_here:
            ray.shutdown()
