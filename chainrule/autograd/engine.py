"""The backward pass: one iterative traversal, linear in the size of the graph.

1. Count, for every node reachable from the roots, how many consumers will send it a gradient.
2. Start from the roots; a node runs its backward once all its consumers have delivered
   (Kahn's algorithm), so no recursion and no sorting. Gradients arriving at a fork are added
   in a dict keyed by node (into the buffer's own array once only the dict holds it:
   ``autograd/accumulate.py``) and popped when the node runs.
3. Broadcasting and dtype changes are undone here, once, for every op: each gradient is summed
   back to its input's shape and cast to its input's dtype.

Gradients are raw arrays in a plain backward and Tensors under ``create_graph=True``, when the
pass itself is recorded (grad mode is on while it runs) so it can be differentiated again. The
arithmetic below (``+``, ``either.sum_to``, ``either.astype``) works on both; the mode matters
only where a rule is called (:func:`call_backward`) and where leaves keep their gradient.
"""

from __future__ import annotations

import sys
import threading

from chainrule import batching as _batching
from chainrule import devices
from chainrule._state import current
from chainrule.autograd.function import _SCALAR_META, Function, keep_in_collector
from chainrule.autograd import graph
from chainrule.autograd.accumulate import add_into
from chainrule.autograd.graph import nodes_in_order, parents
from chainrule.kernels import kernels_for
from chainrule.ops import either
from chainrule.tensor import TensorBase, post_hooked_leaves, wrap

__all__ = ["run_backward", "call_backward", "GraphCtx"]

_leaf_lock = threading.Lock()  # backward from several threads into one leaf must not lose adds


def run_backward(roots: list, root_grads: list, retain_graph: bool, create_graph: bool,
                 inputs: list | None = None, accumulate: bool = True) -> list | None:
    """Backpropagate ``root_grads`` from ``roots``.

    ``accumulate=True`` adds into ``.grad`` of leaves (all leaves, or only ``inputs``);
    ``accumulate=False`` returns the gradient of each of ``inputs`` instead (autograd.grad).
    """
    buffers: dict = {}     # node -> gradient of its output (a list per output for several)
    leaf_grads: dict = {}  # id(leaf) -> [leaf, gradient, owned: may .grad keep it without a copy]
    root_nodes = []
    for t, g in zip(roots, root_grads):
        if t._grad_fn is None:
            _add_leaf(leaf_grads, t, g, False)
        else:
            _add(buffers, t._grad_fn, t._nr, g)
            root_nodes.append(t._grad_fn)
    deps = count_consumers(root_nodes)
    if not retain_graph and len(deps) <= graph.keep_max_nodes:  # a small graph keeps what
        graph.keep(root_nodes, buffers, deps)                     # chainrule.viz draws
    # leaves with post-accumulate hooks get their .grad (and call their hooks) as soon as their
    # last consumer has run, so that DDP's all-reduces overlap the rest of the backward
    early = _leaf_consumers(deps) if post_hooked_leaves and accumulate and inputs is None \
        else None
    needed = capture = captured = None
    if inputs is not None:
        needed = _needed_nodes(root_nodes, inputs)
        capture = {(t._grad_fn, t._nr): i for i, t in enumerate(inputs) if t._grad_fn is not None}
        captured = [None] * len(inputs)
    switches = current()
    anomaly = switches.anomaly
    plain = not create_graph and not capture and not anomaly
    prev_mode = switches.grad_enabled
    switches.grad_enabled = create_graph
    try:
        ready = list(dict.fromkeys([n for n in root_nodes if deps[n] == 0]))
        while ready:
            node = ready.pop()
            grad = buffers.pop(node, None)
            edges = node._edges
            if grad is None or (needed is not None and node not in needed):
                input_grads = ()  # nothing flows: just release the parents
            else:
                if plain and node._hooks is None and len(node._outs) == 1 and type(node).on_arrays:
                    input_grads = node.backward(node, grad)  # the common case, inline
                else:
                    if node._hooks or capture:
                        grad = _node_hooks(node, grad, capture, captured, create_graph)
                    input_grads = call_backward(node, grad, create_graph)
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
                    node._versions = None
            for i, edge in enumerate(edges):
                if edge is None:
                    continue
                g = input_grads[i] if input_grads else None
                if type(edge) is tuple:
                    parent, nr = edge
                    if parent is None:  # (compiled, a typed Function may be None: never read it)
                        raise RuntimeError(f"function {node.name()} has a broken edge {edge!r}")
                elif isinstance(edge, Function):
                    parent, nr = edge, 0
                else:  # a leaf
                    if g is not None:
                        data = edge._data
                        if create_graph or g.shape != data.shape or g.dtype is not data.dtype:
                            g = _conform(g, data.shape, data.dtype, node)
                        _add_leaf(leaf_grads, edge, g, True)
                    if early and id(edge) in early:
                        _leaf_delivered(early, leaf_grads, edge, create_graph)
                    continue
                if g is not None:
                    meta = parent._outs[nr]  # (a NumPy scalar's metadata is its type's)
                    if create_graph or (_SCALAR_META.get(type(g)) is not meta and (
                            g.shape != meta[0] or g.dtype is not meta[1])):
                        g = _conform(g, meta[0], meta[1], node)
                    _add(buffers, parent, nr, g)
                left = deps[parent] - 1
                deps[parent] = left
                if left == 0:
                    ready.append(parent)
        # Drop the loop's last references, so leaf gradients can be kept without a copy.
        input_grads = grad = g = None
    finally:
        switches.grad_enabled = prev_mode
    return _finish_leaves(leaf_grads, inputs, accumulate, captured, create_graph)


