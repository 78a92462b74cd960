"""ArbConv2d against an explicitly tied dense convolution: torch's own Conv2d run on a kernel built by another route.

Reference: ``K = sum_e table[e] * M_e`` with one-hot masks ``M_e = sign * (indices == e)`` (an einsum, no gather or
scatter), reshaped to the kernel and passed to a plain ``nn.Conv2d`` of the same geometry through
``torch.func.functional_call``, so padding modes, strides, dilation and groups are torch's, and autograd gives the
table the sum of ``dL/dK`` over each entry's kernel weights.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hashlab import HashSpec, LayerShape, build_model_map
from trainers.torch_backend import ArbConv2d
from trainers.torch_backend.layers import table_init_bound

DT = torch.float64
CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
)


def one_hot_masks(indices: torch.Tensor, n: int, sign: torch.Tensor | None) -> torch.Tensor:
    """``(n, rows, cols)`` float64: ``M[e] = sign * (indices == e)``; a -1 index matches no entry."""
    m = (indices.long().cpu().unsqueeze(0) == torch.arange(n).view(-1, 1, 1)).to(DT)
    return m if sign is None else m * sign.cpu().to(DT)


def dense_twin(layer: ArbConv2d) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` of the layer's geometry (its weights are replaced in the call)."""
    return nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=layer.bias is not None or layer.bias_indices is not None,
        padding_mode=layer.padding_mode,
        dtype=DT,
    )


def tied_dense(layer: ArbConv2d, x: torch.Tensor, up: torch.Tensor):
    """Output and gradients (input, table, bias) of the reference that shares the layer's table values."""
    table = layer.table.detach().cpu().clone().requires_grad_(True)
    bias = None if layer.bias is None else layer.bias.detach().cpu().clone().requires_grad_(True)
    x = x.detach().cpu().clone().requires_grad_(True)
    w = torch.einsum("e,eoi->oi", table, one_hot_masks(layer.indices, layer.table_size, layer.sign))
    params = {"weight": w.view(layer.weight_shape)}
    if layer.bias_indices is not None:
        bmask = (layer.bias_indices.long().cpu().unsqueeze(0) == torch.arange(layer.table_size).view(-1, 1)).to(DT)
        bsign = 1 if layer.bias_sign is None else layer.bias_sign.cpu().to(DT)
        params["bias"] = (table @ bmask) * bsign
    elif bias is not None:
        params["bias"] = bias
    y = torch.func.functional_call(dense_twin(layer), params, (x,))
    (y * up.cpu()).sum().backward()
    return y, x.grad, table.grad, None if bias is None else bias.grad


def arb(layer: ArbConv2d, x: torch.Tensor, up: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad()
    y = layer(x)
    (y * up).sum().backward()
    return y, x.grad, layer.table.grad, None if layer.bias is None else layer.bias.grad


def assert_matches_reference(layer: ArbConv2d, in_size: tuple[int, int], batch: int, seed: int, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, layer.in_channels, *in_size, generator=g, dtype=DT)
    with torch.no_grad():
        out_shape = dense_twin(layer)(x).shape
    up = torch.randn(out_shape, generator=g, dtype=DT)
    layer = layer.to(device)
    for got, want in zip(arb(layer, x.to(device), up.to(device)), tied_dense(layer, x, up)):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)


