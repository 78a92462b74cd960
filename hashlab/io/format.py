"""Index file format (v3, v2 and v1 read and written): the contract between hashlab and any trainer.

An index file is a valid `safetensors <https://github.com/huggingface/safetensors>`_ file
with a hashlab header in ``__metadata__``. It holds no pickle, is memory-mappable and is
readable by numpy alone. The normative specification is ``docs/FORMAT.md``; this module is
its reference writer and reader (the container rules are in :mod:`hashlab.io.container`), and
``tests/hashlab/io/test_format.py`` pins the bytes of every version with golden files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..configs import is_int
from ..maps.indexmap import IndexMap, LayerMap
from ..maps.spec import HashSpec
from .atomic import atomic_open
from .container import DTYPES, Container, FormatError, LimitError, read_container, strict_json

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MAX_TABLE_ENTRIES",
    "FormatError",
    "LimitError",
    "save_index_file",
    "load_index_file",
    "read_header",
    "payload_checksum",
]

FORMAT_NAME = "hashlab.index"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAX_TABLE_ENTRIES = 2**26
"""Default bound on table entries a file may declare without storing them (``max_table_entries``).

67,108,864 entries: 256 MiB of float32 parameters in a trainer, 512 MiB of int64 loads in
``hashlab stats``. A file that declares more is refused before anything is allocated.
"""
_METADATA_KEYS = {1: {"format", "format_version", "hashlab_version", "spec", "tables", "layers"}}
_METADATA_KEYS[2] = _METADATA_KEYS[1] | {"checksum"}
_METADATA_KEYS[3] = _METADATA_KEYS[2]
_LAYER_KEYS = {1: {"name", "out_features", "in_features", "table", "sign", "bias", "attrs"}}
_LAYER_KEYS[2] = _LAYER_KEYS[1]
_LAYER_KEYS[3] = _LAYER_KEYS[2] | {"bias_sign"}
_CODES = {v: k for k, v in DTYPES.items()}
_MAX_DIM = 2**31 - 1
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_TENSOR_NAME = re.compile(
    r"layers\.(0|[1-9][0-9]{0,8})\.(indices|sign|bias_indices|bias_sign)"
    r"|table\.(0|[1-9][0-9]{0,8})"
)


def _tensors(imap: IndexMap) -> list[tuple[str, np.ndarray]]:
    out = [(f"table.{t}", init) for t, init in enumerate(imap.initial_tables or ()) if init is not None]
    for k, lay in enumerate(imap.layers):
        out.append((f"layers.{k}.indices", lay.indices))
        if lay.sign is not None:
            out.append((f"layers.{k}.sign", lay.sign))
        if lay.bias_indices is not None:
            out.append((f"layers.{k}.bias_indices", lay.bias_indices))
        if lay.bias_sign is not None:
            out.append((f"layers.{k}.bias_sign", lay.bias_sign))
    # largest itemsize first keeps every tensor aligned to its itemsize in the mmap (stable sort)
    out.sort(key=lambda t: -t[1].dtype.itemsize)
    return out


def payload_checksum(data: Any) -> str:
    """``"sha256:<hex>"`` of a data buffer (bytes-like), the v2 ``checksum`` metadata value."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def needed_version(imap: IndexMap) -> int:
    """The oldest format version (>= 2) that holds ``imap``: 3 for bias signs or a spec with a
    compression budget or hashed biases (readers before v3 cannot check those), else 2."""
    spec = imap.spec or {}
    v3 = (
        any(lay.bias_sign is not None for lay in imap.layers)
        or spec.get("compression") is not None
        or bool(spec.get("hash_bias", False))
    )
    return 3 if v3 else 2


