"""Stage 4, equiv: an :class:`~hashlab.maps.IndexMap` in, what each layer *is* out: dense, a convolution
(with its geometry), an RNN step, or arbitrary with a witness (docs/EQUIVALENCE.md).
"""

from .conv_recognition import ConvVerdict, LayerFacts, recognize_conv
from .describe import (
    LayerDescription,
    MapDescription,
    RNNGroup,
    RNNVerdict,
    canonical_labels,
    describe_map,
    modulus_offset,
    recognize_rnn,
    same_sharing,
    sharing_graph,
)
from .witness import WeightRef, Witness

__all__ = [
    "ConvVerdict",
    "LayerFacts",
    "recognize_conv",
    "LayerDescription",
    "MapDescription",
    "RNNGroup",
    "RNNVerdict",
    "canonical_labels",
    "describe_map",
    "modulus_offset",
    "recognize_rnn",
    "same_sharing",
    "sharing_graph",
    "WeightRef",
    "Witness",
]
