"""The tuning stage of the tuned optimizer controls: its study matches the design, and its records select a rate."""

from __future__ import annotations

import json
import tomllib

import pytest

from analysis.runs import RunConfig, execute_run, group_key
from analysis.study import load_profiles, load_study, plan
from analysis.tuning import DESIGN, TuningError, curves_from_records, design_tuning, main

STUDIES = DESIGN.parent


def test_the_tuning_study_and_profile_are_the_designs_stage_1():
    design = tomllib.loads(DESIGN.read_text())["tuning"]
    rule, grids = design_tuning()
    assert rule.tie_tolerance == design["tie_tolerance"] and rule.min_seeds == design["min_seeds"]
    study = load_study("controls_tuning")
    arms = {(a.optimizer, a.table_grad_scale, a.lr) for a in study.arms}
    assert arms == {(*arm.split("/"), lr) for arm, grid in grids.items() for lr in grid}
    assert sorted(v.alpha for v in study.variants) == sorted(design["conditions"]) and study.sparsities == (0.0,)
    prof = load_profiles()["controls-tuning"]
    assert list(prof.train_seeds) == design["seeds"] and list(prof.hash_seeds) == design["hash_seeds"]
    assert (prof.val_fraction, prof.val_split) == (design["val_fraction"], design["val_split"])
    runs = plan(prof, "mnist", data_root="/data")
    assert len(runs) == len({r.key for r in runs}) == 28 * 2 * 3
    assert all(r.train.val_fraction == 0.1 and r.train.val_split == "random" for r in runs)
    assert all(group_key(r) is None for r in runs)  # train_group holds out no validation split


def test_runs_without_a_validation_split_keep_their_keys_and_the_field_is_in_the_key_when_set():
    paper = RunConfig.from_fields(dataset="mnist", study="balance", kind="dirichlet", alpha=1.0, sparsity=0.0,
                                  hash_seed=1000, train_seed=0, epochs=6)  # fmt: skip
    d = paper.to_dict()
    assert d["val_fraction"] is None and d["val_split"] is None
    old = {k: v for k, v in d.items() if k not in ("val_fraction", "val_split")}  # a record written before them
    assert RunConfig.from_dict(old).key == paper.key
    tuned = paper.replace(val_fraction=0.1, val_split="random")
    assert tuned.key != paper.key and tuned.train.val_fraction == 0.1
    hashednets = RunConfig.from_fields(dataset="mnist", study="h", kind="xxhash", sparsity=0.0, hash_seed=1,
                                       train_seed=0, epochs=2, recipe="hashednets", table_size=100)  # fmt: skip
    assert hashednets.train.val_fraction == 0.1 and hashednets.to_dict()["val_fraction"] is None  # the recipe's


@pytest.mark.slow
def test_two_real_tuning_runs_select_a_rate(tmp_path, data_root):
    """One arm, two rates, one seed, 2 epochs on 1,000 MNIST images: records -> curves -> selection files."""
    base = plan(load_profiles()["controls-tuning"], "mnist", data_root=str(data_root))[0]
    for lr in (0.01, 0.3):
        run = base.replace(lr=lr, epochs=2, limit_train=1000, optimizer="sgd", table_grad_scale="none")
        execute_run(run, tmp_path)
    curves = curves_from_records(tmp_path)
    assert {(c.arm, c.lr, c.condition) for c in curves} == {
        ("sgd/none", 0.01, "alpha=0.01"),
        ("sgd/none", 0.3, "alpha=0.01"),
    }
    assert all(len(c.val_accuracy) == 2 and 0 < c.best <= 1 for c in curves)
    design = tmp_path / "design.toml"
    design.write_text(
        '[tuning]\ntie_tolerance = 0.001\nmin_seeds = 1\n[[tuning.arms]]\noptimizer = "sgd"\n'
        'table_grad_scale = "none"\ngrid = [0.01, 0.3]\n'
    )
    assert main(["--out", str(tmp_path), "--design", str(design)]) == 0
    chosen = json.loads((tmp_path / "tuning.json").read_text())["selections"]
    best = max(curves, key=lambda c: c.best)
    assert len(chosen) == 1 and chosen[0]["lr"] in (best.lr, 0.01)  # the best, or the smaller within the tolerance
    assert "| sgd/none | alpha=0.01 |" in (tmp_path / "TUNING.md").read_text()


def test_no_tuning_records_or_a_design_without_tuning_exit_2_with_the_fix(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["--out", str(tmp_path)]) == 2
    assert "controls-tuning" in capsys.readouterr().err
    with pytest.raises(TuningError, match=r"\[tuning\]"):
        design_tuning(STUDIES / "balance.toml")