def save_index_file(imap: IndexMap, path: str | os.PathLike, version: int | None = None) -> Path:
    """Write ``imap`` to ``path`` as an index file, atomically.

    Parameters
    ----------
    imap : IndexMap
        Validated (index ranges included) before anything is written.
    path : path-like
        Destination; conventionally ``*.hidx.safetensors`` or ``*.safetensors``.
    version : {None, 3, 2, 1}
        Format version to write. None (default): the oldest that holds the map
        (:func:`needed_version`: 3 for bias signs, compression budgets and hashed biases, else 2),
        so a file readable by older hashlab stays so. v2 adds the payload checksum and the
        optional initial tables; v1 is for readers that predate v2 and cannot hold initial tables.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``imap`` is invalid, its ``spec`` / ``attrs`` are not JSON-serialisable, or
        ``version`` cannot hold it (initial tables need 2, bias signs and budgets 3).
    """
    if version is not None and version not in READABLE_VERSIONS:
        raise ValueError(f"format version must be one of {READABLE_VERSIONS}, got {version!r}")
    imap.validate(check_values=True)
    need = needed_version(imap)
    if version is None:
        version = need
    elif version >= 2 and version < need:
        raise ValueError(
            f"format v{version} cannot hold this map (bias signs, a compression budget or hashed biases "
            f"need v{need}); write version {need} or leave version unset"
        )
    if version == 1 and any(t is not None for t in imap.initial_tables or ()):
        raise ValueError("format v1 cannot hold initial tables; write version 2")
    if version == 1 and any(lay.bias_sign is not None for lay in imap.layers):  # v2 is refused above
        raise ValueError("format v1 cannot hold bias signs; write version 3")
    layers_meta = [
        {
            "name": lay.name,
            "out_features": lay.out_features,
            "in_features": lay.in_features,
            "table": int(lay.table),
            "sign": lay.sign is not None,
            "bias": lay.bias_indices is not None,
            "attrs": lay.attrs,
            **({"bias_sign": lay.bias_sign is not None} if version >= 3 else {}),
        }
        for lay in imap.layers
    ]
    try:
        metadata = {
            "format": FORMAT_NAME,
            "format_version": str(version),
            "hashlab_version": __version__,
            "spec": json.dumps(imap.spec, sort_keys=True, separators=(",", ":"), allow_nan=False),
            "tables": json.dumps(list(imap.table_sizes), separators=(",", ":")),
            "layers": json.dumps(layers_meta, sort_keys=True, separators=(",", ":"), allow_nan=False),
        }
    except (TypeError, ValueError) as e:
        raise ValueError(f"spec and layer attrs must be JSON-serialisable (finite numbers): {e}") from None
    if version >= 2:  # never write a file the reader would refuse
        try:
            _check_against_spec(
                Path(path),
                json.loads(metadata["spec"]),
                list(imap.table_sizes),
                json.loads(metadata["layers"]),
                version,
            )
        except FormatError as e:
            raise ValueError(
                f"cannot write {e}; give a composed map its own spec (own 'builder', no 'architecture')"
            ) from None
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    tensors = [(name, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))) for name, arr in _tensors(imap)]
    digest = hashlib.sha256()
    for name, arr in tensors:
        header[name] = {
            "dtype": _CODES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        digest.update(arr.reshape(-1).view(np.uint8).data)
    if version >= 2:
        metadata["checksum"] = "sha256:" + digest.hexdigest()
    hbytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-(8 + len(hbytes)) % 8)  # pad so the data buffer starts 8-aligned
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for _, arr in tensors:
            f.write(arr.reshape(-1).view(np.uint8).data)
    return path


def _version(c: Container) -> int:
    meta = c.metadata
    if meta.get("format") != FORMAT_NAME:
        raise FormatError(
            f"{c.path}: not a hashlab index file (its __metadata__.format is not {FORMAT_NAME!r}); "
            "create one with `hashlab build`"
        )
    text = meta.get("format_version", "")
    if not re.fullmatch(r"[1-9][0-9]{0,8}", text):
        raise FormatError(f"{c.path}: format_version {text!r} is not a positive decimal integer")
    version = int(text)
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{c.path}: index format version {version} is newer than this hashlab reads "
            f"({FORMAT_VERSION}); upgrade hashlab (pip install -U hashlab)"
        )
    unknown = sorted(set(meta) - _METADATA_KEYS[version])
    missing = sorted(_METADATA_KEYS[version] - set(meta))
    if unknown or missing:
        raise FormatError(
            f"{c.path}: metadata fields unknown {unknown} / missing {missing} for format v{version}; "
            f"the file was not written by a v{version} writer"
        )
    return version


