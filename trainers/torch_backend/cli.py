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

_HELP = {
    "dataset": "image dataset, read with torchvision from --data-root",
    "data_root": "torchvision data root (else $HASHLAB_DATA_ROOT)",
    "download": "let torchvision download a missing dataset into the data root",
    "verify_md5": "check CIFAR-10 files against the official md5s (--no-verify-md5 reads own files in that format)",
    "epochs": "training epochs",
    "batch_size": "training mini-batch size",
    "eval_batch_size": "test-set evaluation batch size (memory only)",
    "lr": "initial learning rate (paper, SGD: 0.1; Adam usually wants 1e-3)",
    "momentum": "SGD momentum (paper: 0.9)",
    "lr_factor": "learning-rate factor on a plateau of --lr-metric (paper: 0.1)",
    "lr_patience": "epochs without a gain in --lr-metric before the learning rate drops (paper: 4, HashedNets: 3)",
    "optimizer": "sgd (with --momentum; paper), adam or adamw; the plateau schedule drives all three",
    "weight_decay": "L2 penalty (sgd, adam) or decoupled decay (adamw) on every parameter",
    "table_grad_scale": "multiply each table entry's gradient by mean_load/load (load) or its sqrt (sqrt_load)",
    "seed": "seed of the initialisation and the shuffling",
    "device": "auto (CUDA if available), cpu, cuda, cuda:N or mps",
    "num_threads": "CPU threads for torch (default: torch's choice)",
    "limit_train": "train on the first N training samples only (quick runs)",
    "deterministic": "torch.use_deterministic_algorithms(True) during training (docs/TRAINING.md, Determinism)",
    "model": "network preset: paper-mlp (Linear-ELU-BN on every layer) or hashednets-mlp (ReLU, dropout 0.25 "
             "on input and hidden layers, no BN, plain logits); the next five flags override it",
    "activation": "activation after each layer (default: the --model preset's)",
    "batch_norm": "BatchNorm1d after each activation (default: the --model preset's)",
    "dropout": "dropout probability on hidden layers, in [0, 1) (default: the --model preset's)",
    "input_dropout": "dropout probability on the input, in [0, 1) (default: the --model preset's)",
    "output_activation": "activation (and BN) after the last layer too, else plain logits (default: the preset's)",
    "loss": "cross_entropy (softmax; = log-softmax + NLL) or mse (squared error to the one-hot label)",
    "val_fraction": "hold out this fraction of the training set as a validation set (HashedNets: 0.1)",
    "val_split": "hold out the last samples or a random subset drawn from --seed",
    "lr_metric": "what the plateau schedule watches: train_accuracy (paper), val_loss (HashedNets) or val_accuracy",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the ArbMLP of an index file on MNIST / Fashion-MNIST / CIFAR-10 (needs torch)",
        description="Train the ArbNet MLP described by an index file (by default Linear-ELU-BatchNorm per layer, "
                    "SGD, as in Chang & Lipson 2018; --model hashednets-mlp and the validation flags give the "
                    "HashedNets recipe, docs/TRAINING.md), then print its test accuracy and write a results JSON "
                    "(docs/TRAINING.md). Needs the torch extra: pip install 'hashlab[torch]'.")
    p.add_argument("index_files", metavar="FILE", nargs="+",
                   help="index file from `hashlab build`; several files of one architecture are trained as one "
                        "batched model (train_group: paper network and recipe, SGD), each as if alone")
    add_dataclass_arguments(p, TrainConfig, help=_HELP)
    p.add_argument("-o", "--out", default=None,
                   help="write the results JSON here (atomically); with several files, a directory that gets "
                        "one FILE_STEM.json each")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="save the full training state here after every epoch (atomically); rerunning the same "
                        "command resumes from it with identical results on CPU")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="tqdm progress bars (default: when stderr is a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(TrainConfig, args)
    try:
        from .training import train
    except ImportError as e:
        raise EnvironmentProblem(0, f"the torch backend needs torch and torchvision ({e}); "
                                    "install them with: pip install 'hashlab[torch]'") from None
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
    print(f"test accuracy: {acc:.4f} ({100 * acc:.2f}%) after {len(result.epochs)} epochs "
          f"(final train accuracy {result.final_epoch.train_accuracy:.4f}, {result.wall_time_s:.1f} s on "
          f"{result.device.name})" + (f"; results written to {args.out}" if args.out else ""))
    return 0


def _run_group(args: argparse.Namespace, config: TrainConfig, files: list[str]) -> int:
    """Several index files: one batched model (``train_group``), one results JSON per file."""
    from .group import train_group

    if args.checkpoint is not None:
        raise UsageError("--checkpoint saves one model's training state; drop it to train several files "
                         "as a group, or train them one by one")
    stems = [Path(f).stem for f in files]
    if len(set(stems)) != len(stems):
        repeated = ", ".join(sorted(s for s in set(stems) if stems.count(s) > 1))
        raise UsageError(f"the index files' names repeat ({repeated}), so their results JSONs in --out would "
                         "collide; rename them")
    outs = None
    if args.out is not None:
        out_dir = Path(args.out)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} is a file; with several index files --out names a directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        outs = [out_dir / f"{stem}.json" for stem in stems]
    results = train_group(files, config, outs=outs, progress=args.progress)  # ValueErrors exit with status 2
    for f, res in zip(files, results):
        print(f"{f}: test accuracy {res.test_accuracy:.4f} ({100 * res.test_accuracy:.2f}%) after "
              f"{len(res.epochs)} epochs")
    print(f"{len(files)} models trained as one group in {results[0].wall_time_s:.1f} s on "
          f"{results[0].device.name}" + (f"; results written to {args.out}/" if args.out else ""))
    return 0
