"""Maps learned from trained weights, end to end on real MNIST.

Deep Compression's weight sharing (Han, Mao & Dally, ICLR 2016, section 3) as an ArbNet map,
compared with hashed maps of the same table size (Chang & Lipson 2018):

1. **dense**: train the paper's MLP 784-200-ELU-BN-200-ELU-BN-10-ELU-BN with the identity map
   (kind ``identity``: one entry per weight, i.e. a dense network) through the trainer
   (:func:`trainers.torch_backend.training.train`, SGD lr 0.1, momentum 0.9, plateau schedule),
   keeping its final state with ``checkpoint=``;
2. **cluster**: cluster each layer's weights into ``--table-size`` entries (layer scope, 1-D
   k-means, :func:`hashlab.cluster_weights`); the centres are the map's initial tables;
3. **clustered, before fine-tuning**: the ArbNet of that map with the dense model's biases and
   BatchNorm (affine parameters and running statistics) carried over, evaluated on the test set;
4. **fine-tuned**: that model trained ``--finetune-epochs`` more epochs with the same recipe
   (a :class:`TrainConfig`), once per ``--table-grad-scale`` mode (``none``: an entry's gradient
   is the sum over its weights, as in both papers; ``load``: the mean-gradient step);
5. **hashlab train path**: the clustered index file trained by the trainer as is
   (``hashlab train MAP``): tables start from the centres, biases and BatchNorm start fresh;
6. **baselines**: Dirichlet(alpha=1) and uniform maps with the same table size, trained from
   scratch by the trainer for the total epochs of 1 + 4 (``dense + finetune`` by default).

What carries over from the dense model (ArbMLP state-dict names): ``blocks.K.linear.bias``,
``blocks.K.bn.{weight,bias,running_mean,running_var,num_batches_tracked}``; not carried:
``blocks.K.linear.table`` (replaced by the centres) and ``.indices`` (the new map's). Optimizer
momentum does not carry over (fine-tuning starts a fresh SGD).

Outputs in ``--out``: ``maps/*.safetensors``, ``dense.pt`` (the trained dense state),
``runs/*.json`` (the trainer's results), ``results.json`` and ``REPORT.md`` (written atomically).

    python -m analysis.clustering --out analysis/results/clustering
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from hashlab import ARCHITECTURES, HashSpec, build_map, cluster_weights, load_index_file, save_index_file
from hashlab.commands.errors import add_debug_flag, run_cli
from hashlab.io.atomic import atomic_write_json, atomic_write_text
from hashlab.io.paths import check_output_dir
from hashlab.maps.cluster import INITS, quantization_report

__all__ = ["main", "CARRIED", "carry_over"]

RESULTS_SCHEMA = "hashlab.clustering-study"
CARRIED = ("linear.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
"""ArbMLP state-dict suffixes (after ``blocks.K.``) the clustered model takes from the dense one."""


def carry_over(model, dense_state: dict) -> list[str]:
    """Load the dense model's biases and BatchNorm state (:data:`CARRIED`) into ``model``; return the keys."""
    keys = [k for k in dense_state if k.split(".", 2)[-1] in CARRIED]
    missing, unexpected = model.load_state_dict({k: dense_state[k] for k in keys}, strict=False)
    if unexpected or any(k.split(".", 2)[-1] in CARRIED for k in missing):
        raise ValueError(f"dense state does not fit the clustered model: missing {missing}, unexpected {unexpected}")
    return keys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m analysis.clustering", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="runs/clustering", help="output folder (default: runs/clustering)")
    p.add_argument(
        "--data-root", default=None, help="torchvision data root holding MNIST/raw (default: $HASHLAB_DATA_ROOT)"
    )
    p.add_argument("--epochs", type=int, default=3, help="dense training epochs (default: 3)")
    p.add_argument(
        "--finetune-epochs", type=int, default=2, help="fine-tuning epochs of the clustered model (default: 2)"
    )
    p.add_argument(
        "--baseline-epochs",
        type=int,
        default=None,
        help="epochs of the hashed baselines from scratch (default: --epochs + --finetune-epochs)",
    )
    p.add_argument("--table-size", type=int, default=1000, help="entries per table (default: 1000)")
    p.add_argument("--init", choices=INITS, default="linear", help="k-means initialisation (default: linear)")
    p.add_argument("--iters", type=int, default=20, help="k-means iterations (default: 20)")
    p.add_argument(
        "--table-grad-scale",
        default="none,load",
        help="comma-separated table_grad_scale modes to fine-tune with, one run each "
        "(none, load, sqrt_load, load_hot, load_cold; default: none,load)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="training seed, hash seed of the baselines and k-means seed (default: 0)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N samples only (smoke tests)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_debug_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns the exit code (user errors: one stderr line, hashlab.commands.errors)."""
    return run_cli(_main, argv, prog="python -m analysis.clustering")


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import torch  # scripts import the libraries, never the reverse
    from tqdm.auto import tqdm

    from hashlab.io.weights import read_weights
    from hashlab.maps.cluster import check_cluster_params
    from trainers.torch_backend.config import TrainConfig
    from trainers.torch_backend.data import load_device_data, resolve_data_root
    from trainers.torch_backend.models import ArbMLP
    from trainers.torch_backend.results import TrainResult
    from trainers.torch_backend.training import (
        evaluate,
        make_optimizer,
        make_scheduler,
        resolve_device,
        train,
        train_epoch,
    )

    from .runs import git_commit

    t0 = time.perf_counter()
    modes = [m.strip() for m in args.table_grad_scale.split(",") if m.strip()]
    base_epochs = args.baseline_epochs or args.epochs + args.finetune_epochs

    def cfg(epochs: int, **kw) -> TrainConfig:
        return TrainConfig(
            dataset="mnist",
            data_root=args.data_root,
            epochs=epochs,
            seed=args.seed,
            device=args.device,
            limit_train=args.limit_train,
            **kw,
        )

    configs = {
        "dense": cfg(args.epochs),
        "baseline": cfg(base_epochs),
        **{f"finetune-{m}": cfg(args.finetune_epochs, table_grad_scale=m) for m in modes},
    }  # checks values
    check_cluster_params(args.table_size, "layer", args.init, args.seed, args.iters)
    baselines = {
        "dirichlet-1": HashSpec(kind="dirichlet", alpha=1.0, table_size=args.table_size, seed=args.seed),
        "uniform": HashSpec(kind="uniform", table_size=args.table_size, seed=args.seed),
    }
    device = resolve_device(args.device)
    root = resolve_data_root(args.data_root)
    out = check_output_dir(args.out, "--out folder")
    progress = not args.no_progress
    arch = ARCHITECTURES["mnist-mlp"]
    rows: list[dict[str, Any]] = []
    stages = tqdm(total=4 + len(modes) + len(baselines), desc="clustering study", disable=not progress, unit="stage")

    def run_trainer(name: str, map_path: Path, config: TrainConfig, **kw) -> TrainResult:
        res = train(map_path, config, out=out / "runs" / f"{name}.json", progress=False, **kw)
        stages.update()
        return res

    # 1. dense
    dense_map = save_index_file(
        build_map(HashSpec(kind="identity", seed=args.seed), arch), out / "maps" / "identity.safetensors"
    )
    (out / "dense.pt").unlink(missing_ok=True)  # a fresh run, not a resumed one
    dense = run_trainer("dense", dense_map, configs["dense"], checkpoint=out / "dense.pt")
    rows.append(
        _row(
            "dense (identity map)",
            dense_map,
            args.epochs,
            dense.test_accuracy,
            dense.test_loss,
            dense.model.table_entries,
            dense.wall_time_s,
            "trainer",
        )
    )

    # 2. cluster the trained weights
    tc = time.perf_counter()
    names, mats = read_weights(out / "dense.pt")
    imap = cluster_weights(
        mats,
        args.table_size,
        scope="layer",
        init=args.init,
        seed=args.seed,
        iters=args.iters,
        source=f"dense.pt ({', '.join(names)})",
    )
    cluster_s = time.perf_counter() - tc
    cluster_map = save_index_file(imap, out / "maps" / "clustered.safetensors")
    quant = quantization_report(mats, imap)
    stages.update()

    # 3. the clustered ArbNet with the dense biases and BatchNorm, before fine-tuning; 4. fine-tuning
    dense_state = torch.load(out / "dense.pt", map_location="cpu", weights_only=True)["model"]
    threads = torch.get_num_threads()
    dense_threads = configs["dense"].num_threads or threads  # None: torch's default, the current count
    torch.set_num_threads(dense_threads)
    try:
        train_data, test_data, _ = load_device_data("mnist", root, device, limit_train=args.limit_train)
        imap = load_index_file(cluster_map)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(args.seed)
            model = ArbMLP(imap, device=device)
        carried = carry_over(model, dense_state)
        acc, loss = evaluate(model, test_data, configs["dense"].eval_batch_size)
        rows.append(
            _row(
                "clustered, before fine-tuning",
                cluster_map,
                0,
                acc,
                loss,
                model.num_entries,
                cluster_s,
                "dense biases + BatchNorm carried over",
            )
        )
        stages.update()
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        for mode in modes:
            config = configs[f"finetune-{mode}"]
            model.load_state_dict(fresh)
            rows.append(
                _finetune(
                    model,
                    config,
                    train_data,
                    test_data,
                    cluster_map,
                    progress,
                    make_optimizer,
                    make_scheduler,
                    train_epoch,
                    evaluate,
                    torch,
                )
            )
            stages.update()
    finally:
        torch.set_num_threads(threads)

    # 5. the clustered file as `hashlab train` sees it
    plain = run_trainer(
        "clustered-trainer", cluster_map, configs["finetune-" + modes[0]] if modes else cfg(args.finetune_epochs)
    )
    rows.append(
        _row(
            f"clustered via `hashlab train` (fresh biases + BatchNorm, table_grad_scale "
            f"{plain.config.table_grad_scale})",
            cluster_map,
            args.finetune_epochs,
            plain.test_accuracy,
            plain.test_loss,
            plain.model.table_entries,
            plain.wall_time_s,
            "trainer",
        )
    )
    # 6. hashed baselines from scratch
    for name, spec in baselines.items():
        path = save_index_file(build_map(spec, arch), out / "maps" / f"{name}.safetensors")
        res = run_trainer(name, path, configs["baseline"])
        label = "Dirichlet(alpha=1)" if spec.kind == "dirichlet" else "uniform"
        rows.append(
            _row(
                f"{label} from scratch",
                path,
                base_epochs,
                res.test_accuracy,
                res.test_loss,
                res.model.table_entries,
                res.wall_time_s,
                "trainer",
            )
        )
    stages.close()

    results = {
        "schema": RESULTS_SCHEMA,
        "schema_version": 1,
        "provenance": _provenance(
            git_commit(), torch, threads=dense_threads, device=str(device), argv=argv, wall_s=time.perf_counter() - t0
        ),
        "settings": {
            "table_size": args.table_size,
            "scope": "layer",
            "init": args.init,
            "iters": args.iters,
            "seed": args.seed,
            "epochs": {"dense": args.epochs, "finetune": args.finetune_epochs, "baselines": base_epochs},
            "table_grad_scale": modes,
            "limit_train": args.limit_train,
            "train_config": configs["dense"].to_dict(),
        },
        "carried_over": sorted({k.split(".", 2)[-1] for k in carried}),
        "quantization": [dict(r, tensor=n) for r, n in zip(quant, names)],
        "rows": rows,
    }
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "REPORT.md", _report(results))
    print(_table(rows))
    print(f"\nresults in {out / 'results.json'} and {out / 'REPORT.md'} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _finetune(
    model,
    config,
    train_data,
    test_data,
    map_path,
    progress,
    make_optimizer,
    make_scheduler,
    train_epoch,
    evaluate,
    torch,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place for ``config.epochs`` (the trainer's epoch loop, without its model init)."""
    t = time.perf_counter()
    model.set_table_grad_scale(config.table_grad_scale)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    shuffle = torch.Generator().manual_seed(config.seed)
    epochs = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            acc, loss = train_epoch(
                model,
                optimizer,
                train_data,
                config.batch_size,
                shuffle,
                progress,
                desc=f"fine-tune ({config.table_grad_scale}) epoch {epoch}",
            )
            epochs.append(
                {"epoch": epoch, "train_accuracy": acc, "train_loss": loss, "lr": optimizer.param_groups[0]["lr"]}
            )
            scheduler.step(acc)
    model.set_table_grad_scale("none")
    acc, loss = evaluate(model, test_data, config.eval_batch_size)
    row = _row(
        f"clustered + fine-tuned (table_grad_scale {config.table_grad_scale})",
        map_path,
        config.epochs,
        acc,
        loss,
        model.num_entries,
        time.perf_counter() - t,
        "dense biases + BatchNorm carried over",
    )
    row["epochs_log"] = epochs
    return row


def _row(
    model: str, map_path: Path, epochs: int, acc: float, loss: float, entries: int, wall_s: float, how: str
) -> dict[str, Any]:
    return {
        "model": model,
        "map": map_path.name,
        "epochs": epochs,
        "test_accuracy": acc,
        "test_loss": loss,
        "table_entries": entries,
        "wall_time_s": wall_s,
        "how": how,
    }


def _provenance(commit: str, torch, threads: int, device: str, argv: list[str], wall_s: float) -> dict[str, Any]:
    import numpy
    import scipy

    from hashlab import __version__

    return {
        "git_commit": commit,
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m analysis.clustering " + " ".join(argv),
        "versions": {
            "hashlab": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": threads,
            "device": device,
        },
        "wall_time_s": wall_s,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | epochs | table entries | test accuracy | test loss | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} | {r['table_entries']:,} | {100 * r['test_accuracy']:.2f}% | "
            f"{r['test_loss']:.4f} | {r['wall_time_s']:.1f} |"
        )
    return "\n".join(lines)


