"""Numeric equivalence of convolution / RNN ArbNets with torch's own layers.

The ArbNet forward of a layer gathers its dense virtual weight matrix from the table
(:func:`~trainers.torch_backend.functional.gather_weight`) and applies ``F.linear`` to the
flattened input. For the maps of :mod:`hashlab.maps.conv` and :mod:`hashlab.maps.rnn` this must equal
``F.conv1d`` / ``F.conv2d`` and ``torch.nn.RNN`` with the same weights, outputs and gradients
alike (Chang & Lipson 2018, section 2, eq. 4-6 and eq. 1). ``hashlab check conv2d|conv1d|rnn``
runs these checks; the tests run them over hypothesis-generated geometries. The checks take
the map as input and never build one: trainers consume maps, hashlab generates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hashlab.maps.geometry import ConvGeometry, RNNGeometry
from hashlab.maps.indexmap import IndexMap, LayerMap

from .functional import gather_weight

__all__ = [
    "DEFAULT_RTOL",
    "EquivalenceReport",
    "layer_tensors",
    "arbnet_linear",
    "conv_arbnet_forward",
    "rnn_arbnet_forward",
    "check_conv_equivalence",
    "check_rnn_equivalence",
]

DEFAULT_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
"""Tolerance per dtype, relative to ``max(1, max |reference|)`` of each compared quantity."""


def layer_tensors(
    layer: LayerMap, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(indices, sign, bias_indices, bias_sign)`` of a layer as int64 / int8 tensors (all but the
    indices may be None).

    Args:
        layer: a :class:`hashlab.LayerMap` (numpy arrays, possibly read-only memmaps).
        device: where to put the tensors.
    """
    idx = torch.as_tensor(np.array(layer.indices, dtype=np.int64), device=device)
    sign = None if layer.sign is None else torch.as_tensor(np.array(layer.sign, dtype=np.int8), device=device)
    bias = (
        None
        if layer.bias_indices is None
        else torch.as_tensor(np.array(layer.bias_indices, dtype=np.int64), device=device)
    )
    bias_sign = (
        None if layer.bias_sign is None else torch.as_tensor(np.array(layer.bias_sign, dtype=np.int8), device=device)
    )
    return idx, sign, bias, bias_sign


def arbnet_linear(x: torch.Tensor, table: torch.Tensor, tensors: tuple) -> torch.Tensor:
    """One ArbNet layer: ``F.linear(x, sign * table[indices], bias_sign * table[bias_indices])``.

    Args:
        x: input of shape ``(*, in_features)``.
        table: shared entries of shape ``(n,)``.
        tensors: :func:`layer_tensors` of the layer. ``bias_indices`` None means no bias here.

    Shape:
        - Output: ``(*, out_features)``.
    """
    idx, sign, bias_idx, bias_sign = tensors
    weight = gather_weight(table, idx, None if sign is None else sign.to(table.dtype))
    bias = (
        None
        if bias_idx is None
        else gather_weight(table, bias_idx, None if bias_sign is None else bias_sign.to(table.dtype))
    )
    return F.linear(x, weight, bias)


def conv_arbnet_forward(
    x: torch.Tensor, table: torch.Tensor, layer: LayerMap, geometry: ConvGeometry, tensors: tuple | None = None
) -> torch.Tensor:
    """A convolution computed as an ArbNet: gather the dense matrix, flatten, ``F.linear``, unflatten.

    Args:
        x: input of shape ``(B, in_channels, *geometry.in_size)``.
        table: entries of shape ``(geometry.table_size,)``.
        layer: the layer of :func:`hashlab.maps.conv_map` (or any layer of the same shape).
        geometry: its :class:`hashlab.maps.ConvGeometry`.
        tensors: precomputed :func:`layer_tensors` (optional).

    Shape:
        - Output: ``(B, out_channels, *geometry.out_size)``, like ``F.conv2d``.
    """
    tensors = tensors if tensors is not None else layer_tensors(layer, x.device)
    y = arbnet_linear(x.flatten(1), table, tensors)
    return y.view(x.shape[0], geometry.out_channels, *geometry.out_size)


