"""Weights hashed on the fly: a layer's entries, signs and zeros recomputed from ``(layer, row, col, seed)``.

:func:`~hashlab.maps.hashes.build_map` writes every weight's table entry into an index array: 2 to 8
bytes a weight, as much as the dense weights it replaces. Every hash of hashlab is a stateless
function of a weight's identifier (:mod:`hashlab.maps.kernels`), so a layer can instead recompute
its entries tile by tile inside the matmul and store nothing but the table: the idea of ROAST /
RzLinear (Desai et al., *Random Offset Block Embedding*, 2022), here for every kind hashlab builds.

:class:`LayerHash` holds what one layer's hash reads besides ``(row, col)`` (the same
:func:`~hashlab.maps.hashes.layer_streams` that ``build_map`` reads) plus, for a sparse layer, one
number: the largest mask hash among its zeroed weights (:func:`mask_threshold`), so that "one of
the ``round(s N)`` smallest mask hashes" becomes ``hash <= threshold`` per weight. The kernels:

* :func:`entries_rows_nb`: entries (``-1`` for a zero) and signs of rows ``[r0, r1)``;
* :func:`read_rows_nb`: those rows of the virtual weight matrix, ``sign * table[entry]``;
* :func:`read_scatter_rows_nb`: the same rows, and ``acc[entry] += sign * grad`` over them in
  row-major order (the backward pass of a layer: one hash pass gives both).

They are serial, ``nogil`` numba loops (a trainer runs them between torch's own multithreaded
matmuls; numba's thread pool in the same process slowed torch many times over, see
``trainers/torch_backend/cpu_kernels.py``). Their reference twin is :meth:`LayerHash.entries_ref`
(the numpy ``*_ref`` hashes of :mod:`hashlab.maps.kernels`), and both equal ``build_map``'s
indices and signs bit for bit (``tests/hashlab/maps/test_onthefly.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from . import kernels as K
from .hashes import _entries_ref, layer_streams
from .indexmap import ZERO
from .kernels import _INV53, GUIDE_BITS, _mod_magic, _xxh64_key, _xxh64_u64, divide_magic
from .spec import HashSpec, SpecError

__all__ = [
    "LayerHash",
    "KIND_CODES",
    "mask_threshold",
    "mask_threshold_ref",
    "entries_rows_nb",
    "read_rows_nb",
    "read_scatter_rows_nb",
]

KIND_CODES = {"identity": 0, "modulus": 0, "uniform": 1, "dirichlet": 2, "neighborhood": 3, "block": 4, "xxhash": 5}
"""The kernels' code of each :class:`~hashlab.maps.spec.HashSpec` kind (identity is modulus with ``n = N``)."""

# positions in LayerHash.ints / LayerHash.words (numba takes two small arrays instead of 20 arguments)
_KIND, _N, _START, _IN, _LAYER, _RADIUS, _BLOCK, _SIGN, _MASK = range(9)
_S_INDEX, _S_SIGN, _S_MASK, _THRESHOLD, _SEED, _MP, _SH1, _SH2, _WMP, _WSH1, _WSH2 = range(11)
_DIGIT = 16  # bits per pass of the radix select
_COLLECT = 1 << 16  # a bin this small is collected and sorted


# --------------------------------------------------------------------------- sparsity threshold
@nb.njit(cache=True, nogil=True)
def _mask_histogram(size, s, high, prefix, shift, counts):  # pragma: no cover - compiled
    """``counts[d] += 1`` for the digit ``d = (h >> shift) & 0xFFFF`` of every mask hash ``h`` whose bits above
    the digit (``h & high``) equal ``prefix``."""
    for i in range(size):
        h = _xxh64_u64(np.uint64(i), s)
        if (h & high) == prefix:
            counts[np.int64((h >> shift) & np.uint64(0xFFFF))] += 1


@nb.njit(cache=True, nogil=True)
def _mask_collect(size, s, high, prefix, out):  # pragma: no cover - compiled
    """The mask hashes with ``h & high == prefix``, in position order, into ``out`` (sized by the histogram)."""
    j = 0
    for i in range(size):
        h = _xxh64_u64(np.uint64(i), s)
        if (h & high) == prefix:
            out[j] = h
            j += 1
    return j


