"""The compression study: its design file, the narrowed baseline, and the smoke profile end to end on real data."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.compression_study import (
    STUDY_FILE,
    CompressionRun,
    diverged_at,
    done_ids,
    execute,
    load_design,
    main,
    narrow_widths,
)
from analysis.report_compression import comparisons_table, results_table, summary_table
from analysis.study import StudyError
from tests.conftest import run_module


def _params(widths) -> int:
    from trainers.torch_backend import LeNet5

    return sum(p.numel() for p in LeNet5(tuple(widths)).parameters())


def test_narrow_widths_give_the_full_network_and_the_closest_narrowed_one():
    assert narrow_widths(61706) == (6, 16, 120, 84)
    for target in (1199, 4079, 15600):
        w = narrow_widths(target)
        assert _params(w) == pytest.approx(target, rel=0.06)
        assert w == tuple(sorted(w, key=lambda _: 0))  # widths keep their order: one factor scales all
    with pytest.raises(ValueError, match="narrowest"):
        narrow_widths(10)


def test_the_design_file_loads_and_plans_dense_before_its_fine_tuned_runs():
    design = load_design()
    runs = design.runs("compression")
    assert len(runs) == 3 * (1 + 3 * 4)
    assert len({r.run_id for r in runs}) == len(runs)
    for i, r in enumerate(runs):
        if r.parent is not None:
            assert runs.index(r.parent) < i
    assert CompressionRun("hashed", "1/64", 2).run_id == "hashed-1_64-s2"
    assert design.spec(CompressionRun("arbified", "1/16", 1)).seed == 1001
    ft, tr = design.config(CompressionRun("clustered", "1/4", 0), "compression"), design.config(runs[0], "compression")
    assert ft.lr < tr.lr and ft.stop_after_drops == 1 and tr.stop_after_drops == 2


@pytest.mark.parametrize(
    "edit,msg",
    [
        (("lr = 0.05", "lr = 0.05\nnesterov = true"), "unknown keys"),
        (('ratios = ["1/4", "1/16", "1/64"]', 'ratios = ["3/4"]'), "'1/k'"),
        (("train_seeds = [0, 1, 2]", "train_seeds = [0, 0]"), "distinct"),
        (("version = 1", "version = 9"), "version-1"),
    ],
    ids=["key", "ratio", "seeds", "version"],
)
def test_a_bad_design_file_is_refused_naming_the_field(tmp_path, edit, msg):
    text = STUDY_FILE.read_text()
    assert edit[0] in text
    bad = tmp_path / "c.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(StudyError, match=msg):
        load_design(bad)


def test_bad_input_exits_2_before_any_work(tmp_path):
    assert main(["--profile", "nope", "--out", str(tmp_path / "o")]) == 2
    assert main(["--profile", "smoke", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert main(["--profile", "smoke", "--report-only", "--out", str(tmp_path / "o")]) == 2  # no runs to report


def test_help():
    r = run_module("analysis.compression_study", "--help")
    assert r.returncode == 0 and "--profile" in r.stdout and "--report-only" in r.stdout


@pytest.mark.slow
def test_the_smoke_profile_trains_saves_reloads_and_reports(tmp_path, data_root):
    out = tmp_path / "c"
    argv = ["--profile", "smoke", "--out", str(out), "--data-root", str(data_root), "--workers", "2", "--no-progress"]
    assert main(argv) == 0
    records = {r.stem: json.loads(r.read_text()) for r in (out / "runs").glob("*.json")}
    assert set(records) == {"dense-s0", "hashed-1_16-s0", "narrow-1_16-s0", "arbified-1_16-s0", "clustered-1_16-s0"}
    dense, hashed = records["dense-s0"], records["hashed-1_16-s0"]
    assert dense["stored_values"] == 61706 and hashed["stored_values"] == records["clustered-1_16-s0"]["stored_values"]
    assert hashed["table_entries"] == sum(math.ceil(w / 16) for w in (150, 2400, 48000, 10080, 840))
    assert records["narrow-1_16-s0"]["stored_values"] == pytest.approx(hashed["stored_values"], rel=0.05)
    # the spec-stored hashed file is tables + biases + a small header; k-means must store its indices
    assert hashed["file_bytes"] < 4 * hashed["stored_values"] + 4096 < dense["file_bytes"] / 10
    assert records["clustered-1_16-s0"]["file_bytes"] > 3 * hashed["file_bytes"]
    for r in records.values():
        assert (out / r["file"]).stat().st_size == r["file_bytes"]
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["epochs_trained"] == 1 and r["git_commit"]
    assert done_ids(out) == set(records)
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(argv) == 0  # resumes: nothing left to train
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(["--profile", "compression", "--out", str(out), "--data-root", str(data_root)]) == 2  # not its folder
    report = (out / "REPORT.md").read_text()
    assert "(a) hashed from scratch" in report and "hashed - narrow" in report
    assert (out / "figures" / "accuracy_vs_size.png").stat().st_size > 10_000
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.method) == {"dense", "hashed", "arbified", "clustered", "narrow"}


def _synthetic(diff: float, sd: float, seeds: int = 5) -> pd.DataFrame:
    """Records of two ratios: hashed beats narrow by ``diff`` (plus noise of SD 0.3 pp), seeds vary by ``sd``."""
    import numpy as np

    rng = np.random.default_rng(0)
    recs = []
    for s in range(seeds):
        base = 0.85 + rng.normal(0, sd)
        recs.append(dict(run_id=f"dense-s{s}", method="dense", ratio=None, train_seed=s, test_accuracy=base + 0.05))
        for ratio in ("1/4", "1/64"):
            for m, acc in (("hashed", base + diff + rng.normal(0, 0.003)), ("narrow", base)):
                recs.append(dict(run_id=f"{m}-{ratio}-s{s}", method=m, ratio=ratio, train_seed=s, test_accuracy=acc))
    for r in recs:
        r.update(
            stored_values=100,
            file_bytes=1000 if r["method"] != "dense" else 8000,
            gzip_bytes=900,
            epochs_trained=10,
            stopped_by_rule=True,
            lr_drops=2,
            widths=[6, 16, 120, 84],
            wall_time_s=1.0,
        )
    return results_table(recs)


@pytest.mark.parametrize("diff", [0.02, 0.0])
def test_paired_differences_find_a_planted_gap_and_cover_zero_without_one(diff):
    comps = comparisons_table(_synthetic(diff, sd=0.01)).set_index(["ratio", "comparison"])
    for ratio in ("1/4", "1/64"):
        row = comps.loc[(ratio, "hashed - narrow")]
        assert row["diff"] == pytest.approx(diff, abs=0.004) and row.seeds == 5
        assert row.diff_low <= diff <= row.diff_high
        assert (row.diff_low > 0) == (diff > 0)  # the planted gap is found; without one the interval covers 0
    summary = summary_table(_synthetic(diff, sd=0.01))
    assert (summary.accuracy_low >= 0).all() and (summary.accuracy_high <= 1).all()
    assert summary.loc[summary.method == "dense", "file_ratio"].item() == 1.0


def test_diverged_at_finds_the_first_non_finite_epoch_or_parameter():
    import torch

    from trainers.torch_backend.results import EpochRecord

    def ep(i, loss, val=0.5):
        return EpochRecord(epoch=i, train_accuracy=0.5, train_loss=loss, lr=0.1, wall_time_s=1.0, val_loss=val)

    net = torch.nn.Linear(2, 2)
    assert diverged_at([ep(1, 1.0), ep(2, 0.9)], net) is None
    assert diverged_at([ep(1, 1.0), ep(2, math.nan), ep(3, math.nan)], net) == 2
    assert diverged_at([ep(1, 1.0, val=math.inf)], net) == 1
    with torch.no_grad():
        net.weight[0, 0] = math.nan
    assert diverged_at([ep(1, 1.0), ep(2, 0.9)], net) == 2


@pytest.mark.slow
def test_a_diverging_run_is_retried_once_at_the_designs_lr_factor_and_recorded(tmp_path, data_root):
    text = STUDY_FILE.read_text()
    study = tmp_path / "c.toml"
    study.write_text(text.replace("lr = 0.05", "lr = 1e8", 1))  # the [train] recipe: diverges at once
    design = load_design(study)
    assert design.retry_lr_factor == 0.2
    record = execute(CompressionRun("dense", None, 0), design, "smoke", tmp_path / "out", str(data_root))
    assert [a["lr"] for a in record["diverged_attempts"]] == [1e8, 2e7]  # retried once, still diverged
    assert record["diverged"] and record["lr"] == 2e7 and record["config"]["lr"] == 2e7
    assert json.loads((tmp_path / "out" / "runs" / "dense-s0.json").read_text())["diverged"]
