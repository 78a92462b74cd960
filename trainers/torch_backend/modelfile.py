"""ArbNet model files: a trained :class:`ArbMLP` in one safetensors file, small because its map is.

A model file holds what the trained network is and nothing else: its tables, its dense parameters and
buffers (biases not read from a table, BatchNorm), the keyword arguments of :class:`ArbMLP`, and its map
as an embedded index file (format v4: the spec alone for a map its spec rebuilds, else bit-packed
indices; docs/FORMAT.md). :func:`load_arbnet` reads the map back through :func:`hashlab.io.load_index_bytes`
(which rebuilds and checks it), builds the model and copies every value in, so the loaded model computes
bitwise what the saved one did. The format is specified in docs/TRAINING.md, "Model files".

    from trainers.torch_backend import load_arbnet, save_arbnet

    save_arbnet(model, "hashednets.safetensors")  # 51 KB for HashedNets 1/64 on 784-1000-10 (dense: 3.2 MB)
    model = load_arbnet("hashednets.safetensors")  # eval mode
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hashlab._version import __version__
from hashlab.io import InputError, atomic_open, index_file_bytes, load_index_bytes
from hashlab.io.container import FormatError, strict_json

from .layers import ArbLinear
from .models import ArbMLP

__all__ = ["ARBNET_FORMAT", "ARBNET_FORMAT_VERSION", "ModelFileError", "save_arbnet", "load_arbnet"]

ARBNET_FORMAT = "hashlab.arbnet"
ARBNET_FORMAT_VERSION = 1
_METADATA_KEYS = {"format", "format_version", "hashlab_version", "model", "checksum"}
_OPTIONS = {"bias", "activation", "batch_norm", "dropout", "input_dropout", "output_activation"}
_MAPPED = ("table", "indices", "sign", "bias_indices", "bias_sign")  # an ArbLinear's state held by map and tables


class ModelFileError(InputError):
    """A model file is malformed, corrupt, of a newer format version, or not a model file (a ``ValueError``)."""


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch as st
    except ImportError as e:  # pragma: no cover - a dependency of hashlab[torch]
        raise ImportError(f"model files need safetensors ({e}); install it with: pip install safetensors") from None
    return st


def _checksum(tensors: dict[str, Tensor]) -> str:
    """``"sha256:<hex>"`` of the tensors' bytes (little-endian, C order), in the order of their names."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return "sha256:" + digest.hexdigest()


def _mapped_keys(model: ArbMLP) -> set[str]:
    """State-dict keys that the map and the tables hold: every ArbLinear's table and map arrays, shared tables."""
    keys = {f"tables.{t}" for t in model.tables}
    for name, module in model.named_modules():
        if isinstance(module, ArbLinear):
            keys |= {f"{name}.{what}" for what in _MAPPED}
    return keys


def _table_readers(model: ArbMLP) -> dict[int, ArbLinear]:
    """Table number -> the first layer reading it (whose ``table`` is the table's Parameter)."""
    out: dict[int, ArbLinear] = {}
    for t, m in zip(model.layer_tables, model.linears):
        out.setdefault(t, m)
    return out


def save_arbnet(model: ArbMLP, path: str | os.PathLike, *, storage: str | None = None) -> Path:
    r"""Write a (trained) :class:`ArbMLP` to ``path`` as a model file, atomically.

    The file is a safetensors file holding: the map as an embedded index file (tensor ``map``, uint8;
    format v4: for a map its spec rebuilds only the spec and a SHA-256 of the indices, else the
    indices bit-packed), each table once (tensor ``table.<t>``, the model's dtype, by the map's table
    number), every other entry of ``model.state_dict()`` under its own name (dense biases, BatchNorm
    weights, biases, running statistics and ``num_batches_tracked``), and in its metadata the model's
    keyword arguments (:attr:`ArbMLP.options`) and a SHA-256 of the tensors. Nothing is pickled.

    Args:
        model: an :class:`ArbMLP` (any device and float dtype; tensors are copied to the CPU).
        path: destination, conventionally ``*.safetensors``.
        storage: how the map is stored: ``None`` (the smaller: ``"spec"`` when its spec rebuilds it),
            ``"spec"`` or ``"packed"`` (:func:`hashlab.io.format.save_index_file`).

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        TypeError: if ``model`` is not an :class:`ArbMLP`.
        ValueError: if ``storage`` cannot hold the map (``"spec"`` for a map its spec does not rebuild).

    Examples::

        >>> model = ArbMLP.from_index_file("hn.safetensors", activation="relu", batch_norm=False)
        >>> save_arbnet(model, "hn-model.safetensors").stat().st_size  # 4 bytes per table entry + ~1.6 KB
        51308
    """
    if not isinstance(model, ArbMLP):
        raise TypeError(
            f"save_arbnet saves an ArbMLP, got {type(model).__name__}; for a model arbify made from your own "
            "module, save its map with hashlab.save_index_file and its state_dict with safetensors"
        )
    st = _safetensors_torch()
    tensors: dict[str, Tensor] = {
        "map": torch.frombuffer(bytearray(index_file_bytes(model.to_index_map(), storage=storage)), dtype=torch.uint8)
    }
    for t, reader in sorted(_table_readers(model).items()):
        tensors[f"table.{t}"] = reader.table.detach().cpu().contiguous()  # (table_sizes[t],)
    skip = _mapped_keys(model)
    for key, value in model.state_dict().items():
        if key not in skip:
            tensors[key] = value.detach().cpu().contiguous()
    metadata = {
        "format": ARBNET_FORMAT,
        "format_version": str(ARBNET_FORMAT_VERSION),
        "hashlab_version": __version__,
        "model": json.dumps({"class": "ArbMLP", "options": model.options}, sort_keys=True, separators=(",", ":")),
        "checksum": _checksum(tensors),
    }
    data = st.save(tensors, metadata=metadata)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    _safetensors_torch()  # a clear ImportError first
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad file
        raise ModelFileError(
            f"{path}: not a readable safetensors file ({type(e).__name__}: {str(e)[:200]}); "
            "write model files with save_arbnet"
        ) from None
    return meta, tensors


