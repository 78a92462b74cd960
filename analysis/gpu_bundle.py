"""Bring a lent GPU's reproduction records home: pack them into a few small files there, merge them here.

A device call returns at most 8 files of at most 16 MiB each. ``pack`` (run there by
``analysis/gpu_cifar10.sh``) writes a reproduction's output folder (``runs/*.json``,
``results.csv``, logs) and a ``provenance.json`` (GPU name, driver, torch and CUDA versions, the
SHA-256 of the script that ran, the command, wall time) as one ``xz`` tar cut into
``<name>.tar.xz.partNN`` files of at most 16 MiB; ``merge`` (run here) joins them, checks them and
copies the records into a committed results folder:

    python -m analysis.gpu_bundle pack --work /tmp/gpu_cifar10 --out "$OUT" --script analysis/gpu_cifar10.sh ...
    python -m analysis.gpu_bundle merge FILES_AT/cifar10-records.tar.xz.part* --into analysis/results/cifar10

``merge`` refuses (naming the file and the fix) a bundle that is not a complete, valid tar.xz; one
without a GPU name or torch version in its provenance; one whose script is not the committed script
(``--script``, default ``analysis/gpu_cifar10.sh``: the records must come from the committed
script); a record not trained on CUDA, or whose file name is not its run's key; and a record
that differs from one already there. Identical records are skipped, so a merge can be repeated.
It writes ``INTO/runs/<key>.json``, ``INTO/results.csv`` (all records there), and appends the
bundle's provenance to ``INTO/provenance.json`` (a list, one entry per merged bundle).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import sys
import tarfile
from pathlib import Path
from typing import Any

from hashlab.io.atomic import atomic_write_json, atomic_write_text

__all__ = ["BundleError", "MAX_FILES", "MAX_BYTES", "REQUIRED_PROVENANCE", "pack", "merge", "main"]

REPO = Path(__file__).resolve().parent.parent
MAX_FILES, MAX_BYTES = 8, 16 * 2**20
"""What one device call can return: at most 8 files of at most 16 MiB."""
REQUIRED_PROVENANCE = ("gpu_name", "torch_version", "script", "script_sha256")
"""Keys ``provenance.json`` must have, non-empty."""
_TOP = ("provenance.json", "results.csv", "gpu.txt", "reproduce.log")


class BundleError(ValueError):
    """A bundle is incomplete, invalid or not from the committed script; the message names it and the fix."""


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(work: str | Path, out: str | Path, provenance: dict[str, Any], name: str = "cifar10-records") -> list[Path]:
    """Pack ``work``'s records, results.csv, logs and ``provenance`` into at most 8 parts of at most 16 MiB.

    Parameters
    ----------
    work : path-like
        A reproduction's ``--out`` folder (``runs/*.json``; ``results.csv``, ``gpu.txt``, ``reproduce.log`` if there).
    out : path-like
        Where the parts go (created): ``<name>.tar.xz.part00`` ...
    provenance : dict
        JSON-ready; must hold :data:`REQUIRED_PROVENANCE` (``gpu_name``, ``torch_version``, ``script``,
        ``script_sha256``). Stored as ``provenance.json`` with the number of records added.
    name : str
        Stem of the parts.

    Returns
    -------
    list of Path
        The parts, in order.

    Raises
    ------
    BundleError
        If provenance lacks a required key, or the records need more than 8 parts.
    """
    missing = [k for k in REQUIRED_PROVENANCE if not provenance.get(k)]
    if missing:
        raise BundleError(f"provenance lacks {missing}; pass them (the GPU's name from nvidia-smi, torch.__version__)")
    work, out = Path(work), Path(out)
    records = sorted((work / "runs").glob("*.json"))
    buf = io.BytesIO()
    with lzma.open(buf, "wb", format=lzma.FORMAT_XZ, preset=9) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        prov = json.dumps({**provenance, "records": len(records)}, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo("provenance.json")
        info.size = len(prov)
        tar.addfile(info, io.BytesIO(prov))
        for top in _TOP[1:]:
            if (work / top).is_file():
                tar.add(work / top, arcname=top)
        for rec in records:
            tar.add(rec, arcname=f"runs/{rec.name}")
    data = buf.getvalue()
    chunks = [data[i : i + MAX_BYTES] for i in range(0, len(data), MAX_BYTES)] or [b""]
    if len(chunks) > MAX_FILES:
        raise BundleError(
            f"{len(records)} records pack into {len(data)} bytes: more than {MAX_FILES} parts of {MAX_BYTES} bytes; "
            "bring them home in two calls (pack a subset of runs/ each time)"
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chunk in enumerate(chunks):
        path = out / f"{name}.tar.xz.part{i:02d}"
        path.write_bytes(chunk)
        paths.append(path)
    return paths


def _read_bundle(parts: list[Path]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(provenance, {member name: bytes})`` of the joined parts (sorted by name)."""
    for p in parts:
        if not p.is_file():
            raise BundleError(f"no bundle part {p}; pass every <name>.tar.xz.partNN file the device call returned")
    names = [p.name for p in parts]
    stems = {n.rsplit(".part", 1)[0] for n in names}
    if len(stems) != 1 or not all(n.rsplit(".part", 1)[-1].isdigit() for n in names):
        raise BundleError(
            f"the files {names} are not the parts of one bundle (<name>.tar.xz.partNN); merge one at a time"
        )
    numbers = sorted(int(n.rsplit(".part", 1)[1]) for n in names)
    if numbers != list(range(len(numbers))):
        raise BundleError(f"bundle {stems.pop()} is incomplete: parts {numbers}; pass parts 00 to the last")
    data = b"".join(p.read_bytes() for p in sorted(parts, key=lambda p: p.name))
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(lzma.decompress(data)), mode="r:") as tar:
            for m in tar:
                ok = m.name in _TOP or (
                    m.name.startswith("runs/") and m.name.count("/") == 1 and m.name.endswith(".json")
                )
                if not m.isfile() or not ok:
                    raise BundleError(f"bundle member {m.name!r} is not a record, results.csv, a log or provenance")
                f = tar.extractfile(m)
                assert f is not None
                members[m.name] = f.read()
    except (lzma.LZMAError, tarfile.TarError, EOFError) as e:
        raise BundleError(
            f"bundle {names} is not a valid tar.xz ({e}): a part is missing, truncated or corrupt"
        ) from None
    if "provenance.json" not in members:
        raise BundleError(f"bundle {names} has no provenance.json; pack it with `python -m analysis.gpu_bundle pack`")
    return json.loads(members["provenance.json"]), members


