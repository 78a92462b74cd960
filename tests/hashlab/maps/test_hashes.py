"""Invariants of every hash (hypothesis), numba/numpy agreement on whole maps, and paper properties."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from hashlab import ZERO, Architecture, HashSpec, SpecError, build_map
from hashlab.maps import kernels as K
from hashlab.maps.hashes import NUMBA_MIN_WEIGHTS

KIND_PARAMS = {
    "identity": {},
    "modulus": {},
    "uniform": {},
    "xxhash": {},
    "dirichlet": {"alpha": 0.5},
    "neighborhood": {"radius": 2},
    "block": {},
}


@st.composite
def specs(draw, kinds=tuple(KIND_PARAMS)):
    kind = draw(st.sampled_from(kinds))
    params = dict(KIND_PARAMS[kind])
    if kind == "dirichlet":
        params["alpha"] = draw(st.floats(0.05, 50))
    if kind == "neighborhood":
        params["radius"] = draw(st.integers(0, 40))
    if kind == "block":
        params["block_size"] = draw(st.one_of(st.none(), st.integers(1, 30)))
    return HashSpec(
        kind=kind,
        table_size=draw(st.sampled_from([1, 3, 17, 1000, 40000])),
        seed=draw(st.integers(0, 2**63 - 1)),
        sparsity=draw(st.sampled_from([0.0, 0.1, 0.5, 0.9])),
        scope=draw(st.sampled_from(["layer", "global"])),
        sign=draw(st.booleans()),
        **params,
    )


archs = st.lists(st.integers(1, 23), min_size=2, max_size=4).map(lambda f: Architecture(tuple(f)))


@given(specs(), archs)
def test_numba_and_numpy_backends_build_identical_maps(spec, arch):
    a, b = build_map(spec, arch), build_map(spec, arch, backend="numpy")
    assert a.table_sizes == b.table_sizes
    for la, lb in zip(a.layers, b.layers):
        assert la.indices.dtype == lb.indices.dtype
        np.testing.assert_array_equal(la.indices, lb.indices)
        if spec.sign:
            np.testing.assert_array_equal(la.sign, lb.sign)


# layers at and above NUMBA_MIN_WEIGHTS take the numba layer kernels (smaller ones the twins)
BIG = Architecture((210, 160, 40))  # 33,600 and 6,400 weights: one layer of each path
BIG_SETTINGS = [(1000, 0.0, "layer", False), (40000, 0.9, "global", True), (3, 0.1, "layer", True)]
BIG_CASES = [
    HashSpec(kind=kind, table_size=n, seed=7, sparsity=sp, scope=scope, sign=sign, **KIND_PARAMS[kind])
    for kind in KIND_PARAMS
    for n, sp, scope, sign in BIG_SETTINGS
]


@pytest.mark.parametrize("spec", BIG_CASES, ids=lambda s: f"{s.kind}-n{s.table_size}-s{s.sparsity}-{s.scope}")
def test_numba_layer_kernels_build_the_reference_map(spec):
    assert BIG.layer_shapes[0][0] * BIG.layer_shapes[0][1] >= NUMBA_MIN_WEIGHTS
    a, b = build_map(spec, BIG), build_map(spec, BIG, backend="numpy")
    for la, lb in zip(a.layers, b.layers):
        assert la.indices.dtype == lb.indices.dtype
        np.testing.assert_array_equal(la.indices, lb.indices)
        if spec.sign:
            np.testing.assert_array_equal(la.sign, lb.sign)


@given(specs(), archs)
def test_every_hash_gives_valid_deterministic_maps(spec, arch):
    imap = build_map(spec, arch)
    imap.validate(check_values=True)
    again = build_map(spec, arch)
    for k, (lay, (out_f, in_f)) in enumerate(zip(imap.layers, arch.layer_shapes)):
        n = imap.table_sizes[lay.table]
        assert lay.indices.shape == (out_f, in_f)
        assert lay.indices.dtype == (np.int16 if n <= 2**15 else np.int32)
        assert lay.table == (0 if spec.scope == "global" else k)
        # exactly round(s * N) weights are fixed at zero, the rest index the table
        assert (lay.indices == ZERO).sum() == round(spec.sparsity * (out_f * in_f))
        live = lay.indices[lay.indices != ZERO]
        assert live.size == 0 or (live.min() >= 0 and live.max() < n)
        assert (lay.sign is not None) == spec.sign
        np.testing.assert_array_equal(lay.indices, again.layers[k].indices)


@given(specs(), archs)
def test_sparsity_mask_depends_only_on_seed_not_on_hash(spec, arch):
    other = HashSpec(kind="modulus", table_size=7, seed=spec.seed, sparsity=spec.sparsity)
    for la, lb in zip(build_map(spec, arch).layers, build_map(other, arch).layers):
        np.testing.assert_array_equal(la.indices == ZERO, lb.indices == ZERO)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_mask_hash_is_injective_so_zero_selection_has_no_ties(start, seed):
    """XXH64 on 8-byte inputs is a bijection: consecutive ids (the mask's input) never collide."""
    ids = np.uint64(start) + np.arange(5000, dtype=np.uint64)  # wraps modulo 2**64
    h = K.xxh64_u64_ref(ids, np.uint64(seed))
    assert np.unique(h).size == ids.size


@given(archs, st.integers(1, 500), st.sampled_from(["layer", "global"]))
def test_modulus_is_exactly_balanced(arch, n, scope):
    imap = build_map(HashSpec(kind="modulus", table_size=n, scope=scope), arch)
    for t, size in enumerate(imap.table_sizes):
        loads = np.bincount(
            np.concatenate([lay.indices.ravel() for lay in imap.layers if lay.table == t]), minlength=size
        )
        assert loads.max() - loads.min() <= 1


@given(archs, st.sampled_from(["layer", "global"]))
def test_identity_is_a_bijection(arch, scope):
    imap = build_map(HashSpec(kind="identity", scope=scope), arch)
    for t, size in enumerate(imap.table_sizes):
        idx = np.concatenate([lay.indices.ravel() for lay in imap.layers if lay.table == t])
        np.testing.assert_array_equal(np.sort(idx), np.arange(size))


@given(archs, st.integers(1, 300), st.integers(0, 60), st.integers(0, 2**63 - 1))
def test_neighborhood_offsets_stay_within_radius(arch, n, r, seed):
    imap = build_map(HashSpec(kind="neighborhood", table_size=n, radius=r, seed=seed), arch)
    for lay in imap.layers:
        ids = np.arange(lay.num_weights)
        off = (lay.indices.ravel().astype(np.int64) - ids) % n  # in {0..r} or {n-r..n-1}
        assert np.all((off <= r) | (off >= n - r))


def test_neighborhood_radius_zero_is_the_modulus_hash():
    arch = Architecture((30, 20, 5))
    a = build_map(HashSpec(kind="neighborhood", table_size=37, radius=0, seed=5), arch)
    b = build_map(HashSpec(kind="modulus", table_size=37), arch)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.indices, lb.indices)


