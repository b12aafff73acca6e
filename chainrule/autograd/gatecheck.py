"""Check every gate of a recorded graph on its own: the wrong backward is named, not just found.

``gradcheck`` says *that* a whole function's gradient is wrong. ``check_gates`` says *which gate*:
it runs ``fn`` once while each gate keeps its inputs and its creation site, then re-runs every
gate alone in float64 on fresh leaves and compares its vector-Jacobian product with central
differences of that gate's forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule._state import state
from chainrule.autograd.entry import grad as autograd_grad
from chainrule.autograd.grad_mode import enable_grad, no_grad
from chainrule.autograd.graph import as_list, graph_nodes, op_name
from chainrule.tensor import Tensor, wrap

__all__ = ["check_gates", "GateReport", "GateFailure", "GateResult"]


# ---- the report ---------------------------------------------------------------------------------
@dataclass
class LocalGradient:
    """One input's local gradient as a hand derivation gives it: the gate's backward with a
    unit upstream gradient (ones on every output), i.e. d(sum of outputs)/d(input), beside the
    central difference of the gate's forward, at the checked elements ``index`` (flat)."""

    input_index: int
    shape: tuple
    index: Any
    analytic: Any
    numeric: Any

    @property
    def max_abs_error(self) -> float:
        if not len(self.index):
            return 0.0
        with np.errstate(invalid="ignore"):
            return float(np.nanmax(np.abs(self.analytic - self.numeric)))

    def __str__(self) -> str:
        if len(self.index) == 1 and not self.shape:
            return (f"d/d(input {self.input_index}) = {float(self.analytic[0]):.6g} "
                    f"(numeric {float(self.numeric[0]):.6g})")
        shape = "×".join(map(str, self.shape)) or "1"
        part = "" if int(np.prod(self.shape)) == len(self.index) else (
            f", {len(self.index)} elements checked")
        return (f"d/d(input {self.input_index}) [{shape}]: max |analytic - numeric| "
                f"{self.max_abs_error:.2g}{part}")


@dataclass
class GateFailure:
    """One gate whose backward disagrees with finite differences of its own forward; the
    ``upstream`` gradient was ``"1"`` (ones: the local gradient itself) or ``"random"``."""

    op: str
    site: str | None
    input_index: int
    index: tuple
    analytic: float
    numeric: float
    rel_error: float
    abs_error: float
    scope: tuple = ()
    node: Any = field(default=None, repr=False)
    upstream: str = "1"

    def __str__(self) -> str:
        where = self.site or "<site unknown>"
        inside = f" in {'.'.join(_scope_name(s) for s in self.scope)}" if self.scope else ""
        with_g = ("local gradient (upstream gradient 1)" if self.upstream == "1"
                  else "with a random upstream gradient")
        return (f"{self.op} created at {where}{inside}: d/d(input {self.input_index})"
                f"{list(self.index)} {with_g}: analytic {self.analytic:.8g} vs numeric "
                f"{self.numeric:.8g} (relative error {self.rel_error:.3g})")


@dataclass
class GateResult:
    """A gate that was checked (passed) or skipped, with the reason; ``local`` holds its local
    gradients (upstream gradient 1) against the numerical ones."""

    op: str
    site: str | None
    max_rel_error: float = 0.0
    reason: str = ""
    node: Any = field(default=None, repr=False)
    local: list = field(default_factory=list)


def _scope_name(s) -> str:
    return s if isinstance(s, str) else type(s).__name__


@dataclass
class GateReport:
    """What ``check_gates`` found: ``.ok``, ``.failures``, ``.passed``, ``.skipped``."""

    failures: list = field(default_factory=list)
    passed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        n = len(self.failures) + len(self.passed)
        head = (f"check_gates: {n} gates checked, {len(self.failures)} failing, "
                f"{len(self.passed)} passed")
        lines = [head + (f", {len(self.skipped)} skipped" if self.skipped else "")]
        for f in self.failures:
            lines.append(f"  FAIL {f}")
        if 0 < len(self.passed) <= 40:
            lines.append("  local gradients (backward with upstream gradient 1) vs central "
                         "differences:")
            for r in self.passed:
                where = (r.site or "").rsplit("/", 1)[-1]
                lines.append(f"  ok {r.op}" + (f" at {where}" if where else "") + ": "
                             + "; ".join(str(g) for g in r.local))
        elif self.passed:
            counts: dict = {}
            for r in self.passed:
                counts[r.op] = counts.get(r.op, 0) + 1
            worst = max(r.max_rel_error for r in self.passed)
            summary = ", ".join(f"{k} ×{v}" if v > 1 else k for k, v in counts.items())
            lines.append(f"  passed: {summary} (worst relative error {worst:.2g})")
        for r in self.skipped:
            lines.append(f"  skipped {r.op} at {r.site or '<site unknown>'}: {r.reason}")
        return "\n".join(lines)

    __repr__ = __str__


