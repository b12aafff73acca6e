"""Walking a recorded graph: its gates in order and their parents; and what a small graph keeps
for ``chainrule.viz`` when ``backward()`` frees it."""

from __future__ import annotations

import sys

from chainrule.autograd.function import Function
from chainrule.devices import np

__all__ = ["op_name", "parents", "graph_nodes", "nodes_in_order", "as_list", "keep",
           "kept_saved", "keep_max_nodes", "keep_max_bytes"]


# ---- a small graph keeps what a diagram needs (the engine calls keep) -------------------------
keep_max_nodes = 100        # graphs with more gates keep nothing (0 turns the hook off)
keep_max_bytes = 1 << 22    # nor do graphs whose saved values exceed 4 MiB


def keep(root_nodes: list, buffers: dict, deps: dict) -> None:
    """Called by the engine before a backward without ``retain_graph`` frees a graph of at most
    ``keep_max_nodes`` gates (``deps`` holds every gate): the root gates keep references to every
    gate's saved values and to their seed gradient, so ``chainrule.viz`` can still show every
    wire's value and gradient after ``backward()``. Nothing is copied; the references go when the
    output does. A second ``backward()`` still raises, as in PyTorch."""
    saved = [n._saved for n in deps]
    cupy = sys.modules.get("cupy")
    arrays = (np.ndarray,) if cupy is None else (np.ndarray, cupy.ndarray)
    if sum([s.nbytes for t in saved if t for s in t if type(s) in arrays]) > keep_max_bytes:
        return
    kept = dict(zip(map(id, deps), saved))  # ids, not gates: no reference cycle via the root
    for node in root_nodes:
        node._viz_kept = (kept, buffers.get(node))


def kept_saved(nodes: list):
    """``(saved values by id(gate), seed gradient of the first root)`` kept by :func:`keep` on
    one of ``nodes`` (the newest root first), or None."""
    for node in reversed(nodes):
        kept = getattr(node, "_viz_kept", None)
        if kept is not None:
            return kept
    return None


def op_name(node) -> str:
    """The gate's op name (its class name: ``Mul``, ``Sigmoid``, ``MyFunction``)."""
    return type(node).__name__


def parents(node) -> list:
    """Per input edge: ``None``, ``("leaf", tensor)`` or ``("node", parent, output_nr)``."""
    out = []
    for e in node._edges:
        if e is None:
            out.append(None)
        elif type(e) is tuple:
            out.append(("node", e[0], e[1]))
        elif isinstance(e, Function):
            out.append(("node", e, 0))
        else:
            out.append(("leaf", e))
    return out


def graph_nodes(outputs) -> list:
    """Every gate reachable from ``outputs`` (Tensors), in forward (topological) order."""
    return nodes_in_order(
        [t._grad_fn for t in as_list(outputs) if getattr(t, "_grad_fn", None) is not None])


def nodes_in_order(roots: list) -> list:
    """Every gate reachable from the ``roots`` gates, each after all of its parents."""
    order: list = []
    seen: set = set()
    stack = [(n, False) for n in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for e in reversed(node._edges):  # parents(node)'s gates, without building its list
            if e is None:
                continue
            parent = e[0] if type(e) is tuple else e
            if isinstance(parent, Function) and parent not in seen:
                stack.append((parent, False))
    return order


def as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]
