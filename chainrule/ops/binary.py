"""Binary gates (add distributes, mul swaps, max routes), comparisons and type promotion."""

from __future__ import annotations

import builtins
import warnings

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.autograd.function import Op, _apply
from chainrule import creation as _creation
from chainrule.kernels.dispatch import kernels_for
from chainrule.ops import either
from chainrule.ops.elementwise import cast, trunc
from chainrule.tensor import Tensor, wrap

__all__ = [
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "remainder", "fmod", "pow", "float_power", "maximum", "minimum", "where", "masked_fill",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "equal", "allclose", "isclose",
    "atan2", "xlogy",
]

_SCALARS = (builtins.int, builtins.float, builtins.bool)


# ---- the gates ----------------------------------------------------------------------------------
class Add(Op):
    """z = a + b;  the add gate distributes: dz/da = dz/db = 1"""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Op):
    """z = a - b;  dz/da = 1, dz/db = -1"""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):  # only the gradients an input needs (x - 1: none for the 1)
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Op):
    """z = a·b;  the mul gate swaps its inputs: dz/da = b, dz/db = a"""

    @staticmethod
    def forward(ctx, a, b):
        # each input's gradient needs the other one only (as torch: y * 2 keeps nothing of y,
        # so changing y in place later is fine)
        need_a, need_b = ctx.needs_input_grad
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Op):
    """z = a/b;  dz/da = 1/b, dz/db = -a/b²"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)  # a: for dz/db only
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = g / b
        return ga, (-ga * a / b if ctx.needs_input_grad[1] else None)


class Pow(Op):
    """z = a^b;  dz/da = b·a^(b-1), dz/db = z·ln a (0 where a = 0 and b ≥ 0)"""

    @staticmethod
    def forward(ctx, a, b):
        z = kernels_for(a).pow(a, b)
        ctx.save_for_backward(a, b, z if ctx.needs_input_grad[1] else None)  # z: for dz/db
        return z

    @staticmethod
    def backward(ctx, g):
        a, b, z = ctx.saved_tensors
        ga = gb = None
        a_raw, b_raw = either.data(a), either.data(b)
        need_a, need_b = ctx.needs_input_grad
        if need_a:
            if isinstance(b, _SCALARS):
                ga = g * b * kernels_for(g).pow(a, b - 1) if b != 0 else either.zeros_like(g)
            else:  # 0 where b = 0, as torch (at a = 0 the formula would give 0·∞ = nan)
                stuck = (a_raw == 0) & (b_raw == 0)
                ga = g * b * (either.where(stuck, 1.0, a) if stuck.any() else a) ** (b - 1)
        if need_b:
            zero = (a_raw == 0) & (b_raw >= 0)
            safe_a = either.where(zero, 1.0, a)
            gb = g * either.where(zero, 0.0, z * either.log(safe_a))
        return ga, gb


class Maximum(Op):
    """z = max(a, b);  the max gate routes the gradient to the larger input (halved at ties)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _route(g, a, b, ctx.needs_input_grad)


class Minimum(Op):
    """z = min(a, b);  routes the gradient to the smaller input (halved at ties)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _route(g, b, a, ctx.needs_input_grad)  # (dz/da, dz/db), as for maximum


def _route(g, winner, loser, needs):
    """(the gradient of the first operand, of the second), each only if ``needs`` it."""
    w, lo = either.data(winner), either.data(loser)
    # as torch: halves at ties, and a NaN (no order either way) passes the gradient to both
    dt = either.dtype_of(g)
    tie = w == lo
    share_w = np.where(tie, 0.5, np.where(w < lo, 0.0, 1.0)).astype(dt) if needs[0] else None
    share_lo = np.where(tie, 0.5, np.where(w > lo, 0.0, 1.0)).astype(dt) if needs[1] else None
    return (g * share_w if needs[0] else None), (g * share_lo if needs[1] else None)


class FloorDivide(Op):
    """z = ⌊a/b⌋;  piecewise constant: zero gradient"""

    @staticmethod
    def forward(ctx, a, b):
        return np.floor_divide(a, b)

    @staticmethod
    def backward(ctx, g):
        need_a, need_b = ctx.needs_input_grad
        return (g * 0 if need_a else None), (g * 0 if need_b else None)


class Remainder(Op):
    """z = a - ⌊a/b⌋·b;  dz/da = 1, dz/db = -⌊a/b⌋"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.remainder(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a = a._data if isinstance(a, Tensor) else a
        b = b._data if isinstance(b, Tensor) else b
        return g, (-g * np.floor_divide(a, b) if ctx.needs_input_grad[1] else None)


