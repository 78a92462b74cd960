"""Symmetry of a weight-sharing pattern: the automorphism group of a layer or of a whole map.

A layer ``y = W x`` with ``W[o, i] = sign[o, i] * table[indices[o, i]]`` is equivariant to a pair of
permutations, ``tau`` of its inputs and ``sigma`` of its outputs (permuting the input by ``tau``
permutes the output by ``sigma``: ``y'[sigma(o)] = y[o]`` when ``x'[tau(i)] = x[i]``), for *every*
table, if and only if the pair preserves the pattern: ``(indices, sign)[sigma(o), tau(i)] = (indices,
sign)[o, i]`` for all ``o, i``. These pairs form the automorphism group of the bipartite graph whose
vertices are the inputs and outputs and whose edges are the weights, coloured by (table, entry,
sign); a zeroed weight (index ``-1``) is no edge. Ravanbakhsh, Schneider & Poczos, *Equivariance
Through Parameter-Sharing* (ICML 2017), section 3: the group of a sharing pattern is exactly the
group the layer is equivariant to. A whole map is one graph: layer ``k``'s outputs are layer
``k + 1``'s inputs when the sizes chain (an MLP), each layer of a global table keeps its
(table, entry) colours, and a permutation of the network's units that preserves every layer's
pattern makes the network (with elementwise activations) equivariant. A shared bias
(``bias_indices``) colours its output units; a dense bias of the trainer's own, and BatchNorm's
per-unit parameters, are not part of the map and constrain nothing here (a trained network with
them is equivariant only where they are equal on each orbit).

Algorithm (:func:`automorphism_group`):

1. **Identical units, exactly.** Units of one level with identical coloured neighbourhoods (for a
   layer: identical rows, identical columns, as :mod:`hashlab.stats.degeneracy` counts them with
   the same kernels) can be permuted freely. The group is the semidirect product of the symmetric
   groups on these classes and the group of the *quotient* pattern (one unit per class, coloured by
   its class size), so ``|Aut| = prod(class size!) * |Aut(quotient)|``.
2. **Colour refinement** (1-dimensional Weisfeiler-Leman) of the quotient, vectorised in numpy:
   each round recolours a unit by its colour and the multiset of (edge colour, neighbour colour)
   pairs, summed as 64-bit mixed hashes. A hash collision can only merge colours, so the partition
   is always one that every automorphism preserves and never finer than the exact one: when it
   separates every unit, the quotient group is trivial (this settles hashed maps in O(weights)).
3. **bliss** (Junttila & Kaski, through python-igraph) on the quotient otherwise, with the refined
   colours as vertex colours and edge colours encoded in ``L = bit_length(#colours)`` layers of
   vertex copies (McKay & Piperno, nauty user guide, "edge colours"); a layer holding more than half
   of a block's pairs is stored as its complement. bliss gives the exact order and generators,
   which are lifted back to the full units, together with one transposition per pair of adjacent
   members of each class of identical units.

The size bound (``max_weights``) applies to the quotient handed to bliss, the time bound
(``time_limit``) to the whole computation; both refuse with :class:`SymmetryLimitError` naming the
size or time and the parameter to change.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..maps.indexmap import IndexMap, LayerMap

__all__ = [
    "Automorphism",
    "SymmetryGroup",
    "SymmetryLimitError",
    "Refusal",
    "MapSymmetry",
    "automorphism_group",
    "map_symmetry",
    "DEFAULT_MAX_WEIGHTS",
    "DEFAULT_TIME_LIMIT",
]

DEFAULT_MAX_WEIGHTS = 1 << 22
"""Largest quotient pattern (weights, zeros included, over all layers) handed to bliss: 4,194,304."""
DEFAULT_TIME_LIMIT = 60.0
"""Seconds one group may take before it is refused."""
_DESCRIBE_LIMIT = 64  # beyond this many generators: no torus search in their words, no dihedral or torus naming
_NAME_LIMIT = 4096  # beyond this many generators the group is named by its order only
_U64 = np.uint64


class SymmetryLimitError(ValueError):
    """The pattern is beyond the size or time bound of :func:`automorphism_group`; the message says which."""


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Automorphism:
    """One generator of a symmetry group: a permutation of the units of every level that keeps the pattern.

    Attributes
    ----------
    level_sizes : tuple of int
        Units per level (a layer: ``(in_features, out_features)``).
    moves : tuple of (ndarray, ndarray)
        Per level, the moved units (int64, ascending) and their images (int64).
    kind : str
        ``"identical"`` (swap of two identical rows, columns or units), ``"swap"``, ``"shift"``,
        ``"translation"``, ``"reflection"`` or ``"permutation"``: the description of its most
        specific level.
    description : str
        Plain words, e.g. ``"swap identical rows 0 and 125"`` or ``"inputs: cyclic shift by 1;
        outputs: cyclic shift by 1"``.
    """

    level_sizes: tuple[int, ...]
    moves: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False)
    kind: str
    description: str

    def perm(self, level: int) -> np.ndarray:
        """The permutation of level ``level`` as an array: ``perm[u]`` is the image of unit ``u`` (int64)."""
        p = np.arange(self.level_sizes[level], dtype=np.int64)
        pts, imgs = self.moves[level]
        p[pts] = imgs
        return p

    @property
    def in_perm(self) -> np.ndarray:
        """Permutation of the first level (a layer's inputs), shape ``(in_features,)``."""
        return self.perm(0)

    @property
    def out_perm(self) -> np.ndarray:
        """Permutation of the last level (a layer's outputs), shape ``(out_features,)``."""
        return self.perm(len(self.level_sizes) - 1)

    @property
    def moved(self) -> int:
        """Units moved, over all levels."""
        return sum(int(m[0].size) for m in self.moves)

    @property
    def order(self) -> int:
        """Order of the permutation: the lcm of its cycle lengths over all levels."""
        out = 1
        for lv in range(len(self.level_sizes)):
            if self.moves[lv][0].size:
                for length in _cycle_lengths(self.perm(lv)):
                    out = math.lcm(out, length)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "moved": self.moved}


