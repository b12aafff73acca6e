"""The op registry: one entry per public op, from which the op tests are generated.

Each :class:`OpSpec` names the op (a callable on chainrule tensors), its NumPy reference, the
PyTorch equivalent (a callable on torch tensors), the input shapes, each input's domain, which
inputs are differentiable and the keyword sweeps. ``tests/test_ops_*.py`` turn every entry into
forward checks (against NumPy, float32 and float64), float64 gradcheck/gradgradcheck and, when
torch is installed, forward and gradient comparisons with PyTorch.

Most entries are written once for both libraries as ``f(m, *inputs, **kwargs)`` where ``m`` is
the module (``chainrule`` or ``torch``): the two share names and semantics by contract.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import chainrule as cr

__all__ = ["OpSpec", "REGISTRY", "SCALAR", "DOMAINS", "BINARY_PAIRS", "API_OPS", "OPERATORS",
           "BAD_CALLS", "make_args", "cases", "params", "case_id", "diff_mask", "cr_args",
           "closure", "covered", "to_torch", "torch_module", "as_outputs"]

SCALAR = "scalar"  # a Python float operand (not a tensor)


def torch_module():
    """The torch module (imported on first use, so the registry loads without torch)."""
    import torch

    return torch


def _fn_module(m):
    """Where ``m`` keeps the nn.functional forms (chainrule has them at top level)."""
    return m if m is cr else m.nn.functional


@dataclass(frozen=True)
class OpSpec:
    """One op: how to call it on chainrule and torch, its NumPy reference and its test inputs."""

    name: str
    call: Callable[..., Any]                 # call(m, *inputs, **kwargs), m = chainrule or torch
    ref: Callable[..., Any] | None           # NumPy reference on arrays (None: no reference)
    shapes: tuple                            # tuple of input-shape tuples; SCALAR = Python float
    domain: tuple | str = "real"             # per input (or one for all), see ``DOMAINS``
    diff: tuple | None = None                # per input: differentiable? None = all float inputs
    kwargs: tuple = ({},)                    # keyword sweeps
    out: str = "same"                        # result dtype: same | bool | int64 | python
    grad: bool = True                        # run gradcheck
    gradgrad: bool = True                    # run gradgradcheck
    torch_call: Callable[..., Any] | None = None  # override when torch spells it differently
    torch: bool = True                       # compare with torch
    torch_grad: bool = True                  # compare gradients with torch (False: torch has none)
    torch_gradgrad: bool = True              # compare second derivatives (False: torch has none)
    rtol32: float = 2e-5                     # float32 forward tolerance (relative)
    tags: tuple = ()                         # family (unary, binary, reduce, ...), operator, ...

    @property
    def op(self) -> Callable[..., Any]:
        """The op as a callable on chainrule tensors."""
        return functools.partial(self.call, cr)

    @property
    def torch_op(self) -> Callable[..., Any]:
        """The PyTorch equivalent, a callable on torch tensors."""
        if self.torch_call is not None:
            return self.torch_call
        return lambda *args, **kw: self.call(torch_module(), *args, **kw)

    def domains(self, n: int) -> tuple:
        """The domain of each of ``n`` inputs."""
        return (self.domain,) * n if isinstance(self.domain, str) else tuple(self.domain)


# ---- input domains ---------------------------------------------------------------------------
def _real(rng, shape):
    """Away from 0, where abs/relu/sign/clamp-like ops have kinks."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def _nonint(rng, shape):
    """Away from integers and half-integers (the kinks of floor/ceil/round)."""
    return rng.integers(-3, 3, shape) + rng.choice([0.2, 0.7], shape) + rng.uniform(-0.08, 0.08,
                                                                                    shape)


def _special(rng, shape):
    """Normal values with nan, inf and -inf at random places."""
    x = np.array(rng.standard_normal(shape))
    flat = x.reshape(-1)  # a view: x is contiguous
    k = min(3, flat.size)
    flat[rng.permutation(flat.size)[:k]] = (np.nan, np.inf, -np.inf)[:k]
    return x


DOMAINS: dict[str, Callable] = {
    "real": _real,                                             # ±[0.2, 2]
    "any": lambda rng, s: rng.uniform(-2.0, 2.0, s),
    "positive": lambda rng, s: rng.uniform(0.5, 2.0, s),
    "small": lambda rng, s: rng.uniform(-1.2, 1.2, s),         # inside tan's branch
    "nonint": _nonint,
    "intlike": lambda rng, s: rng.integers(-2, 3, s).astype(np.float64),  # ties on purpose
    "special": _special,                                       # nan, inf, -inf mixed in
    "bool": lambda rng, s: rng.random(s) < 0.5,
    # kinks and ties on purpose: 0, ±0.5 (clamp bounds), integers, repeated values
    "kinks": lambda rng, s: rng.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0], s),
}


def make_args(spec: OpSpec, shapes: tuple, dtype=np.float64, seed: int = 0) -> list:
    """Inputs for one case: ndarrays (floats in ``dtype``, bools stay bool) or Python floats."""
    rng = np.random.default_rng(seed)
    args = []
    for shape, dom in zip(shapes, spec.domains(len(shapes))):
        if shape == SCALAR:
            args.append(float(np.round(DOMAINS[dom](rng, ()), 2)) or 1.5)
            continue
        a = np.asarray(DOMAINS[dom](rng, shape))
        args.append(a if a.dtype == bool else a.astype(dtype))
    return args


def to_torch(a, requires_grad: bool = False):
    """An ndarray as a torch tensor (Python scalars pass through)."""
    if not isinstance(a, np.ndarray):
        return a
    t = torch_module().from_numpy(a.copy())
    return t.requires_grad_(requires_grad)


def as_outputs(out) -> list:
    """An op's result as a flat list (tuples of outputs, namedtuples, a single tensor)."""
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def cases(spec: OpSpec):
    """(shapes, kwargs) pairs for one spec."""
    for shapes in spec.shapes:
        for kw in spec.kwargs:
            yield shapes, kw


# ---- helpers to build entries -----------------------------------------------------------------
def _by_name(name: str, *, fn_module: bool = False) -> Callable:
    """``m.name(*inputs, **kwargs)`` (``by_name`` records the public function it calls)."""
    if fn_module:
        def call(m, *a, **kw):
            return getattr(_fn_module(m), name)(*a, **kw)
    else:
        def call(m, *a, **kw):
            return getattr(m, name)(*a, **kw)
    call.by_name = name
    return call