@given(archs, st.integers(1, 2**20), st.integers(0, 2**63 - 1))
def test_xxhash_is_hashednets_layerwise_key(arch, n, seed):
    imap = build_map(HashSpec(kind="xxhash", table_size=n, seed=seed), arch)
    for k, lay in enumerate(imap.layers):
        r, c = lay.out_features - 1, lay.in_features - 1  # spot-check the last weight against the library
        assert lay.indices[r, c] == xxhash.xxh64_intdigest(struct.pack("<III", k, r, c), seed) % n


def test_global_scope_uses_global_identifiers():
    arch = Architecture((4, 3, 2))
    imap = build_map(HashSpec(kind="modulus", table_size=5, scope="global"), arch)
    assert imap.table_sizes == (5,)
    np.testing.assert_array_equal(imap.layers[1].indices.ravel(), (12 + np.arange(6)) % 5)


def test_one_layer_network_is_the_same_in_both_scopes():
    arch = Architecture((40, 30))
    for kind, kw in KIND_PARAMS.items():
        a = build_map(HashSpec(kind=kind, seed=9, **kw), arch)
        b = build_map(HashSpec(kind=kind, seed=9, scope="global", **kw), arch)
        np.testing.assert_array_equal(a.layers[0].indices, b.layers[0].indices)


