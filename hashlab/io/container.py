"""The safetensors container under every index file, read strictly.

:func:`read_container` accepts exactly the files the reference ``safetensors`` reader accepts
(restricted to the dtypes index files use) and checks everything before a byte of the data
buffer is touched: header length, UTF-8, JSON syntax (no duplicate keys, no NaN/Infinity, no
lone surrogates, nesting at most :data:`MAX_JSON_DEPTH`), the header's types, and the tensors'
``data_offsets`` (integers, ordered, contiguous, non-overlapping, each exactly its shape's size,
together covering the data buffer exactly). See docs/FORMAT.md, "Container".
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..configs import is_int
from .errors import InputError

__all__ = [
    "FormatError",
    "LimitError",
    "TensorInfo",
    "Container",
    "read_container",
    "read_container_bytes",
    "strict_json",
    "DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
]

DTYPES: dict[str, np.dtype] = {
    "I8": np.dtype("<i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U8": np.dtype("u1"),  # bit-packed arrays (format v4)
}
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors reader's own limit
MAX_JSON_DEPTH = 64
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}


class FormatError(InputError):
    """An index file is malformed, inconsistent, of an unsupported version, or not an index file.

    A :class:`ValueError`; the message starts with the file's path and names the problem.
    """


class LimitError(FormatError):
    """An index file asks for more memory than its own size and the documented limit allow."""


def strict_json(text: str | bytes, where: str) -> Any:
    """Parse JSON as strictly as ``serde_json`` (the safetensors reader) does.

    Raises
    ------
    FormatError
        On invalid JSON, duplicate object keys, NaN / Infinity / overflowing numbers, lone UTF-16
        surrogates, or nesting deeper than :data:`MAX_JSON_DEPTH`.
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise FormatError(f"{where}: duplicate key {k!r}")
            out[k] = v
        return out

    def bad_constant(c: str) -> Any:
        raise FormatError(f"{where}: {c} is not valid JSON")

    def finite(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):
            raise FormatError(f"{where}: number {text} overflows a float")
        return v

    try:
        obj = json.loads(text, object_pairs_hook=pairs, parse_constant=bad_constant, parse_float=finite)
    except RecursionError:
        raise FormatError(f"{where}: JSON nested too deeply (limit {MAX_JSON_DEPTH})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{where}: not valid JSON ({e})") from None
    _check_tree(obj, where)
    return obj


def _check_tree(obj: Any, where: str) -> None:
    stack = [(obj, 1)]
    while stack:
        x, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise FormatError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(x, dict):
            for k, v in x.items():
                _check_str(k, where)
                stack.append((v, depth + 1))
        elif isinstance(x, list):
            stack.extend((v, depth + 1) for v in x)
        elif isinstance(x, str):
            _check_str(x, where)


def _check_str(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{where}: string {s[:40]!r} holds a lone UTF-16 surrogate") from None


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the container: its dtype, shape and absolute byte range in the file."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int


@dataclass(frozen=True)
class Container:
    """A checked safetensors header: ``metadata`` (str -> str), tensors by name, data buffer range."""

    path: Path
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]
    data_start: int
    size: int


def read_container(path: str | os.PathLike) -> Container:
    """Read and check the safetensors header of ``path`` (reads the header bytes only).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If any rule of docs/FORMAT.md "Container" is broken; the message names the rule.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError(f"{path}: is a directory, not an index file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        hlen = _header_length(path, f.read(8), size)
        hbytes = f.read(hlen)
    return _parse_header(path, hlen, hbytes, size)


def read_container_bytes(data: bytes | bytearray | memoryview, name: str) -> Container:
    """:func:`read_container` of a file held in memory; ``name`` labels it in messages (``Container.path``).

    Raises
    ------
    FormatError
        As :func:`read_container`.
    """
    label = Path(name)
    view = memoryview(data).cast("B")
    hlen = _header_length(label, bytes(view[:8]), len(view))
    return _parse_header(label, hlen, bytes(view[8 : 8 + hlen]), len(view))


def _header_length(path: Path, raw: bytes, size: int) -> int:
    if len(raw) < 8:
        raise FormatError(f"{path}: too short to be an index file ({size} bytes)")
    (hlen,) = struct.unpack("<Q", raw)
    if hlen > min(MAX_HEADER_BYTES, size - 8) or hlen < 2:
        raise FormatError(
            f"{path}: header length {hlen} is impossible for a {size}-byte file; "
            "the file is not a safetensors index file or is truncated"
        )
    return hlen


def _parse_header(path: Path, hlen: int, hbytes: bytes, size: int) -> Container:
    if not hbytes.startswith(b"{"):
        raise FormatError(f"{path}: the header does not start with '{{'; not a safetensors file")
    try:
        text = hbytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: header is not UTF-8 ({e}); the file is corrupt") from None
    header = strict_json(text, f"{path}: header")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{path}: __metadata__ must be an object of strings (a safetensors rule)")
    start = 8 + hlen
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != _TENSOR_KEYS:
            raise FormatError(f"{where}: must be an object with exactly the keys {sorted(_TENSOR_KEYS)}")
        if not isinstance(info["dtype"], str) or info["dtype"] not in DTYPES:
            raise FormatError(f"{where}: dtype {info['dtype']!r} is not one of {', '.join(DTYPES)}")
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(is_int(d, 0, 2**63 - 1) for d in shape):
            raise FormatError(f"{where}: shape {shape!r} must be a list of integers >= 0")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(is_int(o, 0, 2**63 - 1) for o in offs)
            or offs[0] > offs[1]
        ):
            raise FormatError(f"{where}: data_offsets {offs!r} must be two integers [begin, end], 0 <= begin <= end")
        dt = DTYPES[info["dtype"]]
        if offs[1] - offs[0] != math.prod(shape) * dt.itemsize:
            raise FormatError(
                f"{where}: byte range {offs[0]}..{offs[1]} does not hold shape {tuple(shape)} of {info['dtype']}"
            )
        tensors[name] = TensorInfo(name, dt, tuple(shape), start + offs[0], start + offs[1])
    pos = start
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != pos:
            what = "overlaps the previous tensor" if t.begin < pos else "leaves a gap after the previous tensor"
            raise FormatError(
                f"{path}: tensor {t.name!r} at data offset {t.begin - start} {what}; "
                "tensors must tile the data buffer back to back"
            )
        pos = t.end
    if pos != size:
        raise FormatError(
            f"{path}: the tensors end at byte {pos} but the file has {size} bytes; "
            "the file is truncated or corrupt, rebuild it with `hashlab build`"
        )
    return Container(path, meta, tensors, start, size)
