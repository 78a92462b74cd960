"""The network and recipe as configuration: defaults unchanged, HashedNets, validation split."""

from __future__ import annotations

import hashlib
import math
import platform

import pytest
import torch

from hashlab import Architecture, HashSpec, build_map, save_index_file
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.group import train_group
from trainers.torch_backend.training import mse_loss, train

from .test_training import scheduled_lrs


def config(data_root, **kw) -> TrainConfig:
    return TrainConfig(**({"data_root": str(data_root), "device": "cpu", "num_threads": 1} | kw))


@pytest.fixture(scope="module")
def small_map(tmp_path_factory):
    imap = build_map(HashSpec(kind="uniform", table_size=500, seed=7, sign=True), Architecture.parse("784-32-10"))
    return save_index_file(imap, tmp_path_factory.mktemp("maps") / "m.safetensors")


# sha256 over (key, bytes) of the final model state of the run below, computed with the code before the
# network became configuration (commit 4fd44cf) on this machine type; float kernels differ across CPUs (an AMD
# EPYC with AVX512 gives another state than the Intel Xeon it was recorded on) and torch versions, hence the gate
PRE_CHANGE_STATE_SHA256 = "55d3666bd024ae3fe8c6319daae838c8129b2fc32a41c1453e05fdd338856786"
PRE_CHANGE_PLATFORM = ("2.14.1+cu130", "x86_64", "AVX512", "GenuineIntel")


def cpu_vendor() -> str:
    """The CPU vendor (``vendor_id`` of /proc/cpuinfo, e.g. GenuineIntel, AuthenticAMD), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "unknown")
    except OSError:
        return "unknown"


PRE_CHANGE_TEST_ACCURACY = 0.6688


@pytest.mark.slow
def test_default_config_trains_bit_identically_to_the_code_before(small_map, data_root, tmp_path):
    here = (torch.__version__, platform.machine(), torch.backends.cpu.get_cpu_capability(), cpu_vendor())
    res = train(
        small_map,
        config(data_root, epochs=2, batch_size=100, limit_train=600, seed=5),
        progress=False,
        checkpoint=tmp_path / "ck.pt",
    )
    assert set(res.epochs[0].to_dict()) == {"epoch", "train_accuracy", "train_loss", "lr", "wall_time_s"}  # no val
    assert "val_size" not in res.data.to_dict() and res.data.train_size == 600
    if here != PRE_CHANGE_PLATFORM:
        pytest.skip(f"the recorded fingerprint is of {PRE_CHANGE_PLATFORM}, this is {here}")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    assert h.hexdigest() == PRE_CHANGE_STATE_SHA256
    assert res.test_accuracy == PRE_CHANGE_TEST_ACCURACY


def reference_lrs_min(losses, lr, factor, patience):
    """LR used in each epoch: divide after ``patience`` consecutive epochs without a strict decrease."""
    out, best, bad = [], math.inf, 0
    for loss in losses:
        out.append(lr)
        best, bad = (loss, 0) if loss < best else (best, bad + 1)
        if bad == patience:
            lr, bad = lr * factor, 0
    return out


VAL_LOSS_SCHEDULES = [  # (id, validation loss per epoch, lr_patience)
    ("three-flat-epochs", [1.0, 0.8, 0.8, 0.9, 0.8, 0.7], 3),
    ("decreasing-keeps-lr", [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], 3),
    ("equal-is-no-gain", [0.5] * 8, 2),
    ("rise-then-fall", [0.5, 0.6, 0.7, 0.4, 0.5, 0.6, 0.7, 0.8], 3),
]


@pytest.mark.parametrize("losses,patience", [c[1:] for c in VAL_LOSS_SCHEDULES], ids=[c[0] for c in VAL_LOSS_SCHEDULES])
def test_lr_drops_after_patience_epochs_without_a_lower_val_loss(losses, patience):
    used = scheduled_lrs(TrainConfig(lr_patience=patience, val_fraction=0.1, lr_metric="val_loss"), losses)
    assert used == pytest.approx(reference_lrs_min(losses, 0.1, 0.1, patience), rel=1e-12)
    assert reference_lrs_min([0.5] * 4, 0.1, 0.1, 3) == pytest.approx([0.1, 0.1, 0.1, 0.1])
    assert reference_lrs_min([0.5] * 5, 0.1, 0.1, 3)[-1] == pytest.approx(0.01)  # epochs 2-4 flat -> epoch 5


@pytest.mark.slow
def test_hashednets_recipe_on_real_mnist_records_validation(small_map, data_root):
    cfg = TrainConfig.from_recipe(
        "hashednets", data_root=str(data_root), device="cpu", num_threads=1, epochs=4, limit_train=1000, lr_patience=1
    )
    res = train(small_map, cfg, progress=False)
    assert res.data.train_size == 900 and res.data.val_size == 100
    assert res.data.validation == {"fraction": 0.1, "split": "random"}
    assert res.model.options == {
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.25,
        "input_dropout": 0.25,
        "output_activation": False,
    }
    assert res.config.model == "hashednets-mlp" and res.config.dropout is None
    ep = res.epochs
    assert all(0 <= e.val_accuracy <= 1 and math.isfinite(e.val_loss) for e in ep)
    assert [e.lr for e in ep] == pytest.approx(reference_lrs_min([e.val_loss for e in ep], 0.01, 0.1, 1))
    assert res.test_accuracy > 0.5  # 10 classes: chance is 0.1


@pytest.mark.slow
def test_dense_baseline_of_any_width_trains_through_the_same_config(data_root, tmp_path):
    """HashedNets' "NN" baseline: a plain 784-h-10 MLP is the identity map of that architecture."""
    dense = save_index_file(build_map(HashSpec(kind="identity"), Architecture.parse("784-24-10")), tmp_path / "nn.st")
    cfg = TrainConfig.from_recipe(
        "hashednets",
        data_root=str(data_root),
        device="cpu",
        num_threads=1,
        epochs=2,
        limit_train=1000,
        val_split="last",
        lr=0.05,
    )
    res = train(dense, cfg, progress=False)
    assert res.index_file.compression_ratio == 1.0
    assert res.model.parameters == 784 * 24 + 24 + 24 * 10 + 10  # tables and biases, no BatchNorm
    assert res.epochs[1].train_loss < res.epochs[0].train_loss and res.test_accuracy > 0.5


