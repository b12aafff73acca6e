"""Circuit diagrams of the recorded graph, drawn the way the lecture draws them.

``draw(out)`` shows every wire with its forward value (green, above) and its gradient (red,
below), before or after ``out.backward()``. Gates created inside an ``nn.Module`` are grouped in
a labelled box (or drawn as one box with ``collapse=True``, the overview of a big model); custom
``Function`` gates get a dashed box; long repeated chains are folded and ``max_nodes`` bounds
the drawing. The layout and the SVG are computed here in Python, PNG and PDF are drawn by
matplotlib: no system package is needed.
"""

from __future__ import annotations

import os
from typing import Any

from chainrule._state import state
from chainrule.viz.circuit import build, summarize, user_frame
from chainrule.viz.render import FLAG, GREEN, RED, dot, place, raster, svg

__all__ = ["draw", "record", "summarize", "Diagram", "GREEN", "RED", "FLAG"]

_FORMATS = ("svg", "png", "pdf", "dot")


class record:
    """Context manager: gates created inside keep their inputs and creation sites, so every
    value can be drawn even for graphs too large to be kept after ``backward()``."""

    def __enter__(self) -> record:
        self.prev = (state.record_inputs, state.record_sites)
        state.record_inputs = state.record_sites = True
        return self

    def __exit__(self, *exc: Any) -> None:
        state.record_inputs, state.record_sites = self.prev


class Diagram:
    """What :func:`draw` returns: shows itself inline in Jupyter (``_repr_svg_``) and writes
    SVG, PNG, PDF or DOT with :meth:`save`."""

    def __init__(self, drawing) -> None:
        self.drawing = drawing
        self.circuit = drawing.circuit
        self._svg: str | None = None

    @property
    def notes(self) -> tuple:
        """Why something is not shown (a freed graph, the node limit)."""
        return self.circuit.notes

    @property
    def source(self) -> str:
        """Graphviz DOT source of the same circuit."""
        return dot(self.circuit)

    def svg(self) -> str:
        if self._svg is None:
            self._svg = svg(self.drawing)
        return self._svg

    def png(self, scale: float = 2.0) -> bytes:
        return raster(self.drawing, "png", scale)

    def pdf(self) -> bytes:
        return raster(self.drawing, "pdf")

    def save(self, path: str, format: str | None = None) -> str:
        """Write the diagram to ``path`` (the format from its extension unless given)."""
        fmt = _format(path, format)
        if fmt == "svg":
            data: bytes = self.svg().encode("utf-8")
        elif fmt == "dot":
            data = self.source.encode("utf-8")
        else:
            data = raster(self.drawing, fmt)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def table(self) -> str:
        """Every wire as a line of text: ``source → gate: value, gradient``."""
        from chainrule.viz.render import wire_text

        label = {b.id: b.label for b in self.circuit.boxes}
        rows = []
        for w in self.circuit.wires:
            t = wire_text(w, named=False)
            src = w.name or label.get(w.src, w.src)
            rows.append((f"{src} → {label.get(w.dst, w.dst)}", t.value or "?", t.grad or "?"))
        width = max((len(r[0]) for r in rows), default=0)
        return "\n".join(f"{a:<{width}}  value {v:<8} gradient {g}" for a, v, g in rows)

    def _repr_svg_(self) -> str:
        return self.svg()

    def __repr__(self) -> str:
        return (f"<Diagram: {len(self.circuit.boxes)} boxes, {len(self.circuit.wires)} wires"
                f"{'; ' + '; '.join(self.notes) if self.notes else ''}>")


def _format(path: str | None, format: str | None) -> str:
    fmt = format
    if fmt is None and path is not None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        fmt = "dot" if ext == "gv" else ext or "svg"
    fmt = (fmt or "svg").lower()
    if fmt == "gv":
        fmt = "dot"
    if fmt not in _FORMATS:
        raise ValueError(f"draw: format must be 'svg', 'png', 'pdf' or 'dot', got {fmt!r}")
    return fmt


def draw(output, path: str | None = None, format: str | None = None, *,
         names: dict | None = None, grads: bool = True, collapse: bool | int = False,
         fold: bool | str = "auto", max_nodes: int = 150, show_sites: bool = False,
         title: str | None = None, max_width: float | None = 1100) -> Diagram:
    """Draw the circuit that produced ``output`` (a Tensor or a list of Tensors).

    Every wire shows its forward value (green, above) and the gradient of the first output
    flowing back along it (red, below), with the seed of the last ``backward()`` (ones before
    any). Works before and after ``output.backward()``: a graph of at most
    ``chainrule.autograd.graph.keep_max_nodes`` gates keeps what the diagram needs. Inputs and
    intermediates are named by ``names`` (``{tensor: "w0"}`` or ``{"w0": tensor}``), then by
    ``Tensor.name`` (``cr.tensor(2., name="w0")``), then by the caller's variables.
    ``collapse=True`` draws each top-level module as one box (the overview of a large model;
    ``collapse=2`` one level deeper); ``fold`` folds repeated chains; ``max_nodes`` bounds the
    drawing; a drawing wider than ``max_width`` pixels wraps into rows, module by module. With
    ``path``, writes SVG, PNG, PDF or DOT (``format`` or the extension). Returns a
    :class:`Diagram`.
    """
    fmt = _format(path, format) if path is not None or format is not None else None
    circuit = build(output, names=names, grads=grads, collapse=collapse, fold=fold,
                    max_nodes=max_nodes, show_sites=show_sites, title=title,
                    frame=user_frame())
    diagram = Diagram(place(circuit, max_width))
    if path is not None:
        diagram.save(path, fmt)
    return diagram
