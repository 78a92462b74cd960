"""Regenerate the format-v1 golden file (only on a deliberate, versioned format change).

    python -m tests.hashlab.io.golden.make_golden
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab import Architecture, HashSpec, IndexMap, LayerMap, build_map, save_index_file

GOLDEN = Path(__file__).with_name("index_v1.safetensors")
GOLDEN_VERSION = "0.1.0"  # hashlab version that wrote the golden file


def golden_map() -> IndexMap:
    """A small map exercising every v1 feature: int16 and int32 tables, zeros, sign, bias, attrs."""
    hashed = build_map(HashSpec(kind="xxhash", table_size=5, seed=7, sparsity=0.25, sign=True),
                       Architecture((3, 4, 2), name="golden"))
    big = LayerMap(name="conv", indices=np.array([[0, 40000 - 1, -1], [7, 7, 123]], dtype=np.int32),
                   table=len(hashed.table_sizes), bias_indices=np.array([-1, 39998], dtype=np.int32),
                   attrs={"kernel": [1, 3], "note": "golden"})
    return IndexMap(layers=hashed.layers + (big,), table_sizes=hashed.table_sizes + (40000,), spec=hashed.spec)


if __name__ == "__main__":
    save_index_file(golden_map(), GOLDEN)
    print(f"wrote {GOLDEN}")
