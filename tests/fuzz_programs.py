"""The differential fuzzer: random programs over the op registry, run by chainrule and by torch
(and by chainrule's other engine), values and gradients compared (issue 14).

A *program* is plain data (JSON): leaves (shape, dtype, layout: contiguous, transposed,
permuted, expanded, sliced, offset; 0-d and empty shapes included; values from the registry's
input domains), then steps, each one registry entry applied to earlier values or to fresh leaves
(elementwise entries to any shape, binary ones to any broadcastable pair, the rest to their
registered shapes), tensor hooks and ``retain_grad`` on the way, and a weighted sum of results
as the loss; backward, or double backward (``autograd.grad(create_graph=True)`` then backward).

:func:`run_program` executes a program with chainrule or torch and returns what it observed
(every step's values, the leaves' and retained gradients, or the error a step raised);
:func:`compare` lists the differences. Torch's steps take, from earlier steps, the values
chainrule computed where the two agree within the tolerance (torch's graph kept): each op is
compared on the same inputs, and rounding is not amplified from step to step.

Where torch's own result is not a function of the program (which index ``topk`` reports among
equal values, a gradient at NaN that depends on torch's vector width) or torch 2.13 is wrong
(``batch_norm`` with a strided weight, ``index_reduce`` amax with ``include_self=False``), the
generator avoids the case or torch gets an equivalent input: see the per-op rules below
(:data:`TIE_SENSITIVE` and the rest), each with its reason.

Programs come from :func:`generate` given a *chooser*: a seeded ``random.Random`` (the command
line, fast) or hypothesis' ``draw`` (tests/test_fuzz_programs.py, which shrinks a failure to a
small program).

Command line (``make fuzz``; FUZZ_SECONDS sets the time)::

    python tests/fuzz_programs.py --seconds 600 [--seed 0] [--no-engines] [--show 5]

reports programs run, mismatches (values, gradients, or one library raising where the other
does not) and crashes (chainrule raising an internal error: AttributeError, IndexError, ...).
The other engine (compiled <-> pure Python) runs every program in a worker process and must give
identical results.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import op_registry as R  # noqa: E402

import chainrule as cr  # noqa: E402

LAYOUTS = ("contiguous", "contiguous", "transposed", "permuted", "expanded", "sliced", "offset")
POLY_SHAPES = ((), (0,), (3,), (2, 3), (4, 1), (2, 0, 3), (2, 3, 4), (1, 3))
# ops whose result among exactly equal values is each library's own choice (torch documents no
# order for them: which index topk/kthvalue/median/sort report, so where the gradient goes):
# they get inputs without ties (fresh or pooled leaves of a continuous domain, never expanded)
# (quantile: which of equal values gets the gradient); histogram: a constant input sits exactly
# on a computed bin edge, whose last bit (torch's vectorized linspace) decides the bin
TIE_SENSITIVE = frozenset({"topk", "Tensor.topk", "kthvalue", "median", "nanmedian", "sort",
                           "Tensor.sort", "argsort", "msort", "quantile", "quantile(q tensor)",
                           "nanquantile", "histogram"})
# normalizations: a constant slice (an expanded input) has variance 0, where the gradient is
# rounding noise scaled by 1/sqrt(eps) (the true one is 0): they get the same tie-free inputs
ZERO_VARIANCE_NOISE = frozenset({"torch.batch_norm", "instance_norm", "instance_norm(affine)",
                                 "F.group_norm", "F.layer_norm",
                                 "F.layer_norm(2 dims, no affine)", "torch.layer_norm"})
TIE_FREE_DOMAINS = ("real", "any", "positive", "small", "nonint", "unit", "above1", "prob")
# ops not differentiable where two operands are the same tensor (dist(x, x) = 0 is the norm's
# kink, whose second derivative torch gives as NaN): their operands are different values
DISTINCT_OPERANDS = frozenset({"dist"})
# ops whose outputs are not fed to later steps: nan_to_num's hold the float type's extremes
# (±finfo.max), where overflow depends on each library's order of operations (torch's
# hardswish(3.4e38) is inf: x·6/6); softshrink's zeros have the sign torch's vector width gives
# them (-0.0 for -0.3 in a scalar loop, +0.0 in a vectorized one), which 1/x turns into ±inf
UNFED_OUTPUTS = frozenset({"nan_to_num", "Tensor.nan_to_num", "softshrink"})
# ops whose gradient at NaN torch leaves to its vector width (hardswish and the ELU family: NaN
# in 16-element float64 chunks, the incoming gradient in the scalar tail; hardshrink,
# softshrink, hardtanh, relu6: 0, then the incoming gradient): they get fresh inputs of their
# own domain, never pooled values (which may hold NaN)
NAN_GRADIENT_VARIES = frozenset({"F.hardswish", "F.elu", "F.celu", "F.selu", "hardshrink",
                                 "softshrink", "F.hardtanh", "F.relu6"})
# ops whose second derivative near 0 cancels catastrophically in both libraries (I₁'(x) =
# I₀(x) - I₁(x)/x differentiated again: rounding over x², torch's as noisy as chainrule's in
# float32 at x ~ 1e-6): fresh inputs away from 0 ("real" for their "any")
# (sinc's too: (cos πx - sinc x)/x differentiated again; at 0 exactly torch's is NaN, chainrule's
# the series' -π²/3)
CANCELS_NEAR_ZERO = frozenset({"i0", "Tensor.i0", "special.i1", "special.i0e", "special.i1e",
                               "sinc", "Tensor.sinc"})
FRESH_INPUTS = NAN_GRADIENT_VARIES | CANCELS_NEAR_ZERO
# torch 2.13's CPU kernels that read some layouts wrongly: torch gets contiguous copies (its
# gradient still flows to the original leaves), chainrule the layout the program drew.
# median/nanmedian with dim read an expanded (stride 0) input out of bounds; batch_norm's
# backward takes a strided weight's memory as contiguous (both checked in tests/test_defects.py)
TORCH_CONTIGUOUS = frozenset({"median", "nanmedian", "torch.batch_norm"})
INTERNAL = (AttributeError, IndexError, KeyError, ZeroDivisionError, UnboundLocalError,
            NameError, AssertionError, RecursionError, SystemError, MemoryError)


# ---- the catalog: what each registry entry can take ---------------------------------------------
@dataclass(frozen=True)
class Entry:
    index: int          # in R.REGISTRY
    kind: str           # "unary" (any shape), "binary" (broadcasting), "fixed" (its shapes)
    gradgrad: bool      # double backward compared with torch


def _kind(spec) -> str:
    shapes = spec.shapes
    n = len(shapes[0])
    if n == 1 and ("unary" in spec.tags or "activation" in spec.tags) and all(
            len(s) == 1 for s in shapes) and spec.kwargs == ({},) or (
            n == 1 and "unary" in spec.tags and "operator" in spec.tags):
        return "unary"
    if n == 2 and "binary" in spec.tags and spec.out in ("same", "bool") and \
            all(d != "bool" for d in spec.domains(2)) and "reduce" not in spec.tags:
        return "binary"
    return "fixed"


def catalog() -> list[Entry]:
    out = []
    for i, spec in enumerate(R.REGISTRY):
        # storage readers take contiguous input only; linear algebra is ill-posed on the
        # singular matrices random layouts make (an expanded matrix has equal rows): both are
        # checked by the registry's own tests and the layout sweep instead
        if not spec.torch or "storage" in spec.tags or "linalg" in spec.tags:
            continue
        out.append(Entry(i, _kind(spec), spec.gradgrad and spec.torch_gradgrad and spec.grad
                         and spec.torch_grad))
    return out


# ---- generating programs -------------------------------------------------------------------------
class RandomChooser:
    """The chooser interface over ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def integer(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def boolean(self, p: float = 0.5) -> bool:
        return self.r.random() < p


class HypothesisChooser:
    """The chooser interface over hypothesis' ``draw`` (so failures shrink)."""

    def __init__(self, draw) -> None:
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def choice(self, seq):
        return seq[self.draw(self.st.integers(0, len(seq) - 1))]

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def boolean(self, p: float = 0.5) -> bool:
        return self.draw(self.st.integers(0, 999)) < p * 1000


def _broadcast_partner(c, shape: tuple) -> tuple:
    """A shape that broadcasts with ``shape`` (trailing dims kept, set to 1, or dropped)."""
    dims = list(shape)
    if dims and c.boolean(0.3):
        dims = dims[c.integer(0, len(dims)):]  # drop leading dims
    return tuple(1 if d and c.boolean(0.25) else d for d in dims)


def generate(c, entries: list[Entry], max_steps: int = 5) -> dict:
    """A random program (plain data), choices made by chooser ``c``."""
    dtype = c.choice(["float64", "float32", "float64"])
    leaves: list[dict] = []
    values: list[dict] = []  # pool: {"ref", "shape", "dtype", "float", "grad"}
    steps: list[dict] = []

    def leaf(shape, domain="real", want_grad=True, mixed=False, tie_free=False) -> list:
        kind = "bool" if domain == "bool" else dtype
        if kind != "bool" and mixed and c.boolean(0.15):
            kind = "float32" if kind == "float64" else "float64"  # mixed dtypes: promotion
        lay = c.choice([la for la in LAYOUTS if la != "expanded"] if tie_free else LAYOUTS)
        grad = kind != "bool" and want_grad and c.boolean(0.85)
        leaves.append({"shape": list(shape), "dtype": kind, "layout": lay, "domain": domain,
                       "seed": c.integer(0, 2**31 - 1), "grad": grad})
        ref = ["leaf", len(leaves) - 1]
        values.append({"ref": ref, "shape": tuple(shape), "float": kind != "bool", "grad": grad,
                       "tie_free": domain in TIE_FREE_DOMAINS and lay != "expanded"})
        return ref

    def pooled(shape=None, float_only=True, tie_free=False, avoid=()):
        cands = [v for v in values if (not float_only or v["float"])
                 and (shape is None or v["shape"] == tuple(shape))
                 and (not tie_free or v.get("tie_free")) and v["ref"] not in avoid
                 and not v.get("unfed")]
        return c.choice(cands) if cands else None

    n_steps = c.integer(1, max_steps)
    for _ in range(n_steps):
        e = c.choice(entries)
        spec = R.REGISTRY[e.index]
        case = c.integer(0, len(spec.shapes) * len(spec.kwargs) - 1)
        shapes = spec.shapes[case // len(spec.kwargs)]
        doms = spec.domains(len(shapes))
        if spec.name in CANCELS_NEAR_ZERO:  # (away from 0: "real" is ±[0.2, 2])
            doms = tuple("real" if d == "any" else d for d in doms)
        diff = [spec.diff is None or (k < len(spec.diff) and spec.diff[k])
                for k in range(len(shapes))]
        args = []
        if e.kind == "unary":
            v = pooled() if c.boolean(0.6) and doms[0] in ("real", "any", "special") and \
                spec.name not in FRESH_INPUTS else None
            args.append(v["ref"] if v else leaf(c.choice(POLY_SHAPES), doms[0]))
        elif e.kind == "binary":
            for k, (s, dom) in enumerate(zip(shapes, doms)):
                if s == R.SCALAR:
                    args.append(["scalar", round(1.5 if dom == "positive" else
                                                 c.choice([-1.5, 0.5, 2.0, 3.0]), 2)])
                    continue
                if k == 0 or not any(a[0] != "scalar" for a in args):
                    v = pooled() if c.boolean(0.6) and dom in ("real", "any") else None
                    args.append(v["ref"] if v else leaf(c.choice(POLY_SHAPES), dom, mixed=True))
                else:
                    first = next(a for a in args if a[0] != "scalar")
                    fshape = next(v["shape"] for v in values if v["ref"] == first)
                    partner = () if fshape is None else _broadcast_partner(c, fshape)
                    v = pooled(partner) if c.boolean(0.5) and dom in ("real", "any") else None
                    args.append(v["ref"] if v else leaf(partner, dom, mixed=True))
        else:
            tie_free = spec.name in TIE_SENSITIVE or spec.name in ZERO_VARIANCE_NOISE
            for s, dom, d in zip(shapes, doms, diff):
                if s == R.SCALAR:
                    args.append(["scalar", 1.5])
                    continue
                avoid = args if spec.name in DISTINCT_OPERANDS else ()
                v = pooled(s, tie_free=tie_free, avoid=avoid) if d and c.boolean(0.4) and \
                    dom in ("real", "any") and spec.name not in FRESH_INPUTS else None
                args.append(v["ref"] if v else leaf(s, dom, want_grad=d, tie_free=tie_free))
        step = {"entry": e.index, "name": spec.name, "case": case, "args": args}
        if c.boolean(0.15):
            step["hook"] = c.choice(["scale", "observe", "retain"])
        steps.append(step)
        j = len(steps) - 1
        # the outputs' shapes are known only by running: the pool gets placeholders that the
        # generator may use where any shape goes (unary, first binary operand)
        values.append({"ref": ["step", j, 0], "shape": None, "float": spec.out == "same",
                       "grad": spec.grad and spec.torch_grad,
                       "unfed": spec.name in UNFED_OUTPUTS})
    for v in values:
        if v["shape"] is None:
            v["shape"] = ()  # (unknown: never matched by shape)
    double = c.boolean(0.25) and all(
        next(e for e in entries if e.index == s["entry"]).gradgrad for s in steps)
    if double:  # a hook that changes a gradient also changes what a second pass sends through
        for s in steps:  # the tensors a formula saved, which are each library's own choice
            if s.get("hook") == "scale":
                s["hook"] = "observe"
    return {"dtype": dtype, "leaves": leaves, "steps": steps, "double": double,
            "loss_seed": c.integer(0, 2**31 - 1)}


# ---- running a program ---------------------------------------------------------------------------
def _leaf_base(spec: dict):
    """(base ndarray, view name) for a leaf: the base is contiguous, the view gives its shape."""
    shape = tuple(spec["shape"])
    rng = np.random.default_rng(spec["seed"])
    a = np.asarray(R.DOMAINS[spec["domain"]](rng, shape))
    a = a if spec["dtype"] == "bool" else a.astype(spec["dtype"])
    lay = spec["layout"]
    nd = a.ndim
    if lay == "transposed" and nd >= 2:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)), "transposed"
    if lay == "permuted" and nd >= 3:
        return np.ascontiguousarray(np.transpose(a, tuple(range(nd - 1, -1, -1)))), "permuted"
    if lay == "expanded" and nd >= 1 and any(s > 1 for s in shape):
        d = next(k for k in range(nd) if shape[k] > 1)
        return np.ascontiguousarray(np.take(a, [0], axis=d)), "expanded"
    if lay == "sliced" and nd >= 1:
        base = np.zeros(shape[:-1] + (2 * shape[-1],), a.dtype)
        base[..., ::2] = a
        return base, "sliced"
    if lay == "offset" and nd >= 1:
        base = np.zeros((shape[0] + 1,) + shape[1:], a.dtype)
        base[1:] = a
        return base, "offset"
    return a, "contiguous"


