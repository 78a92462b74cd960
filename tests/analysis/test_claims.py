"""analysis.claims on synthetic result rows whose answer is known."""

from __future__ import annotations

import numpy as np

from analysis.claims import claim_1, claim_2, claim_3, claim_4, claim_5, claim_6, grid_table, judge_all
from analysis.inference import FAILS, HOLDS, INCONCLUSIVE

ALPHAS = [0.001, 0.01, 0.1, 1, 10, 100, 1000]
RADII = [0, 1, 3, 10, 30, 100, 300, 500]
SPARSITIES = [0.0, 0.1, 0.5, 0.9]


def balance_rows(effect, seeds=4, noise=0.0005, seed=0):
    """effect(sparsity) -> accuracy gain per alpha step; entropy rises with alpha like the real maps."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in SPARSITIES:
        for k in range(seeds):
            base = 0.95 + rng.normal(0, 0.003)
            for j, a in enumerate(ALPHAS):
                h = 6.9 * (1 - np.exp(-0.8 * (j + 1)))
                rows.append(
                    {
                        "study": "balance",
                        "sparsity": s,
                        "alpha": a,
                        "train_seed": k,
                        "entropy_nats": h,
                        "test_accuracy": base + effect(s) * h + rng.normal(0, noise),
                    }
                )
    return rows


def noise_rows(step, r0_penalty=0.0, seeds=4, noise=0.0005, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for s in SPARSITIES:
        for k in range(seeds):
            base = 0.95 + rng.normal(0, 0.003)
            for j, r in enumerate(RADII):
                acc = base - step(s) * j - (r0_penalty if r == 0 else 0.0)
                rows.append(
                    {
                        "study": "noise",
                        "sparsity": s,
                        "radius": r,
                        "train_seed": k,
                        "test_accuracy": acc + rng.normal(0, noise),
                    }
                )
    return rows


def test_grid_table_keeps_only_complete_seeds():
    rows = balance_rows(lambda s: 0.001)
    rows = [r for r in rows if not (r["train_seed"] == 2 and r["alpha"] == 1 and r["sparsity"] == 0.0)]
    t, seeds = grid_table([r for r in rows if r["sparsity"] == 0.0], "alpha", ALPHAS)
    assert seeds == [0, 1, 3] and t.shape == (3, 7)


def test_balance_effect_everywhere_holds_and_shrinking_effect_is_claim_2():
    rows = balance_rows(lambda s: 0.004 * (1 - s) + 0.0025)  # above the 0.5 pp margin at every sparsity
    c1, c2 = claim_1(rows), claim_2(rows)
    assert c1.verdict == HOLDS and all(f.verdict == HOLDS for f in c1.findings)
    assert c2.verdict == HOLDS
    known = 0.0065 * 6.9 * (np.exp(-0.8) - np.exp(-0.8 * 7))  # effect x entropy gained from alpha 1e-3 to 1000
    assert c1.findings[0].ends.diff.low < known < c1.findings[0].ends.diff.high


def test_no_balance_effect_does_not_hold():
    rows = balance_rows(lambda s: 0.0, seeds=10, noise=0.0002)
    assert claim_1(rows).verdict == FAILS
    assert claim_2(rows).verdict in (FAILS, INCONCLUSIVE)


def test_effect_at_some_sparsities_only_is_not_at_every_sparsity():
    rows = balance_rows(lambda s: 0.004 if s < 0.5 else 0.0, seeds=10, noise=0.0002)
    c1 = claim_1(rows)
    assert c1.verdict == FAILS and [f.verdict for f in c1.findings][:2] == [HOLDS, HOLDS]


def test_claim_3_concave_low_and_linear_high():
    rng = np.random.default_rng(3)
    rows = []
    for s in [0.0, 0.1, 0.7, 0.9]:
        for k in range(3):
            for a, h in zip(ALPHAS, np.linspace(3, 6.9, 7)):
                acc = 0.96 - 0.004 * (h - 6.9) ** 2 if s < 0.5 else 0.80 + 0.02 * h
                rows.append(
                    {
                        "study": "balance",
                        "sparsity": s,
                        "alpha": a,
                        "train_seed": k,
                        "entropy_nats": h,
                        "test_accuracy": acc + rng.normal(0, 0.0005),
                    }
                )
    assert claim_3(rows).verdict == HOLDS
    flipped = [{**r, "sparsity": {0.0: 0.7, 0.1: 0.9, 0.7: 0.0, 0.9: 0.1}[r["sparsity"]]} for r in rows]
    assert claim_3(flipped).verdict == FAILS


def test_noise_claims_and_the_radius_zero_outlier():
    rows = noise_rows(lambda s: 0.002 * (1 - s), r0_penalty=0.05)
    assert claim_4(rows).verdict == HOLDS and claim_5(rows).verdict == HOLDS
    c6 = claim_6(rows)
    assert c6.verdict == HOLDS and all(f.ends.diff.mean > 0.04 for f in c6.findings)
    clean = noise_rows(lambda s: 0.0, seeds=10, noise=0.0001)
    assert claim_4(clean).verdict == FAILS and claim_6(clean).verdict == FAILS


def test_judge_all_covers_the_studies_present():
    assert [c.number for c in judge_all(balance_rows(lambda s: 0.001))] == [1, 2, 3]
    both = balance_rows(lambda s: 0.001) + noise_rows(lambda s: 0.001)
    assert [c.number for c in judge_all(both)] == [1, 2, 3, 4, 5, 6]
    assert all(c.to_dict()["statement"] for c in judge_all(both))
