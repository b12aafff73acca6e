"""Reverse-mode automatic differentiation: backward, grad, custom Functions, gradient checks."""

from __future__ import annotations

from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.function import Function, FunctionCtx, Op, once_differentiable
from chainrule.autograd.grad_mode import (
    enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad,
    set_grad_enabled,
)

__all__ = [
    "Function", "FunctionCtx", "Op", "once_differentiable", "backward", "grad", "gradcheck",
    "gradgradcheck", "GradcheckError", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "check_gates", "detect_anomaly", "set_detect_anomaly", "functional",
    "inference_mode", "is_inference_mode_enabled",
]


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _root_grads(tensors: tuple, grads: tuple, create_graph: bool) -> list:
    from chainrule.tensor import Tensor, wrap

    for g in grads:
        if g is not None and not isinstance(g, (Tensor, np.ndarray)):
            raise TypeError(
                f"gradients can be either Tensors or None, but got {type(g).__name__}"
            )
    if grads and len(grads) != len(tensors):
        raise RuntimeError(f"got {len(tensors)} tensors and {len(grads)} gradients")
    out = []
    for i, t in enumerate(tensors):
        g = grads[i] if i < len(grads) else None
        if not t._requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
        if g is None:
            if t._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = np.ones_like(t._data)
            out.append(wrap(g) if create_graph else g)
            continue
        raw = g._data if isinstance(g, Tensor) else devices.asarray_on(g, t._data, t._data.dtype)
        if raw.shape != t._data.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {list(raw.shape)} and "
                f"output[{i}] has a shape of {list(t._data.shape)}."
            )
        if create_graph:
            out.append(g if isinstance(g, Tensor) else wrap(raw))
        else:
            out.append(raw)
    return out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
             grad_variables=None, inputs=None) -> None:
    """Accumulate d(tensors)/d(leaf) into ``.grad`` of every leaf (or of ``inputs``)."""
    from chainrule.autograd.engine import run_backward

    tensors = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors if grad_tensors is not None else grad_variables)
    if retain_graph is None:
        retain_graph = create_graph
    roots = _root_grads(tensors, grads, create_graph)
    inputs = list(_as_tuple(inputs)) if inputs is not None else None
    if inputs is not None and not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    run_backward(list(tensors), roots, retain_graph, create_graph, inputs, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False,
         materialize_grads=False) -> tuple:
    """d(outputs)/d(inputs) as a tuple, without touching ``.grad``."""
    from chainrule.autograd.engine import run_backward
    from chainrule.creation import zeros_like

    if is_grads_batched:
        raise NotImplementedError(
            "autograd.grad: is_grads_batched=True is not supported by chainrule; call grad once "
            "per row of grad_outputs (with retain_graph=True)"
        )
    outputs = _as_tuple(outputs)
    single = not isinstance(inputs, (list, tuple))
    inputs = list(_as_tuple(inputs))
    for i, t in enumerate(inputs):
        if not t._requires_grad:
            raise RuntimeError(
                f"One of the differentiated Tensors (input {i}) does not require grad"
            )
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    roots = _root_grads(outputs, _as_tuple(grad_outputs), create_graph)
    result = run_backward(list(outputs), roots, retain_graph, create_graph, inputs,
                          accumulate=False)
    out = []
    for i, (t, g) in enumerate(zip(inputs, result)):
        if g is None:
            if materialize_grads:
                g = zeros_like(t)
            elif not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been used "
                    "in the graph. Set allow_unused=True if this is the desired behavior."
                )
        out.append(g)
    _ = single
    return tuple(out)


from chainrule.autograd import functional  # noqa: E402
from chainrule.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: E402


def check_gates(fn, inputs, **kwargs):
    """Check every gate of ``fn``'s graph against finite differences (autograd/gates.py)."""
    from chainrule.autograd.gates import check_gates as _check

    return _check(fn, inputs, **kwargs)


def detect_anomaly(check_nan: bool = True):
    """Context manager: raise at the first op whose forward or backward gives NaN/Inf."""
    from chainrule.autograd.anomaly import detect_anomaly as _detect

    return _detect(check_nan)


def set_detect_anomaly(mode: bool, check_nan: bool = True):
    from chainrule.autograd.anomaly import set_detect_anomaly as _set

    return _set(mode, check_nan)


# ---- legacy and switch names of torch.autograd --------------------------------------------------
class _VariableMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        from chainrule.tensor import Tensor

        return isinstance(obj, Tensor)


class Variable(metaclass=_VariableMeta):
    """Legacy: ``Variable(t, requires_grad=True)`` is ``t`` itself with requires_grad set, and
    every tensor is an instance (Variables and Tensors merged in PyTorch 0.4)."""

    def __new__(cls, data=None, requires_grad: bool = False, volatile: bool = False):
        from chainrule.tensor import Tensor

        t = data if isinstance(data, Tensor) else Tensor(data)
        return t.requires_grad_(True) if requires_grad else t


def variable(*args, **kwargs):
    """Legacy alias of :class:`Variable`."""
    return Variable(*args, **kwargs)


class NestedIOFunction(Function):
    """Legacy form of :class:`Function` (kept by torch for backward compatibility):
    subclasses define ``forward_extended`` and ``backward_extended``."""

    @staticmethod
    def forward(ctx, *args):
        return ctx.forward_extended(*args)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.backward_extended(*grads)


_switches = {"multithreading": True, "view_replay": False, "grad_layout": False}


def is_multithreading_enabled() -> bool:
    """Whether backward may use several threads (chainrule's engine runs on one)."""
    return _switches["multithreading"]


class set_multithreading_enabled:
    """Context manager (and immediate switch) recording the multithreaded-backward flag."""

    def __init__(self, mode: bool) -> None:
        self.prev = _switches["multithreading"]
        _switches["multithreading"] = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        _switches["multithreading"] = self.prev


def is_view_replay_enabled() -> bool:
    """Views of tensors changed in place are always replayed from their base in chainrule
    (autograd/inplace.py); torch's switch for it is off by default."""
    return _switches["view_replay"]


class enforce_grad_layout_policy:
    """Context manager for torch's gradient-layout contract: chainrule's accumulated gradients
    are always contiguous arrays of the parameter's shape, so there is nothing to enforce."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __enter__(self):
        self.prev = _switches["grad_layout"]
        _switches["grad_layout"] = self.enabled
        return self

    def __exit__(self, *exc) -> None:
        _switches["grad_layout"] = self.prev


__all__ += ["Variable", "variable", "NestedIOFunction", "is_multithreading_enabled",
            "set_multithreading_enabled", "is_view_replay_enabled",
            "enforce_grad_layout_policy"]
