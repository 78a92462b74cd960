"""Theory checks: Dirichlet entropy, Neighborhood offsets, Modulus balance, Uniform p-values over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from hashlab import ARCHITECTURES, Architecture, HashSpec, build_map
from hashlab.stats import map_report
from hashlab.stats.kernels import kernels
from hashlab.stats.offset_kernels import _residue_kernel, offset_residues_nb, offset_residues_ref
from hashlab.stats.theory import (
    dirichlet_entropy_check,
    dirichlet_entropy_sd,
    dirichlet_expected_entropy,
    dirichlet_multinomial_expected_entropy,
    is_exactly_balanced,
    modulus_balance_check,
    neighborhood_offset_check,
    neighborhood_offsets,
    plugin_entropy_sd,
    simulate_plugin_entropy,
)

ALPHAS = [pytest.param(a, id=f"alpha={a:g}") for a in (0.01, 0.1, 1.0, 10.0, 100.0)]


def entropy_rows(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_dirichlet_entropy_mean_and_sd_match_simulation(alpha):
    n, draws = 1000, 3000
    h = entropy_rows(np.random.default_rng(1).dirichlet(np.full(n, alpha), size=draws))
    mean, sd = dirichlet_expected_entropy(n, alpha), dirichlet_entropy_sd(n, alpha)
    assert abs(h.mean() - mean) < 4 * sd / math.sqrt(draws)
    assert h.std(ddof=1) == pytest.approx(sd, rel=0.08)


def test_dirichlet_expected_entropy_limits():
    assert dirichlet_expected_entropy(1000, 1e6) == pytest.approx(math.log(1000), abs=1e-3)
    assert dirichlet_expected_entropy(1000, 1e-6) < 0.01
    assert dirichlet_expected_entropy(1, 3.0) == 0.0
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_expected_entropy(10, 0.0)


@pytest.mark.parametrize("m, n, alpha", [(200, 100, 0.3), (5000, 1000, 1.0), (2000, 1000, 100.0)])
def test_dirichlet_multinomial_plugin_entropy_matches_simulation(m, n, alpha):
    rng = np.random.default_rng(3)
    counts = np.array([rng.multinomial(m, rng.dirichlet(np.full(n, alpha))) for _ in range(2000)])
    h = entropy_rows(counts / m)
    assert dirichlet_multinomial_expected_entropy(m, n, alpha) == pytest.approx(
        h.mean(), abs=4 * h.std() / math.sqrt(2000)
    )


def test_simulated_plugin_entropy_is_seeded():
    p = np.full(10, 0.1)
    assert simulate_plugin_entropy(p, 50, seed=4) == simulate_plugin_entropy(p, 50, seed=4)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_dirichlet_map_entropy_is_typical_for_its_alpha(alpha):
    """Each table's measured entropy lies within 4 sd of the Dirichlet-multinomial expectation."""
    imap = build_map(HashSpec(kind="dirichlet", alpha=alpha, table_size=1000, seed=11), ARCHITECTURES["mnist-mlp"])
    checks = dirichlet_entropy_check(imap, draws=50)
    assert [c.table for c in checks] == [0, 1, 2]
    for c in checks:
        assert abs(c.z_drawn) < 4 and abs(c.z_measured) < 4
        assert c.measured <= math.log(1000)


def test_dirichlet_check_needs_alpha():
    imap = build_map(HashSpec(kind="uniform", table_size=10), Architecture((4, 4)))
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_entropy_check(imap)


NEIGHBORHOOD_CASES = [
    pytest.param(0, "layer", 1000, id="r0-layer"),
    pytest.param(3, "layer", 1000, id="r3-layer"),
    pytest.param(500, "layer", 1000, id="r500-layer"),
    pytest.param(40, "global", 997, id="r40-global"),
    pytest.param(700, "layer", 1000, id="r700-folded"),
]


@pytest.mark.parametrize("radius, scope, n", NEIGHBORHOOD_CASES)
def test_neighborhood_offsets_are_uniform_on_minus_r_to_r(radius, scope, n):
    imap = build_map(
        HashSpec(kind="neighborhood", radius=radius, table_size=n, scope=scope, seed=5), ARCHITECTURES["mnist-mlp"]
    )
    check = neighborhood_offset_check(imap)
    assert check.outside == 0 and check.count == imap.num_weights
    assert check.p_value > 1e-4
    if 2 * radius + 1 <= n:
        off = neighborhood_offsets(imap, radius)
        assert off.min() >= -radius and off.max() <= radius
        if radius:
            counts = np.bincount(off + radius)
            assert scipy.stats.chisquare(counts).pvalue > 1e-4


