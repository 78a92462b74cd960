"""Statistics for the reproduction's verdicts: confidence intervals, paired differences, ordered trends.

Every function takes plain arrays of accuracies and returns plain numbers; the tests check each
on synthetic data with a known answer, where the effect exists and where it does not.

* :func:`mean_ci`: mean and two-sided t confidence interval (scipy.stats.t).
* :func:`paired_difference`: the mean of paired differences ``b - a`` over seeds, its t interval
  and the paired t-test p-value (scipy.stats.ttest_rel); seeds are the pairs (common random
  numbers: one train seed gives every map the same initial table and batch order).
* :func:`trend_test`: Page's L test for an ordered trend across treatments with seeds as blocks
  (scipy.stats.page_trend_test), one-sided in the direction asked for.
* :func:`levels_off_at`: the smallest grid value past which the mean changes less than the
  confidence interval of that change.
* :func:`quadratic_term`: the curvature of accuracy against a covariate (OLS with a quadratic
  term; t test on its coefficient with HC3 standard errors, statsmodels).
* :func:`verdict`: holds / does not hold / inconclusive from the paired difference between the
  grid's ends (its interval above 0 and not inside +-0.5 pp; equivalence within 0.5 pp, or a
  significant reversal).

These are the exploratory grids' statistics (3 seeds: a t interval rests on normality); the
confirmatory design's exact tests are in :mod:`analysis.exact` and :mod:`analysis.confirm`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

__all__ = [
    "Interval",
    "PairedDifference",
    "Trend",
    "Curvature",
    "mean_ci",
    "paired_difference",
    "trend_test",
    "levels_off_at",
    "quadratic_term",
    "verdict",
    "HOLDS",
    "FAILS",
    "INCONCLUSIVE",
    "ALPHA",
    "MARGIN",
    "EQUIVALENCE_MARGIN",
]

ALPHA = 0.05
"""Significance level of every test, and 1 - confidence of every interval (95%)."""
MARGIN = 0.001
"""Smallest gap (accuracy, 0.1 percentage points) that the optimizer controls (:mod:`analysis.controls`) treat
as a gap whose remaining share is worth computing."""
EQUIVALENCE_MARGIN = 0.005
"""Equivalence margin of a "does not hold" verdict (accuracy, 0.5 percentage points): the interval of the
end-to-end difference must lie inside (-margin, +margin). Above the test-set noise of one run (binomial SD of a
10,000-image test accuracy: about 0.2 pp on MNIST, 0.35 pp on Fashion-MNIST); the confirmatory design uses the same."""
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval, over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """``mean(b - a)`` over pairs, its confidence interval, and the two-sided paired t-test p-value."""

    diff: Interval
    p_value: float

    def to_dict(self) -> dict:
        return {"diff": self.diff.to_dict(), "p_value": self.p_value}


@dataclass(frozen=True)
class Trend:
    """Page's L test for an ordered trend: statistic, one-sided p-value, direction tested, blocks, treatments."""

    statistic: float
    p_value: float
    direction: str
    blocks: int
    treatments: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Curvature:
    """Quadratic coefficient of ``y ~ a + b x + c x^2`` with its confidence interval and two-sided p-value."""

    coef: float
    low: float
    high: float
    p_value: float
    linear_coef: float
    linear_p_value: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def mean_ci(values, level: float = 1 - ALPHA) -> Interval:
    """Mean and two-sided Student-t confidence interval.

    Parameters
    ----------
    values : array_like of float, shape (n,)
    level : float
        Confidence level (default 0.95).

    Returns
    -------
    Interval
        With ``low = high = mean`` for a single value (no spread to estimate) and NaNs for none.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n == 1:
        return Interval(m, m, m, 1)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n)


def paired_difference(a, b, level: float = 1 - ALPHA) -> PairedDifference:
    """Mean of ``b - a`` over pairs with its t interval and the paired t-test (scipy.stats.ttest_rel).

    Parameters
    ----------
    a, b : array_like of float, shape (n,)
        Paired values (the same train seed at two grid points).

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values must have equal lengths, got {a.size} and {b.size}")
    d = b - a
    ci = mean_ci(d, level)
    if d.size < 2:
        p = math.nan
    elif np.ptp(d) <= 1e-12 * max(1.0, abs(float(d.mean()))):  # constant differences: t is undefined
        p = 1.0 if abs(float(d.mean())) <= 1e-12 else 0.0
    else:
        p = float(scipy.stats.ttest_rel(b, a).pvalue)
    return PairedDifference(ci, p)