def mask_threshold(size: int, n_zero: int, seed: np.uint64, *, _collect: int = _COLLECT) -> np.uint64:
    """The ``n_zero``-th smallest of the mask hashes ``xxh64(i, seed)``, ``i < size``, in O(1) memory.

    ``build_map`` zeroes the ``n_zero`` weights of a layer with the smallest mask hashes; XXH64 of
    an 8-byte input is a bijection, so they never tie and a weight is zeroed exactly when its hash
    is at most this value. A radix select (16 bits a pass): each pass recomputes the hashes and
    counts the next digit of those that share the digits chosen so far, until the chosen bin holds
    at most 65,536 hashes, which one more pass collects and sorts. Usually 2 passes and a collect.

    Parameters
    ----------
    size : int
        Weights of the layer, ``>= 1``.
    n_zero : int
        Zeroed weights, in ``[1, size]``.
    seed : numpy.uint64
        The mask's stream seed (:attr:`~hashlab.maps.hashes.LayerStreams.s_mask`).

    Returns
    -------
    numpy.uint64

    Raises
    ------
    ValueError
        If ``n_zero`` is outside ``[1, size]``.

    Notes
    -----
    ``_collect`` (tests only) lowers the bin size that is collected, to exercise every pass.
    """
    if not 1 <= n_zero <= size:
        raise ValueError(f"n_zero must be in [1, size={size}], got {n_zero}")
    s = np.uint64(seed)
    rank = n_zero  # 1-based rank among the hashes that share the prefix
    high, prefix = np.uint64(0), np.uint64(0)
    counts = np.zeros(1 << _DIGIT, np.int64)
    for shift in range(64 - _DIGIT, -1, -_DIGIT):
        counts[:] = 0
        _mask_histogram(size, s, high, prefix, np.uint64(shift), counts)
        cum = np.cumsum(counts)
        digit = int(np.searchsorted(cum, rank))  # first bin whose cumulative count reaches the rank
        rank -= int(cum[digit - 1]) if digit else 0
        prefix |= np.uint64(digit) << np.uint64(shift)
        high |= np.uint64(0xFFFF) << np.uint64(shift)
        if counts[digit] <= _collect or shift == 0:
            found = np.empty(int(counts[digit]), np.uint64)
            _mask_collect(size, s, high, prefix, found)
            return np.uint64(np.sort(found)[rank - 1])
    raise AssertionError("unreachable: the last digit fixes one hash")  # pragma: no cover


def mask_threshold_ref(size: int, n_zero: int, seed: np.uint64) -> np.uint64:
    """:func:`mask_threshold`'s twin: every mask hash in memory, then :func:`numpy.partition` (8 bytes a weight)."""
    if not 1 <= n_zero <= size:
        raise ValueError(f"n_zero must be in [1, size={size}], got {n_zero}")
    h = K.xxh64_u64_ref(np.arange(size, dtype=np.uint64), np.uint64(seed))
    return np.uint64(np.partition(h, n_zero - 1)[n_zero - 1])


# --------------------------------------------------------------------------- row kernels
@nb.njit(inline="always")
def _row_live(ints, words, r, cols):  # pragma: no cover - compiled
    """The live columns of row ``r`` into ``cols[:m]``, increasing; returns ``m``. Branch-free compaction: a sparse
    row's zeros are as unpredictable as coin flips."""
    in_f = ints[_IN]
    if not ints[_MASK]:
        for c in range(in_f):
            cols[c] = c
        return in_f
    s_mask, threshold = words[_S_MASK], words[_THRESHOLD]
    local = r * in_f
    m = 0
    for c in range(in_f):
        cols[m] = c
        m += np.int64(_xxh64_u64(np.uint64(local + c), s_mask) > threshold)
    return m


