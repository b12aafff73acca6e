"""Pytrees for ``cr.func``: tuples, lists, dicts and namedtuples of leaves, flattened to a list
of leaves and a spec (None for a leaf, else (container type, dict keys or None, child specs))."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["_flatten", "_unflatten", "_spec_str", "_tree_map"]


def _flatten(tree: Any) -> tuple[list, Any]:
    """The leaves of ``tree`` (tuples, lists, dicts, namedtuples) in order, and its spec."""
    leaves: list = []

    def visit(node):
        if isinstance(node, (tuple, list)):
            return (type(node), None, tuple(visit(c) for c in node))
        if isinstance(node, dict):
            keys = tuple(node)
            return (dict, keys, tuple(visit(node[k]) for k in keys))
        leaves.append(node)
        return None

    return leaves, visit(tree)


def _unflatten(spec: Any, leaves: list) -> Any:
    """Rebuild the tree described by ``spec`` from ``leaves``."""
    it = iter(leaves)

    def build(s):
        if s is None:
            return next(it)
        kind, keys, children = s
        values = [build(c) for c in children]
        if kind is dict:
            return dict(zip(keys, values))
        if kind is tuple or kind is list:
            return kind(values)
        if hasattr(kind, "_fields"):  # namedtuple
            return kind(*values)
        return kind(values)

    return build(spec)


def _spec_str(spec: Any) -> str:
    """``*`` per leaf inside the containers' brackets, e.g. ``(*, [*, *])``."""
    if spec is None:
        return "*"
    kind, keys, children = spec
    parts = [_spec_str(c) for c in children]
    if kind is dict:
        return "{" + ", ".join(f"{k!r}: {p}" for k, p in zip(keys, parts)) + "}"
    if issubclass(kind, list):
        return "[" + ", ".join(parts) + "]"
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _tree_map(fn: Callable, tree: Any) -> Any:
    leaves, spec = _flatten(tree)
    return _unflatten(spec, [fn(x) for x in leaves])
