"""Stateless ArbNet ops: materialise a virtual weight matrix from a shared table."""
from __future__ import annotations

import torch

__all__ = ["gather_weight"]


def gather_weight(table: torch.Tensor, indices: torch.Tensor, sign: torch.Tensor | None = None) -> torch.Tensor:
    """Virtual weights ``W = sign * table[indices]``, with ``W = 0`` where ``indices == -1``.

    Autograd gives the table the gradient ``dL/dtable[e] = sum over weights w with
    indices[w] == e of sign[w] * dL/dW[w]`` (Chang & Lipson 2018, section 2); zeroed
    weights contribute nothing.

    Args:
        table: shared entries, float tensor of shape ``(n,)``.
        indices: integer tensor of any shape with values in ``[-1, n)``.
        sign: optional tensor of ``indices``'s shape with values in ``{-1, +1}``.

    Shape:
        - Output: ``indices.shape``, dtype and device of ``table``.
    """
    keep = indices >= 0
    w = table[indices.clamp_min(0).long()] * keep  # (*indices.shape)
    if sign is not None:
        w = w * sign
    return w
