"""Typed, validated hash specifications and network architectures.

A :class:`HashSpec` fully determines an index map together with an :class:`Architecture`:
building the same pair twice gives identical bytes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar, Literal, cast

from ..configs import check_bool, check_int, check_real, is_real, versioned_from_dict

__all__ = [
    "HASH_KINDS",
    "SCOPES",
    "HashSpec",
    "Architecture",
    "ARCHITECTURES",
    "SpecError",
    "TablePlan",
    "parse_ratio",
    "ceil_budget",
    "DEFAULT_TABLE_SIZE",
]

HASH_KINDS = ("identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash", "block")
SCOPES = ("layer", "global")
DEFAULT_TABLE_SIZE = 1000
"""``table_size`` of a spec that gives neither ``table_size`` nor ``compression``."""
_MAX_SEED = 2**63 - 1
_MAX_TABLE = 2**31 - 1


class SpecError(ValueError):
    """A hash spec or architecture is invalid; the message says how to fix it."""


@dataclass(frozen=True)
class HashSpec:
    """How identifiers of virtual weights map to entries of a shared table.

    Parameters
    ----------
    kind : {"identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash", "block"}
        ``identity``: one entry per weight (a plain MLP). ``modulus``: ``i mod n``
        (paper eq. 1). ``uniform``: uniform random entry (eq. 2). ``dirichlet``: entry
        probabilities ``p ~ Dir(alpha)`` then ``h(i) ~ Categorical(p)`` (eq. 8-9).
        ``neighborhood``: ``(i + U{-r..r}) mod n`` (eq. 10). ``xxhash``: HashedNets'
        layer-wise ``xxh64(layer, row, col) mod n`` (Chen et al. 2015). ``block``: ROBE-Z
        (Desai et al. 2022): each row is cut into blocks of ``block_size`` consecutive weights,
        and a block reads a contiguous run of entries (circularly) starting where the uniform
        hash of its first weight's identifier points (:func:`~hashlab.maps.kernels.block_ref`).
    table_size : int or None
        Entries per table for the weights, ``n``. Ignored by ``identity`` (its table has one entry
        per weight). Give ``table_size`` or ``compression``, not both; with neither it is
        ``DEFAULT_TABLE_SIZE`` (1000), with ``compression`` it is ``None``.
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
        Add a sign hash xi in {-1, +1} per weight (HashedNets); valid for every kind. With
        ``hash_bias``, hashed biases get a sign of their own too (HashedNets' ``xiB``).
    compression : str, float, int, fractions.Fraction or None
        Budget as HashedNets' compression factor ``c`` in ``(0, 1]``, table entries per virtual
        weight (the inverse of :attr:`IndexMap.compression_ratio`: ``1/64`` is a ratio of about
        64), instead of a fixed ``table_size`` (Chen et al. 2015; their code sizes each layer's
        bucket vector as ``ceil(size_w * compression)``): with
        ``scope="layer"`` layer ``k`` gets ``ceil(out_k * in_k * c)`` weight entries, with
        ``"global"`` the one table ``ceil(total weights * c)``. The count is the layer's *virtual*
        weights, zeroed ones (``sparsity``) included. Exact: give ``"1/64"`` or a ``Fraction``
        for a ratio that is not a short decimal; a float is read as its shortest decimal
        (``repr``), so ``0.1`` is 1/10. Stored as the canonical string of the fraction
        (``"1/64"``; read it as a number with :attr:`ratio`). ``identity`` accepts only 1.
    hash_bias : bool
        Hash the biases of the hidden layers (every layer but the last) into their own buckets,
        appended to the layer's table after its weight entries: ``ceil(out_features * r)``
        entries per layer (``scope="layer"``), or ``ceil(hidden biases * r)`` for the whole
        network (``"global"``), where ``r`` is ``compression``, or the weights' own ratio
        ``table_size / weights`` (at most 1) with ``table_size``. The output layer keeps a dense
        bias. See :func:`~hashlab.maps.hashes.build_map` and docs/FORMAT.md.
    block_size : int or None
        Weights per block of the ``block`` kind, ``>= 1`` (ROBE's ``Z``); ``None`` (the default):
        one block per row, so every row of a layer (an embedding row, an output unit's weights)
        reads one contiguous run of the table. Only valid for ``block``.

    Attributes
    ----------
    ratio : fractions.Fraction or None
        ``compression`` as an exact fraction.
    SCHEMA_VERSION : int
        Layout version of the dict of :meth:`to_dict` (its ``"version"`` key), the form stored in
        index files; :meth:`from_dict` reads this version only. Raised when a change to the fields
        would make an older hashlab misread a dict; a field added with a default that keeps old
        dicts' meaning is added within the version (:attr:`ADDED_FIELDS`).
    ADDED_FIELDS : dict
        Fields added within version 1: defaults for older dicts. :meth:`from_dict` fills them in
        where a dict lacks them, and :meth:`to_dict` leaves them out at these values, so a spec
        that does not use them has the same dict (and index-file header bytes) as before they
        existed: ``compression`` (None), ``hash_bias`` (False) and ``block_size`` (None).

    Raises
    ------
    SpecError
        On any invalid field, with the fix in the message: ``table_size`` and ``compression``
        together, ``compression`` outside ``(0, 1]`` or unparsable, ``identity`` with a
        ``compression`` other than 1, ``block_size`` with a kind other than ``block``.
    """

    kind: Literal["identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash", "block"] = field(
        default="uniform",
        metadata={"help": "hash function (paper eq. 1, 2, 8-9, 10; xxhash = HashedNets; block = ROBE-Z blocks)"},
    )
    table_size: int | None = None
    seed: int = field(default=0, metadata={"help": "random seed, in [0, 2**63)"})
    sparsity: float = field(default=0.0, metadata={"help": "fraction of virtual weights fixed at zero, in [0, 1)"})
    scope: Literal["layer", "global"] = field(
        default="layer", metadata={"help": "one table per layer, or one table for the whole network"}
    )
    alpha: float | None = field(default=None, metadata={"help": "Dirichlet concentration (dirichlet only)"})
    radius: int | None = field(default=None, metadata={"help": "neighborhood radius r (neighborhood only)"})
    sign: bool = field(default=False, metadata={"help": "add a sign hash xi in {-1,+1}"})
    compression: str | None = None
    hash_bias: bool = field(
        default=False,
        metadata={
            "help": "hash the hidden layers' biases into their own buckets of each table, at the weights' ratio (the "
            "output layer's bias stays dense; biases are unsigned)"
        },
    )
    block_size: int | None = field(
        default=None,
        metadata={"help": "weights per contiguous block of the block kind (ROBE's Z); default: one block per row"},
    )

    SCHEMA_VERSION: ClassVar[int] = 1
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {"compression": None, "hash_bias": False, "block_size": None}

    def __post_init__(self) -> None:
        if self.kind not in HASH_KINDS:
            raise SpecError(f"unknown hash kind {self.kind!r}; choose one of {', '.join(HASH_KINDS)}")
        if self.scope not in SCOPES:
            raise SpecError(f"unknown table scope {self.scope!r}; choose 'layer' (one table per layer) or 'global'")
        if self.compression is not None:
            if self.table_size is not None:
                raise SpecError(
                    f"give table_size or compression, not both (got table_size={self.table_size!r}, "
                    f"compression={self.compression!r}); drop one of them"
                )
            ratio = parse_ratio(self.compression, "compression")
            if self.kind == "identity" and ratio != 1:
                raise SpecError(
                    f"the identity hash has one entry per weight, so its compression is 1, got "
                    f"{ratio}; drop compression or choose another kind"
                )
            object.__setattr__(self, "compression", str(ratio))
        elif self.table_size is None:
            object.__setattr__(self, "table_size", DEFAULT_TABLE_SIZE)
        if self.table_size is not None:
            _check_int("table_size", self.table_size, lo=1, hi=_MAX_TABLE)
        _check_int("seed", self.seed, lo=0, hi=_MAX_SEED)
        check_real(
            "sparsity",
            self.sparsity,
            0.0,
            1.0,
            SpecError,
            "0 keeps every weight",
            hi_open=True,
            expected="a float in [0, 1)",
        )
        if self.kind == "dirichlet":
            if not is_real(self.alpha, lo=0.0, lo_open=True):
                raise SpecError(f"dirichlet needs alpha > 0 (finite), got {self.alpha!r}; e.g. alpha=1.0")
        elif self.alpha is not None:
            raise SpecError(f"alpha is only used by the dirichlet hash, not {self.kind!r}; drop it")
        if self.kind == "neighborhood":
            if self.radius is None:
                raise SpecError("neighborhood needs radius >= 0; e.g. radius=0 for a deterministic modulus shift")
            _check_int("radius", self.radius, lo=0, hi=2**31 - 1)
        elif self.radius is not None:
            raise SpecError(f"radius is only used by the neighborhood hash, not {self.kind!r}; drop it")
        if self.block_size is not None:
            if self.kind != "block":
                raise SpecError(f"block_size is only used by the block hash, not {self.kind!r}; drop it")
            _check_int("block_size", self.block_size, lo=1, hi=2**31 - 1)
        check_bool("sign", self.sign, SpecError)
        check_bool("hash_bias", self.hash_bias, SpecError)

    @property
    def ratio(self) -> Fraction | None:
        """``compression`` as an exact :class:`~fractions.Fraction` (None with ``table_size``)."""
        return None if self.compression is None else Fraction(self.compression)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields and ``"version"`` (:attr:`SCHEMA_VERSION`), the form stored in index files.

        The fields of :attr:`ADDED_FIELDS` (``compression``, ``hash_bias``, ``block_size``) are left out at their
        defaults (None, False, None), so a spec that does not use them has the same dict as before they
        existed; :meth:`from_dict` restores the defaults.
        """
        d = dataclasses.asdict(self)
        for name, default in self.ADDED_FIELDS.items():
            if d[name] == default and type(d[name]) is type(default):
                del d[name]
        return {**d, "version": self.SCHEMA_VERSION}

    def table_plan(self, shapes: list[tuple[int, int]]) -> TablePlan:
        """Entries of each table for the weights and for the hashed biases of ``shapes``.

        Parameters
        ----------
        shapes : list of (out_features, in_features)
            The layers, in network order (``Architecture.layer_shapes``).

        Returns
        -------
        TablePlan

        Raises
        ------
        SpecError
            If ``shapes`` is empty or a table would exceed ``2**31 - 1`` entries.
        """
        if not shapes:
            raise SpecError("table_plan needs at least one layer shape")
        sizes = [o * i for o, i in shapes]
        glob = self.scope == "global"
        groups = [sizes] if glob else [[w] for w in sizes]  # weights read by each table
        if self.kind == "identity":
            weights = [sum(g) for g in groups]
        elif (ratio := self.ratio) is not None:  # compression given
            weights = [ceil_budget(sum(g), ratio) for g in groups]
        else:
            weights = [cast(int, self.table_size)] * len(groups)  # set by __post_init__ without compression
        biases = [0] * len(groups)
        hidden = [o for o, _ in shapes[:-1]]  # the output layer's bias stays dense
        if self.hash_bias and hidden:
            if glob:
                biases = [_bias_budget(sum(hidden), weights[0], sum(sizes), self)]
            else:
                biases = [_bias_budget(o, weights[k], sizes[k], self) for k, o in enumerate(hidden)] + [0]
        totals = [w + b for w, b in zip(weights, biases)]
        for t, n in enumerate(totals):
            if n > _MAX_TABLE:
                raise SpecError(
                    f"table {t} would have {n:,} entries, more than 2**31 - 1; lower table_size or "
                    "compression, or use scope='layer'"
                )
        return TablePlan(tuple(weights), tuple(biases))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HashSpec:
        """Inverse of :meth:`to_dict`, and the one place where an older dict is migrated.

        A dict of version 1 (:attr:`SCHEMA_VERSION`; a dict without ``"version"`` is read as 1)
        gets the defaults of the :attr:`ADDED_FIELDS` it lacks.

        Raises
        ------
        SpecError
            On another version (a newer one: upgrade hashlab), keys that are not fields, or an
            invalid field.
        """
        return versioned_from_dict(cls, d, cls.SCHEMA_VERSION, cls.ADDED_FIELDS, SpecError)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    check_int(name, value, lo, hi, SpecError)


def parse_ratio(value: Any, name: str = "compression") -> Fraction:
    """A compression ratio in ``(0, 1]`` as an exact fraction.

    Parameters
    ----------
    value : str, int, float or fractions.Fraction
        ``"1/64"``, ``"0.015625"``, ``Fraction(1, 64)``, ``1``, or a float (read as its
        shortest round-tripping decimal, ``repr(value)``: ``0.1`` is exactly 1/10, so
        ``ceil(weights * ratio)`` is not bumped by the float's last bit).
    name : str
        Field name for the error message.

    Returns
    -------
    fractions.Fraction, in (0, 1]

    Raises
    ------
    SpecError
        If ``value`` is not a finite number or a fraction string, or lies outside ``(0, 1]``.
    """
    if isinstance(value, bool):
        raise SpecError(f"{name} must be a ratio in (0, 1] such as 1/64, got {value!r}")
    try:
        if isinstance(value, Fraction) or isinstance(value, int):
            ratio = Fraction(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            ratio = Fraction(repr(value))
        elif isinstance(value, str):
            ratio = Fraction(value.strip())
        else:
            raise TypeError
    except (ValueError, TypeError, ZeroDivisionError):
        raise SpecError(f"{name} must be a ratio in (0, 1] such as '1/64' or 0.015625, got {value!r}") from None
    if not 0 < ratio <= 1:
        raise SpecError(f"{name} must lie in (0, 1] (a fraction of the weights, e.g. 1/64), got {ratio}")
    return ratio


def ceil_budget(count: int, ratio: Fraction) -> int:
    """``ceil(count * ratio)`` in exact integer arithmetic (no float rounding): 784000 at 1/64 is 12250."""
    return -((-count * ratio.numerator) // ratio.denominator)


def _bias_budget(count: int, weight_entries: int, weights: int, spec: HashSpec) -> int:
    """Bias entries for ``count`` hidden biases at the weights' ratio (``compression``, else
    ``weight_entries / weights``, at most 1): ``ceil(count * r)``, between 1 and ``count``."""
    ratio = spec.ratio
    return ceil_budget(count, ratio if ratio is not None else min(Fraction(weight_entries, weights), Fraction(1)))


@dataclass(frozen=True)
class TablePlan:
    """Entries of each table of a :class:`HashSpec` over a network (:meth:`HashSpec.table_plan`).

    Table ``t`` has ``weights[t] + biases[t]`` entries: weight entries ``[0, weights[t])``, then
    the hashed biases' own entries ``[weights[t], weights[t] + biases[t])`` (0 without ``hash_bias``).

    Attributes
    ----------
    weights : tuple of int
        Weight entries per table (one table per layer, or one for ``scope="global"``).
    biases : tuple of int
        Hashed-bias entries per table.
    """

    weights: tuple[int, ...]
    biases: tuple[int, ...]

    @property
    def table_sizes(self) -> tuple[int, ...]:
        """Total entries per table, ``weights[t] + biases[t]``."""
        return tuple(w + b for w, b in zip(self.weights, self.biases))


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

    def __post_init__(self) -> None:
        feats = tuple(self.features)
        object.__setattr__(self, "features", feats)
        if any(hasattr(f, "weight_shape") for f in feats):
            raise SpecError(
                "Architecture takes feature sizes, got layer shapes (LayerShape, what arbify passes its builder); "
                "build their map with hashlab.build_model_map(spec, shapes)"
            )
        if len(feats) < 2:
            raise SpecError(f"an architecture needs at least 2 feature sizes (in and out), got {feats}")
        for f in feats:
            _check_int("feature size", f, lo=1, hi=2**31 - 1)

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        return [(o, i) for i, o in zip(self.features[:-1], self.features[1:])]

    @property
    def num_weights(self) -> int:
        return sum(o * i for o, i in self.layer_shapes)

    @classmethod
    def parse(cls, text: str) -> Architecture:
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
