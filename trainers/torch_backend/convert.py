"""Turn any ``torch.nn.Module`` into an ArbNet: replace its ``nn.Linear`` layers by :class:`ArbLinear` layers.

(The module is ``convert`` so that ``trainers.torch_backend.arbify`` is always the function: a submodule
named ``arbify`` would shadow it on the package once imported.)

The trainer consumes index maps and never generates them (tests/test_layout.py), so
:func:`arbify` takes the map, not a hash spec: either an :class:`IndexMap` built beforehand, or a
callable that builds one from the model's Linear feature sizes, e.g. with hashlab::

    import hashlab
    from trainers.torch_backend import arbify

    spec = hashlab.HashSpec(kind="xxhash", table_size=4096, sign=True)
    model, imap = arbify(model, lambda feats: hashlab.build_map(spec, hashlab.Architecture(feats)),
                         skip=("head",))
    hashlab.save_index_file(imap, "model.safetensors")  # layer names = module names
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from hashlab.maps.indexmap import IndexMap

from .layers import ArbLinear, bucket_means, table_init_bound

__all__ = ["arbify", "linear_layers", "linear_features", "INITS"]

INITS = ("weights", "map")
"""``arbify(init=...)``: tables from the Linear weights, or as a fresh :class:`ArbMLP` would start."""


def linear_layers(model: nn.Module, skip: Iterable[str] = ()) -> list[tuple[str, nn.Linear]]:
    """The ``(name, module)`` pairs :func:`arbify` replaces, in ``model.named_modules()`` order.

    Every :class:`torch.nn.Linear` except those named in ``skip`` or lying under a module
    named there (``skip=("head",)`` keeps ``head`` and ``head.0``...). A Linear reachable
    under several names (a tied module) is listed once, under its first name.

    Args:
        model: any module; it is not changed.
        skip: module names (as in ``named_modules()``), each naming an existing module.

    Raises:
        ValueError: if a ``skip`` name is not a module of ``model``; if ``model`` is itself a
            Linear (wrap it: ``nn.Sequential(linear)``); if a Linear not skipped is a subclass
            of ``nn.Linear`` (its owner may read ``.weight`` directly, as
            ``nn.MultiheadAttention`` does with its ``out_proj``: skip it) or still lazy
            (``nn.LazyLinear``: run one forward pass first).
    """
    if isinstance(model, nn.Linear):
        raise ValueError(
            "model is itself an nn.Linear, which cannot be replaced in place; wrap it: nn.Sequential(linear)"
        )
    skip = tuple(skip)
    names = dict(model.named_modules())
    bad = [s for s in skip if not isinstance(s, str) or not s or s not in names]
    if bad:
        linears = [n for n, m in names.items() if isinstance(m, nn.Linear)]
        raise ValueError(f"skip names {bad!r} are not modules of the model; its Linear layers are {linears}")
    out = []
    for name, m in names.items():
        if not isinstance(m, nn.Linear) or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if isinstance(m.weight, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"module {name!r} is a lazy Linear without weights yet; run one forward pass "
                "before arbify, or add it to skip="
            )
        if type(m) is not nn.Linear:
            raise ValueError(
                f"module {name!r} is a {type(m).__name__}, a subclass of nn.Linear that arbify does "
                "not replace (its owner may read .weight directly, as nn.MultiheadAttention does); "
                f"add {name!r} or its parent to skip="
            )
        out.append((name, m))
    return out


def linear_features(model: nn.Module, skip: Iterable[str] = ()) -> tuple[int, ...]:
    """Feature sizes of the Linear layers :func:`arbify` replaces, as ``hashlab.Architecture`` takes them.

    ``(in_features of the first, out_features of the first, out_features of the second, ...)``.

    Raises:
        ValueError: if there is no Linear to replace, or the Linear layers do not chain
            (``in_features`` of one != ``out_features`` of the previous, in ``named_modules``
            order): no ``hashlab.Architecture`` describes them, so pass :func:`arbify` an
            :class:`IndexMap` with one layer of each shape instead. Also as :func:`linear_layers`.
    """
    layers = linear_layers(model, skip)
    if not layers:
        raise ValueError("the model has no nn.Linear to replace (all skipped, or none)")
    for (pn, prev), (n, lin) in zip(layers[:-1], layers[1:]):
        if lin.in_features != prev.out_features:
            raise ValueError(
                f"the Linear layers do not chain: {n!r} has in_features={lin.in_features} after {pn!r} "
                f"with out_features={prev.out_features}, so no hashlab.Architecture describes them; "
                "build an IndexMap with one layer per Linear (shapes "
                f"{[(m.out_features, m.in_features) for _, m in layers]}) and pass it to arbify"
            )
    return (layers[0][1].in_features, *(lin.out_features for _, lin in layers))


def arbify(
    model: nn.Module,
    index_map: IndexMap | Callable[[tuple[int, ...]], IndexMap],
    *,
    skip: Iterable[str] = (),
    init: str = "weights",
) -> tuple[nn.Module, IndexMap]:
    r"""Replace every ``nn.Linear`` of ``model`` (except ``skip``) by an :class:`ArbLinear`, in place.

    Layer ``k`` of the map becomes the ``k``-th Linear of ``model.named_modules()`` (see
    :func:`linear_layers`); every other module (convolutions, norms, activations, a skipped
    head) is kept as it is. A table read by several layers (``scope="global"``) becomes one
    :class:`~torch.nn.Parameter` shared by its readers (listed under each reader's ``table``
    in the state dict, once in ``parameters()``). The result works with ``state_dict`` /
    ``load_state_dict``, ``.to(device)`` and ``torch.compile``.

    The trainer never builds maps (it may import only hashlab's io, in-memory map and config
    modules), so it takes the map, or a builder of it: pass ``index_map`` as a callable that
    receives the Linear feature sizes (:func:`linear_features`, for ``hashlab.Architecture``)
    and returns the map, e.g. ``lambda f: hashlab.build_map(spec, hashlab.Architecture(f))``
    (in effect ``arbify(model, spec)``). Layers that do not chain need an :class:`IndexMap`
    built for their shapes.

    Args:
        model: any module; changed in place (``copy.deepcopy`` it first to keep the original).
        index_map: an :class:`IndexMap` with one layer per Linear to replace, in order, of the
            same ``(out_features, in_features)``; or a callable building it from
            :func:`linear_features`.
        skip: names of modules to keep as they are (a Linear, or any module whose Linears
            are all kept), e.g. ``("head",)``.
        init: ``"weights"`` (default): each table entry is the mean of ``sign * weight`` over
            the weights reading it, across every reader of the table (the least-squares fit,
            :func:`~trainers.torch_backend.layers.bucket_means`), and each bias is copied
            (or, with ``bias_indices``, averaged into the table): a trained model compressed,
            ready to fine-tune; with the identity map the model is unchanged.
            ``"map"``: a fresh ArbNet, started as :class:`~trainers.torch_backend.models.ArbMLP`
            starts (table ``t`` from ``index_map.initial_tables[t]`` where given, else
            :math:`\mathcal{U}(-k, k)` with :math:`k = 1/\sqrt{\max \text{in\_features}}` of
            its readers; biases :math:`\mathcal{U}(-k, k)`) from the global torch RNG.

    Returns:
        ``(model, map)``: the same ``model`` object, and the map with layer ``k`` renamed to
        its module's name (``"features.3"``, ``"head"``); with ``init="weights"`` its
        ``initial_tables`` are the computed float32 tables, so saving it
        (:func:`hashlab.io.format.save_index_file`) keeps the compressed weights.

    Raises:
        TypeError: if ``index_map`` is neither an :class:`IndexMap` nor a callable returning one.
        ValueError: on an unknown ``init``; if the map's layer count or shapes differ from the
            Linear layers'; if the readers of a shared table differ in device or dtype; also as
            :func:`linear_layers` and (for a callable) :func:`linear_features`.

    Examples::

        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(2704, 64), nn.ReLU(), nn.Linear(64, 10))
        >>> net, imap = arbify(net, lambda f: hashlab.build_map(spec, hashlab.Architecture(f)))
        >>> [lay.name for lay in imap.layers]
        ['2', '4']
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose 'weights' (from the Linear weights) or 'map'")
    skip = tuple(skip)
    layers = linear_layers(model, skip)
    if callable(index_map) and not isinstance(index_map, IndexMap):
        index_map = index_map(linear_features(model, skip))
    if not isinstance(index_map, IndexMap):
        raise TypeError(f"index_map must be an IndexMap or a callable returning one, got {type(index_map).__name__}")
    _check_shapes(index_map, layers, init)
    values = _initial_values(index_map, layers, init)
    shared = _shared_tables(index_map, layers, values)
    new: dict[int, ArbLinear] = {}
    for (_, lin), lay in zip(layers, index_map.layers):
        w = lin.weight
        arb = ArbLinear(
            lin.in_features,
            lin.out_features,
            lay.indices,
            index_map.table_sizes[lay.table],
            sign=lay.sign,
            bias=lin.bias is not None or lay.bias_indices is not None,
            table=shared.get(lay.table),
            bias_indices=lay.bias_indices,
            bias_sign=lay.bias_sign,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            value = values[lay.table]
            if lay.table not in shared and value is not None:
                arb.table.copy_(value)
            if init == "weights" and arb.bias is not None:
                arb.bias.copy_(lin.bias)
        new[id(lin)] = arb.train(lin.training)
    for name, module in list(model.named_modules(remove_duplicate=False)):  # every place of a tied Linear
        if id(module) in new:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new[id(module)])
    renamed = tuple(dataclasses.replace(lay, name=name) for (name, _), lay in zip(layers, index_map.layers))
    initial = index_map.initial_tables
    if init == "weights":
        initial = tuple(None if v is None else v.to(torch.float32).numpy() for v in values)
    return model, IndexMap(renamed, index_map.table_sizes, dict(index_map.spec), initial)


