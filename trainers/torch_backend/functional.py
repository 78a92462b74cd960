"""ArbNet ops: materialise a virtual weight matrix from a shared table, and the gather plans (modules) they read.

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

Export (:func:`tracing`: ``torch.onnx.export``, ``torch.export``, ``torch.jit.trace``) cannot trace the numba
loops or the custom backward, so while tracing :meth:`MapPlan.gather` and :func:`table_lookup` read the table
with plain torch ops instead (:meth:`GatherPlan.read_traceable`): the expanded table, then one ``Gather`` by the
plan's key (a constant of the graph), the same values as :class:`TableGather`'s forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import cpu_kernels

__all__ = [
    "gather_weight",
    "gather_weight_ref",
    "gather_index",
    "gather_flat",
    "GatherPlan",
    "LanePlan",
    "RowListPlan",
    "SegmentPlan",
    "MapPlan",
    "build_plan",
    "for_device",
    "segment_sums",
    "TableGather",
    "entry_loads",
    "load_scale",
    "LOAD_SCALE_MODES",
    "plan_indices",
    "plan_sign",
    "expand_table",
    "tracing",
    "table_lookup",
]

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


def gather_flat(
    table: torch.Tensor,
    index: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    sign: torch.Tensor | None = None,
    padded: bool = True,
) -> torch.Tensor:
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


def tracing() -> bool:
    """True while torch traces a graph for export (``torch.onnx.export``, ``torch.export.export``, ``torch.jit.trace``).

    Then the layers read their tables with plain torch ops (:meth:`GatherPlan.read_traceable`), which export,
    instead of the numba loops and the custom backward of :class:`TableGather`. ``torch.compile`` is not export:
    it keeps :class:`TableGather`.
    """
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def expand_table(table: torch.Tensor, lanes: int, signs: int) -> torch.Tensor:
    """The expanded table a plan's key reads: ``(n * lanes * signs + PAD_SLOTS,)``, ``table``'s dtype and device.

    Slot ``(e * lanes + lane) * signs + neg`` holds ``table[e]`` (``neg = 0``) or ``-table[e]`` (``neg = 1``);
    the last :data:`PAD_SLOTS` slots hold 0 (what zeroed weights read).
    """
    src = torch.stack([table, -table], 1) if signs == 2 else table  # (n,) or (n, 2)
    src = src.view(-1, 1, signs).expand(-1, lanes, signs).reshape(-1)  # (n * lanes * signs,)
    return F.pad(src, (0, PAD_SLOTS))  # (slots,): zeroed weights read 0


class GatherPlan(nn.Module):
    """How one index map reads its table: built once by :func:`build_plan`, used every step.

    A small :class:`torch.nn.Module` whose index tensors are non-persistent buffers (they move with
    ``.to()`` and stay out of the state dict, which keeps the map itself). One subclass per layout:
    :class:`LanePlan` (the CPU backward over every weight), :class:`RowListPlan` (the CPU backward over
    the live weights of a sparse map) and :class:`SegmentPlan` (sorted segments, the CUDA backward).
    :func:`for_device` re-lays a plan for another device.

    Args:
        key: integer tensor of shape ``(N,)`` (``(L,)`` for a row list), see :attr:`key`.
        table_size: ``n``.
        lanes: accumulators per (entry, sign), a power of two in ``[1, 8]``.
        signs: 2 if the map has a sign hash, else 1.

    Attributes:
        key: integer buffer, one per virtual weight in row-major order: ``key = ((e * lanes + p % lanes) * signs
            + neg)`` with ``e`` the entry read, ``p`` the weight's flat position and ``neg = 1`` for a weight of
            sign ``-1``; a weight fixed at zero reads one of ``PAD_SLOTS`` zero slots after the table's,
            ``key = n * lanes * signs + p % PAD_SLOTS``. Its dtype is the narrowest that holds :attr:`slots`
            (:func:`key_dtype`): int16 on the CPU for tables of up to about 4,000 entries (2 bytes per virtual
            weight), else int32 (int64 from 2**31 slots).
        table_size: ``n``.
        lanes: accumulators per (entry, sign) in the CPU backward (1 for sorted segments: they need none).
        signs: 2 if the map has a sign hash, else 1.
    """

    compact = False
    """True for a row list (live weights only, :class:`RowListPlan`)."""
    key: torch.Tensor

    def __init__(self, key: torch.Tensor, table_size: int, lanes: int, signs: int) -> None:
        super().__init__()
        self.table_size, self.lanes, self.signs = table_size, lanes, signs
        self.register_buffer("key", key, persistent=False)

    @property
    def num_weights(self) -> int:
        """``N``, the virtual weights the plan writes, zeroed ones included."""
        return self.key.numel()

    @property
    def slots(self) -> int:
        """Length of the expanded table the key reads: ``n * lanes * signs + PAD_SLOTS``."""
        return self.table_size * self.lanes * self.signs + PAD_SLOTS

    @property
    def index_bytes(self) -> int:
        """Bytes held in the plan's buffers."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def dense_key(self) -> torch.Tensor:
        """int64 ``(N,)`` key of every weight, zeroed ones included (as :attr:`key` holds it without a row list)."""
        return self.key.long()

    def read(self, src: torch.Tensor) -> torch.Tensor:
        """Forward of :class:`TableGather`: flat ``(N,)`` weights ``src[key]`` from the expanded table ``src``."""
        if cpu_kernels.supported(src, self.key):
            return cpu_kernels.gather(src, self.key)
        return src.index_select(0, _index_key(self.key))

    def read_traceable(self, src: torch.Tensor) -> torch.Tensor:
        """:meth:`read` in plain torch ops that export (no numba): ``src.index_select(0, key)``, flat ``(N,)``."""
        return src.index_select(0, _index_key(self.key))

    def accumulate(self, grad_w: torch.Tensor) -> torch.Tensor:
        """Backward of :class:`TableGather` before the sign: per-(entry, sign) sums of ``grad_w``, ``(n, signs)``."""
        acc = grad_w.new_zeros(self.slots)  # (slots,)
        self.scatter(acc, grad_w)
        n = self.table_size
        return acc[: n * self.lanes * self.signs].view(n, self.lanes, self.signs).sum(1)  # (n, signs)

    def scatter(self, acc: torch.Tensor, grad_w: torch.Tensor) -> None:
        """``acc[key[p]] += grad_w[p]`` in increasing ``p`` (one thread's ``index_add_``)."""
        if cpu_kernels.supported(acc, self.key):
            cpu_kernels.scatter_add(acc, self.key, grad_w)  # the index_add_ below, bitwise
        else:
            acc.index_add_(0, _index_key(self.key), grad_w)

    def extra_repr(self) -> str:
        return (
            f"weights={self.num_weights}, table_size={self.table_size}, lanes={self.lanes}, signs={self.signs}, "
            f"key={str(self.key.dtype).removeprefix('torch.')}"
        )


