"""dataclass_args: flags derived from a dataclass take their help from field metadata, a field without a
default is a required flag, and a union of several types is refused when the parser is built."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from hashlab.commands.dataclass_args import add_dataclass_arguments, dataclass_from_args


@dataclass(frozen=True)
class Small:
    name: str = field(metadata={"help": "a required name"})
    count: int = field(default=3, metadata={"help": "how many"})
    mode: Literal["a", "b"] = "a"
    limit: float | None = None
    flag: bool = field(default=False, metadata={"help": "switch it on"})


@dataclass(frozen=True)
class Mixed:
    value: int | str = 1


@dataclass(frozen=True)
class MixedOptional:
    value: int | str | None = None


def _parser(cls: type) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_dataclass_arguments(p, cls)
    return p


def test_help_comes_from_field_metadata():
    text = _parser(Small).format_help()
    assert "a required name" in text and "how many (default: 3)" in text and "switch it on" in text
    actions = {a.dest: a for a in _parser(Small)._actions}
    assert actions["mode"].help == " (default: a)" and actions["limit"].help == ""


def test_field_without_default_is_a_required_flag(capsys):
    p = _parser(Small)
    with pytest.raises(SystemExit):
        p.parse_args([])
    assert "the following arguments are required: --name" in capsys.readouterr().err
    got = dataclass_from_args(Small, p.parse_args(["--name", "x", "--limit", "0.5", "--flag"]))
    assert got == Small(name="x", count=3, mode="a", limit=0.5, flag=True)


@pytest.mark.parametrize("cls", [Mixed, MixedOptional])
def test_union_of_several_types_is_refused_naming_the_field(cls):
    with pytest.raises(TypeError, match=rf"field {cls.__name__}\.value has type .* a union of several types"):
        _parser(cls)
