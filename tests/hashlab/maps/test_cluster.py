"""Weight sharing by clustering trained weights (Deep Compression): hashlab.maps.cluster."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab import (
    LayerShape,
    SpecError,
    WeightsError,
    cluster_layers,
    cluster_weights,
    load_index_file,
    save_index_file,
)
from hashlab.maps.cluster import INITS, initial_centroids, nearest_centroid, quantization_report


def _mlp(seed: int = 0, sizes=(12, 9, 7, 3), scale: float = 0.3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, scale, (o, i)).astype(np.float32) for i, o in zip(sizes[:-1], sizes[1:])]


def _reconstruct(imap, k: int) -> np.ndarray:
    lay = imap.layers[k]
    return imap.initial_tables[lay.table][lay.indices.astype(np.int64)]


@st.composite
def _few_values(draw):
    """An MLP whose weights (per layer or overall) take at most n distinct float32 values."""
    n = draw(st.integers(1, 12))
    pool = draw(st.lists(st.floats(-10, 10, width=32, allow_subnormal=False), min_size=1, max_size=n, unique=True))
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mats = [rng.choice(np.array(pool, np.float32), size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    return n, mats


@settings(max_examples=60, deadline=None)
@given(_few_values(), st.sampled_from(["layer", "global"]), st.sampled_from(INITS))
def test_at_most_n_distinct_values_are_reproduced_with_zero_error(case, scope, init):
    n, mats = case
    imap = cluster_weights(mats, n, scope=scope, init=init, seed=1)
    assert imap.spec["exact"] == [True] * len(imap.table_sizes)
    for k, w in enumerate(mats):
        np.testing.assert_array_equal(_reconstruct(imap, k), w)
    for r in quantization_report(mats, imap):
        assert r["max_abs_error"] == 0.0 and r["mean_abs_error"] == 0.0


def test_exact_table_holds_the_distinct_values_then_zeros():
    w = np.array([[0.5, -0.25, 0.5], [2.0, -0.25, 0.5]], np.float32)
    imap = cluster_weights([w], 5)
    np.testing.assert_array_equal(imap.initial_tables[0], [-0.25, 0.5, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(imap.layers[0].indices, [[1, 0, 1], [2, 0, 1]])


CASES = [(scope, init) for scope in ("layer", "global") for init in INITS]


@pytest.mark.parametrize("scope,init", CASES, ids=[f"{s}-{i}" for s, i in CASES])
def test_kmeans_map_is_valid_sorted_nearest_and_close(scope, init):
    mats = _mlp()
    n = 16
    imap = cluster_weights(mats, n, scope=scope, init=init, seed=3, iters=10)
    imap.validate(check_values=True)
    assert imap.table_sizes == ((n,) * 3 if scope == "layer" else (n,))
    assert [lay.table for lay in imap.layers] == ([0, 1, 2] if scope == "layer" else [0, 0, 0])
    assert [lay.name for lay in imap.layers] == ["fc0", "fc1", "fc2"]
    assert imap.spec | {"hashlab_version": None} == {
        "kind": "cluster",
        "table_size": n,
        "scope": scope,
        "init": init,
        "seed": 3,
        "iters": 10,
        "source": None,
        "exact": [False] * len(imap.table_sizes),
        "architecture": [12, 9, 7, 3],
        "builder": "hashlab.cluster_weights",
        "hashlab_version": None,
    }
    for table in imap.initial_tables:
        assert table.dtype == np.float32 and np.isfinite(table).all() and np.all(np.diff(table) >= 0)
    for k, w in enumerate(mats):
        lay = imap.layers[k]
        assert lay.sign is None and lay.indices.dtype == np.int16
        assert lay.indices.min() >= 0 and lay.indices.max() < n
        table = imap.initial_tables[lay.table].astype(np.float64)
        dist = np.abs(w.astype(np.float64)[..., None] - table)  # (out, in, n): brute-force nearest
        np.testing.assert_array_equal(np.abs(w - _reconstruct(imap, k)), dist.min(-1).astype(np.float32))
        # the quantisation is far better than one value per layer
        assert np.abs(w - _reconstruct(imap, k)).mean() < 0.25 * np.abs(w - w.mean()).mean()


@pytest.mark.parametrize("init", INITS)
def test_same_seed_same_map_and_random_init_depends_on_the_seed(init):
    mats = _mlp(1, sizes=(30, 20, 5))
    a, b = (cluster_weights(mats, 40, init=init, seed=7, iters=5) for _ in range(2))
    for ta, tb in zip(a.initial_tables, b.initial_tables):
        np.testing.assert_array_equal(ta, tb)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.indices, lb.indices)
    c = cluster_weights(mats, 40, init=init, seed=8, iters=5)
    same = all(np.array_equal(x, y) for x, y in zip(a.initial_tables, c.initial_tables))
    assert same == (init != "random")


def test_initial_centroids():
    v = np.array([3.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(initial_centroids(v, 3, "linear", 0), [-1.0, 1.0, 3.0])
    np.testing.assert_array_equal(initial_centroids(v, 5, "density", 0), [-1.0, 0.0, 1.0, 2.0, 3.0])
    r = initial_centroids(v, 4, "random", 5)
    assert np.all(np.diff(r) >= 0) and set(r) <= set(v) and len(set(r)) == 4


def test_nearest_centroid_matches_brute_force():
    rng = np.random.default_rng(2)
    c = np.sort(rng.normal(size=9))
    v = np.concatenate([rng.normal(size=500) * 2, c, (c[1:] + c[:-1]) / 2])
    got = nearest_centroid(v, c)
    np.testing.assert_array_equal(np.abs(v - c[got]), np.abs(v[:, None] - c).min(1))
    assert nearest_centroid(v, c[:1]).tolist() == [0] * v.size


def test_a_clustered_map_round_trips_through_an_index_file(tmp_path):
    imap = cluster_weights(_mlp(), 8, iters=3, source="dense.safetensors")
    back = load_index_file(save_index_file(imap, tmp_path / "c.safetensors"))
    assert back.spec["source"] == "dense.safetensors" and back.spec["kind"] == "cluster"
    for a, b in zip(imap.initial_tables, back.initial_tables):
        np.testing.assert_array_equal(a, b)


BAD = [
    ("table_size 0", lambda m: cluster_weights(m, 0), SpecError, "table_size must be an integer"),
    ("table_size float", lambda m: cluster_weights(m, 4.0), SpecError, "table_size must be an integer"),
    ("scope", lambda m: cluster_weights(m, 4, scope="net"), SpecError, "unknown table scope"),
    ("init", lambda m: cluster_weights(m, 4, init="kmeans++"), SpecError, "unknown init"),
    ("seed", lambda m: cluster_weights(m, 4, seed=-1), SpecError, "seed must be"),
    ("iters", lambda m: cluster_weights(m, 4, iters=0), SpecError, "iters must be"),
    ("empty", lambda m: cluster_weights([], 4), WeightsError, "non-empty sequence"),
    ("1-D", lambda m: cluster_weights([m[0].ravel()], 4), WeightsError, "2-D"),
    ("int", lambda m: cluster_weights([m[0].astype(np.int32)], 4), WeightsError, "must hold floats"),
    ("chain", lambda m: cluster_weights([m[0], m[2]], 4), WeightsError, "must chain"),
    ("nan", lambda m: cluster_weights([np.where(m[0] > 0.5, np.nan, m[0])] + m[1:], 4), WeightsError, "NaN"),
]


@pytest.mark.parametrize("what,call,exc,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_a_clear_value_error(what, call, exc, msg):
    with pytest.raises(exc, match=msg) as info:
        call(_mlp())
    assert isinstance(info.value, ValueError)


# cluster_layers: any model's layers, one table each, named and shaped as the layers.

_SHAPES = [
    LayerShape("conv2d", (4, 2, 3, 3), "features.0"),
    LayerShape("embedding", (10, 5), "emb"),
    LayerShape("linear", (3, 7), "head"),
]


def _layer_weights(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.3, s.weight_shape).astype(np.float32) for s in _SHAPES]


def test_cluster_layers_equals_cluster_weights_on_each_layer_alone():
    """Each layer is clustered as cluster_weights clusters that layer's matrix by itself."""
    ws = _layer_weights()
    sizes = [5, 50, 6]  # the embedding's 50 distinct values fit its table: exact
    imap = cluster_layers(ws, _SHAPES, sizes, init="density", seed=3)
    assert imap.table_sizes == tuple(sizes)
    for k, (w, s) in enumerate(zip(ws, _SHAPES)):
        alone = cluster_weights([w.reshape(s.matrix_shape)], sizes[k], init="density", seed=3)
        lay = imap.layers[k]
        assert (lay.name, lay.table, lay.attrs) == (s.name, k, s.attrs())
        np.testing.assert_array_equal(lay.indices, alone.layers[0].indices)
        np.testing.assert_array_equal(imap.initial_tables[k], alone.initial_tables[0])
    assert imap.spec["exact"] == [False, True, False]


