"""NaN tracing: ``detect_anomaly()`` stops at the first gate whose forward or backward goes bad.

Inside the context every new gate remembers where it was created (``node.site``) and its input
values; ``Op.apply`` / ``Function.apply`` call :func:`check_forward` on each forward result and
the engine calls :func:`check_backward` on each gate's input gradients. The first NaN/Inf raises
a ``RuntimeError`` naming the op, its creation site, the phase and its inputs' statistics.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from chainrule.dtypes import FLOAT_KINDS
from chainrule import devices
from chainrule.devices import np as _np

from chainrule._state import state

_ndarray, _add_reduce = _np.ndarray, _np.add.reduce

_PACKAGE_DIR = __file__.rsplit("/autograd/", 1)[0]


def caller_site() -> str:
    """``file:line`` of the first frame outside chainrule (where the user created the op)."""
    frame = sys._getframe(1)  # (compiled callers have no frame: skip by file, not by count)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


__all__ = ["caller_site", "detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled",
           "check_forward", "check_backward", "array_stats"]


def is_anomaly_enabled() -> bool:
    """True while anomaly detection is on in this thread."""
    return state.anomaly


class set_detect_anomaly:
    """Turn anomaly detection on or off at once; also a context manager that restores it."""

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self.prev = (state.anomaly, state.record_sites, state.record_inputs)
        _set(bool(mode), bool(check_nan))

    def __enter__(self) -> set_detect_anomaly:
        return self

    def __exit__(self, *exc: Any) -> None:
        state.anomaly, state.record_sites, state.record_inputs = self.prev


def _set(mode: bool, check_nan: bool) -> None:
    # Sites and inputs are recorded whenever the mode is on; checks only with check_nan.
    state.anomaly = mode and check_nan
    state.record_sites = mode
    state.record_inputs = mode


class detect_anomaly:
    """Context manager (and decorator): raise at the first op whose forward or backward gives
    NaN/Inf, naming the op, where it was created and its inputs."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = bool(check_nan)

    def __enter__(self) -> detect_anomaly:
        self.prev = (state.anomaly, state.record_sites, state.record_inputs)
        _set(True, self.check_nan)
        return self

    def __exit__(self, *exc: Any) -> None:
        state.anomaly, state.record_sites, state.record_inputs = self.prev

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapper


# ---- the checks (hot path: one reduction per result, details only on failure) -------------------
def _raw(a):
    return a._data if hasattr(a, "_data") else a


def _bad(a) -> bool:
    """True if ``a`` is a floating array holding a NaN or an Inf."""
    if type(a) is _ndarray:  # the hot path: one C-level reduction, no Python wrappers
        if a.dtype.kind not in FLOAT_KINDS:
            return False
        s = _add_reduce(a, None)  # a finite sum => no NaN/Inf (an overflow is re-checked)
        if s - s == 0:
            return False
        return not bool(_np.isfinite(a).all())
    a = _raw(a)
    dt = getattr(a, "dtype", None)
    if dt is None:
        return isinstance(a, float) and not math.isfinite(a)
    if dt.kind not in FLOAT_KINDS + "c":
        return False
    s = a.sum()
    if s - s == 0:
        return False
    xp = _xp(a)
    return not bool(xp.isfinite(a).all())


def _xp(a):
    return devices.xp_of(a)


def check_forward(node, out, input_arrays) -> None:
    """Raise if a gate's forward result (an array or a tuple of arrays) holds NaN/Inf."""
    outs = out if type(out) is tuple else (out,)
    for k, o in enumerate(outs):
        if o is not None and _bad(o):
            raise RuntimeError(_message(node, "forward", f"output {k}", o, input_arrays))


def check_backward(node, input_grads, grads=None) -> None:
    """Raise if a gate's backward returned a NaN/Inf gradient for one of its inputs."""
    for i, g in enumerate(input_grads):
        if g is not None and _bad(g):
            inputs = getattr(node, "inputs", None)
            raise RuntimeError(_message(node, "backward", f"the gradient for input {i}", g,
                                        inputs, grads))


# ---- the message ---------------------------------------------------------------------------------
def array_stats(a) -> str:
    """``shape [2, 3] float32: min -1, max 2, NaN 0, Inf 0`` (or the Python value)."""
    a = _raw(a)
    if not hasattr(a, "dtype"):
        return f"Python {type(a).__name__} {a!r}"
    xp = _xp(a)
    shape = list(a.shape)
    if a.dtype.kind not in FLOAT_KINDS + "c" or a.size == 0:
        return f"shape {shape} {a.dtype}"
    finite = xp.isfinite(a)
    n_nan = int(xp.isnan(a).sum())
    n_inf = int(a.size - finite.sum()) - n_nan
    if bool(finite.any()):
        vals = a[finite]
        lo, hi = float(vals.min()), float(vals.max())
        rng = f"min {lo:.6g}, max {hi:.6g}"
    else:
        rng = "no finite values"
    return f"shape {shape} {a.dtype}: {rng}, NaN {n_nan}, Inf {n_inf}"


def _site(node) -> str:
    site = getattr(node, "site", None)
    if site is None:
        site = caller_site()
        node.site = site
    return site


def _op_name(node) -> str:
    return type(node).__name__


def _message(node, phase: str, what: str, bad, inputs, grads=None) -> str:
    bad = _raw(bad)
    xp = _xp(bad)
    n_nan = int(xp.isnan(bad).sum()) if hasattr(bad, "dtype") else 0
    n_inf = int(xp.isinf(bad).sum()) if hasattr(bad, "dtype") else 0
    size = getattr(bad, "size", 1)
    site = getattr(node, "site", None) if phase == "backward" else _site(node)
    where = site or "an unknown site (the graph was built outside detect_anomaly())"
    scope = getattr(node, "scope", ()) or (state.scopes if phase == "forward" else ())
    inside = f" inside {type(scope[-1]).__name__}" if scope else ""
    kind = "NaN" if n_nan else "Inf"
    lines = [
        f"detect_anomaly: {phase} of {_op_name(node)} ({node.name()}), created at {where}"
        f"{inside}, produced {n_nan} NaN and {n_inf} Inf of {size} values in {what}. "
        f"(Function '{node.name()}' returned {kind.lower()} values in its {phase} pass.)"
    ]
    if inputs is not None:
        lines.append(f"  inputs of {_op_name(node)} (forward values):")
        for i, a in enumerate(inputs):
            lines.append(f"    input {i}: {array_stats(a)}")
    elif phase == "backward":
        lines.append("  (input values were not recorded: build the graph inside detect_anomaly())")
    if grads is not None:
        for k, g in enumerate(grads):
            if g is not None:
                lines.append(f"  incoming gradient {k}: {array_stats(g)}")
    return "\n".join(lines)
