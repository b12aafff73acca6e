"""An interactive page that steps through backprop as the lecture narrates it.

``html(out, path)`` writes one self-contained HTML file (no network, no CDN: the SVG, the style,
the script and the numbers are inside it). The learner steps forward wire by wire (each input,
then each gate's output, with its formula and numbers), then backward gate by gate (the
gradient arriving from above, each input's local gradient and the chain-rule product that
becomes that input's gradient, adding up at forks). Keys: → / ← (or the buttons).
"""

from __future__ import annotations

import html as _html
import json
from typing import Any

import numpy as np

from chainrule.viz.circuit import build, host, user_frame
from chainrule.viz.render import place, svg
from chainrule.autograd.graph import op_name, parents
from chainrule.viz.circuit import summarize
from chainrule.viz.explain import (
    _FORWARD, _PATTERN, _fmt, _literal, _namer, local_rule, name_outputs,
)

__all__ = ["html", "page", "steps"]


def _num(v) -> str:
    s = _fmt(v)
    return f"({s})" if s.startswith("-") else s


# local gradients of gates on tensors, as a rule in words (the page shows the resulting numbers)
_TENSOR_RULES = {
    "Linear": ("dy @ W  (y = x Wᵀ + b)", "dyᵀ @ x", "dy summed over the batch"),
    "MatMul": ("dy @ Bᵀ  (y = A @ B)", "Aᵀ @ dy"),
    "Sum": ("1 for every element",),
}


def _show(v, grad: bool = False) -> str:
    """A number, up to 4 values, or shape and statistics for a larger tensor."""
    return _fmt(v) if np.size(host(v)) <= 4 else summarize(v, grad)[0]


def _scalar(a) -> bool:
    return a is not None and np.size(host(a)) == 1


def _numbers(a) -> list | None:
    """Up to 16 values, full precision, for the page's data attributes (the tests read them)."""
    if a is None:
        return None
    flat = host(a).astype(np.float64).reshape(-1)
    return [float(v) if np.isfinite(v) else str(v) for v in flat[:16]]


def _names(circuit) -> tuple[dict, Any]:
    """A name for every value: the user's, then names made from the ops (as ``explain``);
    and the function giving a gate's argument names."""
    var = {k: v for k, v in circuit.names.items() if not (isinstance(k, tuple) and k[0] == "data")}
    fresh = _namer(set(var.values()))

    def arg_names(node) -> list:
        names = []
        for i, p in enumerate(parents(node)):
            if p is not None:
                k = id(p[1]) if p[0] == "leaf" else (p[1], p[2])
                names.append(var.get(k, "?"))
            elif (node, i) in circuit.consts:
                c = circuit.consts[(node, i)]
                names.append(_literal(host(c)) if np.size(host(c)) == 1 else
                             circuit.names.get(("data", id(c)), "c"))
            else:
                names.append("?")
        return names

    name_outputs(circuit.nodes, arg_names, var, fresh,
                 circuit.out_keys[0] if circuit.out_keys else None)
    return var, arg_names


