"""Structural equivalence: is an index map dense, a convolution, an unrolled RNN, or arbitrary?

The paper's section 2 claims common networks are MLP ArbNets with particular hashes: a
convolution is a sparse Toeplitz matrix whose sharing is translation-invariant (eq. 4-6), an RNN
unrolled over T steps is an MLP whose steps are tied by the modulus hash (eq. 1). This module
recognises those structures in *any* index map, up to any relabeling of table entries, and says
why not with a concrete :class:`~hashlab.equiv.witness.Witness` when they are absent.

* :func:`recognize_conv` (from :mod:`hashlab.conv_recognition`): one layer, with geometry.
* :func:`recognize_rnn`: runs of consecutive layers that are tied steps of one Elman RNN.
* :func:`describe_map`: both, plus dense / arbitrary, for every layer (``hashlab check FILE``).
* :func:`canonical_labels`, :func:`same_sharing`, :func:`sharing_graph`: relabeling-invariant
  views of a map; the networkx bipartite graph gives an independent isomorphism cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..maps.indexmap import IndexMap, LayerMap
from ..maps.rnn import RNNGeometry
from .conv_recognition import ConvVerdict, LayerFacts, recognize_conv
from .witness import WeightRef, Witness

if TYPE_CHECKING:  # networkx is imported by sharing_graph alone: `import hashlab` stays without it
    import networkx as nx

__all__ = [
    "canonical_labels",
    "same_sharing",
    "sharing_graph",
    "modulus_offset",
    "recognize_conv",
    "ConvVerdict",
    "recognize_rnn",
    "RNNGroup",
    "RNNVerdict",
    "describe_map",
    "LayerDescription",
    "MapDescription",
]


def canonical_labels(indices: np.ndarray) -> np.ndarray:
    """Renumber table entries ``0, 1, 2, ...`` in order of first occurrence (row-major); ``-1`` stays.

    Two maps have the same sharing structure (same zeros, and the same pairs of weights reading
    a common entry) if and only if their canonical labels are equal; in particular
    ``canonical_labels(perm[indices]) == canonical_labels(indices)`` for any permutation ``perm``.

    Parameters
    ----------
    indices : ndarray of int, any shape

    Returns
    -------
    ndarray of ``indices``'s shape, int64
    """
    a = np.asarray(indices)
    flat = a.reshape(-1)
    live = flat >= 0
    out = np.full(flat.shape, -1, dtype=np.int64)
    if live.any():
        uniq, first, inv = np.unique(flat[live], return_index=True, return_inverse=True)
        rank = np.empty(uniq.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
        out[live] = rank[inv]
    return out.reshape(a.shape)


def same_sharing(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two index arrays are equal up to a relabeling of table entries."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(canonical_labels(a), canonical_labels(b)))


def sharing_graph(layer: LayerMap) -> nx.Graph:
    """Bipartite weight-entry graph of one layer.

    Nodes ``("w", row, col)`` (attribute ``pos=(row, col)``, ``bipartite=0``) for every weight
    not fixed at zero and ``("e", entry)`` (``bipartite=1``) for every entry read; an edge joins a
    weight to the entry it reads. Relabeling the table is a graph isomorphism that fixes every
    weight node, so ``nx.is_isomorphic(g1, g2, node_match=...)`` on ``pos`` decides
    :func:`same_sharing` independently (use it on small layers: VF2 is exponential in the worst case).
    """
    import networkx as nx

    g = nx.Graph()
    idx = np.asarray(layer.indices)
    rows, cols = np.nonzero(idx >= 0)
    for r, c in zip(rows.tolist(), cols.tolist()):
        e = int(idx[r, c])
        g.add_node(("w", r, c), pos=(r, c), bipartite=0)
        g.add_node(("e", e), bipartite=1)
        g.add_edge(("w", r, c), ("e", e))
    return g


def modulus_offset(layer: LayerMap, table_size: int) -> int | None:
    """``o`` if weight ``i`` (row-major identifier) reads entry ``(o + i) mod n`` for every weight, else None.

    This is the modulus hash (paper eq. 1); ``o`` is the layer's offset in a global-scope map.
    Unlike the structural checks it depends on the entry *values*, not only on which weights share.
    """
    flat = np.asarray(layer.indices).reshape(-1).astype(np.int64)
    if flat.size == 0 or flat.min() < 0:
        return None
    o = int(flat[0])
    return o if np.array_equal(flat, (o + np.arange(flat.size)) % table_size) else None


@dataclass(frozen=True)
class RNNGroup:
    """Consecutive layers that are the tied steps of one unrolled Elman RNN.

    Attributes
    ----------
    layers : tuple of str
        Step layer names, in order.
    start : int
        Position of the first step in the map.
    geometry : RNNGeometry
        ``input_size = in_features - out_features``, ``hidden_size = out_features``.
    modulus : bool
        The step matrix is dense (every weight its own entry, no zeros): then the group is exactly
        the modulus hash ``i mod n`` with ``n = H(I+H)`` over global identifiers, up to relabeling.
    """

    layers: tuple[str, ...]
    start: int
    geometry: RNNGeometry
    modulus: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "start": self.start,
            "geometry": self.geometry.to_dict(),
            "modulus": self.modulus,
        }


@dataclass(frozen=True)
class RNNVerdict:
    """Unrolled-RNN structure of a whole map.

    Attributes
    ----------
    groups : tuple of RNNGroup
        Maximal runs of two or more tied consecutive layers.
    witness : Witness or None
        When there is no group: why the closest pair of consecutive layers is not tied.
    """

    groups: tuple[RNNGroup, ...]
    witness: Witness | None

    @property
    def is_rnn(self) -> bool:
        return bool(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "is_rnn": self.is_rnn,
            "groups": [g.to_dict() for g in self.groups],
            "witness": self.witness.to_dict() if self.witness else None,
        }


def _zero_or(arr: np.ndarray | None, shape: tuple[int, ...], fill: int) -> np.ndarray:
    return np.full(shape, fill, dtype=np.int64) if arr is None else np.asarray(arr).astype(np.int64)


def _tie(a: LayerMap, b: LayerMap) -> tuple[int, Witness | None]:
    """Whether ``b`` is ``a``'s next step: ``(closeness, witness)``; witness None means tied.

    Closeness ranks failures for the report: 3 same shape and table, 2 same shape, 1 otherwise.
    """
    pair = f"{a.name} and {b.name}"
    if a.indices.shape != b.indices.shape:
        return 1, Witness(
            "shape",
            f"{pair} have shapes {a.out_features}x{a.in_features} and "
            f"{b.out_features}x{b.in_features}; the steps of an unrolled RNN all have one "
            "shape (hidden, input + hidden)",
        )
    if a.out_features > a.in_features:
        return 2, Witness(
            "shape",
            f"{pair} are {a.out_features}x{a.in_features}: an Elman step [W_ih | W_hh] acts on "
            "concat(x_t, h_(t-1)) and so has at least as many columns as rows",
        )
    if a.table != b.table:
        return 2, Witness("table", f"{pair} read different tables ({a.table} and {b.table}); tied steps read one table")
    ia, ib = np.asarray(a.indices), np.asarray(b.indices)
    diff = np.flatnonzero(ia.reshape(-1) != ib.reshape(-1))
    if diff.size:
        r, c = divmod(int(diff[0]), a.in_features)
        wa, wb = WeightRef(a.name, r, c, int(ia[r, c])), WeightRef(b.name, r, c, int(ib[r, c]))
        return 3, Witness(
            "should_share",
            f"w({r},{c}) of {a.name} and w({r},{c}) of {b.name} are the same weight of "
            f"consecutive steps (W_ih | W_hh tied across time), so they should share an "
            f"entry, but read entries {wa.entry} and {wb.entry}",
            (wa, wb),
        )
    sa, sb = (_zero_or(x.sign, ia.shape, 1) for x in (a, b))
    diff = np.flatnonzero(sa.reshape(-1) != sb.reshape(-1))
    if diff.size:
        r, c = divmod(int(diff[0]), a.in_features)
        wa, wb = WeightRef(a.name, r, c, int(ia[r, c])), WeightRef(b.name, r, c, int(ib[r, c]))
        return 3, Witness(
            "not_tied",
            f"w({r},{c}) of {a.name} and of {b.name} read entry {wa.entry} with opposite "
            "signs; tied steps use one weight",
            (wa, wb),
        )
    ba, bb = (_zero_or(x.bias_indices, (a.out_features,), -2) for x in (a, b))
    diff = np.flatnonzero(ba != bb)
    if diff.size:
        h = int(diff[0])
        wa, wb = WeightRef(a.name, h, None, int(ba[h])), WeightRef(b.name, h, None, int(bb[h]))
        show = lambda v: "its own dense bias" if v == -2 else f"entry {v}"  # noqa: E731
        return 3, Witness(
            "not_tied",
            f"b({h}) of {a.name} and of {b.name} read {show(wa.entry)} and {show(wb.entry)}; tied steps share one bias",
            (wa, wb),
        )
    return 4, None


def recognize_rnn(imap: IndexMap) -> RNNVerdict:
    """Find the unrolled Elman RNNs in a map: runs of consecutive, identically indexed layers.

    Step ``t`` of an RNN (:func:`hashlab.maps.rnn_map`) is a ``(H, I + H)`` layer reading the same
    table entries at the same positions as every other step (weights tied across time), with the
    same signs and bias entries. Equality of entries is kept by any relabeling of the table, so the
    verdict is relabeling-invariant. The check is O(total weights).

    Parameters
    ----------
    imap : IndexMap

    Returns
    -------
    RNNVerdict
    """
    layers = imap.layers
    ties = [_tie(layers[k], layers[k + 1]) for k in range(len(layers) - 1)]
    groups, k = [], 0
    while k < len(ties):
        if ties[k][1] is not None:
            k += 1
            continue
        start = k
        while k < len(ties) and ties[k][1] is None:
            k += 1
        lay = layers[start]
        steps = k - start + 1
        bias = lay.bias_indices is not None and bool(np.any(np.asarray(lay.bias_indices) >= 0))
        geom = RNNGeometry(lay.in_features - lay.out_features, lay.out_features, steps, bias)
        groups.append(
            RNNGroup(tuple(x.name for x in layers[start : start + steps]), start, geom, LayerFacts(lay).dense)
        )
    witness = None
    if not groups:
        if not ties:
            witness = Witness(
                "shape", f"the map has one layer ({layers[0].name}); an unrolled RNN has two or more tied steps"
            )
        else:
            witness = max(ties, key=lambda t: t[0])[1]  # closest pair; ties keep the earliest
    return RNNVerdict(tuple(groups), witness)


@dataclass(frozen=True)
class LayerDescription:
    """What one layer of a map is, and why.

    Attributes
    ----------
    name : str
    shape : (int, int)
        ``(out_features, in_features)``.
    table : int
    kind : {"dense", "convolution", "rnn", "arbitrary", "empty"}
    summary : str
        One line: the geometry for a convolution or RNN step, sharing statistics otherwise.
    reasons : tuple of str
        Why: the structure that holds, or the witness against a convolution.
    conv : ConvVerdict or None
    rnn : RNNGroup or None
    """

    name: str
    shape: tuple[int, int]
    table: int
    kind: str
    summary: str
    reasons: tuple[str, ...]
    conv: ConvVerdict | None = None
    rnn: RNNGroup | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "table": self.table,
            "kind": self.kind,
            "summary": self.summary,
            "reasons": list(self.reasons),
            "conv": self.conv.to_dict() if self.conv else None,
            "rnn": self.rnn.to_dict() if self.rnn else None,
        }


@dataclass(frozen=True)
class MapDescription:
    """:func:`describe_map`'s answer: one :class:`LayerDescription` per layer and the RNN verdict."""

    layers: tuple[LayerDescription, ...]
    rnn: RNNVerdict

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [lay.to_dict() for lay in self.layers], "rnn": self.rnn.to_dict()}


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _stats(f: LayerFacts) -> str:
    n = f.indices.size
    zeros = n - f.nnz
    reuse = f"{f.nnz / f.n_labels:.2f}" if f.n_labels else "-"
    return (
        f"{f.nnz:,} of {n:,} weights read {f.n_labels:,} entries (mean reuse {reuse}); "
        f"{zeros:,} fixed at zero ({zeros / n:.1%})"
    )


