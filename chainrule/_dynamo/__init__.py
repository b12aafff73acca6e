"""``torch._dynamo``: the names programs touch when they guard ``torch.compile``
(``torch._dynamo.config.suppress_errors = True``, ``torch._dynamo.reset()``,
``torch._dynamo.mark_dynamic(x, 0)``, ``@torch._dynamo.disable``). chainrule captures no graphs:
``cr.compile`` returns the callable itself, so these run as torch's do outside a compiled
region (``is_compiling()`` is False) and change nothing."""

from __future__ import annotations

from chainrule._dynamo import config
from chainrule.compiler import (
    allow_in_graph, assume_constant_result, disable, is_compiling, list_backends, reset,
    substitute_in_graph,
)

__all__ = ["config", "allow_in_graph", "assume_constant_result", "disable", "disallow_in_graph",
           "forbid_in_graph", "graph_break", "is_compiling", "list_backends", "mark_dynamic",
           "maybe_mark_dynamic", "mark_static", "mark_static_address", "optimize", "reset",
           "is_dynamo_supported", "is_inductor_supported", "substitute_in_graph", "run",
           "explain", "OptimizedModule"]


def _check_dims(t, index, what: str) -> None:
    from chainrule.tensor import Tensor

    if not isinstance(t, Tensor):
        return  # torch marks Modules and other objects too; nothing to check
    dims = index if isinstance(index, (list, tuple)) else [index]
    for d in dims:
        if not isinstance(d, int) or not -t.dim() <= d < max(t.dim(), 1):
            raise IndexError(f"{what}: dim {d} is out of range for a tensor of "
                             f"{t.dim()} dimensions")


def mark_dynamic(t, index, *, hint_override=None, min=None, max=None,  # noqa: A002
                 specialize_on=None) -> None:
    """Recorded nowhere: chainrule traces no shapes, every shape is dynamic already."""
    _check_dims(t, index, "mark_dynamic")


def maybe_mark_dynamic(t, index) -> None:
    _check_dims(t, index, "maybe_mark_dynamic")


def mark_static(t, index=None) -> None:
    if index is not None:
        _check_dims(t, index, "mark_static")


def mark_static_address(t, guard: bool = True) -> None:
    from chainrule.tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"mark_static_address expects a tensor but received {type(t)}")


def disallow_in_graph(fn):
    return fn


def forbid_in_graph(fn):
    return fn


def graph_break(msg: str = "") -> None:
    """Nothing to break: no graph is being captured."""


def optimize(backend="inductor", *, nopython: bool = False, guard_export_fn=None,
             guard_fail_fn=None, disable: bool = False, dynamic=None, **kwargs):
    """``torch._dynamo.optimize(...)(fn)``: ``fn`` itself, run eagerly."""
    return lambda fn: fn


def run(fn=None):
    return fn if fn is not None else (lambda f: f)


def explain(f, *extra_args, **extra_kwargs):
    raise NotImplementedError("torch._dynamo.explain: chainrule captures no graphs "
                              "(torch.compile runs the code eagerly)")


def is_dynamo_supported() -> bool:
    """False: chainrule has no graph capture (``torch.compile`` still works, eagerly)."""
    return False


def is_inductor_supported() -> bool:
    return False


class OptimizedModule:
    """Never made by chainrule (``cr.compile`` returns the Module); present for ``isinstance``."""