def steps(circuit) -> list[dict]:
    """The forward steps (one per value: inputs, then each gate's output) and the backward
    steps (the seed, then one per gate in reverse order, then the inputs' gradients)."""
    var, arg_names = _names(circuit)
    label = {b.id: b.label for b in circuit.boxes}
    wires_from: dict = {}
    wire_into: dict = {}
    for w in circuit.wires:
        wires_from.setdefault(w.src, []).append(w)
        wire_into[(w.dst, w.dst_input)] = w
    out: list = []
    for b in circuit.boxes:
        if b.kind not in ("leaf", "const"):
            continue
        ws = wires_from.get(b.id, [])
        value = ws[0].value if ws else None
        what = "an input" if b.kind == "leaf" else "a constant input (no gradient flows to it)"
        out.append({"phase": "forward", "box": b.id, "wires": [w.id for w in ws],
                    "values": [w.id for w in ws], "grads": [], "title": f"Input {b.label}",
                    "lines": [f"{b.label} = {_show(value) if value is not None else '?'}: {what}"]})
    done_boxes: set = set()
    for node in circuit.nodes:
        bid = circuit.rep[node]
        if bid in done_boxes or not any(b.id == bid for b in circuit.boxes):
            continue
        done_boxes.add(bid)
        ws = wires_from.get(bid, [])
        op = op_name(node)
        args = arg_names(node)
        y = var.get((node, 0), "y")
        tmpl = _FORWARD.get(op)
        formula = tmpl.format(*args) if tmpl and tmpl.count("{") <= len(args) else (
            f"{op.lower()}({', '.join(args)})")
        vals = [_input_value(circuit, node, i, p) for i, p in enumerate(parents(node))]
        lines = [f"{y} = {formula}"]
        value = circuit.values.get((node, 0))
        result = _show(value) if value is not None else "?"
        if tmpl and all(_scalar(v) for v in vals) and tmpl.count("{") <= len(vals):
            numbers = tmpl.format(*[_num(v) for v in vals])
            if numbers.replace("(", "").replace(")", "") != result:
                lines.append(f"   = {numbers}")
        lines.append(f"   = {result}")
        lines.append("The gate caches what its local gradient will need.")
        sym = label[bid]
        out.append({"phase": "forward", "box": bid, "wires": [w.id for w in ws],
                    "values": [w.id for w in ws], "grads": [],
                    "title": f"Gate {sym} ({op}) computes {y}", "lines": lines})
    # backward
    out_wires = [w for w in circuit.wires if w.dst.startswith("out")]
    if out_wires:
        w = out_wires[0]
        fname = var.get(circuit.out_keys[0], "f") if circuit.out_keys else "f"
        seed = _fmt(w.grad) if w.grad is not None else "1"
        out.append({"phase": "backward", "box": w.dst, "wires": [w.id], "values": [],
                    "grads": [w.id], "title": f"Backward: start at the output {fname}",
                    "lines": [f"∂{fname}/∂{fname} = {seed}: the gradient of the output with "
                              "respect to itself.",
                              "Now each gate, in reverse order, multiplies the gradient "
                              "arriving on its output by its local gradient."]})
    else:
        fname = "f"
    running: dict = {}
    done_boxes = set()
    for node in reversed(circuit.nodes):
        bid = circuit.rep[node]
        if bid in done_boxes or not any(b.id == bid for b in circuit.boxes):
            continue
        done_boxes.add(bid)
        ins = [(i, p, wire_into.get((bid, i))) for i, p in enumerate(parents(node))]
        ins = [(i, p, w) for i, p, w in ins if w is not None and w.grad is not None]
        if not ins:
            continue
        op = op_name(node)
        args = arg_names(node)
        y = var.get((node, 0), "y")
        upstream = circuit.out_grads.get((node, 0))
        up = _show(upstream, True) if upstream is not None else "?"
        lines = [f"Gradient arriving from above: ∂{fname}/∂{y} = {up}"]
        for i, _, w in ins:
            target = args[i]
            local = local_rule(op, i, args, y)
            if local is None and i < len(_TENSOR_RULES.get(op, ())):
                local = _TENSOR_RULES[op][i]
            if op == "Mean":
                n = np.size(host(w.value)) // max(1, np.size(host(upstream)))
                local = f"1/{n} for every element"
            if op in ("Maximum", "Minimum") and _tie(circuit, node):
                local = f"0.5 (a tie: {op.lower()} splits the gradient)"
            key = w.key
            running[key] = w.grad if key not in running else running[key] + w.grad
            if _scalar(w.grad) and _scalar(upstream) and float(host(upstream)) != 0:
                lv = float(host(w.grad)) / float(host(upstream))
                rule = f"{local} = {_fmt(lv)}" if local not in (None, "1", "-1") else (
                    local or _fmt(lv))
                lines.append(f"→ {target}: local gradient ∂{y}/∂{target} = {rule}; chain rule: "
                             f"{_num(lv)} × {_num(upstream)} = {_fmt(w.grad)}")
            else:
                rule = f"local gradient {local}; " if local else ""
                lines.append(f"→ {target}: {rule}∂{fname}/∂{target} gets {_show(w.grad, True)}")
            forks = [x for x in circuit.wires if x.key == key and x.grad is not None]
            if len(forks) > 1:
                lines.append(f"   {target} feeds {len(forks)} wires: gradients add up at the "
                             f"fork, ∂{fname}/∂{target} so far = {_show(running[key], True)}")
        if op in _PATTERN:
            lines.append(_PATTERN[op][0].upper() + _PATTERN[op][1:] + ".")
        sym = label[bid]
        out.append({"phase": "backward", "box": bid, "wires": [w.id for _, _, w in ins],
                    "values": [], "grads": [w.id for _, _, w in ins],
                    "title": f"Gate {sym} ({op}) sends gradients to its inputs", "lines": lines})
    leaves = [b for b in circuit.boxes if b.kind == "leaf"]
    if leaves and out_wires:
        lines = []
        for b in leaves:
            total = sum((host(w.grad) for w in wires_from.get(b.id, []) if w.grad is not None),
                        start=np.zeros(()))
            lines.append(f"∂{fname}/∂{b.label} = {_show(total, True)}")
        lines.append("These are the inputs' .grad after backward().")
        out.append({"phase": "backward", "box": None, "wires": [], "values": [], "grads": [],
                    "totals": [b.id for b in leaves], "title": "Done: the gradients of the "
                    "inputs", "lines": lines})
    return out


