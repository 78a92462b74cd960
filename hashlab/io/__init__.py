"""Stage 2, io: an :class:`~hashlab.maps.IndexMap` in, an index file (format v1, docs/FORMAT.md) out, and back.

Also the atomic writes every hashlab output goes through. Trainers read maps through this package only.
"""
from .atomic import atomic_open, atomic_write_json, atomic_write_text
from .format import FORMAT_NAME, FORMAT_VERSION, FormatError, load_index_file, read_header, save_index_file

__all__ = [
    "atomic_open", "atomic_write_json", "atomic_write_text",
    "FORMAT_NAME", "FORMAT_VERSION", "FormatError", "load_index_file", "read_header", "save_index_file",
]
