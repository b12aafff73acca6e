"""``chainrule.nn.utils``: gradient clipping and parameter/vector conversion."""

from __future__ import annotations

from collections.abc import Iterable

from chainrule.nn.utils import rnn  # noqa: F401
from chainrule.nn.utils.clip_grad import (
    clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm,
)
from chainrule.tensor import Tensor

__all__ = [
    "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
    "parameters_to_vector", "vector_to_parameters", "rnn",
]


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from chainrule.ops.shape import cat

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
