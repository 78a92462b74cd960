"""Statistics of a pre-registered confirmatory design: exact paired tests, their intervals, equivalence.

The data are paired per-seed values: ``d[s]`` is, for train seed ``s``, the difference between two arms
(percentage points, pp, or fractions; every result is in the units of its input). Library code is used
wherever a library has the method; our own code only where none has it.

* :func:`sign_flip_test`: exact paired sign-flip permutation test of the mean (Fisher 1935; Pitman 1937),
  ``scipy.stats.permutation_test``; Monte Carlo with a fixed seed for ``n > 20``.
* :func:`sign_flip_interval`: the confidence interval of the mean obtained by inverting the two-sided
  sign-flip test (Hartigan 1969); our own vectorised enumeration of the sign patterns, whose p-values
  the tests check against ``scipy.stats.permutation_test``.
* :func:`tost`: equivalence within ``+-margin`` by two one-sided sign-flip tests (Schuirmann 1987).
* :func:`wilcoxon`: Wilcoxon signed-rank test, ``scipy.stats.wilcoxon``.
* :func:`clopper_pearson`: exact interval of a rate, ``scipy.stats.binomtest``.
* :func:`holm`, :func:`holm_reject`: Holm's step-down adjustment, ``statsmodels.stats.multitest``.
* :func:`mean_interval`: percentile bootstrap interval of a mean, ``scipy.stats.bootstrap``.
* :func:`quadratic_curvature`: the ``x^2`` coefficient of a least-squares quadratic,
  ``numpy.polynomial.polynomial.polyfit``.
* :func:`variance_components`: method-of-moments variance components of a crossed two-way layout
  without replication, from the two-way ANOVA of ``statsmodels``.

Conventions: every sample is a 1-d array-like of finite floats; an alternative is one of
``"greater"``, ``"less"``, ``"two-sided"``; a level is a confidence level strictly between 0 and 1.
Bad input raises ``ValueError`` naming the problem and the fix. Nothing draws from a global random
state: resampling takes an explicit ``seed``. Results are frozen dataclasses whose ``to_dict()`` is
JSON-ready (plain floats, ints, bools and strings; NaN where a quantity is undefined).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.stats

__all__ = [
    "ALTERNATIVES",
    "EXACT_MAX_N",
    "MC_RESAMPLES",
    "PermutationTest",
    "Interval",
    "Equivalence",
    "RankTest",
    "Proportion",
    "VarianceComponents",
    "sign_flip_test",
    "sign_flip_interval",
    "tost",
    "wilcoxon",
    "clopper_pearson",
    "holm",
    "holm_reject",
    "mean_interval",
    "quadratic_curvature",
    "variance_components",
]

ALTERNATIVES = ("greater", "less", "two-sided")
"""The alternatives of the one- and two-sided tests."""
EXACT_MAX_N = 20
"""Largest sample for which the sign-flip test and interval enumerate all ``2^n`` sign patterns."""
MC_RESAMPLES = 100_000
"""Random sign patterns of the Monte-Carlo sign-flip test and interval for ``n > EXACT_MAX_N``."""
_BATCH = 2**15
"""Sign patterns per batch (bounds memory: scipy's exact test at n = 20 stays near 170 MB)."""
SIGN_FLIP_METHOD = "sign-flip inversion"
BOOTSTRAP_METHOD = "percentile bootstrap"


class _Result:
    """``to_dict``: the dataclass's fields as plain JSON-ready Python values."""

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


def _plain(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v)
    return v


@dataclass(frozen=True)
class PermutationTest(_Result):
    """A sign-flip permutation test of the mean of ``d - null``.

    Attributes
    ----------
    statistic : float
        ``mean(d)``, in the units of ``d``.
    p : float
        The p-value for ``alternative``.
    n : int
        Number of values (seeds).
    alternative : str
        ``"greater"``, ``"less"`` or ``"two-sided"``.
    null : float
        The centre of symmetry under H0, in the units of ``d``.
    exact : bool
        True when all ``2^n`` sign patterns were enumerated; False for the Monte-Carlo test.
    """

    statistic: float
    p: float
    n: int
    alternative: str
    null: float
    exact: bool


@dataclass(frozen=True)
class Interval(_Result):
    """An estimate with its interval.

    Attributes
    ----------
    estimate : float
        The sample mean, in the units of the data.
    low, high : float
        The interval's ends, in the units of the data; always within ``[min, max]`` of the data.
    level : float
        The confidence level asked for.
    n : int
        Number of values.
    method : str
        ``"sign-flip inversion"`` or ``"percentile bootstrap"``.
    attainable : bool
        False when ``n`` values cannot give an interval at this level (the interval is then the
        whole ``[min, max]``, or the single value for ``n = 1``).
    exact : bool
        True for the interval of the exact (fully enumerated) sign-flip test; False for the
        Monte-Carlo one and for the bootstrap.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str
    attainable: bool
    exact: bool


@dataclass(frozen=True)
class Equivalence(_Result):
    """Two one-sided tests (TOST) of equivalence within ``[-margin, +margin]``.

    Attributes
    ----------
    margin : float
        The equivalence margin, in the units of ``d``.
    p_lower : float
        p-value of H0a: the mean is at most ``-margin`` (alternative: greater).
    p_upper : float
        p-value of H0b: the mean is at least ``+margin`` (alternative: less).
    p : float
        ``max(p_lower, p_upper)``, the p-value of non-equivalence.
    equivalent : bool
        ``p < 1 - level``.
    n : int
        Number of values.
    level : float
        The confidence level of the decision (``1 - alpha``).
    """

    margin: float
    p_lower: float
    p_upper: float
    p: float
    equivalent: bool
    n: int
    level: float


@dataclass(frozen=True)
class RankTest(_Result):
    """Wilcoxon signed-rank test.

    Attributes
    ----------
    statistic : float
        scipy's statistic: the sum of the ranks of the positive differences (one-sided), or the
        smaller rank sum (two-sided).
    p : float
        The p-value.
    n : int
        Number of values, zeros included (scipy drops zeros from the ranking).
    method : str
        How scipy computed ``p``: ``"exact"``, ``"permutation"`` (ties or zeros, ``n <= 13``) or
        ``"asymptotic"``.
    """

    statistic: float
    p: float
    n: int
    method: str


@dataclass(frozen=True)
class Proportion(_Result):
    """A rate ``k / n`` with its exact (Clopper-Pearson) interval, all as fractions."""

    k: int
    n: int
    rate: float
    low: float
    high: float
    level: float


@dataclass(frozen=True)
class VarianceComponents(_Result):
    """Method-of-moments variance components of ``y_ij = mu + H_i + T_j + e_ij``.

    Attributes
    ----------
    var_hash, var_train, var_resid : float
        Variance of the hash (row) effect, the train (column) effect and the residual, in squared
        units of the table (e.g. pp^2); the effect variances are truncated at 0.
    share_hash, share_train, share_resid : float
        Each variance over their sum (NaN when the sum is 0).
    f_hash, p_hash, f_train, p_train : float
        ANOVA F statistic ``MS_effect / MS_resid`` and its p-value for each effect.
    a, b : int
        Rows (hash seeds / maps) and columns (train seeds).
    """

    var_hash: float
    var_train: float
    var_resid: float
    share_hash: float
    share_train: float
    share_resid: float
    f_hash: float
    p_hash: float
    f_train: float
    p_train: float
    a: int
    b: int


# ---------------------------------------------------------------------------------------------- input checks


def _sample(name: str, values: Any, *, min_n: int = 1) -> np.ndarray:
    """``values`` as a 1-d float64 array of at least ``min_n`` finite values, or ValueError."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a 1-d sequence of numbers, one per seed; got {values!r} ({e})") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-d (one value per seed), got shape {x.shape}: pass a flat sequence")
    if x.size < min_n:
        raise ValueError(
            f"{name} needs at least {min_n} value{'s' if min_n > 1 else ''}, got {x.size}: pass the per-seed values"
        )
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} missing or infinite value(s) (NaN/inf) at position(s) {bad[:10].tolist()}: "
            "drop those seeds from every arm (keep the pairs) or rerun them"
        )
    return x


