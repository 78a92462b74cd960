"""Convolution index maps (paper eq. 4-6): the vectorised builder against a loop-by-loop reference."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import SpecError, load_index_file, save_index_file
from hashlab.maps.conv import ConvGeometry, conv1d_map, conv2d_map, conv_map, conv_taps


@st.composite
def conv_geometries(draw, ndim: int | None = None, max_size: int = 9, max_group_channels: int = 2):
    """Valid conv1d / conv2d geometries with odd and even sizes, stride, dilation, padding and groups."""
    ndim = draw(st.sampled_from([1, 2])) if ndim is None else ndim
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, max_group_channels))
    cout = groups * draw(st.integers(1, max_group_channels))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    size = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), max(max_size, d * (k - 1) + 1)))
        for k, d, p in zip(kernel, dilation, padding)
    )
    return ConvGeometry(cin, cout, size, kernel, stride, padding, dilation, groups, bias=draw(st.booleans()))


def naive_taps(g: ConvGeometry) -> np.ndarray:
    """Tap map written loop by loop from the definition of a grouped, strided, dilated convolution."""
    taps = np.full((g.out_features, g.in_features), -1, dtype=np.int64)
    cg_in, cg_out = g.in_channels // g.groups, g.out_channels // g.groups
    for co, opos in itertools.product(range(g.out_channels), itertools.product(*map(range, g.out_size))):
        row = np.ravel_multi_index((co, *opos), (g.out_channels, *g.out_size))
        for cig, tap in itertools.product(range(cg_in), itertools.product(*map(range, g.kernel_size))):
            ipos = [o * s - p + t * d for o, s, p, t, d in zip(opos, g.stride, g.padding, tap, g.dilation)]
            if all(0 <= i < n for i, n in zip(ipos, g.in_size)):
                ci = (co // cg_out) * cg_in + cig
                col = np.ravel_multi_index((ci, *ipos), (g.in_channels, *g.in_size))
                taps[row, col] = np.ravel_multi_index((co, cig, *tap), g.weight_shape)
    return taps


@settings(max_examples=60)
@given(conv_geometries())
def test_conv_taps_match_the_loop_reference(g):
    taps = conv_taps(g)
    assert taps.shape == (g.out_features, g.in_features) and taps.dtype == np.int32
    np.testing.assert_array_equal(taps, naive_taps(g))


@settings(max_examples=40)
@given(conv_geometries())
def test_conv_map_layout_bias_and_attrs(g):
    imap = conv_map(g)
    imap.validate(check_values=True)
    (lay,) = imap.layers
    assert imap.table_sizes == (g.table_size,) and lay.table == 0 and lay.sign is None
    np.testing.assert_array_equal(lay.indices, conv_taps(g))
    per_channel = lay.bias_indices.reshape(g.out_channels, -1)
    if g.bias:
        want = np.broadcast_to(g.kernel_entries + np.arange(g.out_channels)[:, None], per_channel.shape)
        np.testing.assert_array_equal(per_channel, want)
    else:
        assert np.all(per_channel == -1)
    assert ConvGeometry.from_dict(lay.attrs["conv"]) == g
    assert imap.spec["builder"] == g.op and json.dumps(imap.spec)


@pytest.mark.parametrize(
    "g, dtype",
    [
        (ConvGeometry(3, 16, (8, 8), 5, padding=2), np.int16),
        (ConvGeometry(64, 64, (3, 3), 3, padding=1), np.int32),  # 36,928 entries > 32,768
    ],
    ids=["int16", "int32"],
)
def test_index_dtype_follows_table_size(g, dtype):
    lay = conv_map(g).layers[0]
    assert lay.indices.dtype == dtype and lay.bias_indices.dtype == dtype


def test_wrappers_and_index_file_round_trip(tmp_path):
    m1 = conv1d_map(3, 6, 4, length=17, stride=3, padding=2, dilation=2, groups=3, bias=False)
    m2 = conv2d_map(4, 6, (3, 2), input_size=(11, 10), stride=(2, 1), padding=1, dilation=(2, 1), groups=2)
    assert m1.layers[0].attrs["conv"]["in_size"] == [17] and m2.layers[0].attrs["conv"]["kernel_size"] == [3, 2]
    for imap in (m1, m2):
        back = load_index_file(save_index_file(imap, tmp_path / "conv.safetensors"))
        np.testing.assert_array_equal(back.layers[0].indices, imap.layers[0].indices)
        np.testing.assert_array_equal(back.layers[0].bias_indices, imap.layers[0].bias_indices)
        assert back.spec == imap.spec and back.layers[0].attrs == imap.layers[0].attrs


def test_geometry_properties_follow_torch_conventions():
    g = ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2)
    assert g.out_size == (5, 5) and g.weight_shape == (6, 2, 3, 3) and g.kernel_entries == 108
    assert g.table_size == 114 and g.in_features == 484 and g.out_features == 150 and g.op == "conv2d"
    assert g.describe() == (
        "conv2d 4x11x11 -> 6x5x5, kernel 3x3, stride 2x2, padding 1x1, dilation 2x2, groups 2, bias"
    )


@pytest.mark.parametrize(
    "g, want",
    [
        (ConvGeometry(1, 1, (5,), 5, stride=3), dict(stride=(1,))),  # one output: smallest stride
        (ConvGeometry(1, 1, (5, 6), (1, 2), dilation=(3, 2)), dict(dilation=(1, 2))),  # kernel 1: dilation 1
        (ConvGeometry(2, 2, (7,), 3, stride=2, dilation=2), {}),
    ],
    ids=["one-output-stride", "unit-kernel-dilation", "already-canonical"],
)
def test_canonical_geometry_keeps_the_map(g, want):
    c = g.canonical()
    for k, v in want.items():
        assert getattr(c, k) == v
    np.testing.assert_array_equal(conv_taps(c), conv_taps(g))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_channels=3, out_channels=4, in_size=(8, 8), kernel_size=3, groups=2), "divisible by groups"),
        (dict(in_channels=1, out_channels=1, in_size=(4,), kernel_size=3, dilation=2), "spans 5 inputs"),
        (dict(in_channels=1, out_channels=1, in_size=(8, 8), kernel_size=3, padding=-1), "padding must be an int >= 0"),
        (dict(in_channels=1, out_channels=1, in_size=(8, 8), kernel_size=(3, 3, 3)), "tuple of 2"),
        (dict(in_channels=0, out_channels=1, in_size=(8,), kernel_size=1), "in_channels must be a positive"),
        (dict(in_channels=1, out_channels=1, in_size=(), kernel_size=1), "1, 2 or 3 spatial sizes"),
        (dict(in_channels=1, out_channels=1, in_size=(8,), kernel_size=1, bias="yes"), "bias must be True or False"),
    ],
    ids=["groups", "kernel-too-big", "negative-padding", "wrong-rank", "no-channels", "no-axes", "bias-type"],
)
def test_invalid_geometries_are_rejected_with_the_fix(kwargs, match):
    with pytest.raises(SpecError, match=match):
        ConvGeometry(**kwargs)


def test_from_dict_rejects_unknown_fields_and_conv_map_wrong_types():
    with pytest.raises(SpecError, match="unknown ConvGeometry field"):
        ConvGeometry.from_dict({"in_channels": 1, "out_channels": 1, "in_size": [4], "kernel_size": [1], "kernel": 3})
    with pytest.raises(SpecError, match="must be a ConvGeometry"):
        conv_map({"in_channels": 1})


def test_dict_keeps_its_schema_version_and_refuses_another():
    g = ConvGeometry(2, 4, (6, 5), (3, 1), stride=2, bias=False)
    d = g.to_dict()
    assert d == {
        "in_channels": 2,
        "out_channels": 4,
        "in_size": [6, 5],
        "kernel_size": [3, 1],
        "stride": [2, 2],
        "padding": [0, 0],
        "dilation": [1, 1],
        "groups": 1,
        "bias": False,
        "version": 1,
    }  # the stored layout
    assert ConvGeometry.from_dict(d) == g and ConvGeometry.SCHEMA_VERSION == 1
    assert ConvGeometry.from_dict({k: v for k, v in d.items() if k != "version"}) == g  # hand-written: version 1
    with pytest.raises(
        SpecError,
        match="ConvGeometry dict version 2 is not supported; this hashlab reads version 1; "
        "the dict was written by a newer hashlab: upgrade hashlab",
    ):
        ConvGeometry.from_dict({**d, "version": 2})
    with pytest.raises(SpecError, match="ConvGeometry dict version -1 is not supported"):
        ConvGeometry.from_dict({**d, "version": -1})
