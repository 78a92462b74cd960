"""`hashlab build --compression RATIO --hash-bias` end to end, and `stats` / `train` on such maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hashlab import Architecture, HashSpec, build_map, load_index_file
from hashlab.cli import main
from trainers.torch_backend.models import ArbMLP


@pytest.fixture(scope="module")
def budget_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("maps") / "hb.safetensors"
    assert (
        main(
            [
                "build",
                "--arch",
                "784-200-200-10",
                "--kind",
                "xxhash",
                "--compression",
                "1/64",
                "--hash-bias",
                "--sign",
                "--seed",
                "4",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_build_compression_hash_bias_prints_table_sizes(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["build", "--arch", "784-1000-10", "--compression", "1/64", "--hash-bias", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "table sizes (compression 1/64, scope layer): 12,250 + 16 bias, 157" in printed
    got = load_index_file(out)
    want = build_map(HashSpec(compression="1/64", hash_bias=True), Architecture((784, 1000, 10)))
    assert got.table_sizes == want.table_sizes == (12266, 157)
    assert got.spec["compression"] == "1/64" and got.spec["hash_bias"] is True
    np.testing.assert_array_equal(got.layers[0].bias_indices, want.layers[0].bias_indices)
    assert got.layers[1].bias_indices is None


def test_build_budget_flags_are_checked(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    with pytest.raises(SystemExit) as e:  # argparse: mutually exclusive
        main(["build", "--compression", "1/64", "--table-size", "100", "-o", str(out)])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["build", "--compression", "0", "-o", str(out)]) == 2
    assert "compression must lie in (0, 1]" in capsys.readouterr().err
    assert main(["build", "--kind", "identity", "--compression", "1/2", "-o", str(out)]) == 2
    assert "identity hash" in capsys.readouterr().err
    assert not out.exists()
    assert main(["build", "--compression", "0.5", "--scope", "global", "--arch", "4-3-2", "-o", str(out)]) == 0
    assert "table sizes (compression 1/2, scope global): 9" in capsys.readouterr().out  # ceil(18 / 2)


def test_stats_accepts_per_layer_tables_and_shared_biases(budget_file, capsys):
    assert main(["stats", str(budget_file)]) == 0
    out = capsys.readouterr().out
    assert "2,454" in out and "629" in out  # 2,450 + 4 bias and 625 + 4 bias entries


def test_model_reads_hashed_biases_from_the_table(budget_file):
    model = ArbMLP.from_index_file(budget_file)
    imap = load_index_file(budget_file)
    fc0, fc2 = model.linears[0], model.linears[2]
    assert fc0.bias is None and fc0.bias_indices is not None and fc2.bias is not None  # output bias dense
    assert [m.table_size for m in model.linears] == list(imap.table_sizes) == [2454, 629, 32]
    model(torch.randn(16, 784)).square().sum().backward()
    assert fc0.table.grad[2450:].abs().sum() > 0  # the bias entries learn
    lay = imap.layers[0]
    want = fc0.table.detach()[lay.bias_indices.astype(np.int64)]
    if lay.bias_sign is not None:  # a signed map signs its biases too (HashedNets' xiB)
        want = want * torch.from_numpy(lay.bias_sign.astype(np.float32))
    torch.testing.assert_close(fc0.virtual_bias(), want)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_train_accepts_compression_hash_bias_maps(tmp_path, data_root, scope, capsys):
    path = tmp_path / "m.safetensors"
    assert (
        main(["build", "--kind", "uniform", "--compression", "1/16", "--hash-bias", "--scope", scope, "-o", str(path)])
        == 0
    )
    res = tmp_path / "r.json"
    assert (
        main(
            [
                "train",
                str(path),
                "--data-root",
                str(data_root),
                "--epochs",
                "1",
                "--limit-train",
                "1000",
                "--device",
                "cpu",
                "--num-threads",
                "1",
                "-o",
                str(res),
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    assert json.loads(res.read_text())["test_accuracy"] > 0.3  # chance is 0.1