def _view(t, how: str, shape: tuple):
    nd = len(shape)
    if how == "transposed":
        return t.transpose(-1, -2)
    if how == "permuted":
        return t.permute(*range(nd - 1, -1, -1))
    if how == "expanded":
        return t.expand(*shape)
    if how == "sliced":
        return t[..., ::2]
    if how == "offset":
        return t[1:]
    return t


def _np(t):
    if hasattr(t, "_is_zerotensor") and t._is_zerotensor():  # torch's symbolic zeros
        return np.zeros(tuple(t.shape), str(t.dtype).split(".")[-1])
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _encode(a) -> dict:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        data = [None if math.isnan(v) else v for v in a.astype(np.float64).reshape(-1).tolist()]
    else:
        data = a.reshape(-1).tolist()
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": data}


def _decode(d: dict) -> np.ndarray:
    dt = np.dtype(d["dtype"])
    vals = [math.nan if v is None else v for v in d["data"]] if dt.kind == "f" else d["data"]
    return np.asarray(vals, dtype=np.float64 if dt.kind == "f" else dt).reshape(d["shape"])


def _anchored(t, seen: dict, torch, rtol: float, atol: float):
    """``t`` (a torch step output) carrying the values chainrule computed for it (``seen``, as
    observed), its graph kept: t + (chainrule's - t).detach(), where :func:`compare` finds the
    two equal; ``t`` itself elsewhere (a real difference is reported at its own step)."""
    want = _decode(seen)
    if want.shape != tuple(t.shape) or not t.dtype.is_floating_point or \
            str(t.dtype).split(".")[-1] != seen["dtype"]:
        return t
    w = torch.from_numpy(want.astype(seen["dtype"]))
    scale = float(np.max(np.abs(want[np.isfinite(want)]), initial=1.0))
    differ = torch.isclose(t.detach(), w, rtol=rtol, atol=atol * scale) & \
        torch.isfinite(w) & (t.detach() != w)
    if not bool(differ.any()):
        return t
    # (t itself where equal: t + 0 would turn -0.0 into +0.0, which 1/x tells apart)
    return torch.where(differ, t + (w - t.detach()), t)


