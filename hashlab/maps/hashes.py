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
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from . import kernels as K
from .._version import __version__
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .spec import Architecture, HashSpec, SpecError

__all__ = ["build_map", "stream_seed", "dirichlet_probabilities", "BACKENDS"]

BACKENDS = ("numba", "numpy")
_PURPOSE_INDEX, _PURPOSE_MASK, _PURPOSE_SIGN, _PURPOSE_DIRICHLET = 1, 2, 3, 4


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


def _kernels(backend: str):
    if backend == "numba":
        return K.uniform_nb, K.categorical_nb, K.neighborhood_nb, K.xxhash_index_nb, K.sign_nb, K.xxh64_u64_nb
    if backend == "numpy":
        return K.uniform_ref, K.categorical_ref, K.neighborhood_ref, K.xxhash_index_ref, K.sign_ref, K.xxh64_u64_ref
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


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
        ``numba`` (parallel kernels) or the plain-numpy reference twins. Both give
        identical arrays for the same spec.

    Returns
    -------
    IndexMap
        Layers ``fc0, fc1, ...`` with indices of shape ``(out_features, in_features)``,
        int16 if the table has at most 32768 entries else int32; ``-1`` marks zeroed weights.
        ``identity`` gets tables of one entry per weight; other kinds tables of
        ``spec.table_size``.

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
        raise SpecError(f"arch must be an Architecture, got {type(arch).__name__}; try Architecture.parse('784-200-10')")
    uniform, categorical, neighborhood, xxindex, signk, xxh = _kernels(backend)
    shapes = arch.layer_shapes
    sizes = [o * i for o, i in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    glob = spec.scope == "global"
    if spec.kind == "identity":
        table_sizes = [int(offsets[-1])] if glob else sizes
    else:
        table_sizes = [spec.table_size] if glob else [spec.table_size] * len(shapes)

    inner_cdfs: dict[int, np.ndarray] = {}
    layers = []
    for k, (out_f, in_f) in enumerate(shapes):
        table = 0 if glob else k
        n = table_sizes[table]
        local = np.arange(sizes[k], dtype=np.int64)
        ids = local + offsets[k] if glob else local
        s_index = stream_seed(spec.seed, table, _PURPOSE_INDEX)
        if spec.kind in ("identity", "modulus"):
            idx = ids % n
        elif spec.kind == "uniform":
            idx = uniform(ids, n, s_index)
        elif spec.kind == "dirichlet":
            if table not in inner_cdfs:
                inner_cdfs[table] = np.cumsum(dirichlet_probabilities(n, spec.alpha, spec.seed, table))[:-1]
            idx = categorical(ids, inner_cdfs[table], s_index)
        elif spec.kind == "neighborhood":
            idx = neighborhood(ids, n, spec.radius, s_index)
        else:  # xxhash: HashedNets keys on (layer, row, col) with the user's seed
            idx = xxindex(k, local // in_f, local % in_f, n, spec.seed)
        indices = idx.astype(index_dtype(n)).reshape(out_f, in_f)
        if spec.sparsity > 0:
            n_zero = int(round(spec.sparsity * sizes[k]))
            if n_zero:
                h = xxh(local.astype(np.uint64), stream_seed(spec.seed, k, _PURPOSE_MASK))
                # XXH64 of a fixed 8-byte input is a bijection of uint64, so the hashes of distinct
                # identifiers never tie and the n_zero smallest are one well-defined set: O(N) selection.
                indices.reshape(-1)[np.argpartition(h, n_zero - 1)[:n_zero]] = ZERO
        sign = None
        if spec.sign:
            sign = signk(k, local // in_f, local % in_f, stream_seed(spec.seed, k, _PURPOSE_SIGN)).reshape(out_f, in_f)
        layers.append(LayerMap(name=f"fc{k}", indices=indices, table=table, sign=sign))
    desc = spec.to_dict() | {"architecture": list(arch.features), "architecture_name": arch.name,
                             "builder": "hashlab.build_map", "hashlab_version": __version__}
    return IndexMap(layers=tuple(layers), table_sizes=tuple(table_sizes), spec=desc)
