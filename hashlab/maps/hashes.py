"""Build index maps from a :class:`~hashlab.maps.spec.HashSpec` and an :class:`~hashlab.maps.spec.Architecture`.

Identifiers
-----------
The weights of a layer with shape ``(out_features, in_features)`` are numbered row-major:
weight ``(row, col)`` has local identifier ``i = row * in_features + col``. With
``scope="layer"`` each layer has its own table and hashes see local identifiers. With
``scope="global"`` all layers share one table and hashes see *global* identifiers: layer
``k``'s identifiers are offset by the number of weights in layers ``0..k-1``; this is how
``modulus`` expresses an unrolled RNN (``i mod n`` across steps).

Random streams
--------------
Every random choice is ``xxh64(identifier, stream_seed)`` (see :mod:`hashlab.maps.kernels`), where
``stream_seed = SeedSequence([seed, table_or_layer, purpose]).generate_state(1, uint64)[0]``.
The Dirichlet's entry probabilities come from ``numpy.random.Generator.dirichlet`` seeded the
same way. The sparsity mask of each layer zeroes exactly ``round(sparsity * N)`` weights: the
ones with the smallest mask hashes ``xxh64(local identifier, mask stream seed)``. XXH64 of a
fixed-length 8-byte input is a bijection of the 64-bit values, so these hashes never tie.

Hashed biases (``HashSpec.hash_bias``) use streams of their own (purposes 5-7 below):
turning them on leaves every weight index unchanged, and the bias map is independent of the weight
map. Their identifiers are the output units ``o`` of the layer (``scope="layer"``) or, with
``scope="global"``, ``o`` offset by the hidden biases of the earlier layers.

Speed (``backend="numba"``, :mod:`hashlab.maps.kernels`)
--------------------------------------------------------
Each layer is written straight into its int16 / int32 array by one parallel kernel that derives
identifiers from the loop counter. The Dirichlet draw searches only the range a guide table over
the same CDF leaves for its uniform (usually none), so it gives the binary search's entry bit for
bit. The mask is one more hash pass: weights whose mask hash lies below a window around the
expected ``round(s N)``-th smallest hash are zeroed, the few inside the window are sorted; if the
window ever misses, the layer is redone with the exact selection. Both backends give identical maps
(``tests/hashlab/maps``); ``benchmarks/bench_build.py`` measures the speed.

Sparsity cost (one 2000 x 2000 layer, ``sparsity=0.5``, one numba thread, 2-core shared box): the
uniform fill takes about 7 ms (its ``mod n`` is an exact multiply-shift, :func:`~hashlab.maps.kernels.divide_magic`;
a 64-bit division per weight made it 15 ms), the mask (one vectorised hash pass, marking and counting
each L1-sized chunk while it is in cache) about 4-6 ms, sorting and refilling the ~16k window
candidates about 1 ms: sparsity adds about 1.5-2 ns a weight, which is 40-110 % of a dense build
depending on how fast the kind's own fill is. The mask hash alone is about 1 ns a weight, so with a
fill at 2 ns a weight a separate mask cannot come near +25 %. Tried and dropped: counting inside the
hash loop (it stops vectorising), computing the entries of live weights only by compacting their
positions per chunk (the scalar compaction, about 0.9 ns a weight, costs more than the skipped work).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from .._version import __version__
from . import kernels as K
from .indexmap import IndexMap, LayerMap, index_dtype
from .spec import Architecture, HashSpec, SpecError, TablePlan

__all__ = [
    "build_map",
    "hash_layers",
    "layer_streams",
    "LayerStreams",
    "stream_seed",
    "dirichlet_probabilities",
    "BACKENDS",
]

BACKENDS = K.BACKENDS  # hashlab.backends.BACKENDS
NUMBA_MIN_WEIGHTS = 1 << 15
"""Layers with fewer weights take the numpy twins even with ``backend="numba"`` (same entries): waking
numba's threads for a few kernels costs more than the work."""
_PURPOSE_INDEX, _PURPOSE_MASK, _PURPOSE_SIGN, _PURPOSE_DIRICHLET = 1, 2, 3, 4
_PURPOSE_BIAS_INDEX, _PURPOSE_BIAS_DIRICHLET, _PURPOSE_BIAS_SIGN = 5, 6, 7  # hashed biases: streams of their own


def stream_seed(seed: int, where: int, purpose: int) -> np.uint64:
    """Seed of one independent random stream, derived with :class:`numpy.random.SeedSequence`."""
    return np.random.SeedSequence([seed, where, purpose]).generate_state(1, np.uint64)[0]


