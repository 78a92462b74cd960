"""ArbNet model files: a trained ArbNet in one safetensors file, small because its map is.

A model file holds what the trained network is and nothing else: its tables, its dense parameters and
buffers (biases not read from a table, BatchNorm), and its map as an embedded index file (format v4: the spec
alone for a map its spec rebuilds, else bit-packed indices; docs/FORMAT.md). Two kinds of model:

* an :class:`ArbMLP` (format version 1): the file also holds the keyword arguments of :class:`ArbMLP`, and
  :func:`load_arbnet` builds the model from the file alone;
* any module that :func:`~trainers.torch_backend.convert.arbify` turned into an ArbNet (``ArbLinear``,
  ``ArbConv2d``, ``ArbEmbedding`` layers; format version 2): the file cannot hold the module's code, so
  :func:`load_arbnet` takes the dense module to fill (``model=``, a fresh instance of the architecture) and
  arbifies it with the file's map.

:func:`load_arbnet` reads the map back through :func:`hashlab.io.load_index_bytes` (which rebuilds and checks
it), builds the model and copies every value in, so the loaded model computes bitwise what the saved one did.
The format is specified in docs/TRAINING.md, "Model files".

    from trainers.torch_backend import load_arbnet, save_arbnet

    save_arbnet(model, "hashednets.safetensors")  # 51 KB for HashedNets 1/64 on 784-1000-10 (dense: 3.2 MB)
    model = load_arbnet("hashednets.safetensors")  # eval mode

    net, imap = arbify(Net(), lambda shapes: hashlab.build_model_map(spec, shapes))  # ... then train net
    save_arbnet(net, "net.safetensors", index_map=imap)  # the map arbify returned: stored as its spec
    net = load_arbnet("net.safetensors", model=Net())
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hashlab._version import __version__
from hashlab.io import InputError, atomic_open, index_file_bytes, load_index_bytes
from hashlab.io.container import FormatError, strict_json
from hashlab.maps.geometry import LayerShape
from hashlab.maps.indexmap import IndexMap, LayerMap, index_dtype

from .conv2d import ArbConv2d
from .convert import arbify, model_layers
from .embedding import ArbEmbedding
from .layers import ArbLayer, ArbLinear
from .models import ArbMLP

__all__ = ["ARBNET_FORMAT", "ARBNET_FORMAT_VERSION", "ModelFileError", "save_arbnet", "load_arbnet"]

ARBNET_FORMAT = "hashlab.arbnet"
ARBNET_FORMAT_VERSION = 2
"""The newest version this hashlab reads and writes: 1 for an :class:`ArbMLP` (unchanged since version 1, so older
readers keep reading those files), 2 for an arbified module (class ``"module"``)."""
_METADATA_KEYS = {"format", "format_version", "hashlab_version", "model", "checksum"}
_OPTIONS = {"bias", "activation", "batch_norm", "dropout", "input_dropout", "output_activation"}
_MAPPED = ("table", "indices", "sign", "bias_indices", "bias_sign")  # an ArbNet layer's state held by map and tables
_KIND = {ArbLinear: "linear", ArbConv2d: "conv2d", ArbEmbedding: "embedding"}
_MODULE_BUILDER = "trainers.torch_backend.save_arbnet"
"""``builder`` of a map read back from a module's layers (no spec rebuilds it: stored bit-packed)."""


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


def _arb_layers(model: nn.Module) -> list[tuple[str, ArbLayer]]:
    """The ArbNet layers of ``model`` in ``named_modules()`` order (a tied layer once, under its first name)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ArbLayer)]


def _mapped_keys(model: nn.Module) -> set[str]:
    """State-dict keys that the map and the tables hold: every ArbNet layer's table and map arrays, shared tables."""
    keys = {f"tables.{t}" for t in model.tables} if isinstance(model, ArbMLP) else set()
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, ArbLayer):
            keys |= {f"{name}.{what}" for what in _MAPPED}
    return keys


def _table_readers(model: ArbMLP) -> dict[int, ArbLayer]:
    """Table number -> the first layer reading it (whose ``table`` is the table's Parameter)."""
    out: dict[int, ArbLayer] = {}
    for t, m in zip(model.layer_tables, model.linears):
        out.setdefault(t, m)
    return out


