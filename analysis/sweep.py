"""Experiment sweeps reproducing Chang & Lipson 2018 (section 4, Figures 2-3).

A sweep crosses one hash parameter (Dirichlet ``alpha`` for *balance*, Neighborhood ``radius``
for *noise*) with sparsities and seeds on the paper's MLP (table 1000 per layer), builds each
map with hashlab, writes it as an index file, trains it with ``trainers.torch_backend`` from
that file, and records one tidy row per run.

Every finished run is written atomically to ``OUT/runs/<run id>.json`` before the next one
starts, so an interrupted sweep loses no finished result; re-running the same command skips
finished runs. ``OUT/results.csv`` (one row per run) and ``OUT/accuracy.png`` are rebuilt from
the run files at the end.

    python -m analysis.sweep --dataset mnist --kind dirichlet --values 0.1,1,10,100 \\
        --sparsities 0,0.5,0.9 --seeds 0,1 --epochs 5 --out runs/sweep-dirichlet
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from hashlab import Architecture, HashSpec, build_map, save_index_file
from hashlab.io.atomic import atomic_write_json, atomic_write_text
from hashlab.stats import map_report

__all__ = ["SweepConfig", "run_sweep", "write_table", "plot_sweep", "main"]

_ARCH = {"mnist": "784-200-200-10", "fashion-mnist": "784-200-200-10",
         "cifar10": "3072-2000-2000-2000-2000-2000-10"}
COLUMNS = ["run_id", "dataset", "kind", "alpha", "radius", "sparsity", "seed", "table_size", "epochs",
           "table_entropy_nats", "table_entropy_bits", "compression_ratio", "final_train_accuracy", "test_accuracy", "wall_time_s"]


@dataclass(frozen=True)
class SweepConfig:
    """One sweep: ``values`` of the kind's parameter x ``sparsities`` x ``seeds``.

    Parameters
    ----------
    kind : {"dirichlet", "neighborhood"}
        Which paper experiment: balance (alpha) or noise (radius).
    values : tuple of float
        Dirichlet alphas (> 0) or Neighborhood radii (non-negative integers).
    sparsities : tuple of float
        Each in [0, 1).
    seeds : tuple of int
        Each seeds both the map and the training.
    dataset : {"mnist", "fashion-mnist", "cifar10"}
    table_size : int
        Entries per layer's table; the paper uses 1000.
    epochs, batch_size : int
        Training length and mini-batch size (SGD lr 0.1, momentum 0.9 as in the paper).
    data_root : str or None
        torchvision data root; None uses ``$HASHLAB_DATA_ROOT``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    limit_train : int or None
        Train on the first ``limit_train`` samples only (quick looks; not a paper setting).

    Raises
    ------
    ValueError
        On an empty grid or an invalid value, naming the fix.
    """

    kind: Literal["dirichlet", "neighborhood"] = "dirichlet"
    values: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    sparsities: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = "mnist"
    table_size: int = 1000
    epochs: int = 5
    batch_size: int = 100
    data_root: str | None = None
    device: str = "auto"
    limit_train: int | None = None
    version: int = field(default=1)

    def __post_init__(self) -> None:
        if self.version != 1:
            raise ValueError(f"SweepConfig version {self.version} is not supported; use 1")
        if self.kind not in ("dirichlet", "neighborhood"):
            raise ValueError(f"sweep kind must be 'dirichlet' (alpha) or 'neighborhood' (radius), got {self.kind!r}")
        if self.dataset not in _ARCH:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(_ARCH)}")
        for name in ("values", "sparsities", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give at least one, e.g. --{name} 0")
        if self.kind == "neighborhood" and any(v != int(v) or v < 0 for v in self.values):
            raise ValueError(f"neighborhood radii must be non-negative integers, got {self.values}")
        self.specs()  # HashSpec validates every grid point up front, before any training

    def specs(self) -> list[HashSpec]:
        """Every grid point's hash spec, in run order (value, then sparsity, then seed)."""
        param = "alpha" if self.kind == "dirichlet" else "radius"
        cast = float if self.kind == "dirichlet" else int
        return [HashSpec(kind=self.kind, table_size=self.table_size, seed=seed, sparsity=s, **{param: cast(v)})
                for v in self.values for s in self.sparsities for seed in self.seeds]


def run_id(spec: HashSpec, config: SweepConfig) -> str:
    """Stable, readable name of one run, e.g. ``mnist-dirichlet-a1-s0.5-seed0-n1000-e5``."""
    p = f"a{spec.alpha:g}" if spec.kind == "dirichlet" else f"r{spec.radius}"
    lim = f"-lim{config.limit_train}" if config.limit_train else ""
    return f"{config.dataset}-{spec.kind}-{p}-s{spec.sparsity:g}-seed{spec.seed}-n{spec.table_size}-e{config.epochs}{lim}"


