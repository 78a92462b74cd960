"""ArbLinear against an explicitly tied dense model built by a different route.

Reference: ``W = sum_e table[e] * M_e`` with one-hot masks ``M_e = sign * (indices == e)``
(an einsum over a dense ``(n, out, in)`` tensor), so autograd gives the table the sum of
``dL/dW`` over each entry's weights without any gather or scatter.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend.functional import LanePlan, SegmentPlan, build_plan, gather_weight
from trainers.torch_backend.layers import ArbLinear, table_init_bound

DT = torch.float64


def one_hot_masks(indices: torch.Tensor, n: int, sign: torch.Tensor | None) -> torch.Tensor:
    """``(n, out, in)`` float64: ``M[e] = sign * (indices == e)``; a -1 index matches no entry."""
    m = (indices.unsqueeze(0) == torch.arange(n).view(-1, 1, 1)).to(DT)
    return m if sign is None else m * sign.to(DT)


def tied_dense_grads(layer: ArbLinear, x: torch.Tensor, upstream: torch.Tensor, bias_indices=None):
    """Output and gradients of the reference model that shares ``layer``'s table values."""
    table = layer.table.detach().clone().requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    x = x.detach().clone().requires_grad_(True)
    w = torch.einsum("e,eoi->oi", table, one_hot_masks(layer.indices.long(), layer.table_size, layer.sign))
    b = bias
    if bias_indices is not None:
        bmask = (bias_indices.long().unsqueeze(0) == torch.arange(layer.table_size).view(-1, 1)).to(DT)
        b = table @ bmask
    y = x @ w.T + (0 if b is None else b)
    (y * upstream).sum().backward()
    return y, x.grad, table.grad, None if bias is None else bias.grad


def arb_grads(layer: ArbLinear, x: torch.Tensor, upstream: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad()
    y = layer(x)
    (y * upstream).sum().backward()
    return y, x.grad, layer.table.grad, None if layer.bias is None else layer.bias.grad


def assert_matches_reference(layer: ArbLinear, batch: int, seed: int, bias_indices=None) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, layer.in_features, generator=g, dtype=DT)
    up = torch.randn(batch, layer.out_features, generator=g, dtype=DT)
    for got, want in zip(arb_grads(layer, x, up), tied_dense_grads(layer, x, up, bias_indices)):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# (id, hash spec, (in_features, out_features)): every hash kind, sparsity and sign hashes
HASH_CASES = [
    ("identity", HashSpec(kind="identity"), (7, 5)),
    ("modulus", HashSpec(kind="modulus", table_size=13), (9, 6)),
    ("uniform-sparse", HashSpec(kind="uniform", table_size=11, sparsity=0.3, seed=3), (8, 7)),
    ("dirichlet-sign", HashSpec(kind="dirichlet", alpha=0.5, table_size=10, sign=True, seed=1), (6, 9)),
    ("neighborhood", HashSpec(kind="neighborhood", radius=2, table_size=17, seed=2), (10, 4)),
    ("xxhash-sign-sparse", HashSpec(kind="xxhash", table_size=7, sign=True, sparsity=0.5), (12, 3)),
]


def layer_from_spec(spec: HashSpec, shape: tuple[int, int], bias: bool = True, seed: int = 0) -> ArbLinear:
    imap = build_map(spec, Architecture(shape))
    lay = imap.layers[0]
    torch.manual_seed(seed)
    return ArbLinear(
        lay.in_features, lay.out_features, lay.indices, imap.table_sizes[0], sign=lay.sign, bias=bias, dtype=DT
    )


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("spec,shape", [c[1:] for c in HASH_CASES], ids=[c[0] for c in HASH_CASES])
def test_gradients_equal_tied_dense_model(spec, shape, bias):
    assert_matches_reference(layer_from_spec(spec, shape, bias), batch=4, seed=7)


@given(
    data=st.data(),
    out_f=st.integers(1, 6),
    in_f=st.integers(1, 6),
    n=st.integers(1, 9),
    batch=st.integers(1, 4),
    use_sign=st.booleans(),
    bias=st.booleans(),
)
def test_gradients_equal_tied_dense_model_random_shapes(data, out_f, in_f, n, batch, use_sign, bias):
    idx = data.draw(st.lists(st.integers(-1, n - 1), min_size=out_f * in_f, max_size=out_f * in_f))
    sign = None
    if use_sign:
        sign = torch.tensor(
            data.draw(st.lists(st.sampled_from([-1, 1]), min_size=out_f * in_f, max_size=out_f * in_f))
        ).view(out_f, in_f)
    layer = ArbLinear(in_f, out_f, torch.tensor(idx).view(out_f, in_f), n, sign=sign, bias=bias, dtype=DT)
    with torch.no_grad():
        layer.table.copy_(torch.linspace(-1, 1, n, dtype=DT) + 0.1)  # distinct, non-zero entries
    assert_matches_reference(layer, batch, seed=data.draw(st.integers(0, 2**16)))


