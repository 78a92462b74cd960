"""``hashlab check``: prove conv / RNN ArbNets equal torch's layers, or say what each layer of a map is.

* ``hashlab check conv2d --input 3x32x32 --out-channels 16 --kernel 5 --stride 2 --padding 2`` (also
  ``conv1d --input 3x100``, ``rnn --input-size 5 --hidden-size 7 --steps 4``) builds the index map
  (:mod:`hashlab.maps.conv`, :mod:`hashlab.maps.rnn`), recognises its structure from the map alone, runs the
  numeric check against ``torch.nn.functional.conv1d/conv2d`` / ``torch.nn.RNN`` in float64 and
  float32 (outputs and gradients), prints PASS or FAIL with the max abs error, and exits 0 / 1.
* ``hashlab check FILE`` prints what each layer of an index file is (dense / convolution with
  geometry / RNN step / arbitrary) and why, with a witness when it is not a convolution; the
  symmetry group each layer and the whole network are equivariant to
  (:func:`hashlab.equiv.symmetry.map_symmetry`, through igraph's bliss), and the ties across layers.

The numeric check comes from the ``hashlab.equivalence`` entry points (the torch trainer registers
``conv`` and ``rnn``, :mod:`hashlab.commands.plugins`) and is loaded only for the builder targets, so
``hashlab --help`` and ``hashlab check FILE`` work without torch.
"""

from __future__ import annotations

import argparse
import json

from ..equiv import describe_map, find_ties, map_symmetry
from ..equiv.check import StructureCheck, check_conv_structure, check_rnn_structure, format_description, numeric_lines
from ..io.format import save_index_file
from ..io.paths import check_output_path
from ..maps.geometry import ConvGeometry, RNNGeometry
from .inputs import add_max_table_entries, add_symmetry_flags, load_input_map, symmetry_bounds
from .plugins import load_equivalence

__all__ = ["register", "run", "BUILDERS"]

BUILDERS = ("conv1d", "conv2d", "rnn")
_CONV_OPTS = ("input", "out_channels", "kernel", "stride", "padding", "dilation", "groups")
_RNN_OPTS = ("input_size", "hidden_size", "steps")
_BUILD_OPTS = _CONV_OPTS + _RNN_OPTS + ("no_bias", "output")
_FILE_OPTS = ("ignore_attrs", "json", "no_symmetry", "symmetry_time_limit", "symmetry_max_weights")

