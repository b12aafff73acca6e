"""Elementwise unary gates: each gate's forward and local gradient side by side."""

from __future__ import annotations

import math
import operator

from chainrule.amp import autocast_mode as _amp
from chainrule.dtypes import FLOAT_KINDS
from chainrule.backend import np
from chainrule import backend, cuda_kernels
from chainrule.autograd import accel
from chainrule.autograd.function import Op
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
    if x._data.dtype.kind not in FLOAT_KINDS:
        from chainrule.dtypes import get_default_dtype

        return wrap(x._data.astype(get_default_dtype().np))
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
        return np.where(y != y, 0, y).astype(y.dtype) if np.isnan(y).any() else y  # sign(NaN) = 0

    @staticmethod
    def backward(ctx, g):
        return g * 0


class ZeroGrad(Op):
    """floor/ceil/round/trunc: piecewise constant, so the gradient is 0 everywhere."""

    fn = None

    @classmethod
    def forward(cls, ctx, x, *args):
        return cls.fn(x, *args)

    @staticmethod
    def backward(ctx, g):
        return (g * 0,) + (None,) * 1


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
        y = np.exp(x) if type(x) is not backend.gpu_ndarray else cuda_kernels.run1(
            "exp", np.exp, x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y if type(g) is not backend.gpu_ndarray else cuda_kernels.run2(
            "mul", operator.mul, g, y)


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
        return g * cosh(x) if isinstance(x, Tensor) else g * np.cosh(x)


class Cosh(Op):
    """y = cosh x;  dy/dx = sinh x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.cosh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * sinh(x) if isinstance(x, Tensor) else g * np.sinh(x)


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
        y = np.tanh(x) if type(x) is not backend.gpu_ndarray else cuda_kernels.run1(
            "tanh", np.tanh, x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if backend.is_gpu_array(g):
            gx = cuda_kernels.unary_backward("tanh_backward", g, y)
            if gx is not None:
                return gx
        return g * (1 - y * y)


_SCIPY_ERF = []


def erf_array(x):
    """erf of an array. float64: SciPy's ufunc when installed (else math.erf, vectorized);
    float32/16: Abramowitz & Stegun 7.1.26 in cache-sized blocks (|error| < 1e-6, 4× faster
    than SciPy, whose float32 erf goes through double precision)."""
    if not backend.is_cpu_array(x):
        from chainrule import cuda_kernels

        return cuda_kernels.erf(x)
    x = np.asarray(x)
    if x.dtype == np.float64 or x.size < 4096:
        if not _SCIPY_ERF:
            try:
                from scipy.special import erf  # imported on first use: it is slow to import
            except ImportError:  # pragma: no cover
                erf = np.vectorize(math.erf, otypes=[np.float64])
            _SCIPY_ERF.append(erf)
        return _SCIPY_ERF[0](x).astype(x.dtype, copy=False)
    out = np.empty_like(x)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(0, flat_x.size, 65536):
        xb = flat_x[i:i + 65536]
        a = np.abs(xb)
        t = a * 0.3275911
        t += 1.0
        np.reciprocal(t, out=t)
        p = t * 1.061405429
        for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
            p += c
            p *= t
        np.multiply(a, a, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        p *= a
        np.subtract(1.0, p, out=p)
        np.copysign(p, xb, out=flat_out[i:i + 65536])
    return out


class Erf(Op):
    """y = erf x;  dy/dx = 2/√π e^(-x²)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return erf_array(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * either.exp(-(x * x)) * (2 / math.sqrt(math.pi))


# ---- neural-network nonlinearities --------------------------------------------------------------
class Sigmoid(Op):
    """y = 1/(1 + e^-x);  dy/dx = y(1 - y)  (the lecture's sigmoid gate)"""

    @staticmethod
    def forward(ctx, x):
        # split by sign so exp never overflows: for x < 0 use e^x/(1+e^x)
        if type(x) is backend.gpu_ndarray:
            y = cuda_kernels.run1("sigmoid", _sigmoid_array, x)
        elif np.ndim(x) == 0:
            y = 1 / (1 + np.exp(-x)) if x >= 0 else np.exp(x) / (1 + np.exp(x))
        else:
            y = _sigmoid_array(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if backend.is_gpu_array(g):
            gx = cuda_kernels.unary_backward("sigmoid_backward", g, y)
            if gx is not None:
                return gx
        return g * y * (1 - y)


def _relu_array(x):
    return np.maximum(x, 0)


def _sigmoid_array(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Relu(Op):
    """y = max(0, x);  dy/dx = [x > 0] (1 at NaN, as torch)"""

    @staticmethod
    def forward(ctx, x):
        if type(x) is backend.gpu_ndarray:
            y = cuda_kernels.run1("relu", _relu_array, x)
        elif accel.fusable(x):  # the same in one pass (autograd/accel.py)
            y = np.empty_like(x)
            accel.engine.relu_forward(x, y)
        else:
            y = np.maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if backend.is_gpu_array(g):
            gx = cuda_kernels.unary_backward("relu_backward", g, y)
            if gx is not None:
                return gx
        elif accel.fusable(g, y) and g.shape == y.shape:
            gx = np.empty_like(g)
            accel.engine.relu_backward(g, y, gx)
            return gx
        return g * (y != 0)  # y ≥ 0 or NaN, so y != 0 is [x > 0] with 1 at NaN


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
        if isinstance(bx, Tensor):
            s = sigmoid(bx)
        else:  # split by sign so exp never overflows (e^-bx did for bx < -88 in float32)
            e = np.exp(-np.abs(bx))
            s = np.where(bx >= 0, 1 / (1 + e), e / (1 + e))
        return either.where(bx > ctx.threshold, g, g * s), None, None


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
        xs = x._data if isinstance(x, Tensor) else x
        mask = True
        if ctx.lo is not None:
            mask = xs >= ctx.lo
        if ctx.hi is not None:
            mask = mask & (xs <= ctx.hi)
        return g * mask, None, None


class Logit(Op):
    """y = ln(x/(1-x));  dy/dx = 1/(x(1-x))"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x / (1 - x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / (x * (1 - x))


# ---- copies, casts and moves --------------------------------------------------------------------
class Clone(Op):
    """y = x (a copy);  dy/dx = 1"""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

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
        ctx.src = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return move(g, ctx.src), None
        return backend.to_device(g, ctx.src), None


# ---- public functions ---------------------------------------------------------------------------
def _unary_fn(op, name: str, doc: str):
    apply, apply_unary = op.apply, op.apply_unary  # bound once: this runs on every x.exp()

    def fn(input: Tensor) -> Tensor:
        if (type(input) is Tensor or isinstance(input, Tensor)) and (
                input._data.dtype.kind in FLOAT_KINDS):
            return apply_unary(input)
        return apply(_float_input(input, name))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn._gate = (op, False, False)  # Tensor.<name> becomes a C gate (autograd/accel.py), if built
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
    return Neg.apply_unary(input)


negative = neg


def positive(input: Tensor) -> Tensor:
    return input


_TORCH_NAMES = {"bool": "Bool", "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char",
                "uint8": "Byte"}


def _refuse(input: Tensor, name: str, kinds: str = "b") -> None:
    """Raise as PyTorch does for dtypes it has no kernel for (``kinds``: NumPy dtype kinds)."""
    if input._data.dtype.kind in kinds:
        dt = _TORCH_NAMES.get(input._data.dtype.name, input._data.dtype.name)
        raise NotImplementedError(f'"{name}" not implemented for \'{dt}\'')


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
    """x²."""
    return input * input


def relu(input: Tensor) -> Tensor:
    """max(0, x)."""
    if input._data.dtype.kind == "b":
        raise RuntimeError("relu(): Boolean inputs not supported for relu")
    return Relu.apply_unary(input)


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
    if input._data.dtype.kind not in FLOAT_KINDS:  # int/bool inputs promote with the bounds
        from chainrule.dtypes import result_type

        target = result_type(input._data, *[b for b in (min, max) if b is not None])
        input = wrap(input._data.astype(target)) if target != input._data.dtype else input
    return Clamp.apply(input, min, max)


clip = clamp


def _clamp_tensor_bounds(x: Tensor, lo, hi) -> Tensor:
    """clamp with tensor bounds, routing the gradient as PyTorch does: to x inside [lo, hi]
    (ties included), to lo below it, to hi above it or wherever hi < lo; nowhere when x < lo == hi
    or x is NaN."""
    from chainrule.ops.binary import where

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
        out = where(xr >= raw(lo), x, lo)
    elif lo is None:
        out = where(xr <= raw(hi), x, hi)
    else:
        lr, hr = raw(lo), raw(hi)
        stuck_hi = hi.detach() if isinstance(hi, Tensor) else hi
        out = where((xr >= lr) & (xr <= hr), x,
                    where((xr < lr) & (lr < hr), lo, where((xr < lr) & (lr == hr), stuck_hi, hi)))
    nan = np.isnan(xr)
    return where(nan, x.detach(), out) if nan.any() else out


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