def rnn_arbnet_forward(
    x: torch.Tensor, table: torch.Tensor, imap: IndexMap, geometry: RNNGeometry
) -> tuple[torch.Tensor, torch.Tensor]:
    """An unrolled Elman RNN computed as an ArbNet: step ``t`` is layer ``t`` on ``concat(x_t, h_(t-1))``.

    Args:
        x: input of shape ``(B, T, input_size)`` (batch first), ``T == len(imap.layers)``.
        table: entries of shape ``(geometry.table_size,)``.
        imap: the map of :func:`hashlab.maps.rnn_map`; every step gathers its own layer's weights.
        geometry: its :class:`hashlab.maps.RNNGeometry`.

    Shape:
        - Output: ``(output, h_n)`` of shapes ``(B, T, hidden_size)`` and ``(B, hidden_size)``, like
          ``torch.nn.RNN(batch_first=True)`` with ``h_0 = 0`` (its ``h_n`` without the layer axis).
    """
    if x.shape[1] != len(imap.layers):
        raise ValueError(
            f"x has {x.shape[1]} time steps but the map unrolls {len(imap.layers)}; "
            f"build the map with steps={x.shape[1]}"
        )
    h = x.new_zeros(x.shape[0], geometry.hidden_size)
    outs = []
    for t, layer in enumerate(imap.layers):
        h = torch.tanh(arbnet_linear(torch.cat([x[:, t], h], dim=1), table, layer_tensors(layer, x.device)))
        outs.append(h)
    return torch.stack(outs, dim=1), h


@dataclass
class EquivalenceReport:
    """Max abs differences between an ArbNet and torch's reference layer.

    Attributes:
        name: what was compared, e.g. ``"conv2d"``.
        dtype: ``"float64"`` or ``"float32"``.
        errors: max abs difference per quantity (``output``, ``grad_kernel``, ``grad_bias``,
            ``grad_input`` ...).
        scales: ``max |reference|`` per quantity.
        rtol: tolerance relative to ``max(1, scale)``.
        passed: every error within its tolerance.
    """

    name: str
    dtype: str
    errors: dict[str, float]
    scales: dict[str, float]
    rtol: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = all(self.errors[k] <= self.tolerance(k) for k in self.errors)

    def tolerance(self, key: str) -> float:
        return self.rtol * max(1.0, self.scales[key])

    @property
    def max_abs_error(self) -> float:
        return max(self.errors.values())

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "errors": self.errors,
            "scales": self.scales,
            "rtol": self.rtol,
            "passed": self.passed,
            "max_abs_error": self.max_abs_error,
        }


def _compare(
    name: str, dtype: torch.dtype, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], rtol: float | None
) -> EquivalenceReport:
    errors = {k: float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0 for k, (a, b) in pairs.items()}
    scales = {k: float(b.detach().abs().max()) if b.numel() else 0.0 for k, (_, b) in pairs.items()}
    return EquivalenceReport(
        name, str(dtype).removeprefix("torch."), errors, scales, DEFAULT_RTOL[dtype] if rtol is None else rtol
    )


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _grad(t: torch.Tensor) -> torch.Tensor:
    """``t.grad`` after a backward pass (an error if it has none)."""
    if t.grad is None:
        raise RuntimeError("no gradient reached this tensor")
    return t.grad


def check_conv_equivalence(
    geometry: ConvGeometry,
    imap: IndexMap,
    *,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 2,
    seed: int = 0,
    rtol: float | None = None,
) -> EquivalenceReport:
    """Compare the conv ArbNet with ``F.conv1d`` / ``F.conv2d`` / ``F.conv3d`` on random data, on CPU.

    The table is drawn like torch's default init (uniform in ``+-1/sqrt(fan_in)``), the input and
    the upstream gradient from N(0, 1); both sides get ``(output * upstream).sum().backward()``.

    Args:
        geometry: the convolution.
        imap: the map to check, e.g. :func:`hashlab.maps.conv_map` of ``geometry``.
        dtype: ``torch.float64`` or ``torch.float32``.
        batch_size: inputs per check.
        seed: seeds a private ``torch.Generator``.
        rtol: tolerance relative to ``max(1, max |reference|)``; :data:`DEFAULT_RTOL` if None.

    Returns:
        EquivalenceReport with errors for ``output``, ``grad_kernel`` (table vs ``weight.grad``),
        ``grad_bias`` (if bias) and ``grad_input``.
    """
    g = geometry
    layer = imap.layers[0]
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(math.prod(g.weight_shape[1:]))  # (in_channels // groups) * prod(kernel_size)
    table = (torch.rand(g.table_size, generator=gen, dtype=torch.float64) * 2 - 1).mul(bound).to(dtype)
    x = torch.randn(batch_size, g.in_channels, *g.in_size, generator=gen, dtype=torch.float64).to(dtype)
    up = torch.randn(batch_size, g.out_channels, *g.out_size, generator=gen, dtype=torch.float64).to(dtype)

    t1, x1 = _leaf(table), _leaf(x)
    y1 = conv_arbnet_forward(x1, t1, layer, g)
    (y1 * up).sum().backward()

    k = g.kernel_entries
    w2, x2 = _leaf(table[:k].view(g.weight_shape)), _leaf(x)
    b2 = _leaf(table[k:]) if g.bias else None
    y2 = getattr(F, g.op)(x2, w2, b2, g.stride, g.padding, g.dilation, g.groups)
    (y2 * up).sum().backward()

    pairs = {"output": (y1, y2), "grad_kernel": (_grad(t1)[:k], _grad(w2).flatten())}
    if b2 is not None:  # g.bias
        pairs["grad_bias"] = (_grad(t1)[k:], _grad(b2))
    pairs["grad_input"] = (_grad(x1), _grad(x2))
    return _compare(g.op, dtype, pairs, rtol)


