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

import math

import numpy as np
import numpy.typing as npt

from .._version import __version__
from .geometry import ConvGeometry
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .spec import SpecError

__all__ = ["ConvGeometry", "conv_taps", "conv_map", "conv1d_map", "conv2d_map"]


def conv_taps(geometry: ConvGeometry) -> npt.NDArray[np.int32]:
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
    kernel = g.weight_shape[2:]  # kernel_size as the tuple it always is after validation
    k_n = math.prod(kernel)
    cg_in, cg_out = g.in_channels // g.groups, g.out_channels // g.groups
    col = lambda v: np.asarray(v, dtype=np.int64)[:, None, None]  # noqa: E731  (ndim, 1, 1)
    out_xy = np.indices(g.out_size).reshape(ndim, -1)[:, :, None]  # (ndim, p_out, 1)
    k_xy = np.indices(kernel).reshape(ndim, -1)[:, None, :]  # (ndim, 1, k_n)
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


def conv1d_map(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    length: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> IndexMap:
    """Index map of ``torch.nn.Conv1d(in_channels, out_channels, kernel_size, ...)`` on inputs of ``length``.

    See :func:`conv_map`; the layer is named ``"conv"``.
    """
    return conv_map(
        ConvGeometry(in_channels, out_channels, (length,), kernel_size, stride, padding, dilation, groups, bias)
    )


def conv2d_map(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    input_size: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    bias: bool = True,
) -> IndexMap:
    """Index map of ``torch.nn.Conv2d(in_channels, out_channels, kernel_size, ...)`` on ``input_size = (H, W)``.

    See :func:`conv_map`; the layer is named ``"conv"``.
    """
    return conv_map(
        ConvGeometry(in_channels, out_channels, tuple(input_size), kernel_size, stride, padding, dilation, groups, bias)
    )
