"""Stage 3, stats: an :class:`~hashlab.maps.IndexMap` in, a :class:`MapReport` (balance, uniformity,
locality, theory checks; docs/STATS.md), its text, JSON and figures out.

``from hashlab.stats import map_report, format_report`` is the entry point; the parts live in
``balance``, ``kernels`` (numba with numpy twins), ``locality``, ``theory`` and ``plots``. The names
below load :mod:`hashlab.stats.balance` (and scipy.stats) on first use, so importing one part, such
as the kernels, does not import the others.
"""
from __future__ import annotations

import importlib

__all__ = [
    "STATS_SCHEMA", "STATS_VERSION", "BalanceStats", "SignStats", "LayerReport", "MapReport", "MapAnalyzer",
    "map_report", "format_report", "balance_stats", "sign_stats", "expected_max_load", "entropy_nats",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module(".balance", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
