"""TrainConfig validation: every bad field gives a clear ConfigError (a ValueError)."""
from __future__ import annotations

import dataclasses
import re
import sys
import subprocess

import pytest

from trainers.torch_backend.config import ConfigError, TrainConfig

BAD = [
    ("version", dict(version=2), "version 2 is not supported"),
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
    ("table-grad-scale", dict(table_grad_scale="inverse"),
     "unknown table_grad_scale 'inverse'; choose one of none, load, sqrt_load"),
]


@pytest.mark.parametrize("kwargs,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_field_raises_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig(**kwargs)
    assert issubclass(ConfigError, ValueError)  # the CLI reports ValueErrors as bad input (exit 2)


def test_defaults_follow_the_paper():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.lr_factor, c.lr_patience) == (0.1, 0.9, 0.1, 4)
    assert c.device == "auto" and c.download is False and c.version == 1
    assert (c.optimizer, c.weight_decay, c.table_grad_scale) == ("sgd", 0.0, "none")


def test_dict_round_trip_and_unknown_keys():
    c = TrainConfig(dataset="cifar10", epochs=3, device="cuda:1", limit_train=100)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match=r"unknown TrainConfig field\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 4


def test_config_import_needs_no_torch():
    code = "import sys, trainers.torch_backend.config, hashlab.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
