"""The numba CPU loops of TableGather equal their torch twins bit for bit (index_select, one-thread index_add_)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from trainers.torch_backend import cpu_kernels

KEY_DTYPES = [torch.int16, torch.int32, torch.int64]
VALUE_DTYPES = [torch.float32, torch.float64]


@given(
    slots=st.integers(1, 300),
    n=st.integers(0, 3000),
    hot=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    key_dtype=st.sampled_from(KEY_DTYPES),
    dtype=st.sampled_from(VALUE_DTYPES),
)
def test_gather_and_scatter_add_equal_the_torch_ops_bitwise(slots, n, hot, seed, key_dtype, dtype):
    g = torch.Generator().manual_seed(seed)
    key = torch.randint(0, slots if not hot else min(slots, 3), (n,), generator=g).to(key_dtype)
    src = torch.randn(slots, generator=g, dtype=torch.float64).to(dtype) * 10
    grad = torch.randn(n, generator=g, dtype=torch.float64).to(dtype) * 1e3
    assert torch.equal(cpu_kernels.gather(src, key), src.index_select(0, key.long()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # index_add_ adds in index order on one thread
    try:
        want = torch.zeros(slots, dtype=dtype).index_add_(0, key.long(), grad)
    finally:
        torch.set_num_threads(threads)
    acc = torch.zeros(slots, dtype=dtype)
    assert cpu_kernels.scatter_add(acc, key, grad) is acc
    assert torch.equal(acc, want)  # same float adds in the same order: not merely close


@given(
    rows=st.integers(0, 20),
    ncols=st.integers(1, 50),
    slots=st.integers(1, 100),
    live=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from(VALUE_DTYPES),
)
def test_row_list_loops_equal_their_torch_twins_bitwise(rows, ncols, slots, live, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, ncols, generator=g) < live
    cols = mask.nonzero()[:, 1].to(torch.int16)
    row_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), mask.sum(1).cumsum(0)])
    key = torch.randint(0, slots, (cols.numel(),), generator=g).to(torch.int16)
    src = torch.randn(slots, generator=g, dtype=dtype)
    grad = torch.randn(rows * ncols, generator=g, dtype=dtype)
    pos = cpu_kernels.row_positions(cols, row_ptr, ncols)
    assert torch.equal(pos, mask.reshape(-1).nonzero().squeeze(1))
    want = torch.zeros(rows * ncols, dtype=dtype)
    want[pos] = src.index_select(0, key.long())
    assert torch.equal(cpu_kernels.gather_rows(src, key, cols, row_ptr, ncols), want)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want_acc = torch.zeros(slots, dtype=dtype).index_add_(0, key.long(), grad[pos])
    finally:
        torch.set_num_threads(threads)
    acc = cpu_kernels.scatter_add_rows(torch.zeros(slots, dtype=dtype), key, cols, row_ptr, ncols, grad)
    assert torch.equal(acc, want_acc)


def test_supported_only_for_contiguous_float_cpu_tensors():
    key = torch.zeros(4, dtype=torch.int16)
    assert cpu_kernels.supported(torch.zeros(4), key)
    assert not cpu_kernels.supported(torch.zeros(4, dtype=torch.bfloat16), key)
    assert not cpu_kernels.supported(torch.zeros(8)[::2], key)
    assert not cpu_kernels.supported(torch.zeros(4), torch.zeros(8, dtype=torch.int16)[::2])


def test_a_layer_in_a_dtype_numba_does_not_take_falls_back_to_the_torch_ops():
    from trainers.torch_backend.layers import ArbLinear

    idx = torch.randint(-1, 7, (5, 6), generator=torch.Generator().manual_seed(0))
    lay32 = ArbLinear(6, 5, idx, 7)
    assert lay32.weight_plan.layout.key.dtype == torch.int16
    lay16 = ArbLinear(6, 5, idx, 7).to(torch.bfloat16)
    lay16.load_state_dict(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in lay32.state_dict().items()}
    )
    x = torch.randn(3, 6)
    lay16(x.to(torch.bfloat16)).float().sum().backward()
    lay32(x).sum().backward()
    torch.testing.assert_close(lay16.table.grad.float(), lay32.table.grad, rtol=2e-2, atol=2e-2)