class Atan2(Op):
    """z = atan2(a, b);  dz/da = b/(a²+b²), dz/db = -a/(a²+b²) (0 at a = b = 0)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.arctan2(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        r = a * a + b * b
        r = r + (r == 0)  # atan2(0, 0): gradients 0 (torch's), not 0/0
        return (g * b / r if need_a else None), (-g * a / r if need_b else None)


class Where(Op):
    """z = cond ? a : b;  routes the gradient by the (constant) condition"""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.cond = cond
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        _, need_a, need_b = ctx.needs_input_grad
        zero = either.zeros_like(g)  # exact zeros, even where g is NaN (as torch)
        return (None, either.where(ctx.cond, g, zero) if need_a else None,
                either.where(ctx.cond, zero, g) if need_b else None)


# ---- promotion and the common entry point -------------------------------------------------------
def _as_operand(x, op_name: str):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()  # NumPy scalars act as Python numbers, as in torch (no float64 upcast)
    if isinstance(x, _SCALARS):
        return x
    if isinstance(x, (np.ndarray, np.generic)):
        return wrap(np.asarray(x))
    if devices.is_array(x):  # a CuPy array (constants in backward rules)
        return wrap(x)
    if isinstance(x, (list, tuple)):
        return _creation.tensor(x)
    raise TypeError(f"{op_name}(): unsupported operand type {type(x).__name__}")


def binary(op, a, b, name: str):
    """Apply binary gate ``op`` after PyTorch's type promotion; ``a`` or ``b`` is a Tensor."""
    # first the common cases, which need no promotion: two float tensors of one dtype on one
    # device, or a float tensor and a Python number (``_apply(op, args, None)`` is
    # ``op.apply(*args)``, called directly: these run on every arithmetic operator)
    ta, tb = type(a), type(b)
    if ta is Tensor and (tb is Tensor or tb is float or tb is int):
        x = a
        da = x._data
        if tb is not Tensor:
            if da.dtype.kind == "f":
                return _apply(op, (a, b), None)
        else:
            y = b
            db = y._data
            if da.dtype is db.dtype and da.dtype.kind == "f" and (type(da) is type(db) or (
                    type(da) is devices.gpu_ndarray) == (type(db) is devices.gpu_ndarray)):
                try:
                    return _apply(op, (a, b), None)
                except ValueError as e:
                    raise _shape_error(name, a, b, e) from None
    elif tb is Tensor and (ta is float or ta is int):
        y = b
        if y._data.dtype.kind == "f":
            return _apply(op, (a, b), None)
    a = _as_operand(a, name)
    b = _as_operand(b, name)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        da, db = a._data, b._data
        if da.dtype is not db.dtype:
            target = _dt.result_type(da, db)
            a, b = _cast(a, target), _cast(b, target)
    else:
        t, s = (a, b) if isinstance(a, Tensor) else (b, a)
        kind = t._data.dtype.kind
        if kind not in _dt.FLOAT_KINDS and (kind == "b" or isinstance(s, builtins.float)):
            target = _dt.result_type(t._data, s)
            if target != t._data.dtype:
                if t is a:
                    a = _cast(a, target)
                else:
                    b = _cast(b, target)
    _check_devices(a, b, name)
    try:
        return op.apply(a, b)
    except ValueError as e:
        raise _shape_error(name, a, b, e) from None


def _cast(t, np_dtype):
    if isinstance(t, Tensor):
        if t._data.dtype == np_dtype:
            return t
        return cast(t, np_dtype)
    return t


