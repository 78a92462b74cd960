"""Index file format (v4, v3, v2 and v1 read and written): the contract between hashlab and any trainer.

An index file is a valid `safetensors <https://github.com/huggingface/safetensors>`_ file
with a hashlab header in ``__metadata__``. It holds no pickle. Versions 1-3 store the index arrays
as they are (memory-mappable, readable by numpy alone); version 4 stores no arrays for a map that
its spec rebuilds (``storage`` ``"spec"``: the spec and a SHA-256 of the arrays, which the reader
rebuilds and checks) and bit-packs the arrays of any other map (``"packed"``). The normative
specification is ``docs/FORMAT.md``; this module is its reference writer and reader (the container
rules are in :mod:`hashlab.io.container`, the packing in :mod:`hashlab.io.bitpack`), and
``tests/hashlab/io/test_format.py`` and ``test_format_v4.py`` pin the bytes of every version with
golden files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..configs import is_int
from ..maps.indexmap import IndexMap, LayerMap, index_dtype
from ..maps.regenerate import REGENERATORS, regenerable, regenerate_map, regenerated_shapes
from ..maps.spec import HashSpec, SpecError
from . import bitpack
from .atomic import atomic_open
from .container import DTYPES, Container, FormatError, LimitError, read_container, read_container_bytes, strict_json

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MAX_TABLE_ENTRIES",
    "MAX_REGENERATED_WEIGHTS",
    "STORAGES",
    "FormatError",
    "LimitError",
    "save_index_file",
    "load_index_file",
    "index_file_bytes",
    "load_index_bytes",
    "read_header",
    "payload_checksum",
    "indices_checksum",
    "needed_version",
    "rebuilds_from_spec",
]

FORMAT_NAME = "hashlab.index"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
STORAGES = ("spec", "packed")
"""How a v4 file holds the index arrays: ``"spec"`` (not at all: rebuilt from the spec, checked against
``indices_sha256``) or ``"packed"`` (bit-packed, :mod:`hashlab.io.bitpack`)."""
MAX_TABLE_ENTRIES = 2**26
"""Default bound on table entries a file may declare without storing them (``max_table_entries``).

67,108,864 entries: 256 MiB of float32 parameters in a trainer, 512 MiB of int64 loads in
``hashlab stats``. A file that declares more is refused before anything is allocated.
"""
_METADATA_KEYS = {1: {"format", "format_version", "hashlab_version", "spec", "tables", "layers"}}
_METADATA_KEYS[2] = _METADATA_KEYS[1] | {"checksum"}
_METADATA_KEYS[3] = _METADATA_KEYS[2]
_METADATA_KEYS[4] = _METADATA_KEYS[3] | {"storage"}  # + "indices_sha256" with storage "spec"
_LAYER_KEYS = {1: {"name", "out_features", "in_features", "table", "sign", "bias", "attrs"}}
_LAYER_KEYS[2] = _LAYER_KEYS[1]
_LAYER_KEYS[3] = _LAYER_KEYS[2] | {"bias_sign"}
_LAYER_KEYS[4] = _LAYER_KEYS[3]
MAX_REGENERATED_WEIGHTS = 2**27
"""Default bound on the virtual weights a spec-only (v4 ``"spec"``) file may make the reader rebuild
(``max_regenerated_weights``): 134,217,728 weights, 256 MiB of int16 indices (512 MiB of int32) plus
128 MiB of signs. The CIFAR-10 MLP has 22.16M. A file that asks for more is refused before any work."""
_ARRAYS = ("indices", "sign", "bias_indices", "bias_sign")  # a layer's arrays, in file order
_CODES = {v: k for k, v in DTYPES.items()}
_MAX_DIM = 2**31 - 1
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_TENSOR_NAME = re.compile(
    r"layers\.(0|[1-9][0-9]{0,8})\.(indices|sign|bias_indices|bias_sign)"
    r"|table\.(0|[1-9][0-9]{0,8})"
)


def _layer_arrays(lay: LayerMap) -> list[tuple[str, np.ndarray]]:
    """A layer's arrays that are present, in file order (``indices``, ``sign``, ``bias_indices``, ``bias_sign``)."""
    return [(what, arr) for what in _ARRAYS if (arr := getattr(lay, what)) is not None]