def test_dirichlet_small_alpha_concentrates_large_alpha_spreads():
    arch = Architecture((784, 200))
    used = {}
    for alpha in (0.01, 1000.0):
        idx = build_map(HashSpec(kind="dirichlet", alpha=alpha, seed=1), arch).layers[0].indices
        used[alpha] = np.unique(idx).size
    assert used[0.01] < 200 and used[1000.0] == 1000


@pytest.mark.parametrize("kind", ["uniform", "dirichlet", "neighborhood", "xxhash"])
def test_different_seeds_give_different_maps(kind):
    arch = Architecture((50, 40))
    kw = KIND_PARAMS[kind]
    a = build_map(HashSpec(kind=kind, seed=1, **kw), arch).layers[0].indices
    b = build_map(HashSpec(kind=kind, seed=2, **kw), arch).layers[0].indices
    assert (a != b).mean() > 0.3


def test_pinned_values_do_not_drift():
    """Same seed -> same indices on every run and release: a few values pinned by hand."""
    arch = Architecture((6, 4))
    got = {
        kind: build_map(HashSpec(kind=kind, seed=42, table_size=1000, **kw), arch).layers[0].indices[0, :3].tolist()
        for kind, kw in KIND_PARAMS.items()
    }
    assert got == PINNED


PINNED = {
    "identity": [0, 1, 2],
    "modulus": [0, 1, 2],
    "uniform": [880, 26, 802],
    "xxhash": [89, 731, 522],
    "dirichlet": [25, 264, 962],
    "neighborhood": [998, 0, 2],
    "block": [880, 881, 882],  # the uniform hash of identifier 0, then a run
}


@given(archs, st.integers(1, 60), st.one_of(st.none(), st.integers(1, 9)), st.sampled_from(["layer", "global"]))
def test_block_hash_rows_read_contiguous_circular_runs(arch, n, block, scope):
    """ROBE-Z: inside each block of a row the entries step by +1 mod n; blocks start where the uniform hash says."""
    imap = build_map(HashSpec(kind="block", table_size=n, block_size=block, scope=scope, seed=3), arch)
    offset = 0
    for k, lay in enumerate(imap.layers):
        z = block or lay.in_features
        cols = np.arange(lay.in_features)
        first = offset * (scope == "global") + np.arange(lay.out_features)[:, None] * lay.in_features + cols // z * z
        table = 0 if scope == "global" else k
        head = K.uniform_ref(first.ravel(), n, np.random.SeedSequence([3, table, 1]).generate_state(1, np.uint64)[0])
        np.testing.assert_array_equal(
            lay.indices.ravel(), (head + (cols % z)[None, :].repeat(lay.out_features, 0).ravel()) % n
        )
        offset += lay.num_weights


def test_block_size_belongs_to_the_block_kind():
    with pytest.raises(SpecError, match="block_size is only used by the block hash"):
        HashSpec(kind="uniform", block_size=4)
    with pytest.raises(SpecError, match="block_size must be"):
        HashSpec(kind="block", block_size=0)
    assert "block_size" not in HashSpec(kind="block").to_dict()  # an added field, left out at its default
    assert HashSpec.from_dict(HashSpec(kind="block", block_size=8).to_dict()).block_size == 8


def test_build_map_rejects_wrong_types():
    with pytest.raises(SpecError, match="HashSpec"):
        build_map({"kind": "uniform"}, Architecture((2, 2)))
    with pytest.raises(SpecError, match="Architecture"):
        build_map(HashSpec(), (2, 2))
    with pytest.raises(ValueError, match="backend"):
        build_map(HashSpec(), Architecture((2, 2)), backend="cuda")
