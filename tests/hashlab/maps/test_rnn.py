"""Unrolled Elman RNN index maps: T tied steps are exactly the global modulus hash (paper eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest

from hashlab import Architecture, HashSpec, SpecError, build_map, load_index_file, save_index_file
from hashlab.maps.rnn import RNNGeometry, rnn_map

GEOMETRIES = [RNNGeometry(5, 7, 4), RNNGeometry(1, 3, 1), RNNGeometry(0, 6, 3, bias=False), RNNGeometry(28, 64, 28)]
IDS = ["5-7-T4", "1-3-T1", "autonomous-0-6-T3", "28-64-T28"]


@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_rnn_map_layout(g):
    imap = rnn_map(g)
    imap.validate(check_values=True)
    assert [lay.name for lay in imap.layers] == [f"rnn.t{t}" for t in range(g.steps)]
    assert imap.table_sizes == (g.table_size,) and g.step_weights == g.hidden_size * (g.input_size + g.hidden_size)
    for t, lay in enumerate(imap.layers):
        assert lay.indices.shape == g.step_shape and lay.table == 0 and lay.attrs["rnn"]["step"] == t
        np.testing.assert_array_equal(lay.indices.reshape(-1), np.arange(g.step_weights))
        want_bias = g.step_weights + np.arange(g.hidden_size) if g.bias else np.full(g.hidden_size, -1)
        np.testing.assert_array_equal(lay.bias_indices, want_bias)
    assert imap.spec["builder"] == "rnn" and imap.spec["steps"] == g.steps


@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_steps_are_the_global_modulus_hash(g):
    """Layer t's global identifiers t*N + i, taken mod N = H(I+H), are its indices; build_map agrees."""
    n = g.step_weights
    imap = rnn_map(g)
    for t, lay in enumerate(imap.layers):
        np.testing.assert_array_equal(lay.indices.reshape(-1), (t * n + np.arange(n)) % n)
    # shapes (H, I+H), (I+H, H), ... alternate but every layer has N weights, so global offsets are t*N
    feats = tuple(g.input_size + g.hidden_size if t % 2 == 0 else g.hidden_size for t in range(g.steps + 1))
    mod = build_map(HashSpec(kind="modulus", table_size=n, scope="global"), Architecture(feats))
    assert mod.table_sizes == (n,)
    for a, b in zip(imap.layers, mod.layers, strict=True):
        np.testing.assert_array_equal(a.indices.reshape(-1), b.indices.reshape(-1))


def test_autonomous_rnn_equals_build_map_index_for_index():
    """With input_size 0 every step is (H, H), so the shapes match build_map's layers exactly."""
    g = RNNGeometry(0, 8, 5, bias=False)
    mod = build_map(HashSpec(kind="modulus", table_size=64, scope="global"), Architecture((8,) * 6))
    for a, b in zip(rnn_map(g).layers, mod.layers, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)


def test_round_trip_through_an_index_file(tmp_path):
    imap = rnn_map(RNNGeometry(5, 7, 4))
    back = load_index_file(save_index_file(imap, tmp_path / "rnn.safetensors"))
    assert back.spec == imap.spec and [lay.attrs for lay in back.layers] == [lay.attrs for lay in imap.layers]
    for a, b in zip(back.layers, imap.layers):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.bias_indices, b.bias_indices)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=-1, hidden_size=3, steps=2), "input_size must be an integer >= 0"),
        (dict(input_size=2, hidden_size=0, steps=2), "hidden_size must be an integer >= 1"),
        (dict(input_size=2, hidden_size=3, steps=0), "steps must be an integer >= 1"),
        (dict(input_size=2, hidden_size=3, steps=2, bias=1), "bias must be True or False"),
    ],
    ids=["input", "hidden", "steps", "bias"],
)
def test_invalid_rnn_geometries(kwargs, match):
    with pytest.raises(SpecError, match=match):
        RNNGeometry(**kwargs)
    with pytest.raises(SpecError, match="must be an RNNGeometry"):
        rnn_map((2, 3, 4))


def test_dict_round_trip_with_its_schema_version():
    g = RNNGeometry(5, 7, 4, bias=False)
    d = g.to_dict()
    assert d == {"input_size": 5, "hidden_size": 7, "steps": 4, "bias": False, "version": 1}  # the stored layout
    assert RNNGeometry.from_dict(d) == g and RNNGeometry.SCHEMA_VERSION == 1
    assert RNNGeometry.from_dict({k: v for k, v in d.items() if k != "version"}) == g  # hand-written: version 1
    with pytest.raises(
        SpecError,
        match="RNNGeometry dict version 2 is not supported; this hashlab reads version 1; "
        "the dict was written by a newer hashlab: upgrade hashlab",
    ):
        RNNGeometry.from_dict({**d, "version": 2})
    with pytest.raises(SpecError, match="unknown RNNGeometry field"):
        RNNGeometry.from_dict({**d, "layers": 2})
