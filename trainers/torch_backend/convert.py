"""Turn any ``torch.nn.Module`` into an ArbNet and back: :func:`arbify` replaces its ``nn.Linear``, ``nn.Conv2d`` and
``nn.Embedding`` layers by :class:`ArbLinear`, :class:`ArbConv2d` and :class:`ArbEmbedding` layers of an index map;
:func:`strip` replaces those by plain layers holding their virtual weights (for deployment and export).

(The module is ``convert`` so that ``trainers.torch_backend.arbify`` is always the function: a submodule
named ``arbify`` would shadow it on the package once imported.)

The trainer consumes index maps and never generates them (tests/test_layout.py), so
:func:`arbify` takes the map, not a hash spec: either an :class:`IndexMap` built beforehand, or a
callable that builds one from the model's layer shapes (:class:`hashlab.maps.geometry.LayerShape`), e.g. with
hashlab::

    import hashlab
    from trainers.torch_backend import arbify

    spec = hashlab.HashSpec(kind="xxhash", sign=True, compression="1/16")
    model, imap = arbify(model, lambda shapes: hashlab.build_model_map(spec, shapes), skip=("head",))
    hashlab.save_index_file(imap, "model.safetensors")  # layer names = module names; the spec alone (v4)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from hashlab.maps.geometry import LAYER_KINDS, LayerShape
from hashlab.maps.indexmap import IndexMap, LayerMap

from .conv2d import ArbConv2d
from .embedding import ArbEmbedding
from .layers import ArbLayer, ArbLinear, bucket_means, table_init_bound

__all__ = ["arbify", "strip", "model_layers", "layer_shapes", "linear_layers", "linear_features", "INITS", "KINDS"]

INITS = ("weights", "map")
"""``arbify(init=...)``: tables from the trained weights, or as a fresh :class:`ArbMLP` would start."""
KINDS = LAYER_KINDS
"""``arbify(kinds=...)``: the layer kinds replaced, ``("linear", "conv2d", "embedding")``."""
_DENSE: dict[str, type[nn.Module]] = {"linear": nn.Linear, "conv2d": nn.Conv2d, "embedding": nn.Embedding}
_KIND_OF = {cls: kind for kind, cls in _DENSE.items()}


def _kind(m: nn.Module) -> str | None:
    """The layer kind of a Linear / Conv2d / Embedding (or a subclass of one), else None."""
    for cls, kind in _KIND_OF.items():
        if isinstance(m, cls):
            return kind
    return None


def model_layers(
    model: nn.Module, skip: Iterable[str] = (), kinds: Iterable[str] = KINDS
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs :func:`arbify` replaces, in ``model.named_modules()`` order.

    Every :class:`torch.nn.Linear`, :class:`torch.nn.Conv2d` and :class:`torch.nn.Embedding` of a kind in
    ``kinds``, except those named in ``skip`` or lying under a module named there (``skip=("head",)`` keeps
    ``head`` and ``head.0``...). A layer reachable under several names (a tied module) is listed once, under
    its first name.

    Args:
        model: any module; it is not changed.
        skip: module names (as in ``named_modules()``), each naming an existing module.
        kinds: which layers to replace, a subset of :data:`KINDS`.

    Raises:
        ValueError: if ``kinds`` holds an unknown kind; if a ``skip`` name is not a module of ``model``; if
            ``model`` is itself such a layer (wrap it: ``nn.Sequential(layer)``); if a layer not skipped is a
            subclass (its owner may read ``.weight`` directly, as ``nn.MultiheadAttention`` does with its
            ``out_proj``: skip it), still lazy (``nn.LazyLinear``, ``nn.LazyConv2d``: run one forward pass
            first), or an embedding with ``scale_grad_by_freq`` or ``sparse`` (:class:`ArbEmbedding` has
            neither: skip it).
    """
    kinds = tuple(kinds)
    bad_kinds = [k for k in kinds if k not in KINDS]
    if bad_kinds or not kinds:
        raise ValueError(f"kinds must name some of {KINDS}, got {kinds!r}")
    if _kind(model) is not None:
        raise ValueError(
            f"model is itself an {type(model).__name__}, which cannot be replaced in place; wrap it: "
            "nn.Sequential(layer)"
        )
    skip = tuple(skip)
    names = dict(model.named_modules())
    bad = [s for s in skip if not isinstance(s, str) or not s or s not in names]
    if bad:
        found = [n for n, m in names.items() if _kind(m) is not None]
        raise ValueError(
            f"skip names {bad!r} are not modules of the model; its Linear, Conv2d and Embedding layers are {found}"
        )
    out = []
    for name, m in names.items():
        kind = _kind(m)
        if kind not in kinds or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if isinstance(getattr(m, "weight", None), nn.parameter.UninitializedParameter):
            raise ValueError(
                f"module {name!r} is a lazy {type(m).__name__} without weights yet; run one forward pass "
                "before arbify, or add it to skip="
            )
        dense = _DENSE[kind]
        if type(m) is not dense:
            raise ValueError(
                f"module {name!r} is a {type(m).__name__}, a subclass of nn.{dense.__name__} that arbify does "
                "not replace (its owner may read .weight directly, as nn.MultiheadAttention does); "
                f"add {name!r} or its parent to skip="
            )
        if isinstance(m, nn.Embedding) and (m.scale_grad_by_freq or m.sparse):
            raise ValueError(
                f"embedding {name!r} has scale_grad_by_freq or sparse, which ArbEmbedding does not support; "
                f"turn them off or add {name!r} to skip="
            )
        out.append((name, m))
    return out