def read_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """Read and check the header of an index file (container rules, format name and version).

    Returns
    -------
    header : dict
        The safetensors header: ``__metadata__`` (values still strings) and one
        ``{"dtype", "shape", "data_offsets"}`` entry per tensor.
    data_start : int
        Byte offset of the data buffer.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not a hashlab index file, is malformed, or is from a newer format version.
    """
    c = read_container(path)
    _version(c)
    header: dict[str, Any] = {"__metadata__": dict(c.metadata)}
    for t in c.tensors.values():
        header[t.name] = {
            "dtype": _CODES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [t.begin - c.data_start, t.end - c.data_start],
        }
    return header, c.data_start


def _parse_metadata(c: Container, version: int) -> tuple[dict, list[int], list[dict]]:
    """The spec, table sizes and layer objects, type-checked (docs/FORMAT.md, "Header")."""
    p, meta = c.path, c.metadata
    spec = strict_json(meta["spec"], f"{p}: metadata spec")
    if not isinstance(spec, dict):
        raise FormatError(f"{p}: metadata spec must be a JSON object, got {type(spec).__name__}")
    tables = strict_json(meta["tables"], f"{p}: metadata tables")
    if not isinstance(tables, list) or not tables or not all(is_int(t, 1, _MAX_DIM) for t in tables):
        raise FormatError(
            f"{p}: metadata tables must be a non-empty list of integers in [1, 2**31 - 1], got {str(tables)[:80]}"
        )
    layers = strict_json(meta["layers"], f"{p}: metadata layers")
    if not isinstance(layers, list) or not layers:
        raise FormatError(f"{p}: metadata layers must be a non-empty JSON list of layer objects")
    for k, lm in enumerate(layers):
        where = f"{p}: layer {k}"
        keys = _LAYER_KEYS[version]
        if not isinstance(lm, dict) or set(lm) != keys:
            raise FormatError(
                f"{where} has fields {sorted(lm) if isinstance(lm, dict) else type(lm).__name__}; "
                f"format v{version} has exactly {sorted(keys)}"
            )
        if not isinstance(lm["name"], str) or not lm["name"]:
            raise FormatError(f"{where}: name must be a non-empty string, got {lm['name']!r}")
        for key in ("out_features", "in_features"):
            if not is_int(lm[key], 1, _MAX_DIM):
                raise FormatError(f"{where}: {key} must be an integer in [1, 2**31 - 1], got {lm[key]!r}")
        if not is_int(lm["table"], 0, len(tables) - 1):
            raise FormatError(f"{where}: table must be an integer in [0, {len(tables)}), got {lm['table']!r}")
        for key in ("sign", "bias", "bias_sign") if version >= 3 else ("sign", "bias"):
            if not isinstance(lm[key], bool):
                raise FormatError(f"{where}: {key} must be true or false, got {lm[key]!r}")
        if lm.get("bias_sign") and not lm["bias"]:
            raise FormatError(f"{where}: bias_sign is true but bias is false; a bias sign needs a shared bias")
        if not isinstance(lm["attrs"], dict):
            raise FormatError(f"{where}: attrs must be a JSON object, got {type(lm['attrs']).__name__}")
    return spec, tables, layers