def _method(name: str, *margs) -> Callable:
    return lambda m, x, *a, **kw: getattr(x, name)(*margs, *a, **kw)


REGISTRY: list[OpSpec] = []


def add(spec: OpSpec) -> OpSpec:
    REGISTRY.append(spec)
    return spec


def _f64(fn):
    """A NumPy reference computed in float64, returned in the input's dtype."""

    @functools.wraps(fn)
    def ref(*args, **kw):
        dt = next((a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"),
                  np.float64)
        out = fn(*[a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                   else a for a in args], **kw)
        return np.asarray(out).astype(dt)

    return ref


UNARY_SHAPES = (((2, 3),), ((),), ((4,),))

# ---- elementwise unary ------------------------------------------------------------------------
_UNARY = [
    ("exp", np.exp, "real"), ("exp2", np.exp2, "real"), ("log", np.log, "positive"),
    ("log2", np.log2, "positive"), ("log1p", np.log1p, "positive"), ("expm1", np.expm1, "real"),
    ("sqrt", np.sqrt, "positive"), ("rsqrt", lambda x: 1 / np.sqrt(x), "positive"),
    ("abs", np.abs, "real"), ("neg", np.negative, "real"), ("sign", np.sign, "real"),
    ("sin", np.sin, "real"), ("cos", np.cos, "real"), ("tan", np.tan, "small"),
    ("tanh", np.tanh, "real"), ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), "real"),
    ("relu", lambda x: np.maximum(x, 0), "real"), ("reciprocal", lambda x: 1 / x, "real"),
    ("floor", np.floor, "nonint"), ("ceil", np.ceil, "nonint"), ("round", np.round, "nonint"),
]
for _name, _ref, _dom in _UNARY:
    add(OpSpec(_name, _by_name(_name), _f64(_ref), UNARY_SHAPES, _dom, tags=("unary",)))
    add(OpSpec(f"Tensor.{_name}", _method(_name), _f64(_ref), ((( 3,),),), _dom,
               tags=("unary", "method")))

add(OpSpec("round(decimals)", _by_name("round"), _f64(lambda x, decimals: np.round(x, decimals)),
           (((2, 3),),), "nonint", kwargs=({"decimals": 1}, {"decimals": 0}), tags=("unary",)))


def _softplus_ref(x, beta=1.0, threshold=20.0):
    return np.where(x * beta > threshold, x, np.logaddexp(0, x * beta) / beta)


add(OpSpec("softplus", _by_name("softplus", fn_module=True), _f64(_softplus_ref), UNARY_SHAPES,
           "any", kwargs=({}, {"beta": 2.0}, {"beta": 2.0, "threshold": 1.0}), tags=("unary",)))
for _name in ("clamp", "clip"):
    add(OpSpec(_name, _by_name(_name),
               _f64(lambda x, min=None, max=None: np.clip(x, min, max)),
               (((2, 3),), ((),)), "any",
               kwargs=({"min": -0.5, "max": 0.5}, {"min": -0.5}, {"max": 0.5}),
               tags=("unary",)))
    add(OpSpec(f"{_name}(tensor bounds)",
               lambda m, x, lo, hi, _n=_name: getattr(m, _n)(x, lo, hi),
               _f64(lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi)),
               (((2, 3), (3,), (2, 1)),), ("any", "small", "positive"), tags=("unary",)))