@st.composite
def residue_layers(draw):
    """A flattened layer (int16/int32, zeroed weights mixed in), its table size and first identifier."""
    n = draw(st.integers(1, 40))
    size = draw(st.integers(0, 300))
    start = draw(st.integers(0, 10**6))
    style = draw(st.sampled_from(["random", "modulus", "neighborhood", "beyond"]))
    ids = np.arange(size) + start
    if style == "random":
        idx = np.array(draw(st.lists(st.integers(-1, n - 1), min_size=size, max_size=size)), np.int64)
    elif style == "modulus":  # residue 0 everywhere: the register-counting loop
        idx = ids % n
    elif style == "neighborhood":
        off = np.array(draw(st.lists(st.integers(-2, 2), min_size=size, max_size=size)), np.int64)
        idx = (ids + off) % n
    else:  # indices past the table still count by their residue
        idx = np.array(draw(st.lists(st.integers(-1, 3 * n), min_size=size, max_size=size)), np.int64)
    if size and draw(st.booleans()):
        idx[draw(st.integers(0, size - 1))] = -1
    return idx.astype(draw(st.sampled_from([np.int16, np.int32]))), n, start


@given(residue_layers())
def test_offset_residue_twins_agree_with_the_definition(layer):
    idx, n, start = layer
    got = offset_residues_nb(idx, n, start)
    ref = offset_residues_ref(idx, n, start)
    np.testing.assert_array_equal(got, ref)
    brute = np.zeros(n, np.int64)
    for i, v in enumerate(idx.tolist()):
        if v >= 0:
            brute[(v - start - i) % n] += 1
    np.testing.assert_array_equal(ref, brute)


@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("style", ["modulus", "mostly-modulus", "random"])
def test_offset_residue_kernel_is_exact_over_worker_splits_and_both_loops(threads, style):
    """Several 65,536-weight chunks per worker; probes that pick either loop, and a worker whose probe
    sees residue 0 but whose later weights do not."""
    n, size, start = 997, 400_000, 12_345
    rng = np.random.default_rng(threads)
    idx = (np.arange(size) + start) % n
    if style == "mostly-modulus":
        spots = rng.integers(0, size, 2000)
        idx[spots] = rng.integers(-1, n, spots.size)
        idx[200_000:] = rng.integers(0, n, size - 200_000)
    elif style == "random":
        idx = rng.integers(-1, n, size)
    idx = idx.astype(np.int16)
    np.testing.assert_array_equal(_residue_kernel(idx, n, start, threads), offset_residues_ref(idx, n, start))


@pytest.mark.parametrize(
    "radius, scope, sparsity", [(0, "layer", 0.0), (0, "global", 0.3), (2, "global", 0.0), (3, "layer", 0.5)]
)
def test_offset_check_is_the_same_through_both_kernels_and_the_offsets(radius, scope, sparsity):
    imap = build_map(
        HashSpec(kind="neighborhood", radius=radius, table_size=997, scope=scope, sparsity=sparsity, seed=2),
        ARCHITECTURES["mnist-mlp"],
    )
    fast = neighborhood_offset_check(imap)
    assert fast == neighborhood_offset_check(imap, backend="numpy")
    off = neighborhood_offsets(imap, radius)  # the public offsets give the same counts
    assert fast.count == off.size == int(sum((lay.indices >= 0).sum() for lay in imap.layers))
    assert fast.outside == 0
    rep = map_report(imap, locality=False, degeneracy=False, backend="numpy")
    assert rep.theory["offsets"] == map_report(imap, locality=False, degeneracy=False).theory["offsets"]
    with pytest.raises(ValueError, match="backend"):
        kernels("cuda")
    with pytest.raises(ValueError, match="1-D"):
        offset_residues_nb(imap.layers[0].indices, 997)


def test_offset_check_flags_a_map_that_is_not_a_neighborhood_hash():
    imap = build_map(HashSpec(kind="uniform", table_size=1000), ARCHITECTURES["mnist-mlp"])
    assert neighborhood_offset_check(imap, radius=5).outside > 0.9 * imap.num_weights


MODULUS_CASES = [
    pytest.param(1000, "layer", id="n1000-layer"),
    pytest.param(777, "layer", id="n777-layer"),
    pytest.param(333, "global", id="n333-global"),
]


@pytest.mark.parametrize("n, scope", MODULUS_CASES)
def test_modulus_hash_is_exactly_balanced(n, scope):
    imap = build_map(HashSpec(kind="modulus", table_size=n, scope=scope), ARCHITECTURES["mnist-mlp"])
    assert all(modulus_balance_check(imap))
    rep = map_report(imap, locality=False)
    for b in rep.tables:
        assert b.max_load - b.min_load <= 1


def test_uniform_hash_is_not_exactly_balanced():
    imap = build_map(HashSpec(kind="uniform", table_size=1000), ARCHITECTURES["mnist-mlp"])
    assert not any(modulus_balance_check(imap))
    assert is_exactly_balanced(np.array([3, 4, 4])) and not is_exactly_balanced(np.array([3, 5]))


