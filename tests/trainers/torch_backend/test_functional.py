"""The plan-based table gather (TableGather) against its reference twin and a tied dense model.

Reference twins: ``gather_weight_ref`` (``index_select`` on the padded table, autograd
backward) and the one-hot einsum model of test_layers (no gather or scatter at all).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend.functional import (
    MapPlan,
    SegmentPlan,
    build_plan,
    entry_loads,
    expand_table,
    gather_weight,
    gather_weight_ref,
    load_scale,
    plan_indices,
    plan_sign,
    segment_sums,
    table_gather,
)
from trainers.torch_backend.layers import ArbLinear

from .test_layers import assert_matches_reference, one_hot_masks

DT = torch.float64

# (id, hash spec, (in_features, out_features)): uniform, hot (skewed), sparse and signed maps
MAP_CASES = [
    ("uniform", HashSpec(kind="uniform", table_size=50, seed=1), (40, 30)),
    ("hot-dirichlet-1e-3", HashSpec(kind="dirichlet", alpha=1e-3, table_size=50, seed=2), (40, 30)),
    ("sparse-0.5", HashSpec(kind="uniform", table_size=50, sparsity=0.5, seed=3), (40, 30)),
    ("sparse-0.9", HashSpec(kind="uniform", table_size=50, sparsity=0.9, seed=4), (40, 30)),
    ("signed", HashSpec(kind="xxhash", table_size=50, sign=True), (40, 30)),
    (
        "signed-sparse-hot",
        HashSpec(kind="dirichlet", alpha=1e-3, table_size=20, sparsity=0.5, sign=True, seed=5),
        (40, 30),
    ),
    ("neighborhood", HashSpec(kind="neighborhood", radius=1, table_size=50, seed=6), (40, 30)),
]
# the CPU backward over every weight, over a row list of the live ones, and the sorted one CUDA uses
# (all run on CPU here)
BACKWARDS = ["lanes", "rows", "segments"]
LAYOUT = {"lanes": dict(compact=False), "rows": dict(compact=True), "segments": dict(sorted_segments=True)}


def map_of(spec: HashSpec, shape: tuple[int, int]):
    imap = build_map(spec, Architecture(shape))
    lay = imap.layers[0]
    sign = None if lay.sign is None else torch.from_numpy(np.array(lay.sign))
    return torch.from_numpy(np.array(lay.indices)).long(), sign, imap.table_sizes[0]


def grads(fn, table, upstream):
    t = table.detach().clone().requires_grad_(True)
    w = fn(t)
    (w * upstream).sum().backward()
    return w.detach(), t.grad


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("spec,shape", [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES])
def test_plan_gather_matches_reference_twin_and_tied_dense(spec, shape, backward):
    idx, sign, n = map_of(spec, shape)
    g = torch.Generator().manual_seed(0)
    table = torch.randn(n, generator=g, dtype=DT)
    up = torch.randn(idx.shape, generator=g, dtype=DT)
    plan = build_plan(idx, n, sign, **LAYOUT[backward])
    w, grad = grads(lambda t: table_gather(t, plan).view(idx.shape), table, up)
    w_ref, grad_ref = grads(lambda t: gather_weight_ref(t, idx, sign), table, up)
    assert torch.equal(w, w_ref)  # the forward is a copy: bit for bit
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
    # the tied dense model: W = sum_e table[e] * M_e, gradient by autograd through an einsum
    w_dense, grad_dense = grads(lambda t: torch.einsum("e,eoi->oi", t, one_hot_masks(idx, n, sign)), table, up)
    torch.testing.assert_close(w, w_dense, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_dense, rtol=1e-12, atol=1e-12)
    # zeroed weights are left out: entries read only by them get exactly zero
    unread = entry_loads(plan) == 0
    assert bool((grad[unread] == 0).all())


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("spec,shape", [c[1:] for c in MAP_CASES[1:6:2]], ids=[c[0] for c in MAP_CASES[1:6:2]])
def test_two_backward_passes_are_bitwise_equal(spec, shape, backward):
    idx, sign, n = map_of(spec, shape)
    table = torch.randn(n)
    up = torch.randn(idx.shape)
    plan = build_plan(idx, n, sign, **LAYOUT[backward])
    first = grads(lambda t: table_gather(t, plan), table, up.reshape(-1))[1]
    second = grads(lambda t: table_gather(t, plan), table, up.reshape(-1))[1]
    assert torch.equal(first, second)


@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_lanes_do_not_change_the_math(lanes):
    idx, sign, n = map_of(MAP_CASES[5][1], MAP_CASES[5][2])
    table, up = torch.randn(n, dtype=DT), torch.randn(idx.numel(), dtype=DT)
    plan = build_plan(idx, n, sign, lanes=lanes)
    assert plan.lanes == lanes and plan.key.dtype == torch.int16  # a small table: 2 bytes a weight on the CPU
    got = grads(lambda t: table_gather(t, plan), table, up)[1]
    want = grads(lambda t: gather_weight_ref(t, idx, sign).reshape(-1), table, up)[1]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@given(
    data=st.data(),
    n_w=st.integers(1, 40),
    n=st.integers(1, 12),
    use_sign=st.booleans(),
    layout=st.sampled_from(BACKWARDS),
)
def test_plan_round_trips_the_map(data, n_w, n, use_sign, layout):
    idx = torch.tensor(data.draw(st.lists(st.integers(-1, n - 1), min_size=n_w, max_size=n_w)))
    sign = torch.tensor(data.draw(st.lists(st.sampled_from([-1, 1]), min_size=n_w, max_size=n_w))) if use_sign else None
    plan = build_plan(idx, n, sign, **LAYOUT[layout])
    segments = layout == "segments"
    assert plan.num_weights == n_w and torch.equal(plan_indices(plan), idx)
    if use_sign:
        assert torch.equal(plan_sign(plan)[idx >= 0], sign[idx >= 0].to(torch.int8))
    assert torch.equal(entry_loads(plan), torch.bincount(idx[idx >= 0], minlength=n))
    if segments:  # every live weight once, zeroed weights not at all
        assert sorted(plan.perm.tolist()) == (idx >= 0).nonzero().squeeze(1).tolist()
        assert int(plan.offsets[-1]) == int((idx >= 0).sum())


def test_gather_weight_is_the_plan_path_with_reference_semantics():
    table = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = torch.tensor([[2, -1], [0, 2]], dtype=torch.int16)
    sign = torch.tensor([[-1, 1], [1, 1]], dtype=torch.int8)
    w = gather_weight(table, idx, sign)
    torch.testing.assert_close(w, gather_weight_ref(table, idx, sign))
    (w * torch.tensor([[1.0, 5.0], [2.0, 3.0]])).sum().backward()
    torch.testing.assert_close(table.grad, torch.tensor([2.0, 0.0, 2.0]))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_resident_index_memory_per_virtual_weight(signed):
    """<= 4 bytes per virtual weight on CPU, sign included (it is folded into the key)."""
    idx, sign, n = map_of(HashSpec(kind="uniform", table_size=1000, sparsity=0.5, sign=signed), (300, 200))
    layer = ArbLinear(300, 200, idx.to(torch.int16), n, sign=sign)
    assert layer.index_bytes <= 4 * idx.numel()
    assert layer.indices.dtype == torch.int16 and torch.equal(layer.indices.long(), idx)


@pytest.mark.parametrize("spec,shape", [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES])
def test_layer_matches_tied_dense_model_on_issue_maps(spec, shape):
    idx, sign, n = map_of(spec, shape)
    layer = ArbLinear(shape[0], shape[1], idx, n, sign=sign, dtype=DT)
    assert_matches_reference(layer, batch=3, seed=2)


# -- load-normalised table gradients -------------------------------------------------------------


def test_load_scale_leaves_a_balanced_map_bitwise_unchanged():
    idx, sign, n = map_of(HashSpec(kind="modulus", table_size=40), (40, 30))  # every entry read 30 times
    plan = build_plan(idx, n, sign)
    scale = load_scale(entry_loads(plan), "load")
    assert torch.equal(scale, torch.ones(n))
    table, up = torch.randn(n), torch.randn(idx.numel())
    plain = grads(lambda t: table_gather(t, plan), table, up)[1]
    scaled = grads(lambda t: table_gather(t, plan, scale), table, up)[1]
    assert torch.equal(plain, scaled)


@pytest.mark.parametrize("mode", ["load", "sqrt_load"])
@pytest.mark.parametrize("backward", BACKWARDS)
def test_load_scale_on_loads_1_and_10_matches_float64_reference(mode, backward):
    # entry 0 read once, entry 1 read 10 times (two with sign -1), entry 2 never; 3 zeroed weights
    idx = torch.tensor([0] + [1] * 10 + [-1] * 3)
    sign = torch.tensor([1] * 9 + [-1, -1] + [1] * 3)
    plan = build_plan(idx, 3, sign, sorted_segments=backward == "segments")
    assert entry_loads(plan).tolist() == [1, 10, 0]
    scale = load_scale(entry_loads(plan), mode, DT)
    up = torch.linspace(-1, 2, idx.numel(), dtype=DT)
    got = grads(lambda t: table_gather(t, plan, scale), torch.zeros(3, dtype=DT), up)[1]
    mean = (1 + 10) / 2
    f = np.array([mean / 1, mean / 10, 1.0])
    f = np.sqrt(f) if mode == "sqrt_load" else f
    u, s = up.numpy(), sign.numpy()
    want = np.array([u[0] * s[0], (u[1:11] * s[1:11]).sum(), 0.0]) * f
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14, atol=0)


def test_load_scale_rejects_unknown_mode():
    with pytest.raises(ValueError, match="choose 'none', 'load', 'sqrt_load', 'load_hot', 'load_cold'"):
        load_scale(torch.tensor([1, 2]), "inverse")


# loads of a hand-made map: read entries 1, 2, 3, 6 (mean 3), one unread entry
HAND_LOADS = torch.tensor([1, 2, 3, 6, 0])
HAND_FACTORS = {
    "load": [3.0, 1.5, 1.0, 0.5, 1.0],
    "load_hot": [1.0, 1.0, 1.0, 0.5, 1.0],  # only the entry above the mean (6 > 3) is scaled, down
    "load_cold": [3.0, 1.5, 1.0, 1.0, 1.0],  # only the entries below the mean are scaled, up
}


@pytest.mark.parametrize("mode", sorted(HAND_FACTORS))
def test_hot_and_cold_factors_on_a_hand_made_map(mode):
    got = load_scale(HAND_LOADS, mode, DT)
    assert got.dtype == DT and got.shape == (5,)
    assert got.tolist() == HAND_FACTORS[mode]


@given(loads=st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_hot_times_cold_is_load_entry_by_entry(loads):
    t = torch.tensor(loads)
    hot, cold, full = (load_scale(t, m, DT) for m in ("load_hot", "load_cold", "load"))
    assert torch.equal(hot * cold, full)  # one of the two is exactly 1 at every entry
    assert bool((hot <= 1).all()) and bool((cold >= 1).all())


@pytest.mark.parametrize("mode", ["load_hot", "load_cold"])
def test_hot_and_cold_leave_a_balanced_map_unchanged(mode):
    assert torch.equal(load_scale(torch.tensor([4, 4, 0, 4]), mode, DT), torch.ones(4, dtype=DT))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec,shape", [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES])
def test_cuda_gradient_is_deterministic_and_matches_cpu(spec, shape):
    gpu, cpu_grad, first, second = cuda_and_cpu_grads(*map_of(spec, shape), DT)
    assert isinstance(gpu.weight_plan.layout, SegmentPlan) and gpu.weight_plan.layout.perm.is_cuda
    assert torch.equal(first, second)
    torch.testing.assert_close(first.cpu(), cpu_grad, rtol=1e-12, atol=1e-12)


def cuda_and_cpu_grads(idx, sign, n, dtype):
    """The table gradient of one layer on the CPU and of two identical backward passes on CUDA."""
    cpu = ArbLinear(idx.shape[1], idx.shape[0], idx, n, sign=sign, dtype=dtype)
    gpu = ArbLinear(idx.shape[1], idx.shape[0], idx, n, sign=sign, dtype=dtype)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.randn(64, idx.shape[1], dtype=dtype)
    cpu(x).square().sum().backward()
    out = []
    for _ in range(2):
        gpu.zero_grad()
        gpu(x.cuda()).square().sum().backward()
        out.append(gpu.table.grad.clone())
    return gpu, cpu.table.grad, out[0], out[1]


@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 12),
    cols=st.integers(1, 40),
    n=st.integers(1, 30),
    zeros=st.floats(0, 1),
    use_sign=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_row_list_plan_equals_the_per_weight_plan_bitwise(seed, rows, cols, n, zeros, use_sign, dtype):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (rows, cols), generator=g)
    idx[torch.rand(rows, cols, generator=g) < zeros] = -1
    sign = torch.randint(0, 2, (rows, cols), generator=g) * 2 - 1 if use_sign else None
    table = torch.randn(n, generator=g, dtype=dtype)
    up = torch.randn(rows * cols, generator=g, dtype=dtype)
    dense, compact = (build_plan(idx, n, sign, compact=c) for c in (False, True))
    assert compact.compact and not dense.compact and compact.key.numel() == int((idx >= 0).sum())
    w_d, g_d = grads(lambda t: table_gather(t, dense), table, up)
    w_c, g_c = grads(lambda t: table_gather(t, compact), table, up)
    assert torch.equal(w_c, w_d) and torch.equal(g_c, g_d)  # the same adds in the same order
    assert torch.equal(entry_loads(compact), entry_loads(dense))


def test_sparse_maps_get_a_row_list_on_the_cpu_only():
    idx, sign, n = map_of(MAP_CASES[3][1], MAP_CASES[3][2])  # sparsity 0.9
    assert build_plan(idx, n, sign).compact
    assert not build_plan(idx, n, sign, sorted_segments=True).compact
    dense_idx, _, dense_n = map_of(MAP_CASES[0][1], MAP_CASES[0][2])
    assert not build_plan(dense_idx, dense_n).compact
    with pytest.raises(ValueError, match="no sorted segments"):
        build_plan(idx, n, sign, compact=True, sorted_segments=True)


@given(seed=st.integers(0, 2**31 - 1), counts=st.lists(st.integers(0, 300), min_size=1, max_size=12))
def test_prefix_segment_sums_equal_segment_reduce_and_repeat_bitwise(seed, counts):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *counts]).cumsum(0)
    values = torch.randn(int(offsets[-1]), generator=g)
    want = torch.segment_reduce(values.double(), "sum", offsets=offsets)
    got = segment_sums(values, offsets, skewed=True)
    assert got.dtype == torch.float32 and got.shape == (len(counts),)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)
    assert torch.equal(got, segment_sums(values, offsets, skewed=True))


def test_a_hot_map_sums_its_sorted_segments_by_prefix_differences():
    idx, sign, n = map_of(MAP_CASES[1][1], MAP_CASES[1][2])  # Dirichlet alpha=1e-3
    hot = build_plan(idx, n, sign, sorted_segments=True)
    assert hot.skewed and not build_plan(*map_of(MAP_CASES[0][1], MAP_CASES[0][2])[::2], sorted_segments=True).skewed
    g = torch.Generator().manual_seed(1)
    table, up = torch.randn(n, generator=g), torch.randn(idx.numel(), generator=g)
    got = grads(lambda t: table_gather(t, hot), table, up)[1]
    want = grads(lambda t: gather_weight_ref(t.double(), idx).reshape(-1), table, up.double())[1]
    torch.testing.assert_close(got.double(), want.double(), rtol=1e-5, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_hot_map_float32_gradient_is_deterministic_and_matches_cpu():
    # Dirichlet alpha=1e-3: its segments sum by float64 prefix differences
    gpu, cpu_grad, first, second = cuda_and_cpu_grads(*map_of(MAP_CASES[1][1], MAP_CASES[1][2]), torch.float32)
    assert gpu.weight_plan.layout.skewed
    assert torch.equal(first, second)
    torch.testing.assert_close(first.cpu(), cpu_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [-2, 5])
def test_out_of_range_indices_are_refused_before_the_unchecked_loops(bad):
    table = torch.zeros(5, requires_grad=True)
    with pytest.raises(ValueError, match=r"indices must lie in \[-1, 5\)"):
        gather_weight(table, torch.tensor([[0, bad]]))


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("spec,shape", [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES])
def test_the_traceable_read_export_uses_gives_the_plans_weights(spec, shape, backward):
    """read_traceable (plain torch ops, what torch.onnx.export traces) is the twin of the numba read, bit for bit."""
    idx, sign, n = map_of(spec, shape)
    table = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=DT)
    plan = build_plan(idx, n, sign, **LAYOUT[backward])
    src = expand_table(table, plan.lanes, plan.signs)
    assert torch.equal(plan.read_traceable(src), plan.read(src))
    if plan.compact:
        assert torch.equal(plan.positions_traceable(), plan.positions())


@given(
    data=st.data(),
    rows=st.integers(1, 7),
    cols=st.integers(1, 7),
    n=st.integers(1, 9),
    signed=st.booleans(),
    pad=st.booleans(),
)
def test_row_lookups_equal_rows_of_the_gathered_weights(data, rows, cols, n, signed, pad):
    """MapPlan.lookup (an embedding's forward) against the full gather, values and table gradient."""
    idx = torch.tensor(data.draw(st.lists(st.integers(-1, n - 1), min_size=rows * cols, max_size=rows * cols)))
    sign = torch.tensor(data.draw(st.lists(st.sampled_from([-1, 1]), min_size=rows * cols, max_size=rows * cols)))
    plan = MapPlan(
        idx.view(rows, cols), n, sign.view(rows, cols) if signed else None, lanes=1, compact=False, view=False
    )
    looked = torch.tensor(data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=10)))
    mask = looked == looked[0] if pad else None
    table = torch.randn(n, generator=torch.Generator().manual_seed(2), dtype=DT)
    up = torch.randn(looked.numel(), cols, generator=torch.Generator().manual_seed(3), dtype=DT)

    def full(t):
        w = plan.gather(t)[looked]
        return w if mask is None else w.masked_fill(mask.unsqueeze(-1), 0.0)

    w, grad = grads(lambda t: plan.lookup(t, looked, mask), table, up)
    w_ref, grad_ref = grads(full, table, up)
    assert torch.equal(w, w_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)