@dataclass(frozen=True, eq=False)
class SymmetryGroup:
    """The automorphism group of a layer's or a map's sharing pattern (:func:`automorphism_group`).

    Attributes
    ----------
    name : str
        The layer's name, or ``"network"`` for a whole map.
    level_names, level_sizes : tuple of str, tuple of int
        The sets of units the group permutes: ``("inputs", "outputs")`` for a layer; for a map the
        network's inputs, each hidden level (``"fc0 out = fc1 in"``) and the outputs.
    order : int
        ``|Aut|``, exact.
    generators : tuple of Automorphism
        Generators of the group: one transposition per pair of adjacent members of each class of
        identical units, then bliss's generators of the quotient lifted to the full units.
    identical : tuple of tuple of ndarray
        Per level, the classes of identical units (two or more, ascending int64 unit ids): identical
        rows (outputs), identical columns (inputs), or units identical on both sides of a hidden level.
    structure : str
        The group in words, where it is recognised: trivial; a product of symmetric groups on classes
        of identical rows / columns; a symmetric group on a set; cyclic; dihedral; the translations of
        a grid (torus); else its order.
    kind : str
        ``"trivial"``, ``"identical"``, ``"symmetric"``, ``"cyclic"``, ``"dihedral"``, ``"translations"``
        or ``"other"`` (the part beyond identical units when there is one).
    method : str
        ``"refinement"`` (no bliss needed) or ``"bliss"``.
    seconds : float
        Wall time of the computation.
    bliss_graph : (int, int) or None
        Vertices and edges of the coloured graph handed to bliss.
    layers : tuple of str
        Names of the layers covered.
    joined : tuple of bool
        For a map: whether layer ``k + 1``'s inputs are layer ``k``'s outputs (sizes chain).
    """

    name: str
    level_names: tuple[str, ...]
    level_sizes: tuple[int, ...]
    order: int
    generators: tuple[Automorphism, ...] = field(repr=False)
    identical: tuple[tuple[np.ndarray, ...], ...] = field(repr=False)
    structure: str
    kind: str
    method: str
    seconds: float
    bliss_graph: tuple[int, int] | None = None
    layers: tuple[str, ...] = ()
    joined: tuple[bool, ...] = ()

    @property
    def log2_order(self) -> float:
        """``log2 |Aut|`` (0.0 for the trivial group)."""
        return math.log2(self.order)

    @property
    def is_trivial(self) -> bool:
        return self.order == 1

    @property
    def identical_order(self) -> int:
        """Order of the normal subgroup that permutes identical units: ``prod(class size!)``."""
        out = 1
        for classes in self.identical:
            for c in classes:
                out *= math.factorial(int(c.size))
        return out

    @property
    def quotient_order(self) -> int:
        """``order / identical_order``: the part of the group that moves classes of identical units."""
        return self.order // self.identical_order

    def distinct(self, level: int) -> int:
        """Classes of identical units of level ``level``: for a layer, distinct columns (0) or rows (1)."""
        return self.level_sizes[level] - sum(int(c.size) - 1 for c in self.identical[level])

    def identical_counts(self, level: int) -> dict[int, int]:
        """``{class size: number of classes}`` of identical units of level ``level`` (sizes >= 2)."""
        sizes, counts = np.unique([int(c.size) for c in self.identical[level]], return_counts=True)
        return {int(s): int(n) for s, n in zip(sizes, counts)}

    def order_text(self) -> str:
        """``"1"``, ``"16"``, ``"2^75 = 37,778,931,862,957,161,709,568"`` or ``"2^795.8 (240 digits)"``."""
        o = self.order
        if o < 10**6:
            return f"{o:,}"
        exact = o & (o - 1) == 0
        lg = f"2^{o.bit_length() - 1}" if exact else f"2^{self.log2_order:.1f}"
        digits = len(str(o))
        return f"{lg} = {o:,}" if digits <= 30 else f"{lg} ({digits} digits)"

    def describe(self, max_generators: int = 8) -> str:
        """Plain text: order, structure, how it was computed and up to ``max_generators`` generators."""
        shape = (
            f"{self.level_sizes[1]}x{self.level_sizes[0]}"
            if len(self.level_sizes) == 2
            else "-".join(map(str, self.level_sizes))
        )
        lines = [
            f"{self.name} ({shape}): |Aut| = {self.order_text()}; {self.structure}",
            f"  computed by {'bliss on the quotient' if self.method == 'bliss' else 'colour refinement'}"
            + (f" ({self.bliss_graph[0]:,} vertices, {self.bliss_graph[1]:,} edges)" if self.bliss_graph else "")
            + f" in {self.seconds:.2f} s",
        ]
        if self.generators:
            lines.append(f"  {len(self.generators):,} generator{'s' if len(self.generators) != 1 else ''}:")
            lines += [f"    {g.description}" for g in self.generators[:max_generators]]
            if len(self.generators) > max_generators:
                lines.append(f"    ... and {len(self.generators) - max_generators:,} more")
        return "\n".join(lines)

    def to_dict(self, max_generators: int = 20) -> dict[str, Any]:
        """JSON-ready: ``order`` as a decimal string (exact at any size), ``log2_order`` as a float."""
        return {
            "name": self.name,
            "order": str(self.order),
            "log2_order": self.log2_order,
            "structure": self.structure,
            "kind": self.kind,
            "levels": [
                {
                    "name": n,
                    "size": s,
                    "distinct": self.distinct(lv),
                    "identical_classes": [[k, v] for k, v in self.identical_counts(lv).items()],
                }
                for lv, (n, s) in enumerate(zip(self.level_names, self.level_sizes))
            ],
            "identical_log2_order": math.log2(self.identical_order),
            "num_generators": len(self.generators),
            "generators": [g.to_dict() for g in self.generators[:max_generators]],
            "method": self.method,
            "bliss_graph": None if self.bliss_graph is None else list(self.bliss_graph),
            "seconds": self.seconds,
            "layers": list(self.layers),
            "joined": list(self.joined),
        }


