"""``hashlab train --checkpoint``: SIGKILL after the first checkpoint, rerun, identical results (CPU);
a checkpoint of another configuration is refused naming the difference."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hashlab import Architecture, HashSpec, build_map, save_index_file
from hashlab.cli import main
from tests.conftest import REPO
from trainers.torch_backend.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, load_checkpoint
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.results import TrainResult
from trainers.torch_backend.training import train

EPOCHS = 4
FLAGS = [
    "--epochs",
    str(EPOCHS),
    "--limit-train",
    "6000",
    "--batch-size",
    "50",
    "--device",
    "cpu",
    "--seed",
    "5",
    "--lr-patience",
    "1",
    "--no-progress",
]  # patience 1: the LR schedule state matters within 4 epochs


def _same(a: TrainResult, b: TrainResult) -> None:
    strip = lambda es: [dataclasses.replace(e, wall_time_s=0.0) for e in es]  # noqa: E731
    assert strip(a.epochs) == strip(b.epochs)
    assert (a.test_accuracy, a.test_loss) == (b.test_accuracy, b.test_loss)


@pytest.fixture(scope="module")
def index_file(tmp_path_factory):
    imap = build_map(HashSpec(kind="uniform", table_size=300, seed=2, sign=True), Architecture((784, 32, 10)))
    return save_index_file(imap, tmp_path_factory.mktemp("ck") / "map.safetensors")


@pytest.mark.slow
def test_sigkilled_training_resumes_to_identical_results(tmp_path, data_root, index_file):
    config = TrainConfig(
        data_root=str(data_root), epochs=EPOCHS, limit_train=6000, batch_size=50, device="cpu", seed=5, lr_patience=1
    )
    reference = train(index_file, config, progress=False)

    ck, out = tmp_path / "run" / "train.ckpt", tmp_path / "run" / "results.json"
    argv = ["train", str(index_file), "--data-root", str(data_root), *FLAGS, "--checkpoint", str(ck), "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashlab.cli", *argv],
        cwd=REPO,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 240
    while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    state = torch.load(ck, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and 1 <= state["epoch"] < EPOCHS and not out.exists()

    assert main(argv) == 0  # the same command again: resumes from the checkpoint
    resumed = TrainResult.from_dict(json.loads(out.read_text()))
    _same(resumed, reference)
    assert torch.load(ck, weights_only=True)["epoch"] == EPOCHS


@pytest.mark.slow
def test_checkpoint_of_another_config_is_refused(tmp_path, data_root, index_file, capsys):
    ck = tmp_path / "train.ckpt"
    config = TrainConfig(data_root=str(data_root), epochs=1, limit_train=500, batch_size=50, device="cpu")
    first = train(index_file, config, progress=False, checkpoint=ck)
    _same(train(index_file, config, progress=False, checkpoint=ck), first)  # finished: resumes at the end
    with pytest.raises(CheckpointError, match=r"lr: checkpoint 0\.1, now 0\.05; seed: checkpoint 0, now 1"):
        train(index_file, TrainConfig.from_dict({**config.to_dict(), "lr": 0.05, "seed": 1}), checkpoint=ck)
    assert (
        main(
            [
                "train",
                str(index_file),
                "--data-root",
                str(data_root),
                "--epochs",
                "2",
                "--limit-train",
                "500",
                "--batch-size",
                "50",
                "--device",
                "cpu",
                "--checkpoint",
                str(ck),
            ]
        )
        == 3
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epochs: checkpoint 1, now 2" in err
    other = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=301), Architecture((784, 32, 10))), tmp_path / "other.safetensors"
    )
    with pytest.raises(CheckpointError, match="another index file"):
        train(other, config, checkpoint=ck)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        train(index_file, config, checkpoint=tmp_path / "junk.ckpt")


@pytest.mark.slow
def test_deterministic_flag_keeps_cpu_results_and_restores_the_global_setting(data_root, index_file):
    config = TrainConfig(data_root=str(data_root), epochs=1, limit_train=500, batch_size=50, device="cpu")
    plain = train(index_file, config, progress=False)
    assert not torch.are_deterministic_algorithms_enabled()
    det = train(index_file, TrainConfig.from_dict({**config.to_dict(), "deterministic": True}), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()
    _same(det, plain)


def test_checkpoint_config_is_read_through_the_config_migration(tmp_path):
    """The saved config goes through TrainConfig.from_dict: a first-layout dict (no later fields) is this run's
    config; one of an unknown version is refused with the reason."""
    config = TrainConfig(epochs=2, device="cpu")
    first = {k: v for k, v in config.to_dict().items() if k not in TrainConfig.ADDED_FIELDS}
    ck = tmp_path / "c.ckpt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": first, "index_file": "ab"}, ck)
    assert load_checkpoint(ck, config, "ab")["config"] == first
    with pytest.raises(CheckpointError, match="deterministic: checkpoint False, now True"):
        load_checkpoint(ck, dataclasses.replace(config, deterministic=True), "ab")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": {**first, "version": 2},
            "index_file": "ab",
        },
        ck,
    )
    with pytest.raises(CheckpointError, match="cannot read .*TrainConfig dict version 2 is not supported.*upgrade"):
        load_checkpoint(ck, config, "ab")
