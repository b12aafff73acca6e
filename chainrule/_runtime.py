"""Process-wide switches PyTorch keeps at top level: threads, determinism, compile, printing.

``cr.set_num_threads(n)`` sets the BLAS thread pool (through ``threadpoolctl`` where it is
installed, which reaches OpenBLAS, MKL and BLIS alike, else through MKL's own call when
chainrule's MKL kernels are loaded); chainrule's own C loops run on one thread.
"""

from __future__ import annotations

import os

__all__ = [
    "set_num_threads", "get_num_threads", "set_num_interop_threads", "get_num_interop_threads",
    "init_num_threads", "compile", "use_deterministic_algorithms",
    "are_deterministic_algorithms_enabled", "is_deterministic_algorithms_warn_only_enabled",
    "set_deterministic_debug_mode", "get_deterministic_debug_mode", "set_warn_always",
    "is_warn_always_enabled", "set_flush_denormal", "typename", "cond",
]

_threads: dict = {"n": None, "interop": None, "limiter": None}
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
    else:
        from chainrule.kernels import mkl

        setter = getattr(mkl, "set_num_threads", None)
        if setter is not None:
            setter(int)


def get_num_threads() -> int:
    """The number of BLAS threads (as set, else what the BLAS library uses, else the CPUs)."""
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