@pytest.mark.slow
def test_mse_loss_is_the_squared_error_to_the_one_hot_label(small_map, data_root):
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([2, 0])
    # sample 0: 0.25 + 1 + 1 = 2.25; sample 1: 1 + 1 + 0 = 2
    assert mse_loss(logits, y).item() == pytest.approx(2.125) and mse_loss(logits, y, "sum").item() == 4.25
    res = train(small_map, config(data_root, epochs=1, batch_size=100, limit_train=300, loss="mse"), progress=False)
    ce = train(small_map, config(data_root, epochs=1, batch_size=100, limit_train=300), progress=False)
    assert math.isfinite(res.test_loss) and res.epochs[0].train_loss != ce.epochs[0].train_loss


def test_validation_set_too_small_is_a_clear_error(small_map, data_root):
    with pytest.raises(ValueError, match="need at least 1 validation and 2 training samples: raise limit_train"):
        train(small_map, config(data_root, limit_train=4, val_fraction=0.1, epochs=1, batch_size=2), progress=False)


def test_group_training_refuses_other_networks(small_map, data_root):
    with pytest.raises(ValueError, match="trains the paper's network and recipe only, got val_fraction=0.1"):
        train_group([small_map], TrainConfig.from_recipe("hashednets", data_root=str(data_root)), progress=False)


@pytest.mark.slow
def test_checkpoint_written_before_the_new_fields_resumes(small_map, data_root, tmp_path):
    cfg = config(data_root, epochs=1, batch_size=100, limit_train=300)
    first = train(small_map, cfg, progress=False, checkpoint=tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    new_fields = (
        "model",
        "activation",
        "batch_norm",
        "dropout",
        "input_dropout",
        "output_activation",
        "loss",
        "val_fraction",
        "val_split",
        "lr_metric",
    )
    state["config"] = {k: v for k, v in state["config"].items() if k not in new_fields}
    torch.save(state, tmp_path / "ck.pt")
    again = train(small_map, cfg, progress=False, checkpoint=tmp_path / "ck.pt")  # resumes at its last epoch
    assert again.epochs == first.epochs and again.test_accuracy == first.test_accuracy