def conv_layer(spec: HashSpec, cin: int, cout: int, k, groups: int = 1, seed: int = 0, **kw) -> ArbConv2d:
    kh, kw_ = (k, k) if isinstance(k, int) else k
    imap = build_model_map(spec, [LayerShape("conv2d", (cout, cin // groups, kh, kw_))])
    lay = imap.layers[0]
    torch.manual_seed(seed)
    return ArbConv2d(cin, cout, k, lay.indices, imap.table_sizes[0], lay.sign, groups=groups, dtype=DT, **kw)


# (id, hash spec, (in_channels, out_channels, kernel), conv keywords, input size): strides, paddings of every form,
# dilation, groups (depthwise too), the padding modes, sparsity, signs, no bias
CASES = [
    ("plain", HashSpec(kind="uniform", table_size=11, seed=1), (3, 4, 3), {}, (7, 6)),
    ("stride-pad", HashSpec(kind="xxhash", table_size=13, sign=True), (2, 5, 3), dict(stride=2, padding=1), (9, 8)),
    (
        "rect-all",
        HashSpec(kind="xxhash", compression="1/4", sign=True, sparsity=0.3, seed=2),
        (4, 6, (3, 2)),
        dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2),
        (11, 9),
    ),
    ("depthwise", HashSpec(kind="block", table_size=7, sign=True), (4, 4, 3), dict(groups=4, padding=1), (6, 6)),
    ("same", HashSpec(kind="dirichlet", alpha=0.5, table_size=9), (2, 3, (4, 3)), dict(padding="same"), (7, 5)),
    ("valid-nobias", HashSpec(kind="modulus", table_size=5), (3, 2, 2), dict(padding="valid", bias=False), (5, 5)),
    (
        "reflect",
        HashSpec(kind="uniform", table_size=10, sign=True),
        (2, 4, 3),
        dict(padding=2, padding_mode="reflect"),
        (6, 7),
    ),
    (
        "circular-same-dil",
        HashSpec(kind="neighborhood", radius=2, table_size=12),
        (2, 2, 3),
        dict(padding="same", dilation=2, padding_mode="circular"),
        (8, 8),
    ),
    (
        "replicate",
        HashSpec(kind="block", block_size=4, table_size=8),
        (3, 3, 3),
        dict(padding=(0, 1), padding_mode="replicate"),
        (5, 6),
    ),
    ("identity", HashSpec(kind="identity"), (2, 4, 3), dict(stride=2), (7, 7)),
]


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("spec,channels,kw,in_size", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_outputs_and_gradients_equal_the_tied_dense_conv(spec, channels, kw, in_size, device):
    cin, cout, k = channels
    layer = conv_layer(spec, cin, cout, k, groups=kw.pop("groups", 1), **kw)
    assert_matches_reference(layer, in_size, batch=3, seed=5, device=device)


@given(
    data=st.data(),
    cin_g=st.integers(1, 3),
    cout_g=st.integers(1, 3),
    groups=st.integers(1, 2),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    n=st.integers(1, 9),
    use_sign=st.booleans(),
    bias=st.booleans(),
)
def test_random_maps_and_geometries_equal_the_tied_dense_conv(
    data, cin_g, cout_g, groups, kh, kw, stride, padding, dilation, n, use_sign, bias
):
    cin, cout = cin_g * groups, cout_g * groups
    cols = cin_g * kh * kw
    idx = torch.tensor(data.draw(st.lists(st.integers(-1, n - 1), min_size=cout * cols, max_size=cout * cols)))
    sign = None
    if use_sign:
        sign = torch.tensor(data.draw(st.lists(st.sampled_from([-1, 1]), min_size=cout * cols, max_size=cout * cols)))
    layer = ArbConv2d(
        cin,
        cout,
        (kh, kw),
        idx.view(cout, cols),
        n,
        None if sign is None else sign.view(cout, cols),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
        dtype=DT,
    )
    with torch.no_grad():
        layer.table.copy_(torch.linspace(-1, 1, n, dtype=DT) + 0.1)  # distinct, non-zero entries
    size = dilation * (max(kh, kw) - 1) + 1 + data.draw(st.integers(0, 3))  # the dilated kernel fits
    assert_matches_reference(layer, (size, size + 1), batch=2, seed=data.draw(st.integers(0, 2**16)))


def test_a_table_read_bias_equals_the_tied_dense_conv():
    n = 9
    layer = ArbConv2d(
        2, 3, 2, torch.arange(24).view(3, 8) % 6, n, bias_indices=torch.tensor([6, 7, 6]),
        bias_sign=torch.tensor([1, -1, 1]), padding=1, dtype=DT,
    )  # fmt: skip
    with torch.no_grad():
        layer.table.copy_(torch.linspace(-1, 1, n, dtype=DT))
    assert layer.bias is None
    assert_matches_reference(layer, (4, 5), batch=2, seed=3)


def test_from_conv2d_with_the_identity_map_is_the_conv_itself():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, dtype=DT)
    layer = ArbConv2d.from_conv2d(conv, torch.arange(conv.weight.numel()).view(conv.weight.shape))
    assert layer.table_size == conv.weight.numel() and torch.equal(layer.virtual_kernel(), conv.weight)
    x = torch.randn(2, 4, 9, 9, dtype=DT)
    assert torch.equal(layer(x), conv(x))


def test_from_conv2d_starts_each_entry_at_the_mean_of_its_kernel_weights():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]).view(2, 1, 2, 2))
    idx = torch.tensor([[0, 0, 1, -1], [1, 2, 2, 2]])
    sign = torch.tensor([[1, -1, 1, 1], [1, 1, -1, 1]])
    layer = ArbConv2d.from_conv2d(conv, idx, 4, sign)
    # entry 0: mean(1, -2); entry 1: mean(4, 16); entry 2: mean(32, -64, 128); entry 3: unread
    assert layer.table.tolist() == [-0.5, 10.0, 32.0, 0.0] and layer.bias is None
    assert layer.virtual_kernel().flatten(1).tolist() == [[-0.5, 0.5, 10.0, 0.0], [10.0, 32.0, -32.0, 32.0]]