def test_uniform_hash_chi2_p_values_are_not_extreme_over_seeds():
    """Over 40 seeds the chi-square p-values of a uniform hash look like draws from U(0, 1)."""
    arch = Architecture((200, 150))
    pvals = np.array(
        [
            map_report(
                build_map(HashSpec(kind="uniform", table_size=500, seed=s), arch),
                locality=False,
                theory=False,
                degeneracy=False,
            )
            .layers[0]
            .balance.chi2_p
            for s in range(40)
        ]
    )
    assert pvals.min() > 1e-4 and pvals.max() < 1 - 1e-4
    assert scipy.stats.kstest(pvals, "uniform").pvalue > 1e-3


def test_plugin_entropy_simulation_path_agrees_with_the_exact_sum():
    exact = dirichlet_multinomial_expected_entropy(20_000, 500, 0.2)
    simulated = dirichlet_multinomial_expected_entropy(20_000, 500, 0.2, draws=2000, seed=1, method="simulate")
    assert simulated == pytest.approx(exact, abs=4 * dirichlet_entropy_sd(500, 0.2) / math.sqrt(2000))


@pytest.mark.parametrize("alpha", [pytest.param(a, id=f"alpha={a:g}") for a in (0.001, 0.1, 1.0, 100.0)])
def test_plugin_entropy_asymptotic_mean_is_close_to_the_exact_sum(alpha):
    """The Miller-Madow path (used above max_exact) against the exact beta-binomial sum at m = 500,000,
    where the switch is: within 0.5 % of sd(H), far inside the 5 % standard error of the simulation it
    replaced (the error falls further with m)."""
    m, n = 500_000, 1000
    exact = dirichlet_multinomial_expected_entropy(m, n, alpha, method="exact")
    asym = dirichlet_multinomial_expected_entropy(m, n, alpha, max_exact=m - 1)
    assert asym == dirichlet_multinomial_expected_entropy(m, n, alpha, method="asymptotic")
    assert abs(asym - exact) < 0.005 * dirichlet_entropy_sd(n, alpha)
    assert abs(asym - exact) < 1.5e-3


@pytest.mark.parametrize("m, n, alpha", [(20_000, 1000, 1.0), (5_000_000, 1000, 1.0), (20_000, 500, 0.2)])
def test_plugin_entropy_asymptotic_mean_agrees_with_its_simulation_twin(m, n, alpha):
    simulated = dirichlet_multinomial_expected_entropy(m, n, alpha, draws=1000, seed=2, method="simulate")
    asym = dirichlet_multinomial_expected_entropy(m, n, alpha, method="asymptotic")
    assert asym == pytest.approx(simulated, abs=4 * dirichlet_entropy_sd(n, alpha) / math.sqrt(1000))


@pytest.mark.parametrize("alpha", [pytest.param(a, id=f"alpha={a:g}") for a in (0.1, 1.0, 100.0)])
@pytest.mark.parametrize("load", [20, 200, 5000])
def test_plugin_entropy_sd_matches_simulation(alpha, load):
    """The closed-form sd against its simulation twin, within the simulation's error (2,000 draws:
    the sd's relative standard error is about 1.6 %) plus the 1.5 % the expansion may be off."""
    n = 1000
    p = np.random.default_rng(5).dirichlet(np.full(n, alpha))
    _, sd_sim = simulate_plugin_entropy(p, load * n, draws=2000, seed=6)
    assert plugin_entropy_sd(p, load * n) == pytest.approx(sd_sim, rel=4 * 0.016 + 0.015)


def test_plugin_entropy_sd_of_a_uniform_p_is_the_chi_square_term():
    n, m = 100, 50_000
    assert plugin_entropy_sd(np.full(n, 1.0 / n), m) == pytest.approx(math.sqrt((n - 1) / 2) / m, rel=1e-9)
    with pytest.raises(ValueError, match="m"):
        plugin_entropy_sd(np.full(n, 1.0 / n), 0)


def test_plugin_method_is_checked():
    with pytest.raises(ValueError, match="method"):
        dirichlet_multinomial_expected_entropy(100, 10, 1.0, method="guess")


def test_dirichlet_check_switches_to_the_closed_form_sd_at_the_load_threshold():
    """MNIST MLP: layer 0 (156,800 weights on 1000 entries) takes the closed form, the last layer
    (2,000) the simulation; asymptotic_min_load=inf reproduces the all-simulated check."""
    imap = build_map(HashSpec(kind="dirichlet", alpha=1.0, table_size=1000, seed=11), ARCHITECTURES["mnist-mlp"])
    fast = dirichlet_entropy_check(imap, draws=50)
    sim = dirichlet_entropy_check(imap, draws=50, asymptotic_min_load=math.inf)
    assert fast[2].plugin_sd == sim[2].plugin_sd  # 2,000 weights: simulated either way
    for f, s in zip(fast[:2], sim[:2]):
        assert f.m >= 20 * f.n
        assert f.expected_plugin == s.expected_plugin
        assert f.plugin_sd == pytest.approx(s.plugin_sd, rel=4 / math.sqrt(2 * 49) + 0.015)
