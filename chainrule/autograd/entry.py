"""The engine's two entry points, ``backward`` and ``grad`` (PyTorch's ``torch.autograd``
functions): check the roots and their seed gradients, then run ``engine.run_backward``. The
first call also asks glibc to keep freed memory for reuse (``devices.keep_freed_memory``)."""

from __future__ import annotations

from chainrule import devices
from chainrule.autograd.engine import run_backward
from chainrule.batching import current_levels
from chainrule.creation import zeros_like
from chainrule.devices import np
from chainrule.tensor import Tensor, wrap

__all__ = ["backward", "grad"]


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _root_grads(tensors: tuple, grads: tuple, create_graph: bool) -> list:
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


def _batched_grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
                  materialize_grads) -> tuple:
    """``grad`` with ``is_grads_batched=True``: the rows of the grad_outputs pushed through
    the graph as one batch (``cr.func.vmap``)."""
    from chainrule.func_vmap import vmap  # the transform layer sits above the engine

    gos = list(_as_tuple(grad_outputs))
    unused: list = []

    def one(*rows):
        r = grad(outputs, inputs, rows, retain_graph=True, create_graph=create_graph,
                 allow_unused=allow_unused, materialize_grads=materialize_grads)
        unused[:] = [g is None for g in r]
        return tuple(zeros_like(x) if g is None else g
                     for g, x in zip(r, _as_tuple(inputs)))

    dims = tuple(None if g is None else 0 for g in gos)
    result = vmap(one, in_dims=dims)(*gos)
    return tuple(None if u else g for g, u in zip(result, unused))


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False,
             grad_variables=None, inputs=None) -> None:
    """Accumulate d(tensors)/d(leaf) into ``.grad`` of every leaf (or of ``inputs``)."""
    if current_levels():  # as torch.func: gradients inside vmap come from cr.func.grad/vjp
        raise RuntimeError(
            "backward() called inside a functorch transform. This is not supported, please use "
            "functorch.grad or functorch.vjp instead or call backward() outside of functorch "
            "transforms."
        )
    tensors = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors if grad_tensors is not None else grad_variables)
    if retain_graph is None:
        retain_graph = create_graph
    roots = _root_grads(tensors, grads, create_graph)
    inputs = list(_as_tuple(inputs)) if inputs is not None else None
    if inputs is not None and not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    devices.keep_freed_memory()  # training re-allocates the same buffers every step
    run_backward(list(tensors), roots, retain_graph, create_graph, inputs, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False,
         materialize_grads=False) -> tuple:
    """d(outputs)/d(inputs) as a tuple, without touching ``.grad``."""
    if is_grads_batched:  # dim 0 of every grad_output is a batch: one vmapped backward pass
        return _batched_grad(outputs, inputs, grad_outputs, retain_graph, create_graph,
                             allow_unused, materialize_grads)
    outputs = _as_tuple(outputs)
    inputs = list(_as_tuple(inputs))
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(
                f"One of the differentiated Tensors (input {i}) does not require grad"
            )
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    roots = _root_grads(outputs, _as_tuple(grad_outputs), create_graph)
    devices.keep_freed_memory()
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
    return tuple(out)
