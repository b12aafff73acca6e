"""Drawing a placed circuit: SVG written here, PNG and PDF through matplotlib (no system package).

The lecture's style: gates are circles (or boxes for long names), inputs are names on the left,
and every wire carries its forward value in green above it and its gradient in red below it.
A value or gradient with a NaN or an Inf is drawn in pink with a ⚠ and a thick wire.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from chainrule.viz.circuit import Circuit, summarize
from chainrule.viz.layout import Edge, Item, Layout, compute, text_width

__all__ = ["Drawing", "place", "svg", "raster", "dot", "GREEN", "RED", "FLAG"]

GREEN, RED, FLAG, INK, MUTED = "#1a7f37", "#cf222e", "#d63384", "#24292f", "#57606a"
FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"
SIZE_LABEL, SIZE_NAME, SIZE_SYMBOL, SIZE_SUB, SIZE_TITLE = 11.0, 12.0, 14.0, 9.0, 13.0
_FILL = {"gate": "#f6f8fa", "module": "#eef2ff", "fold": "#fff8c5", "more": "#ffffff"}


@dataclass
class WireText:
    """What a wire's label says: the value line (above), the gradient line (below)."""

    value: str = ""
    grad: str = ""
    bad_value: bool = False
    bad_grad: bool = False


@dataclass
class Drawing:
    circuit: Circuit
    layout: Layout
    texts: dict        # wire id -> WireText
    title_lines: list


def wire_text(w, named: bool = True) -> WireText:
    t = WireText()
    if w.value is not None:
        t.value, t.bad_value = summarize(w.value)
        if named and w.name:
            t.value = f"{w.name} = {t.value}"
    if w.grad is not None:
        t.grad, t.bad_grad = summarize(w.grad, grad=True)
    return t


def _box_size(b) -> tuple[float, float, str]:
    if b.kind in ("leaf", "const"):
        w = text_width(b.label, SIZE_NAME) * 1.1 + (text_width(" " + b.sub, SIZE_SUB) if b.sub
                                                      else 0)
        h = 18.0
        if b.grad is not None:
            w = max(w, text_width("Σ " + summarize(b.grad, grad=True)[0], SIZE_LABEL))
            h = 32.0
        return w + 2, h, "text-right"
    if b.kind == "output":
        return text_width(b.label, SIZE_NAME) * 1.1 + 2, 18.0, "text-left"
    if b.kind == "gate":
        ws = text_width(b.label, SIZE_SYMBOL) * 1.08
        wsub = text_width(b.sub, SIZE_SUB) if b.sub else 0
        if len(b.label) <= 5 and wsub <= 44:
            return max(36.0, ws + 14, wsub + 12), max(36.0, ws + 14, wsub + 12), "circle"
        return max(ws, wsub) + 20, 36.0 if b.sub else 26.0, "rect"
    if b.kind == "more":
        return text_width(b.label, SIZE_SUB) + 16, 24.0, "rect"
    return text_width(b.label, SIZE_NAME) + 24, 30.0, "rect"


def place(circuit: Circuit, max_width: float | None = 1100.0) -> Drawing:
    """Sizes for every box and label, then the layout (see chainrule.viz.layout)."""
    items, edges, texts = [], [], {}
    for b in circuit.boxes:
        w, h, shape = _box_size(b)
        items.append(Item(b.id, w, h, shape, b.scope))
    for w in circuit.wires:
        t = texts[w.id] = wire_text(w)
        lw = max(text_width(t.value, SIZE_LABEL), text_width(t.grad, SIZE_LABEL))
        edges.append(Edge(w.id, w.src, w.dst, (lw + 8, 30.0) if lw else None))
    title_lines = [s for s in ([circuit.title] if circuit.title else []) + list(circuit.notes)]
    top = 20.0 * len(title_lines)
    layout = compute(items, edges, max_width=max_width, top=top)
    if title_lines:
        layout.width = max(layout.width, max(text_width(s, SIZE_TITLE) for s in title_lines) + 24)
    return Drawing(circuit, layout, texts, title_lines)


