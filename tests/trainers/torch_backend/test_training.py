"""Training as in the paper, on real MNIST, from index files (SGD 0.1 / 0.9, LR / 10 after 4 flat epochs)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hashlab import Architecture, HashSpec, build_map, load_index_file, save_index_file
from hashlab.io.format import FormatError
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.results import TrainResult, stop_rule_met
from trainers.torch_backend.training import make_optimizer, make_scheduler, resolve_device, train

MNIST_MLP = Architecture.parse("mnist-mlp")


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    return {
        name: save_index_file(build_map(spec, MNIST_MLP), d / f"{name}.safetensors")
        for name, spec in {
            "identity": HashSpec(kind="identity"),
            "dirichlet": HashSpec(kind="dirichlet", alpha=1.0, table_size=1000),
        }.items()
    }


def config(data_root, **kw) -> TrainConfig:
    # one thread: robust when other test workers share the cores (see docs/TRAINING.md)
    return TrainConfig(**({"data_root": str(data_root), "device": "cpu", "num_threads": 1} | kw))


@pytest.mark.slow
def test_identity_mlp_reaches_97_percent_in_3_epochs(maps, data_root):
    """The paper's MNIST MLP with one entry per weight (a plain MLP); about 10 s on a 2-core CPU."""
    res = train(maps["identity"], config(data_root, epochs=3, batch_size=200), progress=False)
    assert res.test_accuracy >= 0.97, res.epochs
    assert [e.lr for e in res.epochs] == [0.1, 0.1, 0.1]
    assert res.epochs[-1].train_accuracy > res.epochs[0].train_accuracy


def reference_lrs(accuracies, lr, factor, patience):
    """LR used in each epoch: divide after ``patience`` consecutive epochs without a strict gain (paper, section 4)."""
    out, best, bad = [], -math.inf, 0
    for acc in accuracies:
        out.append(lr)
        best, bad = (acc, 0) if acc > best else (best, bad + 1)
        if bad == patience:
            lr, bad = lr * factor, 0
    return out


SCHEDULES = [  # (id, training accuracy per epoch, lr_patience)
    ("four-flat-epochs", [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7], 4),
    ("three-flat-then-gain", [0.5, 0.4, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6], 4),
    ("equal-is-no-gain", [0.9] * 9, 4),
    ("tiny-gain-counts", [0.5, 0.5, 0.5, 0.5 + 1e-9, 0.5, 0.5, 0.5, 0.5], 4),
    ("patience-two", [0.1, 0.2, 0.2, 0.2, 0.1, 0.3, 0.3, 0.3], 2),
]


@pytest.mark.parametrize("accuracies,patience", [c[1:] for c in SCHEDULES], ids=[c[0] for c in SCHEDULES])
def test_lr_divided_after_patience_epochs_without_gain(accuracies, patience):
    used = scheduled_lrs(TrainConfig(lr_patience=patience), accuracies)
    assert used == pytest.approx(reference_lrs(accuracies, 0.1, 0.1, patience), rel=1e-12)


