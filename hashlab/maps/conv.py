"""Convolutions as ArbNets: the index map of a conv1d / conv2d layer (paper section 2, eq. 4-6).

A convolution is a fully connected layer whose ``(out_features, in_features)`` weight matrix is
a sparse (block-)Toeplitz matrix: the weight between output position ``(co, y, x)`` and input
position ``(ci, r, c)`` is the kernel entry ``K[co, ci', a, b]`` when ``r = y*s_h - p_h + a*d_h``
and ``c = x*s_w - p_w + b*d_w`` for some tap ``(a, b)`` (``ci'`` = ``ci``'s index inside its
group), and a structural zero otherwise (Chang & Lipson 2018, eq. 4-6; stride and dilation are
the "analogous" generalisation). Sharing is translation-invariant: every output position reads
the same kernel entries.

Layout (the contract with ``trainers/torch_backend``):

* features are flattened row-major from ``(channels, *spatial)``, like ``torch.Tensor.flatten``;
* table entry ``e < kernel_entries`` *is* the flat index of the torch weight tensor of shape
  ``(out_channels, in_channels // groups, *kernel_size)``, so ``conv.weight.flatten()`` is the
  table's kernel part; with ``bias`` the next ``out_channels`` entries are ``conv.bias``;
* without ``bias`` every ``bias_indices`` value is ``-1`` (bias fixed at zero), so a trainer adds
  no bias of its own.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._version import __version__
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from ..configs import dataclass_from_dict
from .spec import SpecError

__all__ = ["ConvGeometry", "conv_taps", "conv_map", "conv1d_map", "conv2d_map"]

_SPATIAL = ("kernel_size", "stride", "padding", "dilation")


def _tuple(name: str, value: Any, ndim: int, lo: int) -> tuple[int, ...]:
    vals = (value,) * ndim if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        raise SpecError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}") from None
    if len(vals) != ndim or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo for v in vals):
        raise SpecError(f"{name} must be an int >= {lo} or a tuple of {ndim} such ints "
                        f"(one per spatial axis of the input), got {value!r}")
    return tuple(int(v) for v in vals)


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of an N-d convolution layer (N = 1, 2 or 3), with torch's conventions.

    Parameters
    ----------
    in_channels, out_channels : int
        Both divisible by ``groups``.
    in_size : tuple of int
        Spatial input size, ``(L,)`` for conv1d or ``(H, W)`` for conv2d; its length sets ``ndim``.
    kernel_size, stride, padding, dilation : int or tuple of int
        An int applies to every axis. ``stride >= 1``, ``padding >= 0`` (zeros on both
        sides, like ``torch.nn.Conv2d``), ``dilation >= 1``.
    groups : int
        Input and output channels split into ``groups`` independent groups.
    bias : bool
        One bias per output channel, shared over all output positions.
    version : int
        Schema version; only 1 exists.

    Attributes
    ----------
    out_size : tuple of int
        ``floor((in + 2p - d(k-1) - 1) / s) + 1`` per axis (``torch.nn.Conv2d``'s formula).
    in_features, out_features : int
        ``in_channels * prod(in_size)`` and ``out_channels * prod(out_size)``.
    weight_shape : tuple of int
        ``(out_channels, in_channels // groups, *kernel_size)``, the torch weight's shape.
    kernel_entries : int
        ``prod(weight_shape)``: table entries holding the kernel.
    table_size : int
        ``kernel_entries + (out_channels if bias else 0)``.

    Raises
    ------
    SpecError
        If a field is invalid, or the dilated kernel does not fit in the padded input.
    """

    in_channels: int
    out_channels: int
    in_size: tuple[int, ...]
    kernel_size: tuple[int, ...] | int
    stride: tuple[int, ...] | int = 1
    padding: tuple[int, ...] | int = 0
    dilation: tuple[int, ...] | int = 1
    groups: int = 1
    bias: bool = True
    version: int = 1

    def __post_init__(self) -> None:
        if self.version != 1:
            raise SpecError(f"ConvGeometry version {self.version} is not supported; use 1")
        raw = (self.in_size,) if isinstance(self.in_size, (int, np.integer)) else self.in_size
        ndim = len(raw) if isinstance(raw, (tuple, list)) else 0
        if not 1 <= ndim <= 3:
            raise SpecError(f"in_size must give 1, 2 or 3 spatial sizes (conv1d/2d/3d), e.g. (28, 28); "
                            f"got {self.in_size!r}")
        in_size = _tuple("in_size", raw, ndim, lo=1)
        object.__setattr__(self, "in_size", in_size)
        for name, lo in zip(_SPATIAL, (1, 1, 0, 1)):
            object.__setattr__(self, name, _tuple(name, getattr(self, name), ndim, lo))
        for name in ("in_channels", "out_channels", "groups"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SpecError(f"{name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) must both be "
                            f"divisible by groups ({self.groups})")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise SpecError(f"bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))
        for ax, (n, k, p, d) in enumerate(zip(self.in_size, self.kernel_size, self.padding, self.dilation)):
            span = d * (k - 1) + 1
            if span > n + 2 * p:
                raise SpecError(f"axis {ax}: kernel {k} with dilation {d} spans {span} inputs, more than the padded "
                                f"input ({n} + 2*{p} = {n + 2 * p}); use a smaller kernel or dilation, or more padding")

    @property
    def ndim(self) -> int:
        return len(self.in_size)

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                     zip(self.in_size, self.kernel_size, self.stride, self.padding, self.dilation))

    @property
    def in_features(self) -> int:
        return self.in_channels * math.prod(self.in_size)

    @property
    def out_features(self) -> int:
        return self.out_channels * math.prod(self.out_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def kernel_entries(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def table_size(self) -> int:
        return self.kernel_entries + (self.out_channels if self.bias else 0)

    @property
    def op(self) -> str:
        """The torch op: ``"conv1d"``, ``"conv2d"`` or ``"conv3d"``."""
        return f"conv{self.ndim}d"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConvGeometry":
        """Inverse of :meth:`to_dict`; rejects unknown keys with a clear message."""
        return dataclass_from_dict(cls, d, SpecError, convert=lambda v: tuple(v) if isinstance(v, list) else v)

    def canonical(self) -> "ConvGeometry":
        """The representative that structural recognition returns for this map.

        Two parameters do not change the index map and are normalised: the stride of an axis
        with one output position becomes the smallest stride giving one output, and the
        dilation of an axis with a kernel of 1 becomes 1.
        """
        stride = tuple(s if o > 1 else max(1, n + 2 * p - d * (k - 1)) for n, k, s, p, d, o in
                       zip(self.in_size, self.kernel_size, self.stride, self.padding, self.dilation, self.out_size))
        dilation = tuple(d if k > 1 else 1 for k, d in zip(self.kernel_size, self.dilation))
        return dataclasses.replace(self, stride=stride, dilation=dilation)

    def describe(self, bias: bool = True) -> str:
        """One line describing the geometry; ``bias=False`` leaves out the last item.

        E.g. ``conv2d 4x11x11 -> 6x5x5, kernel 3x3, stride 2x2, padding 1x1, dilation 2x2, groups 2, bias``.
        """
        def x(t: tuple[int, ...]) -> str:
            return "x".join(map(str, t))
        return (f"{self.op} {x((self.in_channels, *self.in_size))} -> {x((self.out_channels, *self.out_size))}, "
                f"kernel {x(self.kernel_size)}, stride {x(self.stride)}, padding {x(self.padding)}, "
                f"dilation {x(self.dilation)}, groups {self.groups}"
                + ("" if not bias else ", bias" if self.bias else ", no bias"))


def conv_taps(geometry: ConvGeometry) -> np.ndarray:
    """Kernel tap read by every weight of the convolution's dense matrix (eq. 4-6).

    Parameters
    ----------
    geometry : ConvGeometry

    Returns
    -------
    ndarray of shape (out_features, in_features), int32
        Flat index into the torch weight tensor of shape ``geometry.weight_shape`` read by
        weight ``(row, col)``, or ``-1`` where the weight is a structural zero (different
        group, outside the dilated kernel window, or a window position in the padding).
    """
    g = geometry
    ndim, p_out, p_in = g.ndim, math.prod(g.out_size), math.prod(g.in_size)
    k_n = math.prod(g.kernel_size)
    cg_in, cg_out = g.in_channels // g.groups, g.out_channels // g.groups
    col = lambda v: np.asarray(v, dtype=np.int64)[:, None, None]  # noqa: E731  (ndim, 1, 1)
    out_xy = np.indices(g.out_size).reshape(ndim, -1)[:, :, None]  # (ndim, p_out, 1)
    k_xy = np.indices(g.kernel_size).reshape(ndim, -1)[:, None, :]  # (ndim, 1, k_n)
    in_xy = out_xy * col(g.stride) - col(g.padding) + k_xy * col(g.dilation)  # (ndim, p_out, k_n)
    inside = np.all((in_xy >= 0) & (in_xy < col(g.in_size)), axis=0)
    pos, tap = np.nonzero(inside)  # output position and kernel tap of every live (position, tap) pair
    in_pos = np.ravel_multi_index(tuple(in_xy[:, pos, tap]), g.in_size)
    co = np.arange(g.out_channels)[:, None, None]
    cig = np.arange(cg_in)[None, :, None]
    ci = (co // cg_out) * cg_in + cig
    rows = np.broadcast_to(co * p_out + pos, (g.out_channels, cg_in, pos.size))
    cols = ci * p_in + in_pos
    taps = np.full((g.out_features, g.in_features), ZERO, dtype=np.int32)
    taps[rows, cols] = (co * cg_in + cig) * k_n + tap
    return taps


def conv_map(geometry: ConvGeometry, name: str = "conv") -> IndexMap:
    """Index map of one convolution layer: its dense matrix as a one-layer ArbNet.

    Parameters
    ----------
    geometry : ConvGeometry
    name : str
        Layer name.

    Returns
    -------
    IndexMap
        One layer of shape ``(out_features, in_features)`` reading one table of
        ``geometry.table_size`` entries; ``indices`` from :func:`conv_taps` (int16 or int32);
        ``bias_indices`` = ``kernel_entries + co`` for every output of channel ``co`` (or all
        ``-1`` without bias); ``attrs = {"conv": geometry.to_dict()}``; ``spec`` =
        ``{"builder": "conv2d", **geometry fields, "hashlab_version": ...}``.

    Raises
    ------
    SpecError
        If ``geometry`` is not a :class:`ConvGeometry`.
    """
    if not isinstance(geometry, ConvGeometry):
        raise SpecError(f"geometry must be a ConvGeometry, got {type(geometry).__name__}")
    g = geometry
    dt = index_dtype(g.table_size)
    indices = conv_taps(g).astype(dt)
    if g.bias:
        bias = np.repeat(np.arange(g.kernel_entries, g.table_size), math.prod(g.out_size)).astype(dt)
    else:
        bias = np.full(g.out_features, ZERO, dtype=dt)
    layer = LayerMap(name=name, indices=indices, table=0, bias_indices=bias, attrs={"conv": g.to_dict()})
    spec = {"builder": g.op, **g.to_dict(), "hashlab_version": __version__}
    return IndexMap(layers=(layer,), table_sizes=(g.table_size,), spec=spec)


def conv1d_map(in_channels: int, out_channels: int, kernel_size: int, *, length: int, stride: int = 1,
               padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True) -> IndexMap:
    """Index map of ``torch.nn.Conv1d(in_channels, out_channels, kernel_size, ...)`` on inputs of ``length``.

    See :func:`conv_map`; the layer is named ``"conv"``.
    """
    return conv_map(ConvGeometry(in_channels, out_channels, (length,), kernel_size, stride, padding, dilation,
                                 groups, bias))


def conv2d_map(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
               input_size: tuple[int, int], stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
               dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True) -> IndexMap:
    """Index map of ``torch.nn.Conv2d(in_channels, out_channels, kernel_size, ...)`` on ``input_size = (H, W)``.

    See :func:`conv_map`; the layer is named ``"conv"``.
    """
    return conv_map(ConvGeometry(in_channels, out_channels, tuple(input_size), kernel_size, stride, padding,
                                 dilation, groups, bias))
