"""The forward and backward pass of a function, staged as straight-line code (as the lecture does).

``explain(fn, *inputs)`` records ``fn``'s graph, then prints one line per gate with the variable
it caches and its value, the backward pass in reverse order with each local gradient (``+=``
where gradients add up at a fork, and the add/max/mul flow patterns noted), the final gradients
and a central-difference check of each. ``main(argv)`` is ``chainrule explain "EXPR" x=3 y=-4``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import numpy as np

from chainrule.autograd.engine import call_backward
import chainrule as cr
from chainrule._state import state
from chainrule.autograd.edges import edge_gradients
from chainrule.autograd.grad_mode import no_grad
from chainrule.autograd.graph import graph_nodes, op_name, parents
from chainrule.viz.draw import draw

__all__ = ["explain", "trace", "Trace"]

# forward formula per op ({0}, {1}: argument names; {y}: the output's name)
_FORWARD = {
    "Add": "{0} + {1}", "Sub": "{0} - {1}", "Mul": "{0} * {1}", "Div": "{0} / {1}",
    "Pow": "{0}**{1}", "Neg": "-{0}", "Sigmoid": "1/(1+exp(-{0}))", "Exp": "exp({0})",
    "Log": "log({0})", "Sqrt": "sqrt({0})", "Tanh": "tanh({0})", "Sin": "sin({0})",
    "Cos": "cos({0})", "Abs": "abs({0})", "Relu": "max(0, {0})", "Maximum": "max({0}, {1})",
    "Minimum": "min({0}, {1})", "MatMul": "{0} @ {1}", "Sum": "{0}.sum()", "Mean": "{0}.mean()",
    "Reciprocal": "1/{0}",
}
# local gradient dy/d(input i); "{g}" marks a rule that is not a plain product (matmul)
_LOCAL = {
    "Add": ("1", "1"), "Sub": ("1", "-1"), "Mul": ("{1}", "{0}"),
    "Div": ("1/{1}", "-{0}/{1}**2"), "Pow": ("{1}*{0}**({1}-1)", "{y}*log({0})"),
    "Neg": ("-1",), "Sigmoid": ("{y}*(1-{y})",), "Exp": ("{y}",), "Log": ("1/{0}",),
    "Sqrt": ("0.5/{y}",), "Tanh": ("1-{y}**2",), "Sin": ("cos({0})",), "Cos": ("-sin({0})",),
    "Abs": ("sign({0})",), "Relu": ("({0} > 0)",), "Maximum": ("({0} > {1})", "({1} > {0})"),
    "Minimum": ("({0} < {1})", "({1} < {0})"), "Reciprocal": ("-{y}**2",),
}
_PATTERN = {
    "Add": "add gate distributes the gradient unchanged to both inputs",
    "Sub": "add gate (with a sign flip) distributes",
    "Mul": "mul gate swaps: each input's local gradient is the other input",
    "Maximum": "max gate routes the whole gradient to the larger input",
    "Minimum": "min gate routes the whole gradient to the smaller input",
    "Relu": "max(0, x) gate routes: gradient passes where x > 0",
}
# max/min at a tie: PyTorch sends half the gradient to each input
_TIE_RULES = {"Maximum": ("({0} > {1}) + 0.5*({0} == {1})", "({1} > {0}) + 0.5*({0} == {1})"),
              "Minimum": ("({0} < {1}) + 0.5*({0} == {1})", "({1} < {0}) + 0.5*({0} == {1})")}
_NAME = {"Sigmoid": "sig", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Tanh": "tanh",
         "Sin": "sin", "Cos": "cos", "Abs": "abs", "Relu": "relu", "Neg": "neg"}
_BINARY_NAME = {"Add": "p", "Sub": "m", "Mul": "t", "Div": "d", "Maximum": "max",
                "Minimum": "min", "MatMul": "mm"}


def _fmt(v) -> str:
    """A compact value: the number for scalars, values for ≤ 4 elements, else the shape."""
    a = np.asarray(getattr(v, "_data", v))
    if a.size == 1:
        return f"{float(a.reshape(())):.4g}"
    if a.size <= 4:
        return "[" + ", ".join(f"{float(x):.4g}" for x in a.reshape(-1)) + "]" + (
            f" (shape {list(a.shape)})" if a.ndim > 1 else "")
    return f"<shape {list(a.shape)}>"


def _literal(v) -> str:
    f = float(np.asarray(v).reshape(()))
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:g}"


@dataclass
class Trace:
    """A recorded graph with a name for every value, ready to be printed as code."""

    names: list                # input names
    leaves: list               # input leaf Tensors (float64)
    output: Any                # the output Tensor
    nodes: list                # gates in forward order
    var: dict = field(default_factory=dict)     # (node, nr) or id(leaf) -> variable name
    value: dict = field(default_factory=dict)   # same keys -> forward value (array)
    args: dict = field(default_factory=dict)    # node -> list of argument strings
    consts: list = field(default_factory=list)  # (name, array) of tensor constants


def _key(p):
    return id(p[1]) if p[0] == "leaf" else (p[1], p[2])


def _namer(used: set) -> Callable:
    """``fresh(base)``: ``base``, or ``base2``, ``base3``... when taken (``t`` if unusable)."""
    def fresh(base: str) -> str:
        if not base.isidentifier() or len(base) > 12:
            base = "t"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}{k}"
        used.add(name)
        return name

    return fresh


def name_outputs(nodes: list, arg_names: Callable, var: dict, fresh: Callable, out_key,
                 out_name: str = "f") -> None:
    """Name every gate output not named yet, from its op and its arguments' names (``sigy``,
    ``xpy``, ``xpysq``, ``invden``...); the final output is ``f``. Fills ``var``."""
    for node in nodes:  # in forward order, so the arguments are named first
        op = op_name(node)
        argn = arg_names(node)
        for nr in range(len(node._outs)):
            if (node, nr) in var:
                continue
            if (node, nr) == out_key:
                var[(node, nr)] = fresh(out_name)
                continue
            if op in _NAME and argn:
                base = _NAME[op] + argn[0]
            elif op == "Div" and len(argn) == 2 and argn[0] == "1":
                base = "inv" + argn[1]
            elif op == "Pow" and len(argn) == 2 and argn[1] == "2":
                base = argn[0] + "sq"
            elif op in _BINARY_NAME and len(argn) == 2:
                base = argn[0] + _BINARY_NAME[op] + argn[1]
            else:
                base = op.lower()
            if len(node._outs) > 1:
                base += str(nr)
            var[(node, nr)] = fresh(base)


def trace(fn: Callable, *inputs: Any, names: list | None = None) -> Trace:
    """Run ``fn`` on float64 leaf copies of ``inputs`` while recording every gate's inputs."""
    if names is None:
        try:
            params = list(inspect.signature(fn).parameters.values())
            names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                            p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            names = []
        if len(names) < len(inputs):
            names = [f"x{i}" for i in range(len(inputs))]
    names = list(names[: len(inputs)])
    leaves = []
    for v in inputs:
        data = v.detach()._data if isinstance(v, cr.Tensor) else np.asarray(v, np.float64)
        leaves.append(cr.tensor(np.array(data, np.float64, order="C"), requires_grad=True))
    prev = (state.record_sites, state.record_inputs)
    state.record_sites = state.record_inputs = True
    try:
        with cr.enable_grad():
            out = fn(*leaves)
    finally:
        state.record_sites, state.record_inputs = prev
    if not isinstance(out, cr.Tensor) or out._grad_fn is None:
        raise ValueError("explain: fn must return a Tensor computed from its inputs (got "
                         f"{type(out).__name__} without a graph)")
    tr = Trace(names, leaves, out, graph_nodes([out]))
    for n, leaf in zip(names, leaves):
        tr.var[id(leaf)] = n
        tr.value[id(leaf)] = leaf._data
    used = set(names)
    fresh = _namer(used)

    for node in tr.nodes:  # values of each gate's inputs, as seen by that gate
        inputs_rec = getattr(node, "inputs", None) or ()
        args = []
        for i, p in enumerate(parents(node)):
            raw = inputs_rec[i] if i < len(inputs_rec) else None
            raw = getattr(raw, "_data", raw)
            if p is not None:
                key = _key(p)
                if raw is not None:
                    tr.value.setdefault(key, raw)
                if p[0] == "leaf" and key not in tr.var:
                    tr.var[key] = fresh("w")
                args.append(key)
            elif raw is None or not hasattr(raw, "shape") and not isinstance(raw, (int, float)):
                args.append(repr(raw))
            elif np.size(raw) == 1:
                args.append(_literal(raw))
            else:
                cname = fresh("c")
                tr.consts.append((cname, raw))
                args.append(cname)
        tr.args[node] = args
    tr.value[(out._grad_fn, out._nr)] = out._data
    name_outputs(tr.nodes, lambda node: [tr.var.get(a, "?") if not isinstance(a, str) else a
                                         for a in tr.args[node]],
                 tr.var, fresh, (out._grad_fn, out._nr))
    return tr


