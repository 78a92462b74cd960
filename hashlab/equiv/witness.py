"""Witnesses: the concrete weights that show an index map is not a given structure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..maps.conv import ConvGeometry

__all__ = ["WITNESS_KINDS", "WeightRef", "Witness"]

WITNESS_KINDS = (
    # refute every convolution geometry at once
    "empty",
    "sign",
    "repeat_in_row",
    "repeat_in_column",
    # refute one candidate grid / geometry (named in Witness.candidate)
    "stride",
    "padding",
    "output_size",
    "should_share",
    "should_not_share",
    "should_be_zero",
    "should_be_nonzero",
    "bias",
    # across layers (RNN weight tying)
    "not_tied",
    "shape",
    "table",
)


@dataclass(frozen=True)
class WeightRef:
    """One virtual weight and the table entry it reads.

    Parameters
    ----------
    layer : str
        Layer name.
    row, col : int
        Position in the layer's ``(out_features, in_features)`` matrix. ``col=None`` means the
        bias of output ``row``.
    entry : int
        Table entry read, ``-1`` if the weight is fixed at zero.
    """

    layer: str
    row: int
    col: int | None
    entry: int

    def __str__(self) -> str:
        return f"w({self.row},{self.col})" if self.col is not None else f"b({self.row})"

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "row": self.row, "col": self.col, "entry": self.entry}


@dataclass(frozen=True)
class Witness:
    """Why a map is not a convolution (or not an unrolled RNN), with the weights that show it.

    Parameters
    ----------
    kind : str
        One of :data:`WITNESS_KINDS`. ``should_share``: the weights are the same kernel tap (or
        the same weight of consecutive RNN steps) yet read different entries. ``should_not_share``:
        they read the same entry yet are different taps. ``should_be_zero`` /
        ``should_be_nonzero``: a weight is outside / inside the kernel footprint yet reads an
        entry / is fixed at zero. ``repeat_in_row`` / ``repeat_in_column``: one output (input)
        position reads an entry twice, which no convolution does, whatever its geometry.
    reason : str
        A sentence naming the weights, the entries and the rule they break.
    weights : tuple of WeightRef
        The weights involved (usually two, one for zero/nonzero checks, none for size checks).
    candidate : str
        The geometry or grid the witness refutes; empty if it refutes every geometry.
    geometry : ConvGeometry or None
        The refuted geometry itself, for witnesses found by exact verification
        (``should_share``, ``should_not_share``, ``should_be_zero``, ``should_be_nonzero``):
        ``hashlab.maps.conv.conv_taps(geometry)`` shows the claim.
    """

    kind: str
    reason: str
    weights: tuple[WeightRef, ...] = ()
    candidate: str = ""
    geometry: ConvGeometry | None = None

    def __post_init__(self) -> None:
        if self.kind not in WITNESS_KINDS:
            raise ValueError(f"unknown witness kind {self.kind!r}; one of {WITNESS_KINDS}")

    def __str__(self) -> str:
        return self.reason + (f" (candidate: {self.candidate})" if self.candidate else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "candidate": self.candidate,
            "weights": [w.to_dict() for w in self.weights],
            "geometry": self.geometry.to_dict() if self.geometry else None,
        }
