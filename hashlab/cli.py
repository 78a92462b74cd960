"""The ``hashlab`` console script: ``hashlab COMMAND --help``.

The library's own commands (``build``, ``cluster``, ``stats``, ``check``, ``figure``) live in
:mod:`hashlab.commands`. Packages that build on hashlab add commands through the entry-point group
``hashlab.commands`` (each entry point names a ``register(subparsers)`` function): the torch trainer
adds ``train``, the paper reproduction adds ``reproduce`` (pyproject.toml). hashlab itself never
imports them.

Exit codes: 0 success, 1 a check failed, 2 usage, 3 input, 4 environment, 70 internal error
(:mod:`hashlab.commands.errors`, docs/CLI.md). ``--debug`` shows the traceback of an error.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands.errors import add_debug_flag, run_cli
from .commands.plugins import command_entry_points
from .io.errors import UsageError

__all__ = ["main", "build_parser", "BUILTIN_COMMANDS", "command_names", "check_command_installed"]

BUILTIN_COMMANDS = ("build", "cluster", "stats", "check", "figure")
# the order of ``hashlab --help``: the pipeline's order, plugins without a place here come last
_HELP_ORDER = ("build", "cluster", "stats", "train", "check", "figure", "reproduce")


def command_names() -> tuple[str, ...]:
    """Every command ``hashlab`` offers: the built-in ones and those of the ``hashlab.commands`` group."""
    names = set(BUILTIN_COMMANDS) | set(command_entry_points())
    return tuple(sorted(names, key=lambda n: (_HELP_ORDER.index(n) if n in _HELP_ORDER else len(_HELP_ORDER), n)))


def build_parser() -> argparse.ArgumentParser:
    from .commands import build, check, cluster, figure, stats

    builtin = {
        "build": build.register,
        "cluster": cluster.register,
        "stats": stats.register,
        "check": check.register,
        "figure": figure.register,
    }
    plugins = command_entry_points()
    parser = argparse.ArgumentParser(
        prog="hashlab",
        description="Build, serialize, analyze and train weight-sharing (ArbNet) index maps "
        "(Chang & Lipson 2018; HashedNets, Chen et al. 2015).",
        epilog="exit codes: 0 ok, 1 check failed, 2 usage error, 3 bad input file or data, "
        "4 environment (permissions, disk, memory, missing package or device), 70 internal error",
    )
    parser.add_argument("--version", action="version", version=f"hashlab {__version__}")
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_names():
        register = builtin[name] if name in builtin else plugins[name].load()
        register(sub)
    return parser


def check_command_installed(cmd: str | None, installed: tuple[str, ...]) -> None:
    """Refuse a command of the pipeline that no installed package registers, saying how to get it.

    Raises
    ------
    UsageError
        If ``cmd`` is one of ``hashlab``'s known commands (train, reproduce) but not ``installed``:
        the entry points come from the installed package metadata, so a checkout that was not
        reinstalled after they were added lacks them.
    """
    if cmd in _HELP_ORDER and cmd not in installed:
        raise UsageError(
            f"`hashlab {cmd}` comes from an entry point of the hashlab.commands group, and no installed package "
            "registers it; reinstall the checkout so that its entry points are registered: pip install -e '.[torch]'"
        )


def _run(argv: list[str]) -> int:
    check_command_installed(next((a for a in argv if not a.startswith("-")), None), command_names())
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = next((a for a in argv if not a.startswith("-")), None)
    return run_cli(_run, argv, prog=f"hashlab {cmd}" if cmd in command_names() else "hashlab")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
