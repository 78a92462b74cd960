"""arbify: the nn.Linear layers of any module become ArbLinear layers of an index map (MLPs and Linear-only cases;
models that mix Linear, Conv2d and Embedding layers: test_arbify_models.py)."""

from __future__ import annotations

import copy
import io
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hashlab import Architecture, HashSpec, build_map, build_model_map, load_index_file, save_index_file
from hashlab.maps.indexmap import IndexMap, LayerMap
from trainers.torch_backend import ArbLinear, arbify
from trainers.torch_backend.convert import linear_features, linear_layers
from trainers.torch_backend.layers import bucket_means

SPECS = [  # (id, HashSpec): every kind of map a study may compress with
    ("uniform", HashSpec(kind="uniform", table_size=97, seed=1)),
    ("xxhash-sign", HashSpec(kind="xxhash", table_size=64, seed=2, sign=True)),
    ("dirichlet-sparse", HashSpec(kind="dirichlet", alpha=0.5, table_size=50, seed=3, sparsity=0.3)),
    ("global-uniform-sign", HashSpec(kind="uniform", table_size=120, seed=4, scope="global", sign=True)),
    ("identity", HashSpec(kind="identity")),
    ("global-identity", HashSpec(kind="identity", scope="global")),
]


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 7), nn.Tanh(), nn.Linear(7, 3))


