"""Automorphism groups of sharing patterns: known answers, brute force on small patterns, bounds."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import ARCHITECTURES, HashSpec, IndexMap, LayerMap, build_map, index_dtype
from hashlab.equiv import (
    MapSymmetry,
    Refusal,
    SymmetryGroup,
    SymmetryLimitError,
    automorphism_group,
    map_symmetry,
)
from hashlab.stats import layer_degeneracy


# --------------------------------------------------------------------------- helpers: the definition
def keys_of(indices, sign=None):
    """Colour of each weight, by definition: 0 if zeroed, else (entry, sign)."""
    idx = np.asarray(indices).astype(np.int64)
    s = np.ones_like(idx) if sign is None else np.asarray(sign).astype(np.int64)
    return np.where(idx < 0, 0, 2 * (idx + 1) + (s < 0))


def bias_keys(lay):
    if lay.bias_indices is None:
        return np.zeros(lay.out_features, np.int64)
    b = np.asarray(lay.bias_indices).astype(np.int64)
    s = np.ones_like(b) if lay.bias_sign is None else np.asarray(lay.bias_sign).astype(np.int64)
    return np.where(b < 0, 0, 2 * (b + 1) + (s < 0))


def is_layer_automorphism(lay, tau, sigma) -> bool:
    k = keys_of(lay.indices, lay.sign)
    return bool(np.array_equal(k[np.ix_(sigma, tau)], k) and np.array_equal(bias_keys(lay)[sigma], bias_keys(lay)))


def brute_layer_order(lay) -> int:
    """Count the pairs (tau, sigma) keeping every weight's colour and the shared bias: all R! C! pairs."""
    k = keys_of(lay.indices, lay.sign)
    bk = bias_keys(lay)
    r, c = k.shape
    taus = np.array(list(itertools.permutations(range(c))))
    count = 0
    for sigma in itertools.permutations(range(r)):
        sigma = np.array(sigma)
        if not np.array_equal(bk[sigma], bk):
            continue
        ks = k[sigma]  # ks[o, i] = k[sigma(o), i]
        count += int(np.all(ks[:, taus] == k[:, None, :], axis=(0, 2)).sum())
    return count


def layer(indices, name="fc0", table=0, sign=None, bias=None):
    idx = np.asarray(indices)
    n = max(int(idx.max()) + 1, int(np.max(bias)) + 1 if bias is not None else 0, 1)
    dt = index_dtype(n)
    return LayerMap(
        name,
        idx.astype(dt),
        table,
        None if sign is None else np.asarray(sign, np.int8),
        None if bias is None else np.asarray(bias).astype(dt),
    )


def closure_size(group: SymmetryGroup, limit: int = 20_000) -> int:
    """Size of the group the generators generate (breadth-first over products), up to ``limit``."""
    perms = [
        np.concatenate([g.perm(lv) + sum(group.level_sizes[:lv]) for lv in range(len(group.level_sizes))])
        for g in group.generators
    ]
    ident = tuple(range(sum(group.level_sizes)))
    seen, frontier = {ident}, [np.array(ident)]
    while frontier and len(seen) <= limit:
        nxt = []
        for x in frontier:
            for p in perms:
                y = p[x]
                t = tuple(y.tolist())
                if t not in seen:
                    seen.add(t)
                    nxt.append(y)
        frontier = nxt
    return len(seen)


def circulant(n):
    o, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return layer((i - o) % n, name="circulant")


def symmetric_circulant(n):
    """``W[o, i] = w[min(d, n - d)]``, ``d = (i - o) mod n``: rotations and reflections, the dihedral group."""
    o, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = (i - o) % n
    return layer(np.minimum(d, n - d), name="dihedral")


def deepsets(n):
    return layer(np.where(np.eye(n, dtype=bool), 0, 1), name="deepsets")


@pytest.fixture(scope="module")
def mnist_maps():
    arch = ARCHITECTURES["mnist-mlp"]
    return {
        "modulus": build_map(HashSpec(kind="modulus", table_size=1000), arch),
        "uniform": build_map(HashSpec(kind="uniform", table_size=1000, seed=0), arch),
        "neighborhood1": build_map(HashSpec(kind="neighborhood", radius=1, table_size=1000, seed=0), arch),
    }


