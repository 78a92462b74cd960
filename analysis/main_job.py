"""The main job (README, first command): map -> statistics -> index file -> training on real MNIST.

1. build a Dirichlet(alpha=1) map, sparsity 0, one 1000-entry table per layer, for the paper's
   MNIST MLP 784-200-ELU-BN-200-ELU-BN-10-ELU-BN (Chang & Lipson 2018, section 4);
2. write it as a format-v2 index file and print its statistics (entropy in nats and bits,
   loads, sparsity, compression ratio);
3. train the ArbNet *from the index file* with SGD (lr 0.1, momentum 0.9, LR / 10 after 4
   epochs without a gain in training accuracy) on CPU, and print the test accuracy.

Outputs go to ``--out`` (default ``runs/main``): ``map.safetensors``, ``stats.json``,
``results.json``, all written atomically, and ``checkpoint.pt``, the training state after
each epoch: rerunning the same command after a crash resumes from it (identical results on
CPU). Every argument, the output folder and the data root are checked before any work; user
errors print one line and exit 2 (usage), 3 (input) or 4 (environment), ``--debug`` shows
the traceback (hashlab.commands.errors).

    python -m analysis.main_job --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from hashlab import ARCHITECTURES, HashSpec, build_map, save_index_file
from hashlab.commands.errors import add_debug_flag, run_cli
from hashlab.io.atomic import atomic_write_json
from hashlab.io.paths import check_output_dir
from hashlab.stats import format_report, map_report

__all__ = ["main"]

DEFAULT_EPOCHS = 60  # ~2 min on 2 CPU cores; both LR drops of the paper schedule happen (epochs ~42, ~57)
MAIN_SPEC = HashSpec(kind="dirichlet", alpha=1.0, table_size=1000, sparsity=0.0, seed=0)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the exit code (user errors: one stderr line, see the module docstring)."""
    return run_cli(_main, argv, prog="python -m analysis.main_job")


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.main_job", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-root", default=None, help="torchvision data root holding MNIST/raw (default: $HASHLAB_DATA_ROOT)"
    )
    p.add_argument("--out", default="runs/main", help="output folder (default: runs/main)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs (default: {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int, default=MAIN_SPEC.seed, help="seed of the map and of training (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N samples only (smoke tests)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="training checkpoint, resumed if present (default: OUT/checkpoint.pt; 'none' disables it)",
    )
    add_debug_flag(p)
    args = p.parse_args(argv)

    from trainers.torch_backend.config import TrainConfig  # scripts import the libraries, never the reverse
    from trainers.torch_backend.data import resolve_data_root
    from trainers.torch_backend.training import resolve_device, train

    t0 = time.perf_counter()
    spec = dataclasses.replace(MAIN_SPEC, seed=args.seed)  # every value checked before any work
    config = TrainConfig(
        dataset="mnist",
        data_root=args.data_root,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        limit_train=args.limit_train,
    )
    resolve_device(config.device)
    resolve_data_root(config.data_root)
    out = check_output_dir(args.out, "--out folder")
    checkpoint = None if args.checkpoint == "none" else Path(args.checkpoint or out / "checkpoint.pt")
    imap = build_map(spec, ARCHITECTURES["mnist-mlp"])
    map_path = save_index_file(imap, out / "map.safetensors")
    report = map_report(imap)
    atomic_write_json(out / "stats.json", report.to_dict())
    print(
        f"== map: Dirichlet(alpha={spec.alpha:g}), table {spec.table_size} per layer, sparsity {spec.sparsity:g}, "
        f"seed {spec.seed} -> {map_path}"
    )
    print(format_report(report))
    print(f"\n== training on MNIST ({config.epochs} epochs, batch {config.batch_size}, device {config.device})")
    result = train(
        map_path, config, out=out / "results.json", progress=False if args.no_progress else None, checkpoint=checkpoint
    )
    for e in result.epochs:
        print(
            f"epoch {e.epoch}: train accuracy {100 * e.train_accuracy:.2f}%  loss {e.train_loss:.4f}  "
            f"lr {e.lr:g}  ({e.wall_time_s:.1f} s)"
        )
    print(
        f"\n== MNIST test accuracy: {100 * result.test_accuracy:.2f}%  "
        f"(training {result.wall_time_s:.1f} s, whole job {time.perf_counter() - t0:.1f} s; "
        f"results in {out / 'results.json'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