def test_cluster_layers_matrix_or_torch_shape_give_the_same_map():
    ws = _layer_weights(1)
    a = cluster_layers(ws, _SHAPES, 4)
    b = cluster_layers([w.reshape(s.matrix_shape) for w, s in zip(ws, _SHAPES)], _SHAPES, 4)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.indices, lb.indices)


def test_cluster_layers_round_trips_through_an_index_file_bit_packed(tmp_path):
    imap = cluster_layers(_layer_weights(), _SHAPES, [5, 7, 6])
    back = load_index_file(save_index_file(imap, tmp_path / "m.safetensors", storage="packed"))
    for a, b in zip(imap.layers, back.layers):
        np.testing.assert_array_equal(a.indices, b.indices)
        assert a.attrs == b.attrs
    for a, b in zip(imap.initial_tables, back.initial_tables):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call,exc,msg",
    [
        (lambda: cluster_layers(_layer_weights(), _SHAPES, [4, 4]), SpecError, "3 layers"),
        (lambda: cluster_layers(_layer_weights(), _SHAPES, 0), SpecError, "table_size"),
        (lambda: cluster_layers(_layer_weights()[:2], _SHAPES, 4), WeightsError, "one per shape"),
        (lambda: cluster_layers(_layer_weights()[::-1], _SHAPES, 4), WeightsError, "shapes' order"),
        (
            lambda: cluster_layers([np.ones((4, 2, 3, 3), int)] + _layer_weights()[1:], _SHAPES, 4),
            WeightsError,
            "floats",
        ),
        (
            lambda: cluster_layers([np.full((4, 18), np.nan, np.float32)] + _layer_weights()[1:], _SHAPES, 4),
            WeightsError,
            "NaN",
        ),
        (lambda: cluster_layers(_layer_weights(), [(3, 7)] * 3, 4), SpecError, "LayerShape"),
        (lambda: cluster_layers(_layer_weights()[:2], [_SHAPES[0], _SHAPES[0]], 4), SpecError, "repeat"),
    ],
    ids=["count", "size", "few-weights", "order", "int", "nan", "pairs", "names"],
)
def test_cluster_layers_bad_input(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
