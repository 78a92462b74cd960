"""Index maps learned from trained weights: weight sharing by 1-D k-means clustering.

The trained weights of a dense MLP are clustered into ``table_size`` shared values; each
weight then reads the entry of its nearest cluster centre, and the centres become the map's
``initial_tables``, so a trainer starts the ArbNet from the clustered network and can
fine-tune the shared values (Han, Mao & Dally, *Deep Compression*, ICLR 2016, section 3,
"trained quantization and weight sharing"; the TensorFlow Model Optimization toolkit's weight
clustering). Needs numpy and scipy only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._version import __version__
from ..configs import check_int
from .geometry import LayerShape
from .indexmap import IndexMap, LayerMap, index_dtype
from .spec import SCOPES, SpecError

__all__ = [
    "INITS",
    "WeightsError",
    "check_cluster_params",
    "cluster_layers",
    "cluster_weights",
    "initial_centroids",
    "nearest_centroid",
    "quantization_report",
]

INITS = ("linear", "density", "random")
"""Centroid initialisations of Deep Compression (section 3.2): ``linear`` was its best."""
_MAX_SEED = 2**63 - 1


class WeightsError(SpecError):
    """The weights to cluster are unusable (not 2-D float matrices, not chaining, NaN or infinite)."""


def _check_weights(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence) or not weights:
        raise WeightsError(
            "weights must be a non-empty sequence of 2-D (out_features, in_features) arrays, "
            f"got {type(weights).__name__}; pass e.g. [fc0_weight, fc1_weight]"
        )
    out: list[np.ndarray] = []
    for k, w in enumerate(weights):
        w = np.asarray(w)
        if w.ndim != 2 or w.size == 0:
            raise WeightsError(
                f"weights[{k}] must be a non-empty 2-D (out_features, in_features) matrix, got "
                f"shape {w.shape}; pass the Linear layers' weight matrices only"
            )
        _check_values(w, f"weights[{k}]")
        if k and w.shape[1] != out[-1].shape[0]:
            raise WeightsError(
                f"weights[{k}] has in_features={w.shape[1]} but weights[{k - 1}] has "
                f"out_features={out[-1].shape[0]}; the layers of an MLP must chain "
                "(pass them in forward order)"
            )
        out.append(w)
    return out


def _check_values(w: np.ndarray, where: str) -> None:
    """Refuse weights that are not floats or not finite (``where`` names them in the message)."""
    if w.dtype.kind != "f":
        raise WeightsError(f"{where} must hold floats, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise WeightsError(
            f"{where} holds {int((~np.isfinite(w)).sum())} NaN or infinite values; "
            "cluster a network whose training did not diverge"
        )


def initial_centroids(values: np.ndarray, table_size: int, init: str, seed: int) -> np.ndarray:
    """Starting centres of the k-means (Deep Compression, section 3.2).

    Parameters
    ----------
    values : ndarray of shape (M,), float
        The weights to cluster, finite, ``M >= table_size`` recommended.
    table_size : int
        Number of centres, ``N >= 1``.
    init : {"linear", "density", "random"}
        ``linear``: ``N`` evenly spaced values from ``min`` to ``max`` (the paper's best: it
        keeps centres for the rare large weights). ``density``: the weights' empirical
        quantiles at ``linspace(0, 1, N)`` (equal mass per centre; "density-based"). ``random``:
        ``N`` weights drawn without replacement (with replacement if ``M < N``) by
        ``numpy.random.default_rng(seed)`` ("Forgy").
    seed : int
        Used by ``random`` only.

    Returns
    -------
    ndarray of shape (N,), float64, sorted ascending
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if init == "linear":
        c = np.linspace(v.min(), v.max(), table_size)
    elif init == "density":
        c = np.quantile(v, np.linspace(0.0, 1.0, table_size))
    elif init == "random":
        c = np.random.default_rng(seed).choice(v, size=table_size, replace=v.size < table_size)
    else:
        raise SpecError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    return np.sort(c)