class ConvNet(nn.Module):
    """Non-Linear parts (conv, pool, norm) and a Linear head that stays dense."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(3 * 3 * 3, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.features(x).flatten(1))))


def builder(spec):
    return lambda shapes: build_model_map(spec, shapes)


def ref_table(n: int, layers: list[tuple[np.ndarray, LayerMap]]) -> np.ndarray:
    """Reference twin of bucket_means: numpy bincount of sign * w over the live weights."""
    sums, counts = np.zeros(n), np.zeros(n)
    for w, lay in layers:
        idx = np.asarray(lay.indices, dtype=np.int64).ravel()
        v = w.astype(np.float64).ravel() * (1 if lay.sign is None else np.asarray(lay.sign).ravel())
        keep = idx >= 0
        sums += np.bincount(idx[keep], weights=v[keep], minlength=n)
        counts += np.bincount(idx[keep], minlength=n)
    return sums / np.maximum(counts, 1)


def by_hand(dense: nn.Sequential, imap: IndexMap) -> nn.Sequential:
    """The ArbLinear net of ``imap`` written out: tables from the reference twin, biases copied, activations kept."""
    linears = [m for m in dense if isinstance(m, nn.Linear)]
    tables = {}
    for t, n in enumerate(imap.table_sizes):
        readers = [(lin.weight.detach().numpy(), lay) for lin, lay in zip(linears, imap.layers) if lay.table == t]
        tables[t] = nn.Parameter(torch.from_numpy(ref_table(n, readers)).float())
    out, k = [], 0
    for m in dense:
        if isinstance(m, nn.Linear):
            lay = imap.layers[k]
            arb = ArbLinear(
                m.in_features,
                m.out_features,
                lay.indices,
                imap.table_sizes[lay.table],
                sign=lay.sign,
                table=tables[lay.table],
            )
            with torch.no_grad():
                arb.bias.copy_(m.bias)
            out.append(arb)
            k += 1
        else:
            out.append(copy.deepcopy(m))
    return nn.Sequential(*out)


@pytest.mark.parametrize("spec", [s for _, s in SPECS], ids=[i for i, _ in SPECS])
def test_arbify_sequential_equals_the_net_built_by_hand(spec):
    dense = mlp()
    x = torch.randn(5, 12)
    model, imap = arbify(copy.deepcopy(dense), builder(spec))
    assert [lay.name for lay in imap.layers] == ["0", "2", "4"]
    assert [type(m) for m in model] == [ArbLinear, nn.ReLU, ArbLinear, nn.Tanh, ArbLinear]
    hand = by_hand(dense, build_map(spec, Architecture((12, 9, 7, 3))))
    torch.testing.assert_close(model(x), hand(x), rtol=0, atol=1e-6)
    for t, init in enumerate(imap.initial_tables):  # the returned map carries the tables it started from
        lin_readers = [
            (lin.weight.detach().numpy(), lay)
            for lin, lay in zip([m for m in dense if isinstance(m, nn.Linear)], imap.layers)
            if lay.table == t
        ]
        np.testing.assert_allclose(init, ref_table(imap.table_sizes[t], lin_readers), rtol=0, atol=1e-7)


def test_arbify_of_the_linears_only_keeps_conv_parts_and_skipped_head():
    torch.manual_seed(1)
    dense = ConvNet().eval()
    x = torch.randn(4, 1, 8, 8)
    spec = HashSpec(kind="xxhash", table_size=40, sign=True, seed=9)
    model, imap = arbify(copy.deepcopy(dense), builder(spec), skip=("head",), kinds=("linear",))
    assert isinstance(model.fc, ArbLinear) and type(model.head) is nn.Linear
    assert isinstance(model.features[0], nn.Conv2d) and isinstance(model.features[1], nn.BatchNorm2d)
    assert [lay.name for lay in imap.layers] == ["fc"] and imap.layers[0].indices.shape == (16, 27)
    lay = build_map(spec, Architecture((27, 16))).layers[0]
    fc = ArbLinear(27, 16, lay.indices, 40, sign=lay.sign)
    with torch.no_grad():
        fc.table.copy_(torch.from_numpy(ref_table(40, [(dense.fc.weight.detach().numpy(), lay)])))
        fc.bias.copy_(dense.fc.bias)
    want = dense.head(torch.relu(fc(dense.features(x).flatten(1))))
    torch.testing.assert_close(model(x), want, rtol=0, atol=1e-6)
    assert torch.equal(model.head.weight, dense.head.weight)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_identity_hash_leaves_a_dense_model_unchanged(scope):
    dense = mlp(3)
    x = torch.randn(6, 12)
    model, imap = arbify(copy.deepcopy(dense), builder(HashSpec(kind="identity", scope=scope)))
    assert torch.equal(model(x), dense(x))
    for arb, lin in zip([m for m in model if isinstance(m, ArbLinear)], [m for m in dense if isinstance(m, nn.Linear)]):
        assert torch.equal(arb.virtual_weight(), lin.weight) and torch.equal(arb.bias, lin.bias)
    assert imap.compression_ratio == 1.0


def test_from_linear_identity_reproduces_weights_exactly():
    torch.manual_seed(0)
    lin = nn.Linear(30, 20).to(torch.float64)
    arb = ArbLinear.from_linear(lin, torch.arange(600).view(20, 30))
    assert arb.table.dtype == torch.float64 and arb.table_size == 600
    assert torch.equal(arb.virtual_weight(), lin.weight) and torch.equal(arb.bias, lin.bias)
    x = torch.randn(3, 30, dtype=torch.float64)
    assert torch.equal(arb(x), lin(x))


def test_from_linear_takes_the_mean_of_sign_times_weight_per_bucket():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]))
    idx = torch.tensor([[0, 0, 1], [1, -1, 3]])
    sign = torch.tensor([[1, -1, 1], [-1, 1, 1]])
    arb = ArbLinear.from_linear(lin, idx, 4, sign=sign)
    # entry 0: mean(1, -2) = -0.5; entry 1: mean(4, -8) = -2; entry 2: unread -> 0; entry 3: 32
    assert arb.table.tolist() == [-0.5, -2.0, 0.0, 32.0] and arb.bias is None
    assert arb.virtual_weight().tolist() == [[-0.5, 0.5, -2.0], [2.0, 0.0, 32.0]]


def test_from_linear_averages_a_table_read_bias_with_the_weights():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 3.0], [5.0, 7.0]]))
        lin.bias.copy_(torch.tensor([2.0, 9.0]))
    arb = ArbLinear.from_linear(lin, torch.tensor([[0, 0], [1, 1]]), 2, bias_indices=torch.tensor([0, 1]))
    assert arb.bias is None and arb.table.tolist() == [2.0, 7.0]  # (1+3+2)/3, (5+7+9)/3
    with pytest.raises(ValueError, match="linear has no bias"):
        ArbLinear.from_linear(
            nn.Linear(2, 2, bias=False), torch.zeros(2, 2, dtype=torch.long), 1, bias_indices=torch.tensor([0, 0])
        )
    with pytest.raises(TypeError, match="must be a torch.nn.Linear"):
        ArbLinear.from_linear(nn.Conv1d(2, 2, 1), torch.zeros(2, 2, dtype=torch.long), 1)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), signed=st.booleans())
def test_bucket_means_agrees_with_its_numpy_twin(seed, n, signed):
    rng = np.random.default_rng(seed)
    layers = []
    for shape in [(5, 7), (3, 5)]:
        idx = rng.integers(-1, n, shape).astype(np.int32)
        sign = rng.choice(np.array([-1, 1], dtype=np.int8), shape) if signed else None
        layers.append((rng.standard_normal(shape).astype(np.float32), LayerMap("l", idx, 0, sign=sign)))
    got = bucket_means(
        n,
        [
            (
                torch.from_numpy(w),
                torch.from_numpy(lay.indices),
                None if lay.sign is None else torch.from_numpy(lay.sign),
            )
            for w, lay in layers
        ],
    )
    np.testing.assert_allclose(got.numpy(), ref_table(n, layers), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_and_saved_map():
    spec = HashSpec(kind="uniform", table_size=50, scope="global", sign=True, seed=5)
    model, imap = arbify(mlp(1), builder(spec))
    x = torch.randn(4, 12)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh, _ = arbify(mlp(2), imap, init="map")  # same map, other starting values
    assert not torch.equal(fresh(x), model(x))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh(x), model(x))
    assert len(list(fresh.parameters())) == 1 + 3  # one shared table, three biases


def test_returned_map_saves_as_an_index_file_and_restarts_the_model(tmp_path):
    torch.manual_seed(0)
    dense = ConvNet().eval()
    model, imap = arbify(copy.deepcopy(dense), builder(HashSpec(kind="uniform", table_size=30, seed=1)))
    path = save_index_file(imap, tmp_path / "convnet.safetensors")
    loaded = load_index_file(path)
    assert [lay.name for lay in loaded.layers] == ["features.0", "fc", "head"]
    again, _ = arbify(copy.deepcopy(dense), loaded, init="map")  # tables from the file's initial_tables
    for name in ("features.0", "fc", "head"):
        assert torch.equal(again.get_submodule(name).table, model.get_submodule(name).table)


def test_to_dtype_and_device_move_the_layers():
    model, _ = arbify(mlp(), builder(HashSpec(kind="xxhash", table_size=40, sign=True)))
    x = torch.randn(3, 12)
    want = model(x).double()
    model = model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    torch.testing.assert_close(model(x.double()), want, rtol=1e-6, atol=1e-6)
    if torch.cuda.is_available():
        torch.testing.assert_close(model.cuda()(x.double().cuda()).cpu(), want, rtol=1e-6, atol=1e-6)


def _compile_works() -> bool:
    try:
        return bool(torch.compile(lambda t: t * 2)(torch.ones(2)).eq(2).all())
    except Exception:  # noqa: BLE001 - no compiler, no triton/inductor on this platform
        return False


@pytest.mark.slow
def test_torch_compile_gives_the_eager_outputs_and_gradients():
    if not _compile_works():
        pytest.skip("torch.compile does not work on this machine")
    model, _ = arbify(mlp(), builder(HashSpec(kind="uniform", table_size=40, sign=True, scope="global")))
    x = torch.randn(8, 12)
    eager = model(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model)
    out = compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)


def test_a_tied_linear_is_one_arblinear_in_both_places():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    model, imap = arbify(model, builder(HashSpec(kind="uniform", table_size=10)))
    assert model[0] is model[2] and isinstance(model[0], ArbLinear) and len(imap.layers) == 1


BAD = [  # (id, model, index_map or builder, kwargs, error, message)
    (
        "skip-unknown",
        lambda: mlp(),
        builder(HashSpec()),
        {"skip": ("head",)},
        ValueError,
        "skip names ['head'] are not modules of the model; its Linear, Conv2d and Embedding layers are ['0', '2', '4']",
    ),
    (
        "shape-mismatch",
        lambda: mlp(),
        build_map(HashSpec(table_size=10), Architecture((12, 9, 3))),
        {},
        ValueError,
        "do not match the model's layers",
    ),
    (
        "built-for-another-kind",
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3)),
        build_model_map(HashSpec(), [(4, 18)]),  # a Linear's map of the conv's matrix shape
        {},
        ValueError,
        "map layer 'layer0' was built for a {'kind': 'linear', 'weight_shape': [4, 18]}, but module '0' is a "
        "{'kind': 'conv2d', 'weight_shape': [4, 2, 3, 3]}",
    ),
    ("model-is-linear", lambda: nn.Linear(3, 2), builder(HashSpec()), {}, ValueError, "wrap it: nn.Sequential"),
    ("model-is-conv", lambda: nn.Conv2d(3, 2, 1), builder(HashSpec()), {}, ValueError, "wrap it: nn.Sequential"),
    (
        "attention",
        lambda: nn.Sequential(nn.MultiheadAttention(4, 2)),
        builder(HashSpec()),
        {},
        ValueError,
        "module '0.out_proj' is a NonDynamicallyQuantizableLinear, a subclass of nn.Linear",
    ),
    (
        "lazy",
        lambda: nn.Sequential(nn.LazyLinear(3)),
        builder(HashSpec()),
        {},
        ValueError,
        "run one forward pass before arbify",
    ),
    (
        "lazy-conv",
        lambda: nn.Sequential(nn.LazyConv2d(3, 3)),
        builder(HashSpec()),
        {},
        ValueError,
        "module '0' is a lazy LazyConv2d without weights yet",
    ),
    (
        "scale-grad-by-freq",
        lambda: nn.Sequential(nn.Embedding(5, 3, scale_grad_by_freq=True)),
        builder(HashSpec()),
        {},
        ValueError,
        "embedding '0' has scale_grad_by_freq or sparse, which ArbEmbedding does not support",
    ),
    (
        "nothing-left",
        lambda: mlp(),
        builder(HashSpec()),
        {"skip": ("0", "2", "4")},
        ValueError,
        "the model has no layer of kinds ('linear', 'conv2d', 'embedding') to replace",
    ),
    ("bad-kinds", lambda: mlp(), builder(HashSpec()), {"kinds": ("conv1d",)}, ValueError, "kinds must name some of"),
    ("bad-init", lambda: mlp(), builder(HashSpec()), {"init": "zeros"}, ValueError, "unknown init 'zeros'"),
    (
        "not-a-map",
        lambda: mlp(),
        lambda feats: feats,
        {},
        TypeError,
        "index_map must be an IndexMap or a callable returning one, got tuple",
    ),
]


@pytest.mark.parametrize("make,imap,kwargs,error,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_a_clear_error_before_any_change(make, imap, kwargs, error, message):
    model = make()
    before = repr(model)
    with pytest.raises(error, match=re.escape(message)):
        arbify(model, imap, **kwargs)
    assert repr(model) == before


def test_attention_is_kept_when_skipped():
    model = nn.Sequential(nn.MultiheadAttention(4, 2), nn.Linear(4, 3))
    x = torch.randn(2, 5, 4)
    model, imap = arbify(model, builder(HashSpec(kind="identity")), skip=("0",))
    assert [lay.name for lay in imap.layers] == ["1"] and isinstance(model[1], ArbLinear)
    assert model[0](x, x, x)[0].shape == (2, 5, 4)


def test_linear_features_and_skip_of_a_parent():
    model = ConvNet()
    assert linear_features(model) == (27, 16, 4)
    with pytest.raises(ValueError, match=re.escape("the Linear layers do not chain: 'b' has in_features=5 after 'a'")):
        linear_features(nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(5, 2)}))
    assert [n for n, _ in linear_layers(nn.Sequential(model), skip=("0.head",))] == ["0.fc"]
    assert linear_layers(nn.Sequential(model, nn.Linear(4, 2)), skip=("0",))[0][0] == "1"