@nb.njit(inline="always")
def _row_entries(ints, words, inner_cdf, guide, r, cols, m, key, sgn, ramp):  # pragma: no cover - compiled
    """Entries ``key[j]`` and signs ``sgn[j]`` (``+1`` / ``-1`` in ``sgn``'s dtype; all ``+1`` without a sign hash) of
    row ``r``'s live weights ``cols[:m]``. Each kind's arithmetic is the one of its ``build_map`` kernel
    (:mod:`hashlab.maps.kernels`); ``ramp`` (``in_features`` int64) is scratch for the block kind."""
    kind, n, in_f = ints[_KIND], ints[_N], ints[_IN]
    base = ints[_START] + r * in_f
    un = np.uint64(n)
    mp, sh1, sh2 = words[_MP], words[_SH1], words[_SH2]
    s = words[_S_INDEX]
    lane = np.uint64(ints[_LAYER]) | (np.uint64(r) << np.uint64(32))
    if kind == 0:  # identity / modulus: (id mod n)
        for j in range(m):
            key[j] = np.int64(_mod_magic(np.uint64(base + cols[j]), un, mp, sh1, sh2))
    elif kind == 1:  # uniform, eq. 2
        for j in range(m):
            key[j] = np.int64(_mod_magic(_xxh64_u64(np.uint64(base + cols[j]), s), un, mp, sh1, sh2))
    elif kind == 2:  # Dirichlet, eq. 9, through the guide table
        gshift = np.uint64(53 - GUIDE_BITS)
        for j in range(m):
            hb = _xxh64_u64(np.uint64(base + cols[j]), s) >> np.uint64(11)
            g = np.int64(hb >> gshift)
            lo = np.int64(guide[g])
            hi = np.int64(guide[g + 1])
            u = np.float64(hb) * _INV53
            while lo < hi:  # kernels._cdf_search
                mid = (lo + hi) >> 1
                if inner_cdf[mid] <= u:
                    lo = mid + 1
                else:
                    hi = mid
            key[j] = lo
    elif kind == 3:  # neighborhood, eq. 10
        radius = ints[_RADIUS]
        width = np.uint64(2 * radius + 1)
        wmp, wsh1, wsh2 = words[_WMP], words[_WSH1], words[_WSH2]
        for j in range(m):
            i = base + cols[j]
            v = i + np.int64(_mod_magic(_xxh64_u64(np.uint64(i), s), width, wmp, wsh1, wsh2)) - radius
            e = np.int64(_mod_magic(np.uint64(v if v >= 0 else -v - 1), un, mp, sh1, sh2))
            key[j] = e if v >= 0 else n - 1 - e  # Python's v mod n, also for v < 0
    elif kind == 4:  # block (ROBE-Z): one hash per block of the row, then a ramp that wraps at n
        block = ints[_BLOCK]
        for b0 in range(0, in_f, block):
            e = np.int64(_mod_magic(_xxh64_u64(np.uint64(base + b0), s), un, mp, sh1, sh2))
            for c in range(b0, min(b0 + block, in_f)):
                ramp[c] = e
                e += 1
                if e == n:
                    e = 0
        for j in range(m):
            key[j] = ramp[cols[j]]
    else:  # xxhash: HashedNets' (layer, row, col) key with the user's seed
        seed = words[_SEED]
        for j in range(m):
            key[j] = np.int64(_mod_magic(_xxh64_key(lane, np.uint64(cols[j]), seed), un, mp, sh1, sh2))
    if ints[_SIGN]:
        s_sign = words[_S_SIGN]
        for j in range(m):
            sgn[j] = 1 - 2 * np.int64(_xxh64_key(lane, np.uint64(cols[j]), s_sign) >> np.uint64(63))
    else:
        sgn[:m] = 1


@nb.njit(cache=True, nogil=True)
def entries_rows_nb(ints, words, inner_cdf, guide, r0, r1, key, sgn):  # pragma: no cover - compiled
    """Entries (``-1`` for a zero) and signs of rows ``[r0, r1)`` into the row-major ``key`` (int64) and ``sgn``
    (int8; a zeroed weight keeps its sign, as in ``build_map``), each of ``(r1 - r0) * in_features`` values."""
    in_f = ints[_IN]
    cols = np.empty(in_f, np.int64)
    k = np.empty(in_f, np.int64)
    sg = np.empty(in_f, np.int8)
    ramp = np.empty(in_f, np.int64)
    for r in range(r0, r1):
        m = _row_live(ints, words, r, cols)
        _row_entries(ints, words, inner_cdf, guide, r, cols, m, k, sg, ramp)
        j0 = (r - r0) * in_f
        key[j0 : j0 + in_f] = -1
        for j in range(m):
            key[j0 + cols[j]] = k[j]
        if ints[_SIGN]:  # every weight's sign, the zeroed ones' too (as build_map's sign array)
            lane = np.uint64(ints[_LAYER]) | (np.uint64(r) << np.uint64(32))
            for c in range(in_f):
                sgn[j0 + c] = 1 - 2 * np.int64(_xxh64_key(lane, np.uint64(c), words[_S_SIGN]) >> np.uint64(63))
        else:
            sgn[j0 : j0 + in_f] = 1


