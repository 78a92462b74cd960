"""``hashlab check``: prove conv / RNN ArbNets equal torch's layers, or say what each layer of a map is.

* ``hashlab check conv2d --input 3x32x32 --out-channels 16 --kernel 5 --stride 2 --padding 2`` (also
  ``conv1d --input 3x100``, ``rnn --input-size 5 --hidden-size 7 --steps 4``) builds the index map
  (:mod:`hashlab.conv`, :mod:`hashlab.rnn`), recognises its structure from the map alone, runs the
  numeric check against ``torch.nn.functional.conv1d/conv2d`` / ``torch.nn.RNN`` in float64 and
  float32 (outputs and gradients), prints PASS or FAIL with the max abs error, and exits 0 / 1.
* ``hashlab check FILE`` prints what each layer of an index file is (dense / convolution with
  geometry / RNN step / arbitrary) and why, with a witness when it is not a convolution.

torch is imported only inside :func:`run` for the builder targets, so ``hashlab --help`` and
``hashlab check FILE`` work without it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..maps.conv import ConvGeometry, conv_map
from ..equiv import MapReport, describe_map, recognize_conv, recognize_rnn, same_sharing
from ..io.format import load_index_file, save_index_file
from ..maps.hashes import build_map
from ..maps.indexmap import IndexMap
from ..maps.rnn import RNNGeometry, rnn_map
from ..maps.spec import Architecture, HashSpec

__all__ = ["register", "run", "format_report", "BUILDERS"]

BUILDERS = ("conv1d", "conv2d", "rnn")
_CONV_OPTS = ("input", "out_channels", "kernel", "stride", "padding", "dilation", "groups")
_RNN_OPTS = ("input_size", "hidden_size", "steps")
_BUILD_OPTS = _CONV_OPTS + _RNN_OPTS + ("no_bias", "output")
_FILE_OPTS = ("ignore_attrs", "json")

_EPILOG = """examples:
  hashlab check conv2d --input 3x32x32 --out-channels 16 --kernel 5 --stride 2 --padding 2 --dilation 1
  hashlab check conv2d --input 4x11x11 --out-channels 6 --kernel 3 --stride 2 --dilation 2 --groups 2 --padding 1
  hashlab check conv1d --input 3x100 --out-channels 8 --kernel 5 --dilation 3 -o conv1d.safetensors
  hashlab check rnn --input-size 5 --hidden-size 7 --steps 4 -o rnn.safetensors
  hashlab check map.safetensors