def _check_devices(a, b, name: str) -> None:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if type(a._data) is not type(b._data) and not (  # the CPU pairs need no more checking
            devices.is_cpu_array(a._data) and devices.is_cpu_array(b._data)
        ):
            devices.check_same_device((a._data, b._data), name)


def _shape(x):
    return tuple(x._data.shape) if isinstance(x, Tensor) else ()


def _shape_error(name: str, a, b, err: Exception) -> RuntimeError:
    sa, sb = _shape(a), _shape(b)
    n = max(len(sa), len(sb))
    pa, pb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    for i in range(n - 1, -1, -1):
        if pa[i] != pb[i] and pa[i] != 1 and pb[i] != 1:
            return RuntimeError(
                f"{name}: The size of tensor a ({pa[i]}) must match the size of tensor b "
                f"({pb[i]}) at non-singleton dimension {i} (shapes {list(sa)} and {list(sb)})"
            )
    return RuntimeError(f"{name}: {err} (shapes {list(sa)} and {list(sb)})")


def _scalar_or_tensor(x):
    return x if isinstance(x, (Tensor,) + _SCALARS) else _as_operand(x, "op")


# ---- public functions ---------------------------------------------------------------------------
def add(input, other, *, alpha=1) -> Tensor:
    """input + alpha·other."""
    if alpha != 1:
        other = other * alpha
    if not isinstance(input, Tensor):
        return binary(Add, other, input, "add")
    return binary(Add, input, other, "add")


def sub(input, other, *, alpha=1) -> Tensor:
    """input - alpha·other."""
    if alpha != 1:
        other = other * alpha
    if _is_bool(input) or _is_bool(other):
        raise RuntimeError(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
            "trying to invert a mask, use the `~` or `logical_not()` operator instead."
        )
    return binary(Sub, input, other, "sub")


def _is_bool(x) -> bool:
    return isinstance(x, builtins.bool) or (isinstance(x, Tensor) and x._data.dtype.kind == "b")


def _check_int_division(input, other, name: str) -> None:
    """PyTorch refuses bool//bool and integer division by zero (NumPy would warn and go on)."""
    if _is_bool(input) and _is_bool(other):
        raise NotImplementedError(f'"{name}" not implemented for \'Bool\'')
    if (_kind(input) not in FLOAT_KINDS and _kind(other) not in FLOAT_KINDS
            and np.any(_raw(other) == 0)):
        raise RuntimeError(f"{name}: ZeroDivisionError (integer division by zero)")


subtract = sub


def mul(input, other) -> Tensor:
    """input · other."""
    return binary(Mul, input, other, "mul")


multiply = mul


def div(input, other, *, rounding_mode=None) -> Tensor:
    """input / other (true division; ints become the default float dtype)."""
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        return trunc(div(input, other))
    a = _as_operand(input, "div")
    b = _as_operand(other, "div")
    if _kind(a) not in FLOAT_KINDS and _kind(b) not in FLOAT_KINDS:
        f = _dt.get_default_dtype().np
        a, b = _to_float(a, f), _to_float(b, f)
    return binary(Div, a, b, "div")


divide = true_divide = div


def _kind(x) -> str:
    if isinstance(x, Tensor):
        return x._data.dtype.kind
    return "f" if isinstance(x, builtins.float) else "i"


def _to_float(x, f):
    if isinstance(x, Tensor):
        return wrap(x._data.astype(f))
    return builtins.float(x)


def floor_divide(input, other) -> Tensor:
    """⌊input / other⌋."""
    _check_int_division(input, other, "floor_divide")
    return binary(FloorDivide, input, other, "floor_divide")


def remainder(input, other) -> Tensor:
    """input mod other, with the sign of other (Python's %)."""
    _check_int_division(input, other, "remainder")
    return binary(Remainder, input, other, "remainder")


def fmod(input, other) -> Tensor:
    """Remainder with the sign of input (C's fmod)."""
    q = div(input, other, rounding_mode="trunc")
    return input - q * other


