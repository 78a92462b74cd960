"""The reproduction end to end on real MNIST: the smoke profile, resumed after SIGKILL, and on Ray."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.reproduce import main, reproduce
from analysis.runs import ROW_COLUMNS
from analysis.study import StudyError, load_profiles, load_study, plan
from tests.conftest import REPO, python_module

VOLATILE = {"wall_time_s", "finished_at", "git_commit"}  # everything else must be equal run to run on CPU


def stable(rows):
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows), key=lambda r: r["run_key"])


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, data_root):
    """One uninterrupted smoke reproduction (the reference the other tests compare with)."""
    out = tmp_path_factory.mktemp("smoke")
    summary = reproduce("smoke", "mnist", out, data_root=str(data_root), workers=2, progress=False)
    return out, summary


def test_profiles_and_studies_plan_the_paper_grid():
    profiles = load_profiles()
    assert set(profiles) >= {"smoke", "quick", "paper"}
    paper = plan(profiles["paper"], "mnist")
    counts = {s: sum(r.study == s for r in paper) for s in ("balance", "noise", "controls", "epochs")}
    assert counts == {"balance": 7 * 6 * 3, "noise": 8 * 6 * 3, "controls": 4 * 6 * 3, "epochs": 3 * 2 * 3}
    assert len({r.key for r in paper}) == len(paper)
    assert {(r.train.seed, r.spec.seed) for r in paper} == {(0, 1000), (1, 1001), (2, 1002)}
    assert {r.train.epochs for r in paper if r.study == "epochs"} == {30}
    assert {r.train.epochs for r in paper if r.study == "balance"} == {6}
    assert load_study("noise").variants[0].radius == 0
    assert sorted(load_study("balance").sparsities) == [0, 0.1, 0.3, 0.5, 0.7, 0.9]


def test_control_study_crosses_arms_and_reuses_the_balance_runs():
    paper = plan(load_profiles()["paper"], "mnist")
    ctl = [r for r in paper if r.study == "balance_controls"]
    assert len(ctl) == 3 * 7 * 3 * 3  # three new arms x alpha x sparsity x seeds; the paper arm is the balance study's
    assert {(r.train.optimizer, r.train.table_grad_scale, r.train.lr) for r in ctl} == {
        ("sgd", "load", 0.1),
        ("adam", "none", 0.001),
        ("adam", "load", 0.001),
    }
    balance = {(r.spec.alpha, r.spec.sparsity, r.train.seed) for r in paper if r.study == "balance"}
    assert {(r.spec.alpha, r.spec.sparsity, r.train.seed) for r in ctl} <= balance
    assert len({r.key for r in paper}) == len(paper)


def test_committed_run_keys_survive_the_new_run_fields():
    """Fields added later (optimizer, table_grad_scale, arch, ...) enter the key only when not default: every
    committed record, old or new, is found again under its key."""
    import json

    from analysis.runs import RunConfig

    records = sorted((REPO / "analysis" / "results").glob("*/runs/*.json"))
    old, runs = 0, []
    for rec in records:
        d = json.loads(rec.read_text())
        if "run" not in d:  # the clustering study's records are not reproduction runs
            continue
        run = RunConfig.from_dict(d["run"])
        runs.append(run)
        assert run.key == d["row"]["run_key"] == rec.stem, rec
        old += "optimizer" not in d["run"]
    assert old >= 360  # records written before the fields existed
    run = runs[0]
    assert run.replace(optimizer="adam").key != run.replace(optimizer="sgd").key
    assert run.replace(table_grad_scale="load").key != run.replace(table_grad_scale="none").key


def test_run_key_defaults_agree_with_the_configs_added_fields():
    """A run field taken from a HashSpec or TrainConfig field added later has the default that the config's
    own dict migration gives it (one meaning of an older dict); one the config always had (verify_md5) has the
    config's default."""
    import dataclasses

    from analysis.runs import _SPEC_FIELDS, _TRAIN_FIELDS, KEY_DEFAULTS
    from hashlab import HashSpec
    from trainers.torch_backend.config import TrainConfig

    for run_field, default in KEY_DEFAULTS.items():
        for cls, fields, added in (
            (HashSpec, _SPEC_FIELDS, HashSpec.ADDED_FIELDS),
            (TrainConfig, _TRAIN_FIELDS, TrainConfig.ADDED_FIELDS),
        ):
            if run_field in fields and fields[run_field] in added:
                assert added[fields[run_field]] == default, run_field
            elif run_field in fields:
                assert {f.name: f.default for f in dataclasses.fields(cls)}[fields[run_field]] == default, run_field


