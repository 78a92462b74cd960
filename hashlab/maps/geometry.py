"""Layer geometries as typed configs: :class:`ConvGeometry` (paper eq. 4-6), :class:`RNNGeometry` (eq. 1) and
:class:`LayerShape` (the weight of one layer of any model, as a map's matrix).

Pure dataclasses (validation, derived sizes, JSON round trip); the builders that turn them into
index maps are :mod:`hashlab.maps.conv`, :mod:`hashlab.maps.rnn` and :mod:`hashlab.maps.model`. Trainers may
import this module: it generates nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..configs import check_bool, check_int, is_int, versioned_from_dict
from .spec import SpecError

__all__ = ["ConvGeometry", "RNNGeometry", "LayerShape", "LAYER_KINDS"]

_SPATIAL = ("kernel_size", "stride", "padding", "dilation")


def _tuple(name: str, value: Any, ndim: int, lo: int) -> tuple[int, ...]:
    vals = (value,) * ndim if is_int(value, numpy=True) else value
    try:
        vals = tuple(vals)
    except TypeError:
        raise SpecError(f"{name} must be an int or a tuple of {ndim} ints, got {value!r}") from None
    if len(vals) != ndim or not all(is_int(v, lo, numpy=True) for v in vals):
        raise SpecError(
            f"{name} must be an int >= {lo} or a tuple of {ndim} such ints "
            f"(one per spatial axis of the input), got {value!r}"
        )
    return tuple(int(v) for v in vals)


def _axes(value: tuple[int, ...] | int) -> tuple[int, ...]:
    """A spatial field after ``__post_init__``: always the tuple (the int form exists only on input)."""
    if not isinstance(value, tuple):
        raise TypeError(f"spatial field {value!r} was not normalised to a tuple")
    return value


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of an N-d convolution layer (N = 1, 2 or 3), with torch's conventions.

    Parameters
    ----------
    in_channels, out_channels : int
        Both divisible by ``groups``.
    in_size : tuple of int
        Spatial input size, ``(L,)`` for conv1d or ``(H, W)`` for conv2d; its length sets ``ndim``.
    kernel_size, stride, padding, dilation : int or tuple of int
        An int applies to every axis. ``stride >= 1``, ``padding >= 0`` (zeros on both
        sides, like ``torch.nn.Conv2d``), ``dilation >= 1``.
    groups : int
        Input and output channels split into ``groups`` independent groups.
    bias : bool
        One bias per output channel, shared over all output positions.

    Attributes
    ----------
    out_size : tuple of int
        ``floor((in + 2p - d(k-1) - 1) / s) + 1`` per axis (``torch.nn.Conv2d``'s formula).
    in_features, out_features : int
        ``in_channels * prod(in_size)`` and ``out_channels * prod(out_size)``.
    weight_shape : tuple of int
        ``(out_channels, in_channels // groups, *kernel_size)``, the torch weight's shape.
    kernel_entries : int
        ``prod(weight_shape)``: table entries holding the kernel.
    table_size : int
        ``kernel_entries + (out_channels if bias else 0)``.
    SCHEMA_VERSION : int
        Layout version of the dict of :meth:`to_dict` (its ``"version"`` key; stored in index
        files as a layer's ``attrs["conv"]`` and in a conv builder's spec); :meth:`from_dict`
        reads this version only. No field has been added within version 1.

    Raises
    ------
    SpecError
        If a field is invalid, or the dilated kernel does not fit in the padded input.
    """

    in_channels: int
    out_channels: int
    in_size: tuple[int, ...]
    kernel_size: tuple[int, ...] | int
    stride: tuple[int, ...] | int = 1
    padding: tuple[int, ...] | int = 0
    dilation: tuple[int, ...] | int = 1
    groups: int = 1
    bias: bool = True

    SCHEMA_VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        raw = (self.in_size,) if isinstance(self.in_size, (int, np.integer)) else self.in_size
        ndim = len(raw) if isinstance(raw, (tuple, list)) else 0
        if not 1 <= ndim <= 3:
            raise SpecError(
                f"in_size must give 1, 2 or 3 spatial sizes (conv1d/2d/3d), e.g. (28, 28); got {self.in_size!r}"
            )
        in_size = _tuple("in_size", raw, ndim, lo=1)
        object.__setattr__(self, "in_size", in_size)
        for name, lo in zip(_SPATIAL, (1, 1, 0, 1)):
            object.__setattr__(self, name, _tuple(name, getattr(self, name), ndim, lo))
        for name in ("in_channels", "out_channels", "groups"):
            v = check_int(name, getattr(self, name), 1, None, SpecError, numpy=True, expected="a positive integer")
            object.__setattr__(self, name, v)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) must both be "
                f"divisible by groups ({self.groups})"
            )
        object.__setattr__(self, "bias", check_bool("bias", self.bias, SpecError, numpy=True))
        for ax, (n, k, p, d) in enumerate(
            zip(self.in_size, *map(_axes, (self.kernel_size, self.padding, self.dilation)))
        ):
            span = d * (k - 1) + 1
            if span > n + 2 * p:
                raise SpecError(
                    f"axis {ax}: kernel {k} with dilation {d} spans {span} inputs, more than the padded "
                    f"input ({n} + 2*{p} = {n + 2 * p}); use a smaller kernel or dilation, or more padding"
                )

    @property
    def ndim(self) -> int:
        return len(self.in_size)

    def axes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(kernel_size, stride, padding, dilation)``, each the tuple of one int per spatial axis.

        The fields accept an int on input; after validation each holds such a tuple, and this is
        the typed way to read them together.
        """
        return (_axes(self.kernel_size), _axes(self.stride), _axes(self.padding), _axes(self.dilation))

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(
                self.in_size, *map(_axes, (self.kernel_size, self.stride, self.padding, self.dilation))
            )
        )

    @property
    def in_features(self) -> int:
        return self.in_channels * math.prod(self.in_size)

    @property
    def out_features(self) -> int:
        return self.out_channels * math.prod(self.out_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *_axes(self.kernel_size))

    @property
    def kernel_entries(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def table_size(self) -> int:
        return self.kernel_entries + (self.out_channels if self.bias else 0)

    @property
    def op(self) -> str:
        """The torch op: ``"conv1d"``, ``"conv2d"`` or ``"conv3d"``."""
        return f"conv{self.ndim}d"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists) and ``"version"`` (:attr:`SCHEMA_VERSION`)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {**d, "version": self.SCHEMA_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvGeometry:
        """Inverse of :meth:`to_dict` (a dict without ``"version"`` is read as version 1).

        Raises
        ------
        SpecError
            On another version (a newer one: upgrade hashlab), keys that are not fields, or an
            invalid field.
        """
        return versioned_from_dict(
            cls, d, cls.SCHEMA_VERSION, {}, SpecError, convert=lambda v: tuple(v) if isinstance(v, list) else v
        )

    def canonical(self) -> ConvGeometry:
        """The representative that structural recognition returns for this map.

        Two parameters do not change the index map and are normalised: the stride of an axis
        with one output position becomes the smallest stride giving one output, and the
        dilation of an axis with a kernel of 1 becomes 1.
        """
        kernel, dil = _axes(self.kernel_size), _axes(self.dilation)
        stride = tuple(
            s if o > 1 else max(1, n + 2 * p - d * (k - 1))
            for n, k, s, p, d, o in zip(
                self.in_size, kernel, _axes(self.stride), _axes(self.padding), dil, self.out_size
            )
        )
        dilation = tuple(d if k > 1 else 1 for k, d in zip(kernel, dil))
        return dataclasses.replace(self, stride=stride, dilation=dilation)

    def describe(self, bias: bool = True) -> str:
        """One line describing the geometry; ``bias=False`` leaves out the last item.

        E.g. ``conv2d 4x11x11 -> 6x5x5, kernel 3x3, stride 2x2, padding 1x1, dilation 2x2, groups 2, bias``.
        """

        def x(t: tuple[int, ...] | int) -> str:
            return "x".join(map(str, _axes(t)))

        return (
            f"{self.op} {x((self.in_channels, *self.in_size))} -> {x((self.out_channels, *self.out_size))}, "
            f"kernel {x(self.kernel_size)}, stride {x(self.stride)}, padding {x(self.padding)}, "
            f"dilation {x(self.dilation)}, groups {self.groups}"
            + ("" if not bias else ", bias" if self.bias else ", no bias")
        )


@dataclass(frozen=True)
class RNNGeometry:
    """An Elman (tanh) RNN unrolled over a fixed number of steps.

    Parameters
    ----------
    input_size : int
        ``I >= 0``, features of ``x_t`` (0: an autonomous RNN ``h_t = tanh(W h_{t-1} + b)``).
    hidden_size : int
        ``H >= 1``.
    steps : int
        ``T >= 1``, unrolled time steps (layers).
    bias : bool
        A bias per hidden unit, shared by all steps.

    Attributes
    ----------
    step_shape : (int, int)
        ``(H, I + H)``, the shape of each step's weight matrix.
    step_weights : int
        ``H * (I + H)``: table entries holding ``[W_ih | W_hh]``, the modulus ``n``.
    table_size : int
        ``step_weights + (H if bias else 0)``.
    SCHEMA_VERSION : int
        Layout version of the dict of :meth:`to_dict` (its ``"version"`` key; stored in index
        files as a layer's ``attrs["rnn"]`` and in the builder's spec); :meth:`from_dict` reads
        this version only. No field has been added within version 1.

    Raises
    ------
    SpecError
        If a field is out of range.
    """

    input_size: int
    hidden_size: int
    steps: int
    bias: bool = True

    SCHEMA_VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for name, lo in (("input_size", 0), ("hidden_size", 1), ("steps", 1)):
            object.__setattr__(self, name, check_int(name, getattr(self, name), lo, None, SpecError, numpy=True))
        object.__setattr__(self, "bias", check_bool("bias", self.bias, SpecError, numpy=True))

    @property
    def step_shape(self) -> tuple[int, int]:
        return self.hidden_size, self.input_size + self.hidden_size

    @property
    def step_weights(self) -> int:
        return self.hidden_size * (self.input_size + self.hidden_size)

    @property
    def table_size(self) -> int:
        return self.step_weights + (self.hidden_size if self.bias else 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field and ``"version"`` (:attr:`SCHEMA_VERSION`)."""
        return {**dataclasses.asdict(self), "version": self.SCHEMA_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RNNGeometry:
        """Inverse of :meth:`to_dict`; versions and errors as in :meth:`ConvGeometry.from_dict`."""
        return versioned_from_dict(cls, d, cls.SCHEMA_VERSION, {}, SpecError)

    def describe(self) -> str:
        return (
            f"Elman RNN (tanh), input_size {self.input_size}, hidden_size {self.hidden_size}, "
            f"{self.steps} steps, {'bias' if self.bias else 'no bias'}"
        )


LAYER_KINDS = ("linear", "conv2d", "embedding")
"""The layers a :class:`LayerShape` describes (those ``arbify`` replaces)."""
_WEIGHT_DIMS = {"linear": 2, "conv2d": 4, "embedding": 2}


@dataclass(frozen=True)
class LayerShape:
    """The weight tensor of one layer of a model, and the matrix an index map holds for it.

    Every layer's map is a 2-D ``LayerMap`` (``rows x cols``; identifier of weight ``(row, col)``:
    ``row * cols + col``), whose entries are the torch weight tensor's, flattened row-major
    (``weight.reshape(rows, cols)``):

    * ``linear``: weight ``(out_features, in_features)``, matrix the same;
    * ``conv2d``: weight ``(out_channels, in_channels // groups, kh, kw)``, matrix
      ``(out_channels, in_channels // groups * kh * kw)``;
    * ``embedding``: weight ``(num_embeddings, embedding_dim)``, matrix the same (row ``r`` is
      embedding ``r``).

    So a convolution's kernel is one row per output channel (its ``in_channels // groups`` input
    channels, then ``kh``, then ``kw``), as ``conv.weight.flatten(1)``; an embedding's row is one
    token's vector. (:func:`hashlab.maps.conv.conv_map` is another view of a convolution: its
    dense ``(C_out H_out W_out) x (C_in H_in W_in)`` matrix, one layer per input size.)

    Parameters
    ----------
    kind : {"linear", "conv2d", "embedding"}
    weight_shape : tuple of int
        The torch weight's shape: 2 sizes (``linear``, ``embedding``) or 4 (``conv2d``), each
        ``>= 1``.
    name : str
        The module's name in its model (``"features.0"``; ``""`` when it has none): a key for
        per-layer budgets and the name of the map's layer.

    Attributes
    ----------
    matrix_shape : (int, int)
        ``(rows, cols)`` of the map's layer, as above.
    num_weights : int
        ``rows * cols``.

    Raises
    ------
    SpecError
        On an unknown kind, a shape of the wrong length or with a size below 1, or a name
        that is not a string.
    """

    kind: str
    weight_shape: tuple[int, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise SpecError(f"unknown layer kind {self.kind!r}; choose one of {', '.join(LAYER_KINDS)}")
        dims = _WEIGHT_DIMS[self.kind]
        try:
            shape = tuple(self.weight_shape)
        except TypeError:
            shape = ()
        if len(shape) != dims or not all(is_int(v, 1, 2**31 - 1, numpy=True) for v in shape):
            raise SpecError(
                f"a {self.kind} weight_shape must be {dims} sizes in [1, 2**31 - 1] (torch's weight.shape), "
                f"got {self.weight_shape!r}"
            )
        object.__setattr__(self, "weight_shape", tuple(int(v) for v in shape))
        if not isinstance(self.name, str):
            raise SpecError(f"name must be a string (the module's name), got {self.name!r}")

    @property
    def matrix_shape(self) -> tuple[int, int]:
        return self.weight_shape[0], math.prod(self.weight_shape[1:])

    @property
    def num_weights(self) -> int:
        return math.prod(self.weight_shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"kind", "weight_shape"}`` (the name is the layer's, stored with the layer, not here)."""
        return {"kind": self.kind, "weight_shape": list(self.weight_shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerShape:
        """Inverse of :meth:`to_dict` (a ``name`` key is accepted too).

        Raises
        ------
        SpecError
            If ``d`` is not a dict of these keys, or a field is invalid.
        """
        if not isinstance(d, dict) or not {"kind", "weight_shape"} <= set(d) <= {"kind", "weight_shape", "name"}:
            raise SpecError(f"a layer shape is a dict with 'kind' and 'weight_shape' (and 'name'), got {d!r}")
        return cls(d["kind"], d["weight_shape"], d.get("name", ""))

    def attrs(self) -> dict[str, Any]:
        """The ``LayerMap.attrs`` of this layer's map: ``{"layer": {"kind": ..., "weight_shape": [...]}}``."""
        return {"layer": self.to_dict()}