def pow(input, exponent) -> Tensor:
    """input ** exponent."""
    if _is_bool(input) and isinstance(exponent, Tensor) and exponent._data.dtype.kind == "b":
        raise NotImplementedError("\"pow\" not implemented for 'Bool'")
    if _is_bool(input) and isinstance(exponent, builtins.bool):  # stays bool (NumPy: int8)
        return input.clone() if exponent else wrap(np.ones_like(input._data))
    if not isinstance(input, Tensor):
        return binary(Pow, input, exponent, "pow")
    if isinstance(exponent, _SCALARS) and input._data.dtype.kind in "iu":
        if isinstance(exponent, builtins.int) and exponent < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
    return binary(Pow, input, exponent, "pow")


def float_power(input, exponent) -> Tensor:
    a = input.double() if isinstance(input, Tensor) else builtins.float(input)
    b = exponent.double() if isinstance(exponent, Tensor) else exponent
    return pow(a, b)


def maximum(input, other) -> Tensor:
    """Elementwise max(input, other)."""
    return binary(Maximum, input, other, "maximum")


def minimum(input, other) -> Tensor:
    """Elementwise min(input, other)."""
    return binary(Minimum, input, other, "minimum")


def _floats(input, other, name: str) -> tuple:
    """Both operands, ints and bools made the default float dtype (as torch's float ops)."""
    a = _as_operand(input, name)
    b = _as_operand(other, name)
    if _kind(a) not in FLOAT_KINDS and _kind(b) not in FLOAT_KINDS:
        f = _dt.get_default_dtype().np
        a, b = _to_float(a, f), _to_float(b, f)
    return a, b


def atan2(input, other) -> Tensor:
    return binary(Atan2, *_floats(input, other, "atan2"), "atan2")


def xlogy(input, other) -> Tensor:
    """x·ln y, 0 where x = 0."""
    return binary(Xlogy, *_floats(input, other, "xlogy"), "xlogy")


class Xlogy(Op):
    """z = x·ln u with u = y (0 at x = 0);  dz/dx = ln u (0 where x = 0 and u ≤ 0, as torch),
    dz/dy = x/u.  Xlog1py is this gate with u = 1 + y (its two hooks)."""

    @staticmethod
    def inner(y):
        """u, whose log the gate takes."""
        return y

    @staticmethod
    def log_inner(y):
        """ln u, computed from y."""
        return either.log(y)

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        with np.errstate(all="ignore"):
            z = x * ctx.log_inner(y)  # a number y's log is a float64 scalar: the operands' dtype
        dtype = np.result_type(getattr(x, "dtype", x), getattr(y, "dtype", y))
        return np.where((x == 0) & ~np.isnan(y), 0, z).astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        gx = gy = None
        if ctx.needs_input_grad[0]:
            no_log = (either.data(x) == 0) & (either.data(ctx.inner(y)) <= 0)
            gx = g * either.where(no_log, 0.0, ctx.log_inner(either.where(no_log, 1.0, y)))
        if ctx.needs_input_grad[1]:
            gy = g * x / ctx.inner(y)
        return gx, gy


def xlog1py(input, other) -> Tensor:
    """x·ln(1 + y), 0 where x = 0 (torch.special.xlog1py)."""
    return binary(Xlog1py, *_floats(input, other, "xlog1py"), "xlog1py")


class Xlog1py(Xlogy):
    """z = x·ln(1 + y) (0 at x = 0): Xlogy with u = 1 + y, ln u as log1p (0 where x = 0 and
    y ≤ -1)."""

    @staticmethod
    def inner(y):
        return 1 + y

    @staticmethod
    def log_inner(y):
        return either.log1p(y)


def _raw(x):
    return x._data if isinstance(x, Tensor) else x