def _conv_reasons(v: ConvVerdict, f: LayerFacts) -> tuple[str, ...]:
    g = v.geometry
    assert g is not None  # only called for a convolution verdict, which carries its geometry
    where = {
        "attrs": "geometry from the layer's attrs, verified against the map",
        "search": f"geometry recovered from the index array alone ({_plural(v.candidates, 'candidate grid')} examined)",
        "hint": "geometry recovered on the grid given as a hint",
    }[v.source]
    return (
        f"translation-invariant sharing (eq. 4-6): each of the {f.n_labels:,} entries is one kernel tap "
        f"K[out, in/groups, k...] of {g.weight_shape}, read at every output position whose window covers it; "
        f"the {f.indices.size - f.nnz:,} zeros are exactly the weights outside the window or the group",
        where,
        f"bias: {v.bias}",
        *v.notes,
    )


def _rnn_bias(lay: LayerMap) -> str:
    if lay.bias_indices is None:
        return (
            "bias: not in the map (no bias_indices): a trainer gives each step its own dense bias, so only "
            "the weights are tied"
        )
    if np.all(np.asarray(lay.bias_indices) < 0):
        return "bias: fixed at zero"
    return "bias: one entry per hidden unit, shared by all steps (the sum b_ih + b_hh of torch.nn.RNN)"


