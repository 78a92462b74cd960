"""Typed, validated training configuration (no torch import: the CLI derives its flags from it)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hashlab.configs import check_bool, check_int, check_real, versioned_from_dict

__all__ = [
    "TrainConfig",
    "ConfigError",
    "DATASET_NAMES",
    "OPTIMIZERS",
    "TABLE_GRAD_SCALES",
    "ACTIVATIONS",
    "LOSSES",
    "VAL_SPLITS",
    "LR_METRICS",
    "MODEL_PRESETS",
    "RECIPES",
]

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw")
TABLE_GRAD_SCALES = ("none", "load", "sqrt_load", "load_hot", "load_cold")
ACTIVATIONS = ("elu", "relu", "tanh", "sigmoid", "gelu")
LOSSES = ("cross_entropy", "mse")
VAL_SPLITS = ("last", "random")
LR_METRICS = ("train_accuracy", "val_loss", "val_accuracy")

MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Chang & Lipson 2018, section 4: Linear-ELU-BN on every layer, the last one included
    "paper-mlp": {
        "activation": "elu",
        "batch_norm": True,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "output_activation": True,
    },
    # Chen et al. 2015 as ported by jfainberg/hashed_nets (mnist.py): dropout 0.25 on the input and after
    # every hidden ReLU, no BatchNorm, plain logits out (log-softmax + NLL = softmax cross-entropy)
    "hashednets-mlp": {
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.25,
        "input_dropout": 0.25,
        "output_activation": False,
    },
}
"""The network fields each ``TrainConfig.model`` stands for (a field left ``None`` takes the preset's value)."""

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},  # every TrainConfig default is the paper's
    # jfainberg/hashed_nets mnist.py defaults: SGD lr 0.01 momentum 0.9, batch 50, 50 epochs, a random 10 % of
    # the training set held out, LR / 10 when the validation loss has not improved for 3 epochs (torch's
    # ReduceLROnPlateau(patience=2)); no weight decay
    "hashednets": {
        "model": "hashednets-mlp",
        "lr": 0.01,
        "momentum": 0.9,
        "batch_size": 50,
        "epochs": 50,
        "val_fraction": 0.1,
        "val_split": "random",
        "lr_metric": "val_loss",
        "lr_patience": 3,
    },
}
"""Whole training recipes as TrainConfig fields, for :meth:`TrainConfig.from_recipe`."""
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_MAX_SEED = 2**63 - 1


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train an ArbNet on an image-classification dataset (Chang & Lipson 2018, section 4).

    Defaults follow the paper: SGD with learning rate 0.1 and momentum 0.9, learning rate
    divided by 10 after 4 epochs without a gain in *training* accuracy, no validation set.

    Args:
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        data_root: torchvision data root (holding ``MNIST/raw``, ``FashionMNIST/raw`` or
            ``cifar-10-batches-py``). ``None``: the environment variable ``HASHLAB_DATA_ROOT``.
        download: let torchvision download a missing dataset into ``data_root``.
        verify_md5: check CIFAR-10 files against the official md5s (torchvision's check).
            ``False`` reads any files in the official pickle format (own or test data).
        epochs: training epochs, >= 1.
        batch_size: training mini-batch size, >= 2 (BatchNorm needs two samples).
        eval_batch_size: batch size of the test-set evaluation (memory only, not results).
        lr: initial SGD learning rate, > 0.
        momentum: SGD momentum, in [0, 1).
        lr_factor: factor applied to the learning rate on a plateau, in (0, 1).
        lr_patience: number of consecutive epochs without a gain in ``lr_metric`` after
            which the learning rate is multiplied by ``lr_factor``, >= 1.
        optimizer: ``"sgd"`` (with ``momentum``; the paper's, default), ``"adam"`` or ``"adamw"``
            (torch's, default betas; ``momentum`` is then unused; Adam usually wants
            ``lr`` about 1e-3). The plateau schedule above applies to all three.
        weight_decay: L2 penalty (``"sgd"``, ``"adam"``) or decoupled decay (``"adamw"``) on
            every parameter (tables, biases, BatchNorm), >= 0. Default 0 (the paper's).
        table_grad_scale: ``"none"`` (the paper's), ``"load"`` or ``"sqrt_load"``: multiply each
            table entry's gradient by ``mean_load / load`` or its square root (load = number of
            non-zeroed weights reading the entry; ``mean_load`` over the entries read at all);
            ``"load_hot"``: ``min(mean_load / load, 1)`` (only entries above the mean load are
            scaled, down); ``"load_cold"``: ``max(mean_load / load, 1)`` (only entries below the
            mean, up); the two multiply to ``"load"``. See
            :meth:`~trainers.torch_backend.models.ArbMLP.set_table_grad_scale` and
            :func:`~trainers.torch_backend.functional.load_scale`.
        seed: seeds the model initialisation, the shuffling and a ``"random"`` validation split,
            in [0, 2**63).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        num_threads: CPU threads torch uses during training (restored afterwards); ``None``
            keeps torch's default (one per core). Default 1: on a 2-core CPU the paper's MNIST
            MLP trains only ~1.2x faster with 2 threads on an idle machine, but ~10x slower
            with 2 threads when another process competes for the cores.
        limit_train: if set, train on the first ``limit_train`` training samples only (quick runs).
        deterministic: call ``torch.use_deterministic_algorithms(True)`` during training (and set
            ``CUBLAS_WORKSPACE_CONFIG`` on CUDA); ops without a deterministic kernel then raise.
            See docs/TRAINING.md, "Determinism".
        model: the network preset, ``"paper-mlp"`` (default) or ``"hashednets-mlp"``; it gives
            the value of each of the five network fields below that is left ``None``
            (:data:`MODEL_PRESETS`, :meth:`model_options`).
        activation: ``"elu"`` (paper-mlp), ``"relu"`` (hashednets-mlp), ``"tanh"``,
            ``"sigmoid"`` or ``"gelu"``, after every hidden layer (and the last one if
            ``output_activation``); ``None``: the preset's.
        batch_norm: a ``BatchNorm1d`` after each activation (paper-mlp ``True``,
            hashednets-mlp ``False``); ``None``: the preset's.
        dropout: dropout probability on every hidden layer's output (after activation and
            BatchNorm), in [0, 1) (paper-mlp 0, hashednets-mlp 0.25); ``None``: the preset's.
        input_dropout: dropout probability on the input pixels, in [0, 1) (paper-mlp 0,
            hashednets-mlp 0.25); ``None``: the preset's.
        output_activation: the last layer is followed by the activation (and BatchNorm) as
            every other layer (paper-mlp ``True``), or outputs plain logits (hashednets-mlp
            ``False``); ``None``: the preset's.
        loss: ``"cross_entropy"`` (softmax cross-entropy, i.e. log-softmax + NLL: both papers)
            or ``"mse"`` (squared error between the logits and the one-hot label, summed over
            classes, averaged over samples).
        val_fraction: fraction of the (``limit_train``-limited) training set held out as a
            validation set, in [0, 1); 0 (default, the paper's): none. HashedNets: 0.1.
        val_split: which samples are held out: ``"last"`` (the last ``round(val_fraction * N)``
            training samples, in file order) or ``"random"`` (a random subset drawn with
            ``numpy.random.default_rng(seed)``). Deterministic either way; the two parts are
            disjoint.
        lr_metric: what the plateau schedule watches: ``"train_accuracy"`` (the paper's),
            ``"val_loss"`` (HashedNets; a gain is a strict decrease) or ``"val_accuracy"``;
            the ``val_*`` metrics need ``val_fraction > 0``.
        stop_after_drops: the stopping rule: end training once ``stop_patience`` epochs have run
            since the ``stop_after_drops``-th drop of the plateau schedule (the first epoch at the
            lowered rate included); ``epochs`` is then the cap (:func:`~trainers.torch_backend.results.stop_rule_met`).
            ``None`` (default): train all ``epochs``. The reproduction's converged runs use 2
            (both of the main job's drops) with a cap of 60.
        stop_patience: epochs trained from that drop on before the rule stops, >= 1
            (default 4, the schedule's own patience).

    Attributes:
        SCHEMA_VERSION: layout version of the dict of :meth:`to_dict` (its ``"version"`` key), the
            form stored in results files and checkpoints; :meth:`from_dict` reads this version
            only. Raised when a change to the fields would make an older trainer misread a dict; a
            field added with a default that keeps old dicts' meaning is added within the version.
        ADDED_FIELDS: fields added within version 1: defaults for older dicts, i.e. the value a
            dict written before the field existed means (the training it recorded); :meth:`from_dict`
            fills them in where a dict lacks them.

    Use :meth:`from_recipe` for a whole recipe (:data:`RECIPES`), e.g.
    ``TrainConfig.from_recipe("hashednets", data_root=...)``.

    Raises:
        ConfigError: on any invalid field (a :class:`ValueError`).
    """

    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = field(
        default="mnist", metadata={"help": "image dataset, read with torchvision from --data-root"}
    )
    data_root: str | None = field(default=None, metadata={"help": "torchvision data root (else $HASHLAB_DATA_ROOT)"})
    download: bool = field(
        default=False, metadata={"help": "let torchvision download a missing dataset into the data root"}
    )
    verify_md5: bool = field(
        default=True,
        metadata={
            "help": "check CIFAR-10 files against the official md5s (--no-verify-md5 reads own files in that format)"
        },
    )
    epochs: int = field(default=20, metadata={"help": "training epochs"})
    batch_size: int = field(default=200, metadata={"help": "training mini-batch size"})
    eval_batch_size: int = field(default=1000, metadata={"help": "test-set evaluation batch size (memory only)"})
    lr: float = field(
        default=0.1, metadata={"help": "initial learning rate (paper, SGD: 0.1; Adam usually wants 1e-3)"}
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (paper: 0.9)"})
    lr_factor: float = field(
        default=0.1, metadata={"help": "learning-rate factor on a plateau of --lr-metric (paper: 0.1)"}
    )
    lr_patience: int = field(
        default=4,
        metadata={
            "help": "epochs without a gain in --lr-metric before the learning rate drops (paper: 4, HashedNets: 3)"
        },
    )
    optimizer: Literal["sgd", "adam", "adamw"] = field(
        default="sgd",
        metadata={"help": "sgd (with --momentum; paper), adam or adamw; the plateau schedule drives all three"},
    )
    weight_decay: float = field(
        default=0.0, metadata={"help": "L2 penalty (sgd, adam) or decoupled decay (adamw) on every parameter"}
    )
    table_grad_scale: Literal["none", "load", "sqrt_load", "load_hot", "load_cold"] = field(
        default="none",
        metadata={
            "help": "multiply each table entry's gradient by mean_load/load (load), its sqrt (sqrt_load), "
            "min(mean_load/load, 1) (load_hot: only entries above the mean load) or max(mean_load/load, 1) "
            "(load_cold: only entries below it)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and the shuffling"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA if available), cpu, cuda, cuda:N or mps"})
    num_threads: int | None = field(default=1, metadata={"help": "CPU threads for torch (default: torch's choice)"})
    limit_train: int | None = field(
        default=None, metadata={"help": "train on the first N training samples only (quick runs)"}
    )
    deterministic: bool = field(
        default=False,
        metadata={"help": "torch.use_deterministic_algorithms(True) during training (docs/TRAINING.md, Determinism)"},
    )
    model: Literal["paper-mlp", "hashednets-mlp"] = field(
        default="paper-mlp",
        metadata={
            "help": "network preset: paper-mlp (Linear-ELU-BN on every layer) or hashednets-mlp (ReLU, dropout 0.25 "
            "on input and hidden layers, no BN, plain logits); the next five flags override it"
        },
    )
    activation: Literal["elu", "relu", "tanh", "sigmoid", "gelu"] | None = field(
        default=None, metadata={"help": "activation after each layer (default: the --model preset's)"}
    )
    batch_norm: bool | None = field(
        default=None, metadata={"help": "BatchNorm1d after each activation (default: the --model preset's)"}
    )
    dropout: float | None = field(
        default=None,
        metadata={"help": "dropout probability on hidden layers, in [0, 1) (default: the --model preset's)"},
    )
    input_dropout: float | None = field(
        default=None, metadata={"help": "dropout probability on the input, in [0, 1) (default: the --model preset's)"}
    )
    output_activation: bool | None = field(
        default=None,
        metadata={"help": "activation (and BN) after the last layer too, else plain logits (default: the preset's)"},
    )
    loss: Literal["cross_entropy", "mse"] = field(
        default="cross_entropy",
        metadata={"help": "cross_entropy (softmax; = log-softmax + NLL) or mse (squared error to the one-hot label)"},
    )
    val_fraction: float = field(
        default=0.0,
        metadata={"help": "hold out this fraction of the training set as a validation set (HashedNets: 0.1)"},
    )
    val_split: Literal["last", "random"] = field(
        default="last", metadata={"help": "hold out the last samples or a random subset drawn from --seed"}
    )
    lr_metric: Literal["train_accuracy", "val_loss", "val_accuracy"] = field(
        default="train_accuracy",
        metadata={
            "help": "what the plateau schedule watches: train_accuracy (paper), val_loss (HashedNets) or val_accuracy"
        },
    )
    stop_after_drops: int | None = field(
        default=None,
        metadata={
            "help": "stop --stop-patience epochs after the N-th drop of the learning rate (--epochs is then the "
            "cap; default: train all --epochs)"
        },
    )
    stop_patience: int = field(
        default=4, metadata={"help": "epochs trained from the --stop-after-drops-th drop on before training stops"}
    )

    SCHEMA_VERSION: ClassVar[int] = 1
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {
        "deterministic": False,
        "optimizer": "sgd",
        "weight_decay": 0.0,
        "table_grad_scale": "none",
        "model": "paper-mlp",
        "activation": None,
        "batch_norm": None,
        "dropout": None,
        "input_dropout": None,
        "output_activation": None,
        "loss": "cross_entropy",
        "val_fraction": 0.0,
        "val_split": "last",
        "lr_metric": "train_accuracy",
        "stop_after_drops": None,
        "stop_patience": 4,
    }

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root):
            raise ConfigError(f"data_root must be a non-empty path string or None, got {self.data_root!r}")
        for name in ("download", "verify_md5", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_int("epochs", self.epochs, 1, 10**6, "e.g. 5")
        _check_int("batch_size", self.batch_size, 2, 10**7, "BatchNorm needs at least 2 samples per batch")
        _check_int("eval_batch_size", self.eval_batch_size, 1, 10**7, "e.g. 1000")
        _check_int("lr_patience", self.lr_patience, 1, 10**6, "the paper uses 4")
        if self.stop_after_drops is not None:
            _check_int("stop_after_drops", self.stop_after_drops, 1, 10**6, "e.g. 2, or None to train all epochs")
        _check_int("stop_patience", self.stop_patience, 1, 10**6, "e.g. 4")
        _check_int("seed", self.seed, 0, _MAX_SEED, "any integer in [0, 2**63)")
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, 1, 4096, "or None for torch's default")
        if self.limit_train is not None:
            _check_int("limit_train", self.limit_train, 2, 10**9, "or None for the whole training set")
        check_real("lr", self.lr, 0, None, ConfigError, "the paper uses 0.1", lo_open=True)
        check_real("momentum", self.momentum, 0, 1, ConfigError, "the paper uses 0.9", hi_open=True)
        check_real("lr_factor", self.lr_factor, 0, 1, ConfigError, "0.1 divides by 10", lo_open=True, hi_open=True)
        self._check_optimizer()
        self._check_model()
        self._check_validation()
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    def _check_optimizer(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)} (sgd is the paper's)"
            )
        check_real("weight_decay", self.weight_decay, 0, None, ConfigError, "0 = none, the paper's")
        if self.table_grad_scale not in TABLE_GRAD_SCALES:
            raise ConfigError(
                f"unknown table_grad_scale {self.table_grad_scale!r}; choose one of "
                f"{', '.join(TABLE_GRAD_SCALES)} ('none' is the paper's)"
            )

    def _check_model(self) -> None:
        _check_choice("model", self.model, tuple(MODEL_PRESETS), "('paper-mlp' is the paper's)")
        if self.activation is not None:
            _check_choice("activation", self.activation, ACTIVATIONS, "or None for the model preset's")
        for name in ("batch_norm", "output_activation"):
            if getattr(self, name) is not None:
                check_bool(name, getattr(self, name), ConfigError, expected="True, False or None (the model preset's)")
        for name in ("dropout", "input_dropout"):
            if getattr(self, name) is not None:
                check_real(
                    name,
                    getattr(self, name),
                    0,
                    1,
                    ConfigError,
                    "HashedNets uses 0.25; or None for the model preset's",
                    hi_open=True,
                )
        _check_choice("loss", self.loss, LOSSES, "('cross_entropy' is both papers')")

    def _check_validation(self) -> None:
        check_real(
            "val_fraction",
            self.val_fraction,
            0,
            1,
            ConfigError,
            "0 = no validation set, the paper's; HashedNets holds out 0.1",
            hi_open=True,
        )
        _check_choice("val_split", self.val_split, VAL_SPLITS, "(which training samples are held out)")
        _check_choice("lr_metric", self.lr_metric, LR_METRICS, "('train_accuracy' is the paper's)")
        if self.lr_metric.startswith("val_") and self.val_fraction == 0:
            raise ConfigError(
                f"lr_metric {self.lr_metric!r} needs a validation set: set val_fraction "
                "(e.g. 0.1), or use lr_metric='train_accuracy'"
            )

    def model_options(self) -> dict[str, Any]:
        """The network fields with ``None`` resolved from the ``model`` preset (:data:`MODEL_PRESETS`).

        Returns:
            ``{"activation", "batch_norm", "dropout", "input_dropout", "output_activation"}``,
            the keyword arguments of :class:`~trainers.torch_backend.models.ArbMLP` beyond the map.
        """
        preset = MODEL_PRESETS[self.model]
        return {k: preset[k] if getattr(self, k) is None else getattr(self, k) for k in preset}

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """The config of recipe ``name`` (a key of :data:`RECIPES`), with ``overrides`` on top.

        Raises:
            ConfigError: on an unknown recipe or any invalid field.
        """
        if name not in RECIPES:
            raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field and ``"version"`` (:attr:`SCHEMA_VERSION`), the form stored in
        results files and checkpoints."""
        return {**dataclasses.asdict(self), "version": self.SCHEMA_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`, and the one place where an older dict is migrated.

        A dict of version 1 (:attr:`SCHEMA_VERSION`; a dict without ``"version"`` is read as 1)
        gets the defaults of the :attr:`ADDED_FIELDS` it lacks, so an older results file or
        checkpoint reads as the training it recorded.

        Raises:
            ConfigError: on another version (a newer one: upgrade hashlab), keys that are not
                fields, or an invalid field.
        """
        return versioned_from_dict(cls, d, cls.SCHEMA_VERSION, cls.ADDED_FIELDS, ConfigError)


def _check_int(name: str, value: Any, lo: int, hi: int, hint: str) -> None:
    check_int(name, value, lo, hi, ConfigError, hint)


def _check_choice(name: str, value: Any, choices: tuple[str, ...], hint: str) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)} {hint}")
