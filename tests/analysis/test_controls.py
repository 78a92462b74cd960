"""The optimizer-control statistics on synthetic rows with a known answer, and the predictors on real maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from analysis.controls import (
    PAPER,
    arm_gaps,
    arms_of,
    interactions,
    map_predictors,
    map_statistics_for_predictors,
    residual_gaps,
    share_removed,
)
from hashlab import ARCHITECTURES, HashSpec, build_map

ALPHAS = (0.01, 1.0, 1000.0)
ARMS = (("sgd", "none"), ("sgd", "load"), ("adam", "none"))


def rows_of(acc_of, seeds=range(5), sparsities=(0.0,), noise=0.004, rng_seed=0):
    """Rows shaped like results.csv: the paper arm under the balance study, the others under the control study."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in sparsities:
        for arm in ARMS:
            for a in ALPHAS:
                for seed in seeds:
                    rows.append(
                        {
                            "dataset": "mnist",
                            "kind": "dirichlet",
                            "study": "balance" if arm == PAPER else "balance_controls",
                            "optimizer": arm[0],
                            "table_grad_scale": arm[1],
                            "alpha": a,
                            "sparsity": s,
                            "train_seed": seed,
                            "hash_seed": 1000 + seed,
                            "epochs": 6,
                            "table_size": 1000,
                            "lr": 0.001 if arm[0] == "adam" else 0.1,
                            "test_accuracy": acc_of(arm, s, a) + noise * rng.standard_normal(),
                        }
                    )
    return rows


def paper_gap_only(arm, s, a):
    """The paper arm gains 40 pp from alpha 0.01 to 1000; the load-normalized arm is flat; Adam as the paper."""
    if arm == ("sgd", "load"):
        return 0.9
    return 0.5 + 0.4 * (math.log10(a) + 2) / 5


def gap_everywhere(arm, s, a):
    return 0.5 + 0.4 * (math.log10(a) + 2) / 5 - (0.1 if arm == ("sgd", "load") else 0.0)


def test_a_control_that_removes_the_gap_is_found():
    rows = rows_of(paper_gap_only)
    assert arms_of(rows)[0] == PAPER
    gaps = {g.arm: g for g in arm_gaps(rows)}
    assert gaps[PAPER].gap.diff.low > 0.38 and gaps[PAPER].gap.diff.high < 0.42 and gaps[PAPER].gap.p_value < 1e-4
    load = gaps[("sgd", "load")]
    assert abs(load.gap.diff.mean) < 0.01 and load.gap.p_value > 0.01
    assert load.vs_paper.diff.high < -0.35 and load.vs_paper.p_value < 1e-4 and abs(load.remaining) < 0.03
    adam = gaps[("adam", "none")]  # the same gap as the paper's: no change
    assert adam.vs_paper.diff.low < 0 < adam.vs_paper.diff.high and abs(adam.remaining - 1) < 0.05
    low = [g for g in residual_gaps(rows) if g.alpha == 0.01][0]
    assert low.best_arm == ("sgd", "load") and not low.remains


def test_share_removed_has_a_fieller_set_per_arm():
    gaps = {g.arm: g for g in arm_gaps(rows_of(paper_gap_only))}
    assert gaps[PAPER].share is None
    load, adam = gaps[("sgd", "load")].share, gaps[("adam", "none")].share
    assert load.bounded and load.low < 1 < load.high and load.high - load.low < 0.05  # removes all of it
    assert adam.bounded and adam.low < 0 < adam.high and abs(adam.estimate) < 0.05  # removes none of it
    saved = gaps[("sgd", "load")].to_dict()["share_removed"]
    assert saved["kind"] == "interval" and saved["n"] == 5


def test_share_removed_covers_the_true_share_under_paired_seeds():
    """Per-seed gaps (pp) whose arm keeps 30% of the paper's gap: the share removed (70%) is covered ~95%."""
    rng = np.random.default_rng(5)
    cov = [[10.0**2, 0.6 * 10 * 4], [0.6 * 10 * 4, 4.0**2]]  # paper SD 10 pp, arm SD 4 pp, correlated seeds
    hits, draws = 0, 600
    for _ in range(draws):
        g = rng.multivariate_normal([40.0, 12.0], cov, size=10)
        hits += share_removed(g[:, 0], g[:, 1]).contains(0.7)
    ci = scipy.stats.binomtest(hits, draws).proportion_ci(confidence_level=0.999)
    assert ci.low <= 0.95 <= ci.high, hits / draws


def test_share_removed_of_a_paper_gap_near_zero_is_unbounded():
    paper = np.array([40.0, 75.0, -60.0, 2.0, -50.0])  # bimodal, mean 1.4 pp: not distinguishable from 0
    arm = np.array([8.0, 9.0, 8.5, 9.5, 8.8])
    s = share_removed(paper, arm)
    assert not s.bounded and s.kind in ("complement", "all") and s.to_dict()["kind"] == s.kind


def test_a_gap_no_control_removes_is_attributed_to_the_sharing_pattern():
    rows = rows_of(gap_everywhere)
    res = {g.alpha: g for g in residual_gaps(rows)}
    assert set(res) == {0.01, 1.0} and res[0.01].remains and res[1.0].remains
    assert all(abs(g.remaining - 1) < 0.05 for g in arm_gaps(rows) if g.arm != PAPER)


