"""Tests of analysis.exact: each statistic against a reference (scipy / statsmodels called directly, or a
brute force written here), on synthetic data where the effect exists, where it does not, and where the
seeds are too few to tell. Every synthetic draw comes from ``numpy.random.default_rng`` with a fixed seed.
"""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from analysis.exact import (
    EXACT_MAX_N,
    _SignFlipNull,
    clopper_pearson,
    holm,
    holm_reject,
    mean_interval,
    quadratic_curvature,
    sign_flip_interval,
    sign_flip_test,
    tost,
    variance_components,
    wilcoxon,
)

ALTS = ("greater", "less", "two-sided")


def scipy_sign_flip(d, alternative, null=0.0) -> float:
    x = np.asarray(d, float) - null
    res = scipy.stats.permutation_test(
        (x,), np.mean, permutation_type="samples", alternative=alternative, n_resamples=np.inf
    )
    return float(res.pvalue)


def brute_force_sign_flip(d, alternative, null=0.0) -> float:
    """All 2^n sign patterns, one at a time."""
    x = np.asarray(d, float) - null
    obs = x.mean()
    stats = np.array([np.mean(np.array(s) * x) for s in itertools.product((1.0, -1.0), repeat=x.size)])
    tol = 1e-12 * np.abs(x).sum()
    greater = np.mean(stats >= obs - tol)
    less = np.mean(stats <= obs + tol)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


# ------------------------------------------------------------------------------------------ sign_flip_test


@pytest.mark.parametrize("alternative", ALTS)
@pytest.mark.parametrize("null", [0.0, 0.3, -0.7])
def test_sign_flip_p_is_the_brute_force_enumeration_and_scipys(alternative, null):
    d = np.random.default_rng(1).normal(0.4, 1.0, 6)
    res = sign_flip_test(d, alternative, null=null)
    assert res.exact and res.n == 6 and res.alternative == alternative and res.null == null
    assert res.statistic == pytest.approx(d.mean())
    assert res.p == pytest.approx(brute_force_sign_flip(d, alternative, null), abs=1e-15)
    assert res.p == scipy_sign_flip(d, alternative, null)


@pytest.mark.parametrize("n", range(2, 11))
def test_smallest_one_sided_p_is_two_to_the_minus_n(n):
    d = np.random.default_rng(n).uniform(0.1, 2.0, n)  # every seed favours the effect
    assert sign_flip_test(d, "greater").p == 2.0**-n
    assert sign_flip_test(d, "less").p == 1.0
    assert sign_flip_test(d, "two-sided").p == min(1.0, 2.0 ** (1 - n))


def test_above_twenty_seeds_the_test_is_monte_carlo_with_a_fixed_seed():
    d = np.random.default_rng(2).normal(0.3, 1.0, EXACT_MAX_N + 5)
    a, b, c = sign_flip_test(d), sign_flip_test(d), sign_flip_test(d, seed=1)
    assert not a.exact and a.p == b.p and a.p != c.p
    assert abs(a.p - c.p) < 0.01  # 100_000 resamples: Monte-Carlo SE of p below 0.002
    assert a.p == pytest.approx(scipy.stats.ttest_1samp(d, 0.0, alternative="greater").pvalue, abs=0.03)


def test_a_clear_effect_is_found_and_wilcoxon_agrees_in_direction():
    d = np.random.default_rng(3).normal(1.0, 0.5, 10)
    res = sign_flip_test(d, "greater")
    assert res.p < 0.05 and res.statistic > 0
    w = wilcoxon(d, "greater")
    assert w.method == "exact" and w.p < 0.05
    assert sign_flip_test(d, "less").p > 0.5 and wilcoxon(d, "less").p > 0.5


def _rejection_rate(draw, n_draws=400, n=10) -> float:
    rng = np.random.default_rng(4)
    return float(np.mean([sign_flip_test(draw(rng, n), "greater").p < 0.05 for _ in range(n_draws)]))


@pytest.mark.parametrize(
    "draw",
    [
        pytest.param(lambda rng, n: rng.normal(0.0, 1.0, n), id="normal"),
        pytest.param(lambda rng, n: rng.choice([-5.0, 5.0], n) + rng.normal(0.0, 1.0, n), id="bimodal"),
    ],
)
def test_without_an_effect_the_false_positive_rate_is_alpha(draw):
    # exact test, n = 10: rejects at p <= 51/1024, so its size is 0.0498 for continuous data
    assert 0.02 <= _rejection_rate(draw) <= 0.08