# ---- SVG ----------------------------------------------------------------------------------------
def _esc(s: str) -> str:
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _f(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def path_data(route) -> str:
    pts = route.points
    d = [f"M{_f(pts[0][0])},{_f(pts[0][1])}"]
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if (i - 1) in route.straight or abs(y1 - y0) < 0.5:
            d.append(f"L{_f(x1)},{_f(y1)}")
        else:
            dx = max((x1 - x0) / 2, 8)
            d.append(f"C{_f(x0 + dx)},{_f(y0)} {_f(x1 - dx)},{_f(y1)} {_f(x1)},{_f(y1)}")
    return " ".join(d)


def svg(drawing: Drawing, *, ids: bool = True, data=None) -> str:
    """The drawing as a standalone SVG document, with an ``id`` on every box and wire;
    ``data(array)`` (a list, or None) adds the numbers as ``data-value``/``data-grad``."""
    c, lay = drawing.circuit, drawing.layout
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cr-circuit" '
           f'width="{_f(lay.width)}" height="{_f(lay.height)}" '
           f'viewBox="0 0 {_f(lay.width)} {_f(lay.height)}" font-family="{FONT}">',
           '<defs><marker id="cr-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
           'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" '
           f'fill="{MUTED}"/></marker></defs>',
           '<rect width="100%" height="100%" fill="#ffffff"/>']
    for k, line in enumerate(drawing.title_lines):
        color = INK if k == 0 and c.title else MUTED
        out.append(f'<text x="12" y="{18 + 20 * k}" font-size="{SIZE_TITLE}" fill="{color}">'
                   f'{_esc(line)}</text>')
    for key, pts, _d in lay.clusters:
        cl = c.clusters[key]
        dash = ' stroke-dasharray="5,3"' if cl.dashed else ""
        outline = " ".join(f"{_f(x)},{_f(y)}" for x, y in pts)
        out.append(f'<g class="cluster"><polygon points="{outline}" fill="#f6f8fa" '
                   f'fill-opacity="0.6" stroke="#8c959f" stroke-linejoin="round"{dash}/>'
                   f'<text x="{_f(pts[0][0] + 6)}" y="{_f(pts[0][1] + 13)}" font-size="10" '
                   f'fill="{MUTED}">{_esc(cl.label)}</text></g>')
    for w in c.wires:
        route, t = lay.routes.get(w.id), drawing.texts[w.id]
        if route is None:
            continue
        bad = t.bad_value or t.bad_grad
        stroke = FLAG if bad else MUTED
        width = "2.2" if bad else "1.3"
        dash = ' stroke-dasharray="4,3"' if w.src == "more" else ""
        attrs = (f' id="{w.id}" data-src="{w.src}" data-dst="{w.dst}"' if ids else "")
        if data is not None:
            for attr, arr in (("data-value", w.value), ("data-grad", w.grad)):
                nums = data(arr)
                if nums is not None:
                    attrs += f" {attr}=\"{_esc(json.dumps(nums))}\""
        out.append(f'<g class="wire"{attrs}><path d="{path_data(route)}" fill="none" '
                   f'stroke="{stroke}" stroke-width="{width}"{dash} '
                   f'marker-end="url(#cr-arrow)"/>')
        lab = route.label
        if lab is not None:
            if t.value:
                out.append(f'<text class="value" x="{_f(lab.x)}" y="{_f(lab.y - 5)}" '
                           f'text-anchor="middle" font-size="{SIZE_LABEL}" '
                           f'fill="{FLAG if t.bad_value else GREEN}">{_esc(t.value)}</text>')
            if t.grad:
                out.append(f'<text class="grad" x="{_f(lab.x)}" y="{_f(lab.y + 14)}" '
                           f'text-anchor="middle" font-size="{SIZE_LABEL}" '
                           f'fill="{FLAG if t.bad_grad else RED}">{_esc(t.grad)}</text>')
        out.append("</g>")
    for b in c.boxes:
        out.append(_svg_box(b, lay.boxes[b.id], ids))
    out.append("</svg>")
    return "\n".join(out)


