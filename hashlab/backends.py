"""The compute backends of hashlab's kernels, and the one function that picks a backend's kernel set.

Each stage that has kernels (:mod:`hashlab.maps.kernels`, :mod:`hashlab.stats.kernels`) keeps one
named set per backend (a ``NamedTuple``: the numba kernels, or their plain-numpy reference twins)
in a registry keyed by backend name; :func:`select` is how every caller gets one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["BACKENDS", "select"]

BACKENDS = ("numba", "numpy")
"""Backend names, the default first: ``"numba"`` (parallel kernels) and ``"numpy"`` (reference twins)."""

_Kernels = TypeVar("_Kernels")


def select(registry: Mapping[str, _Kernels], backend: str) -> _Kernels:
    """The kernel set that ``registry`` holds for ``backend``.

    Parameters
    ----------
    registry : mapping of str to kernel set
        One stage's kernel sets keyed by the names of :data:`BACKENDS`.
    backend : {"numba", "numpy"}

    Returns
    -------
    kernel set
        ``registry[backend]``.

    Raises
    ------
    ValueError
        If ``backend`` is not one of :data:`BACKENDS` (the message lists them).
    """
    if not isinstance(backend, str) or backend not in BACKENDS or backend not in registry:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return registry[backend]
