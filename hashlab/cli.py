"""The ``hashlab`` console script: ``hashlab {build,cluster,stats,train,check,figure,reproduce} --help``.

Exit codes: 0 success, 1 a check failed, 2 usage, 3 input, 4 environment, 70 internal error
(:mod:`hashlab.commands.errors`, docs/CLI.md). ``--debug`` shows the traceback of an error.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands.errors import add_debug_flag, run_cli

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = ("build", "cluster", "stats", "train", "check", "figure", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    from .commands import build, check, cluster, figure, reproduce, stats, train

    parser = argparse.ArgumentParser(
        prog="hashlab",
        description="Build, serialize, analyze and train weight-sharing (ArbNet) index maps "
                    "(Chang & Lipson 2018; HashedNets, Chen et al. 2015).",
        epilog="exit codes: 0 ok, 1 check failed, 2 usage error, 3 bad input file or data, "
               "4 environment (permissions, disk, memory, missing package or device), 70 internal error")
    parser.add_argument("--version", action="version", version=f"hashlab {__version__}")
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in (build, cluster, stats, train, check, figure, reproduce):
        mod.register(sub)
    return parser


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = next((a for a in argv if not a.startswith("-")), None)
    return run_cli(_run, argv, prog=f"hashlab {cmd}" if cmd in COMMANDS else "hashlab")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