class LanePlan(GatherPlan):
    """The CPU layout over every weight: :attr:`key` per virtual weight, ``lanes`` interleaved accumulators.

    Args and attributes: those of :class:`GatherPlan`; ``key`` has shape ``(N,)``.
    """


class RowListPlan(GatherPlan):
    """The CPU layout of a sparse map (:data:`COMPACT_SPARSITY`): a *row list* of the live weights only.

    Args:
        key: integer ``(L,)``: the keys of the ``L`` live weights, in row-major order.
        table_size, lanes, signs: as :class:`GatherPlan`.
        cols: int16 ``(L,)`` (int32 for rows of 2**15 columns or more): the live weights' columns.
        row_ptr: int64 ``(R + 1,)``: row ``r``'s live weights are list entries ``row_ptr[r]:row_ptr[r + 1]``.
        ncols: the columns per row (``N = R * ncols``).

    Attributes:
        key, cols, row_ptr: buffers, as the arguments.
        ncols: as the argument.
    """

    compact = True
    cols: torch.Tensor
    row_ptr: torch.Tensor

    def __init__(
        self,
        key: torch.Tensor,
        table_size: int,
        lanes: int,
        signs: int,
        cols: torch.Tensor,
        row_ptr: torch.Tensor,
        ncols: int,
    ) -> None:
        super().__init__(key, table_size, lanes, signs)
        self.ncols = ncols
        self.register_buffer("cols", cols, persistent=False)
        self.register_buffer("row_ptr", row_ptr, persistent=False)

    @property
    def num_weights(self) -> int:
        return (self.row_ptr.numel() - 1) * self.ncols

    def positions(self) -> torch.Tensor:
        """int64 ``(L,)`` flat positions of the live weights (:func:`~.cpu_kernels.row_positions`)."""
        return cpu_kernels.row_positions(self.cols, self.row_ptr, self.ncols)

    def dense_key(self) -> torch.Tensor:
        pos = torch.arange(self.num_weights, device=self.key.device)
        key = self.table_size * self.lanes * self.signs + pos % PAD_SLOTS
        key[self.positions()] = self.key.long()
        return key

    def read(self, src: torch.Tensor) -> torch.Tensor:
        if cpu_kernels.supported(src, self.key):
            return cpu_kernels.gather_rows(src, self.key, self.cols, self.row_ptr, self.ncols)
        out = src.new_zeros(self.num_weights)
        out[self.positions()] = src.index_select(0, _index_key(self.key))
        return out

    def positions_traceable(self) -> torch.Tensor:
        """:meth:`positions` in plain torch ops of static shapes (its twin, and what export traces): int64 ``(L,)``.

        The row of live weight ``j`` is the number of row starts ``row_ptr[1:R]`` at or before ``j`` (a scatter of
        ones at the starts, then a cumulative sum).
        """
        live = self.key.numel()
        starts = self.row_ptr[1:-1]  # (R - 1,), in [0, L]
        marks = torch.zeros(live + 1, dtype=torch.int64, device=self.key.device)
        marks = marks.scatter_add(0, starts, torch.ones_like(starts))
        rows = marks.cumsum(0)[:live]  # (L,)
        return rows * self.ncols + self.cols.long()

    def read_traceable(self, src: torch.Tensor) -> torch.Tensor:
        out = src.new_zeros(self.num_weights)
        return out.scatter(0, self.positions_traceable(), src.index_select(0, _index_key(self.key)))

    def scatter(self, acc: torch.Tensor, grad_w: torch.Tensor) -> None:
        if cpu_kernels.supported(acc, self.key):
            cpu_kernels.scatter_add_rows(acc, self.key, self.cols, self.row_ptr, self.ncols, grad_w)
        else:
            acc.index_add_(0, _index_key(self.key), grad_w[self.positions()])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, live={self.key.numel()}, ncols={self.ncols}"


