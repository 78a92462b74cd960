"""In-memory index maps: which table entry each virtual weight reads.

An :class:`IndexMap` is what :func:`hashlab.build_map` returns, what
:func:`hashlab.io.format.save_index_file` writes and :func:`hashlab.io.format.load_index_file`
reads back. It needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..configs import is_int

__all__ = ["LayerMap", "IndexMap", "index_dtype", "ZERO"]

ZERO = -1
"""Index value of a virtual weight fixed at zero (sparsity): it reads no entry, gets no gradient."""


def index_dtype(table_size: int) -> np.dtype:
    """int16 when every index in ``[-1, table_size)`` fits, else int32.

    Raises
    ------
    ValueError
        If ``table_size`` is not in ``[1, 2**31 - 1]``.
    """
    if not 1 <= table_size <= 2**31 - 1:
        raise ValueError(f"table_size must be in [1, 2**31 - 1], got {table_size}")
    return np.dtype(np.int16) if table_size <= 2**15 else np.dtype(np.int32)


@dataclass(frozen=True, eq=False)
class LayerMap:
    """Index map of one weight matrix.

    Parameters
    ----------
    name : str
        Layer name, unique within its map (``"fc0"``, ``"conv"``, ``"rnn.t3"``...).
    indices : ndarray of shape (out_features, in_features), int16 or int32
        Entry of table ``table`` read by weight ``(row, col)``, in ``[0, table_size)``,
        or ``-1`` for a weight fixed at zero. Identifier of ``(row, col)`` is
        ``row * in_features + col`` (row-major).
    table : int
        Which table of the map this layer reads (index into ``IndexMap.table_sizes``).
    sign : ndarray of shape (out_features, in_features), int8 in {-1, +1}, or None
        Sign hash xi; the virtual weight is ``sign * table[indices]``.
    bias_indices : ndarray of shape (out_features,), same dtype as ``indices``, or None
        If given, the bias is shared too: ``bias[o] = table[bias_indices[o]]`` (``-1`` = 0).
        If None, a trainer gives the layer its own dense bias.
    attrs : dict
        Free-form JSON-serialisable geometry (e.g. a convolution's kernel and stride).
    bias_sign : ndarray of shape (out_features,), int8 in {-1, +1}, or None
        Sign hash of a shared bias (needs ``bias_indices``): ``bias[o] = bias_sign[o] *
        table[bias_indices[o]]``, as HashedNets' ``xiB`` (Chen et al. 2015; format v3).
    """

    name: str
    indices: np.ndarray
    table: int
    sign: np.ndarray | None = None
    bias_indices: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    bias_sign: np.ndarray | None = None

    @property
    def out_features(self) -> int:
        return int(self.indices.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.indices.shape[1])

    @property
    def num_weights(self) -> int:
        """Virtual weights in the matrix, ``out_features * in_features`` (zeros included)."""
        return int(self.indices.size)


@dataclass(frozen=True, eq=False)
class IndexMap:
    """A whole network's index map.

    Parameters
    ----------
    layers : tuple of LayerMap
    table_sizes : tuple of int
        Size of each table; ``layers[k].table`` indexes this tuple.
    spec : dict
        JSON-serialisable description of how the map was made (``HashSpec.to_dict()``
        plus ``"architecture"``, or a builder's own description).
    initial_tables : tuple of (ndarray of shape (table_sizes[t],), float32, or None), or None
        Optional starting values of each table (e.g. cluster centres of a pretrained
        network); a trainer initialises table ``t`` from ``initial_tables[t]`` when it is
        not None, else with its own random initialisation. ``None``: no table has any.
        Stored as tensor ``table.<t>`` in index format v2 (docs/FORMAT.md).

    Raises
    ------
    ValueError
        If shapes, dtypes or index ranges are inconsistent (see :meth:`validate`).
    """

    layers: tuple[LayerMap, ...]
    table_sizes: tuple[int, ...]
    spec: dict[str, Any] = field(default_factory=dict)
    initial_tables: tuple[np.ndarray | None, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "table_sizes", tuple(int(t) for t in self.table_sizes))
        if self.initial_tables is not None:
            object.__setattr__(self, "initial_tables", tuple(self.initial_tables))
        self.validate(check_values=False)

    def validate(self, check_values: bool = True) -> None:
        """Check structure (always) and index ranges (if ``check_values``; O(N)).

        Raises
        ------
        ValueError
            Naming the layer and the problem.
        """
        if not self.layers:
            raise ValueError("an IndexMap needs at least one layer")
        if not self.table_sizes:
            raise ValueError("an IndexMap needs at least one table")
        if any(isinstance(t, bool) or t < 1 for t in self.table_sizes):
            raise ValueError(f"table sizes must be integers >= 1, got {list(self.table_sizes)}")
        if self.initial_tables is not None:
            if len(self.initial_tables) != len(self.table_sizes):
                raise ValueError(
                    f"initial_tables has {len(self.initial_tables)} entries for "
                    f"{len(self.table_sizes)} tables; give one array or None per table"
                )
            for t, (init, n) in enumerate(zip(self.initial_tables, self.table_sizes)):
                if init is None:
                    continue
                if not isinstance(init, np.ndarray) or init.dtype != np.float32 or init.shape != (n,):
                    raise ValueError(
                        f"initial_tables[{t}] must be a float32 array of shape ({n},), got "
                        f"{getattr(init, 'dtype', type(init).__name__)} {getattr(init, 'shape', '')}"
                    )
                if check_values and not np.isfinite(init).all():
                    raise ValueError(f"initial_tables[{t}] holds NaN or infinite values")
        names = [lay.name for lay in self.layers]
        bad = [n for n in names if not isinstance(n, str) or not n]
        if bad:
            raise ValueError(f"layer names must be non-empty strings, got {bad[0]!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        for lay in self.layers:
            where = f"layer {lay.name!r}"
            if not isinstance(lay.attrs, dict):
                raise ValueError(f"{where}: attrs must be a dict, got {type(lay.attrs).__name__}")
            if not is_int(lay.table, numpy=True):
                raise ValueError(f"{where}: table must be an integer, got {lay.table!r}")
            if not isinstance(lay.indices, np.ndarray):
                raise ValueError(f"{where}: indices must be a numpy array, got {type(lay.indices).__name__}")
            if not 0 <= lay.table < len(self.table_sizes):
                raise ValueError(f"{where}: table {lay.table} does not exist (map has {len(self.table_sizes)})")
            n = self.table_sizes[lay.table]
            if lay.indices.ndim != 2:
                raise ValueError(f"{where}: indices must be 2-D (out_features, in_features), got {lay.indices.shape}")
            if lay.indices.dtype != index_dtype(n):
                raise ValueError(
                    f"{where}: indices dtype must be {index_dtype(n)} for a table of {n}, got {lay.indices.dtype}"
                )
            if lay.sign is not None and (lay.sign.shape != lay.indices.shape or lay.sign.dtype != np.int8):
                raise ValueError(f"{where}: sign must be int8 of shape {lay.indices.shape}")
            if lay.bias_indices is not None and (
                lay.bias_indices.shape != (lay.out_features,) or lay.bias_indices.dtype != lay.indices.dtype
            ):
                raise ValueError(f"{where}: bias_indices must be {lay.indices.dtype} of shape ({lay.out_features},)")
            if lay.bias_sign is not None and (
                lay.bias_indices is None or lay.bias_sign.shape != (lay.out_features,) or lay.bias_sign.dtype != np.int8
            ):
                raise ValueError(
                    f"{where}: bias_sign must be int8 of shape ({lay.out_features},) and needs "
                    "bias_indices (a sign only applies to a bias read from the table)"
                )
            if check_values:
                for arr, what in ((lay.indices, "indices"), (lay.bias_indices, "bias_indices")):
                    if arr is not None and arr.size and (arr.min() < ZERO or arr.max() >= n):
                        raise ValueError(f"{where}: {what} must lie in [-1, {n}), got [{arr.min()}, {arr.max()}]")
                for arr, what in ((lay.sign, "sign"), (lay.bias_sign, "bias_sign")):
                    if arr is not None and arr.size and not np.all(np.abs(arr) == 1):
                        raise ValueError(f"{where}: {what} values must be -1 or +1")

    @property
    def num_weights(self) -> int:
        """Virtual weights over all layers (zeros included)."""
        return sum(lay.num_weights for lay in self.layers)

    @property
    def num_entries(self) -> int:
        """Table entries over all tables (real parameters, biases excluded)."""
        return sum(self.table_sizes)

    @property
    def compression_ratio(self) -> float:
        """Virtual weights per table entry, ``num_weights / num_entries``."""
        return self.num_weights / self.num_entries
