"""Typed, validated hash specifications and network architectures.

A :class:`HashSpec` fully determines an index map together with an :class:`Architecture`:
building the same pair twice gives identical bytes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ..configs import check_int, dataclass_from_dict

__all__ = ["HASH_KINDS", "SCOPES", "HashSpec", "Architecture", "ARCHITECTURES", "SpecError"]

HASH_KINDS = ("identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash")
SCOPES = ("layer", "global")
_MAX_SEED = 2**63 - 1


class SpecError(ValueError):
    """A hash spec or architecture is invalid; the message says how to fix it."""


@dataclass(frozen=True)
class HashSpec:
    """How identifiers of virtual weights map to entries of a shared table.

    Parameters
    ----------
    kind : {"identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash"}
        ``identity``: one entry per weight (a plain MLP). ``modulus``: ``i mod n``
        (paper eq. 1). ``uniform``: uniform random entry (eq. 2). ``dirichlet``: entry
        probabilities ``p ~ Dir(alpha)`` then ``h(i) ~ Categorical(p)`` (eq. 8-9).
        ``neighborhood``: ``(i + U{-r..r}) mod n`` (eq. 10). ``xxhash``: HashedNets'
        layer-wise ``xxh64(layer, row, col) mod n`` (Chen et al. 2015).
    table_size : int
        Entries per table, ``n``. Ignored by ``identity`` (its table has one entry per weight).
    seed : int
        In ``[0, 2**63)``. The only source of randomness.
    sparsity : float
        In ``[0, 1)``: fraction of each layer's virtual weights fixed at zero (index ``-1``).
    scope : {"layer", "global"}
        One table per layer (the paper's setting) or one table shared by the whole network.
    alpha : float or None
        Dirichlet concentration, ``> 0``; required by and only valid for ``dirichlet``.
    radius : int or None
        Neighborhood radius ``r >= 0``; required by and only valid for ``neighborhood``.
    sign : bool
        Add a sign hash xi in {-1, +1} per weight (HashedNets); valid for every kind.
    version : int
        Schema version of this dataclass; only 1 exists.

    Raises
    ------
    SpecError
        On any invalid field, with the fix in the message.
    """

    kind: Literal["identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash"] = "uniform"
    table_size: int = 1000
    seed: int = 0
    sparsity: float = 0.0
    scope: Literal["layer", "global"] = "layer"
    alpha: float | None = None
    radius: int | None = None
    sign: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.version != 1:
            raise SpecError(f"HashSpec version {self.version} is not supported; this hashlab reads version 1")
        if self.kind not in HASH_KINDS:
            raise SpecError(f"unknown hash kind {self.kind!r}; choose one of {', '.join(HASH_KINDS)}")
        if self.scope not in SCOPES:
            raise SpecError(f"unknown table scope {self.scope!r}; choose 'layer' (one table per layer) or 'global'")
        _check_int("table_size", self.table_size, lo=1, hi=2**31 - 1)
        _check_int("seed", self.seed, lo=0, hi=_MAX_SEED)
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) or not (
            0.0 <= float(self.sparsity) < 1.0
        ):
            raise SpecError(f"sparsity must be a float in [0, 1), got {self.sparsity!r}; 0 keeps every weight")
        if self.kind == "dirichlet":
            if self.alpha is None or isinstance(self.alpha, bool) or not (
                isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0
            ):
                raise SpecError(f"dirichlet needs alpha > 0 (finite), got {self.alpha!r}; e.g. alpha=1.0")
        elif self.alpha is not None:
            raise SpecError(f"alpha is only used by the dirichlet hash, not {self.kind!r}; drop it")
        if self.kind == "neighborhood":
            if self.radius is None:
                raise SpecError("neighborhood needs radius >= 0; e.g. radius=0 for a deterministic modulus shift")
            _check_int("radius", self.radius, lo=0, hi=2**31 - 1)
        elif self.radius is not None:
            raise SpecError(f"radius is only used by the neighborhood hash, not {self.kind!r}; drop it")
        if not isinstance(self.sign, bool):
            raise SpecError(f"sign must be True or False, got {self.sign!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (the form stored in index files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HashSpec":
        """Inverse of :meth:`to_dict`; rejects unknown keys with a clear message."""
        return dataclass_from_dict(cls, d, SpecError)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    check_int(name, value, lo, hi, SpecError)


@dataclass(frozen=True)
class Architecture:
    """A stack of fully connected layers, given by its feature sizes.

    Parameters
    ----------
    features : tuple of int
        ``(in_features of layer 0, out_features of layer 0, out_features of layer 1, ...)``,
        e.g. ``(784, 200, 200, 10)`` for the paper's MNIST MLP.
    name : str
        A label stored with the map.

    Attributes
    ----------
    layer_shapes : list of (out_features, in_features)
    """

    features: tuple[int, ...]
    name: str = "mlp"
    version: int = field(default=1)

    def __post_init__(self) -> None:
        feats = tuple(self.features)
        object.__setattr__(self, "features", feats)
        if len(feats) < 2:
            raise SpecError(f"an architecture needs at least 2 feature sizes (in and out), got {feats}")
        for f in feats:
            _check_int("feature size", f, lo=1, hi=2**31 - 1)
        if self.version != 1:
            raise SpecError(f"Architecture version {self.version} is not supported; use 1")

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(o, i) for i, o in zip(self.features[:-1], self.features[1:])]

    @property
    def num_weights(self) -> int:
        return sum(o * i for o, i in self.layer_shapes)

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        """Parse a preset name (``mnist-mlp``, ``cifar10-mlp``) or sizes like ``784-200-200-10``.

        Raises
        ------
        SpecError
            If ``text`` is neither a preset nor dash-separated positive integers.
        """
        if text in ARCHITECTURES:
            return ARCHITECTURES[text]
        try:
            feats = tuple(int(t) for t in text.split("-"))
        except ValueError:
            raise SpecError(
                f"cannot parse architecture {text!r}; give a preset ({', '.join(ARCHITECTURES)}) "
                "or feature sizes such as 784-200-200-10"
            ) from None
        return cls(feats, name=text)


ARCHITECTURES: dict[str, Architecture] = {
    # Chang & Lipson 2018, section 4: 784-200-ELU-BN-200-ELU-BN-10-ELU-BN
    "mnist-mlp": Architecture((784, 200, 200, 10), name="mnist-mlp"),
    # five hidden layers of 2000: 3072 -> 5 x 2000 -> 10 (22.16M weights)
    "cifar10-mlp": Architecture((3072, 2000, 2000, 2000, 2000, 2000, 10), name="cifar10-mlp"),
}