def layer_shapes(model: nn.Module, skip: Iterable[str] = (), kinds: Iterable[str] = KINDS) -> tuple[LayerShape, ...]:
    """The shapes of the layers :func:`arbify` replaces, named by module: what its builder callable receives.

    ``LayerShape(kind, weight.shape, name)`` per layer of :func:`model_layers`, e.g.
    ``LayerShape("conv2d", (16, 3, 5, 5), "features.0")``; ``hashlab.build_model_map(spec, shapes)`` builds
    their map.

    Raises:
        ValueError: if there is no layer to replace (all skipped, or none), or as :func:`model_layers`.
    """
    layers = model_layers(model, skip, kinds)
    if not layers:
        raise ValueError(f"the model has no layer of kinds {tuple(kinds)} to replace (all skipped, or none)")
    return tuple(_shape(name, m) for name, m in layers)


def linear_layers(model: nn.Module, skip: Iterable[str] = ()) -> list[tuple[str, nn.Linear]]:
    """:func:`model_layers` of the Linear layers only (``kinds=("linear",)``)."""
    return model_layers(model, skip, ("linear",))  # type: ignore[return-value]


def linear_features(model: nn.Module, skip: Iterable[str] = ()) -> tuple[int, ...]:
    """Feature sizes of the Linear layers, as ``hashlab.Architecture`` takes them (for ``build_map``).

    ``(in_features of the first, out_features of the first, out_features of the second, ...)``.

    Raises:
        ValueError: if there is no Linear to replace, or the Linear layers do not chain
            (``in_features`` of one != ``out_features`` of the previous, in ``named_modules``
            order): no ``hashlab.Architecture`` describes them (``hashlab.build_model_map`` does, for any
            layers). Also as :func:`model_layers`.
    """
    layers = linear_layers(model, skip)
    if not layers:
        raise ValueError("the model has no nn.Linear to replace (all skipped, or none)")
    for (pn, prev), (n, lin) in zip(layers[:-1], layers[1:]):
        if lin.in_features != prev.out_features:
            raise ValueError(
                f"the Linear layers do not chain: {n!r} has in_features={lin.in_features} after {pn!r} "
                f"with out_features={prev.out_features}, so no hashlab.Architecture describes them; "
                "build their map with hashlab.build_model_map(spec, shapes)"
            )
    return (layers[0][1].in_features, *(lin.out_features for _, lin in layers))


