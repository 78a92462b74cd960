"""The pre-registered confirmatory design: its file, its cells in the confirm profile, seeds from the power analysis."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from analysis.design import DESIGN_DIR, DesignError, load_design, read_pilot
from analysis.power import power_rows
from analysis.study import StudyError, load_profiles, load_study, plan

DESIGN = load_design("confirmatory")


def test_the_design_names_one_primary_comparison_per_claim():
    assert [c.claim for c in DESIGN.claims] == [1, 2, 3, 4, 5, 6]
    assert DESIGN.alpha == 0.05 and DESIGN.profile == "confirm" and 0 < DESIGN.stuck_below < 0.5
    for c in DESIGN.claims:
        assert c.sesoi > 0 and c.margin >= c.sesoi and c.seeds >= 10
        assert c.margin >= 0.5 or c.unit != "pp"  # equivalence margins above the test-set noise
    assert DESIGN.claim(3).test == "curvature" and DESIGN.claim(1).across == "every"


def test_the_confirm_profile_runs_every_cell_with_the_planned_seeds():
    prof = load_profiles()["confirm"]
    assert prof.stop_after_drops == 2 and prof.stop_patience == 4 and prof.epochs == 60
    runs = plan(prof, "mnist")
    assert Counter(r.study for r in runs) == {
        "confirm_balance": 200,
        "confirm_noise": 80,
        "confirm_outlier": 40,
        "crossed": 50,
    }
    assert all(r.train.stop_after_drops == 2 and r.train.epochs == 60 for r in runs)
    first = runs[:16]  # replicate by replicate: seed pair 0 of every study comes first
    assert {(r.train.seed, r.spec.seed) for r in first} == {(0, 1000)}
    cross = [r for r in runs if r.study == "crossed"]
    assert len({(r.train.seed, r.spec.seed) for r in cross}) == 25  # 5 hash seeds x 5 train seeds
    assert {r.spec.alpha for r in cross} == {0.001, 1000}


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_each_study_runs_the_seeds_the_power_analysis_asks_for(dataset):
    """Replicates of a study = the largest seed count any of its claims needs on any pilot, clipped to [10, 20]."""
    need: dict[str, float] = {}
    for ds in ("mnist", "fashion-mnist"):
        for r in power_rows(DESIGN, ds, read_pilot(DESIGN, ds)):
            study = DESIGN.claim(r.claim).study
            need[study] = max(need.get(study, 0), r.seeds_needed if math.isfinite(r.seeds_needed) else 1e9)
    for study, n in need.items():
        assert load_study(study).replicates == min(20, max(10, math.ceil(n))), study
    rows = power_rows(DESIGN, dataset, read_pilot(DESIGN, dataset))
    assert {r.claim for r in rows} == {1, 2, 3, 4, 5, 6} and all(r.pilot_n == 3 for r in rows)


BASE = (DESIGN_DIR / "confirmatory.toml").read_text()


@pytest.mark.parametrize(
    "edit, match",
    [
        (("version = 1", "version = 2"), "version 2 is not supported"),
        (("alpha = 0.05", "alpha = 0.05\nbeta = 1"), "unknown field"),
        (
            (
                'margin = 0.5\nunit = "pp"\nseeds = 20\nrationale = "per seed: mean',
                'margin = 0.1\nunit = "pp"\nseeds = 20\nrationale = "per seed: mean',
            ),
            "at least the SESOI",
        ),
        (
            (
                "better = [1, 1000]\nworse = [0.001, 0.01, 0.1]\nsparsities = [0, 0.9]\ndirection",
                "better = [1, 1000]\nworse = [0.001, 0.01, 0.1]\nsparsities = [0, 0.5, 0.9]\ndirection",
            ),
            "exactly two sparsities",
        ),
        (("worse = [500]", "worse = [1]"), "disjoint"),
        (("claim = 6", "claim = 5"), "each claim once"),
        (('direction = "less"', 'direction = "down"'), "direction"),
    ],
)
def test_bad_design_files_are_refused_with_the_reason(tmp_path, edit, match):
    old, new = edit
    assert old in BASE, old
    path = tmp_path / "confirmatory.toml"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(DesignError, match=match):
        load_design(path)


def test_a_profile_with_fewer_seeds_than_its_design_needs_is_refused(tmp_path):
    body = (DESIGN_DIR / "profiles.toml").read_text()
    confirm = body[body.index("[confirm]") : body.index("[converged]")]
    train = ", ".join(str(i) for i in range(20))
    hashes = ", ".join(str(1000 + i) for i in range(20))
    short = confirm.replace(f"train_seeds = [{train}]", "train_seeds = [0, 1, 2, 3, 4]")
    short = short.replace(f"hash_seeds = [{hashes}]", "hash_seeds = [1000, 1001, 1002, 1003, 1004]")
    path = tmp_path / "profiles.toml"
    path.write_text("version = 1\n" + short)
    with pytest.raises(StudyError, match="needs 20 replicates but the profile has 5 seed pairs"):
        load_profiles(path)


# The CIFAR-10 design (studies/confirmatory_cifar10.toml): its power analysis reads the Fashion-MNIST stand-in pilot,
# and its seeds are what that asks for, clipped to [SEEDS_FLOOR, SEEDS_BUDGET] (the file states both numbers).
CIFAR = load_design("confirmatory_cifar10")
SEEDS_FLOOR = 5  # the fewest seeds at which the exact sign-flip test can reach p < 0.05 (1/32)
SEEDS_BUDGET = 5  # what ten minutes of one H100 allow for 10 cells of the 22M-weight network, 60 epochs at most


def test_the_cifar10_design_names_one_primary_comparison_per_claim_it_tests():
    assert [c.claim for c in CIFAR.claims] == [1, 2, 4, 5, 6]  # 3 needs five alphas: cut to fit (the file says so)
    assert CIFAR.profile == "confirm-cifar10" and CIFAR.alpha == 0.05
    assert CIFAR.pilot.endswith("fashion-mnist/results.csv")
    for c in CIFAR.claims:
        assert c.sesoi == 0.5 and c.margin == 0.5 and c.unit == "pp" and c.study.startswith("cifar_")
    assert CIFAR.claim(6).sparsities == (0.1,) and CIFAR.claim(2).test == CIFAR.claim(5).test == "difference"
    text = (DESIGN_DIR / "confirmatory_cifar10.toml").read_text()
    assert "STAND-IN" in text and "What was cut".upper() in text.upper()


def test_the_cifar10_seeds_are_the_stand_in_power_analysis_within_the_budget():
    rows = power_rows(CIFAR, "fashion-mnist", read_pilot(CIFAR, "cifar10"))  # the stand-in, whatever the dataset
    assert {r.claim for r in rows} == {1, 2, 4, 5, 6} and all(r.pilot_n == 3 for r in rows)
    need: dict[str, float] = {}
    for r in rows:
        study = CIFAR.claim(r.claim).study
        need[study] = max(need.get(study, 0), r.seeds_needed if math.isfinite(r.seeds_needed) else 1e9)
    for study, n in need.items():
        assert load_study(study).replicates == min(SEEDS_BUDGET, max(SEEDS_FLOOR, math.ceil(n))), study
    for c in CIFAR.claims:
        assert c.seeds == load_study(c.study).replicates


def test_the_confirm_cifar10_profile_runs_every_cell_in_five_groups_of_ten():
    prof = load_profiles()["confirm-cifar10"]
    assert prof.stop_after_drops == 2 and prof.stop_patience == 4 and prof.epochs == 60 and prof.batch_size == 200
    runs = plan(prof, "cifar10", verify_md5=False)
    assert Counter(r.study for r in runs) == {"cifar_balance": 20, "cifar_noise": 20, "cifar_outlier": 10}
    assert all(r.architecture().features == (3072, 2000, 2000, 2000, 2000, 2000, 10) for r in runs)
    assert all(r.spec.table_size == 1000 and not r.train.verify_md5 and r.train.stop_after_drops == 2 for r in runs)
    cells = {(r.study, r.spec.alpha if r.spec.kind == "dirichlet" else r.spec.radius, r.spec.sparsity) for r in runs}
    assert len(cells) == 10
    for c in CIFAR.claims:  # every cell a primary comparison reads is run
        assert {(c.study, v, s) for v, s in c.cells} <= cells
    from analysis.runs import group_key

    groups = Counter(group_key(r) for r in runs)
    assert None not in groups and sorted(groups.values()) == [10] * 5  # --group-size 10: one group per train seed
