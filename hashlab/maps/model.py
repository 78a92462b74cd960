"""Index maps of any model's layers: a :class:`HashSpec` over a list of :class:`LayerShape` (Linear, Conv2d and
Embedding weights alike), with per-layer budgets.

:func:`build_model_map` is what a model compressor hands the trainer's ``arbify`` (which never builds maps
itself)::

    import hashlab
    from trainers.torch_backend import arbify

    spec = hashlab.HashSpec(kind="xxhash", sign=True, compression="1/16")
    model, imap = arbify(model, lambda shapes: hashlab.build_model_map(spec, shapes))

The layers need not chain: each layer is its weight matrix (:attr:`LayerShape.matrix_shape`), hashed as
:func:`~hashlab.maps.hashes.build_map` hashes a layer (same identifiers, streams and kernels), so for Linear layers
that chain as an :class:`Architecture` both builders give the same arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal

from .._version import __version__
from ..configs import check_int, is_int
from . import kernels as K
from .geometry import LayerShape
from .hashes import hash_layers
from .indexmap import IndexMap
from .spec import HashSpec, SpecError, TablePlan, ceil_budget, parse_ratio

__all__ = ["build_model_map", "model_shapes", "BUILDER"]

BUILDER = "hashlab.build_model_map"
"""The ``builder`` value of the maps of :func:`build_model_map` (``IndexMap.spec``)."""
_MAX_TABLE = 2**31 - 1


def model_shapes(shapes: Sequence[LayerShape | tuple[int, int]]) -> tuple[LayerShape, ...]:
    """``shapes`` as :class:`LayerShape` records: a pair ``(out_features, in_features)`` is a Linear layer.

    Raises
    ------
    SpecError
        If ``shapes`` is empty, an item is neither a :class:`LayerShape` nor a pair of sizes, or two layers
        have the same non-empty name.
    """
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence) or not shapes:
        raise SpecError(
            f"shapes must be a non-empty list of LayerShape (what arbify passes its builder) or (out, in) pairs, "
            f"got {shapes!r}"[:300]
        )
    out = []
    for k, s in enumerate(shapes):
        if isinstance(s, LayerShape):
            out.append(s)
        elif isinstance(s, (tuple, list)) and len(s) == 2 and all(is_int(v, 1, _MAX_TABLE, numpy=True) for v in s):
            out.append(LayerShape("linear", (int(s[0]), int(s[1]))))
        else:
            raise SpecError(f"shapes[{k}] must be a LayerShape or an (out_features, in_features) pair, got {s!r}")
    names = [s.name for s in out if s.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"layer names must be unique, got {dup} more than once")
    return tuple(out)


def _budget(value: Any, where: str) -> int | str:
    """One per-layer budget: an int is table entries, anything else a compression ratio (canonical ``"p/q"``)."""
    if is_int(value, numpy=True):
        return check_int(where, value, 1, _MAX_TABLE, SpecError, numpy=True, expected="table entries, an int >= 1")
    return str(parse_ratio(value, where))


def _resolve_budgets(
    spec: HashSpec, shapes: tuple[LayerShape, ...], budgets: Mapping[str | int, Any] | Sequence[Any] | None
) -> list[int | str | None]:
    """One budget per layer (``None``: the spec's), from a mapping by name or position, or a list of one per layer."""
    if budgets is None:
        return [None] * len(shapes)
    if spec.scope == "global":
        raise SpecError(
            "per-layer budgets need one table per layer (scope='layer'); with scope='global' the one table's size "
            "comes from table_size or compression: drop budgets or use scope='layer'"
        )
    if spec.kind == "identity":
        raise SpecError("the identity hash has one entry per weight, so it takes no budgets; drop budgets")
    if isinstance(budgets, Mapping):
        names = {s.name: k for k, s in enumerate(shapes) if s.name}
        out: list[int | str | None] = [None] * len(shapes)
        for key, value in budgets.items():
            if isinstance(key, str) and key in names:
                k = names[key]
            elif is_int(key, 0, len(shapes) - 1):
                k = int(key)
            else:
                raise SpecError(
                    f"budget key {key!r} is neither a layer name nor a position in [0, {len(shapes)}); "
                    f"the layers are {[s.name or k for k, s in enumerate(shapes)]}"
                )
            if out[k] is not None:
                raise SpecError(f"layer {k} ({shapes[k].name!r}) has two budgets; give one")
            out[k] = _budget(value, f"budget of layer {shapes[k].name or k!r}")
        return out
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or len(budgets) != len(shapes):
        raise SpecError(
            f"budgets must be a mapping from layer name (or position) to a budget, or a list of {len(shapes)} "
            f"budgets (None: the spec's), got {budgets!r}"[:300]
        )
    return [None if v is None else _budget(v, f"budgets[{k}]") for k, v in enumerate(budgets)]


def _plan(spec: HashSpec, shapes: tuple[LayerShape, ...], budgets: list[int | str | None]) -> TablePlan:
    matrices = [s.matrix_shape for s in shapes]
    base = spec.table_plan(matrices)  # the spec's own sizes, checked against 2**31 - 1
    weights = list(base.weights)
    for k, b in enumerate(budgets):
        if isinstance(b, int):
            weights[k] = b
        elif isinstance(b, str):
            weights[k] = ceil_budget(shapes[k].num_weights, Fraction(b))
    return TablePlan(tuple(weights), (0,) * len(weights))


def build_model_map(
    spec: HashSpec,
    shapes: Sequence[LayerShape | tuple[int, int]],
    *,
    budgets: Mapping[str | int, Any] | Sequence[Any] | None = None,
    backend: Literal["numba", "numpy"] = "numba",
) -> IndexMap:
    """The index map of a model's layers under ``spec``: one layer per shape, of its :attr:`~LayerShape.matrix_shape`.

    Each layer is hashed as :func:`~hashlab.maps.hashes.build_map` hashes layer ``k`` of an MLP (identifiers
    ``row * cols + col``, offset by the earlier layers' weights with ``scope="global"``; the same random
    streams), so Linear shapes that chain give :func:`~hashlab.maps.hashes.build_map`'s arrays. Every kind works,
    ``block`` (ROBE-Z) included: with its default ``block_size`` each embedding row (each output channel's kernel)
    reads one contiguous run of the table.

    Parameters
    ----------
    spec : HashSpec
        ``table_size`` or ``compression`` sizes each layer's table (``scope="layer"``) or the one table
        (``"global"``) as in :meth:`HashSpec.table_plan`. ``hash_bias`` is refused: biases stay dense.
    shapes : sequence of LayerShape or (out_features, in_features) pairs
        The layers, in order (``arbify`` passes its model's, named by module); a pair is a Linear layer.
    budgets : mapping or sequence, optional
        Per-layer table sizes, overriding the spec's for the layers they name (``scope="layer"`` only): a
        mapping from layer name (:attr:`LayerShape.name`) or position to an ``int`` (table entries) or a
        compression ratio (``"1/16"``, a ``Fraction`` or a float: ``ceil(weights * ratio)`` entries); or a
        sequence of one such budget (or ``None``) per layer. E.g. ``{"emb": "1/64", "head": 1.0}`` compresses
        the embedding 64 times and keeps the head's weights distinct (ratio 1).
    backend : {"numba", "numpy"}
        As :func:`~hashlab.maps.hashes.build_map`; both give identical arrays.

    Returns
    -------
    IndexMap
        Layer ``k`` is named ``shapes[k].name`` (else ``"layer<k>"``), has indices of shape
        ``shapes[k].matrix_shape`` (int16 up to 32768 entries, else int32; ``-1`` for weights zeroed by
        ``sparsity``), int8 signs with ``spec.sign``, no bias indices, and ``attrs`` ``shapes[k].attrs()``
        (``{"layer": {"kind", "weight_shape"}}``). Its ``spec`` is ``spec.to_dict()`` plus ``layers`` (the
        shapes' :meth:`LayerShape.to_dict`), ``budgets`` (only when given: one per layer, ``null``, an int or
        a ratio string), ``builder`` (``"hashlab.build_model_map"``) and ``hashlab_version``: an index file
        of the map stores only this spec (format v4, ``hashlab.maps.regenerate``).

    Raises
    ------
    SpecError
        If ``spec`` is not a :class:`HashSpec` or has ``hash_bias``; on bad ``shapes`` (:func:`model_shapes`);
        on budgets with ``scope="global"`` or kind ``identity``, of an unknown layer, twice for one layer, or
        not an int >= 1 or a ratio in (0, 1]; if a table would exceed ``2**31 - 1`` entries.
    ValueError
        If ``backend`` is unknown.

    Examples
    --------
    >>> shapes = [LayerShape("embedding", (1000, 16), "emb"), LayerShape("linear", (4, 16), "head")]
    >>> imap = build_model_map(HashSpec(kind="block", sign=True, compression="1/8"), shapes, budgets={"head": 1.0})
    >>> imap.table_sizes
    (2000, 64)
    """
    if not isinstance(spec, HashSpec):
        raise SpecError(f"spec must be a HashSpec, got {type(spec).__name__}; build one with HashSpec(kind=...)")
    if spec.hash_bias:
        raise SpecError(
            "hash_bias hashes the hidden biases of an MLP (build_map); build_model_map keeps every bias dense: "
            "drop hash_bias"
        )
    layer_shapes = model_shapes(shapes)
    resolved = _resolve_budgets(spec, layer_shapes, budgets)
    K.kernels(backend)  # refuses an unknown backend before any work
    plan = _plan(spec, layer_shapes, resolved)
    names = [s.name or f"layer{k}" for k, s in enumerate(layer_shapes)]
    if len(set(names)) != len(names):
        raise SpecError(f"layer names {names} repeat (a default 'layer<k>' name taken by a module); rename it")
    layers = hash_layers(spec, [s.matrix_shape for s in layer_shapes], plan, names, backend)
    layers = [dataclasses.replace(lay, attrs=s.attrs()) for lay, s in zip(layers, layer_shapes)]
    desc: dict[str, Any] = spec.to_dict() | {"layers": [s.to_dict() for s in layer_shapes]}
    if any(b is not None for b in resolved):
        desc["budgets"] = resolved
    desc |= {"builder": BUILDER, "hashlab_version": __version__}
    return IndexMap(layers=tuple(layers), table_sizes=plan.table_sizes, spec=desc)