def _tensors(imap: IndexMap, storage: str | None) -> list[tuple[str, np.ndarray]]:
    """The tensors of a file (little-endian, C order), in data-buffer order: plain arrays (``storage`` None,
    v1-v3), none (``"spec"``) or bit-packed ones (``"packed"``), after the initial tables."""
    out = [(f"table.{t}", init) for t, init in enumerate(imap.initial_tables or ()) if init is not None]
    if storage != "spec":
        for k, lay in enumerate(imap.layers):
            n = imap.table_sizes[lay.table]
            for what, arr in _layer_arrays(lay):
                if storage == "packed":
                    arr = bitpack.pack_signs(arr) if what.endswith("sign") else bitpack.pack_indices(arr, n)
                out.append((f"layers.{k}.{what}", arr))
    # largest itemsize first keeps every tensor aligned to its itemsize in the mmap (stable sort)
    out.sort(key=lambda t: -t[1].dtype.itemsize)
    return [(name, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))) for name, arr in out]


def payload_checksum(data: Any) -> str:
    """``"sha256:<hex>"`` of a data buffer (bytes-like), the v2 ``checksum`` metadata value."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def indices_checksum(layers: tuple[LayerMap, ...] | list[LayerMap]) -> str:
    """``"sha256:<hex>"`` of a map's index arrays, the v4 ``indices_sha256`` metadata value.

    Parameters
    ----------
    layers : sequence of LayerMap
        In network order. For each layer, its ``indices`` (int16 or int32), ``sign`` (int8),
        ``bias_indices`` and ``bias_sign`` (int8), those present, in this order, each as its
        little-endian bytes in C order: the bytes a v3 file would store for them.

    Returns
    -------
    str
        ``"sha256:"`` + 64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    for lay in layers:
        for _, arr in _layer_arrays(lay):
            digest.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).reshape(-1).view(np.uint8).data)
    return "sha256:" + digest.hexdigest()


def needed_version(imap: IndexMap) -> int:
    """The oldest format version (>= 2) that holds ``imap`` with plain arrays: 3 for bias signs or a spec
    with a compression budget or hashed biases (readers before v3 cannot check those), else 2.

    ``save_index_file`` writes :data:`FORMAT_VERSION` (4) unless asked for an older one; of versions 2
    and 3 it accepts this one and later (version 1, whose spec is informative, takes any map without
    initial tables and bias signs)."""
    spec = imap.spec or {}
    v3 = (
        any(lay.bias_sign is not None for lay in imap.layers)
        or spec.get("compression") is not None
        or bool(spec.get("hash_bias", False))
    )
    return 3 if v3 else 2


def rebuilds_from_spec(imap: IndexMap) -> bool:
    """Whether ``imap.spec`` rebuilds ``imap``'s arrays and tables exactly (so a v4 file can store the spec only).

    True when the spec's builder is one :func:`hashlab.maps.regenerate.regenerate_map` knows, the spec is
    valid, and the rebuilt map has the same table sizes, and per layer the same shape, table and arrays
    (dtypes and values; a map edited after it was built fails here). Layer names and ``attrs`` are free:
    an index file stores them. Costs one build of the map (numba).
    """
    if not regenerable(imap.spec):
        return False
    try:
        if regenerated_shapes(imap.spec) != [(lay.out_features, lay.in_features) for lay in imap.layers]:
            return False
        again = regenerate_map(imap.spec, backend="numba")
    except SpecError:
        return False
    return again.table_sizes == imap.table_sizes and all(
        a.table == b.table
        and [w for w, _ in _layer_arrays(a)] == [w for w, _ in _layer_arrays(b)]
        and all(
            x.dtype == y.dtype and np.array_equal(x, y) for (_, x), (_, y) in zip(_layer_arrays(a), _layer_arrays(b))
        )
        for a, b in zip(again.layers, imap.layers)
    )


