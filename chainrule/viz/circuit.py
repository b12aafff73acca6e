"""What a diagram shows: every wire of a recorded graph with its value, gradient and name.

``build(outputs)`` turns the graph behind ``outputs`` into a :class:`Circuit`: boxes (inputs,
gates, modules, outputs) and wires, each wire carrying the forward value of its source (shown
above it) and the gradient that flows back along it (shown below), as the lecture draws them.

Values and gradients come from what the graph holds: the inputs recorded under
``cr.viz.record()``, the gates' saved values (kept after ``backward()`` for small graphs, see
``chainrule.autograd.graph.keep``), a replay of a gate's forward where its inputs are known, and
a private backward pass that keeps every edge's gradient.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainrule.autograd.edges import edge_gradients
from chainrule.autograd.function import Op
from chainrule.autograd.grad_mode import no_grad
from chainrule.autograd.graph import graph_nodes, kept_saved, op_name, parents
from chainrule.tensor import Tensor

__all__ = ["Box", "Wire", "Cluster", "Circuit", "build", "summarize", "wire_values", "host",
           "caller_names", "user_frame", "SYMBOL"]

SYMBOL = {"Add": "+", "Sub": "−", "Mul": "×", "Div": "÷", "Pow": "^", "Neg": "−x",
          "Sigmoid": "σ", "Maximum": "max", "Minimum": "min", "MatMul": "@", "Exp": "exp",
          "Log": "log", "Tanh": "tanh", "Relu": "relu", "Sqrt": "√", "Sum": "Σ", "Mean": "mean",
          "Linear": "Wx+b"}
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Box:
    """A drawn node: an input (``leaf``/``const``), a ``gate``, a collapsed ``module``, a
    ``fold`` of a repeated chain, an ``output`` or the ``more`` note."""

    id: str
    kind: str
    label: str
    sub: str = ""            # a second, smaller line (the op's name, a shape)
    scope: tuple = ()        # the cluster path (Cluster keys, outermost first)
    tooltip: str = ""
    grad: Any = None         # an input's total gradient (shown when it feeds several wires)
    gate: Any = field(default=None, repr=False)  # the gate (for the interactive page)


@dataclass
class Wire:
    """One edge: the value of its source flowing into input ``dst_input`` of ``dst``."""

    id: str
    src: str
    dst: str
    value: Any = None
    grad: Any = None
    name: str | None = None  # the user's name for this value (intermediates)
    key: Any = field(default=None, repr=False)   # the value's identity (same on every fork)
    dst_input: int = 0


@dataclass
class Cluster:
    """A module (or custom Function) that groups the gates created inside it."""

    key: tuple
    label: str
    dashed: bool = False


@dataclass
class Circuit:
    boxes: list
    wires: list
    clusters: dict           # key -> Cluster
    title: str = ""
    notes: tuple = ()
    names: dict = field(default_factory=dict, repr=False)    # value key -> name
    values: dict = field(default_factory=dict, repr=False)   # value key -> array
    edge_grads: dict = field(default_factory=dict, repr=False)
    out_grads: dict = field(default_factory=dict, repr=False)
    nodes: list = field(default_factory=list, repr=False)    # the gates, in forward order
    rep: dict = field(default_factory=dict, repr=False)      # gate -> drawn box id
    consts: dict = field(default_factory=dict, repr=False)   # (gate, input) -> constant
    out_keys: list = field(default_factory=list, repr=False)  # (gate, output_nr) per output


# ---- numbers ------------------------------------------------------------------------------------
def host(a):
    """A NumPy view of an array, Tensor or number (CuPy arrays are copied to the host)."""
    a = getattr(a, "_data", a)
    if hasattr(a, "get") and not isinstance(a, (np.ndarray, np.generic)):
        a = a.get()
    return np.asarray(a)


def summarize(a, grad: bool = False) -> tuple[str, bool]:
    """(text, has NaN/Inf): values for ≤ 4 elements, else shape and mean/min/max (norm for a
    gradient)."""
    a = host(a)
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


# ---- the values on the wires --------------------------------------------------------------------
def _key(p):
    return id(p[1]) if p[0] == "leaf" else (p[1], p[2])


def wire_values(nodes: list, outputs: list) -> tuple[dict, dict]:
    """``(values, consts)``: the forward value of every wire source the graph still knows
    (keys ``id(leaf)`` or ``(gate, output_nr)``) and the constant inputs of gates (keys
    ``(gate, input_index)``)."""
    kept = kept_saved(nodes)
    val: dict = {}
    const: dict = {}
    for node in nodes:
        ps = parents(node)
        for p in ps:
            if p is not None and p[0] == "leaf":
                val[id(p[1])] = p[1]._data
        recorded = getattr(node, "inputs", None)  # cr.viz.record() kept every input
        if recorded is not None:
            for i, p in enumerate(ps):
                if i < len(recorded):
                    raw = getattr(recorded[i], "_data", recorded[i])
                    if p is None:
                        const[(node, i)] = raw
                    else:
                        val.setdefault(_key(p), raw)
        saved = node._saved or (kept[0].get(id(node)) if kept is not None else None)
        if not saved:
            continue
        if isinstance(node, Op):
            for s, where in zip(saved, getattr(node, "_saved_from", ())):
                if where is None or s is None:
                    continue
                if where == -1:
                    val.setdefault((node, 0), s)
                elif isinstance(where, tuple):
                    val.setdefault((node, where[1]), s)
                elif where < len(ps):
                    if ps[where] is None:
                        const[(node, where)] = s
                    else:
                        val.setdefault(_key(ps[where]), s)
        else:  # a user Function saved Tensors: match them to its inputs and outputs
            keys = {(_key(p) if p[0] == "node" else None) for p in ps if p is not None}
            for s in saved:
                fn = getattr(s, "_grad_fn", None)
                if fn is not None and ((fn, s._nr) in keys or fn is node):
                    val.setdefault((fn, s._nr), s._data)
    for t in outputs:
        if t._grad_fn is not None:
            val[(t._grad_fn, t._nr)] = t._data
    for node in nodes:  # replay a gate's forward where its output is unknown
        n_out = len(node._outs)
        if all((node, nr) in val for nr in range(n_out)) or not isinstance(node, Op):
            continue
        args = _known_inputs(node, parents(node), val, const)
        if args is None:
            continue
        out = _replay(node, args)
        if out is None:
            continue
        for nr, o in enumerate(out if isinstance(out, tuple) else (out,)):
            val.setdefault((node, nr), o)
    for node in nodes:  # add/sub keep no constant: recover it from what flows around them
        _recover_constant(node, parents(node), val, const)
    return val, const


def _known_inputs(node, ps: list, val: dict, const: dict) -> list | None:
    args = []
    for i, p in enumerate(ps):
        if p is None:
            if (node, i) not in const:
                return None
            args.append(const[(node, i)])
        elif _key(p) in val:
            args.append(val[_key(p)])
        else:
            return None
    return args


def _replay(node, args: list):
    """The gate's forward re-run on a fresh context (its saved values are not touched)."""
    cls = type(node)
    ctx = cls.__new__(cls)  # a compiled Function: its own tp_new
    ctx._saved = ()
    ctx._edges = node._edges
    try:
        with no_grad(), np.errstate(all="ignore"):
            return cls.forward(ctx, *args)
    except Exception:  # noqa: BLE001 - a forward that needs what was not kept: no value
        return None


