"""The committed confirmatory results keep their promises: every run carries the stopping rule, trained to it, and no
accuracy interval in a report leaves [0, 100] %."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.conftest import REPO

CONFIRMATORY = sorted((REPO / "analysis" / "results").glob("*/confirmatory"))


def test_there_is_a_confirmatory_result_to_check():
    assert CONFIRMATORY, "no analysis/results/<dataset>/confirmatory folder is committed"


@pytest.mark.parametrize("folder", CONFIRMATORY, ids=lambda p: p.parent.name)
def test_every_run_carries_the_stopping_rule_and_ended_by_it_or_at_the_cap(folder):
    with open(folder / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for r in rows:
        assert r["stop_after_drops"] == "2" and r["epochs"] == "60", r["run_key"]
        trained = int(r["epochs_trained"])
        assert r["stopped_by_rule"] == "True" or trained == 60, r["run_key"]
        assert trained <= 60 and int(r["lr_drops"]) >= (2 if r["stopped_by_rule"] == "True" else 0)
    for path in (folder / "runs").glob("*.json"):
        rec = json.loads(path.read_text())
        cfg = rec["results"]["config"]
        assert cfg["stop_after_drops"] == 2 and cfg["stop_patience"] == 4
        assert len(rec["results"]["epochs"]) == rec["row"]["epochs_trained"]


@pytest.mark.parametrize("folder", CONFIRMATORY, ids=lambda p: p.parent.name)
def test_no_accuracy_interval_in_the_report_leaves_0_100(folder):
    text = (folder / "REPORT.md").read_text()
    cells = text[text.index("## Cells") : text.index("## Hash seed")]
    intervals = re.findall(r"\| (-?\d+\.\d\d) \[(-?\d+\.\d\d), (-?\d+\.\d\d)\] \|", cells)
    assert intervals
    for mean, low, high in intervals:
        assert 0 <= float(low) <= float(mean) <= float(high) <= 100


COMPRESSION = REPO / "analysis" / "results" / "compression"


def test_the_committed_compression_study_is_whole_and_its_files_are_what_the_records_say():
    from analysis.compression_study import load_design

    records = {p.stem: json.loads(p.read_text()) for p in (COMPRESSION / "runs").glob("*.json")}
    planned = {r.run_id for r in load_design().runs("compression")}
    assert set(records) == planned
    for run_id, r in records.items():
        assert r["profile"] == "compression" and not r.get("diverged", False), run_id
        assert (COMPRESSION / r["file"]).stat().st_size == r["file_bytes"], run_id
        assert r["epochs_trained"] <= r["config"]["epochs"], run_id
    with open(COMPRESSION / "summary.csv", newline="") as f:
        for row in csv.DictReader(f):
            assert 0 <= float(row["accuracy_low"]) <= float(row["accuracy"]) <= float(row["accuracy_high"]) <= 1
