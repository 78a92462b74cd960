"""``hashlab train`` end to end: build an index file, train on a subset of real MNIST, read the results."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from hashlab.cli import main
from tests.conftest import run_module


def hashlab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_module("hashlab.cli", *args, env=env, timeout=300)


@pytest.mark.slow
def test_build_then_train_in_subprocesses(tmp_path, data_root):
    path, out = tmp_path / "map.safetensors", tmp_path / "results.json"
    built = hashlab("build", "--kind", "dirichlet", "--alpha", "1", "--table-size", "1000", "-o", str(path))
    assert built.returncode == 0, built.stderr
    env = os.environ | {"HASHLAB_DATA_ROOT": str(data_root)}  # the root comes from the environment here
    flags = ["--dataset", "mnist", "--epochs", "1", "--limit-train", "2000", "--batch-size", "100", "--device", "cpu"]
    flags += ["--num-threads", "1", "--seed", "3", "--out", str(out), "--no-progress"]
    run = hashlab("train", str(path), *flags, env=env)
    assert run.returncode == 0, run.stderr
    res = json.loads(out.read_text())
    assert f"test accuracy: {res['test_accuracy']:.4f}" in run.stdout
    assert res["config"]["seed"] == 3 and res["config"]["epochs"] == 1 and res["data"]["train_size"] == 2000
    assert res["data"]["root"] == str(data_root) and res["index_file"]["spec"]["kind"] == "dirichlet"
    assert res["test_accuracy"] > 0.5


def test_missing_data_root_exits_3_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HASHLAB_DATA_ROOT", raising=False)
    assert main(["build", "--kind", "modulus", "--table-size", "50", "-o", str(tmp_path / "m.safetensors")]) == 0
    assert main(["train", str(tmp_path / "m.safetensors"), "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert "hashlab train: error: no data root: pass --data-root DIR" in err and "HASHLAB_DATA_ROOT" in err


def test_invalid_flag_values_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "m.safetensors"), "--batch-size", "1"]) == 2
    assert "batch_size must be an integer in [2," in capsys.readouterr().err


def test_missing_index_file_exits_3(tmp_path, data_root, capsys):
    assert main(["train", str(tmp_path / "absent.safetensors"), "--data-root", str(data_root)]) == 3
    assert "does not exist; create it with `hashlab build" in capsys.readouterr().err


def test_optimizer_flags_come_from_the_config(capsys):
    from hashlab.cli import build_parser

    args = build_parser().parse_args(
        ["train", "m.safetensors", "--optimizer", "adamw", "--weight-decay", "0.01", "--table-grad-scale", "sqrt_load"]
    )
    assert (args.optimizer, args.weight_decay, args.table_grad_scale) == ("adamw", 0.01, "sqrt_load")
    with pytest.raises(SystemExit) as exc:
        main(["train", "m.safetensors", "--optimizer", "lion"])
    assert exc.value.code == 2
    assert "invalid choice: 'lion'" in capsys.readouterr().err


def test_network_and_validation_flags_come_from_the_config(tmp_path, capsys):
    from hashlab.cli import build_parser
    from hashlab.commands.dataclass_args import dataclass_from_args
    from trainers.torch_backend.config import TrainConfig

    args = build_parser().parse_args(
        [
            "train",
            "m.safetensors",
            "--model",
            "hashednets-mlp",
            "--dropout",
            "0.5",
            "--batch-norm",
            "--val-fraction",
            "0.1",
            "--val-split",
            "random",
            "--lr-metric",
            "val_loss",
            "--loss",
            "mse",
        ]
    )
    cfg = dataclass_from_args(TrainConfig, args)
    assert cfg.model_options() == {
        "activation": "relu",
        "batch_norm": True,
        "dropout": 0.5,
        "input_dropout": 0.25,
        "output_activation": False,
    }
    assert (cfg.val_fraction, cfg.val_split, cfg.lr_metric, cfg.loss) == (0.1, "random", "val_loss", "mse")
    assert dataclass_from_args(TrainConfig, build_parser().parse_args(["train", "m.safetensors"])) == TrainConfig()
    assert main(["train", str(tmp_path / "m.safetensors"), "--lr-metric", "val_loss"]) == 2
    assert "lr_metric 'val_loss' needs a validation set: set val_fraction" in capsys.readouterr().err


def _two_maps(tmp_path):
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    assert (
        main(
            ["build", "--kind", "dirichlet", "--alpha", "1", "--table-size", "500", "--seed", "1", "-o", str(paths[0])]
        )
        == 0
    )
    assert (
        main(
            [
                "build",
                "--kind",
                "uniform",
                "--sparsity",
                "0.5",
                "--table-size",
                "500",
                "--seed",
                "2",
                "-o",
                str(paths[1]),
            ]
        )
        == 0
    )
    return paths


@pytest.mark.slow
def test_several_files_train_as_one_group_with_a_results_file_each(tmp_path, data_root, capsys):
    paths = _two_maps(tmp_path)
    out = tmp_path / "results"
    common = ["--data-root", str(data_root), "--epochs", "1", "--limit-train", "600", "--batch-size", "100"]
    common += ["--device", "cpu", "--num-threads", "1", "--no-progress"]
    assert main(["train", *map(str, paths), *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 models trained as one group" in printed
    group = [json.loads((out / f"{p.stem}.json").read_text()) for p in paths]
    assert main(["train", str(paths[1]), *common, "--out", str(tmp_path / "solo.json")]) == 0
    solo = json.loads((tmp_path / "solo.json").read_text())
    assert group[1]["index_file"] == solo["index_file"] and group[1]["config"] == solo["config"]
    assert group[1]["test_accuracy"] == pytest.approx(solo["test_accuracy"], abs=3e-4)


def test_group_usage_errors_exit_2_before_training(tmp_path, data_root, capsys):
    paths = _two_maps(tmp_path)
    args = ["train", *map(str, paths), "--data-root", str(data_root), "--device", "cpu"]
    assert main(args + ["--checkpoint", str(tmp_path / "c.pt")]) == 2
    assert "--checkpoint saves one model's training state" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(args + ["--out", str(tmp_path / "file")]) == 2
    assert "with several index files --out names a directory" in capsys.readouterr().err
    assert main(args + ["--optimizer", "adam"]) == 2
    assert "train_group supports optimizer='sgd' only" in capsys.readouterr().err
    other = tmp_path / "sub" / "a.safetensors"
    other.parent.mkdir()
    other.write_bytes(paths[0].read_bytes())
    assert main(["train", str(paths[0]), str(other), "--data-root", str(data_root), "--out", str(tmp_path / "o")]) == 2
    assert "names repeat (a)" in capsys.readouterr().err
