"""Validation helpers shared by the typed configs (HashSpec, ConvGeometry, TrainConfig, studies, index files).

One vocabulary for "an int but not a bool" and its kin. The ``is_*`` predicates answer whether a value
is acceptable (for callers that build a message of their own, e.g. over a whole list); the ``check_*``
functions raise the caller's error type with a message that names the field, the allowed values and
what was given, e.g. ``seed must be an integer in [0, 9223372036854775807], got -1 (any integer in
[0, 2**63))``, and return the value in its canonical Python type.

A ``bool`` is never an integer or a number here (``True`` is not a seed), and numpy scalars are
accepted only where a caller says ``numpy=True``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "dataclass_from_dict",
    "versioned_from_dict",
    "check_dict_version",
    "is_int",
    "is_real",
    "check_int",
    "check_real",
    "check_bool",
    "check_choice",
]


def dataclass_from_dict(
    cls: type, d: Mapping[str, Any], error: type[Exception] = ValueError, convert: Callable[[Any], Any] = lambda v: v
):
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


def check_dict_version(
    what: str, d: Mapping[str, Any], version: int, error: type[Exception] = ValueError
) -> dict[str, Any]:
    """``d`` without its ``"version"`` key, after checking that it is ``version``.

    A serialised config records the layout version of its dict (``"version"``, written by its
    ``to_dict``); a dict without one (written by hand) is read as ``version``.

    Parameters
    ----------
    what : str
        The config's name, for the message (``"HashSpec"``).
    d : mapping
        The serialised dict.
    version : int
        The one layout version this code reads.
    error : type of Exception
        The caller's error type.

    Returns
    -------
    dict
        The other keys of ``d``.

    Raises
    ------
    error
        If ``d["version"]`` is not ``version``: a greater integer names the version and says to
        upgrade hashlab (a newer hashlab wrote it); anything else is refused as unknown.
    """
    rest = dict(d)
    got = rest.pop("version", version)
    if got != version or not is_int(got):
        newer = is_int(got) and got > version
        raise error(
            f"{what} dict version {got!r} is not supported; this hashlab reads version {version}"
            + (
                "; the dict was written by a newer hashlab: upgrade hashlab to read it"
                if newer
                else f" (version {version} is the only one; the dict is damaged or not a {what} dict)"
            )
        )
    return rest


def versioned_from_dict(
    cls: type,
    d: Mapping[str, Any],
    version: int,
    added: Mapping[str, Any],
    error: type[Exception] = ValueError,
    convert: Callable[[Any], Any] = lambda v: v,
):
    """Build dataclass ``cls`` from its serialised dict: the one migration point of a config's dict.

    The version is checked (:func:`check_dict_version`), the fields that ``d`` lacks among
    ``added`` (fields added within ``version``) take the value that an older dict, written
    before they existed, means; then :func:`dataclass_from_dict`.

    Parameters
    ----------
    cls : type
        A dataclass with a ``to_dict`` that writes ``"version": version``.
    d : mapping
        The serialised dict.
    version : int
        The layout version ``cls.to_dict`` writes and the only one read.
    added : mapping of str to object
        Fields added within ``version``, with their value for a dict that lacks them.
    error : type of Exception
        The caller's error type.
    convert : callable
        Applied to each value (e.g. JSON lists back to tuples).

    Raises
    ------
    error
        On an unsupported version (with what to do) or keys that are not fields of ``cls``.
    """
    rest = check_dict_version(cls.__name__, d, version, error)
    return dataclass_from_dict(cls, {**added, **rest}, error, convert)


def is_int(value: Any, lo: int | None = None, hi: int | None = None, *, numpy: bool = False) -> bool:
    """Whether ``value`` is an integer (never a ``bool``) in ``[lo, hi]``.

    Parameters
    ----------
    value : object
    lo, hi : int or None
        Inclusive bounds; None: unbounded on that side.
    numpy : bool
        Also accept numpy integer scalars (``numpy.int64``, ...); never ``numpy.bool_``.

    Returns
    -------
    bool
    """
    if isinstance(value, bool) or not (isinstance(value, int) or (numpy and isinstance(value, np.integer))):
        return False
    return bool((lo is None or value >= lo) and (hi is None or value <= hi))


def is_real(
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
) -> bool:
    """Whether ``value`` is a Python ``int`` or ``float`` (never a ``bool``) within the bounds.

    Parameters
    ----------
    value : object
    lo, hi : float or None
        Bounds; None: unbounded on that side.
    lo_open, hi_open : bool
        Exclude the bound itself (``(lo, ...`` / ``..., hi)``).
    finite : bool
        Refuse NaN and the infinities.

    Returns
    -------
    bool
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    x = float(value)
    if math.isnan(x) or (finite and not math.isfinite(x)):
        return False
    if lo is not None and (x <= lo if lo_open else x < lo):
        return False
    return hi is None or (x < hi if hi_open else x <= hi)