def _check_against_spec(p: Path, spec: dict, tables: list[int], layers: list[dict], version: int) -> None:
    """Shapes must chain as ``spec["architecture"]`` says; a ``build_map`` spec fixes the tables too."""
    arch = spec.get("architecture")
    if arch is not None:
        if not isinstance(arch, list) or len(arch) < 2 or not all(is_int(a, 1, _MAX_DIM) for a in arch):
            raise FormatError(f"{p}: spec.architecture must be a list of >= 2 feature sizes, got {str(arch)[:80]}")
        want = [(o, i) for i, o in zip(arch[:-1], arch[1:])]
        got = [(lm["out_features"], lm["in_features"]) for lm in layers]
        if want != got:
            raise FormatError(
                f"{p}: layer shapes (out, in) {got} do not chain as spec.architecture {arch} says ({want})"
            )
    if spec.get("builder") != "hashlab.build_map":
        return
    scope, kind = spec.get("scope"), spec.get("kind")
    if scope not in ("layer", "global") or not isinstance(kind, str) or not isinstance(spec.get("sign"), bool):
        raise FormatError(f"{p}: a hashlab.build_map spec needs scope 'layer' or 'global', a kind and a sign flag")
    n_tab = 1 if scope == "global" else len(layers)
    reads = [0 if scope == "global" else k for k in range(len(layers))]
    if len(tables) != n_tab or [lm["table"] for lm in layers] != reads:
        raise FormatError(
            f"{p}: scope {scope!r} means {n_tab} table(s) read as {reads}, got tables {tables} "
            f"read as {[lm['table'] for lm in layers]}"
        )
    want_tables, want_bias = _planned_tables(p, spec, [(lm["out_features"], lm["in_features"]) for lm in layers])
    if tables != want_tables:
        raise FormatError(
            f"{p}: table sizes {tables} contradict the spec (kind {kind!r}, table_size "
            f"{spec.get('table_size')!r}, compression {spec.get('compression')!r}, hash_bias "
            f"{spec.get('hash_bias', False)!r}, scope {scope!r}: {want_tables})"
        )
    if [lm["sign"] for lm in layers] != [spec["sign"]] * len(layers) or [lm["bias"] for lm in layers] != want_bias:
        raise FormatError(
            f"{p}: layers' sign/bias flags contradict the spec (sign={spec['sign']}, "
            f"hash_bias={spec.get('hash_bias', False)}: shared bias on {want_bias})"
        )
    if version >= 3 and [lm["bias_sign"] for lm in layers] != [spec["sign"] and b for b in want_bias]:
        raise FormatError(
            f"{p}: layers' bias_sign flags contradict the spec (sign={spec['sign']}: a shared bias is "
            "signed exactly when the weights are)"
        )


