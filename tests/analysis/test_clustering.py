"""The clustering study (k-means weight sharing against hashed maps) runs end to end on real MNIST.

Shortened: 1 + 1 epochs on 2000 samples.
"""

from __future__ import annotations

import json

import pytest

from analysis.clustering import main
from tests.conftest import run_module


@pytest.mark.slow
def test_clustering_study_runs_on_real_mnist(tmp_path, data_root):
    out = tmp_path / "clustering"
    args = ["--data-root", str(data_root), "--out", str(out), "--epochs", "1", "--finetune-epochs", "1"]
    args += ["--limit-train", "2000", "--iters", "2", "--table-grad-scale", "load", "--no-progress"]
    res = run_module("analysis.clustering", *args)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    rows = {r["model"].split(" (")[0]: r for r in results["rows"]}
    assert list(rows) == [
        "dense",
        "clustered, before fine-tuning",
        "clustered + fine-tuned",
        "clustered via `hashlab train`",
        "Dirichlet(alpha=1) from scratch",
        "uniform from scratch",
    ]
    dense, before = rows["dense"]["test_accuracy"], rows["clustered, before fine-tuning"]["test_accuracy"]
    assert dense > 0.6 and abs(before - dense) < 0.02  # 1000 centres + the dense BatchNorm: about the dense network
    assert rows["clustered + fine-tuned"]["table_entries"] == 3000 and rows["dense"]["table_entries"] == 198_800
    assert set(results["carried_over"]) == {
        "linear.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    }
    assert results["provenance"]["versions"]["torch"] and results["provenance"]["git_commit"]
    assert [q["tensor"] for q in results["quantization"]] == ["blocks.0.weight", "blocks.1.weight", "blocks.2.weight"]
    report = (out / "REPORT.md").read_text()
    assert "## Provenance" in report and "clustered, before fine-tuning" in report
    spec = json.loads((out / "runs" / "clustered-trainer.json").read_text())["index_file"]["spec"]
    assert spec["kind"] == "cluster" and spec["table_size"] == 1000 and spec["scope"] == "layer"


def test_bad_arguments_fail_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["--out", str(out), "--table-grad-scale", "mean"]) == 2
    assert "table_grad_scale" in capsys.readouterr().err
    assert main(["--out", str(out), "--table-size", "0"]) == 2
    assert "table_size" in capsys.readouterr().err
    assert not out.exists()