def arbify(
    model: nn.Module,
    index_map: IndexMap | Callable[[tuple[LayerShape, ...]], IndexMap],
    *,
    skip: Iterable[str] = (),
    kinds: Iterable[str] = KINDS,
    init: str = "weights",
) -> tuple[nn.Module, IndexMap]:
    r"""Replace every ``nn.Linear``, ``nn.Conv2d`` and ``nn.Embedding`` of ``model`` (except ``skip``) by ArbNet layers.

    In place: ``nn.Linear`` becomes :class:`ArbLinear`, ``nn.Conv2d`` :class:`ArbConv2d` (same stride, padding,
    dilation, groups and padding mode), ``nn.Embedding`` :class:`ArbEmbedding` (same ``padding_idx``,
    ``max_norm``, ``norm_type``). Layer ``k`` of the map becomes the ``k``-th such layer of
    ``model.named_modules()`` (:func:`model_layers`), its map of the layer's ``LayerShape.matrix_shape``: a
    Linear's ``(out_features, in_features)``, a Conv2d's ``(out_channels, in_channels // groups * kh * kw)``,
    an Embedding's ``(num_embeddings, embedding_dim)`` (docs/FORMAT.md). Every other module (norms,
    activations, attention, a skipped head) is kept. A table read by several layers (``scope="global"``)
    becomes one :class:`~torch.nn.Parameter` shared by its readers (listed under each reader's ``table`` in the
    state dict, once in ``parameters()``). The result works with ``state_dict`` / ``load_state_dict``,
    ``.to(device)``, ``torch.compile``, :func:`strip` and ``torch.onnx.export``.

    The trainer never builds maps (it may import only hashlab's io, in-memory map, geometry and config
    modules), so it takes the map, or a builder of it: pass ``index_map`` as a callable that receives the
    layers' shapes (:func:`layer_shapes`, a tuple of ``hashlab.LayerShape`` named by module) and returns the
    map; compressing a model is then one line::

        model, imap = arbify(model, lambda shapes: hashlab.build_model_map(spec, shapes))

    Args:
        model: any module; changed in place (``copy.deepcopy`` it first to keep the original).
        index_map: an :class:`IndexMap` with one layer per replaced layer, in order, of its matrix shape; or a
            callable building it from :func:`layer_shapes`. A map layer whose ``attrs`` carry
            ``{"layer": {"kind", "weight_shape"}}`` (``hashlab.build_model_map``'s) must match its module.
        skip: names of modules to keep as they are (a layer, or any module whose layers are all kept), e.g.
            ``("head",)``.
        kinds: the layer kinds to replace (default all of :data:`KINDS`); ``("linear",)`` replaces the Linear
            layers only.
        init: ``"weights"`` (default): each table entry is the mean of ``sign * weight`` over the weights
            reading it, across every reader of the table (the least-squares fit, :func:`bucket_means`; an
            embedding's ``padding_idx`` row reads nothing and is left out), and each bias is copied (or, with
            ``bias_indices``, averaged into the table): a trained model compressed, ready to fine-tune; with
            the identity map the model is unchanged.
            ``"map"``: a fresh ArbNet: table ``t`` from ``index_map.initial_tables[t]`` where given, else a
            table read by one layer as that layer starts it (Linear / Conv2d :math:`\mathcal{U}(-k, k)`,
            :math:`k = 1/\sqrt{\text{fan\_in}}`; Embedding :math:`\mathcal{N}(0, 1)`), a shared table
            :math:`\mathcal{U}(-k, k)` with the largest fan-in of its Linear / Conv2d readers (or
            :math:`\mathcal{N}(0, 1)` when only embeddings read it); biases as ``nn.Linear``'s; from the global
            torch RNG.

    Returns:
        ``(model, map)``: the same ``model`` object, and the map with layer ``k`` renamed to its module's name
        (``"features.3"``, ``"head"``) and given the ``{"layer": ...}`` attrs of its shape where it had none;
        with ``init="weights"`` its ``initial_tables`` are the computed float32 tables, so saving it
        (:func:`hashlab.io.format.save_index_file`) keeps the compressed weights.

    Raises:
        TypeError: if ``index_map`` is neither an :class:`IndexMap` nor a callable returning one.
        ValueError: on an unknown ``init``; if the map's layer count or shapes differ from the layers' (or its
            ``attrs`` name another kind or weight shape); if an embedding's map layer has ``bias_indices``; if the
            readers of a shared table differ in device or dtype; also as :func:`model_layers` and (for a
            callable) :func:`layer_shapes`.

    Examples::

        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(2704, 64), nn.ReLU(), nn.Linear(64, 10))
        >>> net, imap = arbify(net, lambda s: hashlab.build_model_map(spec, s), skip=("4",))
        >>> [(lay.name, lay.indices.shape) for lay in imap.layers]
        [('0', (4, 9)), ('2', (64, 2704))]
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose 'weights' (from the trained weights) or 'map'")
    skip, kinds = tuple(skip), tuple(kinds)
    layers = model_layers(model, skip, kinds)
    if callable(index_map) and not isinstance(index_map, IndexMap):
        index_map = index_map(layer_shapes(model, skip, kinds))
    if not isinstance(index_map, IndexMap):
        raise TypeError(f"index_map must be an IndexMap or a callable returning one, got {type(index_map).__name__}")
    _check_shapes(index_map, layers, init)
    values = _initial_values(index_map, layers, init)
    shared = _shared_tables(index_map, layers, values)
    new: dict[int, ArbLayer] = {}
    for (_, module), lay in zip(layers, index_map.layers):
        arb = _arb_layer(module, lay, index_map.table_sizes[lay.table], shared.get(lay.table))
        with torch.no_grad():
            value = values[lay.table]
            if lay.table not in shared and value is not None:
                arb.table.copy_(value)
            bias = getattr(module, "bias", None)
            if init == "weights" and arb.bias is not None and isinstance(bias, torch.Tensor):
                arb.bias.copy_(bias)
        new[id(module)] = arb.train(module.training)
    _replace(model, new)
    renamed = tuple(
        dataclasses.replace(lay, name=name, attrs=lay.attrs if "layer" in lay.attrs else _shape(name, m).attrs())
        for (name, m), lay in zip(layers, index_map.layers)
    )
    initial = index_map.initial_tables
    if init == "weights":
        initial = tuple(None if v is None else v.to(torch.float32).numpy() for v in values)
    return model, IndexMap(renamed, index_map.table_sizes, dict(index_map.spec), initial)


def strip(model: nn.Module) -> nn.Module:
    """Replace every ArbNet layer of ``model`` by the plain torch layer holding its virtual weights, in place.

    :class:`ArbLinear` becomes :class:`torch.nn.Linear` (weight ``virtual_weight()``, bias ``virtual_bias()``),
    :class:`ArbConv2d` :class:`torch.nn.Conv2d` (weight ``virtual_kernel()``; stride, padding, dilation, groups,
    padding mode kept), :class:`ArbEmbedding` :class:`torch.nn.Embedding` (weight ``virtual_weight()``, its
    ``padding_idx`` row zero; ``padding_idx``, ``max_norm``, ``norm_type`` kept): the inverse of :func:`arbify`
    for deployment. The stripped model computes what the ArbNet computes (to the last bit for Linear and
    Conv2d: the same weights go into the same op), with the dense layers' memory and file size, and exports
    with no trace of the table; weights that shared an entry are independent parameters from then on. Each new
    layer gets its ArbNet layer's device, dtype and training mode; a layer used in several places becomes one
    plain layer in all of them. Tables held outside the layers (``ArbMLP.tables``) stay where they are.

    Args:
        model: any module; changed in place (``copy.deepcopy`` it first to keep the ArbNet). A model that is
            itself an ArbNet layer cannot be replaced in place: its plain layer is returned.

    Returns:
        ``model`` (or the plain layer when ``model`` is an ArbNet layer).

    Raises:
        TypeError: if a module is an :class:`ArbLayer` of a class other than the three above.

    Examples::

        >>> model, _ = arbify(model, lambda s: hashlab.build_model_map(spec, s))
        >>> dense = strip(copy.deepcopy(model))
        >>> torch.equal(dense(x), model(x))
        True
    """
    if isinstance(model, ArbLayer):
        return _plain(model)
    new = {id(m): _plain(m) for m in model.modules() if isinstance(m, ArbLayer)}
    _replace(model, new)
    return model


def _plain(layer: ArbLayer) -> nn.Module:
    """The plain torch layer of an ArbNet layer, holding its virtual weights."""
    kw: dict[str, Any] = {"device": layer.table.device, "dtype": layer.table.dtype}
    bias = layer.virtual_bias()
    dense: nn.Module
    with torch.no_grad():
        if isinstance(layer, ArbLinear):
            dense = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None, **kw)
            weight = layer.virtual_weight()
        elif isinstance(layer, ArbConv2d):
            dense = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
                bias=bias is not None,
                padding_mode=layer.padding_mode,  # type: ignore[arg-type]  # checked by ArbConv2d
                **kw,
            )
            weight = layer.virtual_kernel()
        elif isinstance(layer, ArbEmbedding):
            dense = nn.Embedding(
                layer.num_embeddings,
                layer.embedding_dim,
                layer.padding_idx,
                layer.max_norm,
                layer.norm_type,
                **kw,
            )
            weight = layer.virtual_weight()
        else:
            raise TypeError(f"strip knows ArbLinear, ArbConv2d and ArbEmbedding, not {type(layer).__name__}")
        dense.weight.copy_(weight)
        if bias is not None:
            cast(torch.Tensor, dense.bias).copy_(bias)
    return dense.train(layer.training)


def _replace(model: nn.Module, new: Mapping[int, nn.Module]) -> None:
    """Put ``new[id(m)]`` in every place of ``model`` that holds module ``m`` (tied modules included)."""
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if id(module) in new:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new[id(module)])


def _weight(m: nn.Module) -> torch.Tensor:
    """The ``weight`` of a Linear, Conv2d or Embedding."""
    return cast(torch.Tensor, m.weight)


def _shape(name: str, m: nn.Module) -> LayerShape:
    return LayerShape(cast(str, _kind(m)), tuple(_weight(m).shape), name)


def _fan_in(m: nn.Module) -> int | None:
    """Columns of the layer's map (Linear and Conv2d), for the init bound; None for an embedding."""
    return None if isinstance(m, nn.Embedding) else _shape("", m).matrix_shape[1]