@dataclass(frozen=True)
class Refusal:
    """A group that was not computed: the pattern is beyond a bound (:class:`SymmetryLimitError`)."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "refused": self.reason}


@dataclass(frozen=True)
class MapSymmetry:
    """The group of every layer and of the whole network (:func:`map_symmetry`).

    Attributes
    ----------
    layers : tuple of (SymmetryGroup or Refusal)
    network : SymmetryGroup or Refusal or None
        The map as one graph (layers joined through the hidden units they share); None when not asked.
    seconds : float
    """

    layers: tuple[SymmetryGroup | Refusal, ...]
    network: SymmetryGroup | Refusal | None
    seconds: float

    @property
    def layers_log2_sum(self) -> float | None:
        """Sum of the layers' ``log2 |Aut|`` (each layer on its own); None if one was refused."""
        if any(isinstance(g, Refusal) for g in self.layers):
            return None
        return float(sum(g.log2_order for g in self.layers if isinstance(g, SymmetryGroup)))

    def lines(self) -> list[str]:
        """The ``symmetry`` section of ``hashlab stats``."""
        out = [
            "symmetry: automorphism group of each sharing pattern (permutations of inputs and outputs that keep "
            "every weight's entry and sign; Ravanbakhsh et al. 2017): the layer is equivariant to it",
            f"  {'layer':<10} {'log2|Aut|':>10}  group",
        ]
        for g in self.layers:
            if isinstance(g, Refusal):
                out.append(f"  {g.name:<10} {'-':>10}  refused: {g.reason}")
            else:
                out.append(f"  {g.name:<10} {g.log2_order:>10.2f}  {g.structure}")
        s = self.layers_log2_sum
        out.append(f"  {'sum':<10} {'-' if s is None else f'{s:.2f}':>10}  (layers taken one by one)")
        n = self.network
        if isinstance(n, Refusal):
            out.append(f"  {'network':<10} {'-':>10}  refused: {n.reason}")
        elif n is not None:
            out.append(
                f"  {'network':<10} {n.log2_order:>10.2f}  {n.structure} (layers joined through their hidden units)"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [g.to_dict() for g in self.layers],
            "layers_log2_sum": self.layers_log2_sum,
            "network": None if self.network is None else self.network.to_dict(),
            "seconds": self.seconds,
        }


# --------------------------------------------------------------------------- the pattern as levels and blocks
@dataclass
class _Block:
    """One layer between two levels: ``keys[r, c]`` is weight ``(r, c)``'s colour, 0 for no weight."""

    name: str
    rows: int
    cols: int
    keys: np.ndarray
    indices: np.ndarray
    sign: np.ndarray | None


@dataclass
class _Pattern:
    names: list[str]
    sizes: list[int]
    colours: list[np.ndarray]
    blocks: list[_Block]
    joined: tuple[bool, ...] = ()


def _keys(indices: np.ndarray, sign: np.ndarray | None, table: int, ntables: int) -> np.ndarray:
    """Colour of every position: 0 if zeroed, else ``(2 (index + 1) + (sign < 0)) * ntables + table``."""
    idx = np.asarray(indices).astype(np.int64)
    key = 2 * (idx + 1)
    if sign is not None:
        key += np.asarray(sign) < 0
    key = key * ntables + table
    key[idx < 0] = 0
    return key


def _pattern(obj: LayerMap | IndexMap, bias: bool) -> _Pattern:
    layers: tuple[LayerMap, ...]
    if isinstance(obj, LayerMap):
        layers, ntables, single = (obj,), max(obj.table + 1, 1), True
    elif isinstance(obj, IndexMap):
        layers, ntables, single = obj.layers, len(obj.table_sizes), False
    else:
        raise ValueError(
            f"automorphism_group takes a LayerMap or an IndexMap, got {type(obj).__name__}; build one with "
            "hashlab.build_map(...) or load one with hashlab.load_index_file(path)"
        )
    names: list[str] = []
    sizes: list[int] = []
    colours: list[np.ndarray] = []
    blocks: list[_Block] = []
    joined: list[bool] = []
    prev_out = -1
    for k, lay in enumerate(layers):
        if lay.indices.ndim != 2:
            raise ValueError(f"layer {lay.name!r}: indices must be 2-D (out_features, in_features)")
        if k > 0 and sizes[prev_out] == lay.in_features:
            cols = prev_out
            names[cols] = f"{layers[k - 1].name} out = {lay.name} in"
            joined.append(True)
        else:
            if k > 0:
                joined.append(False)
            cols = len(sizes)
            names.append("inputs" if single else ("input" if k == 0 else f"{lay.name} in"))
            sizes.append(lay.in_features)
            colours.append(np.zeros(lay.in_features, np.int64))
        rows = len(sizes)
        names.append("outputs" if single else f"{lay.name} out")
        sizes.append(lay.out_features)
        bc = np.zeros(lay.out_features, np.int64)
        if bias and lay.bias_indices is not None:
            bc = _keys(lay.bias_indices, lay.bias_sign, lay.table, ntables)
        colours.append(bc)
        keys = _keys(lay.indices, lay.sign, lay.table, ntables)
        blocks.append(_Block(lay.name, rows, cols, keys, lay.indices, lay.sign))
        prev_out = rows
    return _Pattern(names, sizes, colours, blocks, tuple(joined))


