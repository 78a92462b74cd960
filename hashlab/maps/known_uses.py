"""The literature's known uses of weight sharing, as index maps.

Each builder returns an :class:`~hashlab.maps.IndexMap` of one or more layers that an ArbNet trainer
reads like any other map; :func:`hashlab.equiv.symmetry.automorphism_group` names the group each one
builds in, and :func:`hashlab.equiv.tying.find_ties` recognises the ties across layers.

* :func:`circulant_map`: ``W[o, i] = w[(i - o) mod n]``, the cyclic group ``C_n`` (a circular convolution);
* :func:`toeplitz_map`: ``W[o, i] = w[i - o]``, a linear convolution without wrap-around (trivial group);
* :func:`deepsets_map`: ``lambda I + gamma 11^T`` per channel pair, the symmetric group ``S_n`` (Zaheer et al.,
  *Deep Sets*, NeurIPS 2017);
* :func:`transpose_tied_map`: decoder = encoder transposed, one global table (tied autoencoders; Press & Wolf,
  EACL 2017, output-embedding tying);
* :func:`shared_layers_map`: the same entries in every layer, one global table (ShaResNet, Boulch 2018; ALBERT,
  Lan et al., ICLR 2020);
* group convolutions: :func:`hashlab.maps.equivariant.group_conv_map` (Cohen & Welling, ICML 2016).
"""

from __future__ import annotations

import numpy as np

from .equivariant import cyclic_group_table, group_conv_map
from .indexmap import IndexMap, LayerMap, index_dtype

__all__ = ["circulant_map", "toeplitz_map", "deepsets_map", "transpose_tied_map", "shared_layers_map"]