def _level(level: Any, name: str = "level") -> float:
    if isinstance(level, bool) or not isinstance(level, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    if not 0.0 < float(level) < 1.0:
        hint = f" (did you mean {float(level) / 100}?)" if 1.0 < float(level) < 100.0 else ""
        raise ValueError(f"{name} must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}{hint}")
    return float(level)


def _alternative(alternative: Any) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(map(repr, ALTERNATIVES))}, got {alternative!r}")
    return str(alternative)


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number in the units of the data, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number in the units of the data, got {value!r}")
    return v


def _margin(margin: Any) -> float:
    m = _finite("margin", margin)
    if m <= 0:
        raise ValueError(
            "margin must be > 0 (the half-width of the equivalence region, in the units of d, e.g. 0.5 pp), "
            f"got {margin!r}"
        )
    return m


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (it fixes the resampling), got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------------------------------------- sign-flip tests


def sign_flip_test(d: Any, alternative: str = "greater", null: float = 0.0, *, seed: int = 0) -> PermutationTest:
    """Exact paired sign-flip permutation test of the mean of ``d - null``.

    H0: the distribution of ``d`` is symmetric about ``null`` (e.g. the per-seed differences of two
    arms under exchangeable arms). The statistic is ``mean(d - null)``; its null distribution
    flips the sign of each value independently. With ``n <= 20`` all ``2^n`` sign patterns are
    enumerated (exact: the smallest one-sided p-value is ``2^-n``); for larger ``n`` a Monte-Carlo
    test on ``100_000`` random patterns drawn from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    d : array_like of float, shape (n,), n >= 2
        Per-seed values (pp or fractions), e.g. paired differences ``b - a``.
    alternative : {"greater", "less", "two-sided"}
        The alternative to H0: mean above, below, or different from ``null``.
    null : float
        The centre of symmetry under H0, in the units of ``d``.
    seed : int
        Seed of the Monte-Carlo patterns (used only for ``n > 20``).

    Returns
    -------
    PermutationTest
        ``statistic = mean(d)``, ``p``, ``n``, ``alternative``, ``null``, ``exact``.

    Raises
    ------
    ValueError
        On a non-1-d ``d`` or one with fewer than 2 values (scipy's minimum; one seed can give no
        p-value below 1/2 anyway), NaN/inf values, a non-finite ``null``, an unknown ``alternative``
        or a bad ``seed``.

    Notes
    -----
    The reference is ``scipy.stats.permutation_test((d - null,), np.mean, permutation_type="samples",
    n_resamples=np.inf)``: with one sample, scipy's "samples" permutations flip signs (Fisher 1935,
    The Design of Experiments; Pitman 1937). scipy takes about 5 s at ``n = 20`` on one core (a
    report makes hundreds of such tests), so the p-value comes from :class:`_SignFlipNull`, its fast
    twin (all ``2^n`` subset sums at once, vectorised), which the tests check against scipy.
    """
    x = _sample("d", d, min_n=2)
    alternative = _alternative(alternative)
    null = _finite("null", null)
    seed = _seed(seed)
    null_distribution = _SignFlipNull(x, seed=seed)
    p = null_distribution.pvalue(null, alternative)
    return PermutationTest(float(np.mean(x)), float(p), int(x.size), alternative, null, null_distribution.exact)


