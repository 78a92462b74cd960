"""Reproduce Chang & Lipson 2018 end to end: run the studies of a profile, then write REPORT.md.

    python -m analysis.reproduce --profile quick --dataset mnist --out runs/repro-quick --data-root ../shared/data

(also ``hashlab reproduce ...``). Every run is keyed by a hash of its full config; its record
is written atomically to ``OUT/runs/<key>.json`` as soon as it finishes, and a rerun of the same
command skips finished runs, so an interrupted reproduction loses nothing and resumes.
``OUT/results.csv`` (one row per run) is rewritten after every finished run. At the end
``OUT/figures/`` (the paper's Figures 2, 3 and 4 with 95% confidence bands) and ``OUT/REPORT.md``
(each claim: the paper's statement, our numbers, the test, its p-value and the verdict) are
written from the records; ``--report-only`` rebuilds them without training.

Profiles (``analysis/studies/profiles.toml``): ``smoke`` (under a minute on 2 cores), ``quick``
(under 10 minutes on 2 cores), ``paper`` (the full grid of section 4.3, 3 paired seeds, 6 epochs:
the pilot), ``confirm`` (the pre-registered confirmatory design, converged runs, 20 paired seeds;
its report is the design's), ``converged`` (the full grid, converged, 3 seeds) and ``hashednets``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from hashlab.commands.errors import add_debug_flag, run_cli
from hashlab.io.atomic import atomic_write_text
from hashlab.io.errors import UsageError
from hashlab.io.paths import check_output_dir

from .engines import ENGINES, default_workers, pending, run_all
from .runs import ARCH_OF_DATASET, ROW_COLUMNS, RunConfig, run_path
from .study import StudyError, load_profiles, plan

__all__ = ["reproduce", "load_rows", "write_results_csv", "add_arguments", "register", "run", "main"]


def load_rows(out: str | Path, runs: list[RunConfig] | None = None) -> list[dict[str, Any]]:
    """Rows of the finished runs under ``out``: of ``runs`` in their order, or all records by key."""
    out = Path(out)
    paths = [run_path(out, r) for r in runs] if runs is not None else sorted((out / "runs").glob("*.json"))
    rows = []
    for p in paths:
        if p.exists():
            rec = json.loads(p.read_text())
            # a record written before a column existed takes it from its run config (e.g. optimizer)
            # or its training results (the epochs it trained; no stopping rule then)
            trained = {"epochs_trained": len(rec["results"]["epochs"]), "stopped_by_rule": False}
            rows.append({**trained, **{k: v for k, v in rec["run"].items() if k in ROW_COLUMNS}, **rec["row"]})
    return rows


def write_results_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as a tidy CSV with the :data:`~analysis.runs.ROW_COLUMNS` header, atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def reproduce(
    profile: str,
    dataset: str,
    out: str | Path,
    *,
    data_root: str | None = None,
    device: str = "cpu",
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    studies: tuple[str, ...] | None = None,
    progress: bool = True,
    report: bool = True,
    run: bool = True,
    group_size: int = 1,
    verify_md5: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a profile's studies on a dataset and write results.csv, figures and REPORT.md.

    Parameters
    ----------
    profile : str
        A profile of ``analysis/studies/profiles.toml``, e.g. ``"smoke"``, ``"quick"``, ``"paper"``, ``"confirm"``.
    dataset : {"mnist", "fashion-mnist", "cifar10"}
    out : path-like
        Output folder (created; resumable).
    data_root : str, optional
        torchvision data root (default ``$HASHLAB_DATA_ROOT``).
    device : str
        ``"cpu"`` (default), ``"cuda"`` or ``"auto"``; part of each run's key.
    engine, workers, address, group_size :
        See :func:`analysis.engines.run_all`.
    studies : tuple of str, optional
        Only these studies of the profile.
    progress : bool
        Show the progress bar.
    report : bool
        Write figures and REPORT.md at the end.
    run : bool
        Train the pending runs (False: only rebuild results.csv, figures and REPORT.md).
    verify_md5 : bool
        Check CIFAR-10 files against the official md5s (default); False (``--no-verify-md5``) reads
        files in the official format that are not the official release, such as the rebuilt copy in
        ``../shared/data``. False is part of each run's key (True, the default, is not).

    Returns
    -------
    dict
        ``{"runs": total, "finished": trained now, "skipped": done before, "missing": without a record
        at the end, "failed": [...], "wall_time_s": ...}``.

    Raises
    ------
    StudyError
        On an unknown profile, dataset or study, before anything runs.
    EngineError
        If the engine cannot run.
    """
    t0 = time.perf_counter()
    profiles = load_profiles()
    if profile not in profiles:
        raise StudyError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)}")
    prof = profiles[profile]
    runs = plan(prof, dataset, data_root=data_root, device=device, studies=studies, verify_md5=verify_md5)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    done_rows = load_rows(out, runs)

    def on_row(row: dict[str, Any]) -> None:  # keep results.csv current: an interrupted run loses nothing
        done_rows.append(row)
        write_results_csv(sorted(done_rows, key=lambda r: order[r["run_key"]]), csv_path)

    order = {r.key: i for i, r in enumerate(runs)}
    done_before = len(done_rows)
    state = None
    if run:
        state = run_all(
            runs,
            out,
            engine=engine,
            workers=workers,
            address=address,
            progress=progress,
            on_row=on_row,
            group_size=group_size,
        )
    rows = load_rows(out, runs)
    write_results_csv(rows, csv_path)
    summary = {
        "runs": len(runs),
        "finished": 0 if state is None else state.finished,
        "skipped": done_before,
        "missing": len(runs) - len(rows),
        "failed": [] if state is None else [f"{f.run.key}: {f.error}" for f in state.failures],
        "wall_time_s": time.perf_counter() - t0,
    }
    if report and rows and prof.design is not None:
        from .design import load_design
        from .report_confirm import write_confirm_report

        write_confirm_report(
            rows,
            out,
            design=load_design(prof.design),
            dataset=dataset,
            planned=len(runs),
            missing=len(pending(runs, out)),
            engine=engine,
            workers=workers or default_workers(),
        )
    elif report and rows:
        from .report import write_report

        write_report(
            rows,
            out,
            profile=prof,
            dataset=dataset,
            planned=len(runs),
            missing=len(pending(runs, out)),
            engine=engine,
            workers=workers or default_workers(),
        )
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the reproduction's options on ``p`` (``python -m analysis.reproduce`` and ``hashlab reproduce``)."""
    p.add_argument(
        "--profile",
        default="quick",
        help="smoke, quick (default), paper, confirm, converged or hashednets (analysis/studies/profiles.toml)",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        choices=list(ARCH_OF_DATASET),
        help="mnist (default), fashion-mnist (the CIFAR-10 stand-in here) or cifar10",
    )
    p.add_argument("--out", required=True, help="output folder (created; rerun the same command to resume)")
    p.add_argument("--data-root", default=None, help="torchvision data root (default: $HASHLAB_DATA_ROOT)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--engine", default="local", choices=ENGINES, help="local process pool (default) or ray")
    p.add_argument("--workers", type=int, default=None, help="concurrent runs (default: one per CPU core)")
    p.add_argument(
        "--group-size",
        type=int,
        default=1,
        metavar="K",
        help="train up to K runs that differ only in their map as one batched model (train_group; "
        "equal to solo runs up to float rounding); 1 (default): every run alone. Pays on a GPU "
        "(32 MNIST MLPs: 22.7x the per-model throughput on an H200), less on CPU (8: 1.27x)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (with --engine ray; default: a local instance)")
    p.add_argument("--studies", default=None, help="comma-separated subset of the profile's studies")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild results.csv, figures and REPORT.md from the finished runs without training",
    )
    p.add_argument(
        "--no-verify-md5",
        action="store_true",
        help="read CIFAR-10 files that are not the official release (e.g. the rebuilt copy in ../shared/data, "
        "whose md5s differ from torchvision's); recorded in each run's key",
    )
    p.add_argument("--no-report", action="store_true", help="skip figures and REPORT.md")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _parser(prog: str = "python -m analysis.reproduce") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    add_debug_flag(p)
    return p


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hashlab reproduce`` (the ``hashlab.commands`` entry point of this package)."""
    p = sub.add_parser(
        "reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="reproduce the paper: run a profile's studies, write results.csv, figures and REPORT.md",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the reproduction that the parsed options describe; returns the exit code (see :func:`main`)."""
    studies = None if args.studies is None else tuple(s.strip() for s in args.studies.split(",") if s.strip())
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.group_size < 1:
        raise UsageError(f"--group-size must be >= 1, got {args.group_size}")
    profiles = load_profiles()  # every input is checked before the output folder is made or anything runs
    if args.profile not in profiles:
        raise StudyError(f"unknown profile {args.profile!r}; choose one of {', '.join(profiles)}")
    plan(profiles[args.profile], args.dataset, studies=studies)
    out = check_output_dir(args.out, "--out folder")
    summary = reproduce(
        args.profile,
        args.dataset,
        out,
        data_root=args.data_root,
        device=args.device,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        studies=studies,
        progress=not args.no_progress,
        report=not args.no_report,
        run=not args.report_only,
        group_size=args.group_size,
        verify_md5=not args.no_verify_md5,
    )
    print(
        f"{summary['runs']} runs: {summary['finished']} trained now, {summary['skipped']} already done, "
        f"{len(summary['failed'])} failed, {summary['missing']} not run ({summary['wall_time_s']:.0f} s); "
        f"results in {out / 'results.csv'}" + ("" if args.no_report else f", report in {out / 'REPORT.md'}")
    )
    for f in summary["failed"]:
        print(f"  failed: {f}", file=sys.stderr)
    return 1 if summary["failed"] else 0


def main(argv: list[str] | None = None, prog: str = "python -m analysis.reproduce") -> int:
    """Entry point; returns the exit code: 0 ok, 1 some runs failed (the others are recorded), 2 bad
    input (profile, study, dataset, output folder), 3 missing data, 4 engine unavailable, and the other
    codes of :mod:`hashlab.commands.errors`; ``--debug`` shows the traceback."""
    return run_cli(lambda a: run(_parser(prog).parse_args(a)), argv, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