# ---- checking one gate --------------------------------------------------------------------------
def _fresh_args(node) -> tuple[list, list]:
    """The gate's recorded inputs as float64 copies; leaves (or None) where a gradient flows."""
    args, leaves = [], []
    for i, a in enumerate(node.inputs):
        raw = a._data if isinstance(a, Tensor) else a
        needs = i < len(node._edges) and node._edges[i] is not None
        if hasattr(raw, "dtype") and raw.dtype.kind in FLOAT_KINDS:
            t = wrap(np.array(raw, dtype=np.float64, order="C"))
            if needs:
                t._requires_grad = True
                leaves.append((i, t))
            args.append(t)
        else:
            args.append(a)
    return args, leaves


def _outputs(result) -> list:
    outs = result if isinstance(result, tuple) else (result,)
    return [o if isinstance(o, Tensor) else None for o in outs]


def _check_node(node, eps, atol, rtol, max_elements, rng):
    """``(None, max_rel, local)`` when the gate passes, ``(failure, None, local)`` when not, or
    ``(reason, None, [])`` when it cannot be checked. The gate is checked twice: with a unit
    upstream gradient (its local gradient, as derived by hand) and with a random one."""
    if getattr(node, "inputs", None) is None:
        return "its inputs were not recorded", None, []
    cls = type(node)
    kwargs = getattr(node, "kwargs", None) or {}
    args, leaves = _fresh_args(node)
    if not leaves:
        return "no floating-point input needs a gradient", None, []
    with enable_grad():
        outs = _outputs(cls.apply(*args, **kwargs))
    diff = [(k, o) for k, o in enumerate(outs) if o is not None and o._requires_grad]
    if not diff:
        return "no differentiable output", None, []
    if any(o._data.dtype != np.float64 for _, o in diff):
        return "its output is not float64 when re-run (a dtype-changing gate)", None, []

    def project(vs) -> Callable:
        def run(call_args) -> float:
            with no_grad():
                res = _outputs(cls.apply(*call_args, **kwargs))
            return float(sum(np.sum(np.asarray(res[k]._data, np.float64) * v)
                             for (k, _), v in zip(diff, vs)))
        return run

    unit = [np.ones(o._data.shape) for _, o in diff]
    if project(unit)(args) != project(unit)(args):
        return "its forward is not deterministic", None, []
    picks = []
    for _, leaf in leaves:
        size = leaf._data.size
        picks.append(np.arange(size) if size <= max_elements
                     else np.sort(rng.choice(size, max_elements, replace=False)))
    local: list = []
    worst_rel = 0.0
    for upstream, vs in (("1", unit), ("random", [rng.standard_normal(u.shape) for u in unit])):
        found = _compare(node, diff, leaves, picks, args, project(vs), vs, eps, atol, rtol,
                         upstream, local if upstream == "1" else None)
        if isinstance(found, GateFailure):
            return found, None, local
        worst_rel = max(worst_rel, found)
    return None, worst_rel, local