def test_an_effect_too_small_for_the_seeds_is_inconclusive():
    d = np.random.default_rng(5).normal(0.1, 0.5, 5)
    assert sign_flip_test(d, "greater").p >= 0.05
    eq = tost(d, margin=0.25)
    assert not eq.equivalent
    iv = sign_flip_interval(d, 0.90)  # 5 seeds reach 90% (2/32 <= 0.1): the interval holds 0 and the margin
    assert iv.attainable and iv.low < 0 < 0.25 < iv.high


# ------------------------------------------------------------------------------------------ the fast twin


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
def test_the_fast_enumeration_gives_scipys_p_values(n):
    rng = np.random.default_rng(10 + n)
    for _ in range(3):
        d = rng.normal(0.3, 1.0, n)
        null = _SignFlipNull(d, seed=0)
        # shifts away from mean(d), where scipy's tolerance (relative to the observed ~0) is lost in rounding
        for delta in (0.0, float(rng.normal()), float(d.min()), float(d.max()), float(np.median(d))):
            for alternative in ALTS:
                assert null.pvalue(delta, alternative) == scipy_sign_flip(d, alternative, delta), (d, delta)


@pytest.mark.slow
def test_the_fast_enumeration_gives_scipys_p_values_at_twenty_seeds():
    d = np.random.default_rng(20).normal(0.3, 1.0, 20)
    null = _SignFlipNull(d, seed=0)
    for delta, alternative in ((0.0, "greater"), (0.8, "two-sided")):
        assert null.pvalue(delta, alternative) == scipy_sign_flip(d, alternative, delta)


def test_ties_in_the_data_count_as_scipy_counts_them():
    d = np.array([0.0, 0.0, 0.5, 0.5, 1.0, -0.5, 0.25])
    null = _SignFlipNull(d, seed=0)
    for delta in (0.0, 0.5, -0.25, 0.25):
        for alternative in ALTS:
            assert null.pvalue(delta, alternative) == scipy_sign_flip(d, alternative, delta)


# ------------------------------------------------------------------------------------------ sign_flip_interval


def hartigan_ends(d, level) -> tuple[float, float]:
    """Ends of the inverted sign-flip interval as order statistics of the 2^n - 1 subset means (Hartigan 1969).

    The k-th smallest and k-th largest subset mean, k = floor((1 - level) 2^(n-1)), from a bit matrix.
    """
    n = d.size
    means = []
    for start in range(1, 2**n, 2**15):
        idx = np.arange(start, min(start + 2**15, 2**n))
        bits = ((idx[:, None] >> np.arange(n)) & 1).astype(float)
        means.append(bits @ d / bits.sum(axis=1))
    m = np.concatenate(means)
    k = math.floor((1 - level) * 2 ** (n - 1))
    return float(np.partition(m, k - 1)[k - 1]), float(-np.partition(-m, k - 1)[k - 1])


@pytest.mark.parametrize("n", [6, 10, 20])
def test_the_interval_ends_are_the_kth_subset_means(n):
    d = np.random.default_rng(30 + n).normal(0.5, 1.0, n)
    t = time.perf_counter()
    iv = sign_flip_interval(d)
    seconds = time.perf_counter() - t
    low, high = hartigan_ends(d, 0.95)
    tol = 1e-12 * (np.abs(d).max() + 1)
    assert iv.attainable and iv.exact and iv.method == "sign-flip inversion" and iv.n == n
    assert iv.low == pytest.approx(low, abs=tol) and iv.high == pytest.approx(high, abs=tol)
    assert seconds < 5.0  # about 0.4 s at n = 20 on one core; generous for a loaded machine


@pytest.mark.parametrize("n", [6, 8, 10])
def test_the_interval_ends_are_where_the_test_turns(n):
    d = np.random.default_rng(40 + n).normal(0.5, 1.0, n)
    iv = sign_flip_interval(d)
    null = _SignFlipNull(d, seed=0)
    step = 1e-12 * (np.abs(d).max() + 1)
    for end, outward in ((iv.low, -1.0), (iv.high, 1.0)):
        # exact to the float for the p-values the interval inverts (but never past the data's range) ...
        assert null.pvalue(end, "two-sided") > 0.05
        if end not in (d.min(), d.max()):
            assert null.pvalue(float(np.nextafter(end, outward * np.inf)), "two-sided") <= 0.05
        # ... and to within rounding for scipy's, which sums the flipped values in another order
        assert scipy_sign_flip(d, "two-sided", end - outward * step) > 0.05
        assert scipy_sign_flip(d, "two-sided", end + outward * step) <= 0.05