def test_a_profile_reusing_runs_outside_its_grid_is_refused(tmp_path):
    body = (REPO / "analysis" / "studies" / "profiles.toml").read_text()
    body = body.replace("balance_controls = [0.001, 1000]", "balance_controls = [0.01, 1000]")
    (tmp_path / "profiles.toml").write_text(body)
    with pytest.raises(StudyError, match="reuses 'balance'"):
        load_profiles(tmp_path / "profiles.toml")


def test_a_changed_setting_is_a_new_run_key():
    runs = plan(load_profiles()["smoke"], "mnist", data_root="a")
    again = plan(load_profiles()["smoke"], "mnist", data_root="b")
    assert [r.key for r in runs] != [r.key for r in again]
    assert [r.key for r in runs] == [r.key for r in plan(load_profiles()["smoke"], "mnist", data_root="a")]


_V2 = (
    'version = 2\nname = "bad"\ndescription = ""\nclaims = []\nkind = "dirichlet"\nsweep = "alpha"\n'
    "values = [1]\nsparsities = [0]\n"
)


@pytest.mark.parametrize(
    "body,match",
    [
        ('version = 4\nname = "bad"', "version 4 is not supported"),
        ('version = 1\nname = "other"', "must equal the file's stem"),
        (
            'version = 1\nname = "bad"\ndescription = ""\nclaims = []\nkind = "dirichlet"\nsweep = "radius"\n'
            "values = [1]\nsparsities = [0]",
            "cannot sweep 'radius'",
        ),
        (
            'version = 1\nname = "bad"\ndescription = ""\nclaims = []\nkind = "dirichlet"\nsweep = "alpha"\n'
            "values = [-1]\nsparsities = [0]",
            "alpha",
        ),
        (
            'version = 1\nname = "bad"\ndescription = ""\nclaims = []\nkind = "dirichlet"\nsweep = "alpha"\n'
            "values = [1]\nsparsities = [0]\nepochs = 3",
            "unknown field",
        ),
        (
            'version = 1\nname = "bad"\ndescription = ""\nclaims = []\nkind = "dirichlet"\nsweep = "alpha"\n'
            "values = [1]\nsparsities = [1.0]",
            "sparsity",
        ),
        ('version = 1\nname = "bad"\n[', "not valid TOML"),
        (
            _V2 + 'reuse = "balance"\n[[arms]]\noptimizer = "adam"\nlr = 0.001\ntable_grad_scale = "none"',
            "no arm has it",
        ),
        (_V2 + '[[arms]]\noptimizer = "rmsprop"\nlr = 0.001\ntable_grad_scale = "none"', "optimizer 'rmsprop'"),
        (_V2 + '[[arms]]\noptimizer = "sgd"\nlr = 0.1\ntable_grad_scale = "mean"', "table_grad_scale 'mean'"),
        (
            _V2.replace("version = 2", "version = 1")
            + '[[arms]]\noptimizer = "sgd"\nlr = 0.1\ntable_grad_scale = "none"',
            "unknown field",
        ),
    ],
)
def test_bad_study_files_are_refused_with_the_reason(tmp_path, body, match):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(StudyError, match=match):
        load_study(path)


