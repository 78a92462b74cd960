"""TrainConfig validation: every bad field gives a clear ConfigError (a ValueError)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from trainers.torch_backend.config import ConfigError, TrainConfig

BAD = [
    ("dataset", dict(dataset="svhn"), "unknown dataset 'svhn'; choose one of mnist, fashion-mnist, cifar10"),
    ("data-root-empty", dict(data_root=""), "data_root must be a non-empty path"),
    ("download-not-bool", dict(download="yes"), "download must be True or False"),
    ("epochs-zero", dict(epochs=0), "epochs must be an integer in [1,"),
    ("epochs-float", dict(epochs=2.0), "epochs must be an integer"),
    ("epochs-bool", dict(epochs=True), "epochs must be an integer"),
    ("batch-size-one", dict(batch_size=1), "BatchNorm needs at least 2"),
    ("lr-zero", dict(lr=0.0), "lr must be a finite number > 0"),
    ("lr-nan", dict(lr=float("nan")), "lr must be a finite number"),
    ("momentum-one", dict(momentum=1.0), "momentum must be a finite number in [0, 1)"),
    ("lr-factor", dict(lr_factor=1.0), "lr_factor must be a finite number in (0, 1)"),
    ("lr-patience", dict(lr_patience=0), "lr_patience must be an integer in [1,"),
    ("seed-negative", dict(seed=-1), "seed must be an integer in [0,"),
    ("device", dict(device="gpu"), "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'"),
    ("num-threads", dict(num_threads=0), "num_threads must be an integer in [1,"),
    ("limit-train", dict(limit_train=1), "limit_train must be an integer in [2,"),
    ("optimizer", dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; choose one of sgd, adam, adamw"),
    ("weight-decay-negative", dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
    ("weight-decay-inf", dict(weight_decay=float("inf")), "weight_decay must be a finite number"),
    (
        "table-grad-scale",
        dict(table_grad_scale="inverse"),
        "unknown table_grad_scale 'inverse'; choose one of none, load, sqrt_load",
    ),
    ("model", dict(model="lenet"), "unknown model 'lenet'; choose one of paper-mlp, hashednets-mlp"),
    ("activation", dict(activation="swish"), "unknown activation 'swish'; choose one of elu, relu, tanh"),
    ("batch-norm-not-bool", dict(batch_norm=1), "batch_norm must be True, False or None"),
    ("output-activation", dict(output_activation="no"), "output_activation must be True, False or None"),
    ("dropout-one", dict(dropout=1.0), "dropout must be a finite number in [0, 1)"),
    ("input-dropout-negative", dict(input_dropout=-0.1), "input_dropout must be a finite number in [0, 1)"),
    ("loss", dict(loss="hinge"), "unknown loss 'hinge'; choose one of cross_entropy, mse"),
    ("val-fraction-one", dict(val_fraction=1.0), "val_fraction must be a finite number in [0, 1)"),
    ("val-fraction-str", dict(val_fraction="0.1"), "val_fraction must be a finite number"),
    ("val-split", dict(val_split="first"), "unknown val_split 'first'; choose one of last, random"),
    (
        "lr-metric",
        dict(lr_metric="test_accuracy"),
        "unknown lr_metric 'test_accuracy'; choose one of train_accuracy, val_loss, val_accuracy",
    ),
    (
        "val-metric-without-val-set",
        dict(lr_metric="val_loss"),
        "lr_metric 'val_loss' needs a validation set: set val_fraction (e.g. 0.1), or use lr_metric='train_accuracy'",
    ),
]


@pytest.mark.parametrize("kwargs,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_field_raises_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**kwargs)
    assert issubclass(ConfigError, ValueError)  # the CLI reports ValueErrors as bad input (exit 2)


def test_defaults_follow_the_paper():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.lr_factor, c.lr_patience) == (0.1, 0.9, 0.1, 4)
    assert c.device == "auto" and c.download is False and c.to_dict()["version"] == TrainConfig.SCHEMA_VERSION == 1
    assert (c.optimizer, c.weight_decay, c.table_grad_scale) == ("sgd", 0.0, "none")


def test_default_network_is_the_papers():
    c = TrainConfig()
    assert c.model_options() == {
        "activation": "elu",
        "batch_norm": True,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "output_activation": True,
    }
    assert (c.loss, c.val_fraction, c.lr_metric) == ("cross_entropy", 0.0, "train_accuracy")


def test_model_preset_fills_only_the_fields_left_none():
    h = TrainConfig(model="hashednets-mlp")
    assert h.model_options() == {
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.25,
        "input_dropout": 0.25,
        "output_activation": False,
    }
    assert h.activation is None  # stored as given: dataclasses.replace(h, model=...) switches the whole preset
    assert dataclasses.replace(h, model="paper-mlp").model_options() == TrainConfig().model_options()
    o = TrainConfig(model="hashednets-mlp", dropout=0.5, batch_norm=True, activation="tanh")
    assert o.model_options() == {
        "activation": "tanh",
        "batch_norm": True,
        "dropout": 0.5,
        "input_dropout": 0.25,
        "output_activation": False,
    }
    assert TrainConfig.from_dict(o.to_dict()) == o


def test_hashednets_recipe_is_plain_fields():
    c = TrainConfig.from_recipe("hashednets", epochs=3)
    assert (c.model, c.lr, c.momentum, c.batch_size, c.epochs) == ("hashednets-mlp", 0.01, 0.9, 50, 3)
    assert (c.val_fraction, c.val_split, c.lr_metric, c.lr_patience) == (0.1, "random", "val_loss", 3)
    assert TrainConfig.from_recipe("paper") == TrainConfig()
    with pytest.raises(ConfigError, match="unknown recipe 'hashed'; choose one of paper, hashednets"):
        TrainConfig.from_recipe("hashed")
    with pytest.raises(ConfigError, match="dropout must be"):
        TrainConfig.from_recipe("hashednets", dropout=2.0)


def test_old_results_config_still_loads():
    """A config dict written before the network fields existed is the paper's network."""
    old = {k: v for k, v in TrainConfig(epochs=3).to_dict().items() if k in OLD_FIELDS}
    assert TrainConfig.from_dict(old) == TrainConfig(epochs=3)


