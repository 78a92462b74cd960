"""A seeded mutator of index files and the oracle the fuzz test applies to each mutant.

Each mutation kind edits a valid file the way a bug, a careless hand or a bit flip would. The
oracle classifies what :func:`hashlab.io.format.load_index_file` does with the mutant:

* ``error``: a documented :class:`~hashlab.io.format.FormatError` (a ``ValueError``) naming the file;
* ``ok``: it loads, and the map is consistent: valid, accepted by the reference ``safetensors``
  reader, and written back and re-read unchanged by our writer (which refuses inconsistent maps);
* ``inconsistent``: it loads but fails one of those checks;
* ``crash``: any other exception.

    python -m tests.hashlab.io.fuzz 3000     # prints the table per kind
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from hashlab import Architecture, HashSpec, build_map, load_index_file, save_index_file
from hashlab.io.format import FormatError, payload_checksum

GARBAGE = [
    0,
    1,
    -1,
    2**40,
    1.5,
    "42",
    "",
    "x",
    None,
    True,
    [],
    {},
    [1],
    {"a": 1},
    "[]",
    "{}",
    "null",
    "1e999",
    [[[[[[]]]]]],
    "NaN",
    2**31,
    -(2**63),
    "\ud800",
]


def base_files(folder: Path) -> list[Path]:
    """Small valid files of versions 1, 2 and 4 covering every feature (sign, bias, int32, initial tables; v4:
    spec-only with bias signs, and packed 3-bit and 16-bit codes)."""
    from tests.hashlab.io.golden.make_golden import GOLDEN, GOLDEN_V2, GOLDEN_V4_PACKED, GOLDEN_V4_SPEC

    folder.mkdir(parents=True, exist_ok=True)
    a = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=9, seed=1, sign=True, sparsity=0.2), Architecture((5, 4, 3))),
        folder / "a.safetensors",
        version=2,
    )
    b = save_index_file(
        build_map(HashSpec(kind="identity", scope="global"), Architecture((3, 2, 2))),
        folder / "b.safetensors",
        version=2,
    )
    return [GOLDEN, GOLDEN_V2, a, b, GOLDEN_V4_SPEC, GOLDEN_V4_PACKED]


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(header: dict | object, data: bytes, fix_checksum: bool = False, text: bytes | None = None) -> bytes:
    if (
        fix_checksum
        and isinstance(header, dict)
        and isinstance(header.get("__metadata__"), dict)
        and "checksum" in header["__metadata__"]
    ):
        header["__metadata__"]["checksum"] = payload_checksum(data)
    hb = text if text is not None else json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    hb += b" " * (-(8 + len(hb)) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def _edit_json_meta(h: dict, key: str, fn) -> None:
    val = json.loads(h["__metadata__"][key])
    val = fn(val)
    h["__metadata__"][key] = json.dumps(val)


def _tensor_names(h: dict) -> list[str]:
    return sorted(k for k in h if k != "__metadata__")


def mutate(raw: bytes, rng: np.random.Generator, kind: str) -> bytes:
    """One mutant of ``raw`` of the given kind (see :data:`KINDS`)."""
    h, data = _split(raw)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    garbage = lambda: pick(GARBAGE)  # noqa: E731
    fix = bool(rng.integers(2))
    if kind == "meta-value":
        key = pick(sorted(h["__metadata__"]))
        h["__metadata__"][key] = pick(
            [
                "42",
                "[]",
                "{}",
                "null",
                '"x"',
                "[" * 300 + "]" * 300,
                "1e999",
                '{"a":1}',
                "[1,2",
                str(rng.integers(-5, 50)),
                "NaN",
                '"\\ud800"',
            ]
        )
    elif kind == "meta-type":
        h["__metadata__"][pick(sorted(h["__metadata__"]))] = pick([1, None, [], {"a": "b"}, True, 1.5])
    elif kind == "header-type":
        return _join(
            None,
            data,
            text=pick([b"1", b"[]", b'"x"', b"null", b"[" * 5000 + b"]" * 5000, b"{" + b'"a":{' * 3000 + b"}" * 3001]),
        )
    elif kind == "spec-edit":

        def f(spec):
            if not isinstance(spec, dict) or rng.integers(5) == 0:
                return garbage()
            key = pick(sorted(spec) + ["architecture", "table_size", "builder"])
            if rng.integers(3) == 0:
                spec.pop(key, None)
            elif key == "architecture" and isinstance(spec.get(key), list) and spec[key]:
                arch = spec[key]
                arch[int(rng.integers(len(arch)))] += int(rng.integers(-2, 3)) or 1
            elif isinstance(spec.get(key), int) and not isinstance(spec.get(key), bool):
                spec[key] += int(rng.integers(-3, 4)) or 1
            else:
                spec[key] = garbage()
            return spec

        _edit_json_meta(h, "spec", f)
    elif kind == "tables-edit":

        def f(tables):
            choice = int(rng.integers(4))
            if choice == 0:
                tables[int(rng.integers(len(tables)))] += int(rng.integers(-3, 4)) or 1
            elif choice == 1:
                tables.append(int(rng.integers(1, 100)))
            elif choice == 2 and len(tables) > 1:
                tables.pop()
            else:
                tables[int(rng.integers(len(tables)))] = garbage()
            return tables

        _edit_json_meta(h, "tables", f)
    elif kind == "layers-edit":

        def f(layers):
            k = int(rng.integers(len(layers)))
            choice = int(rng.integers(5))
            if choice == 0:
                key = pick(["name", "out_features", "in_features", "table", "sign", "bias", "attrs"])
                v = layers[k][key]
                layers[k][key] = (
                    v + (int(rng.integers(-2, 3)) or 1)
                    if isinstance(v, int) and not isinstance(v, bool) and rng.integers(2)
                    else garbage()
                )
            elif choice == 1:
                layers[k].pop(pick(sorted(layers[k])))
            elif choice == 2:
                layers[k]["extra"] = 1
            elif choice == 3 and len(layers) > 1:
                j = int(rng.integers(len(layers)))
                layers[k], layers[j] = layers[j], layers[k]
            else:
                layers[k]["name"] = layers[(k + 1) % len(layers)]["name"]
            return layers

        _edit_json_meta(h, "layers", f)
    elif kind == "tensor-info":
        name = pick(_tensor_names(h))
        info = h[name]
        choice = int(rng.integers(6))
        if choice == 0:
            info["dtype"] = pick(["I8", "I16", "I32", "I64", "F32", "F16", "U8", "BOOL", 3, None])
        elif choice == 1:
            info["shape"] = pick(
                [
                    [],
                    [0],
                    [1, 1],
                    info["shape"][::-1],
                    [-1, 2],
                    ["2", 2],
                    [2**62, 2**62],
                    5,
                    [info["shape"][0] + 1] + info["shape"][1:],
                ]
            )
        elif choice == 2:
            b, e = info["data_offsets"]
            info["data_offsets"] = pick(
                [
                    [str(b), e],
                    [b, str(e)],
                    [-1, e],
                    [b + 0.5, e],
                    [e, b],
                    [b, e, 0],
                    [b],
                    None,
                    [b + 2, e + 2],
                    [b - 2, e - 2],
                    [0, e - b],
                    [b, 2**64],
                    [2**70, 2**70],
                ]
            )
        elif choice == 3:
            other = h[pick(_tensor_names(h))]
            info["data_offsets"] = list(other["data_offsets"])  # alias another tensor's bytes
        elif choice == 4:
            info.pop(pick(sorted(info)))
        else:
            info["extra"] = garbage()
    elif kind == "tensor-keys":
        names = _tensor_names(h)
        name = pick(names)
        choice = int(rng.integers(3))
        if choice == 0:
            h.pop(name)
        elif choice == 1:
            h[name.replace("indices", "idx") if "indices" in name else name + "x"] = h.pop(name)
        else:
            h["layers.99.sign" if rng.integers(2) else "table.0"] = dict(h[name])
    elif kind == "dup-key":
        text = json.dumps(h, separators=(",", ":"))
        name = pick(_tensor_names(h) + ["__metadata__"])
        frag = f'"{name}":' + json.dumps(h[name], separators=(",", ":"))
        return _join(None, data, text=(text[:-1] + "," + frag + "}").encode())
    elif kind == "header-bytes":
        (n,) = struct.unpack("<Q", raw[:8])
        buf = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            buf[8 + int(rng.integers(n))] = int(rng.integers(256))
        return bytes(buf)
    elif kind == "length":
        (n,) = struct.unpack("<Q", raw[:8])
        return struct.pack("<Q", pick([0, 1, n - 1, n + 1, n + 8, len(raw), 2**63, 2**64 - 1])) + raw[8:]
    elif kind == "truncate-append":
        cut = int(rng.integers(len(raw)))
        return (
            raw[:cut] if rng.integers(2) else raw + bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        )
    elif kind == "data-bytes":
        if not data:
            return raw[:-1]
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 3))):
            buf[int(rng.integers(len(buf)))] ^= int(rng.integers(1, 256))
        return _join(h, bytes(buf), fix_checksum=fix)
    elif kind == "random":
        return bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))
    elif kind == "v4-meta":  # the v4 keys: storage and indices_sha256, set, dropped, swapped or garbled
        meta = h["__metadata__"]
        choice = int(rng.integers(5))
        if choice == 0:
            meta["storage"] = pick(["spec", "packed", "", "SPEC", "arrays", "spec "])
        elif choice == 1:
            meta.pop(pick(["storage", "indices_sha256"]), None)
        elif choice == 2:
            meta["indices_sha256"] = pick(
                ["sha256:" + "0" * 64, "sha256:" + "A" * 64, "sha256:", "md5:" + "0" * 32, meta.get("checksum", "")]
            )
        elif choice == 3 and "indices_sha256" in meta:  # one hex digit off
            sha = meta["indices_sha256"]
            pos = int(rng.integers(7, len(sha)))
            meta["indices_sha256"] = sha[:pos] + ("1" if sha[pos] == "0" else "0") + sha[pos + 1 :]
        else:
            meta["format_version"] = pick(["3", "4"])
    elif kind == "packed-bits":  # flip one bit of a tensor's last byte (padding bits, the highest codes)
        names = _tensor_names(h)
        if not names:
            return raw[:-1]
        b, e = h[pick(names)]["data_offsets"]
        if e == b:
            return raw[:-1]
        buf = bytearray(data)
        buf[e - 1] ^= 1 << int(rng.integers(8))
        return _join(h, bytes(buf), fix_checksum=fix)
    else:
        raise ValueError(kind)
    return _join(h, data, fix_checksum=fix)


KINDS = (
    "meta-value",
    "meta-type",
    "header-type",
    "spec-edit",
    "tables-edit",
    "layers-edit",
    "tensor-info",
    "tensor-keys",
    "dup-key",
    "header-bytes",
    "length",
    "truncate-append",
    "data-bytes",
    "random",
    "v4-meta",
    "packed-bits",
)


def classify(path: Path) -> tuple[str, str]:
    """``(outcome, detail)`` of loading ``path`` (see the module docstring)."""
    from safetensors.numpy import load_file

    try:
        imap = load_index_file(path)
    except FormatError as e:
        return ("error", str(e)) if str(path) in str(e) else ("crash", f"FormatError without the path: {e}")
    except Exception as e:  # noqa: BLE001 - exactly what the fuzz test looks for
        return "crash", f"{type(e).__name__}: {e}"
    try:
        imap.validate(check_values=True)
        load_file(path)
        version = int(
            json.loads(path.read_bytes()[8 : 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])["__metadata__"][
                "format_version"
            ]
        )
        back = load_index_file(save_index_file(imap, path.with_suffix(".again"), version=version))
        assert back.table_sizes == imap.table_sizes and back.spec == imap.spec
        for a, b in zip(back.layers, imap.layers):
            assert a.name == b.name and a.table == b.table and np.array_equal(a.indices, b.indices)
    except Exception as e:  # noqa: BLE001
        return "inconsistent", f"{type(e).__name__}: {e}"
    return "ok", ""


def run(n: int, folder: Path, seed: int = 0) -> tuple[dict[str, Counter], list[tuple[str, str, Path]], float]:
    """Mutate ``n`` files; return counts per kind, the bad cases and the slowest load in seconds."""
    rng = np.random.default_rng(seed)
    bases = [p.read_bytes() for p in base_files(folder / "base")]
    counts: dict[str, Counter] = defaultdict(Counter)
    bad, slowest = [], 0.0
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        mutant = mutate(bases[int(rng.integers(len(bases)))], rng, kind)
        path = folder / f"m{i}.safetensors"
        path.write_bytes(mutant)
        t = time.perf_counter()
        outcome, detail = classify(path)
        slowest = max(slowest, time.perf_counter() - t)
        counts[kind][outcome] += 1
        if outcome in ("inconsistent", "crash"):
            bad.append((kind, detail, path))
    return counts, bad, slowest


if __name__ == "__main__":  # pragma: no cover
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as d:
        counts, bad, slowest = run(n, Path(d))
    print("| kind | tried | clear error | loads, consistent | inconsistent | crash |\n|---|---|---|---|---|---|")
    tot = Counter()
    for k in KINDS:
        c = counts[k]
        tot.update(c)
        print(f"| {k} | {sum(c.values())} | {c['error']} | {c['ok']} | {c['inconsistent']} | {c['crash']} |")
    print(f"| all | {sum(tot.values())} | {tot['error']} | {tot['ok']} | {tot['inconsistent']} | {tot['crash']} |")
    print(f"slowest load {slowest * 1000:.1f} ms")
    for kind, detail, _ in bad[:20]:
        print(kind, detail[:300])