def _check_metadata(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    """The model description of a model file's metadata, after the format, version and key checks."""
    if meta.get("format") != ARBNET_FORMAT:
        hint = (
            "; it is an index file (a map): build its model with ArbMLP.from_index_file"
            if meta.get("format") == "hashlab.index"
            else ""
        )
        raise ModelFileError(
            f"{path}: not a hashlab model file (its metadata format is {meta.get('format')!r}, not "
            f"{ARBNET_FORMAT!r}){hint}"
        )
    text = meta.get("format_version", "")
    if not text.isdigit() or text.startswith("0"):
        raise ModelFileError(f"{path}: format_version {text!r} is not a positive decimal integer")
    if int(text) > ARBNET_FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {text} is newer than this hashlab reads "
            f"({ARBNET_FORMAT_VERSION}); upgrade hashlab (pip install -U hashlab)"
        )
    unknown, missing = sorted(set(meta) - _METADATA_KEYS), sorted(_METADATA_KEYS - set(meta))
    if unknown or missing:
        raise ModelFileError(f"{path}: metadata fields unknown {unknown} / missing {missing} for format v{text}")
    try:
        desc = strict_json(meta["model"], f"{path}: metadata model")
    except FormatError as e:
        raise ModelFileError(str(e)) from None
    if (
        not isinstance(desc, dict)
        or set(desc) != {"class", "options"}
        or desc["class"] != "ArbMLP"
        or not isinstance(desc["options"], dict)
        or set(desc["options"]) != _OPTIONS
    ):
        raise ModelFileError(
            f"{path}: metadata model must be {{'class': 'ArbMLP', 'options': {{{', '.join(sorted(_OPTIONS))}}}}}, "
            f"got {meta['model'][:200]}"
        )
    return desc


def load_arbnet(path: str | os.PathLike, *, device: torch.device | str | None = None, verify: bool = True) -> ArbMLP:
    r"""Read a model file written by :func:`save_arbnet`: the :class:`ArbMLP` it holds, in eval mode.

    The embedded map is read with :func:`hashlab.io.load_index_bytes` (a spec-only map is rebuilt and
    checked against its SHA-256; a mismatch raises :class:`hashlab.io.FormatError` naming the hashlab that
    wrote it and what to do); the model is built with the stored keyword arguments, and every table,
    parameter and buffer is copied in, so its outputs are bitwise those of the saved model on the same
    device. The global torch RNG is left as it was.

    Args:
        path: a model file.
        device: where to put the model (default: the CPU).
        verify: check the SHA-256 of the tensors (``checksum``); ``False`` skips it (trusted files).

    Returns:
        :class:`ArbMLP` in eval mode (call ``.train()`` to fine-tune it), with the file's float dtype.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ModelFileError: (a ``ValueError``) if the file is not a model file, is of a newer format version,
            is corrupt (checksum) or does not hold exactly the tensors of its model (names, shapes, dtypes);
            the message names the file and the problem.
        hashlab.io.FormatError: if the embedded map is malformed or does not rebuild (its label is
            ``PATH:map``).

    Examples::

        >>> model = load_arbnet("hn-model.safetensors")
        >>> model(torch.randn(32, 1, 28, 28)).shape
        torch.Size([32, 10])
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist; write one with save_arbnet(model, {str(path)!r})")
    meta, tensors = _read(path)
    desc = _check_metadata(path, meta)
    if verify and _checksum(tensors) != meta["checksum"]:
        raise ModelFileError(f"{path}: the tensors do not match the file's SHA-256 checksum; the file is corrupt")
    blob = tensors.pop("map", None)
    if blob is None or blob.dtype != torch.uint8 or blob.dim() != 1:
        raise ModelFileError(f"{path}: the model file has no uint8 tensor 'map' (its index file)")
    imap = load_index_bytes(blob.numpy().tobytes(), name=f"{path}:map")
    tables = {int(k[6:]): v for k, v in tensors.items() if k.startswith("table.") and k[6:].isdigit()}
    dtype = next(iter(tables.values())).dtype if tables else torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ModelFileError(f"{path}: tables must hold floats, got {dtype}")
    try:
        with torch.random.fork_rng(devices=[]):  # the random init below is overwritten: leave the caller's RNG
            model = ArbMLP(imap, dtype=dtype, **desc["options"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot build its ArbMLP: {e}") from None
    readers = _table_readers(model)
    skip = _mapped_keys(model)
    state = {k: v for k, v in model.state_dict(keep_vars=True).items() if k not in skip}
    want = {f"table.{t}" for t in readers} | set(state)
    missing, unknown = sorted(want - set(tensors)), sorted(set(tensors) - want)
    if missing or unknown:
        raise ModelFileError(
            f"{path}: tensors missing {missing[:6]} / unknown {unknown[:6]} for its ArbMLP "
            f"(options {desc['options']}, map of {len(imap.layers)} layers)"
        )
    targets: dict[str, Tensor] = {f"table.{t}": m.table for t, m in readers.items()} | state
    with torch.no_grad():
        for key, target in targets.items():
            value = tensors[key]
            if value.shape != target.shape or value.dtype != target.dtype:
                raise ModelFileError(
                    f"{path}: tensor {key!r} is {value.dtype} {tuple(value.shape)}; its ArbMLP has "
                    f"{target.dtype} {tuple(target.shape)}"
                )
            target.copy_(value)
    return model.to(device).eval() if device is not None else model.eval()