def _encode(imap: IndexMap, path: Path, version: int | None, storage: str | None) -> tuple[bytes, list[np.ndarray]]:
    """The header bytes (length prefix and padding included) and the tensors of ``imap``'s file."""
    if version is not None and version not in READABLE_VERSIONS:
        raise ValueError(f"format version must be one of {READABLE_VERSIONS}, got {version!r}")
    if storage is not None and storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES} or None (the smaller that holds the map), got {storage!r}")
    if storage is not None and version is not None and version < 4:
        raise ValueError(f"storage={storage!r} needs format v4; versions 1-3 store plain arrays (drop storage=)")
    imap.validate(check_values=True)
    need = needed_version(imap)
    if version is None:
        version = FORMAT_VERSION
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
                path,
                json.loads(metadata["spec"]),
                list(imap.table_sizes),
                json.loads(metadata["layers"]),
                version,
            )
        except FormatError as e:
            raise ValueError(
                f"cannot write {e}; give a composed map its own spec (own 'builder', no 'architecture')"
            ) from None
    if version >= 4:
        if storage != "packed":
            rebuilds = rebuilds_from_spec(imap)
            if storage == "spec" and not rebuilds:
                raise ValueError(
                    "storage='spec' needs a map that its spec rebuilds exactly (a hashlab.build_map, conv or rnn "
                    "map, not edited since); this one does not: write storage='packed' or leave storage unset"
                )
            storage = "spec" if rebuilds else "packed"
        metadata["storage"] = storage
        if storage == "spec":
            metadata["indices_sha256"] = indices_checksum(imap.layers)
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    tensors = _tensors(imap, storage if version >= 4 else None)
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
    return len(hbytes).to_bytes(8, "little") + hbytes, [arr for _, arr in tensors]


def save_index_file(
    imap: IndexMap, path: str | os.PathLike, version: int | None = None, storage: str | None = None
) -> Path:
    """Write ``imap`` to ``path`` as an index file, atomically.

    Parameters
    ----------
    imap : IndexMap
        Validated (index ranges included) before anything is written.
    path : path-like
        Destination; conventionally ``*.safetensors``.
    version : {None, 4, 3, 2, 1}
        Format version to write. None (default): :data:`FORMAT_VERSION`, 4, the smallest file: the
        spec alone for a map its spec rebuilds (:func:`rebuilds_from_spec`: ``hashlab.build_map``,
        conv and RNN maps), else bit-packed arrays (docs/FORMAT.md, "Version 4"). 3, 2 and 1 store
        the arrays as they are, memory-mappable and readable by numpy alone and by older hashlab
        (3 holds every map; 2 cannot hold bias signs, compression budgets and hashed biases; 1 nor
        initial tables).
    storage : {None, "spec", "packed"}
        v4 only. None (default): ``"spec"`` when the map rebuilds from its spec, else
        ``"packed"``. ``"spec"`` refuses a map that does not; ``"packed"`` stores the arrays of any
        map, e.g. to keep a map's exact indices for a hashlab whose builders compute other ones.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``imap`` is invalid, its ``spec`` / ``attrs`` are not JSON-serialisable, ``version``
        cannot hold it (initial tables need 2, bias signs and budgets 3), or ``storage`` is
        ``"spec"`` for a map its spec does not rebuild, or given with a version before 4.
    """
    path = Path(path)
    head, arrays = _encode(imap, path, version, storage)
    with atomic_open(path, "wb") as f:
        f.write(head)
        for arr in arrays:
            f.write(arr.reshape(-1).view(np.uint8).data)
    return path


