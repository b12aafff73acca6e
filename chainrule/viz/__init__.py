"""See backprop: circuit diagrams, the interactive page and the staged forward/backward code.

``cr.viz.draw(out)`` draws the circuit with every wire's value and gradient (before or after
``out.backward()``), ``cr.viz.html(out, path)`` writes the page that steps through the forward
and backward pass, ``cr.viz.explain(fn, *inputs)`` prints the staged code
(``chainrule.viz.explain_command.main`` is the ``chainrule explain`` command),
``cr.viz.record()`` keeps every gate's inputs so large graphs can be drawn in full after
``backward()`` too.
"""

from __future__ import annotations

from typing import Any

from chainrule.viz import explain as _explain_module
from chainrule.viz import explain_command as _explain_command
from chainrule.viz import html as _html_module
from chainrule.viz.draw import Diagram, draw, record
from chainrule.viz.expr import ExprError
from chainrule.viz.expr import parse as parse_expr

explain = _explain_module.explain
# `import chainrule.viz.explain as m; m.main(argv)` finds the function above (the package
# attribute shadows the submodule), so the CLI entry points ride along on it.
explain.main = _explain_command.main
explain.trace = _explain_module.trace
html = _html_module.html

__all__ = ["draw", "html", "explain", "record", "show_lecture_circuits", "Diagram", "ExprError",
           "parse_expr"]


def show_lecture_circuits(out_dir: str = "out") -> Any:
    """Print the lecture's circuits and write their diagrams and pages (see chainrule.viz.demo)."""
    from chainrule.viz.demo import show_lecture_circuits as _show

    return _show(out_dir)
