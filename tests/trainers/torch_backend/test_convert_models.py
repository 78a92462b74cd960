"""arbify and strip on a model that mixes Embedding, Conv2d (groups, stride, padding, dilation) and Linear layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from hashlab import HashSpec, LayerShape, build_model_map, load_index_file, save_index_file
from trainers.torch_backend import ArbConv2d, ArbEmbedding, ArbLinear, arbify, strip
from trainers.torch_backend.convert import layer_shapes

DT = torch.float64


class Mixed(nn.Module):
    """Tokens on a grid -> embedding -> two grouped, strided, dilated, padded convolutions -> a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 6, padding_idx=0)
        self.features = nn.Sequential(
            nn.Conv2d(6, 8, 3, stride=2, padding=2, dilation=2, groups=2),
            nn.ReLU(),
            nn.Conv2d(8, 8, (3, 1), padding=(1, 0), groups=4, bias=False, padding_mode="reflect"),
            nn.BatchNorm2d(8),
        )
        self.head = nn.Linear(8, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens).permute(0, 3, 1, 2)  # (B, 6, H, W)
        return self.head(self.features(x).mean((2, 3)))


def mixed(seed: int = 0) -> Mixed:
    torch.manual_seed(seed)
    model = Mixed().to(DT).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.features[3].running_mean.uniform_(-0.5, 0.5)
        model.features[3].running_var.uniform_(0.5, 2.0)
    return model


TOKENS = torch.randint(0, 20, (3, 7, 9), generator=torch.Generator().manual_seed(1))
TOKENS[0, 0, :4] = 0  # padding


def by_hand(dense: Mixed, imap) -> Mixed:
    """The ArbNet of ``imap`` written out layer by layer with each class's own from_* constructor (one table each)."""
    model = copy.deepcopy(dense)
    lay = {x.name: x for x in imap.layers}
    n = dict(zip([x.name for x in imap.layers], [imap.table_sizes[x.table] for x in imap.layers]))
    model.emb = ArbEmbedding.from_embedding(dense.emb, lay["emb"].indices, n["emb"], lay["emb"].sign)
    for k in ("0", "2"):
        x = lay[f"features.{k}"]
        model.features[int(k)] = ArbConv2d.from_conv2d(dense.features[int(k)], x.indices, n[x.name], x.sign)
    model.head = ArbLinear.from_linear(dense.head, lay["head"].indices, n["head"], lay["head"].sign)
    return model


SPECS = [  # (id, HashSpec) with one table per layer
    ("uniform", HashSpec(kind="uniform", table_size=23, seed=1)),
    ("xxhash-sign-1/4", HashSpec(kind="xxhash", compression="1/4", sign=True)),
    ("block-sign-sparse", HashSpec(kind="block", table_size=17, sign=True, sparsity=0.2, seed=3)),
]


def test_the_builder_receives_every_layer_shape_named_by_module():
    assert layer_shapes(mixed()) == (
        LayerShape("embedding", (20, 6), "emb"),
        LayerShape("conv2d", (8, 3, 3, 3), "features.0"),
        LayerShape("conv2d", (8, 2, 3, 1), "features.2"),
        LayerShape("linear", (5, 8), "head"),
    )


@pytest.mark.parametrize("spec", [s for _, s in SPECS], ids=[i for i, _ in SPECS])
def test_arbify_equals_the_model_built_by_hand_from_each_layer(spec):
    dense = mixed()
    model, imap = arbify(copy.deepcopy(dense), lambda shapes: build_model_map(spec, shapes))
    assert [type(m) for m in (model.emb, model.features[0], model.features[2], model.head)] == [
        ArbEmbedding,
        ArbConv2d,
        ArbConv2d,
        ArbLinear,
    ]
    conv = model.features[0]
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((2, 2), (2, 2), (2, 2), 2)
    assert model.features[2].padding_mode == "reflect" and model.features[2].bias is None
    assert model.emb.padding_idx == 0 and isinstance(model.features[3], nn.BatchNorm2d)
    assert [lay.name for lay in imap.layers] == ["emb", "features.0", "features.2", "head"]
    hand = by_hand(dense, imap)
    torch.testing.assert_close(model(TOKENS), hand(TOKENS), rtol=0, atol=0)