class SegmentPlan(GatherPlan):
    """The sorted-segments layout (CUDA): one lane, the live weights sorted by (entry, sign).

    Args:
        key, table_size, lanes, signs: as :class:`GatherPlan` (``key`` per virtual weight, ``(N,)``).
        perm: int32 (int64 from 2**31 weights) ``(L,)``: the positions of the live weights sorted stably
            by ``(e, neg)``.
        offsets: int64 ``(n * signs + 1,)``: segment ``s = e * signs + neg`` of ``perm`` is
            ``perm[offsets[s]:offsets[s + 1]]``.
        skewed: True when the largest segment holds more than :data:`SKEW_FACTOR` times the mean (a hot
            map): the backward then sums segments as differences of a float64 prefix sum, whose cost does
            not depend on the segments' sizes (:func:`segment_sums`).

    Attributes:
        key, perm, offsets: buffers, as the arguments.
        skewed: as the argument.
    """

    perm: torch.Tensor
    offsets: torch.Tensor

    def __init__(
        self,
        key: torch.Tensor,
        table_size: int,
        lanes: int,
        signs: int,
        perm: torch.Tensor,
        offsets: torch.Tensor,
        skewed: bool,
    ) -> None:
        super().__init__(key, table_size, lanes, signs)
        self.skewed = skewed
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)

    def accumulate(self, grad_w: torch.Tensor) -> torch.Tensor:
        return segment_sums(grad_w.index_select(0, self.perm), self.offsets, self.skewed).view(
            self.table_size, self.signs
        )  # (n, signs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, live={self.perm.numel()}, skewed={self.skewed}"


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