def _recover_constant(node, ps: list, val: dict, const: dict) -> None:
    name = type(node).__name__
    if name not in ("Add", "Sub") or len(ps) != 2 or (node, 0) not in val:
        return
    missing = [i for i in range(2) if ps[i] is None and (node, i) not in const]
    if len(missing) != 1:
        return
    k = missing[0]
    other = ps[1 - k]
    if other is None or _key(other) not in val:
        return
    out, x = host(val[(node, 0)]).astype(np.float64), host(val[_key(other)]).astype(np.float64)
    with np.errstate(all="ignore"):  # out = x + c, out = x - c or out = c - x
        c = out - x if name == "Add" else x - out if k == 1 else out + x
    if c.size and np.all(np.isfinite(c)) and np.allclose(c, c.reshape(-1)[0], atol=1e-6):
        v = float(c.reshape(-1)[0])
        const[(node, k)] = np.float64(round(v, 6))


# ---- names --------------------------------------------------------------------------------------
def user_frame():
    """The innermost frame outside the chainrule package (the user's code)."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR + os.sep):
        frame = frame.f_back
    return frame


def caller_names(frame, keys: set) -> dict:
    """Names of the user's variables (locals, then globals of ``frame``) that hold one of the
    graph's values: ``w0`` for a Tensor, ``w[1]`` for an item of a list or tuple."""
    found: dict = {}
    if frame is None:
        return found
    scopes = [list(frame.f_locals.items()), list(frame.f_globals.items())]
    for items in scopes:  # plain variables first, then the items of lists and tuples
        for var, obj in items:
            if isinstance(obj, Tensor) and not var.startswith("_"):
                _name_tensor(found, keys, obj, var)
    for items in scopes:
        for var, obj in items:
            if isinstance(obj, (list, tuple)) and 0 < len(obj) <= 64 and not var.startswith("_"):
                for i, item in enumerate(obj):
                    if isinstance(item, Tensor):
                        _name_tensor(found, keys, item, f"{var}[{i}]")
    return found