def test_cli_refuses_bad_input_before_any_work(tmp_path, capsys):
    assert main(["--profile", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--studies", "controls", "--out", str(tmp_path / "x")]) == 2
    assert "does not run studies ['controls']" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["--profile", "smoke", "--out", str(tmp_path / "file")]) == 2
    assert "--out folder" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--workers", "0", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x" / "runs").exists()


@pytest.mark.slow
def test_smoke_profile_writes_rows_figures_and_report(smoke):
    out, summary = smoke
    assert summary["runs"] == 16 and summary["finished"] == 16 and not summary["failed"]
    rows = read_csv(out / "results.csv")
    assert len(rows) == 16 and list(rows[0]) == ROW_COLUMNS and len(list((out / "runs").iterdir())) == 16
    assert {r["study"] for r in rows} == {"balance", "noise"}
    assert all(0.05 < float(r["test_accuracy"]) <= 1 and r["hash_seed"] != r["train_seed"] for r in rows)
    report = (out / "REPORT.md").read_text()
    assert "## Verdicts" in report and "Page's L" in report and "paired" in report
    for claim in range(1, 7):
        assert f"| {claim} |" in report
    for fig in ("fig2_accuracy_vs_alpha.png", "fig3_accuracy_vs_entropy.png", "fig4_accuracy_vs_radius.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    # the common random numbers: alpha 0.01 and 1000 at one train seed start from the same table, so their
    # entropies differ while hash seeds and train seeds pair up
    seeds = {(r["train_seed"], r["hash_seed"]) for r in rows}
    assert seeds == {("0", "1000"), ("1", "1001")}


@pytest.mark.slow
def test_rerun_skips_finished_runs(smoke, data_root):
    out, _ = smoke
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    summary = reproduce("smoke", "mnist", out, data_root=str(data_root), workers=2, progress=False, report=False)
    assert summary["finished"] == 0 and summary["skipped"] == 16
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def smoke_command(out: Path, data_root: Path) -> list[str]:
    """``python -m analysis.reproduce`` of the smoke profile into ``out``, two workers, no report."""
    args = ["--profile", "smoke", "--out", str(out), "--data-root", str(data_root)]
    return python_module("analysis.reproduce", *args, "--workers", "2", "--no-progress", "--no-report")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killing_only_the_reproduction_leaves_no_orphan_workers(tmp_path, data_root):
    cmd = smoke_command(tmp_path, data_root)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 3:  # the resource tracker and two pool workers
        assert proc.poll() is None, "the reproduction ended before it could be killed"
        time.sleep(0.2)
        workers = _children(proc.pid)
    time.sleep(1.0)  # let the workers run their initializer
    proc.kill()  # the parent only, not its process group
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.2)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists() and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    ]
    for w in alive:  # do not leave them behind even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived the killed reproduction"


@pytest.mark.slow
def test_sigkill_midway_then_rerun_gives_every_run_once_and_equal_rows(smoke, tmp_path, data_root):
    ref_out, _ = smoke
    out = tmp_path / "killed"
    cmd = smoke_command(out, data_root)
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((out / "runs").glob("*.json"))) < 3:
        assert proc.poll() is None, "the reproduction ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the pool's workers die too
    proc.wait()
    done = len(list((out / "runs").glob("*.json")))
    assert 3 <= done < 16
    assert subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=600).returncode == 0
    assert len(list((out / "runs").glob("*.json"))) == 16
    rows = read_csv(out / "results.csv")
    assert len({r["run_key"] for r in rows}) == len(rows) == 16
    assert stable(rows) == stable(read_csv(ref_out / "results.csv"))


