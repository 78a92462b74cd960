"""Derive argparse flags from a typed ``@dataclass`` and build the dataclass back from them.

Types are checked by argparse (``int``, ``float``, ``str``, ``Literal`` choices, ``bool``
switches, ``X | None``); the dataclass's ``__post_init__`` then validates values. Nothing is
``exec``ed or ``eval``ed.

The help text of a flag is the field's ``metadata["help"]`` (``field(default=..., metadata={"help":
"..."})``), so it lives next to the field it documents. A field without a default is a required
flag. A union of several types (other than ``X | None``) has no single argparse type and is
refused with a :class:`TypeError` naming the field when the parser is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal

__all__ = ["add_dataclass_arguments", "dataclass_from_args"]


def _unwrap_optional(cls: type, name: str, tp: Any) -> Any:
    """``X`` for ``X`` or ``X | None``; a union of several types is refused (no argparse type fits it)."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp
    rest = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(rest) != 1:
        raise TypeError(
            f"field {cls.__name__}.{name} has type {tp!r}, a union of several types; a command-line "
            "flag needs one type (X or X | None)"
        )
    return rest[0]


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--field-name`` option per field of dataclass ``cls`` (except ``skip``).

    The help text is ``field.metadata["help"]`` (plus the default); a field without a default is
    a required option.

    Raises
    ------
    TypeError
        If a field's type is a union of several types (other than ``X | None``) or not one of
        ``bool``, ``int``, ``float``, ``str``, a ``Literal``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = _unwrap_optional(cls, f.name, hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if f.default is dataclasses.MISSING else f.default
        text = f.metadata.get("help", "") + (f" (default: {default})" if default is not None else "")
        common: dict[str, Any] = {"dest": f.name, "help": text, "required": required}
        if not required:
            common["default"] = default
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(tp) is Literal:
            parser.add_argument(flag, choices=typing.get_args(tp), **common)
        elif tp in (int, float, str):
            parser.add_argument(flag, type=tp, metavar=tp.__name__.upper(), **common)
        else:
            raise TypeError(f"field {cls.__name__}.{f.name} has type {tp!r}, not supported on the command line")


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """Instantiate ``cls`` from the parsed flags that :func:`add_dataclass_arguments` added."""
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    kwargs.update(overrides)
    return cls(**kwargs)
