"""What theory says each hash's statistics should be, and checks of a map against it.

* Dirichlet hash (paper eq. 8-9): entry probabilities ``p ~ Dir(alpha, ..., alpha)`` over ``n``
  entries. The entropy of ``p`` has mean ``E[H] = psi(n alpha + 1) - psi(alpha + 1)`` nats and a
  closed-form variance (Nemenman, Shafee & Bialek 2002, eqs. for the second moment). What a
  map *measures* is the plug-in entropy of the loads of ``m`` draws from ``p``; it is biased low
  when ``m / n`` is small. Its exact mean under the Dirichlet-multinomial model uses the
  beta-binomial marginal of one entry's load (the Miller-Madow expansion for large ``m``); its sd
  given ``p`` has a second-order closed form for large ``m / n`` (simulated below that).
* Neighborhood hash (eq. 10): ``h(i) = (i + U{-r..r}) mod n``, so the offsets
  ``(h(i) - i) mod n`` are uniform on ``[-r, r]`` (folded mod ``n`` when ``2r + 1 > n``).
* Modulus hash (eq. 1): ``i mod n`` gives loads that differ by at most one.
* Uniform hash (eq. 2): the chi-square p-value of the loads is uniform on (0, 1) over seeds.

Everything here is numpy/scipy, except the one-pass offset histogram of the Neighborhood check
(:mod:`hashlab.stats.offset_kernels`, numba with a numpy twin).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.special as sp
import scipy.stats

from ..maps.hashes import dirichlet_probabilities
from ..maps.indexmap import IndexMap
from .entropy import entropy_nats
from .kernels import kernels

__all__ = [
    "dirichlet_expected_entropy",
    "dirichlet_entropy_sd",
    "dirichlet_multinomial_expected_entropy",
    "simulate_plugin_entropy",
    "plugin_entropy_sd",
    "PLUGIN_METHODS",
    "ASYMPTOTIC_MIN_LOAD",
    "DirichletCheck",
    "dirichlet_entropy_check",
    "layer_identifiers",
    "neighborhood_offsets",
    "OffsetCheck",
    "neighborhood_offset_check",
    "is_exactly_balanced",
    "modulus_balance_check",
    "table_loads",
]


def table_loads(imap: IndexMap, table: int) -> np.ndarray:
    """Loads of one table pooled over every layer that reads it (int64, shape (n,); -1 excluded)."""
    n = imap.table_sizes[table]
    loads = np.zeros(n, np.int64)
    for lay in imap.layers:
        if lay.table == table:
            loads += kernels("numba").loads(lay.indices.reshape(-1), n)[0]
    return loads


def _check_alpha_n(n: int, alpha: float) -> None:
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n (table entries) must be an integer >= 1, got {n!r}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")


def dirichlet_expected_entropy(n: int, alpha: float) -> float:
    """``E[H(p)]`` in nats for ``p ~ Dir(alpha 1_n)``: ``psi(n alpha + 1) - psi(alpha + 1)``.

    Tends to ``ln n`` as ``alpha -> inf`` (6.91 nats for n = 1000) and to 0 as ``alpha -> 0``.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``alpha <= 0``.
    """
    _check_alpha_n(n, alpha)
    return float(sp.digamma(n * alpha + 1) - sp.digamma(alpha + 1))


def dirichlet_entropy_sd(n: int, alpha: float) -> float:
    """Standard deviation (nats) of ``H(p)`` for ``p ~ Dir(alpha 1_n)``, in closed form.

    With ``A = n alpha`` (Nemenman, Shafee & Bialek, NIPS 2002)::

        E[H^2] = n a(a+1)/(A(A+1)) [(psi(a+2) - psi(A+2))^2 + psi1(a+2) - psi1(A+2)]
               + n(n-1) a^2/(A(A+1)) [(psi(a+1) - psi(A+2))^2 - psi1(A+2)]

    Raises
    ------
    ValueError
        If ``n < 1`` or ``alpha <= 0``.
    """
    _check_alpha_n(n, alpha)
    a = float(alpha)
    big_a = n * a
    norm = big_a * (big_a + 1)
    d2, t2 = sp.digamma(big_a + 2), sp.polygamma(1, big_a + 2)
    same = n * a * (a + 1) / norm * ((sp.digamma(a + 2) - d2) ** 2 + sp.polygamma(1, a + 2) - t2)
    cross = n * (n - 1) * a * a / norm * ((sp.digamma(a + 1) - d2) ** 2 - t2)
    var = same + cross - dirichlet_expected_entropy(n, a) ** 2
    return float(np.sqrt(max(var, 0.0)))


PLUGIN_METHODS = ("auto", "exact", "asymptotic", "simulate")

ASYMPTOTIC_MIN_LOAD = 20.0
"""Mean load ``m / n`` from which :func:`dirichlet_entropy_check` uses the closed-form sd of the plug-in
entropy (:func:`plugin_entropy_sd`) instead of simulating it: there its relative error is below 1.5 %
(measured against 20,000-draw simulations for alpha 0.1 ... 100, n = 1000), a third of the 5 %
standard error of the 200-draw simulation it replaces."""


def dirichlet_multinomial_expected_entropy(
    m: int, n: int, alpha: float, max_exact: int = 500_000, draws: int = 400, seed: int = 0, method: str = "auto"
) -> float:
    """Mean plug-in entropy (nats) of the loads of ``m`` draws from ``p ~ Dir(alpha 1_n)``.

    One entry's load is ``BetaBinomial(m, alpha, (n - 1) alpha)``, so
    ``E[H_hat] = -n sum_c P(c) (c/m) ln(c/m)``. Methods:

    * ``"exact"``: that sum (O(m), log-gamma form);
    * ``"asymptotic"``: the Miller-Madow expansion averaged over ``p``,
      ``E[H_hat] = E[H(p)] - (n - 1) / (2 m) + o(1 / m)`` (Miller 1955; :func:`dirichlet_expected_entropy`),
      O(1). Measured against the exact sum at ``m = 500,000``, ``n = 1000``: error 2e-6 nats for
      alpha = 1, 4e-7 for alpha >= 10, 1e-3 for alpha = 0.001 (entries with ``m p`` of order one,
      which the expansion treats as well-sampled), 3e-4 for alpha = 0.1; the error falls like ``1 / m``
      or faster, and stays below 0.5 % of :func:`dirichlet_entropy_sd` in all these cases;
    * ``"simulate"``: the reference twin: the mean of ``draws`` seeded simulations of
      ``p ~ Dir``, loads ``~ Multinomial(m, p)`` (standard error ``~ sd(H) / sqrt(draws)``);
    * ``"auto"`` (default): exact when ``m <= max_exact``, else asymptotic.

    This is what the entropy of a Dirichlet map with ``m`` weights per table should be on
    average (lower than :func:`dirichlet_expected_entropy` when ``m / n`` is small).

    Raises
    ------
    ValueError
        If ``m < 1``, ``n < 1``, ``alpha <= 0`` or ``method`` is unknown.
    """
    _check_alpha_n(n, alpha)
    if m < 1:
        raise ValueError(f"m (draws) must be >= 1, got {m}")
    if method not in PLUGIN_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {PLUGIN_METHODS}")
    if n == 1:
        return 0.0
    if method == "auto":
        method = "exact" if m <= max_exact else "asymptotic"
    if method == "asymptotic":
        return dirichlet_expected_entropy(n, alpha) - (n - 1) / (2.0 * m)
    if method == "simulate":
        rng = np.random.default_rng(seed)
        q = rng.multinomial(m, rng.dirichlet(np.full(n, float(alpha)), size=draws)) / m
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(-np.where(q > 0, q * np.log(q), 0.0).sum(axis=1).mean())
    c = np.arange(1, m + 1, dtype=np.float64)
    a, b = float(alpha), (n - 1) * float(alpha)
    logpmf = (
        sp.gammaln(m + 1) - sp.gammaln(c + 1) - sp.gammaln(m - c + 1) + sp.betaln(c + a, m - c + b) - sp.betaln(a, b)
    )
    f = c / m
    return float(-n * (np.exp(logpmf) * f * np.log(f)).sum())


def plugin_entropy_sd(p: np.ndarray, m: int) -> float:
    """Standard deviation (nats) of the plug-in entropy of ``Multinomial(m, p)`` loads, to second order.

    ``Var(H_hat) = (sum_e p_e ln^2 p_e - H(p)^2) / m + (k - 1) / (2 m^2) + O(m^-3)`` with ``k`` the
    entries with ``p_e > 0`` (Basharin 1959; Harris 1975). The first term is the delta method; the
    second is the chi-square fluctuation that alone remains for a uniform ``p``. O(n). Accurate
    when the mean load ``m / n`` is large (:data:`ASYMPTOTIC_MIN_LOAD`); :func:`simulate_plugin_entropy`
    is the reference.

    Parameters
    ----------
    p : ndarray of float64, shape (n,), summing to 1
    m : int, >= 1

    Raises
    ------
    ValueError
        If ``m < 1``.
    """
    if m < 1:
        raise ValueError(f"m (draws) must be >= 1, got {m}")
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    lp = np.log(p)
    h = -float(p @ lp)
    var = (float(p @ (lp * lp)) - h * h) / m + (p.size - 1) / (2.0 * m * m)
    return float(np.sqrt(max(var, 0.0)))


def simulate_plugin_entropy(p: np.ndarray, m: int, draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the plug-in entropy of ``Multinomial(m, p)`` loads (simulation).

    Parameters
    ----------
    p : ndarray of float64, shape (n,), summing to 1
    m : int
    draws : int
    seed : int
        Seeds a :class:`numpy.random.Generator`; nothing else is random.

    Returns
    -------
    mean, sd : float (nats)
    """
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(m, p, size=draws).astype(np.float64)
    q = counts / m
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
    return float(h.mean()), float(h.std(ddof=1))


