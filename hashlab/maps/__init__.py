"""Stage 1, maps: a hash spec (or a conv / RNN geometry, a permutation group, a known use of weight sharing, or
trained weights to cluster) and an architecture (or any model's layer shapes) in, an :class:`IndexMap` out.

Each virtual weight gets the table entry it reads (paper eq. 1-10); numba kernels with numpy twins.
"""

from .cluster import INITS, WeightsError, cluster_layers, cluster_weights, quantization_report
from .conv import conv1d_map, conv2d_map, conv_map, conv_taps
from .equivariant import (
    check_group_table,
    cyclic_group_table,
    dihedral_group_table,
    equivariant_map,
    group_conv_map,
    group_generators,
    regular_permutations,
    torus_group_table,
)
from .geometry import LAYER_KINDS, ConvGeometry, LayerShape, RNNGeometry
from .hashes import build_map, dirichlet_probabilities, stream_seed
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .known_uses import circulant_map, deepsets_map, shared_layers_map, toeplitz_map, transpose_tied_map
from .model import build_model_map
from .rnn import rnn_map
from .spec import ARCHITECTURES, HASH_KINDS, SCOPES, Architecture, HashSpec, SpecError

__all__ = [
    "ARCHITECTURES",
    "HASH_KINDS",
    "SCOPES",
    "Architecture",
    "HashSpec",
    "SpecError",
    "ZERO",
    "IndexMap",
    "LayerMap",
    "index_dtype",
    "build_map",
    "build_model_map",
    "LayerShape",
    "LAYER_KINDS",
    "dirichlet_probabilities",
    "stream_seed",
    "ConvGeometry",
    "conv1d_map",
    "conv2d_map",
    "conv_map",
    "conv_taps",
    "RNNGeometry",
    "rnn_map",
    "INITS",
    "WeightsError",
    "cluster_layers",
    "cluster_weights",
    "quantization_report",
    "equivariant_map",
    "group_conv_map",
    "cyclic_group_table",
    "dihedral_group_table",
    "torus_group_table",
    "check_group_table",
    "group_generators",
    "regular_permutations",
    "circulant_map",
    "toeplitz_map",
    "deepsets_map",
    "transpose_tied_map",
    "shared_layers_map",
]
