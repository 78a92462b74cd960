"""Stateless ArbNet ops: materialise a virtual weight matrix from a shared table.

Two implementations of ``W = sign * table[indices]`` (``W = 0`` where ``indices == -1``):

* :func:`gather_weight_ref`, the plain reference twin: ``index_select`` on the table padded
  with one zero entry; its autograd backward is ``index_add_``, which on CUDA uses atomics
  (run-to-run differences, contention on hot entries) and on CPU runs one serial chain of
  dependent adds per hot entry (and through the pad entry, for every zeroed weight).
* :class:`TableGather` with a :class:`GatherPlan` built once per map (:func:`build_plan`):
  the forward reads the table through one integer *key* per virtual weight that folds entry,
  sign and an accumulation *lane* together; the backward is deterministic on every device:

  - CPU: a serial add (fixed order; numba, :mod:`.cpu_kernels`, the bitwise twin of one-thread
    ``index_add_``) into ``lanes`` interleaved accumulators per (entry, sign) — consecutive
    weights of a hot entry land in different accumulators, so the adds do not wait on each
    other — then a fixed-order sum over lanes and ``pos - neg``. Maps with at least
    :data:`COMPACT_SPARSITY` zeroed weights keep the live weights only, as a row list;
  - other devices (CUDA): the live weights sorted by (entry, sign) (``perm``, zeroed weights
    left out) and one segmented sum per (entry, sign) with :func:`torch.segment_reduce`, or for
    a hot map differences of a float64 prefix sum (:func:`segment_sums`; no atomics either way),
    built when the plan moves to that device.

Optionally the backward multiplies each entry's gradient by a per-entry ``scale``
(load normalisation, :func:`entry_loads`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import cpu_kernels

__all__ = ["gather_weight", "gather_weight_ref", "gather_index", "gather_flat", "GatherPlan", "build_plan",
           "for_device", "segment_sums", "TableGather", "entry_loads", "load_scale", "plan_indices", "plan_sign"]

MAX_LANES = 8
COMPACT_SPARSITY = 0.75  # on the CPU, maps with at least this fraction of zeroed weights keep a row list
# (at 3072x2000, one thread, gather forward + backward: per-weight vs row list 8.2 vs 11.3 ms at
# sparsity 0.5, 9.6 vs 9.5 ms at 0.75, 9.4 vs 5.1 ms at 0.9)
SKEW_FACTOR = 16  # sorted segments: a largest segment above 16x the mean sums by prefix differences
PAD_SLOTS = 64  # zero slots that zeroed weights read and accumulate into (p % 64: no long chains)


def gather_index(indices: torch.Tensor, table_size: int) -> torch.Tensor:
    """Flat gather positions into the zero-padded table: ``-1`` becomes ``table_size``.

    Args:
        indices: integer tensor of any shape with values in ``[-1, table_size)``.
        table_size: number of entries ``n`` of the table that ``indices`` reads.

    Shape:
        - Output: ``(indices.numel(),)``, int32 if ``table_size < 2**31 - 1`` else int64.
          Both are accepted by :func:`torch.index_select`.
    """
    dtype = torch.int32 if table_size < 2**31 - 1 else torch.int64
    flat = indices.reshape(-1).to(dtype)
    return torch.where(flat < 0, torch.full_like(flat, table_size), flat)


def gather_flat(table: torch.Tensor, index: torch.Tensor, shape: tuple[int, ...] | torch.Size,
                sign: torch.Tensor | None = None, padded: bool = True) -> torch.Tensor:
    """``sign * pad(table)[index]`` reshaped to ``shape``, for a precomputed :func:`gather_index`.

    Args:
        table: shared entries, float tensor of shape ``(n,)``.
        index: output of :func:`gather_index`, values in ``[0, n]``.
        shape: shape of the result; ``prod(shape) == index.numel()``.
        sign: optional tensor broadcastable to ``shape`` (int8 or float, values in ``{-1, +1}``).
        padded: if False, ``index`` is known to hold no pad position (no ``-1`` in the map)
            and the table is read without the padding copy.
    """
    src = F.pad(table, (0, 1)) if padded else table
    w = src.index_select(0, index).view(shape)
    if sign is not None:
        w = w * sign
    return w


def gather_weight_ref(table: torch.Tensor, indices: torch.Tensor, sign: torch.Tensor | None = None) -> torch.Tensor:
    """Reference twin of :func:`gather_weight`: ``index_select`` on the padded table, autograd backward.

    Same arguments and result as :func:`gather_weight`; the table gradient comes from
    ``index_add_`` (atomics on CUDA, so not bitwise reproducible there).
    """
    w = gather_flat(table, gather_index(indices, table.shape[0]), indices.shape)
    if sign is not None:
        w = w * sign.to(w.dtype)
    return w


@dataclass(frozen=True)
class GatherPlan:
    """How one index map reads its table: built once by :func:`build_plan`, used every step.

    Attributes:
        key: integer tensor of shape ``(N,)``, one per
            virtual weight in row-major order: ``key = ((e * lanes + p % lanes) * signs + neg)``
            with ``e`` the entry read, ``p`` the weight's flat position and ``neg = 1`` for a
            weight of sign ``-1``; a weight fixed at zero reads one of ``PAD_SLOTS`` zero slots
            after the table's, ``key = n * lanes * signs + p % PAD_SLOTS``. Its dtype is the
            narrowest that holds :attr:`slots` (:func:`key_dtype`): int16 on the CPU for tables of
            up to about 4,000 entries (2 bytes per virtual weight), else int32 (int64 from 2**31 slots).
        table_size: ``n``.
        lanes: accumulators per (entry, sign) in the CPU backward, a power of two in ``[1, 8]``
            (1 for a plan with sorted segments: it needs none).
        signs: 2 if the map has a sign hash, else 1.
        perm: ``None``, or (for the sorted backward) int32/int64 tensor of the positions of the
            live weights sorted stably by ``(e, neg)``, shape ``(L,)``.
        offsets: ``None``, or int64 tensor of shape ``(n * signs + 1,)``: segment ``s = e * signs + neg``
            of ``perm`` is ``perm[offsets[s]:offsets[s + 1]]``.
        cols: ``None``, or for a *row list* (a sparse map on the CPU, :data:`COMPACT_SPARSITY`):
            ``key`` then holds the live weights only, shape ``(L,)``, in row-major order, and
            ``cols`` (int16, or int32 for rows of 2**15 columns or more) their columns, ``(L,)``.
        row_ptr: ``None``, or with ``cols`` int64 ``(R + 1,)``: row ``r``'s live weights are
            list entries ``row_ptr[r]:row_ptr[r + 1]``.
        ncols: with ``cols``, the columns per row (``N = R * ncols``).
        skewed: with sorted segments, True when the largest segment holds more than
            :data:`SKEW_FACTOR` times the mean (a hot map): the backward then sums segments as
            differences of a float64 prefix sum, whose cost does not depend on the segments' sizes.
    """

    key: torch.Tensor
    table_size: int
    lanes: int
    signs: int
    perm: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    row_ptr: torch.Tensor | None = None
    ncols: int = 0
    skewed: bool = False

    @property
    def compact(self) -> bool:
        """True for a row list (live weights only, see :attr:`cols`)."""
        return self.cols is not None

    @property
    def num_weights(self) -> int:
        """``N``, the virtual weights the plan writes, zeroed ones included."""
        return (self.row_ptr.numel() - 1) * self.ncols if self.compact else self.key.numel()

    @property
    def slots(self) -> int:
        """Length of the expanded table the key reads: ``n * lanes * signs + PAD_SLOTS``."""
        return self.table_size * self.lanes * self.signs + PAD_SLOTS


def choose_lanes(num_weights: int, table_size: int, signs: int) -> int:
    """Largest power of two ``<= 8`` whose accumulators fit in a quarter of the weights.

    The CPU backward zeroes and sums ``n * lanes * signs`` accumulators per step; keeping
    that below ``num_weights / 4`` bounds their cost, and a large table (where lanes would
    cost most) has few weights per entry, hence short chains of dependent adds anyway.
    """
    lanes = MAX_LANES
    while lanes > 1 and table_size * lanes * signs > max(num_weights // 4, 1):
        lanes //= 2
    return lanes


def key_dtype(slots: int, device: torch.device | str) -> torch.dtype:
    """The narrowest key dtype for ``slots`` expanded-table slots on ``device``.

    int16 on the CPU up to 2**15 slots (the numba loops of :mod:`.cpu_kernels` read it), else
    int32 below 2**31 (the narrowest :func:`torch.index_select` takes), else int64.
    """
    if torch.device(device).type == "cpu" and slots <= 2**15:
        return torch.int16
    return torch.int32 if slots < 2**31 else torch.int64


def build_plan(indices: torch.Tensor, table_size: int, sign: torch.Tensor | None = None,
               lanes: int | None = None, sorted_segments: bool = False, compact: bool | None = None) -> GatherPlan:
    """Build the :class:`GatherPlan` of one map (O(N); run once per map, not per step).

    Args:
        indices: integer tensor of any shape with values in ``[-1, table_size)`` (``-1`` = zero),
            on the device the plan is for.
        table_size: number of entries ``n``.
        sign: optional tensor of ``indices``'s shape with values in ``{-1, +1}``.
        lanes: accumulator lanes; ``None`` picks :func:`choose_lanes` (1 with ``sorted_segments``).
        sorted_segments: also build ``perm`` / ``offsets`` for the sorted (segmented-sum)
            backward, the one used on CUDA.
        compact: keep the live weights only, as a row list over the last dimension of
            ``indices`` (see :class:`GatherPlan`); ``None``: on the CPU without sorted segments,
            when at least :data:`COMPACT_SPARSITY` of the weights are zeroed (the plan then costs
            time and memory in proportion to the live weights). Not with ``sorted_segments``.

    Raises:
        ValueError: if an index lies outside ``[-1, table_size)`` (the CPU loops read the table
            without bounds checks, so this is checked here, once), or on ``compact`` with
            ``sorted_segments``.
    """
    if compact and sorted_segments:
        raise ValueError("a compact (row-list) plan has no sorted segments; pass one of compact, sorted_segments")
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < -1 or int(flat.max()) >= table_size):  # the CPU loops do not bounds-check
        raise ValueError(f"indices must lie in [-1, {table_size}) (-1 = weight fixed at zero), got "
                         f"[{int(flat.min())}, {int(flat.max())}]; was the map built for a table of {table_size} entries?")
    n_w = flat.numel()
    signs = 1 if sign is None else 2
    if lanes is None:
        lanes = 1 if sorted_segments else choose_lanes(n_w, table_size, signs)
    pos = torch.arange(n_w, device=flat.device)
    key = flat * lanes + pos % lanes
    if sign is not None:
        key = key * 2 + (sign.reshape(-1) < 0).long()
    key = torch.where(flat < 0, table_size * lanes * signs + pos % PAD_SLOTS, key)
    plan = GatherPlan(key, table_size, lanes, signs)
    dtype = key_dtype(plan.slots, flat.device)
    if compact is None:
        compact = (flat.device.type == "cpu" and not sorted_segments and n_w > 0
                   and int((flat < 0).sum()) >= COMPACT_SPARSITY * n_w)
    if compact:
        ncols = indices.shape[-1] if indices.dim() else 1
        live = flat >= 0
        rows = live.view(-1, ncols).sum(1)
        row_ptr = torch.cat([rows.new_zeros(1), rows.cumsum(0)])
        cols = (pos[live] % ncols).to(torch.int16 if ncols <= 2**15 else torch.int32)
        return GatherPlan(key[live].to(dtype), table_size, lanes, signs, cols=cols, row_ptr=row_ptr, ncols=ncols)
    plan = GatherPlan(key.to(dtype), table_size, lanes, signs)
    return with_segments(plan) if sorted_segments else plan


def for_device(plan: GatherPlan, device: torch.device | str, lanes: int | None = None,
               compact: bool | None = None) -> GatherPlan:
    """``plan`` laid out for ``device``: on the CPU per-position lanes and the narrowest key, no segments;
    elsewhere one lane and sorted segments. Returns ``plan`` itself when it already fits.

    The map (:func:`plan_indices`, :func:`plan_sign`) is unchanged; only the layout is rebuilt (O(N)).
    ``lanes`` fixes the CPU lanes (``None``: :func:`choose_lanes`) and ``compact`` the CPU row
    list (``None``: by sparsity, see :func:`build_plan`).
    """
    device = torch.device(device)
    cpu = device.type == "cpu"
    if plan.key.device.type == device.type and (plan.perm is None) == cpu \
            and plan.key.dtype == key_dtype(plan.slots, device) and (lanes is None or not cpu or plan.lanes == lanes) \
            and (compact is None or not cpu or plan.compact == compact):
        return plan
    indices = plan_indices(plan).to(device)
    sign = plan_sign(plan)
    return build_plan(indices, plan.table_size, None if sign is None else sign.to(device),
                      lanes=lanes if cpu else None, sorted_segments=not cpu, compact=compact if cpu else None)


def with_segments(plan: GatherPlan) -> GatherPlan:
    """``plan`` with ``perm`` and ``offsets`` for the sorted backward (computed from its key; not a row list)."""
    if plan.compact:
        raise ValueError("a compact (row-list) plan has no sorted segments; rebuild it with for_device")
    seg = _segment_of(plan)  # (e * signs + neg), >= n * signs for zeroed weights
    nseg = plan.table_size * plan.signs
    seg_sorted, perm = torch.sort(seg, stable=True)
    live = int(torch.searchsorted(seg_sorted, torch.tensor(nseg, device=seg.device)))
    counts = torch.bincount(seg_sorted[:live], minlength=nseg)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pdtype = torch.int32 if plan.key.numel() < 2**31 else torch.int64
    skewed = live > 0 and int(counts.max()) > SKEW_FACTOR * live / nseg
    return GatherPlan(plan.key, plan.table_size, plan.lanes, plan.signs, perm[:live].to(pdtype), offsets,
                      skewed=skewed)


def segment_sums(values: torch.Tensor, offsets: torch.Tensor, skewed: bool = False) -> torch.Tensor:
    """Sums of consecutive segments ``values[offsets[s]:offsets[s + 1]]``, deterministic, no atomics.

    Balanced segments (or float64 values): :func:`torch.segment_reduce`. ``skewed`` float32 /
    float16 / bfloat16 values: differences of their float64 prefix sum at the segment ends (one
    load-balanced scan, so one segment of millions costs what many small ones cost). The absolute
    error of a difference is at most about ``2**-52 * sum(|values|)``, below the float32
    rounding of the sum itself unless a segment cancels to ``2**-28`` of the total magnitude.

    Args:
        values: float tensor ``(L,)``.
        offsets: int64 ``(S + 1,)``, nondecreasing, ``offsets[0] == 0``, ``offsets[-1] == L``.
        skewed: use the prefix-sum route (ignored for float64).

    Shape:
        - Output: ``(S,)``, ``values``'s dtype.
    """
    if not skewed or values.dtype == torch.float64 or values.numel() == 0:
        return torch.segment_reduce(values, "sum", offsets=offsets, unsafe=True)
    prefix = torch.cumsum(values, 0, dtype=torch.float64)  # (L,)
    ends = prefix.index_select(0, (offsets - 1).clamp_(min=0)).masked_fill_(offsets == 0, 0.0)  # (S + 1,)
    return ends.diff().to(values.dtype)


def _dense_key(plan: GatherPlan) -> torch.Tensor:
    """int64 ``(N,)`` key of every weight, as a plan without a row list holds it."""
    if not plan.compact:
        return plan.key.long()
    n_w = plan.num_weights
    pos = torch.arange(n_w, device=plan.key.device)
    key = plan.table_size * plan.lanes * plan.signs + pos % PAD_SLOTS
    key[cpu_kernels.row_positions(plan.cols, plan.row_ptr, plan.ncols)] = plan.key.long()
    return key


def _segment_of(plan: GatherPlan) -> torch.Tensor:
    k = _dense_key(plan)
    neg = k % plan.signs
    return (k // (plan.lanes * plan.signs)) * plan.signs + neg


def plan_indices(plan: GatherPlan) -> torch.Tensor:
    """The map back from a plan: int64 ``(N,)`` entry per weight, ``-1`` for a zeroed weight."""
    e = _dense_key(plan) // (plan.lanes * plan.signs)
    return torch.where(e >= plan.table_size, -1, e)


def plan_sign(plan: GatherPlan) -> torch.Tensor | None:
    """int8 ``(N,)`` signs from a plan (``+1`` for zeroed weights), or ``None`` without a sign hash."""
    if plan.signs == 1:
        return None
    key = _dense_key(plan)
    zero = key >= plan.table_size * plan.lanes * plan.signs
    return torch.where(zero, 1, 1 - 2 * (key % 2)).to(torch.int8)


class TableGather(torch.autograd.Function):
    """``W = sign * table[e]`` through a :class:`GatherPlan`, with a deterministic table gradient.

    ``forward(table, plan, scale)`` returns the flat virtual weights, shape ``(N,)``, dtype
    of ``table``. The backward gives the table ``grad[e] = scale[e] * sum over weights w
    reading e of sign[w] * dL/dW[w]`` (``scale`` omitted when ``None``), in a fixed order on
    every device (see the module docstring). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, plan: GatherPlan, scale: torch.Tensor | None) -> torch.Tensor:
        ctx.plan, ctx.scale = plan, scale
        src = torch.stack([table, -table], 1) if plan.signs == 2 else table  # (n,) or (n, 2)
        src = src.view(-1, 1, plan.signs).expand(-1, plan.lanes, plan.signs).reshape(-1)  # (n * lanes * signs,)
        src = F.pad(src, (0, PAD_SLOTS))  # (slots,): zeroed weights read 0
        fast = cpu_kernels.supported(src, plan.key)
        if plan.compact:
            if fast:
                return cpu_kernels.gather_rows(src, plan.key, plan.cols, plan.row_ptr, plan.ncols)
            out = src.new_zeros(plan.num_weights)
            out[cpu_kernels.row_positions(plan.cols, plan.row_ptr, plan.ncols)] = src.index_select(
                0, _index_key(plan.key))
            return out
        if fast:
            return cpu_kernels.gather(src, plan.key)
        return src.index_select(0, _index_key(plan.key))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w: torch.Tensor):
        plan, scale = ctx.plan, ctx.scale
        grad_w = grad_w.contiguous()
        n = plan.table_size
        if plan.perm is not None:  # sorted segments (built for CUDA, or on request)
            sums = segment_sums(grad_w.index_select(0, plan.perm), plan.offsets, plan.skewed).view(
                n, plan.signs)  # (n, signs)
        else:
            acc = grad_w.new_zeros(plan.slots)
            fast = cpu_kernels.supported(acc, plan.key)
            if plan.compact and fast:
                cpu_kernels.scatter_add_rows(acc, plan.key, plan.cols, plan.row_ptr, plan.ncols, grad_w)
            elif plan.compact:
                pos = cpu_kernels.row_positions(plan.cols, plan.row_ptr, plan.ncols)
                acc.index_add_(0, _index_key(plan.key), grad_w[pos])
            elif fast:
                cpu_kernels.scatter_add(acc, plan.key, grad_w)  # the index_add_ below, bitwise
            else:
                acc.index_add_(0, _index_key(plan.key), grad_w)
            sums = acc[:n * plan.lanes * plan.signs].view(n, plan.lanes, plan.signs).sum(1)  # (n, signs)
        grad = sums[:, 0] - sums[:, 1] if plan.signs == 2 else sums[:, 0]
        if scale is not None:
            grad = grad * scale
        return grad, None, None


