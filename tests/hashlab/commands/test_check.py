"""`hashlab check` end to end: builder targets (numeric + structural) and index files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hashlab import ARCHITECTURES, HashSpec, build_map, load_index_file, save_index_file
from hashlab.cli import main
from hashlab.maps import circulant_map, transpose_tied_map
from hashlab.maps.conv import ConvGeometry, conv_map
from hashlab.maps.rnn import RNNGeometry, rnn_map

GROUPED_CONV = [
    "conv2d",
    "--input",
    "4x11x11",
    "--out-channels",
    "6",
    "--kernel",
    "3",
    "--stride",
    "2",
    "--dilation",
    "2",
    "--groups",
    "2",
    "--padding",
    "1",
]


def test_conv2d_target_passes_and_writes_the_map(tmp_path, capsys):
    out = tmp_path / "conv.safetensors"
    assert main(["check", *GROUPED_CONV, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    g = ConvGeometry(4, 6, (11, 11), 3, stride=2, padding=1, dilation=2, groups=2)
    assert text.splitlines()[0] == g.describe()
    assert "same geometry" in text and "float64" in text and "float32" in text
    assert text.splitlines()[-2].startswith("PASS (max abs error ")
    assert float(text.splitlines()[-2].split("error ")[1].rstrip(")")) < 1e-4
    back = load_index_file(out)
    np.testing.assert_array_equal(back.layers[0].indices, conv_map(g).layers[0].indices)
    assert back.layers[0].attrs["conv"] == g.to_dict()


def test_conv1d_and_anisotropic_conv2d_targets(capsys):
    assert (
        main(
            [
                "check",
                "conv1d",
                "--input",
                "3x20",
                "--out-channels",
                "6",
                "--kernel",
                "4",
                "--stride",
                "3",
                "--dilation",
                "2",
                "--padding",
                "2",
                "--groups",
                "3",
                "--no-bias",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("conv1d 3x20 -> 6x6, kernel 4") and "no bias" in text and "\nPASS (max abs error" in text
    assert (
        main(
            [
                "check",
                "conv2d",
                "--input",
                "2x9x7",
                "--out-channels",
                "4",
                "--kernel",
                "3x2",
                "--stride",
                "1x2",
                "--padding",
                "1x0",
            ]
        )
        == 0
    )
    assert "kernel 3x2, stride 1x2, padding 1x0" in capsys.readouterr().out


def test_rnn_target_checks_modulus_structure_and_torch(tmp_path, capsys):
    out = tmp_path / "rnn.safetensors"
    assert main(["check", "rnn", "--input-size", "5", "--hidden-size", "7", "--steps", "4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "global modulus hash i mod 84" in text and ": yes" in text and "torch.nn.RNN" in text
    assert "\nPASS (max abs error " in text
    back = load_index_file(out)
    assert len(back.layers) == 4 and back.spec["builder"] == "rnn"
    np.testing.assert_array_equal(back.layers[3].indices, rnn_map(RNNGeometry(5, 7, 4)).layers[3].indices)


def test_check_file_on_a_neighborhood_map_prints_the_witness(tmp_path, capsys):
    path = tmp_path / "nb.safetensors"
    assert (
        main(
            [
                "build",
                "--arch",
                "64-32-10",
                "--kind",
                "neighborhood",
                "--radius",
                "2",
                "--table-size",
                "50",
                "-o",
                str(path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["check", str(path)]) == 0
    text = capsys.readouterr().out
    assert "fc0 (32x64, table 0): ARBITRARY" in text and "fc1 (10x32, table 1): ARBITRARY" in text
    assert "not a convolution: w(0,0) and w(0,2) both read entry 0 in output row 0" in text
    assert "RNN: no: fc0 and fc1 have shapes 32x64 and 10x32" in text


def test_check_file_recovers_conv_and_rnn_maps(tmp_path, capsys):
    conv, rnn = tmp_path / "conv.safetensors", tmp_path / "rnn.safetensors"
    assert main(["check", *GROUPED_CONV, "-o", str(conv)]) == 0
    assert main(["check", "rnn", "--input-size", "3", "--hidden-size", "4", "--steps", "3", "-o", str(rnn)]) == 0
    capsys.readouterr()
    assert main(["check", str(conv), "--ignore-attrs"]) == 0
    text = capsys.readouterr().out
    assert (
        "CONVOLUTION: conv2d 4x11x11 -> 6x5x5, kernel 3x3, stride 2x2, padding 1x1, dilation 2x2, groups 2, bias"
        in text
    ) and "recovered from the index array alone" in text
    assert main(["check", str(rnn), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [lay["kind"] for lay in rep["layers"]] == ["rnn"] * 3
    assert rep["rnn"]["groups"][0]["geometry"] == RNNGeometry(3, 4, 3).to_dict()


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["conv2d", "--input", "3x32", "--out-channels", "3", "--kernel", "3"], "must be CxHxW for conv2d", 2),
        (["conv2d", "--input", "3x5x5", "--out-channels", "3", "--kernel", "7"], "spans 7 inputs", 2),
        (["conv2d", "--input", "3x8x8", "--kernel", "3"], "needs --input, --out-channels and --kernel", 2),
        (
            ["conv1d", "--input", "3x8", "--out-channels", "2", "--kernel", "3", "--steps", "4"],
            "--steps does not apply",
            2,
        ),
        (["rnn", "--input-size", "0", "--hidden-size", "3", "--steps", "2"], "--input-size must be >= 1", 2),
        (["rnn", "--hidden-size", "3"], "rnn needs --input-size, --hidden-size and --steps", 2),
        (["missing.safetensors"], "does not exist", 3),
        (["missing.safetensors", "--kernel", "3"], "only applies to the builder targets", 2),
        (["rnn", "--input-size", "2", "--hidden-size", "3", "--steps", "2", "--no-symmetry"], "does not apply", 2),
    ],
    ids=[
        "conv2d-input",
        "kernel-too-big",
        "missing-flags",
        "rnn-flag-on-conv",
        "rnn-no-input",
        "rnn-missing",
        "no-file",
        "builder-flag-on-file",
        "file-flag-on-builder",
    ],
)
def test_bad_input_exits_2_or_3_with_the_fix(argv, message, code, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["check", *argv]) == code
    assert message in capsys.readouterr().err


def test_check_file_and_help_work_without_torch(tmp_path):
    """torch is imported lazily by the builder targets only."""
    path = tmp_path / "conv.safetensors"
    from hashlab import save_index_file

    save_index_file(conv_map(ConvGeometry(1, 2, (5, 5), 3)), path)
    code = (
        "import sys; sys.modules['torch'] = None; from hashlab.cli import main; "
        f"sys.exit(main(['check', {str(path)!r}]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "CONVOLUTION: conv2d 1x5x5 -> 2x3x3" in res.stdout
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['torch'] = None; from hashlab.cli import main; main(['check', '--help'])",
        ],
        capture_output=True,
        text=True,
    )
    assert "conv1d, conv2d or rnn" in res.stdout


def test_check_file_names_each_layers_group_and_the_networks(tmp_path, capsys):
    path = tmp_path / "mod.safetensors"
    save_index_file(build_map(HashSpec(kind="modulus", table_size=1000), ARCHITECTURES["mnist-mlp"]), path)
    assert main(["check", str(path)]) == 0
    text = capsys.readouterr().out
    assert "symmetry: |Aut| = 2^75 = 37,778,931,862,957,161,709,568: S2^75 on 75 pairs of identical rows" in text
    assert "symmetry: |Aut| = 2^795.8 (240 digits): S40^5 on 5 classes of 40 identical rows (outputs)" in text
    assert "network symmetry: |Aut| = 32: S2^5 on 5 pairs of identical units of fc2 out" in text
    assert main(["check", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["symmetry"]["layers"][0]["order"] == str(2**75) and rep["ties"] == []
    assert main(["check", str(path), "--no-symmetry"]) == 0
    assert "symmetry" not in capsys.readouterr().out


def test_check_file_names_ties_and_refusals(tmp_path, capsys):
    tied, circ = tmp_path / "tied.safetensors", tmp_path / "circ.safetensors"
    save_index_file(transpose_tied_map(6, 4), tied)
    save_index_file(circulant_map(16), circ)
    assert main(["check", str(tied)]) == 0
    assert "ties: fc1 is fc0 transposed (table 0): transpose-tied weights" in capsys.readouterr().out
    assert main(["check", str(circ)]) == 0
    assert "symmetry: |Aut| = 16: cyclic group C16" in capsys.readouterr().out
    assert main(["check", str(circ), "--symmetry-max-weights", "100"]) == 0
    text = capsys.readouterr().out
    assert "symmetry: not computed: circulant: after removing identical rows and columns" in text
    assert "--symmetry-max-weights N" in text