class _SignFlipNull:
    """The sign-flip null distribution of ``mean(d - delta)`` for every shift ``delta`` at once.

    Flipping the signs of a subset ``F`` of ``x = d - delta`` turns ``mean(x)`` into
    ``mean(x) - 2 S_F / n`` with ``S_F = sum_{i in F} x_i = T_F - |F| delta``. The subset sums
    ``T_F`` and sizes ``|F|`` are computed once (all ``2^n`` subsets, or ``MC_RESAMPLES`` random ones
    for ``n > EXACT_MAX_N``), so each p-value is a few vectorised passes over them. The counts use
    scipy's rule (``scipy.stats.permutation_test``): a pattern counts as at least as extreme when it
    is within ``gamma = 100 eps |observed|`` of the observed statistic, i.e. ``S_F <= n gamma / 2``
    for "greater"; the Monte-Carlo p-value is ``(count + 1) / (N + 1)``. This is the fast twin of
    :func:`sign_flip_test`, which the tests check it against.

    One deliberate difference: the unflipped and the all-flipped patterns are counted from their exact
    values (``S = 0`` and ``S = n * observed``). scipy's tolerance is relative to the observed
    statistic, so at ``delta = mean(d)`` (observed ~ 1e-17) its own rounding can drop the unflipped
    pattern; p-values there (near 1/2 one-sided, 1 two-sided) may differ from scipy's by ``2^-n``.
    """

    def __init__(self, d: np.ndarray, *, seed: int) -> None:
        self.d = d
        n = d.size
        self.exact = n <= EXACT_MAX_N
        if self.exact:
            sums, sizes = np.zeros(1), np.zeros(1)
            for v in d:  # subsets without, then with, value i: 2^n sums in n doublings
                sums = np.concatenate((sums, sums + v))
                sizes = np.concatenate((sizes, sizes + 1.0))
        else:
            rng = np.random.default_rng(seed)
            sums, sizes = np.empty(MC_RESAMPLES), np.empty(MC_RESAMPLES)
            for start in range(0, MC_RESAMPLES, _BATCH):
                flips = rng.random((min(_BATCH, MC_RESAMPLES - start), n)) < 0.5
                sums[start : start + len(flips)] = flips @ d
                sizes[start : start + len(flips)] = flips.sum(axis=1)
        self.sums, self.sizes = sums, sizes
        self._adjust = 0 if self.exact else 1
        self._buf = np.empty_like(sums)

    @property
    def smallest_two_sided_p(self) -> float:
        """``2 / 2^n`` exact (the unflipped pattern always counts), ``2 / (N + 1)`` Monte Carlo."""
        return min(1.0, 2.0 / (self.sums.size + self._adjust))

    def pvalue(self, delta: float, alternative: str) -> float:
        n = self.d.size
        observed = np.mean(self.d - delta)  # as scipy computes it
        tol = 50.0 * n * np.finfo(np.float64).eps * abs(float(observed))
        s = np.multiply(self.sizes, delta, out=self._buf)
        np.subtract(self.sums, s, out=s)  # S_F for every pattern
        if self.exact:  # flipping every sign gives exactly -observed in scipy: S = n * observed, not rounding noise
            s[-1] = n * observed
        total = self.sums.size + self._adjust
        greater = less = 1.0
        if alternative != "less":
            greater = (np.count_nonzero(s <= tol) + self._adjust) / total
        if alternative != "greater":
            less = (np.count_nonzero(s >= -tol) + self._adjust) / total
        if alternative == "greater":
            return float(min(greater, 1.0))
        if alternative == "less":
            return float(min(less, 1.0))
        return float(min(2.0 * min(greater, less), 1.0))


