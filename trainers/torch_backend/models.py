"""ArbNet models built from an index file (format version 1 to 4, ``hashlab.io.format``, docs/FORMAT.md)."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from hashlab.configs import check_real
from hashlab.io.format import load_index_file
from hashlab.maps.indexmap import IndexMap, LayerMap, index_dtype

from .functional import load_scale
from .layers import ArbLinear, table_init_bound

__all__ = ["ArbMLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
}
"""Activation modules by the names of ``TrainConfig.activation``."""


class ArbMLP(nn.Module):
    r"""Multilayer perceptron whose layers are :class:`ArbLinear` layers of an index map.

    By default every layer is ``ArbLinear -> ELU -> BatchNorm1d``, the last one included, as
    in the paper (Chang & Lipson 2018, section 4): MNIST ``784-200-ELU-BN-200-ELU-BN-10-ELU-BN``,
    CIFAR-10 ``3072 -> 5 x (2000-ELU-BN) -> 10-ELU-BN``. The output feeds a softmax
    cross-entropy loss. Layer sizes, indices, signs and table numbers all come from the map.
    The keyword arguments give other members of the family, e.g. HashedNets' MLP (Chen et
    al. 2015): ``activation="relu", batch_norm=False, dropout=0.25, input_dropout=0.25,
    output_activation=False`` is ``Dropout -> (ArbLinear -> ReLU -> Dropout) x hidden ->
    ArbLinear``. A hidden block is ``linear -> act [-> bn] [-> drop]``; the last block is
    ``linear [-> act [-> bn]]`` (no dropout on the logits).

    A table read by one layer is owned by that layer. A table read by several layers (a
    ``scope="global"`` map) is one :class:`~torch.nn.Parameter` in :attr:`tables`, passed to
    each reader as ``table=``; it is initialised from :math:`\mathcal{U}(-k, k)` with
    :math:`k = 1/\sqrt{\max \text{in\_features}}` over its readers (the smallest of their
    Linear bounds, see :func:`~trainers.torch_backend.layers.table_init_bound`).

    Initial tables: where the map has ``initial_tables[t]`` (index format v2, e.g. the cluster
    centres of ``hashlab cluster``), table ``t`` starts with exactly those values instead of
    the random draw (biases and BatchNorm are initialised as usual). With a sign hash the
    stored value is the table entry: the virtual weight is ``sign * initial_tables[t][index]``.

    Args:
        index_map: a validated :class:`hashlab.maps.indexmap.IndexMap`, e.g. from
            :func:`hashlab.io.format.load_index_file`; its layers must chain
            (``layers[k].in_features == layers[k-1].out_features``).
        bias: give every layer a dense bias unless its map has ``bias_indices``. Default: ``True``.
        device, dtype: where and in which float type to create parameters.
        activation: ``"elu"`` (default, the paper's), ``"relu"``, ``"tanh"``, ``"sigmoid"``
            or ``"gelu"``.
        batch_norm: a ``BatchNorm1d`` after each activation. Default: ``True``.
        dropout: dropout probability after each hidden layer, in [0, 1). Default: 0 (none).
        input_dropout: dropout probability on the flattened input, in [0, 1). Default: 0.
        output_activation: give the last layer the activation (and BatchNorm) too
            (default, the paper's); ``False``: it outputs plain logits.

    Shape:
        - Input: :math:`(N, *)` with :math:`\prod * = \text{in\_features}` (images are flattened).
        - Output: :math:`(N, \text{out\_features})` logits.

    Attributes:
        blocks: :class:`~torch.nn.Sequential` of ``Sequential(linear, act, bn, drop)`` blocks
            (the modules a block does not have left out).
        input_drop: the input :class:`~torch.nn.Dropout`, or ``None``.
        tables: :class:`~torch.nn.ParameterDict` of shared tables keyed by table number
            (empty for a layer-scope map).
        in_features, out_features: first layer's input and last layer's output size.
        spec: the map's ``spec`` dict (how it was built).
        table_sizes: the map's table sizes (tuple of int).
        options: the keyword arguments this model was built with (``bias``, ``activation``,
            ``batch_norm``, ``dropout``, ``input_dropout``, ``output_activation``), so that
            ``ArbMLP(model.to_index_map(), **model.options)`` builds the same network
            (:func:`~trainers.torch_backend.modelfile.save_arbnet` stores them).

    Raises:
        ValueError: if the layers do not chain, or on an unknown activation or a dropout
            outside [0, 1).

    Examples::

        >>> model = ArbMLP.from_index_file("mnist-dirichlet.safetensors")
        >>> model(torch.randn(32, 1, 28, 28)).shape
        torch.Size([32, 10])
    """

    def __init__(
        self,
        index_map: IndexMap,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        activation: str = "elu",
        batch_norm: bool = True,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        output_activation: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            check_real(name, p, 0, 1, hi_open=True, expected="in [0, 1)")
        layers = index_map.layers
        for prev, lay in zip(layers[:-1], layers[1:]):
            if lay.in_features != prev.out_features:
                raise ValueError(
                    f"layer {lay.name!r} has in_features={lay.in_features} but the previous layer "
                    f"{prev.name!r} has out_features={prev.out_features}; an MLP map must chain"
                )
        readers: dict[int, list[int]] = {}
        for lay in layers:
            readers.setdefault(lay.table, []).append(lay.in_features)
        self.tables = nn.ParameterDict(
            {
                str(t): nn.Parameter(torch.empty(index_map.table_sizes[t], device=device, dtype=dtype))
                for t, fan_ins in readers.items()
                if len(fan_ins) > 1
            }
        )
        self._table_bounds = {str(t): table_init_bound(max(fan_ins)) for t, fan_ins in readers.items()}
        blocks = []
        for lay in layers:
            linear = ArbLinear(
                lay.in_features,
                lay.out_features,
                lay.indices,
                index_map.table_sizes[lay.table],
                sign=lay.sign,
                bias=bias or lay.bias_indices is not None,
                table=self.tables[str(lay.table)] if str(lay.table) in self.tables else None,
                bias_indices=lay.bias_indices,
                bias_sign=lay.bias_sign,
                device=device,
                dtype=dtype,
            )
            last = lay is layers[-1]
            block: OrderedDict[str, nn.Module] = OrderedDict(linear=linear)
            if not last or output_activation:
                block["act"] = ACTIVATIONS[activation]()
                if batch_norm:
                    block["bn"] = nn.BatchNorm1d(lay.out_features, device=device, dtype=dtype)
            if not last and dropout > 0:
                block["drop"] = nn.Dropout(dropout)
            blocks.append(nn.Sequential(block))
        self.blocks = nn.Sequential(*blocks)
        self.input_drop = nn.Dropout(input_dropout) if input_dropout > 0 else None
        self.in_features = layers[0].in_features
        self.out_features = layers[-1].out_features
        self.spec: dict[str, Any] = dict(index_map.spec)
        self.table_sizes: tuple[int, ...] = tuple(index_map.table_sizes)
        self.options: dict[str, Any] = {
            "bias": bias,
            "activation": activation,
            "batch_norm": batch_norm,
            "dropout": dropout,
            "input_dropout": input_dropout,
            "output_activation": output_activation,
        }
        self._layer_meta = [(lay.name, dict(lay.attrs)) for lay in layers]
        # initial tables (index format v2, e.g. `hashlab cluster` centres): copied over the random init
        self._table_of = [lay.table for lay in layers]
        self._initial_tables = {
            t: torch.from_numpy(np.array(init, dtype=np.float32, copy=True))
            for t, init in enumerate(index_map.initial_tables or ())
            if init is not None
        }
        self.reset_parameters()

    @classmethod
    def from_index_file(
        cls, path: str | os.PathLike, bias: bool = True, device=None, dtype=None, validate: bool = True, **options: Any
    ) -> ArbMLP:
        """Build the model of an index file (read with :func:`hashlab.io.format.load_index_file`).

        Args:
            path: an index file (format version 1 to 4), e.g. from ``hashlab build``.
            validate: check every index range while loading (O(number of weights)).
            options: the keyword arguments of :class:`ArbMLP` (``activation=``, ``dropout=``...).

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            hashlab.io.format.FormatError: if it is not a valid index file.
            ValueError: if its layers do not chain.
        """
        return cls(
            load_index_file(Path(path), mmap=True, validate=validate), bias=bias, device=device, dtype=dtype, **options
        )

    def to_index_map(self) -> IndexMap:
        """The map this model reads, as an :class:`~hashlab.maps.indexmap.IndexMap` (without initial tables).

        Its ``spec``, table sizes, layer names and ``attrs`` are those of the map the model was built
        from; its arrays are read back from the layers (``ArbLinear.indices``, ``sign``,
        ``bias_indices``, ``bias_sign``), as numpy arrays on the CPU: int16 or int32 indices
        (:func:`hashlab.maps.indexmap.index_dtype` of the table), int8 signs.

        Returns:
            :class:`~hashlab.maps.indexmap.IndexMap`, ``initial_tables`` None: the model's tables are
            its own.
        """

        def array(t: Tensor | None, dtype: Any) -> np.ndarray | None:
            return None if t is None else t.detach().cpu().numpy().astype(dtype)

        layers = []
        for (name, attrs), table, m in zip(self._layer_meta, self._table_of, self.linears):
            dt = index_dtype(self.table_sizes[table])
            layers.append(
                LayerMap(
                    name=name,
                    indices=cast(np.ndarray, array(m.indices, dt)),
                    table=table,
                    sign=array(m.sign, np.int8),
                    bias_indices=array(m.bias_indices, dt),
                    attrs=dict(attrs),
                    bias_sign=array(m.bias_sign, np.int8),
                )
            )
        return IndexMap(layers=tuple(layers), table_sizes=self.table_sizes, spec=dict(self.spec))

    def reset_parameters(self) -> None:
        """Re-initialise shared tables, then every layer (owned tables, biases, BatchNorm), then copy the map's
        initial tables over the tables that have one."""
        for key, table in self.tables.items():
            bound = self._table_bounds[key]
            nn.init.uniform_(table, -bound, bound)
        for block in self.blocks:
            for module in block.children():  # linear, then bn
                if isinstance(module, (ArbLinear, nn.BatchNorm1d)):
                    module.reset_parameters()
        self._copy_initial_tables()

    @torch.no_grad()
    def _copy_initial_tables(self) -> None:
        """Overwrite table ``t`` with the map's ``initial_tables[t]`` where it has one (after the random draws,
        so biases and other tables get exactly the values they get without initial tables)."""
        for t, values in self._initial_tables.items():
            reader = next((m for m, table in zip(self.linears, self._table_of) if table == t), None)
            if reader is not None:  # a table no layer reads is not allocated
                reader.table.copy_(values)

    def set_table_grad_scale(self, mode: str) -> None:
        """Load-normalise the table gradients: ``"none"``, ``"load"``, ``"sqrt_load"``, ``"load_hot"``, ``"load_cold"``.

        Under SGD an entry's gradient is the sum of ``sign * dL/dW`` over the weights that read
        it (Chang & Lipson 2018, section 2), so an entry read by ``L`` weights steps about ``L``
        times further than an entry read once. ``"load"`` multiplies entry ``e``'s gradient by
        ``mean_load / load[e]`` (a mean-gradient step per entry, at the overall scale of the
        unnormalised one), ``"sqrt_load"`` by its square root (the step of a sum of ``L``
        independent terms grows like ``sqrt(L)``). ``"load_hot"`` applies ``"load"``'s factor only
        where it is below 1 (entries read more often than the mean), ``"load_cold"`` only where it
        is above 1 (entries read less often): the two halves of ``"load"``, whose product it is.
        ``load[e]`` counts the non-zeroed weights of every layer reading the table (and
        table-read biases), signs ignored; ``mean_load`` is the mean over the entries read at
        all, so a balanced map is left unchanged (factor exactly 1) and unread entries (gradient 0) get factor 1. See
        :func:`~trainers.torch_backend.functional.load_scale`. The factor is applied inside
        the table's backward (:class:`~trainers.torch_backend.functional.TableGather`).

        Raises:
            ValueError: on an unknown mode.
        """
        readers: dict[int, list[ArbLinear]] = {}
        for m in self.linears:
            readers.setdefault(id(m.table), []).append(m)
        for group in readers.values():
            loads = torch.stack([m.entry_loads() for m in group]).sum(0)  # (table_size,) int64
            scale = load_scale(loads, mode, group[0].table.dtype)
            for m in group:
                m.set_grad_scale(scale)

    @property
    def layer_tables(self) -> list[int]:
        """The table number (in the map) each layer reads, in order."""
        return list(self._table_of)

    @property
    def linears(self) -> list[ArbLinear]:
        """The :class:`ArbLinear` layers, in order."""
        return [cast(ArbLinear, block.linear) for block in self.blocks]

    @property
    def num_entries(self) -> int:
        """Learnable table entries (each shared table counted once; biases and BatchNorm excluded)."""
        return sum(t.numel() for t in {id(m.table): m.table for m in self.linears}.values())

    def forward(self, input: Tensor) -> Tensor:
        x = input.flatten(1)  # (N, in_features)
        if self.input_drop is not None:
            x = self.input_drop(x)
        return self.blocks(x)  # (N, out_features)
