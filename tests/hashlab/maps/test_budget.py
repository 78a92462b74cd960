"""Budgets from a compression factor and hashed biases: table sizes, validation, bias maps."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashlab import ZERO, Architecture, HashSpec, SpecError, build_map
from hashlab.maps import kernels as K
from hashlab.maps.hashes import stream_seed
from hashlab.maps.spec import ceil_budget, parse_ratio
from tests.hashlab.maps.test_hashes import BIG, KIND_PARAMS, archs, specs

HASHED = ("uniform", "dirichlet", "neighborhood", "xxhash")  # kinds with a random bias stream
ratios = st.builds(Fraction, st.integers(1, 200), st.integers(1, 200)).filter(lambda r: r <= 1)


def _ceil(count: int, ratio: Fraction) -> int:
    """Independent ceil(count * p / q) for the tests: integer arithmetic the other way round."""
    q, r = divmod(count * ratio.numerator, ratio.denominator)
    return q + (r > 0)


@given(archs, ratios, st.sampled_from(["layer", "global"]), st.sampled_from(["str", "fraction"]))
def test_table_sizes_are_the_ceiling_of_weights_times_compression(arch, ratio, scope, form):
    given_as = str(ratio) if form == "str" else ratio
    imap = build_map(HashSpec(kind="uniform", compression=given_as, scope=scope), arch)
    sizes = [o * i for o, i in arch.layer_shapes]
    want = [_ceil(sum(sizes), ratio)] if scope == "global" else [_ceil(w, ratio) for w in sizes]
    assert list(imap.table_sizes) == want
    for lay in imap.layers:
        assert lay.indices.min() >= 0 and lay.indices.max() < imap.table_sizes[lay.table]
        assert lay.bias_indices is None


@given(archs, ratios, st.sampled_from(["layer", "global"]), st.sampled_from(HASHED + ("modulus",)))
def test_hash_bias_adds_its_own_entries_at_the_same_ratio(arch, ratio, scope, kind):
    spec = HashSpec(kind=kind, compression=str(ratio), scope=scope, hash_bias=True, **KIND_PARAMS[kind])
    imap = build_map(spec, arch)
    shapes = arch.layer_shapes
    weights = [o * i for o, i in shapes]
    hidden = [o for o, _ in shapes[:-1]]
    if scope == "global":
        n_w = [_ceil(sum(weights), ratio)]
        n_b = [_ceil(sum(hidden), ratio) if hidden else 0]
    else:
        n_w = [_ceil(w, ratio) for w in weights]
        n_b = [_ceil(o, ratio) for o in hidden] + [0]
    assert list(imap.table_sizes) == [w + b for w, b in zip(n_w, n_b)]
    for k, lay in enumerate(imap.layers):
        t = lay.table
        assert lay.indices.min() >= 0 and lay.indices.max() < n_w[t]  # weights never read a bias entry
        if k == len(shapes) - 1:
            assert lay.bias_indices is None  # the output layer's bias stays dense
        else:
            b = lay.bias_indices
            assert b.dtype == lay.indices.dtype and b.shape == (lay.out_features,)
            assert b.min() >= n_w[t] and b.max() < n_w[t] + n_b[t]


def test_exact_products_are_not_bumped_by_float_rounding():
    # 784000 / 64 = 12250 exactly; 30 * 0.1 is 3.0000000000000004 in floats (math.ceil would give 4)
    assert build_map(HashSpec(kind="xxhash", compression=1 / 64), Architecture((784, 1000, 10))).table_sizes == (
        12250,
        157,
    )
    assert build_map(HashSpec(compression=0.1), Architecture((6, 5))).table_sizes == (3,)
    assert build_map(HashSpec(compression="3/10"), Architecture((10, 10))).table_sizes == (30,)
    assert build_map(HashSpec(compression="1/3"), Architecture((30, 100))).table_sizes == (1000,)
    assert ceil_budget(784000, Fraction(1, 64)) == 12250 and ceil_budget(784001, Fraction(1, 64)) == 12251
    assert parse_ratio(0.1) == Fraction(1, 10) and parse_ratio(" 1/64 ") == Fraction(1, 64)


BAD_BUDGETS = [
    ({"table_size": 100, "compression": "1/64"}, "not both"),
    ({"table_size": 1000, "compression": 1.0}, "not both"),
    ({"compression": 0}, r"\(0, 1\]"),
    ({"compression": "0/5"}, r"\(0, 1\]"),
    ({"compression": -0.5}, r"\(0, 1\]"),
    ({"compression": 1.5}, r"\(0, 1\]"),
    ({"compression": "65/64"}, r"\(0, 1\]"),
    ({"compression": "one/64"}, "1/64"),
    ({"compression": "1/0"}, "1/64"),
    ({"compression": float("nan")}, "1/64"),
    ({"compression": float("inf")}, "1/64"),
    ({"compression": True}, "1/64"),
    ({"compression": [1, 64]}, "1/64"),
    ({"kind": "identity", "compression": "1/2"}, "identity hash"),
    ({"hash_bias": 1}, "hash_bias"),
]


@pytest.mark.parametrize("kwargs,match", BAD_BUDGETS, ids=[str(k) for k, _ in BAD_BUDGETS])
def test_bad_budgets_raise_clear_errors(kwargs, match):
    with pytest.raises(SpecError, match=match):
        HashSpec(**kwargs)


def test_exactly_one_budget_and_canonical_forms():
    assert HashSpec().table_size == 1000 and HashSpec().compression is None
    spec = HashSpec(compression=0.015625)
    assert spec.table_size is None and spec.compression == "1/64" and spec.ratio == Fraction(1, 64)
    assert HashSpec(compression=Fraction(2, 128)) == HashSpec(compression="1/64") == spec
    assert HashSpec(compression=1).compression == "1"
    assert HashSpec.from_dict(spec.to_dict()) == spec
    # identity with compression 1 is the identity map
    arch = Architecture((7, 5, 3))
    a, b = build_map(HashSpec(kind="identity", compression="1"), arch), build_map(HashSpec(kind="identity"), arch)
    assert a.table_sizes == b.table_sizes
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.indices, lb.indices)


def test_to_dict_leaves_out_unused_new_fields():
    """A spec without compression / hash_bias has the dict (and index-file header) it had before these fields."""
    d = HashSpec(kind="xxhash", table_size=5, seed=7).to_dict()
    assert "compression" not in d and "hash_bias" not in d
    used = HashSpec(compression="1/8", hash_bias=True).to_dict()
    assert {"compression": "1/8", "hash_bias": True}.items() <= used.items()


def test_table_size_mode_biases_follow_the_weights_ratio():
    # 784x200 layer, table_size 1000: ratio 1000/156800, biases ceil(200 * 1000 / 156800) = 2;
    # 10x200 output layer: dense bias; a table larger than its layer gives one bias entry per bias
    imap = build_map(HashSpec(kind="uniform", table_size=1000, hash_bias=True), Architecture((784, 200, 5, 10)))
    assert imap.table_sizes == (1002, 1005, 1000)
    assert imap.layers[1].bias_indices.min() >= 1000 and imap.layers[2].bias_indices is None


@given(specs(), archs)
def test_weight_indices_do_not_change_with_hash_bias(spec, arch):
    plain = build_map(spec, arch)
    biased = build_map(dataclasses.replace(spec, hash_bias=True), arch)
    for a, b in zip(plain.layers, biased.layers):
        if a.indices.dtype == b.indices.dtype:
            assert a.indices.tobytes() == b.indices.tobytes()  # bit-identical
        else:  # only when the bias entries take the table past 32768 entries (int16 -> int32)
            assert b.indices.dtype == np.int32 and biased.table_sizes[b.table] > 2**15 >= plain.table_sizes[a.table]
            np.testing.assert_array_equal(a.indices, b.indices)
        if spec.sign:
            assert a.sign.tobytes() == b.sign.tobytes()
        assert (a.indices == ZERO).sum() == (b.indices == ZERO).sum()


@pytest.mark.parametrize("kind", HASHED)
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_bias_map_is_independent_of_the_weight_map(kind, scope):
    """Same seed: the bias entries are neither the weight stream's entries nor a function of the weight indices."""
    arch = Architecture((3, 4000, 10))  # 4000 hidden biases, 12000 weights
    spec = HashSpec(kind=kind, compression="1/10", seed=5, scope=scope, hash_bias=True, **KIND_PARAMS[kind])
    imap = build_map(spec, arch)
    lay = imap.layers[0]
    n_w = 1200 if scope == "layer" else 5200  # ceil(12000 / 10), or ceil((12000 + 40000) / 10) for the network
    n_b = 400
    bias = lay.bias_indices.astype(np.int64) - n_w
    assert bias.min() >= 0 and bias.max() < n_b and np.unique(bias).size > 0.5 * n_b
    # the weight stream on the same identifiers over the bias buckets: agrees only by chance
    ids = np.arange(4000, dtype=np.int64)
    if kind == "xxhash":
        same_stream = K.xxhash_index_ref(0, ids, np.zeros_like(ids), n_b, spec.seed)
    elif kind == "neighborhood":  # (o + offset) mod n: independent offsets agree 1 time in 2r + 1 = 5
        same_stream = K.neighborhood_ref(ids, n_b, spec.radius, stream_seed(spec.seed, 0, 1))
    else:
        same_stream = K.uniform_ref(ids, n_b, stream_seed(spec.seed, 0, 1))
    assert np.mean(bias == same_stream) < (0.25 if kind == "neighborhood" else 0.01)
    assert not np.array_equal(bias, lay.indices.reshape(-1)[:4000] % n_b)  # not a prefix of the weight map
    # not a function of the weight indices: some weight entry is read by units whose biases differ
    first = lay.indices[:, 0].astype(np.int64)
    groups = {}
    for w, b in zip(first, bias):
        groups.setdefault(int(w), set()).add(int(b))
    assert max(len(g) for g in groups.values()) > 1
    # and another seed moves the biases
    other = build_map(dataclasses.replace(spec, seed=6), arch).layers[0].bias_indices
    assert np.mean(other.astype(np.int64) - n_w == bias) < (0.25 if kind == "neighborhood" else 0.05)


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_numba_and_numpy_backends_agree_with_hash_bias(kind):
    spec = HashSpec(
        kind=kind,
        compression="1/5" if kind != "identity" else "1",
        seed=3,
        sparsity=0.1,
        sign=True,
        hash_bias=True,
        **KIND_PARAMS[kind],
    )
    a, b = build_map(spec, BIG), build_map(spec, BIG, backend="numpy")
    assert a.table_sizes == b.table_sizes
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.indices, lb.indices)
        assert (la.bias_indices is None) == (lb.bias_indices is None)
        if la.bias_indices is not None:
            np.testing.assert_array_equal(la.bias_indices, lb.bias_indices)


def test_sparsity_zeroes_weights_but_the_budget_is_from_the_virtual_weights():
    arch = Architecture((784, 1000, 10))
    dense = build_map(HashSpec(compression="1/64", hash_bias=True), arch)
    sparse = build_map(HashSpec(compression="1/64", hash_bias=True, sparsity=0.5), arch)
    assert dense.table_sizes == sparse.table_sizes == (12250 + 16, 157)
    assert (sparse.layers[0].indices == ZERO).sum() == 392000
    assert (sparse.layers[0].bias_indices >= 12250).all()  # biases are never zeroed


def test_table_plan_rejects_oversized_tables():
    with pytest.raises(SpecError, match="2\\*\\*31 - 1"):
        HashSpec(table_size=2**31 - 1, hash_bias=True).table_plan([(10, 10), (2, 10)])