def _array(t: Tensor | None, dtype: Any) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(dtype)


def _module_map(model: nn.Module, index_map: IndexMap | None) -> tuple[IndexMap, dict[int, ArbLayer]]:
    """The map of an arbified module (read back from its layers, or ``index_map`` checked against them), without
    initial tables, and its table readers."""
    layers = _arb_layers(model)
    if not layers:
        raise TypeError(
            f"save_arbnet saves an ArbMLP or a module holding ArbNet layers (arbify's), got a {type(model).__name__} "
            "without any"
        )
    params: dict[int, int] = {}  # id(table Parameter) -> table number
    readers: dict[int, ArbLayer] = {}
    if index_map is None:
        maps = []
        for name, m in layers:
            t = params.setdefault(id(m.table), len(params))
            readers.setdefault(t, m)
            dt = index_dtype(m.table_size)
            maps.append(
                LayerMap(
                    name=name,
                    indices=_array(m.indices, dt),  # type: ignore[arg-type]  # never None
                    table=t,
                    sign=_array(m.sign, np.int8),
                    bias_indices=_array(m.bias_indices, dt),
                    attrs=LayerShape(_KIND[type(m)], m.weight_shape, name).attrs(),
                    bias_sign=_array(m.bias_sign, np.int8),
                )
            )
        sizes = [0] * len(params)
        for t, m in readers.items():
            sizes[t] = m.table_size
        return IndexMap(
            tuple(maps), tuple(sizes), {"builder": _MODULE_BUILDER, "hashlab_version": __version__}
        ), readers
    if not isinstance(index_map, IndexMap):
        raise TypeError(f"index_map must be the IndexMap arbify returned, got {type(index_map).__name__}")
    names = [name for name, _ in layers]
    if [lay.name for lay in index_map.layers] != names:
        raise ValueError(
            f"index_map's layers {[lay.name for lay in index_map.layers]} are not the model's ArbNet layers {names}; "
            "pass the map arbify returned for this model, or none (the map is then read from the layers)"
        )
    for (name, m), lay in zip(layers, index_map.layers):
        same = (
            m.table_size == index_map.table_sizes[lay.table]
            and np.array_equal(m.indices.cpu().numpy(), lay.indices)
            and (m.sign is None) == (lay.sign is None)
            and (lay.sign is None or np.array_equal(m.sign.cpu().numpy(), lay.sign))  # type: ignore[union-attr]
            and (m.bias_indices is None) == (lay.bias_indices is None)
            and params.setdefault(id(m.table), lay.table) == lay.table
        )
        if not same:
            raise ValueError(f"layer {name!r} does not read the table the way index_map's layer says; pass its own map")
        readers.setdefault(lay.table, m)
    return dataclasses.replace(index_map, initial_tables=None), readers


