"""ArbMLP built from index files written by ``hashlab``'s builder (the trainer reads only the file)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from hashlab import Architecture, HashSpec, IndexMap, LayerMap, build_map, save_index_file
from trainers.torch_backend.layers import ArbLinear, table_init_bound
from trainers.torch_backend.models import ArbMLP

SMALL = Architecture((12, 8, 6, 3))


def index_file(tmp_path, spec: HashSpec, arch: Architecture = SMALL):
    return save_index_file(build_map(spec, arch), tmp_path / "map.safetensors")


def sgd_steps(model: nn.Module, steps: int = 3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(16, model.in_features, generator=g)
        y = torch.randint(0, model.out_features, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_paper_mnist_architecture_from_file(tmp_path):
    path = index_file(tmp_path, HashSpec(kind="dirichlet", alpha=1.0, table_size=1000), Architecture.parse("mnist-mlp"))
    model = ArbMLP.from_index_file(path)
    assert (model.in_features, model.out_features) == (784, 10)
    assert [(m.in_features, m.out_features, m.table_size) for m in model.linears] == [
        (784, 200, 1000),
        (200, 200, 1000),
        (200, 10, 1000),
    ]
    for block in model.blocks:  # Linear -> ELU -> BN, the last layer included
        assert [type(m) for m in block] == [ArbLinear, nn.ELU, nn.BatchNorm1d]
    assert model.num_entries == 3000 and len(model.tables) == 0
    assert model.spec["kind"] == "dirichlet" and model.spec["architecture"] == [784, 200, 200, 10]
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_global_scope_shares_one_parameter(tmp_path):
    model = ArbMLP.from_index_file(index_file(tmp_path, HashSpec(kind="uniform", table_size=40, scope="global")))
    tables = {id(m.table) for m in model.linears}
    assert len(tables) == 1 and list(model.tables) == ["0"] and model.tables["0"] is model.linears[0].table
    assert model.num_entries == 40
    assert sum(p is model.tables["0"] for p in model.parameters()) == 1  # the optimizer sees it once
    assert model.tables["0"].abs().max() <= table_init_bound(12)  # bound of the widest reader
    # its gradient is the sum of every reader's contribution
    x = torch.randn(7, 12)
    model.train()
    model(x).square().sum().backward()
    got = model.tables["0"].grad.clone()
    readers = []
    for m in model.linears:
        readers.append(m.virtual_weight())
        readers[-1].retain_grad()
    model.zero_grad()
    h = x
    for block, w in zip(model.blocks, readers):
        h = block.bn(block.act(nn.functional.linear(h, w, block.linear.bias)))
    h.square().sum().backward()
    want = torch.zeros(40)
    for m, w in zip(model.linears, readers):
        want.index_add_(0, m.indices.reshape(-1).long(), w.grad.reshape(-1))
    torch.testing.assert_close(got, want)


def test_global_identity_reads_consecutive_slices(tmp_path):
    model = ArbMLP.from_index_file(index_file(tmp_path, HashSpec(kind="identity", scope="global")))
    table = model.tables["0"]
    assert table.numel() == 12 * 8 + 8 * 6 + 6 * 3
    torch.testing.assert_close(model.linears[1].virtual_weight(), table[96:144].view(6, 8))


def test_sparse_weights_stay_zero_while_training(tmp_path):
    model = ArbMLP.from_index_file(
        index_file(tmp_path, HashSpec(kind="uniform", table_size=30, sparsity=0.5, sign=True))
    )
    masks = [m.zero_mask.clone() for m in model.linears]
    assert all(int(mask.sum()) == round(0.5 * mask.numel()) for mask in masks)
    before = [m.virtual_weight().detach().clone() for m in model.linears]
    sgd_steps(model)
    for m, mask, w0 in zip(model.linears, masks, before):
        w = m.virtual_weight().detach()
        assert bool((w[mask] == 0).all())
        assert not torch.equal(w[~mask], w0[~mask])  # the other weights did train


def test_layers_must_chain():
    idx = np.zeros((4, 3), np.int16)
    imap = IndexMap(layers=(LayerMap("a", idx, 0), LayerMap("b", np.zeros((2, 5), np.int16), 0)), table_sizes=(10,))
    with pytest.raises(ValueError, match="in_features=5 but the previous layer 'a' has out_features=4"):
        ArbMLP(imap)


def test_missing_index_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="hashlab build"):
        ArbMLP.from_index_file(tmp_path / "nope.safetensors")


def test_same_seed_same_model(tmp_path):
    path = index_file(tmp_path, HashSpec(kind="modulus", table_size=20))
    torch.manual_seed(3)
    a = ArbMLP.from_index_file(path)
    torch.manual_seed(3)
    b = ArbMLP.from_index_file(path)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_load_scale_on_a_balanced_map_changes_nothing(tmp_path, scope):
    """A modulus map reads every entry equally often: "load" training is bit-identical on CPU."""
    path = index_file(tmp_path, HashSpec(kind="modulus", table_size=18 if scope == "global" else 24, scope=scope))
    models = []
    for mode in ("none", "load"):
        torch.manual_seed(0)
        model = ArbMLP.from_index_file(path)
        loads = sum(m.entry_loads() for m in model.linears) if scope == "global" else model.linears[0].entry_loads()
        assert bool((loads == loads[0]).all())  # balanced
        model.set_table_grad_scale(mode)
        sgd_steps(model)
        models.append(model)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


# factor of a read entry from r = mean_load / load (unread entries: 1), per table_grad_scale mode
SCALE_OF_RATIO = {
    "sqrt_load": np.sqrt,
    "load": lambda r: r,
    "load_hot": lambda r: np.minimum(r, 1.0),
    "load_cold": lambda r: np.maximum(r, 1.0),
}


@pytest.mark.parametrize("mode", sorted(SCALE_OF_RATIO))
def test_load_scale_of_a_shared_table_counts_every_reader(tmp_path, mode):
    model = ArbMLP.from_index_file(
        index_file(
            tmp_path, HashSpec(kind="dirichlet", alpha=0.3, table_size=40, scope="global", sparsity=0.2, sign=True)
        )
    )
    model.set_table_grad_scale(mode)
    loads = np.zeros(40)
    for m in model.linears:
        idx = m.indices.reshape(-1).long().numpy()
        loads += np.bincount(idx[idx >= 0], minlength=40)
    read = loads > 0
    want_np = np.ones(40)
    want_np[read] = SCALE_OF_RATIO[mode](loads[read].mean() / loads[read])
    assert (want_np != 1).any()  # the map is skewed enough that every mode scales some entry
    want = torch.from_numpy(want_np)
    for m in model.linears:
        assert m._grad_scale is model.linears[0]._grad_scale  # one factor per table
        torch.testing.assert_close(m._grad_scale.double(), want)
    x = torch.randn(5, 12)
    model(x).square().sum().backward()
    got = model.tables["0"].grad.clone()
    for m in model.linears:
        m.set_grad_scale(None)
    model.zero_grad()
    model(x).square().sum().backward()
    torch.testing.assert_close(got, model.tables["0"].grad * want.float())


def _paper_blocks_by_hand(imap: IndexMap) -> nn.Sequential:
    """The paper's MLP as ArbMLP built it before its network became configuration.

    Per layer Sequential(linear, ELU, BN), with the same RNG draws.
    """
    from collections import OrderedDict

    blocks = nn.Sequential(
        *[
            nn.Sequential(
                OrderedDict(
                    linear=ArbLinear(
                        lay.in_features, lay.out_features, lay.indices, imap.table_sizes[lay.table], sign=lay.sign
                    ),
                    act=nn.ELU(),
                    bn=nn.BatchNorm1d(lay.out_features),
                )
            )
            for lay in imap.layers
        ]
    )
    for block in blocks:  # ArbMLP.__init__ ends with reset_parameters(): a second draw per layer
        block.linear.reset_parameters()
        block.bn.reset_parameters()
    return blocks


@pytest.mark.parametrize(
    "spec",
    [HashSpec(kind="uniform", table_size=30, sign=True), HashSpec(kind="identity")],
    ids=["uniform-sign", "identity"],
)
def test_default_arbmlp_is_the_papers_network_unchanged(spec):
    """Defaults bit-identical to the model before the network became configuration: same modules, keys, draws."""
    imap = build_map(spec, SMALL)
    torch.manual_seed(11)
    model = ArbMLP(imap)
    torch.manual_seed(11)
    hand = _paper_blocks_by_hand(imap)
    assert list(model.state_dict()) == ["blocks." + k for k in hand.state_dict()]
    for k, v in hand.state_dict().items():
        assert torch.equal(model.state_dict()["blocks." + k], v), k
    x = torch.randn(7, 12)
    for mode in (True, False):
        model.train(mode), hand.train(mode)
        assert torch.equal(model(x), hand(x))
    assert model.input_drop is None


def test_hashednets_network(tmp_path):
    """Dropout on the input and after each hidden ReLU, no BatchNorm, plain logits (jfainberg/hashed_nets Net)."""
    imap = build_map(HashSpec(kind="xxhash", table_size=25, sign=True), SMALL)
    model = ArbMLP(imap, activation="relu", batch_norm=False, dropout=0.25, input_dropout=0.25, output_activation=False)
    assert [[type(m) for m in b] for b in model.blocks] == [[ArbLinear, nn.ReLU, nn.Dropout]] * 2 + [[ArbLinear]]
    assert not any(".bn." in k for k in model.state_dict())
    x = torch.randn(9, 12)
    l0, l1, l2 = model.linears
    model.eval()
    assert torch.equal(model(x), l2(torch.relu(l1(torch.relu(l0(x))))))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    assert torch.equal(a, model(x)) and not torch.equal(a, model.eval()(x))  # dropout is on in training only
    sgd_steps(model.train())  # trains without BatchNorm


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"activation": "swish"}, "unknown activation 'swish'"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"input_dropout": -0.5}, "input_dropout must be in [0, 1)"),
    ],
    ids=["activation", "dropout", "input-dropout"],
)
def test_bad_network_options(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ArbMLP(build_map(HashSpec(table_size=10), SMALL), **kwargs)