def _float_key(x: float) -> int:
    """An int that orders float64s as their values (adjacent floats, adjacent keys; -0.0 as 0.0)."""
    i = int(np.float64(x).view(np.int64))
    return i if i >= 0 else -(i & 0x7FFF_FFFF_FFFF_FFFF)


def _key_float(k: int) -> float:
    bits = k if k >= 0 else (-k) | (1 << 63)
    return float(np.uint64(bits).view(np.float64))


def _boundary(inside: float, outside: float, is_inside: Callable[[float], bool]) -> float:
    """The float nearest ``outside`` that is still inside, by bisection on the floats between the two.

    ``is_inside`` must be monotone on the bracket (true up to a point, false after it, going from
    ``inside`` to ``outside``); at most 64 evaluations, and the answer is exact to the float.
    """
    i, o = _float_key(inside), _float_key(outside)
    while abs(o - i) > 1:
        mid = (i + o) // 2
        if is_inside(_key_float(mid)):
            i = mid
        else:
            o = mid
    return _key_float(i)


def sign_flip_interval(d: Any, level: float = 0.95, *, seed: int = 0) -> Interval:
    """Confidence interval of the mean shift by inverting the two-sided exact sign-flip test.

    The interval is the set of shifts ``delta`` that the two-sided test does not reject:
    ``{delta : sign_flip_test(d, "two-sided", null=delta).p > 1 - level}``. The p-value is a step
    function of ``delta``, nondecreasing on ``[min(d), mean(d)]`` and nonincreasing on
    ``[mean(d), max(d)]``, so the set is an interval; each end is found by bisection (on the
    floats between ``min(d)`` and ``mean(d)``, and between ``mean(d)`` and ``max(d)``) to the
    last float still inside. Its ends are (up to rounding) means of subsets of ``d`` (Hartigan
    1969), so it lies within ``[min(d), max(d)]``: within [0, 100] for accuracies in pp, within
    [-100, 100] for their differences. Coverage is at least ``level`` for any distribution
    symmetric about its mean.

    Parameters
    ----------
    d : array_like of float, shape (n,)
        Per-seed values (pp or fractions).
    level : float
        Confidence level, strictly between 0 and 1.
    seed : int
        Seed of the Monte-Carlo sign patterns (used only for ``n > 20``).

    Returns
    -------
    Interval
        ``estimate = mean(d)``, ``low``, ``high`` (units of ``d``), ``level``, ``n``,
        ``method = "sign-flip inversion"``, ``attainable``, ``exact``. When ``n`` values cannot
        reject anything at this level (``2 * 2^-n > 1 - level``, e.g. ``n < 6`` at 95%), the
        interval is the whole ``[min(d), max(d)]`` and ``attainable`` is False.

    Raises
    ------
    ValueError
        On an empty or non-1-d ``d``, NaN/inf values, ``level`` outside (0, 1) or a bad ``seed``.

    Notes
    -----
    The p-values come from an own vectorised enumeration of the ``2^n`` sign patterns
    (``_SignFlipNull``), the same counts as ``scipy.stats.permutation_test`` (checked by the
    tests), because scipy takes about 5 s per p-value at ``n = 20``; this interval takes well
    under a second there. For ``n > 20`` it inverts a Monte-Carlo test on a fixed sample of
    100_000 patterns from ``numpy.random.default_rng(seed)`` (not the sample scipy draws in
    :func:`sign_flip_test`). J. A. Hartigan (1969), Using subsample values as typical values,
    JASA 64, 1303-1317; E. L. Lehmann and J. P. Romano, Testing Statistical Hypotheses (on
    permutation tests and their confidence sets).
    """
    x = _sample("d", d)
    level = _level(level)
    seed = _seed(seed)
    n, estimate = int(x.size), float(np.mean(x))
    lo, hi = float(x.min()), float(x.max())
    null = _SignFlipNull(x, seed=seed)
    alpha = 1.0 - level
    if null.smallest_two_sided_p > alpha:
        return Interval(estimate, lo, hi, level, n, SIGN_FLIP_METHOD, False, null.exact)

    def inside(delta: float) -> bool:
        return null.pvalue(delta, "two-sided") > alpha

    # the mean is inside (p = 1 there); min(d) and max(d) may be inside too when values tie at the ends
    low = lo if inside(lo) else _boundary(estimate, lo, inside)
    high = hi if inside(hi) else _boundary(estimate, hi, inside)
    return Interval(estimate, low, high, level, n, SIGN_FLIP_METHOD, True, null.exact)


