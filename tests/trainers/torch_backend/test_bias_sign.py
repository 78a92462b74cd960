"""Signed shared biases (format v3, HashedNets' xiB): forward and table gradient against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend import ArbLinear, ArbMLP
from trainers.torch_backend.equivalence import arbnet_linear, layer_tensors


@pytest.fixture(scope="module")
def imap():
    return build_map(
        HashSpec(kind="xxhash", compression="1/16", sign=True, hash_bias=True, seed=9), Architecture((40, 30, 5))
    )


def test_signed_bias_forward_and_gradient_equal_the_float64_reference(imap):
    lay = imap.layers[0]
    assert lay.bias_sign is not None and (lay.bias_sign == -1).any()
    layer = ArbLinear(
        40,
        30,
        lay.indices,
        imap.table_sizes[0],
        sign=lay.sign,
        bias_indices=lay.bias_indices,
        bias_sign=lay.bias_sign,
        dtype=torch.float64,
    )
    ref_table = layer.table.detach().clone().requires_grad_(True)
    x = torch.randn(7, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, ref = layer(x), arbnet_linear(x, ref_table, layer_tensors(lay))
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    (y * torch.arange(30.0, dtype=torch.float64)).sum().backward()
    (ref * torch.arange(30.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(layer.table.grad, ref_table.grad, rtol=0, atol=1e-10)
    bias = layer.virtual_bias().detach()
    want = torch.from_numpy(lay.bias_sign.astype(np.float64)) * layer.table.detach()[lay.bias_indices.astype(np.int64)]
    torch.testing.assert_close(bias, want, rtol=0, atol=0)


def test_signed_bias_survives_state_dict_and_refuses_bad_signs(imap):
    model = ArbMLP(imap)
    state = model.state_dict()
    assert state["blocks.0.linear.bias_sign"].dtype == torch.int8
    again = ArbMLP(imap)
    again.load_state_dict(state)
    x = torch.randn(4, 40)
    model.eval(), again.eval()
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    lay = imap.layers[0]
    with pytest.raises(ValueError, match="bias_sign needs bias_indices"):
        ArbLinear(40, 30, lay.indices, imap.table_sizes[0], bias_sign=lay.bias_sign)
    with pytest.raises(ValueError, match="values in"):
        ArbLinear(
            40,
            30,
            lay.indices,
            imap.table_sizes[0],
            bias_indices=lay.bias_indices,
            bias_sign=np.zeros(30, dtype=np.int8),
        )


def test_from_linear_averages_signed_biases_into_the_table():
    lin = nn.Linear(4, 3)
    idx = np.arange(12, dtype=np.int16).reshape(3, 4)  # every weight its own entry; the biases share 12 and 13
    bias_idx, bias_sign = np.array([12, 12, 13], dtype=np.int16), np.array([1, -1, 1], dtype=np.int8)
    layer = ArbLinear.from_linear(lin, idx, 14, bias_indices=bias_idx, bias_sign=bias_sign)
    b = lin.bias.detach()
    torch.testing.assert_close(layer.table.detach()[12], (b[0] - b[1]) / 2)  # mean of sign * bias
    torch.testing.assert_close(layer.table.detach()[13], b[2])
