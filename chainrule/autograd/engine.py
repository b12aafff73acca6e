"""The backward pass: one iterative traversal, linear in the size of the graph.

1. Count, for every node reachable from the roots, how many consumers will send it a gradient.
2. Start from the roots; a node runs its backward once all its consumers have delivered
   (Kahn's algorithm), so no recursion and no sorting. Gradients arriving at a fork are added
   out of place in a dict keyed by node and popped when the node runs.
3. Broadcasting and dtype changes are undone here, once, for every op: each gradient is summed
   back to its input's shape and cast to its input's dtype.
"""

from __future__ import annotations

import sys
import weakref

from chainrule import backend
from chainrule.autograd.accel import engine as _cengine
from chainrule.autograd.function import Function
from chainrule.autograd.grad_mode import state
from chainrule.ops import either

__all__ = ["run_backward"]

# Leaves with Tensor.register_post_accumulate_grad_hook hooks: their .grad is accumulated (and
# the hooks called) as soon as the last node that feeds them has run, not at the end of backward.
post_accumulate_leaves: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> leaf


def _needed_nodes(roots: list, inputs: list) -> set:
    """Nodes on some path from the roots to one of ``inputs`` (others need not run)."""
    from chainrule.autograd.gates import nodes_in_order, parents

    wanted_nodes = {t._grad_fn for t in inputs if t._grad_fn is not None}
    wanted_leaves = {id(t) for t in inputs if t._grad_fn is None}
    needed: set = set()
    for node in nodes_in_order(roots):  # parents first, so theirs is known when a node comes
        if node in wanted_nodes or any(
            p is not None and (p[1] in needed if p[0] == "node" else id(p[1]) in wanted_leaves)
            for p in parents(node)
        ):
            needed.add(node)
    return needed


def run_backward(
    roots: list,
    root_grads: list,
    retain_graph: bool,
    create_graph: bool,
    inputs: list | None = None,
    accumulate: bool = True,
) -> list | None:
    """Backpropagate ``root_grads`` from ``roots``.

    ``accumulate=True`` adds into ``.grad`` of leaves (all leaves, or only ``inputs``);
    ``accumulate=False`` returns the gradient of each of ``inputs`` instead (autograd.grad).
    Gradients are raw arrays throughout unless ``create_graph``, when they are Tensors.
    """
    from chainrule.tensor import wrap

    buffers: dict = {}
    leaf_grads: dict = {}  # id(leaf) -> [leaf, grad]
    root_nodes = []
    for t, g in zip(roots, root_grads):
        if t._grad_fn is None:
            _add_leaf(leaf_grads, t, g)
        else:
            _add(buffers, t._grad_fn, t._nr, g)
            root_nodes.append(t._grad_fn)

    deps = (_cengine.count_consumers if _cengine is not None else _count_consumers)(root_nodes)
    early = _leaf_consumers(deps) if post_accumulate_leaves and accumulate and inputs is None \
        else None
    needed = None
    capture = {}  # (node, nr) -> position in inputs, for non-leaf inputs of autograd.grad
    if inputs is not None:
        needed = _needed_nodes(root_nodes, inputs)
        for i, t in enumerate(inputs):
            if t._grad_fn is not None:
                capture[(t._grad_fn, t._nr)] = i
    captured = [None] * len(inputs) if inputs is not None else None

    anomaly = state.anomaly
    prev_mode = state.grad_enabled
    state.grad_enabled = create_graph
    try:
        ready = list(dict.fromkeys(n for n in root_nodes if deps[n] == 0))
        # Locals for the hot loop (attribute and global lookups cost as much as the work).
        pop_ready, push_ready, pop_buffer, get_buffer = ready.pop, ready.append, buffers.pop, \
            buffers.get
        is_node, no_grads = Function, ()
        plain = not create_graph and not capture  # raw arrays, no autograd.grad captures
        if _cengine is not None and plain and needed is None and not anomaly and not early:
            # the loop below, in C (autograd/accel.py); it calls back for nodes off its fast path
            _cengine.backward(ready, buffers, deps, leaf_grads, retain_graph, _node_grads,
                              _conform, _add)
            ready = ()
        while ready:
            node = pop_ready()
            grad = pop_buffer(node, None)
            k = node._nin
            edges = (node._e0,) if k == 1 else (node._e0, node._e1) if k == 2 else node._edges
            if grad is None or (needed is not None and node not in needed):
                input_grads = no_grads  # nothing flows: just release the parents
            else:
                if plain and node._shape is not None and node._hooks is None:
                    input_grads = node.backward(node, grad)  # fast path: a one-output built-in
                else:
                    input_grads = _node_grads(node, grad, capture, captured, create_graph)
                if type(input_grads) is not tuple:
                    input_grads = (input_grads,)
                if len(input_grads) < len(edges):
                    raise RuntimeError(
                        f"function {node.name()} returned an incorrect number of gradients "
                        f"(expected {len(edges)}, got {len(input_grads)})"
                    )
                if anomaly:
                    from chainrule.autograd.anomaly import check_backward

                    check_backward(node, input_grads)
                if not retain_graph and node._saved:
                    node._saved = None  # frees the saved arrays; a second backward now raises
            for edge, g in zip(edges, input_grads or (None,) * len(edges)):
                if edge is None:
                    continue
                if type(edge) is tuple:
                    parent, nr = edge
                elif isinstance(edge, is_node):
                    parent, nr = edge, 0
                else:  # a leaf
                    if g is not None:
                        data = edge._data
                        if create_graph or g.shape != data.shape or g.dtype is not data.dtype:
                            g = _conform(g, data.shape, data.dtype, create_graph, node)
                        _add_leaf(leaf_grads, edge, g)
                    if early and id(edge) in early:
                        _leaf_delivered(early, leaf_grads, edge, create_graph, wrap)
                    continue
                if g is not None:
                    shape = parent._shape
                    one_output = shape is not None
                    if one_output:
                        dtype = parent._dtype
                    else:
                        shape, dtype = parent._outs[nr]
                    if create_graph or g.shape != shape or g.dtype is not dtype:
                        g = _conform(g, shape, dtype, create_graph, node)
                    if one_output:
                        old = get_buffer(parent)
                        buffers[parent] = g if old is None else old + g
                    else:
                        _add(buffers, parent, nr, g)
                left = deps[parent] - 1
                deps[parent] = left
                if left == 0:
                    push_ready(parent)
        # Drop the loop's last references, so leaf gradients can be kept without a copy.
        input_grads = grad = g = None
    finally:
        state.grad_enabled = prev_mode

    return _finish_leaves(leaf_grads, inputs, accumulate, captured, create_graph, wrap)