@dataclass
class DirichletCheck:
    """A Dirichlet map's measured entropy against theory, for one table.

    Attributes
    ----------
    table : int
    n : int
        Entries.
    m : int
        Non-zeroed weights reading the table.
    alpha : float
    measured : float
        Plug-in entropy of the table's loads (nats).
    drawn : float
        Entropy of the table's actual ``p`` (from :func:`hashlab.dirichlet_probabilities`).
    expected : float
        ``E[H(p)]`` (:func:`dirichlet_expected_entropy`).
    expected_sd : float
        Its standard deviation (:func:`dirichlet_entropy_sd`).
    expected_plugin : float
        ``E[H_hat]`` for ``m`` draws (:func:`dirichlet_multinomial_expected_entropy`: exact up to
        500,000 weights per table, the Miller-Madow expansion above).
    plugin_sd : float
        sd of ``H_hat`` given the drawn ``p``: :func:`plugin_entropy_sd` when ``m / n`` is at least
        :data:`ASYMPTOTIC_MIN_LOAD`, else simulated (:func:`simulate_plugin_entropy`, seeded by the
        map's seed).
    z_drawn : float
        ``(drawn - expected) / expected_sd``: is the table's ``p`` a typical Dirichlet draw?
    z_measured : float
        ``(measured - expected_plugin) / sqrt(expected_sd**2 + plugin_sd**2)``.
    """

    table: int
    n: int
    m: int
    alpha: float
    measured: float
    drawn: float
    expected: float
    expected_sd: float
    expected_plugin: float
    plugin_sd: float
    z_drawn: float
    z_measured: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dirichlet_entropy_check(
    imap: IndexMap,
    alpha: float | None = None,
    seed: int | None = None,
    draws: int = 200,
    asymptotic_min_load: float = ASYMPTOTIC_MIN_LOAD,
) -> list[DirichletCheck]:
    """Compare each table of a Dirichlet map with :func:`dirichlet_expected_entropy` and friends.

    Parameters
    ----------
    imap : IndexMap
        Built by ``build_map(HashSpec(kind="dirichlet", ...))`` (its ``spec`` supplies ``alpha``
        and ``seed`` unless given).
    alpha, seed : optional overrides
    draws : int
        Simulations for ``plugin_sd`` when ``m / n < asymptotic_min_load``.
    asymptotic_min_load : float
        Mean load from which ``plugin_sd`` is the closed form :func:`plugin_entropy_sd`
        (``inf``: always simulate, as before).

    Raises
    ------
    ValueError
        If ``alpha`` / ``seed`` are neither given nor in ``imap.spec``.
    """
    alpha = imap.spec.get("alpha") if alpha is None else alpha
    seed = imap.spec.get("seed") if seed is None else seed
    if alpha is None or seed is None:
        raise ValueError(
            "dirichlet_entropy_check needs alpha and seed: pass them or use a map built with "
            "HashSpec(kind='dirichlet', alpha=..., seed=...)"
        )
    out = []
    for t, n in enumerate(imap.table_sizes):
        loads = table_loads(imap, t)
        m = int(loads.sum())
        if m == 0:
            continue
        p = dirichlet_probabilities(n, alpha, seed, t)
        measured = entropy_nats(loads)
        drawn = entropy_nats(p)
        e, sd = dirichlet_expected_entropy(n, alpha), dirichlet_entropy_sd(n, alpha)
        e_plug = dirichlet_multinomial_expected_entropy(m, n, alpha, seed=seed)
        if m >= asymptotic_min_load * n:
            psd = plugin_entropy_sd(p, m)
        else:
            _, psd = simulate_plugin_entropy(p, m, draws=draws, seed=seed)
        out.append(
            DirichletCheck(
                table=t,
                n=n,
                m=m,
                alpha=float(alpha),
                measured=measured,
                drawn=drawn,
                expected=e,
                expected_sd=sd,
                expected_plugin=e_plug,
                plugin_sd=psd,
                z_drawn=(drawn - e) / sd if sd > 0 else 0.0,
                z_measured=(measured - e_plug) / float(np.hypot(sd, psd)) if np.hypot(sd, psd) > 0 else 0.0,
            )
        )
    return out


