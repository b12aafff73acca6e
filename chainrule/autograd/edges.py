"""The gradient on every edge of a recorded graph (what ``chainrule.viz`` draws and explains): a
backward pass that keeps each input's and each output's gradient instead of only the leaves'."""

from __future__ import annotations

from chainrule import devices
from chainrule.autograd.engine import call_backward
from chainrule.autograd.function import Function
from chainrule.autograd.grad_mode import no_grad
from chainrule.autograd.graph import graph_nodes, kept_saved, parents
from chainrule.devices import np
from chainrule.ops import either

__all__ = ["edge_gradients"]


def edge_gradients(output, grad=None) -> tuple[dict, dict, dict]:
    """Backpropagate from ``output`` without freeing the graph, keeping every edge's gradient.

    Returns ``(edges, outs, leaves)``: ``edges[(node, i)]`` is the gradient arriving at input
    ``i`` of ``node`` (already summed back to that input's shape), ``outs[(node, nr)]`` the total
    gradient on output ``nr`` of ``node`` (summed over its consumers) and ``leaves[id(leaf)]``
    the total gradient on a leaf. ``grad`` defaults to the seed of the last ``backward()`` when
    :func:`keep` kept the graph, else to ones. A graph freed by ``backward()`` is re-run from
    what :func:`keep` kept or from the inputs recorded under ``cr.viz.record()``; otherwise
    this raises RuntimeError.
    """
    node0 = output._grad_fn
    if node0 is None:
        return {}, {}, {}
    nodes = graph_nodes([output])
    kept = kept_saved(nodes)
    own = getattr(node0, "_viz_kept", None)
    if grad is None and own is not None and own[1] is not None:  # the seed backward() used
        grad = own[1][output._nr] if isinstance(own[1], list) else own[1]
    seed = np.ones_like(output._data) if grad is None else devices.asarray_on(
        getattr(grad, "_data", grad), output._data, output._data.dtype)
    outs: dict = {(node0, output._nr): seed}
    edges: dict = {}
    leaves: dict = {}
    restored = []
    try:
        if kept is not None:
            for node in nodes:
                if node._saved is None and id(node) in kept[0]:
                    node._saved = kept[0][id(node)]
                    restored.append(node)
        with no_grad():
            for node in reversed(nodes):
                _backward_one(node, outs, edges, leaves, either)
    finally:
        for node in restored:
            node._saved = None
    return edges, outs, leaves


def _backward_one(node, outs: dict, edges: dict, leaves: dict, either) -> None:
    gs = [outs.get((node, nr)) for nr in range(len(node._outs))]
    if all(g is None for g in gs):
        return
    runner = node
    if node._saved is None:
        runner = _rebuild(node)
        if runner is None:
            raise RuntimeError(
                "edge_gradients: the graph's saved values were freed by an earlier backward() "
                "(graphs of more than keep_max_nodes gates keep nothing); build it inside "
                "cr.viz.record() or run that backward with retain_graph=True (or draw before it)"
            )
    input_grads = call_backward(runner, gs if len(gs) > 1 else gs[0])
    for i, p in enumerate(parents(node)):
        g = input_grads[i] if i < len(input_grads) else None
        if p is None or g is None:
            continue
        g = getattr(g, "_data", g)
        if p[0] == "leaf":
            shape, dtype = p[1]._data.shape, p[1]._data.dtype
        else:
            shape, dtype = p[1]._outs[p[2]]
        if g.shape != shape:
            g = either.sum_to(g, shape, node)
        if g.dtype != dtype:
            g = g.astype(dtype)
        edges[(node, i)] = g
        if p[0] == "leaf":
            old = leaves.get(id(p[1]))
            leaves[id(p[1])] = g if old is None else old + g
        else:
            key = (p[1], p[2])
            old = outs.get(key)
            outs[key] = g if old is None else old + g


def _rebuild(node):
    """A fresh copy of a gate whose saved values were freed, re-run from its recorded inputs."""
    inputs = getattr(node, "inputs", None)
    if inputs is None:
        return None
    cls = type(node)
    ctx = cls.__new__(cls)
    ctx._edges, ctx._outs = node._edges, node._outs
    ctx._saved = ctx._versions = ctx._dirty = ctx._hooks = ctx._retained = None
    ctx._non_differentiable = ()
    ctx._tensor_args = getattr(node, "_tensor_args", None)
    ctx._materialize_grads = getattr(node, "_materialize_grads", None)
    kwargs = getattr(node, "kwargs", None) or {}
    with no_grad():
        if node.on_arrays:
            ctx._saved = ()
            cls.forward(ctx, *[getattr(a, "_data", a) for a in inputs])
            ctx._saved_from = node._saved_from
        elif cls.setup_context is not Function.setup_context:
            cls.setup_context(ctx, tuple(inputs), cls.forward(*inputs, **kwargs))
        else:
            cls.forward(ctx, *inputs, **kwargs)
    return ctx
