"""What ``hashlab check`` proves, as a library: structural checks of built conv / RNN maps, and text.

* :func:`check_conv_structure` / :func:`check_rnn_structure` build the index map of a geometry
  (:func:`hashlab.maps.conv_map`, :func:`hashlab.maps.rnn_map`) and recover its structure from
  the index arrays alone (paper section 2, eq. 1 and 4-6). They return the map, so that a
  numeric check (``trainers.torch_backend.equivalence``, which takes maps and never builds
  them) can run on exactly the same map.
* :func:`numeric_lines` turns float64 / float32 numeric reports into the PASS / FAIL lines.
* :func:`format_description` is the text of :func:`describe_map` for an index file, with each layer's
  symmetry group (:func:`hashlab.equiv.symmetry.map_symmetry`) and the ties across layers
  (:func:`hashlab.equiv.tying.find_ties`) when given.

numpy only; torch is never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..maps.conv import conv_map
from ..maps.geometry import ConvGeometry, RNNGeometry
from ..maps.hashes import build_map
from ..maps.indexmap import IndexMap
from ..maps.rnn import rnn_map
from ..maps.spec import Architecture, HashSpec
from .conv_recognition import recognize_conv
from .describe import MapDescription, _plural, recognize_rnn, same_sharing
from .symmetry import MapSymmetry, Refusal
from .tying import Tie

__all__ = ["StructureCheck", "check_conv_structure", "check_rnn_structure", "numeric_lines", "format_description"]


@dataclass(frozen=True)
class StructureCheck:
    """A built map and what its structural check found.

    Attributes
    ----------
    imap : IndexMap
        The map built from the geometry.
    lines : list of str
        Human-readable lines: geometry, map sizes, structural verdict.
    passed : bool
        True when the structure recovered from the index arrays alone is the geometry's (or an
        equivalent one that rebuilds the same sharing).
    """

    imap: IndexMap
    lines: list[str]
    passed: bool


def check_conv_structure(g: ConvGeometry) -> StructureCheck:
    """Build :func:`~hashlab.maps.conv_map` of ``g`` and recognise it from its indices (attrs ignored).

    Raises
    ------
    SpecError
        If ``g`` is not a valid :class:`ConvGeometry`.
    """
    imap = conv_map(g)
    lay = imap.layers[0]
    live = int((lay.indices >= 0).sum())
    lines = [
        g.describe(),
        f"index map: 1 layer {lay.out_features}x{lay.in_features} ({lay.num_weights:,} virtual weights, "
        f"{live:,} nonzero), one table of {g.table_size:,} entries ({g.kernel_entries:,} kernel"
        + (f" + {g.out_channels} bias)" if g.bias else ")"),
    ]
    v = recognize_conv(lay, use_attrs=False)
    if not v.is_conv:
        ok = False
        lines.append(f"structure: FAIL, not recognised as a convolution: {v.witness}")
    elif v.geometry == g.canonical():
        ok = True
        lines.append(
            f"structure: recognised from the index array alone (attrs ignored, "
            f"{_plural(v.candidates, 'candidate grid')} examined): same geometry"
        )
    else:
        assert v.geometry is not None  # a convolution verdict always carries its geometry
        ok = same_sharing(conv_map(v.geometry).layers[0].indices, lay.indices)
        lines.append(
            f"structure: recognised from the index array alone as the equivalent {v.geometry.describe()}"
            + ("" if ok else " -- FAIL: it does not rebuild the same map")
        )
    return StructureCheck(imap, lines, ok)


def check_rnn_structure(g: RNNGeometry) -> StructureCheck:
    """Build :func:`~hashlab.maps.rnn_map` of ``g``; check it is the global modulus hash and is recognised.

    Raises
    ------
    SpecError
        If ``g`` is not a valid :class:`RNNGeometry`.
    """
    imap = rnn_map(g)
    n = g.step_weights
    bias = f" + {g.hidden_size} bias)" if g.bias else ")"
    lines = [
        g.describe(),
        f"index map: {g.steps} layers rnn.t0..rnn.t{g.steps - 1} of {g.hidden_size}x{g.input_size + g.hidden_size}"
        f", one table of {g.table_size:,} entries ({n:,} weights{bias}",
    ]
    feats = tuple(g.input_size + g.hidden_size if t % 2 == 0 else g.hidden_size for t in range(g.steps + 1))
    mod = build_map(HashSpec(kind="modulus", table_size=n, scope="global"), Architecture(feats))
    ok_mod = all(
        np.array_equal(a.indices.reshape(-1), b.indices.reshape(-1))
        and np.array_equal(a.indices.reshape(-1), (t * n + np.arange(n)) % n)
        for t, (a, b) in enumerate(zip(imap.layers, mod.layers))
    )
    lines.append(
        f"modulus: every step's indices equal the global modulus hash i mod {n} (build_map kind=modulus, "
        f"scope=global, flattened): {'yes' if ok_mod else 'NO'}"
    )
    rv = recognize_rnn(imap)
    ok = ok_mod and len(rv.groups) == 1 and rv.groups[0].geometry == g and rv.groups[0].modulus
    lines.append(
        f"structure: recognised from the index arrays alone as {g.describe()}, step matrix dense"
        if ok
        else f"structure: FAIL ({rv.witness or rv.groups})"
    )
    return StructureCheck(imap, lines, ok)


def numeric_lines(reports: Sequence[Any], what: str, batch_size: int, seed: int) -> tuple[list[str], bool]:
    """Lines for numeric equivalence reports (one per dtype) and whether all passed.

    Parameters
    ----------
    reports : sequence of EquivalenceReport
        From ``trainers.torch_backend.equivalence``; each has ``dtype``, ``errors`` (name to max
        abs error), ``rtol``, ``passed`` and ``max_abs_error``.
    what : str
        What was compared, e.g. ``"ArbNet vs torch.nn.functional.conv2d"``.
    batch_size, seed : int
        As passed to the checks, for the record.
    """
    lines = [f"numeric: {what}, outputs and gradients, batch {batch_size}, seed {seed}"]
    for rep in reports:
        errs = "  ".join(f"{k} {v:.2e}" for k, v in rep.errors.items())
        lines.append(f"  {rep.dtype:<8} {errs}  (tol {rep.rtol:g} x max(1, |ref|))  {'PASS' if rep.passed else 'FAIL'}")
    return lines, all(r.passed for r in reports)


def _spec_line(spec: dict) -> str:
    builder = spec.get("builder", "?")
    if builder == "hashlab.build_map":
        extra = [f"{k} {spec[k]}" for k in ("radius", "alpha") if spec.get(k) is not None]
        extra += [f"sparsity {spec['sparsity']}"] if spec.get("sparsity") else []
        extra += ["sign"] if spec.get("sign") else []
        arch = "-".join(map(str, spec.get("architecture", [])))
        budget = (
            f"compression {spec['compression']}"
            if spec.get("compression") is not None
            else f"table {spec.get('table_size')}"
        ) + (", hashed biases" if spec.get("hash_bias") else "")
        return (
            f"build_map {spec.get('kind')} hash, {budget}, scope {spec.get('scope')}, "
            f"seed {spec.get('seed')}{''.join(', ' + e for e in extra)}, architecture {arch}"
        )
    return builder


def _symmetry_line(g) -> str:
    if isinstance(g, Refusal):
        return f"symmetry: not computed: {g.reason}"
    return f"symmetry: |Aut| = {g.order_text()}: {g.structure}"


def format_description(
    path: str,
    imap: IndexMap,
    report: MapDescription,
    symmetry: MapSymmetry | None = None,
    ties: Sequence[Tie] = (),
) -> str:
    """Human-readable text of :func:`~hashlab.equiv.describe_map` (``hashlab check FILE``).

    Parameters
    ----------
    path : str
    imap : IndexMap
    report : MapDescription
    symmetry : MapSymmetry, optional
        Adds a ``symmetry:`` line under each layer and a ``network symmetry:`` line at the end.
    ties : sequence of Tie
        Adds a ``ties:`` line per tie.
    """
    sym_of = {} if symmetry is None else {g.name: g for g in symmetry.layers}
    lines = [
        f"{path}: {_plural(len(imap.layers), 'layer')}, {imap.num_weights:,} virtual weights, tables "
        f"{list(imap.table_sizes)}; built by {_spec_line(imap.spec)}"
    ]
    shown: set[str] = set()
    for lay in report.layers:
        where = f"{lay.name} ({lay.shape[0]}x{lay.shape[1]}, table {lay.table})"
        lines.append(f"{where}: {lay.kind.upper()}: {lay.summary}")
        if lay.name in sym_of:
            lines.append(f"    {_symmetry_line(sym_of[lay.name])}")
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
            lines.append(
                f"RNN: {g.layers[0]}..{g.layers[-1]} are {len(g.layers)} tied steps of an "
                f"{g.geometry.describe()}" + (" (global modulus hash, up to relabeling)" if g.modulus else "")
            )
    else:
        lines.append(f"RNN: no: {rnn.witness}")
    lines += [f"ties: {t.describe()}" for t in ties]
    if symmetry is not None and symmetry.network is not None and len(imap.layers) > 1:
        net = symmetry.network
        joined = "" if isinstance(net, Refusal) or all(net.joined) else " (only where the sizes chain)"
        lines.append(f"network {_symmetry_line(net)} (layers joined through their hidden units{joined})")
    return "\n".join(lines)
