"""Index file formats v1 and v2 (and the default writer): round trip, golden bytes, safetensors interop, rejection of
bad files."""

from __future__ import annotations

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
    Architecture,
    FormatError,
    HashSpec,
    IndexMap,
    LayerMap,
    __version__,
    build_map,
    load_index_file,
    save_index_file,
)
from hashlab.io.format import read_header
from tests.conftest import REPO
from tests.hashlab.io.golden.make_golden import (
    GOLDEN,
    GOLDEN_V2,
    GOLDEN_V3,
    GOLDEN_VERSION,
    golden_map,
    golden_map_v2,
    golden_map_v3,
)
from tests.hashlab.maps.test_hashes import archs, specs


def _version_of(path: Path) -> int:
    return int(read_header(path)[0]["__metadata__"]["format_version"])


def assert_maps_equal(a: IndexMap, b: IndexMap) -> None:
    assert a.table_sizes == b.table_sizes and a.spec == b.spec and len(a.layers) == len(b.layers)
    assert (a.initial_tables is None) == (b.initial_tables is None)
    for x, y in zip(a.initial_tables or (), b.initial_tables or ()):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype == np.float32
            np.testing.assert_array_equal(x, y)
    for la, lb in zip(a.layers, b.layers):
        assert (la.name, la.table, la.attrs) == (lb.name, lb.table, lb.attrs)
        for x, y in (
            (la.indices, lb.indices),
            (la.sign, lb.sign),
            (la.bias_indices, lb.bias_indices),
            (la.bias_sign, lb.bias_sign),
        ):
            assert (x is None) == (y is None)
            if x is not None:
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs(), archs, st.booleans(), st.sampled_from([None, 3]))
def test_round_trip(tmp_path, spec, arch, mmap, version):
    imap = build_map(spec, arch)
    path = save_index_file(imap, tmp_path / "m.safetensors", version=version)
    back = load_index_file(path, mmap=mmap)
    assert_maps_equal(imap, back)
    # zero-copy views only when asked, of arrays stored as they are (v3; the default v4 file rebuilds them)
    assert isinstance(back.layers[0].indices, np.memmap) is (mmap and version == 3)


def test_golden_file_reads_back_to_the_golden_map():
    assert_maps_equal(load_index_file(GOLDEN), golden_map())


def test_golden_v2_file_reads_back_to_the_golden_map():
    back = load_index_file(GOLDEN_V2)
    assert_maps_equal(back, golden_map_v2())
    assert back.initial_tables[0] is None and back.initial_tables[1].shape == (5,)


def test_golden_v3_file_reads_back_to_the_golden_map():
    back = load_index_file(GOLDEN_V3)
    assert_maps_equal(back, golden_map_v3())
    assert back.layers[0].bias_sign is not None and back.layers[-1].bias_sign is None
    assert _version_of(GOLDEN_V3) == 3 and _version_of(GOLDEN_V2) == 2


@pytest.mark.parametrize(
    "version,golden_file,make",
    [(1, GOLDEN, golden_map), (2, GOLDEN_V2, golden_map_v2), (3, GOLDEN_V3, golden_map_v3)],
    ids=["v1", "v2", "v3"],
)
def test_writer_reproduces_golden_bytes(tmp_path, version, golden_file, make):
    produced = save_index_file(make(), tmp_path / "g.safetensors", version=version).read_bytes()
    golden = golden_file.read_bytes()
    if __version__ == GOLDEN_VERSION:
        assert produced == golden
    # whatever the writer's version: same header apart from the version strings, same data bytes
    (hp,), (hg,) = struct.unpack("<Q", produced[:8]), struct.unpack("<Q", golden[:8])

    def norm(h):
        return re.sub(rb'hashlab_version\\?":\\?"[^"\\]*', b"V", h).rstrip(b" ")

    assert norm(produced[8 : 8 + hp]) == norm(golden[8 : 8 + hg])
    assert produced[8 + hp :] == golden[8 + hg :]


