"""The README's main job runs end to end on real MNIST (shortened: 1 epoch on 2000 samples)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_module


@pytest.mark.slow
def test_main_job_runs_on_real_mnist(tmp_path, data_root):
    out = tmp_path / "main"
    args = ["--data-root", str(data_root), "--out", str(out), "--epochs", "1", "--limit-train", "2000", "--no-progress"]
    res = run_module("analysis.main_job", *args)
    assert res.returncode == 0, res.stderr
    assert "H nats" in res.stdout and "compression ratio 66.27" in res.stdout
    acc = float(re.search(r"MNIST test accuracy: ([\d.]+)%", res.stdout).group(1))
    results = json.loads((out / "results.json").read_text())
    assert abs(100 * results["test_accuracy"] - acc) < 0.01
    assert results["index_file"]["spec"]["kind"] == "dirichlet" and results["index_file"]["spec"]["alpha"] == 1.0
    assert acc > 60  # far above chance (10%) even after one short epoch
    stats = json.loads((out / "stats.json").read_text())
    assert stats["schema"] == "hashlab.stats" and len(stats["layers"]) == 3
    h = stats["tables"][0]["entropy"]
    assert 6.3 < h["nats"] < 6.6  # Dirichlet(1) over 1000 entries: E[H(p)] = psi(1001) - psi(2) = 6.49 nats
    assert abs(h["bits"] * 0.6931471805599453 - h["nats"]) < 1e-9
