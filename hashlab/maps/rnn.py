"""Unrolled Elman RNNs as ArbNets: T tied steps = an MLP with a global modulus hash (paper section 2).

An Elman RNN ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)`` unrolled over ``T`` steps is a stack of
``T`` fully connected layers ``rnn.t0 .. rnn.t{T-1}``, each of shape ``(H, I + H)`` = ``[W_ih | W_hh]``
acting on ``concat(x_t, h_{t-1})`` (``h_{-1} = 0``). All steps read one table, so weight ``(h, j)``
of every step reads entry ``h * (I + H) + j``: with global identifiers ``t * H(I+H) + h(I+H) + j``
that is exactly the modulus hash ``i mod n`` (eq. 1) with ``n = H(I+H)`` and one global table.

Table layout (the contract with ``trainers/torch_backend``): entries ``[0, H(I+H))`` are
``torch.cat([weight_ih_l0, weight_hh_l0], dim=1).flatten()``; with ``bias`` entry ``H(I+H) + h``
is the total bias ``bias_ih_l0[h] + bias_hh_l0[h]`` of hidden unit ``h``.
"""

from __future__ import annotations

import numpy as np

from .._version import __version__
from .geometry import RNNGeometry
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .spec import SpecError

__all__ = ["RNNGeometry", "rnn_map"]


def rnn_map(geometry: RNNGeometry) -> IndexMap:
    """Index map of an Elman RNN unrolled over ``geometry.steps`` steps.

    Parameters
    ----------
    geometry : RNNGeometry

    Returns
    -------
    IndexMap
        Layers ``rnn.t0 .. rnn.t{T-1}``, each of shape ``(H, I + H)`` with ``indices[h, j] =
        h * (I + H) + j`` (int16 or int32), all reading table 0 of ``geometry.table_size``
        entries; ``bias_indices = H(I+H) + arange(H)`` (all ``-1`` without bias);
        ``attrs = {"rnn": {...geometry, "step": t}}``; ``spec = {"builder": "rnn", ...}``.
        Flattened, layer ``t``'s indices equal ``(t * H(I+H) + arange(H(I+H))) mod H(I+H)``:
        the global modulus hash (eq. 1).

    Raises
    ------
    SpecError
        If ``geometry`` is not an :class:`RNNGeometry`.
    """
    if not isinstance(geometry, RNNGeometry):
        raise SpecError(f"geometry must be an RNNGeometry, got {type(geometry).__name__}")
    g = geometry
    dt = index_dtype(g.table_size)
    step = np.arange(g.step_weights, dtype=np.int64).reshape(g.step_shape).astype(dt)
    if g.bias:
        bias = np.arange(g.step_weights, g.table_size).astype(dt)
    else:
        bias = np.full(g.hidden_size, ZERO, dtype=dt)
    layers = tuple(
        LayerMap(
            name=f"rnn.t{t}",
            indices=step.copy(),
            table=0,
            bias_indices=bias.copy(),
            attrs={"rnn": {**g.to_dict(), "step": t}},
        )
        for t in range(g.steps)
    )
    spec = {"builder": "rnn", **g.to_dict(), "hashlab_version": __version__}
    return IndexMap(layers=layers, table_sizes=(g.table_size,), spec=spec)
