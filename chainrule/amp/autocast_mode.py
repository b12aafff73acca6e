"""Autocast (``cr.autocast``) and the one dispatch hook that lower-precision math goes through.

Public op functions that autocast or bfloat16 concern (matmul, linear, conv, softmax, the
losses, ...) start with one line::

    if _amp.active and (out := _amp.run("linear", linear, input, weight, bias)) is not None:
        return out

``active`` is a module flag, false unless an autocast region is open (in any thread) or
bfloat16 has been used: with autocast off and no bfloat16 the hook costs one attribute test.
``run`` casts the arguments as the op's policy says, calls the function again with the hook
switched off for the duration (as torch's dispatcher excludes the autocast key while it
redispatches, so the ops a composite op calls are not cast again), and returns its result. The
gates never see autocast: casts are ordinary recorded ``Cast`` gates, so gradients flow back to
the parameters in their own dtype.

bfloat16 rides on the same hook: NumPy has no bfloat16 matrix products, reductions that
accumulate in float32, or einsum, so a hooked op whose floating inputs are all bfloat16 runs on
float32 copies and its float32 outputs are rounded back to bfloat16 (what torch's CPU kernels
do: bfloat16 storage, float32 arithmetic).
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Any

from chainrule import dtypes as _dt
from chainrule.tensor import Tensor

__all__ = ["autocast", "is_autocast_available", "custom_fwd", "custom_bwd"]

# ---- the op lists (torch 2.13's, for the ops chainrule has) ------------------------------------
LOWER, FP32, PROMOTE = "lower", "fp32", "promote"

_CPU_LOWER = """conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d bmm mm
baddbmm addmm addbmm linear matmul einsum prelu scaled_dot_product_attention linalg_vecdot lstm"""
_CPU_FP32 = """cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss huber_loss kl_div
binary_cross_entropy binary_cross_entropy_with_logits poisson_nll_loss cosine_embedding_loss
hinge_embedding_loss margin_ranking_loss soft_margin_loss triplet_margin_loss multi_margin_loss
multilabel_margin_loss multilabel_soft_margin_loss ctc_loss prod cdist trace"""
_CUDA_LOWER = """conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d prelu
addmm addmv addr matmul einsum mm mv linear addbmm baddbmm bmm chain_matmul linalg_multi_dot
lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell lstm gru rnn_tanh rnn_relu
scaled_dot_product_attention linalg_vecdot"""
_CUDA_FP32 = """acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow
softplus layer_norm group_norm norm frobenius_norm nuclear_norm cosine_similarity
poisson_nll_loss cosine_embedding_loss nll_loss hinge_embedding_loss kl_div l1_loss
smooth_l1_loss huber_loss mse_loss margin_ranking_loss multilabel_margin_loss soft_margin_loss
triplet_margin_loss multi_margin_loss binary_cross_entropy_with_logits dist pdist cdist renorm
logsumexp softmax log_softmax cumprod cumsum prod sum linalg_vector_norm linalg_matrix_norm
cross_entropy"""
_PROMOTE = """addcdiv addcmul atan2 bilinear cross dot grid_sampler index_put scatter_add
tensordot stack cat index_copy"""


def _table(lower: str, fp32: str, promote: str) -> dict:
    table = dict.fromkeys(promote.split(), PROMOTE)
    table.update(dict.fromkeys(fp32.split(), FP32))
    table.update(dict.fromkeys(lower.split(), LOWER))
    return table


POLICIES = {
    "cpu": _table(_CPU_LOWER, _CPU_FP32, "stack cat index_copy"),
    "cuda": _table(_CUDA_LOWER, _CUDA_FP32, _PROMOTE),
}
_BANNED_CUDA = {"binary_cross_entropy": (
    "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast.\n"
    "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
    "In this case, combine the two layers using torch.nn.functional.binary_cross_entropy_with_"
    "logits\nor torch.nn.BCEWithLogitsLoss.  binary_cross_entropy_with_logits and BCEWithLogits "
    "are\nsafe to autocast."
)}

# ---- per-thread state ---------------------------------------------------------------------------
active = False  # an autocast region is enabled somewhere, or bfloat16 is in use: run() must look
_enabled_regions = 0
_bfloat16_used = False
_lock = threading.Lock()
_DEFAULT_DTYPES = {"cpu": "bfloat16", "cuda": "float16"}
_SUPPORTED = {"cpu": ("bfloat16", "float16"), "cuda": ("bfloat16", "float16", "float32")}


class _Local(threading.local):
    def __init__(self) -> None:
        self.enabled = {"cpu": False, "cuda": False}
        self.dtype = {k: getattr(_dt, v) for k, v in _DEFAULT_DTYPES.items()}
        self.cache_enabled = True
        self.nesting = 0
        self.cache: dict = {}
        self.inside = False  # run() is calling an op: the ops it calls are not cast again


_local = _Local()


def _refresh() -> None:
    global active
    active = _enabled_regions > 0 or _bfloat16_used


def note_bfloat16() -> None:
    """Called by ``dtypes`` when bfloat16 is first used: hooked ops now check for it."""
    global _bfloat16_used
    _bfloat16_used = True
    _refresh()


_dt.on_bfloat16_used.append(note_bfloat16)


def _count_region(delta: int) -> None:
    global _enabled_regions
    with _lock:
        _enabled_regions += delta
        _refresh()


def _device_type(device_type: str | None) -> str:
    if device_type is None:
        return "cuda"  # torch's default for the device-less queries
    if not isinstance(device_type, str):
        raise TypeError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in ("cpu", "cuda"):
        raise RuntimeError(
            f"User specified an unsupported autocast device_type '{device_type}' (chainrule "
            "autocasts 'cpu' and 'cuda')"
        )
    return device_type


def is_autocast_available(device_type: str) -> bool:
    return device_type in ("cpu", "cuda")


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Is autocast on for ``device_type`` in this thread (``None``: CUDA, as torch)."""
    return _local.enabled[_device_type(device_type)]