OLD_FIELDS = (
    "dataset data_root download verify_md5 epochs batch_size eval_batch_size lr momentum lr_factor "
    "lr_patience optimizer weight_decay table_grad_scale seed device num_threads limit_train "
    "deterministic version"
).split()


FIRST_FIELDS = (
    "dataset data_root download verify_md5 epochs batch_size eval_batch_size lr momentum lr_factor "
    "lr_patience seed device num_threads limit_train version"
).split()
"""The keys of the first TrainConfig dict; every later field is one of TrainConfig.ADDED_FIELDS."""


def test_first_config_dict_still_loads_and_added_fields_are_declared():
    first = {k: v for k, v in TrainConfig(epochs=3, seed=5).to_dict().items() if k in FIRST_FIELDS}
    assert TrainConfig.from_dict(first) == TrainConfig(epochs=3, seed=5)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(TrainConfig.ADDED_FIELDS) == fields - set(FIRST_FIELDS) and "version" not in fields
    assert list(TrainConfig().to_dict())[-1] == "version"  # the results files' layout is unchanged


@pytest.mark.parametrize(
    "version,match",
    [
        (
            2,
            "TrainConfig dict version 2 is not supported; this hashlab reads version 1; the dict was written by a "
            "newer hashlab: upgrade hashlab",
        ),
        (0, "TrainConfig dict version 0 is not supported.*the only one"),
        (None, "TrainConfig dict version None is not supported"),
    ],
)
def test_from_dict_refuses_an_unknown_version(version, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "version": version})
    with pytest.raises(ConfigError, match="version 2 is not supported"):  # before the fields a newer one may have
        TrainConfig.from_dict({**TrainConfig().to_dict(), "version": 2, "new_field": 1})


def test_dict_round_trip_and_unknown_keys():
    c = TrainConfig(dataset="cifar10", epochs=3, device="cuda:1", limit_train=100)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 4


def test_config_import_needs_no_torch():
    code = (
        "import sys, trainers.torch_backend.config, hashlab.cli as c; c.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