# --------------------------------------------------------------------------- the known answers
def test_a_16x16_circulant_layer_has_the_cyclic_group_of_order_16():
    g = automorphism_group(circulant(16))
    assert g.order == 16 and g.kind == "cyclic" and g.method == "bliss"
    assert "C16" in g.structure and "cyclic shift by" in g.describe()
    for gen in g.generators:
        assert is_layer_automorphism(circulant(16), gen.in_perm, gen.out_perm)
    assert closure_size(g) == 16


def test_a_deepsets_layer_has_the_symmetric_group_of_order_10_factorial():
    g = automorphism_group(deepsets(10))
    assert g.order == math.factorial(10) == 3_628_800
    assert g.kind == "symmetric" and "S10" in g.structure
    assert all(is_layer_automorphism(deepsets(10), x.in_perm, x.out_perm) for x in g.generators)


@pytest.mark.parametrize("kind", ["uniform", "neighborhood1"])
def test_uniform_and_neighborhood_r1_on_the_mnist_mlp_are_trivial(mnist_maps, kind):
    imap = mnist_maps[kind]
    for lay in imap.layers:
        g = automorphism_group(lay)
        assert g.order == 1 and g.is_trivial and g.generators == () and g.structure.startswith("trivial")
    assert automorphism_group(imap).order == 1


def test_the_modulus_map_on_fc0_has_order_2_to_the_75(mnist_maps):
    lay = mnist_maps["modulus"].layers[0]
    g = automorphism_group(lay)
    assert g.order == 2**75 and g.log2_order == 75.0
    assert g.kind == "identical" and g.structure == "S2^75 on 75 pairs of identical rows (outputs)"
    assert g.identical_counts(1) == {2: 75} and g.identical_counts(0) == {}
    # row o equals row o + 125 (784 * 125 = 98000 = 0 mod 1000): the pairs behind the radius-0 outlier
    assert {tuple(c.tolist()) for c in g.identical[1]} == {(o, o + 125) for o in range(75)}
    assert g.generators[0].description == "swap identical rows 0 and 125"
    assert all(is_layer_automorphism(lay, x.in_perm, x.out_perm) for x in g.generators[:5])


def test_the_modulus_network_keeps_only_the_output_swaps(mnist_maps):
    """fc1's columns are all distinct, so hidden units can't move: of 2^75 x (40!)^5 x 2^5 only 2^5 survive."""
    imap = mnist_maps["modulus"]
    logs = [automorphism_group(lay).log2_order for lay in imap.layers]
    assert logs[0] == 75 and logs[2] == 5
    assert automorphism_group(imap.layers[1]).order == math.factorial(40) ** 5
    net = automorphism_group(imap)
    assert net.order == 2**5 and net.level_names == ("input", "fc0 out = fc1 in", "fc1 out = fc2 in", "fc2 out")
    assert net.joined == (True, True)


# --------------------------------------------------------------------------- identical rows agree with degeneracy
DEGENERACY_CASES = [
    ("modulus", {"kind": "modulus"}),
    ("neighborhood0-s0.5", {"kind": "neighborhood", "radius": 0, "sparsity": 0.5}),
    ("dirichlet1e-3-s0.5", {"kind": "dirichlet", "alpha": 1e-3, "sparsity": 0.5}),
    ("dirichlet1e-3-sign", {"kind": "dirichlet", "alpha": 1e-3, "sign": True}),
    ("uniform", {"kind": "uniform"}),
]


@pytest.mark.parametrize("spec", [c[1] for c in DEGENERACY_CASES], ids=[c[0] for c in DEGENERACY_CASES])
def test_identical_rows_and_columns_agree_with_the_degeneracy_statistics(spec):
    imap = build_map(HashSpec(table_size=1000, seed=0, **spec), ARCHITECTURES["mnist-mlp"])
    for lay in imap.layers:
        g = automorphism_group(lay)
        d = layer_degeneracy(lay, rank_limit=0)
        assert (g.distinct(0), g.distinct(1)) == (d.distinct_cols, d.distinct_rows)
        for level, groups in ((0, d.col_groups), (1, d.row_groups)):
            _, sizes = np.unique(groups, return_counts=True)
            assert g.identical_counts(level) == {
                int(s): int(k) for s, k in zip(*np.unique(sizes[sizes > 1], return_counts=True))
            }
            for cls in g.identical[level]:
                assert np.all(groups[cls] == cls[0])
        assert g.order % g.identical_order == 0