def test_golden_file_is_plain_safetensors():
    tensors = load_file(GOLDEN)
    imap = golden_map()
    assert sorted(tensors) == sorted(
        [
            "layers.0.indices",
            "layers.0.sign",
            "layers.1.indices",
            "layers.1.sign",
            "layers.2.indices",
            "layers.2.bias_indices",
        ]
    )
    np.testing.assert_array_equal(tensors["layers.2.indices"], imap.layers[2].indices)
    np.testing.assert_array_equal(tensors["layers.0.sign"], imap.layers[0].sign)


def test_numpy_only_reader_in_format_doc_reads_golden_file():
    doc = (REPO / "docs" / "FORMAT.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/FORMAT.md", "exec"), ns)  # the documented snippet, verbatim
    for path in (GOLDEN, GOLDEN_V2):
        meta, layers, tensors = ns["read_index_file"](path)
        assert json.loads(meta["tables"]) == [5, 5, 40000] and len(layers) == 3
        np.testing.assert_array_equal(tensors["layers.1.indices"], golden_map().layers[1].indices)
    np.testing.assert_array_equal(tensors["table.1"], golden_map_v2().initial_tables[1])
    meta, layers, tensors = ns["read_index_file"](GOLDEN_V3)
    np.testing.assert_array_equal(tensors["layers.0.bias_sign"], golden_map_v3().layers[0].bias_sign)
    assert layers[0]["bias_sign"] is True and layers[2]["bias_sign"] is False


def _rewrite_header(src: Path, dst: Path, edit) -> Path:
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-(8 + len(hb)) % 8)
    dst.write_bytes(struct.pack("<Q", len(hb)) + hb + raw[8 + n :])
    return dst


def _set_meta(key, value):
    return lambda h: h["__metadata__"].__setitem__(key, value)


def _edit_layers(fn):
    def edit(h):
        layers = json.loads(h["__metadata__"]["layers"])
        fn(layers)
        h["__metadata__"]["layers"] = json.dumps(layers)

    return edit


BAD_HEADERS = [
    ("newer-version", _set_meta("format_version", "5"), "newer than this hashlab reads"),
    ("not-hashlab", _set_meta("format", "other"), "not a hashlab index file"),
    ("unknown-metadata", _set_meta("colour", "red"), r"unknown \['colour'\]"),
    ("unknown-layer-field", _edit_layers(lambda ls: ls[0].__setitem__("kernel", 3)), "layer 0 has fields"),
    ("unknown-tensor", lambda h: h.__setitem__("extra", dict(h["layers.0.indices"])), "overlaps"),
    ("wrong-shape", _edit_layers(lambda ls: ls[0].__setitem__("out_features", 5)), "the header's layers"),
    ("table-too-small", _set_meta("tables", "[2,5,40000]"), r"must lie in \[-1, 2\)"),
]


@pytest.mark.parametrize("edit,match", [c[1:] for c in BAD_HEADERS], ids=[c[0] for c in BAD_HEADERS])
def test_reader_rejects_bad_headers(tmp_path, edit, match):
    bad = _rewrite_header(GOLDEN, tmp_path / "bad.safetensors", edit)
    with pytest.raises(FormatError, match=match):
        load_index_file(bad)


def test_reader_rejects_truncated_and_foreign_files(tmp_path):
    raw = GOLDEN.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[:-3])
    with pytest.raises(FormatError, match="truncated"):
        load_index_file(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"\xff" * 64)
    with pytest.raises(FormatError, match="impossible"):
        read_header(tmp_path / "junk.bin")
    with pytest.raises(FormatError, match="directory"):
        load_index_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="hashlab build"):
        load_index_file(tmp_path / "missing.safetensors")


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_index_file(golden_map_v2(), tmp_path / "m.safetensors")
    before = path.read_bytes()
    lay = golden_map().layers[0]
    bad = IndexMap(layers=(LayerMap(name="x", indices=lay.indices, table=0, attrs={"f": object()}),), table_sizes=(5,))
    with pytest.raises(ValueError, match="JSON"):
        save_index_file(bad, path)
    assert path.read_bytes() == before
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