def tost(d: Any, margin: float, level: float = 0.95, *, seed: int = 0) -> Equivalence:
    """Equivalence within ``[-margin, +margin]`` by two one-sided exact sign-flip tests (TOST).

    H0a: the mean is at most ``-margin`` (test ``d`` with ``null=-margin``, alternative "greater");
    H0b: the mean is at least ``+margin`` (``null=+margin``, alternative "less"). Equivalence is
    declared when both are rejected: ``p = max(p_lower, p_upper) < 1 - level``. With ``n`` seeds
    the smallest p is ``2^-n``, so fewer than 5 seeds can never show equivalence at 95%.

    Parameters
    ----------
    d : array_like of float, shape (n,), n >= 2
        Per-seed paired differences (pp or fractions).
    margin : float
        The equivalence margin (> 0), in the units of ``d``.
    level : float
        Confidence level, strictly between 0 and 1 (``alpha = 1 - level`` for each one-sided test).
    seed : int
        Seed of the Monte-Carlo tests (used only for ``n > 20``).

    Returns
    -------
    Equivalence
        ``margin``, ``p_lower``, ``p_upper``, ``p``, ``equivalent``, ``n``, ``level``.

    Raises
    ------
    ValueError
        On bad ``d`` (see :func:`sign_flip_test`), ``margin <= 0`` or non-finite, or ``level``
        outside (0, 1).

    Notes
    -----
    D. J. Schuirmann (1987), A comparison of the two one-sided tests procedure and the power
    approach for assessing the equivalence of average bioavailability, J. Pharmacokin.
    Biopharm. 15, 657-680; here with :func:`sign_flip_test` in place of the t tests.
    """
    x = _sample("d", d, min_n=2)
    margin = _margin(margin)
    level = _level(level)
    lower = sign_flip_test(x, "greater", null=-margin, seed=seed)
    upper = sign_flip_test(x, "less", null=margin, seed=seed)
    p = max(lower.p, upper.p)
    return Equivalence(margin, lower.p, upper.p, p, bool(p < 1.0 - level), int(x.size), level)


