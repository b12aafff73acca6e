"""The ``torch.*`` spellings of neural-network functions (``torch.conv2d``, ``torch.dropout``,
``torch.layer_norm``, ...): ``chainrule.nn.functional``'s functions, with torch's top-level
argument order where it differs (``torch.embedding(weight, input)``, ``torch.batch_norm(input,
weight, bias, running_mean, running_var, ...)``, losses taking ``reduction`` as an int)."""

from __future__ import annotations

from chainrule.nn import functional as F

# same arguments as nn.functional
_SAME = """conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d avg_pool1d
max_pool1d max_pool2d max_pool3d adaptive_avg_pool1d layer_norm group_norm bilinear
cosine_similarity pairwise_distance pdist pixel_shuffle pixel_unshuffle prelu selu celu
hardshrink threshold rms_norm channel_shuffle""".split()

__all__ = _SAME + [
    "dropout", "alpha_dropout", "feature_alpha_dropout", "batch_norm", "instance_norm",
    "embedding", "adaptive_max_pool1d", "rrelu", "binary_cross_entropy_with_logits",
    "cosine_embedding_loss", "ctc_loss", "hinge_embedding_loss", "kl_div", "margin_ranking_loss",
    "poisson_nll_loss", "triplet_margin_loss", "convolution",
]

for _name in _SAME:
    globals()[_name] = getattr(F, _name)

_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


def _reduction(r) -> str:
    return _REDUCTIONS.get(r, r) if isinstance(r, int) else r


def dropout(input, p: float, train: bool):
    return F.dropout(input, p, train)


def alpha_dropout(input, p: float, train: bool):
    return F.alpha_dropout(input, p, train)


def feature_alpha_dropout(input, p: float, train: bool):
    return F.feature_alpha_dropout(input, p, train)


def batch_norm(input, weight, bias, running_mean, running_var, training: bool, momentum: float,
               eps: float, cudnn_enabled: bool = True):
    return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def instance_norm(input, weight, bias, running_mean, running_var, use_input_stats: bool,
                  momentum: float, eps: float, cudnn_enabled: bool = True):
    return F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                           momentum, eps)


def embedding(weight, input, padding_idx: int = -1, scale_grad_by_freq: bool = False,
              sparse: bool = False):
    return F.embedding(input, weight, None if padding_idx == -1 else padding_idx,
                       scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


def adaptive_max_pool1d(input, output_size):
    """(values, indices), as torch's top-level function returns both."""
    return F.adaptive_max_pool1d(input, output_size, return_indices=True)


def rrelu(input, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          generator=None):
    return F.rrelu(input, lower, upper, training)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction=1):
    return F.binary_cross_entropy_with_logits(input, target, weight,
                                              reduction=_reduction(reduction),
                                              pos_weight=pos_weight)


def cosine_embedding_loss(input1, input2, target, margin: float = 0.0, reduction=1):
    return F.cosine_embedding_loss(input1, input2, target, margin,
                                   reduction=_reduction(reduction))


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction=1,
             zero_infinity: bool = False):
    return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank,
                      _reduction(reduction), zero_infinity)


def hinge_embedding_loss(input, target, margin: float = 1.0, reduction=1):
    return F.hinge_embedding_loss(input, target, margin, reduction=_reduction(reduction))


def kl_div(input, target, reduction=1, *, log_target: bool = False):
    return F.kl_div(input, target, reduction=_reduction(reduction), log_target=log_target)


def margin_ranking_loss(input1, input2, target, margin: float = 0.0, reduction=1):
    return F.margin_ranking_loss(input1, input2, target, margin,
                                 reduction=_reduction(reduction))


def poisson_nll_loss(input, target, log_input: bool, full: bool, eps: float, reduction):
    return F.poisson_nll_loss(input, target, log_input, full, eps=eps,
                              reduction=_reduction(reduction))


def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, reduction=1):
    return F.triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap,
                                 reduction=_reduction(reduction))


def convolution(input, weight, bias, stride, padding, dilation, transposed: bool,
                output_padding, groups: int):
    """The general convolution: conv{1,2,3}d or their transposes, by the input's rank."""
    n = input.ndim - 2
    if transposed:
        fn = getattr(F, f"conv_transpose{n}d")
        return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return getattr(F, f"conv{n}d")(input, weight, bias, stride, padding, dilation, groups)