def _argstr(tr: Trace, node) -> list:
    return [tr.var.get(a, "?") if not isinstance(a, str) else a for a in tr.args[node]]


def _forward_line(tr: Trace, node) -> tuple[str, str]:
    op = op_name(node)
    args = _argstr(tr, node)
    tmpl = _FORWARD.get(op)
    if tmpl is not None and tmpl.count("{") <= len(args):
        rhs = tmpl.format(*args)
    else:
        rhs = f"{op.lower()}({', '.join(args)})"
    outs = [tr.var[(node, nr)] for nr in range(len(node._outs))]
    vals = [_fmt(tr.value[(node, nr)]) if (node, nr) in tr.value else "?" for nr in
            range(len(node._outs))]
    return f"{', '.join(outs)} = {rhs}", ", ".join(vals)


def _local_value(node, i: int):
    """dy/d(input i) for a scalar single-output gate (its backward run with upstream 1)."""
    shape, dtype = node._outs[0]
    if len(node._outs) != 1 or int(np.prod(shape)) != 1:
        return None

    with no_grad():
        gs = call_backward(node, np.ones(shape, dtype))
    g = gs[i] if i < len(gs) else None
    g = getattr(g, "_data", g)
    return None if g is None or np.size(g) != 1 else float(np.asarray(g).reshape(()))


