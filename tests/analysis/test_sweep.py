"""A tiny paper sweep on real MNIST: tidy CSV, figure, resume without retraining, validation."""
from __future__ import annotations

import csv

import pytest

from analysis.sweep import COLUMNS, SweepConfig, run_sweep


def test_sweep_writes_tidy_rows_and_resumes(tmp_path, data_root):
    config = SweepConfig(kind="dirichlet", values=(0.1, 100.0), sparsities=(0.0,), seeds=(0,), epochs=1,
                         limit_train=600, data_root=str(data_root), device="cpu")
    rows = run_sweep(config, tmp_path, progress=False)
    assert [r["alpha"] for r in rows] == [0.1, 100.0]
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == COLUMNS and len(table) == 2
    # more balance, more entropy: alpha=100 uses the table almost uniformly (ln 1000 = 6.91 nats)
    low, high = (float(r["table_entropy_nats"]) for r in table)
    assert low < 6.0 < 6.8 < high < 6.91
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    run_sweep(config, tmp_path, progress=False)  # resume: nothing retrained
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()} == stamps


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "uniform"}, "sweep kind"),
    ({"values": ()}, "values is empty"),
    ({"kind": "neighborhood", "values": (1.5,)}, "non-negative integers"),
    ({"values": (-1.0,)}, "alpha > 0"),
    ({"sparsities": (1.0,)}, "sparsity"),
    ({"dataset": "imagenet"}, "unknown dataset"),
])
def test_sweep_config_rejects_bad_grids(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(**kwargs)