def index_file_bytes(imap: IndexMap, version: int | None = None, storage: str | None = None) -> bytes:
    """The bytes :func:`save_index_file` writes for ``imap``, in memory (e.g. to embed a map in a model file).

    Parameters
    ----------
    imap : IndexMap
    version, storage
        As :func:`save_index_file`.

    Returns
    -------
    bytes
        A complete index file; :func:`load_index_bytes` reads it.

    Raises
    ------
    ValueError
        As :func:`save_index_file`.
    """
    head, arrays = _encode(imap, Path("<bytes>"), version, storage)
    return b"".join([head, *(arr.reshape(-1).view(np.uint8).tobytes() for arr in arrays)])


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
    keys = set(_METADATA_KEYS[version])
    if version >= 4:
        storage = meta.get("storage")
        if storage not in STORAGES:
            raise FormatError(
                f"{c.path}: metadata storage must be one of {STORAGES} in format v{version}, got {storage!r}"
            )
        if storage == "spec":
            keys.add("indices_sha256")
    unknown = sorted(set(meta) - keys)
    missing = sorted(keys - set(meta))
    if unknown or missing:
        raise FormatError(
            f"{c.path}: metadata fields unknown {unknown} / missing {missing} for format v{version}"
            + (f" with storage {meta['storage']!r}" if version >= 4 else "")
            + f"; the file was not written by a v{version} writer"
        )
    if "indices_sha256" in keys and not _CHECKSUM.fullmatch(meta["indices_sha256"]):
        raise FormatError(
            f"{c.path}: indices_sha256 {meta['indices_sha256'][:80]!r} is not 'sha256:' + 64 lowercase hex digits"
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
    max_regenerated_weights: int = MAX_REGENERATED_WEIGHTS,
) -> IndexMap:
    """Read an index file (format v1, v2, v3 or v4).

    Everything in the header is checked before any tensor is read: the container (see
    :func:`hashlab.io.container.read_container`), the metadata's types, the tensors' names,
    dtypes and shapes against the layers, table sizes and layer chaining against the spec,
    and the resource bounds below. Versions 1-3 need numpy alone; a v4 file's arrays are
    unpacked (``"packed"``) or rebuilt from its spec by hashlab's builders (``"spec"``).

    Parameters
    ----------
    path : path-like
    mmap : bool
        Return read-only ``numpy.memmap``-backed arrays (no copy) if True, else in-memory copies.
        Applies to the arrays stored as they are (v1-v3 index arrays, initial tables); a v4
        file's index arrays are always rebuilt or unpacked in memory.
    validate : bool
        Check every index is in ``[-1, table_size)``, every sign is +-1 and every initial table
        value is finite (O(N)).
    verify : bool
        v2-v4: check the SHA-256 of the data buffer against the header's ``checksum`` (O(N),
        reads the whole file). ``False`` skips it (trusted files, speed). The SHA-256 of rebuilt
        arrays (v4 ``"spec"``, ``indices_sha256``) is checked either way: it guards against the
        reading hashlab's builders, not against the file.
    max_table_entries : int
        Refuse a file whose tables, not stored in the file, total more entries than this
        (default :data:`MAX_TABLE_ENTRIES`): a trainer or ``hashlab stats`` would allocate them.
    max_regenerated_weights : int
        Refuse a v4 ``"spec"`` file whose layers total more virtual weights than this (default
        :data:`MAX_REGENERATED_WEIGHTS`), before rebuilding them.

    Returns
    -------
    IndexMap
        With ``initial_tables`` set if the file stores any (v2-v4). For a v4 ``"spec"`` file the
        arrays are rebuilt from the spec (:func:`hashlab.maps.regenerate.regenerate_map`, numba);
        the ``spec``, layer names and ``attrs`` are the file's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is malformed or inconsistent, or (v4 ``"spec"``) the arrays this hashlab
        rebuilds from its spec do not match its ``indices_sha256`` (the message names the hashlab
        that wrote the file and what to do); the message names the file and the problem.
    LimitError
        (a :class:`FormatError`) if it declares more table entries than ``max_table_entries``, or
        asks to rebuild more virtual weights than ``max_regenerated_weights``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"index file {path} does not exist; create it with `hashlab build ... -o {path}`")
    c = read_container(path)

    def buffer() -> np.ndarray:
        return np.memmap(path, dtype=np.uint8, mode="r") if mmap else np.fromfile(path, dtype=np.uint8)

    return _load(c, buffer, validate, verify, max_table_entries, max_regenerated_weights)


def load_index_bytes(
    data: bytes | bytearray | memoryview,
    name: str = "<bytes>",
    validate: bool = True,
    verify: bool = True,
    max_table_entries: int = MAX_TABLE_ENTRIES,
    max_regenerated_weights: int = MAX_REGENERATED_WEIGHTS,
) -> IndexMap:
    """:func:`load_index_file` of an index file held in memory (e.g. embedded in a model file).

    Parameters
    ----------
    data : bytes-like
        The whole file. Arrays stored as they are (v1-v3, initial tables) are read-only views of it.
    name : str
        Labels the file in error messages, where a path would be.
    validate, verify, max_table_entries, max_regenerated_weights
        As :func:`load_index_file`.

    Returns
    -------
    IndexMap

    Raises
    ------
    FormatError, LimitError
        As :func:`load_index_file`.
    """
    c = read_container_bytes(data, name)
    return _load(c, lambda: np.frombuffer(data, np.uint8), validate, verify, max_table_entries, max_regenerated_weights)


def _expected_tensors(
    version: int, storage: str | None, tables: list[int], layers_meta: list[dict]
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Dtype code and shape of every layer tensor the header's layers call for (docs/FORMAT.md, "Header")."""
    expected: dict[str, tuple[str, tuple[int, ...]]] = {}
    if storage == "spec":
        return expected
    for k, lm in enumerate(layers_meta):
        n = tables[lm["table"]]
        shape: tuple[int, ...] = (lm["out_features"], lm["in_features"])
        present = {"indices": True, "sign": lm["sign"], "bias_indices": lm["bias"], "bias_sign": lm.get("bias_sign")}
        for what in _ARRAYS:
            if not present[what]:
                continue
            full = shape if what in ("indices", "sign") else shape[:1]
            if storage == "packed":
                bits = 1 if what.endswith("sign") else bitpack.code_bits(n)
                expected[f"layers.{k}.{what}"] = ("U8", (bitpack.packed_size(math.prod(full), bits),))
            else:
                code = "I8" if what.endswith("sign") else ("I16" if n <= 2**15 else "I32")
                expected[f"layers.{k}.{what}"] = (code, full)
    return expected