# ---------------------------------------------------------------------------------------------- thin wrappers


def wilcoxon(d: Any, alternative: str = "greater") -> RankTest:
    """Wilcoxon signed-rank test of the per-seed differences ``d`` (``scipy.stats.wilcoxon``).

    The exact null distribution when ``n <= 50`` and ``|d|`` has no zeros or ties
    (``method="exact"``); otherwise scipy's ``"auto"``: an exact permutation test for ``n <= 13``,
    the normal approximation beyond. Zeros are dropped (``zero_method="wilcox"``).

    Parameters
    ----------
    d : array_like of float, shape (n,)
        Per-seed paired differences.
    alternative : {"greater", "less", "two-sided"}

    Returns
    -------
    RankTest
        ``statistic``, ``p``, ``n`` (zeros included), ``method`` (``"exact"``, ``"permutation"``
        or ``"asymptotic"``). ``p = 1`` when every difference is zero.

    Raises
    ------
    ValueError
        On an empty or non-1-d ``d``, NaN/inf values or an unknown ``alternative``.

    Notes
    -----
    F. Wilcoxon (1945), Individual comparisons by ranking methods, Biometrics Bulletin 1, 80-83.
    """
    x = _sample("d", d)
    alternative = _alternative(alternative)
    n = int(x.size)
    nonzero = np.abs(x[x != 0])
    no_ties = np.unique(nonzero).size == nonzero.size
    if n <= 50 and no_ties and nonzero.size == n:
        method, used = "exact", "exact"
    else:
        method, used = "auto", ("permutation" if n <= 13 else "asymptotic")
    if nonzero.size == 0:  # scipy divides 0 by 0 here; no evidence either way
        return RankTest(0.0, 1.0, n, used)
    res = scipy.stats.wilcoxon(x, alternative=alternative, method=method)
    return RankTest(float(res.statistic), float(res.pvalue), n, used)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> Proportion:
    """Exact (Clopper-Pearson) interval of a rate ``k / n``.

    Parameters
    ----------
    k : int
        Successes, ``0 <= k <= n``.
    n : int
        Trials, ``n >= 1``.
    level : float
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    Proportion
        ``k``, ``n``, ``rate = k / n``, ``low``, ``high`` (fractions), ``level``.

    Raises
    ------
    ValueError
        If ``k`` or ``n`` is not an integer, ``n < 1``, ``k`` outside ``[0, n]``, or ``level``
        outside (0, 1).

    Notes
    -----
    ``scipy.stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")``;
    C. J. Clopper and E. S. Pearson (1934), Biometrika 26, 404-413.
    """
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an int (a count), got {v!r}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1 (a rate needs trials), got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n] = [0, {n}], got {k}")
    level = _level(level)
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Proportion(k, n, k / n, float(ci.low), float(ci.high), level)


def _pvalues(pvalues: Any) -> np.ndarray:
    p = _sample("pvalues", pvalues)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"pvalues must lie in [0, 1], got {p[(p < 0) | (p > 1)][:5].tolist()}: pass p-values")
    return p


def holm(pvalues: Any, alpha: float = 0.05) -> list[float]:
    """Holm-adjusted p-values, in input order.

    Parameters
    ----------
    pvalues : array_like of float, shape (m,)
        The raw p-values of a family of ``m`` tests, each in [0, 1].
    alpha : float
        Family-wise error rate, strictly between 0 and 1 (the adjusted p-values do not depend on it).

    Returns
    -------
    list of float, length m
        ``min(1, max_{j <= i} (m - j + 1) p_(j))`` for the ``i``-th smallest p-value.

    Raises
    ------
    ValueError
        On an empty or non-1-d input, NaN, values outside [0, 1], or ``alpha`` outside (0, 1).

    Notes
    -----
    ``statsmodels.stats.multitest.multipletests(p, alpha, method="holm")``; S. Holm (1979), A simple
    sequentially rejective multiple test procedure, Scand. J. Statist. 6, 65-70.
    """
    from statsmodels.stats.multitest import multipletests  # statsmodels costs ~0.5 s to import

    p = _pvalues(pvalues)
    alpha = _level(alpha, "alpha")
    return [float(v) for v in multipletests(p, alpha=alpha, method="holm")[1]]


