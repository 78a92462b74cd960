"""Validation helpers shared by the typed config dataclasses (HashSpec, ConvGeometry, TrainConfig)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["dataclass_from_dict", "check_int"]


def dataclass_from_dict(cls: type, d: dict[str, Any], error: type[Exception] = ValueError,
                        convert: Callable[[Any], Any] = lambda v: v):
    """Build dataclass ``cls`` from ``d`` (the inverse of its ``to_dict``), converting each value.

    Raises
    ------
    error
        If ``d`` has keys that are not fields of ``cls``; the message lists the known fields.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise error(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(names)}")
    return cls(**{k: convert(v) for k, v in d.items()})


def check_int(name: str, value: Any, lo: int, hi: int, error: type[Exception] = ValueError,
              hint: str | None = None) -> None:
    """Raise ``error`` unless ``value`` is an ``int`` (not a ``bool``) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise error(f"{name} must be an integer in [{lo}, {hi}], got {value!r}" + (f" ({hint})" if hint else ""))
