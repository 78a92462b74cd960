"""Decide whether one layer's index map *is* a convolution, and recover its geometry.

A map is a convolution on a grid ``(C_in, *in_size) -> (C_out, *out_size)`` when there is a
:class:`~hashlab.maps.ConvGeometry` whose tap map (:func:`~hashlab.maps.conv.conv_taps`) has exactly
the same structural zeros and exactly the same sharing: two weights read the same table entry
if and only if they are the same kernel tap (Chang & Lipson 2018, eq. 4-6: translation-invariant
sharing). Only equality of entries is used, never their values, and labels are canonicalised by
first occurrence first, so any relabeling (permutation) of the table gives the same verdict, the
same geometry and witnesses at the same positions.

Algorithm (N weights, U distinct entries):

1. Canonicalise labels and gather each label's first and last occurrence (one sort, O(N log N)).
2. Universal refutations, valid for every geometry: an entry read twice by one output row or one
   input column (a convolution reads each tap once per output position and once per input
   position), an entry read with both signs, or an empty layer.
3. Candidate grids: the layer's ``attrs["conv"]`` if present, else every factorisation of
   ``in_features`` / ``out_features`` into channels x spatial sizes (2-d, then 1-d), pruned in
   O(U + N/C) by necessary conditions: every entry stays in one input and one output channel,
   per-channel nonzero counts agree, and nonzero counts over the spatial grid are rank one.
4. Per grid, the geometry is *derived*, not searched: the stride from how far an entry moves per
   output step, the padding / dilation / kernel size from the set of input offsets, the groups
   from the channel pairs (O(U)).
5. The derived geometry is verified exactly against the map (O(N)): zeros, "same tap implies same
   entry" and "same entry implies same tap". The first violation in row-major order is the witness.

Recognised class: geometries in which every kernel tap is read at least once and, along each
axis with two or more output positions, some tap is read at two of them (true unless the
padding exceeds the kernel's reach or the stride skips whole inputs). Among equivalent
geometries the canonical one is returned (:meth:`ConvGeometry.canonical`); search prefers 2-d
grids with both sides >= 2, then 1-d; more input channels, more output channels, squarer grids.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..maps.conv import ConvGeometry, conv_taps
from ..maps.indexmap import LayerMap
from ..maps.spec import SpecError
from .witness import WeightRef, Witness

__all__ = ["ConvVerdict", "LayerFacts", "recognize_conv", "universal_witness", "is_recognizable"]


def is_recognizable(geometry: ConvGeometry) -> bool:
    """Whether :func:`recognize_conv` is guaranteed to recognise ``conv_map(geometry)`` from the map alone.

    True when, along every axis, each kernel tap is read at least once and (if the axis has two or
    more output positions) some tap is read at two of them. Otherwise padding beyond the kernel's
    reach, or a stride skipping whole inputs, leaves taps or strides with no trace in the map;
    such a map may still be recognised, as an equivalent geometry.
    """
    for n, k, s, p, d, o in zip(geometry.in_size, *geometry.axes(), geometry.out_size):
        x = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
        inside = (x >= 0) & (x < n)
        if not inside.any(axis=0).all() or (o >= 2 and not (inside.sum(axis=0) >= 2).any()):
            return False
    return True


class LayerFacts:
    """Relabeling-invariant facts about one layer's index map, computed once in O(N log N).

    Parameters
    ----------
    layer : LayerMap

    Attributes
    ----------
    labels : ndarray of shape (out_features, in_features), int32
        Canonical labels: entries renumbered ``0, 1, ...`` by first occurrence in row-major
        order; ``-1`` stays ``-1``. Identical for any permutation of the table.
    entry : ndarray of shape (U,)
        Original table entry of each canonical label.
    first, last : ndarray of shape (U,), int64
        Flat (row-major) position of each label's first and last occurrence.
    count : ndarray of shape (U,)
        Weights reading each label.
    nnz : int
        Weights that are not fixed at zero.
    """

    def __init__(self, layer: LayerMap):
        idx = np.asarray(layer.indices)
        if idx.ndim != 2:
            raise ValueError(f"layer {layer.name!r}: indices must be 2-D, got shape {idx.shape}")
        self.name = layer.name
        self.indices = idx
        self.rows, self.cols = idx.shape
        flat = idx.reshape(-1)
        nz = np.flatnonzero(flat >= 0)
        vals = flat[nz].astype(np.int64)
        order = np.argsort(vals, kind="stable")
        sv = vals[order]
        new = np.ones(sv.size, dtype=bool)
        new[1:] = sv[1:] != sv[:-1]
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], sv.size).astype(np.int64) if starts.size else starts
        first, last = nz[order[starts]], nz[order[ends - 1]]
        perm = np.argsort(first, kind="stable")
        rank = np.empty(perm.size, dtype=np.int64)
        rank[perm] = np.arange(perm.size)
        labels: npt.NDArray[np.signedinteger] = np.full(
            flat.size, -1, dtype=np.int32 if perm.size < 2**31 else np.int64
        )
        labels[nz[order]] = rank[np.cumsum(new) - 1]
        self.labels = labels.reshape(idx.shape)
        self.entry = sv[starts][perm]
        self.first, self.last = first[perm], last[perm]
        self.count = (ends - starts)[perm]
        self.nnz = int(nz.size)
        self.n_labels = int(perm.size)
        live = idx >= 0
        self.row_counts = live.sum(axis=1)
        self.col_counts = live.sum(axis=0)
        self.sign_pair: tuple[int, int] | None = None
        if layer.sign is not None and nz.size:
            s = np.asarray(layer.sign).reshape(-1)[nz][order].astype(np.int8)
            mixed = np.minimum.reduceat(s, starts) != np.maximum.reduceat(s, starts)
            if mixed.any():
                g = perm[np.argmax(mixed[perm])]  # the mixed label that occurs first
                members, ms = nz[order[starts[g] : ends[g]]], s[starts[g] : ends[g]]
                self.sign_pair = (int(members[0]), int(members[np.argmax(ms != ms[0])]))

    @property
    def dense(self) -> bool:
        """Every weight reads its own entry and none is fixed at zero (a plain MLP layer)."""
        return self.nnz == self.indices.size and self.n_labels == self.nnz

    def ref(self, pos: int) -> WeightRef:
        """The weight at flat position ``pos``."""
        r, c = divmod(int(pos), self.cols)
        return WeightRef(self.name, r, c, int(self.indices[r, c]))


def _first_repeat(labels: np.ndarray) -> tuple[int, int, int] | None:
    """``(row, col_a, col_b)`` of the first row (lowest) in which a label occurs twice, else None."""
    s = np.sort(labels, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    rows = np.flatnonzero(dup.any(axis=1))
    if not rows.size:
        return None
    r = int(rows[0])
    lab = s[r, 1:][dup[r]].min()
    a, b = np.flatnonzero(labels[r] == lab)[:2]
    return r, int(a), int(b)


def universal_witness(f: LayerFacts) -> Witness | None:
    """A witness that refutes *every* convolution geometry at once, or None.

    Checks, in order: the layer is empty; an entry is read with both signs; an output row reads an
    entry twice; an input column reads an entry twice. A convolution reads each kernel tap at most
    once per output position (``(ci, tap) -> input`` is injective) and at most once per input
    position (``(tap, input) -> output`` is injective), with one sign per tap.
    """
    if f.nnz == 0:
        return Witness("empty", f"every weight of layer {f.name!r} is fixed at zero; there is no kernel to recover")
    if f.sign_pair is not None:
        a, b = (f.ref(p) for p in f.sign_pair)
        return Witness(
            "sign",
            f"{a} and {b} read entry {a.entry} with opposite signs; a convolution reads each kernel "
            "entry with one sign",
            (a, b),
        )
    rep = _first_repeat(f.labels)
    if rep is not None:
        r, ca, cb = rep
        a, b = f.ref(r * f.cols + ca), f.ref(r * f.cols + cb)
        return Witness(
            "repeat_in_row",
            f"{a} and {b} both read entry {a.entry} in output row {r}; a convolution reads "
            "each kernel entry at most once per output position",
            (a, b),
        )
    rep = _first_repeat(f.labels.T)
    if rep is not None:
        c, ra, rb = rep
        a, b = f.ref(ra * f.cols + c), f.ref(rb * f.cols + c)
        return Witness(
            "repeat_in_column",
            f"{a} and {b} both read entry {a.entry} from input column {c}; a "
            "convolution reads each kernel entry at most once per input position",
            (a, b),
        )
    return None


@dataclass(frozen=True)
class _Grid:
    in_channels: int
    in_size: tuple[int, ...]
    out_channels: int
    out_size: tuple[int, ...]

    def describe(self) -> str:
        return (
            f"grid {'x'.join(map(str, (self.in_channels, *self.in_size)))} -> "
            f"{'x'.join(map(str, (self.out_channels, *self.out_size)))}"
        )


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _factorizations(n: int, ndim: int) -> list[tuple[int, ...]]:
    """Ordered tuples of ``ndim`` positive ints with product ``n``, squarest first."""
    if ndim == 1:
        return [(n,)]
    out = [(d, *rest) for d in _divisors(n) for rest in _factorizations(n // d, ndim - 1)]
    return sorted(out, key=lambda t: (max(t) / min(t), t))


def _rank_one(counts: np.ndarray) -> bool:
    """Whether an array of nonzero counts over a spatial grid is an outer product of per-axis vectors.

    A convolution's footprint is separable: the weights read by output position ``(y, x)`` number
    ``A(y) * B(x)``, and the weights reading input ``(r, c)`` number ``A'(r) * B'(c)``.
    """
    if counts.ndim < 2 or counts.max(initial=0) == 0:
        return True
    for ax in range(counts.ndim):
        m = np.moveaxis(counts, ax, 0).reshape(counts.shape[ax], -1).astype(np.int64)
        y, x = np.unravel_index(np.argmax(m), m.shape)
        if not np.all(m * m[y, x] == np.outer(m[:, x], m[y, :])):
            return False
    return True


def _grids(
    f: LayerFacts,
    ndims: Sequence[int],
    in_shape: tuple[int, ...] | None,
    out_shape: tuple[int, ...] | None,
    strict: bool = True,
) -> Iterator[_Grid]:
    """Candidate grids, most natural first, pruned by necessary conditions (see module doc).

    ``strict=False`` keeps only the channel-block condition on labels (used to find the closest
    candidate for a witness: one dropped or changed weight breaks the count conditions).
    """
    fr, fc = np.divmod(f.first, f.cols)
    lr, lc = np.divmod(f.last, f.cols)

    def channels_ok(n_ch: int, size: int, a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> bool:
        per = size // n_ch
        return bool(np.all(a // per == b // per)) and (
            not strict or bool(np.all(counts.reshape(n_ch, per) == counts[:per]))
        )

    def separable(counts: np.ndarray, shape: tuple[int, ...]) -> bool:
        return not strict or _rank_one(counts.reshape(shape))

    cins = (
        [in_shape[0]]
        if in_shape
        else [c for c in reversed(_divisors(f.cols)) if channels_ok(c, f.cols, fc, lc, f.col_counts)]
    )
    couts = (
        [out_shape[0]]
        if out_shape
        else [c for c in reversed(_divisors(f.rows)) if channels_ok(c, f.rows, fr, lr, f.row_counts)]
    )
    dims = [len(in_shape) - 1] if in_shape else [len(out_shape) - 1] if out_shape else list(ndims)
    for ndim in dims:
        for cin in cins:
            p_in = f.cols // cin
            if in_shape:
                in_sizes = [tuple(in_shape[1:])]
            else:
                in_sizes = [
                    t
                    for t in _factorizations(p_in, ndim)
                    if (ndim == 1 or 1 not in dims or min(t) >= 2) and separable(f.col_counts[:p_in], t)
                ]
            for cout in couts:
                p_out = f.rows // cout
                out_sizes = (
                    [tuple(out_shape[1:])]
                    if out_shape
                    else [t for t in _factorizations(p_out, ndim) if separable(f.row_counts[:p_out], t)]
                )
                for i in in_sizes:
                    for o in out_sizes:
                        yield _Grid(cin, i, cout, o)


class _Describe:
    """Coordinates of weights and taps under one grid / geometry, for witness sentences."""

    def __init__(self, f: LayerFacts, grid: _Grid):
        self.f, self.g = f, grid

    def out(self, row: int) -> tuple[int, ...]:
        co, pos = divmod(row, math.prod(self.g.out_size))
        return (co, *map(int, np.unravel_index(pos, self.g.out_size)))

    def inp(self, col: int) -> tuple[int, ...]:
        ci, pos = divmod(col, math.prod(self.g.in_size))
        return (ci, *map(int, np.unravel_index(pos, self.g.in_size)))

    @staticmethod
    def at(c: tuple[int, ...]) -> str:
        return f"position ({','.join(str(int(v)) for v in c[1:])}) of channel {int(c[0])}"

    def out_at(self, row: int) -> str:
        return "output " + self.at(self.out(row))

    def in_at(self, col: int) -> str:
        return "input " + self.at(self.inp(col))


def _tap(geom: ConvGeometry, t: int) -> str:
    return "K[" + ",".join(str(int(v)) for v in np.unravel_index(int(t), geom.weight_shape)) + "]"


_QUICK = 256  # labels checked first: most wrong grids fail on them, in O(1)
_WITNESS_VERIFICATIONS = 16  # exact O(N) checks spent on finding the closest candidate of a non-convolution


def _derive(f: LayerFacts, grid: _Grid, quick: bool = False) -> tuple[int, ConvGeometry | None, Witness | None]:
    """Derive the only geometry the map can have on ``grid``, from first/last occurrences (O(U)).

    Returns ``(stage, geometry, None)`` on success (stage 5) or ``(stage, None, witness)`` with
    the stage reached: 1 channels, 2 stride, 3 padding / output size. With ``quick`` only the
    channel and stride checks run, on the first ``_QUICK`` labels (a prefix, so a violation found
    there is also the first violation overall); it returns ``(0, None, None)`` if they pass.
    """
    d = _Describe(f, grid)
    cand = grid.describe()
    p_in, p_out = math.prod(grid.in_size), math.prod(grid.out_size)
    n = _QUICK if quick else f.n_labels
    fr, fc = np.divmod(f.first[:n], f.cols)
    lr, lc = np.divmod(f.last[:n], f.cols)
    co, ci = fr // p_out, fc // p_in
    bad = (co != lr // p_out) | (ci != lc // p_in)
    if bad.any():
        k = int(np.argmax(bad))
        a, b = f.ref(f.first[k]), f.ref(f.last[k])
        return (
            1,
            None,
            Witness(
                "should_not_share",
                f"{a} and {b} both read entry {a.entry}, but they connect "
                f"{d.in_at(fc[k])} to {d.out_at(fr[k])} and {d.in_at(lc[k])} to {d.out_at(lr[k])}: a "
                "kernel entry belongs to one (output channel, input channel) pair",
                (a, b),
                cand,
            ),
        )
    yf = np.unravel_index(fr % p_out, grid.out_size)
    yl = np.unravel_index(lr % p_out, grid.out_size)
    xf = np.unravel_index(fc % p_in, grid.in_size)
    xl = np.unravel_index(lc % p_in, grid.in_size)
    kernel, stride, padding, dilation = [], [], [], []
    for ax, (n_in, n_out) in enumerate(zip(grid.in_size, grid.out_size)):
        dy, dr = yl[ax] - yf[ax], xl[ax] - xf[ax]
        moving = dy != 0
        if n_out > 1:
            if not moving.any():
                return (
                    2,
                    None,
                    Witness(
                        "stride",
                        f"no entry is read at two output positions along axis {ax}, so no "
                        f"stride explains the {n_out} outputs of that axis",
                        (),
                        cand,
                    ),
                )
            k0 = int(np.argmax(moving))
            s = int(dr[k0]) // int(dy[k0])
            a0, b0 = f.ref(f.first[k0]), f.ref(f.last[k0])
            if s < 1 or s * dy[k0] != dr[k0]:
                return (
                    2,
                    None,
                    Witness(
                        "should_not_share",
                        f"{a0} and {b0} both read entry {a0.entry}; along axis "
                        f"{ax} their outputs are {int(dy[k0])} steps apart but their inputs "
                        f"{int(dr[k0])}: a kernel entry moves by a whole stride >= 1 per output step",
                        (a0, b0),
                        cand,
                    ),
                )
        else:
            s, a0, b0 = 0, None, None
        off = dr != s * dy
        if off.any():
            k = int(np.argmax(off))
            a, b = f.ref(f.first[k]), f.ref(f.last[k])
            rule = (
                f"the stride is {s} (from {a0} and {b0}, which share entry {a0.entry})"
                if a0 is not None
                else "there is one output position on this axis"
            )
            return (
                2,
                None,
                Witness(
                    "should_not_share",
                    f"{a} and {b} both read entry {a.entry}; along axis {ax} their "
                    f"outputs are {int(dy[k])} steps apart and their inputs {int(dr[k])}, but {rule}, "
                    f"so one kernel entry would move by {s * int(dy[k])}",
                    (a, b),
                    cand,
                ),
            )
        if quick:
            continue
        offsets = np.unique(xf[ax] - s * yf[ax])
        pad = -int(offsets[0])
        if pad < 0:
            k = int(np.argmin(xf[ax] - s * yf[ax]))
            a = f.ref(f.first[k])
            return (
                3,
                None,
                Witness(
                    "padding",
                    f"along axis {ax} every entry is read at least {-pad} inputs past the "
                    f"start of its output's window (e.g. {a}); that needs negative padding",
                    (a,),
                    cand,
                ),
            )
        dil = int(np.gcd.reduce(np.diff(offsets))) if offsets.size > 1 else 1
        k_ax = (int(offsets[-1]) - int(offsets[0])) // dil + 1
        reach = n_in + 2 * pad - dil * (k_ax - 1)
        if n_out == 1:
            s = max(1, reach)
        if reach < 1 or (reach - 1) // s + 1 != n_out:
            return (
                3,
                None,
                Witness(
                    "output_size",
                    f"along axis {ax}, a kernel of {k_ax} (dilation {dil}, stride {s}, "
                    f"padding {pad}) on {n_in} inputs gives {max(0, (reach - 1) // s + 1)} outputs, "
                    f"not {n_out}",
                    (),
                    cand,
                ),
            )
        kernel.append(k_ax)
        stride.append(s)
        padding.append(pad)
        dilation.append(dil)
    if quick:
        return 0, None, None
    pairs = np.unique(co * grid.in_channels + ci)
    cg_in = int(np.count_nonzero(pairs // grid.in_channels == pairs[0] // grid.in_channels))
    groups = grid.in_channels // cg_in
    if grid.in_channels % cg_in or grid.out_channels % groups:
        groups = 1  # no valid grouping: verifying the ungrouped geometry names a weight that breaks it
    geom = ConvGeometry(
        grid.in_channels,
        grid.out_channels,
        grid.in_size,
        tuple(kernel),
        tuple(stride),
        tuple(padding),
        tuple(dilation),
        groups,
        bias=False,
    )
    return 5, geom, None


def _derive_checked(f: LayerFacts, grid: _Grid) -> tuple[int, ConvGeometry | None, Witness | None]:
    """:func:`_derive`, after the quick check on the first labels (which rejects most wrong grids)."""
    stage, geom, wit = _derive(f, grid, quick=True)
    return (stage, geom, wit) if wit is not None else _derive(f, grid)


def _expected_nnz(g: ConvGeometry) -> int:
    """Nonzeros of ``conv_taps(g)`` in O(sum of out * kernel sizes)."""
    per_axis = []
    for n, k, s, p, dl, o in zip(g.in_size, *g.axes(), g.out_size):
        x = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * dl
        per_axis.append(int(np.count_nonzero((x >= 0) & (x < n))))
    return g.out_channels * (g.in_channels // g.groups) * math.prod(per_axis)


def _verify(f: LayerFacts, geom: ConvGeometry) -> tuple[int, Witness | None]:
    """Compare the map with ``geom``'s tap map exactly (O(N)): ``(violations, first witness)``."""
    grid = _Grid(geom.in_channels, geom.in_size, geom.out_channels, geom.out_size)
    d = _Describe(f, grid)
    cand = geom.describe(bias=False)
    taps = conv_taps(geom).reshape(-1)
    labels = f.labels.reshape(-1)
    t_live, m_live = taps >= 0, labels >= 0
    both = np.flatnonzero(t_live & m_live)
    tb, mb = taps[both], labels[both]
    tap_first = np.full(geom.kernel_entries, -1, dtype=np.int64)
    u, i = np.unique(tb, return_index=True)
    tap_first[u] = both[i]
    lab_first = np.full(f.n_labels, -1, dtype=np.int64)
    u, i = np.unique(mb, return_index=True)
    lab_first[u] = both[i]
    bad_share = labels[tap_first[tb]] != mb
    bad_split = taps[lab_first[mb]] != tb
    bad_mask = np.flatnonzero(t_live != m_live)
    n_bad = int(bad_mask.size + bad_share.sum() + bad_split.sum())
    if n_bad == 0:
        return 0, None
    firsts = [int(x[0]) for x in (bad_mask, both[bad_share], both[bad_split]) if x.size]
    p = min(firsts)
    r, c = divmod(p, f.cols)
    w = f.ref(p)

    def moved(q: int) -> str:
        delta = tuple(int(a) - int(b) for a, b in zip(d.out(r)[1:], d.out(q // f.cols)[1:]))
        return f"translated by {delta} output steps"

    if bad_mask.size and p == bad_mask[0]:
        if taps[p] >= 0:
            q = int(tap_first[taps[p]])
            tail = (
                f"; {f.ref(q)} is the same tap at {d.out_at(q // f.cols)} ({moved(q)}) and reads entry {f.ref(q).entry}"
                if q >= 0
                else ""
            )
            refs = (w, f.ref(q)) if q >= 0 else (w,)
            return n_bad, Witness(
                "should_be_nonzero",
                f"{w} is fixed at zero, but it is kernel tap {_tap(geom, taps[p])} at {d.out_at(r)}{tail}",
                refs,
                cand,
                geom,
            )
        return n_bad, Witness(
            "should_be_zero",
            f"{w} reads entry {w.entry}, but {d.in_at(c)} is outside the kernel "
            f"window (or the group) of {d.out_at(r)}, so it should be fixed at zero",
            (w,),
            cand,
            geom,
        )
    if bad_share.any() and p == both[bad_share][0]:
        q = int(tap_first[taps[p]])
        v = f.ref(q)
        return n_bad, Witness(
            "should_share",
            f"{v} and {w} are both kernel tap {_tap(geom, taps[p])}, at "
            f"{d.out_at(q // f.cols)} and {d.out_at(r)} ({moved(q)}), so they should share an entry, "
            f"but read entries {v.entry} and {w.entry}",
            (v, w),
            cand,
            geom,
        )
    q = int(lab_first[labels[p]])
    v = f.ref(q)
    return n_bad, Witness(
        "should_not_share",
        f"{v} and {w} both read entry {w.entry}, but they are different kernel "
        f"taps {_tap(geom, taps[q])} and {_tap(geom, taps[p])}",
        (v, w),
        cand,
        geom,
    )


def _bias(layer: LayerMap, f: LayerFacts, geom: ConvGeometry) -> tuple[bool, str, Witness | None]:
    """How the layer's bias is shared: ``(shared per channel, description, witness if not conv-like)``."""
    if layer.bias_indices is None:
        return (
            False,
            "not in the map (no bias_indices: a trainer gives this layer its own dense bias, one per "
            "output feature rather than per channel)",
            None,
        )
    b = np.asarray(layer.bias_indices).astype(np.int64)
    if np.all(b < 0):
        return False, "fixed at zero (no bias)", None
    p_out = math.prod(geom.out_size)
    per = b.reshape(geom.out_channels, p_out)
    cand = geom.describe(bias=False)
    ref = lambda row: WeightRef(f.name, int(row), None, int(b[row]))  # noqa: E731
    off = per != per[:, :1]
    if off.any():
        co, pos = map(int, np.unravel_index(np.argmax(off), off.shape))
        a, c = ref(co * p_out), ref(co * p_out + pos)
        return (
            False,
            "",
            Witness(
                "bias",
                f"{a} and {c} are biases of output channel {co}, so they should share an "
                f"entry, but read {a.entry} and {c.entry}",
                (a, c),
                cand,
            ),
        )
    heads = per[:, 0]
    _, first = np.unique(heads, return_index=True)
    if first.size < heads.size:
        dup = int(np.setdiff1d(np.arange(heads.size), first)[0])
        other = int(np.flatnonzero(heads == heads[dup])[0])
        a, c = ref(other * p_out), ref(dup * p_out)
        return (
            False,
            "",
            Witness(
                "bias",
                f"{a} and {c} are biases of different output channels ({other} and {dup}) "
                f"but read the same entry {a.entry}",
                (a, c),
                cand,
            ),
        )
    clash = np.flatnonzero(np.isin(heads, f.entry))
    if clash.size:
        co = int(clash[0])
        k = int(np.flatnonzero(f.entry == heads[co])[0])
        a, c = ref(co * p_out), f.ref(f.first[k])
        return (
            False,
            "",
            Witness(
                "bias",
                f"{a} (bias of output channel {co}) and {c} (a kernel weight) read the same "
                f"entry {a.entry}; a convolution's bias is separate from its kernel",
                (a, c),
                cand,
            ),
        )
    return True, "one entry per output channel, shared by all its output positions", None


@dataclass(frozen=True)
class ConvVerdict:
    """Whether one layer's index map is a convolution.

    Attributes
    ----------
    layer : str
    is_conv : bool
    geometry : ConvGeometry or None
        The recovered geometry (canonical, see :meth:`ConvGeometry.canonical`, or the layer's
        ``attrs`` geometry when that matches); its ``bias`` says whether the map shares a bias
        per output channel. None unless ``is_conv``.
    witness : Witness or None
        Why not, when ``not is_conv``: a universal witness, or the witness against the candidate
        that came closest (the ``attrs`` geometry first, then the grid that passed most checks).
    source : str
        ``"dense"``, ``"attrs"``, ``"hint"`` or ``"search"`` when recognised, else ``""``.
    candidates : int
        Candidate grids examined.
    bias : str
        How the bias is stored (when ``is_conv``).
    notes : tuple of str
        Extra facts (e.g. an ``attrs`` geometry that does not match).
    """

    layer: str
    is_conv: bool
    geometry: ConvGeometry | None
    witness: Witness | None
    source: str
    candidates: int
    bias: str = ""
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "is_conv": self.is_conv,
            "source": self.source,
            "candidates": self.candidates,
            "geometry": self.geometry.to_dict() if self.geometry else None,
            "bias": self.bias,
            "witness": self.witness.to_dict() if self.witness else None,
            "notes": list(self.notes),
        }


def recognize_conv(
    layer: LayerMap,
    *,
    ndims: Sequence[int] = (2, 1),
    in_shape: Sequence[int] | None = None,
    out_shape: Sequence[int] | None = None,
    use_attrs: bool = True,
    facts: LayerFacts | None = None,
) -> ConvVerdict:
    """Decide whether ``layer`` is a convolution (paper eq. 4-6) and recover its geometry.

    Parameters
    ----------
    layer : LayerMap
        Any index map layer; its table entries may be relabeled arbitrarily.
    ndims : sequence of int
        Spatial dimensionalities to search, in order of preference (default 2-d, then 1-d).
    in_shape, out_shape : sequence of int, optional
        ``(channels, *spatial)`` hints; when given, only grids matching them are tried.
    use_attrs : bool
        Try ``layer.attrs["conv"]`` (as written by :func:`hashlab.maps.conv_map`) first.
    facts : LayerFacts, optional
        ``LayerFacts(layer)`` if already computed (saves the O(N log N) pass).

    Returns
    -------
    ConvVerdict
        Permutation-invariant: relabeling the table changes no field except the entry numbers
        quoted in the witness.

    Raises
    ------
    ValueError
        If a hint does not multiply out to the layer's ``in_features`` / ``out_features``.

    Notes
    -----
    Cost: one O(N log N) sort, O(U + N / C) per candidate grid, O(N) per exact verification.
    """
    f = facts if facts is not None else LayerFacts(layer)
    for name, shape, n in (("in_shape", in_shape, f.cols), ("out_shape", out_shape, f.rows)):
        if shape is not None and (len(shape) < 2 or math.prod(shape) != n or min(shape) < 1):
            raise ValueError(
                f"{name} {tuple(shape)} must be (channels, *spatial sizes) with product {n}, the layer's "
                f"{'in' if name == 'in_shape' else 'out'}_features"
            )
    in_shape = tuple(int(v) for v in in_shape) if in_shape is not None else None
    out_shape = tuple(int(v) for v in out_shape) if out_shape is not None else None
    if in_shape and out_shape and len(in_shape) != len(out_shape):
        raise ValueError(f"in_shape {in_shape} and out_shape {out_shape} have different spatial dimensionalities")
    notes: list[str] = []

    def check(geom: ConvGeometry) -> tuple[int, Witness | None, bool, str]:
        """Exact check of weights, then bias: ``(violations, witness, bias shared, bias description)``."""
        n_bad, wit = _verify(f, geom)
        if wit is not None:
            return n_bad, wit, False, ""
        shared, how, wit = _bias(layer, f, geom)
        return int(wit is not None), wit, shared, how

    def accept(geom: ConvGeometry, shared: bool, how: str, source: str) -> ConvVerdict:
        return ConvVerdict(f.name, True, dataclasses.replace(geom, bias=shared), None, source, tried, how, tuple(notes))

    universal = universal_witness(f)
    if universal is not None and universal.kind != "empty":  # refutes every geometry, the attrs one included
        return ConvVerdict(f.name, False, None, universal, "", 0, notes=tuple(notes))
    best: tuple[int, Witness | None] | None = None  # (stage reached, witness) of the closest candidate so far
    tried = 0
    attrs = layer.attrs.get("conv") if use_attrs and isinstance(layer.attrs, dict) else None
    geom: ConvGeometry | None
    if attrs is not None:
        try:
            geom = ConvGeometry.from_dict(attrs)
        except (SpecError, TypeError) as e:
            notes.append(f"attrs['conv'] is not a valid geometry ({e}); searched instead")
        else:
            tried += 1
            if (geom.out_features, geom.in_features) != (f.rows, f.cols):
                notes.append(
                    f"attrs['conv'] ({geom.describe()}) has shape {geom.out_features}x{geom.in_features}, "
                    f"not the layer's {f.rows}x{f.cols}; searched instead"
                )
            else:
                n_bad, wit, shared, how = check(geom)
                if wit is None:
                    return accept(geom, shared, how, "attrs")
                notes.append(f"attrs['conv'] ({geom.describe()}) does not match the map ({n_bad} violations)")
                best = (7, wit)
    if universal is not None:  # an empty layer: only a geometry whose windows all fall in the padding fits
        return ConvVerdict(f.name, False, None, universal, "", tried, notes=tuple(notes))

    if f.dense and in_shape is None and out_shape is None:
        geom = ConvGeometry(f.cols, f.rows, (1,), 1)
        n_bad, wit, shared, how = check(geom)
        if wit is None:
            return accept(geom, shared, how, "dense")
        best = best or (6, wit)
    source = "hint" if (in_shape or out_shape) else "search"
    verified: dict[ConvGeometry, tuple[int, int, Witness]] = {}  # geometry -> (violations, order, witness)
    for grid in _grids(f, ndims, in_shape, out_shape):
        tried += 1
        stage, geom, wit = _derive_checked(f, grid)
        if geom is None:
            if best is None or stage > best[0]:
                best = (stage, wit)
            continue
        if _expected_nnz(geom) != f.nnz or f.n_labels > geom.kernel_entries:
            continue  # cannot match (nonzeros or entries differ); verified below only if it is the closest
        n_bad, wit, shared, how = check(geom)
        if wit is None:
            return accept(geom, shared, how, source)
        verified[geom] = (n_bad, len(verified), wit)
    if best is None or best[0] < 7:
        # Not a convolution. The closest candidate gives the witness: relax the count conditions
        # (a dropped or changed weight breaks them) and keep the geometry with fewest violations.
        fallback = [] if (in_shape or out_shape) else [_Grid(f.cols, (1,), f.rows, (1,))]
        budget = _WITNESS_VERIFICATIONS
        for grid in itertools.chain(_grids(f, ndims, in_shape, out_shape, strict=False), fallback):
            if budget == 0:
                break
            tried += 1
            stage, geom, wit = _derive_checked(f, grid)
            if geom is None:
                if best is None or stage > best[0]:
                    best = (stage, wit)
            elif geom not in verified:
                budget -= 1
                n_bad, wit, shared, how = check(geom)
                if wit is None:  # pragma: no cover - the strict conditions are necessary, so this cannot happen
                    return accept(geom, shared, how, source)
                verified[geom] = (n_bad, len(verified), wit)
        if verified:
            best = (6, min(verified.values(), key=lambda v: v[:2])[2])
    assert best is not None  # at least the fallback grid was examined
    wit = best[1]
    return ConvVerdict(f.name, False, None, wit, "", tried, notes=tuple(notes))