def test_table_gradient_matches_python_loop():
    """The table gradient, entry by entry, from the definition (sum of sign * dL/dW over readers)."""
    layer = layer_from_spec(HASH_CASES[5][1], HASH_CASES[5][2], bias=False)
    x = torch.randn(3, layer.in_features, dtype=DT)
    w = layer.virtual_weight().detach().requires_grad_(True)
    (x @ w.T).square().sum().backward()
    layer(x).square().sum().backward()
    want = np.zeros(layer.table_size)
    idx, sign = layer.indices.numpy(), layer.sign.numpy()
    for o in range(layer.out_features):
        for i in range(layer.in_features):
            if idx[o, i] >= 0:
                want[idx[o, i]] += sign[o, i] * float(w.grad[o, i])
    np.testing.assert_allclose(layer.table.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def test_identity_map_is_nn_linear():
    torch.manual_seed(0)
    dense = nn.Linear(6, 4, dtype=DT)
    layer = ArbLinear(6, 4, torch.arange(24).view(4, 6), 24, dtype=DT)
    with torch.no_grad():
        layer.table.copy_(dense.weight.reshape(-1))
        layer.bias.copy_(dense.bias)
    x = torch.randn(5, 6, dtype=DT)
    dense(x).sum().backward()
    torch.testing.assert_close(layer(x), dense(x))
    layer(x).sum().backward()
    torch.testing.assert_close(layer.table.grad, dense.weight.grad.reshape(-1))
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad)


def test_shared_table_sums_gradients_of_readers():
    """Two layers reading one Parameter (a global-scope map, slice offset included)."""
    table = nn.Parameter(torch.randn(30, dtype=DT))
    first = ArbLinear(4, 3, torch.arange(12).view(3, 4), None, bias=False, table=table, dtype=DT)
    second = ArbLinear(3, 6, torch.arange(12, 30).view(6, 3), 30, bias=False, table=table, dtype=DT)
    assert first.table is second.table is table
    x = torch.randn(2, 4, dtype=DT)
    second(first(x)).sum().backward()
    w = table.detach().clone().requires_grad_(True)
    (x @ w[:12].view(3, 4).T @ w[12:].view(6, 3).T).sum().backward()
    torch.testing.assert_close(table.grad, w.grad)
    before = table.detach().clone()
    first.reset_parameters()  # an external table is its owner's to initialise
    torch.testing.assert_close(table.detach(), before)


def test_bias_read_from_table():
    idx = torch.tensor([[0, 1, -1], [2, 2, 0]])
    layer = ArbLinear(3, 2, idx, 4, bias_indices=torch.tensor([3, -1]), dtype=DT)
    assert layer.bias is None
    with torch.no_grad():
        layer.table.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=DT))
    torch.testing.assert_close(layer.virtual_bias(), torch.tensor([0.25, 0.0], dtype=DT))
    assert_matches_reference(layer, batch=3, seed=1, bias_indices=layer.bias_indices)


def test_zeroed_weights_get_no_gradient_and_stay_zero():
    layer = layer_from_spec(HashSpec(kind="uniform", table_size=100, sparsity=0.6), (20, 10))
    assert layer.zero_mask.sum() == 120
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 20, dtype=DT)).square().sum().backward()
        opt.step()
    w = layer.virtual_weight()
    assert bool((w[layer.zero_mask] == 0).all())
    assert bool((w[~layer.zero_mask] != 0).all())
    # every entry read only by zeroed weights gets exactly zero gradient
    unread = torch.ones(100, dtype=torch.bool)
    unread[layer.indices[~layer.zero_mask].long()] = False
    layer.zero_grad()
    layer(torch.randn(8, 20, dtype=DT)).sum().backward()
    assert unread.any() and bool((layer.table.grad[unread] == 0).all())
    assert bool((layer.table.grad[~unread] != 0).all())