def test_kernel_shaped_maps_state_dict_and_repr():
    idx = torch.arange(2 * 3 * 3 * 3).view(2, 3, 3, 3) % 10  # the kernel's own shape is accepted
    layer = ArbConv2d(3, 2, 3, idx, 10, padding=1, padding_mode="reflect")
    assert layer.indices.shape == (2, 27) and layer.map_shape == (2, 27) and layer.weight_shape == (2, 3, 3, 3)
    other = ArbConv2d(3, 2, 3, torch.zeros(2, 27, dtype=torch.long), 10, padding=1, padding_mode="reflect")
    other.load_state_dict(layer.state_dict())
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(other(x), layer(x)) and torch.equal(other.indices, layer.indices)
    assert repr(layer).startswith(
        "ArbConv2d(\n  3, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), padding_mode='reflect', "
        "table_size=10, compression_ratio=5.4\n"
    )
    bound = table_init_bound(27)
    assert layer.table.abs().max() <= bound and layer.bias.abs().max() <= bound  # Conv2d's bound


def test_batchless_input_works_as_in_conv2d():
    layer = conv_layer(HashSpec(table_size=5), 2, 3, 3, padding=1)
    x = torch.randn(2, 4, 4, dtype=DT)
    torch.testing.assert_close(layer(x), layer(x.unsqueeze(0))[0])


BAD_ARGS = [  # (id, keyword overrides, error, message)
    ("groups", dict(groups=2, in_channels=3), ValueError, "must both be divisible by groups (2)"),
    ("mode", dict(padding_mode="mirror"), ValueError, "unknown padding_mode 'mirror'"),
    ("pad-str", dict(padding="full"), ValueError, "padding string must be 'valid' or 'same'"),
    ("same-stride", dict(padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
    ("stride", dict(stride=(1, 0)), ValueError, "stride must be an int >= 1 or a pair"),
    ("shape", dict(indices=torch.zeros(2, 9, dtype=torch.long)), ValueError, "indices must have shape (2, 18)"),
    ("range", dict(indices=torch.full((2, 18), 5)), ValueError, "indices must lie in [-1, 5)"),
    ("float", dict(indices=torch.zeros(2, 18)), TypeError, "indices must hold integers"),
    ("bias-conflict", dict(bias=False, bias_indices=torch.zeros(2, dtype=torch.long)), ValueError, "bias=False"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    args = dict(
        in_channels=2, out_channels=2, kernel_size=3, indices=torch.zeros(2, 18, dtype=torch.long), table_size=5
    )
    with pytest.raises(exc, match=re.escape(match)):
        ArbConv2d(**(args | kwargs))


def test_from_conv2d_refuses_other_modules():
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        ArbConv2d.from_conv2d(nn.Conv1d(2, 2, 1), np.zeros((2, 2), np.int64))
