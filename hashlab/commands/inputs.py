"""Shared by the commands that read an index file: the ``--max-table-entries`` flag and a checked load."""

from __future__ import annotations

import argparse

from ..io.format import MAX_TABLE_ENTRIES, load_index_file
from ..io.paths import check_input_file
from ..maps.indexmap import IndexMap

__all__ = ["add_max_table_entries", "load_input_map"]


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