def _arb_layer(module: nn.Module, lay: LayerMap, n: int, table: nn.Parameter | None) -> ArbLayer:
    """The ArbNet layer of ``module`` reading map layer ``lay`` (table of ``n`` entries, or the shared ``table``)."""
    w = _weight(module)
    kw: dict[str, Any] = {"table": table, "device": w.device, "dtype": w.dtype}
    if isinstance(module, nn.Embedding):
        return ArbEmbedding(
            module.num_embeddings,
            module.embedding_dim,
            lay.indices,
            n,
            lay.sign,
            module.padding_idx,
            module.max_norm,
            module.norm_type,
            **kw,
        )
    kw |= {"bias_indices": lay.bias_indices, "bias_sign": lay.bias_sign}
    has_bias = module.bias is not None or lay.bias_indices is not None
    if isinstance(module, nn.Conv2d):
        return ArbConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,  # type: ignore[arg-type]  # a pair
            lay.indices,
            n,
            lay.sign,
            stride=module.stride,  # type: ignore[arg-type]
            padding=module.padding,  # type: ignore[arg-type]
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=module.groups,
            bias=has_bias,
            padding_mode=module.padding_mode,
            **kw,
        )
    assert isinstance(module, nn.Linear)
    return ArbLinear(module.in_features, module.out_features, lay.indices, n, lay.sign, has_bias, **kw)


