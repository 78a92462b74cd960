"""Shipping CIFAR-10 to a lent GPU and its records back: parts with SHA-256 checks, bundles merged with provenance.

Synthetic files only (a few hundred kB); the real parts' manifest is committed and checked for form.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from analysis.cifar10_parts import (
    DEFAULT_MANIFEST,
    FOLDER,
    PartsError,
    assemble,
    check_parts,
    make_parts,
    read_manifest,
)
from analysis.gpu_bundle import MAX_BYTES, BundleError, merge, pack
from analysis.runs import RunConfig
from tests.conftest import REPO, run_module


@pytest.fixture
def shipped(tmp_path):
    """A fake cifar-10-batches-py (random bytes), made into parts of 0.1 MiB with their manifest."""
    src = tmp_path / "src" / FOLDER
    src.mkdir(parents=True)
    files = {"data_batch_1": os.urandom(250_000), "batches.meta": b"meta"}
    for name, blob in files.items():
        (src / name).write_bytes(blob)
    m = make_parts(tmp_path / "src", tmp_path / "parts", tmp_path / "m.sha256", part_mib=0.1)
    return tmp_path, files, m


def test_parts_assemble_into_the_same_files(shipped):
    tmp, files, m = shipped
    assert len(m.parts) == 3 and all((tmp / "parts" / n).stat().st_size <= 0.1 * 2**20 for n in m.parts)
    assert read_manifest(tmp / "m.sha256") == m
    out = assemble(tmp / "parts", tmp / "root", read_manifest(tmp / "m.sha256"))
    assert out == tmp / "root" / FOLDER
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_wrong_part_is_named_and_a_missing_one_listed(shipped):
    tmp, _, m = shipped
    part = tmp / "parts" / "cifar10.tar.xz.part01"
    blob = bytearray(part.read_bytes())
    blob[100] ^= 1
    part.write_bytes(bytes(blob))
    with pytest.raises(PartsError, match=r"part cifar10\.tar\.xz\.part01 .* has SHA-256 .*send that part again"):
        check_parts(tmp / "parts", m)
    with pytest.raises(PartsError, match="part01"):
        assemble(tmp / "parts", tmp / "root", m)
    part.unlink()
    assert check_parts(tmp / "parts", m) == (
        ["cifar10.tar.xz.part00", "cifar10.tar.xz.part02"],
        ["cifar10.tar.xz.part01"],
    )
    with pytest.raises(PartsError, match=r"missing part\(s\) cifar10\.tar\.xz\.part01"):
        assemble(tmp / "parts", tmp / "root", m)
    r = run_module(
        "analysis.cifar10_parts", "check", "--parts", str(tmp / "parts"), "--manifest", str(tmp / "m.sha256")
    )
    assert r.returncode == 3 and "missing: cifar10.tar.xz.part01" in r.stdout


def test_a_bad_manifest_line_is_refused(tmp_path):
    (tmp_path / "m").write_text("abc  cifar10.tar.xz.part00\n")
    with pytest.raises(PartsError, match="64 lowercase hex"):
        read_manifest(tmp_path / "m")


def test_the_committed_manifest_ships_cifar10_in_parts_that_fit_a_call():
    m = read_manifest(DEFAULT_MANIFEST)
    assert list(m.parts) == [f"cifar10.tar.xz.part{i:02d}" for i in range(len(m.parts))] and len(m.parts) == 3
    names = [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]
    assert sorted(m.files) == [f"{FOLDER}/{n}" for n in names]
    local = REPO / ".data" / "cifar10-parts"
    if all((local / n).is_file() for n in m.parts):  # where the parts were made: each fits a call beside the code
        assert all((local / n).stat().st_size <= 48 * 2**20 for n in m.parts)
        assert check_parts(local, m) == (list(m.parts), [])


@pytest.mark.parametrize(
    "name, needles",
    [
        ("gpu_cifar10.sh", ("--profile confirm-cifar10", "--device cuda", "--group-size", "--no-verify-md5")),
        ("gpu_confirm.sh", ("--profile confirm", "--device cuda", "--group-size", '--script "$SCRIPT"')),
    ],
)
def test_the_gpu_scripts_are_valid_bash_and_run_their_design_into_bundles(name, needles):
    script = REPO / "analysis" / name
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for needle in (*needles, "gpu_bundle pack", f"SCRIPT=analysis/{name}"):
        assert needle in text, needle


def _record(dataset="cifar10", cuda_name="NVIDIA H100 80GB HBM3"):
    run = RunConfig.from_fields(
        dataset=dataset,
        study="cifar_noise",
        kind="neighborhood",
        radius=1,
        sparsity=0.0,
        hash_seed=1000,
        train_seed=0,
        epochs=60,
        data_root="/tmp/hl_data",
        device="cuda",
        verify_md5=False,
        stop_after_drops=2,
    )
    device = {"type": "cuda", "name": "cuda:0", "torch_threads": 1, "cuda_name": cuda_name}
    row = {**{k: v for k, v in run.to_dict().items()}, "test_accuracy": 0.3, "run_key": run.key, "device": cuda_name}
    return run.key, {"row": row, "run": run.to_dict(), "results": {"device": device, "epochs": [{}] * 40}}


def _bundle(tmp: Path, records: list[tuple[str, dict]], script: Path, **prov) -> list[Path]:
    work = tmp / "work"
    (work / "runs").mkdir(parents=True, exist_ok=True)
    for key, rec in records:
        (work / "runs" / f"{key}.json").write_text(json.dumps(rec))
    (work / "gpu.txt").write_text("name, driver_version\nNVIDIA H100 80GB HBM3, 580\n")
    import hashlib

    base = {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "torch_version": "2.14.1 cuda 13.0",
        "script": "analysis/gpu_cifar10.sh",
        "script_sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
    }
    return pack(work, tmp / "out", {**base, **prov})


def test_a_bundle_merges_with_its_provenance_and_a_second_merge_changes_nothing(tmp_path):
    script = REPO / "analysis" / "gpu_cifar10.sh"
    key, rec = _record()
    parts = _bundle(tmp_path, [(key, rec)], script)
    assert len(parts) == 1 and parts[0].stat().st_size <= MAX_BYTES
    into = tmp_path / "results"
    s = merge(parts, into, script)
    assert s["added"] == 1 and s["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert json.loads((into / "runs" / f"{key}.json").read_text()) == rec
    prov = json.loads((into / "provenance.json").read_text())
    assert prov[0]["torch_version"].startswith("2.14.1") and prov[0]["records"] == 1
    assert (into / "results.csv").read_text().count("\n") == 2 and (into / "gpu.txt").exists()
    assert merge(parts, into, script)["skipped"] == 1
    r = run_module("analysis.gpu_bundle", "merge", *map(str, parts), "--into", str(into), "--script", str(script))
    assert r.returncode == 0 and "1 already there" in r.stdout


def test_bundles_from_another_script_or_without_a_gpu_are_refused(tmp_path):
    script = REPO / "analysis" / "gpu_cifar10.sh"
    key, rec = _record()
    other = tmp_path / "other.sh"
    other.write_text("echo hi\n")
    with pytest.raises(BundleError, match="not the committed"):
        merge(_bundle(tmp_path / "a", [(key, rec)], other), tmp_path / "r", script)
    key, cpu = _record()
    cpu["results"]["device"] = {"type": "cpu", "name": "cpu", "torch_threads": 1}
    with pytest.raises(BundleError, match="not on a named CUDA GPU"):
        merge(_bundle(tmp_path / "b", [(key, cpu)], script), tmp_path / "r", script)
    with pytest.raises(BundleError, match="lacks"):
        _bundle(tmp_path / "c", [(key, rec)], script, gpu_name="")
    with pytest.raises(BundleError, match="not its run's key"):
        merge(_bundle(tmp_path / "d", [("0123456789abcdef", rec)], script), tmp_path / "r", script)
    parts = _bundle(tmp_path / "e", [(key, rec)], script)
    parts[0].write_bytes(parts[0].read_bytes()[:-50])
    with pytest.raises(BundleError, match="not a valid tar.xz"):
        merge(parts, tmp_path / "r", script)
    assert not (tmp_path / "r" / "runs").exists()  # nothing was written by a refused merge