def test_no_effect_anywhere_gives_no_remaining_gap():
    rows = rows_of(lambda arm, s, a: 0.9)
    assert not any(g.remains for g in residual_gaps(rows))
    assert all(g.remaining is None for g in arm_gaps(rows))  # no paper gap to share out


def test_predictors_rank_a_statistic_that_tracks_the_gap_first():
    def stats(row):  # "tracks" follows alpha (the remaining gap falls with it); "flat" is constant
        return {
            "entropy_normalized": math.log10(row["alpha"]),
            "unused_entries": 0.3,
            "top1pct_share": 0.3,
            "distinct_rows": 1.0,
            "rank_bound": 1.0,
        }

    rows = rows_of(gap_everywhere, sparsities=(0.0, 0.5))
    preds, points = map_predictors(rows, stats)
    assert len(points) == 2 * 2 * 5 and preds[0].name == "entropy_normalized"
    assert preds[0].rho < -0.8 and preds[0].p_value < 1e-4
    assert all(math.isnan(p.rho) for p in preds[1:])


def test_map_statistics_for_predictors_on_real_maps():
    arch = ARCHITECTURES["mnist-mlp"]
    hot = map_statistics_for_predictors(build_map(HashSpec(kind="dirichlet", alpha=0.001, seed=1), arch))
    flat = map_statistics_for_predictors(build_map(HashSpec(kind="dirichlet", alpha=1000, seed=1), arch))
    assert hot["entropy_normalized"] < 0.2 and 0.95 < flat["entropy_normalized"] <= 1
    assert hot["unused_entries"] > 0.9 and flat["unused_entries"] < 0.1  # layer 2: 2000 weights, 1000 entries
    assert hot["top1pct_share"] > 0.9 and flat["top1pct_share"] < 0.05
    assert hot["distinct_rows"] < 1.0  # alpha = 0.001 puts whole rows on one entry
    mod = map_statistics_for_predictors(build_map(HashSpec(kind="modulus"), arch))
    assert mod["distinct_rows"] == pytest.approx((125 + 5 + 5) / 410)  # docs/STATS.md's modulus example
    assert mod["entropy_normalized"] > 0.99 and flat["distinct_rows"] == 1.0


def test_report_section_writes_its_tables_figure_and_json(tmp_path):
    import json

    from analysis.report_controls import controls_section

    lines = controls_section(rows_of(paper_gap_only, seeds=range(3)), tmp_path, "mnist", 6)
    text = "\n".join(lines)
    assert "### How much of the gap between α = 0.01 and α = 1000 remains" in text
    assert "| 0 | SGD + load-normalized | 3 |" in text and "Best predictor:" in text
    assert (tmp_path / "figures" / "fig5_balance_under_optimizer_controls.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "controls.json").read_text())
    assert {g["arm"] for g in saved["gaps"]} == {"sgd/none", "sgd/load", "adam/none"}
    assert len(saved["points"]) == 2 * 3 and controls_section([], tmp_path, "mnist", 6) == []
    assert "| share removed [Fieller 95%] |" in text
    load = [g for g in saved["gaps"] if g["arm"] == "sgd/load"][0]["share_removed"]
    assert load["kind"] == "interval" and load["low"] < 1 < load["high"]


def test_share_text_says_when_a_set_is_unbounded():
    from analysis.inference import RatioSet
    from analysis.report_controls import share_text

    assert share_text(RatioSet(0.86, "interval", -0.15, 0.97, 3, 0.95)) == "86% [-15%, 97%]"
    assert share_text(RatioSet(0.5, "complement", -2.0, 3.0, 3, 0.95)) == "50%, set unbounded: ≤ -200% or ≥ 300%"
    assert share_text(RatioSet(0.5, "all", -math.inf, math.inf, 3, 0.95)) == "50%, set unbounded: any value"
    assert share_text(None) == ""


def test_remains_is_judged_on_each_control_arms_own_gap_not_on_the_paper_arm():
    """A bimodal paper arm (stuck on some seeds: not significant) does not veto a gap every control leaves."""

    def acc(arm, s, a):
        return 0.5 + 0.4 * (math.log10(a) + 2) / 5 if arm != PAPER else 0.9

    rows = rows_of(acc)
    for r in rows:  # the paper arm at alpha 0.01: two seeds stuck at chance, the others learn
        if r["study"] == "balance" and r["alpha"] == 0.01:
            r["test_accuracy"] = 0.1 if r["train_seed"] < 2 else 0.95
    res = {g.alpha: g for g in residual_gaps(rows)}
    assert res[0.01].gaps[PAPER].p_value > 0.05  # the paper arm's own gap is not significant
    assert res[0.01].remains  # but both controls leave a significant gap


def test_claim_2_interaction_under_each_arm():
    def acc(arm, s, a):  # the paper arm's gap shrinks from 40 pp dense to 10 pp sparse; Adam's grows 8 -> 10 pp
        rise = (math.log10(a) + 2) / 5
        if arm == ("adam", "none"):
            return 0.5 + (0.08 if s == 0 else 0.10) * rise
        return 0.5 + (0.40 if s == 0 else 0.10) * rise

    got = interactions(rows_of(acc, sparsities=(0.0, 0.9)))
    assert got[PAPER].diff.mean == pytest.approx(0.30, abs=0.01) and got[PAPER].p_value < 1e-4
    adam = got[("adam", "none")]
    assert adam.diff.mean == pytest.approx(-0.02, abs=0.01) and adam.diff.high < 0  # reversed
    assert interactions(rows_of(acc, sparsities=(0.0,))) == {}  # no sparse cells
