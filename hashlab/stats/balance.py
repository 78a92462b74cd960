"""Balance, uniformity, sign, locality and degeneracy statistics of an index map: ``hashlab stats``.

Works on in-memory maps (:func:`hashlab.build_map`) and on index files (format v1, v2 or v3,
:func:`hashlab.load_index_file`); needs numpy, numba and scipy only.

Quick use::

    from hashlab import build_map, HashSpec, ARCHITECTURES
    from hashlab.stats import map_report, format_report
    rep = map_report(build_map(HashSpec(kind="dirichlet", alpha=0.1), ARCHITECTURES["mnist-mlp"]))
    print(format_report(rep))
    rep.total.entropy_nats, rep.layers[0].balance.chi2_p, rep.to_dict()  # JSON-ready

Definitions (``docs/STATS.md`` is the normative text)
------------------------------------------------------
*Load* of an entry: the number of non-zeroed virtual weights reading it (zeroed weights,
index ``-1``, are excluded and counted in the sparsity). *Entropy* (Chang & Lipson 2018,
eq. 7): ``H = -sum_e p_e ln p_e`` with ``p_e = load_e / sum(load)``, in nats; bits are
``H / ln 2``; ``H / ln n`` is 1 for a perfectly balanced table of ``n`` entries (a uniform table
of 1000 entries has ``ln 1000 = 6.91`` nats). Three scopes are reported:

* a *layer*: its loads over the ``n`` entries of the table it reads;
* a *table*: loads pooled over every layer that reads it (global maps share table 0);
* the *total*: loads over all ``(table, entry)`` pairs, i.e. the entropy of the entry read by a
  uniformly chosen non-zeroed weight of the network, normalised by ``ln`` (all entries).
  For per-layer maps it decomposes as ``H(table) + sum_t P(t) H_t`` (chain rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats

from .._version import __version__
from ..maps.indexmap import IndexMap
from . import kernels as SK
from . import theory
from .degeneracy import RANK_DRAWS, RANK_LIMIT, LayerDegeneracy, MapDegeneracy, layer_degeneracy
from .entropy import entropy_nats
from .locality import LayerLocality, default_thresholds, layer_locality, pool_locality

__all__ = [
    "STATS_SCHEMA",
    "STATS_VERSION",
    "BalanceStats",
    "SignStats",
    "LayerReport",
    "MapReport",
    "MapAnalyzer",
    "map_report",
    "balance_stats",
    "sign_stats",
    "expected_max_load",
    "entropy_nats",
]

STATS_SCHEMA = "hashlab.stats"
STATS_VERSION = 3  # 2: adds "degeneracy" (per layer and total); 3: adds "symmetry"; every older key is unchanged
LN2 = math.log(2.0)


def expected_max_load(balls: list[int], bins: list[int]) -> tuple[float, np.ndarray]:
    """Expected maximum load when ``balls[t]`` balls go uniformly into ``bins[t]`` bins, for each group t.

    Bins are treated as independent ``Binomial(balls[t], 1 / bins[t])`` (the standard
    approximation; exact as bins -> infinity, within 0.5 % of simulation for 50 bins or more,
    but about 1.5 % low for 3 bins, where the loads' negative dependence matters):
    ``P(max <= k) = prod_t Binom.cdf(k)**bins[t]`` and ``E[max] = sum_k (1 - P(max <= k))``.

    Parameters
    ----------
    balls, bins : lists of int of equal length; ``bins[t] >= 1``, ``balls[t] >= 0``

    Returns
    -------
    expected : float
    cdf : ndarray of float64
        ``cdf[k] = P(max <= k)`` for ``k = 0 .. K`` where ``cdf[K]`` is 1 to double precision.
    """
    if len(balls) != len(bins) or any(b < 1 for b in bins) or any(m < 0 for m in balls):
        raise ValueError(f"expected_max_load needs equal-length balls >= 0 and bins >= 1, got {balls}, {bins}")
    # Bernstein bound: outside mean +- t a bin's tail is below 1e-18 / n, so P(max <= k) is 0
    # (below the window) or 1 (above it) to double precision; only the window is evaluated.
    klo, khi = None, 0
    for m, n in zip(balls, bins):
        if m > 0:
            mu = m / n
            big_l = math.log(n) + 18 * math.log(10)
            t = math.sqrt(2 * mu * big_l) + 2 * big_l / 3 + 2
            klo = int(max(0, mu - t)) if klo is None else max(klo, int(max(0, mu - t)))
            khi = max(khi, int(min(m, mu + t)) + 1)
    if klo is None:  # no balls at all
        return 0.0, np.ones(1)
    klo = min(klo, khi)
    k = np.arange(klo, khi + 1)
    logcdf = np.zeros(k.size)
    for m, n in zip(balls, bins):
        if m > 0:
            logcdf += n * scipy.stats.binom.logcdf(k, m, 1.0 / n)
    cdf = np.concatenate([np.zeros(klo), np.exp(logcdf)])
    cdf[-1] = 1.0
    return float((1.0 - cdf).sum()), cdf


@dataclass
class SignStats:
    """Balance of the sign hash xi in {-1, +1} over non-zeroed weights.

    Attributes
    ----------
    plus, minus : int
        Weights with xi = +1 / -1.
    fraction_plus : float
    binom_p : float
        Two-sided exact binomial test of ``P(+1) = 1/2`` (``scipy.stats.binomtest``).
    entry_chi2 : float
        ``sum_e S_e**2 / L_e`` over entries with load ``L_e > 0``, where ``S_e`` is the sum of
        the signs of the weights reading entry ``e``. For independent fair signs each term
        is approximately chi-square with 1 degree of freedom.
    entry_dof : int
        Entries with ``L_e > 0``.
    entry_chi2_p : float
        ``scipy.stats.chi2.sf(entry_chi2, entry_dof)``.
    """

    plus: int
    minus: int
    fraction_plus: float
    binom_p: float
    entry_chi2: float
    entry_dof: int
    entry_chi2_p: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_num(v) for k, v in self.__dict__.items()}


def sign_stats(sign_sums: np.ndarray, loads: np.ndarray) -> SignStats:
    """Sign balance from per-entry sign sums and loads (see :class:`SignStats`).

    Parameters
    ----------
    sign_sums : ndarray of int64, shape (n,)
    loads : ndarray of int64, shape (n,)
    """
    total = int(loads.sum())
    plus = int((total + int(sign_sums.sum())) // 2)
    minus = total - plus
    used = loads > 0
    chi = float((sign_sums[used].astype(np.float64) ** 2 / loads[used]).sum())
    dof = int(used.sum())
    return SignStats(
        plus=plus,
        minus=minus,
        fraction_plus=plus / total if total else float("nan"),
        binom_p=float(scipy.stats.binomtest(plus, total, 0.5).pvalue) if total else float("nan"),
        entry_chi2=chi,
        entry_dof=dof,
        entry_chi2_p=float(scipy.stats.chi2.sf(chi, dof)) if dof else float("nan"),
    )


@dataclass
class BalanceStats:
    """Usage statistics of a layer, a table, or the whole network.

    Attributes
    ----------
    name : str
    num_weights : int
        Virtual weights, zeroed ones included.
    zeroed : int
        Weights with index -1.
    num_entries : int
        Entries the usage is spread over (``n`` for a layer or table; all entries for the total).
    loads : ndarray of int64, shape (num_entries,)
        Non-zeroed weights reading each entry (for the total: tables concatenated in order).
    groups : list of int
        Sizes of the tables ``loads`` concatenates (one group for a layer or a table).
    nonzero, sparsity, compression_ratio, load_factor : see :meth:`to_dict`
    entropy_nats, entropy_bits, entropy_normalized, effective_entries : float
        ``H``, ``H / ln 2``, ``H / ln(num_entries)`` (1.0 if ``num_entries == 1``), ``exp(H)``.
    min_load, max_load : int
    mean_load : float
        ``nonzero / num_entries`` (the load factor).
    empty_entries : int
    expected_max_load : float
        Balls-into-bins expectation of ``max_load`` under a uniform hash with the same
        non-zeroed weights per group (:func:`expected_max_load`).
    max_load_p : float
        ``P(max >= max_load)`` under that model.
    chi2, chi2_p, g, g_p : float
        Pearson chi-square and G (log-likelihood ratio) statistics of uniform usage within
        each group (``scipy.stats.chisquare`` / ``power_divergence``), summed over groups,
        with p-values from ``chi2.sf(stat, dof)``; NaN when undefined.
    dof : int
        ``sum(groups) - len(groups)``.
    sign : SignStats or None
    table : int or None
        The table's number for the loads of one table pooled over its layers; None for a layer or
        the total (a layer's table is :attr:`LayerReport.table`).
    """

    name: str
    num_weights: int
    zeroed: int
    num_entries: int
    loads: np.ndarray
    groups: list[int]
    entropy_nats: float
    min_load: int
    max_load: int
    empty_entries: int
    expected_max_load: float
    max_load_p: float
    chi2: float
    chi2_p: float
    g: float
    g_p: float
    dof: int
    sign: SignStats | None = None
    table: int | None = None

    @property
    def nonzero(self) -> int:
        return self.num_weights - self.zeroed

    @property
    def sparsity(self) -> float:
        """Realized sparsity: ``zeroed / num_weights``."""
        return self.zeroed / self.num_weights if self.num_weights else 0.0

    @property
    def compression_ratio(self) -> float:
        """``num_weights / num_entries`` (virtual weights per table entry)."""
        return self.num_weights / self.num_entries

    @property
    def mean_load(self) -> float:
        """Load factor: non-zeroed weights per entry."""
        return self.nonzero / self.num_entries

    load_factor = mean_load

    @property
    def entropy_bits(self) -> float:
        return self.entropy_nats / LN2

    @property
    def entropy_normalized(self) -> float:
        return self.entropy_nats / math.log(self.num_entries) if self.num_entries > 1 else 1.0

    @property
    def effective_entries(self) -> float:
        """``exp(H)``: entries a perfectly balanced table would need for the same entropy."""
        return math.exp(self.entropy_nats)

    def load_histogram(self) -> np.ndarray:
        """``h[k]`` = entries with load ``k`` (int64, length ``max_load + 1``)."""
        return np.bincount(self.loads)

    def to_dict(self, include_loads: bool = False) -> dict[str, Any]:
        """Tidy JSON-ready dict (schema in ``docs/STATS.md``)."""
        h = self.load_histogram()
        d = {
            "name": self.name,
            "num_weights": self.num_weights,
            "zeroed": self.zeroed,
            "nonzero": self.nonzero,
            "num_entries": self.num_entries,
            "groups": list(self.groups),
            "sparsity": self.sparsity,
            "compression_ratio": self.compression_ratio,
            "load_factor": self.mean_load,
            "entropy": {
                "nats": self.entropy_nats,
                "bits": self.entropy_bits,
                "normalized": self.entropy_normalized,
                "effective_entries": self.effective_entries,
                "max_nats": math.log(self.num_entries),
            },
            "load": {
                "min": self.min_load,
                "mean": self.mean_load,
                "max": self.max_load,
                "empty_entries": self.empty_entries,
                "expected_max_uniform": self.expected_max_load,
                "max_tail_p": self.max_load_p,
                "histogram": [[int(k), int(c)] for k, c in enumerate(h) if c],
            },
            "uniformity": {"chi2": self.chi2, "chi2_p": self.chi2_p, "g": self.g, "g_p": self.g_p, "dof": self.dof},
            "sign": self.sign.to_dict() if self.sign is not None else None,
        }
        if include_loads:
            d["loads"] = [int(x) for x in self.loads]
        return _json_clean(d)


def balance_stats(
    name: str,
    loads: np.ndarray,
    zeroed: int,
    groups: list[int] | None = None,
    sign_sums: np.ndarray | None = None,
    table: int | None = None,
) -> BalanceStats:
    """Compute :class:`BalanceStats` from loads.

    Parameters
    ----------
    name : str
    loads : ndarray of int64, shape (num_entries,)
    zeroed : int
        Zeroed weights (they add to ``num_weights`` but not to any load).
    groups : list of int, optional
        Sizes of the consecutive tables in ``loads`` (uniformity is tested within each);
        default one group.
    sign_sums : ndarray of int64, shape (num_entries,), optional
        Per-entry sums of the sign hash, if the map has one.
    table : int, optional
        The table's number when ``loads`` are one table's (stored as :attr:`BalanceStats.table`).

    Raises
    ------
    ValueError
        If ``groups`` does not add up to ``len(loads)`` or loads are negative.
    """
    loads = np.asarray(loads, dtype=np.int64)
    groups = [int(loads.size)] if groups is None else [int(g) for g in groups]
    if sum(groups) != loads.size or any(g < 1 for g in groups):
        raise ValueError(f"groups {groups} must be positive and add up to the {loads.size} loads")
    if loads.size and loads.min() < 0:
        raise ValueError("loads must be non-negative")
    chi = g = 0.0
    bounds = np.cumsum([0] + groups)
    balls = []
    defined = True
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = loads[a:b]
        balls.append(int(seg.sum()))
        if seg.sum() == 0 or seg.size < 2:
            defined = defined and seg.size >= 2 and seg.sum() > 0
            continue
        chi += float(scipy.stats.chisquare(seg).statistic)
        g += float(scipy.stats.power_divergence(seg, lambda_="log-likelihood").statistic)
    dof = int(loads.size - len(groups))
    if defined and dof > 0:
        chi_p, g_p = float(scipy.stats.chi2.sf(chi, dof)), float(scipy.stats.chi2.sf(g, dof))
    else:
        chi = g = chi_p = g_p = float("nan")
    exp_max, cdf = expected_max_load(balls, groups)
    mx = int(loads.max()) if loads.size else 0
    tail = 1.0 - (cdf[mx - 1] if 1 <= mx <= len(cdf) else (0.0 if mx < 1 else 1.0))
    return BalanceStats(
        name=name,
        num_weights=int(loads.sum()) + int(zeroed),
        zeroed=int(zeroed),
        num_entries=int(loads.size),
        loads=loads,
        groups=groups,
        entropy_nats=entropy_nats(loads),
        min_load=int(loads.min()) if loads.size else 0,
        max_load=mx,
        empty_entries=int((loads == 0).sum()),
        expected_max_load=exp_max,
        max_load_p=float(tail),
        chi2=chi,
        chi2_p=chi_p,
        g=g,
        g_p=g_p,
        dof=dof,
        sign=sign_stats(sign_sums, loads) if sign_sums is not None else None,
        table=table,
    )


@dataclass
class LayerReport:
    """One layer: geometry, balance over its table, locality and degeneracy (if computed)."""

    name: str
    out_features: int
    in_features: int
    table: int
    balance: BalanceStats
    locality: LayerLocality | None = None
    degeneracy: LayerDegeneracy | None = None

    def to_dict(self, include_loads: bool = False) -> dict[str, Any]:
        return {
            "name": self.name,
            "out_features": self.out_features,
            "in_features": self.in_features,
            "table": self.table,
            "balance": self.balance.to_dict(include_loads),
            "locality": None
            if self.locality is None
            else {"id": self.locality.id.to_dict(), "grid": self.locality.grid.to_dict()},
            "degeneracy": None if self.degeneracy is None else self.degeneracy.to_dict(),
        }


@dataclass
class MapReport:
    """Everything ``hashlab stats`` reports about one map. ``to_dict()`` is the JSON schema v3.

    ``symmetry`` is not computed here (the stats stage does not import ``hashlab.equiv``): ``hashlab stats``
    attaches :func:`hashlab.equiv.symmetry.map_symmetry`'s result, any object with ``to_dict()`` and
    ``lines()``; a report without one writes ``"symmetry": null``.
    """

    spec: dict[str, Any]
    table_sizes: tuple[int, ...]
    layers: list[LayerReport]
    tables: list[BalanceStats]
    total: BalanceStats
    locality: LayerLocality | None = None
    source: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: balance_s (load counting), tests_s
    # (entropy, uniformity tests, E[max]), locality_s, degeneracy_s, theory_s: whichever were computed
    theory: dict[str, Any] | None = None
    degeneracy: MapDegeneracy | None = None
    symmetry: Any = None  # hashlab.equiv.symmetry.MapSymmetry, attached by `hashlab stats`

    def to_dict(self, include_loads: bool = False) -> dict[str, Any]:
        """JSON-ready dict: ``{"schema": "hashlab.stats", "version": 3, ...}`` (see ``docs/STATS.md``)."""
        return {
            "schema": STATS_SCHEMA,
            "version": STATS_VERSION,
            "hashlab_version": __version__,
            "source": self.source,
            "spec": self.spec,
            "table_sizes": list(self.table_sizes),
            "layers": [lay.to_dict(include_loads) for lay in self.layers],
            "tables": [t.to_dict(include_loads) for t in self.tables],
            "total": self.total.to_dict(include_loads=False),
            "locality": None
            if self.locality is None
            else {"id": self.locality.id.to_dict(), "grid": self.locality.grid.to_dict()},
            "theory": self.theory,
            "degeneracy": None if self.degeneracy is None else self.degeneracy.to_dict(),
            "symmetry": None if self.symmetry is None else _json_clean(self.symmetry.to_dict()),
        }


def theory_checks(imap: IndexMap, backend: str = "numba") -> dict[str, Any] | None:
    """Checks from :mod:`hashlab.stats.theory` that apply to the map's recorded hash kind, as a dict.

    ``dirichlet``: per-table entropy against the Dirichlet expectations; ``neighborhood``: the
    offset test (its residue histogram counted by the ``backend`` kernel; both give the same
    counts); ``modulus``: exact balance. None for other kinds or maps without a spec.
    """
    kind = imap.spec.get("kind")
    try:
        if kind == "dirichlet" and imap.spec.get("alpha") is not None:
            return {"kind": kind, "dirichlet": [c.to_dict() for c in theory.dirichlet_entropy_check(imap)]}
        if kind == "neighborhood" and imap.spec.get("radius") is not None and len(set(imap.table_sizes)) == 1:
            return {"kind": kind, "offsets": theory.neighborhood_offset_check(imap, backend=backend).to_dict()}
        if kind == "modulus":
            return {"kind": kind, "exactly_balanced": theory.modulus_balance_check(imap)}
    except (ValueError, KeyError, TypeError):  # a foreign or inconsistent spec: no theory section
        return None
    return None


class MapAnalyzer:
    """Compute a :class:`MapReport` (scikit-learn style: parameters here, work in :meth:`fit`).

    Parameters
    ----------
    locality : bool
        Also compute collision locality (:mod:`hashlab.stats.locality`). Default True.
    thresholds : array-like of int, optional
        Distances of the locality curves; default powers of two up to the largest layer.
    backend : {"numba", "numpy"}
        Kernels (:mod:`hashlab.stats.kernels`); both give identical results.
    theory : bool
        Add the :func:`theory_checks` that apply to the map's hash kind. Default True.
    degeneracy : bool
        Also count identical rows and columns and the rank bound
        (:mod:`hashlab.stats.degeneracy`). Default True.
    rank_limit, rank_draws : int
        Random-table rank only for layers whose distinct-rows x distinct-columns submatrix has at
        most ``rank_limit`` entries (default 2**20), maximised over ``rank_draws`` seeded draws.

    Attributes
    ----------
    report_ : MapReport
    layers_, tables_, total_, locality_, theory_, degeneracy_ : the report's parts
    """

    def __init__(
        self,
        locality: bool = True,
        thresholds=None,
        backend: str = "numba",
        theory: bool = True,
        degeneracy: bool = True,
        rank_limit: int = RANK_LIMIT,
        rank_draws: int = RANK_DRAWS,
    ) -> None:
        self.locality = locality
        self.thresholds = thresholds
        self.backend = backend
        self.theory = theory
        self.degeneracy = degeneracy
        self.rank_limit = rank_limit
        self.rank_draws = rank_draws

    def fit(self, imap: IndexMap, source: str | None = None) -> MapAnalyzer:
        """Analyse ``imap``.

        Raises
        ------
        ValueError
            If ``imap`` is not an :class:`~hashlab.maps.indexmap.IndexMap`, its indices are out of
            range, or ``backend`` is unknown.
        """
        import time

        if not isinstance(imap, IndexMap):
            raise ValueError(
                f"expected an IndexMap, got {type(imap).__name__}; load one with "
                "hashlab.load_index_file(path) or build one with hashlab.build_map(...)"
            )
        if self.degeneracy and (int(self.rank_limit) < 0 or int(self.rank_draws) < 1):
            raise ValueError(f"need rank_limit >= 0 and rank_draws >= 1, got {self.rank_limit}, {self.rank_draws}")
        kern = SK.kernels(self.backend)
        t0 = time.perf_counter()
        t_tests = 0.0  # entropy, uniformity tests, max-load expectation (balance_stats), inside balance_s

        def stats(*args, **kwargs) -> BalanceStats:
            nonlocal t_tests
            ts = time.perf_counter()
            out = balance_stats(*args, **kwargs)
            t_tests += time.perf_counter() - ts
            return out

        ntab = len(imap.table_sizes)
        tab_loads = [np.zeros(n, np.int64) for n in imap.table_sizes]
        tab_signs: list[np.ndarray | None] = [None] * ntab
        tab_zero = [0] * ntab
        layers = []
        for lay in imap.layers:
            n = imap.table_sizes[lay.table]
            flat = lay.indices.reshape(-1)
            loads, zeroed = kern.loads(flat, n)
            if loads.sum() + zeroed != flat.size:
                raise ValueError(
                    f"layer {lay.name!r}: indices outside [-1, {n}); run IndexMap.validate() to locate them"
                )
            sums = kern.sign_sums(flat, lay.sign.reshape(-1), n) if lay.sign is not None else None
            tab_loads[lay.table] += loads
            tab_zero[lay.table] += zeroed
            if sums is not None:
                tab_signs[lay.table] = sums if tab_signs[lay.table] is None else tab_signs[lay.table] + sums
            layers.append(
                LayerReport(
                    lay.name,
                    lay.out_features,
                    lay.in_features,
                    lay.table,
                    stats(lay.name, loads, zeroed, sign_sums=sums),
                )
            )
        tables = [stats(f"table {t}", tab_loads[t], tab_zero[t], sign_sums=tab_signs[t], table=t) for t in range(ntab)]
        has_sign = any(s is not None for s in tab_signs)
        total = stats(
            "total",
            np.concatenate(tab_loads),
            sum(tab_zero),
            groups=list(imap.table_sizes),
            sign_sums=np.concatenate(
                [s if s is not None else np.zeros(n, np.int64) for s, n in zip(tab_signs, imap.table_sizes)]
            )
            if has_sign
            else None,
        )
        if has_sign and not all(lay.sign is not None for lay in imap.layers):
            total.sign = None  # mixed: per-layer sign stats only
        timings = {"balance_s": time.perf_counter() - t0 - t_tests, "tests_s": t_tests}
        pooled = None
        if self.locality:
            t1 = time.perf_counter()
            th = (
                np.asarray(self.thresholds, dtype=np.int64)
                if self.thresholds is not None
                else default_thresholds(max(lay.num_weights for lay in imap.layers) - 1)
            )
            locs = [
                layer_locality(lay.name, lay.indices, imap.table_sizes[lay.table], th, self.backend)
                for lay in imap.layers
            ]
            for rep, loc in zip(layers, locs):
                rep.locality = loc
            pooled = LayerLocality(
                id=pool_locality([loc.id for loc in locs]), grid=pool_locality([loc.grid for loc in locs])
            )
            timings["locality_s"] = time.perf_counter() - t1
        deg = None
        if self.degeneracy:
            t2 = time.perf_counter()
            degs = [
                layer_degeneracy(lay, self.rank_limit, self.rank_draws, backend=self.backend) for lay in imap.layers
            ]
            for rep, d in zip(layers, degs):
                rep.degeneracy = d
            deg = MapDegeneracy(degs, self.rank_limit, self.rank_draws)
            timings["degeneracy_s"] = time.perf_counter() - t2
        if self.theory:
            t3 = time.perf_counter()
            self.theory_ = theory_checks(imap, self.backend)
            timings["theory_s"] = time.perf_counter() - t3
        else:
            self.theory_ = None
        self.layers_, self.tables_, self.total_, self.locality_ = layers, tables, total, pooled
        self.degeneracy_ = deg
        self.report_ = MapReport(
            spec=dict(imap.spec),
            table_sizes=imap.table_sizes,
            layers=layers,
            tables=tables,
            total=total,
            locality=pooled,
            source=source,
            timings=timings,
            theory=self.theory_,
            degeneracy=deg,
        )
        return self


def map_report(
    imap: IndexMap,
    locality: bool = True,
    thresholds=None,
    backend: str = "numba",
    source: str | None = None,
    theory: bool = True,
    degeneracy: bool = True,
    rank_limit: int = RANK_LIMIT,
    rank_draws: int = RANK_DRAWS,
) -> MapReport:
    """``MapAnalyzer(locality, ..., rank_draws).fit(imap, source).report_`` (same parameters)."""
    return (
        MapAnalyzer(
            locality=locality,
            thresholds=thresholds,
            backend=backend,
            theory=theory,
            degeneracy=degeneracy,
            rank_limit=rank_limit,
            rank_draws=rank_draws,
        )
        .fit(imap, source)
        .report_
    )


# --------------------------------------------------------------------------- JSON helpers
def _json_num(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return _json_num(obj)
