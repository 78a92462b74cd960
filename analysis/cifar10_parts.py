"""Ship CIFAR-10 to a machine that has no ``../shared``: xz parts under 64 MiB calls, SHA-256 checked.

A lent GPU machine gets only what travels with the code (at most 64 MiB per call, the
repository included) and keeps what it was sent while it stays up. The dataset (about 184 MB as
pickles) therefore travels as an ``xz -9`` tar cut into parts sent one call after another:

    python -m analysis.cifar10_parts make --data-root ../shared/data          # here: the parts + manifest
    python -m analysis.cifar10_parts check --parts .data/cifar10-parts        # either side: which parts are good
    python -m analysis.cifar10_parts assemble --parts DIR --data-root /tmp/hl_data   # there, once all arrived

``make`` writes a deterministic tar of ``cifar-10-batches-py/`` (sorted names, mtime 0, owner 0,
mode 0644), compresses it with xz preset 9 (:mod:`lzma`, the settings of ``xz -9``) and cuts the
stream into ``cifar10.tar.xz.partNN`` files of at most ``--part-mib`` MiB (default 48: a part
plus the repository's ~12 MiB stays under the 64 MiB of one call) in the git-ignored
``.data/cifar10-parts/``. It writes the manifest ``analysis/cifar10_parts.sha256`` (the format of
``sha256sum``: ``<hex>  <name>``): one line per part, one for the whole archive
(``cifar10.tar.xz``) and one per data file (``cifar-10-batches-py/<file>``). ``assemble`` checks
every part against it (a wrong or missing part is named, with the fix), joins them, checks the
archive, extracts it under the data root (tar's ``data`` filter: no links, no paths outside) and
checks every extracted file. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import os
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PartsError",
    "Manifest",
    "FOLDER",
    "ARCHIVE",
    "DEFAULT_PARTS_DIR",
    "DEFAULT_MANIFEST",
    "make_parts",
    "read_manifest",
    "check_parts",
    "assemble",
    "main",
]

REPO = Path(__file__).resolve().parent.parent
FOLDER = "cifar-10-batches-py"
"""The dataset's folder under a torchvision data root."""
ARCHIVE = "cifar10.tar.xz"
"""Name of the whole archive in the manifest; part ``i`` is ``cifar10.tar.xz.part{i:02d}``."""
DEFAULT_PARTS_DIR = REPO / ".data" / "cifar10-parts"
DEFAULT_MANIFEST = REPO / "analysis" / "cifar10_parts.sha256"
_CHUNK = 1 << 20


class PartsError(ValueError):
    """A part, the manifest or the data is missing or wrong; the message names it and the fix."""


@dataclass(frozen=True)
class Manifest:
    """The checksums of one shipped archive.

    Attributes
    ----------
    parts : dict of str to str
        Part file name -> SHA-256 (hex), in part order.
    archive : str
        SHA-256 of the joined parts (the whole ``.tar.xz``).
    files : dict of str to str
        ``cifar-10-batches-py/<file>`` -> SHA-256 of the extracted file.
    """

    parts: dict[str, str]
    archive: str
    files: dict[str, str]

    def text(self) -> str:
        """The manifest in ``sha256sum`` format (parts, archive, files), newline-terminated."""
        lines = [f"{h}  {n}" for n, h in self.parts.items()]
        lines.append(f"{self.archive}  {ARCHIVE}")
        lines += [f"{h}  {n}" for n, h in sorted(self.files.items())]
        return "\n".join(lines) + "\n"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class _SplitWriter(io.RawIOBase):
    """A write-only stream that xz-compresses what it gets into parts of at most ``limit`` bytes."""

    def __init__(self, out: Path, limit: int) -> None:
        self.out, self.limit = out, limit
        self.comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9)
        self.paths: list[Path] = []
        self.whole = hashlib.sha256()
        self._f: io.BufferedWriter | None = None
        self._size = 0

    def writable(self) -> bool:
        return True

    def _emit(self, data: bytes) -> None:
        self.whole.update(data)
        while data:
            if self._f is None or self._size == self.limit:
                if self._f is not None:
                    self._f.close()
                path = self.out / f"{ARCHIVE}.part{len(self.paths):02d}"
                self.paths.append(path)
                self._f, self._size = open(path, "wb"), 0
            take = data[: self.limit - self._size]
            self._f.write(take)
            self._size += len(take)
            data = data[len(take) :]

    def write(self, b) -> int:
        self._emit(self.comp.compress(bytes(b)))
        return len(b)

    def finish(self) -> None:
        self._emit(self.comp.flush())
        if self._f is not None:
            self._f.close()