def _compare(node, diff, leaves, picks, args, project, vs, eps, atol, rtol, upstream, local):
    """The worst element of the gate's vector-Jacobian product with ``vs`` against central
    differences: a GateFailure, or the largest relative error among passing elements."""
    with enable_grad():
        outs = _outputs(type(node).apply(*args, **(getattr(node, "kwargs", None) or {})))
    grads = autograd_grad([outs[k] for k, _ in diff], [t for _, t in leaves],
                          [wrap(v) for v in vs], allow_unused=True)
    worst_rel, worst = 0.0, None
    for (i, leaf), g, idx in zip(leaves, grads, picks):
        flat = leaf._data.reshape(-1)
        analytic = (np.zeros(flat.size) if g is None
                    else np.asarray(g._data, np.float64).reshape(-1))
        nums = np.empty(len(idx))
        for n, j in enumerate(idx):
            num = nums[n] = _numeric(project, args, flat, j, eps)
            a = analytic[j]
            if _mismatch(a, num, atol, rtol):
                num2 = _numeric(project, args, flat, j, eps * 1e-2)  # a kink closer than eps?
                if not _mismatch(a, num2, atol, rtol * 10):
                    nums[n] = num2
                    continue
                if _one_sided(project, args, flat, j, eps * 1e-2, a, atol, rtol):
                    nums[n] = a
                    continue  # x sits on a kink (e.g. tied maxima): a is a valid subgradient
            err = abs(a - num)
            rel = err / max(abs(num), abs(a), 1e-3) if err > 0 else 0.0
            score = err / (atol + rtol * abs(num)) if np.isfinite(err) else np.inf
            if np.isnan(score):
                score = np.inf
            if score > 1 and (worst is None or score > worst[0]):
                shape = leaf._data.shape
                index = tuple(int(v) for v in np.unravel_index(int(j), shape)) if shape else ()
                worst = (score, GateFailure(
                    op_name(node), getattr(node, "site", None), i, index, float(a), float(num),
                    float(rel), float(err), tuple(getattr(node, "scope", ()) or ()), node,
                    upstream))
            elif score <= 1:
                worst_rel = max(worst_rel, rel)
        if local is not None:
            local.append(LocalGradient(i, leaf._data.shape, idx, analytic[idx], nums))
    return worst[1] if worst is not None else worst_rel


def _numeric(project, args, flat, j, eps) -> float:
    orig = flat[j]
    flat[j] = orig + eps
    plus = project(args)
    flat[j] = orig - eps
    minus = project(args)
    flat[j] = orig
    return (plus - minus) / (2 * eps)


def _one_sided(project, args, flat, j, h, a, atol, rtol) -> bool:
    """True when the left and right derivatives differ (a kink) and ``a`` equals one of them."""
    orig = flat[j]
    base = project(args)
    flat[j] = orig + h
    right = (project(args) - base) / h
    flat[j] = orig - h
    left = (base - project(args)) / h
    flat[j] = orig
    if not _mismatch(left, right, atol, rtol):
        return False
    return not _mismatch(a, right, atol, rtol * 10) or not _mismatch(a, left, atol, rtol * 10)


def _mismatch(a, n, atol, rtol) -> bool:
    if np.isnan(a) or np.isnan(n):
        return not (np.isnan(a) and np.isnan(n))
    return abs(a - n) > atol + rtol * abs(n)


# ---- the entry point ----------------------------------------------------------------------------
def check_gates(fn: Callable, inputs, *, eps: float = 1e-6, atol: float = 1e-5,
                rtol: float = 1e-3, max_elements: int = 64, seed: int = 0) -> GateReport:
    """Run ``fn(*inputs)`` once, then check each gate on its own (float64): its backward with a
    unit upstream gradient (its local gradient, as derived by hand: reported for every gate)
    and with a random one, against central differences of that gate's forward. The report
    names each wrong gate, its creation site and worst element. Inputs with more than
    ``max_elements`` elements are checked at a random sample."""
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    prev = (state.record_sites, state.record_inputs)
    state.record_sites = state.record_inputs = True
    try:
        out = fn(*inputs)
    finally:
        state.record_sites, state.record_inputs = prev
    outs = [o for o in as_list(out) if isinstance(o, Tensor) and o._grad_fn is not None]
    if not outs:
        raise ValueError("check_gates: fn returned no Tensor that has a grad_fn (no input "
                         "requires grad?)")
    rng = np.random.default_rng(seed)
    report = GateReport()
    for node in graph_nodes(outs):
        result, rel, local = _check_node(node, eps, atol, rtol, max_elements, rng)
        site = getattr(node, "site", None)
        if isinstance(result, GateFailure):
            report.failures.append(result)
        elif isinstance(result, str):
            report.skipped.append(GateResult(op_name(node), site, reason=result, node=node))
        else:
            report.passed.append(GateResult(op_name(node), site, rel, node=node, local=local))
    return report
