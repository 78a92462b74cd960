"""`hashlab cluster` end to end through the console entry point: weights file in, v2 index file out."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch import nn

from hashlab import cluster_weights, load_index_file
from hashlab.cli import main
from hashlab.io.container import read_container


def _dense() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(12, 8), act=nn.ELU(), bn=nn.BatchNorm1d(8), fc2=nn.Linear(8, 3)))


def test_state_dict_round_trip_writes_a_packed_v4_file_whose_initial_tables_load_back(tmp_path, capsys):
    model = _dense()
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    out = tmp_path / "c.safetensors"
    assert main(["cluster", str(tmp_path / "dense.pt"), "--table-size", "16", "--iters", "4", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fc1.weight" in printed and "fc2.weight" in printed and "bn.weight" not in printed
    meta = read_container(out).metadata
    assert meta["format_version"] == "4" and meta["storage"] == "packed"  # a learned map: its indices, bit-packed
    got = load_index_file(out)
    mats = [model.fc1.weight.detach().numpy(), model.fc2.weight.detach().numpy()]
    want = cluster_weights(mats, 16, iters=4)
    assert got.spec["kind"] == "cluster" and got.spec["source"] == "dense.pt (fc1.weight, fc2.weight)"
    assert got.table_sizes == (16, 16)
    for a, b in zip(got.initial_tables, want.initial_tables):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got.layers, want.layers):
        np.testing.assert_array_equal(a.indices, b.indices)


def test_safetensors_weights_few_values_exact_global_and_layers_flag(tmp_path, capsys):
    rng = np.random.default_rng(1)
    w1 = rng.choice(np.float32([-0.5, 0.0, 0.25]), (8, 12))
    w2 = rng.choice(np.float32([1.0, -2.0]), (3, 8))
    save_file({"a.weight": w1, "b.weight": w2, "a.bias": np.zeros(8, np.float32)}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "c.safetensors"
    assert (
        main(
            [
                "cluster",
                str(tmp_path / "w.safetensors"),
                "--table-size",
                "5",
                "--scope",
                "global",
                "--layers",
                "a.weight,b.weight",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "distinct" in capsys.readouterr().out
    got = load_index_file(out)
    assert got.table_sizes == (5,) and got.spec["exact"] == [True]
    for w, lay in zip((w1, w2), got.layers):
        np.testing.assert_array_equal(got.initial_tables[0][lay.indices.astype(np.int64)], w)


def test_an_arbmlp_checkpoint_gives_its_virtual_weights(tmp_path):
    from hashlab import Architecture, HashSpec, build_map
    from trainers.torch_backend.models import ArbMLP

    torch.manual_seed(0)
    model = ArbMLP(build_map(HashSpec(kind="uniform", table_size=5, sign=True), Architecture((12, 8, 3))))
    torch.save({"format": "hashlab.train-checkpoint", "model": model.state_dict()}, tmp_path / "ck.pt")
    out = tmp_path / "c.safetensors"
    assert main(["cluster", str(tmp_path / "ck.pt"), "--table-size", "10", "-o", str(out)]) == 0  # 5 entries x 2 signs
    got = load_index_file(out)
    assert got.spec["exact"] == [True, True]
    for lay, linear in zip(got.layers, model.linears):
        np.testing.assert_array_equal(
            got.initial_tables[lay.table][lay.indices.astype(np.int64)], linear.virtual_weight().detach().numpy()
        )


BAD = [
    ("missing file", lambda d: [str(d / "nope.pt")], 3, "does not exist"),
    ("not a weights file", lambda d: [str(d / "junk.pt")], 3, "neither safetensors nor a torch file"),
    ("no weights", lambda d: [str(d / "bias.pt")], 3, "no 2-D float tensor named"),
    ("unknown layer", lambda d: [str(d / "dense.pt"), "--layers", "fc9.weight"], 3, "no tensor 'fc9.weight'"),
    ("not chaining", lambda d: [str(d / "dense.pt"), "--layers", "fc2.weight,fc1.weight"], 3, "must chain"),
    ("nan", lambda d: [str(d / "nan.pt")], 3, "NaN"),
    ("table size", lambda d: [str(d / "dense.pt"), "--table-size", "0"], 2, "table_size must be"),
    ("output is a folder", lambda d: [str(d / "dense.pt"), "-o", str(d)], 2, "is a directory"),
]


@pytest.mark.parametrize("what,argv,code,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exit_codes(tmp_path, capsys, what, argv, code, msg):
    model = _dense()
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    torch.save({"fc.bias": torch.zeros(3)}, tmp_path / "bias.pt")
    torch.save({"fc.weight": torch.full((3, 4), float("nan"))}, tmp_path / "nan.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    args = argv(tmp_path)
    if "--table-size" not in args:
        args += ["--table-size", "4"]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.safetensors")]
    assert main(["cluster", *args]) == code
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_help_lists_cluster(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "--help"])
    assert "--table-size" in capsys.readouterr().out