def merge(parts: list[str | Path], into: str | Path, script: str | Path = REPO / "analysis" / "gpu_cifar10.sh") -> dict:
    """Check a bundle and copy its records into ``into`` (module docstring).

    Parameters
    ----------
    parts : list of path-like
        The ``<name>.tar.xz.partNN`` files of one bundle (any order).
    into : path-like
        The results folder, e.g. ``analysis/results/cifar10`` (created).
    script : path-like
        The committed script the records must come from (its SHA-256 must equal the provenance's).

    Returns
    -------
    dict
        ``{"added": n, "skipped": n, "gpu_name": ..., "torch_version": ...}``.

    Raises
    ------
    BundleError
        See the module docstring; nothing is written then.
    """
    from .reproduce import load_rows, write_results_csv
    from .runs import RunConfig

    prov, members = _read_bundle([Path(p) for p in parts])
    missing = [k for k in REQUIRED_PROVENANCE if not prov.get(k)]
    if missing:
        raise BundleError(f"the bundle's provenance lacks {missing}: it cannot be committed as a GPU result")
    want = _sha256_file(Path(script))
    if prov["script_sha256"] != want:
        raise BundleError(
            f"the records were made by a script with SHA-256 {prov['script_sha256']}, not the committed {script} "
            f"({want}); rerun the committed script (or merge with --script naming the one that ran)"
        )
    into = Path(into)
    added, skipped = {}, 0
    for name, blob in sorted(members.items()):
        if not name.startswith("runs/"):
            continue
        rec = json.loads(blob)
        key = RunConfig.from_dict(rec["run"]).key
        if f"runs/{key}.json" != name or rec["row"]["run_key"] != key:
            raise BundleError(f"record {name} holds run {key}: its name is not its run's key; the bundle is damaged")
        dev = rec["results"].get("device", {})
        if dev.get("type") != "cuda" or not dev.get("cuda_name"):
            raise BundleError(f"record {name} was trained on {dev.get('name', '?')}, not on a named CUDA GPU")
        old = into / name
        if old.exists():
            if json.loads(old.read_text()) != rec:
                raise BundleError(f"{old} exists and differs from the bundle's record; move it away to replace it")
            skipped += 1
            continue
        added[name] = rec
    for name, rec in added.items():
        atomic_write_json(into / name, rec)
    history = json.loads((into / "provenance.json").read_text()) if (into / "provenance.json").exists() else []
    history.append({**prov, "merged_records": len(added), "skipped_records": skipped})
    atomic_write_json(into / "provenance.json", history)
    if "gpu.txt" in members:
        atomic_write_text(into / "gpu.txt", members["gpu.txt"].decode())
    rows = load_rows(into)
    write_results_csv(rows, into / "results.csv")
    return {
        "added": len(added),
        "skipped": skipped,
        "gpu_name": prov["gpu_name"],
        "torch_version": prov["torch_version"],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.gpu_bundle {pack,merge}``; exit 0 ok, 2 a bad bundle or bad input."""
    p = argparse.ArgumentParser(
        prog="python -m analysis.gpu_bundle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="(on the device) pack a reproduction folder into <= 8 parts of <= 16 MiB")
    pk.add_argument("--work", required=True, help="the reproduction's --out folder")
    pk.add_argument("--out", required=True, help="where the parts go (the device call's $OUT)")
    pk.add_argument("--name", default="cifar10-records", help="stem of the parts")
    pk.add_argument("--gpu-name", required=True, help="the GPU (nvidia-smi --query-gpu=name)")
    pk.add_argument("--torch-version", required=True, help="torch.__version__ (and CUDA), as the device reports it")
    pk.add_argument("--script", required=True, help="the script that ran (its SHA-256 is recorded)")
    pk.add_argument("--extra", default="{}", help="more provenance as a JSON object (driver, command, wall time...)")
    mg = sub.add_parser("merge", help="(here) check a bundle and copy its records into a results folder")
    mg.add_argument("parts", nargs="+", help="the bundle's <name>.tar.xz.partNN files")
    mg.add_argument("--into", default=str(REPO / "analysis" / "results" / "cifar10"), help="results folder")
    mg.add_argument(
        "--script", default=str(REPO / "analysis" / "gpu_cifar10.sh"), help="the committed script the records need"
    )
    args = p.parse_args(argv)
    try:
        if args.cmd == "pack":
            try:
                extra = json.loads(args.extra)
            except json.JSONDecodeError as e:
                raise BundleError(f"--extra is not a JSON object: {e}") from None
            prov = {
                **extra,
                "gpu_name": args.gpu_name,
                "torch_version": args.torch_version,
                "script": args.script,
                "script_sha256": _sha256_file(Path(args.script)),
            }
            for path in pack(args.work, args.out, prov, args.name):
                print(f"{path}: {path.stat().st_size} bytes")
        else:
            s = merge(args.parts, args.into, args.script)
            print(
                f"merged {s['added']} records ({s['skipped']} already there) from {s['gpu_name']}, "
                f"torch {s['torch_version']}, into {args.into}"
            )
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