def where(condition, input=None, other=None) -> Tensor:
    """``input`` where ``condition`` holds, else ``other``."""
    cond = _raw(condition)
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = _creation.as_tensor(input)
    a = _as_operand(input, "where")
    b = _as_operand(other, "where")
    target = _dt.result_type(_raw(a), _raw(b))  # PyTorch's promotion, scalars included
    a = _cast(a, target) if isinstance(a, Tensor) else target.type(a)
    b = _cast(b, target) if isinstance(b, Tensor) else target.type(b)
    like = a._data if isinstance(a, Tensor) else b._data
    if not devices.is_array(cond):
        cond = devices.asarray_on(cond, like)
    if cond.dtype != bool:
        if cond.dtype != np.uint8:
            raise RuntimeError("where expected condition to be a boolean tensor, but got a "
                               f"tensor with dtype {_dt.scalar_type_name(cond.dtype)}")
        warnings.warn("where received a uint8 condition tensor. This behavior is deprecated and "
                      "will be removed in a future version of PyTorch. Use a boolean condition "
                      "instead.", UserWarning, stacklevel=2)
        cond = cond.astype(bool)
    try:
        return Where.apply(cond, a, b)
    except ValueError as e:
        raise RuntimeError(
            f"where: condition {list(cond.shape)}, input {list(_shape(a))} and other "
            f"{list(_shape(b))} are not broadcastable ({e})"
        ) from None


def masked_fill(input: Tensor, mask, value) -> Tensor:
    """``value`` where ``mask`` is True, else ``input``."""
    m = _raw(mask)
    if not devices.is_array(m):
        m = devices.asarray_on(m, input._data)
    if m.dtype != bool:
        raise RuntimeError(
            f"masked_fill only supports boolean masks, but got mask with dtype {m.dtype}"
        )
    try:
        np.broadcast_shapes(m.shape, input._data.shape)
    except ValueError:
        raise RuntimeError(
            f"masked_fill: mask of shape {list(m.shape)} is not broadcastable to the input "
            f"of shape {list(input._data.shape)}"
        ) from None
    if isinstance(value, Tensor):
        if value._data.ndim != 0:
            raise RuntimeError(
                "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{value._data.ndim} dimension(s)."
            )
        return where(mask, value.to(input.dtype), input)
    return where(mask, input._data.dtype.type(value), input)


# ---- comparisons and logic (no gradient) --------------------------------------------------------
def _compare(np_fn, name: str):
    def fn(input, other) -> Tensor:
        a, b = _raw(input), _raw(other)
        if isinstance(input, Tensor) and isinstance(other, Tensor):
            _check_devices(input, other, name)
        try:
            out = np_fn(a, b)
            return wrap(devices.as_array(out))
        except ValueError as e:
            a_op, b_op = _as_operand(input, name), _as_operand(other, name)
            raise _shape_error(name, a_op, b_op, e) from None

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} (a bool tensor; no gradient)."
    return fn


eq = _compare(np.equal, "eq")
ne = _compare(np.not_equal, "ne")
lt = _compare(np.less, "lt")
le = _compare(np.less_equal, "le")
gt = _compare(np.greater, "gt")
ge = _compare(np.greater_equal, "ge")
logical_and = _compare(np.logical_and, "logical_and")
logical_or = _compare(np.logical_or, "logical_or")
logical_xor = _compare(np.logical_xor, "logical_xor")


def _bitwise(np_fn, name: str):
    """``&``, ``|``, ``^``: bool and integer tensors only (floats refused, as in PyTorch)."""
    compare = _compare(np_fn, name)

    def fn(input, other) -> Tensor:
        if _kind(input) in FLOAT_KINDS or _kind(other) in FLOAT_KINDS:
            raise NotImplementedError(f'"{name}_cpu" not implemented for \'Float\'')
        return compare(input, other)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} of bool or integer tensors."
    return fn


bitwise_and = _bitwise(np.bitwise_and, "bitwise_and")
bitwise_or = _bitwise(np.bitwise_or, "bitwise_or")
bitwise_xor = _bitwise(np.bitwise_xor, "bitwise_xor")


def bitwise_not(input: Tensor) -> Tensor:
    d = input._data
    return wrap(np.logical_not(d) if d.dtype.kind == "b" else np.invert(d))


