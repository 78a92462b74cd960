"""Shannon entropy of a table's usage (paper eq. 7): the primitive that balance and theory share."""

from __future__ import annotations

import numpy as np

__all__ = ["entropy_nats"]


def entropy_nats(loads: np.ndarray) -> float:
    """Shannon entropy (nats) of the usage distribution ``loads / loads.sum()`` (paper eq. 7).

    Empty entries contribute 0. Returns 0.0 when ``loads.sum() == 0``.

    Parameters
    ----------
    loads : ndarray of non-negative integers, any shape
    """
    loads = np.asarray(loads, dtype=np.float64).ravel()
    total = loads.sum()
    if total <= 0:
        return 0.0
    p = loads[loads > 0] / total
    return float(-(p * np.log(p)).sum())
