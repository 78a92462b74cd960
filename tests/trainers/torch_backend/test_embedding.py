"""ArbEmbedding against an explicitly tied dense embedding: torch's F.embedding on a matrix built by another route.

Reference: ``E = sum_e table[e] * M_e`` with one-hot masks ``M_e = sign * (indices == e)`` (an einsum, no gather or
scatter), its ``padding_idx`` row zeroed as ``nn.Embedding`` starts it, then :func:`torch.nn.functional.embedding`
with the same ``padding_idx``, ``max_norm`` and ``norm_type``; autograd gives the table the sum of ``dL/dE`` over
each entry's weights.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hashlab import HashSpec, LayerShape, build_model_map
from trainers.torch_backend import ArbEmbedding

DT = torch.float64
CUDA = pytest.param(
    "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
)


def tied_dense(layer: ArbEmbedding, rows: torch.Tensor, up: torch.Tensor):
    """Output and table gradient of the reference that shares the layer's table values."""
    table = layer.table.detach().cpu().clone().requires_grad_(True)
    idx, n = layer.indices.long().cpu(), layer.table_size
    masks = (idx.unsqueeze(0) == torch.arange(n).view(-1, 1, 1)).to(DT)
    if layer.sign is not None:
        masks = masks * layer.sign.cpu().to(DT)
    weight = torch.einsum("e,eoi->oi", table, masks)
    if layer.padding_idx is not None:  # nn.Embedding's padding row starts at zero
        weight = weight.index_fill(0, torch.tensor([layer.padding_idx]), 0.0)
    y = F.embedding(rows, weight, layer.padding_idx, layer.max_norm, layer.norm_type)
    (y * up).sum().backward()
    return y, table.grad


def assert_matches_reference(layer: ArbEmbedding, rows: torch.Tensor, seed: int, device="cpu") -> None:
    up = torch.randn(*rows.shape, layer.embedding_dim, generator=torch.Generator().manual_seed(seed), dtype=DT)
    want_y, want_grad = tied_dense(layer, rows, up)
    layer = layer.to(device)
    layer.zero_grad()
    y = layer(rows.to(device))
    (y * up.to(device)).sum().backward()
    torch.testing.assert_close(y.cpu(), want_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.table.grad.cpu(), want_grad, rtol=1e-12, atol=1e-12)


def embedding(spec: HashSpec, num: int, dim: int, seed: int = 0, **kw) -> ArbEmbedding:
    imap = build_model_map(spec, [LayerShape("embedding", (num, dim))])
    lay = imap.layers[0]
    torch.manual_seed(seed)
    return ArbEmbedding(num, dim, lay.indices, imap.table_sizes[0], lay.sign, dtype=DT, **kw)


# (id, hash spec, (num_embeddings, embedding_dim), keywords): ROBE-Z blocks, hashed rows, signs, sparsity,
# padding_idx (negative too) and max_norm with several norms
CASES = [
    ("block", HashSpec(kind="block", table_size=23), (30, 6), {}),
    ("block-sign-z", HashSpec(kind="block", block_size=4, table_size=17, sign=True, seed=1), (25, 10), {}),
    ("xxhash-sign-pad", HashSpec(kind="xxhash", compression="1/8", sign=True), (40, 8), dict(padding_idx=3)),
    ("uniform-sparse", HashSpec(kind="uniform", table_size=12, sparsity=0.4, seed=2), (20, 5), dict(padding_idx=-1)),
    ("max-norm", HashSpec(kind="uniform", table_size=15, sign=True), (18, 7), dict(max_norm=0.5)),
    (
        "max-norm-l1-pad",
        HashSpec(kind="block", table_size=9, sign=True),
        (12, 4),
        dict(max_norm=1.5, norm_type=1.0, padding_idx=0),
    ),
    ("identity", HashSpec(kind="identity"), (9, 3), dict(padding_idx=2)),
    ("global-mod", HashSpec(kind="modulus", table_size=11, scope="global"), (14, 3), {}),
]


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("spec,shape,kw", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_outputs_and_table_gradients_equal_the_tied_dense_embedding(spec, shape, kw, device):
    num, dim = shape
    layer = embedding(spec, num, dim, **kw)
    with torch.no_grad():
        layer.table.mul_(0.7)  # some rows above max_norm, some below
    g = torch.Generator().manual_seed(9)
    rows = torch.randint(0, num, (4, 6), generator=g)
    rows[0, :3] = rows[1, 2] = 0 if layer.padding_idx is None else layer.padding_idx  # repeats and padding
    assert_matches_reference(layer, rows, seed=4, device=device)


@given(
    data=st.data(),
    num=st.integers(1, 8),
    dim=st.integers(1, 5),
    n=st.integers(1, 9),
    use_sign=st.booleans(),
    max_norm=st.one_of(st.none(), st.floats(0.1, 3.0)),
)
def test_random_maps_equal_the_tied_dense_embedding(data, num, dim, n, use_sign, max_norm):
    idx = torch.tensor(data.draw(st.lists(st.integers(-1, n - 1), min_size=num * dim, max_size=num * dim)))
    sign = None
    if use_sign:
        sign = torch.tensor(data.draw(st.lists(st.sampled_from([-1, 1]), min_size=num * dim, max_size=num * dim)))
    padding_idx = data.draw(st.one_of(st.none(), st.integers(0, num - 1)))
    layer = ArbEmbedding(
        num,
        dim,
        idx.view(num, dim),
        n,
        None if sign is None else sign.view(num, dim),
        padding_idx=padding_idx,
        max_norm=max_norm,
        dtype=DT,
    )
    with torch.no_grad():
        layer.table.copy_(torch.linspace(-1, 1, n, dtype=DT) + 0.1)
    rows = torch.tensor(data.draw(st.lists(st.integers(0, num - 1), min_size=1, max_size=12)))
    assert_matches_reference(layer, rows, seed=data.draw(st.integers(0, 2**16)))


def test_virtual_weight_is_the_lookup_of_every_row():
    layer = embedding(HashSpec(kind="xxhash", table_size=10, sign=True), 12, 4, padding_idx=5)
    w = layer.virtual_weight()
    assert torch.equal(w, layer(torch.arange(12)))
    assert torch.equal(w[5], torch.zeros(4, dtype=DT))


def test_from_embedding_with_the_identity_map_is_the_embedding_itself():
    torch.manual_seed(0)
    emb = nn.Embedding(7, 3, padding_idx=1, max_norm=2.0, dtype=DT)
    layer = ArbEmbedding.from_embedding(emb, torch.arange(21).view(7, 3))
    assert (layer.padding_idx, layer.max_norm, layer.norm_type) == (1, 2.0, 2.0)
    assert torch.equal(layer.virtual_weight(), emb.weight)
    rows = torch.tensor([[0, 1, 6], [2, 2, 5]])
    assert torch.equal(layer(rows), emb(rows))


def test_from_embedding_means_leave_out_the_padding_row():
    emb = nn.Embedding(3, 2, padding_idx=2)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[1.0, 2.0], [4.0, 8.0], [100.0, 100.0]]))  # a (trained) padding row
    layer = ArbEmbedding.from_embedding(emb, torch.tensor([[0, 1], [1, 0], [0, 2]]), 3)
    # entry 0: mean(1, 8); entry 1: mean(2, 4); entry 2: read only by the padding row, which reads nothing
    assert layer.table.tolist() == [4.5, 3.0, 0.0]
    assert layer.entry_loads().tolist() == [2, 2, 0]