for _name, _ref in (("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite)):
    add(OpSpec(_name, _by_name(_name), _ref, (((3, 4),), ((),)), "special", out="bool",
               grad=False, tags=("unary",)))

# operators: unary -, abs(), ~
add(OpSpec("-x", lambda m, x: -x, np.negative, UNARY_SHAPES, tags=("unary", "operator")))
add(OpSpec("abs(x)", lambda m, x: abs(x), np.abs, UNARY_SHAPES, tags=("unary", "operator")))
add(OpSpec("~mask", lambda m, x: ~x, np.logical_not, (((2, 3),), ((),)), "bool", out="bool",
           grad=False, tags=("unary", "operator")))

# ---- binary (broadcasting) ----------------------------------------------------------------------
BINARY_PAIRS = (
    ((3, 1), (1, 4)), ((5,), (2, 5)), ((), (2, 3)), ((2, 3), ()), ((2, 3), SCALAR),
    (SCALAR, (2, 3)),
)
_TENSOR_PAIRS = BINARY_PAIRS[:4]      # torch.maximum/minimum take tensors only
_NO_SCALAR_FIRST = BINARY_PAIRS[:5]   # torch.add(2.0, t) is not a valid call

_BINARY = [
    # name, call, NumPy reference, domain, operand shapes
    ("add", _by_name("add"), np.add, "real", _NO_SCALAR_FIRST),
    ("sub", _by_name("sub"), np.subtract, "real", _NO_SCALAR_FIRST),
    ("mul", _by_name("mul"), np.multiply, "real", _NO_SCALAR_FIRST),
    ("div", _by_name("div"), np.divide, "real", _NO_SCALAR_FIRST),
    ("pow", _by_name("pow"), np.power, ("positive", "real"), BINARY_PAIRS),
    ("maximum", _by_name("maximum"), np.maximum, "real", _TENSOR_PAIRS),
    ("minimum", _by_name("minimum"), np.minimum, "real", _TENSOR_PAIRS),
    ("a + b", lambda m, a, b: a + b, np.add, "real", BINARY_PAIRS),
    ("a - b", lambda m, a, b: a - b, np.subtract, "real", BINARY_PAIRS),
    ("a * b", lambda m, a, b: a * b, np.multiply, "real", BINARY_PAIRS),
    ("a / b", lambda m, a, b: a / b, np.divide, "real", BINARY_PAIRS),
    ("a // b", lambda m, a, b: a // b, np.floor_divide, "real", BINARY_PAIRS),
    ("a % b", lambda m, a, b: a % b, np.remainder, "real", _NO_SCALAR_FIRST),
    ("a ** b", lambda m, a, b: a**b, np.power, ("positive", "real"), BINARY_PAIRS),
]
for _name, _call, _ref, _dom, _pairs in _BINARY:
    add(OpSpec(_name, _call, _f64(_ref), _pairs, _dom,
               torch_grad=_name != "a // b",  # torch has no derivative for floor_divide
               tags=("binary", "operator") if " " in _name else ("binary",)))
# nor for remainder(scalar, tensor): gradcheck only
add(OpSpec("a % b(scalar first)", lambda m, a, b: a % b, _f64(np.remainder), ((SCALAR, (2, 3)),),
           tags=("binary", "operator"), torch_grad=False))


# comparisons and logic (bool results, no gradient)
_CMP = [("==", "eq", np.equal), ("!=", "ne", np.not_equal), ("<", "lt", np.less),
        ("<=", "le", np.less_equal), (">", "gt", np.greater), (">=", "ge", np.greater_equal)]
for _sym, _name, _ref in _CMP:
    add(OpSpec(f"a {_sym} b", lambda m, a, b, _n=_name: getattr(operator, _n)(a, b), _ref,
               BINARY_PAIRS[:5], "intlike", out="bool", grad=False,
               tags=("binary", "operator", "compare")))
    add(OpSpec(_name, _by_name(_name), _ref, BINARY_PAIRS[:2], "intlike", out="bool", grad=False,
               tags=("binary", "compare")))
add(OpSpec("a & b", lambda m, a, b: a & b, np.logical_and, BINARY_PAIRS[:3], "bool", out="bool",
           grad=False, tags=("binary", "operator")))
add(OpSpec("a | b", lambda m, a, b: a | b, np.logical_or, BINARY_PAIRS[:3], "bool", out="bool",
           grad=False, tags=("binary", "operator")))
add(OpSpec("allclose", _by_name("allclose"), np.allclose, (((2, 3), (2, 3)), ((3,), (2, 3))),
           "intlike", out="python", grad=False, tags=("binary",)))
add(OpSpec("allclose(near)", lambda m, a, b: m.allclose(a, a + b * 1e-9),
           lambda a, b: np.allclose(a, a + b * 1e-9), (((2, 3), (2, 3)),), out="python",
           grad=False, tags=("binary",)))
add(OpSpec("where", _by_name("where"), _f64(np.where),
           (((2, 3), (2, 3), (2, 3)), ((3, 1), (1, 4), (3, 1)), ((2, 3), (3,), ())),
           ("bool", "real", "real"), tags=("binary",)))
add(OpSpec("where(scalar)", _by_name("where"), _f64(np.where), (((2, 3), (2, 3), SCALAR),),
           ("bool", "real", "real"), tags=("binary",)))
add(OpSpec("masked_fill", lambda m, x, mask, **kw: m.masked_fill(x, mask, **kw),
           _f64(lambda x, mask, value: np.where(mask, value, x)),
           (((2, 3), (2, 3)), ((3, 4), (3, 1))), ("real", "bool"),
           kwargs=({"value": -1.5},), tags=("binary",)))
add(OpSpec("Tensor.masked_fill", lambda m, x, mask: x.masked_fill(mask, 0.25),
           _f64(lambda x, mask: np.where(mask, 0.25, x)), (((2, 3), (3,)),), ("real", "bool"),
           tags=("binary", "method")))


# ---- reductions -------------------------------------------------------------------------------
def _axis(dim):
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _np_red(fn):
    def ref(x, dim=None, keepdim=False, **kw):
        return fn(x, axis=_axis(dim) if x.ndim else None, keepdims=keepdim, **kw)

    return ref


RED_SHAPE = (2, 3, 4)
DIM_SWEEP = ({},) + tuple(
    {"dim": d, "keepdim": k} for d in (1, -1, (0, 2), (-1, 0)) for k in (False, True)
)
INT_DIM_SWEEP = ({},) + tuple({"dim": d, "keepdim": k} for d in (1, -1) for k in (False, True))
_SCALAR_DIMS = ({}, {"dim": 0}, {"dim": -1, "keepdim": True})

for _name, _fn, _dom in (("sum", np.sum, "real"), ("mean", np.mean, "real"),
                         ("amax", np.amax, "real"), ("amin", np.amin, "real")):
    add(OpSpec(_name, _by_name(_name), _f64(_np_red(_fn)), (((RED_SHAPE),),), _dom,
               kwargs=DIM_SWEEP, tags=("reduce",)))
    add(OpSpec(f"{_name}(0-d)", _by_name(_name), _f64(_np_red(_fn)), (((),),), _dom,
               kwargs=_SCALAR_DIMS, tags=("reduce",)))
    add(OpSpec(f"Tensor.{_name}", _method(_name), _f64(_np_red(_fn)), (((3, 4),),), _dom,
               kwargs=({}, {"dim": 0}), tags=("reduce", "method")))


def _var_ref(x, dim=None, keepdim=False, correction=None, unbiased=None):
    ddof = correction if correction is not None else (0 if unbiased is False else 1)
    return np.var(x, axis=_axis(dim), keepdims=keepdim, ddof=ddof)


_VAR_SWEEP = DIM_SWEEP + ({"correction": 0}, {"dim": 1, "unbiased": False},
                          {"dim": (0, 2), "correction": 2, "keepdim": True})
add(OpSpec("var", _by_name("var"), _f64(_var_ref), ((RED_SHAPE,),), kwargs=_VAR_SWEEP,
           tags=("reduce",)))
add(OpSpec("std", _by_name("std"), _f64(lambda x, **kw: np.sqrt(_var_ref(x, **kw))),
           ((RED_SHAPE,),), kwargs=_VAR_SWEEP, tags=("reduce",)))
add(OpSpec("prod", _by_name("prod"), _f64(_np_red(np.prod)), ((RED_SHAPE,),),
           kwargs=INT_DIM_SWEEP, tags=("reduce",)))
add(OpSpec("prod(0-d)", _by_name("prod"), _f64(_np_red(np.prod)), (((),),),
           kwargs=_SCALAR_DIMS, tags=("reduce",)))


def _lse(x, dim=None, keepdim=False):
    ax = _axis(dim)
    mx = np.amax(x, axis=ax, keepdims=True)
    out = np.log(np.sum(np.exp(x - mx), axis=ax, keepdims=True)) + mx
    return out if keepdim else np.squeeze(out, axis=ax)


add(OpSpec("logsumexp", _by_name("logsumexp"), _f64(_lse), ((RED_SHAPE,),), kwargs=DIM_SWEEP[1:],
           tags=("reduce",)))


def _norm_ref(x, p="fro", dim=None, keepdim=False):
    a = np.abs(x)
    ax = _axis(dim)
    if p in ("fro", 2):
        return np.sqrt(np.sum(a * a, axis=ax, keepdims=keepdim))
    if p == math.inf:
        return np.amax(a, axis=ax, keepdims=keepdim)
    if p == -math.inf:
        return np.amin(a, axis=ax, keepdims=keepdim)
    return np.sum(a**p, axis=ax, keepdims=keepdim) ** (1.0 / p)


add(OpSpec("norm", _by_name("norm"), _f64(_norm_ref), ((RED_SHAPE,),),
           kwargs=({}, {"p": 1}, {"p": 3.0}, {"p": math.inf}, {"p": -math.inf},
                   {"p": 2, "dim": 1}, {"p": 1, "dim": -1, "keepdim": True},
                   {"p": 2, "dim": (0, 2), "keepdim": True}, {"p": "fro", "dim": (0, 1)}),
           tags=("reduce",)))


def _max_dim(np_val, np_arg):
    def ref(x, dim=None, keepdim=False):
        if dim is None:
            return np_val(x)
        if x.ndim == 0:
            return x.copy(), np.zeros((), np.int64)
        return (np_val(x, axis=dim, keepdims=keepdim),
                np.expand_dims(np_arg(x, axis=dim), dim) if keepdim else np_arg(x, axis=dim))

    return ref


for _name, _val, _arg in (("max", np.amax, np.argmax), ("min", np.amin, np.argmin)):
    add(OpSpec(_name, _by_name(_name), _max_dim(_val, _arg), ((RED_SHAPE,),),
               kwargs=INT_DIM_SWEEP, tags=("reduce",)))
    add(OpSpec(f"{_name}(0-d)", _by_name(_name), _max_dim(_val, _arg), (((),),),
               kwargs=_SCALAR_DIMS, tags=("reduce",)))
    add(OpSpec(f"{_name}(other)", _by_name(_name),
               _f64(np.maximum if _name == "max" else np.minimum), (((3, 1), (1, 4)),),
               tags=("reduce", "binary")))
for _name, _arg in (("argmax", np.argmax), ("argmin", np.argmin)):
    def _ref(x, dim=None, keepdim=False, _a=_arg):
        if dim is None and keepdim:
            return np.asarray(_a(x)).reshape((1,) * x.ndim)
        return np.asarray(_a(x, axis=dim if x.ndim else None, keepdims=keepdim)).astype(np.int64)

    add(OpSpec(_name, _by_name(_name), _ref, ((RED_SHAPE,),), kwargs=INT_DIM_SWEEP, out="int64",
               grad=False, tags=("reduce",)))
    add(OpSpec(f"{_name}(0-d)", _by_name(_name), _ref, (((),),), kwargs=_SCALAR_DIMS,
               out="int64", grad=False, tags=("reduce",)))
add(OpSpec("cumsum", _by_name("cumsum"), _f64(lambda x, dim: np.cumsum(x, axis=dim)),
           ((RED_SHAPE,),), kwargs=({"dim": 0}, {"dim": 1}, {"dim": -1}), tags=("reduce",)))


def _softmax_ref(x, dim):
    e = np.exp(x - np.amax(x, axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


add(OpSpec("softmax", _by_name("softmax"), _f64(_softmax_ref), ((RED_SHAPE,), ((5,),)),
           kwargs=({"dim": 0}, {"dim": -1}), tags=("reduce",)))
add(OpSpec("log_softmax", _by_name("log_softmax"),
           _f64(lambda x, dim: np.log(_softmax_ref(x, dim))), ((RED_SHAPE,), ((5,),)),
           kwargs=({"dim": 0}, {"dim": -1}), tags=("reduce",)))

# ---- shapes -------------------------------------------------------------------------------------
_X = ((RED_SHAPE,),)
_SHAPE_OPS = [
    ("reshape", lambda m, x: m.reshape(x, (6, 4)), lambda x: x.reshape(6, 4), _X),
    ("reshape(-1)", lambda m, x: x.reshape(-1, 4), lambda x: x.reshape(-1, 4), _X),
    ("view", lambda m, x: x.view(4, 6), lambda x: x.reshape(4, 6), _X),
    ("view(-1)", lambda m, x: x.view(-1), lambda x: x.reshape(-1), _X),
    ("flatten", lambda m, x: m.flatten(x), lambda x: x.reshape(-1), _X),
    ("flatten(1)", lambda m, x: m.flatten(x, 1), lambda x: x.reshape(2, 12), _X),
    ("flatten(0,1)", lambda m, x: x.flatten(0, 1), lambda x: x.reshape(6, 4), _X),
    ("unflatten", lambda m, x: m.unflatten(x, 2, (2, 2)), lambda x: x.reshape(2, 3, 2, 2), _X),
    ("unflatten(-1)", lambda m, x: x.unflatten(-1, (4, 1)), lambda x: x.reshape(2, 3, 4, 1), _X),
    ("transpose", lambda m, x: m.transpose(x, 0, -1), lambda x: np.swapaxes(x, 0, -1), _X),
    ("transpose(1,2)", lambda m, x: x.transpose(1, 2), lambda x: np.swapaxes(x, 1, 2), _X),
    (".T", lambda m, x: x.T, lambda x: x.T, (((3, 4),),)),
    ("permute", lambda m, x: x.permute(2, 0, 1), lambda x: np.transpose(x, (2, 0, 1)), _X),
    ("permute(tuple)", lambda m, x: m.permute(x, (1, -1, 0)),
     lambda x: np.transpose(x, (1, 2, 0)), _X),
    ("squeeze", lambda m, x: m.squeeze(x), lambda x: np.squeeze(x), (((2, 1, 3, 1),),)),
    ("squeeze(1)", lambda m, x: x.squeeze(1), lambda x: np.squeeze(x, 1), (((2, 1, 3, 1),),)),
    ("squeeze(-1)", lambda m, x: x.squeeze(-1), lambda x: np.squeeze(x, -1), (((2, 1, 3, 1),),)),
    ("squeeze(0)", lambda m, x: x.squeeze(0), lambda x: x, (((2, 1, 3, 1),),)),
    ("squeeze((1,3))", lambda m, x: m.squeeze(x, (1, 3)), lambda x: np.squeeze(x, (1, 3)),
     (((2, 1, 3, 1),),)),
    ("unsqueeze", lambda m, x: m.unsqueeze(x, 0), lambda x: x[None], _X),
    ("unsqueeze(-1)", lambda m, x: x.unsqueeze(-1), lambda x: x[..., None], _X),
    ("unsqueeze(2)", lambda m, x: x.unsqueeze(2), lambda x: np.expand_dims(x, 2), _X),
    ("expand", lambda m, x: x.expand(2, 3, 4), lambda x: np.broadcast_to(x, (2, 3, 4)),
     (((3, 1),),)),
    ("expand(-1)", lambda m, x: x.expand(2, -1, 4), lambda x: np.broadcast_to(x, (2, 3, 4)),
     (((3, 1),),)),
    ("expand_as", lambda m, x, y: x.expand_as(y), lambda x, y: np.broadcast_to(x, y.shape),
     (((1, 4), (3, 4)),)),
    ("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)),
     lambda x: np.broadcast_to(x, (2, 3, 4)), (((4,),), ((),))),
    ("repeat", lambda m, x: x.repeat(2, 1, 2), lambda x: np.tile(x, (2, 1, 2)), (((2, 3),),)),
    ("repeat(same ndim)", lambda m, x: x.repeat(1, 3), lambda x: np.tile(x, (1, 3)),
     (((2, 3),),)),
    ("tile", lambda m, x: m.tile(x, (2,)), lambda x: np.tile(x, (1, 2)), (((2, 3),),)),
    ("tile(3)", lambda m, x: x.tile((2, 1, 2)), lambda x: np.tile(x, (2, 1, 2)), (((2, 3),),)),
    ("flip", lambda m, x: m.flip(x, (0,)), lambda x: np.flip(x, 0), _X),
    ("flip(0,2)", lambda m, x: x.flip((0, 2)), lambda x: np.flip(x, (0, 2)), _X),
    ("flip(-1)", lambda m, x: m.flip(x, [-1]), lambda x: np.flip(x, -1), _X),
    ("roll", lambda m, x: m.roll(x, 1, 0), lambda x: np.roll(x, 1, 0), _X),
    ("roll(tuple)", lambda m, x: x.roll((1, -2), (0, 2)), lambda x: np.roll(x, (1, -2), (0, 2)),
     _X),
    ("roll(flat)", lambda m, x: m.roll(x, 3), lambda x: np.roll(x, 3), _X),
    ("tril", lambda m, x: m.tril(x), np.tril, (((3, 4),), ((2, 3, 3),))),
    ("tril(1)", lambda m, x: x.tril(1), lambda x: np.tril(x, 1), (((3, 4),),)),
    ("tril(-1)", lambda m, x: m.tril(x, diagonal=-1), lambda x: np.tril(x, -1), (((4, 3),),)),
    ("triu", lambda m, x: m.triu(x), np.triu, (((3, 4),), ((2, 3, 3),))),
    ("triu(1)", lambda m, x: x.triu(1), lambda x: np.triu(x, 1), (((3, 4),),)),
    ("triu(-1)", lambda m, x: m.triu(x, diagonal=-1), lambda x: np.triu(x, -1), (((4, 3),),)),
    ("diag", lambda m, x: m.diag(x), np.diag, (((3,),), ((3, 4),))),
    ("diag(1)", lambda m, x: m.diag(x, 1), lambda x: np.diag(x, 1), (((3,),), ((3, 4),))),
    ("diag(-1)", lambda m, x: x.diag(-1), lambda x: np.diag(x, -1), (((3,),), ((4, 3),))),
]
for _name, _call, _ref, _shapes in _SHAPE_OPS:
    add(OpSpec(_name, _call, _ref, _shapes, diff=(True, False) if _name == "expand_as" else None,
               tags=("shape",)))

add(OpSpec("cat", lambda m, *xs, **kw: m.cat(list(xs), **kw),
           lambda *xs, dim=0: np.concatenate(xs, dim),
           (((2, 3), (1, 3)), ((2, 3), (2, 3), (3, 3))), kwargs=({}, {"dim": -2}),
           tags=("shape",)))
add(OpSpec("cat(dim=1)", lambda m, *xs, **kw: m.cat(xs, dim=1),
           lambda *xs: np.concatenate(xs, 1), (((2, 1), (2, 3)), ((2, 2, 2), (2, 1, 2))),
           tags=("shape",)))
for _dim, _shapes in ((0, ((0, 3), (2, 3))), (1, ((2, 0), (2, 3)))):
    add(OpSpec(f"cat(empty, dim={_dim})", lambda m, *xs, _d=_dim: m.cat(list(xs), _d),
               lambda *xs, _d=_dim: np.concatenate(xs, _d), (_shapes,), tags=("shape", "empty")))
add(OpSpec("concat", lambda m, a, b: m.concat((a, b), dim=-1),
           lambda a, b: np.concatenate((a, b), -1), (((2, 1), (2, 3)),), tags=("shape",)))
add(OpSpec("stack", lambda m, *xs, **kw: m.stack(list(xs), **kw), lambda *xs, dim=0: np.stack(
    xs, dim), (((2, 3), (2, 3)), ((), ()), ((3,), (3,), (3,))),
    kwargs=({}, {"dim": -1}), tags=("shape",)))
add(OpSpec("stack(dim=1)", lambda m, a, b: m.stack([a, b], 1), lambda a, b: np.stack((a, b), 1),
           (((2, 3), (2, 3)),), tags=("shape",)))


def _split_ref(x, sizes, dim):
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, bounds, axis=dim))


add(OpSpec("split", lambda m, x: m.split(x, 2, 1), lambda x: _split_ref(x, [2, 1], 1), _X,
           tags=("shape",)))
add(OpSpec("split(sections)", lambda m, x: x.split([1, 3], -1),
           lambda x: _split_ref(x, [1, 3], -1), _X, tags=("shape",)))
add(OpSpec("split(dim=0)", lambda m, x: m.split(x, 1), lambda x: _split_ref(x, [1, 1], 0), _X,
           tags=("shape",)))
add(OpSpec("chunk", lambda m, x: m.chunk(x, 2, 2), lambda x: _split_ref(x, [2, 2], 2), _X,
           tags=("shape",)))
add(OpSpec("chunk(uneven)", lambda m, x: x.chunk(2, 1), lambda x: _split_ref(x, [2, 1], 1), _X,
           tags=("shape",)))
add(OpSpec("unbind", lambda m, x: m.unbind(x), lambda x: tuple(x), _X, tags=("shape",)))
add(OpSpec("unbind(-1)", lambda m, x: x.unbind(-1), lambda x: tuple(np.moveaxis(x, -1, 0)), _X,
           tags=("shape",)))


def _pad_ref(x, pad, mode="constant", value=0.0):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    crop = tuple(slice(-lo if lo < 0 else 0, s + hi if hi < 0 else s)
                 for (lo, hi), s in zip(widths, x.shape))
    x = x[crop]
    pos = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    if mode == "constant":
        return np.pad(x, pos, constant_values=value)
    return np.pad(x, pos, mode={"reflect": "reflect", "replicate": "edge",
                                "circular": "wrap"}[mode])


add(OpSpec("pad", lambda m, x, **kw: _fn_module(m).pad(x, **kw), _f64(_pad_ref), _X,
           kwargs=({"pad": (1, 2)}, {"pad": (1, 1, 2, 0), "value": 0.5}, {"pad": (-1, 1)},
                   {"pad": (0, 1, 1, 0, 1, 1)}, {"pad": (1, 2), "mode": "reflect"},
                   {"pad": (1, 2), "mode": "replicate"}, {"pad": (1, 2), "mode": "circular"}),
           tags=("shape",)))

# ---- matrix products ----------------------------------------------------------------------------
add(OpSpec("matmul", _by_name("matmul"), _f64(np.matmul),
           (((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 2)),
            ((2, 1, 2, 3), (3, 3, 2)), ((3,), (2, 3, 2))), tags=("linalg",)))
add(OpSpec("a @ b", lambda m, a, b: a @ b, _f64(np.matmul),
           (((2, 3), (3, 4)), ((3,), (3,)), ((2, 2, 3), (2, 3, 1))),
           tags=("linalg", "operator")))
add(OpSpec("matmul(empty)", _by_name("matmul"), _f64(np.matmul),
           (((0, 3), (3, 2)), ((2, 0), (0, 3)), ((0,), (0,)), ((2, 2, 0), (0, 1))),
           tags=("linalg", "empty")))
add(OpSpec("mm", _by_name("mm"), _f64(np.matmul), (((2, 3), (3, 4)),), tags=("linalg",)))
add(OpSpec("bmm", _by_name("bmm"), _f64(np.matmul), (((2, 2, 3), (2, 3, 2)),), tags=("linalg",)))
add(OpSpec("dot", _by_name("dot"), _f64(np.dot), (((4,), (4,)),), tags=("linalg",)))
add(OpSpec("outer", _by_name("outer"), _f64(np.outer), (((3,), (4,)),), tags=("linalg",)))
for _eq, _shapes in (("ij,jk->ik", ((2, 3), (3, 4))), ("bij,bjk->bik", ((2, 2, 3), (2, 3, 2))),
                     ("ij->ji", ((2, 3),)), ("ij->", ((2, 3),)), ("i,j->ij", ((3,), (2,))),
                     ("ijk->ik", ((2, 3, 2),)), ("ij,ij->i", ((2, 3), (2, 3))),
                     ("ij,jk", ((2, 3), (3, 2))),
                     # '...' (broadcast like PyTorch) and repeated letters (diagonals, traces)
                     ("...ij,...jk->...ik", ((2, 1, 2, 3), (3, 3, 2))),
                     ("...ij->...", ((2, 3, 2),)), ("ij...->j", ((2, 3, 2),)),  # NumPy: ijk->j
                     ("...i,i", ((2, 3), (3,))), ("i...,i...->...", ((3, 1, 2), (3, 2, 1))),
                     ("ii->i", ((3, 3),)), ("ii", ((3, 3),)), ("iij->j", ((3, 3, 2),)),
                     ("bii->bi", ((2, 3, 3),)), ("ij,jj->i", ((2, 3), (3, 3)))):
    _np_eq = "ijk->j" if _eq == "ij...->j" else _eq  # NumPy won't sum '...' dims away
    add(OpSpec(f"einsum({_eq})", lambda m, *ops, _e=_eq: m.einsum(_e, *ops),
               _f64(lambda *ops, _e=_np_eq: np.einsum(_e, *ops)), (_shapes,), tags=("linalg",)))

# ---- indexing -----------------------------------------------------------------------------------
_MASK = np.array([[True, False, True, True], [False, False, True, False],
                  [True, True, False, False]])
_ROW_MASK = np.array([True, False, True])


def _getitem(name: str, key_fn, shape=(3, 4), torch_call=None):
    """``x[key]``; ``key_fn(m)`` builds the key for module ``m`` (tensors via m.tensor)."""
    np_key = key_fn(np)
    add(OpSpec(f"x[{name}]", lambda m, x: x[key_fn(m)], lambda x: x[np_key], (((shape),),),
               torch_call=torch_call, tags=("index",)))


def _np_or(m, v):
    """``v`` as a tensor of module ``m`` (a NumPy array for the reference)."""
    return np.asarray(v) if m is np else m.tensor(v)


_getitem("1", lambda m: 1)
_getitem("-1", lambda m: -1)
_getitem("1, 2", lambda m: (1, 2))
_getitem("1:3", lambda m: slice(1, 3))
_getitem(":, ::2", lambda m: (slice(None), slice(None, None, 2)))
_getitem("None", lambda m: None)
_getitem("None, 0, ..., None", lambda m: (None, 0, Ellipsis, None), shape=(3, 2, 4))
_getitem("..., 1", lambda m: (Ellipsis, 1), shape=(2, 3, 4))
_getitem("[0, 2, 0]", lambda m: [0, 2, 0])
_getitem("[[0, 1], [1, 1]]", lambda m: _np_or(m, [[0, 1], [1, 1]]))
_getitem("tensor([2, 2, 0])", lambda m: _np_or(m, [2, 2, 0]))
_getitem(":, [3, 0, 3]", lambda m: (slice(None), [3, 0, 3]))
_getitem("[0, 2], [1, 1]", lambda m: ([0, 2], [1, 1]))
_getitem("1, [1, 1, 3]", lambda m: (1, [1, 1, 3]))
_getitem("mask", lambda m: _np_or(m, _MASK))
_getitem("row mask", lambda m: _np_or(m, _ROW_MASK))
_getitem("row mask, 1:", lambda m: (_np_or(m, _ROW_MASK), slice(1, None)))
add(OpSpec("x[x > 0]", lambda m, x: x[x > 0], lambda x: x[x > 0], (((3, 4),),),
           tags=("index",)))
# negative steps: PyTorch refuses them, so torch computes the same view with flip
_getitem("::-1", lambda m: slice(None, None, -1),
         torch_call=lambda x: x.flip(0))
_getitem(":, ::-2", lambda m: (slice(None), slice(None, None, -2)),
         torch_call=lambda x: x.flip(1)[:, ::2])
_getitem("3:0:-1", lambda m: slice(3, 0, -1), shape=(5, 2),
         torch_call=lambda x: x[1:4].flip(0))
_getitem("::-1, [0, 0]", lambda m: (slice(None, None, -1), [0, 0]),
         torch_call=lambda x: x.flip(0)[:, [0, 0]])

_GIDX = np.array([[0, 0, 3], [1, 2, 1], [3, 3, 0]])
add(OpSpec("gather", lambda m, x: m.gather(x, 1, _np_or(m, _GIDX)),
           lambda x: np.take_along_axis(x, _GIDX, 1), (((3, 4),),), tags=("index",)))
add(OpSpec("gather(dim=0)", lambda m, x: x.gather(0, _np_or(m, [[0, 2, 2, 1], [0, 0, 1, 2]])),
           lambda x: np.take_along_axis(x, np.array([[0, 2, 2, 1], [0, 0, 1, 2]]), 0),
           (((3, 4),),), tags=("index",)))
add(OpSpec("gather(dim=-1, small index)", lambda m, x: m.gather(x, -1, _np_or(m, [[1], [1]])),
           lambda x: x[:2, [1]], (((3, 4),),), tags=("index",)))
_SIDX = np.array([[0, 2, 0, 0], [2, 2, 1, 0]])


def _scatter_add_ref(x, src, dim, idx):
    out = x.copy()
    parts = list(np.indices(idx.shape, sparse=True))
    parts[dim] = idx
    region = tuple(slice(0, s) for s in idx.shape)
    np.add.at(out, tuple(parts), src[region])
    return out


add(OpSpec("scatter_add", lambda m, x, src: m.scatter_add(x, 0, _np_or(m, _SIDX), src),
           lambda x, src: _scatter_add_ref(x, src, 0, _SIDX), (((3, 4), (2, 4)),),
           tags=("index",)))
# src larger than index: torch's own backward returns a gradient of the wrong shape for src
add(OpSpec("scatter_add(larger src)",
           lambda m, x, src: m.scatter_add(x, 0, _np_or(m, _SIDX), src),
           lambda x, src: _scatter_add_ref(x, src, 0, _SIDX), (((3, 4), (3, 5)),),
           torch_grad=False, tags=("index",)))
add(OpSpec("scatter_add(dim=1)",
           lambda m, x, src: x.scatter_add(1, _np_or(m, [[0, 0], [3, 1], [2, 2]]), src),
           lambda x, src: _scatter_add_ref(x, src, 1, np.array([[0, 0], [3, 1], [2, 2]])),
           (((3, 4), (3, 2)),), tags=("index",)))
add(OpSpec("index_select", lambda m, x: m.index_select(x, 1, _np_or(m, [3, 0, 3, 1])),
           lambda x: x[:, [3, 0, 3, 1]], (((3, 4),),), tags=("index",)))
add(OpSpec("index_select(dim=-3)", lambda m, x: x.index_select(-3, _np_or(m, [1, 1])),
           lambda x: x[[1, 1]], _X, tags=("index",)))
add(OpSpec("take_along_dim", lambda m, x: m.take_along_dim(x, _np_or(m, _GIDX), 1),
           lambda x: np.take_along_axis(x, _GIDX, 1), (((3, 4),),), tags=("index",)))
add(OpSpec("take_along_dim(broadcast)",
           lambda m, x: m.take_along_dim(x, _np_or(m, [[0], [2]]), dim=1),
           lambda x: np.take_along_axis(x, np.array([[0], [2]]), 1), (((2, 4),),),
           tags=("index",)))
add(OpSpec("take_along_dim(flat)", lambda m, x: m.take_along_dim(x, _np_or(m, [5, 0, 5])),
           lambda x: x.reshape(-1)[[5, 0, 5]], (((3, 4),),), tags=("index",)))

# ---- coverage: every op the API promises -------------------------------------------------------
API_OPS = """
exp exp2 log log2 log1p expm1 sqrt rsqrt abs neg sign sin cos tan tanh sigmoid relu softplus
clamp clip maximum minimum pow reciprocal floor ceil round sum mean var std prod max min amax
amin argmax argmin cumsum logsumexp softmax log_softmax norm reshape view flatten unflatten
transpose permute squeeze unsqueeze expand expand_as broadcast_to repeat tile flip roll matmul
mm bmm dot outer einsum where masked_fill cat concat stack split chunk unbind gather scatter_add
index_select take_along_dim pad tril triu diag isnan isinf isfinite allclose
""".split()
OPERATORS = ["a + b", "a - b", "a * b", "a / b", "a // b", "a % b", "a ** b", "a @ b", "-x",
             "abs(x)", "a == b", "a != b", "a < b", "a <= b", "a > b", "a >= b", "a & b",
             "a | b", "~mask"]


def covered(spec: OpSpec) -> str:
    """The API name an entry exercises (``sum(0-d)`` and ``Tensor.sum`` cover ``sum``)."""
    name = spec.name.removeprefix("Tensor.")
    if name.startswith("x["):
        return "__getitem__"
    return name if name in OPERATORS else name.split("(")[0]


# ---- running an entry ---------------------------------------------------------------------------
def case_id(spec: OpSpec, shapes: tuple, kw: dict) -> str:
    """A readable pytest id: ``sum-(2, 3, 4)-dim=1,keepdim=True``."""
    sh = "x".join("s" if s == SCALAR else str(tuple(s)).replace(" ", "") for s in shapes)
    kws = ",".join(f"{k}={v}" for k, v in kw.items())
    return f"{spec.name}-{sh}" + (f"-{kws}" if kws else "")


def params(pred: Callable[[OpSpec], bool] = lambda s: True) -> list:
    """``pytest.param(spec, shapes, kwargs)`` for every case of every entry matching ``pred``."""
    import pytest

    return [pytest.param(spec, shapes, kw, id=case_id(spec, shapes, kw))
            for spec in REGISTRY if pred(spec) for shapes, kw in cases(spec)]


def diff_mask(spec: OpSpec, args: list) -> list:
    """Per argument: does it get requires_grad (float tensors the entry marks differentiable)?"""
    out = []
    for i, a in enumerate(args):
        is_float = isinstance(a, np.ndarray) and a.dtype.kind == "f"
        wanted = spec.diff is None or (i < len(spec.diff) and spec.diff[i])
        out.append(is_float and wanted)
    return out


def cr_args(args: list, mask: list | None = None) -> list:
    """Arguments as chainrule tensors (Python scalars stay scalars)."""
    mask = mask or [False] * len(args)
    return [cr.tensor(a.copy(), requires_grad=g) if isinstance(a, np.ndarray) else a
            for a, g in zip(args, mask)]


def closure(spec: OpSpec, args: list, kw: dict):
    """(differentiable input tensors, fn of just those) for gradcheck."""
    mask = diff_mask(spec, args)
    full = cr_args(args, mask)
    inputs = [t for t, g in zip(full, mask) if g]

    def fn(*ts):
        it = iter(ts)
        call_args = [next(it) if g else a for a, g in zip(full, mask)]
        outs = as_outputs(spec.op(*call_args, **kw))
        return tuple(o for o in outs if isinstance(o, cr.Tensor) and o.dtype.is_floating_point)

    return inputs, fn


# ---- bad calls: (op name the error must mention, call(m, x) on x = arange(12).reshape(3, 4)) --
BAD_CALLS = [
    ("index", lambda m, t: t[5]), ("index", lambda m, t: t[:, 4]),
    ("index", lambda m, t: t[[0, 5]]), ("index", lambda m, t: t[m.tensor([0, -4])]),
    ("index", lambda m, t: t[1.5]), ("index", lambda m, t: t[m.tensor([0.0])]),
    ("index", lambda m, t: t[m.tensor([True, False])]), ("index", lambda m, t: t[0, 0, 0]),
    ("gather", lambda m, t: m.gather(t, 1, m.tensor([[4]]))),
    ("gather", lambda m, t: m.gather(t, 1, m.tensor([[-1]]))),
    ("gather", lambda m, t: m.gather(t, 1, m.tensor([[0.0]]))),
    ("gather", lambda m, t: m.gather(t, 1, m.tensor([0]))),
    ("index_select", lambda m, t: m.index_select(t, 0, m.tensor([3]))),
    ("index_select", lambda m, t: m.index_select(t, 0, m.tensor([-1]))),
    ("index_select", lambda m, t: m.index_select(t, 0, m.tensor([[0]]))),
    ("scatter_add", lambda m, t: m.scatter_add(t, 0, m.tensor([[3]]), m.ones(1, 1,
                                                                          dtype=m.float64))),
    ("scatter_add", lambda m, t: m.scatter_add(t, 0, m.tensor([[-1]]), m.ones(1, 1,
                                                                           dtype=m.float64))),
    ("scatter_add", lambda m, t: m.scatter_add(t, 0, m.tensor([[0]]), m.ones(1, 1))),
    ("take_along_dim", lambda m, t: m.take_along_dim(t, m.tensor([[0.5]]), 1)),
    ("masked_fill", lambda m, t: m.masked_fill(t, m.ones(3, 4), 0.0)),
    ("masked_fill", lambda m, t: m.masked_fill(t, m.tensor([True, False]), 0.0)),
    ("where", lambda m, t: m.where(m.tensor([True, False]), t, t)),
    ("cat", lambda m, t: m.cat([t, t], 2)), ("cat", lambda m, t: m.cat([t, t[0]])),
    ("stack", lambda m, t: m.stack([t, t[0]])), ("reshape", lambda m, t: t.reshape(5, -1)),
    ("expand", lambda m, t: t.expand(2, 3)), ("permute", lambda m, t: t.permute(0, 0)),
    ("squeeze", lambda m, t: t.squeeze(3)), ("unsqueeze", lambda m, t: t.unsqueeze(3)),
    ("unflatten", lambda m, t: t.unflatten(1, (3, 2))), ("flatten", lambda m, t: t.flatten(1, 0)),
    ("split", lambda m, t: t.split([1, 1], 0)), ("transpose", lambda m, t: t.transpose(0, 2)),
    ("flip", lambda m, t: t.flip([0, 0])), ("roll", lambda m, t: t.roll((1, 2), (0,))),
    ("matmul", lambda m, t: t @ t), ("mm", lambda m, t: m.mm(t, t[0])),
    ("bmm", lambda m, t: m.bmm(t, t)), ("dot", lambda m, t: m.dot(t[0], t[:, 0])),
    ("einsum", lambda m, t: m.einsum("ij,jk->ik", t, t)),
    ("pad", lambda m, t: _fn_module(m).pad(t, (1, 1, 1, 1, 1, 1))),
    ("diag", lambda m, t: m.diag(t[None])), ("tril", lambda m, t: m.tril(t[0])),
    ("triu", lambda m, t: m.triu(t[0])), ("softmax", lambda m, t: m.softmax(t, 2)),
    ("log_softmax", lambda m, t: m.log_softmax(t, -3)), ("sum", lambda m, t: t.sum((0, 0))),
    ("mean", lambda m, t: t.mean(2)), ("cumsum", lambda m, t: t.cumsum(2)),
    ("var", lambda m, t: t.var(5)), ("std", lambda m, t: t.std(-3)),
    ("prod", lambda m, t: t.prod(2)), ("amax", lambda m, t: m.amax(t, 2)),
    ("max", lambda m, t: m.max(t, 2)), ("argmax", lambda m, t: m.argmax(t, 2)),
    ("logsumexp", lambda m, t: m.logsumexp(t, 3)), ("norm", lambda m, t: m.norm(t, dim=2)),
    ("chunk", lambda m, t: t.chunk(0)), ("repeat", lambda m, t: t.repeat(2)),
    ("broadcast_to", lambda m, t: m.broadcast_to(t, (4,))), ("clamp", lambda m, t: m.clamp(t)),
    ("add", lambda m, t: t + t[:2]), ("mul", lambda m, t: t * t[:2]),
    ("sub", lambda m, t: m.sub(t, t[:2])), ("div", lambda m, t: t / t[:2]),
    ("pow", lambda m, t: t ** t[:2]), ("maximum", lambda m, t: m.maximum(t, t[:2])),
    ("outer", lambda m, t: m.outer(t, t)), ("allclose", lambda m, t: m.allclose(t, t[:2])),
]


# ---- nn.functional entries live in their own file -----------------------------------------------
import nn_registry  # noqa: E402,F401  (appends its entries to REGISTRY)
import api_registry  # noqa: E402,F401  (entries for the ops of issue 13's API coverage)
import more_registry  # noqa: E402,F401  (elementwise math, activations, norms, losses)