def _check_rebuildable(p: Path, spec: dict, layers_meta: list[dict], max_regenerated_weights: int) -> None:
    """A v4 ``"spec"`` file: the spec must name a builder hashlab rebuilds, of the header's layer shapes, in bounds."""
    if not regenerable(spec):
        raise FormatError(
            f"{p}: storage 'spec' needs a spec that hashlab rebuilds (builder {', '.join(map(repr, REGENERATORS))}), "
            f"got builder {spec.get('builder')!r}; if a newer hashlab wrote the file, upgrade hashlab"
        )
    try:
        shapes = regenerated_shapes(spec)
    except SpecError as e:
        raise FormatError(f"{p}: {e}") from None
    got = [(lm["out_features"], lm["in_features"]) for lm in layers_meta]
    if shapes != got:
        raise FormatError(f"{p}: its spec builds layers of shapes (out, in) {shapes[:8]}, but its layers say {got[:8]}")
    weights = sum(o * i for o, i in shapes)
    if weights > max_regenerated_weights:
        raise LimitError(
            f"{p}: asks to rebuild {weights:,} virtual weights from its spec, over the limit of "
            f"{max_regenerated_weights:,}; if that is intended, raise it (load_index_file(max_regenerated_weights=...))"
        )


def _rebuild(p: Path, meta: dict[str, str], spec: dict, tables: list[int], layers_meta: list[dict]) -> list[LayerMap]:
    """The layers of a v4 ``"spec"`` file: its spec rebuilt, checked against its layers and ``indices_sha256``."""
    writer = meta["hashlab_version"]
    fix = (
        f"the builders of hashlab {writer} (which wrote the file) and {__version__} (reading it) compute different "
        f"maps. To keep this map, load the file with hashlab {writer} and save it with "
        f"save_index_file(imap, path, storage='packed') (stores the indices); or rebuild it with this hashlab "
        "(`hashlab build`), which gives another map: retrain what used it"
    )
    try:
        again = regenerate_map(spec, backend="numba")
    except SpecError as e:
        raise FormatError(f"{p}: cannot rebuild the map from its spec ({e})") from None
    structure = [
        (lay.table, lay.sign is not None, lay.bias_indices is not None, lay.bias_sign is not None)
        for lay in again.layers
    ]
    want = [(lm["table"], lm["sign"], lm["bias"], lm["bias_sign"]) for lm in layers_meta]
    if list(again.table_sizes) != tables or structure != want:
        raise FormatError(
            f"{p}: the map rebuilt from its spec has tables {list(again.table_sizes)[:8]} and layers (table, sign, "
            f"bias, bias_sign) {structure[:8]}, the file says {tables[:8]} and {want[:8]}: {fix}"
        )
    if indices_checksum(again.layers) != meta["indices_sha256"]:
        raise FormatError(f"{p}: the indices rebuilt from its spec do not match its indices_sha256: {fix}")
    return [
        LayerMap(
            name=lm["name"],
            indices=lay.indices,
            table=lay.table,
            sign=lay.sign,
            bias_indices=lay.bias_indices,
            attrs=lm["attrs"],
            bias_sign=lay.bias_sign,
        )
        for lay, lm in zip(again.layers, layers_meta)
    ]


