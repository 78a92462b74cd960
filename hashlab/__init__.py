"""hashlab: build, serialize and analyze weight-sharing (ArbNet) index maps.

Chang & Lipson, *Balanced and Deterministic Weight-sharing Helps Network Performance*
(ICANN 2018, arXiv:2312.08401); Chen et al., *Compressing Neural Networks with the Hashing
Trick* (HashedNets, ICML 2015).
"""

from ._version import __version__
from .equiv import automorphism_group, describe_map, recognize_conv, recognize_rnn
from .io.format import FormatError, load_index_file, save_index_file
from .maps.cluster import WeightsError, cluster_layers, cluster_weights
from .maps.conv import ConvGeometry, conv1d_map, conv2d_map, conv_map
from .maps.equivariant import equivariant_map
from .maps.geometry import LayerShape
from .maps.hashes import build_map, dirichlet_probabilities
from .maps.indexmap import ZERO, IndexMap, LayerMap, index_dtype
from .maps.model import build_model_map
from .maps.rnn import RNNGeometry, rnn_map
from .maps.spec import ARCHITECTURES, Architecture, HashSpec, SpecError

__all__ = [
    "__version__",
    "HashSpec",
    "Architecture",
    "ARCHITECTURES",
    "SpecError",
    "build_map",
    "build_model_map",
    "LayerShape",
    "dirichlet_probabilities",
    "IndexMap",
    "LayerMap",
    "ZERO",
    "index_dtype",
    "save_index_file",
    "load_index_file",
    "FormatError",
    "ConvGeometry",
    "conv_map",
    "conv1d_map",
    "conv2d_map",
    "RNNGeometry",
    "rnn_map",
    "describe_map",
    "recognize_conv",
    "recognize_rnn",
    "automorphism_group",
    "equivariant_map",
    "cluster_weights",
    "cluster_layers",
    "WeightsError",
]