@pytest.mark.slow
def test_ray_engine_gives_the_rows_of_the_local_pool(smoke, tmp_path, data_root):
    ref_out, _ = smoke
    summary = reproduce(
        "smoke",
        "mnist",
        tmp_path,
        data_root=str(data_root),
        engine="ray",
        workers=2,
        studies=("balance",),
        progress=False,
        report=False,
    )
    assert summary["finished"] == 8 and not summary["failed"]
    ref = [r for r in read_csv(ref_out / "results.csv") if r["study"] == "balance"]
    assert stable(read_csv(tmp_path / "results.csv")) == stable(ref)


def test_plan_tasks_groups_runs_that_differ_only_in_their_map_and_load_normalisation():
    from analysis.engines import plan_tasks

    runs = plan(load_profiles()["quick"], "mnist")
    tasks = plan_tasks(runs, 8)
    assert sorted(r.key for t in tasks for r in t) == sorted(r.key for r in runs)  # every run once
    assert max(len(t) for t in tasks) == 8 and plan_tasks(runs, 1) == [[r] for r in runs]
    member = ("study", "kind", "alpha", "radius", "sign", "sparsity", "hash_seed", "table_grad_scale")
    for t in tasks:
        keys = {tuple((k, v) for k, v in r.to_dict().items() if k not in member) for r in t}
        assert len(keys) == 1  # same training, maps and table_grad_scale aside
    big = plan_tasks(runs, 64)
    assert any(len({r.to_dict()["table_grad_scale"] for r in t}) > 1 for t in big)  # SGD and SGD + load together
    adam = [t for t in tasks if t[0].train.optimizer == "adam"]
    assert adam and all(len(t) == 1 for t in adam)  # train_group trains SGD only
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        plan_tasks(runs, 0)


@pytest.mark.slow
def test_groups_give_the_rows_of_solo_runs(smoke, tmp_path, data_root):
    out, _ = smoke
    summary = reproduce(
        "smoke", "mnist", tmp_path, data_root=str(data_root), workers=2, progress=False, report=False, group_size=4
    )
    assert summary["finished"] == summary["runs"] and not summary["failed"]
    solo = {r["run_key"]: r for r in read_csv(out / "results.csv")}
    grouped = read_csv(tmp_path / "results.csv")
    assert sorted(solo) == sorted(r["run_key"] for r in grouped)
    rounding = {"test_accuracy", "final_train_accuracy", "test_loss"}  # batched kernels round differently
    for row in grouped:
        ref = solo[row["run_key"]]
        assert {k: v for k, v in row.items() if k not in VOLATILE | rounding} == {
            k: v for k, v in ref.items() if k not in VOLATILE | rounding
        }
        for k in ("test_accuracy", "final_train_accuracy"):
            assert float(row[k]) == pytest.approx(float(ref[k]), abs=2e-3), (row["run_key"], k)
    import json

    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert max(len(r["group"]) for r in records) > 1


def test_no_verify_md5_reaches_every_run_and_enters_its_key_only_when_off():
    """``--no-verify-md5`` (the rebuilt CIFAR-10 in ../shared/data) is a run field; left on, no key changes."""
    from analysis.reproduce import _parser
    from analysis.runs import RunConfig

    prof = load_profiles()["smoke"]
    on, off = plan(prof, "cifar10", data_root="d"), plan(prof, "cifar10", data_root="d", verify_md5=False)
    assert all(r.train.verify_md5 for r in on) and not any(r.train.verify_md5 for r in off)
    assert all(r.architecture().features[0] == 3072 for r in off)
    assert not {r.key for r in on} & {r.key for r in off}
    for r in plan(prof, "mnist") + on:  # the key of a run with the check on is the key of its dict without the field
        d = r.to_dict()
        assert d.pop("verify_md5") is True and RunConfig.from_dict(d).key == r.key
    assert RunConfig.from_dict(off[0].to_dict()) == off[0]
    args = _parser().parse_args(["--out", "x", "--dataset", "cifar10", "--no-verify-md5"])
    assert args.no_verify_md5 and not _parser().parse_args(["--out", "x"]).no_verify_md5