def _svg_box(b, p, ids: bool) -> str:
    attrs = f' id="{b.id}"' if ids else ""
    tip = f"<title>{_esc(b.tooltip)}</title>" if b.tooltip else ""
    x, y = p.x, p.y
    if b.kind in ("leaf", "const", "output"):
        anchor, tx = ("end", x + p.w / 2) if b.kind != "output" else ("start", x - p.w / 2)
        ty = y + 4 if b.grad is None else y - 3
        color = MUTED if b.kind == "const" else INK
        sub = (f'<tspan font-size="{SIZE_SUB}" fill="{MUTED}"> {_esc(b.sub)}</tspan>'
               if b.sub else "")
        parts = [f'<g class="box {b.kind}"{attrs}>{tip}<text x="{_f(tx)}" y="{_f(ty)}" '
                 f'text-anchor="{anchor}" font-size="{SIZE_NAME}" font-weight="bold" '
                 f'fill="{color}">{_esc(b.label)}{sub}</text>']
        if b.grad is not None:
            text, bad = summarize(b.grad, grad=True)
            parts.append(f'<text class="grad total" x="{_f(tx)}" y="{_f(y + 12)}" '
                         f'text-anchor="end" font-size="{SIZE_LABEL}" '
                         f'fill="{FLAG if bad else RED}">Σ {_esc(text)}</text>')
        return "".join(parts) + "</g>"
    fill = _FILL.get(b.kind, "#f6f8fa")
    if p.shape == "circle":
        shape = (f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(p.w / 2)}" fill="{fill}" '
                 f'stroke="{MUTED}" stroke-width="1.2"/>')
    else:
        shape = (f'<rect x="{_f(x - p.w / 2)}" y="{_f(y - p.h / 2)}" width="{_f(p.w)}" '
                 f'height="{_f(p.h)}" rx="6" fill="{fill}" stroke="{MUTED}" stroke-width="1.2"/>')
    if b.kind == "gate":
        ty = y + (0 if b.sub else 5)
        text = (f'<text x="{_f(x)}" y="{_f(ty)}" text-anchor="middle" font-size="{SIZE_SYMBOL}" '
                f'font-weight="bold" fill="{INK}">{_esc(b.label)}</text>')
        if b.sub:
            text += (f'<text x="{_f(x)}" y="{_f(y + 12)}" text-anchor="middle" '
                     f'font-size="{SIZE_SUB}" fill="{MUTED}">{_esc(b.sub)}</text>')
    else:
        size = SIZE_SUB if b.kind == "more" else SIZE_NAME
        text = (f'<text x="{_f(x)}" y="{_f(y + 4)}" text-anchor="middle" font-size="{size}" '
                f'fill="{INK}">{_esc(b.label)}</text>')
    return f'<g class="box {b.kind}"{attrs}>{tip}{shape}{text}</g>'


