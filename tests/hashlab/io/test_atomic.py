"""Atomic writes: complete file or old file, the permissions a plain open() would give, no litter after a kill."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from hashlab.io.atomic import STALE_AFTER_S, atomic_open, atomic_write_json, atomic_write_text, remove_stale_temporaries
from tests.conftest import REPO


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask_like_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask


def test_interrupted_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write('{"v": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


_WRITER = """
import sys, time
from hashlab.io.atomic import atomic_open
with atomic_open(sys.argv[1], "wb") as f:
    while True:
        f.write(b"x" * 2**20); f.flush()
        print("writing", flush=True)
        time.sleep(0.01)
"""


def test_sigkilled_writer_leaves_old_file_and_next_write_removes_its_temporary(tmp_path):
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"old")
    for _ in range(2):  # a crash loop: each new writer removes the previous one's temporary
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(dest)],
            stdout=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stdout.readline() == b"writing\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert [p.name.split(".")[3].split("-")[0] for p in temps] == [str(proc.pid)]
        assert temps[0].stat().st_size >= 2**20 and dest.read_bytes() == b"old"  # never torn
    atomic_write_text(dest, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"] and dest.read_text() == "new"


def test_stale_cleanup_spares_live_writers_and_fresh_legacy_files(tmp_path):
    dest = tmp_path / "r.json"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "live": f".r.json.{live.pid}-0123abcd.tmp",
            "mine": f".r.json.{os.getpid()}-0123abcd.tmp",
            "legacy_old": ".r.json.ab_cd123.tmp",
            "legacy_new": ".r.json.zz_cd123.tmp",
            "other": ".q.json.1-0123abcd.tmp",
        }
        for n in names.values():
            (tmp_path / n).write_text("partial")
        old = time.time() - 2 * STALE_AFTER_S
        os.utime(tmp_path / names["legacy_old"], (old, old))
        removed = remove_stale_temporaries(dest)
        assert [p.name for p in removed] == [names["legacy_old"]]
        live.kill()
        live.wait()
        assert [p.name for p in remove_stale_temporaries(dest)] == [names["live"]]
    finally:
        live.kill()
        live.wait()