def build_plan(
    indices: torch.Tensor,
    table_size: int,
    sign: torch.Tensor | None = None,
    lanes: int | None = None,
    sorted_segments: bool = False,
    compact: bool | None = None,
) -> GatherPlan:
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
        raise ValueError(
            f"indices must lie in [-1, {table_size}) (-1 = weight fixed at zero), got "
            f"[{int(flat.min())}, {int(flat.max())}]; was the map built for a table of {table_size} "
            "entries?"
        )
    n_w = flat.numel()
    signs = 1 if sign is None else 2
    if lanes is None:
        lanes = 1 if sorted_segments else choose_lanes(n_w, table_size, signs)
    pos = torch.arange(n_w, device=flat.device)
    key = flat * lanes + pos % lanes
    if sign is not None:
        key = key * 2 + (sign.reshape(-1) < 0).long()
    key = torch.where(flat < 0, table_size * lanes * signs + pos % PAD_SLOTS, key)
    dtype = key_dtype(table_size * lanes * signs + PAD_SLOTS, flat.device)
    if compact is None:
        compact = (
            flat.device.type == "cpu"
            and not sorted_segments
            and n_w > 0
            and int((flat < 0).sum()) >= COMPACT_SPARSITY * n_w
        )
    if compact:
        ncols = indices.shape[-1] if indices.dim() else 1
        live = flat >= 0
        rows = live.view(-1, ncols).sum(1)
        row_ptr = torch.cat([rows.new_zeros(1), rows.cumsum(0)])
        cols = (pos[live] % ncols).to(torch.int16 if ncols <= 2**15 else torch.int32)
        return RowListPlan(key[live].to(dtype), table_size, lanes, signs, cols, row_ptr, ncols)
    plan = LanePlan(key.to(dtype), table_size, lanes, signs)
    return with_segments(plan) if sorted_segments else plan


def for_device(
    plan: GatherPlan, device: torch.device | str, lanes: int | None = None, compact: bool | None = None
) -> GatherPlan:
    """``plan`` laid out for ``device``: on the CPU per-position lanes and the narrowest key, no segments;
    elsewhere one lane and sorted segments. Returns ``plan`` itself when it already fits.

    The map (:func:`plan_indices`, :func:`plan_sign`) is unchanged; only the layout is rebuilt (O(N)).
    ``lanes`` fixes the CPU lanes (``None``: :func:`choose_lanes`) and ``compact`` the CPU row
    list (``None``: by sparsity, see :func:`build_plan`).
    """
    device = torch.device(device)
    cpu = device.type == "cpu"
    if (
        plan.key.device.type == device.type
        and isinstance(plan, SegmentPlan) != cpu
        and plan.key.dtype == key_dtype(plan.slots, device)
        and (lanes is None or not cpu or plan.lanes == lanes)
        and (compact is None or not cpu or plan.compact == compact)
    ):
        return plan
    indices = plan_indices(plan).to(device)
    sign = plan_sign(plan)
    return build_plan(
        indices,
        plan.table_size,
        None if sign is None else sign.to(device),
        lanes=lanes if cpu else None,
        sorted_segments=not cpu,
        compact=compact if cpu else None,
    )


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
    return SegmentPlan(plan.key, plan.table_size, plan.lanes, plan.signs, perm[:live].to(pdtype), offsets, skewed)


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