def _load(
    c: Container,
    buffer: Callable[[], np.ndarray],
    validate: bool,
    verify: bool,
    max_table_entries: int,
    max_regenerated_weights: int,
) -> IndexMap:
    """The map of a checked container whose bytes ``buffer()`` gives (uint8, the whole file)."""
    path = c.path
    version = _version(c)
    storage = c.metadata.get("storage") if version >= 4 else None
    spec, tables, layers_meta = _parse_metadata(c, version)
    if version >= 2:  # v1 files' spec is informative only (docs/FORMAT.md)
        _check_against_spec(path, spec, tables, layers_meta, version)
    expected = _expected_tensors(version, storage, tables, layers_meta)
    inits = [f"table.{t}" for t in range(len(tables)) if f"table.{t}" in c.tensors] if version >= 2 else []
    for name in inits:
        expected[name] = ("F32", (tables[int(name[6:])],))
    missing, unknown = sorted(set(expected) - set(c.tensors)), sorted(set(c.tensors) - set(expected))
    if missing or unknown:
        raise FormatError(
            f"{path}: tensors missing {missing[:5]} / unknown {unknown[:5]} for the layers and tables "
            f"of this v{version} header" + (f" with storage {storage!r}" if storage else "")
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
    if storage == "spec":
        _check_rebuildable(path, spec, layers_meta, max_regenerated_weights)
    buf = buffer()
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

    def stored(k: int, what: str, lm: dict) -> np.ndarray | None:
        arr = tensor(f"layers.{k}.{what}")
        if arr is None or storage != "packed":
            return arr
        n = tables[lm["table"]]
        full = (lm["out_features"], lm["in_features"]) if what in ("indices", "sign") else (lm["out_features"],)
        try:
            if what.endswith("sign"):
                return bitpack.unpack_signs(arr, full)
            return bitpack.unpack_indices(arr, n, full, index_dtype(n))
        except ValueError as e:  # PackError
            raise FormatError(f"{path}: tensor 'layers.{k}.{what}': {e}") from None

    if storage == "spec":
        layers = _rebuild(path, c.metadata, spec, tables, layers_meta)
    else:
        layers = []
        for k, lm in enumerate(layers_meta):
            indices = stored(k, "indices", lm)
            if indices is None:  # the header check above found it present
                raise FormatError(f"{path}: tensor 'layers.{k}.indices' is missing")
            layers.append(
                LayerMap(
                    name=lm["name"],
                    indices=indices,
                    table=lm["table"],
                    sign=stored(k, "sign", lm),
                    bias_indices=stored(k, "bias_indices", lm),
                    attrs=lm["attrs"],
                    bias_sign=stored(k, "bias_sign", lm),
                )
            )
    initial = tuple(tensor(f"table.{t}") for t in range(len(tables))) if inits else None
    try:
        imap = IndexMap(layers=tuple(layers), table_sizes=tuple(tables), spec=spec, initial_tables=initial)
        if validate:
            imap.validate(check_values=True)
    except ValueError as e:
        raise FormatError(f"{path}: {e}") from None
    return imap
