"""How the reports print numbers: accuracies as percent, intervals, differences in points, p-values."""

from __future__ import annotations

import math

__all__ = ["pct", "ci", "pp", "p_value"]


def pct(x: float | None) -> str:
    """An accuracy (a fraction) as percent with 2 decimals; ``"n/a"`` for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def ci(iv) -> str:
    """An :class:`~analysis.inference.Interval` of accuracies: ``"mean [low, high]"`` in percent."""
    return f"{pct(iv.mean)} [{pct(iv.low)}, {pct(iv.high)}]"


def pp(iv) -> str:
    """An :class:`~analysis.inference.Interval` of accuracy differences in percentage points, signed."""
    return f"{100 * iv.mean:+.2f} pp [{100 * iv.low:+.2f}, {100 * iv.high:+.2f}]"


def p_value(p: float | None) -> str:
    """Two significant digits, scientific below 1e-4; ``"n/a"`` for None or NaN."""
    return "n/a" if p is None or math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")
