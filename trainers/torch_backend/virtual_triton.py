"""Triton kernels of :class:`~trainers.torch_backend.virtual.VirtualLinear` for CUDA: the hash inside the matmul.

Three kernels, each a tiled matmul whose weight tile is never loaded: it is computed in registers from the
tile's ``(row, col)`` (the entry hash of the spec's kind, the sign hash, the sparsity mask) and a gather of
the table, as ROAST / RzLinear do (Desai et al. 2022) but for every kind hashlab builds:

* :func:`_forward_kernel`: ``y = x @ W.T`` over tiles ``(batch, out)``, looping over ``in``;
* :func:`_grad_input_kernel`: ``grad_x = grad_y @ W`` over tiles ``(batch, in)``, looping over ``out``;
* :func:`_grad_table_kernel`: ``grad_W = grad_y.T @ x`` over tiles ``(out, in)``, looping over the batch, then
  ``table_grad[entry] += sign * grad_W`` with atomic adds (so the table gradient's float sums are not in a fixed
  order on the GPU, unlike the CPU kernel's; it agrees within float32 tolerance).

The hash arithmetic is :mod:`hashlab.maps.kernels`' (XXH64 of the 8-byte identifier, or of HashedNets' 12-byte
``(layer, row, col)`` key), in uint64 with wrap-around; ``mod n`` is a plain 64-bit remainder. The matmuls use
``input_precision="ieee"`` (full float32, as ``nn.Linear`` without TF32).

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton is
imported) on CPU tensors: ``tests/trainers/torch_backend/test_virtual_triton.py`` checks them there against the
CPU numba path. Their speed on a GPU has not been measured yet (``benchmarks/gpu_virtual.sh``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from hashlab.maps.onthefly import LayerHash

__all__ = ["triton_virtual_linear", "BLOCKS"]

BLOCKS = {"BM": 64, "BN": 64, "BK": 32}
"""Tile sizes (batch, out, in) of the three kernels; the interpreter tests use 16."""

_SCALARS = ["batch", "in_f", "out_f", "n", "start", "layer", "radius", "block", "s_index", "s_sign", "s_mask",
            "threshold", "seed"]  # fmt: skip
"""Kernel arguments Triton must not specialise (an int equal to 1 would become a constant without ``.to``)."""


@triton.jit
def _rotl(x, r: tl.constexpr):
    return (x << r) | (x >> (64 - r))


@triton.jit
def _avalanche(h):
    h = h ^ (h >> 33)
    h = h * 14029467366897019727
    h = h ^ (h >> 29)
    h = h * 1609587929392839161
    return h ^ (h >> 32)


@triton.jit
def _lane(h, lane):
    k1 = _rotl(lane * 14029467366897019727, 31) * 11400714785074694791
    h = h ^ k1
    return _rotl(h, 27) * 11400714785074694791 + 9650029242287828579


@triton.jit
def _xxh64_u64(x, seed):
    """XXH64 of the 8-byte little-endian ``x`` (uint64 tensors), :func:`hashlab.maps.kernels.xxh64_u64_ref`."""
    return _avalanche(_lane(seed + 2870177450012600261 + 8, x))


@triton.jit
def _xxh64_key(lane, tail, seed):
    """XXH64 of the 12-byte key ``lane`` then ``tail`` (8 + 4 bytes): :func:`hashlab.maps.kernels.xxh64_key_ref`."""
    h = _lane(seed + 2870177450012600261 + 12, lane)
    h = h ^ ((tail & 0xFFFFFFFF) * 11400714785074694791)
    h = _rotl(h, 23) * 14029467366897019727 + 1609587929392839161
    return _avalanche(h)


@triton.jit
def _weights(
    table_ptr,
    cdf_ptr,
    guide_ptr,
    rows,
    cols,
    in_f,
    out_f,
    n,
    start,
    layer,
    radius,
    block,
    s_index,
    s_sign,
    s_mask,
    threshold,
    seed,
    KIND: tl.constexpr,
    HAS_SIGN: tl.constexpr,
    HAS_MASK: tl.constexpr,
    SEARCH: tl.constexpr,
    GUIDE_SHIFT: tl.constexpr,
):
    """The weight tile ``W[rows, cols]`` (rows: ``(BN, 1)``, cols: ``(1, BK)`` int64), its entries, the live mask and
    where the sign is negative."""
    s_index = s_index.to(tl.uint64)
    s_sign = s_sign.to(tl.uint64)
    s_mask = s_mask.to(tl.uint64)
    threshold = threshold.to(tl.uint64)
    seed = seed.to(tl.uint64)
    n = n.to(tl.int64)
    inside = (rows < out_f) & (cols < in_f)
    local = rows * in_f + cols
    ids = (start + local).to(tl.uint64)
    un = n.to(tl.uint64)
    if KIND == 0:  # identity / modulus
        e = (ids % un).to(tl.int64)
    elif KIND == 1:  # uniform
        e = (_xxh64_u64(ids, s_index) % un).to(tl.int64)
    elif KIND == 2:  # Dirichlet through the guide table: a fixed number of binary-search steps
        hb = _xxh64_u64(ids, s_index) >> 11
        g = (hb >> GUIDE_SHIFT).to(tl.int64)
        lo = tl.load(guide_ptr + g, mask=inside, other=0).to(tl.int64)
        hi = tl.load(guide_ptr + g + 1, mask=inside, other=0).to(tl.int64)
        u = hb.to(tl.float64) * 1.1102230246251565e-16  # 2**-53
        for _ in tl.static_range(SEARCH):
            open_ = lo < hi
            mid = (lo + hi) >> 1
            c = tl.load(cdf_ptr + mid, mask=inside & open_, other=0.0)
            right = open_ & (c <= u)
            left = open_ & (c > u)
            lo = tl.where(right, mid + 1, lo)
            hi = tl.where(left, mid, hi)
        e = lo
    elif KIND == 3:  # neighborhood: (id + U{-r..r}) mod n, Python's mod for negatives
        width = (2 * radius + 1).to(tl.uint64)
        off = (_xxh64_u64(ids, s_index) % width).to(tl.int64) - radius
        v = (start + local) + off
        e = ((v % n) + n) % n
    elif KIND == 4:  # block (ROBE-Z): the block's first identifier's hash, plus the offset inside the block
        j = cols % block
        first = ids - j.to(tl.uint64)
        e = ((_xxh64_u64(first, s_index) % un).to(tl.int64) + j % n) % n
    else:  # xxhash: HashedNets' (layer, row, col) key with the user's seed
        lane = layer.to(tl.uint64) | (rows.to(tl.uint64) << 32)
        e = (_xxh64_key(lane, cols.to(tl.uint64), seed) % un).to(tl.int64)
    live = inside
    if HAS_MASK:
        live = live & (_xxh64_u64(local.to(tl.uint64), s_mask) > threshold)
    w = tl.load(table_ptr + e, mask=live, other=0.0)
    neg = live & (rows < 0)  # all False: no sign hash
    if HAS_SIGN:
        lane_s = layer.to(tl.uint64) | (rows.to(tl.uint64) << 32)
        neg = (_xxh64_key(lane_s, cols.to(tl.uint64), s_sign) >> 63) != 0
        w = tl.where(neg, -w, w)
    return w, e, live, neg


@triton.jit(do_not_specialize=_SCALARS)
def _forward_kernel(
    x_ptr, y_ptr, table_ptr, cdf_ptr, guide_ptr, batch, in_f, out_f, n, start, layer, radius, block,
    s_index, s_sign, s_mask, threshold, seed,
    KIND: tl.constexpr, HAS_SIGN: tl.constexpr, HAS_MASK: tl.constexpr, SEARCH: tl.constexpr,
    GUIDE_SHIFT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    pm, pn = tl.program_id(0), tl.program_id(1)
    b = (pm * BM + tl.arange(0, BM)).to(tl.int64)[:, None]  # (BM, 1)
    rows = (pn * BN + tl.arange(0, BN)).to(tl.int64)[:, None]  # (BN, 1)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, in_f, BK):
        cols = (k0 + tl.arange(0, BK)).to(tl.int64)[None, :]  # (1, BK)
        x = tl.load(x_ptr + b * in_f + cols, mask=(b < batch) & (cols < in_f), other=0.0)
        w, _, _, _ = _weights(
            table_ptr, cdf_ptr, guide_ptr, rows, cols, in_f, out_f, n, start, layer, radius, block,
            s_index, s_sign, s_mask, threshold, seed, KIND, HAS_SIGN, HAS_MASK, SEARCH, GUIDE_SHIFT,
        )  # fmt: skip
        acc += tl.dot(x, tl.trans(w), input_precision="ieee")
    out_cols = (pn * BN + tl.arange(0, BN)).to(tl.int64)[None, :]
    tl.store(y_ptr + b * out_f + out_cols, acc, mask=(b < batch) & (out_cols < out_f))


@triton.jit(do_not_specialize=_SCALARS)
def _grad_input_kernel(
    g_ptr, gx_ptr, table_ptr, cdf_ptr, guide_ptr, batch, in_f, out_f, n, start, layer, radius, block,
    s_index, s_sign, s_mask, threshold, seed,
    KIND: tl.constexpr, HAS_SIGN: tl.constexpr, HAS_MASK: tl.constexpr, SEARCH: tl.constexpr,
    GUIDE_SHIFT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    pm, pk = tl.program_id(0), tl.program_id(1)
    b = (pm * BM + tl.arange(0, BM)).to(tl.int64)[:, None]
    cols = (pk * BK + tl.arange(0, BK)).to(tl.int64)[None, :]
    acc = tl.zeros((BM, BK), dtype=tl.float32)
    for n0 in range(0, out_f, BN):
        rows = (n0 + tl.arange(0, BN)).to(tl.int64)[:, None]
        g_cols = (n0 + tl.arange(0, BN)).to(tl.int64)[None, :]
        g = tl.load(g_ptr + b * out_f + g_cols, mask=(b < batch) & (g_cols < out_f), other=0.0)
        w, _, _, _ = _weights(
            table_ptr, cdf_ptr, guide_ptr, rows, cols, in_f, out_f, n, start, layer, radius, block,
            s_index, s_sign, s_mask, threshold, seed, KIND, HAS_SIGN, HAS_MASK, SEARCH, GUIDE_SHIFT,
        )  # fmt: skip
        acc += tl.dot(g, w, input_precision="ieee")
    tl.store(gx_ptr + b * in_f + cols, acc, mask=(b < batch) & (cols < in_f))


@triton.jit(do_not_specialize=_SCALARS)
def _grad_table_kernel(
    g_ptr, x_ptr, gt_ptr, table_ptr, cdf_ptr, guide_ptr, batch, in_f, out_f, n, start, layer, radius, block,
    s_index, s_sign, s_mask, threshold, seed,
    KIND: tl.constexpr, HAS_SIGN: tl.constexpr, HAS_MASK: tl.constexpr, SEARCH: tl.constexpr,
    GUIDE_SHIFT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    pn, pk = tl.program_id(0), tl.program_id(1)
    rows = (pn * BN + tl.arange(0, BN)).to(tl.int64)[:, None]
    cols = (pk * BK + tl.arange(0, BK)).to(tl.int64)[None, :]
    acc = tl.zeros((BN, BK), dtype=tl.float32)
    for m0 in range(0, batch, BM):
        bt = (m0 + tl.arange(0, BM)).to(tl.int64)[None, :]  # (1, BM): grad_y.T tile is (BN, BM)
        g_t = tl.load(g_ptr + bt * out_f + rows, mask=(bt < batch) & (rows < out_f), other=0.0)
        bx = (m0 + tl.arange(0, BM)).to(tl.int64)[:, None]
        x = tl.load(x_ptr + bx * in_f + cols, mask=(bx < batch) & (cols < in_f), other=0.0)
        acc += tl.dot(g_t, x, input_precision="ieee")
    _, e, live, neg = _weights(
        table_ptr, cdf_ptr, guide_ptr, rows, cols, in_f, out_f, n, start, layer, radius, block,
        s_index, s_sign, s_mask, threshold, seed, KIND, HAS_SIGN, HAS_MASK, SEARCH, GUIDE_SHIFT,
    )  # fmt: skip
    if HAS_SIGN:
        acc = tl.where(neg, -acc, acc)
    tl.atomic_add(gt_ptr + e, acc, mask=live)


def _search_steps(lh: LayerHash) -> int:
    """Binary-search steps that settle every guide cell of a Dirichlet table (0 for other kinds)."""
    if lh.spec.kind != "dirichlet":
        return 0
    width = int((lh.guide[1:] - lh.guide[:-1]).max())
    return max(width, 1).bit_length()


_ON_DEVICE: weakref.WeakKeyDictionary[LayerHash, dict[torch.device, tuple[Tensor, Tensor]]] = (
    weakref.WeakKeyDictionary()
)
"""Each layer hash's Dirichlet CDF and guide table per device, copied there once (not at every launch)."""