# --------------------------------------------------------------------------- brute force on small patterns
@st.composite
def small_layers(draw, max_rows=4, max_cols=5):
    r = draw(st.integers(1, max_rows))
    c = draw(st.integers(1, max_cols))
    entries = draw(st.integers(1, 4))
    idx = np.array(draw(st.lists(st.integers(-1, entries - 1), min_size=r * c, max_size=r * c))).reshape(r, c)
    sign = None
    if draw(st.booleans()):
        sign = np.array(draw(st.lists(st.sampled_from([-1, 1]), min_size=r * c, max_size=r * c))).reshape(r, c)
    bias = None
    if draw(st.booleans()):
        bias = np.array(draw(st.lists(st.integers(-1, entries), min_size=r, max_size=r)))
    return layer(np.maximum(idx, -1), sign=sign, bias=bias)


@settings(max_examples=150)
@given(small_layers())
def test_the_order_is_the_brute_force_count_and_the_generators_generate_it(lay):
    g = automorphism_group(lay)
    assert g.order == brute_layer_order(lay)
    for gen in g.generators:
        assert is_layer_automorphism(lay, gen.in_perm, gen.out_perm)
    assert closure_size(g) == g.order


@settings(max_examples=40)
@given(small_layers(), st.randoms(use_true_random=False))
def test_the_group_is_invariant_to_relabeling_the_table_and_reordering_units(lay, rnd):
    g = automorphism_group(lay)
    top = [int(np.asarray(lay.indices).max())]
    if lay.bias_indices is not None:
        top.append(int(np.asarray(lay.bias_indices).max()))
    n = max(top) + 2  # every entry a weight or the bias reads, and one more
    relabel = np.array(rnd.sample(range(n), n))
    rows = np.array(rnd.sample(range(lay.out_features), lay.out_features))
    cols = np.array(rnd.sample(range(lay.in_features), lay.in_features))
    idx = np.asarray(lay.indices).astype(np.int64)
    moved = np.where(idx >= 0, relabel[np.maximum(idx, 0)], -1)[np.ix_(rows, cols)]
    sign = None if lay.sign is None else lay.sign[np.ix_(rows, cols)]
    bias = None
    if lay.bias_indices is not None:
        b = np.asarray(lay.bias_indices).astype(np.int64)
        bias = np.where(b >= 0, relabel[np.maximum(b, 0)], -1)[rows]
    other = automorphism_group(layer(moved, sign=sign, bias=bias))
    assert other.order == g.order


def brute_map_order(imap) -> int:
    """All permutations of every level of a small chained map, checked against every layer."""
    sizes = [imap.layers[0].in_features] + [lay.out_features for lay in imap.layers]
    count = 0
    for perms in itertools.product(*(itertools.permutations(range(n)) for n in sizes)):
        ps = [np.array(p) for p in perms]
        count += all(is_layer_automorphism(lay, ps[k], ps[k + 1]) for k, lay in enumerate(imap.layers))
    return count


@settings(max_examples=40)
@given(st.data())
def test_a_network_group_is_the_brute_force_count_over_all_levels(data):
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=3, max_size=4))
    entries = data.draw(st.integers(1, 3))
    scope_global = data.draw(st.booleans())
    layers = []
    for k, (c, r) in enumerate(zip(sizes[:-1], sizes[1:])):
        idx = np.array(data.draw(st.lists(st.integers(-1, entries - 1), min_size=r * c, max_size=r * c)))
        layers.append(LayerMap(f"fc{k}", idx.reshape(r, c).astype(np.int16), 0 if scope_global else k))
    imap = IndexMap(tuple(layers), (entries,) * (1 if scope_global else len(layers)))
    g = automorphism_group(imap)
    assert g.order == brute_map_order(imap)
    assert closure_size(g) == g.order


def test_a_map_whose_sizes_do_not_chain_keeps_separate_units():
    a = layer(np.zeros((2, 3), int), name="a")
    b = layer(np.zeros((2, 4), int), name="b")
    g = automorphism_group(IndexMap((a, b), (1,)))
    assert g.joined == (False,) and g.level_names == ("input", "a out", "b in", "b out")
    assert g.order == math.factorial(3) * 2 * 24 * 2  # every level is one class of identical units


