"""Index files of maps with a compression budget and hashed biases (format v3): round trip and spec checks."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashlab import Architecture, FormatError, HashSpec, IndexMap, LayerMap, build_map, load_index_file, save_index_file
from hashlab.io.format import read_header
from tests.hashlab.io.test_format import _rewrite_header, assert_maps_equal
from tests.hashlab.maps.test_hashes import archs, specs


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(specs(), archs, st.sampled_from(["1/64", "1/8", "3/7", "1"]), st.booleans())
def test_round_trip_with_compression_and_hash_bias(tmp_path, spec, arch, ratio, hash_bias):
    ratio = "1" if spec.kind == "identity" else ratio
    spec = dataclasses.replace(spec, table_size=None, compression=ratio, hash_bias=hash_bias)
    imap = build_map(spec, arch)
    back = load_index_file(save_index_file(imap, tmp_path / "m.safetensors"))
    assert_maps_equal(imap, back)
    assert HashSpec.from_dict({k: v for k, v in back.spec.items() if k in HashSpec.__dataclass_fields__}) == spec


def _hashed_file(tmp_path, version=None):
    imap = build_map(
        HashSpec(kind="xxhash", compression="1/64", hash_bias=True, sign=True), Architecture((784, 1000, 10))
    )
    return imap, save_index_file(imap, tmp_path / "hb.safetensors", version=version)


def test_header_records_the_ratio_and_the_sizes(tmp_path):
    _, path = _hashed_file(tmp_path, version=3)  # v3 stores the arrays (the default v4 file rebuilds them)
    header, _ = read_header(path)
    meta = header["__metadata__"]
    spec = json.loads(meta["spec"])
    assert spec["compression"] == "1/64" and spec["hash_bias"] is True and spec["table_size"] is None
    assert json.loads(meta["tables"]) == [12250 + 16, 157]  # ceil(784000 / 64) + ceil(1000 / 64), ceil(10000 / 64)
    assert [lm["bias"] for lm in json.loads(meta["layers"])] == [True, False]
    assert header["layers.0.bias_indices"]["shape"] == [1000] and "layers.1.bias_indices" not in header


def _edit_spec(**changes):
    def edit(h):
        h["__metadata__"]["spec"] = json.dumps(json.loads(h["__metadata__"]["spec"]) | changes)

    return edit


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"compression": "1/32"}, "table sizes .* contradict the spec"),
        ({"hash_bias": False}, "table sizes .* contradict the spec"),
        ({"compression": "2"}, r"spec is invalid: compression must lie in \(0, 1\]"),
        ({"table_size": 12266}, "spec is invalid: give table_size or compression, not both"),
        ({"version": 2}, "spec is invalid: HashSpec dict version 2 is not supported; .*upgrade hashlab"),
    ],
    ids=["ratio", "hash_bias", "bad-ratio", "both", "newer-spec"],
)
def test_reader_checks_budget_fields_against_the_tables(tmp_path, changes, match):
    _, path = _hashed_file(tmp_path)
    bad = _rewrite_header(path, tmp_path / "bad.safetensors", _edit_spec(**changes))
    with pytest.raises(FormatError, match=match):
        load_index_file(bad)


def test_writer_refuses_bias_flags_that_contradict_hash_bias(tmp_path):
    imap, _ = _hashed_file(tmp_path)
    lay = imap.layers[0]
    no_bias = IndexMap(
        layers=(LayerMap(lay.name, lay.indices, lay.table, lay.sign), imap.layers[1]),
        table_sizes=imap.table_sizes,
        spec=imap.spec,
    )
    with pytest.raises(ValueError, match="sign/bias flags contradict the spec"):
        save_index_file(no_bias, tmp_path / "w.safetensors")