def _input_value(circuit, node, i, p):
    if p is None:
        return circuit.consts.get((node, i))
    k = id(p[1]) if p[0] == "leaf" else (p[1], p[2])
    return circuit.values.get(k)


def _tie(circuit, node) -> bool:
    vals = [_input_value(circuit, node, i, p) for i, p in enumerate(parents(node))]
    return (len(vals) == 2 and all(_scalar(v) for v in vals)
            and float(host(vals[0])) == float(host(vals[1])))


_CSS = """
body { font-family: DejaVu Sans, Verdana, Helvetica, Arial, sans-serif; margin: 0;
       color: #24292f; background: #ffffff; }
header { padding: 10px 16px 4px; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header p { margin: 0; font-size: 13px; color: #57606a; }
.legend-value { color: #1a7f37; font-weight: bold; }
.legend-grad { color: #cf222e; font-weight: bold; }
#figure { overflow: auto; padding: 4px 8px; }
#controls { display: flex; gap: 8px; align-items: center; padding: 8px 16px;
            border-top: 1px solid #d0d7de; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
#controls button { font-size: 14px; padding: 4px 12px; cursor: pointer; }
#counter { font-size: 13px; color: #57606a; margin-left: 8px; }
#panel { padding: 8px 16px 16px; }
#panel h2 { font-size: 16px; margin: 4px 0 6px; }
#panel pre { font-family: DejaVu Sans Mono, Menlo, Consolas, monospace; font-size: 14px;
             margin: 0; white-space: pre-wrap; }
.phase-forward #panel h2 { color: #1a7f37; } .phase-backward #panel h2 { color: #cf222e; }
.wire text.value, .wire text.grad, .box text.total { visibility: hidden; }
.wire.show-value text.value, .wire.show-grad text.grad, .box.show-total text.total {
  visibility: visible; }
.wire.current path { stroke: #fb8500; stroke-width: 3.5; }
.box.current circle, .box.current rect { stroke: #fb8500; stroke-width: 3.5; }
.box.current text { fill: #bc4c00; }
"""