def _backward_lines(tr: Trace) -> list[tuple[str, str]]:
    edges, outs, leaves = edge_gradients(tr.output)
    yname = tr.var[(tr.output._grad_fn, tr.output._nr)]
    if tr.output._data.size == 1:
        lines = [(f"d{yname} = 1", f"start: d{yname}/d{yname} = 1")]
    else:
        lines = [(f"d{yname} = ones_like({yname})",
                  f"{yname} is not a scalar: backpropagate the gradient of {yname}.sum()")]
    written: set = set()
    for node in reversed(tr.nodes):
        op = op_name(node)
        args = _argstr(tr, node)
        if len(node._outs) == 1:
            y = tr.var[(node, 0)]
            dy = "d" + y
        else:
            y = "(" + ", ".join(tr.var[(node, nr)] for nr in range(len(node._outs))) + ")"
            dy = "d" + y
        if not any((node, nr) in outs for nr in range(len(node._outs))):
            continue
        rules = _LOCAL.get(op)
        tie = op in _TIE_RULES and _tied(tr, node)
        if tie:  # at a tie the gradient is split in half (as PyTorch): say so in the code
            rules = _TIE_RULES[op]
        first = True
        for i, p in enumerate(parents(node)):
            if p is None or (node, i) not in edges:
                continue
            target = "d" + tr.var.get(_key(p), "?")
            fork = target in written
            assign = "+=" if fork else "="
            written.add(target)
            g = edges[(node, i)]
            if op == "MatMul":
                rhs = _matmul_rule(node, i, args, dy)
                local = None
            elif op in ("Sum", "Mean"):
                rhs = f"{dy} * ones_like({args[0]})"
                if op == "Mean":
                    shape = p[1]._data.shape if p[0] == "leaf" else p[1]._outs[p[2]][0]
                    rhs += f" / {int(np.prod(shape)) // max(1, int(np.prod(node._outs[0][0])))}"
                local = None
            elif rules is not None and i < len(rules):
                local = local_rule(op, i, args, y, rules)
                rhs = dy if local == "1" else f"-{dy}" if local == "-1" else (
                    f"{_paren(local)} * {dy}")
            else:
                local = None
                rhs = f"{op.lower()}_backward({dy})[{i}]"
            note = []
            if local not in (None, "1", "-1"):
                lv = _local_value(node, i)
                if lv is not None:
                    note.append(f"local gradient {lv:.4g}")
            if fork:
                total = _total(tr, p, edges, node, i)
                note.append(f"fork: gradients add up, {target} = {_fmt(total)}")
            else:
                note.append(f"{target} = {_fmt(g)}")
            if first and op in _PATTERN:
                note.append(_PATTERN[op] + ("; at a tie it splits it in half" if tie else ""))
            first = False
            lines.append((f"{target} {assign} {rhs}", "; ".join(note)))
    _ = leaves
    return lines


