"""Circuit diagrams of the recorded graph, drawn the way the lecture draws them.

One node per gate, inputs on the left, each edge labelled with its forward value (green, above)
and its gradient (red, below). Gates created inside an ``nn.Module`` are grouped into a labelled
cluster (or drawn as one box with ``collapse=True``); custom ``Function`` gates get a dashed
cluster. Long repeated chains are folded and a node limit keeps large graphs legible.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

import numpy as np

from chainrule._state import state

__all__ = ["draw", "record", "summarize", "Circuit"]

GREEN, RED, FLAG = "#1a7f37", "#cf222e", "#d63384"
_SYMBOL = {"Add": "+", "Sub": "−", "Mul": "×", "Div": "÷", "Pow": "^", "Neg": "−x",
           "Sigmoid": "σ", "Maximum": "max", "Minimum": "min", "MatMul": "@", "Exp": "exp",
           "Log": "log", "Tanh": "tanh", "Relu": "relu", "Sqrt": "√", "Sum": "Σ", "Mean": "mean"}
_INSTALL = ("graphviz's `dot` program was not found; wrote the DOT source to {path} instead. "
            "Install it to render: apt-get install graphviz / brew install graphviz")


class record:
    """Context manager: gates created inside keep their inputs and creation sites, so ``draw``
    can label every edge with its value."""

    def __enter__(self) -> record:
        self.prev = (state.record_inputs, state.record_sites)
        state.record_inputs = state.record_sites = True
        return self

    def __exit__(self, *exc: Any) -> None:
        state.record_inputs, state.record_sites = self.prev


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise ImportError("cr.viz.draw needs the graphviz Python package: pip install graphviz "
                          "(and, to render, apt-get install graphviz / brew install graphviz)"
                          ) from None
    return graphviz


def _circuit_class():
    graphviz = _graphviz()

    class Circuit(graphviz.Digraph):
        """A graphviz Digraph of the circuit; shows itself as SVG in notebooks."""

        notes: tuple = ()

        def _repr_svg_(self) -> str:
            return self.pipe(format="svg", encoding="utf-8")

    return Circuit


Circuit = None  # the class, created on first use (graphviz is optional)


# ---- labels -------------------------------------------------------------------------------------
def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summarize(a, grad: bool = False) -> tuple[str, bool]:
    """(text, has NaN/Inf): values for ≤ 4 elements, else shape and mean/min/max (norm for a
    gradient)."""
    a = np.asarray(getattr(a, "_data", a))
    if a.dtype.kind not in "fiub":
        return f"{a.dtype}", False
    af = a.astype(np.float64)
    bad = af.size > 0 and not bool(np.isfinite(af).all())
    flag = ""
    if bad:
        n_nan, n_inf = int(np.isnan(af).sum()), int(np.isinf(af).sum())
        flag = " ⚠" + (f" NaN×{n_nan}" if n_nan else "") + (f" Inf×{n_inf}" if n_inf else "")
    if af.size <= 4:
        vals = [f"{v:.4g}" for v in af.reshape(-1)]
        text = vals[0] if af.ndim == 0 or (af.size == 1 and af.ndim <= 1) else (
            "[" + ", ".join(vals) + "]")
        return text + flag, bad
    shape = "×".join(str(s) for s in af.shape)
    fin = af[np.isfinite(af)]
    if grad:
        norm = float(np.sqrt(np.sum(fin * fin))) if fin.size else float("nan")
        return f"[{shape}] ‖g‖={norm:.3g}" + flag, bad
    if fin.size == 0:
        return f"[{shape}]" + flag, bad
    return (f"[{shape}] μ={fin.mean():.3g} min={fin.min():.3g} max={fin.max():.3g}" + flag, bad)


def _edge_label(value, grad) -> tuple[str, bool]:
    parts, bad = [], False
    if value is not None:
        t, b = summarize(value)
        bad |= b
        parts.append(f'<font color="{FLAG if b else GREEN}">{_esc(t)}</font>')
    if grad is not None:
        t, b = summarize(grad, grad=True)
        bad |= b
        parts.append(f'<font color="{FLAG if b else RED}">{_esc(t)}</font>')
    if not parts:
        return "", False
    return "<" + "<br/>".join(parts) + ">", bad


# ---- graph facts --------------------------------------------------------------------------------
def _values(nodes: list, outputs: list) -> dict:
    """Forward value of every edge source: from recorded inputs, saved tensors and leaves."""
    from chainrule.autograd.gates import parents

    val: dict = {}
    for node in nodes:
        ps = parents(node)
        rec = getattr(node, "inputs", None)
        for i, p in enumerate(ps):
            if p is None:
                continue
            key = id(p[1]) if p[0] == "leaf" else (p[1], p[2])
            if p[0] == "leaf":
                val[key] = p[1]._data
            elif rec is not None and i < len(rec):
                val.setdefault(key, getattr(rec[i], "_data", rec[i]))
        saved, src = getattr(node, "_saved", None), getattr(node, "_saved_from", ())
        if saved and src:
            for s, where in zip(saved, src):
                if where is None or s is None or not hasattr(s, "shape"):
                    continue
                if where == -1:
                    val.setdefault((node, 0), s)
                elif isinstance(where, tuple):
                    val.setdefault((node, where[1]), s)
                elif isinstance(where, int) and where < len(ps) and ps[where] is not None:
                    p = ps[where]
                    val.setdefault(id(p[1]) if p[0] == "leaf" else (p[1], p[2]), s)
    for t in outputs:
        val[(t._grad_fn, t._nr)] = t._data
    return val


def _scope_label(path: tuple, k: int) -> str:
    mod = path[k]
    if isinstance(mod, _FunctionScope):
        return mod.label
    name = mod if isinstance(mod, str) else type(mod).__name__
    if k > 0 and not isinstance(path[k - 1], str):
        try:
            for child_name, child in path[k - 1].named_children():
                if child is mod:
                    return f"{name} ({child_name})"
        except Exception:  # noqa: BLE001 - any Module-like object may lack named_children
            pass
    return name


def _fold_chains(nodes: list, consumers: dict, min_repeats: int) -> dict:
    """node -> (fold id, label) for runs of a repeated op pattern along a linear chain."""
    from chainrule.autograd.gates import op_name, parents

    def gate_parents(n):
        return [p[1] for p in parents(n) if p is not None and p[0] == "node"]

    folded: dict = {}
    in_chain: set = set()
    for start in nodes:
        if start in in_chain:
            continue
        chain = [start]
        cur = start
        while len(consumers.get(cur, ())) == 1:
            nxt = consumers[cur][0]
            if len(gate_parents(nxt)) != 1 or nxt in in_chain:
                break
            chain.append(nxt)
            cur = nxt
        in_chain.update(chain)
        names = [op_name(n) for n in chain]
        i = 0
        while i < len(chain):
            best = None
            for period in range(1, 5):
                pat = names[i:i + period]
                r = 1
                while names[i + r * period:i + (r + 1) * period] == pat:
                    r += 1
                if r >= min_repeats and (best is None or r * period > best[0] * best[1]):
                    best = (r, period)
            if best is None:
                i += 1
                continue
            r, period = best
            label = " → ".join(names[i:i + period]) + f"  ×{r}"
            fid = f"fold{id(chain[i])}"
            for n in chain[i:i + r * period]:
                folded[n] = (fid, label)
            i += r * period
    return folded


# ---- drawing ------------------------------------------------------------------------------------
def draw(output, path: str | None = None, format: str = "svg", *, names: dict | None = None,
         grads: bool = True, collapse: bool | int = False, fold: bool | str = "auto",
         max_nodes: int = 150, show_sites: bool = False, title: str | None = None):
    """Draw the circuit that produced ``output`` (a Tensor or a list of Tensors).

    Each edge shows the forward value (green) above the gradient of ``output`` (red) below;
    gradients come from a private backward pass that keeps the graph (or leaves' ``.grad``
    if an earlier ``backward()`` freed it). ``names`` maps leaf Tensors (or their ids) to
    names; ``collapse`` draws each module (to that depth) as one box; ``fold`` folds repeated
    chains; ``max_nodes`` bounds the drawing. With ``path``, writes SVG/PNG/PDF (or, without
    the ``dot`` program, the DOT source). Returns the graphviz Digraph.
    """
    global Circuit
    from chainrule.autograd.gates import edge_gradients, graph_nodes, op_name, parents
    from chainrule.tensor import Tensor

    if Circuit is None:
        Circuit = _circuit_class()
    outputs = list(output) if isinstance(output, (list, tuple)) else [output]
    for o in outputs:
        if not isinstance(o, Tensor):
            raise TypeError(f"draw: output must be a Tensor, got {type(o).__name__}")
    if format not in ("svg", "png", "pdf", "dot", "gv"):
        raise ValueError(f"draw: format must be 'svg', 'png', 'pdf' or 'dot', got {format!r}")
    leaf_names = {}
    for k, v in (names or {}).items():
        leaf_names[k if isinstance(k, int) else id(k)] = v
    notes = []
    nodes = graph_nodes(outputs)
    values = _values(nodes, [o for o in outputs if o._grad_fn is not None])

    # gradients: a private backward from the first output (seed 1 / ones)
    egrads, ograds, lgrads = {}, {}, {}
    if grads and outputs[0]._grad_fn is not None:
        try:
            egrads, ograds, lgrads = edge_gradients(outputs[0])
        except RuntimeError:
            notes.append("intermediate gradients unavailable: backward() freed the graph "
                         "(draw before it, or use retain_graph=True)")
    if grads and not lgrads:
        for node in nodes:
            for p in parents(node):
                if p is not None and p[0] == "leaf" and p[1]._grad is not None:
                    lgrads[id(p[1])] = p[1]._grad._data

    consumers: dict = {}
    leaf_uses: dict = {}
    for node in nodes:
        for p in parents(node):
            if p is not None and p[0] == "node":
                consumers.setdefault(p[1], []).append(node)
            elif p is not None:
                leaf_uses[id(p[1])] = leaf_uses.get(id(p[1]), 0) + 1

    # representative drawn node for each gate: itself, its collapsed module, or its fold
    rep: dict = {}
    rep_label: dict = {}
    depth = int(collapse) if collapse else 0
    for node in nodes:
        scope = tuple(getattr(node, "scope", ()) or ())
        if depth and len(scope) >= depth:
            key = "mod" + "_".join(str(id(m)) for m in scope[:depth])
            rep[node] = key
            rep_label[key] = ("module", _scope_label(scope, depth - 1), scope[:depth - 1])
    do_fold = fold is True or (fold == "auto" and len(nodes) > 60)
    if do_fold:
        free = [n for n in nodes if n not in rep]
        for node, (fid, label) in _fold_chains(free, consumers, 3).items():
            rep[node] = fid
            rep_label[fid] = ("fold", label, tuple(getattr(node, "scope", ()) or ())[:-1])
    for i, node in enumerate(nodes):
        rep.setdefault(node, f"g{i}")

    # node limit: keep the drawn nodes closest to the output
    drawn = list(dict.fromkeys(rep[n] for n in nodes))
    dropped: set = set()
    if len(drawn) > max_nodes:
        keep = list(reversed(drawn))[:max_nodes]
        dropped = set(drawn) - set(keep)
        notes.append(f"{len(dropped)} more gates not drawn (max_nodes={max_nodes}); "
                     "use collapse=True or a larger max_nodes")

    g = Circuit(name="circuit", graph_attr={
        "rankdir": "LR", "fontname": "Helvetica", "fontsize": "11", "nodesep": "0.35",
        "ranksep": "0.6", "label": _esc(title or ""), "labelloc": "t"})
    g.attr("node", fontname="Helvetica", fontsize="11")
    g.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.6")

    # clusters: scope path -> list of (id, attrs)
    clusters: dict = {(): []}

    def put(scope: tuple, item) -> None:
        for k in range(1, len(scope) + 1):
            clusters.setdefault(scope[:k], [])
        clusters[scope].append(item)

    for node in nodes:  # parameters of the modules being drawn get their qualified names
        scope = getattr(node, "scope", ())
        if scope and hasattr(scope[0], "named_parameters"):
            for pname, param in scope[0].named_parameters():
                leaf_names.setdefault(id(param), pname)
    leaf_ids: dict = {}
    n_leaf = 0
    for node in nodes:
        for p in parents(node):
            if p is not None and p[0] == "leaf" and id(p[1]) not in leaf_ids:
                nm = leaf_names.get(id(p[1]), f"x{n_leaf}")
                n_leaf += 1
                shape = list(p[1]._data.shape)
                text = nm if not shape else f"{nm} {shape}"
                leaf_ids[id(p[1])] = f"l{len(leaf_ids)}"
                put((), (leaf_ids[id(p[1])], {"label": _esc(text), "shape": "plaintext"}))

    seen_rep: set = set()
    for node in nodes:
        r = rep[node]
        if r in dropped or r in seen_rep:
            continue
        seen_rep.add(r)
        if r in rep_label:
            kind, label, scope = rep_label[r]
            attrs = {"label": _esc(label), "shape": "box3d" if kind == "module" else "box",
                     "style": "filled", "fillcolor": "#eef2ff" if kind == "module" else "#fff8c5"}
            put(scope, (r, attrs))
            continue
        op = op_name(node)
        sym = _with_constant(node, op, _SYMBOL.get(op, ""))
        head = f"<b>{_esc(sym)}</b><br/>" if sym and sym != op.lower() else ""
        site = getattr(node, "site", None)
        extra = f'<br/><font point-size="7">{_esc(site.rsplit("/", 1)[-1])}</font>' if (
            show_sites and site) else ""
        attrs = {"label": f'<{head}<font point-size="9">{_esc(op)}</font>{extra}>',
                 "shape": "circle" if len(op) <= 4 or sym else "box", "style": "filled",
                 "fillcolor": "#f6f8fa", "tooltip": f"{node.name()} {site or ''}".strip()}
        scope = tuple(getattr(node, "scope", ()) or ())
        from chainrule.autograd.function import Op

        if not isinstance(node, Op):  # a custom Function: its own dashed cluster
            scope = scope + (_FunctionScope(f"Function {op}"),)
        put(scope, (r, attrs))

    _emit_clusters(g, clusters)

    # edges (deduplicated between drawn nodes)
    done: set = set()
    for node in nodes:
        dst = rep[node]
        if dst in dropped:
            continue
        for i, p in enumerate(parents(node)):
            if p is None:
                continue
            if p[0] == "leaf":
                src, key = leaf_ids[id(p[1])], id(p[1])
                grad = egrads.get((node, i))
                if grad is None and leaf_uses.get(id(p[1])) == 1:
                    grad = lgrads.get(id(p[1]))  # graph freed: the leaf's .grad
            else:
                src, key = rep[p[1]], (p[1], p[2])
                grad = egrads.get((node, i))
                if src == dst:
                    continue
                if src in dropped:
                    src = "more"
            if (src, dst) in done:
                continue
            done.add((src, dst))
            label, bad = _edge_label(values.get(key), grad)
            attrs = {"label": label} if label else {}
            if bad:
                attrs.update(color=FLAG, penwidth="2")
            if src == "more":
                attrs = {"style": "dashed"}
            g.edge(src, dst, **attrs)
    if dropped:
        g.node("more", label=_esc(notes[-1]), shape="note", fontcolor="#57606a")
    for k, o in enumerate(outputs):
        if o._grad_fn is None:
            continue
        oid = f"out{k}"
        g.node(oid, label=f"out{k if len(outputs) > 1 else ''}", shape="plaintext")
        seed = ograds.get((o._grad_fn, o._nr)) if k == 0 and grads else None
        label, bad = _edge_label(o._data, seed)
        attrs = {"label": label} if label else {}
        if bad:
            attrs.update(color=FLAG, penwidth="2")
        if rep[o._grad_fn] not in dropped:
            g.edge(rep[o._grad_fn], oid, **attrs)
    g.notes = tuple(notes)
    if notes:
        g.attr(label=_esc("\n".join(([title] if title else []) + notes)))
    if path is not None:
        _write(g, path, format)
    return g


def _with_constant(node, op: str, sym: str) -> str:
    """The lecture's gate labels for a binary gate with one constant input: +1, ×2, 1/x, ^2."""
    inputs = getattr(node, "inputs", None)
    if not sym or inputs is None or len(inputs) != 2 or op not in (
            "Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum"):
        return sym
    consts = [i for i in range(2) if node._edges[i] is None and np.size(
        getattr(inputs[i], "_data", inputs[i])) == 1]
    if len(consts) != 1:
        return sym
    k = consts[0]
    v = float(np.asarray(getattr(inputs[k], "_data", inputs[k])).reshape(()))
    c = str(int(v)) if v.is_integer() and abs(v) < 1e6 else f"{v:.3g}"
    if op in ("Maximum", "Minimum"):
        return f"{sym}({c}, ·)"
    if op == "Div" and k == 0:
        return f"{c}/x"
    if op == "Sub" and k == 0:
        return f"{c}−x"
    return f"{sym}{c}"


