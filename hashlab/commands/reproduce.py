"""``hashlab reproduce``: the paper reproduction (``python -m analysis.reproduce``) under the hashlab command.

Arguments are passed through unchanged; ``hashlab reproduce --help`` lists them.
"""
from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", add_help=False, prefix_chars="\x00",  # every argument passes through
                       help="reproduce the paper: run a profile's studies, write results.csv, figures and REPORT.md",
                       description="Same as python -m analysis.reproduce; see hashlab reproduce --help.")
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.reproduce import main  # the CLI is the top layer: it may call the studies

    return main(args.args, prog="hashlab reproduce")
