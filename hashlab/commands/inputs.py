"""Shared by the commands that read an index file: the ``--max-table-entries`` flag, a checked load, and the
bounds of the symmetry group (``--no-symmetry``, ``--symmetry-time-limit``, ``--symmetry-max-weights``)."""

from __future__ import annotations

import argparse

from ..io.format import MAX_TABLE_ENTRIES, load_index_file
from ..io.paths import check_input_file
from ..maps.indexmap import IndexMap

__all__ = ["add_max_table_entries", "load_input_map", "add_symmetry_flags", "symmetry_bounds"]


def add_max_table_entries(p: argparse.ArgumentParser) -> None:
    """Add ``--max-table-entries N`` (default :data:`hashlab.io.format.MAX_TABLE_ENTRIES`)."""
    p.add_argument(
        "--max-table-entries",
        type=int,
        default=MAX_TABLE_ENTRIES,
        metavar="N",
        help="refuse index files declaring more table entries than this before allocating them "
        f"(default: {MAX_TABLE_ENTRIES:,}; raise it on purpose for huge tables)",
    )


def load_input_map(path: str, args: argparse.Namespace) -> IndexMap:
    """:func:`~hashlab.io.paths.check_input_file`, then :func:`~hashlab.io.format.load_index_file`."""
    check_input_file(path, "index file", "create it with `hashlab build ... -o FILE`")
    return load_index_file(path, max_table_entries=getattr(args, "max_table_entries", MAX_TABLE_ENTRIES))


def add_symmetry_flags(p) -> None:
    """Add ``--no-symmetry``, ``--symmetry-time-limit SECONDS`` and ``--symmetry-max-weights N``.

    ``p`` is a parser or an argument group. The defaults are None (resolved by :func:`symmetry_bounds`), so that a
    command can tell whether a flag was given.
    """
    from ..equiv.symmetry import DEFAULT_MAX_WEIGHTS, DEFAULT_TIME_LIMIT

    p.add_argument(
        "--no-symmetry",
        action="store_true",
        help="skip the symmetry: the automorphism group of each layer and of the network (computed with "
        "python-igraph's bliss where colour refinement does not settle it)",
    )
    p.add_argument(
        "--symmetry-time-limit",
        type=float,
        metavar="SECONDS",
        help=f"give up on a group after this many seconds and say so (default: {DEFAULT_TIME_LIMIT:g}; 0: no limit)",
    )
    p.add_argument(
        "--symmetry-max-weights",
        type=int,
        metavar="N",
        help="refuse a group whose pattern left for bliss, after removing identical rows and columns and colour "
        f"refinement, has more weights than this (default: {DEFAULT_MAX_WEIGHTS:,})",
    )


def symmetry_bounds(args: argparse.Namespace) -> tuple[int, float | None]:
    """``(max_weights, time_limit)`` from the flags of :func:`add_symmetry_flags` (time limit 0: None).

    Raises
    ------
    ValueError
        If a bound is negative.
    """
    from ..equiv.symmetry import DEFAULT_MAX_WEIGHTS, DEFAULT_TIME_LIMIT

    mw = getattr(args, "symmetry_max_weights", None)
    tl = getattr(args, "symmetry_time_limit", None)
    mw = DEFAULT_MAX_WEIGHTS if mw is None else mw
    tl = DEFAULT_TIME_LIMIT if tl is None else tl
    if mw < 0:
        raise ValueError(f"--symmetry-max-weights must be >= 0, got {mw}")
    if tl < 0:
        raise ValueError(f"--symmetry-time-limit must be >= 0 seconds (0: no limit), got {tl:g}")
    return mw, (None if tl == 0 else tl)
