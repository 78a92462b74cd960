"""Hash-on-the-fly linear layers: neither the index array nor the weight matrix is ever stored.

:class:`VirtualLinear` is :class:`~trainers.torch_backend.layers.ArbLinear`'s twin for maps that hashlab
generates from a spec: instead of an index array (2 to 8 bytes a weight) it keeps the spec's per-layer
constants (:class:`hashlab.maps.onthefly.LayerHash`, a few hundred bytes) and recomputes each weight's
entry, sign and zero inside the matmul, one tile of output rows at a time, forward and backward (the idea of
ROAST / RzLinear, Desai et al. 2022, for every kind of :class:`~hashlab.maps.spec.HashSpec`). Resident
memory is the table, the bias and one tile.

This is the layout contract's one stated exception (``tests/test_layout.py``): this module and its Triton
kernels (:mod:`.virtual_triton`), and no other trainer module, import :mod:`hashlab.maps.onthefly` (and
this one :mod:`hashlab.maps.spec`), so they compute a spec's hash instead of reading a map. Its kernels equal
``build_map``'s indices and signs bit for bit (``tests/hashlab/maps/test_onthefly.py``), and the layer equals
the materialised ArbLinear of the same map (``tests/trainers/torch_backend/test_virtual.py``).

On the CPU the kernels are serial numba loops between torch's matmuls, one tile of output rows at a time;
on a CUDA device, Triton kernels that hash inside the matmul (:mod:`.virtual_triton`, float32, tested in
Triton's interpreter; their GPU speed is not measured yet).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hashlab.configs import check_int
from hashlab.io.format import read_header
from hashlab.maps.onthefly import LayerHash
from hashlab.maps.spec import HashSpec, SpecError

from .layers import ArbLinear, table_init_bound

__all__ = ["VirtualLinear", "virtual_linear", "virtual_layers", "TILE_WEIGHTS"]

TILE_WEIGHTS = 1 << 18
"""Default weights per tile (1 MiB of float32): rows enough for about this many weights are hashed per matmul."""

_DTYPES = (torch.float32, torch.float64)


class _VirtualMatmul(torch.autograd.Function):
    """``x @ W.T`` with ``W`` rebuilt tile by tile from ``lh`` and ``table``; backward: ``grad_x`` and the table's
    gradient from one more hash pass per tile."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, table: Tensor, lh: LayerHash, rows: int) -> Tensor:
        out_f, in_f = lh.out_features, lh.in_features
        tab = table.detach().numpy()
        out_t = torch.empty(out_f, x.shape[0], dtype=x.dtype)
        tile = torch.empty(min(rows, out_f) * in_f, dtype=x.dtype)
        xt = x.t()
        for r0 in range(0, out_f, rows):
            r1 = min(out_f, r0 + rows)
            w = tile[: (r1 - r0) * in_f]
            lh.read_rows(tab, r0, r1, w.numpy())
            torch.mm(w.view(r1 - r0, in_f), xt, out=out_t[r0:r1])
        ctx.save_for_backward(x, table)
        ctx.lh, ctx.rows = lh, rows
        return out_t.t()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, table = ctx.saved_tensors
        lh, rows = ctx.lh, ctx.rows
        out_f, in_f = lh.out_features, lh.in_features
        want_x, want_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_t = grad_out.t().contiguous()  # (out_features, B): each tile's rows are contiguous
        tab = table.detach().numpy()
        grad_x = torch.zeros_like(x) if want_x else None
        acc = torch.zeros_like(table) if want_table else None
        tile = torch.empty(min(rows, out_f) * in_f, dtype=x.dtype)
        for r0 in range(0, out_f, rows):
            r1 = min(out_f, r0 + rows)
            w = tile[: (r1 - r0) * in_f]
            if acc is not None:
                grad_w = torch.mm(g_t[r0:r1], x)  # (rows, in_features), contiguous
                lh.read_scatter_rows(tab, r0, r1, w.numpy(), grad_w.view(-1).numpy(), acc.numpy())
            else:
                lh.read_rows(tab, r0, r1, w.numpy())
            if grad_x is not None:
                grad_x.addmm_(g_t[r0:r1].t(), w.view(r1 - r0, in_f))
        return grad_x, acc, None, None


