"""See backprop: circuit diagrams of the recorded graph and the staged forward/backward code."""

from __future__ import annotations

from typing import Any

__all__ = ["draw", "explain", "record", "show_lecture_circuits", "ExprError", "parse_expr"]


def draw(output: Any, path: str | None = None, format: str = "svg", **kwargs: Any):
    """The circuit of gates that produced ``output``, each edge labelled value/gradient."""
    from chainrule.viz.draw import draw as _draw

    return _draw(output, path=path, format=format, **kwargs)


def explain(fn: Any, *inputs: Any, format: str = "text", **kwargs: Any) -> str:
    """The staged forward pass and backward pass of ``fn`` at ``inputs``, as code."""
    from chainrule.viz.explain import explain as _explain

    return _explain(fn, *inputs, format=format, **kwargs)


def record():
    """Context manager: gates created inside keep their inputs and sites (values for draw)."""
    from chainrule.viz.draw import record as _record

    return _record()


def show_lecture_circuits(out_dir: str = "out") -> list:
    """Print and draw the lecture's circuits (see chainrule.viz.demo)."""
    from chainrule.viz.demo import show_lecture_circuits as _show

    return _show(out_dir)


def parse_expr(text: str, variables: Any):
    """Check an arithmetic expression against the whitelist; returns a callable Expr."""
    from chainrule.viz.expr import parse

    return parse(text, variables)


def __getattr__(name: str):
    if name == "ExprError":
        from chainrule.viz.expr import ExprError

        return ExprError
    raise AttributeError(f"module 'chainrule.viz' has no attribute {name!r}")