def _planned_tables(p: Path, spec: dict, shapes: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
    """Table sizes and per-layer shared-bias flags that a ``hashlab.build_map`` spec prescribes."""
    fields = {f.name for f in dataclasses.fields(HashSpec)} | {"version"}  # HashSpec.from_dict checks the version
    try:
        hspec = HashSpec.from_dict({k: v for k, v in spec.items() if k in fields})
        plan = hspec.table_plan(shapes)
    except (ValueError, TypeError) as e:  # SpecError
        raise FormatError(f"{p}: its hashlab.build_map spec is invalid: {e}") from None
    glob = hspec.scope == "global"
    bias = [bool(plan.biases[0 if glob else k]) and k < len(shapes) - 1 for k in range(len(shapes))]
    return list(plan.table_sizes), bias


def load_index_file(
    path: str | os.PathLike,
    mmap: bool = True,
    validate: bool = True,
    verify: bool = True,
    max_table_entries: int = MAX_TABLE_ENTRIES,
) -> IndexMap:
    """Read an index file (format v1, v2 or v3) with numpy alone.

    Everything in the header is checked before any tensor is read: the container (see
    :func:`hashlab.io.container.read_container`), the metadata's types, the tensors' names,
    dtypes and shapes against the layers, table sizes and layer chaining against the spec,
    and the resource bound below.

    Parameters
    ----------
    path : path-like
    mmap : bool
        Return read-only ``numpy.memmap``-backed arrays (no copy) if True, else in-memory copies.
    validate : bool
        Check every index is in ``[-1, table_size)``, every sign is +-1 and every initial table
        value is finite (O(N)).
    verify : bool
        v2 and v3: check the SHA-256 of the data buffer against the header's ``checksum`` (O(N),
        reads the whole file). ``False`` skips it (trusted files, speed).
    max_table_entries : int
        Refuse a file whose tables, not stored in the file, total more entries than this
        (default :data:`MAX_TABLE_ENTRIES`): a trainer or ``hashlab stats`` would allocate them.

    Returns
    -------
    IndexMap
        With ``initial_tables`` set if the file stores any (v2, v3).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is malformed or inconsistent; the message names the file and the problem.
    LimitError
        (a :class:`FormatError`) if it declares more table entries than ``max_table_entries``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"index file {path} does not exist; create it with `hashlab build ... -o {path}`")
    c = read_container(path)
    version = _version(c)
    spec, tables, layers_meta = _parse_metadata(c, version)
    if version >= 2:  # v1 files' spec is informative only (docs/FORMAT.md)
        _check_against_spec(path, spec, tables, layers_meta, version)
    expected: dict[str, tuple[str, tuple[int, ...]]] = {}
    for k, lm in enumerate(layers_meta):
        shape: tuple[int, ...] = (lm["out_features"], lm["in_features"])
        idx = "I16" if tables[lm["table"]] <= 2**15 else "I32"
        expected[f"layers.{k}.indices"] = (idx, shape)
        if lm["sign"]:
            expected[f"layers.{k}.sign"] = ("I8", shape)
        if lm["bias"]:
            expected[f"layers.{k}.bias_indices"] = (idx, shape[:1])
        if lm.get("bias_sign"):
            expected[f"layers.{k}.bias_sign"] = ("I8", shape[:1])
    inits = [f"table.{t}" for t in range(len(tables)) if f"table.{t}" in c.tensors] if version >= 2 else []
    for name in inits:
        expected[name] = ("F32", (tables[int(name[6:])],))
    missing, unknown = sorted(set(expected) - set(c.tensors)), sorted(set(c.tensors) - set(expected))
    if missing or unknown:
        raise FormatError(
            f"{path}: tensors missing {missing[:5]} / unknown {unknown[:5]} for the layers and tables "
            f"of this v{version} header"
        )
    for name, (code, shape) in expected.items():
        t = c.tensors[name]
        if _CODES[t.dtype] != code or t.shape != shape:
            raise FormatError(
                f"{path}: tensor {name!r} is {_CODES[t.dtype]} {t.shape}; the header's layers and "
                f"tables say {code} {shape}"
            )
    unstored = sum(n for t, n in enumerate(tables) if f"table.{t}" not in inits)
    if unstored > max_table_entries:
        raise LimitError(
            f"{path}: declares {unstored:,} table entries ({4 * unstored / 2**20:,.0f} MiB as float32) "
            f"in a {c.size:,}-byte file, over the limit of {max_table_entries:,}; if that is intended, "
            "raise it (load_index_file(max_table_entries=...), --max-table-entries)"
        )
    buf = np.memmap(path, dtype=np.uint8, mode="r") if mmap else np.fromfile(path, dtype=np.uint8)
    if len(buf) != c.size:
        raise FormatError(f"{path}: changed size while being read")
    if version >= 2 and verify:
        if not _CHECKSUM.fullmatch(c.metadata["checksum"]):
            raise FormatError(f"{path}: checksum {c.metadata['checksum'][:80]!r} is not 'sha256:' + 64 hex digits")
        if payload_checksum(buf[c.data_start :]) != c.metadata["checksum"]:
            raise FormatError(
                f"{path}: the data does not match its SHA-256 checksum; the file is corrupt, "
                "rebuild it with `hashlab build`"
            )

    def tensor(name: str) -> np.ndarray | None:
        t = c.tensors.get(name)
        return None if t is None else buf[t.begin : t.end].view(t.dtype).reshape(t.shape)

    def required(name: str) -> np.ndarray:  # a tensor the header check above found present
        arr = tensor(name)
        if arr is None:
            raise FormatError(f"{path}: tensor {name!r} is missing")
        return arr

    layers = [
        LayerMap(
            name=lm["name"],
            indices=required(f"layers.{k}.indices"),
            table=lm["table"],
            sign=tensor(f"layers.{k}.sign"),
            bias_indices=tensor(f"layers.{k}.bias_indices"),
            attrs=lm["attrs"],
            bias_sign=tensor(f"layers.{k}.bias_sign"),
        )
        for k, lm in enumerate(layers_meta)
    ]
    initial = tuple(tensor(f"table.{t}") for t in range(len(tables))) if inits else None
    try:
        imap = IndexMap(layers=tuple(layers), table_sizes=tuple(tables), spec=spec, initial_tables=initial)
        if validate:
            imap.validate(check_values=True)
    except ValueError as e:
        raise FormatError(f"{path}: {e}") from None
    return imap
