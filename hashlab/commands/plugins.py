"""Commands and numeric checks that other packages register with hashlab through entry points.

Two groups (declared in a package's ``pyproject.toml``, read with :mod:`importlib.metadata`):

``hashlab.commands``
    ``NAME = "package.module:register"``: a function ``register(subparsers)`` that adds the
    subcommand ``hashlab NAME`` (its parser and ``func``).
``hashlab.equivalence``
    ``conv`` and ``rnn``: functions ``check(geometry, imap, *, dtype, batch_size, seed)`` that run an
    index map as an ArbNet and compare it with torch's own layer (used by ``hashlab check``).

hashlab itself never imports the packages that provide them: the library stays below its users.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..io.errors import EnvironmentProblem

__all__ = ["COMMAND_GROUP", "EQUIVALENCE_GROUP", "command_entry_points", "load_equivalence"]

COMMAND_GROUP = "hashlab.commands"
EQUIVALENCE_GROUP = "hashlab.equivalence"


def command_entry_points() -> dict[str, EntryPoint]:
    """The ``hashlab.commands`` entry points by command name (a copy; the scan runs once per process)."""
    return dict(_command_entry_points())


@functools.cache
def _command_entry_points() -> tuple[tuple[str, EntryPoint], ...]:
    # reading the installed packages' metadata takes a few ms, and one CLI call asks several times
    return tuple((ep.name, ep) for ep in entry_points(group=COMMAND_GROUP))


def load_equivalence(kind: str) -> Any:
    """The numeric equivalence check registered as ``kind`` (``"conv"`` or ``"rnn"``).

    Raises
    ------
    EnvironmentProblem
        If no installed package registers it (exit code 4), with the install command that adds one.
    ImportError
        If the registered module cannot be imported (e.g. torch is missing; exit code 4 as well).
    """
    found = {ep.name: ep for ep in entry_points(group=EQUIVALENCE_GROUP)}
    if kind not in found:
        raise EnvironmentProblem(
            0,
            f"no numeric {kind} check is installed (entry-point group {EQUIVALENCE_GROUP!r}); "
            "install the torch trainer with: pip install -e '.[torch]'",
        )
    return found[kind].load()
