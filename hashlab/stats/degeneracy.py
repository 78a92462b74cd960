"""Degeneracy of a weight-sharing map: identical rows, identical columns, and the rank they allow.

A layer computes ``y = W x`` with ``W[o, i] = sign[o, i] * table[indices[o, i]]`` (``0`` where
``indices == -1``). Two output units whose rows of ``(indices, sign)`` agree position by
position compute the *same pre-activation for every table and every input*; two inputs whose
columns agree are merged. So ``rank(W) <= min(distinct rows, distinct columns)`` whatever the
table values (docs/STATS.md, "Degeneracy"). The modulus hash ``i mod n`` on the paper's MNIST MLP
784-200-200-10 with ``n = 1000`` has only 125 / 5 / 5 distinct rows: row ``o`` of layer 0 reads
``(784 o + c) mod 1000``, which repeats with period ``1000 / gcd(784, 1000) = 125``.

Position key: a weight's key is ``0`` if it is zeroed (``-1``; a zero equals a zero whatever its
sign) else ``2 (index + 1) + (sign < 0)``. Rows (columns) are *identical* when their key
sequences are equal.

Algorithm (O(weights), never a comparison of all pairs): a 64-bit linear hash of each row's and
each column's key sequence, both from one pass over the matrix in memory order (numba, parallel
over blocks of rows), a sort of the ``R`` row hashes (``C`` column hashes), and within
each run of equal hashes an exact comparison against the run's representatives, so a hash
collision can never merge two different rows (columns: all confirmed together in one row-major
pass, falling back on the run-by-run comparison if any differs).
The numpy twins use ``numpy.unique(axis=0)`` on the key rows; ``tests/hashlab/stats/test_degeneracy.py``
shows both agree with brute force. The kernels live in :mod:`hashlab.stats.group_kernels` and are
called as ``line_groups`` of :func:`hashlab.stats.kernels.kernels`.

The rank for random table values is ``numpy.linalg.matrix_rank`` of ``W`` with table values drawn
``N(0, 1)`` (seeded), maximised over a few draws. Duplicate rows and columns do not change the
rank, so it is computed on the submatrix of distinct rows and distinct columns, and only when
that submatrix has at most ``rank_limit`` entries (default 2**20 = 1,048,576).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..maps.indexmap import IndexMap, LayerMap
from . import kernels as SK

__all__ = [
    "LayerDegeneracy",
    "MapDegeneracy",
    "layer_degeneracy",
    "map_degeneracy",
    "RANK_LIMIT",
    "RANK_DRAWS",
]

RANK_LIMIT = 1 << 20
"""Largest (distinct rows x distinct columns) submatrix whose random-table rank is computed."""
RANK_DRAWS = 2
"""Seeded draws of the table values for the random-table rank."""


# --------------------------------------------------------------------------- results
@dataclass
class LayerDegeneracy:
    """Identical rows and columns of one layer, and the rank they allow.

    Attributes
    ----------
    name : str
    out_features, in_features : int
    distinct_rows : int
        Classes of identical rows (output units computing the same pre-activation).
    distinct_cols : int
        Classes of identical columns (inputs the layer merges).
    largest_row_group, largest_col_group : int
        Size of the largest class.
    row_groups : ndarray of shape (out_features,), int64
        ``row_groups[o]`` = the smallest row identical to row ``o`` (``o`` itself if none smaller).
    col_groups : ndarray of shape (in_features,), int64
        The same for columns.
    random_ranks : tuple of int or None
        ``numpy.linalg.matrix_rank(W)`` for each seeded ``N(0, 1)`` draw of the table values;
        None when the distinct submatrix has more than the ``rank_limit`` entries it was given.
    """

    name: str
    out_features: int
    in_features: int
    distinct_rows: int
    distinct_cols: int
    largest_row_group: int
    largest_col_group: int
    row_groups: np.ndarray = field(repr=False)
    col_groups: np.ndarray = field(repr=False)
    random_ranks: tuple[int, ...] | None = None

    @property
    def rank_bound(self) -> int:
        """``min(distinct_rows, distinct_cols)``: ``rank(W)`` for any table values is at most this."""
        return min(self.distinct_rows, self.distinct_cols)

    @property
    def full_rank(self) -> int:
        """``min(out_features, in_features)``, the rank of a generic dense matrix of this shape."""
        return min(self.out_features, self.in_features)

    @property
    def degenerate(self) -> bool:
        """True when the rank bound is below ``full_rank``."""
        return self.rank_bound < self.full_rank

    @property
    def random_rank(self) -> int | None:
        """The largest of :attr:`random_ranks` (None if not computed)."""
        return None if self.random_ranks is None else max(self.random_ranks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distinct_rows": self.distinct_rows,
            "distinct_cols": self.distinct_cols,
            "largest_row_group": self.largest_row_group,
            "largest_col_group": self.largest_col_group,
            "rank_bound": self.rank_bound,
            "full_rank": self.full_rank,
            "degenerate": self.degenerate,
            "random_rank": self.random_rank,
            "random_ranks": None if self.random_ranks is None else list(self.random_ranks),
        }


@dataclass
class MapDegeneracy:
    """Degeneracy of every layer and totals over the map (sums over layers).

    Attributes
    ----------
    layers : list of LayerDegeneracy
    rank_limit : int
        Largest distinct submatrix whose random-table rank was computed.
    rank_draws : int
    """

    layers: list[LayerDegeneracy]
    rank_limit: int = RANK_LIMIT
    rank_draws: int = RANK_DRAWS

    @property
    def rows(self) -> int:
        return sum(d.out_features for d in self.layers)

    @property
    def distinct_rows(self) -> int:
        return sum(d.distinct_rows for d in self.layers)

    @property
    def cols(self) -> int:
        return sum(d.in_features for d in self.layers)

    @property
    def distinct_cols(self) -> int:
        return sum(d.distinct_cols for d in self.layers)

    @property
    def rank_bound(self) -> int:
        return sum(d.rank_bound for d in self.layers)

    @property
    def full_rank(self) -> int:
        return sum(d.full_rank for d in self.layers)

    @property
    def degenerate_layers(self) -> list[str]:
        return [d.name for d in self.layers if d.degenerate]

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``degeneracy`` section (totals; per-layer parts sit in each layer's entry)."""
        return {
            "rows": self.rows,
            "distinct_rows": self.distinct_rows,
            "cols": self.cols,
            "distinct_cols": self.distinct_cols,
            "rank_bound": self.rank_bound,
            "full_rank": self.full_rank,
            "degenerate_layers": self.degenerate_layers,
            "rank_limit": self.rank_limit,
            "rank_draws": self.rank_draws,
        }