def describe_map(imap: IndexMap, use_attrs: bool = True) -> MapDescription:
    """Say what every layer of ``imap`` is: dense, a convolution (with geometry), an RNN step, or arbitrary.

    Parameters
    ----------
    imap : IndexMap
    use_attrs : bool
        Let :func:`recognize_conv` try each layer's ``attrs["conv"]`` first; False recovers every
        geometry from the index arrays alone.

    Returns
    -------
    MapDescription
        Relabeling-invariant except for the entry numbers quoted in witnesses and the modulus note
        (which depends on entry values by definition).
    """
    rnn = recognize_rnn(imap)
    step_of = {name: g for g in rnn.groups for name in g.layers}
    reports: list[LayerDescription] = []
    for lay in imap.layers:
        f = LayerFacts(lay)
        name, shape, table = lay.name, (lay.out_features, lay.in_features), lay.table
        off = modulus_offset(lay, imap.table_sizes[lay.table])
        mod = (
            (f"weight i reads entry ({off} + i) mod {imap.table_sizes[lay.table]}: the modulus hash (eq. 1)",)
            if off is not None and not f.dense
            else ()
        )
        if lay.name in step_of:
            g = step_of[lay.name]
            t = g.layers.index(lay.name)
            others = ", ".join(x for x in g.layers if x != lay.name)
            why = [
                f"reads the same entry at every position as {others} (table {lay.table}): [W_ih | W_hh] tied "
                f"across {g.geometry.steps} steps"
            ]
            why.append(_rnn_bias(lay))
            why.append(
                "step matrix dense: over global identifiers t*N + i this is exactly the modulus hash i mod N, "
                f"N = H(I+H) = {g.geometry.step_weights}, with one global table (eq. 1), up to relabeling"
                if g.modulus
                else f"step matrix itself shares entries: {_stats(f)}"
            )
            summary = f"step {t + 1}/{g.geometry.steps} of an {g.geometry.describe()}"
            reports.append(
                LayerDescription(
                    name=name, shape=shape, table=table, kind="rnn", rnn=g, reasons=tuple(why), summary=summary
                )
            )
            continue
        if f.nnz == 0:
            reports.append(
                LayerDescription(
                    name=name, shape=shape, table=table, kind="empty", summary="every weight fixed at zero", reasons=()
                )
            )
            continue
        v = recognize_conv(lay, facts=f, use_attrs=use_attrs)
        if v.is_conv and v.source == "dense":
            reports.append(
                LayerDescription(
                    name=name,
                    shape=shape,
                    table=table,
                    kind="dense",
                    conv=v,
                    summary=_stats(f),
                    reasons=(
                        "every weight reads its own entry and none is fixed at zero: a plain fully connected layer "
                        "(also the degenerate convolution whose kernel covers the whole input)",
                        *mod,
                    ),
                )
            )
        elif v.is_conv:
            assert v.geometry is not None  # a convolution verdict always carries its geometry
            reports.append(
                LayerDescription(
                    name=name,
                    shape=shape,
                    table=table,
                    kind="convolution",
                    conv=v,
                    summary=v.geometry.describe(),
                    reasons=_conv_reasons(v, f) + mod,
                )
            )
        else:
            reports.append(
                LayerDescription(
                    name=name,
                    shape=shape,
                    table=table,
                    kind="arbitrary",
                    conv=v,
                    summary=_stats(f),
                    reasons=(f"not a convolution: {v.witness}", *mod, *v.notes),
                )
            )
    return MapDescription(tuple(reports), rnn)
