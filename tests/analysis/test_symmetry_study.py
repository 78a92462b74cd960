"""The symmetry study runs end to end on a small results table and gets the known groups right."""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd
import pytest

from analysis.symmetry_study import main, spec_of
from hashlab import ARCHITECTURES, build_map

ROWS = [  # study, kind, alpha, radius, sign, sparsity, hash seed, test accuracy
    ("noise", "neighborhood", None, 0, False, 0.0, 1000, 0.91),
    ("noise", "neighborhood", None, 0, False, 0.1, 1000, 0.95),
    ("noise", "neighborhood", None, 1, False, 0.0, 1000, 0.96),
    ("noise", "neighborhood", None, 1, False, 0.1, 1000, 0.96),
    ("controls", "modulus", None, None, False, 0.0, 1000, 0.91),
    ("controls", "identity", None, None, False, 0.9, 1000, 0.97),
    ("controls", "xxhash", None, None, True, 0.7, 1000, 0.95),
    ("balance", "dirichlet", 1e-3, None, False, 0.9, 1000, 0.70),
    ("epochs", "dirichlet", 1.0, None, False, 0.0, 1000, 0.97),  # not part of the pilot grid's symmetry study
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("symmetry")
    cols = ["study", "kind", "alpha", "radius", "sign", "sparsity", "hash_seed", "test_accuracy"]
    df = pd.DataFrame(ROWS, columns=cols).assign(table_size=1000, train_seed=0, epochs=6)
    csv = tmp / "results.csv"
    df.to_csv(csv, index=False)
    out = tmp / "out"
    assert main(["--results", str(csv), "--out", str(out)]) == 0
    return csv, out


def test_the_study_writes_its_files_with_provenance(study):
    csv, out = study
    assert {p.name for p in out.iterdir()} == {"symmetry.csv", "cells.csv", "figures", "provenance.json", "REPORT.md"}
    assert (out / "figures" / "symmetry.png").stat().st_size > 10_000
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["results_csv_sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest() and prov["maps"] == 8
    assert prov["igraph"] and prov["hashlab_version"]


def test_the_study_finds_the_known_groups(study):
    _, out = study
    maps = pd.read_csv(out / "symmetry.csv")
    assert set(maps["study"]) == {"noise", "controls", "balance"}  # the 30-epoch study is left out
    r0 = maps[(maps["kind"] == "neighborhood") & (maps["radius"] == 0) & (maps["sparsity"] == 0)].iloc[0]
    assert r0["fc0_log2_aut"] == 75 and r0["network_log2_aut"] == 5 and r0["fc0_distinct_rows"] == 125
    assert r0["fc1_log2_aut"] == pytest.approx(5 * math.log2(math.factorial(40)))
    r1 = maps[(maps["kind"] == "neighborhood") & (maps["radius"] == 1)]
    assert (r1[["fc0_log2_aut", "fc1_log2_aut", "fc2_log2_aut", "network_log2_aut"]] == 0).all().all()
    ident = maps[maps["kind"] == "identity"].iloc[0]
    assert ident["fc2_log2_aut"] >= math.log2(math.factorial(int(ident["fc2_zero_cols"]))) > 100  # dead units


def test_the_report_says_pilot_and_answers_the_questions(study):
    _, out = study
    text = (out / "REPORT.md").read_text()
    assert "6-epoch pilot" in text and "not of converged" in text
    assert "**The radius-0 outlier.**" in text and "75.0 / 795.8 / 5.0 / 5.0" in text
    assert "| modulus | 0 | 75.0 | 795.8 | 5.0 | 5.0 | 125 / 5 / 5 | 91.0 |" in text
    assert "![symmetry](figures/symmetry.png)" in text


def test_spec_of_rebuilds_the_recorded_map():
    row = {"kind": "dirichlet", "alpha": 0.1, "radius": float("nan"), "sign": False, "sparsity": 0.5}
    spec = spec_of({**row, "table_size": 1000, "hash_seed": 1001})
    assert (spec.kind, spec.alpha, spec.radius, spec.seed, spec.sparsity) == ("dirichlet", 0.1, None, 1001, 0.5)
    assert build_map(spec, ARCHITECTURES["mnist-mlp"]).layers[0].indices.shape == (200, 784)