def _random_ranks(
    indices: np.ndarray, sign: np.ndarray | None, rows: np.ndarray, cols: np.ndarray, draws: int, seed: int
) -> tuple[int, ...]:
    sub = indices[np.ix_(rows, cols)].astype(np.int64)
    sg = None if sign is None else sign[np.ix_(rows, cols)].astype(np.float64)
    n = int(sub.max()) + 1 if sub.size else 0
    ranks = []
    for d in range(draws):
        vals = np.random.default_rng(np.random.SeedSequence([seed, d])).standard_normal(max(n, 1))
        w = np.where(sub >= 0, vals[np.maximum(sub, 0)], 0.0)
        if sg is not None:
            w *= sg
        ranks.append(int(np.linalg.matrix_rank(w)) if w.size else 0)
    return tuple(ranks)


def layer_degeneracy(
    layer: LayerMap, rank_limit: int = RANK_LIMIT, rank_draws: int = RANK_DRAWS, seed: int = 0, backend: str = "numba"
) -> LayerDegeneracy:
    """Identical rows and columns of ``layer`` and its rank bound (see :class:`LayerDegeneracy`).

    Parameters
    ----------
    layer : LayerMap
        Indices of shape (out_features, in_features), int16 or int32 in [-1, n); optional int8 sign.
    rank_limit : int
        Compute the random-table rank only if (distinct rows x distinct columns) <= this; 0 never.
    rank_draws : int
        Seeded ``N(0, 1)`` draws of the table values, >= 1.
    seed : int
        Seed of those draws (``SeedSequence([seed, draw])``).
    backend : {"numba", "numpy"}
        Grouping kernels; both give identical results.

    Raises
    ------
    ValueError
        If ``layer`` is not a :class:`~hashlab.maps.indexmap.LayerMap`, ``rank_limit < 0``,
        ``rank_draws < 1`` or ``backend`` is unknown.
    """
    if not isinstance(layer, LayerMap):
        raise ValueError(f"expected a LayerMap, got {type(layer).__name__}; take one from IndexMap.layers")
    if rank_limit < 0 or rank_draws < 1:
        raise ValueError(f"need rank_limit >= 0 and rank_draws >= 1, got {rank_limit}, {rank_draws}")
    rg, cg = SK.kernels(backend).line_groups(layer.indices, layer.sign)
    rep_r = np.flatnonzero(rg == np.arange(rg.size))
    rep_c = np.flatnonzero(cg == np.arange(cg.size))
    ranks = None
    if rep_r.size * rep_c.size <= rank_limit:
        ranks = _random_ranks(layer.indices, layer.sign, rep_r, rep_c, rank_draws, seed)
    return LayerDegeneracy(
        name=layer.name,
        out_features=layer.out_features,
        in_features=layer.in_features,
        distinct_rows=int(rep_r.size),
        distinct_cols=int(rep_c.size),
        largest_row_group=int(np.bincount(rg).max()),
        largest_col_group=int(np.bincount(cg).max()),
        row_groups=rg,
        col_groups=cg,
        random_ranks=ranks,
    )


def map_degeneracy(
    imap: IndexMap, rank_limit: int = RANK_LIMIT, rank_draws: int = RANK_DRAWS, seed: int = 0, backend: str = "numba"
) -> MapDegeneracy:
    """:func:`layer_degeneracy` of every layer of ``imap``, with totals.

    Raises
    ------
    ValueError
        As :func:`layer_degeneracy`, or if ``imap`` is not an IndexMap.
    """
    if not isinstance(imap, IndexMap):
        raise ValueError(f"expected an IndexMap, got {type(imap).__name__}; build one with hashlab.build_map(...)")
    return MapDegeneracy(
        [layer_degeneracy(lay, rank_limit, rank_draws, seed, backend) for lay in imap.layers],
        rank_limit=rank_limit,
        rank_draws=rank_draws,
    )
