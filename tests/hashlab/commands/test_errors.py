"""Bad invocations of every entry point: one stderr line, a distinct exit code, no traceback, no work.

Exit codes (hashlab.commands.errors): 2 usage, 3 input, 4 environment; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import os

import pytest

from analysis import main_job
from hashlab import Architecture, HashSpec, build_map, save_index_file
from hashlab.cli import main
from hashlab.commands.errors import exit_code_for, run_cli
from hashlab.io.errors import DeviceUnavailable, EnvironmentProblem, InputError, UsageError

NOWHERE = "/proc/hashlab-no-such-dir/out"  # not creatable, even for root

CASES = [  # (id, argv with {map} {small} {dir} {file} {junk} {missing} {big} {data}, exit code, message fragment)
    ("build-empty-out", ["build", "-o", ""], 2, "path is empty"),
    ("build-out-is-dir", ["build", "-o", "{dir}"], 2, "is a directory"),
    ("build-out-under-file", ["build", "-o", "{file}/m.safetensors"], 2, "is a file, not a directory"),
    ("build-out-unwritable", ["build", "-o", NOWHERE + "/m.safetensors"], 4, "cannot write --output"),
    ("build-bad-value", ["build", "--table-size", "-5", "-o", "{dir}/m.safetensors"], 2, "table_size"),
    ("stats-missing", ["stats", "{missing}"], 3, "does not exist"),
    ("stats-dir", ["stats", "{dir}"], 3, "is a directory"),
    ("stats-junk", ["stats", "{junk}"], 3, "impossible"),
    ("stats-huge-table", ["stats", "{big}"], 3, "--max-table-entries"),
    ("stats-json-dir", ["stats", "{map}", "--json", "{dir}"], 2, "is a directory"),
    ("stats-json-unwritable", ["stats", "{map}", "--json", NOWHERE + ".json"], 4, "cannot write --json"),
    ("stats-plot-file", ["stats", "{map}", "--plot", "{file}"], 2, "is a file, not a folder"),
    ("check-dir", ["check", "{dir}"], 3, "is a directory"),
    (
        "check-out-dir",
        ["check", "rnn", "--input-size", "2", "--hidden-size", "2", "--steps", "2", "-o", "{dir}"],
        2,
        "is a directory",
    ),
    ("figure-out-dir", ["figure", "entropy-vs-alpha", "-o", "{dir}"], 2, "is a directory"),
    ("figure-out-empty", ["figure", "entropy-vs-alpha", "-o", ""], 2, "path is empty"),
    ("train-epochs-0", ["train", "{map}", "--epochs", "0"], 2, "epochs must be an integer"),
    ("train-out-dir", ["train", "{map}", "--data-root", "{data}", "-o", "{dir}"], 2, "is a directory"),
    ("train-checkpoint-dir", ["train", "{map}", "--data-root", "{data}", "--checkpoint", "{dir}"], 2, "is a directory"),
    ("train-missing", ["train", "{missing}", "--data-root", "{data}"], 3, "does not exist"),
    ("train-junk", ["train", "{junk}", "--data-root", "{data}"], 3, "impossible"),
    ("train-data-root-file", ["train", "{map}", "--data-root", "{file}"], 3, "is not a directory"),
    ("train-no-such-device", ["train", "{map}", "--data-root", "{data}", "--device", "cuda:99"], 4, "requested but"),
    ("train-wrong-arch", ["train", "{small}", "--data-root", "{data}"], 2, "build a map for it"),
]


@pytest.fixture
def paths(tmp_path, data_root):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    (tmp_path / "junk").write_bytes(b"\xff" * 64)
    small = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=5), Architecture((3, 4, 2))), tmp_path / "small.safetensors"
    )
    mnist = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=50), Architecture((784, 4, 10))), tmp_path / "m.safetensors"
    )
    big = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=2**31 - 1), Architecture((2, 2))), tmp_path / "big.safetensors"
    )
    return {
        "map": mnist,
        "small": small,
        "dir": tmp_path / "d",
        "file": tmp_path / "f",
        "junk": tmp_path / "junk",
        "missing": tmp_path / "missing.safetensors",
        "big": big,
        "data": data_root,
    }


@pytest.mark.parametrize("argv,code,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_gives_one_line_and_its_exit_code(paths, capsys, argv, code, fragment):
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(f"hashlab {argv[0]}: error: ") and captured.err.count("\n") == 1, captured.err
    assert fragment in captured.err and "Traceback" not in captured.err
    assert not (paths["dir"] / "m.safetensors").exists()  # nothing was built before the error
    assert sorted(p.name for p in paths["dir"].iterdir()) == []


def test_debug_shows_the_traceback(paths, capsys):
    assert main(["--debug", "stats", str(paths["missing"])]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("does not exist; create it with `hashlab build ... -o FILE`")


@pytest.mark.parametrize(
    "argv,code,fragment",
    [
        (["--epochs", "0"], 2, "epochs must be an integer"),
        (["--seed", "-1"], 2, "seed"),
        (["--device", "tpu"], 2, "device must be"),
        (["--limit-train", "1"], 2, "limit_train"),
        (["--data-root", "{missing}"], 3, "is not a directory"),
        (["--data-root", "{data}", "--out", "{file}"], 2, "is a file, not a folder"),
        (["--data-root", "{data}", "--out", NOWHERE], 4, "cannot write --out folder"),
    ],
    ids=["epochs-0", "seed", "device", "limit", "data-root", "out-is-file", "out-unwritable"],
)
def test_main_job_bad_values_fail_before_work(paths, capsys, argv, code, fragment):
    assert main_job.main([a.format(**paths) for a in argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("python -m analysis.main_job: error: ") and err.count("\n") == 1 and fragment in err


def test_exit_codes_and_run_cli_contract(capsys):
    assert [
        exit_code_for(e)
        for e in (
            UsageError("u"),
            InputError("i"),
            EnvironmentProblem(13, "e"),
            FileNotFoundError("f"),
            PermissionError(13, "p"),
            MemoryError(),
            ImportError("torch"),
            ValueError("v"),
            TypeError("bug"),
            DeviceUnavailable("cuda"),
        )
    ] == [2, 3, 4, 3, 4, 4, 4, 2, None, 4]

    def bug(argv):
        raise TypeError("a bug")

    assert run_cli(bug, [], prog="x") == 70 and "Traceback" in capsys.readouterr().err  # bugs keep their traceback
    assert run_cli(lambda argv: None, ["--debug"], prog="x") == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_an_environment_error(paths, capsys):
    ro = paths["dir"] / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["build", "-o", str(ro / "m.safetensors")]) == 4
        assert "permission denied" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)
