"""``hashlab train``: train the ArbMLP of an index file with the torch backend.

The trainer adds this command to the ``hashlab`` CLI through the ``hashlab.commands`` entry point
(:mod:`hashlab.commands.plugins`). torch is imported inside :func:`run` only, so ``hashlab --help``
works without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hashlab.commands.dataclass_args import add_dataclass_arguments, dataclass_from_args
from hashlab.io.errors import EnvironmentProblem, UsageError
from hashlab.io.paths import check_input_file, check_output_path

from .config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the ArbMLP of an index file on MNIST / Fashion-MNIST / CIFAR-10 (needs torch)",
        description="Train the ArbNet MLP described by an index file (by default Linear-ELU-BatchNorm per layer, "
        "SGD, as in Chang & Lipson 2018; --model hashednets-mlp and the validation flags give the "
        "HashedNets recipe, docs/TRAINING.md), then print its test accuracy and write a results JSON "
        "(docs/TRAINING.md). Needs the torch extra: pip install 'hashlab[torch]'.",
    )
    p.add_argument(
        "index_files",
        metavar="FILE",
        nargs="+",
        help="index file from `hashlab build`; several files of one architecture are trained as one "
        "batched model (train_group: paper network and recipe, SGD), each as if alone",
    )
    add_dataclass_arguments(p, TrainConfig)
    p.add_argument(
        "-o",
        "--out",
        default=None,
        help="write the results JSON here (atomically); with several files, a directory that gets "
        "one FILE_STEM.json each",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="save the full training state here after every epoch (atomically); rerunning the same "
        "command resumes from it with identical results on CPU",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tqdm progress bars (default: when stderr is a terminal)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(TrainConfig, args)
    try:
        from .training import train
    except ImportError as e:
        raise EnvironmentProblem(
            0, f"the torch backend needs torch and torchvision ({e}); install them with: pip install 'hashlab[torch]'"
        ) from None
    files = args.index_files
    for f in files:
        check_input_file(f, "index file", "create it with `hashlab build ... -o FILE`")
    if len(files) > 1:
        return _run_group(args, config, files)
    for path, what in ((args.out, "--out"), (args.checkpoint, "--checkpoint")):
        if path is not None:
            check_output_path(path, what)
    result = train(files[0], config, out=args.out, progress=args.progress, checkpoint=args.checkpoint)
    acc = result.test_accuracy
    print(
        f"test accuracy: {acc:.4f} ({100 * acc:.2f}%) after {len(result.epochs)} epochs "
        f"(final train accuracy {result.final_epoch.train_accuracy:.4f}, {result.wall_time_s:.1f} s on "
        f"{result.device.name})" + (f"; results written to {args.out}" if args.out else "")
    )
    return 0


def _run_group(args: argparse.Namespace, config: TrainConfig, files: list[str]) -> int:
    """Several index files: one batched model (``train_group``), one results JSON per file."""
    from .group import train_group

    if args.checkpoint is not None:
        raise UsageError(
            "--checkpoint saves one model's training state; drop it to train several files "
            "as a group, or train them one by one"
        )
    stems = [Path(f).stem for f in files]
    if len(set(stems)) != len(stems):
        repeated = ", ".join(sorted(s for s in set(stems) if stems.count(s) > 1))
        raise UsageError(
            f"the index files' names repeat ({repeated}), so their results JSONs in --out would collide; rename them"
        )
    outs = None
    if args.out is not None:
        out_dir = Path(args.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} is a file; with several index files --out names a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        outs = [out_dir / f"{stem}.json" for stem in stems]
    results = train_group(files, config, outs=outs, progress=args.progress)  # ValueErrors exit with status 2
    for f, res in zip(files, results):
        print(
            f"{f}: test accuracy {res.test_accuracy:.4f} ({100 * res.test_accuracy:.2f}%) after "
            f"{len(res.epochs)} epochs"
        )
    print(
        f"{len(files)} models trained as one group in {results[0].wall_time_s:.1f} s on "
        f"{results[0].device.name}" + (f"; results written to {args.out}/" if args.out else "")
    )
    return 0
