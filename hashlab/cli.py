"""The ``hashlab`` console script: ``hashlab {build,stats,train,check,figure,reproduce} --help``."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .io.format import FormatError
from .maps.spec import SpecError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .commands import build, check, figure, reproduce, stats, train

    parser = argparse.ArgumentParser(
        prog="hashlab",
        description="Build, serialize, analyze and train weight-sharing (ArbNet) index maps "
                    "(Chang & Lipson 2018; HashedNets, Chen et al. 2015).")
    parser.add_argument("--version", action="version", version=f"hashlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in (build, stats, train, check, figure, reproduce):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the process exit code (0 ok, 1 check failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SpecError, FormatError, FileNotFoundError, ValueError) as e:
        print(f"hashlab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