def _name_tensor(found: dict, keys: set, t, name: str) -> None:
    k = id(t) if t._grad_fn is None else (t._grad_fn, t._nr)
    if k in keys and k not in found:
        found[k] = name
    elif t._grad_fn is None and ("data", id(t._data)) in keys:  # a constant input's data
        found.setdefault(("data", id(t._data)), name)


def _given_names(names: dict | None) -> dict:
    out: dict = {}
    for k, v in (names or {}).items():
        if isinstance(k, str) and isinstance(v, Tensor):
            k, v = v, k
        if isinstance(k, Tensor):
            out[id(k) if k._grad_fn is None else (k._grad_fn, k._nr)] = str(v)
            if k._grad_fn is None:
                out[("data", id(k._data))] = str(v)
        elif isinstance(k, int):
            out[k] = str(v)
        else:
            raise TypeError("draw: names must map Tensors to names (or names to Tensors), got "
                            f"a key of type {type(k).__name__}")
    return out


def _resolve_names(nodes: list, outputs: list, names: dict | None, frame, consts: dict) -> dict:
    """value key -> name: ``names=``, then ``Tensor.name``, then the caller's variables, then
    the qualified names of the modules' parameters."""
    keys: set = set()
    resolved = _given_names(names)
    for node in nodes:
        for p in parents(node):
            if p is not None and p[0] == "leaf":
                keys.add(id(p[1]))
                if p[1].name is not None:
                    resolved.setdefault(id(p[1]), p[1].name)
        for nr in range(len(node._outs)):
            keys.add((node, nr))
        for nr, n in (getattr(node, "wire_names", None) or {}).items():
            if n is not None:
                resolved.setdefault((node, nr), n)
    for c in consts.values():
        keys.add(("data", id(c)))
    for k, n in caller_names(frame, keys).items():
        resolved.setdefault(k, n)
    for node in nodes:  # parameters of the modules drawn get their qualified names
        scope = getattr(node, "scope", ())
        if scope and hasattr(scope[0], "named_parameters"):
            for pname, param in scope[0].named_parameters():
                resolved.setdefault(id(param), pname)
    return resolved


# ---- scopes and folds ---------------------------------------------------------------------------
class FunctionScope:
    """A one-gate cluster for a custom Function (unique per gate)."""

    def __init__(self, label: str) -> None:
        self.label = label


def scope_label(path: tuple, k: int) -> str:
    mod = path[k]
    if isinstance(mod, FunctionScope):
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
            fid = f"fold{len(folded)}_{i}"
            for n in chain[i:i + r * period]:
                folded[n] = (fid, label)
            i += r * period
    return folded


# ---- gate labels --------------------------------------------------------------------------------
def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:.3g}"