def _tables_on(lh: LayerHash, device: torch.device) -> tuple[Tensor, Tensor]:
    per_device = _ON_DEVICE.setdefault(lh, {})
    if device not in per_device:
        per_device[device] = (torch.as_tensor(lh.inner_cdf, device=device), torch.as_tensor(lh.guide, device=device))
    return per_device[device]


def _launch_args(lh: LayerHash, device: torch.device) -> tuple[tuple, dict[str, Any]]:
    guide_bits = (len(lh.guide) - 1).bit_length() - 1  # the guide table has 2**bits + 1 cells
    ints, words = [int(v) for v in lh.ints], [int(v) for v in lh.words]
    cdf, guide = _tables_on(lh, device)
    scalars = (
        lh.n, ints[2], ints[4], ints[5], ints[6],  # n, start, layer, radius, block
        words[0], words[1], words[2], words[3], words[4],  # s_index, s_sign, s_mask, threshold, seed
    )  # fmt: skip
    meta = {
        "KIND": ints[0],
        "HAS_SIGN": bool(ints[7]),
        "HAS_MASK": bool(ints[8]),
        "SEARCH": _search_steps(lh),
        "GUIDE_SHIFT": 53 - guide_bits,
    }
    return (cdf, guide, *scalars), meta


class _TritonVirtualMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, table: Tensor, lh: LayerHash, blocks: dict[str, int]) -> Tensor:
        batch, in_f, out_f = x.shape[0], lh.in_features, lh.out_features
        (cdf, guide, *scalars), meta = _launch_args(lh, x.device)
        y = torch.empty(batch, out_f, dtype=x.dtype, device=x.device)
        grid = (triton.cdiv(batch, blocks["BM"]), triton.cdiv(out_f, blocks["BN"]))
        _forward_kernel[grid](x, y, table, cdf, guide, batch, in_f, out_f, *scalars, **meta, **blocks)
        ctx.save_for_backward(x, table)
        ctx.lh, ctx.blocks = lh, blocks
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, table = ctx.saved_tensors
        lh, blocks = ctx.lh, ctx.blocks
        batch, in_f, out_f = x.shape[0], lh.in_features, lh.out_features
        (cdf, guide, *scalars), meta = _launch_args(lh, x.device)
        g = grad_y.contiguous()
        grad_x = grad_table = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            grid = (triton.cdiv(batch, blocks["BM"]), triton.cdiv(in_f, blocks["BK"]))
            _grad_input_kernel[grid](g, grad_x, table, cdf, guide, batch, in_f, out_f, *scalars, **meta, **blocks)
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros_like(table)
            grid = (triton.cdiv(out_f, blocks["BN"]), triton.cdiv(in_f, blocks["BK"]))
            _grad_table_kernel[grid](
                g, x, grad_table, table, cdf, guide, batch, in_f, out_f, *scalars, **meta, **blocks
            )
        return grad_x, grad_table, None, None


def triton_virtual_linear(x: Tensor, table: Tensor, lh: LayerHash, blocks: dict[str, int] | None = None) -> Tensor:
    """``x @ W.T`` with ``W`` hashed inside the Triton kernels; ``x``: float32 ``(B, in_features)``, contiguous.

    Args:
        x: float32 ``(B, in_features)`` on a CUDA device (or the CPU under ``TRITON_INTERPRET=1``).
        table: float32 ``(n,)`` on the same device.
        lh: the layer's hash.
        blocks: tile sizes ``{"BM", "BN", "BK"}`` (powers of two, at least 16); default :data:`BLOCKS`.

    Shape:
        - Output: ``(B, out_features)``, float32.
    """
    return _TritonVirtualMatmul.apply(x.contiguous(), table.contiguous(), lh, dict(blocks or BLOCKS))
