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
* :func:`fieller_ratio`: Fieller's (1954) confidence set for the ratio of two paired means, with
  the paired covariance; bounded, the complement of an interval, or the whole line, and said so
  (:class:`RatioSet`).

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
    "RatioSet",
    "mean_ci",
    "paired_difference",
    "trend_test",
    "levels_off_at",
    "quadratic_term",
    "verdict",
    "fieller_ratio",
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


RATIO_SET_KINDS = ("interval", "complement", "ray", "all", "empty")


@dataclass(frozen=True)
class RatioSet:
    """A confidence set for a ratio, as Fieller's method gives it (one of :data:`RATIO_SET_KINDS`).

    * ``"interval"``: ``[low, high]``, both finite;
    * ``"complement"``: ``(-inf, low] U [high, +inf)``, both finite, ``low < high``: the
      denominator is not distinguishable from 0 but the numerator is, so the ratio is known to be
      far from the values between;
    * ``"ray"``: ``[low, +inf)`` (``high`` is ``inf``) or ``(-inf, high]`` (``low`` is ``-inf``);
      only when the denominator's t statistic equals the quantile exactly;
    * ``"all"``: every real number (``low = -inf``, ``high = +inf``): neither mean is
      distinguishable from 0 in the needed sense, the data say nothing about the ratio;
    * ``"empty"``: no real ratio (a denominator that is exactly 0 without spread, over a
      non-zero numerator).

    Attributes
    ----------
    estimate : float
        ``mean(num) / mean(den)``; NaN when ``mean(den) == 0``.
    kind : str
    low, high : float
        The set's bounds in the sense of ``kind`` (``+-inf`` where it is unbounded; NaN for ``"empty"``).
    n : int
        Pairs.
    level : float
        Confidence level.
    """

    estimate: float
    kind: str
    low: float
    high: float
    n: int
    level: float

    @property
    def bounded(self) -> bool:
        """Whether the set is a finite interval."""
        return self.kind == "interval"

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the set."""
        if self.kind == "empty":
            return False
        if self.kind == "complement":
            return x <= self.low or x >= self.high
        return self.low <= x <= self.high

    def affine(self, scale: float, shift: float) -> RatioSet:
        """The set of ``shift + scale * r`` for ``r`` in this set (e.g. ``1 - r``: ``scale=-1, shift=1``).

        Raises
        ------
        ValueError
            If ``scale`` is 0 or not finite.
        """
        if not (math.isfinite(scale) and scale != 0 and math.isfinite(shift)):
            raise ValueError(f"affine needs a finite, non-zero scale and a finite shift, got {scale}, {shift}")
        lo, hi = shift + scale * self.low, shift + scale * self.high
        if scale < 0:
            lo, hi = hi, lo
        est = shift + scale * self.estimate
        return RatioSet(est, self.kind, lo, hi, self.n, self.level)

    def to_dict(self) -> dict:
        """JSON-safe: an infinite or NaN bound is written as None (``kind`` says what the set is)."""

        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "estimate": num(self.estimate),
            "kind": self.kind,
            "low": num(self.low),
            "high": num(self.high),
            "n": self.n,
            "level": self.level,
        }


def fieller_ratio(num, den, level: float = 1 - ALPHA) -> RatioSet:
    """Fieller's confidence set for ``mean(num) / mean(den)`` from paired values (Fieller 1954).

    With ``a = mean(num)``, ``b = mean(den)``, the sample covariance matrix ``S`` of the pairs
    (``ddof=1``) divided by ``n``, ``v11, v12, v22``, and ``t`` the two-sided ``level`` quantile of
    Student's t with ``n - 1`` degrees of freedom, the set is every ``r`` with

        (a - r b)^2 <= t^2 (v11 - 2 r v12 + r^2 v22),

    i.e. every ``r`` that a two-sided paired t-test of ``mean(num - r * den) = 0`` does not reject at
    ``1 - level``; so under bivariate normal pairs its coverage is exactly ``level`` whatever the true
    ratio, the denominator near 0 included (Fieller 1954; Franz 2007, "Ratios: a short guide to
    confidence limits and proper use", arXiv:0710.2024). Solving the quadratic
    ``A r^2 - 2 B r + C <= 0`` with ``A = b^2 - t^2 v22``, ``B = a b - t^2 v12``,
    ``C = a^2 - t^2 v11``: ``A > 0`` (the denominator is significantly non-zero) gives a bounded
    interval; ``A < 0`` gives the complement of an interval or, when the discriminant is negative,
    the whole line. These cases are reported as such (:class:`RatioSet`), never as a finite interval.

    Parameters
    ----------
    num, den : array_like of float, shape (n,), n >= 2
        Paired values (e.g. per train seed: an arm's α gap and the paper arm's, in any one unit).
    level : float
        Confidence level in (0, 1) (default 0.95).

    Returns
    -------
    RatioSet

    Raises
    ------
    ValueError
        If the lengths differ, fewer than 2 pairs are given, a value is not finite, or ``level``
        is not in (0, 1).
    """
    x, y = np.asarray(num, np.float64).ravel(), np.asarray(den, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"fieller_ratio needs paired values of equal length, got {x.size} and {y.size}")
    n = x.size
    if n < 2:
        raise ValueError(f"fieller_ratio needs at least 2 pairs to estimate their covariance, got {n}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("fieller_ratio got a non-finite value; drop the pair (e.g. a diverged run) first")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a, b = float(x.mean()), float(y.mean())
    cov = np.cov(np.vstack([x, y]), ddof=1) / n
    v11, v12, v22 = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    t2 = float(scipy.stats.t.ppf(0.5 + level / 2, n - 1)) ** 2
    A, B, C = b * b - t2 * v22, a * b - t2 * v12, a * a - t2 * v11
    est = a / b if b != 0 else math.nan
    inf = math.inf
    if A == 0:  # linear: -2 B r + C <= 0
        if B > 0:
            return RatioSet(est, "ray", C / (2 * B), inf, n, level)
        if B < 0:
            return RatioSet(est, "ray", -inf, C / (2 * B), n, level)
        if C <= 0:
            return RatioSet(est, "all", -inf, inf, n, level)
        return RatioSet(est, "empty", math.nan, math.nan, n, level)
    disc = B * B - A * C
    if A > 0:  # the estimate lies in the set, so disc >= 0 up to rounding
        root = math.sqrt(max(disc, 0.0))
        return RatioSet(est, "interval", (B - root) / A, (B + root) / A, n, level)
    if disc <= 0:
        return RatioSet(est, "all", -inf, inf, n, level)
    root = math.sqrt(disc)
    lo, hi = sorted(((B + root) / A, (B - root) / A))
    return RatioSet(est, "complement", lo, hi, n, level)