# ---- running one gate's backward ----------------------------------------------------------------
def call_backward(node, grad, create_graph: bool = False) -> tuple:
    """The gradients for ``node``'s inputs, given ``grad``, the gradient of its output (a list,
    one per output, for a gate with several): arrays in a plain pass, Tensors under
    ``create_graph``. The one place where a gate's rule is called."""
    several = len(node._outs) > 1
    grads = _materialized(node, grad, create_graph) if several else (grad,)
    if node.on_arrays:  # an Op: the ctx it sees says which values it computes on
        cls = type(node)
        if create_graph:
            result = (cls.differentiable_backward or cls.backward)(GraphCtx(node), *grads)
        else:
            result = cls.backward(node, *grads)
    else:
        result = _user_backward(node, grads, create_graph)
    return result if type(result) is tuple else (result,)


def _materialized(node, grads, create_graph: bool) -> list:
    """Zeros for the outputs of a several-output gate that received no gradient (as torch's
    ``materialize_grads``), on the device of one that did."""
    if node.on_arrays or node._materialize_grads is not False:
        given = next((g for g in grads if g is not None), None)
        like = given._data if isinstance(given, TensorBase) else given
        out = list(grads)
        for nr, g in enumerate(grads):
            meta = node._outs[nr]
            if g is None and meta is not None:
                z = devices.xp_of(like).zeros(meta[0], meta[1])
                out[nr] = wrap(z) if create_graph else z
        return out
    return list(grads)


def _user_backward(node, grads, create_graph: bool) -> tuple:
    """A user Function sees Tensors; in a plain pass its results go back to arrays."""
    tensors = [g if g is None or isinstance(g, TensorBase) else wrap(g) for g in grads]
    if len(tensors) == 1 and tensors[0] is None and node._materialize_grads is not False:
        meta = node._outs[0]
        tensors = [wrap(devices.np.zeros(meta[0], meta[1]))]
    result = type(node).backward(node, *tensors)
    if type(result) is not tuple:
        result = (result,)
    n = len(node._edges)
    if len(result) != n:
        if len(result) > n and all(r is None for r in result[n:]):
            result = result[:n]
        else:
            raise RuntimeError(f"function {node.name()} returned an incorrect number of "
                               f"gradients (expected {n}, got {len(result)})")
    for i, (r, is_tensor) in enumerate(zip(result, node._tensor_args)):
        if r is not None and not is_tensor:
            raise RuntimeError(
                f"function {node.name()} returned a gradient different than None at position "
                f"{i + 1}, but the corresponding forward input was not a Tensor"
            )
    if create_graph:
        return tuple(r if r is None or isinstance(r, TensorBase) else wrap(r) for r in result)
    return tuple(r._data if isinstance(r, TensorBase) else r for r in result)


class GraphCtx:
    """What an Op's backward sees under ``create_graph``: its node, with the saved values
    rebuilt as the graph-connected Tensors they were (so the backward is recorded)."""

    __slots__ = ("node",)

    def __init__(self, node) -> None:
        self.node = node

    def __getattr__(self, name: str):
        return getattr(self.node, name)

    @property
    def saved_tensors(self) -> tuple:
        node = self.node
        return tuple(_as_graph_tensor(node, s, src)
                     for s, src in zip(node.saved_tensors, node._saved_from or ()))