def test_gather_weight_semantics():
    """The functional op (shared with other layers): file dtypes in, table dtype out."""
    table = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = torch.tensor([[2, -1], [0, 2]], dtype=torch.int16)
    sign = torch.tensor([[-1, 1], [1, 1]], dtype=torch.int8)
    w = gather_weight(table, idx, sign)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([[-3.0, 0.0], [1.0, 3.0]]))
    (w * torch.tensor([[1.0, 5.0], [2.0, 3.0]])).sum().backward()
    torch.testing.assert_close(table.grad, torch.tensor([2.0, 0.0, 2.0]))


def test_init_like_linear_and_repr():
    torch.manual_seed(0)
    layer = ArbLinear(400, 50, torch.randint(0, 1000, (50, 400)), 1000)
    bound = table_init_bound(400)
    assert bound == pytest.approx(0.05)
    assert layer.table.abs().max() <= bound and layer.table.abs().max() > 0.9 * bound
    assert layer.bias.abs().max() <= bound
    text = repr(layer)
    for part in ("in_features=400", "out_features=50", "table_size=1000", "compression_ratio=20", "bias=True"):
        assert part in text
    assert layer.compression_ratio == 20.0


def test_state_dict_round_trip_rederives_gather_plan():
    src = layer_from_spec(HASH_CASES[3][1], HASH_CASES[3][2], seed=1)
    dst = ArbLinear(
        src.in_features,
        src.out_features,
        torch.zeros_like(src.indices),
        src.table_size,
        sign=torch.ones_like(src.sign),
        dtype=DT,
    )
    assert set(src.state_dict()) == {"table", "bias", "indices", "sign"}
    dst.load_state_dict(src.state_dict())
    x = torch.randn(3, src.in_features, dtype=DT)
    torch.testing.assert_close(dst(x), src(x))


def test_moving_a_layer_relays_its_plan_for_the_device():
    """``.to()`` / ``.cpu()`` re-lay the plan submodule for the device: a plan laid out as on CUDA, moved to the CPU."""
    layer = layer_from_spec(HASH_CASES[3][1], HASH_CASES[3][2], seed=1)
    x = torch.randn(3, layer.in_features, dtype=DT)
    want = layer(x)
    layer.weight_plan.layout = build_plan(layer.indices, layer.table_size, layer.sign, sorted_segments=True)
    assert isinstance(layer.weight_plan.layout, SegmentPlan)
    layer.cpu()
    assert isinstance(layer.weight_plan.layout, LanePlan)
    assert torch.equal(layer(x), want)
    assert set(layer.state_dict()) == {"table", "bias", "indices", "sign"}  # plan buffers are not saved
    assert torch.equal(copy.deepcopy(layer)(x), want)


BAD_ARGS = [
    ("indices-shape", dict(indices=torch.zeros(3, 3, dtype=torch.long)), ValueError, "shape (2, 3)"),
    ("indices-range", dict(indices=torch.full((2, 3), 5)), ValueError, "[-1, 5)"),
    ("indices-below", dict(indices=torch.full((2, 3), -2)), ValueError, "[-1, 5)"),
    ("indices-float", dict(indices=torch.zeros(2, 3)), TypeError, "integers"),
    ("sign-values", dict(sign=torch.zeros(2, 3, dtype=torch.int8)), ValueError, "{-1, +1}"),
    ("table-size", dict(table_size=0), ValueError, "table_size"),
    ("table-mismatch", dict(table=nn.Parameter(torch.zeros(4))), ValueError, "4 entries"),
    ("table-not-param", dict(table=torch.zeros(5)), TypeError, "nn.Parameter"),
    ("bias-conflict", dict(bias=False, bias_indices=torch.zeros(2, dtype=torch.long)), ValueError, "bias=False"),
    ("bias-indices-range", dict(bias_indices=torch.tensor([0, 9])), ValueError, "bias_indices"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    args = dict(in_features=3, out_features=2, indices=torch.zeros(2, 3, dtype=torch.long), table_size=5)
    with pytest.raises(exc, match=re.escape(match)):
        ArbLinear(**(args | kwargs))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu = layer_from_spec(HASH_CASES[5][1], HASH_CASES[5][2])
    gpu = layer_from_spec(HASH_CASES[5][1], HASH_CASES[5][2]).cuda()
    x = torch.randn(4, cpu.in_features, dtype=DT)
    cpu(x).square().sum().backward()
    gpu(x.cuda()).square().sum().backward()
    torch.testing.assert_close(gpu.table.grad.cpu(), cpu.table.grad)
