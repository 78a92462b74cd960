"""ArbNet layers: layers whose weights are read from a shared table through an index map.

:class:`ArbLayer` holds what every such layer shares (the table, owned or shared; the map compiled into a gather plan;
a bias read from the table; the state-dict form of the map); :class:`ArbLinear` is the linear layer.
:class:`~trainers.torch_backend.conv2d.ArbConv2d` and :class:`~trainers.torch_backend.embedding.ArbEmbedding` are
the convolution and the embedding.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashlab.configs import check_int

from .functional import MapPlan

__all__ = ["ArbLayer", "ArbLinear", "table_init_bound", "bucket_means"]


def table_init_bound(in_features: int) -> float:
    """Half-width of the uniform init of a table read by layers with ``in_features`` inputs.

    ``1 / sqrt(in_features)``: the bound :class:`torch.nn.Linear` gets from
    ``kaiming_uniform_(a=sqrt(5))``, so every virtual weight starts with Linear's
    distribution (weights that share an entry are equal, not independent).
    For a table shared by several layers, pass the largest ``in_features`` of its readers
    (the smallest bound: no reader starts with weights larger than Linear's).
    """
    return 1.0 / math.sqrt(in_features)


def _as_tensor(x: Any, what: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer tensor or array, got dtype {arr.dtype}")
    return torch.from_numpy(np.array(arr, copy=True))  # copy: index files are read-only memmaps


def _check_indices(indices: Tensor, shape: tuple[int, ...], table_size: int, what: str) -> None:
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"{what} must hold integers, got dtype {indices.dtype}")
    if tuple(indices.shape) != shape:
        raise ValueError(f"{what} must have shape {shape}, got {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= table_size):
        raise ValueError(
            f"{what} must lie in [-1, {table_size}) (-1 = weight fixed at zero), got "
            f"[{int(indices.min())}, {int(indices.max())}]; was the map built for a table of "
            f"{table_size} entries?"
        )


def bucket_means(table_size: int, readers: Sequence[tuple[Tensor, Tensor, Tensor | None]]) -> Tensor:
    r"""Table whose entry ``e`` is the mean of ``sign * w`` over the weights ``w`` that read ``e``.

    The least-squares table for given weights: with :math:`W_{oi} = \xi_{oi}\,t[h(o, i)]`,
    :math:`\sum (\xi t_{h} - w)^2` is smallest at :math:`t_e = \operatorname{mean}_{h(o,i)=e}
    \xi_{oi} w_{oi}` (:math:`\xi^2 = 1`). Weights with index ``-1`` (fixed at zero) are left out;
    an entry nobody reads gets 0. Summed in float64 on the CPU (``index_add_``, a fixed order),
    so the result is deterministic and an entry read by one weight is that weight exactly.

    Args:
        table_size: number of entries ``n``.
        readers: ``(values, indices, sign)`` triples of equal shapes: float weights (any
            device), integer indices in ``[-1, n)``, int signs in {-1, +1} or ``None``.

    Returns:
        float64 CPU tensor of shape ``(table_size,)``.
    """
    sums = torch.zeros(table_size, dtype=torch.float64)
    counts = torch.zeros(table_size, dtype=torch.int64)
    for values, indices, sign in readers:
        v = values.detach().to("cpu", torch.float64).reshape(-1)
        idx = indices.detach().to("cpu", torch.int64).reshape(-1)
        if sign is not None:
            v = v * sign.detach().to("cpu", torch.float64).reshape(-1)
        keep = idx >= 0
        sums.index_add_(0, idx[keep], v[keep])
        counts.index_add_(0, idx[keep], torch.ones_like(idx[keep]))
    return sums / counts.clamp(min=1)


class ArbLayer(nn.Module):
    r"""Base of the ArbNet layers: weights read from a table of shared entries through an index map.

    Holds what :class:`ArbLinear`, :class:`~trainers.torch_backend.conv2d.ArbConv2d` and
    :class:`~trainers.torch_backend.embedding.ArbEmbedding` share. The map is a ``(rows, cols)`` integer array
    (:attr:`map_shape`, a ``LayerMap``'s ``(out_features, in_features)``) with values in ``[-1, table_size)``:
    virtual weight ``(r, c)`` is :math:`\xi_{rc}\,\text{table}[h(r, c)]`, or 0 where :math:`h(r, c) = -1`.
    It is compiled once into a gather plan, the submodule :attr:`weight_plan`
    (:class:`~trainers.torch_backend.functional.MapPlan`), which ``.to()`` re-lays for the table's device;
    the state dict keeps the map itself (``indices``, ``sign``) and the plan is rebuilt from it on load.
    An optional bias of :attr:`bias_len` values may be read from the table too (``bias_indices``, ``bias_sign``).

    A subclass's constructor calls :meth:`_init_table` then :meth:`_init_map` (which register the table, the bias
    buffers and the plan), allocates its own parameters and calls ``reset_parameters()``; it defines
    :attr:`map_shape`, and :attr:`_plan_options` when its plan must keep a key per weight.

    Attributes:
        table: the learnable entries, ``(table_size,)`` (a Parameter owned by the layer, or shared with others).
        table_size: ``n``.
        weight_plan: the compiled map.
        bias_indices, bias_sign: buffers of a bias read from the table, or ``None``.
        bias_plan: :class:`~trainers.torch_backend.functional.MapPlan` of ``bias_indices``, or ``None``.
    """

    table_size: int
    bias: nn.Parameter | None
    bias_indices: Tensor | None
    bias_sign: Tensor | None
    weight_plan: MapPlan
    bias_plan: MapPlan | None
    _plan_options: dict[str, Any] = {}
    """Keyword arguments of the weight plan's :class:`~trainers.torch_backend.functional.MapPlan`."""

    @property
    def map_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the index map (a ``LayerMap``'s ``(out_features, in_features)``)."""
        raise NotImplementedError

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the torch weight this layer stands for (its map, :attr:`map_shape`, flattened to 2-D)."""
        return self.map_shape

    @property
    def bias_len(self) -> int:
        """Length of a bias read from the table: the map's rows."""
        return self.map_shape[0]

    def _init_table(self, table_size: int | None, table: nn.Parameter | None, factory_kwargs: dict) -> None:
        """Check ``table_size`` / ``table`` and register :attr:`table` (owned: empty, filled by reset_parameters)."""
        if table is not None:
            if not isinstance(table, nn.Parameter) or table.dim() != 1:
                raise TypeError(
                    "table must be a 1-D torch.nn.Parameter (the shared entries), "
                    f"got {type(table).__name__} of shape {tuple(getattr(table, 'shape', ()))}"
                )
            if table_size is None:
                table_size = table.numel()
            elif table.numel() != table_size:
                raise ValueError(f"table has {table.numel()} entries but table_size={table_size}")
        check_int("table_size", table_size, 1, sys.maxsize, hint="or pass table=, the shared entries")
        assert table_size is not None  # for mypy: check_int refused None
        self.table_size = table_size
        self._owns_table = table is None
        self.table = table if table is not None else nn.Parameter(torch.empty(table_size, **factory_kwargs))

    def _init_map(
        self,
        indices: Tensor | np.ndarray,
        sign: Tensor | np.ndarray | None,
        bias_indices: Tensor | np.ndarray | None,
        bias_sign: Tensor | np.ndarray | None,
        device: Any,
    ) -> None:
        """Check the map and compile it (after :meth:`_init_table`).

        ``indices`` / ``sign`` of :attr:`map_shape` (or of :attr:`weight_shape`, flattened row-major to it), the
        bias map of :attr:`bias_len`; registers ``bias_indices``, ``bias_sign`` and the plans.
        """
        shape, wshape = self.map_shape, self.weight_shape
        indices = _as_tensor(indices, "indices")
        if tuple(indices.shape) == wshape != shape:
            indices = indices.reshape(shape)  # a map in the weight's shape, e.g. a kernel's (out, in/groups, kh, kw)
        _check_indices(indices, shape, self.table_size, "indices")
        if sign is not None:
            sign = _as_tensor(sign, "sign")
            if tuple(sign.shape) == wshape != shape:
                sign = sign.reshape(shape)
            if tuple(sign.shape) != shape or not bool(((sign == 1) | (sign == -1)).all()):
                raise ValueError(f"sign must have shape {shape} and values in {{-1, +1}}")
        n_bias = self.bias_len
        if bias_indices is not None:
            bias_indices = _as_tensor(bias_indices, "bias_indices")
            _check_indices(bias_indices, (n_bias,), self.table_size, "bias_indices")
            bias_indices = bias_indices.to(device)
        self.register_buffer("bias_indices", bias_indices)
        if bias_sign is not None:
            bias_sign = _as_tensor(bias_sign, "bias_sign")
            if (
                bias_indices is None
                or tuple(bias_sign.shape) != (n_bias,)
                or not bool(((bias_sign == 1) | (bias_sign == -1)).all())
            ):
                raise ValueError(f"bias_sign needs bias_indices, shape ({n_bias},) and values in {{-1, +1}}")
            bias_sign = bias_sign.to(device=device, dtype=torch.int8)
        self.register_buffer("bias_sign", bias_sign)
        self.register_buffer("_grad_scale", None, persistent=False)
        self._set_map(indices.to(device), None if sign is None else sign.to(device))

    # -- the map: held as gather plans (submodules); `indices` / `sign` are rebuilt from them ----------

    def _set_map(self, indices: Tensor, sign: Tensor | None) -> None:
        """Compile ``indices`` / ``sign`` and the bias map into gather plans laid out for the table's device."""
        self.weight_plan = MapPlan(indices, self.table_size, sign, device=self.table.device, **self._plan_options)
        self._set_bias_plan()

    def _set_bias_plan(self) -> None:
        plan = None
        if self.bias_indices is not None:
            plan = MapPlan(
                self.bias_indices,
                self.table_size,
                self.bias_sign,
                device=self.table.device,
                lanes=1,
                compact=False,
                view=False,
            )
        self.bias_plan = plan

    @property
    def indices(self) -> Tensor:
        """The index map, :attr:`map_shape`, dtype as given, ``-1`` = zero (rebuilt per read)."""
        return self.weight_plan.indices(self.table.device)

    @property
    def sign(self) -> Tensor | None:
        """int8 sign hash of shape :attr:`map_shape`, or ``None`` (rebuilt per read)."""
        return self.weight_plan.sign()

    @property
    def zero_mask(self) -> Tensor:
        """bool of shape :attr:`map_shape`, ``True`` where the weight is fixed at zero."""
        return self.indices < 0

    @property
    def index_bytes(self) -> int:
        """Bytes held in index buffers (plan key, row list or sorted segments, bias map); the map's resident cost."""
        bufs = (self.bias_indices, self.bias_sign)
        return (
            self.weight_plan.index_bytes
            + (0 if self.bias_plan is None else self.bias_plan.index_bytes)
            + sum(b.numel() * b.element_size() for b in bufs if b is not None)
        )

    def entry_loads(self) -> Tensor:
        """int64 ``(table_size,)``: how many weights (and table-read biases) of this layer read each entry.

        Zeroed weights (index ``-1``) are not counted; signs are ignored.
        """
        loads = self.weight_plan.entry_loads(self.table.device)
        if self.bias_plan is not None:
            loads = loads + self.bias_plan.entry_loads()
        return loads

    def set_grad_scale(self, scale: Tensor | None) -> None:
        """Multiply the table gradient from this layer by ``scale`` (float ``(table_size,)``) or stop (``None``).

        Used for load-normalised table updates
        (:func:`~trainers.torch_backend.functional.load_scale`); readers of a shared table must
        all get the same factor.
        """
        if scale is not None:
            if tuple(scale.shape) != (self.table_size,):
                raise ValueError(f"scale must have shape ({self.table_size},), got {tuple(scale.shape)}")
            scale = scale.to(device=self.table.device, dtype=self.table.dtype)
            self.weight_plan.to_plan(self.table.device)  # the view has no backward of its own: use a plan
        self._grad_scale = scale

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # the map itself, not its plan
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "indices"] = self.indices
        sign = self.sign
        if sign is not None:
            destination[prefix + "sign"] = sign

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        indices, sign = state_dict.get(prefix + "indices"), state_dict.get(prefix + "sign")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for name in ("indices", "sign"):
            if prefix + name in unexpected_keys:
                unexpected_keys.remove(prefix + name)
        if indices is None:
            missing_keys.append(prefix + "indices")
            self._set_bias_plan()
            return
        try:
            shape = self.map_shape
            _check_indices(indices, shape, self.table_size, prefix + "indices")
            if sign is not None and (tuple(sign.shape) != shape or not bool(((sign == 1) | (sign == -1)).all())):
                raise ValueError(f"{prefix}sign must have shape {shape} and values in {{-1, +1}}")
        except (TypeError, ValueError) as e:
            error_msgs.append(str(e))
            return
        dev = self.table.device
        self._set_map(indices.detach().to(dev), None if sign is None else sign.detach().to(dev))

    def virtual_weight(self) -> Tensor:
        """The virtual weight matrix, :attr:`map_shape`, differentiable w.r.t. the table."""
        return self.weight_plan.gather(self.table, self._grad_scale)

    def virtual_bias(self) -> Tensor | None:
        """The bias vector (the Parameter, or gathered from the table via ``bias_indices``), or ``None``."""
        if self.bias_plan is None:
            return self.bias
        return self.bias_plan.gather(self.table, self._grad_scale)

    @property
    def compression_ratio(self) -> float:
        """Virtual weights per table entry, ``rows * cols / table_size`` (zeros included)."""
        return math.prod(self.map_shape) / self.table_size

    def _map_repr(self) -> list[str]:
        """The ``extra_repr`` items of the map: table size, compression ratio, sign, shared table, zeros."""
        parts = [f"table_size={self.table_size}", f"compression_ratio={self.compression_ratio:.4g}"]
        if self.weight_plan.has_sign:
            parts.append("sign=True")
        if self.bias_indices is not None:
            parts.append("bias_from_table=True")
        if self.bias_sign is not None:
            parts.append("bias_sign=True")
        if not self._owns_table:
            parts.append("shared_table=True")
        if self.weight_plan.num_zeros:
            parts.append(f"zeros={self.weight_plan.num_zeros}")
        return parts


class ArbLinear(ArbLayer):
    r"""Linear layer with arbitrary weight sharing (an ArbNet layer).

    Applies :math:`y = x W^T + b` where the virtual weight matrix is read from a table
    of shared entries: :math:`W_{oi} = \xi_{oi}\, \text{table}[h(o, i)]`, and
    :math:`W_{oi} = 0` where the index map says :math:`h(o, i) = -1` (sparsity). With the
    identity map this is :class:`torch.nn.Linear`; with a hash it is a HashedNets /
    ArbNet layer (Chang & Lipson, ICANN 2018, section 2; Chen et al., ICML 2015, eq. 3-4).

    The table's gradient is the sum of :math:`\xi_{oi}\,\partial L/\partial W_{oi}` over the
    weights that read each entry; zeroed weights contribute nothing and stay zero. The map is
    compiled once into a gather plan, the submodule :attr:`weight_plan` (one int32 key per
    virtual weight, the sign folded in; see :class:`~trainers.torch_backend.functional.MapPlan`);
    the weights are gathered with one ``index_select`` per forward, and
    :class:`~trainers.torch_backend.functional.TableGather` computes the table gradient in a
    fixed order (bitwise reproducible on CPU and CUDA, no atomics, no pad entry). Moving the
    layer (``.to()``) re-lays the plans for the new device.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        indices: integer tensor or array of shape ``(out_features, in_features)`` with
            values in ``[-1, table_size)``: the entry read by weight ``(o, i)``, or ``-1``
            for a weight fixed at zero (``LayerMap.indices`` of an index file).
        table_size: number of entries ``n`` of the table. May be ``None`` when ``table``
            is given.
        sign: optional integer tensor of ``indices``'s shape with values in ``{-1, +1}``
            (a sign hash :math:`\xi`).
        bias: if ``False``, the layer has no bias. Default: ``True``.
        table: optional existing 1-D :class:`~torch.nn.Parameter` of ``table_size``
            entries to read instead of allocating one (a table shared with other layers,
            e.g. a global-scope map). :meth:`reset_parameters` leaves it alone: its owner
            initialises it (see :class:`~trainers.torch_backend.models.ArbMLP`).
        bias_indices: optional integer tensor of shape ``(out_features,)``: the bias is
            then read from the table too, ``bias[o] = table[bias_indices[o]]`` (``-1`` = 0),
            and no bias Parameter is allocated (``LayerMap.bias_indices``).
        bias_sign: optional integer tensor of shape ``(out_features,)`` with values in
            ``{-1, +1}``, only with ``bias_indices``: ``bias[o] = bias_sign[o] *
            table[bias_indices[o]]`` (HashedNets' ``xiB``; ``LayerMap.bias_sign``).

    Shape:
        - Input: :math:`(*, H_{in})` with :math:`H_{in} = \text{in\_features}`.
        - Output: :math:`(*, H_{out})` with :math:`H_{out} = \text{out\_features}`.

    Attributes:
        table: the learnable entries, shape ``(table_size,)``. Initialised (if owned) from
            :math:`\mathcal{U}(-k, k)`, :math:`k = 1/\sqrt{\text{in\_features}}` (see
            :func:`table_init_bound`), so each virtual weight starts distributed like
            :class:`torch.nn.Linear`'s.
        bias: learnable bias of shape ``(out_features,)``, initialised like Linear's, or
            ``None`` (``bias=False`` or ``bias_indices`` given).
        indices: the index map, shape ``(out_features, in_features)``, its integer dtype
            kept; saved in the state dict under ``indices`` but held in memory only as the
            plan's key (on the CPU 2 bytes per virtual weight for tables up to about 4,000
            entries, else 4; for a map with 75% or more zeroed weights 4 bytes per live weight;
            see :func:`~trainers.torch_backend.functional.build_plan`), and rebuilt from it when read.
        sign: int8 signs of the same shape (state dict key ``sign``), or ``None``.
        zero_mask: bool, ``True`` where the weight is fixed at zero (computed when read).
        bias_indices: buffer or ``None``.
        bias_sign: int8 buffer or ``None``.
        weight_plan: :class:`~trainers.torch_backend.functional.MapPlan` of the weights: a
            :class:`~trainers.torch_backend.functional.GatherPlan` laid out for the table's device
            (CPU lanes or a row list, sorted segments elsewhere), or a view of the table for a map
            that reads one contiguous unsigned range (the identity map). Its buffers are not in
            the state dict; it is rebuilt from ``indices`` / ``sign`` by ``load_state_dict``.
        bias_plan: :class:`~trainers.torch_backend.functional.MapPlan` of ``bias_indices`` (one
            lane, no row list), or ``None``.
        index_bytes: bytes of index buffers held by the layer (key, row list of a sparse map on the
            CPU, CUDA segments, bias map).

    Examples::

        >>> idx = torch.randint(0, 1000, (200, 784))
        >>> m = ArbLinear(784, 200, idx, table_size=1000)
        >>> m(torch.randn(32, 784)).shape
        torch.Size([32, 200])
        >>> m
        ArbLinear(
          in_features=784, out_features=200, table_size=1000, compression_ratio=156.8, bias=True
          (weight_plan): MapPlan(shape=(200, 784), table_size=1000, LanePlan(weights=156800, table_size=1000, ...))
        )
    """

    __constants__ = ["in_features", "out_features", "table_size"]
    in_features: int
    out_features: int
    table_size: int
    bias: nn.Parameter | None
    bias_indices: Tensor | None
    bias_sign: Tensor | None
    weight_plan: MapPlan
    bias_plan: MapPlan | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        indices: Tensor | np.ndarray,
        table_size: int | None,
        sign: Tensor | np.ndarray | None = None,
        bias: bool = True,
        *,
        table: nn.Parameter | None = None,
        bias_indices: Tensor | np.ndarray | None = None,
        bias_sign: Tensor | np.ndarray | None = None,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        check_int("in_features", in_features, 1, sys.maxsize)
        check_int("out_features", out_features, 1, sys.maxsize)
        if bias_indices is not None and not bias:
            raise ValueError("bias=False contradicts bias_indices (a bias read from the table); drop one of them")
        self.in_features, self.out_features = in_features, out_features
        self._init_table(table_size, table, factory_kwargs)
        self._init_map(indices, sign, bias_indices, bias_sign, device)
        if bias and bias_indices is None:
            self.bias = nn.Parameter(torch.empty(out_features, **factory_kwargs))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def map_shape(self) -> tuple[int, int]:
        """``(out_features, in_features)``: the map is the weight matrix."""
        return self.out_features, self.in_features

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        indices: Tensor | np.ndarray,
        table_size: int | None = None,
        sign: Tensor | np.ndarray | None = None,
        *,
        bias_indices: Tensor | np.ndarray | None = None,
        bias_sign: Tensor | np.ndarray | None = None,
    ) -> ArbLinear:
        r"""An :class:`ArbLinear` of map ``indices`` whose table approximates ``linear``'s weights.

        Entry ``e`` of the table is the mean of ``sign * linear.weight`` over the weights that
        read it (:func:`bucket_means`: the least-squares fit), so a trained layer can be
        compressed and fine-tuned; the bias is copied, or with ``bias_indices`` averaged into
        the table with the weights. With the identity map (``indices[o, i] = o * in + i``, no
        sign) the layer equals ``linear`` exactly. Zeroed weights (``-1``) become 0; entries
        nobody reads start at 0 (they get no gradient and change no output).

        Args:
            linear: a :class:`torch.nn.Linear` (left unchanged); the new layer gets its device,
                dtype and training mode.
            indices: integer ``(out_features, in_features)`` in ``[-1, table_size)``.
            table_size: number of entries; ``None``: ``indices.max() + 1``.
            sign: optional ``(out_features, in_features)`` in {-1, +1}.
            bias_indices: optional ``(out_features,)``: read the bias from the table
                (``linear`` must have a bias).

        Returns:
            A new :class:`ArbLinear` owning its table.

        Raises:
            TypeError: if ``linear`` is not an :class:`torch.nn.Linear`.
            ValueError: on indices, sign or bias indices of the wrong shape or range (as the
                constructor), or ``bias_indices`` for a ``linear`` without bias.

        Examples::

            >>> lin = nn.Linear(4, 3)
            >>> arb = ArbLinear.from_linear(lin, torch.arange(12).view(3, 4))  # identity map
            >>> torch.equal(arb.virtual_weight(), lin.weight)
            True
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        if bias_indices is not None and linear.bias is None:
            raise ValueError(
                "bias_indices reads the bias from the table, but linear has no bias; "
                "drop bias_indices or give the Linear a bias"
            )
        w = linear.weight
        if table_size is None:
            table_size = max(int(_as_tensor(indices, "indices").max()) + 1, 1)
        layer = cls(
            linear.in_features,
            linear.out_features,
            indices,
            table_size,
            sign=sign,
            bias=linear.bias is not None,
            bias_indices=bias_indices,
            bias_sign=bias_sign,
            device=w.device,
            dtype=w.dtype,
        )
        readers: list[tuple[Tensor, Tensor, Tensor | None]] = [(w, layer.indices, layer.sign)]
        if linear.bias is not None and layer.bias_indices is not None:  # both or neither (checked above)
            readers.append((linear.bias, layer.bias_indices, layer.bias_sign))
        with torch.no_grad():
            layer.table.copy_(bucket_means(table_size, readers))
            if layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.train(linear.training)

    def reset_parameters(self) -> None:
        """Initialise an owned table and the bias from :math:`\\mathcal{U}(-k, k)`, :math:`k = 1/\\sqrt{in\\_features}`.

        An external table (``table=`` argument) is not touched; a table-read bias
        (``bias_indices``) follows the table.
        """
        bound = table_init_bound(self.in_features)
        if self._owns_table:
            nn.init.uniform_(self.table, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.virtual_weight(), self.virtual_bias())

    def extra_repr(self) -> str:
        parts = [
            f"in_features={self.in_features}",
            f"out_features={self.out_features}",
            *self._map_repr()[:2],
            f"bias={self.bias is not None or self.bias_indices is not None}",
            *self._map_repr()[2:],
        ]
        return ", ".join(parts)