def _as_graph_tensor(node, value, src):
    """Saved value ``value`` (from input ``src``, the output, or a constant) as a Tensor."""
    if value is None or not hasattr(value, "dtype"):
        return value  # None or a Python scalar argument
    if src is None:
        return wrap(value)
    if src == -1:
        return wrap(value, node, 0)
    if type(src) is tuple:  # ("out", k)
        return wrap(value, node, src[1])
    edge = node._edges[src]
    if edge is None:
        return wrap(value)
    if type(edge) is tuple:
        return wrap(value, edge[0], edge[1])
    if isinstance(edge, Function):
        return wrap(value, edge, 0)
    return edge  # a leaf Tensor


# ---- the traversal's bookkeeping ----------------------------------------------------------------
def count_consumers(starts: list) -> dict:
    """For every node reachable from ``starts``, how many edges from those nodes reach it."""
    deps: dict = {}
    todo = []
    for n in starts:
        if n not in deps:
            deps[n] = 0
            todo.append(n)
    while todo:
        node = todo.pop()
        for e in node._edges:
            if e is None:
                continue
            parent = e[0] if type(e) is tuple else e
            if not isinstance(parent, Function):
                continue  # a leaf
            if parent in deps:
                deps[parent] += 1
            else:
                deps[parent] = 1
                todo.append(parent)
    return deps


def _needed_nodes(roots: list, inputs: list) -> set:
    """Nodes on some path from the roots to one of ``inputs`` (others need not run)."""
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


def _conform(g, shape, dtype, node):
    """Undo broadcasting (sum back to ``shape``) and dtype changes, for every op, here."""
    if not hasattr(g, "shape"):
        raise RuntimeError(f"Function {node.name()} returned a gradient that is not an array")
    if _batching.used:  # cr.func.vmap has run: sum out the batches of finished levels
        g = _batching.conform(g, shape)
    if tuple(g.shape) != tuple(shape):
        g = either.sum_to(g, shape, node)
    if either.dtype_of(g) != dtype:
        g = either.astype(g, dtype)
    return g


def _leaf_consumers(nodes) -> dict:
    """id(leaf) -> how many edges of ``nodes`` reach it, for leaves with post-accumulate hooks."""
    counts: dict = {}
    for node in nodes:
        for e in node._edges:
            if e is not None and type(e) is not tuple and not isinstance(e, Function) \
                    and id(e) in post_hooked_leaves:
                counts[id(e)] = counts.get(id(e), 0) + 1
    return counts


def _leaf_delivered(early: dict, leaf_grads: dict, leaf, create_graph: bool) -> None:
    """One of ``leaf``'s consumers has run; after the last, its .grad is accumulated now."""
    left = early[id(leaf)] - 1
    if left:
        early[id(leaf)] = left
        return
    del early[id(leaf)]
    entry = leaf_grads.pop(id(leaf), None)
    if entry is None:
        return
    with _leaf_lock:
        g = entry[1]
        if leaf._hooks:
            g = _call_hooks(leaf._hooks, g, create_graph)[0]
        if create_graph:
            leaf._grad = g if leaf._grad is None else leaf._grad + g
            keep_in_collector(leaf._grad)  # its history may lead back to the leaf
        else:
            _accumulate(leaf, g, False)
    for hook in list(leaf._post_hooks or ()):
        hook(leaf)


def _add(buffers: dict, node, nr: int, g) -> None:
    n_out = len(node._outs)
    if n_out == 1:
        old = buffers.get(node)
        if old is None:
            buffers[node] = g
        else:  # (a NumPy scalar cannot be added in place: no call to add_into for it)
            buffers[node] = old + g if type(old) is type(g) and _SCALAR_META.get(type(g)) \
                else add_into(old, g)
    else:
        slot = buffers.get(node)
        if slot is None:
            slot = buffers[node] = [None] * n_out
        slot[nr] = g if slot[nr] is None else slot[nr] + g


def _add_leaf(leaf_grads: dict, leaf, g, owned: bool) -> None:
    entry = leaf_grads.get(id(leaf))
    if entry is None:
        leaf_grads[id(leaf)] = [leaf, g, owned]
    else:
        entry[1] = entry[1] + g  # a new array (or recorded Tensor): ours to keep
        entry[2] = True