def virtual_linear(
    x: Tensor, table: Tensor, lh: LayerHash, bias: Tensor | None = None, tile_weights: int = TILE_WEIGHTS
) -> Tensor:
    r"""``x @ W.T + bias`` with :math:`W_{oi} = \xi_{oi}\, \text{table}[h(o, i)]` recomputed from ``lh`` per tile.

    Args:
        x: float32/float64 CPU tensor, the inputs.
        table: 1-D CPU tensor of ``x``'s dtype with at least ``lh.n`` entries.
        lh: the layer's hash (:meth:`hashlab.maps.onthefly.LayerHash.from_spec`).
        bias: optional ``(out_features,)`` tensor.
        tile_weights: weights hashed per tile on the CPU (at least one row); CUDA tiles are
            :data:`~trainers.torch_backend.virtual_triton.BLOCKS`.

    Shape:
        - Input: :math:`(*, H_{in})`, :math:`H_{in} = \text{lh.in\_features}`.
        - Output: :math:`(*, H_{out})`, :math:`H_{out} = \text{lh.out\_features}`.

    Raises:
        ValueError: on a device other than the CPU or CUDA, input and table on different devices, a dtype other
            than float32/float64 (float32 only on CUDA), mismatched dtypes, a wrong last dimension or a table
            shorter than ``lh.n``.
    """
    if x.device != table.device or x.device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"input ({x.device}) and table ({table.device}) must be on one device, the CPU (numba kernel) or a CUDA "
            "GPU (Triton kernel); move the layer and its input there"
        )
    if x.dtype not in _DTYPES or table.dtype != x.dtype:
        raise ValueError(f"input and table must both be float32 or float64, got {x.dtype} and {table.dtype}")
    if x.is_cuda and x.dtype != torch.float32:
        raise ValueError("the CUDA (Triton) kernel is float32 only: convert the layer with .float()")
    if x.shape[-1] != lh.in_features:
        raise ValueError(f"input has {x.shape[-1]} features in its last dimension, the layer {lh.in_features}")
    if table.dim() != 1 or table.numel() < lh.n:
        raise ValueError(f"table must be 1-D with at least {lh.n} entries, got shape {tuple(table.shape)}")
    flat = x.reshape(-1, lh.in_features).contiguous()
    if x.is_cuda:
        from .virtual_triton import triton_virtual_linear  # Triton is imported on first CUDA use only

        y = triton_virtual_linear(flat, table, lh)
    else:
        y = _VirtualMatmul.apply(flat, table.contiguous(), lh, max(1, tile_weights // lh.in_features))
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], lh.out_features)