def test_the_interval_covers_the_true_mean_at_its_level():
    rng = np.random.default_rng(50)
    hits = [(iv.low <= 2.0 <= iv.high) for iv in (sign_flip_interval(rng.normal(2.0, 1.0, 10)) for _ in range(400))]
    assert 0.93 <= np.mean(hits) <= 0.99


# quarter-point values: subset sums are exact in binary, so ties (zeros, equal values) are exact too
quarter_samples = st.lists(st.integers(-40, 40).map(lambda k: k / 4), min_size=2, max_size=10)


@settings(max_examples=150)
@given(quarter_samples)
def test_the_interval_excludes_zero_iff_the_test_rejects(values):
    d = np.array(values)
    iv = sign_flip_interval(d)
    p = sign_flip_test(d, "two-sided").p
    assert d.min() <= iv.low <= iv.estimate <= iv.high <= d.max()
    if iv.attainable:
        assert (not iv.low <= 0.0 <= iv.high) == (p < 0.05)
    else:  # fewer than 6 seeds: the test cannot reject at 5%, the interval is the data's range
        assert d.size < 6 and p >= 2.0 ** (1 - d.size) > 0.05
        assert (iv.low, iv.high) == (d.min(), d.max())


@settings(max_examples=60)
@given(
    st.lists(st.floats(-100.0, 100.0, allow_nan=False), min_size=1, max_size=12),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_the_interval_lies_within_the_datas_range(values, level):
    d = np.array(values)
    iv = sign_flip_interval(d, level)
    assert d.min() <= iv.low <= iv.high <= d.max()
    assert iv.attainable == (2.0 ** (1 - d.size) <= 1 - level)


def test_too_few_seeds_give_the_whole_range_and_say_so():
    iv = sign_flip_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # 2/32 > 0.05
    assert not iv.attainable and (iv.low, iv.high) == (1.0, 5.0) and iv.estimate == 3.0
    one = sign_flip_interval([97.5])
    assert not one.attainable and (one.low, one.high) == (97.5, 97.5)
    same = sign_flip_interval([0.2] * 8)
    assert same.attainable and (same.low, same.high) == (0.2, 0.2)


def test_accuracy_intervals_stay_on_the_percent_scale():
    acc = np.array([99.9, 100.0, 100.0, 99.8, 100.0, 99.95, 100.0, 99.9])
    iv = sign_flip_interval(acc)
    assert iv.high <= 100.0 and iv.low >= 99.8


def test_above_twenty_seeds_the_interval_is_monte_carlo_and_close_to_t():
    d = np.random.default_rng(60).normal(0.5, 1.0, 30)
    iv = sign_flip_interval(d)
    assert not iv.exact and iv.attainable and iv == sign_flip_interval(d)
    t = scipy.stats.t.interval(0.95, d.size - 1, d.mean(), scipy.stats.sem(d))
    assert iv.low == pytest.approx(t[0], abs=0.1) and iv.high == pytest.approx(t[1], abs=0.1)


# ------------------------------------------------------------------------------------------ tost


def test_a_true_zero_effect_with_many_seeds_is_equivalent():
    d = np.random.default_rng(70).normal(0.0, 0.1, 16)
    eq = tost(d, margin=0.3)
    assert eq.equivalent and eq.p == max(eq.p_lower, eq.p_upper) < 0.05 and eq.n == 16
    assert eq.p_lower == sign_flip_test(d, "greater", null=-0.3).p
    assert eq.p_upper == sign_flip_test(d, "less", null=0.3).p


def test_an_effect_at_the_margin_is_rarely_declared_equivalent():
    rng = np.random.default_rng(71)
    rate = np.mean([tost(rng.normal(0.3, 0.2, 10), margin=0.3).equivalent for _ in range(200)])
    assert rate <= 0.08  # the size of TOST at the margin is at most alpha


@pytest.mark.parametrize("mean, expected", [(0.0, True), (0.45, False)])
def test_tost_agrees_with_statsmodels_ttost_paired_on_normal_data(mean, expected):
    d = np.random.default_rng(72).normal(mean, 0.5, 40)
    p_t, *_ = ttost_paired(d, np.zeros_like(d), -0.3, 0.3)
    eq = tost(d, margin=0.3)
    assert (p_t < 0.05) == eq.equivalent == expected


# ------------------------------------------------------------------------------------------ wrappers


def test_wilcoxon_wraps_scipy_and_names_its_method():
    rng = np.random.default_rng(80)
    d = rng.normal(0.5, 1.0, 12)
    w = wilcoxon(d, "two-sided")
    ref = scipy.stats.wilcoxon(d, alternative="two-sided", method="exact")
    assert (w.statistic, w.p, w.n, w.method) == (float(ref.statistic), float(ref.pvalue), 12, "exact")
    assert wilcoxon([0.0, 0.5, 1.0, -0.25, 0.75], "greater").method == "permutation"  # a zero
    ties = np.round(rng.normal(0.5, 1.0, 20), 1)
    assert wilcoxon(ties).method == "asymptotic"
    assert wilcoxon(ties).p == float(scipy.stats.wilcoxon(ties, alternative="greater").pvalue)
    assert wilcoxon([0.0, 0.0, 0.0]).p == 1.0


def test_clopper_pearson_is_scipys_exact_interval():
    pr = clopper_pearson(3, 10, 0.9)
    ci = scipy.stats.binomtest(3, 10).proportion_ci(0.9, method="exact")
    assert (pr.k, pr.n, pr.rate, pr.low, pr.high, pr.level) == (3, 10, 0.3, ci.low, ci.high, 0.9)
    zero = clopper_pearson(0, 10)
    assert zero.low == 0.0 and zero.high == pytest.approx(1 - 0.025**0.1)
    assert clopper_pearson(10, 10).high == 1.0


def brute_force_holm(p):
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


@pytest.mark.parametrize("seed", range(5))
def test_holm_agrees_with_statsmodels_and_brute_force(seed):
    p = np.random.default_rng(90 + seed).uniform(0, 0.1, 7) ** (1 + seed % 3)
    adj = holm(p)
    assert all(type(v) is float for v in adj)
    assert adj == pytest.approx(list(brute_force_holm(p)), abs=1e-15)
    assert adj == list(multipletests(p, 0.05, method="holm")[1])
    assert holm_reject(p, 0.05) == [a <= 0.05 for a in adj] == list(multipletests(p, 0.05, method="holm")[0])


def test_holm_keeps_the_input_order():
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm_reject([0.04, 0.01, 0.03]) == [False, True, False]


def test_mean_interval_is_scipys_percentile_bootstrap_within_the_range():
    x = np.random.default_rng(100).normal(98.0, 1.5, 8).clip(None, 100.0)
    iv = mean_interval(x, seed=3)
    ref = scipy.stats.bootstrap(
        (x,), np.mean, method="percentile", n_resamples=9999, random_state=np.random.default_rng(3)
    ).confidence_interval
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert x.min() <= iv.low < iv.estimate < iv.high <= x.max() and iv.method == "percentile bootstrap"
    assert iv == mean_interval(x, seed=3) and iv != mean_interval(x, seed=4)
    near_100 = mean_interval([100.0, 100.0, 99.99, 100.0], n_resamples=999)
    assert near_100.high <= 100.0
    assert mean_interval([97.0, 97.0, 97.0]) == mean_interval([97.0, 97.0, 97.0]) and (
        mean_interval([97.0, 97.0, 97.0]).low,
        mean_interval([97.0, 97.0, 97.0]).high,
    ) == (97.0, 97.0)
    single = mean_interval([97.0])
    assert (single.low, single.high, single.attainable) == (97.0, 97.0, False)


def test_quadratic_curvature_recovers_the_coefficient():
    x = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    assert quadratic_curvature(x, 1.0 + 2.0 * x - 0.75 * x**2) == pytest.approx(-0.75)
    noisy = 1.0 + 2.0 * x - 0.75 * x**2 + np.random.default_rng(110).normal(0, 0.01, x.size)
    assert quadratic_curvature(x, noisy) == pytest.approx(-0.75, abs=0.02)
    assert quadratic_curvature([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------ variance components


def brute_force_mean_squares(t):
    a, b = t.shape
    g, r, c = t.mean(), t.mean(axis=1), t.mean(axis=0)
    resid = t - r[:, None] - c[None, :] + g
    return (
        b * ((r - g) ** 2).sum() / (a - 1),
        a * ((c - g) ** 2).sum() / (b - 1),
        (resid**2).sum() / ((a - 1) * (b - 1)),
    )


def test_a_large_hash_effect_and_no_train_effect():
    rng = np.random.default_rng(120)
    t = rng.normal(0.0, 2.0, (6, 1)) + rng.normal(0.0, 0.2, (6, 5))
    vc = variance_components(t)
    ms_hash, ms_train, ms_resid = brute_force_mean_squares(t)
    assert vc.var_resid == pytest.approx(ms_resid)
    assert vc.var_hash == pytest.approx((ms_hash - ms_resid) / 5)
    assert vc.f_hash == pytest.approx(ms_hash / ms_resid) and vc.f_train == pytest.approx(ms_train / ms_resid)
    assert vc.p_hash == pytest.approx(scipy.stats.f.sf(ms_hash / ms_resid, 5, 20))
    assert vc.share_hash > 0.9 and vc.p_hash < 1e-6 and vc.p_train > 0.05 and (vc.a, vc.b) == (6, 5)
    assert vc.share_hash + vc.share_train + vc.share_resid == pytest.approx(1.0)


def test_a_large_train_effect_and_no_hash_effect():
    rng = np.random.default_rng(121)
    t = rng.normal(0.0, 2.0, (1, 6)) + rng.normal(0.0, 0.2, (5, 6))
    vc = variance_components(t)
    assert vc.share_train > 0.9 and vc.p_train < 1e-6 and vc.p_hash > 0.05


def test_pure_noise_gives_hash_effects_at_the_rate_alpha():
    rng = np.random.default_rng(122)
    rate = np.mean([variance_components(rng.normal(0.0, 1.0, (4, 5))).p_hash < 0.05 for _ in range(250)])
    assert 0.02 <= rate <= 0.09


def test_a_constant_table_has_no_shares():
    vc = variance_components(np.full((3, 4), 97.0))
    assert vc.var_hash == vc.var_train == 0.0 and math.isnan(vc.share_hash)


# ------------------------------------------------------------------------------------------ inputs and outputs


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sign_flip_test([]), "at least 2"),
        (lambda: sign_flip_test([1.0]), "at least 2"),
        (lambda: sign_flip_test([1.0, float("nan"), 2.0]), r"NaN.*position\(s\) \[1\].*drop"),
        (lambda: sign_flip_test([[1.0, 2.0]]), "1-d"),
        (lambda: sign_flip_test([1.0, 2.0], "bigger"), "alternative must be one of"),
        (lambda: sign_flip_test([1.0, 2.0], null=float("inf")), "null must be a finite"),
        (lambda: sign_flip_test([1.0, 2.0], seed=-1), "seed"),
        (lambda: sign_flip_interval([]), "at least 1"),
        (lambda: sign_flip_interval([1.0, 2.0], level=95), r"strictly between 0 and 1.*0\.95"),
        (lambda: sign_flip_interval([1.0, 2.0], level=1.0), "strictly between 0 and 1"),
        (lambda: sign_flip_interval(["a", "b"]), "sequence of numbers"),
        (lambda: tost([1.0, 2.0], margin=0.0), "margin must be > 0"),
        (lambda: tost([1.0, 2.0], margin=-1.0), "margin must be > 0"),
        (lambda: tost([1.0, 2.0], margin=0.5, level=0.0), "strictly between 0 and 1"),
        (lambda: wilcoxon([1.0, 2.0], "two_sided"), "alternative must be one of"),
        (lambda: clopper_pearson(0, 0), "n must be at least 1"),
        (lambda: clopper_pearson(5, 3), r"k must lie in \[0, n\]"),
        (lambda: clopper_pearson(1.5, 3), "k must be an int"),
        (lambda: holm([]), "at least 1"),
        (lambda: holm([0.5, 1.5]), r"in \[0, 1\]"),
        (lambda: holm([0.5, float("nan")]), "NaN"),
        (lambda: holm_reject([0.5], alpha=5), "alpha must lie strictly between"),
        (lambda: mean_interval([1.0, 2.0], n_resamples=0), "n_resamples"),
        (lambda: mean_interval([1.0, np.inf]), "infinite"),
        (lambda: quadratic_curvature([1.0, 2.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]), "at least 3 distinct x"),
        (lambda: quadratic_curvature([1.0, 2.0, 3.0], [1.0, 2.0]), "equal lengths"),
        (lambda: variance_components([[1.0, 2.0, 3.0]]), "at least 2 rows"),
        (lambda: variance_components([1.0, 2.0, 3.0]), "2-d"),
        (lambda: variance_components([[1.0, np.nan], [2.0, 3.0]]), "missing"),
    ],
)
def test_bad_input_is_refused_with_a_message_that_names_it(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_results_are_json_ready():
    d = np.random.default_rng(130).normal(0.5, 1.0, 8)
    results = [
        sign_flip_test(d),
        sign_flip_interval(d),
        tost(d, 1.0),
        wilcoxon(d),
        clopper_pearson(np.int64(3), 10),
        mean_interval(d, n_resamples=99),
        variance_components(d.reshape(2, 4)),
        variance_components(np.full((2, 2), 1.0)),
    ]
    for r in results:
        out = r.to_dict()
        assert all(type(v) in (float, int, bool, str) for v in out.values()), out
        assert json.loads(json.dumps(out)).keys() == out.keys()
    with pytest.raises(AttributeError):
        results[0].p = 0.0  # type: ignore[misc]
