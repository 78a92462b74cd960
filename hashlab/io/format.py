"""Index file format v1: the contract between hashlab and any trainer.

A v1 index file is a valid `safetensors <https://github.com/huggingface/safetensors>`_ file
with a hashlab header in ``__metadata__``. It holds no pickle, is memory-mappable and is
readable by numpy alone. The normative specification is ``docs/FORMAT.md``; this module is
its reference writer and reader, and ``tests/hashlab/io/test_format.py`` pins the bytes with a
golden file.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .atomic import atomic_open
from ..maps.indexmap import IndexMap, LayerMap

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "FormatError", "save_index_file", "load_index_file", "read_header"]

FORMAT_NAME = "hashlab.index"
FORMAT_VERSION = 1
_METADATA_KEYS = {"format", "format_version", "hashlab_version", "spec", "tables", "layers"}
_LAYER_KEYS = {"name", "out_features", "in_features", "table", "sign", "bias", "attrs"}
_DTYPES = {"I8": np.dtype("<i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4")}
_CODES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20


class FormatError(ValueError):
    """An index file is malformed, of an unsupported version, or not an index file."""


def _tensors(imap: IndexMap) -> list[tuple[str, np.ndarray]]:
    out = []
    for k, lay in enumerate(imap.layers):
        out.append((f"layers.{k}.indices", lay.indices))
        if lay.sign is not None:
            out.append((f"layers.{k}.sign", lay.sign))
        if lay.bias_indices is not None:
            out.append((f"layers.{k}.bias_indices", lay.bias_indices))
    # largest itemsize first keeps every tensor aligned to its itemsize in the mmap
    out.sort(key=lambda t: -t[1].dtype.itemsize)
    return out


def save_index_file(imap: IndexMap, path: str | os.PathLike) -> Path:
    """Write ``imap`` to ``path`` as format v1, atomically.

    Parameters
    ----------
    imap : IndexMap
        Validated (index ranges included) before anything is written.
    path : path-like
        Destination; conventionally ``*.hidx.safetensors`` or ``*.safetensors``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``imap`` is invalid or its ``spec`` / ``attrs`` are not JSON-serialisable.
    """
    imap.validate(check_values=True)
    layers_meta = [
        {"name": lay.name, "out_features": lay.out_features, "in_features": lay.in_features,
         "table": lay.table, "sign": lay.sign is not None, "bias": lay.bias_indices is not None,
         "attrs": lay.attrs}
        for lay in imap.layers
    ]
    try:
        metadata = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "hashlab_version": __version__,
            "spec": json.dumps(imap.spec, sort_keys=True, separators=(",", ":")),
            "tables": json.dumps(list(imap.table_sizes), separators=(",", ":")),
            "layers": json.dumps(layers_meta, sort_keys=True, separators=(",", ":")),
        }
    except TypeError as e:
        raise ValueError(f"spec and layer attrs must be JSON-serialisable: {e}") from None
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    tensors = _tensors(imap)
    for name, arr in tensors:
        nbytes = arr.size * arr.dtype.itemsize
        header[name] = {"dtype": _CODES[arr.dtype.newbyteorder("<")], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-(8 + len(hbytes)) % 8)  # pad so the data buffer starts 8-aligned
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, arr in tensors:
            f.write(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    return path


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """Read and check the safetensors header of an index file.

    Returns
    -------
    header : dict
        The parsed JSON header, ``__metadata__`` included (values still strings).
    data_start : int
        Byte offset of the data buffer.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not a hashlab index file, or is from a newer format version.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise FormatError(f"{path}: too short to be an index file ({size} bytes)")
        (hlen,) = struct.unpack("<Q", raw)
        if hlen > min(_MAX_HEADER, size - 8):
            raise FormatError(f"{path}: header length {hlen} is impossible for a {size}-byte file; "
                              "the file is not a safetensors index file or is truncated")
        try:
            header = json.loads(f.read(hlen).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: header is not valid JSON ({e}); the file is corrupt") from None
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a hashlab index file (its __metadata__.format is not {FORMAT_NAME!r}); "
                          "create one with `hashlab build`")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise FormatError(f"{path}: format_version {meta.get('format_version')!r} is not an integer") from None
    if version > FORMAT_VERSION:
        raise FormatError(f"{path}: index format version {version} is newer than this hashlab reads "
                          f"({FORMAT_VERSION}); upgrade hashlab (pip install -U hashlab)")
    if version < 1:
        raise FormatError(f"{path}: index format version {version} does not exist")
    unknown = sorted(set(meta) - _METADATA_KEYS)
    missing = sorted(_METADATA_KEYS - set(meta))
    if unknown or missing:
        raise FormatError(f"{path}: metadata fields unknown {unknown} / missing {missing} for format v1; "
                          "the file was not written by a v1 writer")
    return header, 8 + hlen


