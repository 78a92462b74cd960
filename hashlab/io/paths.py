"""Check input and output paths before any work starts, with one clear error each.

Entry points (``hashlab`` commands, ``analysis`` scripts, :func:`trainers.torch_backend.training.train`)
call these first, so a bad path fails in milliseconds, not after a training run.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import EnvironmentProblem, InputError, UsageError

__all__ = ["check_output_path", "check_output_dir", "check_input_file"]


def _env(path: Path, e: OSError, what: str) -> EnvironmentProblem:
    reason = {
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left",
    }.get(e.errno or 0, e.strerror or str(e))
    return EnvironmentProblem(e.errno or 0, f"cannot write {what} {path}: {reason}")


def _probe(folder: Path, what: str, path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hashlab-probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _env(path, e, what) from None


def _make_dir(folder: Path, what: str, path: Path) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{what} {path} cannot be created: {parent} is a file, not a directory")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _env(path, e, what) from None


def check_output_path(path: str | os.PathLike, what: str = "output file", create_parent: bool = True) -> Path:
    """Check that ``path`` can be written as a file; create its missing parent folders.

    Args:
        path: destination of an (atomic) write.
        what: how the message names it, e.g. ``"--json output"``.
        create_parent: create missing parent folders (``mkdir -p``); if False they must exist.

    Returns:
        ``Path(path)``.

    Raises:
        UsageError: ``path`` is empty, is an existing directory, or lies under a file.
        EnvironmentProblem: its folder is not writable (permission, read-only file system, ...).
    """
    if path is None or str(path).strip() == "":
        raise UsageError(f"{what} path is empty; give a file name")
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory; give a file name inside it, e.g. {p / 'out'}")
    if not create_parent and not p.parent.is_dir():
        raise UsageError(f"{what} {p}: folder {p.parent} does not exist")
    _make_dir(p.parent, what, p)
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise EnvironmentProblem(errno.EACCES, f"cannot write {what} {p}: permission denied")
    _probe(p.parent, what, p)
    return p


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check that ``path`` is (or can be created as) a writable directory; create it.

    Raises:
        UsageError: ``path`` is empty, is a file, or lies under a file.
        EnvironmentProblem: it cannot be created or written.
    """
    if path is None or str(path).strip() == "":
        raise UsageError(f"{what} path is empty; give a folder name")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p} is a file, not a folder")
    _make_dir(p, what, p)
    _probe(p, what, p)
    return p


def check_input_file(path: str | os.PathLike, what: str = "input file", hint: str = "") -> Path:
    """Check that ``path`` is an existing, readable regular file.

    Args:
        path: the input.
        what: how the message names it, e.g. ``"index file"``.
        hint: appended to the "does not exist" message, e.g. how to create the file.

    Raises:
        InputError: ``path`` is empty, missing, a directory, or unreadable.
    """
    if path is None or str(path).strip() == "":
        raise InputError(f"{what} path is empty")
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory, not a file")
    if not p.exists():
        raise InputError(f"{what} {p} does not exist" + (f"; {hint}" if hint else ""))
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise InputError(f"{what} {p} cannot be read: {e.strerror or e}") from None
    return p
