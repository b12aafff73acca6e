"""Walking a recorded graph: its gates in order and their parents."""

from __future__ import annotations

from chainrule.autograd.function import Function

__all__ = ["op_name", "parents", "graph_nodes", "nodes_in_order", "as_list"]


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
        for p in reversed(parents(node)):
            if p is not None and p[0] == "node" and p[1] not in seen:
                stack.append((p[1], False))
    return order


def as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]
