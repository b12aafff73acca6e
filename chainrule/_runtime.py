"""Process-wide switches PyTorch keeps at top level: threads, determinism, compile, printing.

``cr.set_num_threads(n)`` sets the BLAS thread pool (through ``threadpoolctl``, which reaches
OpenBLAS, MKL and BLIS alike); chainrule's own C row loops (softmax family, row sums)
then follow it by the rule of ``chainrule.kernels.cpu.default_threads``; the other C loops run
on one thread. With CHAINRULE_POOL=1, at more than one thread without MKL, chainrule's own pool
runs the products too, with NumPy's OpenBLAS set to one thread (``chainrule.kernels.openblas``).
"""

from __future__ import annotations

import math
import os

from chainrule import _threads as _thread_counts

__all__ = [
    "set_num_threads", "get_num_threads", "set_num_interop_threads", "get_num_interop_threads",
    "init_num_threads", "compile", "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled", "is_deterministic_algorithms_warn_only_enabled",
    "set_deterministic_debug_mode", "get_deterministic_debug_mode", "set_warn_always",
    "is_warn_always_enabled", "set_flush_denormal", "typename", "cond",
]

_threads = _thread_counts.counts
_determinism = {"on": False, "warn_only": False, "warn_always": False}


def _blas_limiter():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    if _threads["limiter"] is None:
        _threads["limiter"] = ThreadpoolController()
    return _threads["limiter"]


def set_num_threads(int: int) -> None:  # noqa: A002  (torch's argument name)
    """Use ``int`` threads for the BLAS calls (matrix products, convolutions)."""
    import builtins

    if not isinstance(int, builtins.int) or isinstance(int, bool) or int < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    _threads["n"] = int
    ctl = _blas_limiter()
    if ctl is not None:
        ctl.limit(limits=int, user_api="blas")
    for hook in _thread_counts.on_set:
        hook()


def get_num_threads() -> int:
    """The number of threads products use (as set; else the pool's where chainrule's thread pool
    runs them, see kernels/openblas.py; else what the BLAS library uses, else the CPUs)."""
    from chainrule.kernels import openblas

    if _threads["n"]:
        return _threads["n"]
    if openblas.state["on"]:
        return _thread_counts.blas_threads()
    ctl = _blas_limiter()
    if ctl is not None:
        blas = [i["num_threads"] for i in ctl.info() if i.get("user_api") == "blas"]
        if blas:
            return max(blas)
    return _threads["n"] or os.cpu_count() or 1


def set_num_interop_threads(int: int) -> None:  # noqa: A002
    """Recorded only: chainrule runs ops one after the other (no inter-op pool)."""
    if _threads["interop"] is not None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work "
                           "has started or set_num_interop_threads called")
    _threads["interop"] = int


def get_num_interop_threads() -> int:
    return _threads["interop"] or 1


def init_num_threads() -> None:
    """Nothing to initialize: thread pools are set by ``set_num_threads``."""


def compile(model=None, *, fullgraph: bool = False, dynamic=None, backend="inductor",
            mode=None, options=None, disable: bool = False):
    """Accepts torch.compile's arguments and returns ``model`` itself: chainrule has no graph
    capture yet, so the "compiled" callable runs eagerly, with the same results.

    Used as a decorator with arguments (``@cr.compile(mode="max-autotune")``) it returns the
    decorator."""
    if model is None:
        return lambda fn: compile(fn, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                  mode=mode, options=options, disable=disable)
    if not callable(model):
        raise RuntimeError("compile: expected a callable (a function or a Module), got "
                           f"{type(model).__name__}")
    if mode is not None and options is not None:
        raise RuntimeError("Either mode or options can be specified, but both can't be "
                           "specified at the same time.")
    return model


def cond(pred, true_fn, false_fn, operands=()):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)`` (eager, as torch.cond
    outside of torch.compile)."""
    return true_fn(*operands) if bool(pred) else false_fn(*operands)


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Recorded: chainrule's CPU ops are deterministic already."""
    _determinism["on"], _determinism["warn_only"] = bool(mode), bool(warn_only)


def are_deterministic_algorithms_enabled() -> bool:
    return _determinism["on"]


def is_deterministic_algorithms_warn_only_enabled() -> bool:
    return _determinism["warn_only"]


