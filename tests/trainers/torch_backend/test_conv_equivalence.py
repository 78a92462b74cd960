"""A convolution ArbNet (gather the dense matrix, then F.linear) equals torch's convolution (paper eq. 4-6)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings

from hashlab.maps.conv import ConvGeometry, conv_map
from tests.hashlab.maps.test_conv import conv_geometries
from trainers.torch_backend.equivalence import DEFAULT_RTOL, check_conv_equivalence, conv_arbnet_forward, layer_tensors


@settings(max_examples=50)
@given(conv_geometries(max_size=10))
def test_conv_arbnet_matches_torch_in_float64_and_float32(g):
    """Outputs, kernel gradients (table vs weight.grad), bias and input gradients, over odd sizes,
    stride > 1, dilation > 1, groups > 1 and padding."""
    for dtype in (torch.float64, torch.float32):
        rep = check_conv_equivalence(g, conv_map(g), dtype=dtype, seed=1)
        assert rep.passed, rep.to_dict()
        assert set(rep.errors) == {"output", "grad_kernel", "grad_input"} | ({"grad_bias"} if g.bias else set())
    assert rep.max_abs_error < 1e-4  # float32


CASES = [
    ConvGeometry(3, 16, (32, 32), 5, stride=2, padding=2),
    ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2),
    ConvGeometry(6, 6, (13, 9), (3, 4), stride=(3, 1), padding=(0, 2), dilation=(1, 2), groups=6, bias=False),
    ConvGeometry(3, 8, (101,), 7, stride=4, padding=3, dilation=3),
]


@pytest.mark.parametrize(
    "g", CASES, ids=["cifar-like-5x5-s2", "issue-example-grouped", "depthwise-anisotropic", "conv1d-long"]
)
def test_larger_geometries_with_tight_float64_error(g):
    rep = check_conv_equivalence(g, conv_map(g), dtype=torch.float64, batch_size=3)
    assert rep.passed and rep.max_abs_error < 1e-12, rep.to_dict()
    rep32 = check_conv_equivalence(g, conv_map(g), dtype=torch.float32, batch_size=3)
    assert rep32.passed and rep32.rtol == DEFAULT_RTOL[torch.float32], rep32.to_dict()


def test_a_wrong_map_fails_the_check():
    """The check can fail: a map with one tap moved, or with the wrong geometry, is caught."""
    g = ConvGeometry(2, 3, (7, 7), 3, stride=2, padding=1)
    imap = conv_map(g)
    idx = np.array(imap.layers[0].indices)
    r, c = np.argwhere(idx >= 0)[5]
    idx[r, c] = (idx[r, c] + 1) % g.kernel_entries
    bad = dataclasses.replace(imap, layers=(dataclasses.replace(imap.layers[0], indices=idx),))
    rep = check_conv_equivalence(g, bad)
    assert not rep.passed and rep.errors["output"] > 1e-3
    other = conv_map(dataclasses.replace(g, dilation=(1, 2), padding=(1, 2)))  # same shapes, other taps
    assert other.layers[0].indices.shape == imap.layers[0].indices.shape
    assert not check_conv_equivalence(g, other).passed


def test_forward_uses_the_torch_weight_layout_directly():
    g = ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2)
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, dtype=torch.float64)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64))
        conv.bias.copy_(torch.randn(6, generator=gen, dtype=torch.float64))
    table = torch.cat([conv.weight.detach().flatten(), conv.bias.detach()])
    x = torch.randn(2, 4, 11, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(conv_arbnet_forward(x, table, conv_map(g).layers[0], g), conv(x), rtol=0, atol=1e-12)


def _init(shape, fan_in, gen):
    bound = 1 / fan_in**0.5
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


@pytest.mark.slow
def test_mnist_training_matches_a_real_conv2d_for_50_sgd_steps(data_root):
    """Same init, same batches: the conv ArbNet and nn.Conv2d give the same loss over 50 steps, to 1e-4."""
    mnist = torchvision.datasets.MNIST(str(data_root), train=True, download=False)
    steps, batch = 50, 64
    x = ((mnist.data[: steps * batch].float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    y = mnist.targets[: steps * batch]
    g = ConvGeometry(1, 4, (28, 28), 5, stride=2)
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 5, stride=2)
    head = torch.nn.Linear(4 * 12 * 12, 10)
    with torch.no_grad():
        for p, fan_in in ((conv.weight, 25), (conv.bias, 25), (head.weight, 576), (head.bias, 576)):
            p.copy_(_init(p.shape, fan_in, gen))
    table = torch.nn.Parameter(torch.cat([conv.weight.detach().flatten(), conv.bias.detach()]).clone())
    head2 = torch.nn.Linear(576, 10)
    head2.load_state_dict(head.state_dict())
    layer = conv_map(g).layers[0]
    tensors = layer_tensors(layer)
    opt1 = torch.optim.SGD([*conv.parameters(), *head.parameters()], lr=0.05)
    opt2 = torch.optim.SGD([table, *head2.parameters()], lr=0.05)
    losses = []
    for s in range(steps):
        xb, yb = x[s * batch : (s + 1) * batch], y[s * batch : (s + 1) * batch]
        l1 = F.cross_entropy(head(F.relu(conv(xb)).flatten(1)), yb)
        l2 = F.cross_entropy(head2(F.relu(conv_arbnet_forward(xb, table, layer, g, tensors)).flatten(1)), yb)
        for opt, loss in ((opt1, l1), (opt2, l2)):
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append((l1.item(), l2.item()))
    diffs = [abs(a - b) for a, b in losses]
    assert max(diffs) <= 1e-4, max(diffs)
    assert np.mean([a for a, _ in losses[-10:]]) < np.mean([a for a, _ in losses[:10]]) - 0.5  # it really trains
    torch.testing.assert_close(table.detach()[: g.kernel_entries], conv.weight.detach().flatten(), rtol=0, atol=1e-4)
