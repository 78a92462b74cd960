"""train_group: K ArbMLPs trained as one batched model end like each trained alone (real MNIST subset)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hashlab import Architecture, HashSpec, build_map, load_index_file, save_index_file
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.group import ArbMLPGroup, GroupSGD, _Plateau, fit_group, train_group
from trainers.torch_backend.models import ArbMLP
from trainers.torch_backend.training import _fit, make_scheduler, train

MNIST_MLP = Architecture.parse("mnist-mlp")
# one architecture, different maps (kinds, seeds, signs, zeros). Not a Dirichlet alpha=1e-3 map:
# it trains chaotically (15% accuracy), so float rounding of the batched kernels grows to 1e-2.
MEMBERS = [
    HashSpec(kind="dirichlet", alpha=1.0, table_size=500, seed=1, sign=True),
    HashSpec(kind="uniform", table_size=500, sparsity=0.5, seed=2),
]


# maps built with the numpy backend: numba's parallel kernels, run in this process before torch,
# slow torch's CPU kernels many times over on a 2-core box (see benchmarks/bench_group.py)
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("group")
    return [
        save_index_file(build_map(s, MNIST_MLP, backend="numpy"), d / f"m{i}.safetensors")
        for i, s in enumerate(MEMBERS)
    ]


@pytest.fixture()
def one_thread():
    """fit_group / _fit run without train()'s thread setting: use one thread like it does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(data_root, **kw) -> TrainConfig:
    return TrainConfig(
        **(
            {
                "data_root": str(data_root),
                "device": "cpu",
                "num_threads": 1,
                "epochs": 2,
                "limit_train": 600,
                "batch_size": 100,
                "lr_patience": 1,
            }
            | kw
        )
    )


CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["load", "load_hot", "load_cold"])
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_each_member_ends_as_if_trained_alone(files, data_root, one_thread, device, mode):
    cfg = config(data_root, table_grad_scale=mode, device=device)
    maps = [load_index_file(f) for f in files]
    dev = torch.device(device)
    _, group, _, epochs, accs, losses = fit_group(maps, cfg, dev, data_root)
    for i, imap in enumerate(maps):
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            solo, _, solo_epochs, solo_acc, solo_loss = _fit(imap, cfg, dev, data_root, False)
        state = solo.state_dict()
        for name, value in group.member_state(i).items():
            torch.testing.assert_close(value, state[name], rtol=1e-4, atol=2e-5, msg=f"member {i} {name}")
        assert [e.lr for e in epochs[i]] == [e.lr for e in solo_epochs]  # its own plateau schedule
        for e, s in zip(epochs[i], solo_epochs):
            assert e.train_accuracy == pytest.approx(s.train_accuracy, abs=2e-3)
        assert accs[i] == pytest.approx(solo_acc, abs=3e-4) and losses[i] == pytest.approx(solo_loss, rel=1e-3)


def test_members_may_differ_in_their_table_grad_scale(files, data_root, one_thread):
    """One member with the paper's plain gradients, one load-normalised: each ends as it ends alone."""
    modes = ["none", "load"]
    cfg = config(data_root, epochs=1, limit_train=300)
    maps = [load_index_file(f) for f in files]
    dev = torch.device("cpu")
    _, group, _, epochs, accs, _ = fit_group(maps, cfg, dev, data_root, table_grad_scales=modes)
    for i, (imap, mode) in enumerate(zip(maps, modes)):
        solo, _, solo_epochs, solo_acc, _ = _fit(
            imap, dataclasses.replace(cfg, table_grad_scale=mode), dev, data_root, False
        )
        state = solo.state_dict()
        for name, value in group.member_state(i).items():
            torch.testing.assert_close(value, state[name], rtol=1e-4, atol=2e-5, msg=f"member {i} ({mode}) {name}")
        assert accs[i] == pytest.approx(solo_acc, abs=3e-4)


def test_mixed_modes_give_each_member_its_own_factor_and_bad_lists_are_refused(files, data_root):
    arch = Architecture((12, 8, 6, 3))
    maps = [
        build_map(HashSpec(kind="dirichlet", alpha=0.05, table_size=30, seed=s), arch, backend="numpy") for s in (1, 2)
    ]
    solos = [ArbMLP(imap) for imap in maps]
    group = ArbMLPGroup(solos, maps)
    group.set_table_grad_scale(["load_hot", "none"])
    solos[0].set_table_grad_scale("load_hot")
    for j, scale in enumerate(group._scales):
        assert torch.equal(scale[:30], solos[0].linears[j]._grad_scale) and torch.equal(scale[30:], torch.ones(30))
    with pytest.raises(ValueError, match="one per member"):
        group.set_table_grad_scale(["load"])
    with pytest.raises(ValueError, match="2 index files"):
        train_group(files, config(data_root), table_grad_scales=["load"])
    with pytest.raises(ValueError, match="table_grad_scale"):
        train_group(files, config(data_root), table_grad_scales=["load", "nonsense"])


