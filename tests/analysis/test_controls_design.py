"""The tuned-controls design file (analysis/studies/controls_tuned.toml) against the trainer and the rule, and
its power analysis on synthetic pilot rows with a known answer."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from analysis.power_controls import markdown, pilot_values, plan_rows
from analysis.study import STUDY_DIR
from analysis.tuning import TuningRule
from trainers.torch_backend.config import OPTIMIZERS, TABLE_GRAD_SCALES, TrainConfig

from .test_controls import rows_of


@pytest.fixture(scope="module")
def design():
    with open(STUDY_DIR / "controls_tuned.toml", "rb") as f:
        return tomllib.load(f)


def test_every_tuned_arm_is_a_recipe_the_trainer_accepts(design):
    t = design["tuning"]
    arms = {f"{a['optimizer']}/{a['table_grad_scale']}" for a in t["arms"]}
    assert {"sgd/none", "sgd/load", "sgd/sqrt_load", "sgd/load_hot", "sgd/load_cold", "adam/none", "adamw/none"} == arms
    for a in t["arms"]:
        assert a["optimizer"] in OPTIMIZERS and a["table_grad_scale"] in TABLE_GRAD_SCALES
        assert a["grid"] == sorted(a["grid"]) and len(set(a["grid"])) == 4
        for lr in a["grid"]:  # each point is a valid TrainConfig with the design's validation split
            TrainConfig(
                optimizer=a["optimizer"],
                table_grad_scale=a["table_grad_scale"],
                lr=lr,
                val_fraction=t["val_fraction"],
                val_split=t["val_split"],
            )
    assert TuningRule(tie_tolerance=t["tie_tolerance"], min_seeds=t["min_seeds"]).min_seeds == len(t["seeds"])
    assert not set(t["seeds"]) & set(range(design["confirmatory"]["seeds"]))  # tuning seeds are not test seeds


def test_primary_parts_name_arms_that_the_design_runs(design):
    tuned = {f"{a['optimizer']}/{a['table_grad_scale']}" for a in design["tuning"]["arms"]}
    p = design["primary"]
    assert set(p["removed"]["arms"]) <= tuned and set(p["interaction"]["arms"]) <= tuned
    assert set(design["confirmatory"]["primary_alphas"]) <= set(design["confirmatory"]["alphas"])
    assert 10 <= design["confirmatory"]["seeds"] <= 20


def test_power_table_reads_the_pilot_values(design):
    # the paper arm gains 40 pp from alpha 0.01 to 1000, the load arm none, Adam as the paper (rows_of's arms)
    rows = rows_of(
        lambda arm, s, a: 0.9 if arm == ("sgd", "load") else 0.5 + 0.4 * (np.log10(a) + 2) / 5,
        sparsities=(0.0, 0.5, 0.9),
    )
    v = pilot_values(rows)
    assert v["gap/sgd/none/s=0"] == pytest.approx([40.0] * 5, abs=2.0)
    assert v["removed/sgd/load"] == pytest.approx([40.0] * 5, abs=2.0)
    assert v["interaction/adam/none"] == pytest.approx([0.0] * 5, abs=2.0)
    table = plan_rows("mnist", rows, design)
    by = {r.part: r for r in table}
    assert by["P1 removed sgd/load"].effect_plan == pytest.approx(20.0, abs=1.0)  # half the pilot's mean
    assert by["P1 removed sgd/load"].level == pytest.approx(0.05 / 4)
    assert by["P1 removed sgd/load"].seeds_needed <= 3  # 20 pp against an SD of about 0.6 pp
    assert "| mnist | P3 hot - cold | none |" in markdown(table)
    with pytest.raises(ValueError, match="the pilot lacks arm sgd/none at sparsity 0.5"):
        pilot_values(rows_of(lambda arm, s, a: 0.9))