def _int_range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer in [{lo}, {hi}]"
    if lo is not None:
        return f"an integer >= {lo}"
    return "an integer" if hi is None else f"an integer <= {hi}"


def _real_range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, finite: bool) -> str:
    what = "a finite number" if finite else "a number"
    if lo is not None and hi is not None:
        return f"{what} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo}"
    return what if hi is None else f"{what} {'<' if hi_open else '<='} {hi}"


def _fail(error: type[Exception], name: str, expected: str, value: Any, hint: str | None) -> Exception:
    return error(f"{name} must be {expected}, got {value!r}" + (f" ({hint})" if hint else ""))


def check_int(
    name: str,
    value: Any,
    lo: int | None = None,
    hi: int | None = None,
    error: type[Exception] = ValueError,
    hint: str | None = None,
    *,
    numpy: bool = False,
    expected: str | None = None,
) -> int:
    """Raise ``error`` unless ``value`` is an integer (not a ``bool``) in ``[lo, hi]``.

    Parameters
    ----------
    name : str
        The field, as the message names it.
    value : object
        What was given.
    lo, hi : int or None
        Inclusive bounds; None: unbounded on that side.
    error : type of Exception
        The caller's error type (e.g. ``SpecError``, ``ConfigError``).
    hint : str or None
        Appended in parentheses, e.g. ``"e.g. 1000"``.
    numpy : bool
        Also accept numpy integer scalars.
    expected : str or None
        The allowed values in the caller's words (``"a positive integer"``); default from the
        bounds (``"an integer in [1, 10]"``, ``"an integer >= 0"``).

    Returns
    -------
    int
        ``value`` as a Python ``int``.

    Raises
    ------
    error
        ``"{name} must be {expected}, got {value!r} ({hint})"``.
    """
    if not is_int(value, lo, hi, numpy=numpy):
        raise _fail(error, name, expected or _int_range(lo, hi), value, hint)
    return int(value)


def check_real(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    error: type[Exception] = ValueError,
    hint: str | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
    expected: str | None = None,
) -> float:
    """Raise ``error`` unless ``value`` is an ``int`` or ``float`` (not a ``bool``) within the bounds.

    Parameters
    ----------
    name : str
    value : object
    lo, hi : float or None
        Bounds; None: unbounded on that side.
    error : type of Exception
    hint : str or None
        Appended in parentheses.
    lo_open, hi_open : bool
        Exclude the bound itself.
    finite : bool
        Refuse NaN and the infinities (NaN is always refused).
    expected : str or None
        The allowed values in the caller's words; default from the bounds
        (``"a finite number in [0, 1)"``).

    Returns
    -------
    float

    Raises
    ------
    error
        ``"{name} must be {expected}, got {value!r} ({hint})"``.
    """
    if not is_real(value, lo, hi, lo_open=lo_open, hi_open=hi_open, finite=finite):
        raise _fail(error, name, expected or _real_range(lo, hi, lo_open, hi_open, finite), value, hint)
    return float(value)


def check_bool(
    name: str,
    value: Any,
    error: type[Exception] = ValueError,
    hint: str | None = None,
    *,
    numpy: bool = False,
    expected: str | None = None,
) -> bool:
    """Raise ``error`` unless ``value`` is ``True`` or ``False`` (not ``1`` or ``"yes"``).

    Parameters
    ----------
    name : str
    value : object
    error : type of Exception
    hint : str or None
        Appended in parentheses.
    numpy : bool
        Also accept ``numpy.bool_``.
    expected : str or None
        The allowed values in the caller's words (default ``"True or False"``), for a caller that
        accepts more (e.g. ``None``) and checks that itself.

    Returns
    -------
    bool

    Raises
    ------
    error
        ``"{name} must be True or False, got {value!r}"``.
    """
    if not isinstance(value, (bool, np.bool_) if numpy else bool):
        raise _fail(error, name, expected or "True or False", value, hint)
    return bool(value)


def check_choice(
    name: str, value: Any, choices: Iterable[Any], error: type[Exception] = ValueError, hint: str | None = None
) -> Any:
    """Raise ``error`` unless ``value`` is one of ``choices``.

    Parameters
    ----------
    name : str
    value : object
    choices : iterable
        The allowed values, in the order the message lists them.
    error : type of Exception
    hint : str or None
        Appended in parentheses.

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    error
        ``"{name} {value!r} is unknown; choose one of a, b, c"``.
    """
    allowed = list(choices)
    if value not in allowed or (isinstance(value, bool) and not any(c is value for c in allowed)):  # True == 1
        raise error(
            f"{name} {value!r} is unknown; choose one of {', '.join(map(str, allowed))}"
            + (f" ({hint})" if hint else "")
        )
    return value
