"""``chainrule.nn.utils``: gradient clipping and parameter/vector conversion."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable
from typing import Any

from chainrule.nn.utils import parametrizations, parametrize, rnn, stateless  # noqa: F401
from chainrule.nn.utils.clip_grad import (
    clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm,
)
from chainrule.nn.utils.fusion import (
    fuse_conv_bn_eval, fuse_conv_bn_weights, fuse_linear_bn_eval, fuse_linear_bn_weights,
)
from chainrule.nn.utils.weight_norm import (
    remove_spectral_norm, remove_weight_norm, spectral_norm, weight_norm,
)
from chainrule.tensor import Tensor
from chainrule.creation import get_rng_state, set_rng_state
from chainrule.nn.module import Module
from chainrule.ops.shape import cat

__all__ = [
    "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
    "parameters_to_vector", "vector_to_parameters", "rnn", "parametrize", "parametrizations",
    "stateless", "fuse_conv_bn_eval", "fuse_conv_bn_weights", "fuse_linear_bn_eval",
    "fuse_linear_bn_weights", "weight_norm", "remove_weight_norm", "spectral_norm",
    "remove_spectral_norm", "skip_init", "clip_grad_norm", "convert_conv2d_weight_memory_format",
    "convert_conv3d_weight_memory_format",
]


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters' data."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    data = vec._data
    pointer = 0
    for p in parameters:
        n = p.numel()
        if pointer + n > data.shape[0]:
            raise RuntimeError(f"vector_to_parameters: vec of length {data.shape[0]} is too "
                               f"short for the parameters (need at least {pointer + n})")
        p._data = data[pointer:pointer + n].reshape(p._data.shape).astype(p._data.dtype, copy=False)
        pointer += n


def clip_grad_norm(parameters: Any, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Deprecated alias of ``clip_grad_norm_``."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def skip_init(module_cls: type, *args: Any, **kwargs: Any) -> Any:
    """Build ``module_cls(*args, **kwargs)`` without its random initialisation: the random
    stream is left where it was and the weights are uninitialised memory."""
    if not (isinstance(module_cls, type) and issubclass(module_cls, Module)):
        raise RuntimeError(f"Expected a Module; got {module_cls}")
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    device = kwargs.pop("device", "cpu")
    rng = get_rng_state()
    try:
        module = module_cls(*args, **kwargs)
    finally:
        set_rng_state(rng)
    return module.to_empty(device=device)


def convert_conv2d_weight_memory_format(module: Any, memory_format: Any) -> Any:
    """Returns ``module`` unchanged (chainrule has one memory layout)."""
    return module


def convert_conv3d_weight_memory_format(module: Any, memory_format: Any) -> Any:
    """Returns ``module`` unchanged (chainrule has one memory layout)."""
    return module