def make_parts(
    data_root: str | os.PathLike,
    out: str | os.PathLike = DEFAULT_PARTS_DIR,
    manifest: str | os.PathLike = DEFAULT_MANIFEST,
    part_mib: float = 48,
) -> Manifest:
    """Tar, xz -9 and split ``DATA_ROOT/cifar-10-batches-py``; write the parts and the manifest.

    Parameters
    ----------
    data_root : path-like
        A torchvision data root holding ``cifar-10-batches-py/`` (every regular file in it is packed).
    out : path-like
        Folder of the parts (created; old ``cifar10.tar.xz.part*`` files in it are removed first).
    manifest : path-like
        Where the ``sha256sum``-format manifest is written.
    part_mib : float
        Largest part, in MiB (2**20 bytes), > 0.

    Returns
    -------
    Manifest

    Raises
    ------
    PartsError
        If the folder is missing or empty, or ``part_mib`` is not positive.
    """
    if not part_mib > 0:
        raise PartsError(f"--part-mib must be > 0, got {part_mib}")
    src = Path(data_root) / FOLDER
    names = sorted(p.name for p in src.iterdir() if p.is_file()) if src.is_dir() else []
    if not names:
        raise PartsError(f"{src} holds no files; pass --data-root DIR where DIR/{FOLDER} holds the pickles")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{ARCHIVE}.part*"):
        old.unlink()
    writer = _SplitWriter(out, int(part_mib * 2**20))
    files = {}
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            path = src / name
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
            files[f"{FOLDER}/{name}"] = _sha256(path)
    writer.finish()
    m = Manifest({p.name: _sha256(p) for p in writer.paths}, writer.whole.hexdigest(), files)
    Path(manifest).write_text(m.text())
    return m


def read_manifest(path: str | os.PathLike = DEFAULT_MANIFEST) -> Manifest:
    """Parse a manifest written by :func:`make_parts`.

    Raises
    ------
    PartsError
        If the file is missing, a line is not ``<64 hex>  <name>``, or it lacks parts or the archive line.
    """
    path = Path(path)
    if not path.is_file():
        raise PartsError(f"no manifest at {path}; run `python -m analysis.cifar10_parts make` or pass --manifest")
    parts, files, archive = {}, {}, None
    for i, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name:
            raise PartsError(f"{path}:{i}: expected '<64 lowercase hex digits>  <name>', got {line!r}")
        if name == ARCHIVE:
            archive = digest
        elif name.startswith(f"{ARCHIVE}.part"):
            parts[name] = digest
        else:
            files[name] = digest
    if not parts or archive is None:
        raise PartsError(f"{path}: needs one line per part and one for {ARCHIVE}; remake it with `make`")
    return Manifest(dict(sorted(parts.items())), archive, files)


def check_parts(parts_dir: str | os.PathLike, manifest: Manifest) -> tuple[list[str], list[str]]:
    """Which parts under ``parts_dir`` are there and good, and which are missing.

    Returns
    -------
    (good, missing) : two lists of part names, in part order.

    Raises
    ------
    PartsError
        Naming the first part whose SHA-256 differs from the manifest (expected and found), with the fix.
    """
    good, missing = [], []
    for name, want in manifest.parts.items():
        path = Path(parts_dir) / name
        if not path.is_file():
            missing.append(name)
            continue
        got = _sha256(path)
        if got != want:
            raise PartsError(
                f"part {name} ({path}) has SHA-256 {got}, the manifest says {want}: it is corrupt or from "
                "another archive; send that part again (the manifest and the parts must come from one `make`)"
            )
        good.append(name)
    return good, missing