def test_a_shared_bias_colours_the_outputs_and_bias_false_ignores_it():
    lay = layer(np.where(np.eye(4, dtype=bool), 0, 1), bias=[2, 2, 3, 3])
    assert automorphism_group(lay).order == 2 * 2  # S4 cut down to the permutations keeping the bias entries
    assert automorphism_group(lay, bias=False).order == 24


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_both_backends_give_the_same_group(backend, mnist_maps):
    g = automorphism_group(mnist_maps["modulus"].layers[2], backend=backend)
    assert g.order == 2**5


# --------------------------------------------------------------------------- results
def test_to_dict_is_json_with_the_exact_order_as_a_string(mnist_maps):
    g = automorphism_group(mnist_maps["modulus"].layers[1])
    d = json.loads(json.dumps(g.to_dict()))
    assert int(d["order"]) == math.factorial(40) ** 5 and d["log2_order"] == pytest.approx(
        5 * math.log2(math.factorial(40))
    )
    assert d["levels"][1]["identical_classes"] == [[40, 5]] and d["levels"][1]["distinct"] == 5
    assert d["num_generators"] == 5 * 39 and len(d["generators"]) == 20
    assert "S40^5 on 5 classes of 40 identical rows (outputs)" in g.describe()
    assert "(240 digits)" in g.order_text()


def test_map_symmetry_reports_every_layer_and_the_network(mnist_maps):
    ms = map_symmetry(mnist_maps["modulus"])
    assert isinstance(ms, MapSymmetry)
    assert [g.log2_order for g in ms.layers] == pytest.approx([75, 5 * math.log2(math.factorial(40)), 5])
    assert ms.network.order == 32 and ms.layers_log2_sum == pytest.approx(80 + 5 * math.log2(math.factorial(40)))
    text = "\n".join(ms.lines())
    assert "fc0" in text and "network" in text and "75.00" in text
    json.dumps(ms.to_dict())


# --------------------------------------------------------------------------- bounds and bad input
def test_the_size_bound_refuses_with_the_numbers_and_the_fix():
    with pytest.raises(SymmetryLimitError, match=r"max_weights=1,000.*--symmetry-max-weights") as e:
        automorphism_group(circulant(64), max_weights=1000)
    assert "4,096 weights (64x64)" in str(e.value) and isinstance(e.value, ValueError)


def test_the_size_bound_leaves_what_refinement_settles():
    imap = build_map(HashSpec(kind="uniform", table_size=1000, seed=0), ARCHITECTURES["mnist-mlp"])
    assert automorphism_group(imap.layers[0], max_weights=0).order == 1  # never reaches bliss


def test_the_time_bound_refuses_with_the_time_and_the_fix():
    with pytest.raises(SymmetryLimitError, match=r"time_limit=0.05 s.*--symmetry-time-limit"):
        automorphism_group(circulant(500), time_limit=0.05)


def test_map_symmetry_turns_a_refused_layer_into_a_refusal():
    imap = IndexMap((circulant(40),), (40,))
    ms = map_symmetry(imap, max_weights=100)
    assert isinstance(ms.layers[0], Refusal) and "max_weights=100" in ms.layers[0].reason
    assert ms.layers_log2_sum is None and "refused" in "\n".join(ms.lines())
    assert ms.to_dict()["layers"][0]["refused"].startswith("circulant")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"max_weights": -1}, "max_weights must be an integer >= 0"), ({"time_limit": 0}, "time_limit must be")],
)
def test_bad_bounds_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        automorphism_group(circulant(4), **kwargs)


def test_a_non_map_is_refused_with_what_to_pass():
    with pytest.raises(ValueError, match="takes a LayerMap or an IndexMap, got ndarray"):
        automorphism_group(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="expected an IndexMap"):
        map_symmetry(circulant(4))


@pytest.mark.parametrize(
    "lay, order",
    [(circulant(5), 5), (deepsets(4), 24), (symmetric_circulant(5), 10)],
    ids=["circulant5", "deepsets4", "dihedral5"],
)
def test_groups_found_by_bliss_match_brute_force(lay, order):
    g = automorphism_group(lay)
    assert g.method == "bliss" and g.bliss_graph is not None
    assert g.order == brute_layer_order(lay) == order
    if order == 10:
        assert g.kind == "dihedral" and "D5" in g.structure