_JS = """
(function () {
  var data = JSON.parse(document.getElementById('cr-steps').textContent);
  var steps = data.steps, k = 0;
  function el(id) { return document.getElementById(id); }
  function each(sel, f) { Array.prototype.forEach.call(document.querySelectorAll(sel), f); }
  function show(n) {
    k = Math.max(0, Math.min(steps.length - 1, n));
    each('.wire', function (w) { w.classList.remove('show-value', 'show-grad', 'current'); });
    each('.box', function (b) { b.classList.remove('current', 'show-total'); });
    for (var i = 0; i <= k; i++) {
      var s = steps[i];
      s.values.forEach(function (id) { var e = el(id); if (e) e.classList.add('show-value'); });
      s.grads.forEach(function (id) { var e = el(id); if (e) e.classList.add('show-grad'); });
      (s.totals || []).forEach(function (id) {
        var e = el(id); if (e) e.classList.add('show-total'); });
    }
    var cur = steps[k];
    cur.wires.forEach(function (id) { var e = el(id); if (e) e.classList.add('current'); });
    if (cur.box && el(cur.box)) el(cur.box).classList.add('current');
    el('title').textContent = cur.title;
    el('lines').textContent = cur.lines.join('\\n');
    var nf = data.forward;
    el('counter').textContent = (cur.phase === 'forward' ? 'forward pass, step ' + (k + 1) +
      ' of ' + nf : 'backward pass, step ' + (k - nf + 1) + ' of ' + (steps.length - nf));
    document.body.className = 'phase-' + cur.phase;
    document.body.setAttribute('data-step', String(k));
    el('prev').disabled = k === 0; el('first').disabled = k === 0;
    el('next').disabled = k === steps.length - 1; el('last').disabled = k === steps.length - 1;
  }
  el('first').onclick = function () { show(0); };
  el('prev').onclick = function () { show(k - 1); };
  el('next').onclick = function () { show(k + 1); };
  el('last').onclick = function () { show(steps.length - 1); };
  document.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight') show(k + 1);
    if (e.key === 'ArrowLeft') show(k - 1);
  });
  show(0);
})();
"""


def page(circuit, title: str | None = None) -> str:
    """The self-contained HTML text of the interactive page for ``circuit``."""
    drawing = place(circuit, max_width=None)
    figure = svg(drawing, data=_numbers)
    grow = f"width:100%;max-width:{1.6 * drawing.layout.width:.0f}px;height:auto"
    figure = figure.replace('<svg ', f'<svg style="{grow}" ', 1)
    st = steps(circuit)
    n_forward = sum(1 for s in st if s["phase"] == "forward")
    payload = json.dumps({"steps": st, "forward": n_forward}, ensure_ascii=False)
    payload = payload.replace("</", "<\\/")  # never closes the script element early
    heading = _html.escape(title or circuit.title or "Backpropagation, step by step")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading}</title>
<style>{_CSS}</style></head>
<body class="phase-forward">
<header><h1>{heading}</h1>
<p>Each wire shows its value <span class="legend-value">above, in green</span> (forward pass)
and its gradient <span class="legend-grad">below, in red</span> (backward pass). Step with
the buttons or the ← → keys.</p></header>
<div id="figure">{figure}</div>
<div id="controls"><button id="first" title="first step">« First</button>
<button id="prev" title="previous step (←)">◀ Back</button>
<button id="next" title="next step (→)">Next ▶</button>
<button id="last" title="last step">Last »</button><span id="counter"></span></div>
<div id="panel"><h2 id="title"></h2><pre id="lines"></pre></div>
<script type="application/json" id="cr-steps">{payload}</script>
<script>{_JS}</script>
</body></html>
"""


def html(output, path: str | None = None, *, names: dict | None = None,
         title: str | None = None, **draw_args: Any) -> str:
    """Write the interactive page for the graph behind ``output`` to ``path`` (one
    self-contained HTML file) and return its text. ``names`` as in :func:`cr.viz.draw`."""
    circuit = build(output, names=names, frame=user_frame(), fold=False, **draw_args)
    text = page(circuit, title)
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text