def _check_shapes(index_map: IndexMap, layers: list[tuple[str, nn.Module]], init: str) -> None:
    shapes = [_shape(name, m) for name, m in layers]
    want = [(s.name, s.matrix_shape) for s in shapes]
    got = [(lay.name, (lay.out_features, lay.in_features)) for lay in index_map.layers]
    if len(got) != len(want) or any(g[1] != w[1] for g, w in zip(got, want)):
        raise ValueError(
            f"the index map's layers {got} (out_features, in_features) do not match the model's layers {want} "
            "(named_modules order, skip= applied; Conv2d as (out_channels, in_channels // groups * kh * kw)); "
            "build the map for these shapes (hashlab.build_model_map), or skip= the layers it does not cover"
        )
    for (name, m), lay, shape in zip(layers, index_map.layers, shapes):
        said = lay.attrs.get("layer")
        if said is not None and said != shape.to_dict():
            raise ValueError(
                f"map layer {lay.name!r} was built for a {said}, but module {name!r} is a {shape.to_dict()}; "
                "build the map for this model's layers"
            )
        if isinstance(m, nn.Embedding) and lay.bias_indices is not None:
            raise ValueError(f"map layer {lay.name!r} has bias_indices, but module {name!r} is an Embedding (no bias)")
        if init == "weights" and lay.bias_indices is not None and getattr(m, "bias", None) is None:
            raise ValueError(
                f"map layer {lay.name!r} reads its bias from the table (bias_indices), but module "
                f"{name!r} has no bias to start it from; use init='map' or a map without bias_indices"
            )


