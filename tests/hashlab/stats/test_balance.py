"""Balance statistics checked against independent computations (scipy.stats, direct numpy formulas)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import (
    ARCHITECTURES,
    Architecture,
    HashSpec,
    IndexMap,
    LayerMap,
    LayerShape,
    build_map,
    build_model_map,
    index_dtype,
)
from hashlab.stats import (
    STATS_SCHEMA,
    STATS_VERSION,
    balance_stats,
    entropy_nats,
    expected_max_load,
    format_report,
    map_report,
)


@st.composite
def index_maps(draw):
    """Random maps: 1-3 layers, per-layer or one global table, zeroed weights, optional sign hash."""
    nlayers = draw(st.integers(1, 3))
    shapes = [(draw(st.integers(1, 9)), draw(st.integers(1, 9))) for _ in range(nlayers)]
    glob = draw(st.booleans())
    sizes = [draw(st.integers(1, 30))] if glob else [draw(st.integers(1, 30)) for _ in range(nlayers)]
    signed = draw(st.booleans())
    layers = []
    for k, (o, i) in enumerate(shapes):
        t = 0 if glob else k
        n = sizes[t]
        vals = draw(st.lists(st.integers(-1, n - 1), min_size=o * i, max_size=o * i))
        sign = None
        if signed:
            sign = np.array(
                draw(st.lists(st.sampled_from([-1, 1]), min_size=o * i, max_size=o * i)), dtype=np.int8
            ).reshape(o, i)
        layers.append(LayerMap(f"l{k}", np.array(vals, dtype=index_dtype(n)).reshape(o, i), t, sign=sign))
    return IndexMap(tuple(layers), tuple(sizes))


def direct_loads(imap, k):
    lay = imap.layers[k]
    n = imap.table_sizes[lay.table]
    return np.array([int((lay.indices == e).sum()) for e in range(n)])


def uniformity(loads):
    """Pearson chi-square and G statistics written out (E = mean load)."""
    o = loads.astype(float)
    e = o.sum() / o.size
    chi = ((o - e) ** 2 / e).sum()
    g = 2 * (o[o > 0] * np.log(o[o > 0] / e)).sum()
    return chi, g


@settings(max_examples=60)
@given(index_maps())
def test_layer_table_and_total_statistics_match_independent_formulas(imap):
    rep = map_report(imap, locality=False)
    pooled = [np.zeros(n, int) for n in imap.table_sizes]
    for k, lay in enumerate(imap.layers):
        b = rep.layers[k].balance
        loads = direct_loads(imap, k)
        pooled[lay.table] += loads
        np.testing.assert_array_equal(b.loads, loads)
        zeroed = int((lay.indices == -1).sum())
        assert (b.zeroed, b.num_weights, b.nonzero) == (zeroed, lay.num_weights, lay.num_weights - zeroed)
        assert b.sparsity == pytest.approx(zeroed / lay.num_weights)
        assert b.compression_ratio == pytest.approx(lay.num_weights / loads.size)
        assert (b.min_load, b.max_load, b.empty_entries) == (loads.min(), loads.max(), int((loads == 0).sum()))
        assert b.mean_load == pytest.approx(loads.sum() / loads.size)
        if loads.sum():
            assert b.entropy_nats == pytest.approx(scipy.stats.entropy(loads), abs=1e-12)
            assert b.entropy_bits == pytest.approx(scipy.stats.entropy(loads, base=2), abs=1e-12)
        else:
            assert b.entropy_nats == 0.0
        if loads.sum() and loads.size > 1:
            chi, g = uniformity(loads)
            assert b.chi2 == pytest.approx(chi, rel=1e-9, abs=1e-9)
            assert b.g == pytest.approx(g, rel=1e-9, abs=1e-9)
            assert b.chi2_p == pytest.approx(scipy.stats.chi2.sf(chi, loads.size - 1), rel=1e-9, abs=1e-12)
            assert b.g_p == pytest.approx(scipy.stats.chi2.sf(g, loads.size - 1), rel=1e-9, abs=1e-12)
        else:
            assert math.isnan(b.chi2_p)
        if lay.sign is not None:
            keep = lay.indices >= 0
            plus = int((lay.sign[keep] == 1).sum())
            assert (b.sign.plus, b.sign.minus) == (plus, int(keep.sum()) - plus)
            sums = np.array([int(lay.sign[lay.indices == e].sum()) for e in range(loads.size)])
            used = loads > 0
            assert b.sign.entry_chi2 == pytest.approx((sums[used] ** 2 / loads[used]).sum())
    allpairs = np.concatenate(pooled)
    for t, tb in enumerate(rep.tables):
        np.testing.assert_array_equal(tb.loads, pooled[t])
    np.testing.assert_array_equal(rep.total.loads, allpairs)
    assert rep.total.num_weights == imap.num_weights
    assert rep.total.compression_ratio == pytest.approx(imap.compression_ratio)
    if allpairs.sum():
        assert rep.total.entropy_nats == pytest.approx(scipy.stats.entropy(allpairs), abs=1e-12)
    parts = [uniformity(p) for p in pooled if p.sum() and p.size > 1]
    if len(parts) == len(pooled) and parts:
        assert rep.total.chi2 == pytest.approx(sum(c for c, _ in parts), rel=1e-9, abs=1e-9)
    assert json.dumps(rep.to_dict(include_loads=True), allow_nan=False)


def test_total_entropy_obeys_the_chain_rule_over_tables():
    imap = build_map(HashSpec(kind="dirichlet", alpha=0.5, table_size=300), ARCHITECTURES["mnist-mlp"])
    rep = map_report(imap, locality=False)
    m = np.array([t.nonzero for t in rep.tables], dtype=float)
    pt = m / m.sum()
    chain = scipy.stats.entropy(pt) + sum(p * t.entropy_nats for p, t in zip(pt, rep.tables))
    assert rep.total.entropy_nats == pytest.approx(chain, abs=1e-12)


def test_global_map_total_is_the_shared_table():
    imap = build_map(HashSpec(kind="uniform", table_size=500, scope="global"), ARCHITECTURES["mnist-mlp"])
    rep = map_report(imap, locality=False)
    assert len(rep.tables) == 1
    np.testing.assert_array_equal(rep.total.loads, sum(lay.balance.loads for lay in rep.layers))
    assert rep.total.entropy_nats == pytest.approx(rep.tables[0].entropy_nats)
    assert rep.total.entropy_nats == pytest.approx(math.log(500), abs=0.01)


def test_uniform_table_of_1000_has_ln_1000_nats():
    """A modulus map over 200 x 1000 weights uses each of 1000 entries exactly 200 times: 6.91 nats."""
    imap = build_map(HashSpec(kind="modulus", table_size=1000), Architecture((1000, 200)))
    rep = map_report(imap, locality=False)
    b = rep.layers[0].balance
    assert b.entropy_nats == pytest.approx(math.log(1000), abs=1e-12)
    assert b.entropy_bits == pytest.approx(math.log2(1000), abs=1e-12)
    assert b.entropy_normalized == pytest.approx(1.0)
    assert b.chi2 == 0.0 and b.chi2_p == 1.0
    assert "6.908" in format_report(rep)


def test_sparsity_is_realized_and_zeroed_weights_read_no_entry():
    imap = build_map(HashSpec(kind="uniform", table_size=100, sparsity=0.3), Architecture((50, 40, 20)))
    rep = map_report(imap, locality=False)
    for lay, r in zip(imap.layers, rep.layers):
        assert r.balance.zeroed == round(0.3 * lay.num_weights)
        assert r.balance.loads.sum() == lay.num_weights - r.balance.zeroed
    assert rep.total.sparsity == pytest.approx(sum(r.balance.zeroed for r in rep.layers) / imap.num_weights)


MAX_LOAD_CASES = [
    pytest.param(2000, 1000, id="2000-balls-1000-bins"),
    pytest.param(156_800, 1000, id="mnist-fc0"),
    pytest.param(50, 200, id="fewer-balls-than-bins"),
    pytest.param(1000, 100, id="1000-balls-100-bins"),
]


@pytest.mark.parametrize("balls, bins", MAX_LOAD_CASES)
def test_expected_max_load_matches_simulation(balls, bins):
    rng = np.random.default_rng(7)
    sims = np.array([rng.multinomial(balls, np.full(bins, 1 / bins)).max() for _ in range(3000)])
    expected, cdf = expected_max_load([balls], [bins])
    assert expected == pytest.approx(sims.mean(), rel=0.01)
    assert cdf[-1] == 1.0 and np.all(np.diff(cdf) >= 0)


def test_expected_max_load_rejects_bad_input():
    with pytest.raises(ValueError, match="bins >= 1"):
        expected_max_load([10], [0])


def test_balance_stats_rejects_groups_that_do_not_add_up():
    with pytest.raises(ValueError, match="add up"):
        balance_stats("x", np.ones(5, np.int64), 0, groups=[2, 2])


def test_entropy_of_empty_usage_is_zero():
    assert entropy_nats(np.zeros(4)) == 0.0


def test_numba_and_numpy_backends_give_the_same_report():
    imap = build_map(
        HashSpec(kind="dirichlet", alpha=0.3, table_size=64, sparsity=0.1, sign=True), Architecture((30, 20, 9))
    )
    a = map_report(imap, backend="numba").to_dict(include_loads=True)
    b = map_report(imap, backend="numpy").to_dict(include_loads=True)
    assert a == b


def test_json_schema_has_version_and_is_strict_json():
    imap = build_map(HashSpec(kind="xxhash", table_size=50, sign=True), Architecture((12, 8, 3)))
    d = map_report(imap).to_dict()
    assert (d["schema"], d["version"]) == (STATS_SCHEMA, STATS_VERSION)
    assert set(d) >= {"spec", "table_sizes", "layers", "tables", "total", "locality", "theory"}
    lay = d["layers"][0]
    assert set(lay["balance"]) >= {"entropy", "load", "uniformity", "sign", "sparsity", "compression_ratio"}
    assert lay["balance"]["sign"]["plus"] + lay["balance"]["sign"]["minus"] == 96
    assert lay["locality"]["id"]["metric"] == "id" and lay["locality"]["grid"]["metric"] == "grid"
    json.dumps(d, allow_nan=False)


def test_map_report_rejects_non_maps_with_a_fix():
    with pytest.raises(ValueError, match="load_index_file"):
        map_report("model.safetensors")


def test_report_timings_name_every_part_computed():
    """``MapReport.timings`` (the breakdown benchmarks/bench_stats.py prints) splits counting from the tests."""
    rep = map_report(build_map(HashSpec(kind="uniform", table_size=50), Architecture.parse("30-20-10")))
    assert set(rep.timings) == {"balance_s", "tests_s", "locality_s", "degeneracy_s", "theory_s"}
    assert all(v >= 0 for v in rep.timings.values())
    rep = map_report(
        build_map(HashSpec(kind="uniform", table_size=50), Architecture.parse("30-20-10")),
        locality=False,
        degeneracy=False,
        theory=False,
    )
    assert set(rep.timings) == {"balance_s", "tests_s"}


def test_the_report_of_a_model_map_names_its_layers():
    shapes = [LayerShape("embedding", (30, 4), "emb"), LayerShape("conv2d", (6, 2, 3, 3), "conv")]
    spec = HashSpec(kind="block", block_size=2, table_size=11, sign=True)
    text = format_report(map_report(build_model_map(spec, shapes, budgets={"conv": 9})))
    assert "block(block=2), table_size 11" in text
    assert "architecture embedding 30x4, conv2d 6x2x3x3; per-layer budgets [None, 9]" in text