@nb.njit(inline="always")
def _fill_rows(ints, words, inner_cdf, guide, r0, r1, table, out, grad, acc, scatter):  # pragma: no cover
    """Rows ``[r0, r1)`` of the weight matrix into ``out``, and with ``scatter`` ``acc[entry] += sign * grad[j]``."""
    in_f = ints[_IN]
    cols = np.empty(in_f, np.int64)
    key = np.empty(in_f, np.int64)
    sgn = np.empty(in_f, table.dtype)
    ramp = np.empty(in_f, np.int64)
    for r in range(r0, r1):
        m = _row_live(ints, words, r, cols)
        _row_entries(ints, words, inner_cdf, guide, r, cols, m, key, sgn, ramp)
        j0 = (r - r0) * in_f
        row = out[j0 : j0 + in_f]
        if m < in_f:
            row[:] = 0
        if scatter:
            g = grad[j0 : j0 + in_f]
            for j in range(m):
                c, e, sj = cols[j], key[j], sgn[j]
                row[c] = table[e] * sj
                acc[e] += g[c] * sj
        else:
            for j in range(m):
                row[cols[j]] = table[key[j]] * sgn[j]


@nb.njit(cache=True, nogil=True)
def read_rows_nb(ints, words, inner_cdf, guide, r0, r1, table, out):  # pragma: no cover - compiled
    """Rows ``[r0, r1)`` of the virtual weight matrix: ``out[j] = sign * table[entry]`` (0 for a zero), row-major."""
    _fill_rows(ints, words, inner_cdf, guide, r0, r1, table, out, out[:0], table[:0], False)


@nb.njit(cache=True, nogil=True)
def read_scatter_rows_nb(ints, words, inner_cdf, guide, r0, r1, table, out, grad, acc):  # pragma: no cover
    """:func:`read_rows_nb` into ``out``, and ``acc[entry] += sign * grad[j]`` over the same rows in row-major
    order (``grad``: the weight gradient of rows ``[r0, r1)``, row-major) from the same hash pass."""
    _fill_rows(ints, words, inner_cdf, guide, r0, r1, table, out, grad, acc, True)