def _joined(parts_dir: Path, names: list[str]) -> Iterator[bytes]:
    for name in names:
        with open(parts_dir / name, "rb") as f:
            yield from iter(lambda: f.read(_CHUNK), b"")


class _Joined(io.RawIOBase):
    """The parts as one decompressed, hashed read-only stream."""

    def __init__(self, parts_dir: Path, names: list[str]) -> None:
        self.chunks = _joined(parts_dir, names)
        self.dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        self.whole = hashlib.sha256()
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.whole.update(chunk)
            self.buf = self.dec.decompress(chunk)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def assemble(parts_dir: str | os.PathLike, data_root: str | os.PathLike, manifest: Manifest) -> Path:
    """Check every part, join and extract them: ``DATA_ROOT/cifar-10-batches-py`` with checked files.

    Returns
    -------
    Path
        The extracted folder.

    Raises
    ------
    PartsError
        If a part is missing or wrong (named), the joined archive or an extracted file differs from
        the manifest, or the archive holds anything but regular files under ``cifar-10-batches-py/``.
    """
    parts_dir = Path(parts_dir)
    names, missing = check_parts(parts_dir, manifest)
    if missing:
        raise PartsError(
            f"missing part(s) {', '.join(missing)} under {parts_dir}; send them (one per call) before assembling"
        )
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    stream = _Joined(parts_dir, names)
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream, _CHUNK), mode="r|") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith(f"{FOLDER}/") or "/../" in f"/{member.name}/":
                    raise PartsError(f"archive member {member.name!r} is not a file under {FOLDER}/; remake the parts")
                tar.extract(member, root, filter="data")
    except (lzma.LZMAError, tarfile.TarError, EOFError) as e:
        raise PartsError(f"the joined parts are not a valid tar.xz ({e}); remake them with `make`") from None
    if stream.whole.hexdigest() != manifest.archive:
        raise PartsError(f"the joined archive's SHA-256 is not the manifest's {manifest.archive}; remake the parts")
    for name, want in manifest.files.items():
        path = root / name
        got = _sha256(path) if path.is_file() else "missing"
        if got != want:
            raise PartsError(f"extracted {path} has SHA-256 {got}, the manifest says {want}; remake the parts")
    return root / FOLDER


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.cifar10_parts {make,check,assemble}``; exit 0 ok, 2 bad input or a bad part,
    3 (``check``) parts still missing."""
    p = argparse.ArgumentParser(
        prog="python -m analysis.cifar10_parts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="tar + xz -9 + split cifar-10-batches-py; write the parts and the manifest")
    mk.add_argument("--data-root", required=True, help=f"torchvision data root holding {FOLDER}/")
    mk.add_argument("--out", default=str(DEFAULT_PARTS_DIR), help="folder of the parts (default: .data/cifar10-parts)")
    mk.add_argument("--part-mib", type=float, default=48, help="largest part in MiB (default 48)")
    ck = sub.add_parser("check", help="check the parts present against the manifest; list the missing ones")
    asm = sub.add_parser("assemble", help="check all parts, join, extract under --data-root, check the files")
    asm.add_argument("--data-root", required=True, help=f"where {FOLDER}/ is extracted")
    for s in (mk, ck, asm):
        s.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="the manifest (analysis/cifar10_parts.sha256)")
    for s in (ck, asm):
        s.add_argument("--parts", default=str(DEFAULT_PARTS_DIR), help="folder holding the parts")
    args = p.parse_args(argv)
    try:
        if args.cmd == "make":
            m = make_parts(args.data_root, args.out, args.manifest, args.part_mib)
            for name in m.parts:
                print(f"{Path(args.out) / name}: {(Path(args.out) / name).stat().st_size} bytes")
            print(f"manifest: {args.manifest}")
        elif args.cmd == "check":
            good, missing = check_parts(args.parts, read_manifest(args.manifest))
            print(f"good: {' '.join(good) or 'none'}; missing: {' '.join(missing) or 'none'}")
            return 3 if missing else 0
        else:
            print(f"extracted and checked: {assemble(args.parts, args.data_root, read_manifest(args.manifest))}")
    except PartsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