def _segment_of(plan: GatherPlan) -> torch.Tensor:
    k = plan.dense_key()
    neg = k % plan.signs
    return (k // (plan.lanes * plan.signs)) * plan.signs + neg


def plan_indices(plan: GatherPlan) -> torch.Tensor:
    """The map back from a plan: int64 ``(N,)`` entry per weight, ``-1`` for a zeroed weight."""
    e = plan.dense_key() // (plan.lanes * plan.signs)
    return torch.where(e >= plan.table_size, -1, e)


def plan_sign(plan: GatherPlan) -> torch.Tensor | None:
    """int8 ``(N,)`` signs from a plan (``+1`` for zeroed weights), or ``None`` without a sign hash."""
    if plan.signs == 1:
        return None
    key = plan.dense_key()
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
        return plan.read(expand_table(table, plan.lanes, plan.signs))  # (N,)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w: torch.Tensor):
        plan, scale = ctx.plan, ctx.scale
        sums = plan.accumulate(grad_w.contiguous())  # (n, signs)
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


def table_lookup(table: torch.Tensor, plan: GatherPlan, keys: torch.Tensor, scale: torch.Tensor | None = None):
    """Weights ``sign * table[e]`` of the looked-up ``keys`` (of ``plan``'s layout): an embedding lookup.

    :class:`TableGather` over a :class:`LanePlan` of the keys alone, so the table gets the same deterministic
    gradient (on the CPU the serial numba scatter; elsewhere ``index_add_``) over the looked-up weights only;
    while :func:`tracing`, plain torch ops (an export graph: the expanded table, one ``Gather``).

    Args:
        table: ``(n,)`` float.
        plan: the layout the keys come from (gives ``table_size``, ``lanes``, ``signs``).
        keys: integer keys of ``plan``'s layout (:meth:`MapPlan.lookup` takes them from the plan's key), any shape.
        scale: optional per-entry gradient factor ``(n,)``.

    Shape:
        - Output: ``keys.shape``, ``table``'s dtype.
    """
    if tracing():
        src = expand_table(table, plan.lanes, plan.signs)
        return src.index_select(0, _index_key(keys.reshape(-1))).view(keys.shape)
    lookup = LanePlan(keys.reshape(-1).contiguous(), plan.table_size, plan.lanes, plan.signs)
    return table_gather(table, lookup, scale).view(keys.shape)


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
    plan = build_plan(
        indices.to(table.device),
        table.shape[0],
        None if sign is None else sign.to(table.device),
        sorted_segments=table.device.type != "cpu",
    )
    return table_gather(table, plan).view(indices.shape)


def entry_loads(plan: GatherPlan) -> torch.Tensor:
    """Load of every entry: the number of (non-zeroed) virtual weights that read it, int64 ``(n,)``.

    Sign-agnostic (a weight of sign -1 counts like one of sign +1).
    """
    e = (plan.key.long() // (plan.lanes * plan.signs)).clamp_(max=plan.table_size)  # a row list: live ones
    return torch.bincount(e, minlength=plan.table_size + 1)[: plan.table_size]


LOAD_SCALE_MODES = ("load", "sqrt_load", "load_hot", "load_cold")
"""The :func:`load_scale` modes that scale (``"none"`` besides them leaves the gradients as they are)."""


def load_scale(loads: torch.Tensor, mode: str, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Per-entry gradient factor of a table-gradient normalisation, or ``None`` for ``"none"``.

    With ``mean_load`` the mean load over the entries that are read at all (``load > 0``) and
    ``r[e] = mean_load / load[e]``:

    * ``"load"``: ``r[e]`` (every entry steps like an entry of a balanced map);
    * ``"sqrt_load"``: ``sqrt(r[e])``;
    * ``"load_hot"``: ``min(r[e], 1)``: only the entries read more often than the mean
      (``load > mean_load``) are scaled down; entries at or below the mean keep factor 1;
    * ``"load_cold"``: ``max(r[e], 1)``: only the entries read less often than the mean are
      scaled up; entries at or above the mean keep factor 1.

    ``"load_hot"`` and ``"load_cold"`` are the two halves of ``"load"`` (their product is its factor,
    entry by entry): the ablation that tells "hot entries step too far" from "rare entries step too
    little" (issue 21, item 4). Unread entries (load 0, gradient always 0) get factor 1 in every
    mode. A balanced map (every read entry read equally often) gets factor exactly 1 everywhere,
    i.e. is left unchanged.

    Args:
        loads: int ``(n,)``, :func:`entry_loads` (summed over every layer reading the table).
        mode: ``"none"`` or one of :data:`LOAD_SCALE_MODES`.
        dtype: dtype of the factor (the table's).

    Returns:
        ``None`` for ``"none"``; else the factor, ``dtype`` tensor of shape ``(n,)`` on ``loads``'s
        device, computed in float64 and rounded once.

    Raises:
        ValueError: on an unknown mode.
    """
    if mode == "none":
        return None
    if mode not in LOAD_SCALE_MODES:
        raise ValueError(f"unknown table_grad_scale {mode!r}; choose 'none', " + ", ".join(map(repr, LOAD_SCALE_MODES)))
    loads64 = loads.to(torch.float64)
    read = loads64 > 0
    if not bool(read.any()):
        return torch.ones_like(loads64, dtype=dtype)
    mean = loads64[read].mean()
    factor = torch.where(read, mean / torch.where(read, loads64, 1.0), 1.0)
    if mode == "sqrt_load":
        factor = factor.sqrt()
    elif mode == "load_hot":
        factor = factor.clamp(max=1.0)
    elif mode == "load_cold":
        factor = factor.clamp(min=1.0)
    return factor.to(dtype)


class MapPlan(nn.Module):
    r"""One index map compiled for reading a table, kept laid out for the device it is on.

    Holds the map's :class:`GatherPlan` as its submodule :attr:`layout` (built by :func:`build_plan`
    and :func:`for_device`), or none at all for a map that reads one contiguous unsigned range of the
    table (the identity map, or a layer's slice of a global identity map: the weights are then a view
    of the table). Moving the module (``.to()``, ``.cuda()``, ``.cpu()``) re-lays the plan for the
    new device with :func:`for_device`: CPU lanes and the narrowest key, or sorted segments elsewhere.
    Its buffers are not persistent: the owner saves the map itself (``indices``, ``sign``).

    Args:
        indices: integer tensor of shape ``shape`` with values in ``[-1, table_size)`` (``-1`` = a weight
            fixed at zero); its dtype is kept for :meth:`indices`.
        table_size: number of entries ``n`` of the table read.
        sign: optional integer tensor of ``indices``'s shape with values in ``{-1, +1}``.
        device: where the plan lives (the table's device); ``None``: ``indices``'s.
        lanes, compact: fix the CPU layout (see :func:`build_plan`); ``None``: chosen per map.
        view: allow the view of a contiguous range (no plan).

    Attributes:
        layout: the :class:`GatherPlan` submodule, or ``None`` for a view.
        start: for a view, the first entry read, else ``None``.
        shape: the map's shape.
        table_size: ``n``.
        index_dtype: the dtype ``indices`` had.
        num_zeros: weights fixed at zero.
    """

    def __init__(
        self,
        indices: torch.Tensor,
        table_size: int,
        sign: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        lanes: int | None = None,
        compact: bool | None = None,
        view: bool = True,
    ) -> None:
        super().__init__()
        self.shape, self.table_size, self.index_dtype = tuple(indices.shape), table_size, indices.dtype
        self.lanes, self.compact = lanes, compact
        flat = indices.reshape(-1).long()
        start = int(flat[0]) if flat.numel() else 0
        contiguous = (
            view
            and sign is None
            and start >= 0
            and torch.equal(flat, torch.arange(start, start + flat.numel(), device=flat.device))
        )
        self.start: int | None = start if contiguous else None
        self.num_zeros = int((flat < 0).sum())
        self.layout: GatherPlan | None = None
        if self.start is None:
            plan = build_plan(indices, table_size, sign, lanes=lanes, compact=compact)
            self.layout = for_device(plan, indices.device if device is None else device, lanes, compact)

    def to_plan(self, device: torch.device | str | None = None) -> None:
        """Replace a view by a :class:`GatherPlan` on ``device`` (a view has no backward of its own to scale)."""
        if self.start is not None:
            indices = self.indices(device)
            self.layout = for_device(build_plan(indices, self.table_size), indices.device)
            self.start = None

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.layout is not None:  # re-lay for the device the buffers moved to (a no-op if it fits)
            self.layout = for_device(self.layout, self.layout.key.device, self.lanes, self.compact)
        return self

    def _view(self) -> slice:
        """The entries a view reads, ``start:start + N``."""
        if self.start is None:
            raise RuntimeError("this map is held as a gather plan, not as a view of the table")
        return slice(self.start, self.start + math.prod(self.shape))

    def indices(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The map, shape :attr:`shape`, dtype :attr:`index_dtype`, ``-1`` = zero (rebuilt per call).

        ``device`` places a view's indices (a plan's are on its device).
        """
        if self.layout is None:
            view = self._view()
            return torch.arange(view.start, view.stop, device=device).view(self.shape).to(self.index_dtype)
        return plan_indices(self.layout).view(self.shape).to(self.index_dtype)

    def sign(self) -> torch.Tensor | None:
        """int8 sign hash of shape :attr:`shape`, or ``None`` (rebuilt per call)."""
        sign = None if self.layout is None else plan_sign(self.layout)
        return None if sign is None else sign.view(self.shape)

    @property
    def has_sign(self) -> bool:
        """True if the map has a sign hash."""
        return self.layout is not None and self.layout.signs == 2

    @property
    def index_bytes(self) -> int:
        """Bytes held in the plan's buffers (0 for a view)."""
        return 0 if self.layout is None else self.layout.index_bytes

    def entry_loads(self, device: torch.device | str | None = None) -> torch.Tensor:
        """int64 ``(table_size,)``: how many weights read each entry (zeroed ones not counted, signs ignored)."""
        if self.layout is None:
            loads = torch.zeros(self.table_size, dtype=torch.int64, device=device)
            loads[self._view()] = 1
            return loads
        return entry_loads(self.layout)

    def gather(self, table: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The weights ``sign * table[indices]``, shape :attr:`shape` (:class:`TableGather`; a view for a range).

        ``scale`` multiplies the table gradient per entry; a view takes none (see :meth:`to_plan`).
        """
        if self.layout is None:
            if scale is not None:
                raise ValueError("a view of the table has no backward to scale; call to_plan() first")
            return table[self._view()].view(self.shape)
        if tracing():  # export: plain torch ops, no numba loops or custom backward
            src = expand_table(table, self.layout.lanes, self.layout.signs)
            return self.layout.read_traceable(src).view(self.shape)
        return table_gather(table, self.layout, scale).view(self.shape)

    def lookup(
        self,
        table: torch.Tensor,
        rows: torch.Tensor,
        pad: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Whole rows of the weights, ``sign * table[indices[rows]]``: shape ``(*rows.shape, C)`` for a ``(R, C)`` map.

        An embedding lookup (:func:`table_lookup`): only the looked-up weights are gathered, and only they
        send gradient to the table.

        Args:
            table: ``(n,)`` float.
            rows: int64 row numbers in ``[0, R)``, any shape.
            pad: optional bool tensor of ``rows``'s shape: those rows read zeros and send no gradient
                (``nn.Embedding``'s ``padding_idx``).
            scale: optional per-entry gradient factor ``(n,)``.

        Raises:
            ValueError: if the map is held as a view or a row list (build it with ``view=False, compact=False``).
        """
        layout = self.layout
        if layout is None or layout.compact:
            raise ValueError("row lookups need a key per weight; build the MapPlan with view=False, compact=False")
        keys = layout.key.view(self.shape)[rows]  # (*rows.shape, C)
        if pad is not None:  # the first zero slot: reads 0, its gradient is dropped
            keys = _index_key(keys)  # int16 widened: ONNX's Where has no int16
            keys = keys.masked_fill(pad.unsqueeze(-1), layout.table_size * layout.lanes * layout.signs)
        return table_lookup(table, layout, keys, scale)

    def extra_repr(self) -> str:
        view = f", view_start={self.start}" if self.layout is None else ""
        return f"shape={self.shape}, table_size={self.table_size}{view}"

    def __repr__(self) -> str:  # one line: the layout's repr inside
        inner = self.extra_repr() if self.layout is None else f"{self.extra_repr()}, {self.layout!r}"
        return f"{type(self).__name__}({inner})"
