"""analysis.inference on synthetic data with a known answer: effects present and absent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from analysis.inference import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    RatioSet,
    fieller_ratio,
    levels_off_at,
    mean_ci,
    paired_difference,
    quadratic_term,
    trend_test,
    verdict,
)


def test_mean_ci_matches_the_t_interval_formula():
    x = np.array([0.91, 0.93, 0.92, 0.95])
    iv = mean_ci(x)
    half = scipy.stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert iv.mean == pytest.approx(x.mean()) and iv.low == pytest.approx(x.mean() - half)
    assert iv.high == pytest.approx(x.mean() + half) and iv.n == 4
    assert mean_ci([0.5]).low == mean_ci([0.5]).high == 0.5 and math.isnan(mean_ci([]).mean)


def test_t_interval_covers_the_true_mean_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    cover = sum(iv.low <= 1.0 <= iv.high for iv in (mean_ci(rng.normal(1.0, 0.3, 3)) for _ in range(2000)))
    assert 0.935 <= cover / 2000 <= 0.965


@given(st.lists(st.floats(0, 1), min_size=2, max_size=8))
def test_paired_difference_of_a_shift_is_the_shift(a):
    a = np.array(a)
    pd = paired_difference(a, a + 0.01)
    assert pd.diff.mean == pytest.approx(0.01) and pd.diff.low == pytest.approx(0.01, abs=1e-9)
    assert pd.p_value == 0.0 or pd.p_value < 1e-6


def test_paired_difference_agrees_with_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.9, 0.01, 5), rng.normal(0.905, 0.01, 5)
    assert paired_difference(a, b).p_value == pytest.approx(scipy.stats.ttest_rel(b, a).pvalue)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1, 2], [1])


def _grid(effect_per_step: float, seeds: int, steps: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.normal(0, noise, (seeds, 1))  # seed effects: the reason to pair
    return 0.9 + block + effect_per_step * np.arange(steps) + rng.normal(0, noise / 4, (seeds, steps))


def test_trend_present_is_found_and_gives_holds():
    t = _grid(0.002, seeds=3, steps=7, noise=0.004, seed=2)
    tr = trend_test(t, "increasing")
    assert tr.p_value < 0.01 and tr.blocks == 3 and tr.treatments == 7
    assert trend_test(t, "decreasing").p_value > 0.9
    assert verdict(tr, paired_difference(t[:, 0], t[:, -1])) == HOLDS


def test_trend_absent_is_not_found_and_many_seeds_give_does_not_hold():
    rejections = sum(trend_test(_grid(0.0, 3, 7, 0.004, s), "increasing").p_value < 0.05 for s in range(200))
    assert rejections / 200 < 0.09  # about the nominal 5% false positive rate
    t = _grid(0.0, seeds=12, steps=7, noise=0.0004, seed=3)
    assert verdict(trend_test(t), paired_difference(t[:, 0], t[:, -1])) == FAILS


def test_too_few_seeds_for_a_small_effect_is_inconclusive():
    t = _grid(0.0003, seeds=2, steps=3, noise=0.01, seed=4)
    assert verdict(trend_test(t), paired_difference(t[:, 0], t[:, -1])) == INCONCLUSIVE
    assert math.isnan(trend_test(t[:1]).p_value)


def test_trend_test_rejects_incomplete_tables():
    with pytest.raises(ValueError, match="complete"):
        trend_test(np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="direction"):
        trend_test(np.ones((2, 3)), "up")


def test_levels_off_where_a_saturating_curve_flattens():
    grid = [0.001, 0.01, 0.1, 1, 10, 100, 1000]
    rng = np.random.default_rng(5)
    mean = np.array([0.80, 0.88, 0.93, 0.95, 0.95, 0.95, 0.95])
    t = mean + rng.normal(0, 0.002, (4, 1)) + rng.normal(0, 0.0005, (4, 7))
    assert levels_off_at(grid, t) == 1
    rising = 0.8 + 0.02 * np.arange(7) + rng.normal(0, 0.0005, (4, 7))
    assert levels_off_at(grid, rising) is None


def test_quadratic_term_finds_concavity_and_its_absence():
    rng = np.random.default_rng(6)
    x = np.repeat(np.linspace(3, 7, 7), 3)
    concave = 0.95 - 0.01 * (x - 7) ** 2 + rng.normal(0, 0.002, x.size)
    c = quadratic_term(x, concave)
    assert c.high < 0 and c.p_value < 0.001
    linear = 0.6 + 0.05 * x + rng.normal(0, 0.002, x.size)
    lin = quadratic_term(x, linear)
    assert lin.low <= 0 <= lin.high and lin.linear_p_value < 1e-6
    assert math.isnan(quadratic_term([1, 2, 3], [1, 2, 3]).coef)


# Fieller's ratio set. (id, mean den, mean num, SD den, SD num, correlation, pairs, share of unbounded sets):
# the gaps of a control study in pp; a denominator far from 0 (every set bounded), a small sample with a
# negative correlation, and a denominator near 0 (most sets unbounded)
FIELLER_SIMULATIONS = [
    ("clear-denominator", 20.0, 6.0, 6.0, 4.0, 0.8, 10, (0.0, 0.0)),
    ("negative-correlation", 30.0, -3.0, 8.0, 3.0, -0.5, 5, (0.0, 0.2)),
    ("near-zero-denominator", 1.0, 6.0, 6.0, 4.0, 0.8, 10, (0.5, 1.0)),
]


@pytest.mark.parametrize(
    "mu_den, mu_num, sd_den, sd_num, corr, n, unbounded",
    [c[1:] for c in FIELLER_SIMULATIONS],
    ids=[c[0] for c in FIELLER_SIMULATIONS],
)
def test_fieller_set_covers_the_true_ratio_95_percent_of_the_time(mu_den, mu_num, sd_den, sd_num, corr, n, unbounded):
    """Bivariate normal pairs: coverage of the true ratio over 1000 draws within a binomial tolerance of 95%.

    Ignoring the paired covariance would over-cover (about 99.7% in the first case) and fail here.
    """
    rng = np.random.default_rng(21)
    cov = [[sd_num**2, corr * sd_num * sd_den], [corr * sd_num * sd_den, sd_den**2]]
    draws, hits, open_sets = 1000, 0, 0
    for _ in range(draws):
        z = rng.multivariate_normal([mu_num, mu_den], cov, size=n)
        r = fieller_ratio(z[:, 0], z[:, 1])
        open_sets += not r.bounded
        hits += r.contains(mu_num / mu_den)
    ci = scipy.stats.binomtest(hits, draws).proportion_ci(confidence_level=0.999)
    assert ci.low <= 0.95 <= ci.high, hits / draws
    assert unbounded[0] <= open_sets / draws <= unbounded[1], open_sets / draws


def test_fieller_bounds_are_where_the_paired_t_test_of_num_minus_r_den_turns_significant():
    rng = np.random.default_rng(3)
    den = rng.normal(20, 5, 8)
    num = 0.4 * den + rng.normal(0, 2, 8)
    r = fieller_ratio(num, den)
    assert r.kind == "interval" and r.low < r.estimate < r.high and r.n == 8
    assert r.estimate == pytest.approx(num.mean() / den.mean())
    for bound in (r.low, r.high):
        assert scipy.stats.ttest_1samp(num - bound * den, 0).pvalue == pytest.approx(0.05, abs=1e-9)
    for inside in (r.estimate, 0.99 * r.low + 0.01 * r.high):
        assert r.contains(inside) and scipy.stats.ttest_1samp(num - inside * den, 0).pvalue > 0.05
    assert not r.contains(r.low - 0.01) and not r.contains(r.high + 0.01)


def test_fieller_near_zero_denominator_gives_the_complement_of_an_interval():
    den = np.array([1.0, -0.5, 2.0, -1.0, 0.8])  # mean 0.26: not distinguishable from 0
    num = np.array([5.1, 4.9, 5.0, 5.2, 4.8])  # clearly 5
    r = fieller_ratio(num, den)
    assert r.kind == "complement" and not r.bounded and r.low < r.high
    assert r.contains(r.estimate) and r.contains(1e9) and r.contains(-1e9) and not r.contains((r.low + r.high) / 2)
    for bound in (r.low, r.high):
        assert scipy.stats.ttest_1samp(num - bound * den, 0).pvalue == pytest.approx(0.05, abs=1e-9)
    d = r.to_dict()
    assert d["kind"] == "complement" and d["low"] == r.low and d["high"] == r.high


def test_fieller_with_both_means_near_zero_is_the_whole_line():
    den = np.array([1.0, -0.5, 2.0, -1.0, 0.8])
    num = np.array([0.3, -1.0, 1.5, -0.2, 0.1])
    r = fieller_ratio(num, den)
    assert r.kind == "all" and r.contains(1e12) and r.contains(-1e12) and r.contains(0.0)
    assert r.to_dict()["low"] is None and r.to_dict()["high"] is None


def test_ratio_set_affine_maps_every_kind():
    one_minus = {"scale": -1.0, "shift": 1.0}
    iv = RatioSet(0.3, "interval", 0.1, 0.5, 10, 0.95).affine(**one_minus)
    assert (iv.kind, iv.estimate, iv.low, iv.high) == ("interval", 0.7, 0.5, 0.9)
    comp = RatioSet(5.0, "complement", -2.0, 3.0, 10, 0.95).affine(**one_minus)
    assert (comp.low, comp.high) == (-2.0, 3.0) and comp.contains(-4.0) and not comp.contains(0.0)
    ray = RatioSet(1.0, "ray", 0.5, math.inf, 10, 0.95).affine(**one_minus)
    assert ray.low == -math.inf and ray.high == 0.5 and ray.contains(-100.0) and not ray.contains(0.6)
    every = RatioSet(1.0, "all", -math.inf, math.inf, 10, 0.95).affine(**one_minus)
    assert every.kind == "all" and every.low == -math.inf and every.high == math.inf
    with pytest.raises(ValueError, match="non-zero scale"):
        iv.affine(0.0, 1.0)


@pytest.mark.parametrize(
    "num, den, match",
    [
        ([1.0, 2.0], [1.0], "equal length, got 2 and 1"),
        ([1.0], [1.0], "at least 2 pairs"),
        ([1.0, math.nan], [1.0, 2.0], "non-finite value; drop the pair"),
    ],
    ids=["unpaired", "one-pair", "nan"],
)
def test_fieller_rejects_bad_input(num, den, match):
    with pytest.raises(ValueError, match=match):
        fieller_ratio(num, den)