def run_program(prog: dict, m, anchor: dict | None = None) -> dict:
    """Run ``prog`` with module ``m`` (chainrule or torch); every observation JSON-encoded.

    ``anchor`` (torch only): chainrule's observations of the same program. Each step then gets,
    from earlier steps, the values chainrule computed (where the two agree within rounding),
    torch's graph kept (:func:`_anchored`): each op is compared on the same inputs, and
    rounding is not amplified from step to step (1/x of a float32 value near 0, floor of a
    value an ulp from an integer)."""
    is_torch = m is not cr
    anchored: dict = {}
    obs: dict = {"steps": [], "error": None, "grads": {}, "retained": {}}

    def tensor_of(a, grad):
        t = m.from_numpy(a.copy())
        return t.requires_grad_(grad) if grad else t

    bases, leaf_vals = [], []
    for spec in prog["leaves"]:
        base, how = _leaf_base(spec)
        b = tensor_of(base, spec["grad"])
        bases.append(b)
        leaf_vals.append(_view(b, how, tuple(spec["shape"])))
    outs: list[list] = []
    retained = []
    hooked_scale = []

    def resolve(ref):
        if ref[0] == "leaf":
            return leaf_vals[ref[1]]
        if ref[0] == "scalar":
            return float(ref[1])
        t = outs[ref[1]][ref[2]]
        if anchor is None or t is None or ref[1] >= len(anchor["steps"]):
            return t
        key = (ref[1], ref[2])
        if key not in anchored:
            seen = anchor["steps"][ref[1]]
            anchored[key] = _anchored(t, seen[ref[2]], m, *_tolerances(prog)) \
                if ref[2] < len(seen) and "data" in seen[ref[2]] else t
        return anchored[key]

    stage = "forward"
    try:
        for j, step in enumerate(prog["steps"]):
            spec = R.REGISTRY[step["entry"]]
            shapes_i, kw_i = divmod(step["case"], len(spec.kwargs))
            kw = spec.kwargs[kw_i]
            args = [resolve(a) for a in step["args"]]
            if is_torch and spec.name in TORCH_CONTIGUOUS:
                args = [a.contiguous() if hasattr(a, "contiguous") else a for a in args]
            fn = spec.torch_op if is_torch else spec.op
            try:
                result = fn(*args, **kw)
            except Exception as e:
                obs["error"] = {"step": j, "type": type(e).__name__, "msg": str(e)[:300]}
                return obs
            rs = R.as_outputs(result)
            tensors = [r for r in rs if hasattr(r, "shape") and hasattr(r, "dtype")]
            if not (spec.grad and spec.torch_grad):  # (torch has no derivative: cut here)
                tensors = [r.detach() for r in tensors]
            outs.append(tensors or [None])
            obs["steps"].append([_encode(_np(r)) for r in tensors] if tensors else
                                [{"python": repr(result)}])
            first = tensors[0] if tensors else None
            hook = step.get("hook")
            if hook and first is not None and first.requires_grad:
                if hook == "scale":
                    first.register_hook(lambda g: g * 2)
                    hooked_scale.append(j)
                elif hook == "observe":
                    first.register_hook(lambda g: None)
                else:
                    first.retain_grad()
                    retained.append((j, first))
        stage = "backward"
        rng = np.random.default_rng(prog["loss_seed"])
        loss = None
        for ts in outs:
            for t in ts:  # (a weight drawn for every output: the same draws in both libraries)
                w = rng.standard_normal(() if t is None else tuple(t.shape))
                if t is None or not t.requires_grad or not t.dtype.is_floating_point:
                    continue
                term = (t * m.from_numpy(w.astype(_np(t).dtype))).sum()
                loss = term if loss is None else loss + term
        if loss is None:
            return obs
        wanted = [b for b in bases if b.requires_grad]
        if prog["double"]:
            stage = "double backward"
            gs = m.autograd.grad(loss, wanted, create_graph=True, allow_unused=True)
            loss2 = None
            for g, b in zip(gs, wanted):
                w = rng.standard_normal(tuple(b.shape))
                if g is None or not g.requires_grad:
                    continue
                term = (g * m.from_numpy(w.astype(_np(g).dtype))).sum()
                loss2 = term if loss2 is None else loss2 + term
            obs["first"] = [None if g is None else _encode(_np(g)) for g in gs]
            obs["first_requires_grad"] = [g is not None and g.requires_grad for g in gs]
            if loss2 is not None:
                loss2.backward()
        else:
            loss.backward()
        for i, b in enumerate(bases):
            if b.requires_grad:
                obs["grads"][str(i)] = None if b.grad is None else _encode(_np(b.grad))
        for j, t in retained:
            obs["retained"][str(j)] = None if t.grad is None else _encode(_np(t.grad))
    except Exception as e:
        obs["error"] = {"step": stage, "type": type(e).__name__, "msg": str(e)[:300]}
    return obs


