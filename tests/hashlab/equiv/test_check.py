"""hashlab.equiv.check: the structural half of ``hashlab check``, without the CLI and without torch."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from hashlab.equiv import describe_map
from hashlab.equiv.check import check_conv_structure, check_rnn_structure, format_description, numeric_lines
from hashlab.maps import Architecture, ConvGeometry, HashSpec, RNNGeometry, build_map, conv_map, rnn_map


def test_conv_structure_recognises_the_built_map():
    g = ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2)
    check = check_conv_structure(g)
    assert check.passed and check.lines[0] == g.describe() and "same geometry" in check.lines[-1]
    np.testing.assert_array_equal(check.imap.layers[0].indices, conv_map(g).layers[0].indices)


def test_conv_structure_reports_an_equivalent_geometry():
    g = ConvGeometry(1, 1, (1, 5), (1, 2), stride=(3, 1))  # height stride is irrelevant for a 1-row input
    check = check_conv_structure(g)
    assert check.passed
    assert "same geometry" in check.lines[-1] or "equivalent" in check.lines[-1]


def test_rnn_structure_is_the_global_modulus_hash():
    g = RNNGeometry(5, 7, 4)
    check = check_rnn_structure(g)
    assert check.passed and ": yes" in check.lines[2] and len(check.imap.layers) == 4
    np.testing.assert_array_equal(check.imap.layers[3].indices, rnn_map(g).layers[3].indices)


def test_numeric_lines_fail_when_one_dtype_fails():
    ok = SimpleNamespace(dtype="float64", errors={"output": 1e-12}, rtol=1e-10, passed=True, max_abs_error=1e-12)
    bad = SimpleNamespace(dtype="float32", errors={"output": 0.5}, rtol=1e-5, passed=False, max_abs_error=0.5)
    lines, passed = numeric_lines([ok], "x vs y", 2, 0)
    assert passed and lines[0] == "numeric: x vs y, outputs and gradients, batch 2, seed 0" and "PASS" in lines[1]
    lines, passed = numeric_lines([ok, bad], "x vs y", 2, 0)
    assert not passed and lines[2].endswith("FAIL")


def test_format_description_names_each_layer():
    imap = build_map(HashSpec(kind="neighborhood", radius=2, table_size=50), Architecture((64, 32, 10)))
    text = format_description("m.safetensors", imap, describe_map(imap))
    assert text.startswith("m.safetensors: 2 layers, 2,368 virtual weights")
    assert "build_map neighborhood hash" in text and "fc0 (32x64, table 0)" in text and "\nRNN: " in text