# ---- PNG and PDF, through matplotlib ------------------------------------------------------------
def raster(drawing: Drawing, format: str, scale: float = 2.0) -> bytes:
    """PNG (``scale`` × the SVG's pixels) or PDF bytes, drawn with matplotlib's Agg backend."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle, FancyBboxPatch, PathPatch, Polygon
        from matplotlib.path import Path
    except ImportError:
        raise ImportError("cr.viz: PNG and PDF need matplotlib (pip install 'chainrule[viz]' "
                          "or pip install matplotlib); SVG and HTML need nothing") from None
    import io

    c, lay = drawing.circuit, drawing.layout
    fig = Figure(figsize=(lay.width / 72, lay.height / 72), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    font = {"family": "DejaVu Sans"}
    for k, line in enumerate(drawing.title_lines):
        ax.text(12, 18 + 20 * k, line, fontsize=SIZE_TITLE, color=INK if k == 0 and c.title
                else MUTED, va="baseline", **font)
    for key, pts, _d in lay.clusters:
        cl = c.clusters[key]
        ax.add_patch(Polygon(pts, closed=True, fc="#f6f8fa", alpha=None, ec="#8c959f", lw=1,
                             ls="--" if cl.dashed else "-", joinstyle="round"))
        ax.text(pts[0][0] + 6, pts[0][1] + 13, cl.label, fontsize=10, color=MUTED,
                va="baseline", **font)
    for w in c.wires:
        route, t = lay.routes.get(w.id), drawing.texts[w.id]
        if route is None:
            continue
        bad = t.bad_value or t.bad_grad
        verts, codes = _mpl_path(route)
        color = FLAG if bad else MUTED
        ax.add_patch(PathPatch(Path(verts, codes), fc="none", ec=color, lw=2.2 if bad else 1.3,
                               ls="--" if w.src == "more" else "-"))
        (xa, ya), (xb, yb) = verts[-2], verts[-1]
        ang = math.atan2(yb - ya, xb - xa)
        tip = [(xb, yb), (xb - 7 * math.cos(ang) + 3.5 * math.sin(ang),
                          yb - 7 * math.sin(ang) - 3.5 * math.cos(ang)),
               (xb - 7 * math.cos(ang) - 3.5 * math.sin(ang),
                yb - 7 * math.sin(ang) + 3.5 * math.cos(ang))]
        ax.add_patch(Polygon(tip, closed=True, fc=MUTED, ec="none"))
        if route.label is not None:
            lab = route.label
            if t.value:
                ax.text(lab.x, lab.y - 5, t.value, fontsize=SIZE_LABEL, ha="center",
                        va="baseline", color=FLAG if t.bad_value else GREEN, **font)
            if t.grad:
                ax.text(lab.x, lab.y + 14, t.grad, fontsize=SIZE_LABEL, ha="center",
                        va="baseline", color=FLAG if t.bad_grad else RED, **font)
    for b in c.boxes:
        p = lay.boxes[b.id]
        if b.kind in ("leaf", "const", "output"):
            right = b.kind != "output"
            tx = p.x + p.w / 2 if right else p.x - p.w / 2
            text = b.label + (f" {b.sub}" if b.sub else "")
            ax.text(tx, p.y + 4 if b.grad is None else p.y - 3, text, fontsize=SIZE_NAME,
                    fontweight="bold", ha="right" if right else "left", va="baseline",
                    color=MUTED if b.kind == "const" else INK, **font)
            if b.grad is not None:
                text, bad = summarize(b.grad, grad=True)
                ax.text(tx, p.y + 12, "Σ " + text, fontsize=SIZE_LABEL, ha="right",
                        va="baseline", color=FLAG if bad else RED, **font)
            continue
        fill = _FILL.get(b.kind, "#f6f8fa")
        if p.shape == "circle":
            ax.add_patch(Circle((p.x, p.y), p.w / 2, fc=fill, ec=MUTED, lw=1.2))
        else:
            ax.add_patch(FancyBboxPatch((p.x - p.w / 2, p.y - p.h / 2), p.w, p.h,
                                        boxstyle="round,pad=0,rounding_size=6", fc=fill,
                                        ec=MUTED, lw=1.2))
        if b.kind == "gate":
            ax.text(p.x, p.y + (0 if b.sub else 5), b.label, fontsize=SIZE_SYMBOL,
                    fontweight="bold", ha="center", va="baseline", color=INK, **font)
            if b.sub:
                ax.text(p.x, p.y + 12, b.sub, fontsize=SIZE_SUB, ha="center", va="baseline",
                        color=MUTED, **font)
        else:
            ax.text(p.x, p.y + 4, b.label, fontsize=SIZE_SUB if b.kind == "more" else SIZE_NAME,
                    ha="center", va="baseline", color=INK, **font)
    buf = io.BytesIO()
    fig.savefig(buf, format=format, dpi=72 * scale if format == "png" else 72,
                facecolor="white")
    return buf.getvalue()


def _mpl_path(route):
    from matplotlib.path import Path

    pts = route.points
    verts, codes = [pts[0]], [Path.MOVETO]
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if (i - 1) in route.straight or abs(y1 - y0) < 0.5:
            verts.append((x1, y1))
            codes.append(Path.LINETO)
        else:
            dx = max((x1 - x0) / 2, 8)
            verts += [(x0 + dx, y0), (x1 - dx, y1), (x1, y1)]
            codes += [Path.CURVE4] * 3
    return verts, codes


# ---- DOT ----------------------------------------------------------------------------------------
def _dq(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(circuit: Circuit) -> str:
    """The circuit as Graphviz DOT source (for users who have Graphviz and prefer its layout)."""
    title = "\n".join(([circuit.title] if circuit.title else []) + list(circuit.notes))
    lines = ["digraph circuit {", "  rankdir=LR;", f"  label={_dq(title)};",
             '  node [fontname="Helvetica" fontsize=11];',
             '  edge [fontname="Helvetica" fontsize=9];']
    for b in circuit.boxes:
        shape = {"leaf": "plaintext", "const": "plaintext", "output": "plaintext",
                 "gate": "circle", "module": "box3d", "fold": "box", "more": "note"}[b.kind]
        label = b.label + (f"\n{b.sub}" if b.sub else "")
        lines.append(f"  {b.id} [label={_dq(label)} shape={shape}];")
    for w in circuit.wires:
        t = wire_text(w)
        label = "\n".join(s for s in (t.value, t.grad) if s)
        lines.append(f"  {w.src} -> {w.dst}" + (f" [label={_dq(label)}];" if label else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"