# ---- comparing -----------------------------------------------------------------------------------
def _zeros_like(a: dict) -> dict:
    return {**a, "data": [0] * len(a["data"])}


def _close(a: dict, b: dict, rtol: float, atol: float, none_is_zero: bool = False) -> str | None:
    if none_is_zero and (a is None) != (b is None):
        # (torch's second derivatives are zeros, or rounding noise around them, where chainrule
        # has none: None is compared as zeros, with the usual tolerance)
        a, b = a or _zeros_like(b), b or _zeros_like(a)
    if a is None or b is None:
        return None if a is b else f"{'None' if a is None else 'a gradient'} vs " \
                                   f"{'None' if b is None else 'a gradient'}"
    if "python" in a or "python" in b:
        return None if a == b else f"{a} vs {b}"
    if a["shape"] != b["shape"]:
        return f"shape {a['shape']} vs {b['shape']}"
    x, y = _decode(a), _decode(b)
    if x.dtype.kind == "f" or y.dtype.kind == "f":
        if a["dtype"] != b["dtype"]:
            return f"dtype {a['dtype']} vs {b['dtype']}"
        x, y = x.astype(np.float64), y.astype(np.float64)
        scale = np.max(np.abs(y[np.isfinite(y)]), initial=1.0)
        bad = ~np.isclose(x, y, rtol=rtol, atol=atol * scale, equal_nan=True)
        if bad.any():
            k = int(np.flatnonzero(bad.reshape(-1))[0])
            return (f"{int(bad.sum())} of {bad.size} differ, e.g. [{k}] "
                    f"{x.reshape(-1)[k]!r} vs {y.reshape(-1)[k]!r}")
        return None
    if a["dtype"] != b["dtype"]:
        return f"dtype {a['dtype']} vs {b['dtype']}"
    return None if np.array_equal(x, y) else "values differ"


