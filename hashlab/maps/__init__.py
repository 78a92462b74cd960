"""Stage 1, maps: a hash spec (or a conv / RNN geometry, or trained weights to cluster) and an architecture in,
an :class:`IndexMap` out.

Each virtual weight gets the table entry it reads (paper eq. 1-10); numba kernels with numpy twins.
"""
from .spec import ARCHITECTURES, HASH_KINDS, SCOPES, Architecture, HashSpec, SpecError
from .indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .hashes import build_map, dirichlet_probabilities, stream_seed
from .geometry import ConvGeometry, RNNGeometry
from .conv import conv1d_map, conv2d_map, conv_map, conv_taps
from .rnn import rnn_map
from .cluster import INITS, WeightsError, cluster_weights, quantization_report

__all__ = [
    "ARCHITECTURES", "HASH_KINDS", "SCOPES", "Architecture", "HashSpec", "SpecError",
    "ZERO", "IndexMap", "LayerMap", "index_dtype", "build_map", "dirichlet_probabilities", "stream_seed",
    "ConvGeometry", "conv1d_map", "conv2d_map", "conv_map", "conv_taps", "RNNGeometry", "rnn_map",
    "INITS", "WeightsError", "cluster_weights", "quantization_report",
]