class VirtualLinear(nn.Module):
    r"""Hashed linear layer whose weights are computed on the fly: it stores the table and the bias, nothing else.

    Applies :math:`y = x W^T + b` with :math:`W_{oi} = \xi_{oi}\, \text{table}[h(o, i)]` (0 for a weight the
    sparsity mask zeroes), exactly the layer :class:`~trainers.torch_backend.layers.ArbLinear` builds from the
    map ``hashlab.build_map`` would write for the same spec (Chang & Lipson 2018, eq. 2-10; Chen et al. 2015,
    eq. 3-4), but the entries are recomputed from ``(layer, row, col, seed)`` for each tile of output rows in
    the forward and backward passes. Build it with :meth:`from_spec`, this library's ``ArbLinear.from_spec``.

    Args:
        spec: the :class:`~hashlab.maps.spec.HashSpec` (any kind; ``hash_bias`` is refused, the bias is a
            plain Parameter).
        in_features: size of each input sample.
        out_features: size of each output sample.
        layer: the layer's number in its model (it seeds the layer's streams).
        shapes: every layer's ``(out_features, in_features)``, needed with ``scope="global"`` (the table and
            the identifiers span the model); default: this layer alone, as layer ``layer``.
        bias: if ``False``, no bias. Default: ``True``.
        tile_weights: weights hashed per tile (:data:`TILE_WEIGHTS`).

    Shape:
        - Input: :math:`(*, H_{in})`.
        - Output: :math:`(*, H_{out})`.

    Attributes:
        table: learnable entries, shape ``(n,)``, :math:`\mathcal{U}(-k, k)` with
            :math:`k = 1/\sqrt{\text{in\_features}}` as ArbLinear's.
        bias: ``(out_features,)`` like :class:`torch.nn.Linear`'s, or ``None``.
        hash: the :class:`~hashlab.maps.onthefly.LayerHash` (its :attr:`~LayerHash.nbytes` are the layer's
            whole index memory).
        index_bytes: 0 (no index array; compare ``ArbLinear.index_bytes``).

    Raises:
        SpecError: on a spec the kernel cannot take (not a HashSpec, ``hash_bias``, ``scope="global"`` without
            ``shapes``, a shape that does not match ``shapes[layer]``).

    Examples::

        >>> spec = HashSpec(kind="xxhash", table_size=1000, sign=True, seed=1)
        >>> m = VirtualLinear.from_spec(spec, 784, 200)
        >>> m(torch.randn(32, 784)).shape
        torch.Size([32, 200])
    """

    in_features: int
    out_features: int
    bias: nn.Parameter | None

    def __init__(
        self,
        spec: HashSpec,
        in_features: int,
        out_features: int,
        layer: int = 0,
        *,
        shapes: list[tuple[int, int]] | None = None,
        bias: bool = True,
        tile_weights: int = TILE_WEIGHTS,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("in_features", in_features, 1, sys.maxsize)
        check_int("out_features", out_features, 1, sys.maxsize)
        check_int("layer", layer, 0, sys.maxsize)
        check_int("tile_weights", tile_weights, 1, sys.maxsize)
        if not isinstance(spec, HashSpec):
            raise SpecError(f"spec must be a HashSpec, got {type(spec).__name__}; build one with HashSpec(kind=...)")
        if spec.hash_bias:
            raise SpecError(
                "hash_bias is not computed on the fly (a layer's biases are out_features long): build the spec with "
                "hash_bias=False, or build the map and use ArbLinear"
            )
        if shapes is None:
            if spec.scope == "global":
                raise SpecError(
                    "scope='global' shares one table across the model's layers: pass shapes=[(out, in), ...] of "
                    "every layer"
                )
            shapes = [(out_features, in_features)] * (layer + 1)  # a layer-scope hash reads only its own shape
        elif not 0 <= layer < len(shapes) or tuple(shapes[layer]) != (out_features, in_features):
            raise SpecError(
                f"shapes[{layer}] must be this layer's (out_features, in_features) = {(out_features, in_features)}; "
                f"got shapes={shapes}"
            )
        self.spec, self.layer, self.shapes = spec, layer, [tuple(s) for s in shapes]
        self.in_features, self.out_features, self.tile_weights = in_features, out_features, tile_weights
        self.hash = LayerHash.from_spec(spec, list(shapes), layer)
        self.table = nn.Parameter(torch.empty(self.hash.n, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @classmethod
    def from_spec(
        cls, spec: HashSpec, in_features: int, out_features: int, layer: int = 0, **kwargs: Any
    ) -> VirtualLinear:
        """The layer ``layer`` of ``spec`` with this shape; keyword arguments as the constructor's."""
        return cls(spec, in_features, out_features, layer, **kwargs)

    @property
    def table_size(self) -> int:
        """Entries ``n`` of the table."""
        return self.hash.n

    @property
    def index_bytes(self) -> int:
        """Bytes of index arrays the layer holds: 0."""
        return 0

    def reset_parameters(self) -> None:
        """Table and bias from :math:`\\mathcal{U}(-k, k)`, :math:`k = 1/\\sqrt{in\\_features}` (as ArbLinear)."""
        bound = table_init_bound(self.in_features)
        nn.init.uniform_(self.table, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return virtual_linear(input, self.table, self.hash, self.bias, self.tile_weights)

    def virtual_weight(self) -> Tensor:
        """The ``(out_features, in_features)`` weight matrix, materialised (for inspection and export), with grad."""
        idx, sign = self.hash.entries()
        key = torch.from_numpy(np.where(idx >= 0, idx, 0))
        w = self.table[key] * torch.from_numpy(sign).to(self.table.dtype)
        return w.masked_fill(torch.from_numpy(idx < 0), 0.0)

    def to_arblinear(self) -> ArbLinear:
        """The materialised :class:`ArbLinear` of the same map, table and bias (copies): ``build_map``'s layer."""
        idx, sign = self.hash.entries()
        layer = ArbLinear(
            self.in_features,
            self.out_features,
            idx,
            self.hash.n,
            sign=sign if self.spec.sign else None,
            bias=self.bias is not None,
            dtype=self.table.dtype,
        )
        with torch.no_grad():
            layer.table.copy_(self.table)
            if self.bias is not None and layer.bias is not None:
                layer.bias.copy_(self.bias)
        return layer.train(self.training)

    def get_extra_state(self) -> dict[str, Any]:
        """The spec, layer and shapes, so that a state dict names the map it was trained with."""
        return {"spec": self.spec.to_dict(), "layer": self.layer, "shapes": [list(s) for s in self.shapes]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mine = self.get_extra_state()
        if state != mine:
            raise ValueError(
                f"this state dict was trained with another hash: {state}; this layer has {mine}. Build the layer "
                "with VirtualLinear.from_spec(HashSpec.from_dict(state['spec']), ...) before loading"
            )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, table_size={self.hash.n}, "
            f"kind={self.spec.kind}, layer={self.layer}, bias={self.bias is not None}, index_bytes=0"
        )


def virtual_layers(
    path: str | os.PathLike,
    *,
    bias: bool = True,
    tile_weights: int = TILE_WEIGHTS,
    dtype: torch.dtype | None = None,
) -> nn.ModuleList:
    """One :class:`VirtualLinear` per layer of an index file, from the spec in its header; its arrays are not read.

    The file's ``spec`` (written by ``hashlab.build_map``) and layer shapes give each layer's hash, so a model of
    any size is built from a file of any storage (a spec-only v4 file included) without its index arrays ever
    being loaded or rebuilt. Tables and biases are freshly initialised (as :class:`VirtualLinear`'s).

    Args:
        path: an index file (``hashlab build``, :func:`hashlab.save_index_file`).
        bias, tile_weights, dtype: as :class:`VirtualLinear`'s.

    Returns:
        :class:`torch.nn.ModuleList` of the layers, in order.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        hashlab.io.container.FormatError: if it is not a readable index file.
        SpecError: if its map was not built by ``hashlab.build_map`` from a spec (conv, model, clustered and
            hand-made maps have no spec to hash on the fly: load the map and use ArbLinear), or the spec is one the
            layer refuses (``hash_bias``).
    """
    meta = read_header(path)[0]["__metadata__"]
    spec_dict = json.loads(meta.get("spec", "{}"))
    if spec_dict.get("builder") != "hashlab.build_map":
        raise SpecError(
            f"{os.fspath(path)}: its map was built by {spec_dict.get('builder', 'an unknown builder')!r}, not "
            "hashlab.build_map from a spec, so its weights cannot be hashed on the fly; load it with "
            "hashlab.load_index_file and use ArbLinear"
        )
    names = {f.name for f in dataclasses.fields(HashSpec)} | {"version"}
    spec = HashSpec.from_dict({k: v for k, v in spec_dict.items() if k in names})
    shapes = [(int(lay["out_features"]), int(lay["in_features"])) for lay in json.loads(meta["layers"])]
    return nn.ModuleList(
        VirtualLinear(spec, i, o, k, shapes=shapes, bias=bias, tile_weights=tile_weights, dtype=dtype)
        for k, (o, i) in enumerate(shapes)
    )