def _node_grads(node, grad, capture=None, captured=None, create_graph=False):
    """A node's input gradients off the fast path (hooks, autograd.grad captures, several
    outputs, a user Function, create_graph). The C loop calls it with the defaults."""
    single = node._shape is not None or len(node._outs) == 1
    if node._hooks or capture:
        grads = _node_hooks(node, [grad] if single else grad, capture, captured, create_graph)
        grad = grads[0] if single else grads
    if single and not create_graph and not node._as_tensors:
        return node.backward(node, grad)
    return node._run_backward([grad] if single else grad, create_graph)


def _count_consumers(starts: list) -> dict:
    """For every node reachable from ``starts``, how many edges from those nodes reach it."""
    deps: dict = {}
    todo = []
    for n in starts:
        if n not in deps:
            deps[n] = 0
            todo.append(n)
    while todo:
        node = todo.pop()
        k = node._nin
        for e in (node._e0,) if k == 1 else (node._e0, node._e1) if k == 2 else node._edges:
            if e is None:
                continue
            parent = e[0] if type(e) is tuple else e
            if not isinstance(parent, Function):
                continue
            if parent in deps:
                deps[parent] += 1
            else:
                deps[parent] = 1
                todo.append(parent)
    return deps


def _leaf_consumers(nodes) -> dict:
    """id(leaf) -> number of edges from ``nodes`` into it, for leaves with post-accumulate
    hooks (the engine finishes such a leaf once that many deliveries have come)."""
    counts: dict = {}
    for node in nodes:
        k = node._nin
        for e in (node._e0,) if k == 1 else (node._e0, node._e1) if k == 2 else node._edges:
            if e is not None and type(e) is not tuple and not isinstance(e, Function) \
                    and id(e) in post_accumulate_leaves:
                counts[id(e)] = counts.get(id(e), 0) + 1
    return counts


def _leaf_delivered(early: dict, leaf_grads: dict, leaf, create_graph: bool, wrap) -> None:
    """One of ``leaf``'s consumers has run; after the last, accumulate its .grad now."""
    left = early[id(leaf)] - 1
    if left:
        early[id(leaf)] = left
        return
    del early[id(leaf)]
    entry = leaf_grads.pop(id(leaf), None)
    if entry is not None:
        _accumulate_leaf(leaf, entry[1], create_graph, wrap)


