"""Serial numba kernels for :class:`~trainers.torch_backend.functional.TableGather` on the CPU.

Two loops, each the fast twin of one torch op that stays the plain reference:

* :func:`gather` ``out[p] = src[key[p]]``: :func:`torch.index_select` (``src.index_select(0, key)``);
* :func:`scatter_add` ``acc[key[p]] += grad[p]`` in increasing ``p``:
  ``acc.index_add_(0, key, grad)`` run on one thread, the same float adds in the same order, so
  the results are bitwise equal (``tests/trainers/torch_backend/test_cpu_kernels.py``);
* :func:`gather_rows` / :func:`scatter_add_rows`, the same for a *row list* (the live weights
  only, row by row: ``cols[j]`` the column of live weight ``j``, ``row_ptr`` where each row's
  list starts), so a sparse map costs in proportion to its live weights; twins
  ``out[pos] = src.index_select(0, key)`` and ``acc.index_add_(0, key, grad[pos])`` with
  ``pos = row * ncols + cols`` (:func:`row_positions`).

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

__all__ = ["gather", "scatter_add", "gather_rows", "scatter_add_rows", "row_positions", "SUPPORTED_DTYPES", "supported"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def supported(values: torch.Tensor, key: torch.Tensor) -> bool:
    """True if the numba loops handle these tensors (CPU, float32/float64, contiguous)."""
    return (
        values.device.type == "cpu"
        and key.device.type == "cpu"
        and values.dtype in SUPPORTED_DTYPES
        and values.is_contiguous()
        and key.is_contiguous()
    )


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


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _gather_rows(src, key, cols, row_ptr, ncols, out):  # pragma: no cover - compiled
    for r in range(row_ptr.shape[0] - 1):
        row = out[r * ncols : (r + 1) * ncols]
        for j in range(row_ptr[r], row_ptr[r + 1]):
            row[cols[j]] = src[key[j]]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scatter_add_rows(key, cols, row_ptr, ncols, grad, acc):  # pragma: no cover - compiled
    for r in range(row_ptr.shape[0] - 1):
        row = grad[r * ncols : (r + 1) * ncols]
        for j in range(row_ptr[r], row_ptr[r + 1]):
            acc[key[j]] += row[cols[j]]


def row_positions(cols: torch.Tensor, row_ptr: torch.Tensor, ncols: int) -> torch.Tensor:
    """Flat positions ``row * ncols + cols[j]`` of a row list's weights, int64 ``(L,)``."""
    rows = torch.repeat_interleave(torch.arange(row_ptr.numel() - 1, device=cols.device), row_ptr.diff())
    return rows * ncols + cols.long()


def gather_rows(
    src: torch.Tensor, key: torch.Tensor, cols: torch.Tensor, row_ptr: torch.Tensor, ncols: int
) -> torch.Tensor:
    """Row-major ``(R * ncols,)`` weights: ``src[key[j]]`` at row ``r``, column ``cols[j]`` of the list, 0 elsewhere.

    Args:
        src: float32/float64 CPU tensor of shape ``(S,)``.
        key: int16/int32/int64 ``(L,)`` in ``[0, S)``, the live weights in row-major order.
        cols: int16/int32/int64 ``(L,)`` in ``[0, ncols)``, increasing within each row.
        row_ptr: int64 ``(R + 1,)``, nondecreasing from 0 to ``L``: row ``r`` holds list
            entries ``row_ptr[r]:row_ptr[r + 1]``.
        ncols: columns per row.

    Shape:
        - Output: ``(R * ncols,)``, ``src``'s dtype.
    """
    out = torch.zeros((row_ptr.numel() - 1) * ncols, dtype=src.dtype)
    _gather_rows(src.numpy(), key.numpy(), cols.numpy(), row_ptr.numpy(), ncols, out.numpy())
    return out


def scatter_add_rows(
    acc: torch.Tensor, key: torch.Tensor, cols: torch.Tensor, row_ptr: torch.Tensor, ncols: int, grad: torch.Tensor
) -> torch.Tensor:
    """``acc[key[j]] += grad[row * ncols + cols[j]]`` over the row list in order, in place; returns ``acc``.

    Arguments as :func:`gather_rows`; ``grad`` is ``(R * ncols,)`` of ``acc``'s dtype.
    """
    _scatter_add_rows(
        key.numpy(), cols.numpy(), row_ptr.numpy(), ncols, np.ascontiguousarray(grad.numpy()), acc.numpy()
    )
    return acc