def set_deterministic_debug_mode(debug_mode) -> None:
    names = {"default": 0, "warn": 1, "error": 2}
    level = names.get(debug_mode, debug_mode)
    if level not in (0, 1, 2):
        raise RuntimeError(f"invalid value of debug_mode, expected one of `default`, `warn`, "
                           f"`error`, but got {debug_mode}")
    use_deterministic_algorithms(level > 0, warn_only=level == 1)


def get_deterministic_debug_mode() -> int:
    if not _determinism["on"]:
        return 0
    return 1 if _determinism["warn_only"] else 2


def set_warn_always(b: bool) -> None:
    _determinism["warn_always"] = bool(b)


def is_warn_always_enabled() -> bool:
    return _determinism["warn_always"]


def set_flush_denormal(mode: bool) -> bool:
    """NumPy cannot flush denormals: returns False (as torch on CPUs without SSE3)."""
    return False


def typename(obj) -> str:
    """torch's type names: ``torch.FloatTensor`` style for tensors, the qualified name else."""
    from chainrule.tensor import Tensor

    if isinstance(obj, Tensor):
        return obj.type().replace("chainrule.", "torch.")
    module = type(obj).__module__
    name = type(obj).__qualname__
    return name if module in ("builtins", None) else f"{module}.{name}"


# ---- predicates and small functions on tensors --------------------------------------------------
def is_floating_point(input) -> bool:
    return input.is_floating_point()


def is_complex(input) -> bool:
    return input.is_complex()


def is_signed(input) -> bool:
    return input.is_signed()


def is_nonzero(input) -> bool:
    """The truth of a one-element tensor."""
    if input.numel() != 1:
        what = "no values" if input.numel() == 0 else "more than one value"
        raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
    return bool(input.item())


def is_same_size(input, other) -> bool:
    return tuple(input.shape) == tuple(other.shape)


def is_inference(input) -> bool:
    """chainrule has no inference tensors: always False."""
    return False


def can_cast(from_, to) -> bool:
    """Whether torch's casting rules allow ``from_`` → ``to`` in an in-place op (no float →
    integer, no non-bool → bool)."""
    order = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
    return order[from_.np.kind] <= order[to.np.kind]


def detach(input):
    return input.detach()


def get_device(input) -> int:
    return input.get_device()


_default_device = {"device": None}


def set_default_device(device) -> None:
    """Record the default device (factory functions still use the CPU unless told)."""
    _default_device["device"] = device


def get_default_device():
    from chainrule.devices import device as make

    d = _default_device["device"]
    return make("cpu") if d is None else make(d) if not hasattr(d, "type") else d


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None) -> None:
    """Recorded for compatibility; chainrule prints with torch's default options."""


def binomial(count, prob, generator=None):
    """Binomial(count, prob) draws (floats of prob's dtype)."""
    from chainrule.distributions._special import binomial as draw

    return draw(count, prob)


def is_anomaly_enabled() -> bool:
    from chainrule.autograd import anomaly

    return anomaly.is_anomaly_enabled()


def is_anomaly_check_nan_enabled() -> bool:
    from chainrule._state import state

    return bool(state.anomaly)


def set_anomaly_enabled(enabled: bool, check_nan: bool = True) -> None:
    from chainrule.autograd import anomaly

    anomaly.set_detect_anomaly(enabled, check_nan)


__all__ += [
    "is_floating_point", "is_complex", "is_signed", "is_nonzero", "is_same_size",
    "is_inference", "can_cast", "detach", "get_device", "set_default_device",
    "get_default_device", "set_printoptions", "binomial", "is_anomaly_enabled",
    "is_anomaly_check_nan_enabled", "set_anomaly_enabled",
]


# ---- constants, errors, legacy tensor types, and small top-level functions ----------------------
pi = math.pi
e = math.e
inf = math.inf
nan = math.nan


class OutOfMemoryError(RuntimeError):
    """A device ran out of memory (as torch.OutOfMemoryError)."""


class AcceleratorError(RuntimeError):
    """An accelerator failed (as torch.AcceleratorError)."""


