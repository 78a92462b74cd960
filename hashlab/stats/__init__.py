"""Stage 3, stats: an :class:`~hashlab.maps.IndexMap` in, a :class:`MapReport` (balance, uniformity,
locality, degeneracy, theory checks; docs/STATS.md), its text, JSON and figures out.

``from hashlab.stats import map_report, format_report`` is the entry point; the parts live in
``balance`` (the analyzer and report), ``text`` (the printed report), ``kernels`` (numba with numpy twins,
by backend), ``locality``, ``degeneracy``, ``theory`` and ``plots``.
The names below load their module (:mod:`hashlab.stats.balance` brings scipy.stats) on first use, so
importing one part, such as the kernels, does not import the others.
"""

from __future__ import annotations

import importlib

# the public names of the stage, by the module that defines them (loaded on first use)
_LAZY = {
    ".balance": "STATS_SCHEMA STATS_VERSION BalanceStats SignStats LayerReport MapReport MapAnalyzer map_report "
    "balance_stats sign_stats expected_max_load entropy_nats",
    ".text": "format_report",
    ".degeneracy": "LayerDegeneracy MapDegeneracy layer_degeneracy map_degeneracy",
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names.split()}
__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