class _FunctionScope:
    """A one-gate cluster for a custom Function (unique per gate)."""

    def __init__(self, label: str) -> None:
        self.label = label


def _emit_clusters(g, clusters: dict) -> None:
    """Write nested ``cluster_*`` subgraphs for the module scopes (outermost first)."""
    children: dict = {}
    for key in clusters:
        if key:
            children.setdefault(key[:-1], []).append(key)

    def emit(parent_graph, key, counter=[0]):  # noqa: B006 - a per-call counter is fine here
        for item_id, attrs in clusters.get(key, []):
            parent_graph.node(item_id, **attrs)
        for child in children.get(key, []):
            counter[0] += 1
            label = _scope_label(child, len(child) - 1)
            is_fn = isinstance(child[-1], _FunctionScope)
            with parent_graph.subgraph(name=f"cluster_{counter[0]}") as sub:
                sub.attr(label=_esc(label), style="dashed" if is_fn else "rounded,filled",
                         fillcolor="#fbfbfd", color="#8c959f", fontsize="10")
                emit(sub, child)

    emit(g, ())


def _write(g, path: str, format: str) -> None:
    import os

    if format in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(g.source)
        return
    if shutil.which("dot") is None:
        root, _ = os.path.splitext(path)
        dot_path = root + ".dot"
        with open(dot_path, "w", encoding="utf-8") as f:
            f.write(g.source)
        print(_INSTALL.format(path=dot_path), file=sys.stderr)
        return
    data = g.pipe(format=format)
    with open(path, "wb") as f:
        f.write(data)