def dirichlet_probabilities(n: int, alpha: float, seed: int, table: int = 0) -> np.ndarray:
    """Entry probabilities of a Dirichlet hash's table, paper eq. 8.

    Parameters
    ----------
    n : int
        Table size.
    alpha : float
        Symmetric concentration, > 0. Small alpha concentrates mass on few entries
        (unbalanced); large alpha approaches the uniform ``1/n``.
    seed : int
    table : int
        Table number (layer number for ``scope="layer"``, 0 for ``"global"``).

    Returns
    -------
    ndarray of shape (n,), float64, non-negative, summing to 1.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, table, _PURPOSE_DIRICHLET]))
    p = rng.dirichlet(np.full(n, float(alpha)))
    if not np.all(np.isfinite(p)):  # pragma: no cover - numpy's small-alpha path guards this
        raise SpecError(f"Dirichlet(alpha={alpha}) draw over {n} entries was not finite; raise alpha")
    return p


def _entries_ref(
    spec: HashSpec, k: int, in_f: int, start: int, n: int, s_index, inner_cdf, local: np.ndarray
) -> np.ndarray:
    """Entries (int64) of the weights at local positions ``local`` of layer ``k``, by the numpy twins."""
    ids = local + start
    if spec.kind in ("identity", "modulus"):
        return ids % n
    if spec.kind == "uniform":
        return K.uniform_ref(ids, n, s_index)
    if spec.kind == "dirichlet":
        return K.categorical_ref(ids, inner_cdf, s_index)
    if spec.kind == "neighborhood":
        return K.neighborhood_ref(ids, n, spec.radius, s_index)
    if spec.kind == "block":
        return K.block_ref(ids, local % in_f, spec.block_size or in_f, n, s_index)
    # xxhash: HashedNets keys on (layer, row, col) with the user's seed
    return K.xxhash_index_ref(k, local // in_f, local % in_f, n, spec.seed)


def _layer(
    kern: K.MapKernels,
    spec: HashSpec,
    k: int,
    shape: tuple[int, int],
    start: int,
    n: int,
    s_index,
    inner_cdf,
    guide,
    n_zero: int,
    s_mask,
) -> np.ndarray:
    """One layer's indices with the backend's layer kernels ``kern``, then the sparsity mask (one more hash pass)."""
    out_f, in_f = shape
    indices = np.empty((out_f, in_f), index_dtype(n))
    flat = indices.reshape(-1)

    def fill() -> None:
        if spec.kind in ("identity", "modulus"):
            kern.modulus(start, n, flat)
        elif spec.kind == "uniform":
            kern.uniform(start, n, s_index, flat)
        elif spec.kind == "dirichlet":
            kern.categorical(start, inner_cdf, guide, s_index, flat)
        elif spec.kind == "neighborhood":
            kern.neighborhood(start, n, spec.radius, s_index, flat)
        elif spec.kind == "block":  # ROBE-Z: blocks of block_size weights of a row (default: the whole row)
            kern.block(start, in_f, spec.block_size or in_f, n, s_index, flat)
        else:  # xxhash: HashedNets keys on (layer, row, col) with the user's seed
            kern.xxhash_index(k, n, np.uint64(spec.seed), indices)

    def refill(local: np.ndarray | None):
        if local is None:
            return fill()
        return _entries_ref(spec, k, in_f, start, n, s_index, inner_cdf, local)

    fill()
    if n_zero:
        kern.mask(flat, n_zero, s_mask, refill)
    return indices


def _bias_entries(spec: HashSpec, k: int, table: int, ids: np.ndarray, n_bias: int, cdfs: dict) -> np.ndarray:
    """Bias entries (int64, in ``[0, n_bias)``) of layer ``k``'s hidden biases with identifiers ``ids``.

    The weights' hash kind on the bias identifiers (output unit ``o``, offset by the hidden biases of
    earlier layers with ``scope="global"``) over the bias buckets, with streams of their own
    (``_PURPOSE_BIAS_*``), so the bias map is independent of the weight map. ``xxhash`` keys
    ``(layer, o, 0)`` with the bias stream's seed instead of the user's seed. Plain numpy: a layer
    has only ``out_features`` biases.
    """
    s_bias = stream_seed(spec.seed, table, _PURPOSE_BIAS_INDEX)
    if spec.kind in ("identity", "modulus"):
        return ids % n_bias
    if spec.kind == "uniform":
        return K.uniform_ref(ids, n_bias, s_bias)
    if spec.kind == "dirichlet":
        if table not in cdfs:
            assert spec.alpha is not None  # a dirichlet HashSpec always has alpha
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, table, _PURPOSE_BIAS_DIRICHLET]))
            cdfs[table] = np.cumsum(rng.dirichlet(np.full(n_bias, float(spec.alpha))))[:-1]
        return K.categorical_ref(ids, cdfs[table], s_bias)
    if spec.kind == "neighborhood":
        return K.neighborhood_ref(ids, n_bias, spec.radius, s_bias)
    local = ids - ids[0] if ids.size else ids
    if spec.kind == "block":  # the layer's biases as one row of blocks
        return K.block_ref(ids, local, spec.block_size or max(local.size, 1), n_bias, s_bias)
    return K.xxhash_index_ref(k, local, np.zeros_like(local), n_bias, s_bias)


class LayerStreams(NamedTuple):
    """Everything one layer's weight hash reads besides a weight's ``(row, col)``: :func:`layer_streams`."""

    table: int
    """The table the layer reads (``k`` for ``scope="layer"``, 0 for ``"global"``)."""
    n: int
    """Weight entries of that table: the modulus of every kind."""
    start: int
    """Identifier of the layer's first weight (0, or the weights of the earlier layers for ``"global"``)."""
    s_index: np.uint64
    """Stream seed of the entries (every kind but ``xxhash``, which keys on ``spec.seed`` itself)."""
    inner_cdf: np.ndarray | None
    """``dirichlet``: the table's CDF without its last value, float64 ``(n - 1,)``; else None."""
    guide: np.ndarray | None
    """``dirichlet``: :func:`~hashlab.maps.kernels.guide_table` of ``inner_cdf``, int32; else None."""
    n_zero: int
    """Weights fixed at zero: ``round(sparsity * out_features * in_features)``."""
    s_mask: np.uint64
    """Stream seed of the sparsity mask (0 when ``n_zero`` is 0)."""
    s_sign: np.uint64
    """Stream seed of the sign hash (used only with ``spec.sign``)."""


