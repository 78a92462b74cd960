"""The trainer starts tables from an index file's ``initial_tables`` (format v2), e.g. ``hashlab cluster``'s centres."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hashlab import Architecture, HashSpec, IndexMap, build_map, cluster_weights, load_index_file, save_index_file
from trainers.torch_backend.group import ArbMLPGroup
from trainers.torch_backend.models import ArbMLP

SIZES = (12, 8, 6, 3)


def _weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, (o, i)).astype(np.float32) for i, o in zip(SIZES[:-1], SIZES[1:])]


def _model(imap: IndexMap, seed: int = 0) -> ArbMLP:
    torch.manual_seed(seed)
    return ArbMLP(imap)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_tables_start_from_the_stored_values_read_back_from_the_file(tmp_path, scope):
    mats = _weights()
    imap = load_index_file(save_index_file(cluster_weights(mats, 10, scope=scope, iters=5), tmp_path / "c.safetensors"))
    model = _model(imap)
    for lay, linear in zip(imap.layers, model.linears):
        np.testing.assert_array_equal(linear.table.detach().numpy(), imap.initial_tables[lay.table])
        want = imap.initial_tables[lay.table][lay.indices.astype(np.int64)]
        np.testing.assert_array_equal(linear.virtual_weight().detach().numpy(), want)
    # everything else is initialised as without initial tables (same seed, same draws)
    plain = _model(dataclasses.replace(imap, initial_tables=None))
    for a, b in zip(model.linears, plain.linears):
        assert torch.equal(a.bias, b.bias) and not torch.equal(a.table, b.table)
    model.reset_parameters()  # a reset starts from the stored values again
    for lay, linear in zip(imap.layers, model.linears):
        np.testing.assert_array_equal(linear.table.detach().numpy(), imap.initial_tables[lay.table])


def test_some_tables_with_values_some_random_and_signed_maps_read_the_stored_entry():
    imap = build_map(HashSpec(kind="uniform", table_size=7, sign=True, seed=2), Architecture(SIZES))
    init = np.linspace(-1, 1, 7, dtype=np.float32)
    imap = dataclasses.replace(imap, initial_tables=(None, init, None))
    model = _model(imap)
    plain = _model(dataclasses.replace(imap, initial_tables=None))
    assert torch.equal(model.linears[0].table, plain.linears[0].table)
    assert torch.equal(model.linears[2].table, plain.linears[2].table)
    np.testing.assert_array_equal(model.linears[1].table.detach().numpy(), init)
    lay = imap.layers[1]
    np.testing.assert_array_equal(
        model.linears[1].virtual_weight().detach().numpy(), lay.sign * init[lay.indices.astype(np.int64)]
    )


def test_a_group_member_starts_from_its_stored_tables():
    maps = [cluster_weights(_weights(s), 10, iters=3) for s in (0, 1)]
    group = ArbMLPGroup([_model(m) for m in maps], maps)
    for i, imap in enumerate(maps):
        state = group.member_state(i)
        for k, lay in enumerate(imap.layers):
            np.testing.assert_array_equal(state[f"blocks.{k}.linear.table"].numpy(), imap.initial_tables[lay.table])