def _legacy_type(name: str, dtype_name: str):
    """``cr.FloatTensor([1, 2])`` style constructors (torch's legacy tensor types)."""

    def __new__(cls, *args, device=None):
        from chainrule import dtypes
        from chainrule.creation import tensor, zeros

        d = getattr(dtypes, dtype_name)
        if len(args) == 1 and not isinstance(args[0], int):
            return tensor(args[0], dtype=d, device=device)
        return zeros(*args, dtype=d, device=device)

    def __instancecheck__(cls, obj):
        from chainrule.tensor import Tensor

        return isinstance(obj, Tensor) and obj.dtype.name == dtype_name

    meta = type(f"{name}Meta", (type,), {"__instancecheck__": __instancecheck__})
    return meta(name, (), {"__new__": __new__, "__doc__": f"torch.{name}: {dtype_name} "
                                                           "tensors (legacy constructor)."})


FloatTensor = _legacy_type("FloatTensor", "float32")
DoubleTensor = _legacy_type("DoubleTensor", "float64")
HalfTensor = _legacy_type("HalfTensor", "float16")
BFloat16Tensor = _legacy_type("BFloat16Tensor", "bfloat16")
LongTensor = _legacy_type("LongTensor", "int64")
IntTensor = _legacy_type("IntTensor", "int32")
ShortTensor = _legacy_type("ShortTensor", "int16")
CharTensor = _legacy_type("CharTensor", "int8")
ByteTensor = _legacy_type("ByteTensor", "uint8")
BoolTensor = _legacy_type("BoolTensor", "bool")


def set_default_tensor_type(t) -> None:
    """Deprecated in torch: sets the default float dtype from a tensor type or its name."""
    name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
    name = name.rsplit(".", 1)[-1]
    table = {"FloatTensor": "float32", "DoubleTensor": "float64", "HalfTensor": "float16",
             "BFloat16Tensor": "bfloat16"}
    if name not in table:
        raise TypeError("invalid type object: only floating-point types are supported as the "
                        "default type")
    from chainrule import dtypes

    dtypes.set_default_dtype(getattr(dtypes, table[name]))


def isin(elements, test_elements, *, assume_unique: bool = False, invert: bool = False):
    """True where an element of ``elements`` is among ``test_elements``."""
    from chainrule.devices import np as _np
    from chainrule.tensor import Tensor, wrap

    a = elements._data if isinstance(elements, Tensor) else _np.asarray(elements)
    b = test_elements._data if isinstance(test_elements, Tensor) else _np.asarray(test_elements)
    return wrap(_np.asarray(_np.isin(a, b, invert=invert)))