# ---- hooks --------------------------------------------------------------------------------------
def _call_hooks(hooks, g, create_graph: bool):
    """Run tensor hooks on gradient ``g``; each may return a replacement, which must keep the
    gradient's shape and dtype (torch's checks). Returns (gradient, replaced)."""
    replaced = False
    for hook in list(hooks):
        t = g if isinstance(g, TensorBase) else wrap(g)
        out = hook(t)
        if out is None:
            continue
        name = getattr(hook, "__name__", type(hook).__name__)
        if not isinstance(out, TensorBase):
            raise TypeError(f"expected Variable, but hook returned '{type(out).__name__}'")
        if tuple(out._data.shape) != tuple(t._data.shape):
            raise RuntimeError(f"hook '{name}' has changed the size of value")
        if out._data.dtype != t._data.dtype:
            raise RuntimeError(f"hook '{name}' has changed the type of value (was "
                               f"{t.type()} got {out.type()})")
        g = out if create_graph else out._data
        replaced = True
    return g, replaced


def _node_hooks(node, grad, capture, captured, create_graph):
    """Hooks and retain_grad of the non-leaf tensors a node produced, and the gradients that
    autograd.grad asked for (``capture``)."""
    several = len(node._outs) > 1
    grads = list(grad) if several else [grad]
    for nr, g in enumerate(grads):
        if g is None:
            continue
        if node._hooks and nr in node._hooks:
            g = grads[nr] = _call_hooks(node._hooks[nr], g, create_graph)[0]
        if node._retained and nr in node._retained:
            t = node._retained[nr]()
            if t is not None:
                value = g if create_graph else wrap(_owned_copy(g))
                t._grad = value if t._grad is None else t._grad + value
                if create_graph:  # (t's gate may hold t: its history may lead back to t)
                    keep_in_collector(t._grad)
        if capture and (node, nr) in capture:
            captured[capture[(node, nr)]] = g
    return grads if several else grads[0]


# ---- leaves --------------------------------------------------------------------------------------
def _finish_leaves(leaf_grads, inputs, accumulate, captured, create_graph):
    wanted = None if inputs is None else {id(t): i for i, t in enumerate(inputs)}
    done = []
    recorded = []  # .grad values with a history (create_graph)
    sole = object()  # referenced by one variable: what an unshared gradient's count must equal
    with _leaf_lock:
        for key, entry in leaf_grads.items():
            leaf, g, owned = entry
            entry[1] = None
            if leaf._hooks:
                g, replaced = _call_hooks(leaf._hooks, g, create_graph)
                owned = owned and not replaced  # a hook's tensor may be kept by its caller
            if wanted is not None:
                if key not in wanted:
                    continue
                if not accumulate:
                    captured[wanted[key]] = g
                    continue
            if create_graph:
                leaf._grad = g if leaf._grad is None else leaf._grad + g
                recorded.append(leaf._grad)
            else:
                # .grad may keep g itself only if nothing else holds or views it (a rule may
                # pass on the gradient it was given, or a view of it)
                owned = owned and devices.is_array(g) and g.base is None and (
                    sys.getrefcount(g) == sys.getrefcount(sole))
                _accumulate(leaf, g, owned)
            if leaf._post_hooks:
                done.append(leaf)
    if recorded:  # their histories may lead back to the leaves: cycles the collector must see
        keep_in_collector(*recorded)
    for leaf in done:
        for hook in list(leaf._post_hooks):
            hook(leaf)
    if not accumulate:
        return [c if c is None or create_graph else wrap(c) for c in captured]
    for t, g in zip(inputs or (), captured or ()):
        # backward(inputs=[non_leaf]) fills the non-leaf's .grad, as in PyTorch
        if g is not None and t._grad_fn is not None and not t.retains_grad:
            value = g if create_graph else wrap(_owned_copy(g))
            t._grad = value if t._grad is None else t._grad + value
            if create_graph:
                keep_in_collector(t._grad)
    return None


def _accumulate(leaf, g, owned: bool) -> None:
    """leaf.grad += g, in place where that is safe (torch's AccumulateGrad)."""
    old = leaf._grad
    if old is None:
        leaf._grad = wrap(g if owned and _writable(g) else _owned_copy(g))
    elif old._requires_grad or old._data.shape != g.shape or not _writable(old._data):
        leaf._grad = wrap(old._data + g)
    else:
        either.np.add(old._data, g, out=old._data, casting="unsafe")
        old._bump_version()


def _owned_copy(g):
    return either.np.array(g, copy=True) if isinstance(g, either.np.generic) else \
        kernels_for(g).copy(g)


def _writable(a) -> bool:
    return isinstance(a, either.np.ndarray) and a.flags.writeable