def load_index_file(path: str | os.PathLike, mmap: bool = True, validate: bool = True) -> IndexMap:
    """Read a v1 index file with numpy alone.

    Parameters
    ----------
    path : path-like
    mmap : bool
        Return read-only ``numpy.memmap``-backed arrays (no copy) if True, else in-memory copies.
    validate : bool
        Check every index is in ``[-1, table_size)`` and every sign is +-1 (O(N)).

    Returns
    -------
    IndexMap

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not a v1 index file, is truncated, or its tensors disagree with its header.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"index file {path} does not exist; create it with `hashlab build ... -o {path}`")
    header, start = read_header(path)
    meta = header.pop("__metadata__")
    try:
        spec = json.loads(meta["spec"])
        tables = [int(t) for t in json.loads(meta["tables"])]
        layers_meta = json.loads(meta["layers"])
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise FormatError(f"{path}: metadata is not valid JSON ({e})") from None
    size = path.stat().st_size
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if start + end != size:
        raise FormatError(f"{path}: data buffer should end at byte {start + end} but the file has {size} bytes; "
                          "the file is truncated or corrupt, rebuild it with `hashlab build`")
    buf = np.memmap(path, dtype=np.uint8, mode="r") if mmap else np.fromfile(path, dtype=np.uint8)

    def tensor(name: str, required: bool) -> np.ndarray | None:
        info = header.pop(name, None)
        if info is None:
            if required:
                raise FormatError(f"{path}: tensor {name!r} is missing")
            return None
        if info.get("dtype") not in _DTYPES:
            raise FormatError(f"{path}: tensor {name!r} has dtype {info.get('dtype')!r}; v1 allows I8, I16, I32")
        b, e = info["data_offsets"]
        dt = _DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        if e - b != int(np.prod(shape)) * dt.itemsize:
            raise FormatError(f"{path}: tensor {name!r} byte range {b}..{e} does not match shape {shape}")
        return buf[start + b:start + e].view(dt).reshape(shape)

    layers = []
    for k, lm in enumerate(layers_meta):
        if set(lm) != _LAYER_KEYS:
            raise FormatError(f"{path}: layer {k} has fields {sorted(lm)}; format v1 has exactly {sorted(_LAYER_KEYS)}")
        idx = tensor(f"layers.{k}.indices", True)
        if idx.shape != (lm["out_features"], lm["in_features"]):
            raise FormatError(f"{path}: layer {k} indices have shape {idx.shape}, header says "
                              f"({lm['out_features']}, {lm['in_features']})")
        layers.append(LayerMap(
            name=lm["name"], indices=idx, table=int(lm["table"]),
            sign=tensor(f"layers.{k}.sign", bool(lm["sign"])),
            bias_indices=tensor(f"layers.{k}.bias_indices", bool(lm["bias"])),
            attrs=lm["attrs"],
        ))
    if header:
        raise FormatError(f"{path}: unknown tensors {sorted(header)} for format v1")
    try:
        imap = IndexMap(layers=tuple(layers), table_sizes=tuple(tables), spec=spec)
        if validate:
            imap.validate(check_values=True)
    except ValueError as e:
        raise FormatError(f"{path}: {e}") from None
    return imap
