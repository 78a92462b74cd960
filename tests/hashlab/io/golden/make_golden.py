"""Regenerate the golden files of formats v1, v2 and v3 (only on a deliberate, versioned format change).

python -m tests.hashlab.io.golden.make_golden
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab import Architecture, HashSpec, IndexMap, LayerMap, build_map, save_index_file

GOLDEN = Path(__file__).with_name("index_v1.safetensors")
GOLDEN_V2 = Path(__file__).with_name("index_v2.safetensors")
GOLDEN_V3 = Path(__file__).with_name("index_v3.safetensors")
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


if __name__ == "__main__":
    save_index_file(golden_map(), GOLDEN, version=1)
    save_index_file(golden_map_v2(), GOLDEN_V2, version=2)
    save_index_file(golden_map_v3(), GOLDEN_V3, version=3)
    print(f"wrote {GOLDEN}, {GOLDEN_V2} and {GOLDEN_V3}")