def _tolerances(prog: dict) -> tuple[float, float]:
    """(rtol, atol relative to the reference's largest finite magnitude) for ``prog``."""
    if prog["dtype"] == "float32" or any(leaf["dtype"] == "float32" for leaf in prog["leaves"]):
        return 2e-3, 2e-4
    return 1e-6, 1e-9


def compare(got: dict, want: dict, prog: dict, exact: bool = False) -> list[str]:
    """The differences between two observations of ``prog`` (chainrule's, the reference's)."""
    rtol, atol = (0.0, 0.0) if exact else _tolerances(prog)
    diffs = []
    ge, we = got["error"], want["error"]
    n = min(len(got["steps"]), len(want["steps"]))
    for j in range(n):
        if len(got["steps"][j]) != len(want["steps"][j]):
            diffs.append(f"step {j}: {len(got['steps'][j])} outputs vs {len(want['steps'][j])}")
            continue
        for k, (a, b) in enumerate(zip(got["steps"][j], want["steps"][j])):
            d = _close(a, b, rtol, atol)
            if d:
                diffs.append(f"step {j} ({prog['steps'][j]['name']}) output {k}: {d}")
    if (ge is None) != (we is None) or (ge and we and ge["step"] != we["step"]):
        diffs.append(f"error: {ge} vs {we}")
        return diffs
    if ge is not None:
        return diffs  # both raised at the same step
    for key in ("first",):
        if (key in got) != (key in want):
            diffs.append(f"{key}: present in one only")
        elif key in got:
            for i, (a, b) in enumerate(zip(got[key], want[key])):
                d = _close(a, b, rtol, atol)
                if d:
                    diffs.append(f"first-order gradient {i}: {d}")
    # (after a double backward a retained .grad also holds what the second pass sent through the
    # first pass's formulas, whose saved values are each library's choice: leaves only there)
    for group in ("grads",) if prog["double"] else ("grads", "retained"):
        keys = set(got[group]) | set(want[group])
        for key in sorted(keys):
            d = _close(got[group].get(key), want[group].get(key), rtol, atol,
                       none_is_zero=prog["double"])
            if d:
                diffs.append(f"{group[:-1] if group == 'grads' else 'retained grad'} {key}: {d}")
    return diffs