def layer_identifiers(imap: IndexMap, k: int, scope: str | None = None) -> np.ndarray:
    """The identifiers the hash saw for layer ``k`` (int64, shape (out, in)).

    ``scope="layer"``: row-major local identifiers; ``"global"``: offset by the weights of
    layers ``0..k-1`` (as :func:`hashlab.build_map` does). Default: ``imap.spec["scope"]``.
    """
    scope = scope or imap.spec.get("scope", "layer")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    lay = imap.layers[k]
    offset = sum(x.num_weights for x in imap.layers[:k]) if scope == "global" else 0
    return (np.arange(lay.num_weights, dtype=np.int64) + offset).reshape(lay.indices.shape)


def neighborhood_offsets(imap: IndexMap, radius: int, scope: str | None = None) -> np.ndarray:
    """Offsets ``((h(i) - i + r) mod n) - r`` of all non-zeroed weights (int64, 1-D).

    In ``[-r, r]`` for a Neighborhood(r) map when ``2r + 1 <= n``.
    """
    out = []
    for k, lay in enumerate(imap.layers):
        n = imap.table_sizes[lay.table]
        ids = layer_identifiers(imap, k, scope)
        keep = lay.indices >= 0
        out.append(np.mod(lay.indices[keep].astype(np.int64) - ids[keep] + radius, n) - radius)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


