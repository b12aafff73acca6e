"""Hooks in ``chainrule._cengine``, the optional C version of the engine's per-gate bookkeeping.

The C module mirrors ``Op.apply`` / ``Op.apply_unary`` / ``Op.apply_binary``, the plain loop of
``engine.run_backward`` and the Tensor operator fast paths, which stay here in Python as the
reference. It is built by ``pip install`` when a C compiler is present; without it, or with
``CHAINRULE_PURE_PYTHON=1`` in the environment, chainrule runs the pure-Python engine (same
results, about twice the bookkeeping time on tiny ops).
"""

from __future__ import annotations

import os

from chainrule import backend
from chainrule._state import state
from chainrule.backend import np

__all__ = ["engine", "fusable", "install_gates"]


INTERFACE = 1  # must equal CENGINE_INTERFACE in _cengine.c


def _load():
    if os.environ.get("CHAINRULE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from chainrule import _cengine
    except ImportError:
        return None
    if getattr(_cengine, "INTERFACE", None) != INTERFACE:  # built from an older _cengine.c
        import warnings

        warnings.warn(f"chainrule._cengine ({_cengine.__file__}) was built from another "
                      "version of _cengine.c; running the pure-Python engine. Rebuild it with "
                      "`pip install -e .` (or `make test`).", RuntimeWarning, stacklevel=2)
        return None
    from chainrule.autograd import function as fn
    from chainrule.tensor import Tensor

    _cengine.install(
        Tensor=Tensor, Op=fn.Op, Function=fn.Function, ndarray=np.ndarray, state=state,
        backend=backend, note_extras=fn._note_extras, sources=fn._sources,
        from_input0=fn._FROM_INPUT0, from_output=fn._FROM_OUTPUT,
        from_inputs01=fn._FROM_INPUTS01,
        float_dtypes=[np.dtype(t) for t in ("float16", "float32", "float64")],
        finish_many=fn._finish_many, check_device=backend.check_same_device,
    )
    fn.Op.apply = classmethod(_cengine.apply)
    fn.Op.apply_unary = classmethod(_cengine.apply_unary)
    fn.Op.apply_binary = classmethod(_cengine.apply_binary)
    return _cengine


engine = _load()  # the C module, or None


def install_gates(cls) -> None:
    """Replace the Tensor methods and operators marked with a ``_gate`` (op, binary, reflected)
    by C gates that take the same fast path and fall back to the Python function otherwise."""
    if engine is None:
        return
    for name, value in list(vars(cls).items()):
        gate = getattr(value, "_gate", None)
        if gate is not None:
            op, binary, reflected = gate
            setattr(cls, name, engine.Gate(op, value, binary, reflected))


_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fusable(*arrays) -> bool:
    """True when the C engine's fused loops can take these arrays: C-contiguous float32 or
    float64 NumPy arrays of one dtype (None entries are skipped)."""
    if engine is None:
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or not a.flags.c_contiguous:
            return False
        if dtype is None:
            dtype = a.dtype
            if dtype not in _FUSED_DTYPES:
                return False
        elif a.dtype is not dtype:
            return False
    return True