def _size(v, name: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def circulant_map(n: int, in_channels: int = 1, out_channels: int = 1, *, bias: bool = False) -> IndexMap:
    """A circulant layer on ``n`` positions: ``W[(co, o), (ci, i)] = w[co, ci, (i - o) mod n]``.

    The group convolution of the cyclic group (:func:`~hashlab.maps.equivariant.group_conv_map` of
    :func:`~hashlab.maps.equivariant.cyclic_group_table`): equivariant to cyclic shifts of the
    positions. Its automorphism group is exactly ``C_n`` for one channel and ``n >= 3``.

    Returns
    -------
    IndexMap
        One layer ``"circulant"`` of shape ``(out_channels * n, in_channels * n)``, table
        ``out_channels * in_channels * n`` (``+ out_channels`` with ``bias``).

    Raises
    ------
    ValueError
        If a size is below 1.
    """
    imap = group_conv_map(cyclic_group_table(_size(n, "n")), in_channels, out_channels, bias=bias, name="circulant")
    return IndexMap(imap.layers, imap.table_sizes, {**imap.spec, "builder": "circulant_map", "n": int(n)})


def toeplitz_map(out_features: int, in_features: int, *, bias: bool = False) -> IndexMap:
    """A Toeplitz layer: ``W[o, i] = w[i - o + out_features - 1]``, one entry per diagonal.

    A 1-d linear (zero-padded, not circular) convolution with a kernel as wide as the layer: shifting
    the input shifts the output only away from the boundary, so its finite automorphism group is
    trivial (no permutation keeps the pattern), unlike :func:`circulant_map`'s.

    Returns
    -------
    IndexMap
        One layer ``"toeplitz"`` of shape ``(out_features, in_features)``, table
        ``out_features + in_features - 1`` (``+ 1`` shared bias entry with ``bias``).

    Raises
    ------
    ValueError
        If a size is below 1.
    """
    r, c = _size(out_features, "out_features"), _size(in_features, "in_features")
    diag = r + c - 1
    size = diag + (1 if bias else 0)
    dt = index_dtype(size)
    o, i = np.meshgrid(np.arange(r), np.arange(c), indexing="ij")
    idx = (i - o + r - 1).astype(dt)
    bias_idx = np.full(r, diag, dt) if bias else None
    spec = {"builder": "toeplitz_map", "out_features": r, "in_features": c, "bias": bias}
    return IndexMap((LayerMap("toeplitz", idx, 0, bias_indices=bias_idx),), (size,), spec)


def deepsets_map(set_size: int, in_channels: int = 1, out_channels: int = 1, *, bias: bool = False) -> IndexMap:
    """A permutation-equivariant set layer: ``W = Lambda (x) I + Gamma (x) 11^T``.

    Zaheer et al., *Deep Sets* (NeurIPS 2017), eq. 4 with channels: output ``(co, x)`` reads
    ``lambda[co, ci]`` from input ``(ci, x)`` and ``gamma[co, ci]`` from every other element
    ``(ci, y)``. Features are ``channel * set_size + element``. The layer commutes with every
    permutation of the set's elements: for one channel its automorphism group is ``S_set_size``.

    Returns
    -------
    IndexMap
        One layer ``"deepsets"`` of shape ``(out_channels * set_size, in_channels * set_size)``, table
        ``2 * out_channels * in_channels`` entries (``lambda`` even, ``gamma`` odd; ``+ out_channels``
        bias entries with ``bias``).

    Raises
    ------
    ValueError
        If a size is below 1.
    """
    n = _size(set_size, "set_size")
    cin, cout = _size(in_channels, "in_channels"), _size(out_channels, "out_channels")
    kernel = 2 * cin * cout
    size = kernel + (cout if bias else 0)
    dt = index_dtype(size)
    co = np.arange(cout)[:, None, None, None]
    ci = np.arange(cin)[None, None, :, None]
    off = ~np.eye(n, dtype=bool)[None, :, None, :]
    idx = (2 * (co * cin + ci) + off).reshape(cout * n, cin * n).astype(dt)
    bias_idx = (kernel + np.repeat(np.arange(cout), n)).astype(dt) if bias else None
    spec = {"builder": "deepsets_map", "set_size": n, "in_channels": cin, "out_channels": cout, "bias": bias}
    return IndexMap((LayerMap("deepsets", idx, 0, bias_indices=bias_idx),), (size,), spec)


def transpose_tied_map(in_features: int, hidden_features: int) -> IndexMap:
    """Two layers whose second is the transpose of the first, reading one global table.

    The tied autoencoder (decoder = encoder transposed) and output-embedding tying (Press & Wolf,
    *Using the Output Embedding to Improve Language Models*, EACL 2017: the output projection is the
    input embedding transposed). Encoder ``fc0`` (``hidden x in``): weight ``(h, i)`` reads entry
    ``h * in_features + i``; decoder ``fc1`` (``in x hidden``): ``fc1.indices == fc0.indices.T``.

    Returns
    -------
    IndexMap
        Layers ``fc0`` and ``fc1``, one table of ``in_features * hidden_features`` entries (scope global).

    Raises
    ------
    ValueError
        If a size is below 1.
    """
    c, h = _size(in_features, "in_features"), _size(hidden_features, "hidden_features")
    size = c * h
    dt = index_dtype(size)
    enc = np.arange(size, dtype=np.int64).reshape(h, c).astype(dt)
    layers = (LayerMap("fc0", enc, 0), LayerMap("fc1", np.ascontiguousarray(enc.T), 0))
    spec = {"builder": "transpose_tied_map", "in_features": c, "hidden_features": h, "scope": "global"}
    return IndexMap(layers, (size,), spec)


def shared_layers_map(features: int, depth: int, base: IndexMap | None = None) -> IndexMap:
    """``depth`` square layers that all read the same entries of one global table.

    Sharing across layers as in ShaResNet (Boulch, 2018: one convolution per stage shared by its
    residual blocks) and ALBERT (Lan et al., ICLR 2020: every transformer layer shares one set of
    parameters). By default each layer is dense (``features x features``, entry
    ``row * features + col``); ``base`` gives another one-layer pattern to repeat (its first layer,
    which must be ``features x features``, and its table), e.g. ``circulant_map(features)``.

    Returns
    -------
    IndexMap
        Layers ``fc0 .. fc{depth-1}`` with identical indices (and signs and bias entries), one table.

    Raises
    ------
    ValueError
        If a size is below 1 or ``base``'s first layer is not ``features x features``.
    """
    n, d = _size(features, "features"), _size(depth, "depth")
    if base is None:
        size = n * n
        lay = LayerMap("fc0", np.arange(size, dtype=np.int64).reshape(n, n).astype(index_dtype(size)), 0)
    else:
        if not isinstance(base, IndexMap):
            raise ValueError(f"base must be an IndexMap (e.g. circulant_map({n})), got {type(base).__name__}")
        lay = base.layers[0]
        if lay.indices.shape != (n, n):
            raise ValueError(f"base's first layer is {lay.out_features}x{lay.in_features}, not {n}x{n}")
        size = base.table_sizes[lay.table]
    layers = tuple(
        LayerMap(f"fc{k}", lay.indices, 0, lay.sign, lay.bias_indices, dict(lay.attrs), lay.bias_sign) for k in range(d)
    )
    spec = {"builder": "shared_layers_map", "features": n, "depth": d, "scope": "global"}
    if base is not None:
        spec["base"] = base.spec
    return IndexMap(layers, (size,), spec)