_EPILOG = """examples:
  hashlab check conv2d --input 3x32x32 --out-channels 16 --kernel 5 --stride 2 --padding 2 --dilation 1
  hashlab check conv2d --input 4x11x11 --out-channels 6 --kernel 3 --stride 2 --dilation 2 --groups 2 --padding 1
  hashlab check conv1d --input 3x100 --out-channels 8 --kernel 5 --dilation 3 -o conv1d.safetensors
  hashlab check rnn --input-size 5 --hidden-size 7 --steps 4 -o rnn.safetensors
  hashlab check map.safetensors
  hashlab check map.safetensors --symmetry-time-limit 10 --json
(a TARGET named conv1d, conv2d or rnn is a builder; write ./conv2d for a file of that name)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check conv / RNN ArbNets against torch, or say what each layer of an index file is",
        description="Build a conv1d / conv2d / RNN index map and check it numerically against torch (outputs and "
        "gradients) and structurally (recognised from the map alone), or describe every layer of an "
        "index file: dense, convolution with geometry, RNN step, or arbitrary with a witness "
        "(Chang & Lipson 2018, section 2), the permutation group each layer and the whole network are "
        "equivariant to (its automorphism group, Ravanbakhsh et al. 2017), and the layers tied to each other. "
        "Exit code 0 on PASS, 1 on FAIL, 2 on bad input.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    b.add_argument(
        "--seed", type=int, default=0, metavar="INT", help="seed of the random table and inputs (default: 0)"
    )
    b.add_argument("-o", "--output", metavar="FILE", help="also write the built map as an index file")
    f = p.add_argument_group("index file (TARGET FILE)")
    f.add_argument(
        "--ignore-attrs",
        action="store_true",
        help="recover every geometry from the index arrays alone, ignoring the layers' attrs",
    )
    f.add_argument("--json", action="store_true", help="print the report as JSON")
    add_symmetry_flags(f)
    add_max_table_entries(f)
    p.set_defaults(func=run)


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
        raise ValueError(
            f"{args.target} needs --input, --out-channels and --kernel, e.g. "
            + (
                "--input 3x100 --out-channels 8 --kernel 5"
                if ndim == 1
                else "--input 3x32x32 --out-channels 16 --kernel 5"
            )
        )
    if args.input.lower().count("x") != ndim:
        raise ValueError(f"--input {args.input!r} must be {'CxL' if ndim == 1 else 'CxHxW'} for {args.target}")
    shape = _dims(args.input, "input", ndim + 1, 1)
    return ConvGeometry(
        shape[0],
        args.out_channels,
        shape[1:],
        _dims(args.kernel, "kernel", ndim, 1),
        _dims(args.stride, "stride", ndim, 1, 1),
        _dims(args.padding, "padding", ndim, 0, 0),
        _dims(args.dilation, "dilation", ndim, 1, 1),
        1 if args.groups is None else args.groups,
        bias=not args.no_bias,
    )


def _rnn_geometry(args: argparse.Namespace) -> RNNGeometry:
    if None in (args.input_size, args.hidden_size, args.steps):
        raise ValueError(
            "rnn needs --input-size, --hidden-size and --steps, e.g. --input-size 5 --hidden-size 7 --steps 4"
        )
    if args.input_size < 1:
        raise ValueError(f"--input-size must be >= 1 (torch.nn.RNN needs an input), got {args.input_size}")
    return RNNGeometry(args.input_size, args.hidden_size, args.steps, bias=not args.no_bias)


def _numeric(check: StructureCheck, equivalence, geometry, args: argparse.Namespace, what: str) -> bool:
    """Run the torch check on the built map in float64 and float32; append its lines and the verdict."""
    import torch

    reports = [
        equivalence(geometry, check.imap, dtype=dt, batch_size=args.batch_size, seed=args.seed)
        for dt in (torch.float64, torch.float32)
    ]
    lines, ok = numeric_lines(reports, what, args.batch_size, args.seed)
    ok = check.passed and ok
    check.lines.extend(
        lines + [f"{'PASS' if ok else 'FAIL'} (max abs error {max(r.max_abs_error for r in reports):.2e})"]
    )
    return ok


def _check_conv(args: argparse.Namespace) -> tuple[StructureCheck, bool]:
    g = _conv_geometry(args)
    check = check_conv_structure(g)
    return check, _numeric(
        check, load_equivalence("conv"), g, args, f"ArbNet (gather_weight + F.linear) vs torch.nn.functional.{g.op}"
    )


def _check_rnn(args: argparse.Namespace) -> tuple[StructureCheck, bool]:
    g = _rnn_geometry(args)
    check = check_rnn_structure(g)
    return check, _numeric(
        check, load_equivalence("rnn"), g, args, "ArbNet (gather_weight + F.linear per step) vs torch.nn.RNN (tanh)"
    )


def run(args: argparse.Namespace) -> int:
    if args.target in BUILDERS:
        if args.target == "rnn":
            extra = [o for o in _CONV_OPTS if getattr(args, o) is not None]
        else:
            extra = [o for o in _RNN_OPTS if getattr(args, o) is not None]
        extra += [o for o in _FILE_OPTS if getattr(args, o) not in (None, False)]
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} does not apply to {args.target}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.output is not None:
            check_output_path(args.output, "--output")
        check, ok = (_check_rnn if args.target == "rnn" else _check_conv)(args)
        if args.output:
            check.lines.append(f"wrote {save_index_file(check.imap, args.output)}")
        print("\n".join(check.lines))
        return 0 if ok else 1
    given = [o for o in _BUILD_OPTS if getattr(args, o) not in (None, False)]
    if given:
        raise ValueError(
            f"--{given[0].replace('_', '-')} only applies to the builder targets {', '.join(BUILDERS)}; "
            f"{args.target!r} is read as an index file"
        )
    max_weights, time_limit = symmetry_bounds(args)
    imap = load_input_map(args.target, args)
    report = describe_map(imap, use_attrs=not args.ignore_attrs)
    sym = None if args.no_symmetry else map_symmetry(imap, max_weights=max_weights, time_limit=time_limit)
    ties = find_ties(imap)
    if args.json:
        more = {"symmetry": None if sym is None else sym.to_dict(), "ties": [t.to_dict() for t in ties]}
        print(json.dumps({"file": str(args.target), **report.to_dict(), **more}, indent=2, sort_keys=True))
    else:
        print(format_description(str(args.target), imap, report, sym, ties))
    return 0