def trend_test(table, direction: str = "increasing") -> Trend:
    """Page's L test for an ordered trend across columns, rows as blocks (seeds).

    Parameters
    ----------
    table : array_like, shape (blocks, treatments)
        ``table[s, j]``: accuracy of seed ``s`` at the ``j``-th grid value, columns in the order
        of the hypothesised trend's variable (e.g. increasing alpha).
    direction : {"increasing", "decreasing"}
        The alternative: accuracy rises (or falls) along the columns.

    Returns
    -------
    Trend
        One-sided p-value for ``direction`` (scipy.stats.page_trend_test; exact for small
        tables). NaN p-value when there are fewer than 2 blocks or 3 treatments.

    Raises
    ------
    ValueError
        On an unknown direction or a table with missing values.
    """
    if direction not in ("increasing", "decreasing"):
        raise ValueError(f"direction must be 'increasing' or 'decreasing', got {direction!r}")
    t = np.asarray(table, np.float64)
    if t.ndim != 2 or np.isnan(t).any():
        raise ValueError(
            f"trend_test needs a complete (blocks, treatments) table, got shape {t.shape} "
            f"with {int(np.isnan(t).sum()) if t.ndim == 2 else '?'} missing values"
        )
    blocks, treatments = t.shape
    if blocks < 2 or treatments < 3:
        return Trend(math.nan, math.nan, direction, blocks, treatments)
    data = t if direction == "increasing" else t[:, ::-1]
    res = scipy.stats.page_trend_test(data, method="exact" if blocks * treatments <= 64 else "asymptotic")
    return Trend(float(res.statistic), float(res.pvalue), direction, blocks, treatments)


def levels_off_at(grid, table, level: float = 1 - ALPHA) -> float | None:
    """The smallest grid value past which the mean changes less than its confidence interval.

    For each ``j`` the paired difference between the last column and column ``j`` is computed;
    the answer is the first ``grid[j]`` whose difference interval contains 0 and from which on
    every later column's does too. None if even the last-but-one column differs from the last.

    Parameters
    ----------
    grid : sequence of float, length treatments
    table : array_like, shape (blocks, treatments)
    """
    t = np.asarray(table, np.float64)
    last = t[:, -1]
    flat = [paired_difference(t[:, j], last, level).diff for j in range(t.shape[1])]
    same = [iv.low <= 0 <= iv.high for iv in flat]
    for j in range(len(grid)):
        if all(same[j:]):
            return float(grid[j]) if j < len(grid) - 1 else None
    return None


def quadratic_term(x, y, level: float = 1 - ALPHA) -> Curvature:
    """Curvature of ``y`` against ``x``: OLS fit of ``y = a + b x + c x^2``, t test on ``c`` (and ``b``)
    with heteroscedasticity-robust (HC3, MacKinnon & White 1985) standard errors (statsmodels).

    ``x`` is centred and scaled to unit standard deviation first (the coefficients are per squared
    standard deviation of ``x``); a concave relation has ``c < 0``.

    Parameters
    ----------
    x, y : array_like of float, shape (n,), n >= 4
    """
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    n = x.size
    if n < 4 or np.std(x) == 0:
        return Curvature(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, n)
    import statsmodels.api as sm

    z = (x - x.mean()) / x.std()
    X = np.column_stack([np.ones(n), z, z * z])
    fit = sm.OLS(y, X).fit(cov_type="HC3", use_t=True)  # heteroscedasticity-robust: cells differ in spread
    low, high = fit.conf_int(alpha=1 - level)[2]
    return Curvature(
        float(fit.params[2]),
        float(low),
        float(high),
        float(fit.pvalues[2]),
        float(fit.params[1]),
        float(fit.pvalues[1]),
        n,
    )


def verdict(trend: Trend, ends: PairedDifference, *, margin: float = EQUIVALENCE_MARGIN, alpha: float = ALPHA) -> str:
    """Holds, does not hold, or inconclusive, for a claimed ordered effect (exploratory grids).

    ``ends`` is the paired difference (claimed-better end minus the other end), so the claim
    predicts a positive difference. ``trend`` (Page's L) is reported beside the verdict but does not
    decide it: a plateau at the top of the grid (alpha = 1 beating alpha = 1000 by 0.1 pp) made it
    fail for effects of +77 pp.

    * does not hold: the ends' interval lies inside ``(-margin, +margin)`` (equivalence: no effect of
      interest, even if a smaller one is significant; Lakens et al. 2018), or the difference is
      significant with the opposite sign;
    * holds: otherwise, when the ends' interval lies above 0;
    * inconclusive: neither (too few seeds to tell).
    """
    del trend  # reported by the caller, not part of the rule
    d = ends.diff
    if d.n < 2:
        return INCONCLUSIVE
    if (-margin < d.low and d.high < margin) or (d.high < 0 and ends.p_value < alpha):
        return FAILS
    return HOLDS if d.low > 0 else INCONCLUSIVE
