"""Rebuild an index map from the ``spec`` it records: what a spec-only index file (format v4) stores instead of
its index arrays.

Every builder of hashlab is deterministic (a stateless hash of each identifier and the seed), so the spec that
:func:`~hashlab.maps.hashes.build_map`, :func:`~hashlab.maps.model.build_model_map`,
:func:`~hashlab.maps.conv.conv_map` or :func:`~hashlab.maps.rnn.rnn_map` records in ``IndexMap.spec`` gives back the
same arrays on every run, thread count and machine, as long as the builder's code does not change (the file format
guards that with a SHA-256 of the arrays; docs/FORMAT.md).
Maps learned from data (``hashlab.cluster_weights``) or composed by hand have no such spec.

One registry, :data:`REGENERATORS`, keyed by the spec's ``builder``; :func:`regenerate_map` is how callers use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from ..configs import is_int
from .conv import conv_map
from .geometry import ConvGeometry, LayerShape, RNNGeometry
from .hashes import build_map
from .indexmap import IndexMap
from .model import BUILDER as MODEL_BUILDER
from .model import build_model_map
from .rnn import rnn_map
from .spec import Architecture, HashSpec, SpecError

__all__ = ["Regenerator", "REGENERATORS", "regenerable", "regenerated_shapes", "regenerate_map"]

_INFORMATIVE = ("builder", "hashlab_version")  # spec keys that no builder reads


class Regenerator(NamedTuple):
    """How one builder's maps are rebuilt from their spec.

    Attributes
    ----------
    shapes : callable
        ``shapes(spec) -> list of (out_features, in_features)``: the layers the spec builds, computed without
        building them (so a reader can bound the work before doing it). Raises :class:`SpecError`.
    build : callable
        ``build(spec, backend) -> IndexMap``. Raises :class:`SpecError`.
    """

    shapes: Callable[[dict[str, Any]], list[tuple[int, int]]]
    build: Callable[[dict[str, Any], str], IndexMap]


def _hash_spec(spec: dict[str, Any]) -> HashSpec:
    fields = {f.name for f in dataclasses.fields(HashSpec)} | {"version"}
    return HashSpec.from_dict({k: v for k, v in spec.items() if k in fields})


def _hash_parts(spec: dict[str, Any]) -> tuple[HashSpec, Architecture]:
    hspec = _hash_spec(spec)
    arch = spec.get("architecture")
    if not isinstance(arch, list) or not all(is_int(a, 1, 2**31 - 1) for a in arch):
        raise SpecError(f"a hashlab.build_map spec needs 'architecture', a list of feature sizes, got {arch!r}")
    name = spec.get("architecture_name", "mlp")
    if not isinstance(name, str):
        raise SpecError(f"architecture_name must be a string, got {name!r}")
    return hspec, Architecture(tuple(arch), name=name)


def _hash_shapes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    return _hash_parts(spec)[1].layer_shapes


def _hash_build(spec: dict[str, Any], backend: str) -> IndexMap:
    hspec, arch = _hash_parts(spec)
    return build_map(hspec, arch, backend=backend)  # type: ignore[arg-type]  # checked by regenerate_map


def _model_parts(spec: dict[str, Any]) -> tuple[HashSpec, list[LayerShape], list[Any] | None]:
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(
            f"a {MODEL_BUILDER} spec needs 'layers', a non-empty list of layer shapes, got {layers!r}"[:300]
        )
    budgets = spec.get("budgets")
    if budgets is not None and (not isinstance(budgets, list) or len(budgets) != len(layers)):
        raise SpecError(f"a {MODEL_BUILDER} spec's 'budgets' must be a list of one budget per layer, got {budgets!r}")
    return _hash_spec(spec), [LayerShape.from_dict(d) for d in layers], budgets


def _model_shapes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    return [s.matrix_shape for s in _model_parts(spec)[1]]


def _model_build(spec: dict[str, Any], backend: str) -> IndexMap:
    hspec, shapes, budgets = _model_parts(spec)
    return build_model_map(hspec, shapes, budgets=budgets, backend=backend)  # type: ignore[arg-type]


def _geometry_fields(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _INFORMATIVE}


def _conv_geometry(spec: dict[str, Any]) -> ConvGeometry:
    g = ConvGeometry.from_dict(_geometry_fields(spec))
    if g.op != spec.get("builder"):
        raise SpecError(f"a {spec.get('builder')!r} spec describes a {g.op} geometry; the spec is inconsistent")
    return g


def _conv_shapes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    g = _conv_geometry(spec)
    return [(g.out_features, g.in_features)]


def _conv_build(spec: dict[str, Any], backend: str) -> IndexMap:
    return conv_map(_conv_geometry(spec))


def _rnn_shapes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    g = RNNGeometry.from_dict(_geometry_fields(spec))
    return [g.step_shape] * g.steps


REGENERATORS: dict[str, Regenerator] = {
    "hashlab.build_map": Regenerator(_hash_shapes, _hash_build),
    MODEL_BUILDER: Regenerator(_model_shapes, _model_build),
    **{op: Regenerator(_conv_shapes, _conv_build) for op in ("conv1d", "conv2d", "conv3d")},
    "rnn": Regenerator(_rnn_shapes, lambda s, _backend: rnn_map(RNNGeometry.from_dict(_geometry_fields(s)))),
}
"""Builders whose maps a spec rebuilds, by the ``builder`` value of ``IndexMap.spec``: ``hashlab.build_map``
(a :class:`HashSpec` and an architecture; built with the requested backend), ``hashlab.build_model_map`` (a
:class:`HashSpec`, a list of :class:`LayerShape` dicts under ``layers`` and optional per-layer ``budgets``; the
requested backend), ``conv1d``, ``conv2d``,
``conv3d`` and ``rnn`` (a geometry; plain numpy). Layer names and ``attrs`` are not rebuilt: an index
file stores them."""


def regenerable(spec: Any) -> bool:
    """Whether ``spec`` names a builder of :data:`REGENERATORS` (it may still be invalid)."""
    return isinstance(spec, dict) and isinstance(spec.get("builder"), str) and spec["builder"] in REGENERATORS


def _regenerator(spec: Any) -> Regenerator:
    if not regenerable(spec):
        builder = spec.get("builder") if isinstance(spec, dict) else None
        raise SpecError(
            f"maps of builder {builder!r} cannot be rebuilt from their spec (rebuildable: "
            f"{', '.join(REGENERATORS)}); store their indices (index format v4 'packed')"
        )
    return REGENERATORS[spec["builder"]]


def regenerated_shapes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """The ``(out_features, in_features)`` of every layer :func:`regenerate_map` would build, without building.

    Raises
    ------
    SpecError
        If the spec's builder is not in :data:`REGENERATORS` or the spec is invalid for it.
    """
    try:
        return _regenerator(spec).shapes(spec)
    except (TypeError, ValueError, KeyError) as e:  # a builder's own checks
        raise SpecError(f"cannot rebuild the map from its spec: {e}") from None


def regenerate_map(spec: dict[str, Any], backend: Literal["numba", "numpy"] = "numba") -> IndexMap:
    """Rebuild the map that ``spec`` (an ``IndexMap.spec`` of a hashlab builder) describes.

    Parameters
    ----------
    spec : dict
        The ``spec`` of a map made by a builder of :data:`REGENERATORS`, e.g. what
        :func:`~hashlab.maps.hashes.build_map` records: every :class:`HashSpec` field, ``version``,
        ``architecture`` (list of feature sizes), ``architecture_name``, ``builder``, ``hashlab_version``
        (informative: it names who built the map, not who rebuilds it).
    backend : {"numba", "numpy"}
        Kernels of :func:`~hashlab.maps.hashes.build_map` (both give identical arrays); the geometry builders
        are plain numpy either way.

    Returns
    -------
    IndexMap
        The builder's map: its arrays (indices int16 / int32 in ``[-1, n)``, int8 signs) and table sizes are
        those of the original map if this hashlab's builder computes what the one that made it did. Its
        ``spec`` is the builder's own (this hashlab's version), its layer names and ``attrs`` the builder's
        defaults.

    Raises
    ------
    SpecError
        If the spec's builder is not in :data:`REGENERATORS` or the spec is invalid for it.
    ValueError
        If ``backend`` is unknown.
    """
    regen = _regenerator(spec)
    if backend not in ("numba", "numpy"):
        raise ValueError(f"unknown backend {backend!r}; choose one of ('numba', 'numpy')")
    try:
        return regen.build(spec, backend)
    except SpecError:
        raise
    except (TypeError, KeyError) as e:
        raise SpecError(f"cannot rebuild the map from its spec: {e}") from None
