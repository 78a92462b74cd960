"""Regenerate the golden files of formats v1 to v4 (only on a deliberate, versioned format change).

python -m tests.hashlab.io.golden.make_golden
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hashlab import Architecture, HashSpec, IndexMap, LayerMap, build_map, save_index_file

GOLDEN = Path(__file__).with_name("index_v1.safetensors")
GOLDEN_V2 = Path(__file__).with_name("index_v2.safetensors")
GOLDEN_V3 = Path(__file__).with_name("index_v3.safetensors")
GOLDEN_V4_SPEC = Path(__file__).with_name("index_v4_spec.safetensors")
GOLDEN_V4_PACKED = Path(__file__).with_name("index_v4_packed.safetensors")
GOLDEN_VERSION = "0.1.0"  # hashlab version that wrote the golden file


def golden_map() -> IndexMap:
    """A small map exercising every v1 feature: int16 and int32 tables, zeros, sign, bias, attrs."""
    hashed = build_map(
        HashSpec(kind="xxhash", table_size=5, seed=7, sparsity=0.25, sign=True), Architecture((3, 4, 2), name="golden")
    )
    big = LayerMap(
        name="conv",
        indices=np.array([[0, 40000 - 1, -1], [7, 7, 123]], dtype=np.int32),
        table=len(hashed.table_sizes),
        bias_indices=np.array([-1, 39998], dtype=np.int32),
        attrs={"kernel": [1, 3], "note": "golden"},
    )
    return IndexMap(layers=hashed.layers + (big,), table_sizes=hashed.table_sizes + (40000,), spec=hashed.spec)


def golden_map_v2() -> IndexMap:
    """The v1 golden map with a composed spec (v2 checks a build_map spec against the layers)
    and an initial table for table 1 (tables 0 and 2 have none)."""
    m = golden_map()
    init = np.linspace(-0.5, 0.5, m.table_sizes[1], dtype=np.float32)
    return IndexMap(
        layers=m.layers,
        table_sizes=m.table_sizes,
        spec={"builder": "golden", "parts": [m.spec, {"conv": "hand-written"}]},
        initial_tables=(None, init, None),
    )


def golden_map_v3() -> IndexMap:
    """A small map exercising every v3 feature: a compression budget (per-layer table sizes), hashed
    hidden biases with bias signs, weight signs and zeros."""
    return build_map(
        HashSpec(kind="uniform", compression="3/7", seed=11, sparsity=0.2, sign=True, hash_bias=True),
        Architecture((5, 4, 3, 2), name="golden-v3"),
    )


def golden_map_v4_spec() -> IndexMap:
    """A map its spec rebuilds (v4 ``"spec"``: no index arrays in the file): the v3 golden map, with layer names
    and attrs of its own (a file stores them; they are not rebuilt) and an initial table for table 1."""
    m = golden_map_v3()
    init = np.linspace(-1, 1, m.table_sizes[1], dtype=np.float32)
    layers = tuple(
        dataclasses.replace(lay, name=f"block{k}.linear", attrs={"note": "golden"} if k == 0 else {})
        for k, lay in enumerate(m.layers)
    )
    return IndexMap(layers=layers, table_sizes=m.table_sizes, spec=m.spec, initial_tables=(None, init, None))


def golden_map_v4_packed() -> IndexMap:
    """A map no spec rebuilds (v4 ``"packed"``): the v2 golden map (3-bit and 16-bit codes: tables of 5 and 40000
    entries, int16 and int32, zeros, signs, a shared bias, attrs, an initial table) and a layer with a signed
    shared bias."""
    m = golden_map_v2()
    signed = LayerMap(
        name="signed",
        indices=np.array([[4, -1, 0], [2, 2, 1]], dtype=np.int16),
        table=1,
        bias_indices=np.array([-1, 3], dtype=np.int16),
        bias_sign=np.array([1, -1], dtype=np.int8),
    )
    return dataclasses.replace(m, layers=m.layers + (signed,))


if __name__ == "__main__":
    save_index_file(golden_map(), GOLDEN, version=1)
    save_index_file(golden_map_v2(), GOLDEN_V2, version=2)
    save_index_file(golden_map_v3(), GOLDEN_V3, version=3)
    save_index_file(golden_map_v4_spec(), GOLDEN_V4_SPEC, version=4, storage="spec")
    save_index_file(golden_map_v4_packed(), GOLDEN_V4_PACKED, version=4, storage="packed")
    print(f"wrote {GOLDEN}, {GOLDEN_V2}, {GOLDEN_V3}, {GOLDEN_V4_SPEC} and {GOLDEN_V4_PACKED}")
