"""The layer classes of ``chainrule.nn``."""

from __future__ import annotations

from chainrule.nn.modules.activation import (
    CELU, ELU, GELU, GLU, SELU, Hardshrink, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU,
    LogSigmoid, LogSoftmax, Mish, PReLU, ReLU, ReLU6, RReLU, Sigmoid, SiLU, Softmax, Softmax2d,
    Softmin, Softplus, Softshrink, Softsign, Tanh, Tanhshrink, Threshold,
)
from chainrule.nn.modules.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from chainrule.nn.modules.container import ModuleDict, ModuleList, Sequential
from chainrule.nn.modules.dropout import Dropout, Dropout1d, Dropout2d, Dropout3d
from chainrule.nn.modules.flatten import Flatten, Unflatten
from chainrule.nn.modules.linear import Bilinear, Identity, LazyLinear, Linear
from chainrule.nn.modules.loss import (
    BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss, CrossEntropyLoss, CTCLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss,
    MultiLabelMarginLoss, MultiLabelSoftMarginLoss, MultiMarginLoss, NLLLoss, NLLLoss2d,
    PoissonNLLLoss, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss,
    TripletMarginWithDistanceLoss,
)
from chainrule.nn.modules.normalization import (
    BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, LayerNorm,
)
from chainrule.nn.modules.pooling import (
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
)
from chainrule.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell
from chainrule.nn.modules.sparse import Embedding
from chainrule.nn.modules.sync_batchnorm import SyncBatchNorm
from chainrule.nn.modules.attention import MultiheadAttention

__all__ = [
    "CELU", "ELU", "GELU", "SELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU",
    "LogSigmoid", "LogSoftmax", "Mish", "ReLU", "ReLU6", "Sigmoid", "SiLU", "Softmax", "Softmin",
    "Softplus", "Softsign", "Tanh", "Tanhshrink", "ModuleDict", "ModuleList", "Sequential",
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Flatten", "Unflatten", "Bilinear",
    "Identity",
    "LazyLinear", "Linear", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss",
    "KLDivLoss", "L1Loss", "MSELoss", "NLLLoss", "SmoothL1Loss", "BatchNorm1d", "BatchNorm2d",
    "BatchNorm3d", "GroupNorm", "LayerNorm", "Embedding", "Conv1d", "Conv2d", "ConvTranspose1d",
    "ConvTranspose2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d",
    "MaxPool1d", "MaxPool2d", "RNNBase", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
    "MultiheadAttention", "SyncBatchNorm",
]
__all__ += [
    "GLU", "Hardshrink", "PReLU", "RReLU", "Softmax2d", "Softshrink", "Threshold",
    "CosineEmbeddingLoss", "CTCLoss", "GaussianNLLLoss", "HingeEmbeddingLoss",
    "MarginRankingLoss", "MultiLabelMarginLoss", "MultiLabelSoftMarginLoss", "MultiMarginLoss",
    "NLLLoss2d", "PoissonNLLLoss", "SoftMarginLoss", "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
]

from chainrule.nn.modules.conv import Conv3d, ConvTranspose3d  # noqa: E402
from chainrule.nn.modules.distance import CosineSimilarity, PairwiseDistance  # noqa: E402
from chainrule.nn.modules.dropout import AlphaDropout, FeatureAlphaDropout  # noqa: E402
from chainrule.nn.modules.fold import Fold, Unfold  # noqa: E402
from chainrule.nn.modules.instancenorm import (  # noqa: E402
    InstanceNorm1d, InstanceNorm2d, InstanceNorm3d,
)
from chainrule.nn.modules.normalization import (  # noqa: E402
    CrossMapLRN2d, LocalResponseNorm, RMSNorm,
)
from chainrule.nn.modules.padding import (  # noqa: E402
    CircularPad1d, CircularPad2d, CircularPad3d, ConstantPad1d, ConstantPad2d, ConstantPad3d,
    ReflectionPad1d, ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d,
    ReplicationPad3d, ZeroPad1d, ZeroPad2d, ZeroPad3d,
)
from chainrule.nn.modules.channelshuffle import ChannelShuffle  # noqa: E402
from chainrule.nn.modules.pixelshuffle import PixelShuffle, PixelUnshuffle  # noqa: E402
from chainrule.nn.modules.pooling import (  # noqa: E402
    AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, AvgPool3d,
    FractionalMaxPool2d, FractionalMaxPool3d, LPPool1d, LPPool2d, LPPool3d, MaxPool3d,
    MaxUnpool1d, MaxUnpool2d, MaxUnpool3d,
)
from chainrule.nn.modules.sparse import EmbeddingBag  # noqa: E402
from chainrule.nn.modules.upsampling import (  # noqa: E402
    Upsample, UpsamplingBilinear2d, UpsamplingNearest2d,
)

__all__ += [
    "Conv3d", "ConvTranspose3d", "CosineSimilarity", "PairwiseDistance", "AlphaDropout",
    "FeatureAlphaDropout", "Fold", "Unfold", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "CrossMapLRN2d", "LocalResponseNorm", "RMSNorm", "CircularPad1d",
    "CircularPad2d", "CircularPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
    "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
    "ReplicationPad2d", "ReplicationPad3d", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d",
    "ChannelShuffle", "PixelShuffle", "PixelUnshuffle", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AvgPool3d", "FractionalMaxPool2d",
    "FractionalMaxPool3d", "LPPool1d", "LPPool2d", "LPPool3d", "MaxPool3d", "MaxUnpool1d",
    "MaxUnpool2d", "MaxUnpool3d", "EmbeddingBag", "Upsample", "UpsamplingBilinear2d",
    "UpsamplingNearest2d",
]
from chainrule.nn.modules.container import Container, ParameterDict, ParameterList  # noqa: E402
from chainrule.nn.modules.rnn import RNNCellBase  # noqa: E402
from chainrule.nn.modules.transformer import (  # noqa: E402
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ += ["Container", "ParameterDict", "ParameterList", "RNNCellBase", "Transformer",
            "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
            "TransformerEncoderLayer"]
from chainrule.nn.modules.adaptive import AdaptiveLogSoftmaxWithLoss  # noqa: E402
from chainrule.nn.modules.data_parallel import DataParallel  # noqa: E402

__all__ += ["AdaptiveLogSoftmaxWithLoss", "DataParallel"]
from chainrule.nn.linear_cross_entropy import LinearCrossEntropyOptions  # noqa: E402
from chainrule.nn.modules.loss import LinearCrossEntropyLoss  # noqa: E402

__all__ += ["LinearCrossEntropyOptions", "LinearCrossEntropyLoss"]