def _index_key(key: torch.Tensor) -> torch.Tensor:
    """``key`` in a dtype :func:`torch.index_select` / ``index_add_`` accept (int16 is widened)."""
    return key.int() if key.dtype == torch.int16 else key


def table_gather(table: torch.Tensor, plan: GatherPlan, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Functional form of :class:`TableGather`: flat ``(N,)`` virtual weights."""
    return TableGather.apply(table, plan, scale)


def gather_weight(table: torch.Tensor, indices: torch.Tensor, sign: torch.Tensor | None = None) -> torch.Tensor:
    """Virtual weights ``W = sign * table[indices]``, with ``W = 0`` where ``indices == -1``.

    Autograd gives the table the gradient ``dL/dtable[e] = sum over weights w with
    indices[w] == e of sign[w] * dL/dW[w]`` (Chang & Lipson 2018, section 2); zeroed
    weights contribute nothing. Builds a :class:`GatherPlan` per call (O(N)); layers build
    theirs once. The reference twin is :func:`gather_weight_ref`.

    Args:
        table: shared entries, float tensor of shape ``(n,)``.
        indices: integer tensor of any shape with values in ``[-1, n)``.
        sign: optional tensor of ``indices``'s shape with values in ``{-1, +1}``.

    Shape:
        - Output: ``indices.shape``, dtype and device of ``table``.
    """
    plan = build_plan(indices.to(table.device), table.shape[0], None if sign is None else sign.to(table.device),
                      sorted_segments=table.device.type != "cpu")
    return table_gather(table, plan).view(indices.shape)


def entry_loads(plan: GatherPlan) -> torch.Tensor:
    """Load of every entry: the number of (non-zeroed) virtual weights that read it, int64 ``(n,)``.

    Sign-agnostic (a weight of sign -1 counts like one of sign +1).
    """
    e = (plan.key.long() // (plan.lanes * plan.signs)).clamp_(max=plan.table_size)  # a row list: live ones
    return torch.bincount(e, minlength=plan.table_size + 1)[:plan.table_size]


def load_scale(loads: torch.Tensor, mode: str, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Per-entry gradient factor of a table-gradient normalisation, or ``None`` for ``"none"``.

    ``"load"``: ``mean_load / load[e]``; ``"sqrt_load"``: ``sqrt(mean_load / load[e])``, where
    ``mean_load`` is the mean load over the entries that are read at all (``load > 0``);
    unread entries (load 0, gradient always 0) get factor 1. A balanced map (every entry read
    equally often) gets factor 1 everywhere, i.e. is left unchanged.

    Args:
        loads: int ``(n,)``, :func:`entry_loads` (summed over every layer reading the table).
        mode: ``"none"``, ``"load"`` or ``"sqrt_load"``.

    Raises:
        ValueError: on an unknown mode.
    """
    if mode == "none":
        return None
    if mode not in ("load", "sqrt_load"):
        raise ValueError(f"unknown table_grad_scale {mode!r}; choose 'none', 'load' or 'sqrt_load'")
    loads64 = loads.to(torch.float64)
    read = loads64 > 0
    if not bool(read.any()):
        return torch.ones_like(loads64, dtype=dtype)
    mean = loads64[read].mean()
    factor = torch.where(read, mean / torch.where(read, loads64, 1.0), 1.0)
    if mode == "sqrt_load":
        factor = factor.sqrt()
    return factor.to(dtype)