@dataclass
class OffsetCheck:
    """Neighborhood offsets against ``U{-r..r}`` (folded mod n).

    Attributes
    ----------
    radius, n : int
    count : int
        Offsets tested.
    outside : int
        Offsets with no preimage in ``[-r, r]`` mod ``n`` (0 for a Neighborhood(r) map).
    chi2, p_value : float
        Pearson chi-square of the offset histogram against the folded uniform law
        (``scipy.stats.chisquare``).
    """

    radius: int
    n: int
    count: int
    outside: int
    chi2: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def neighborhood_offset_check(imap: IndexMap, radius: int | None = None, backend: str = "numba") -> OffsetCheck:
    """Test that a map's offsets ``(h(i) - i) mod n`` follow ``U{-r..r}`` folded mod ``n``.

    Only the histogram of the residues ``(h(i) - i) mod n`` enters the test; it is counted in one
    pass per layer (:func:`hashlab.stats.offset_kernels.offset_residues_nb`) rather than through
    :func:`neighborhood_offsets`, with identical counts.

    Parameters
    ----------
    imap : IndexMap
        Identifiers follow ``imap.spec["scope"]`` (:func:`layer_identifiers`).
    radius : int, optional
        Default ``imap.spec["radius"]``.
    backend : {"numba", "numpy"}
        Residue counting kernel; both give identical counts.

    Raises
    ------
    ValueError
        If the map's tables differ in size, ``radius`` is neither given nor in the spec, the spec's
        scope is unknown, or ``backend`` is unknown.
    """
    radius = imap.spec.get("radius") if radius is None else radius
    if radius is None or radius < 0:
        raise ValueError("neighborhood_offset_check needs radius >= 0 (pass radius= or use a neighborhood map)")
    if len(set(imap.table_sizes)) != 1:
        raise ValueError(f"tables must have one size for the offset test, got {imap.table_sizes}")
    residues = kernels(backend).offset_residues
    scope = imap.spec.get("scope", "layer")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    n = imap.table_sizes[0]
    observed = np.zeros(n, np.int64)
    start = 0
    for lay in imap.layers:
        observed += residues(lay.indices.reshape(-1), n, start if scope == "global" else 0)
        start += lay.num_weights
    expected = np.bincount(np.mod(np.arange(-radius, radius + 1), n), minlength=n) / (2 * radius + 1)
    support = expected > 0
    outside = int(observed[~support].sum())
    if support.sum() > 1:
        chi2, p = scipy.stats.chisquare(observed[support], expected[support] * observed[support].sum())
    else:
        chi2, p = 0.0, 1.0
    return OffsetCheck(
        radius=int(radius), n=int(n), count=int(observed.sum()), outside=outside, chi2=float(chi2), p_value=float(p)
    )


def is_exactly_balanced(loads: np.ndarray) -> bool:
    """True if the loads differ by at most one (``max - min <= 1``): the best any hash can do."""
    loads = np.asarray(loads)
    return bool(loads.size == 0 or int(loads.max()) - int(loads.min()) <= 1)


def modulus_balance_check(imap: IndexMap) -> list[bool]:
    """For each table, whether its pooled loads are exactly balanced (:func:`is_exactly_balanced`)."""
    return [is_exactly_balanced(table_loads(imap, t)) for t in range(len(imap.table_sizes))]
