"""``chainrule.nn.functional``: the stateless forms of the layers and losses (PyTorch's
``torch.nn.functional``), gathered here from the files that define them, by family:

- ``nn/activations.py``  relu ... gelu, silu, elu (gates), softmax family, shrinkage, glu, prelu
- ``nn/linear.py``       linear (one fused gate), bilinear
- ``nn/normalization.py`` batch_norm, layer_norm (gates), group/instance/rms/local-response norm
- ``nn/embedding.py``    embedding (gate), one_hot; ``nn/embedding_bag.py`` embedding_bag
- ``nn/losses.py``       mse ... cross_entropy (gate), margin, triplet, likelihood and CTC losses
- ``nn/distance.py``     pairwise_distance, pdist, cosine_similarity
- ``nn/dropout.py``      dropout family;  ``nn/attention.py`` scaled_dot_product_attention
- ``ops/conv.py``        1-d/2-d convolution and pooling, unfold/fold (gates shared with ops)
- ``nn/convolution3d.py``, ``nn/pooling.py``, ``nn/sampling.py``, ``nn/grid_sampling.py``,
  ``nn/mha.py``, ``nn/linear_cross_entropy.py``: the rest, one family a file.

This module defines nothing but ``assert_int_or_pair``; the files above never import it back.
"""

from __future__ import annotations

from typing import Any

from chainrule.nn import activations as _activations
from chainrule.nn import attention as _attention
from chainrule.nn import convolution3d as _convolution3d
from chainrule.nn import distance as _distance
from chainrule.nn import dropout as _dropout
from chainrule.nn import embedding as _embedding
from chainrule.nn import embedding_bag as _embedding_bag
from chainrule.nn import grid_sampling as _grid_sampling
from chainrule.nn import linear as _linear
from chainrule.nn import losses as _losses
from chainrule.nn import mha as _mha
from chainrule.nn import normalization as _normalization
from chainrule.nn import pooling as _pooling
from chainrule.nn import sampling as _sampling
from chainrule.nn.activations import *  # noqa: F403
from chainrule.nn.attention import *  # noqa: F403
from chainrule.nn.convolution3d import *  # noqa: F403
from chainrule.nn.distance import *  # noqa: F403
from chainrule.nn.dropout import *  # noqa: F403
from chainrule.nn.embedding import *  # noqa: F403
from chainrule.nn.embedding_bag import *  # noqa: F403
from chainrule.nn.grid_sampling import *  # noqa: F403
from chainrule.nn.linear import *  # noqa: F403
from chainrule.nn.linear_cross_entropy import linear_cross_entropy
from chainrule.nn.losses import *  # noqa: F403
from chainrule.nn.mha import *  # noqa: F403
from chainrule.nn.normalization import *  # noqa: F403
from chainrule.nn.pooling import *  # noqa: F403
from chainrule.nn.sampling import *  # noqa: F403
from chainrule.ops import conv as _conv
from chainrule.ops.conv import *  # noqa: F403
from chainrule.ops.shape import pad

__all__ = ["pad", "linear_cross_entropy", "assert_int_or_pair"]
for _family in (_activations, _linear, _normalization, _embedding, _embedding_bag, _losses,
                _distance, _dropout, _attention, _conv, _convolution3d, _pooling, _sampling,
                _grid_sampling, _mha):
    __all__ += _family.__all__
del _family


def assert_int_or_pair(arg: Any, arg_name: str, message: str) -> None:
    """Raise AssertionError(message.format(arg_name)) unless ``arg`` is an int or a pair."""
    if not (isinstance(arg, int) or len(arg) == 2):
        raise AssertionError(message.format(arg_name))