INVALID_MAPS = [
    ("out-of-range", lambda: LayerMap("a", np.array([[5]], np.int16), 0), r"\[-1, 5\)"),
    ("wrong-dtype", lambda: LayerMap("a", np.array([[1]], np.int32), 0), "dtype must be int16"),
    ("bad-sign", lambda: LayerMap("a", np.array([[1]], np.int16), 0, sign=np.array([[0]], np.int8)), "sign values"),
    ("no-table", lambda: LayerMap("a", np.array([[1]], np.int16), 3), "table 3 does not exist"),
]


@pytest.mark.parametrize("make,match", [c[1:] for c in INVALID_MAPS], ids=[c[0] for c in INVALID_MAPS])
def test_writer_refuses_invalid_maps(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        save_index_file(IndexMap(layers=(make(),), table_sizes=(5,)), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_v2_checksum_catches_every_flipped_data_byte(tmp_path):
    raw = bytearray(GOLDEN_V2.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    bad = tmp_path / "flip.safetensors"
    for pos in range(start, len(raw), 7):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        bad.write_bytes(flipped)
        with pytest.raises(FormatError, match="checksum"):
            load_index_file(bad)
    load_index_file(bad, verify=False, validate=False)  # verify=False trusts the data


def test_v2_initial_tables_round_trip_and_checks(tmp_path):
    m = golden_map_v2()
    back = load_index_file(save_index_file(m, tmp_path / "m.safetensors"), mmap=False)
    assert_maps_equal(m, back)
    with pytest.raises(ValueError, match="v1 cannot hold initial tables"):
        save_index_file(m, tmp_path / "v1.safetensors", version=1)
    for bad, match in [
        ((None,), "3 tables"),
        ((None, np.zeros(4, np.float32), None), r"shape \(5,\)"),
        ((None, np.zeros(5, np.float64), None), "float32"),
        ((None, np.full(5, np.nan, np.float32), None), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            IndexMap(layers=m.layers, table_sizes=m.table_sizes, spec=m.spec, initial_tables=bad).validate()


def test_v2_refuses_spec_that_contradicts_the_layers(tmp_path):
    imap = build_map(HashSpec(kind="uniform", table_size=7), Architecture((3, 4, 2)))
    lay = imap.layers[1]
    wrong = IndexMap(
        layers=(imap.layers[0], LayerMap("fc1", lay.indices[:1], 1)), table_sizes=imap.table_sizes, spec=imap.spec
    )
    with pytest.raises(ValueError, match="chain"):
        save_index_file(wrong, tmp_path / "w.safetensors")
    save_index_file(wrong, tmp_path / "w1.safetensors", version=1)  # v1's spec is informative only
    load_index_file(tmp_path / "w1.safetensors")


def test_large_declared_tables_are_refused_before_allocating(tmp_path):
    imap = build_map(HashSpec(kind="uniform", table_size=2**31 - 1), Architecture((2, 2)))
    path = save_index_file(imap, tmp_path / "big.safetensors")
    with pytest.raises(FormatError, match="max-table-entries"):
        load_index_file(path)
    assert load_index_file(path, max_table_entries=2**31).table_sizes == (2**31 - 1,)


def test_same_seed_gives_byte_identical_index_files(tmp_path):
    spec, arch = (
        HashSpec(kind="dirichlet", alpha=0.5, table_size=50, seed=11, sparsity=0.1, sign=True),
        Architecture((20, 10, 3)),
    )
    a = save_index_file(build_map(spec, arch), tmp_path / "a.safetensors").read_bytes()
    b = save_index_file(build_map(spec, arch), tmp_path / "b.safetensors").read_bytes()
    assert a == b