def local_rule(op: str, i: int, args: list, y: str, rules: tuple | None = None) -> str | None:
    """The local gradient d(y)/d(input i) as code, from the argument names (``2*xpy`` for a
    square)."""
    rules = _LOCAL.get(op) if rules is None else rules
    if rules is None or i >= len(rules):
        return None
    if op == "Pow" and i == 0 and args[1].lstrip("-").replace(".", "").isdigit():
        k = float(args[1])
        return f"{args[1]}*{args[0]}" if k == 2 else f"{args[1]}*{args[0]}**{_literal(k - 1)}"
    return rules[i].format(*args, y=y)


def _paren(expr: str) -> str:
    """Wrap ``expr`` in parentheses if a top-level + or - would bind looser than ``*``."""
    depth = 0
    for k, c in enumerate(expr):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and c in "+-" and k > 0 and expr[k - 1] not in "*/(e":
            return f"({expr})"
    return expr


def _tied(tr: Trace, node) -> bool:
    """Do the two inputs of a max/min gate tie somewhere?"""
    vals = []
    for i, p in enumerate(parents(node)):
        v = tr.value.get(_key(p)) if p is not None else None
        if v is None:
            raw = (getattr(node, "inputs", None) or (None, None))[i]
            v = getattr(raw, "_data", raw)
        vals.append(v)
    if len(vals) != 2 or any(v is None for v in vals):
        return False
    return bool(np.any(np.asarray(vals[0]) == np.asarray(vals[1])))


def _matmul_rule(node, i: int, args: list, dy: str) -> str:
    """dA = dY·Bᵀ, dB = Aᵀ·dY (outer products where an operand is a vector)."""
    inputs = getattr(node, "inputs", None) or ((), ())
    nd = [np.ndim(getattr(a, "_data", a)) for a in inputs[:2]]
    a, b = args[0], args[1]
    if nd == [1, 1]:
        return f"{b} * {dy}" if i == 0 else f"{a} * {dy}"
    if nd[1] == 1:
        return f"outer({dy}, {b})" if i == 0 else f"{a}.T @ {dy}"
    if nd[0] == 1:
        return f"{b} @ {dy}" if i == 0 else f"outer({a}, {dy})"
    return f"{dy} @ {b}.T" if i == 0 else f"{a}.T @ {dy}"


def _total(tr: Trace, p, edges: dict, upto_node, upto_i):
    """The running sum of gradients delivered to parent ``p`` so far (reverse order)."""
    key = _key(p)
    total = None
    for node in reversed(tr.nodes):
        for i, q in enumerate(parents(node)):
            if q is not None and _key(q) == key and (node, i) in edges:
                g = edges[(node, i)]
                total = g if total is None else total + g
            if node is upto_node and i == upto_i:
                return total
    return total


WORK_LIMIT = 20_000_000  # element operations spent on the numerical check (about a second)
_PER_INPUT = 256         # entries of one input checked at most
_H = 1e-6


@dataclass
class _Budget:
    """How many evaluations of ``fn`` the numerical check may still make."""

    evals: int
    limited: bool = False


def _evaluate(tr: Trace, fn: Callable, arrs: list) -> float:
    with cr.no_grad(), np.errstate(all="ignore"):
        out = fn(*[cr.tensor(a) for a in arrs])
    return float(np.sum(np.asarray(out._data, np.float64)))