def equal(input: Tensor, other: Tensor) -> bool:
    """True if both have the same shape and elements."""
    return input.shape == other.shape and builtins.bool(np.all(_raw(input) == _raw(other)))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> Tensor:
    return wrap(np.asarray(np.isclose(_raw(input), _raw(other), rtol, atol, equal_nan)))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """|input - other| ≤ atol + rtol·|other| everywhere."""
    if isinstance(input, Tensor) and isinstance(other, Tensor) and (
        input._data.dtype != other._data.dtype
    ):
        raise RuntimeError(
            f"allclose(): {input.dtype} did not match {other.dtype} (compare tensors of one dtype)"
        )
    try:
        return builtins.bool(np.allclose(_raw(input), _raw(other), rtol, atol, equal_nan))
    except ValueError as e:
        raise _shape_error("allclose", input, other, e) from None




# ---- more of torch's binary functions, composed (their gradients follow) -------------------------
def _tensor_pair(input, other, name: str):
    a = input if isinstance(input, Tensor) else _creation.as_tensor(input)
    b = other if isinstance(other, Tensor) else _creation.as_tensor(other)
    return a, b


class Copysign(Op):
    """z = |x| with the sign of y;  dz/dx = sign(x)·sign(z) (0 at x = 0), dz/dy = 0"""

    @staticmethod
    def forward(ctx, x, y):
        z = np.copysign(x, y)
        ctx.save_for_backward(x, z)
        return z

    @staticmethod
    def backward(ctx, g):
        x, z = ctx.saved_tensors
        gx = g * either.sign(x) * either.sign(z) if ctx.needs_input_grad[0] else None
        gy = either.zeros_like(g) if ctx.needs_input_grad[1] else None
        return gx, gy


def _float_operands(input, other, name: str):
    """Both operands as tensors of their common float dtype (integers: NotImplementedError,
    as torch's float-only binary functions)."""
    a, b = _tensor_pair(input, other, name)
    target = _dt.result_type(_raw(a) if isinstance(input, Tensor) else input,
                             _raw(b) if isinstance(other, Tensor) else other)
    if target.kind not in FLOAT_KINDS:
        raise NotImplementedError(f"\"{name}_cpu\" not implemented for "
                                  f"'{_dt.from_numpy_dtype(target).name.title()}'")
    return _cast(a, target), _cast(b, target)


def copysign(input, other) -> Tensor:
    """|x| with the sign of y (-0.0 counts as negative)."""
    a, b = _tensor_pair(input, other, "copysign")
    target = _dt.result_type(_raw(a), _raw(b))
    if target.kind not in FLOAT_KINDS:
        target = _dt.get_default_dtype().np
    return Copysign.apply(_cast(a, target), _cast(b, target))


def hypot(input, other) -> Tensor:
    """√(x² + y²)."""
    from chainrule.ops.elementwise import sqrt

    a, b = _float_operands(input, other, "hypot")
    return sqrt(a * a + b * b)


def logaddexp(input, other) -> Tensor:
    """ln(eˣ + eʸ), without overflow."""
    from chainrule.ops.elementwise import abs as t_abs
    from chainrule.ops.elementwise import exp, log1p

    input, other = _float_operands(input, other, "logaddexp")
    m = maximum(input, other)
    both_inf = np.isinf(_raw(input)) & (_raw(input) == _raw(other))
    out = m + log1p(exp(-t_abs(where(both_inf, 0.0, input - other))))
    return out


def logaddexp2(input, other) -> Tensor:
    """log₂(2ˣ + 2ʸ)."""
    ln2 = 0.6931471805599453
    a, b = _float_operands(input, other, "logaddexp2")
    return logaddexp(a * ln2, b * ln2) / ln2


class Fmax(Op):
    """z = max(x, y) ignoring NaN;  the gradient goes to x where x ≥ y or y is NaN, else to y
    (ties: all to x, as torch)"""

    pick = staticmethod(np.fmax)

    @classmethod
    def forward(cls, ctx, x, y):
        ctx.to_x = (x >= y) | np.isnan(y) if cls is Fmax else (x <= y) | np.isnan(y)
        return cls.pick(x, y)

    @staticmethod
    def backward(ctx, g):
        return either.where(ctx.to_x, g, 0.0), either.where(ctx.to_x, 0.0, g)


