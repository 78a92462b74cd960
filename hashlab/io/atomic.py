"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

The temporary file is ``.<name>.<pid>-<random>.tmp`` beside the destination. If the writer is
killed (SIGKILL, power loss) it stays behind; the next :func:`atomic_open` of the same
destination removes every such file whose writing process is gone (``<pid>`` not alive on
this machine), and legacy ``.<name>.<random>.tmp`` files older than :data:`STALE_AFTER_S`.
Temporary files of live writers are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write_json", "atomic_write_text", "remove_stale_temporaries", "STALE_AFTER_S"]

STALE_AFTER_S = 3600.0
"""Age after which a temporary file without a writer pid (older hashlab versions) counts as stale."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it onto ``path``.

    If the body raises, ``path`` is untouched and the temporary file is removed. If the
    process dies, ``path`` is untouched and the temporary file is left, never under the final
    name, until the next write of ``path`` removes it (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : path-like
        Final destination. Its parent directory is created if missing.
    mode : {"wb", "w"}
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        # mkstemp creates 0600 files; give the result the mode open() would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's) or cannot tell: keep the file
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files that killed writers of ``path`` left beside it.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)-[0-9a-f]{8}|[A-Za-z0-9_]{8})\.tmp")
    removed: list[Path] = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in candidates:
        m = pattern.fullmatch(p.name)
        if not m:
            continue
        try:
            stale = not _alive(int(m.group(1))) if m.group(1) else now - p.lstat().st_mtime > STALE_AFTER_S
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it, then restore it
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
