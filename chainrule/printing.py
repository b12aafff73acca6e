"""PyTorch-style ``repr`` of tensors."""

from __future__ import annotations

import numpy as np

from chainrule import backend
from chainrule import dtypes as _dt

_IMPLICIT = {"float32", "int64", "bool"}


def _float_formatter(values: np.ndarray):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return lambda v: f"{v}"
    big, small = np.abs(finite).max(), np.abs(finite[finite != 0]).min() if np.any(finite) else 0
    if np.all(finite == np.round(finite)) and big < 1e8:
        return lambda v: f"{v:.0f}." if np.isfinite(v) else f"{v}"
    if big >= 1e8 or (small and small < 1e-4) or (small and big / small > 1e7):
        return lambda v: f"{v:.4e}"
    return lambda v: f"{v:.4f}"


def _format_data(a: np.ndarray) -> str:
    if a.dtype.kind == "f":
        fmt = _float_formatter(a)
        formatter = {"float_kind": fmt}
    elif a.dtype.kind == "b":
        formatter = {"bool": lambda v: " True" if v else "False"}
    else:
        formatter = None
    return np.array2string(
        a, separator=", ", prefix="tensor(", formatter=formatter, threshold=1000, edgeitems=3,
        max_line_width=80,
    )


def tensor_repr(t) -> str:
    a = np.asarray(backend.to_device(t._data, "cpu"))
    body = _format_data(a)
    extras = []
    if a.size == 0 and a.ndim != 1:
        extras.append(f"size={tuple(a.shape)}")
    if str(t.device) != "cpu":
        extras.append(f"device='{t.device}'")
    name = _dt.from_numpy_dtype(a.dtype).name
    if name not in _IMPLICIT or (name == "float32" and _dt.get_default_dtype().name != "float32"):
        extras.append(f"dtype=chainrule.{name}")
    if t._grad_fn is not None:
        extras.append(f"grad_fn=<{t._grad_fn.name()}>")
    elif t._requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