def gate_symbol(node, consts: dict) -> str:
    """The lecture's gate labels: ×, +, σ, and with one constant input +1, ×2, 1/x, ^2."""
    op = type(node).__name__
    sym = SYMBOL.get(op, "")
    index = getattr(node, "index", None) if op == "Index" else None
    if isinstance(index, (int, np.integer)):
        return f"[{int(index)}]"
    if not sym or op not in ("Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum"):
        return sym
    cs = [i for i in range(2) if (node, i) in consts and np.size(consts[(node, i)]) == 1]
    if len(cs) != 1:
        return sym
    k = cs[0]
    v = float(host(consts[(node, k)]).reshape(()))
    c = _number(v)
    if op in ("Maximum", "Minimum"):
        return f"{sym}({c}, ·)"
    if op == "Div" and k == 0:
        return f"{c}/x"
    if op == "Sub" and k == 0:
        return f"{c}−x"
    if op == "Mul" and v == -1:
        return "×−1"
    return f"{sym}{c}"


# ---- the circuit --------------------------------------------------------------------------------
def build(output, *, names: dict | None = None, grads: bool = True, collapse: bool | int = False,
          fold: bool | str = "auto", max_nodes: int = 150, show_sites: bool = False,
          title: str | None = None, frame=None) -> Circuit:
    """The :class:`Circuit` of the graph behind ``output`` (a Tensor or a list of Tensors)."""
    outputs = list(output) if isinstance(output, (list, tuple)) else [output]
    for o in outputs:
        if not isinstance(o, Tensor):
            raise TypeError(f"draw: output must be a Tensor, got {type(o).__name__}")
    notes: list = []
    nodes = graph_nodes(outputs)
    values, consts = wire_values(nodes, outputs)
    resolved = _resolve_names(nodes, outputs, names, frame, consts)

    egrads: dict = {}
    ograds: dict = {}
    lgrads: dict = {}
    if grads and outputs[0]._grad_fn is not None:
        try:
            egrads, ograds, lgrads = edge_gradients(outputs[0])
        except RuntimeError:
            notes.append("intermediate gradients unavailable: backward() freed this large graph "
                         "(draw before backward(), use retain_graph=True, or build it inside "
                         "cr.viz.record())")
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

    # the drawn box of each gate: itself, its collapsed module, or its fold
    rep: dict = {}
    rep_label: dict = {}
    depth = int(collapse) if collapse else 0
    for node in nodes:
        scope = tuple(getattr(node, "scope", ()) or ())
        if depth and len(scope) >= depth:
            key = "mod" + "_".join(str(id(m)) for m in scope[:depth])
            rep[node] = key
            rep_label[key] = ("module", scope_label(scope, depth - 1), scope[:depth - 1])
    if fold is True or (fold == "auto" and len(nodes) > 60):
        free = [n for n in nodes if n not in rep]
        for node, (fid, label) in _fold_chains(free, consumers, 3).items():
            rep[node] = fid
            rep_label[fid] = ("fold", label, tuple(getattr(node, "scope", ()) or ())[:-1])
    for i, node in enumerate(nodes):
        rep.setdefault(node, f"g{i}")

    drawn = list(dict.fromkeys(rep[n] for n in nodes))
    dropped: set = set()
    if len(drawn) > max_nodes:  # keep the boxes closest to the output
        dropped = set(drawn) - set(list(reversed(drawn))[:max_nodes])
        notes.append(f"{len(dropped)} more gates not drawn (max_nodes={max_nodes}); "
                     "use collapse=True for the overview, or a larger max_nodes")

    boxes: list = []
    clusters: dict = {}

    def cluster_path(scope: tuple) -> tuple:
        path = []
        for k in range(1, len(scope) + 1):
            key = tuple(id(m) for m in scope[:k])
            if key not in clusters:
                clusters[key] = Cluster(key, scope_label(scope, k - 1),
                                        dashed=isinstance(scope[k - 1], FunctionScope))
            path.append(key)
        return tuple(path)

    leaf_ids: dict = {}
    n_leaf = 0
    for node in nodes:
        for p in parents(node):
            if p is None or p[0] != "leaf" or id(p[1]) in leaf_ids:
                continue
            name = resolved.get(id(p[1]))
            if name is None:
                name = f"x{n_leaf}"
                resolved[id(p[1])] = name
            n_leaf += 1
            shape = list(p[1]._data.shape)
            bid = f"l{len(leaf_ids)}"
            leaf_ids[id(p[1])] = bid
            total = lgrads.get(id(p[1])) if leaf_uses.get(id(p[1]), 0) > 1 else None
            boxes.append(Box(bid, "leaf", name, str(shape) if shape else "",
                             tooltip=f"{name}: an input{' ' + str(shape) if shape else ''}",
                             grad=total))

    const_ids: dict = {}
    seen: set = set()
    for node in nodes:
        r = rep[node]
        if r in dropped or r in seen:
            continue
        seen.add(r)
        if r in rep_label:
            kind, label, scope = rep_label[r]
            boxes.append(Box(r, kind, label, scope=cluster_path(tuple(scope))))
            continue
        op = op_name(node)
        sym = gate_symbol(node, consts)
        site = getattr(node, "site", None)
        sub = op if sym and sym.lower() != op.lower() else ""
        if show_sites and site:
            sub = (sub + " " if sub else "") + site.rsplit("/", 1)[-1]
        scope = tuple(getattr(node, "scope", ()) or ())
        if not isinstance(node, Op):  # a custom Function: its own dashed cluster
            scope = scope + (FunctionScope(f"Function {op}"),)
        boxes.append(Box(r, "gate", sym or op, sub, scope=cluster_path(scope),
                         tooltip=f"{node.name()} {site or ''}".strip(), gate=node))
        for i, p in enumerate(parents(node)):  # tensor constants get an input box
            if p is None and (node, i) in consts and np.size(consts[(node, i)]) > 1:
                c = consts[(node, i)]
                if id(c) not in const_ids:
                    const_ids[id(c)] = f"c{len(const_ids)}"
                    name = resolved.get(("data", id(c)), "const")
                    boxes.append(Box(const_ids[id(c)], "const", name, str(list(np.shape(c))),
                                     tooltip=f"{name}: a constant input (no gradient)"))

    wires: list = []
    done: set = set()

    def add_wire(src, dst, key, value, grad, i, name=None):
        if (src, dst, key) in done:
            return
        done.add((src, dst, key))
        wires.append(Wire(f"w{len(wires)}", src, dst, value, grad, name, key, i))

    for node in nodes:
        dst = rep[node]
        if dst in dropped:
            continue
        for i, p in enumerate(parents(node)):
            if p is None:
                c = consts.get((node, i))
                if c is not None and id(c) in const_ids:
                    add_wire(const_ids[id(c)], dst, ("data", id(c)), c, None, i)
                continue
            key = _key(p)
            grad = egrads.get((node, i))
            if p[0] == "leaf":
                src = leaf_ids[id(p[1])]
                if grad is None and leaf_uses.get(id(p[1])) == 1:
                    grad = lgrads.get(id(p[1]))  # graph freed: the leaf's .grad
            else:
                src = rep[p[1]]
                if src == dst:
                    continue
                if src in dropped:
                    src = "more"
            add_wire(src, dst, key, values.get(key), grad if src != "more" else None, i,
                     resolved.get(key) if p[0] == "node" else None)
    if dropped:
        boxes.append(Box("more", "more", notes[-1]))
    for k, o in enumerate(outputs):
        if o._grad_fn is None or rep[o._grad_fn] in dropped:
            continue
        key = (o._grad_fn, o._nr)
        oid = f"out{k}"
        label = resolved.get(key) or (f"out{k}" if len(outputs) > 1 else "out")
        boxes.append(Box(oid, "output", label, tooltip=f"{label}: the output"))
        seed = ograds.get(key) if k == 0 and grads else None
        add_wire(rep[o._grad_fn], oid, ("out", k), o._data, seed, 0)
    return Circuit(boxes, wires, clusters, title or "", tuple(notes), resolved, values, egrads,
                   ograds, nodes, rep, consts,
                   [(o._grad_fn, o._nr) for o in outputs if o._grad_fn is not None])