# torch refusing what chainrule does by design: mixed dtypes in products and convolutions
# (chainrule promotes), .view() inside torch's own code on non-contiguous input
TORCH_LIMITS = ("view size is not compatible", "expected scalar type", "must have the same dtype",
                "Type promoting not supported", "to have the same dtype", "found Double",
                "found Float", "mixed dtype", "requires the source and destination dtypes match")


def classify(got: dict, want: dict, diffs: list[str]) -> str:
    """ok | crash (chainrule raised an internal error) | mismatch | lenient (chainrule accepted
    what torch refuses; "torch-limit": for one of :data:`TORCH_LIMITS`)."""
    ge, we = got["error"], want["error"]
    if ge and ge["type"] in {c.__name__ for c in INTERNAL} and not we:
        return "crash"
    if we and diffs and all(d.startswith("error:") for d in diffs):
        if any(t in we["msg"] for t in TORCH_LIMITS):
            return "torch-limit"  # (chainrule may go on further, or stop later)
        if not ge:
            return "lenient"
    return "mismatch" if diffs else "ok"


# ---- the other engine, in a worker process -------------------------------------------------------
class EngineWorker:
    """chainrule's other engine (pure Python if this one is compiled, and the other way round)
    in a subprocess that runs programs sent as JSON lines."""

    def __init__(self) -> None:
        from chainrule._compiled import engine_compiled

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.compiled_here = engine_compiled()
        if self.compiled_here:
            env["CHAINRULE_PURE_PYTHON"] = "1"
        else:
            env.pop("CHAINRULE_PURE_PYTHON", None)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     text=True)
        hello = json.loads(self.proc.stdout.readline())
        self.other = "compiled" if hello["compiled"] else "pure Python"
        self.available = hello["compiled"] != self.compiled_here

    def run(self, prog: dict) -> dict:
        self.proc.stdin.write(json.dumps(prog) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.other} engine worker died "
                               f"(exit status {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def _worker() -> int:
    import warnings

    from chainrule._compiled import engine_compiled

    warnings.simplefilter("ignore")
    print(json.dumps({"compiled": engine_compiled()}), flush=True)
    for line in sys.stdin:
        prog = json.loads(line)
        with np.errstate(all="ignore"):
            obs = run_program(prog, cr)
        print(json.dumps(obs), flush=True)
    return 0