def save_arbnet(
    model: nn.Module, path: str | os.PathLike, *, index_map: IndexMap | None = None, storage: str | None = None
) -> Path:
    r"""Write a (trained) ArbNet to ``path`` as a model file, atomically: an :class:`ArbMLP`, or any module
    :func:`~trainers.torch_backend.convert.arbify` made.

    The file is a safetensors file holding: the map as an embedded index file (tensor ``map``, uint8;
    format v4: for a map its spec rebuilds only the spec and a SHA-256 of the indices, else the
    indices bit-packed), each table once (tensor ``table.<t>``, the model's dtype, by the map's table
    number), every other entry of ``model.state_dict()`` under its own name (dense biases, BatchNorm
    weights, biases, running statistics and ``num_batches_tracked``), and in its metadata the model's
    description (an :class:`ArbMLP`'s keyword arguments, :attr:`ArbMLP.options`, format version 1; else
    ``{"class": "module"}``, version 2) and a SHA-256 of the tensors. Nothing is pickled.

    Args:
        model: an :class:`ArbMLP`, or a module holding ArbNet layers (any device and float dtype; tensors are
            copied to the CPU).
        path: destination, conventionally ``*.safetensors``.
        index_map: for a module: the map :func:`~trainers.torch_backend.convert.arbify` returned for it (layer
            names = module names), checked against the layers; its spec lets the file store the spec alone.
            ``None``: the map is read back from the layers, with no spec, and stored bit-packed. Not for an
            :class:`ArbMLP` (which keeps its own).
        storage: how the map is stored: ``None`` (the smaller: ``"spec"`` when its spec rebuilds it),
            ``"spec"`` or ``"packed"`` (:func:`hashlab.io.format.save_index_file`).

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        TypeError: if ``model`` is neither an :class:`ArbMLP` nor a module with ArbNet layers, or ``index_map``
            is given for an :class:`ArbMLP` or is not an :class:`IndexMap`.
        ValueError: if ``index_map`` is not the model's map (other layer names, arrays or table sharing), or
            ``storage`` cannot hold the map (``"spec"`` for a map its spec does not rebuild).

    Examples::

        >>> model = ArbMLP.from_index_file("hn.safetensors", activation="relu", batch_norm=False)
        >>> save_arbnet(model, "hn-model.safetensors").stat().st_size  # 4 bytes per table entry + ~1.6 KB
        51308
    """
    if isinstance(model, ArbMLP):
        if index_map is not None:
            raise TypeError("an ArbMLP saves the map it was built from; drop index_map")
        imap, readers = model.to_index_map(), _table_readers(model)
        desc: dict[str, Any] = {"class": "ArbMLP", "options": model.options}
        version = 1
    elif isinstance(model, nn.Module):
        imap, readers = _module_map(model, index_map)
        desc, version = {"class": "module", "options": {}}, 2
    else:
        raise TypeError(f"save_arbnet saves an ArbMLP or an arbified module, got {type(model).__name__}")
    st = _safetensors_torch()
    tensors: dict[str, Tensor] = {
        "map": torch.frombuffer(bytearray(index_file_bytes(imap, storage=storage)), dtype=torch.uint8)
    }
    for t, reader in sorted(readers.items()):
        tensors[f"table.{t}"] = reader.table.detach().cpu().contiguous()  # (table_sizes[t],)
    skip = _mapped_keys(model)
    for key, value in model.state_dict().items():
        if key not in skip:
            tensors[key] = value.detach().cpu().contiguous()
    metadata = {
        "format": ARBNET_FORMAT,
        "format_version": str(version),
        "hashlab_version": __version__,
        "model": json.dumps(desc, sort_keys=True, separators=(",", ":")),
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
    mlp = (
        isinstance(desc, dict)
        and set(desc) == {"class", "options"}
        and desc["class"] == "ArbMLP"
        and isinstance(desc["options"], dict)
        and set(desc["options"]) == _OPTIONS
    )
    module = int(text) >= 2 and desc == {"class": "module", "options": {}}
    if not (mlp or module):
        raise ModelFileError(
            f"{path}: metadata model must be {{'class': 'ArbMLP', 'options': {{{', '.join(sorted(_OPTIONS))}}}}}"
            + (" or {'class': 'module', 'options': {}}" if int(text) >= 2 else "")
            + f" in format version {text}, got {meta['model'][:200]}"
        )
    return desc


def load_arbnet(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    device: torch.device | str | None = None,
    verify: bool = True,
) -> nn.Module:
    r"""Read a model file written by :func:`save_arbnet`: the ArbNet it holds, in eval mode.

    The embedded map is read with :func:`hashlab.io.load_index_bytes` (a spec-only map is rebuilt and
    checked against its SHA-256; a mismatch raises :class:`hashlab.io.FormatError` naming the hashlab that
    wrote it and what to do). An :class:`ArbMLP` is built with the stored keyword arguments; an arbified module
    is ``model`` arbified with the stored map (``init="map"``; its layers named in the map become ArbNet layers,
    the others stay). Every table, parameter and buffer is then copied in, so the outputs are bitwise those of
    the saved model on the same device. The global torch RNG is left as it was.

    Args:
        path: a model file.
        model: for a file of an arbified module (format version 2, class ``"module"``): the dense module to fill,
            a fresh instance of the architecture that was arbified, of the file's float dtype (changed in place,
            and returned). ``None`` for an :class:`ArbMLP` file.
        device: where to put the model (default: the CPU, or ``model``'s device).
        verify: check the SHA-256 of the tensors (``checksum``); ``False`` skips it (trusted files).

    Returns:
        The :class:`ArbMLP`, or ``model`` as an ArbNet, in eval mode (call ``.train()`` to fine-tune it).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ModelFileError: (a ``ValueError``) if the file is not a model file, is of a newer format version,
            is corrupt (checksum) or does not hold exactly the tensors of its model (names, shapes, dtypes); if
            ``model`` is missing for a module file, given for an :class:`ArbMLP` file, or does not have the
            layers the map names; the message names the file and the problem.
        hashlab.io.FormatError: if the embedded map is malformed or does not rebuild (its label is
            ``PATH:map``).

    Examples::

        >>> model = load_arbnet("hn-model.safetensors")
        >>> model(torch.randn(32, 1, 28, 28)).shape
        torch.Size([32, 10])
        >>> net = load_arbnet("net.safetensors", model=Net())  # an arbified Net
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
    if desc["class"] == "ArbMLP":
        if model is not None:
            raise ModelFileError(f"{path}: holds an ArbMLP, which the file builds by itself; drop model=")
        try:
            with torch.random.fork_rng(devices=[]):  # the random init below is overwritten: leave the caller's RNG
                built: nn.Module = ArbMLP(imap, dtype=dtype, **desc["options"])
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{path}: cannot build its ArbMLP: {e}") from None
        readers = _table_readers(built)  # type: ignore[arg-type]
        what = "its ArbMLP"
    else:
        built, readers = _arbify_into(path, model, imap)
        what = f"its {type(built).__name__}"
    skip = _mapped_keys(built)
    state = {k: v for k, v in built.state_dict(keep_vars=True).items() if k not in skip}
    want = {f"table.{t}" for t in readers} | set(state)
    missing, unknown = sorted(want - set(tensors)), sorted(set(tensors) - want)
    if missing or unknown:
        raise ModelFileError(
            f"{path}: tensors missing {missing[:6]} / unknown {unknown[:6]} for {what} "
            f"(model {desc}, map of {len(imap.layers)} layers)"
        )
    targets: dict[str, Tensor] = {f"table.{t}": m.table for t, m in readers.items()} | state
    with torch.no_grad():
        for key, target in targets.items():
            value = tensors[key]
            if value.shape != target.shape or value.dtype != target.dtype:
                raise ModelFileError(
                    f"{path}: tensor {key!r} is {value.dtype} {tuple(value.shape)}; {what} has "
                    f"{target.dtype} {tuple(target.shape)}"
                )
            target.copy_(value)
    return built.to(device).eval() if device is not None else built.eval()


def _arbify_into(path: Path, model: nn.Module | None, imap: IndexMap) -> tuple[nn.Module, dict[int, ArbLayer]]:
    """``model`` arbified with the file's map (the layers it names, in place), and its table readers."""
    if model is None:
        raise ModelFileError(
            f"{path}: holds an arbified module, whose code a file cannot hold; pass model=, a fresh instance of "
            "its dense architecture (the module before arbify), e.g. load_arbnet(path, model=Net())"
        )
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"{path}: model must be a torch.nn.Module, got {type(model).__name__}")
    names = [lay.name for lay in imap.layers]
    try:
        present = model_layers(model)
    except ValueError as e:
        raise ModelFileError(f"{path}: cannot arbify the given model: {e}") from None
    if [n for n, _ in present if n in set(names)] != names:
        raise ModelFileError(
            f"{path}: the map names layers {names[:8]}, but the given {type(model).__name__}'s Linear, Conv2d and "
            f"Embedding layers are {[n for n, _ in present][:8]}; pass the architecture that was arbified"
        )
    skip = [n for n, _ in present if n not in set(names)]
    try:
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG
            model, _ = arbify(model, dataclasses.replace(imap, initial_tables=None), skip=skip, init="map")
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot arbify the given {type(model).__name__} with its map: {e}") from None
    layers = dict(_arb_layers(model))
    readers: dict[int, ArbLayer] = {}
    for lay in imap.layers:
        readers.setdefault(lay.table, layers[lay.name])
    return model, readers