# --------------------------------------------------------------------------- the layer's constants
@dataclass(frozen=True, eq=False)
class LayerHash:
    """One layer's weight hash, evaluated per weight instead of stored.

    Build it with :meth:`from_spec`. ``ints`` and ``words`` pack the constants the kernels read (kind, modulus,
    identifier offset, ``in_features``, layer, radius, block, sign and mask flags; stream seeds, mask threshold,
    :func:`~hashlab.maps.kernels.divide_magic` constants), ``inner_cdf`` and ``guide`` the Dirichlet table's CDF
    and guide table (placeholders for other kinds). Resident size: :attr:`nbytes`, a few hundred bytes, or
    ``12 n + 64 KiB`` for a Dirichlet table of ``n`` entries, whatever the layer's shape.
    """

    spec: HashSpec
    layer: int
    out_features: int
    in_features: int
    table: int
    n: int
    n_zero: int
    ints: np.ndarray
    words: np.ndarray
    inner_cdf: np.ndarray
    guide: np.ndarray

    @classmethod
    def from_spec(cls, spec: HashSpec, shapes: list[tuple[int, int]], layer: int) -> LayerHash:
        """Layer ``layer`` of the map ``build_map`` would build for ``spec`` over weight matrices ``shapes``.

        Parameters
        ----------
        spec : HashSpec
            Any kind; ``hash_bias`` is ignored here (the biases are ``out_features`` long: a layer keeps them).
        shapes : list of (out_features, in_features)
            Every layer of the model, in order (``scope="global"`` offsets identifiers by the earlier layers, and
            with ``compression`` a ``"global"`` table's size depends on all of them).
        layer : int
            Which one, in ``[0, len(shapes))``.

        Returns
        -------
        LayerHash

        Raises
        ------
        SpecError
            If ``spec`` is not a HashSpec, or ``layer`` is out of range, or a shape is not two positive ints.
        """
        if not isinstance(spec, HashSpec):
            raise SpecError(f"spec must be a HashSpec, got {type(spec).__name__}; build one with HashSpec(kind=...)")
        shapes = [(int(o), int(i)) for o, i in shapes]
        if any(o < 1 or i < 1 for o, i in shapes):
            raise SpecError(f"every shape needs out_features >= 1 and in_features >= 1, got {shapes}")
        if not 0 <= layer < len(shapes):
            raise SpecError(f"layer {layer} is out of range for {len(shapes)} layer(s); count from 0")
        st = layer_streams(spec, shapes, spec.table_plan(shapes), layer)
        out_f, in_f = shapes[layer]
        if in_f >= 1 << 32 or out_f >= 1 << 32:
            raise SpecError(f"layer {layer} is {out_f} x {in_f}: HashedNets keys hold rows and columns below 2**32")
        threshold = mask_threshold(out_f * in_f, st.n_zero, st.s_mask) if st.n_zero else np.uint64(0)
        radius = int(spec.radius or 0)
        ints = np.array(
            [
                KIND_CODES[spec.kind],
                st.n,
                st.start,
                in_f,
                layer,
                radius,
                int(spec.block_size or in_f),
                int(spec.sign),
                int(st.n_zero > 0),
            ],
            np.int64,
        )
        words = np.array(
            [
                st.s_index,
                st.s_sign,
                st.s_mask,
                threshold,
                np.uint64(spec.seed),
                *divide_magic(st.n),
                *divide_magic(2 * radius + 1),
            ],
            np.uint64,
        )
        cdf = st.inner_cdf if st.inner_cdf is not None else np.zeros(1, np.float64)
        guide = st.guide if st.guide is not None else np.zeros(2, np.int32)
        return cls(spec, layer, out_f, in_f, st.table, st.n, st.n_zero, ints, words, cdf, guide)

    @property
    def nbytes(self) -> int:
        """Bytes this object holds for its kernels (the layer stores nothing else)."""
        return int(self.ints.nbytes + self.words.nbytes + self.inner_cdf.nbytes + self.guide.nbytes)

    def _rows(self, r0: int, r1: int | None) -> tuple[int, int]:
        r1 = self.out_features if r1 is None else r1
        if not 0 <= r0 <= r1 <= self.out_features:
            raise ValueError(f"rows [{r0}, {r1}) are not inside [0, {self.out_features})")
        return r0, r1

    def entries(self, r0: int = 0, r1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Entries and signs of rows ``[r0, r1)`` (:func:`entries_rows_nb`).

        Returns
        -------
        entries : ndarray of int64, shape (r1 - r0, in_features)
            In ``[0, n)``, ``-1`` (:data:`~hashlab.maps.indexmap.ZERO`) for a weight fixed at zero.
        signs : ndarray of int8, same shape
            ``+1`` / ``-1``; all ``+1`` without a sign hash.
        """
        r0, r1 = self._rows(r0, r1)
        key = np.empty((r1 - r0) * self.in_features, np.int64)
        sgn = np.empty(key.size, np.int8)
        entries_rows_nb(self.ints, self.words, self.inner_cdf, self.guide, r0, r1, key, sgn)
        return key.reshape(r1 - r0, self.in_features), sgn.reshape(r1 - r0, self.in_features)

    def entries_ref(self, r0: int = 0, r1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`entries`' plain-numpy twin: the ``*_ref`` hashes of :mod:`hashlab.maps.kernels` and
        :func:`mask_threshold_ref`."""
        r0, r1 = self._rows(r0, r1)
        in_f = self.in_features
        local = np.arange(r0 * in_f, r1 * in_f, dtype=np.int64)
        start, s_index = int(self.ints[_START]), self.words[_S_INDEX]
        cdf = self.inner_cdf if self.spec.kind == "dirichlet" else None
        key = _entries_ref(self.spec, self.layer, in_f, start, self.n, s_index, cdf, local)
        if self.n_zero:
            t = mask_threshold_ref(self.out_features * in_f, self.n_zero, self.words[_S_MASK])
            key = np.where(K.xxh64_u64_ref(local.astype(np.uint64), self.words[_S_MASK]) <= t, ZERO, key)
        if self.spec.sign:
            sgn = K.sign_ref(self.layer, local // in_f, local % in_f, self.words[_S_SIGN])
        else:
            sgn = np.ones(local.size, np.int8)
        return key.reshape(r1 - r0, in_f), sgn.reshape(r1 - r0, in_f)

    def read_rows(self, table: np.ndarray, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        """Rows ``[r0, r1)`` of the weight matrix into ``out`` (:func:`read_rows_nb`); returns ``out``.

        Parameters
        ----------
        table : ndarray of float32 or float64, shape (n,) or longer, contiguous
        r0, r1 : int
        out : ndarray of ``table``'s dtype, shape ((r1 - r0) * in_features,), contiguous
        """
        read_rows_nb(self.ints, self.words, self.inner_cdf, self.guide, r0, r1, table, out)
        return out

    def read_scatter_rows(
        self, table: np.ndarray, r0: int, r1: int, out: np.ndarray, grad: np.ndarray, acc: np.ndarray
    ) -> None:
        """:meth:`read_rows` and ``acc[entry] += sign * grad`` in row-major order (:func:`read_scatter_rows_nb`).

        ``grad`` (the weight gradient of the rows, row-major, ``out``'s shape) and ``acc`` (the table
        gradient, ``table``'s shape) share ``table``'s dtype.
        """
        read_scatter_rows_nb(self.ints, self.words, self.inner_cdf, self.guide, r0, r1, table, out, grad, acc)
