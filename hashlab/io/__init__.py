"""Stage 2, io: an :class:`~hashlab.maps.IndexMap` in, an index file out (format v4: the spec alone for a map its
spec rebuilds, else bit-packed arrays; v1-v3 on request; docs/FORMAT.md), and back.

Also the atomic writes every hashlab output goes through, the path checks entry points run
before any work (:mod:`hashlab.io.paths`) and the error classes with their exit codes
(:mod:`hashlab.io.errors`), and the reader of trained weight files (:mod:`hashlab.io.weights`).
Trainers read maps through this package only.
"""

from .atomic import atomic_open, atomic_write_json, atomic_write_text
from .errors import EnvironmentProblem, InputError, UsageError
from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_REGENERATED_WEIGHTS,
    MAX_TABLE_ENTRIES,
    STORAGES,
    FormatError,
    LimitError,
    index_file_bytes,
    load_index_bytes,
    load_index_file,
    read_header,
    save_index_file,
)
from .weights import read_weights

__all__ = [
    "atomic_open",
    "atomic_write_json",
    "atomic_write_text",
    "EnvironmentProblem",
    "InputError",
    "UsageError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_TABLE_ENTRIES",
    "MAX_REGENERATED_WEIGHTS",
    "STORAGES",
    "FormatError",
    "LimitError",
    "load_index_file",
    "load_index_bytes",
    "index_file_bytes",
    "read_header",
    "save_index_file",
    "read_weights",
]
