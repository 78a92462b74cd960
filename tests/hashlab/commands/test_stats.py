"""``hashlab stats`` and ``hashlab figure`` end to end, in process."""

from __future__ import annotations

import json
import math

import pytest

from hashlab import ARCHITECTURES, HashSpec, build_map, save_index_file
from hashlab.cli import main
from hashlab.stats import map_report


@pytest.fixture(scope="module")
def map_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "r0.safetensors"
    imap = build_map(HashSpec(kind="neighborhood", radius=0, table_size=1000), ARCHITECTURES["mnist-mlp"])
    save_index_file(imap, path)
    return path, imap


def test_stats_prints_entropy_loads_sparsity_and_compression(map_file, capsys):
    path, imap = map_file
    assert main(["stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{math.log(1000):.3f}" in out  # every layer of a modulus-like map: ln 1000 nats
    for word in (
        "H nats",
        "H bits",
        "min",
        "max",
        "sparsity",
        "compression ratio",
        "locality",
        "fc0",
        "fc2",
        "total",
        "theory (neighborhood hash)",
        "distinct rows",
        "WARNING: fc1: rank bound 5 < min(out, in)",
    ):
        assert word in out
    assert f"{imap.num_weights:,} virtual weights" in out


def test_stats_json_and_plots(map_file, tmp_path, capsys):
    path, imap = map_file
    out_json = tmp_path / "r0.json"
    assert main(["stats", str(path), "--json", str(out_json), "--plot", str(tmp_path / "png"), "--loads"]) == 0
    d = json.loads(out_json.read_text())
    assert d["schema"] == "hashlab.stats" and d["version"] == 3
    rep = map_report(imap)
    assert d["total"]["entropy"]["nats"] == pytest.approx(rep.total.entropy_nats)
    assert len(d["layers"][0]["balance"]["loads"]) == 1000
    assert d["layers"][0]["locality"]["id"]["nearest"]["median"] == 1000
    assert d["layers"][1]["degeneracy"]["distinct_rows"] == 5  # r=0 is i mod n: 200 * o mod 1000 takes 5 values
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "degeneracy.png",
        "entropy.png",
        "load_histogram.png",
        "locality.png",
        "symmetry.png",
    ]
    # v3 adds the symmetry section: r = 0 is i mod n, fc0 has 75 pairs of identical rows
    sym = d["symmetry"]
    assert [g["log2_order"] for g in sym["layers"]][0] == 75.0 and sym["layers"][0]["order"] == str(2**75)
    assert sym["network"]["order"] == "32" and sym["network"]["layers"] == ["fc0", "fc1", "fc2"]


def test_stats_balance_only_with_numpy_backend(map_file, capsys):
    path, _ = map_file
    assert main(["stats", str(path), "--no-locality", "--backend", "numpy", "--time"]) == 0
    out = capsys.readouterr().out
    assert "locality:" not in out and "time: load" in out


def test_stats_missing_or_foreign_file_is_a_clear_error(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope.safetensors")]) == 3
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    assert main(["stats", str(junk)]) == 3
    assert "not a hashlab index file" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dirichlet-heatmap", "entropy-vs-alpha"])
def test_figure_writes_png(name, tmp_path, capsys):
    out = tmp_path / f"{name}.png"
    assert main(["figure", name, "-o", str(out), "--table-size", "300", "--alphas", "0.1,1,10"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and f"wrote {out}" in capsys.readouterr().out


def test_figure_rejects_bad_alphas(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["figure", "dirichlet-heatmap", "-o", str(tmp_path / "x.png"), "--alphas", "0.1,-2"])
    assert e.value.code == 2 and "positive" in capsys.readouterr().err


def test_stats_prints_log2_aut_per_layer_and_for_the_network(map_file, capsys):
    path, _ = map_file
    assert main(["stats", str(path), "--no-locality", "--no-degeneracy", "--time"]) == 0
    out = capsys.readouterr().out
    assert "symmetry: automorphism group of each sharing pattern" in out
    assert "S2^75 on 75 pairs of identical rows (outputs)" in out and "network          5.00" in out
    assert "symmetry " in out.split("time: load")[1]


def test_stats_without_symmetry_writes_null(map_file, tmp_path, capsys):
    path, _ = map_file
    out_json = tmp_path / "r0.json"
    assert main(["stats", str(path), "--no-locality", "--no-symmetry", "--json", str(out_json)]) == 0
    assert "symmetry:" not in capsys.readouterr().out
    d = json.loads(out_json.read_text())
    assert d["version"] == 3 and d["symmetry"] is None and d["degeneracy"] is not None


def test_stats_reports_a_refused_group_and_carries_on(tmp_path, capsys):
    from hashlab.maps import circulant_map

    path = tmp_path / "circ.safetensors"
    save_index_file(circulant_map(12), path)
    assert main(["stats", str(path), "--no-locality", "--symmetry-max-weights", "10", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "refused: circulant: after removing identical rows and columns" in out and "max_weights=10" in out
    assert (tmp_path / "symmetry.png").is_file()
    assert main(["stats", str(path), "--no-locality"]) == 0
    assert "cyclic group C12" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag, value, message",
    [("--symmetry-time-limit", "-1", "--symmetry-time-limit must be >= 0"), ("--symmetry-max-weights", "-5", ">= 0")],
)
def test_stats_refuses_negative_symmetry_bounds(map_file, flag, value, message, capsys):
    path, _ = map_file
    assert main(["stats", str(path), flag, value]) == 2
    assert message in capsys.readouterr().err