@pytest.mark.slow
def test_results_have_the_content_of_train(files, data_root, tmp_path):
    cfg = config(data_root, epochs=1)
    outs = [tmp_path / f"r{i}.json" for i in range(2)]
    group = train_group(files, cfg, outs=outs, progress=False)
    solo = train(files[1], cfg, progress=False)
    g, s = group[1].to_dict(), solo.to_dict()
    assert outs[1].exists() and set(g) == set(s) and json.loads(outs[1].read_text()) == json.loads(json.dumps(g))
    for key in ("config", "seed", "index_file", "model", "data", "schema", "schema_version"):
        assert g[key] == s[key], key
    assert group[1].test_accuracy == pytest.approx(solo.test_accuracy, abs=3e-4)


@pytest.mark.parametrize("mode", ["none", "load", "sqrt_load", "load_hot", "load_cold"])
def test_group_scales_each_member_as_it_is_scaled_alone(mode):
    """ArbMLPGroup.set_table_grad_scale gives member k's slice the factor ArbMLP gives it alone, for every mode."""
    arch = Architecture((12, 8, 6, 3))
    specs = [HashSpec(kind="dirichlet", alpha=0.05, table_size=30, seed=s, sparsity=0.3 * s) for s in range(3)]
    maps = [build_map(spec, arch, backend="numpy") for spec in specs]
    solos = [ArbMLP(imap) for imap in maps]
    group = ArbMLPGroup(solos, maps)
    group.set_table_grad_scale(mode)
    for m in solos:
        m.set_table_grad_scale(mode)
    for j, scale in enumerate(group._scales):
        alone = [m.linears[j]._grad_scale for m in solos]
        if mode == "none":
            assert scale is None and all(a is None for a in alone)
            continue
        assert scale is not None and all(a is not None for a in alone)
        assert torch.equal(scale, torch.cat(alone))  # same table size per member: slice k is member k's
        assert not torch.equal(scale, torch.ones_like(scale))  # the skewed maps are scaled somewhere


def test_bad_groups_raise_clear_errors(files, data_root, tmp_path):
    other = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=400), MNIST_MLP, backend="numpy"), tmp_path / "o.safetensors"
    )
    with pytest.raises(ValueError, match="same --arch"):
        train_group([files[0], other], config(data_root))
    with pytest.raises(ValueError, match="optimizer='sgd' only"):
        train_group(files, config(data_root, optimizer="adam", lr=1e-3))
    with pytest.raises(ValueError, match="empty"):
        train_group([], config(data_root))


def test_group_sgd_steps_each_member_with_its_own_learning_rate(one_thread):
    """K members with different LRs (and momentum, weight decay) step like K torch.optim.SGD."""
    arch = Architecture((12, 8, 6, 3))
    maps = [
        build_map(HashSpec(kind="uniform", table_size=30, seed=s, sign=s == 1, sparsity=0.3 * s), arch, backend="numpy")
        for s in range(3)
    ]
    lrs = [0.1, 0.03, 0.5]
    solos = []
    for imap in maps:
        torch.manual_seed(0)
        solos.append(ArbMLP(imap))
    group = ArbMLPGroup(solos, maps)
    opt = GroupSGD(group, lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt.lrs = list(lrs)
    solo_opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3) for m, lr in zip(solos, lrs)]
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        logits = group(x)
        sum(nn.functional.cross_entropy(logits[k], y) for k in range(3)).backward()
        opt.step()
        for m, o in zip(solos, solo_opts):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for k, m in enumerate(solos):
        state = m.state_dict()
        for name, value in group.member_state(k).items():
            torch.testing.assert_close(value, state[name], rtol=1e-5, atol=1e-6, msg=f"member {k} {name}")


@given(accs=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5]), min_size=1, max_size=12), patience=st.integers(1, 4))
def test_plateau_follows_torch_reduce_lr_on_plateau(accs, patience):
    cfg = TrainConfig(lr_patience=patience)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched, mine, lr = make_scheduler(opt, cfg), _Plateau(cfg), cfg.lr
    for acc in accs:
        sched.step(acc)
        lr = mine.step(acc, lr)
        assert lr == opt.param_groups[0]["lr"]


@pytest.mark.slow
def test_a_stopping_rule_ends_each_member_where_it_ends_alone(files, data_root, tmp_path):
    """stop_after_drops: each member's records end, and it is evaluated, at the epoch where its solo run stops."""
    cfg = config(data_root, epochs=30, lr_patience=1, stop_after_drops=2, stop_patience=2)
    group = train_group(files, cfg, progress=False)
    for f, g in zip(files, group):
        solo = train(f, cfg, progress=False)
        assert [e.lr for e in g.epochs] == [e.lr for e in solo.epochs]
        assert g.stopped_by_rule == solo.stopped_by_rule
        assert g.test_accuracy == pytest.approx(solo.test_accuracy, abs=3e-4)
    assert any(g.stopped_by_rule and len(g.epochs) < cfg.epochs for g in group)
