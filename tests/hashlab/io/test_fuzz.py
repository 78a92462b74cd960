"""Fuzz the index-file reader: >= 1000 seeded mutants per run, only documented errors, never an
inconsistent map, never a crash or a hang; the CLI on a sample of them never shows a traceback."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from hashlab.cli import main
from tests.hashlab.io import fuzz

N_MUTANTS = 1600  # 100 of each of the 16 kinds


@pytest.fixture
def hang_guard():
    def boom(*_):
        raise TimeoutError("the reader hangs on a mutant")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_mutated_index_files_give_only_documented_errors(tmp_path, hang_guard):
    counts, bad, _ = fuzz.run(N_MUTANTS, tmp_path, seed=20261130)
    assert sum(sum(c.values()) for c in counts.values()) == N_MUTANTS
    assert not bad, "\n".join(f"{kind}: {detail[:300]} ({path})" for kind, detail, path in bad[:10])
    for kind in fuzz.KINDS:  # every kind mostly produces broken files, and they are caught
        assert counts[kind]["error"] > 0, kind


def test_cli_on_mutated_files_never_shows_a_traceback(tmp_path, capsys, hang_guard):
    rng = np.random.default_rng(7)
    bases = [p.read_bytes() for p in fuzz.base_files(tmp_path / "base")]
    codes = []
    for i in range(2 * len(fuzz.KINDS)):
        path = tmp_path / f"m{i}.safetensors"
        path.write_bytes(fuzz.mutate(bases[i % len(bases)], rng, fuzz.KINDS[i % len(fuzz.KINDS)]))
        for argv in (["check", str(path)], ["stats", str(path), "--no-locality", "--backend", "numpy"]):
            code = main(argv)
            err = capsys.readouterr().err
            assert code in (0, 3) and "Traceback" not in err, (argv, code, err)
            if code == 3:
                assert err.count("\n") == 1 and str(path) in err, err
            codes.append(code)
    assert 3 in codes and 0 in codes
