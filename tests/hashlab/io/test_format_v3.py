"""Format v3: bias signs, the oldest version that holds a map, and refusal of a v3 layer key in older versions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashlab import Architecture, FormatError, HashSpec, build_map, load_index_file, save_index_file
from hashlab.io.format import needed_version
from tests.hashlab.io.golden.make_golden import GOLDEN_V2, GOLDEN_V3
from tests.hashlab.io.test_format import _rewrite_header, _version_of, assert_maps_equal

ARCH = Architecture((6, 5, 4, 3))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    st.sampled_from(["modulus", "uniform", "dirichlet", "neighborhood", "xxhash"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["layer", "global"]),
    st.integers(0, 2**32),
)
def test_needed_version_is_the_oldest_that_holds_the_map(tmp_path, kind, sign, hash_bias, scope, seed):
    extra = {"alpha": 0.5} if kind == "dirichlet" else {"radius": 1} if kind == "neighborhood" else {}
    spec = HashSpec(kind=kind, compression="1/3", sign=sign, hash_bias=hash_bias, scope=scope, seed=seed, **extra)
    imap = build_map(spec, ARCH)
    assert _version_of(save_index_file(imap, tmp_path / "d.safetensors")) == 4  # the default: v4, the smallest
    path = save_index_file(imap, tmp_path / "m.safetensors", version=3)
    assert _version_of(path) == needed_version(imap) == 3  # a compression budget needs v3
    assert_maps_equal(load_index_file(path), imap)
    hidden = [lay.bias_indices is not None for lay in imap.layers]
    assert [lay.bias_sign is not None for lay in imap.layers] == [sign and h for h in hidden]
    plain = build_map(dataclasses.replace(spec, compression=None, table_size=7, hash_bias=False), ARCH)
    assert (
        needed_version(plain) == 2 and _version_of(save_index_file(plain, tmp_path / "p.safetensors", version=2)) == 2
    )


def test_bias_signs_are_their_own_stream():
    spec = HashSpec(kind="xxhash", compression="1/8", sign=True, hash_bias=True, seed=5)
    arch = Architecture((300, 400, 10))
    imap, unsigned = build_map(spec, arch), build_map(dataclasses.replace(spec, sign=False), arch)
    lay = imap.layers[0]
    assert set(np.unique(lay.bias_sign)) == {-1, 1} and abs(int(lay.bias_sign.sum())) < 80  # 400 fair coins
    # turning signs on changes neither weight nor bias indices; the bias signs are not the weights' first signs
    assert np.array_equal(lay.indices, unsigned.layers[0].indices)
    assert np.array_equal(lay.bias_indices, unsigned.layers[0].bias_indices)
    assert not np.array_equal(lay.bias_sign, lay.sign[:, 0]) and not np.array_equal(lay.bias_sign, lay.sign[0])


def test_an_explicit_older_version_that_cannot_hold_the_map_is_refused(tmp_path):
    imap = build_map(HashSpec(kind="uniform", compression="1/2", sign=True, hash_bias=True), ARCH)
    with pytest.raises(ValueError, match="cannot hold this map"):
        save_index_file(imap, tmp_path / "m.safetensors", version=2)
    assert not (tmp_path / "m.safetensors").exists()


def _edit_layers(fn):
    def edit(header):
        meta = header["__metadata__"]
        layers = json.loads(meta["layers"])
        fn(layers)
        meta["layers"] = json.dumps(layers)

    return edit


def test_a_v2_file_with_the_v3_layer_key_is_refused(tmp_path):
    bad = _rewrite_header(
        GOLDEN_V2,
        tmp_path / "bad.safetensors",
        _edit_layers(lambda layers: [lay.update(bias_sign=False) for lay in layers]),
    )
    with pytest.raises(FormatError, match="format v2 has exactly"):
        load_index_file(bad, verify=False)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda layers: layers[1].update(bias_sign=1), "bias_sign must be true or false"),
        (lambda layers: layers[2].update(bias_sign=True), "bias_sign is true but bias is false"),
        (lambda layers: layers[0].update(bias_sign=False), "bias_sign flags contradict the spec"),
    ],
)
def test_v3_bias_sign_flags_are_checked(tmp_path, edit, match):
    bad = _rewrite_header(GOLDEN_V3, tmp_path / "bad.safetensors", _edit_layers(edit))
    with pytest.raises(FormatError, match=match):
        load_index_file(bad, verify=False)