def _initial_values(index_map: IndexMap, layers: list[tuple[str, nn.Module]], init: str) -> list[torch.Tensor | None]:
    """Starting values of each table (CPU; float64 bucket means or the map's float32 tables), or None."""
    if init == "map":
        given = index_map.initial_tables or (None,) * len(index_map.table_sizes)
        return [None if v is None else torch.from_numpy(np.array(v, dtype=np.float32)) for v in given]
    parts: dict[int, list] = {}
    for (name, m), lay in zip(layers, index_map.layers):
        idx = _tensor(lay.indices)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            idx[m.padding_idx] = -1  # the padding row reads nothing
        weight = _weight(m).reshape(_shape(name, m).matrix_shape)
        parts.setdefault(lay.table, []).append((weight, idx, None if lay.sign is None else _tensor(lay.sign)))
        if lay.bias_indices is not None:
            parts[lay.table].append(
                (m.bias, _tensor(lay.bias_indices), None if lay.bias_sign is None else _tensor(lay.bias_sign))
            )
    return [bucket_means(n, parts[t]) if t in parts else None for t, n in enumerate(index_map.table_sizes)]


def _shared_tables(
    index_map: IndexMap, layers: list[tuple[str, nn.Module]], values: list[torch.Tensor | None]
) -> dict[int, nn.Parameter]:
    """One Parameter per table read by several layers, filled with ``values`` or the fresh init of its readers."""
    readers: dict[int, list[nn.Module]] = {}
    for (_, m), lay in zip(layers, index_map.layers):
        readers.setdefault(lay.table, []).append(m)
    out = {}
    for t, group in readers.items():
        if len(group) == 1:
            continue  # the layer owns its table
        w0 = _weight(group[0])
        if any(_weight(m).device != w0.device or _weight(m).dtype != w0.dtype for m in group):
            raise ValueError(
                f"table {t} is read by layers on different devices or dtypes; "
                "move the model to one device and dtype first"
            )
        table = nn.Parameter(torch.empty(index_map.table_sizes[t], device=w0.device, dtype=w0.dtype))
        with torch.no_grad():
            value = values[t]
            fans = [f for f in map(_fan_in, group) if f is not None]
            if value is not None:
                table.copy_(value)
            elif fans:
                bound = table_init_bound(max(fans))
                nn.init.uniform_(table, -bound, bound)
            else:  # only embeddings read it
                nn.init.normal_(table)
        out[t] = table
    return out


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a).astype(np.int64))