def _numeric(tr: Trace, fn: Callable, k: int, budget: _Budget, inputs_left: int):
    """Central differences of sum(fn) for entries of input ``k`` within the budget; returns
    ``(numeric, checked indices, one-sided (left, right) per checked index, f(x))``."""
    base = [np.array(leaf._data, order="C") for leaf in tr.leaves]
    size = base[k].size
    share = max(1, (budget.evals // max(1, inputs_left) - 1) // 2)  # two evaluations per entry
    n = min(size, _PER_INPUT, share)
    if n < min(size, _PER_INPUT):
        budget.limited = True
    f0 = _evaluate(tr, fn, base)
    num = np.full(size, np.nan)
    sides = {}
    for j in range(n):
        vals = []
        for sgn in (1, -1):
            arrs = [b.copy() for b in base]
            arrs[k].reshape(-1)[j] += sgn * _H
            vals.append(_evaluate(tr, fn, arrs))
        num[j] = (vals[0] - vals[1]) / (2 * _H)
        sides[j] = ((f0 - vals[1]) / _H, (vals[0] - f0) / _H)
    budget.evals -= 2 * n + 1
    return num.reshape(base[k].shape), n, sides, f0


def _verdict(a: float, num: float, side: tuple, f0: float, scale: float) -> str:
    """``ok``; ``kink`` (one-sided derivatives differ and chainrule took a subgradient, as
    PyTorch does); ``undefined`` (f or the gradient is NaN/Inf here: outside the domain);
    or ``mismatch``."""
    tol = 1e-5 * scale
    left, right = side
    if not (np.isfinite(a) and np.isfinite(num) and np.isfinite(f0)
            and np.isfinite(left) and np.isfinite(right)):
        return "ok" if (np.isnan(a) and np.isnan(num)) or a == num else "undefined"
    if abs(a - num) <= tol:
        return "ok"
    if abs(left - right) > 1e-3 * max(1.0, abs(left), abs(right)) and (
            min(left, right) - tol <= a <= max(left, right) + tol):
        return "kink"
    return "mismatch"


def _gradient_lines(tr: Trace, fn: Callable) -> tuple[list, int, list]:
    """The checked gradient of every input; the number of real mismatches; notes on kinks,
    undefined points and the work limit."""
    _, _, leaves = edge_gradients(tr.output)
    lines, notes = [], []
    mismatches = 0
    yname = tr.var[(tr.output._grad_fn, tr.output._nr)]
    cost = max(1, sum(int(np.prod(s)) for node in tr.nodes for s, _ in node._outs))
    budget = _Budget(max(3 * len(tr.leaves), WORK_LIMIT // cost))
    for k, (name, leaf) in enumerate(zip(tr.names, tr.leaves)):
        g = leaves.get(id(leaf))
        g = np.zeros(leaf._data.shape) if g is None else np.asarray(g, np.float64)
        num, n, sides, f0 = _numeric(tr, fn, k, budget, len(tr.leaves) - k)
        flat_g, flat_n = g.reshape(-1), num.reshape(-1)
        finite = flat_n[:n][np.isfinite(flat_n[:n])]
        scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
        verdicts = [_verdict(flat_g[j], flat_n[j], sides[j], f0, scale) for j in range(n)]
        count = {v: verdicts.count(v) for v in ("ok", "kink", "undefined", "mismatch")}
        mismatches += count["mismatch"]
        with np.errstate(invalid="ignore"):
            diffs = np.abs(flat_g[:n] - flat_n[:n])
        err = float(np.nanmax(diffs)) if n and not np.all(np.isnan(diffs)) else 0.0
        shown = f"numeric {_fmt(num)}" if g.size <= 4 else f"{n} of {g.size} entries checked"
        if count["mismatch"]:
            check = f"{shown}, max |difference| {err:.1e}: MISMATCH"
        elif count["kink"]:
            j = verdicts.index("kink")
            left, right = sides[j]
            where = "" if g.size == 1 else f" (at {count['kink']} entries)"
            check = (f"{shown}: a kink{where}: the slope is {_fmt(left)} on the left and "
                     f"{_fmt(right)} on the right; chainrule takes {_fmt(flat_g[j])}, as "
                     "PyTorch does (not an error)")
        elif count["undefined"]:
            where = "" if g.size == 1 else f" (at {count['undefined']} entries)"
            check = (f"{shown}: undefined{where}: f is NaN or infinite at or next to this "
                     "point (outside its domain), so there is no derivative to check")
        else:
            check = f"{shown}, max |difference| {err:.1e}: ok"
        lines.append((f"d{yname}/d{name} = {_fmt(g)}", check))
    notes += _special_points(tr)
    if budget.limited:
        notes.append(f"work limit: the numerical check stopped at {WORK_LIMIT:,} element "
                     "operations; the entries not checked were skipped, not failed")
    return lines, mismatches, notes


def _special_points(tr: Trace) -> list:
    """Gates sitting on a kink or outside their domain, named by their code line."""
    notes = []
    for node in tr.nodes:
        op = op_name(node)
        vals = [tr.value.get(_key(p)) if p is not None else None for p in parents(node)]
        x = np.asarray(vals[0], np.float64) if vals and vals[0] is not None else None
        if x is None:
            continue
        line = _forward_line(tr, node)[0]
        with np.errstate(all="ignore"):
            if op in ("Relu", "Abs") and np.any(x == 0):
                notes.append(f"`{line}` sits on its kink (its input is 0)")
            elif op in ("Maximum", "Minimum") and _tied(tr, node):
                notes.append(f"`{line}` has tied inputs: a kink; the gradient is split in half")
            elif op == "Log" and np.any(x <= 0):
                notes.append(f"`{line}` is outside its domain (log of a number ≤ 0)")
            elif op == "Sqrt" and np.any(x < 0):
                notes.append(f"`{line}` is outside its domain (square root of a negative)")
            elif op == "Sqrt" and np.any(x == 0):
                notes.append(f"`{line}` is at the edge of its domain (its slope is infinite)")
            elif op == "Div" and len(vals) > 1 and vals[1] is not None and np.any(
                    np.asarray(vals[1]) == 0):
                notes.append(f"`{line}` divides by 0")
    return notes


def _render(lines: list[tuple[str, str]], width: int | None = None) -> list[str]:
    if not lines:
        return []
    w = width or min(max(len(code) for code, _ in lines) + 2, 48)
    return [f"{code:<{w}}# {note}" if note else code for code, note in lines]


def explain(fn: Callable, *inputs: Any, format: str = "text", names: list | None = None) -> str:
    """The staged forward pass, backward pass and checked gradients of ``fn`` at ``inputs``."""
    return _explain(fn, inputs, format, names)[0]


def _explain(fn: Callable, inputs: tuple, format: str, names: list | None):
    """``(text, real mismatches, trace)``."""
    if format not in ("text", "markdown", "svg"):
        raise ValueError(f"explain: format must be 'text', 'markdown' or 'svg', got {format!r}")
    tr = trace(fn, *inputs, names=names)
    if format == "svg":
        return draw(tr.output, names={leaf: n for n, leaf in zip(tr.names, tr.leaves)}
                    ).svg(), 0, tr
    at = ", ".join(f"{n} = {_fmt(leaf._data)}" for n, leaf in zip(tr.names, tr.leaves))
    fwd = [(f"{c} = <tensor shape {list(np.shape(v))}>", "constant") for c, v in tr.consts]
    fwd += [_forward_line(tr, node) for node in tr.nodes]
    bwd = _backward_lines(tr)
    grads, mismatches, notes = _gradient_lines(tr, fn)
    w = min(max(len(c) for c, _ in fwd + bwd + grads) + 2, 48)
    sections = [
        (f"forward pass at {at}: each gate caches its output", _render(fwd, w)),
        ("backward pass, in reverse: d<v> is df/d<v>; '+=' where gradients add up at a fork",
         _render(bwd, w)),
        ("gradients, checked by central differences (f(x+h) - f(x-h)) / 2h, h = 1e-6",
         _render(grads, w) + [f"# note: {n}" for n in notes]),
    ]
    if format == "markdown":
        parts = []
        for title, body in sections:
            parts.append(f"**{title[0].upper()}{title[1:]}**\n\n```python\n" + "\n".join(body)
                         + "\n```")
        return "\n\n".join(parts) + "\n", mismatches, tr
    text = "\n\n".join("# " + title + "\n" + "\n".join(body) for title, body in sections)
    return text + "\n", mismatches, tr