(a TARGET named conv1d, conv2d or rnn is a builder; write ./conv2d for a file of that name)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="check conv / RNN ArbNets against torch, or say what each layer of an index file is",
        description="Build a conv1d / conv2d / RNN index map and check it numerically against torch (outputs and "
                    "gradients) and structurally (recognised from the map alone), or describe every layer of an "
                    "index file: dense, convolution with geometry, RNN step, or arbitrary with a witness "
                    "(Chang & Lipson 2018, section 2). Exit code 0 on PASS, 1 on FAIL, 2 on bad input.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="TARGET", help="conv1d, conv2d or rnn (build and check), or an index file")
    c = p.add_argument_group("convolution (TARGET conv1d / conv2d)")
    c.add_argument("--input", metavar="CxHxW", help="input channels and spatial size: CxHxW for conv2d, CxL for conv1d")
    c.add_argument("--out-channels", type=int, metavar="INT", help="output channels")
    c.add_argument("--kernel", metavar="K", help="kernel size, K or KHxKW")
    c.add_argument("--stride", metavar="S", help="stride, S or SHxSW (default: 1)")
    c.add_argument("--padding", metavar="P", help="zero padding on both sides, P or PHxPW (default: 0)")
    c.add_argument("--dilation", metavar="D", help="dilation, D or DHxDW (default: 1)")
    c.add_argument("--groups", type=int, metavar="INT", help="channel groups (default: 1)")
    r = p.add_argument_group("RNN (TARGET rnn)")
    r.add_argument("--input-size", type=int, metavar="INT", help="features of x_t, >= 1")
    r.add_argument("--hidden-size", type=int, metavar="INT", help="hidden units H")
    r.add_argument("--steps", type=int, metavar="INT", help="unrolled time steps T (layers)")
    b = p.add_argument_group("building (TARGET conv1d / conv2d / rnn)")
    b.add_argument("--no-bias", action="store_true", help="no bias (default: one shared bias per channel / unit)")
    b.add_argument("--batch-size", type=int, default=2, metavar="INT", help="inputs per numeric check (default: 2)")
    b.add_argument("--seed", type=int, default=0, metavar="INT",
                   help="seed of the random table and inputs (default: 0)")
    b.add_argument("-o", "--output", metavar="FILE", help="also write the built map as an index file (format v1)")
    f = p.add_argument_group("index file (TARGET FILE)")
    f.add_argument("--ignore-attrs", action="store_true",
                   help="recover every geometry from the index arrays alone, ignoring the layers' attrs")
    f.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _plural(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _dims(text: str | None, name: str, n: int, lo: int, default: int | None = None) -> tuple[int, ...]:
    """Parse ``"5"`` or ``"5x3"`` into ``n`` ints >= ``lo``."""
    if text is None:
        if default is None:
            raise ValueError(f"--{name} is required for this target")
        return (default,) * n
    try:
        vals = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--{name} {text!r} is not an integer or NxM integers") from None
    if len(vals) == 1:
        vals *= n
    if len(vals) != n or min(vals) < lo:
        raise ValueError(f"--{name} {text!r} must be one integer >= {lo} or {n} of them joined by 'x'")
    return vals


def _conv_geometry(args: argparse.Namespace) -> ConvGeometry:
    ndim = 1 if args.target == "conv1d" else 2
    if args.input is None or args.out_channels is None or args.kernel is None:
        raise ValueError(f"{args.target} needs --input, --out-channels and --kernel, e.g. "
                         + ("--input 3x100 --out-channels 8 --kernel 5" if ndim == 1 else
                            "--input 3x32x32 --out-channels 16 --kernel 5"))
    if args.input.lower().count("x") != ndim:
        raise ValueError(f"--input {args.input!r} must be {'CxL' if ndim == 1 else 'CxHxW'} for {args.target}")
    shape = _dims(args.input, "input", ndim + 1, 1)
    return ConvGeometry(shape[0], args.out_channels, shape[1:], _dims(args.kernel, "kernel", ndim, 1),
                        _dims(args.stride, "stride", ndim, 1, 1), _dims(args.padding, "padding", ndim, 0, 0),
                        _dims(args.dilation, "dilation", ndim, 1, 1), 1 if args.groups is None else args.groups,
                        bias=not args.no_bias)


def _rnn_geometry(args: argparse.Namespace) -> RNNGeometry:
    if None in (args.input_size, args.hidden_size, args.steps):
        raise ValueError("rnn needs --input-size, --hidden-size and --steps, e.g. --input-size 5 --hidden-size 7 "
                         "--steps 4")
    if args.input_size < 1:
        raise ValueError(f"--input-size must be >= 1 (torch.nn.RNN needs an input), got {args.input_size}")
    return RNNGeometry(args.input_size, args.hidden_size, args.steps, bias=not args.no_bias)


def _numeric(lines: list[str], ok_struct: bool, check, geometry, imap: IndexMap, args: argparse.Namespace,
             what: str) -> tuple[list[str], bool]:
    """Run ``check`` in float64 and float32; append its lines and the PASS / FAIL verdict."""
    import torch

    reports = [check(geometry, imap, dtype=dt, batch_size=args.batch_size, seed=args.seed)
               for dt in (torch.float64, torch.float32)]
    lines.append(f"numeric: {what}, outputs and gradients, batch {args.batch_size}, seed {args.seed}")
    for rep in reports:
        errs = "  ".join(f"{k} {v:.2e}" for k, v in rep.errors.items())
        lines.append(f"  {rep.dtype:<8} {errs}  (tol {rep.rtol:g} x max(1, |ref|))  {'PASS' if rep.passed else 'FAIL'}")
    ok = ok_struct and all(r.passed for r in reports)
    lines.append(f"{'PASS' if ok else 'FAIL'} (max abs error {max(r.max_abs_error for r in reports):.2e})")
    return lines, ok


def _check_conv(args: argparse.Namespace) -> tuple[IndexMap, list[str], bool]:
    from trainers.torch_backend.equivalence import check_conv_equivalence

    g = _conv_geometry(args)
    imap = conv_map(g)
    lay = imap.layers[0]
    live = int((lay.indices >= 0).sum())
    lines = [g.describe(),
             f"index map: 1 layer {lay.out_features}x{lay.in_features} ({lay.num_weights:,} virtual weights, "
             f"{live:,} nonzero), one table of {g.table_size:,} entries ({g.kernel_entries:,} kernel"
             + (f" + {g.out_channels} bias)" if g.bias else ")")]
    v = recognize_conv(lay, use_attrs=False)
    if not v.is_conv:
        ok_struct = False
        lines.append(f"structure: FAIL, not recognised as a convolution: {v.witness}")
    elif v.geometry == g.canonical():
        ok_struct = True
        lines.append(f"structure: recognised from the index array alone (attrs ignored, "
                     f"{_plural(v.candidates, 'candidate grid')} examined): same geometry")
    else:
        ok_struct = same_sharing(conv_map(v.geometry).layers[0].indices, lay.indices)
        lines.append(f"structure: recognised from the index array alone as the equivalent {v.geometry.describe()}"
                     + ("" if ok_struct else " -- FAIL: it does not rebuild the same map"))
    return imap, *_numeric(lines, ok_struct, check_conv_equivalence, g, imap, args,
                           f"ArbNet (gather_weight + F.linear) vs torch.nn.functional.{g.op}")


def _check_rnn(args: argparse.Namespace) -> tuple[IndexMap, list[str], bool]:
    from trainers.torch_backend.equivalence import check_rnn_equivalence

    g = _rnn_geometry(args)
    imap = rnn_map(g)
    n = g.step_weights
    bias = f" + {g.hidden_size} bias)" if g.bias else ")"
    lines = [g.describe(),
             f"index map: {g.steps} layers rnn.t0..rnn.t{g.steps - 1} of {g.hidden_size}x{g.input_size + g.hidden_size}"
             f", one table of {g.table_size:,} entries ({n:,} weights{bias}"]
    feats = tuple(g.input_size + g.hidden_size if t % 2 == 0 else g.hidden_size for t in range(g.steps + 1))
    mod = build_map(HashSpec(kind="modulus", table_size=n, scope="global"), Architecture(feats))
    ok_mod = all(np.array_equal(a.indices.reshape(-1), b.indices.reshape(-1)) and
                 np.array_equal(a.indices.reshape(-1), (t * n + np.arange(n)) % n)
                 for t, (a, b) in enumerate(zip(imap.layers, mod.layers)))
    lines.append(f"modulus: every step's indices equal the global modulus hash i mod {n} (build_map kind=modulus, "
                 f"scope=global, flattened): {'yes' if ok_mod else 'NO'}")
    rv = recognize_rnn(imap)
    ok_struct = ok_mod and len(rv.groups) == 1 and rv.groups[0].geometry == g and rv.groups[0].modulus
    lines.append(f"structure: recognised from the index arrays alone as {g.describe()}, step matrix dense"
                 if ok_struct else f"structure: FAIL ({rv.witness or rv.groups})")
    return imap, *_numeric(lines, ok_struct, check_rnn_equivalence, g, imap, args,
                           "ArbNet (gather_weight + F.linear per step) vs torch.nn.RNN (tanh)")


def _spec_line(spec: dict) -> str:
    builder = spec.get("builder", "?")
    if builder == "hashlab.build_map":
        extra = [f"{k} {spec[k]}" for k in ("radius", "alpha") if spec.get(k) is not None]
        extra += [f"sparsity {spec['sparsity']}"] if spec.get("sparsity") else []
        extra += ["sign"] if spec.get("sign") else []
        arch = "-".join(map(str, spec.get("architecture", [])))
        return (f"build_map {spec.get('kind')} hash, table {spec.get('table_size')}, scope {spec.get('scope')}, "
                f"seed {spec.get('seed')}{''.join(', ' + e for e in extra)}, architecture {arch}")
    return builder


def format_report(path: str, imap: IndexMap, report: MapReport) -> str:
    """Human-readable text of :func:`hashlab.equiv.describe_map` for ``hashlab check FILE``."""
    lines = [f"{path}: {_plural(len(imap.layers), 'layer')}, {imap.num_weights:,} virtual weights, tables "
             f"{list(imap.table_sizes)}; built by {_spec_line(imap.spec)}"]
    shown: set[str] = set()
    for lay in report.layers:
        where = f"{lay.name} ({lay.shape[0]}x{lay.shape[1]}, table {lay.table})"
        lines.append(f"{where}: {lay.kind.upper()}: {lay.summary}")
        if lay.rnn is not None:
            key = lay.rnn.layers[0]
            if key in shown:
                lines.append(f"    tied to {key} (see there)")
                continue
            shown.add(key)
        lines += [f"    {why}" for why in lay.reasons]
    rnn = report.rnn
    if rnn.is_rnn:
        for g in rnn.groups:
            lines.append(f"RNN: {g.layers[0]}..{g.layers[-1]} are {len(g.layers)} tied steps of an "
                         f"{g.geometry.describe()}" + (" (global modulus hash, up to relabeling)" if g.modulus else ""))
    else:
        lines.append(f"RNN: no: {rnn.witness}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.target in BUILDERS:
        if args.target == "rnn":
            extra = [o for o in _CONV_OPTS if getattr(args, o) is not None]
        else:
            extra = [o for o in _RNN_OPTS if getattr(args, o) is not None]
        extra += [o for o in _FILE_OPTS if getattr(args, o)]
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} does not apply to {args.target}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        imap, lines, ok = (_check_rnn if args.target == "rnn" else _check_conv)(args)
        if args.output:
            lines.append(f"wrote {save_index_file(imap, args.output)}")
        print("\n".join(lines))
        return 0 if ok else 1
    given = [o for o in _BUILD_OPTS if getattr(args, o) not in (None, False)]
    if given:
        raise ValueError(f"--{given[0].replace('_', '-')} only applies to the builder targets {', '.join(BUILDERS)}; "
                         f"{args.target!r} is read as an index file")
    imap = load_index_file(Path(args.target))
    report = describe_map(imap, use_attrs=not args.ignore_attrs)
    if args.json:
        print(json.dumps({"file": str(args.target), **report.to_dict()}, indent=2, sort_keys=True))
    else:
        print(format_report(str(args.target), imap, report))
    return 0

