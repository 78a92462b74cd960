"""`hashlab build` end to end through the console entry point."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from hashlab import ARCHITECTURES, HashSpec, build_map, load_index_file
from hashlab.cli import main


def test_build_writes_the_same_map_as_the_api(tmp_path, capsys):
    out = tmp_path / "map.safetensors"
    rc = main(
        [
            "build",
            "--arch",
            "mnist-mlp",
            "--kind",
            "dirichlet",
            "--alpha",
            "1",
            "--table-size",
            "1000",
            "--seed",
            "3",
            "--sparsity",
            "0.2",
            "--sign",
            "-o",
            str(out),
        ]
    )
    assert rc == 0 and "compression ratio 66.3" in capsys.readouterr().out
    got = load_index_file(out)
    want = build_map(HashSpec(kind="dirichlet", alpha=1.0, seed=3, sparsity=0.2, sign=True), ARCHITECTURES["mnist-mlp"])
    assert (
        got.spec["kind"] == "dirichlet" and got.spec["alpha"] == 1.0 and got.spec["architecture"] == [784, 200, 200, 10]
    )
    for a, b in zip(got.layers, want.layers):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.sign, b.sign)


def test_build_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    out = tmp_path / "map.safetensors"
    assert main(["build", "--kind", "neighborhood", "-o", str(out)]) == 2
    assert "neighborhood needs radius" in capsys.readouterr().err
    assert main(["build", "--arch", "784-x", "-o", str(out)]) == 2
    assert "cannot parse architecture" in capsys.readouterr().err
    assert not out.exists()


def test_console_script_help_runs():
    res = subprocess.run([sys.executable, "-m", "hashlab.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("build", "stats", "train", "check", "figure"):
        assert cmd in res.stdout