def holm_reject(pvalues: Any, alpha: float = 0.05) -> list[bool]:
    """Which hypotheses Holm's procedure rejects at family-wise level ``alpha``, in input order.

    Same inputs and errors as :func:`holm`; returns a list of bools of length m.
    """
    from statsmodels.stats.multitest import multipletests

    p = _pvalues(pvalues)
    alpha = _level(alpha, "alpha")
    return [bool(r) for r in multipletests(p, alpha=alpha, method="holm")[0]]


def mean_interval(values: Any, level: float = 0.95, seed: int = 0, n_resamples: int = 9999) -> Interval:
    """Descriptive interval of a cell's mean (e.g. accuracy in pp) that stays on the data's scale.

    Percentile bootstrap of the mean: the interval lies within ``[min, max]`` of the values, so an
    accuracy's interval never leaves [0, 100].

    Parameters
    ----------
    values : array_like of float, shape (n,)
        Per-seed values of one cell.
    level : float
        Confidence level, strictly between 0 and 1.
    seed : int
        Seed of the resampling (``numpy.random.default_rng(seed)``).
    n_resamples : int
        Bootstrap resamples (>= 1).

    Returns
    -------
    Interval
        ``estimate = mean``, ``low``, ``high``, ``level``, ``n``, ``method = "percentile bootstrap"``,
        ``attainable`` (False for a single value), ``exact = False``. ``[v, v]`` when every value is
        ``v`` (including ``n = 1``).

    Raises
    ------
    ValueError
        On an empty or non-1-d input, NaN/inf, ``level`` outside (0, 1), a bad ``seed`` or
        ``n_resamples < 1``.

    Notes
    -----
    ``scipy.stats.bootstrap((values,), np.mean, method="percentile", ...)``; B. Efron and
    R. J. Tibshirani (1993), An Introduction to the Bootstrap, ch. 13. A descriptive interval, not a
    test: for small ``n`` it is narrower than the t interval (the resampled means spread with the
    plug-in standard deviation, and no t quantiles) and covers less than ``level``.
    """
    x = _sample("values", values)
    level = _level(level)
    seed = _seed(seed)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int (e.g. 9999), got {n_resamples!r}")
    n, estimate = int(x.size), float(np.mean(x))
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return Interval(lo, lo, lo, level, n, BOOTSTRAP_METHOD, n > 1, False)
    res = scipy.stats.bootstrap(
        (x,),
        np.mean,
        method="percentile",
        confidence_level=level,
        n_resamples=int(n_resamples),
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    low, high = (float(np.clip(v, lo, hi)) for v in (ci.low, ci.high))  # rounding of the resample means
    return Interval(estimate, low, high, level, n, BOOTSTRAP_METHOD, True, False)


# ---------------------------------------------------------------------------------------------- models


def quadratic_curvature(x: Any, y: Any) -> float:
    """The coefficient ``b2`` of the least-squares fit ``y = b0 + b1 x + b2 x^2``.

    Parameters
    ----------
    x, y : array_like of float, shape (n,)
        The covariate and the response (e.g. one seed's accuracy in pp against a grid value),
        with at least 3 distinct ``x``.

    Returns
    -------
    float
        ``b2`` in y units per x-unit squared; negative for a concave relation.

    Raises
    ------
    ValueError
        On non-1-d input, NaN/inf, unequal lengths, or fewer than 3 distinct ``x``.

    Notes
    -----
    ``numpy.polynomial.polynomial.polyfit(x, y, 2)`` (ordinary least squares; interpolation for
    exactly 3 points).
    """
    xs, ys = _sample("x", x), _sample("y", y)
    if xs.size != ys.size:
        raise ValueError(f"x and y must have equal lengths (one y per x), got {xs.size} and {ys.size}")
    if np.unique(xs).size < 3:
        raise ValueError(
            f"a quadratic needs at least 3 distinct x, got {np.unique(xs).size}: add grid points or fit a line"
        )
    return float(np.polynomial.polynomial.polyfit(xs, ys, 2)[2])


def variance_components(table: Any) -> VarianceComponents:
    """Variance components of a crossed two-way layout without replication (hash x train seeds).

    The random-effects model ``y_ij = mu + H_i + T_j + e_ij`` (row ``i``: hash seed or map; column
    ``j``: train seed; no interaction term, which one value per cell cannot separate from ``e``).
    The two-way ANOVA gives the mean squares ``MS_hash``, ``MS_train``, ``MS_resid``; the
    method-of-moments (ANOVA) estimators are ``var_hash = max(0, (MS_hash - MS_resid) / b)``,
    ``var_train = max(0, (MS_train - MS_resid) / a)``, ``var_resid = MS_resid``, and each effect's
    F test is ``MS_effect / MS_resid`` on ``(a-1, (a-1)(b-1))`` or ``(b-1, (a-1)(b-1))`` df.

    Parameters
    ----------
    table : array_like of float, shape (a, b), a >= 2, b >= 2
        ``table[i, j]``: the value (e.g. accuracy in pp) of hash seed ``i`` and train seed ``j``.

    Returns
    -------
    VarianceComponents
        Variances in squared units of the table (pp^2), their shares of the total, the F
        statistics and p-values, ``a`` and ``b``. A constant table has zero variances and NaN shares,
        F and p.

    Raises
    ------
    ValueError
        If the table is not 2-d, has fewer than 2 rows or columns, or has missing (NaN) or infinite cells.

    Notes
    -----
    ``statsmodels.formula.api.ols("y ~ C(hash) + C(train)")`` and
    ``statsmodels.stats.anova.anova_lm(fit, typ=2)``; S. R. Searle, G. Casella and C. E.
    McCulloch (1992), Variance Components (ANOVA estimation, balanced two-way crossed classification
    without interaction).
    """
    import pandas as pd  # statsmodels' dependency (its formulas take DataFrames)
    import statsmodels.formula.api as smf  # with pandas, about 1 s to import
    from statsmodels.stats.anova import anova_lm

    try:
        t = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"table must be a 2-d array of numbers (rows: hash seeds, columns: train seeds): {e}"
        ) from None
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 2:
        raise ValueError(
            f"table must be 2-d with at least 2 rows (hash seeds) and 2 columns (train seeds), got shape {t.shape}"
        )
    bad = int((~np.isfinite(t)).sum())
    if bad:
        raise ValueError(
            f"table has {bad} missing or infinite cell(s): the crossed layout needs every cell; "
            "rerun the missing runs or drop their rows/columns"
        )
    a, b = t.shape
    if np.ptp(t) == 0:  # the fit is exact and the residual sum of squares only rounding noise
        nan = math.nan
        return VarianceComponents(0.0, 0.0, 0.0, nan, nan, nan, nan, nan, nan, nan, int(a), int(b))
    df = pd.DataFrame({"hash": np.repeat(np.arange(a), b), "train": np.tile(np.arange(b), a), "y": t.ravel()})
    aov = anova_lm(smf.ols("y ~ C(hash) + C(train)", data=df).fit(), typ=2)
    ms = aov["sum_sq"] / aov["df"]
    ms_hash, ms_train, ms_resid = (float(ms[k]) for k in ("C(hash)", "C(train)", "Residual"))
    var_hash = max(0.0, (ms_hash - ms_resid) / b)
    var_train = max(0.0, (ms_train - ms_resid) / a)
    total = var_hash + var_train + ms_resid

    def share(v: float) -> float:
        return v / total if total > 0 else math.nan

    f_hash, f_train = (float(aov.loc[k, "F"]) for k in ("C(hash)", "C(train)"))
    p_hash, p_train = (float(aov.loc[k, "PR(>F)"]) for k in ("C(hash)", "C(train)"))
    return VarianceComponents(
        var_hash,
        var_train,
        ms_resid,
        share(var_hash),
        share(var_train),
        share(ms_resid),
        f_hash,
        p_hash,
        f_train,
        p_train,
        int(a),
        int(b),
    )
