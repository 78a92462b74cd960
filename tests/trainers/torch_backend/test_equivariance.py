"""Round trip: the group computed from a built map makes the trained ArbNet numerically equivariant.

For every generator ``(tau, sigma)`` of :func:`hashlab.equiv.automorphism_group`, permuting a batch's inputs by
``tau`` permutes the outputs by ``sigma`` (``y'[sigma(o)] = y[o]`` when ``x'[tau(i)] = x[i]``), after training
has moved the table far from its initialisation; a permutation outside the group does not commute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashlab import IndexMap, LayerMap
from hashlab.equiv import automorphism_group
from hashlab.maps import deepsets_map, dihedral_group_table, group_conv_map, torus_group_table
from trainers.torch_backend.layers import ArbLinear
from trainers.torch_backend.models import ArbMLP

DT = torch.float64


def permute_inputs(x: torch.Tensor, tau: np.ndarray) -> torch.Tensor:
    """``x'[:, tau(i)] = x[:, i]``."""
    out = torch.empty_like(x)
    out[:, torch.as_tensor(tau)] = x
    return out


def train(model: torch.nn.Module, inputs: int, outputs: int, steps: int = 40, seed: int = 0) -> None:
    """SGD towards a random linear target that is not equivariant: only the sharing can keep the symmetry."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(inputs, outputs, generator=g, dtype=DT)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(32, inputs, generator=g, dtype=DT)
        loss = ((model(x) - x @ target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def assert_equivariant(model: torch.nn.Module, group, inputs: int, seed: int = 1) -> None:
    x = torch.randn(16, inputs, generator=torch.Generator().manual_seed(seed), dtype=DT)
    with torch.no_grad():
        y = model(x)
        for gen in group.generators:
            y2 = model(permute_inputs(x, gen.in_perm))
            torch.testing.assert_close(y2[:, torch.as_tensor(gen.out_perm)], y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("table", [dihedral_group_table(4), torus_group_table(3, 4)], ids=["dihedral4", "torus3x4"])
def test_a_trained_group_convolution_is_equivariant_to_its_computed_group(table):
    imap = group_conv_map(table, in_channels=2, out_channels=3, bias=True)
    lay = imap.layers[0]
    group = automorphism_group(lay)
    assert group.order == table.shape[0] and group.generators
    torch.manual_seed(0)
    model = ArbLinear(
        lay.in_features, lay.out_features, lay.indices, imap.table_sizes[0], bias_indices=lay.bias_indices, dtype=DT
    )
    before = model.table.detach().clone()
    train(model, lay.in_features, lay.out_features)
    assert (model.table.detach() - before).abs().max() > 0.05  # training moved the table
    assert_equivariant(model, group, lay.in_features)
    # swapping two inputs of one channel is no symmetry: the trained layer does not commute with it
    tau = np.arange(lay.in_features)
    tau[[0, 1]] = [1, 0]
    x = torch.randn(4, lay.in_features, generator=torch.Generator().manual_seed(2), dtype=DT)
    with torch.no_grad():
        assert not torch.allclose(model(permute_inputs(x, tau)), model(x), atol=1e-6)


def test_a_trained_two_layer_deepsets_network_is_equivariant_to_its_network_group():
    n = 5
    a = deepsets_map(n, in_channels=2, out_channels=3, bias=True)
    b = deepsets_map(n, in_channels=3, out_channels=1, bias=True)
    la, lb = a.layers[0], b.layers[0]
    imap = IndexMap(
        (
            LayerMap("fc0", la.indices, 0, bias_indices=la.bias_indices),
            LayerMap("fc1", lb.indices, 1, bias_indices=lb.bias_indices),
        ),
        (a.table_sizes[0], b.table_sizes[0]),
        {"builder": "test"},
    )
    group = automorphism_group(imap)
    assert group.order == 120 and group.joined == (True,)  # S5 on the set, all channels alike
    torch.manual_seed(0)
    # BatchNorm's per-unit parameters are not in the map and would break the symmetry: off
    model = ArbMLP(imap, batch_norm=False, output_activation=False, dtype=DT)
    train(model, 2 * n, n)
    assert_equivariant(model, group, 2 * n)