# --------------------------------------------------------------------------- step 1: identical units
def _identical_labels(p: _Pattern, backend: str) -> list[np.ndarray]:
    """Per level, ``label[u]`` = the smallest unit with the same colour and the same rows / columns as ``u``."""
    from ..stats import kernels as SK

    line_groups = SK.kernels(backend).line_groups
    sigs: list[list[np.ndarray]] = [[c] for c in p.colours]
    for b in p.blocks:
        rg, cg = line_groups(b.indices, b.sign)
        sigs[b.rows].append(np.asarray(rg, np.int64))
        sigs[b.cols].append(np.asarray(cg, np.int64))
    labels = []
    for s in sigs:
        _, first, inv = np.unique(np.stack(s, axis=1), axis=0, return_index=True, return_inverse=True)
        labels.append(first[inv.reshape(-1)].astype(np.int64))
    return labels


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``numpy.unique(a)`` by one sort (numpy 2's hash-based unique is several times slower on millions of values)."""
    v = np.sort(a, axis=None)
    if v.size == 0:
        return v
    keep = np.empty(v.size, bool)
    keep[0] = True
    np.not_equal(v[1:], v[:-1], out=keep[1:])
    return v[keep]


# --------------------------------------------------------------------------- step 2: colour refinement
def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, a bijection of uint64 (wrapping arithmetic)."""
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _relabel(parts: list[list[np.ndarray]]) -> tuple[list[np.ndarray], int]:
    """Colour ids from per-level signature columns; levels never share an id. Returns (colours, classes)."""
    out, offset = [], 0
    for cols in parts:
        stack = np.stack([np.asarray(c).astype(np.uint64) for c in cols], axis=1)
        uniq, inv = np.unique(stack, axis=0, return_inverse=True)
        out.append(inv.reshape(-1).astype(np.int64) + offset)
        offset += len(uniq)
    return out, offset


def _refine(
    colours: list[np.ndarray], blocks: list[tuple[int, int, np.ndarray]], deadline: float | None
) -> list[np.ndarray]:
    """Stable colouring (hashed 1-WL) of the quotient's units; see the module docstring, step 2."""
    col, ncls = _relabel([[c] for c in colours])
    total = sum(c.size for c in col)
    while ncls < total:
        _check_deadline(deadline, "colour refinement")
        parts: list[list[np.ndarray]] = [[c] for c in col]
        for rows, cols, keys in blocks:
            k = keys.astype(np.uint64) << _U64(32)
            parts[rows].append(_mix(k | col[cols].astype(np.uint64)[None, :]).sum(axis=1, dtype=np.uint64))
            parts[cols].append(_mix((k | col[rows].astype(np.uint64)[:, None]) ^ _U64(1)).sum(axis=0, dtype=np.uint64))
        new, n = _relabel(parts)
        if n == ncls:
            break
        col, ncls = new, n
    return col


# --------------------------------------------------------------------------- step 3: bliss
class _Timeout(Exception):
    pass


@contextmanager
def _alarm(deadline: float | None) -> Iterator[None]:
    """Raise :class:`_Timeout` inside bliss at ``deadline`` (SIGALRM; main thread only, else no-op)."""
    main = threading.current_thread() is threading.main_thread()
    if deadline is None or not main or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_timeout(e: BaseException | None) -> bool:
    while e is not None:
        if isinstance(e, _Timeout):
            return True
        e = e.__cause__ or e.__context__
    return False


def _codes(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Layer code of each edge colour: distinct non-zero integers, the most frequent colours on the fewest bits."""
    k = counts.size
    nbits = max(1, int(k).bit_length())
    cand = np.arange(1, 1 << nbits, dtype=np.int64)
    pop = np.array([bin(int(x)).count("1") for x in cand])
    cand = cand[np.argsort(pop, kind="stable")][:k]
    code = np.empty(k, np.int64)
    code[np.argsort(-counts, kind="stable")] = cand
    return code, nbits


def _bliss(
    sizes: list[int], colours: list[np.ndarray], blocks: list[tuple[int, int, np.ndarray]], deadline: float | None
) -> tuple[int, list[list[np.ndarray]], tuple[int, int]]:
    """Order and generators (per-level permutations of the quotient's units) from bliss."""
    import igraph

    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    units = int(offsets[-1])
    _, ucol = np.unique(np.concatenate(colours), return_inverse=True)
    ucol = ucol.reshape(-1)
    nucol = int(ucol.max()) + 1 if ucol.size else 1
    live = [np.nonzero(keys) for _, _, keys in blocks]
    allkeys = np.concatenate([keys[r, c] for (_, _, keys), (r, c) in zip(blocks, live)] + [np.zeros(0, np.int64)])
    uniq, kinv, counts = np.unique(allkeys, return_inverse=True, return_counts=True)
    code, nbits = _codes(counts) if uniq.size else (np.zeros(0, np.int64), 1)
    wcode = code[kinv.reshape(-1)]
    src, dst = [], []
    start = 0
    for (rows, cols, keys), (r, c) in zip(blocks, live):
        wc = wcode[start : start + r.size]
        start += r.size
        nr, nc = keys.shape
        for j in range(nbits):
            on = ((wc >> j) & 1).astype(bool)
            rr, cc = r[on], c[on]
            if 2 * rr.size > nr * nc:  # store the complement of a layer that holds most of the block's pairs
                mask = np.ones((nr, nc), bool)
                mask[rr, cc] = False
                rr, cc = np.nonzero(mask)
            base = j * units
            src.append(base + offsets[rows] + rr)
            dst.append(base + offsets[cols] + cc)
    for j in range(nbits - 1):  # vertical paths tie the copies of each unit together
        src.append(j * units + np.arange(units))
        dst.append((j + 1) * units + np.arange(units))
    s = np.concatenate(src + [np.zeros(0, np.int64)])
    d = np.concatenate(dst + [np.zeros(0, np.int64)])
    vcol = (np.arange(nbits, dtype=np.int64)[:, None] * nucol + ucol[None, :]).reshape(-1).tolist()
    _check_deadline(deadline, "building the graph for bliss")
    g = igraph.Graph(n=nbits * units, edges=list(zip(s.tolist(), d.tolist())))
    size = (g.vcount(), g.ecount())
    try:
        with _alarm(deadline):
            order = int(g.count_automorphisms(color=vcol))
            gens = g.automorphism_group(color=vcol)
    except Exception as e:
        if _is_timeout(e):
            raise _Timeout("bliss") from None
        raise
    out = []
    for gen in gens:
        perm = np.asarray(gen[:units], dtype=np.int64)
        out.append([perm[offsets[lv] : offsets[lv + 1]] - offsets[lv] for lv in range(len(sizes))])
    return order, out, size


def _check_deadline(deadline: float | None, where: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise _Timeout(where)


# --------------------------------------------------------------------------- describing permutations
def _cycle_lengths(p: np.ndarray) -> list[int]:
    seen = np.zeros(p.size, bool)
    out = []
    for s in np.flatnonzero(p != np.arange(p.size)):
        if seen[s]:
            continue
        n, u = 0, int(s)
        while not seen[u]:
            seen[u] = True
            u = int(p[u])
            n += 1
        out.append(n)
    return out


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _translation(p: np.ndarray, c: int, h: int, w: int) -> tuple[int, int] | None:
    """``(a, b)`` if ``p`` translates every channel block of the ``h x w`` torus by ``(a, b)``, else None."""
    a, b = divmod(int(p[0]), w)
    if a >= h:
        return None
    u = np.arange(p.size, dtype=np.int64)
    ch, rest = np.divmod(u, h * w)
    y, x = np.divmod(rest, w)
    want = ch * (h * w) + ((y + a) % h) * w + (x + b) % w
    return (a, b) if np.array_equal(p, want) else None


def _grids(n: int) -> Iterator[tuple[int, int, int]]:
    """Factorisations ``n = c * h * w``: 1-d first (``h = 1``), fewest channels first, squarest grids first."""
    for c in _divisors(n):
        yield c, 1, n // c
    for c in _divisors(n):
        m = n // c
        hs = [h for h in _divisors(m) if 1 < h < m]
        for h in sorted(hs, key=lambda h: (abs(math.log(h) - math.log(m / h)), -h)):
            yield c, h, m // h


def _describe_perm(p: np.ndarray, grids: bool = True) -> tuple[str, str] | None:
    """``(kind, words)`` for one level's permutation, None for the identity; ``grids``: try torus translations."""
    n = p.size
    ar = np.arange(n, dtype=np.int64)
    moved = np.flatnonzero(p != ar)
    if moved.size == 0:
        return None
    if moved.size == 2 and p[moved[0]] == moved[1]:
        return "swap", f"swap {moved[0]} and {moved[1]}"
    d = int(p[0])
    if np.array_equal(p, (ar + d) % n):
        return "shift", f"cyclic shift by {d} (mod {n})"
    if np.array_equal(p, (d - ar) % n):
        return "reflection", f"reflection i -> {d} - i (mod {n})"
    if grids and n <= 1 << 16:
        for c, h, w in _grids(n):
            if c == 1 and h == 1:
                continue
            t = _translation(p, c, h, w)
            if t is not None:
                chan = f" in each of {c} channels" if c > 1 else ""
                if h == 1:
                    return "shift", f"cyclic shift by {t[1]} within each of {c} blocks of {w}"
                return "translation", f"translation by {t} of the {h}x{w} torus{chan}"
    lengths = _cycle_lengths(p)
    ls, cs = np.unique(lengths, return_counts=True)
    cyc = " ".join(f"{int(length)}^{int(k)}" if k > 1 else f"{int(length)}" for length, k in zip(ls, cs))
    return "permutation", f"permutation moving {moved.size} of {n} (cycle lengths {cyc})"


_KIND_RANK = {"identical": 0, "swap": 1, "shift": 2, "translation": 3, "reflection": 4, "permutation": 5}


def _make(perms: list[np.ndarray], names: list[str], describe: bool) -> Automorphism:
    moves = []
    for p in perms:
        pts = np.flatnonzero(p != np.arange(p.size))
        moves.append((pts.astype(np.int64), p[pts].astype(np.int64)))
    parts, kinds = [], []
    for lv, p in enumerate(perms):
        if not moves[lv][0].size:
            continue
        d = _describe_perm(p, grids=describe)
        assert d is not None
        kinds.append(d[0])
        parts.append(f"{names[lv]}: {d[1]}")
    kind = max(kinds, key=_KIND_RANK.__getitem__) if kinds else "permutation"
    return Automorphism(tuple(p.size for p in perms), tuple(moves), kind, "; ".join(parts) or "identity")


def _swap(sizes: list[int], level: int, a: int, b: int, words: str) -> Automorphism:
    """The transposition of identical units ``a`` and ``b`` of level ``level``; ``words`` says what they are."""
    moves = tuple(
        (np.array([a, b], np.int64), np.array([b, a], np.int64)) if lv == level else (np.zeros(0, np.int64),) * 2
        for lv in range(len(sizes))
    )
    return Automorphism(tuple(sizes), moves, "identical", words.format(a=a, b=b))


# --------------------------------------------------------------------------- naming the group
def _compose(p: list[np.ndarray], q: list[np.ndarray]) -> list[np.ndarray]:
    """``p after q``: ``(p o q)[u] = p[q[u]]`` per level."""
    return [a[b] for a, b in zip(p, q)]


def _perm_order(p: list[np.ndarray]) -> int:
    out = 1
    for lv in p:
        for length in _cycle_lengths(lv):
            out = math.lcm(out, length)
    return out


def _power(p: list[np.ndarray], k: int) -> list[np.ndarray]:
    out = [np.arange(a.size) for a in p]
    base = p
    while k:
        if k & 1:
            out = _compose(base, out)
        base = _compose(base, base)
        k >>= 1
    return out


def _same(p: list[np.ndarray], q: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(p, q))


def _orbit_labels(perms: list[np.ndarray], n: int) -> np.ndarray:
    """Orbit label (its smallest unit) of each of ``n`` units under ``perms``."""
    label = np.arange(n)
    while True:
        new = label.copy()
        for p in perms:
            np.minimum.at(new, p, label)
            new = np.minimum(new, new[p])
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def _orbit_labels_pairs(swaps: list[np.ndarray], members: np.ndarray) -> np.ndarray:
    """Distinct components of ``members`` joined by the pairs in ``swaps``."""
    pos = {int(u): j for j, u in enumerate(members)}
    parent = list(range(members.size))

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for a, b in swaps:
        parent[find(pos[int(a)])] = find(pos[int(b)])
    return np.unique([find(j) for j in range(members.size)])


def _name_quotient(gens: list[list[np.ndarray]], q: int, names: list[str]) -> tuple[str, str]:
    """``(kind, words)`` of a group of order ``q`` generated by ``gens`` (lists of per-level permutations)."""
    if q == 1:
        return "trivial", "trivial"
    other = "other", f"a group of order {q:,}" if q < 10**12 else f"a group of order 2^{math.log2(q):.1f}"
    if not gens or len(gens) > _NAME_LIMIT:
        return other
    for g in gens:  # cyclic: one generator of full order
        if _perm_order(g) == q:
            d = _make(g, names, True).description
            return "cyclic", f"cyclic group C{q} generated by ({d})"
    # symmetric: on some orbit X of k units the generators act as transpositions that connect X, and |G| = k!
    for lv in range(len(names)):
        n = gens[0][lv].size
        orbit = _orbit_labels([g[lv] for g in gens], n)
        ids, sizes = np.unique(orbit, return_counts=True)
        for x in ids[sizes >= 3]:
            members = np.flatnonzero(orbit == x)
            k = members.size
            if math.factorial(k) != q:
                continue
            swaps = []
            for g in gens:
                moved = members[g[lv][members] != members]
                if moved.size > 2:
                    break
                if moved.size == 2:
                    swaps.append(moved)
            else:
                if swaps and _orbit_labels_pairs(swaps, members).size == 1:
                    return (
                        "symmetric",
                        f"symmetric group S{k}: all permutations of {k} {names[lv]} (the other units following)",
                    )
    if len(gens) > _DESCRIBE_LIMIT:
        return other
    # dihedral: r of order m = q / 2 >= 3 and an involution s outside <r> with s r s = r^-1
    if q % 2 == 0 and q >= 6 and len(gens) <= 16:
        m = q // 2
        cands = list(gens) + [_compose(a, b) for a in gens for b in gens if a is not b]
        rots = [r for r in cands if _perm_order(r) == m]
        invs = [s for s in cands if _perm_order(s) == 2]
        for r in rots[:8]:
            rinv = _power(r, m - 1)
            half = _power(r, m // 2) if m % 2 == 0 else None
            for s in invs[:16]:
                if _same(_compose(s, _compose(r, s)), rinv) and (half is None or not _same(s, half)):
                    return "dihedral", f"dihedral group D{m} (order {q}): rotations and reflections"
    # translations of a torus: on some level every generator is a translation and they generate q of them
    for lv in range(len(names)):
        n = gens[0][lv].size
        if n > 1 << 16:
            continue
        for c, h, w in _grids(n):
            if h * w < 2:
                continue
            vecs = [_translation(g[lv], c, h, w) for g in gens]
            if any(v is None for v in vecs):
                continue
            seen = {(0, 0)}
            frontier = [(0, 0)]
            while frontier and len(seen) <= q:
                a, b = frontier.pop()
                for va, vb in vecs:  # type: ignore[misc]
                    nxt = ((a + va) % h, (b + vb) % w)
                    if nxt not in seen:
                        seen.add(nxt)
                        frontier.append(nxt)
            if len(seen) == q:
                grid = f"{w}-cycle" if h == 1 else f"{h}x{w} torus"
                chan = f" (each of {c} channels)" if c > 1 else ""
                full = "all translations" if q == h * w else f"{q} translations"
                return "translations", f"{full} of the {grid} on the {names[lv]}{chan}"
    return other


def _identical_words(identical: list[list[np.ndarray]], names: list[str], single: bool) -> str:
    parts = []
    for lv, classes in enumerate(identical):
        if not classes:
            continue
        what = (
            ("identical columns (inputs)", "identical rows (outputs)")[lv]
            if single
            else f"identical units of {names[lv]}"
        )
        sizes, counts = np.unique([c.size for c in classes], return_counts=True)
        for s, k in zip(sizes, counts):
            s, k = int(s), int(k)
            group = f"S{s}" + (f"^{k}" if k > 1 else "")
            cls = ("pair" if s == 2 else "class") + ("s" if k > 1 and s == 2 else "es" if k > 1 else "")
            cls += "" if s == 2 else f" of {s}"
            parts.append(f"{group} on {k} {cls} {what}" if s > 2 else f"{group} on {k} {cls} of {what}")
    return " x ".join(parts)


# --------------------------------------------------------------------------- the entry points
def automorphism_group(
    layer_or_map: LayerMap | IndexMap,
    *,
    bias: bool = True,
    max_weights: int = DEFAULT_MAX_WEIGHTS,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    backend: str = "numba",
) -> SymmetryGroup:
    """The automorphism group of a layer's or a whole map's sharing pattern.

    A pair of permutations (``tau`` of the inputs, ``sigma`` of the outputs) belongs to the group of a
    layer when ``(indices, sign)[sigma(o), tau(i)] == (indices, sign)[o, i]`` for every weight: the
    layer is then equivariant to it for every table (Ravanbakhsh, Schneider & Poczos, ICML 2017).
    For an :class:`~hashlab.maps.IndexMap` the group permutes every level of units at once (the
    network's inputs, each hidden level shared by two layers, the outputs) and keeps every layer's
    pattern. The module docstring gives the algorithm.

    Parameters
    ----------
    layer_or_map : LayerMap or IndexMap
        Indices of shape (out_features, in_features), int16 or int32 in [-1, n) (``-1``: no weight);
        optional int8 signs. In a map, layer ``k + 1`` shares its inputs with layer ``k``'s outputs
        when ``in_features`` equals the previous ``out_features``; otherwise its inputs are units of
        their own (``SymmetryGroup.joined``).
    bias : bool
        Colour each output unit by its shared bias entry and sign (``bias_indices``, ``bias_sign``)
        when the layer has one. Default True. A layer without ``bias_indices`` has no shared bias:
        nothing is added.
    max_weights : int
        Refuse when the quotient pattern handed to bliss (distinct rows x distinct columns, summed over
        layers) has more weights than this (default 4,194,304). Refinement alone has no such bound.
    time_limit : float or None
        Seconds (wall time) before the computation is abandoned; None: no limit. Inside bliss the limit
        is enforced with SIGALRM on the main thread only; elsewhere it is checked between steps.
    backend : {"numba", "numpy"}
        Kernels of the identical-rows/columns step (:func:`hashlab.stats.kernels.kernels`).

    Returns
    -------
    SymmetryGroup
        ``order`` (exact int), ``log2_order``, ``generators`` (each with ``in_perm``, ``out_perm``,
        ``perm(level)`` and a plain ``description``), ``structure`` and ``describe()``.

    Raises
    ------
    ValueError
        If ``layer_or_map`` is neither a LayerMap nor an IndexMap, or a bound is not positive.
    SymmetryLimitError
        (a ValueError) if the quotient exceeds ``max_weights`` or the time exceeds ``time_limit``;
        the message gives the size or time and the parameter to raise.
    ImportError
        If python-igraph is not installed and bliss is needed (``pip install python-igraph``).

    Examples
    --------
    >>> from hashlab import build_map, HashSpec, ARCHITECTURES
    >>> imap = build_map(HashSpec(kind="modulus", table_size=1000), ARCHITECTURES["mnist-mlp"])
    >>> g = automorphism_group(imap.layers[0])
    >>> g.order == 2**75, g.structure
    (True, 'S2^75 on 75 pairs of identical rows (outputs)')
    """
    if isinstance(max_weights, bool) or not isinstance(max_weights, (int, np.integer)) or max_weights < 0:
        raise ValueError(f"max_weights must be an integer >= 0, got {max_weights!r}")
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    t0 = time.monotonic()
    deadline = None if time_limit is None else t0 + float(time_limit)
    p = _pattern(layer_or_map, bias)
    single = isinstance(layer_or_map, LayerMap)
    name = layer_or_map.name if isinstance(layer_or_map, LayerMap) else "network"
    try:
        return _compute(p, name, single, max_weights, deadline, t0, backend)
    except _Timeout as e:
        where = f" during {e.args[0]}" if e.args else ""
        raise SymmetryLimitError(
            f"{name}: the automorphism group took more than time_limit={time_limit:g} s{where} "
            f"({sum(b.keys.size for b in p.blocks):,} weights); pass a larger time_limit (CLI: "
            "--symmetry-time-limit SECONDS) or time_limit=None to wait"
        ) from None


def _compute(
    p: _Pattern,
    name: str,
    single: bool,
    max_weights: int,
    deadline: float | None,
    t0: float,
    backend: str,
) -> SymmetryGroup:
    labels = _identical_labels(p, backend)
    _check_deadline(deadline, "identical rows and columns")
    reps, cls, ranks, members, starts, identical = [], [], [], [], [], []
    for lab in labels:
        rep = np.flatnonzero(lab == np.arange(lab.size))
        c = np.searchsorted(rep, lab)
        srt = np.argsort(c, kind="stable")
        st = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=rep.size))]).astype(np.int64)
        rank = np.empty(lab.size, np.int64)
        rank[srt] = np.arange(lab.size) - st[c[srt]]
        reps.append(rep)
        cls.append(c)
        ranks.append(rank)
        members.append(srt.astype(np.int64))
        starts.append(st)
        big = np.flatnonzero(np.diff(st) >= 2)
        identical.append([srt[st[k] : st[k + 1]].astype(np.int64) for k in big])
    qsizes = [r.size for r in reps]
    qcolours = [np.stack([col[rep], np.diff(st)], 1) for col, rep, st in zip(p.colours, reps, starts)]
    qcolours_1d = [np.unique(c, axis=0, return_inverse=True)[1].reshape(-1) for c in qcolours]
    qkeys = [
        b.keys
        if reps[b.rows].size == b.keys.shape[0] and reps[b.cols].size == b.keys.shape[1]
        else b.keys[np.ix_(reps[b.rows], reps[b.cols])]
        for b in p.blocks
    ]
    uniq = _sorted_unique(np.concatenate([np.zeros(1, np.int64)] + [_sorted_unique(k) for k in qkeys]))
    # compact colours 1..K (int32 while they fit); 0 stays "no weight"
    kdt = np.int32 if uniq.size < 2**31 else np.int64
    qblocks = [(b.rows, b.cols, np.searchsorted(uniq, k).astype(kdt)) for b, k in zip(p.blocks, qkeys)]
    refined = _refine(qcolours_1d, qblocks, deadline)
    ncls = len(np.unique(np.concatenate(refined)))
    q_order, graph = 1, None
    q_gens: list[list[np.ndarray]] = []
    method = "refinement"
    if ncls < sum(qsizes):
        qweights = sum(k.size for _, _, k in qblocks)
        if qweights > max_weights:
            raise SymmetryLimitError(
                f"{name}: after removing identical rows and columns and colour refinement, "
                f"{qweights:,} weights ({' + '.join(f'{k.shape[0]}x{k.shape[1]}' for _, _, k in qblocks)}) are left "
                f"for bliss, above max_weights={max_weights:,}; pass a larger max_weights (CLI: "
                "--symmetry-max-weights N; bliss needs roughly 1 GB of memory and seconds to minutes per "
                "million weights) to try"
            )
        method = "bliss"
        q_order, q_gens, graph = _bliss(qsizes, refined, qblocks, deadline)
    # lift the quotient's generators: class k -> class pi(k), members matched in ascending order
    lifted = []
    for gen in q_gens:
        perms = []
        for lv in range(len(p.sizes)):
            img_cls = gen[lv][cls[lv]]
            perms.append(members[lv][starts[lv][img_cls] + ranks[lv]])
        lifted.append(perms)
    names = p.names
    words = (
        ["swap identical columns {a} and {b}", "swap identical rows {a} and {b}"]
        if single
        else [f"{n}: swap identical units {{a}} and {{b}}" for n in names]
    )
    gens = [
        _swap(p.sizes, lv, int(c[j]), int(c[j + 1]), words[lv])
        for lv, classes in enumerate(identical)
        for c in classes
        for j in range(c.size - 1)
    ]
    describe = len(lifted) <= _DESCRIBE_LIMIT
    gens += [_make(g, names, describe) for g in lifted]
    identical_order = 1
    for classes in identical:
        for c in classes:
            identical_order *= math.factorial(int(c.size))
    order = identical_order * q_order
    qkind, qwords = _name_quotient(lifted, q_order, names)
    iwords = _identical_words(identical, names, single)
    if order == 1:
        kind, structure = "trivial", "trivial (only the identity)"
    elif q_order == 1:
        kind, structure = "identical", iwords
    elif identical_order == 1:
        kind, structure = qkind, qwords
    else:
        kind, structure = qkind, f"{iwords}, extended by {qwords} acting on the classes"
    return SymmetryGroup(
        name=name,
        level_names=tuple(names),
        level_sizes=tuple(p.sizes),
        order=order,
        generators=tuple(gens),
        identical=tuple(tuple(c) for c in identical),
        structure=structure,
        kind=kind,
        method=method,
        seconds=time.monotonic() - t0,
        bliss_graph=graph,
        layers=tuple(b.name for b in p.blocks),
        joined=p.joined,
    )


def map_symmetry(
    imap: IndexMap,
    *,
    network: bool = True,
    bias: bool = True,
    max_weights: int = DEFAULT_MAX_WEIGHTS,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    backend: str = "numba",
) -> MapSymmetry:
    """:func:`automorphism_group` of every layer and (``network=True``) of the whole map.

    A layer or network beyond a bound becomes a :class:`Refusal` carrying the message instead of
    raising, so one oversized layer does not hide the others. ``time_limit`` applies to each group.

    Raises
    ------
    ValueError
        If ``imap`` is not an IndexMap or a bound is invalid.
    """
    if not isinstance(imap, IndexMap):
        raise ValueError(f"expected an IndexMap, got {type(imap).__name__}; build one with hashlab.build_map(...)")
    t0 = time.monotonic()
    kw = dict(bias=bias, max_weights=max_weights, time_limit=time_limit, backend=backend)

    def one(obj: LayerMap | IndexMap, name: str) -> SymmetryGroup | Refusal:
        try:
            return automorphism_group(obj, **kw)  # type: ignore[arg-type]
        except SymmetryLimitError as e:
            return Refusal(name, str(e))

    layers = tuple(one(lay, lay.name) for lay in imap.layers)
    net = one(imap, "network") if network else None
    return MapSymmetry(layers, net, time.monotonic() - t0)