def ref_table(n: int, readers: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """Reference twin of bucket_means: numpy bincount of sign * w over the live weights."""
    sums, counts = np.zeros(n), np.zeros(n)
    for w, idx, sign in readers:
        idx = idx.astype(np.int64).ravel()
        v = w.ravel() * (1 if sign is None else sign.ravel())
        keep = idx >= 0
        sums += np.bincount(idx[keep], weights=v[keep], minlength=n)
        counts += np.bincount(idx[keep], minlength=n)
    return sums / np.maximum(counts, 1)


def test_one_global_table_starts_at_the_bucket_means_of_every_layer():
    dense = mixed()
    spec = HashSpec(kind="uniform", compression="1/3", sign=True, scope="global", seed=4)
    model, imap = arbify(copy.deepcopy(dense), lambda shapes: build_model_map(spec, shapes))
    table = model.emb.table
    assert all(m.table is table for m in (model.features[0], model.features[2], model.head))
    assert sum(p.numel() for p in model.parameters() if p is table) == table.numel()  # listed once
    readers = []
    modules = (dense.emb, dense.features[0], dense.features[2], dense.head)
    for m, lay in zip(modules, imap.layers):
        idx = lay.indices.astype(np.int64)
        if m is dense.emb:
            idx[0] = -1  # the padding row reads nothing
        readers.append((m.weight.detach().reshape(lay.indices.shape).numpy(), idx, lay.sign))
    np.testing.assert_allclose(table.detach().numpy(), ref_table(imap.table_sizes[0], readers), rtol=1e-12)
    assert imap.initial_tables[0].dtype == np.float32


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_identity_maps_leave_the_model_unchanged(scope):
    dense = mixed(2)
    with torch.no_grad():
        dense.emb.weight[0] = 0  # nn.Embedding's padding row (a trained one stays zero too: no gradient)
    model, imap = arbify(copy.deepcopy(dense), lambda s: build_model_map(HashSpec(kind="identity", scope=scope), s))
    assert torch.equal(model(TOKENS), dense(TOKENS)) and imap.compression_ratio == 1.0


def test_skip_kinds_and_per_layer_budgets():
    spec = HashSpec(kind="xxhash", sign=True, compression="1/2")
    budgets = {"emb": "1/10", "features.0": 16}
    model, imap = arbify(mixed(), lambda s: build_model_map(spec, s, budgets=budgets), skip=("features.2",))
    assert type(model.features[2]) is nn.Conv2d
    assert [lay.name for lay in imap.layers] == ["emb", "features.0", "head"]
    assert imap.table_sizes == (12, 16, 20)  # ceil(120 / 10), 16, ceil(40 / 2)
    model, imap = arbify(mixed(), lambda s: build_model_map(spec, s), kinds=("conv2d",))
    assert type(model.emb) is nn.Embedding and type(model.head) is nn.Linear
    assert [lay.name for lay in imap.layers] == ["features.0", "features.2"]


def test_the_saved_map_is_its_spec_and_restarts_the_model(tmp_path):
    spec = HashSpec(kind="block", compression="1/4", sign=True)
    model, imap = arbify(mixed(), lambda s: build_model_map(spec, s))
    path = save_index_file(imap, tmp_path / "mixed.safetensors")
    assert path.stat().st_size < 4 * sum(imap.table_sizes) + 3000  # the tables plus a header: no index arrays
    again, _ = arbify(mixed(5), load_index_file(path), init="map")
    for name in ("emb", "features.0", "features.2", "head"):
        got, want = again.get_submodule(name), model.get_submodule(name)
        torch.testing.assert_close(got.table, want.table.float().double(), rtol=0, atol=0)  # stored as float32
        assert torch.equal(got.indices, want.indices)


def test_a_fresh_arbnet_starts_each_table_as_its_layer_would():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(400, 50), nn.Flatten(), nn.Linear(50, 30))
    model, _ = arbify(model, lambda s: build_model_map(HashSpec(table_size=3000), s), init="map")
    emb, lin = model[0].table, model[2].table
    assert abs(emb.std().item() - 1) < 0.05  # nn.Embedding's N(0, 1)
    assert lin.abs().max().item() <= 1 / np.sqrt(50)  # nn.Linear's U(-1/sqrt(in), 1/sqrt(in))


@pytest.mark.parametrize("spec", [s for _, s in SPECS], ids=[i for i, _ in SPECS])
def test_strip_gives_plain_layers_that_compute_what_the_arbnet_computes(spec):
    model, _ = arbify(mixed(), lambda shapes: build_model_map(spec, shapes))
    plain = strip(copy.deepcopy(model))
    kinds = [type(m) for m in (plain.emb, plain.features[0], plain.features[2], plain.head)]
    assert kinds == [nn.Embedding, nn.Conv2d, nn.Conv2d, nn.Linear]
    assert not any(isinstance(m, (ArbLinear, ArbConv2d, ArbEmbedding)) for m in plain.modules())
    assert torch.equal(plain(TOKENS), model(TOKENS))
    assert torch.equal(plain.emb.weight, model.emb.virtual_weight()) and plain.emb.padding_idx == 0
    conv = plain.features[2]
    assert (conv.groups, conv.padding, conv.padding_mode, conv.bias) == (4, (1, 0), "reflect", None)
    assert torch.equal(conv.weight, model.features[2].virtual_kernel())
    n_plain = sum(p.numel() for p in plain.parameters())
    assert n_plain == sum(p.numel() for p in mixed().parameters())  # the dense model's parameters again


def test_strip_of_a_layer_and_of_a_tied_layer():
    lin = ArbLinear(4, 3, torch.arange(12).view(3, 4) % 5, 5)
    plain = strip(lin)
    assert type(plain) is nn.Linear and torch.equal(plain.weight, lin.virtual_weight())
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 4), lin)
    model = strip(model)
    assert type(model[0]) is nn.Linear and model[0] is model[3]
