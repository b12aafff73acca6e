"""chainrule: backpropagation you can read, on NumPy (CuPy on GPUs), with PyTorch's API."""

from __future__ import annotations

__version__ = "0.1.0"

from chainrule import _compiled  # noqa: F401  (CHAINRULE_PURE_PYTHON=1: the engine as Python)
from chainrule import backends  # noqa: F401
from chainrule.devices import device
from chainrule.dtypes import (
    bfloat16, bool, double, dtype, float, float16, float32, float64, get_default_dtype, half, int,
    int8, int16, int32, int64, long, promote_types, set_default_dtype, short, uint8,
)
from chainrule.dtypes import (
    channels_last, channels_last_3d, contiguous_format, finfo, iinfo, layout,
    legacy_contiguous_format, memory_format, preserve_format, strided,
)
from chainrule.tensor import Size, Tensor
from chainrule.tensor import bind as _bind_tensor_methods
from chainrule import ops
from chainrule.ops import *  # noqa: F403
from chainrule.creation import *  # noqa: F403
from chainrule import creation as _creation
from chainrule.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from chainrule.autograd.grad_mode import inference_mode, is_inference_mode_enabled
from chainrule import _runtime
from chainrule._runtime import *  # noqa: F403
from chainrule import autograd
from chainrule.autograd import inplace as _inplace
from chainrule import printing as _printing

from chainrule.amp.autocast_mode import (
    autocast, clear_autocast_cache, get_autocast_cpu_dtype, get_autocast_dtype,
    get_autocast_gpu_dtype, is_autocast_cache_enabled, is_autocast_cpu_enabled,
    is_autocast_enabled, set_autocast_cache_enabled, set_autocast_dtype, set_autocast_enabled,
)
from chainrule.dtypes import result_type as _np_result_type

_bind_tensor_methods(ops, autograd, _inplace, _creation, _printing)  # see chainrule/tensor.py
globals().update(_inplace.FUNCTIONS)  # torch.exp_(x), torch.zero_(x), ...: x.exp_(), ...


def is_tensor(obj):
    """True if ``obj`` is a chainrule Tensor."""
    return isinstance(obj, Tensor)


def numel(input: Tensor):
    return input.numel()


def result_type(tensor1, tensor2) -> dtype:
    from chainrule.dtypes import from_numpy_dtype

    a = tensor1._data if isinstance(tensor1, Tensor) else tensor1
    b = tensor2._data if isinstance(tensor2, Tensor) else tensor2
    return from_numpy_dtype(_np_result_type(a, b))


# torch's top-level names for objects of subpackages (loaded on first use)
_LAZY = {name: "chainrule._functional_aliases" for name in (
    "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d avg_pool1d "
    "max_pool1d max_pool2d max_pool3d adaptive_avg_pool1d adaptive_max_pool1d layer_norm "
    "group_norm bilinear cosine_similarity pairwise_distance pdist pixel_shuffle pixel_unshuffle "
    "prelu selu celu hardshrink threshold rms_norm channel_shuffle dropout alpha_dropout "
    "feature_alpha_dropout batch_norm instance_norm embedding rrelu "
    "binary_cross_entropy_with_logits cosine_embedding_loss ctc_loss hinge_embedding_loss kl_div "
    "margin_ranking_loss poisson_nll_loss triplet_margin_loss convolution").split()}
_LAZY.update(vmap="chainrule.func", GradScaler="chainrule.amp")


def __getattr__(name: str):
    # Subpackages load on first use so `import chainrule` stays fast.
    import importlib

    if name in ("nn", "optim", "data", "func", "viz", "cuda", "utils", "amp", "onnx", "cpu",
                "distributed", "distributions", "accelerator", "serialization", "special",
                "linalg", "testing", "jit", "compiler", "_dynamo", "version", "multiprocessing",
                "profiler", "hub"):
        return importlib.import_module(f"chainrule.{name}")
    if name in ("set_float32_matmul_precision", "get_float32_matmul_precision"):
        return getattr(importlib.import_module("chainrule.backends"), name)
    if name in ("save", "load"):
        return getattr(importlib.import_module("chainrule.serialization"), name)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chainrule' has no attribute {name!r}")


__all__ = (
    ["__version__", "Tensor", "Size", "device", "dtype", "no_grad", "enable_grad",
     "set_grad_enabled", "is_grad_enabled", "inference_mode", "is_inference_mode_enabled",
     "autograd", "is_tensor", "numel", "result_type",
     "float16", "bfloat16", "float32", "float64", "half", "float", "double", "int8", "int16",
     "int32", "int64", "uint8", "short", "int", "long", "bool", "get_default_dtype",
     "set_default_dtype",
     "promote_types", "nn", "optim", "data", "func", "viz", "cuda", "backends", "save", "load",
     "set_float32_matmul_precision", "get_float32_matmul_precision", "amp", "onnx", "cpu",
     "distributed", "accelerator",
     "autocast", "is_autocast_enabled", "set_autocast_enabled", "get_autocast_dtype",
     "set_autocast_dtype", "is_autocast_cpu_enabled", "get_autocast_cpu_dtype",
     "get_autocast_gpu_dtype", "is_autocast_cache_enabled", "set_autocast_cache_enabled",
     "clear_autocast_cache", "inference_mode", "is_inference_mode_enabled", "special",
     "linalg", "testing", "accelerator", "utils", "channels_last", "channels_last_3d",
     "contiguous_format", "finfo", "iinfo", "layout", "legacy_contiguous_format",
     "memory_format", "preserve_format", "strided"]
    + list(_runtime.__all__) + list(ops.__all__) + list(_creation.__all__)
)
