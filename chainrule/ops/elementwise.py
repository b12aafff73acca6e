"""Elementwise unary gates: each gate's forward and local gradient side by side."""

from __future__ import annotations

import math

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op, _apply
from chainrule.batching import is_batched
from chainrule.kernels import kernels_for
from chainrule.ops import either
from chainrule.tensor import Tensor, wrap

__all__ = [
    "neg", "negative", "absolute", "exp", "exp2", "log", "log2", "log10", "log1p", "expm1",
    "sqrt", "rsqrt", "abs",
    "sign", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "softplus", "clamp", "clip",
    "reciprocal", "floor", "ceil", "round", "trunc", "square", "isnan", "isinf",
    "isfinite", "logical_not", "clone", "positive", "sinh", "cosh", "asin", "acos", "atan",
    "erf", "logit", "frac",
]

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _float_input(x: Tensor, name: str) -> Tensor:
    """Int/bool inputs of float functions become the default float dtype (as in PyTorch)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be Tensor, not {type(x).__name__}")
    if x._data.dtype.kind not in _dt.FLOAT_KINDS:
        return wrap(x._data.astype(_dt.get_default_dtype().np))
    return x


# ---- sign and magnitude -------------------------------------------------------------------------
class Neg(Op):
    """y = -x;  dy/dx = -1"""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


class Abs(Op):
    """y = |x|;  dy/dx = sign(x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.sign(x)


class Sign(Op):
    """y = sign(x);  dy/dx = 0"""

    @staticmethod
    def forward(ctx, x):
        y = np.sign(x)
        if is_batched(y) or np.isnan(y).any():  # sign(NaN) = 0 (no shortcut test inside vmap)
            return np.where(y != y, 0, y).astype(y.dtype)
        return y

    @staticmethod
    def backward(ctx, g):
        return either.zeros_like(g)  # (not g·0: an infinite g would give NaN)


class ZeroGrad(Op):
    """floor/ceil/round/trunc: piecewise constant, so the gradient is 0 everywhere."""

    fn = None

    @classmethod
    def forward(cls, ctx, x, *args):
        return cls.fn(x, *args)

    @staticmethod
    def backward(ctx, g):
        return (either.zeros_like(g),) + (None,) * 1


class Floor(ZeroGrad):
    fn = staticmethod(np.floor)


class Ceil(ZeroGrad):
    fn = staticmethod(np.ceil)


class Trunc(ZeroGrad):
    fn = staticmethod(np.trunc)


class Round(ZeroGrad):
    fn = staticmethod(lambda x, decimals: np.round(x, decimals))


# ---- exponentials and logarithms ----------------------------------------------------------------
class Exp(Op):
    """y = e^x;  dy/dx = y"""

    @staticmethod
    def forward(ctx, x):
        y = kernels_for(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class Exp2(Op):
    """y = 2^x;  dy/dx = y ln 2"""

    @staticmethod
    def forward(ctx, x):
        y = np.exp2(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * _LN2


class Expm1(Op):
    """y = e^x - 1;  dy/dx = y + 1"""

    @staticmethod
    def forward(ctx, x):
        y = np.expm1(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (y + 1)


class Log(Op):
    """y = ln x;  dy/dx = 1/x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Log2(Op):
    """y = log2 x;  dy/dx = 1/(x ln 2)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log2(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * _LN2)


class Log10(Op):
    """y = log10 x;  dy/dx = 1/(x ln 10)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log10(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * _LN10)


class Log1p(Op):
    """y = ln(1 + x);  dy/dx = 1/(1 + x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log1p(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x + 1)


class Sqrt(Op):
    """y = √x;  dy/dx = 1/(2y)"""

    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g / (y * 2)


class Rsqrt(Op):
    """y = 1/√x;  dy/dx = -y³/2"""

    @staticmethod
    def forward(ctx, x):
        y = 1 / np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * y * y * -0.5


class Reciprocal(Op):
    """y = 1/x;  dy/dx = -y²"""

    @staticmethod
    def forward(ctx, x):
        y = 1 / x
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return -g * y * y


# ---- trigonometric and hyperbolic ---------------------------------------------------------------
class Sin(Op):
    """y = sin x;  dy/dx = cos x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.cos(x)


class Cos(Op):
    """y = cos x;  dy/dx = -sin x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.cos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -g * either.sin(x)


class Tan(Op):
    """y = tan x;  dy/dx = 1 + y²"""

    @staticmethod
    def forward(ctx, x):
        y = np.tan(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (y * y + 1)


class Sinh(Op):
    """y = sinh x;  dy/dx = cosh x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.sinh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.cosh(x)


class Cosh(Op):
    """y = cosh x;  dy/dx = sinh x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.cosh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.sinh(x)


class Asin(Op):
    """y = asin x;  dy/dx = 1/√(1-x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arcsin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / either.sqrt(1 - x * x)


class Acos(Op):
    """y = acos x;  dy/dx = -1/√(1-x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arccos(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -g / either.sqrt(1 - x * x)


class Atan(Op):
    """y = atan x;  dy/dx = 1/(1+x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arctan(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * x + 1)


class Tanh(Op):
    """y = tanh x;  dy/dx = 1 - y²"""

    @staticmethod
    def forward(ctx, x):
        y = kernels_for(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels_for(g).tanh_backward(g, y)

    @staticmethod
    def differentiable_backward(ctx, g):  # one gate (as torch's tanh_backward), not four
        (y,) = ctx.saved_tensors
        return TanhBackward.apply(g, y)


class TanhBackward(Op):
    """z = g·(1 - y²) (tanh's gradient, from its output y);  dg = dz·(1 - y²), dy = -2·dz·g·y"""

    @staticmethod
    def forward(ctx, g, y):
        ctx.save_for_backward(g if ctx.needs_input_grad[1] else None, y)
        return kernels_for(g).tanh_backward(g, y)

    @staticmethod
    def backward(ctx, dz):
        g, y = ctx.saved_tensors
        need_g, need_y = ctx.needs_input_grad
        dg = kernels_for(dz).tanh_backward(dz, y) if need_g else None
        dy = dz * (g * y * -2.0) if need_y else None  # the factor on the unbatched side
        return dg, dy


class Erf(Op):
    """y = erf x;  dy/dx = 2/√π e^(-x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return kernels_for(x).erf(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.exp(-(x * x)) * (2 / math.sqrt(math.pi))


# ---- neural-network nonlinearities --------------------------------------------------------------
class Sigmoid(Op):
    """y = 1/(1 + e^-x);  dy/dx = y(1 - y)  (the lecture's sigmoid gate)"""

    @staticmethod
    def forward(ctx, x):
        y = kernels_for(x).sigmoid(x)  # split by sign, so that exp never overflows
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels_for(g).sigmoid_backward(g, y)


class Relu(Op):
    """y = max(0, x);  dy/dx = [x > 0] (1 at NaN, as torch)"""

    @staticmethod
    def forward(ctx, x):
        y = kernels_for(x).relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels_for(g).relu_backward(g, y)


class Softplus(Op):
    """y = ln(1 + e^(βx))/β (x where βx > threshold);  dy/dx = σ(βx)"""

    @staticmethod
    def forward(ctx, x, beta, threshold):
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        bx = x * beta
        return np.where(bx > threshold, x, np.logaddexp(0, bx) / beta).astype(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        bx = x * ctx.beta
        return either.where(bx > ctx.threshold, g, g * either.sigmoid(bx)), None, None


class Clamp(Op):
    """y = min(max(x, lo), hi);  dy/dx = [lo ≤ x ≤ hi]"""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xs = either.data(x)
        mask = True
        if ctx.lo is not None:
            mask = xs >= ctx.lo
        if ctx.hi is not None:
            mask = mask & (xs <= ctx.hi)
        return either.where(mask, g, 0.0), None, None  # (not g·mask: NaN·0 is NaN, as torch)


class Logit(Op):
    """y = ln(x/(1-x));  dy/dx = 1/(x(1-x)) (NaN outside [0, 1], as torch)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x / (1 - x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return either.where((x < 0) | (x > 1), math.nan, g / (x * (1 - x)))  # (NaN outside)


# ---- copies, casts and moves --------------------------------------------------------------------
class Clone(Op):
    """y = x (a copy);  dy/dx = 1"""

    @staticmethod
    def forward(ctx, x):
        return kernels_for(x).copy(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Cast(Op):
    """y = x converted to another dtype; the gradient is cast back by the engine."""

    @staticmethod
    def forward(ctx, x, np_dtype):
        return x.astype(np_dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


class Move(Op):
    """y = x on another device; the gradient moves back."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.src = devices.device_of(x)
        return devices.to_device(x, device)

    @staticmethod
    def backward(ctx, g):
        return either.to_device(g, ctx.src), None


class CopyInto(Op):
    """y = src, broadcast to x's shape in x's dtype (x's old value is dropped);  dy/dsrc = 1"""

    @staticmethod
    def forward(ctx, x, src):
        xp = devices.xp_of(x)
        return xp.broadcast_to(xp.asarray(src).astype(x.dtype, copy=False), x.shape).copy()

    @staticmethod
    def backward(ctx, g):
        return (either.zeros_like(g) if ctx.needs_input_grad[0] else None), g


def copy_value(input: Tensor, src) -> Tensor:
    """``src`` as the new value of ``input`` (what ``input.copy_(src)`` writes)."""
    if isinstance(src, Tensor) and src.device != input.device:
        src = move(src, input.device)
    try:
        return CopyInto.apply(input, src)
    except ValueError:
        target, have = list(input._data.shape), list(np.shape(either.data(src)))
        raise RuntimeError(
            f"The expanded size of the tensor ({target[-1] if target else 1}) must match the "
            f"existing size ({have[-1] if have else 1}) at non-singleton dimension "
            f"{max(len(target) - 1, 0)}.  Target sizes: {target}.  Tensor sizes: {have}"
        ) from None


# ---- public functions ---------------------------------------------------------------------------
def _unary_fn(op, name: str, doc: str):
    # (``_apply(op, args, None)`` is ``op.apply(*args)``, called directly: this runs on every
    # x.exp())
    def fn(input: Tensor) -> Tensor:
        if (type(input) is Tensor or isinstance(input, Tensor)) and (
                input._data.dtype.kind in _dt.FLOAT_KINDS):
            return _apply(op, (input,), None)
        return _apply(op, (_float_input(input, name),), None)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


exp = _unary_fn(Exp, "exp", "e^x, elementwise.")
exp2 = _unary_fn(Exp2, "exp2", "2^x, elementwise.")
expm1 = _unary_fn(Expm1, "expm1", "e^x - 1, accurate near 0.")
log = _unary_fn(Log, "log", "Natural logarithm.")
log2 = _unary_fn(Log2, "log2", "Base-2 logarithm.")
log10 = _unary_fn(Log10, "log10", "Base-10 logarithm.")
log1p = _unary_fn(Log1p, "log1p", "ln(1 + x), accurate near 0.")
sqrt = _unary_fn(Sqrt, "sqrt", "Square root.")
rsqrt = _unary_fn(Rsqrt, "rsqrt", "1/√x.")
reciprocal = _unary_fn(Reciprocal, "reciprocal", "1/x.")
sin = _unary_fn(Sin, "sin", "Sine.")
cos = _unary_fn(Cos, "cos", "Cosine.")
tan = _unary_fn(Tan, "tan", "Tangent.")
sinh = _unary_fn(Sinh, "sinh", "Hyperbolic sine.")
cosh = _unary_fn(Cosh, "cosh", "Hyperbolic cosine.")
asin = _unary_fn(Asin, "asin", "Inverse sine.")
acos = _unary_fn(Acos, "acos", "Inverse cosine.")
atan = _unary_fn(Atan, "atan", "Inverse tangent.")
tanh = _unary_fn(Tanh, "tanh", "Hyperbolic tangent.")
sigmoid = _unary_fn(Sigmoid, "sigmoid", "The logistic function 1/(1 + e^-x).")
erf = _unary_fn(Erf, "erf", "The error function.")
logit = _unary_fn(Logit, "logit", "ln(x / (1 - x)).")


def neg(input: Tensor) -> Tensor:
    """-x."""
    if input._data.dtype.kind == "b":
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported.")
    return Neg.apply(input)


negative = neg


def positive(input: Tensor) -> Tensor:
    return input


def _refuse(input: Tensor, name: str, kinds: str = "b") -> None:
    """Raise as PyTorch does for dtypes it has no kernel for (``kinds``: NumPy dtype kinds)."""
    if input._data.dtype.kind in kinds:
        raise NotImplementedError(
            f'"{name}" not implemented for \'{_dt.scalar_type_name(input._data.dtype)}\'')


def abs(input: Tensor) -> Tensor:
    """|x|."""
    _refuse(input, "abs")
    return Abs.apply(input)


absolute = abs


def sign(input: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of x."""
    if input._data.dtype.kind == "b":
        return input.clone()
    return Sign.apply(input)


def square(input: Tensor) -> Tensor:
    """x² (a bool tensor gives int64, as torch's)."""
    if input._data.dtype == bool:
        input = input.to(_dt.int64)
    return input * input


def relu(input: Tensor) -> Tensor:
    """max(0, x)."""
    if input._data.dtype.kind == "b":
        raise RuntimeError("relu(): Boolean inputs not supported for relu")
    return Relu.apply(input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """ln(1 + e^(βx))/β, linear above the threshold."""
    _refuse(input, "softplus", "biu")
    return Softplus.apply(_float_input(input, "softplus"), beta, threshold)


def clamp(input: Tensor, min=None, max=None) -> Tensor:
    """min(max(x, min), max)."""
    if _amp.active and (out := _amp.run("clamp", clamp, input, min, max)) is not None:
        return out
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    min, max = (b.item() if isinstance(b, np.generic) else b for b in (min, max))  # no upcast
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        return _clamp_tensor_bounds(input, min, max)
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:  # int/bool inputs promote with bounds
        target = _dt.result_type(input._data, *[b for b in (min, max) if b is not None])
        input = wrap(input._data.astype(target)) if target != input._data.dtype else input
    return Clamp.apply(input, min, max)


clip = clamp


def _clamp_tensor_bounds(x: Tensor, lo, hi) -> Tensor:
    """clamp with tensor bounds, routing the gradient as PyTorch does: to x inside [lo, hi]
    (ties included), to lo below it, to hi above it or wherever hi < lo; nowhere when x < lo == hi
    or x is NaN."""

    def raw(b):
        return b._data if isinstance(b, Tensor) else b

    xr = x._data
    try:
        np.broadcast_shapes(xr.shape, np.shape(raw(lo)), np.shape(raw(hi)))
    except ValueError:
        raise RuntimeError(
            f"clamp: input {list(xr.shape)}, min {list(np.shape(raw(lo)))} and max "
            f"{list(np.shape(raw(hi)))} are not broadcastable"
        ) from None
    if hi is None:
        out = either.where(xr >= raw(lo), x, lo)
    elif lo is None:
        out = either.where(xr <= raw(hi), x, hi)
    else:
        lr, hr = raw(lo), raw(hi)
        stuck_hi = hi.detach() if isinstance(hi, Tensor) else hi
        out = either.where((xr >= lr) & (xr <= hr), x,
                           either.where((xr < lr) & (lr < hr), lo,
                                        either.where((xr < lr) & (lr == hr), stuck_hi, hi)))
    nan = np.isnan(xr)
    # (inside vmap no shortcut test: a compiled gate's test on batched values reads as the user's)
    return either.where(nan, x.detach(), out) if is_batched(nan) or nan.any() else out


def _zero_grad_fn(op, name: str):
    def fn(input: Tensor) -> Tensor:
        if input._data.dtype.kind not in FLOAT_KINDS:
            _refuse(input, name)
            return input.clone()
        return op.apply(input)

    fn.__name__ = name
    fn.__doc__ = f"{name}(x), elementwise (zero gradient)."
    return fn


floor = _zero_grad_fn(Floor, "floor")
ceil = _zero_grad_fn(Ceil, "ceil")
trunc = _zero_grad_fn(Trunc, "trunc")


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, to ``decimals`` places (zero gradient)."""
    if input._data.dtype.kind not in FLOAT_KINDS:
        _refuse(input, "round", "b" if decimals == 0 else "biu")
        return input.clone()
    return Round.apply(input, decimals)


def frac(input: Tensor) -> Tensor:
    if input._data.dtype.kind not in FLOAT_KINDS:
        raise NotImplementedError(f'"frac_cpu" not implemented for '
                                  f"'{_dt.scalar_type_name(input._data.dtype)}'")
    return input - trunc(input)


def clone(input: Tensor) -> Tensor:
    """A copy that stays in the graph."""
    return Clone.apply(input)


def cast(input: Tensor, np_dtype) -> Tensor:
    return Cast.apply(input, np.dtype(np_dtype))


def move(input: Tensor, device) -> Tensor:
    return Move.apply(input, device)


def isnan(input: Tensor) -> Tensor:
    return wrap(np.isnan(input._data))


def isinf(input: Tensor) -> Tensor:
    return wrap(np.isinf(input._data))


def isfinite(input: Tensor) -> Tensor:
    return wrap(np.isfinite(input._data))


def logical_not(input: Tensor) -> Tensor:
    return wrap(np.logical_not(input._data))


# ---- more of torch's elementwise functions ----------------------------------------------------
class Asinh(Op):
    """y = asinh x;  dy/dx = 1/√(x² + 1)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arcsinh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / either.sqrt(x * x + 1)


class Acosh(Op):
    """y = acosh x;  dy/dx = 1/√(x² - 1)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arccosh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / either.sqrt(x * x - 1)


class Atanh(Op):
    """y = atanh x;  dy/dx = 1/(1 - x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.arctanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (1 - x * x)


class NanToNum(Op):
    """y = x with NaN, +∞, -∞ replaced;  dy/dx = 1 where x is finite, else 0"""

    @staticmethod
    def forward(ctx, x, nan, posinf, neginf):
        ctx.finite = np.isfinite(x)
        return np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)

    @staticmethod
    def backward(ctx, g):
        return either.where(ctx.finite, g, 0.0), None, None, None


asinh = _unary_fn(Asinh, "asinh", "Inverse hyperbolic sine.")
acosh = _unary_fn(Acosh, "acosh", "Inverse hyperbolic cosine.")
atanh = _unary_fn(Atanh, "atanh", "Inverse hyperbolic tangent.")
arcsin, arccos, arctan = asin, acos, atan
arcsinh, arccosh, arctanh = asinh, acosh, atanh
sgn = sign
fix = trunc


def deg2rad(input: Tensor) -> Tensor:
    """x·π/180."""
    return _float_input(input, "deg2rad") * (math.pi / 180)


def rad2deg(input: Tensor) -> Tensor:
    """x·180/π."""
    return _float_input(input, "rad2deg") * (180 / math.pi)


def nan_to_num(input: Tensor, nan: float = 0.0, posinf=None, neginf=None) -> Tensor:
    """NaN → ``nan``, +∞ → ``posinf``, -∞ → ``neginf`` (the dtype's extremes by default)."""
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:
        return input.clone()
    info = np.finfo(input._data.dtype)
    return NanToNum.apply(input, nan, info.max if posinf is None else posinf,
                          info.min if neginf is None else neginf)


def clamp_min(input: Tensor, min) -> Tensor:
    """max(x, min)."""
    return clamp(input, min=min)


def clamp_max(input: Tensor, max) -> Tensor:
    """min(x, max)."""
    return clamp(input, max=max)


def signbit(input: Tensor) -> Tensor:
    """True where the sign bit is set (-0.0 included)."""
    return wrap(np.signbit(input._data))


def isposinf(input: Tensor) -> Tensor:
    return wrap(np.isposinf(input._data) if input._data.dtype.kind == "f"
                else np.zeros(input._data.shape, bool))


def isneginf(input: Tensor) -> Tensor:
    return wrap(np.isneginf(input._data) if input._data.dtype.kind == "f"
                else np.zeros(input._data.shape, bool))


def isreal(input: Tensor) -> Tensor:
    """True everywhere: chainrule's dtypes are real."""
    return wrap(devices.xp_of(input._data).ones(input._data.shape, bool))


def real(input: Tensor) -> Tensor:
    """The real part: a real tensor itself."""
    return input


def imag(input: Tensor) -> Tensor:
    raise RuntimeError("imag is not implemented for tensors with non-complex dtypes.")


def conj(input: Tensor) -> Tensor:
    """The complex conjugate: a real tensor itself."""
    return input


resolve_conj = resolve_neg = conj


def conj_physical(input: Tensor) -> Tensor:
    return input.clone()


def is_conj(input: Tensor) -> bool:
    return False


def is_neg(input: Tensor) -> bool:
    return False


def angle(input: Tensor) -> Tensor:
    """The argument of a real number: 0 for x ≥ 0, π for x < 0 (NaN stays NaN); no gradient
    (zero), as torch."""
    x = _float_input(input, "angle")._data
    out = np.where(x < 0, math.pi, 0.0).astype(x.dtype)
    return wrap(np.where(np.isnan(x), x, out))


def frexp(input: Tensor):
    """(mantissa, exponent) with x = mantissa·2^exponent, |mantissa| in [0.5, 1)."""
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError("torch.frexp() only supports floating-point dtypes")
    m, e = np.frexp(input._data)
    from collections import namedtuple

    return namedtuple("frexp", ["mantissa", "exponent"])(wrap(m), wrap(e.astype(np.int32)))


__all__ += [
    "asinh", "acosh", "atanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh",
    "sgn", "fix", "deg2rad", "rad2deg", "nan_to_num", "clamp_min", "clamp_max", "signbit",
    "isposinf", "isneginf", "isreal", "real", "imag", "conj", "resolve_conj", "resolve_neg",
    "conj_physical", "is_conj", "is_neg", "angle", "frexp",
]