def nearest_centroid(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted ``centroids`` for each value (ties: the lower index).

    Parameters
    ----------
    values : ndarray of any shape, float
    centroids : ndarray of shape (N,), float, sorted ascending

    Returns
    -------
    ndarray of ``values``' shape, int64, in ``[0, N)``
    """
    c = np.asarray(centroids, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if c.size == 1:
        return np.zeros(v.shape, np.int64)
    hi = np.clip(np.searchsorted(c, v), 1, c.size - 1)  # c[hi - 1] <= v <= c[hi] inside the range
    lo = hi - 1
    return np.where(np.abs(v - c[lo]) <= np.abs(c[hi] - v), lo, hi).astype(np.int64)


def _cluster_group(values: np.ndarray, n: int, init: str, seed: int, iters: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Table of ``n`` float32 entries for one group of weights, the entries its weights may read (an exact table's
    distinct values, else the whole table), and whether it is exact."""
    v32 = values.astype(np.float32).ravel()
    distinct = np.unique(v32)
    table = np.zeros(n, dtype=np.float32)
    if distinct.size <= n:  # every value gets its own entry: zero error, no k-means
        table[: distinct.size] = distinct
        return table, table[: distinct.size], True
    from scipy.cluster.vq import kmeans2  # here: scipy.cluster costs ~0.3 s, too much for `import hashlab`

    v = v32.astype(np.float64)[:, None]  # (M, 1): kmeans2 wants observations x features
    start = initial_centroids(v, n, init, seed)[:, None]  # (N, 1)
    with warnings.catch_warnings():  # empty clusters keep their centre; normal for 'linear'
        warnings.simplefilter("ignore")
        centres, _ = kmeans2(v, start, iter=iters, minit="matrix", missing="warn")
    table[:] = np.sort(centres[:, 0]).astype(np.float32)
    return table, table, False


def check_cluster_params(table_size: int, scope: str, init: str, seed: int, iters: int) -> None:
    """Validate :func:`cluster_weights`' parameters (before any weights are read).

    Raises
    ------
    SpecError
        Naming the first invalid parameter and its valid range.
    """
    check_int("table_size", table_size, 1, 2**31 - 1, SpecError, "e.g. 1000")
    if scope not in SCOPES:
        raise SpecError(f"unknown table scope {scope!r}; choose 'layer' (one table per layer) or 'global'")
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {', '.join(INITS)} (linear is Deep Compression's best)")
    check_int("seed", seed, 0, _MAX_SEED, SpecError, "any integer in [0, 2**63)")
    check_int("iters", iters, 1, 10**6, SpecError, "e.g. 20")


def cluster_weights(
    weights: Sequence[np.ndarray],
    table_size: int,
    *,
    scope: str = "layer",
    init: str = "linear",
    seed: int = 0,
    iters: int = 20,
    source: str | None = None,
) -> IndexMap:
    """Cluster trained Linear weights into ``table_size`` shared values: an index map with initial tables.

    Each group of weights (one layer for ``scope="layer"``, all layers together for
    ``"global"``) is clustered by 1-D k-means (:func:`scipy.cluster.vq.kmeans2` with
    ``minit="matrix"``, started from :func:`initial_centroids`, ``iters`` iterations); the
    sorted centres, as float32, are the group's table, and every weight reads the entry of its
    nearest centre (:func:`nearest_centroid`). This is Deep Compression's weight sharing
    (Han et al. 2016, section 3.1: minimise ``sum_i sum_{w in c_i} |w - c_i|^2``).

    Exact where it can be: if a group takes at most ``table_size`` distinct values (after
    rounding to float32, the table's type), no k-means runs; the table holds those values in
    ascending order followed by unused zero entries, and every weight is reproduced exactly.

    Parameters
    ----------
    weights : sequence of ndarray of shape (out_features, in_features), float
        The Linear layers' weight matrices in forward order (``torch.nn.Linear.weight``'s
        layout); ``weights[k].shape[1] == weights[k-1].shape[0]``. Finite.
    table_size : int
        Entries per table ``N``, in ``[1, 2**31 - 1]``.
    scope : {"layer", "global"}
        One table per layer (layer ``k`` reads table ``k``), or one table for all layers.
    init : {"linear", "density", "random"}
        Centroid initialisation, see :func:`initial_centroids`.
    seed : int
        In ``[0, 2**63)``; only ``init="random"`` draws from it.
    iters : int
        k-means iterations (each assigns every weight to its nearest centre, then moves the
        centres to their clusters' means; an empty cluster keeps its centre), ``>= 1``.
    source : str or None
        Where the weights came from (a file name), recorded in ``spec``.

    Returns
    -------
    IndexMap
        Layers ``fc0, fc1, ...`` with ``indices`` of ``index_dtype(table_size)`` in
        ``[0, table_size)`` and no sign; ``table_sizes`` ``(N,) * len(weights)`` or ``(N,)``;
        ``initial_tables``: the float32 tables; ``spec``: ``{"kind": "cluster", "table_size",
        "scope", "init", "seed", "iters", "source", "exact": [bool per table],
        "architecture", "builder": "hashlab.cluster_weights", "hashlab_version"}``.

    Raises
    ------
    SpecError
        If ``table_size``, ``scope``, ``init``, ``seed`` or ``iters`` is invalid.
    WeightsError
        (a :class:`SpecError`) if ``weights`` is empty, a matrix is not 2-D float, holds NaN or
        infinite values, or the layers do not chain.
    """
    check_cluster_params(table_size, scope, init, seed, iters)
    if source is not None and not isinstance(source, str):
        raise SpecError(f"source must be a string or None, got {type(source).__name__}")
    mats = _check_weights(weights)
    groups = [list(range(len(mats)))] if scope == "global" else [[k] for k in range(len(mats))]
    tables: list[np.ndarray] = []
    exact: list[bool] = []
    layers: list[LayerMap | None] = [None] * len(mats)
    dtype = index_dtype(table_size)
    for t, members in enumerate(groups):
        values = np.concatenate([mats[k].ravel() for k in members])
        table, used, is_exact = _cluster_group(values, table_size, init, seed, iters)
        tables.append(table)
        exact.append(is_exact)
        for k in members:
            idx = nearest_centroid(mats[k].astype(np.float32), used).astype(dtype)
            layers[k] = LayerMap(name=f"fc{k}", indices=idx, table=t)
    arch = [mats[0].shape[1]] + [w.shape[0] for w in mats]
    spec: dict[str, Any] = {
        "kind": "cluster",
        "table_size": table_size,
        "scope": scope,
        "init": init,
        "seed": seed,
        "iters": iters,
        "source": source,
        "exact": exact,
        "architecture": arch,
        "builder": "hashlab.cluster_weights",
        "hashlab_version": __version__,
    }
    return IndexMap(
        layers=tuple(lm for lm in layers if lm is not None),
        table_sizes=(table_size,) * len(groups),
        spec=spec,
        initial_tables=tuple(tables),
    )


def cluster_layers(
    weights: Sequence[np.ndarray],
    shapes: Sequence[LayerShape],
    table_sizes: int | Sequence[int],
    *,
    init: str = "linear",
    seed: int = 0,
    iters: int = 20,
    source: str | None = None,
) -> IndexMap:
    """Cluster the trained weights of any model's layers (Linear, Conv2d, Embedding), one table per layer.

    :func:`cluster_weights` for layers that need not chain: layer ``k``'s weights, read as its
    :attr:`~hashlab.LayerShape.matrix_shape` (a Conv2d kernel ``(out, in / groups, kh, kw)`` as
    ``(out, in / groups * kh * kw)``, the layout of ``arbify``), are clustered by the same 1-D k-means into
    ``table_sizes[k]`` float32 entries (exact when the layer has that few distinct values), and each weight reads
    the entry of its nearest centre. The map is what ``arbify(model, imap)`` takes: layers named and shaped as
    ``shapes`` (``attrs`` ``shapes[k].attrs()``). Its tables are stored bit-packed in a model file (no spec rebuilds
    them). Han, Mao & Dally, *Deep Compression*, ICLR 2016, section 3.1.

    Parameters
    ----------
    weights : sequence of ndarray, float
        Layer ``k``'s weight as torch holds it (``shapes[k].weight_shape``) or as its matrix
        (``shapes[k].matrix_shape``). Finite.
    shapes : sequence of LayerShape
        The layers, in order (``trainers.torch_backend.layer_shapes(model)``); names must be distinct.
    table_sizes : int or sequence of int
        Entries of each layer's table (one int for all), each in ``[1, 2**31 - 1]``; e.g. a hashed map's
        ``table_sizes`` to compare clustering with hashing at the same number of stored values.
    init, seed, iters, source
        As :func:`cluster_weights`.

    Returns
    -------
    IndexMap
        Layer ``k`` named ``shapes[k].name`` (else ``"layer<k>"``) reading table ``k``; ``indices`` of
        ``index_dtype(table_sizes[k])`` and shape ``matrix_shape``; ``initial_tables`` the float32 tables;
        ``spec`` ``{"kind": "cluster", "table_sizes", "scope": "layer", "init", "seed", "iters", "source", "exact",
        "layers", "builder": "hashlab.cluster_layers", "hashlab_version"}``.

    Raises
    ------
    SpecError
        On a bad ``table_sizes`` (count or value), ``init``, ``seed`` or ``iters``, on shapes that are not
        ``LayerShape`` s or repeat a name.
    WeightsError
        If the weights are not as many as the shapes, a weight is not float, has neither of its layer's shapes,
        or holds NaN or infinite values.

    Examples
    --------
    >>> shapes = [LayerShape("conv2d", (4, 1, 3, 3), "conv"), LayerShape("linear", (2, 100), "fc")]
    >>> rng = np.random.default_rng(0)
    >>> imap = cluster_layers([rng.normal(size=(4, 1, 3, 3)), rng.normal(size=(2, 100))], shapes, [8, 16])
    >>> [lay.indices.shape for lay in imap.layers], imap.table_sizes
    ([(4, 9), (2, 100)], (8, 16))
    """
    shapes = list(shapes)
    if not shapes or not all(isinstance(s, LayerShape) for s in shapes):
        raise SpecError("shapes must be a non-empty sequence of hashlab.LayerShape; get them with layer_shapes(model)")
    sizes = [table_sizes] * len(shapes) if isinstance(table_sizes, int) else list(table_sizes)
    if len(sizes) != len(shapes):
        raise SpecError(f"{len(sizes)} table sizes for {len(shapes)} layers; give one per layer, or one int for all")
    for n in sizes:
        check_cluster_params(n, "layer", init, seed, iters)
    if source is not None and not isinstance(source, str):
        raise SpecError(f"source must be a string or None, got {type(source).__name__}")
    names = [s.name or f"layer{k}" for k, s in enumerate(shapes)]
    if len(set(names)) != len(names):
        raise SpecError(f"layer names {names} repeat; give every shape its module's name")
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence) or len(weights) != len(shapes):
        raise WeightsError(f"weights must be a sequence of {len(shapes)} arrays, one per shape, in the shapes' order")
    tables, exact, layers = [], [], []
    for k, (w, shape, n) in enumerate(zip(weights, shapes, sizes)):
        mat = _layer_matrix(np.asarray(w), shape, k)
        table, used, is_exact = _cluster_group(mat.ravel(), n, init, seed, iters)
        idx = nearest_centroid(mat.astype(np.float32), used).astype(index_dtype(n))
        layers.append(LayerMap(name=names[k], indices=idx, table=k, attrs=shape.attrs()))
        tables.append(table)
        exact.append(is_exact)
    spec: dict[str, Any] = {
        "kind": "cluster",
        "table_sizes": sizes,
        "scope": "layer",
        "init": init,
        "seed": seed,
        "iters": iters,
        "source": source,
        "exact": exact,
        "layers": [s.to_dict() for s in shapes],
        "builder": "hashlab.cluster_layers",
        "hashlab_version": __version__,
    }
    return IndexMap(layers=tuple(layers), table_sizes=tuple(sizes), spec=spec, initial_tables=tuple(tables))


def _layer_matrix(w: np.ndarray, shape: LayerShape, k: int) -> np.ndarray:
    """Layer ``k``'s weights as its ``matrix_shape``, checked (float, finite, one of the layer's two shapes)."""
    _check_values(w, f"weights[{k}] ({shape.name or k})")
    if w.shape not in (tuple(shape.weight_shape), tuple(shape.matrix_shape)):
        raise WeightsError(
            f"weights[{k}] ({shape.name or k}) has shape {w.shape}; its {shape.kind} layer's weight is "
            f"{tuple(shape.weight_shape)} (as a matrix {tuple(shape.matrix_shape)}): "
            "pass the layers in the shapes' order"
        )
    return w.reshape(shape.matrix_shape)


def quantization_report(weights: Sequence[np.ndarray], imap: IndexMap) -> list[dict[str, Any]]:
    """How well a map with initial tables reproduces the weights, per layer.

    Parameters
    ----------
    weights : sequence of ndarray of shape (out_features, in_features), float
        The weights the map was built from (same order and shapes as ``imap.layers``).
    imap : IndexMap
        With ``initial_tables`` for every table its layers read (e.g. from :func:`cluster_weights`).

    Returns
    -------
    list of dict
        Per layer: ``name``, ``shape`` [out, in], ``distinct`` (distinct weight values, float32),
        ``entries_used`` (distinct entries read), ``max_abs_error`` and ``mean_abs_error``
        (``|w - sign * table[index]|``, in the weights' units; ``-1`` indices read 0).

    Raises
    ------
    ValueError
        If the shapes do not match the map, or a table read has no initial values.
    """
    mats = _check_weights(weights)
    if len(mats) != len(imap.layers):
        raise ValueError(f"{len(mats)} weight matrices for a map of {len(imap.layers)} layers")
    out = []
    for w, lay in zip(mats, imap.layers):
        if w.shape != lay.indices.shape:
            raise ValueError(f"layer {lay.name!r}: weights of shape {w.shape}, indices of shape {lay.indices.shape}")
        table = None if imap.initial_tables is None else imap.initial_tables[lay.table]
        if table is None:
            raise ValueError(f"layer {lay.name!r} reads table {lay.table}, which has no initial values")
        idx = np.asarray(lay.indices, dtype=np.int64)
        rec = np.where(idx >= 0, np.asarray(table, np.float64)[np.maximum(idx, 0)], 0.0)
        if lay.sign is not None:
            rec = rec * lay.sign
        err = np.abs(w.astype(np.float64) - rec)
        out.append(
            {
                "name": lay.name,
                "shape": list(w.shape),
                "distinct": int(np.unique(w.astype(np.float32)).size),
                "entries_used": int(np.unique(idx[idx >= 0]).size),
                "max_abs_error": float(err.max()),
                "mean_abs_error": float(err.mean()),
            }
        )
    return out
