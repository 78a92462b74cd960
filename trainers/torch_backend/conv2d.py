"""ArbConv2d: a 2-D convolution whose kernel is read from a shared table through an index map (hashed convolutions)."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashlab.configs import check_int

from .layers import ArbLayer, _as_tensor, bucket_means, table_init_bound

__all__ = ["ArbConv2d", "PADDING_MODES"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
"""``padding_mode`` values, as :class:`torch.nn.Conv2d`'s."""


def _pair(name: str, value: Any, lo: int) -> tuple[int, int]:
    """An int (both axes) or a pair of ints, each ``>= lo``."""
    vals = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        vals = tuple(vals)
    except TypeError:
        vals = ()
    if len(vals) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo for v in vals
    ):
        raise ValueError(f"{name} must be an int >= {lo} or a pair of such ints (height, width), got {value!r}")
    return int(vals[0]), int(vals[1])


class ArbConv2d(ArbLayer):
    r"""2-D convolution whose kernel is read from a table of shared entries (a hashed convolution).

    Computes :func:`torch.nn.functional.conv2d` with the virtual kernel
    :math:`K_{o,c,a,b} = \xi_{o,j}\,\text{table}[h(o, j)]`, :math:`j = (c \cdot k_h + a) \cdot k_w + b`, and 0
    where :math:`h(o, j) = -1`: the map is a ``(out_channels, in_channels // groups * kh * kw)`` array, one row
    per output channel holding its kernel flattened row-major (``conv.weight.flatten(1)``'s layout, a
    ``LayerMap`` of ``hashlab.build_model_map``, docs/FORMAT.md). With a hash map this is HashedNets'
    compression applied to a convolution's kernel (Chen et al., ICML 2015; FakeRoast and
    deficient-efficient's HashedConv2d do the same); with the identity map it is :class:`torch.nn.Conv2d`.
    Stride, padding (ints, pairs, ``"valid"`` or ``"same"``), dilation, groups and ``padding_mode`` behave as in
    :class:`torch.nn.Conv2d`. The table gradient is the sum of :math:`\xi\,\partial L/\partial K` over each
    entry's kernel weights, computed in a fixed order by the layer's gather plan (as :class:`ArbLinear`'s).

    Args:
        in_channels, out_channels: channels of the input and the output; both divisible by ``groups``.
        kernel_size: an int or ``(kh, kw)``.
        indices: integer tensor or array of shape ``(out_channels, in_channels // groups * kh * kw)`` (or the
            kernel's own ``(out_channels, in_channels // groups, kh, kw)``) with values in ``[-1, table_size)``.
        table_size: entries ``n`` of the table; ``None`` with ``table``.
        sign: optional integer tensor of ``indices``'s shape with values in ``{-1, +1}``.
        stride, padding, dilation, groups, bias, padding_mode: as :class:`torch.nn.Conv2d`.
        table: optional 1-D :class:`~torch.nn.Parameter` of ``table_size`` entries shared with other layers
            (:meth:`reset_parameters` leaves it alone).
        bias_indices, bias_sign: optional ``(out_channels,)``: the bias read from the table, as
            :class:`ArbLinear`'s.

    Shape:
        - Input: :math:`(N, C_{in}, H_{in}, W_{in})` or :math:`(C_{in}, H_{in}, W_{in})`.
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})` or :math:`(C_{out}, H_{out}, W_{out})`, sizes as
          :class:`torch.nn.Conv2d`'s.

    Attributes:
        table: ``(table_size,)``, owned tables from :math:`\mathcal{U}(-k, k)`,
            :math:`k = 1/\sqrt{C_{in} / \text{groups} \cdot k_h k_w}` (Conv2d's bound, :func:`table_init_bound`).
        bias: ``(out_channels,)`` Parameter initialised as Conv2d's, or ``None``.
        indices, sign, zero_mask, weight_plan, bias_indices, bias_sign, index_bytes: as :class:`ArbLinear`'s,
            of shape :attr:`map_shape`.

    Raises:
        ValueError: on sizes below 1, channels not divisible by ``groups``, an unknown ``padding_mode`` or
            ``padding`` string, ``"same"`` padding with a stride other than 1, or indices, sign and bias
            indices of the wrong shape or range.
        TypeError: if ``table`` is not a 1-D Parameter, or ``indices`` does not hold integers.

    Examples::

        >>> idx = torch.randint(0, 64, (16, 3 * 3 * 3))
        >>> m = ArbConv2d(3, 16, 3, idx, table_size=64, padding=1)
        >>> m(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
        >>> m
        ArbConv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), table_size=64, compression_ratio=6.75
          (weight_plan): MapPlan(...)
        )
    """

    __constants__ = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"]
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    padding_mode: str
    bias: nn.Parameter | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        indices: Tensor | np.ndarray,
        table_size: int | None,
        sign: Tensor | np.ndarray | None = None,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        table: nn.Parameter | None = None,
        bias_indices: Tensor | np.ndarray | None = None,
        bias_sign: Tensor | np.ndarray | None = None,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            check_int(name, v, 1, sys.maxsize)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by "
                f"groups ({groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"unknown padding_mode {padding_mode!r}; choose one of {', '.join(PADDING_MODES)}")
        if bias_indices is not None and not bias:
            raise ValueError("bias=False contradicts bias_indices (a bias read from the table); drop one of them")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.dilation = _pair("dilation", dilation, 1)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding string must be 'valid' or 'same', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as in torch.nn.Conv2d); give the padding as ints")
            self.padding = padding
        else:
            self.padding = _pair("padding", padding, 0)
        self._init_table(table_size, table, factory_kwargs)
        self._init_map(indices, sign, bias_indices, bias_sign, device)
        if bias and bias_indices is None:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory_kwargs))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(out_channels, in_channels // groups, kh, kw)``: the kernel's shape, as ``nn.Conv2d.weight``'s."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def map_shape(self) -> tuple[int, int]:
        """``(out_channels, in_channels // groups * kh * kw)``: one row per output channel."""
        return self.out_channels, math.prod(self.weight_shape[1:])

    @classmethod
    def from_conv2d(
        cls,
        conv: nn.Conv2d,
        indices: Tensor | np.ndarray,
        table_size: int | None = None,
        sign: Tensor | np.ndarray | None = None,
        *,
        bias_indices: Tensor | np.ndarray | None = None,
        bias_sign: Tensor | np.ndarray | None = None,
    ) -> ArbConv2d:
        r"""An :class:`ArbConv2d` of map ``indices`` whose table approximates ``conv``'s kernel.

        As :meth:`ArbLinear.from_linear`: entry ``e`` is the mean of ``sign * conv.weight`` over the kernel
        weights reading it (:func:`bucket_means`), the bias is copied (or averaged into the table with
        ``bias_indices``); stride, padding, dilation, groups and ``padding_mode`` are ``conv``'s. With the
        identity map (``indices = arange(weight.numel())``) the layer equals ``conv`` exactly.

        Args:
            conv: a :class:`torch.nn.Conv2d` (left unchanged); the new layer gets its device, dtype and mode.
            indices: integer ``(out_channels, in_channels // groups * kh * kw)`` (or the kernel's shape).
            table_size: number of entries; ``None``: ``indices.max() + 1``.
            sign: optional, ``indices``'s shape, in {-1, +1}.
            bias_indices, bias_sign: optional ``(out_channels,)`` (``conv`` must have a bias).

        Raises:
            TypeError: if ``conv`` is not an :class:`torch.nn.Conv2d`.
            ValueError: as the constructor, or ``bias_indices`` for a ``conv`` without bias.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
        if bias_indices is not None and conv.bias is None:
            raise ValueError("bias_indices reads the bias from the table, but conv has no bias; drop bias_indices")
        w = conv.weight
        if table_size is None:
            table_size = max(int(_as_tensor(indices, "indices").max()) + 1, 1)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]  # nn.Conv2d holds a pair
            indices,
            table_size,
            sign,
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            bias_indices=bias_indices,
            bias_sign=bias_sign,
            device=w.device,
            dtype=w.dtype,
        )
        readers: list[tuple[Tensor, Tensor, Tensor | None]] = [(w.reshape(layer.map_shape), layer.indices, layer.sign)]
        if conv.bias is not None and layer.bias_indices is not None:
            readers.append((conv.bias, layer.bias_indices, layer.bias_sign))
        with torch.no_grad():
            layer.table.copy_(bucket_means(table_size, readers))
            if layer.bias is not None and conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer.train(conv.training)

    def reset_parameters(self) -> None:
        r"""Initialise an owned table and the bias from :math:`\mathcal{U}(-k, k)`, :math:`k = 1/\sqrt{\text{fan\_in}}`.

        ``fan_in = in_channels // groups * kh * kw``: the bound :class:`torch.nn.Conv2d` gets for its weight and
        bias, so each virtual kernel weight starts distributed as Conv2d's. A shared table is left alone.
        """
        bound = table_init_bound(self.map_shape[1])
        if self._owns_table:
            nn.init.uniform_(self.table, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def virtual_kernel(self) -> Tensor:
        """The virtual kernel, :attr:`weight_shape`, differentiable w.r.t. the table."""
        return self.virtual_weight().view(self.weight_shape)

    def _reversed_padding_repeated_twice(self) -> list[int]:
        """``F.pad``'s padding for a ``padding_mode`` other than zeros: (left, right, top, bottom), as Conv2d's."""
        if self.padding == "valid":
            return [0, 0, 0, 0]
        if self.padding == "same":
            out: list[int] = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]
            return out
        assert not isinstance(self.padding, str)  # a pair here
        ph, pw = self.padding
        return [pw, pw, ph, ph]

    def forward(self, input: Tensor) -> Tensor:
        weight, bias = self.virtual_kernel(), self.virtual_bias()  # (out, in/groups, kh, kw), (out,) or None
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice(), mode=self.padding_mode)
            return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        parts = [
            f"{self.in_channels}",
            f"{self.out_channels}",
            f"kernel_size={self.kernel_size}",
            f"stride={self.stride}",
        ]
        if self.padding != (0, 0):
            parts.append(f"padding={self.padding!r}" if isinstance(self.padding, str) else f"padding={self.padding}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        parts += self._map_repr()[:2]
        if self.bias is None and self.bias_indices is None:
            parts.append("bias=False")
        parts += self._map_repr()[2:]
        return ", ".join(parts)
