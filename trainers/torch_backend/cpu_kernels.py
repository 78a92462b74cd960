"""Serial numba kernels for :class:`~trainers.torch_backend.functional.TableGather` on the CPU.

Two loops, each the fast twin of one torch op that stays the plain reference:

* :func:`gather` ``out[p] = src[key[p]]``: :func:`torch.index_select` (``src.index_select(0, key)``);
* :func:`scatter_add` ``acc[key[p]] += grad[p]`` in increasing ``p``:
  ``acc.index_add_(0, key, grad)`` run on one thread, the same float adds in the same order, so
  the results are bitwise equal (``tests/trainers/torch_backend/test_cpu_kernels.py``).

Why not the torch ops: at 3072x2000 (6.1M weights, one thread) ``index_select`` took 8.9 ms and
``index_add_`` 12-18 ms against 3.4 ms and 4.5 ms for these loops, and ``index_select`` needs
int32 keys where these read int16 ones (half the resident map). The loops are compiled
``nogil`` and without ``parallel=``: numba's thread pool, started in a process that trains
with torch, slowed torch's own CPU kernels many times over on a 2-core box.

Both take and return numpy views of CPU tensors (:meth:`torch.Tensor.numpy`, no copy).
"""
from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = ["gather", "scatter_add", "SUPPORTED_DTYPES", "supported"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def supported(values: torch.Tensor, key: torch.Tensor) -> bool:
    """True if the numba loops handle these tensors (CPU, float32/float64, contiguous)."""
    return (values.device.type == "cpu" and key.device.type == "cpu" and values.dtype in SUPPORTED_DTYPES
            and values.is_contiguous() and key.is_contiguous())


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gather(src, key, out):  # pragma: no cover - compiled
    for p in range(key.shape[0]):
        out[p] = src[key[p]]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scatter_add(key, grad, acc):  # pragma: no cover - compiled
    for p in range(key.shape[0]):
        acc[key[p]] += grad[p]


def gather(src: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``src[key]``: a new tensor of ``key``'s length and ``src``'s dtype (``src.index_select(0, key)``).

    Args:
        src: float32/float64 CPU tensor of shape ``(S,)``.
        key: int16/int32/int64 CPU tensor of shape ``(N,)`` with values in ``[0, S)`` (not checked:
            the plan that made ``key`` guarantees it).

    Shape:
        - Output: ``(N,)``.
    """
    out = torch.empty(key.shape[0], dtype=src.dtype)
    _gather(src.numpy(), key.numpy(), out.numpy())
    return out


def scatter_add(acc: torch.Tensor, key: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``acc.index_add_(0, key, grad)`` in place on one thread, adds in increasing position; returns ``acc``.

    Args:
        acc: float32/float64 CPU tensor of shape ``(S,)``, contiguous.
        key: int16/int32/int64 CPU tensor of shape ``(N,)`` with values in ``[0, S)``.
        grad: CPU tensor of shape ``(N,)`` and ``acc``'s dtype.
    """
    _scatter_add(key.numpy(), np.ascontiguousarray(grad.numpy()), acc.numpy())
    return acc