def scheduled_lrs(cfg: TrainConfig, metrics) -> list[float]:
    """The learning rate each epoch runs at under ``make_scheduler(cfg)``, fed one metric per epoch."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr, momentum=cfg.momentum)
    sched = make_scheduler(opt, cfg)
    used = []
    for value in metrics:
        used.append(opt.param_groups[0]["lr"])
        sched.step(value)
    return used


def test_first_drop_happens_exactly_after_four_flat_epochs():
    used = reference_lrs([0.9] * 9, 0.1, 0.1, 4)
    assert used == pytest.approx([0.1] * 5 + [0.01] * 4)  # epochs 2-5 flat -> epoch 6 runs at 0.01


@pytest.mark.slow
def test_training_records_the_schedule(maps, data_root):
    """A small real run long enough for training accuracy to plateau: the recorded LRs follow the rule."""
    res = train(maps["identity"], config(data_root, epochs=15, batch_size=50, limit_train=200), progress=False)
    accs = [e.train_accuracy for e in res.epochs]
    lrs = [e.lr for e in res.epochs]
    assert lrs == pytest.approx(reference_lrs(accs, 0.1, 0.1, 4), rel=1e-12)
    assert min(lrs) < 0.1, accs  # the run did hit a plateau


@pytest.mark.slow
def test_same_seed_same_run_and_results_file(maps, data_root, tmp_path):
    cfg = config(data_root, epochs=1, batch_size=100, limit_train=2000, seed=5)
    state = torch.get_rng_state()
    first = train(maps["dirichlet"], cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched
    second = train(maps["dirichlet"], cfg, out=tmp_path / "res" / "run.json", progress=False)
    other = train(
        maps["dirichlet"], config(data_root, epochs=1, batch_size=100, limit_train=2000, seed=6), progress=False
    )
    assert first.epochs[0].train_loss == second.epochs[0].train_loss
    assert first.test_accuracy == second.test_accuracy
    assert other.epochs[0].train_loss != first.epochs[0].train_loss

    saved = json.loads((tmp_path / "res" / "run.json").read_text())
    assert saved == json.loads(json.dumps(second.to_dict()))
    assert TrainResult.from_dict(saved) == second
    assert saved["schema"] == "hashlab.train-results" and saved["schema_version"] == 1
    assert saved["config"] == cfg.to_dict() and saved["seed"] == 5
    assert set(saved["versions"]) == {"hashlab", "torch", "torchvision", "numpy", "python"}
    assert saved["device"]["type"] == "cpu" and saved["device"]["torch_threads"] == 1
    idx = saved["index_file"]
    assert idx["path"] == str(maps["dirichlet"].resolve())
    assert idx["spec"] == load_index_file(maps["dirichlet"]).spec and idx["spec"]["alpha"] == 1.0
    assert idx["table_sizes"] == [1000, 1000, 1000] and idx["num_weights"] == 198800
    assert [lay["in_features"] for lay in idx["layers"]] == [784, 200, 200]
    assert saved["data"]["train_size"] == 2000 and saved["data"]["test_size"] == 10000
    assert set(saved["epochs"][0]) == {"epoch", "train_accuracy", "train_loss", "lr", "wall_time_s"}
    assert 0.5 < saved["test_accuracy"] <= 1 and saved["wall_time_s"] > 0


def test_not_an_index_file(tmp_path, data_root):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(FormatError, match="not a hashlab index file"):
        train(bad, config(data_root), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error(maps, data_root):
    with pytest.raises(ValueError, match=r"torch.cuda.is_available\(\) is False; use --device cpu"):
        train(maps["dirichlet"], config(data_root, device="cuda"), progress=False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda(maps, data_root):
    assert resolve_device("auto").type == "cuda"
    res = train(maps["dirichlet"], config(data_root, device="auto", epochs=2, limit_train=5000), progress=False)
    assert res.device.type == "cuda" and res.device.cuda_name
    assert res.test_accuracy > 0.8


OPTIMIZER_CASES = [  # (TrainConfig fields, torch optimizer class, expected param-group values)
    (dict(), torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.0)),
    (dict(optimizer="sgd", momentum=0.5, weight_decay=1e-4), torch.optim.SGD, dict(momentum=0.5, weight_decay=1e-4)),
    (dict(optimizer="adam", lr=1e-3), torch.optim.Adam, dict(lr=1e-3, weight_decay=0.0)),
    (dict(optimizer="adamw", lr=1e-3, weight_decay=0.01), torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.01)),
]


@pytest.mark.parametrize("fields,cls,group", [c for c in OPTIMIZER_CASES], ids=["default", "sgd", "adam", "adamw"])
def test_optimizer_from_config_under_the_plateau_schedule(fields, cls, group):
    model = torch.nn.Linear(3, 2)
    cfg = TrainConfig(**fields)
    opt = make_optimizer(model, cfg)
    assert type(opt) is cls
    assert {k: opt.param_groups[0][k] for k in group} == group
    sched = make_scheduler(opt, cfg)
    for acc in [0.5] * (cfg.lr_patience + 1):
        sched.step(acc)
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * cfg.lr_factor)


@pytest.mark.slow
def test_adamw_with_load_scale_trains_and_is_recorded(maps, data_root, tmp_path):
    cfg = config(
        data_root,
        epochs=1,
        limit_train=2000,
        batch_size=100,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-4,
        table_grad_scale="load",
    )
    res = train(maps["dirichlet"], cfg, out=tmp_path / "r.json", progress=False)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["config"]["optimizer"] == "adamw" and saved["config"]["table_grad_scale"] == "load"
    assert saved["config"]["weight_decay"] == 1e-4 and TrainConfig.from_dict(saved["config"]) == cfg
    assert res.test_accuracy > 0.5


@pytest.mark.slow
def test_hot_and_cold_ablation_modes_train_and_differ(data_root, tmp_path):
    """train() runs with each half of the load normalization; on a skewed map each half changes the run."""
    path = save_index_file(
        build_map(HashSpec(kind="dirichlet", alpha=0.01, table_size=1000, seed=3), MNIST_MLP), tmp_path / "hot.st"
    )
    losses = {}
    for mode in ("none", "load_hot", "load_cold", "load"):
        cfg = config(data_root, epochs=1, limit_train=1000, batch_size=100, table_grad_scale=mode)
        res = train(path, cfg, out=tmp_path / f"{mode}.json", progress=False)
        saved = json.loads((tmp_path / f"{mode}.json").read_text())
        assert saved["config"]["table_grad_scale"] == mode and math.isfinite(res.test_loss)
        losses[mode] = res.epochs[0].train_loss
    assert len(set(losses.values())) == 4, losses  # each mode trains differently from the others


@pytest.mark.parametrize(
    "lrs, after, patience, met",
    [
        ([0.1] * 10, 2, 4, False),
        ([0.1, 0.1, 0.01, 0.01, 0.001], 2, 1, True),  # one epoch at the second drop's rate
        ([0.1, 0.1, 0.01, 0.01, 0.001], 2, 2, False),
        ([0.1, 0.01, 0.01, 0.01], 1, 3, True),
        ([0.1, 0.01, 0.01, 0.01], 1, 4, False),
        ([0.1, 0.01, 0.001, 0.001, 0.001, 0.001], 2, 4, True),
        ([0.1, 0.01, 0.001], None, 1, False),  # no rule: never met
    ],
)
def test_stop_rule_counts_epochs_at_the_rate_of_the_nth_drop(lrs, after, patience, met):
    assert stop_rule_met(lrs, after, patience) is met


@given(
    st.lists(st.sampled_from([1.0, 0.1, 0.01, 0.001]), min_size=1, max_size=30), st.integers(1, 3), st.integers(1, 5)
)
def test_stop_rule_is_met_at_one_epoch_and_stays_met(lrs, after, patience):
    lrs = sorted(lrs, reverse=True)  # a plateau schedule only lowers the rate
    met = [stop_rule_met(lrs[: i + 1], after, patience) for i in range(len(lrs))]
    assert met == sorted(met)  # once met, met for every longer history
    drops = sum(b < a for a, b in zip(lrs, lrs[1:]))
    assert not met[-1] or drops >= after
    assert met[-1] or drops < after or lrs[-patience:].count(lrs[-1]) < patience or len(set(lrs[-patience:])) > 1


@pytest.mark.slow
def test_training_stops_by_the_rule_before_the_epoch_cap(data_root, tmp_path):
    path = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=300), Architecture.parse("mnist-mlp"), backend="numpy"),
        tmp_path / "m.safetensors",
    )
    cfg = TrainConfig(
        data_root=str(data_root),
        device="cpu",
        epochs=30,
        limit_train=500,
        batch_size=100,
        lr_patience=1,
        stop_after_drops=2,
        stop_patience=2,
    )
    res = train(path, cfg, progress=False)
    lrs = [e.lr for e in res.epochs]
    second = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]][1]
    assert res.stopped_by_rule and len(res.epochs) == second + 2 < 30  # two epochs from the second drop on
    again = TrainResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.config.stop_after_drops == 2 and again.stopped_by_rule