def set_autocast_enabled(device_type, enabled=None) -> None:
    if enabled is None:  # the legacy one-argument form: CUDA
        device_type, enabled = "cuda", device_type
    dev = _device_type(device_type)
    if _local.enabled[dev] != bool(enabled):
        _count_region(1 if enabled else -1)
    _local.enabled[dev] = bool(enabled)


def get_autocast_dtype(device_type: str) -> _dt.dtype:
    return _local.dtype[_device_type(device_type)]


def set_autocast_dtype(device_type: str, dtype) -> None:
    _local.dtype[_device_type(device_type)] = _dt.to_dtype(dtype)


def is_autocast_cpu_enabled() -> bool:
    return is_autocast_enabled("cpu")


def get_autocast_cpu_dtype() -> _dt.dtype:
    return get_autocast_dtype("cpu")


def get_autocast_gpu_dtype() -> _dt.dtype:
    return get_autocast_dtype("cuda")


def is_autocast_cache_enabled() -> bool:
    return _local.cache_enabled


def set_autocast_cache_enabled(enabled: bool) -> None:
    _local.cache_enabled = bool(enabled)


def clear_autocast_cache() -> None:
    _local.cache.clear()


# ---- the context manager ------------------------------------------------------------------------
class autocast:
    """Run the ops in the region in lower precision where that is safe (``torch.autocast``).

    Matrix products and convolutions run in ``dtype`` (bfloat16 on the CPU, float16 on CUDA by
    default); ops that need range or precision (losses, softmax on CUDA, ...) run in float32;
    a few multi-input ops run in the widest input type. Usable as a context manager or a
    decorator; regions nest, and ``enabled=False`` switches autocast off inside one.
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        if not isinstance(device_type, str):
            raise ValueError(
                f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        self.device = _device_type(device_type)
        self.fast_dtype = get_autocast_dtype(self.device) if dtype is None else _dt.to_dtype(dtype)
        self._cache_enabled = is_autocast_cache_enabled() if cache_enabled is None else bool(
            cache_enabled)
        enabled = bool(enabled)
        if enabled and self.fast_dtype.name not in _SUPPORTED[self.device]:
            if self.device == "cpu":
                warnings.warn(
                    "In CPU autocast, but the target dtype is not supported. Disabling "
                    "autocast.\nCPU Autocast only supports dtype of torch.bfloat16, "
                    "torch.float16 currently.", UserWarning, stacklevel=2)
            else:
                warnings.warn(
                    "In CUDA autocast, but the target dtype is not supported. Disabling "
                    "autocast.\nCUDA Autocast only supports dtypes of torch.float16, "
                    "torch.bfloat16 currently.", UserWarning, stacklevel=2)
            enabled = False
        if enabled and self.device == "cuda":
            from chainrule import devices

            if not devices.cuda_available():
                warnings.warn(
                    "User provided device_type of 'cuda', but CUDA is not available. Disabling",
                    UserWarning, stacklevel=2)
                enabled = False
        self._enabled = enabled
        self._saved: list = []

    def __enter__(self) -> autocast:
        loc = _local
        self._saved.append((loc.enabled[self.device], loc.dtype[self.device],
                            loc.cache_enabled))
        set_autocast_enabled(self.device, self._enabled)
        loc.dtype[self.device] = self.fast_dtype
        loc.cache_enabled = self._cache_enabled
        loc.nesting += 1
        return self

    def __exit__(self, *exc: Any) -> bool:
        loc = _local
        loc.nesting -= 1
        if loc.nesting == 0:
            loc.cache.clear()  # as torch: casts are cached until the outermost region ends
        enabled, dtype, cache = self._saved.pop()
        set_autocast_enabled(self.device, enabled)
        loc.dtype[self.device] = dtype
        loc.cache_enabled = cache
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def decorate_autocast(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled, self._cache_enabled):
                return func(*args, **kwargs)

        return decorate_autocast


# ---- the hook -----------------------------------------------------------------------------------
def _tensors(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, Tensor))


def _map(args: tuple, kwargs: dict, fn, op: str = "") -> tuple:
    keep = _UPDATED_IN_PLACE.get(op, ())

    def one(a):
        if isinstance(a, Tensor):
            return fn(a)
        if isinstance(a, (list, tuple)) and any(isinstance(t, Tensor) for t in a):
            return type(a)(fn(t) if isinstance(t, Tensor) else t for t in a)
        return a

    return (tuple(a if i in keep else one(a) for i, a in enumerate(args)),
            {k: one(v) for k, v in kwargs.items()})


# positional arguments an op updates in place (running statistics): never replaced by copies
_UPDATED_IN_PLACE = {"batch_norm": (1, 2)}


def _eligible(t: Tensor) -> bool:
    """torch casts floating tensors other than float64."""
    d = t._data.dtype
    return d.kind in _dt.FLOAT_KINDS and d.name != "float64"


def _cast(t: Tensor, dtype: _dt.dtype) -> Tensor:
    if t._data.dtype == dtype.np:
        return t
    loc = _local
    cacheable = loc.cache_enabled and loc.nesting and t._grad_fn is None and t._requires_grad
    if cacheable:
        hit = loc.cache.get(id(t))
        if hit is not None and hit[0] is t and hit[1]._data.dtype == dtype.np:
            return hit[1]
    out = t.to(dtype)
    if cacheable:
        loc.cache[id(t)] = (t, out)  # keeps t alive, so its id is not reused meanwhile
    return out


def run(op: str, fn, *args: Any, **kwargs: Any):
    """Call ``fn(*args, **kwargs)`` with autocast's casts for ``op`` (and bfloat16 computed in
    float32); None when there is nothing to do, and the caller then runs its own body."""
    loc = _local
    if loc.inside:
        return None
    tensors = list(_tensors(args, kwargs))
    if not tensors:
        return None
    device = tensors[0].device.type
    changed = False
    if loc.enabled.get(device, False):
        policy = POLICIES[device].get(op)
        if device == "cuda" and op in _BANNED_CUDA:
            raise RuntimeError(_BANNED_CUDA[op])
        target = None
        if policy == LOWER:
            target = loc.dtype[device]
        elif policy == FP32:
            target = _dt.float32
        elif policy == PROMOTE:
            floats = [t for t in tensors if t._data.dtype.kind in _dt.FLOAT_KINDS]
            if len({t._data.dtype for t in floats}) > 1:
                widest = floats[0]._data.dtype
                for t in floats[1:]:
                    widest = _dt._promote_np(widest, t._data.dtype)
                target = _dt.from_numpy_dtype(widest)
        if target is not None and not (policy == FP32 and kwargs.get("dtype") is not None):
            args, kwargs = _map(args, kwargs,
                                lambda t: _cast(t, target) if _eligible(t) else t, op)
            tensors = list(_tensors(args, kwargs))
        changed = True  # even when nothing was cast: the ops that fn calls are not cast again
    floats = [t._data.dtype for t in tensors if t._data.dtype.kind in _dt.FLOAT_KINDS]
    if op in _MIXED_NORMS:  # torch's CPU norms take a bfloat16 input with float32 parameters
        floats = floats[:1]  # and return bfloat16, computed in float32
    bf16 = (bool(floats) and all(_dt.is_bfloat16(d) for d in floats)
            and kwargs.get("dtype") is None)  # an explicit dtype= is the result's dtype
    if bf16:  # NumPy lacks bfloat16 math here: compute in float32, round back below
        args, kwargs = _map(args, kwargs, lambda t: t.float() if _dt.is_bfloat16(
            t._data.dtype) else t, op)
    elif not changed:
        return None
    loc.inside = True
    try:
        out = fn(*args, **kwargs)
    finally:
        loc.inside = False
    if bf16:
        out = _round_back(out)
    return out


_MIXED_NORMS = frozenset({"layer_norm", "group_norm", "batch_norm"})


def _round_back(out):
    if isinstance(out, Tensor):
        return out.to(_dt.bfloat16) if out._data.dtype.name == "float32" else out
    if isinstance(out, tuple):
        return type(out)(_round_back(o) for o in out) if not hasattr(out, "_fields") else \
            type(out)(*(_round_back(o) for o in out))
    return out


# ---- custom Functions ---------------------------------------------------------------------------
def custom_fwd(fwd=None, *, device_type: str = "cuda", cast_inputs=None):
    """Decorate a custom Function's ``forward``: with ``cast_inputs`` it runs with autocast off
    and its floating inputs cast to that dtype when autocast was on; otherwise it runs in the
    autocast state it was called in (and ``backward``, with ``custom_bwd``, in the same)."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def decorate_fwd(*args, **kwargs):
        args[0]._fwd_used_autocast = is_autocast_enabled(device_type)
        args[0]._dtype = get_autocast_dtype(device_type)
        if cast_inputs is None:
            return fwd(*args, **kwargs)
        if not is_autocast_enabled(device_type):
            return fwd(*args, **kwargs)
        d = _dt.to_dtype(cast_inputs)
        args, kwargs = _map(args, kwargs, lambda t: t.to(d) if _eligible(t) else t)
        with autocast(device_type, enabled=False):
            return fwd(*args, **kwargs)

    return decorate_fwd


def custom_bwd(bwd=None, *, device_type: str = "cuda"):
    """Decorate a custom Function's ``backward``: it runs in the autocast state of forward."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args, **kwargs):
        ctx = args[0]
        with autocast(device_type, dtype=ctx._dtype, enabled=ctx._fwd_used_autocast):
            return bwd(*args, **kwargs)

    return decorate_bwd