def run_sweep(config: SweepConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; returns one tidy row per finished run.

    Parameters
    ----------
    config : SweepConfig
    out : path-like
        Output folder: ``maps/`` (index files), ``runs/`` (full results JSON per run),
        ``results.csv``, ``accuracy.png``.
    progress : bool
        tqdm bar over runs.

    Returns
    -------
    list of dict
        Rows with the keys of :data:`COLUMNS`.
    """
    from trainers.torch_backend.config import TrainConfig  # scripts import the libraries, never the reverse
    from trainers.torch_backend.train import train

    out = Path(out)
    arch = Architecture.parse(_ARCH[config.dataset])
    todo = config.specs()
    for spec in tqdm(todo, desc="sweep", unit="run", disable=not progress):
        rid = run_id(spec, config)
        result_path = out / "runs" / f"{rid}.json"
        if result_path.exists():
            continue  # finished earlier: resume
        imap = build_map(spec, arch)
        map_path = save_index_file(imap, out / "maps" / f"{rid}.safetensors")
        report = map_report(imap, locality=False)
        tcfg = TrainConfig(dataset=config.dataset, data_root=config.data_root, epochs=config.epochs,
                           batch_size=config.batch_size, seed=spec.seed, device=config.device,
                           limit_train=config.limit_train)
        results = train(map_path, tcfg, progress=False)
        # the paper's eq. 7 is per table: record the mean over the layers' tables
        h_nats = sum(t.entropy_nats for t in report.tables) / len(report.tables)
        results["sweep"] = {"run_id": rid, "config": _config_dict(config),
                            "table_entropy_nats": h_nats, "table_entropy_bits": h_nats / math.log(2)}
        atomic_write_json(result_path, results)
    rows = collect_rows(out)
    write_table(rows, out / "results.csv")
    if rows:
        plot_sweep(rows, out / "accuracy.png")
    return rows


def _config_dict(config: SweepConfig) -> dict[str, Any]:
    from dataclasses import asdict
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def collect_rows(out: str | Path) -> list[dict[str, Any]]:
    """Tidy rows from every ``runs/*.json`` under ``out`` (sorted by run id)."""
    rows = []
    for path in sorted(Path(out).glob("runs/*.json")):
        r = json.loads(path.read_text())
        spec = r["index_file"]["spec"]
        rows.append({
            "run_id": r["sweep"]["run_id"], "dataset": r["config"]["dataset"], "kind": spec["kind"],
            "alpha": spec["alpha"], "radius": spec["radius"], "sparsity": spec["sparsity"], "seed": spec["seed"],
            "table_size": spec["table_size"], "epochs": r["config"]["epochs"],
            "table_entropy_nats": r["sweep"]["table_entropy_nats"],
            "table_entropy_bits": r["sweep"]["table_entropy_bits"],
            "compression_ratio": r["index_file"]["compression_ratio"],
            "final_train_accuracy": r["epochs"][-1]["train_accuracy"], "test_accuracy": r["test_accuracy"],
            "wall_time_s": r["wall_time_s"],
        })
    return rows


def write_table(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write ``rows`` as CSV with the :data:`COLUMNS` header, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_sweep(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Test accuracy against the swept parameter, one line per sparsity (mean +- std over seeds)."""
    import numpy as np
    from matplotlib.figure import Figure

    from hashlab.stats.plots import save_figure

    kind = rows[0]["kind"]
    param = "alpha" if kind == "dirichlet" else "radius"
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    for s in sorted({r["sparsity"] for r in rows}):
        xs = sorted({r[param] for r in rows if r["sparsity"] == s})
        accs = [[100 * r["test_accuracy"] for r in rows if r["sparsity"] == s and r[param] == x] for x in xs]
        ax.errorbar(xs, [np.mean(a) for a in accs], yerr=[np.std(a) for a in accs], marker="o", capsize=3,
                    label=f"sparsity {s:g}")
    if kind == "dirichlet":
        ax.set_xscale("log")
        ax.set_xlabel("Dirichlet α (higher = more balanced table usage)")
    else:
        ax.set_xlabel("Neighborhood radius r (higher = noisier sharing)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{rows[0]['dataset']}: {kind} hash, table {rows[0]['table_size']}, "
                 f"{rows[0]['epochs']} epochs (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, dpi=120)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0,0.5,0.9, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,2, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["dirichlet", "neighborhood"], default="dirichlet")
    p.add_argument("--values", type=_floats, default=(0.1, 1.0, 10.0, 100.0),
                   help="alphas (dirichlet) or radii (neighborhood), comma-separated (default: 0.1,1,10,100)")
    p.add_argument("--sparsities", type=_floats, default=(0.0,), help="comma-separated, each in [0, 1) (default: 0)")
    p.add_argument("--seeds", type=_ints, default=(0,), help="comma-separated (default: 0)")
    p.add_argument("--dataset", choices=list(_ARCH), default="mnist")
    p.add_argument("--table-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--data-root", default=None, help="torchvision data root (default: $HASHLAB_DATA_ROOT)")
    p.add_argument("--device", default="auto")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N samples only (quick looks)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        config = SweepConfig(kind=args.kind, values=args.values, sparsities=args.sparsities, seeds=args.seeds,
                             dataset=args.dataset, table_size=args.table_size, epochs=args.epochs,
                             batch_size=args.batch_size, data_root=args.data_root, device=args.device,
                             limit_train=args.limit_train)
    except ValueError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    rows = run_sweep(config, args.out, progress=not args.no_progress)
    print(f"{len(rows)} runs in {args.out}/results.csv, figure {args.out}/accuracy.png")
    for r in rows:
        print(f"  {r['run_id']:<48} mean table entropy {r['table_entropy_nats']:.3f} nats  test accuracy {100 * r['test_accuracy']:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
