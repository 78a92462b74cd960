"""The learning-rate selection rule on synthetic validation curves with a known answer, and on a real run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.tuning import TuningCurve, TuningError, TuningRule, select_all, select_lr

GRID = (0.01, 0.03, 0.1, 0.3)
SEEDS = (0, 1, 2)


def curve(lr, seed, peak, *, arm="sgd/none", condition="alpha=1000", epochs=6, diverge_at=None):
    """A validation curve that rises to ``peak`` at epoch 4 and sags after; NaN losses from ``diverge_at`` on."""
    rng = np.random.default_rng(seed)
    shape = np.array([0.80, 0.90, 0.97, 1.0, 0.99, 0.985])[:epochs]
    acc = peak * shape + 0.0005 * rng.standard_normal(epochs)
    acc[3] = peak + 0.0002 * (seed - 1)  # the best epoch, with seed-to-seed spread
    loss = 1.0 - acc
    val_loss = loss.copy()
    if diverge_at is not None:
        loss[diverge_at:] = math.nan
        val_loss[diverge_at:] = math.inf
        acc[diverge_at:] = 0.098
    return TuningCurve(arm, lr, seed, tuple(acc), tuple(loss), tuple(val_loss), condition)


def grid_curves(peaks, extra=None):
    """One curve per (lr of GRID, seed) with the given per-lr peak; ``extra``: per lr, e.g. {0.3: {"diverge_at": 2}}."""
    return [curve(lr, s, peaks[lr], **(extra or {}).get(lr, {})) for lr in GRID for s in SEEDS]


def test_the_known_best_is_chosen_and_the_table_holds_every_rate():
    sel = select_lr(grid_curves({0.01: 0.95, 0.03: 0.96, 0.1: 0.975, 0.3: 0.965}), GRID)
    assert sel.lr == 0.1 and sel.edge is None and sel.tied == (0.1,)
    assert [s.lr for s in sel.table] == list(GRID) and all(s.seeds == 3 and s.diverged == 0 for s in sel.table)
    assert sel.table[2].score == pytest.approx(0.975, abs=1e-6)  # mean of the best epochs, not the last
    assert sel.to_dict()["rule"]["tie_break"] == "smallest lr"


def test_a_diverged_rate_is_excluded_even_when_its_early_epochs_score_best():
    # lr 0.3 reaches 0.99 on two seeds, and diverges on seed 2 after its best epoch: the whole rate is out
    curves = grid_curves({0.01: 0.95, 0.03: 0.96, 0.1: 0.975, 0.3: 0.99})
    curves = [c if not (c.lr == 0.3 and c.seed == 2) else curve(0.3, 2, 0.99, diverge_at=5) for c in curves]
    sel = select_lr(curves, GRID)
    assert sel.lr == 0.1 and sel.edge is None
    assert sel.table[3].diverged == 1 and math.isnan(sel.table[3].score)
    assert sel.to_dict()["table"][3]["score"] is None


def test_a_tie_within_the_tolerance_goes_to_the_smaller_rate():
    peaks = {0.01: 0.95, 0.03: 0.9745, 0.1: 0.975, 0.3: 0.96}  # 0.03 is 0.05 pp below 0.1: tied at 0.1 pp
    sel = select_lr(grid_curves(peaks), GRID)
    assert sel.lr == 0.03 and sel.tied == (0.03, 0.1)
    strict = select_lr(grid_curves(peaks), GRID, TuningRule(tie_tolerance=0.0))
    assert strict.lr == 0.1 and strict.tied == (0.1,)


@pytest.mark.parametrize(
    "peaks, lr, edge",
    [
        ({0.01: 0.95, 0.03: 0.96, 0.1: 0.97, 0.3: 0.98}, 0.3, "high"),
        ({0.01: 0.98, 0.03: 0.96, 0.1: 0.95, 0.3: 0.94}, 0.01, "low"),
    ],
    ids=["best-at-top", "best-at-bottom"],
)
def test_a_best_rate_at_the_edge_of_the_grid_is_flagged(peaks, lr, edge):
    sel = select_lr(grid_curves(peaks), GRID)
    assert sel.lr == lr and sel.edge == edge


def test_every_rate_diverged_gives_no_choice():
    sel = select_lr(grid_curves(dict.fromkeys(GRID, 0.9), {lr: {"diverge_at": 1} for lr in GRID}), GRID)
    assert sel.lr is None and sel.edge is None and all(s.diverged == 3 for s in sel.table)


def test_select_all_applies_the_rule_per_arm_and_condition():
    curves = grid_curves({0.01: 0.95, 0.03: 0.96, 0.1: 0.975, 0.3: 0.965})
    adam = [
        curve(lr, s, 0.97 if lr == 3e-4 else 0.95, arm="adam/none", condition="alpha=0.01")
        for lr in (1e-4, 3e-4, 1e-3)
        for s in SEEDS
    ]
    sels = select_all(curves + adam, {"sgd/none": GRID, "adam/none": (1e-4, 3e-4, 1e-3)})
    assert [(s.arm, s.condition, s.lr) for s in sels] == [
        ("adam/none", "alpha=0.01", 3e-4),
        ("sgd/none", "alpha=1000", 0.1),
    ]
    with pytest.raises(TuningError, match=r"no grid stated for arms \['adam/none'\]"):
        select_all(curves + adam, {"sgd/none": GRID})


@pytest.mark.parametrize(
    "curves, grid, match",
    [
        ([curve(0.05, 0, 0.9), curve(0.05, 1, 0.9)], GRID, "lr 0.05 is not in the grid"),
        (grid_curves(dict.fromkeys(GRID, 0.9))[:-1], GRID, r"lr 0.3 has 2 tuning runs \(missing seeds \[2\]\)"),
        ([curve(0.01, 0, 0.9), curve(0.01, 0, 0.9)], (0.01,), "a second curve for the same lr and seed"),
        ([curve(0.01, 0, 0.9)], (0.01,), "at least 2"),
        ([curve(0.01, 0, 0.9), curve(0.01, 1, 0.9, arm="adam/none")], (0.01,), "one arm at one condition"),
        ([], GRID, "no curves"),
    ],
    ids=["off-grid", "missing-seed", "duplicate", "too-few-seeds", "mixed-arms", "empty"],
)
def test_curves_the_rule_cannot_judge_are_refused(curves, grid, match):
    with pytest.raises(TuningError, match=match):
        select_lr(curves, grid)


def test_bad_rules_and_curves_raise_clear_errors():
    with pytest.raises(TuningError, match="tie_tolerance must be >= 0"):
        TuningRule(tie_tolerance=-0.1)
    with pytest.raises(TuningError, match="min_seeds must be an integer >= 1"):
        TuningRule(min_seeds=0)
    with pytest.raises(TuningError, match="one value per epoch, got 2, 1 and 2"):
        TuningCurve("sgd/none", 0.1, 0, (0.5, 0.6), (1.0,), (1.0, 0.9))
    with pytest.raises(TuningError, match="lr must be a finite number > 0"):
        TuningCurve("sgd/none", 0.0, 0, (0.5,), (1.0,), (1.0,))


@pytest.mark.slow
def test_from_result_reads_a_real_run_with_a_random_validation_split(data_root, tmp_path):
    from hashlab import Architecture, HashSpec, build_map, save_index_file
    from trainers.torch_backend.config import TrainConfig
    from trainers.torch_backend.training import train

    path = save_index_file(
        build_map(HashSpec(kind="dirichlet", alpha=1000.0, table_size=1000), Architecture.parse("mnist-mlp")),
        tmp_path / "m.safetensors",
    )
    common = {"data_root": str(data_root), "device": "cpu", "epochs": 2, "limit_train": 1000, "batch_size": 100}
    res = train(path, TrainConfig(**common, lr=0.03, seed=4, val_fraction=0.1, val_split="random"), progress=False)
    c = TuningCurve.from_result("sgd/none", res, "alpha=1000")
    assert (c.lr, c.seed, len(c.val_accuracy)) == (0.03, 4, 2) and not c.diverged and 0.3 < c.best <= 1
    assert res.data.val_size == 100 and c.val_accuracy == tuple(e.val_accuracy for e in res.epochs)
    plain = train(path, TrainConfig(**(common | {"epochs": 1})), progress=False)
    with pytest.raises(TuningError, match="no validation curve; train it with val_fraction > 0"):
        TuningCurve.from_result("sgd/none", plain)