def test_block_maps_read_a_contiguous_run_per_row():
    layer = embedding(HashSpec(kind="block", table_size=50, seed=3), 100, 8)
    idx = layer.indices.long()
    assert torch.equal((idx[:, 1:] - idx[:, :-1]) % 50, torch.ones(100, 7, dtype=torch.long))


def test_state_dict_round_trip_and_repr():
    layer = embedding(HashSpec(kind="uniform", table_size=20, sign=True), 30, 4, padding_idx=0, max_norm=1.0)
    other = ArbEmbedding(30, 4, torch.zeros(30, 4, dtype=torch.long), 20, padding_idx=0, max_norm=1.0, dtype=DT)
    other.load_state_dict(layer.state_dict())
    rows = torch.tensor([3, 0, 29])
    assert torch.equal(other(rows), layer(rows)) and torch.equal(other.sign, layer.sign)
    assert repr(layer).startswith(
        "ArbEmbedding(\n  30, 4, padding_idx=0, max_norm=1.0, table_size=20, compression_ratio=6, sign=True\n"
    )


def test_an_owned_table_starts_standard_normal_as_nn_embedding():
    torch.manual_seed(0)
    layer = ArbEmbedding(10, 4, torch.zeros(10, 4, dtype=torch.long), 20000)
    assert abs(layer.table.mean().item()) < 0.05 and abs(layer.table.std().item() - 1) < 0.05


BAD_ARGS = [  # (id, keyword overrides, error, message)
    ("padding", dict(padding_idx=4), ValueError, "padding_idx must be an integer in [-4, 3]"),
    ("max-norm", dict(max_norm=0.0), ValueError, "max_norm must be a number > 0"),
    ("shape", dict(indices=torch.zeros(4, 2, dtype=torch.long)), ValueError, "indices must have shape (4, 3)"),
    ("range", dict(indices=torch.full((4, 3), 7)), ValueError, "indices must lie in [-1, 7)"),
    ("sign", dict(sign=torch.zeros(4, 3, dtype=torch.long)), ValueError, "sign must have shape (4, 3) and values"),
]


@pytest.mark.parametrize("kwargs,exc,match", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    args = dict(num_embeddings=4, embedding_dim=3, indices=torch.zeros(4, 3, dtype=torch.long), table_size=7)
    with pytest.raises(exc, match=re.escape(match)):
        ArbEmbedding(**(args | kwargs))


def test_float_input_and_unsupported_embeddings_are_refused():
    layer = ArbEmbedding(4, 3, np.zeros((4, 3), np.int16), 7)
    with pytest.raises(TypeError, match="input must hold int64 or int32 row numbers"):
        layer(torch.zeros(2))
    with pytest.raises(ValueError, match="supports neither scale_grad_by_freq nor sparse"):
        ArbEmbedding.from_embedding(nn.Embedding(4, 3, sparse=True), np.zeros((4, 3), np.int64), 7)