def _check_shapes(index_map: IndexMap, layers: list[tuple[str, nn.Linear]], init: str) -> None:
    want = [(name, (m.out_features, m.in_features)) for name, m in layers]
    got = [(lay.name, (lay.out_features, lay.in_features)) for lay in index_map.layers]
    if len(got) != len(want) or any(g[1] != w[1] for g, w in zip(got, want)):
        raise ValueError(
            f"the index map's layers {got} (out_features, in_features) do not match the model's "
            f"Linear layers {want} (named_modules order, skip= applied); build the map for these "
            "shapes, or skip= the Linears it does not cover"
        )
    for (name, lin), lay in zip(layers, index_map.layers):
        if init == "weights" and lay.bias_indices is not None and lin.bias is None:
            raise ValueError(
                f"map layer {lay.name!r} reads its bias from the table (bias_indices), but Linear "
                f"{name!r} has no bias to start it from; use init='map' or a map without bias_indices"
            )


def _initial_values(index_map: IndexMap, layers: list[tuple[str, nn.Linear]], init: str) -> list[torch.Tensor | None]:
    """Starting values of each table (CPU; float64 bucket means or the map's float32 tables), or None."""
    if init == "map":
        given = index_map.initial_tables or (None,) * len(index_map.table_sizes)
        return [None if v is None else torch.from_numpy(np.array(v, dtype=np.float32)) for v in given]
    parts: dict[int, list] = {}
    for (_, lin), lay in zip(layers, index_map.layers):
        parts.setdefault(lay.table, []).append(
            (lin.weight, _tensor(lay.indices), None if lay.sign is None else _tensor(lay.sign))
        )
        if lay.bias_indices is not None:
            parts[lay.table].append(
                (lin.bias, _tensor(lay.bias_indices), None if lay.bias_sign is None else _tensor(lay.bias_sign))
            )
    return [bucket_means(n, parts[t]) if t in parts else None for t, n in enumerate(index_map.table_sizes)]


def _shared_tables(
    index_map: IndexMap, layers: list[tuple[str, nn.Linear]], values: list[torch.Tensor | None]
) -> dict[int, nn.Parameter]:
    """One Parameter per table read by several layers, filled with ``values`` or the ArbMLP init."""
    readers: dict[int, list[nn.Linear]] = {}
    for (_, lin), lay in zip(layers, index_map.layers):
        readers.setdefault(lay.table, []).append(lin)
    out = {}
    for t, group in readers.items():
        if len(group) == 1:
            continue  # the ArbLinear owns its table
        w0 = group[0].weight
        if any(lin.weight.device != w0.device or lin.weight.dtype != w0.dtype for lin in group):
            raise ValueError(
                f"table {t} is read by Linear layers on different devices or dtypes; "
                "move the model to one device and dtype first"
            )
        table = nn.Parameter(torch.empty(index_map.table_sizes[t], device=w0.device, dtype=w0.dtype))
        with torch.no_grad():
            value = values[t]
            if value is not None:
                table.copy_(value)
            else:
                bound = table_init_bound(max(lin.in_features for lin in group))
                nn.init.uniform_(table, -bound, bound)
        out[t] = table
    return out


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a).astype(np.int64))
