"""Derive argparse flags from a typed ``@dataclass`` and build the dataclass back from them.

Types are checked by argparse (``int``, ``float``, ``str``, ``Literal`` choices, ``bool``
switches, ``X | None``); the dataclass's ``__post_init__`` then validates values. Nothing is
``exec``ed or ``eval``ed.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal

__all__ = ["add_dataclass_arguments", "dataclass_from_args"]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ("version",),
                            help: dict[str, str] | None = None) -> None:
    """Add one ``--field-name`` option per field of dataclass ``cls`` (except ``skip``)."""
    hints = typing.get_type_hints(cls)
    help = help or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        text = help.get(f.name, "") + (f" (default: {default})" if default is not None else "")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif typing.get_origin(tp) is Literal:
            parser.add_argument(flag, dest=f.name, choices=typing.get_args(tp), default=default, help=text)
        elif tp in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=tp, default=default, help=text,
                                metavar=tp.__name__.upper())
        else:  # pragma: no cover - guards future fields of unsupported types
            raise TypeError(f"field {cls.__name__}.{f.name} has type {tp!r}, not supported on the command line")


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """Instantiate ``cls`` from the parsed flags that :func:`add_dataclass_arguments` added."""
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    kwargs.update(overrides)
    return cls(**kwargs)
