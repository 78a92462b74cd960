"""Ties across layers: two layers of one table that read the same entries, as they are or transposed.

* **same**: ``b.indices == a.indices`` (and signs, and shared bias entries): sharing across layers as
  in ShaResNet and ALBERT, or the steps of an unrolled RNN (:func:`hashlab.equiv.describe.recognize_rnn`
  says more about consecutive ones);
* **transpose**: ``b.indices == a.indices.T`` (and signs): a tied autoencoder's decoder, or an output
  projection tied to the input embedding (Press & Wolf, EACL 2017).

Ties are equalities of entry numbers in one table, so only layers with the same ``table`` can be tied;
the map builders are :func:`hashlab.maps.known_uses.shared_layers_map` and
:func:`hashlab.maps.known_uses.transpose_tied_map`. O(weights) per pair of layers of one table with
matching shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..maps.indexmap import IndexMap, LayerMap

__all__ = ["Tie", "find_ties"]


@dataclass(frozen=True)
class Tie:
    """Layer ``b`` reads layer ``a``'s entries.

    Attributes
    ----------
    a, b : str
        Layer names, ``a`` before ``b`` in the map.
    kind : {"same", "transpose"}
    table : int
    """

    a: str
    b: str
    kind: str
    table: int

    def describe(self) -> str:
        if self.kind == "same":
            return f"{self.b} reads the same entries as {self.a} (table {self.table}): weights shared across layers"
        return f"{self.b} is {self.a} transposed (table {self.table}): transpose-tied weights"

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "kind": self.kind, "table": self.table}


def _eq(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    if x is None or y is None:
        return x is None and y is None
    return bool(np.array_equal(x, y))


def _tied(a: LayerMap, b: LayerMap) -> str | None:
    if a.table != b.table or not np.any(np.asarray(a.indices) >= 0):
        return None
    if a.indices.shape == b.indices.shape and np.array_equal(a.indices, b.indices) and _eq(a.sign, b.sign):
        if _eq(a.bias_indices, b.bias_indices) and _eq(a.bias_sign, b.bias_sign):
            return "same"
    if a.indices.shape == b.indices.shape[::-1] and np.array_equal(a.indices.T, b.indices):
        if _eq(None if a.sign is None else a.sign.T, b.sign):
            return "transpose"
    return None


def find_ties(imap: IndexMap) -> tuple[Tie, ...]:
    """Every pair of layers ``(a, b)``, ``a`` first, where ``b`` reads ``a``'s entries as they are or transposed.

    A layer whose every weight is zeroed ties to nothing. A square layer equal to its own pair's
    transpose is reported as ``same``.

    Parameters
    ----------
    imap : IndexMap

    Returns
    -------
    tuple of Tie

    Raises
    ------
    ValueError
        If ``imap`` is not an IndexMap.
    """
    if not isinstance(imap, IndexMap):
        raise ValueError(f"expected an IndexMap, got {type(imap).__name__}; build one with hashlab.build_map(...)")
    out = []
    for k, a in enumerate(imap.layers):
        for b in imap.layers[k + 1 :]:
            kind = _tied(a, b)
            if kind is not None:
                out.append(Tie(a.name, b.name, kind, a.table))
    return tuple(out)
