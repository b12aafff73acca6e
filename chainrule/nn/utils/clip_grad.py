"""Gradient clipping: rescale gradients in place before the optimizer step."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.kernels import kernels_for
from chainrule.tensor import Tensor, wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _params(parameters: Any) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _grads(parameters: Any) -> list[Tensor]:
    return [p._grad for p in _params(parameters) if p._grad is not None]


def get_total_norm(tensors: Iterable[Tensor], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """The ``norm_type`` norm of all ``tensors`` together (as one flat vector)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return wrap(np.asarray(0.0, np.float32))
    arrays = [t._data for t in tensors]
    xp = devices.xp_of(arrays[0])
    dtype = arrays[0].dtype
    if norm_type == math.inf:
        total = max(xp.abs(a).max() if a.size else 0.0 for a in arrays)
    elif norm_type == -math.inf:
        total = min(xp.abs(a).min() if a.size else math.inf for a in arrays)
    elif norm_type == 0:
        total = sum(xp.count_nonzero(a) for a in arrays)
    elif norm_type == 2.0:  # torch's: the 2-norm of the stacked per-tensor 2-norms
        norms = xp.stack([xp.sqrt(xp.asarray(kernels_for(a).sum_squares(a, None, False)))
                          for a in arrays])
        total = xp.sqrt(kernels_for(norms).sum_squares(norms, None, False))
    else:
        total = sum((xp.abs(a) ** norm_type).sum() for a in arrays) ** (1.0 / norm_type)
    total = xp.asarray(total, dtype=dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
            "by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return wrap(total)


def clip_grads_with_norm_(parameters: Any, max_norm: float, total_norm: Tensor,
                          foreach: Any = None) -> None:
    """Scale the gradients by min(1, max_norm / (total_norm + 1e-6)) in place (each gradient's
    version counter moves on by one, as torch's ``mul_``, even when the factor is 1)."""
    total = total_norm._data if isinstance(total_norm, Tensor) else total_norm
    # torch's ``max_norm / (total + 1e-6)`` is a Tensor's __rtruediv__: a reciprocal, then a
    # product (two roundings, in the norm's dtype)
    if devices.is_gpu_array(total):  # min(1, coef) on the device: no read-back
        coef = devices.xp_of(total).minimum((1 / (total + 1e-6)) * float(max_norm), 1.0)
        for g in _grads(parameters):
            _write(g, g._data * coef.astype(g._data.dtype))
        return
    total = np.asarray(total)
    if total.dtype.kind == "f":  # in the norm's dtype, as torch's 0-d tensor arithmetic
        kind = total.dtype.type
        coef = (kind(1) / (total[()] + kind(1e-6))) * kind(max_norm)
    else:
        coef = (1 / (float(total) + 1e-6)) * float(max_norm)
    for g in _grads(parameters):
        if coef >= 1.0:  # a product by 1 changes nothing but the version
            g._bump_version()
        else:
            _write(g, g._data * g._data.dtype.type(coef))


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: Any = None) -> Tensor:
    """Rescale the gradients so that their total ``norm_type`` norm is at most ``max_norm``;
    return the total norm before clipping (a Tensor)."""
    params = _params(parameters)
    grads = _grads(params)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if grads:
        clip_grads_with_norm_(params, max_norm, total)
    return total


def clip_grad_value_(parameters: Any, clip_value: float, foreach: Any = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place (torch's foreach
    path, the default, clamps in two in-place steps, min then max: two versions per
    gradient; ``foreach=False`` one)."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        _write(g, devices.xp_of(g._data).clip(g._data, -clip_value, clip_value))
        if foreach is not False:
            g._bump_version()


def _write(g: Tensor, values: Any) -> None:
    """``g`` := ``values`` in g's own memory (views of g see it; a graph that saved g sees the
    version change and refuses to backpropagate, as torch's)."""
    data = g._data
    if devices.is_writable(data):
        data[...] = values
    else:  # a NumPy scalar, or a read-only (expanded) array: a new array, as before
        g._data = devices.xp_of(values).array(values, dtype=data.dtype)
    g._bump_version()