def check_rnn_equivalence(
    geometry: RNNGeometry,
    imap: IndexMap,
    *,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 2,
    seed: int = 0,
    rtol: float | None = None,
) -> EquivalenceReport:
    """Compare the unrolled RNN ArbNet with ``torch.nn.RNN`` (tanh, one layer, batch first), on CPU.

    ``torch.nn.RNN`` gets ``weight_ih_l0, weight_hh_l0 = split(table[:H(I+H)].view(H, I+H))`` and a
    random split ``bias_ih_l0 + bias_hh_l0 = table[H(I+H):]`` of the shared bias; both sides get
    ``(output * u).sum() + (h_n * v).sum()`` backpropagated.

    Args:
        geometry: the RNN; ``input_size >= 1`` (``torch.nn.RNN`` needs an input).
        imap: the map to check, e.g. :func:`hashlab.maps.rnn_map` of ``geometry``.
        dtype, batch_size, seed, rtol: as in :func:`check_conv_equivalence`.

    Returns:
        EquivalenceReport with errors for ``output``, ``h_n``, ``grad_weights`` (table vs
        ``[weight_ih | weight_hh].grad``), ``grad_bias`` (vs both bias grads, if bias) and
        ``grad_input``.
    """
    g = geometry
    if g.input_size < 1:
        raise ValueError("torch.nn.RNN needs input_size >= 1 to compare against; got 0")
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(g.hidden_size)
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    table = ((rand(g.table_size) * 2 - 1) * bound).to(dtype)
    x = torch.randn(batch_size, g.steps, g.input_size, generator=gen, dtype=torch.float64).to(dtype)
    up_out = torch.randn(batch_size, g.steps, g.hidden_size, generator=gen, dtype=torch.float64).to(dtype)
    up_h = torch.randn(batch_size, g.hidden_size, generator=gen, dtype=torch.float64).to(dtype)
    b_hh = ((rand(g.hidden_size) * 2 - 1) * bound).to(dtype)

    t1, x1 = _leaf(table), _leaf(x)
    out1, h1 = rnn_arbnet_forward(x1, t1, imap, g)
    ((out1 * up_out).sum() + (h1 * up_h).sum()).backward()

    n = g.step_weights
    ref = torch.nn.RNN(g.input_size, g.hidden_size, nonlinearity="tanh", bias=g.bias, batch_first=True, dtype=dtype)
    with torch.no_grad():
        w = table[:n].view(g.step_shape)
        ref.get_parameter("weight_ih_l0").copy_(w[:, : g.input_size])
        ref.get_parameter("weight_hh_l0").copy_(w[:, g.input_size :])
        if g.bias:
            ref.get_parameter("bias_ih_l0").copy_(table[n:] - b_hh)
            ref.get_parameter("bias_hh_l0").copy_(b_hh)
    x2 = _leaf(x)
    out2, h2 = ref(x2)
    ((out2 * up_out).sum() + (h2[0] * up_h).sum()).backward()

    grad_w = torch.cat(
        [_grad(ref.get_parameter("weight_ih_l0")), _grad(ref.get_parameter("weight_hh_l0"))], dim=1
    ).flatten()
    pairs = {"output": (out1, out2), "h_n": (h1, h2[0]), "grad_weights": (_grad(t1)[:n], grad_w)}
    if g.bias:
        pairs["grad_bias_ih"] = (_grad(t1)[n:], _grad(ref.get_parameter("bias_ih_l0")))
        pairs["grad_bias_hh"] = (_grad(t1)[n:], _grad(ref.get_parameter("bias_hh_l0")))
    pairs["grad_input"] = (_grad(x1), _grad(x2))
    return _compare("rnn", dtype, pairs, rtol)