# ---- the command line ----------------------------------------------------------------------------
def check(prog: dict, torch, worker: EngineWorker | None = None) -> tuple[str, list[str]]:
    """Run ``prog`` on chainrule, torch (and the other engine); (verdict, differences)."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = run_program(prog, cr)
        want = run_program(prog, torch, anchor=got)
    diffs = compare(got, want, prog)
    verdict = classify(got, want, diffs)
    if worker is not None and worker.available:
        other = worker.run(prog)
        engine_diffs = compare(other, got, prog, exact=True)
        if engine_diffs:
            diffs += [f"engines differ: {d}" for d in engine_diffs]
            verdict = "mismatch" if verdict == "ok" else verdict
    return verdict, diffs


def main(argv: list[str] | None = None) -> int:
    import argparse
    import warnings

    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None, help="first program seed (default: time)")
    p.add_argument("--no-engines", action="store_true", help="skip the other-engine worker")
    p.add_argument("--show", type=int, default=10, help="failures to print in full")
    p.add_argument("--out", default=None, help="write failing programs to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    entries = catalog()
    worker = None if args.no_engines else EngineWorker()
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000 * 1000
    counts = {"ok": 0, "mismatch": 0, "crash": 0, "lenient": 0, "torch-limit": 0}
    failures = []
    start = time.perf_counter()
    n = 0
    try:
        while time.perf_counter() - start < args.seconds:
            prog = generate(RandomChooser(seed + n), entries)
            prog["seed"] = seed + n
            verdict, diffs = check(prog, torch, worker)
            counts[verdict] += 1
            if verdict not in ("ok", "torch-limit"):
                failures.append({"verdict": verdict, "diffs": diffs, "program": prog})
                if len(failures) <= args.show:
                    names = " -> ".join(s["name"] for s in prog["steps"])
                    print(f"[{verdict}] seed {prog['seed']}: {names}"
                          f"{' (double backward)' if prog['double'] else ''}")
                    for d in diffs[:4]:
                        print(f"    {d}")
            n += 1
    finally:
        if worker is not None:
            worker.close()
    elapsed = time.perf_counter() - start
    engines = ("" if worker is None or not worker.available else
               f", each also on the {worker.other} engine")
    print(f"{n} programs in {elapsed:.0f} s{engines}: {counts['mismatch']} mismatches, "
          f"{counts['crash']} crashes, {counts['lenient']} accepted what torch refuses "
          f"({counts['torch-limit']} more where torch's own limits refuse: mixed dtypes, "
          f"view of non-contiguous input) (first seed {seed})")
    if args.out and failures:
        with open(args.out, "w") as f:
            json.dump(failures, f, indent=1)
    return 1 if counts["mismatch"] or counts["crash"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
