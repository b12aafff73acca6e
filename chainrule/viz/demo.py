"""The lecture's circuits, staged as code and drawn: ``show_lecture_circuits(out_dir)``."""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["LECTURE_CIRCUITS", "show_lecture_circuits", "draw_circuit", "page_circuit"]


def _chain_rule(x, y, z):
    return (x + y) * z


def _sigmoid_neuron(w0, x0, w1, x1, w2):
    import chainrule as cr

    # the lecture's circuit: the sigmoid drawn as its gates, 1/(1 + exp(-(w·x + b)))
    return 1 / (1 + cr.exp(-(w0 * x0 + w1 * x1 + w2)))


def _exercise(x, y):
    import chainrule as cr

    return (x + cr.sigmoid(y)) / (cr.sigmoid(x) + (x + y) ** 2)


def _flow_patterns(x, y, z, w):
    import chainrule as cr

    return 2 * (x * y + cr.maximum(z, w))


# name -> (title, function, inputs)
LECTURE_CIRCUITS: dict[str, tuple[str, Callable, tuple]] = {
    "chain_rule": ("f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4", _chain_rule,
                   (-2.0, 5.0, -4.0)),
    "sigmoid_neuron": ("f(w, x) = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) at w = (2, -3, -3), "
                       "x = (-1, -2)", _sigmoid_neuron, (2.0, -1.0, -3.0, -2.0, -3.0)),
    "exercise": ("f(x, y) = (x + σ(y)) / (σ(x) + (x + y)²) at x = 3, y = -4", _exercise,
                 (3.0, -4.0)),
    "flow_patterns": ("f = 2 (x y + max(z, w)) at x = 3, y = -4, z = 2, w = -1: add "
                      "distributes, max routes, mul swaps", _flow_patterns,
                      (3.0, -4.0, 2.0, -1.0)),
}


def draw_circuit(name: str, path: str | None = None, format: str | None = None):
    """Draw one of :data:`LECTURE_CIRCUITS` with its inputs named; returns the Diagram."""
    from chainrule.viz.draw import draw
    from chainrule.viz.explain import trace

    title, fn, inputs = LECTURE_CIRCUITS[name]
    tr = trace(fn, *inputs)
    tr.output.backward()  # the natural order: backward first, then draw
    names = {leaf: n for n, leaf in zip(tr.names, tr.leaves)}
    names[tr.output] = "f"
    return draw(tr.output, path=path, format=format, names=names, title=title)


def page_circuit(name: str, path: str | None = None) -> str:
    """The interactive page (cr.viz.html) of one of :data:`LECTURE_CIRCUITS`."""
    from chainrule.viz.explain import trace
    from chainrule.viz.html import html

    title, fn, inputs = LECTURE_CIRCUITS[name]
    tr = trace(fn, *inputs)
    tr.output.backward()
    names = {leaf: n for n, leaf in zip(tr.names, tr.leaves)}
    names[tr.output] = "f"
    return html(tr.output, path, names=names, title=title)


def show_lecture_circuits(out_dir: str = "out") -> list[str]:
    """Print each lecture circuit as staged forward/backward code and write its diagram
    (SVG, and PNG where matplotlib is installed) and its interactive page into ``out_dir``;
    returns the paths written."""
    from chainrule.viz.explain import explain

    os.makedirs(out_dir, exist_ok=True)
    try:
        import matplotlib  # noqa: F401  (PNG needs it; SVG and HTML do not)
        formats = ("svg", "png")
    except ImportError:
        formats = ("svg",)
    written = []
    for name, (title, fn, inputs) in LECTURE_CIRCUITS.items():
        print(f"== {name}: {title}")
        print(explain(fn, *inputs))
        diagram = draw_circuit(name)
        for fmt in formats:
            written.append(diagram.save(os.path.join(out_dir, f"{name}.{fmt}")))
        page = os.path.join(out_dir, f"{name}.html")
        page_circuit(name, page)
        written.append(page)
    if formats == ("svg",):
        print("matplotlib is not installed, so no PNG files: pip install matplotlib")
    print("diagrams: " + ", ".join(written))
    print("open the .html pages in a browser to step through the forward and backward pass")
    return written


if __name__ == "__main__":
    import sys

    show_lecture_circuits(sys.argv[1] if len(sys.argv) > 1 else "out")
