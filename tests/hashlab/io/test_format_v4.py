"""Format v4: spec-only files (rebuilt and checked against indices_sha256) and bit-packed files; golden bytes,
the writer's choice of storage, the reader's refusals, and maps held in memory."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from hashlab import (
    ARCHITECTURES,
    Architecture,
    ConvGeometry,
    FormatError,
    HashSpec,
    IndexMap,
    RNNGeometry,
    __version__,
    build_map,
    cluster_weights,
    conv_map,
    load_index_file,
    rnn_map,
    save_index_file,
)
from hashlab.io import LimitError, index_file_bytes, load_index_bytes
from hashlab.io.format import indices_checksum, payload_checksum, read_header, rebuilds_from_spec
from tests.conftest import REPO
from tests.hashlab.io.golden.make_golden import (
    GOLDEN_V4_PACKED,
    GOLDEN_V4_SPEC,
    GOLDEN_VERSION,
    golden_map_v4_packed,
    golden_map_v4_spec,
)
from tests.hashlab.io.test_format import _rewrite_header, assert_maps_equal
from tests.hashlab.maps.test_hashes import archs, specs


def _meta(path: Path) -> dict:
    return read_header(path)[0]["__metadata__"]


def _tensor_names(path: Path) -> list[str]:
    return sorted(k for k in read_header(path)[0] if k != "__metadata__")


# -- golden files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "golden_file,make,storage",
    [(GOLDEN_V4_SPEC, golden_map_v4_spec, "spec"), (GOLDEN_V4_PACKED, golden_map_v4_packed, "packed")],
    ids=["spec", "packed"],
)
def test_golden_files_read_back_and_the_writer_reproduces_their_bytes(tmp_path, golden_file, make, storage):
    assert_maps_equal(load_index_file(golden_file), make())
    assert _meta(golden_file)["storage"] == storage and _meta(golden_file)["format_version"] == "4"
    produced = save_index_file(make(), tmp_path / "g.safetensors").read_bytes()  # the default picks the storage
    golden = golden_file.read_bytes()
    if __version__ == GOLDEN_VERSION:
        assert produced == golden
    (hp,), (hg,) = struct.unpack("<Q", produced[:8]), struct.unpack("<Q", golden[:8])

    def norm(h):
        return re.sub(rb'hashlab_version\\?":\\?"[^"\\]*', b"V", h).rstrip(b" ")

    assert norm(produced[8 : 8 + hp]) == norm(golden[8 : 8 + hg])
    assert produced[8 + hp :] == golden[8 + hg :]


def test_the_spec_golden_file_stores_no_index_array():
    assert _tensor_names(GOLDEN_V4_SPEC) == ["table.1"]  # the initial table only
    meta = _meta(GOLDEN_V4_SPEC)
    assert meta["indices_sha256"] == indices_checksum(golden_map_v4_spec().layers)
    back = load_index_file(GOLDEN_V4_SPEC)
    assert [lay.name for lay in back.layers] == ["block0.linear", "block1.linear", "block2.linear"]
    assert back.layers[0].attrs == {"note": "golden"} and back.layers[0].bias_sign is not None


def test_the_packed_golden_file_is_plain_safetensors_of_packed_bytes():
    tensors = load_file(GOLDEN_V4_PACKED)
    m = golden_map_v4_packed()
    assert {k: v.dtype for k, v in tensors.items()} == {
        **{f"layers.{k}.{w}": np.uint8 for k, w in [(0, "indices"), (0, "sign"), (1, "indices"), (1, "sign")]},
        **{f"layers.{k}.{w}": np.uint8 for k, w in [(2, "indices"), (2, "bias_indices")]},
        **{f"layers.3.{w}": np.uint8 for w in ("indices", "bias_indices", "bias_sign")},
        "table.1": np.float32,
    }
    # tables of 5 entries: 3 bits per index; of 40000: 16 bits; signs 1 bit
    assert tensors["layers.0.indices"].shape == (-(-m.layers[0].num_weights * 3 // 8),)
    assert tensors["layers.2.indices"].shape == (m.layers[2].num_weights * 2,)
    assert tensors["layers.0.sign"].shape == (-(-m.layers[0].num_weights // 8),)


def _doc_reader():
    doc = (REPO / "docs" / "FORMAT.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/FORMAT.md", "exec"), ns)  # the documented snippet, verbatim
    return ns["read_index_file"]


def test_numpy_only_reader_in_format_doc_unpacks_the_packed_golden_file():
    meta, layers, tensors = _doc_reader()(GOLDEN_V4_PACKED)
    m = golden_map_v4_packed()
    assert len(layers) == len(m.layers) == 4
    for k, lay in enumerate(m.layers):
        for what in ("indices", "sign", "bias_indices", "bias_sign"):
            want, got = getattr(lay, what), tensors.get(f"layers.{k}.{what}")
            assert (want is None) == (got is None)
            if want is not None:
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
    with pytest.raises(AssertionError, match="spec-only"):
        _doc_reader()(GOLDEN_V4_SPEC)


# -- the writer's choice ----------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(specs(), archs, st.sampled_from([None, "1/64", "3/7"]), st.booleans(), st.sampled_from([None, "packed"]))
def test_every_built_map_round_trips_in_both_storages(tmp_path, spec, arch, ratio, hash_bias, storage):
    if ratio is not None and spec.kind != "identity":
        spec = dataclasses.replace(spec, table_size=None, compression=ratio)
    imap = build_map(dataclasses.replace(spec, hash_bias=hash_bias), arch)
    path = save_index_file(imap, tmp_path / "m.safetensors", storage=storage)
    assert _meta(path)["storage"] == (storage or "spec")
    assert (_tensor_names(path) == []) is (storage is None)
    assert_maps_equal(load_index_file(path), imap)


def _clustered() -> IndexMap:
    rng = np.random.default_rng(0)
    return cluster_weights([rng.standard_normal((6, 9)).astype(np.float32)], 5, iters=3)


def _edited() -> IndexMap:
    m = build_map(HashSpec(kind="uniform", table_size=9, sign=True), Architecture((5, 4, 3)))
    indices = np.array(m.layers[0].indices)
    indices[0, 0] = (indices[0, 0] + 1) % 9
    return dataclasses.replace(m, layers=(dataclasses.replace(m.layers[0], indices=indices), m.layers[1]))


def _renamed() -> IndexMap:  # as arbify leaves a map: module names, bucket-mean initial tables
    m = build_map(HashSpec(kind="xxhash", table_size=9, sign=True), Architecture((5, 4, 3)))
    layers = tuple(dataclasses.replace(lay, name=f"net.{k}") for k, lay in enumerate(m.layers))
    return IndexMap(layers, m.table_sizes, m.spec, (np.ones(9, np.float32), None))


STORAGE_CASES = [
    (
        "build_map",
        lambda: build_map(HashSpec(kind="dirichlet", alpha=0.3, table_size=40000), Architecture((9, 7))),
        "spec",
    ),
    ("renamed", _renamed, "spec"),
    ("conv2d", lambda: conv_map(ConvGeometry(2, 3, (5, 5), 3, padding=1), name="c"), "spec"),
    ("rnn", lambda: rnn_map(RNNGeometry(2, 3, 3)), "spec"),
    ("cluster", _clustered, "packed"),
    ("edited", _edited, "packed"),
    ("composed", golden_map_v4_packed, "packed"),
]


@pytest.mark.parametrize("make,storage", [c[1:] for c in STORAGE_CASES], ids=[c[0] for c in STORAGE_CASES])
def test_the_writer_stores_the_spec_only_when_it_rebuilds_the_map(tmp_path, make, storage):
    imap = make()
    assert rebuilds_from_spec(imap) is (storage == "spec")
    path = save_index_file(imap, tmp_path / "m.safetensors")
    assert _meta(path)["storage"] == storage
    assert_maps_equal(load_index_file(path), imap)
    if storage == "packed":
        with pytest.raises(ValueError, match="storage='spec' needs a map that its spec rebuilds exactly"):
            save_index_file(imap, tmp_path / "s.safetensors", storage="spec")
    else:
        assert_maps_equal(load_index_file(save_index_file(imap, tmp_path / "p.safetensors", storage="packed")), imap)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"version": 3, "storage": "packed"}, "needs format v4"),
        ({"storage": "zip"}, "storage must be one of"),
        ({"version": 5}, "format version must be one of"),
    ],
)
def test_the_writer_refuses_impossible_requests(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_index_file(_edited(), tmp_path / "m.safetensors", **kwargs)
    assert not (tmp_path / "m.safetensors").exists()


def test_older_versions_are_still_written_on_request(tmp_path):
    imap = _renamed()
    for version in (2, 3):
        path = save_index_file(imap, tmp_path / f"v{version}.safetensors", version=version)
        assert _meta(path)["format_version"] == str(version) and "storage" not in _meta(path)
        assert "layers.0.indices" in _tensor_names(path)
        assert_maps_equal(load_index_file(path), imap)


def test_packing_bits_per_index_follow_the_table_size(tmp_path):
    # a clustered map with 255 centres takes 8 bits per weight, with 256 it takes 9 (the +1 of "fixed at zero")
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((40, 50)).astype(np.float32)]
    for n, bits in ((255, 8), (256, 9)):
        path = save_index_file(cluster_weights(weights, n, iters=1), tmp_path / f"c{n}.safetensors")
        assert read_header(path)[0]["layers.0.indices"]["shape"] == [2000 * bits // 8]


# -- the reader ---------------------------------------------------------------------------------------


def _set_meta(**changes):
    def edit(h):
        for k, v in changes.items():
            if v is None:
                h["__metadata__"].pop(k, None)
            else:
                h["__metadata__"][k] = v

    return edit


def _edit_json(key, fn):
    def edit(h):
        value = json.loads(h["__metadata__"][key])
        h["__metadata__"][key] = json.dumps(fn(value))

    return edit


ZERO_SHA = "sha256:" + "0" * 64
BAD_V4_HEADERS = [
    ("no-storage", GOLDEN_V4_PACKED, _set_meta(storage=None), "storage must be one of"),
    ("bad-storage", GOLDEN_V4_PACKED, _set_meta(storage="zip"), "storage must be one of"),
    ("packed-with-sha", GOLDEN_V4_PACKED, _set_meta(indices_sha256=ZERO_SHA), r"unknown \['indices_sha256'\]"),
    ("spec-without-sha", GOLDEN_V4_SPEC, _set_meta(indices_sha256=None), r"missing \['indices_sha256'\]"),
    ("bad-sha", GOLDEN_V4_SPEC, _set_meta(indices_sha256="sha256:XYZ"), "is not 'sha256:' \\+ 64"),
    ("storage-in-v3", REPO / "tests/hashlab/io/golden/index_v3.safetensors", _set_meta(storage="spec"), "unknown"),
    ("packed-as-spec", GOLDEN_V4_PACKED, _set_meta(storage="spec", indices_sha256=ZERO_SHA), "unknown"),
    ("spec-as-packed", GOLDEN_V4_SPEC, _set_meta(storage="packed", indices_sha256=None), "missing"),
    (
        "composed-as-spec",
        GOLDEN_V4_SPEC,
        _edit_json("spec", lambda s: {"builder": "golden", "parts": [s]}),
        "needs a spec that hashlab rebuilds",
    ),
    (
        "wrong-dtype",
        GOLDEN_V4_PACKED,
        lambda h: h["layers.0.sign"].update(dtype="I8"),
        r"'layers.0.sign' is I8 \(2,\); the header's layers and tables say U8 \(2,\)",
    ),
]


@pytest.mark.parametrize("src,edit,match", [c[1:] for c in BAD_V4_HEADERS], ids=[c[0] for c in BAD_V4_HEADERS])
def test_the_reader_refuses_bad_v4_headers(tmp_path, src, edit, match):
    bad = _rewrite_header(src, tmp_path / "bad.safetensors", edit)
    with pytest.raises(FormatError, match=match) as e:
        load_index_file(bad, verify=False)
    assert str(bad) in str(e.value)


def test_a_rebuilt_map_that_differs_names_both_hashlab_versions_and_the_fix(tmp_path):
    # what a hashlab whose builders changed would see: the stored hash is not that of the rebuilt arrays
    old = _rewrite_header(
        GOLDEN_V4_SPEC, tmp_path / "old.safetensors", _set_meta(hashlab_version="0.0.9", indices_sha256=ZERO_SHA)
    )
    with pytest.raises(FormatError) as e:
        load_index_file(old)
    msg = str(e.value)
    assert "do not match its indices_sha256" in msg and "hashlab 0.0.9 (which wrote the file)" in msg
    assert f"and {__version__} (reading it)" in msg and "storage='packed'" in msg and "`hashlab build`" in msg
    with pytest.raises(FormatError, match="indices_sha256"):
        load_index_file(old, verify=False)  # verify=False skips the data checksum, never this check


def test_an_edited_seed_changes_the_rebuilt_map_and_is_caught(tmp_path):
    bad = _rewrite_header(GOLDEN_V4_SPEC, tmp_path / "seed.safetensors", _edit_json("spec", lambda s: s | {"seed": 12}))
    with pytest.raises(FormatError, match="do not match its indices_sha256"):
        load_index_file(bad)


def test_a_rebuilt_structure_that_differs_from_the_header_is_caught(tmp_path):
    # a conv spec is not checked against the layers like a build_map one: the rebuild check catches it
    path = save_index_file(conv_map(ConvGeometry(1, 2, (4, 4), 3)), tmp_path / "conv.safetensors")
    bad = _rewrite_header(
        path, tmp_path / "bad.safetensors", _edit_json("layers", lambda ls: [ls[0] | {"bias": False}])
    )
    with pytest.raises(FormatError, match=r"the map rebuilt from its spec has tables \[20\] and layers"):
        load_index_file(bad)
    bad = _rewrite_header(path, tmp_path / "bad2.safetensors", _edit_json("spec", lambda s: s | {"out_channels": 3}))
    with pytest.raises(FormatError, match="its spec builds layers of shapes"):
        load_index_file(bad)


def test_rebuilding_is_bounded_before_any_work(tmp_path):
    path = save_index_file(build_map(HashSpec(kind="uniform", table_size=5), Architecture((300, 200))), tmp_path / "m")
    with pytest.raises(LimitError, match=r"rebuild 60,000 virtual weights .* over the limit of 59,999"):
        load_index_file(path, max_regenerated_weights=59_999)
    assert load_index_file(path, max_regenerated_weights=60_000).num_weights == 60_000


def _rewrite_data(src: Path, dst: Path, edit) -> Path:
    """``edit(header, data)`` changes the data buffer in place; the checksum is fixed after."""
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = bytearray(raw[8 + n :])
    edit(header, data)
    header["__metadata__"]["checksum"] = payload_checksum(bytes(data))
    hb = json.dumps(header).encode()
    hb += b" " * (-(8 + len(hb)) % 8)
    dst.write_bytes(struct.pack("<Q", len(hb)) + hb + bytes(data))
    return dst


def _set_last_byte(name, value):
    def edit(h, data):
        data[h[name]["data_offsets"][1] - 1] = value

    return edit


@pytest.mark.parametrize(
    "edit,match",
    [
        (_set_last_byte("layers.0.sign", 0xFF), "'layers.0.sign': the 4 unused bits of the last byte must be zero"),
        (_set_last_byte("layers.1.indices", 0xFF), "'layers.1.indices': the 0 unused|code 7 exceeds the table's 5"),
        (_set_last_byte("layers.3.bias_indices", 0xC0), "'layers.3.bias_indices': the 2 unused bits"),
    ],
    ids=["sign-padding", "index-code", "bias-padding"],
)
def test_malformed_packed_arrays_are_refused_whatever_validate_says(tmp_path, edit, match):
    bad = _rewrite_data(GOLDEN_V4_PACKED, tmp_path / "bad.safetensors", edit)
    for validate in (True, False):
        with pytest.raises(FormatError, match=match):
            load_index_file(bad, validate=validate)


def test_every_flipped_data_byte_of_a_packed_file_is_caught(tmp_path):
    raw = bytearray(GOLDEN_V4_PACKED.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    bad = tmp_path / "flip.safetensors"
    for pos in range(start, len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x10
        bad.write_bytes(flipped)
        with pytest.raises(FormatError, match="checksum"):
            load_index_file(bad)


# -- maps in memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [golden_map_v4_spec, golden_map_v4_packed], ids=["spec", "packed"])
def test_bytes_in_memory_are_the_file(tmp_path, make):
    imap = make()
    data = index_file_bytes(imap)
    assert data == save_index_file(imap, tmp_path / "m.safetensors").read_bytes()
    assert_maps_equal(load_index_bytes(data), imap)
    assert_maps_equal(load_index_bytes(bytearray(data), name="model.safetensors:map"), imap)


def test_errors_in_memory_name_the_label():
    data = bytearray(index_file_bytes(golden_map_v4_packed()))
    data[-1] ^= 0xFF
    with pytest.raises(FormatError, match=r"^model.safetensors:map: the data does not match its SHA-256"):
        load_index_bytes(bytes(data), name="model.safetensors:map")
    with pytest.raises(FormatError, match=r"^x: too short"):
        load_index_bytes(b"abc", name="x")


# -- the sizes this format exists for ---------------------------------------------------------------------


def test_the_hashednets_map_file_is_under_a_kilobyte(tmp_path):
    # hashlab build --arch 784-1000-10 --kind xxhash --sign --compression 1/64 --hash-bias: 2,386,328 bytes in v3
    imap = build_map(
        HashSpec(kind="xxhash", sign=True, compression="1/64", hash_bias=True), Architecture.parse("784-1000-10")
    )
    v4 = save_index_file(imap, tmp_path / "v4.safetensors")
    v3 = save_index_file(imap, tmp_path / "v3.safetensors", version=3)
    assert v3.stat().st_size == 2_386_328 and v4.stat().st_size < 1024
    assert_maps_equal(load_index_file(v4), imap)


def test_the_mnist_map_file_is_a_spec(tmp_path):
    imap = build_map(HashSpec(kind="dirichlet", alpha=1.0), ARCHITECTURES["mnist-mlp"])
    path = save_index_file(imap, tmp_path / "m.safetensors")
    assert path.stat().st_size < 2048 and _tensor_names(path) == []  # about 400 KB in v2