def _reading(res: dict[str, Any]) -> str:
    """Bullets computed from the rows: what clustering cost, what fine-tuning and the map bought."""
    acc = {r["model"]: 100 * r["test_accuracy"] for r in res["rows"]}
    dense = acc["dense (identity map)"]  # rows every run has
    before = acc["clustered, before fine-tuning"]
    tuned = max((v, k) for k, v in acc.items() if k.startswith("clustered + fine-tuned"))
    base = max((v, k) for k, v in acc.items() if k.endswith("from scratch"))
    return (
        f"- Clustering to {res['settings']['table_size']} entries per layer changes test accuracy by "
        f"{before - dense:+.2f} pp ({dense:.2f}% -> {before:.2f}%); the best fine-tuned model "
        f"({tuned[1]}) reaches {tuned[0]:.2f}%, {tuned[0] - base[0]:+.2f} pp against the best hashed "
        f"map trained from scratch ({base[1]}, {base[0]:.2f}%)."
    )


def _report(res: dict[str, Any]) -> str:
    p, s = res["provenance"], res["settings"]
    q = "\n".join(
        f"| {r['tensor']} | {'x'.join(map(str, r['shape']))} | {r['distinct']:,} | {r['entries_used']} | "
        f"{r['max_abs_error']:.3g} | {r['mean_abs_error']:.3g} |"
        for r in res["quantization"]
    )
    return f"""# Maps learned from trained weights: k-means weight sharing on MNIST

Deep Compression's weight sharing (Han, Mao & Dally, ICLR 2016, section 3) as an ArbNet index map
(`hashlab cluster`), against hashed maps of the same table size (Chang & Lipson 2018). Paper MLP
784-200-ELU-BN-200-ELU-BN-10-ELU-BN, real MNIST (60,000 train / 10,000 test unless limited),
SGD lr 0.1, momentum 0.9, batch 200, LR / 10 after 4 epochs without a training-accuracy gain.
Written by `analysis/clustering.py` (see its docstring for the steps).

## Results

{_table(res["rows"])}

- The dense model trains {s["epochs"]["dense"]} epochs; its weights are clustered into
  {s["table_size"]} entries per layer ({s["init"]} init, {s["iters"]} k-means iterations, layer
  scope); the clustered model keeps the dense model's {", ".join(res["carried_over"])} (per block)
  and is fine-tuned {s["epochs"]["finetune"]} epochs per `table_grad_scale` mode
  ({", ".join(s["table_grad_scale"])}); the hashed baselines train {s["epochs"]["baselines"]} epochs
  from scratch (`table_grad_scale none`, the paper's).
- "before fine-tuning" is the clustered network evaluated as is: its wall time is the k-means.
{_reading(res)}
- The comparison is at equal total epochs, not equal training cost: the clustered models spent
  their first {s["epochs"]["dense"]} epochs as the dense network (198,800 free weights), the
  baselines train 3,000 entries from the start. "entries used" below counts the centres that
  any weight reads: with linear init, centres in the sparse tails of the weight distribution can
  end with no weight (k-means keeps an empty centre where it is).
- Single runs, one seed: differences of a few tenths of a percent are within seed-to-seed noise.

## Quantisation of the dense weights

| tensor | shape | distinct values | entries used | max abs error | mean abs error |
| --- | --- | ---: | ---: | ---: | ---: |
{q}

## Provenance

- Command: `{p["command"].strip()}`
- Code: git {p["git_commit"]}; hashlab {p["versions"]["hashlab"]}, torch {p["versions"]["torch"]},
  numpy {p["versions"]["numpy"]}, scipy {p["versions"]["scipy"]}, Python {p["versions"]["python"]}
- Seeds: training, hash and k-means seed {s["seed"]}; limit_train {s["limit_train"]}
- Machine: {p["machine"]["platform"]}, {p["machine"]["cpu_count"]} CPUs ({p["machine"]["cpu"]}),
  {p["machine"]["torch_threads"]} torch thread(s), device {p["machine"]["device"]}; shared with other jobs
- Date: {p["date_utc"]}; whole study {p["wall_time_s"]:.0f} s
"""


if __name__ == "__main__":
    sys.exit(main())