def unravel_index(indices, shape):
    """The coordinates of flat ``indices`` in an array of ``shape`` (a tuple of tensors)."""
    import numpy

    from chainrule.tensor import Tensor, wrap

    idx = indices._data if isinstance(indices, Tensor) else numpy.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError("expected 'indices' to be integer dtype, but got "
                        f"{idx.dtype}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise RuntimeError(f"'indices' must be in range [-{n}, {n})")
    coords = numpy.unravel_index(idx % n if n else idx, shape)
    return tuple(wrap(numpy.asarray(c, numpy.int64)) for c in coords)


def gradient(input, *, spacing=1, dim=None, edge_order: int = 1):
    """Central differences (one-sided at the edges) along each of ``dim``: a tuple of tensors."""
    from chainrule.ops.shape import cat, narrow

    dims = range(input.ndim) if dim is None else ([dim] if isinstance(dim, int) else dim)
    dims = [d % input.ndim for d in dims]
    if edge_order != 1:
        raise NotImplementedError("gradient: edge_order=2 is not implemented")
    out = []
    for k, d in enumerate(dims):
        h = spacing[k] if isinstance(spacing, (list, tuple)) else spacing
        n = input.shape[d]
        if n < 2:
            raise RuntimeError("torch.gradient expected each dimension size to be at least "
                               "edge_order+1")
        first = (narrow(input, d, 1, 1) - narrow(input, d, 0, 1)) / h
        last = (narrow(input, d, n - 1, 1) - narrow(input, d, n - 2, 1)) / h
        mid = (narrow(input, d, 2, n - 2) - narrow(input, d, 0, n - 2)) / (2 * h)
        out.append(cat([first, mid, last], d))
    return tuple(out)


def histogramdd(input, bins=10, *, range=None, weight=None, density: bool = False):  # noqa: A002
    """(hist, bin_edges) of the rows of a (N, D) tensor in D dimensions."""
    import numpy

    from chainrule.tensor import Tensor, wrap

    x = numpy.asarray(input.detach().cpu().numpy())
    b = [t.detach().cpu().numpy() for t in bins] if isinstance(bins, (list, tuple)) and bins \
        and isinstance(bins[0], Tensor) else bins
    rng = None if range is None else list(zip(range[0::2], range[1::2]))
    w = None if weight is None else weight.detach().cpu().numpy()
    hist, edges = numpy.histogramdd(x.reshape(-1, x.shape[-1]), bins=b, range=rng, weights=w,
                                    density=density)
    from collections import namedtuple

    return namedtuple("histogramdd", ["hist", "bin_edges"])(
        wrap(hist.astype(x.dtype)), [wrap(e.astype(x.dtype)) for e in edges])


def svd_lowrank(A, q: int = 6, niter: int = 2, M=None):
    """(U, S, V) of rank ``q`` (computed exactly here, where torch draws a randomized one)."""
    from chainrule.ops.linalg import SVD

    B = A if M is None else A - M
    u, s, vh = SVD.apply(B, False)
    q = min(q, s.shape[-1])
    return u[..., :q], s[..., :q], vh[..., :q, :].mT


def pca_lowrank(A, q=None, center: bool = True, niter: int = 2):
    """(U, S, V) of the centred data's rank-``q`` SVD (principal components)."""
    m, n = A.shape[-2:]
    q = min(6, m, n) if q is None else q
    B = A - A.mean(-2, keepdim=True) if center else A
    return svd_lowrank(B, q, niter)


def while_loop(cond_fn, body_fn, carried_inputs):
    """Run ``body_fn`` while ``cond_fn`` holds (eager, as torch.while_loop outside compile)."""
    vals = tuple(carried_inputs)
    while bool(cond_fn(*vals)):
        vals = body_fn(*vals)
        vals = vals if isinstance(vals, tuple) else (vals,)
    return vals


def is_distributed(input) -> bool:
    return False


def get_device_module(device=None):
    """The module for a device type: ``cr.cuda`` or ``cr.cpu``."""
    import importlib

    name = "cpu" if device is None else str(getattr(device, "type", device)).split(":")[0]
    if name not in ("cpu", "cuda"):
        raise RuntimeError(f"Device '{name}' does not have a corresponding module registered "
                           "as 'torch.{name}'.")
    return importlib.import_module(f"chainrule.{name}")


def to_dlpack(tensor):
    """A DLPack capsule of the tensor's memory."""
    return tensor._data.__dlpack__()


def adjoint(input):
    """The conjugate transpose of the last two dims (the transpose, for real tensors)."""
    return input.mT


__all__ += [
    "pi", "e", "inf", "nan", "OutOfMemoryError", "AcceleratorError", "FloatTensor",
    "DoubleTensor", "HalfTensor", "BFloat16Tensor", "LongTensor", "IntTensor", "ShortTensor",
    "CharTensor", "ByteTensor", "BoolTensor", "set_default_tensor_type", "isin",
    "unravel_index", "gradient", "histogramdd", "svd_lowrank", "pca_lowrank", "while_loop",
    "is_distributed", "get_device_module", "to_dlpack", "adjoint",
]


class FatalError(RuntimeError):
    """An unrecoverable error (as torch.FatalError)."""


def set_autocast_cpu_enabled(enabled: bool) -> None:
    """Deprecated spelling of ``set_autocast_enabled("cpu", enabled)``."""
    from chainrule.amp import autocast_mode

    autocast_mode.set_autocast_enabled("cpu", enabled)


def set_autocast_cpu_dtype(dtype) -> None:
    """Deprecated spelling of ``set_autocast_dtype("cpu", dtype)``."""
    from chainrule.amp import autocast_mode

    autocast_mode.set_autocast_dtype("cpu", dtype)


def set_autocast_gpu_dtype(dtype) -> None:
    """Deprecated spelling of ``set_autocast_dtype("cuda", dtype)``."""
    from chainrule.amp import autocast_mode

    autocast_mode.set_autocast_dtype("cuda", dtype)


__all__ += ["FatalError", "set_autocast_cpu_enabled", "set_autocast_cpu_dtype",
            "set_autocast_gpu_dtype"]
