"""Stage 4, equiv: an :class:`~hashlab.maps.IndexMap` in, what each layer *is* out: dense, a convolution
(with its geometry), an RNN step, or arbitrary with a witness; the symmetry group each layer and the whole
network are equivariant to; ties across layers (docs/EQUIVALENCE.md).
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
from .symmetry import (
    Automorphism,
    MapSymmetry,
    Refusal,
    SymmetryGroup,
    SymmetryLimitError,
    automorphism_group,
    map_symmetry,
)
from .tying import Tie, find_ties
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
    "Automorphism",
    "MapSymmetry",
    "Refusal",
    "SymmetryGroup",
    "SymmetryLimitError",
    "automorphism_group",
    "map_symmetry",
    "Tie",
    "find_ties",
]