def layer_streams(
    spec: HashSpec,
    shapes: list[tuple[int, int]],
    plan: TablePlan,
    k: int,
    cdf_cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> LayerStreams:
    """The constants of layer ``k``'s hash under ``spec`` (:func:`hash_layers` and :mod:`hashlab.maps.onthefly`).

    Parameters
    ----------
    spec : HashSpec
    shapes : list of (out_features, in_features)
        Every layer of the map (``scope="global"`` offsets layer ``k``'s identifiers by the earlier ones).
    plan : TablePlan
        ``spec.table_plan(shapes)``.
    k : int
        The layer, in ``[0, len(shapes))``.
    cdf_cache : dict, optional
        Table number -> ``(inner_cdf, guide)``, filled on first use, so that layers sharing a table draw its
        Dirichlet probabilities once.

    Returns
    -------
    LayerStreams
    """
    glob = spec.scope == "global"
    table = 0 if glob else k
    n = plan.weights[table]
    start = sum(o * i for o, i in shapes[:k]) if glob else 0
    cache = {} if cdf_cache is None else cdf_cache
    if spec.kind == "dirichlet" and table not in cache:
        assert spec.alpha is not None  # a dirichlet HashSpec always has alpha
        inner = np.cumsum(dirichlet_probabilities(n, spec.alpha, spec.seed, table))[:-1]
        cache[table] = (inner, K.guide_table(inner))
    cdf, guide = cache.get(table, (None, None))
    out_f, in_f = shapes[k]
    # XXH64 of a fixed 8-byte input is a bijection of uint64, so the mask hashes of distinct
    # positions never tie and the n_zero smallest are one well-defined set.
    n_zero = int(round(spec.sparsity * (out_f * in_f))) if spec.sparsity > 0 else 0
    return LayerStreams(
        table=table,
        n=n,
        start=start,
        s_index=stream_seed(spec.seed, table, _PURPOSE_INDEX),
        inner_cdf=cdf,
        guide=guide,
        n_zero=n_zero,
        s_mask=stream_seed(spec.seed, k, _PURPOSE_MASK) if n_zero else np.uint64(0),
        s_sign=stream_seed(spec.seed, k, _PURPOSE_SIGN),
    )


def hash_layers(
    spec: HashSpec,
    shapes: list[tuple[int, int]],
    plan: TablePlan,
    names: list[str],
    backend: Literal["numba", "numpy"] = "numba",
) -> list[LayerMap]:
    """The layers of ``spec`` over weight matrices of ``shapes`` with the tables of ``plan``: :func:`build_map`'s core.

    Layer ``k`` reads table ``k`` (``scope="layer"``) or 0 (``"global"``, identifiers offset by the weights of
    the earlier layers), hashing into that table's ``plan.weights`` entries; where ``plan.biases`` gives a table
    bias entries, every layer but the last of ``shapes`` gets hashed biases (:func:`build_map`). Any list of shapes
    works: the layers need not chain (:func:`hashlab.maps.model.build_model_map` passes a model's layers).

    Parameters
    ----------
    spec : HashSpec
    shapes : list of (out_features, in_features)
    plan : TablePlan
        Weight and bias entries per table (one per layer, or one for ``scope="global"``).
    names : list of str
        One layer name per shape.
    backend : {"numba", "numpy"}

    Returns
    -------
    list of LayerMap
        Indices of each table's dtype (:func:`~hashlab.maps.indexmap.index_dtype`), int8 signs with ``spec.sign``.
    """
    glob = spec.scope == "global"
    table_sizes = plan.table_sizes
    bias_cdfs: dict[int, np.ndarray] = {}
    bias_start = 0  # global bias identifier of the first bias of layer k (scope="global")

    inner_cdfs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    layers = []
    for k, (out_f, in_f) in enumerate(shapes):
        st = layer_streams(spec, shapes, plan, k, inner_cdfs)
        table, n = st.table, st.n
        kern = K.kernels("numba" if backend == "numba" and out_f * in_f >= NUMBA_MIN_WEIGHTS else "numpy")
        indices = _layer(
            kern, spec, k, (out_f, in_f), st.start, n, st.s_index, st.inner_cdf, st.guide, st.n_zero, st.s_mask
        )
        sign = None
        if spec.sign:
            sign = kern.sign(k, st.s_sign, np.empty((out_f, in_f), np.int8))
        dtype = index_dtype(table_sizes[table])
        if indices.dtype != dtype:  # bias entries took the table past int16: same values, wider
            indices = indices.astype(dtype)
        bias_indices = bias_sign = None
        if plan.biases[table] and k < len(shapes) - 1:
            first = bias_start if glob else 0
            ids = np.arange(first, first + out_f, dtype=np.int64)
            bias_start += out_f
            bias_indices = (_bias_entries(spec, k, table, ids, plan.biases[table], bias_cdfs) + n).astype(dtype)
            if spec.sign:  # HashedNets' xiB: a sign hash of the bias identifiers, a stream of its own
                bias_sign = K.sign_ref(k, ids, np.zeros_like(ids), stream_seed(spec.seed, k, _PURPOSE_BIAS_SIGN))
        layers.append(
            LayerMap(
                name=names[k], indices=indices, table=table, sign=sign, bias_indices=bias_indices, bias_sign=bias_sign
            )
        )
    return layers


def build_map(
    spec: HashSpec,
    arch: Architecture,
    backend: Literal["numba", "numpy"] = "numba",
) -> IndexMap:
    """Build the index map of ``arch`` under ``spec``.

    Parameters
    ----------
    spec : HashSpec
    arch : Architecture
    backend : {"numba", "numpy"}
        ``numba`` (parallel kernels; layers under ``NUMBA_MIN_WEIGHTS`` weights use the twins)
        or the plain-numpy reference twins. Both give identical arrays for the same spec.

    Returns
    -------
    IndexMap
        Layers ``fc0, fc1, ...`` with indices of shape ``(out_features, in_features)``,
        int16 if the table has at most 32768 entries else int32; ``-1`` marks zeroed weights.
        Table sizes are ``spec.table_plan(arch.layer_shapes).table_sizes``: ``identity`` gets
        one entry per weight; other kinds ``spec.table_size`` entries, or
        ``ceil(weights * compression)`` (the layer's weights, or all of them with
        ``scope="global"``). Every kind hashes into its table's weight entries with that size as
        its modulus ``n`` (``dirichlet`` draws its probabilities over those ``n``).
        With ``spec.hash_bias`` every layer but the last also gets ``bias_indices`` of shape
        ``(out_features,)``, same dtype, in the bias entries that follow the weight entries of
        its table (see :meth:`HashSpec.table_plan`), and ``bias_sign`` when ``spec.sign`` (a sign
        hash of the bias identifiers, stream of its own); the last layer's bias stays dense
        (``bias_indices`` None), as in HashedNets' PyTorch port (jfainberg/hashed_nets,
        ``mnist.py``: ``linear_out = HashLinear(..., hash_bias=False)``). The weight
        indices do not depend on ``hash_bias`` (same values; a wider dtype only if the bias
        entries take the table past 32768).

    Raises
    ------
    SpecError
        If ``spec`` or ``arch`` is not the right type.
    ValueError
        If ``backend`` is unknown.
    """
    if not isinstance(spec, HashSpec):
        raise SpecError(f"spec must be a HashSpec, got {type(spec).__name__}; build one with HashSpec(kind=...)")
    if not isinstance(arch, Architecture):
        raise SpecError(
            f"arch must be an Architecture, got {type(arch).__name__}; try Architecture.parse('784-200-10')"
        )
    K.kernels(backend)  # refuses an unknown backend before any work
    shapes = arch.layer_shapes
    plan = spec.table_plan(shapes)
    layers = hash_layers(spec, shapes, plan, [f"fc{k}" for k in range(len(shapes))], backend)
    desc = spec.to_dict() | {
        "architecture": list(arch.features),
        "architecture_name": arch.name,
        "builder": "hashlab.build_map",
        "hashlab_version": __version__,
    }
    return IndexMap(layers=tuple(layers), table_sizes=plan.table_sizes, spec=desc)