class Fmin(Fmax):
    """z = min(x, y) ignoring NaN;  the gradient goes to x where x ≤ y or y is NaN, else to y"""

    pick = staticmethod(np.fmin)


def fmax(input, other) -> Tensor:
    """The maximum, ignoring NaN (NaN only where both are)."""
    a, b = _promoted(input, other)
    return Fmax.apply(a, b)


def fmin(input, other) -> Tensor:
    """The minimum, ignoring NaN (NaN only where both are)."""
    a, b = _promoted(input, other)
    return Fmin.apply(a, b)


def _promoted(input, other):
    a, b = _tensor_pair(input, other, "fmax")
    target = _dt.result_type(_raw(a), _raw(b))
    return _cast(a, target), _cast(b, target)


def _integer_op(fn, name):
    def op(input, other) -> Tensor:
        a, b = _raw(input), _raw(other)
        for v in (a, b):
            if devices.is_array(v) and v.dtype.kind not in "iub":
                raise RuntimeError(f"\"{name}_cpu\" not implemented for "
                                   f"'{_dt.from_numpy_dtype(v.dtype).name.title()}'")
        return wrap(np.asarray(fn(a, b)))

    op.__name__ = name
    return op


gcd = _integer_op(np.gcd, "gcd")
lcm = _integer_op(np.lcm, "lcm")


def ldexp(input, other) -> Tensor:
    """x·2^e."""
    a, e = _tensor_pair(input, other, "ldexp")
    if a._data.dtype.kind not in FLOAT_KINDS:
        a = a.to(_dt.get_default_dtype())
    return a * pow(2.0, e.to(a.dtype))


def nextafter(input, other) -> Tensor:
    """The next float after x towards y (no gradient)."""
    return wrap(np.nextafter(_raw(input), _raw(other)))


def heaviside(input, values) -> Tensor:
    """0 for x < 0, ``values`` at 0, 1 for x > 0 (no gradient, as torch)."""
    a, v = _raw(input), _raw(values)
    if devices.is_array(v) and devices.is_array(a) and v.dtype != a.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes")
    return wrap(np.heaviside(a, v).astype(a.dtype))


def rsub(input, other, *, alpha=1) -> Tensor:
    """other - alpha·input."""
    return sub(other, input, alpha=alpha)


def lerp(input, end, weight) -> Tensor:
    """input + weight·(end - input)."""
    return input + weight * (end - input)


def addcmul(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value·tensor1·tensor2."""
    prod = tensor1 * tensor2
    return input + (prod if value == 1 else prod * value)


def addcdiv(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value·tensor1/tensor2."""
    if _raw(tensor1).dtype.kind in "iub" and _raw(tensor2).dtype.kind in "iub":
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a "
                           "future release addcdiv will perform a true division of tensor1 and "
                           "tensor2. The historic addcdiv behavior can be implemented as (input "
                           "+ value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
                           "integer inputs and as (input + value * tensor1 / tensor2) for float "
                           "inputs. The future addcdiv behavior is just the latter "
                           "implementation: (input + value * tensor1 / tensor2), for all dtypes.")
    q = tensor1 / tensor2
    return input + (q if value == 1 else q * value)


greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
arctan2 = atan2

__all__ += [
    "copysign", "hypot", "logaddexp", "logaddexp2", "fmax", "fmin", "gcd", "lcm", "ldexp",
    "nextafter", "heaviside", "rsub", "lerp", "addcmul", "addcdiv", "greater", "greater_equal",
    "less", "less_equal", "not_equal", "arctan2",
]


def bitwise_left_shift(input, other) -> Tensor:
    """x << n (integers)."""
    return wrap(np.asarray(np.left_shift(_raw(input), _raw(other))))


def bitwise_right_shift(input, other) -> Tensor:
    """x >> n (integers, arithmetic for signed)."""
    return wrap(np.asarray(np.right_shift(_raw(input), _raw(other))))


__all__ += ["bitwise_left_shift", "bitwise_right_shift"]
