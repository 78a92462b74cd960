"""The HashedNets study: its plan, parameter counts equal to the port's, and its report on synthetic rows."""

from __future__ import annotations

import json

import numpy as np

from analysis.report_hashednets import PUBLISHED, comparisons, write_hashednets_report
from analysis.study import load_profiles, plan
from hashlab import build_map
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.models import ArbMLP


def test_plan_trains_hashed_and_equal_size_plain_networks_with_the_port_recipe():
    runs = plan(load_profiles()["hashednets"], "mnist")
    assert len(runs) == 4 * 3
    assert {(r.arch, r.spec.compression, r.spec.kind) for r in runs} == {
        ("784-1000-10", "1/8", "xxhash"),
        ("784-1000-10", "1/64", "xxhash"),
        ("784-125-10", None, "identity"),
        ("784-16-10", None, "identity"),
    }
    cfg = runs[0].train_config()
    assert (cfg.lr, cfg.momentum, cfg.batch_size, cfg.epochs, cfg.lr_patience) == (0.01, 0.9, 50, 50, 3)
    assert (cfg.model, cfg.lr_metric, cfg.val_fraction) == ("hashednets-mlp", "val_loss", 0.1)


def test_parameter_counts_equal_the_ports():
    """12,433 hashed vs 12,730 plain at 1/64 and 99,385 / 99,385 at 1/8 (jfainberg/hashed_nets example.ipynb)."""
    runs = {(r.arch, r.spec.compression): r for r in plan(load_profiles()["hashednets"], "mnist") if r.train.seed == 0}
    want = {
        ("784-1000-10", "1/64"): 12433,
        ("784-16-10", None): 12730,
        ("784-1000-10", "1/8"): 99385,
        ("784-125-10", None): 99385,
    }
    for key, n in want.items():
        run = runs[key]
        options = TrainConfig.from_recipe("hashednets").model_options()
        model = ArbMLP(build_map(run.hash_spec(), run.architecture()), **options)
        assert sum(p.numel() for p in model.parameters()) == n, key


def _rows(effect_64: float, effect_8: float, seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for c, arch_nn, eff in (("1/64", "784-16-10", effect_64), ("1/8", "784-125-10", effect_8)):
        for s in seeds:
            base = 0.95 + 0.002 * rng.standard_normal()
            rows.append(
                {
                    "study": "hashednets",
                    "kind": "xxhash",
                    "compression": c,
                    "arch": "784-1000-10",
                    "train_seed": s,
                    "hash_seed": 1000 + s,
                    "test_accuracy": base + eff,
                    "parameters": 1,
                    "wall_time_s": 1.0,
                    "git_commit": "abc",
                }
            )
            rows.append(
                {
                    "study": "hashednets",
                    "kind": "identity",
                    "compression": None,
                    "arch": arch_nn,
                    "train_seed": s,
                    "hash_seed": 1000 + s,
                    "test_accuracy": base,
                    "parameters": 1,
                    "wall_time_s": 1.0,
                    "git_commit": "abc",
                }
            )
    return rows


def test_comparisons_find_the_effect_where_it_exists_and_not_where_it_does_not():
    comps = {c["compression"]: c for c in comparisons(_rows(0.03, 0.0))}
    assert list(comps) == ["1/8", "1/64"]
    d64, d8 = comps["1/64"]["hashed_minus_nn"], comps["1/8"]["hashed_minus_nn"]
    assert abs(d64["diff"]["mean"] - 0.03) < 1e-12 and d64["p_value"] == 0.0  # constant paired differences
    assert d8["diff"]["mean"] == 0.0 and d8["p_value"] == 1.0
    assert comps["1/64"]["hashed"]["runs"] == comps["1/64"]["NN"]["runs"] == 3
    assert {p["model"] for p in comps["1/8"]["published"]} == {"hashed", "NN"}


def test_report_sets_ours_beside_the_published_figures(tmp_path):
    class Profile:
        name = "hashednets"

    path = write_hashednets_report(
        _rows(0.02, 0.001), tmp_path, profile=Profile, dataset="mnist", planned=12, missing=0, machine="test"
    )
    text = path.read_text()
    assert text.count("jfainberg/hashed_nets @ 8ccc6b8") == len(PUBLISHED)
    assert "| 1/64 | hashed | 96.83 |" in text and "| 1/8 | NN | 98.25 |" in text
    assert json.loads((tmp_path / "hashednets.json").read_text())["comparisons"][0]["compression"] == "1/8"
    assert (tmp_path / "figures" / "hashednets_test_error.png").stat().st_size > 10_000