def _conform(g, shape, dtype, create_graph: bool, node):
    """Undo broadcasting (sum back to ``shape``) and dtype changes, for every op, here."""
    raw = g._data if create_graph else g
    if raw.shape != shape:
        if not create_graph and not hasattr(raw, "shape"):
            raise RuntimeError(f"Function {node.name()} returned a gradient that is not an array")
        g = either.sum_to(g, shape, node)
        raw = g._data if create_graph else g
    if raw.dtype is not dtype and raw.dtype != dtype:
        g = either.astype(g, dtype)
    return g


def _add(buffers: dict, node, nr: int, g) -> None:
    n_out = len(node._outs)
    if n_out == 1:
        old = buffers.get(node)
        buffers[node] = g if old is None else old + g
    else:
        slot = buffers.get(node)
        if slot is None:
            slot = buffers[node] = [None] * n_out
        slot[nr] = g if slot[nr] is None else slot[nr] + g


def _add_leaf(leaf_grads: dict, leaf, g) -> None:
    entry = leaf_grads.get(id(leaf))
    if entry is None:
        leaf_grads[id(leaf)] = [leaf, g]
    else:
        entry[1] = entry[1] + g


def _call_hooks(hooks, g, create_graph):
    from chainrule.tensor import Tensor, wrap

    for hook in hooks:
        t = g if isinstance(g, Tensor) else wrap(g)
        out = hook(t)
        if out is not None:
            g = out if create_graph else (out._data if isinstance(out, Tensor) else out)
    return g


def _node_hooks(node, grads, capture, captured, create_graph):
    from chainrule.tensor import wrap

    grads = list(grads)
    for nr, g in enumerate(grads):
        if g is None:
            continue
        if node._hooks and nr in node._hooks:
            g = grads[nr] = _call_hooks(node._hooks[nr], g, create_graph)
        if node._retained and nr in node._retained:
            t = node._retained[nr]()
            if t is not None:
                value = g if create_graph else wrap(_own(g))
                t._grad = value if t._grad is None else t._grad + value
        if capture and (node, nr) in capture:
            captured[capture[(node, nr)]] = g
    return grads


def _own(g):
    """An array that no one else references or views (safe to keep as ``.grad``)."""
    if isinstance(g, either.np.ndarray):
        if g.base is None and g.flags.writeable and sys.getrefcount(g) <= 4:
            return g
    elif backend.is_gpu_array(g) and g.base is None and sys.getrefcount(g) <= 4:
        return g
    return either.np.array(g, copy=True) if isinstance(g, either.np.generic) else g.copy()


def _finish_leaves(leaf_grads, inputs, accumulate, captured, create_graph, wrap):
    wanted = None if inputs is None else {id(t): i for i, t in enumerate(inputs)}
    for key, (leaf, g) in leaf_grads.items():
        if leaf._hooks:
            g = _call_hooks(leaf._hooks, g, create_graph)
        if wanted is not None:
            if key not in wanted:
                continue
            if not accumulate:
                captured[wanted[key]] = g
                continue
        _accumulate_leaf(leaf, g, create_graph, wrap)
    if not accumulate:
        return [c if c is None or create_graph else wrap(c) for c in captured]
    for t, g in zip(inputs or (), captured or ()):
        # backward(inputs=[non_leaf]) fills the non-leaf's .grad, as in PyTorch
        if g is not None and t._grad_fn is not None and not t.retains_grad:
            value = g if create_graph else wrap(_own(g))
            t._grad = value if t._grad is None else t._grad + value
    return None


def _accumulate_leaf(leaf, g, create_graph: bool, wrap) -> None:
    """``leaf.grad += g`` (in place where that is safe), then its post-accumulate hooks."""
    old = leaf._grad
    if create_graph:
        leaf._grad = g if old is None else old + g
    elif old is None:
        leaf._grad = wrap(_own(g))
    elif old._requires_grad or old._data.shape != g.shape or not _writable(old._data):
        leaf._grad = wrap(old._data + g)
    else:
        either.np.add(old._data, g, out=old._data, casting="unsafe")
    if id(leaf) in post_accumulate_leaves:
        for hook in tuple(leaf.__dict__.get("_post_accumulate_grad_hooks", ())):
            hook(leaf)


def _writable(a) -> bool:
    return isinstance(a, either.np.ndarray) and a.flags.writeable

