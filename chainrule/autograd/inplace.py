"""In-place operations (``x.add_(y)``, ``x[i] = v``, ``x += y``), recorded as PyTorch records them.

An in-place op writes its result into the tensor's own memory, which its views share, and bumps
the version counter that tensor and views share. When the graph is involved, the op is computed
out of place on the tensor's current value (with its history) and the tensor is *rebased*: it
becomes the output of that op's gate. On a view, the base is rebased instead, through a
``CopySlices`` gate that writes the op's result into the view's region of the base; the view's
own history is rebuilt from the base's on next use. Gates that saved the old value see the
version change and refuse to backpropagate (``check_saved_versions``).
"""

from __future__ import annotations

import sys

from chainrule import devices, random
from chainrule._state import state
from chainrule.autograd.function import Op
from chainrule.devices import np
from chainrule.ops import either
from chainrule.ops.elementwise import copy_value
from chainrule.ops.index import getitem, index_assign, is_basic, normalize_index
from chainrule.ops.shape import normalize_dim
from chainrule.tensor import TensorBase, late as _late, storage_of, wrap

__all__ = ["apply_inplace", "overwrite", "setitem", "METHODS", "CopySlices", "replay_view"]

_LEAF = "a leaf Variable that requires grad is being used in an in-place operation."
_VIEW_OF_LEAF = ("a view of a leaf Variable that requires grad is being used in an in-place "
                 "operation.")
_OVERLAP = ("unsupported operation: more than one element of the written-to tensor refers to a "
            "single memory location. Please clone() the tensor before performing the operation.")
_MULTI_VIEW_TAIL = (
    "This view is the output of a function that returns multiple views. Such functions do not "
    "allow the output views to be modified inplace. You should replace the inplace operation by "
    "an out-of-place one.")
_NO_GRAD_VIEW = (
    "A view was created in no_grad mode and is being modified inplace with grad mode enabled. "
    "Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify "
    "your code by moving both the view and the inplace either both inside the no_grad block (if "
    "you don't want the inplace to be tracked) or both outside (if you want the inplace to be "
    "tracked)."
)


def _requires_grad(x) -> bool:
    return isinstance(x, TensorBase) and x._requires_grad


def apply_inplace(target, op, *args, **kwargs):
    """``target`` := ``op(target, *args, **kwargs)``, in target's memory; returns target."""
    base = target._base
    grad = state.grad_enabled
    if grad and base is not None and base._grad_fn is not target._view_src:
        target.edge()  # the base changed in place since: bring this view's history up to date
    graph = grad and (
        target._requires_grad or any(_requires_grad(a) for a in args)
        or any(_requires_grad(v) for v in kwargs.values()))
    _check_writable(target, graph, grad)
    for a in args:
        if isinstance(a, TensorBase):
            _check_overlap(target._data, a._data)
    if not graph:
        state.grad_enabled = False
        try:
            result = op(target.detach(), *args, **kwargs)
        finally:
            state.grad_enabled = grad
        data = result._data if isinstance(result, TensorBase) else result
        _check_result(target, data)
        _write(target, data)
        target._bump_version()
        return target
    if base is None:
        if _KEEPS_OLD.get(op) is False and _sole_holder(target._data, 3):
            return _apply_on_own_memory(target, op, args, kwargs)
        cur = _current(target)
        new = _result_of(target, cur, op(cur, *args, **kwargs), args)
        if op not in _KEEPS_OLD and type(cur._data) is np.ndarray:
            _KEEPS_OLD[op] = (not _sole_holder(cur._data, 2 + _wrote_into(new._data, cur._data))
                              or sys.getrefcount(cur) > 2)
        _write(target, new._data)
        target._bump_version()
        _adopt(target, new)
        return target
    _check_layout(target, replay_view(target._view, base._data))
    cur = _current(base)
    region = replay_view(target._view, cur)
    new = _result_of(target, region, op(region, *args, **kwargs), args)
    updated = CopySlices.apply(cur, new, target._view, base._data)
    base._bump_version()
    _rebase(base, updated._grad_fn, updated._nr)
    target._refresh_view()
    _watch_output(new, target)
    return target


# In place with the graph: the op runs on the tensor's present value, which must stay as it is
# for anything that holds it (the gate that made it may have saved it, another gate may have
# saved it as an input, a view or another tensor may share it), so _current copies it first:
# three passes (copy, compute, write back). Where nothing but the tensor holds its NumPy array
# (its reference count says so: no saved array, view, storage or other tensor) and the op's gate
# keeps no reference to its input, the op reads the tensor's memory directly: two passes.
# _KEEPS_OLD: op -> whether its gate kept its input (learned on the op's first call in the graph,
# on a copy; an op that keeps it always takes the copy).
_KEEPS_OLD: dict = {}


def _sole_holder(data, expect: int) -> bool:
    """True when ``data`` is a NumPy array of its own memory that no more than ``expect``
    references hold: the caller's own ones plus getrefcount's argument (in apply_inplace, the
    tensor's ``_data`` and that argument: 2; in _apply_on_own_memory, also its local: 3), so
    nothing else reads its values."""
    return (type(data) is np.ndarray and data.base is None
            and sys.getrefcount(data) <= expect + 1)  # (+1: this call's own argument)


def _apply_on_own_memory(target, op, args, kwargs):
    """``apply_inplace`` where nothing else holds target's array: the op reads it without a
    copy, its result is written back (torch's in-place: same memory, version bumped)."""
    data = target._data
    fn = target._grad_fn
    cur = wrap(data, fn, target._nr) if fn is not None else wrap(data)
    new = _result_of(target, cur, op(cur, *args, **kwargs), args)
    del cur
    into = _wrote_into(new._data, data)
    if not _sole_holder(data, 3 + into):  # the gate kept its input after all: it keeps this memory
        _KEEPS_OLD[op] = True
        target._data = np.array(np.broadcast_to(new._data, data.shape), dtype=data.dtype)
    elif not into:
        _write(target, new._data)
    del data
    target._bump_version()
    _adopt(target, new)
    return target


def _wrote_into(result, data) -> bool:
    """True when the op wrote its result over ``data`` itself (``result`` a view of all of
    it, as ``leaky_relu_``'s gate returns): the values are in place already, and that view is
    the one more reference ``data`` has."""
    return (type(result) is np.ndarray and result.base is data and result.shape == data.shape
            and result.strides == data.strides and result.dtype == data.dtype)


def _result_of(target, cur, new, args=()):
    """The op's result as the target's new value: its dtype, its shape; a result that carries
    no gradient (``eq_``) still takes the target's place in the graph, with a zero gradient."""
    if not isinstance(new, TensorBase):
        new = wrap(new)
    _check_result(target, new._data)
    new = _as_dtype_of(target, new)
    if new._grad_fn is None:
        new = _NoGradient.apply(new._data, cur, *args)
    return new


def _check_result(target, data) -> None:
    """torch's errors for a result that cannot be written into ``target``."""
    want = target._data
    have_dtype = getattr(data, "dtype", None)
    if have_dtype is not None and have_dtype != want.dtype and \
            _category(have_dtype) > _category(want.dtype):
        from chainrule.dtypes import from_numpy_dtype

        raise RuntimeError(f"result type {_name(from_numpy_dtype(have_dtype))} can't be cast to "
                           f"the desired output type {_name(from_numpy_dtype(want.dtype))}")
    shape = getattr(data, "shape", ())
    if shape != want.shape:
        try:
            joint = np.broadcast_shapes(shape, want.shape)
        except ValueError:
            joint = shape
        if joint != want.shape:
            raise RuntimeError(f"output with shape {list(want.shape)} doesn't match the "
                               f"broadcast shape {list(joint)}")


def overwrite(target, values):
    """``target`` := ``values`` (constants: zero_, fill_, random fills): the old value's
    gradient is zero, so a tensor in the graph is rebased onto a gate without inputs."""
    if not state.grad_enabled or not (target._requires_grad or target._base is not None):
        _check_writable(target, False, state.grad_enabled)
        _write(target, values)
        target._bump_version()
        return target
    return apply_inplace(target, _constant_like, values)


class _NoGradient(Op):
    """y = values, a result that carries no gradient (``eq_``), in the place of the tensor it
    overwrote;  dy/dx = 0 for x, the target and the op's tensor arguments (torch's rule)"""

    @staticmethod
    def forward(ctx, values, *inputs):
        return values

    @staticmethod
    def backward(ctx, g):
        zero = either.zeros_like(g)
        return (None,) + tuple(zero if need else None for need in ctx.needs_input_grad[1:])


def _constant_like(t, values):
    """``values`` in place of ``t`` (broadcast to its shape): no gradient flows to ``t``."""
    return _Constant.apply(t, values)


class _Constant(Op):
    """y = c;  dy/dx = 0"""

    @staticmethod
    def forward(ctx, x, values):
        xp = devices.xp_of(x)
        return xp.broadcast_to(xp.asarray(values, dtype=x.dtype), x.shape).copy()

    @staticmethod
    def backward(ctx, g):
        return g * 0, None


def setitem(target, key, value) -> None:
    """``target[key] = value``: a copy into the view ``target[key]`` for basic keys, an
    ``index_put_`` for integer arrays and masks."""
    key = normalize_index(key, target._data)
    if target._data.ndim == 0 and (key == () or key is Ellipsis):
        copy_(target, value)  # the whole of a 0-d tensor
        return
    if is_basic(key):
        grad = state.grad_enabled
        if not (grad and (target._requires_grad or _requires_grad(value))) and (
                _write_region(target, key, value, grad)):
            return
        view = getitem(target, key)
        if view._base is not None:
            copy_(view, value)
            return
    apply_inplace(target, index_assign, key, value)


def _write_region(target, key, value, grad: bool) -> bool:
    """``target[key] = value`` with no graph to record (``copy_`` of the region's view without
    building the view): NumPy writes into the region, broadcasting and casting as ``copy_``.
    False, having written nothing, where ``copy_`` must decide (other devices, a mismatch)."""
    data = target._data
    src = value._data if isinstance(value, TensorBase) else value
    if not devices.is_array(data) or (devices.is_array(src) and type(src) is not type(data)):
        return False
    _check_writable(target, False, grad)
    try:
        region = data[key]
        if not devices.is_array(region):
            return False  # (an integer key on a 1-d tensor: NumPy gives a scalar, not a view)
        if devices.is_array(src):
            _check_overlap(region, src)
        region[...] = src
    except (ValueError, TypeError, IndexError):
        return False
    target._bump_version()
    return True


# ---- the pieces ---------------------------------------------------------------------------------
def _check_writable(target, graph: bool, grad: bool, writes: bool = True) -> None:
    """torch's refusals: in-place on a leaf that requires grad (or a view of one), on a view
    made in no_grad mode with grad mode on, on one of several views returned by one op (and,
    when the op ``writes`` the memory, on read-only memory)."""
    base = target._base
    if base is not None and grad:
        chain = target._view
        cls, nr = chain[-1][0], chain[-1][2]
        if any(not step[3] for step in chain) and (graph or base._requires_grad):
            raise RuntimeError(_NO_GRAD_VIEW)
        if graph and cls.multi_view:
            if not base._requires_grad:
                raise RuntimeError("A view was created in no_grad mode and is being modified "
                                   "inplace with grad mode enabled. " + _MULTI_VIEW_TAIL)
            raise RuntimeError(f"Output {nr} of {cls.__name__} is a view and is being modified "
                               "inplace. " + _MULTI_VIEW_TAIL)
        if graph and base._grad_fn is None and base._requires_grad:
            raise RuntimeError(_VIEW_OF_LEAF)
    if graph and target._grad_fn is None and target._requires_grad:
        raise RuntimeError(_LEAF)
    if not writes:
        return
    data = target._data
    if isinstance(data, np.ndarray) and not data.flags.writeable:
        if 0 in data.strides and data.size > 1:
            raise RuntimeError(_OVERLAP)
        raise RuntimeError("in-place operation on a read-only tensor (its memory is shared "
                           "with a read-only array)")


_PARTIAL_OVERLAP = (
    "unsupported operation: some elements of the input tensor and the written-to tensor refer "
    "to a single memory location. Please clone() the tensor before performing the operation.")


def _check_overlap(out, src) -> None:
    """torch's refusal: an input that partly overlaps the written-to tensor (both contiguous;
    the same memory exactly, ``x.add_(x)``, is fine)."""
    if not devices.is_array(out) or not devices.is_array(src) or not out.size or not src.size:
        return
    if not (out.flags.c_contiguous and src.flags.c_contiguous):
        return  # torch does not decide these either
    if type(out) is np.ndarray and type(src) is np.ndarray and not np.may_share_memory(out, src):
        return  # apart (NumPy's bounds check, without reading both addresses)
    a, b = devices.data_address(out), devices.data_address(src)
    if a < b + src.nbytes and b < a + out.nbytes and (a != b or out.nbytes != src.nbytes):
        raise RuntimeError(_PARTIAL_OVERLAP)


def _current(t):
    """``t``'s present value with its history, in memory of its own (the in-place write must
    not change what the recorded op saves)."""
    if t._grad_fn is None:
        out = wrap(t._data.copy())
        if t._requires_grad:  # a leaf: the gradient still reaches it through an identity
            return _Alias.apply(t)
        return out
    return wrap(t._data.copy(), t._grad_fn, t._nr)


class _Alias(Op):
    """y = copy of x;  dy/dx = 1"""

    @staticmethod
    def forward(ctx, x):
        return np.array(x, copy=True)

    @staticmethod
    def backward(ctx, g):
        return g


def _as_dtype_of(target, new):
    """In place keeps the target's dtype; the result must be castable to it (torch's rule)."""
    have, want = new._data.dtype, target._data.dtype
    if have == want:
        return new
    if _category(have) > _category(want):
        from chainrule.dtypes import from_numpy_dtype

        raise RuntimeError(f"result type {_name(from_numpy_dtype(have))} can't be cast to the "
                           f"desired output type {_name(from_numpy_dtype(want))}")
    return new.to(target.dtype)


def _category(np_dtype) -> int:
    return {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}[np_dtype.kind]


def _name(dtype) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16",
            "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool"}.get(dtype.name, dtype.name)


def _write(target, values) -> None:
    """Write ``values`` (broadcast, cast to target's dtype) into target's memory."""
    data = target._data
    if isinstance(data, np.generic):
        # a NumPy scalar (0-d op results hold one): immutable, and nothing views it
        target._data = devices.xp_of(data).asarray(values, dtype=data.dtype).copy()
        return
    try:
        if devices.is_array(values) and devices.device_of(values) != devices.device_of(data):
            values = devices.to_device(values, devices.device_of(data))
        data[...] = values
    except ValueError as e:
        raise RuntimeError(f"in-place operation on a tensor of shape {list(data.shape)}: "
                           f"{e}") from None


def _adopt(target, new) -> None:
    """``target`` now holds ``new``'s value: it becomes the output of ``new``'s gate. A gate
    that saved that output (``exp_``) watches target's version from now on, as torch's does."""
    _rebase(target, new._grad_fn, new._nr)
    _watch_output(new, target)


def _rebase(t, fn, nr: int) -> None:
    """``t`` becomes output ``nr`` of ``fn``; a retained gradient follows it (torch keeps
    retain_grad on the tensor, so ``.grad`` is the gradient of its new value)."""
    retained = t.retains_grad
    if retained:
        del t._grad_fn._retained[t._nr]
    t._rebase(fn, nr)
    if retained:
        t.retain_grad()


def _watch_output(new, target) -> None:
    """If ``new``'s gate saved ``new``, it watches ``target``'s version (target holds it)."""
    fn = new._grad_fn
    if fn is None or not fn.on_arrays or not fn._saved_from:
        return
    for src in fn._saved_from:
        if src is None or (type(src) is int and src >= 0):
            continue
        nr = 0 if src == -1 else src[1]
        if nr == new._nr:
            holder = target._version_holder()
            entry = (holder, holder._vc, nr)
            fn._versions = entry if fn._versions is None else fn._versions + entry


# ---- views of a base, replayed ---------------------------------------------------------------
def replay_view(chain, x):
    """Take the view ``chain`` (the steps a view was made by, from its base) of ``x``: a Tensor
    (recorded as ops) or an array."""
    for step in chain:
        cls, node, nr = step[0], step[1], step[2]
        x = cls.replay(node, x)
        if type(x) is tuple:
            x = x[nr]
    return x


def refresh_view(view) -> None:
    """The base of ``view`` was changed in place (it has a new history): the view's history is
    its steps replayed on the base's new one (torch regenerates it the same way). A view made
    in no_grad mode stays out of the graph; one of several views of one op may not be rebuilt
    (torch's error)."""
    base = view._base
    chain = view._view
    if not base._requires_grad or any(not step[3] for step in chain):
        view._view_src = base._grad_fn
        return
    for step in chain:
        if step[0].multi_view:
            raise RuntimeError(f"Output {step[2]} of {step[0].__name__} is a view and its base or "
                               "another view of its base has been modified inplace. "
                               + _MULTI_VIEW_TAIL)
    prev = state.grad_enabled
    state.grad_enabled = True
    try:
        t = replay_view(chain, base)
    finally:
        state.grad_enabled = prev
    _check_layout(view, t._data)
    view._view_src = base._grad_fn
    view._rebase(t._grad_fn, t._nr)


def _check_layout(view, replayed) -> None:
    """The view's steps, replayed on its base, must land on the view's own memory: not so if the
    base itself changed shape in place (``t_``, ``transpose_``, ...) after the view was made."""
    mine = view._data
    if getattr(mine, "size", 0) == 0:
        return
    if (devices.data_address(replayed) != devices.data_address(mine)
            or replayed.shape != mine.shape
            or getattr(replayed, "strides", None) != getattr(mine, "strides", None)):
        raise RuntimeError(
            "a view is being used after its base changed shape in place (t_, transpose_, "
            "squeeze_, unsqueeze_, ...) with grad mode enabled: its history cannot be rebuilt. "
            "Take the view again after the change, or change the shape out of place.")


class CopySlices(Op):
    """base' = base with its view region replaced by v;  d/dbase = g outside the region,
    d/dv = g's region"""

    def name(self) -> str:
        return "CopySlices"  # torch's name for it

    @staticmethod
    def forward(ctx, base, v, chain, memory):
        # ``memory``, the base tensor's own array, holds ``base`` (a copy of it, which carries
        # its history): the result is written there, so it *is* the base
        replay_view(chain, memory)[...] = v
        ctx.chain = chain
        return memory

    @staticmethod
    def backward(ctx, g):
        outside = either.ones_like_data(g) != 0
        replay_view(ctx.chain, outside)[...] = False
        # (where, not g·mask: an infinite or NaN gradient on the overwritten part gives 0)
        return either.where(outside, g, 0.0), replay_view(ctx.chain, g), None, None


# ---- the methods ---------------------------------------------------------------------------------
def _method(op_name: str, name: str):
    def method(self, *args, **kwargs):
        op = getattr(_late.ops, op_name, None) or getattr(type(self), op_name)
        return apply_inplace(self, op, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place version of :meth:`Tensor.{op_name}` (``self`` is overwritten)."
    return method


# torch's in-place variants of chainrule's ops: name_ is name computed in place
_OF_OPS = """
abs absolute acos add asin atan atan2 bitwise_and bitwise_not
bitwise_or bitwise_xor ceil clamp clip cos cosh cumsum cumprod div divide eq erf exp exp2 expm1
float_power floor floor_divide fmod frac ge gt le log log10 log1p log2 logical_and logical_not
logical_or logical_xor logit lt masked_fill mul multiply ne neg negative pow reciprocal relu
remainder round rsqrt sigmoid sign sin sinh sqrt square sub subtract tan tanh tril triu
true_divide trunc xlogy scatter scatter_add
""".split()
# ... and those whose op chainrule may have (an in-place method exists where the op does)
_IF_OPS = """
acosh arccosh asinh arcsinh atanh arctanh erfc erfinv lgamma digamma i0 sinc deg2rad rad2deg
nan_to_num hypot copysign heaviside nextafter ldexp gcd lcm igamma igammac mvlgamma sgn fix
bitwise_left_shift bitwise_right_shift renorm scatter_reduce index_reduce addmm addmv addr
baddbmm addbmm
""".split()
# torch's other names for the same in-place ops
_ALIASES = {"greater_": "gt_", "greater_equal_": "ge_", "less_": "lt_", "less_equal_": "le_",
            "not_equal_": "ne_", "arccos_": "acos_", "arcsin_": "asin_", "arctan_": "atan_",
            "arctan2_": "atan2_"}


def copy_(self, src, non_blocking: bool = False):
    """self := src (broadcast, cast and moved to self's dtype and device)."""
    return apply_inplace(self, _copy_of, src)


def _copy_of(t, src):
    return copy_value(t, src)


def zero_(self):
    return overwrite(self, 0)


def fill_(self, value):
    if isinstance(value, TensorBase):
        if value._data.ndim:
            raise RuntimeError("fill_ only supports 0-dimension value tensor but got tensor "
                               f"with {value._data.ndim} dimensions.")
        if _requires_grad(value) and state.grad_enabled:
            return apply_inplace(self, _copy_of, value)
        value = value._data
    return overwrite(self, value)


# random fills: chainrule/random.py draws PyTorch's streams (and writes them through copy_)
def uniform_(self, from_: float = 0.0, to: float = 1.0, *, generator=None):
    return random.uniform_(self, from_, to, generator)


def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None):
    return random.normal_(self, mean, std, generator)


def random_(self, *args, generator=None):
    return random.random_(self, *args, generator=generator)


def exponential_(self, lambd: float = 1.0, *, generator=None):
    return random.exponential_(self, lambd, generator)


def bernoulli_(self, p=0.5, *, generator=None):
    return random.bernoulli_(self, p, generator)


def cauchy_(self, median: float = 0.0, sigma: float = 1.0, *, generator=None):
    return random.cauchy_(self, median, sigma, generator)


def log_normal_(self, mean: float = 1.0, std: float = 2.0, *, generator=None):
    return random.log_normal_(self, mean, std, generator)


def geometric_(self, p: float, *, generator=None):
    return random.geometric_(self, p, generator)


# ---- in-place methods whose op chainrule may not have: written with the ops it has ------------
def _op(name: str, fallback):
    """chainrule's op ``name`` if there is one, else ``fallback`` (the same math, composed)."""
    return getattr(_late.ops, name, None) or fallback


def addcmul_(self, tensor1, tensor2, *, value=1):
    """self += value · tensor1 · tensor2."""
    return apply_inplace(self, _op("addcmul", _addcmul), tensor1, tensor2, value=value)


def _addcmul(t, a, b, *, value=1):
    return t + a * b * value if value != 1 else t + a * b


def addcdiv_(self, tensor1, tensor2, *, value=1):
    """self += value · tensor1 / tensor2."""
    return apply_inplace(self, _op("addcdiv", _addcdiv), tensor1, tensor2, value=value)


def _addcdiv(t, a, b, *, value=1):
    if not (a.is_floating_point() or b.is_floating_point()):
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a "
                           "future release addcdiv will perform a true division of tensor1 and "
                           "tensor2. The historic addcdiv behavior can be implemented as "
                           "(input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
                           "integer inputs and as (input + value * tensor1 / tensor2) for float "
                           "inputs. The future addcdiv behavior is just the latter "
                           "implementation: (input + value * tensor1 / tensor2), for all dtypes.")
    return t + a / b * value if value != 1 else t + a / b


def lerp_(self, end, weight):
    """self += weight · (end - self)."""
    return apply_inplace(self, _op("lerp", _lerp), end, weight)


def _lerp(t, end, weight):
    return t + (end - t) * weight


def clamp_min_(self, min):
    return apply_inplace(self, _op("clamp_min", _clamp_min), min)


def _clamp_min(t, min):
    return _late.ops.clamp(t, min=min)


def clamp_max_(self, max):
    return apply_inplace(self, _op("clamp_max", _clamp_max), max)


def _clamp_max(t, max):
    return _late.ops.clamp(t, max=max)


def _along(t, dim: int, index, name: str):
    """The key ``t[key]`` that takes ``index`` (a 1-d integer tensor) along ``dim``."""
    ndim = t._data.ndim
    d = normalize_dim(dim, max(ndim, 1), name)
    idx = index._data if isinstance(index, TensorBase) else np.asarray(index)
    if idx.ndim > 1:
        raise IndexError(f"{name}(): Index is supposed to be a vector")
    if idx.dtype.kind not in "iu":
        raise IndexError(f"{name}(): Expected dtype int64 for index")
    if ndim == 0:
        return ()
    return (slice(None),) * d + (idx.reshape(-1),)


def index_add_(self, dim: int, index, source, *, alpha=1):
    """self[..., index[i], ...] += alpha · source[..., i, ...] along ``dim`` (repeats add up)."""
    if isinstance(source, TensorBase) and source.dtype != self.dtype:
        raise RuntimeError(f"index_add_(): self ({_name(self.dtype)}) and source "
                           f"({_name(source.dtype)}) must have the same scalar type")
    return apply_inplace(self, _op("index_add", _index_add), dim, index, source, alpha=alpha)


def _index_add(t, dim, index, source, *, alpha=1):
    from chainrule.ops.index import IndexPut


    key = _along(t, dim, index, "index_add_")
    src = source * alpha if alpha != 1 else source
    if not key:
        return t + src.reshape(())
    return t + IndexPut.apply(src, t._data.shape, key)


def index_copy_(self, dim: int, index, source):
    """self[..., index[i], ...] = source[..., i, ...] along ``dim``."""
    if isinstance(source, TensorBase) and source.dtype != self.dtype:
        raise RuntimeError("index_copy_(): self and source expected to have the same dtype, but "
                           f"got (self) {_name(self.dtype)} and (source) {_name(source.dtype)}")
    return apply_inplace(self, _op("index_copy", _index_copy), dim, index, source)


def _index_copy(t, dim, index, source):
    key = _along(t, dim, index, "index_copy_")
    return index_assign(t, key, source) if key else source.reshape(()).to(t.dtype) + t * 0


def index_fill_(self, dim: int, index, value):
    """self[..., index[i], ...] = value along ``dim``."""
    return apply_inplace(self, _op("index_fill", _index_fill), dim, index, value)


def _index_fill(t, dim, index, value):
    key = _along(t, dim, index, "index_fill_")
    if isinstance(value, TensorBase) and value._data.ndim:
        raise RuntimeError("index_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value._data.ndim} dimension(s).")
    return index_assign(t, key if key else Ellipsis, value)


def index_put_(self, indices, values, accumulate: bool = False):
    """self[indices] = values (``accumulate``: self[indices] += values, repeats adding up)."""
    return apply_inplace(self, _index_put, tuple(indices), values, accumulate)


def _index_put(t, indices, values, accumulate):
    from chainrule.ops.index import IndexPut

    key = normalize_index(tuple(indices), t._data)
    if not accumulate:
        return index_assign(t, key, values)
    shape = np.shape(t._data[key])
    if not isinstance(values, TensorBase):
        values = _late.creation.tensor(values, dtype=t.dtype, device=t.device)
    return t + IndexPut.apply(values.expand(shape) if values.shape != shape else values,
                              t._data.shape, key)


def put_(self, index, source, accumulate: bool = False):
    """self.view(-1)[index] = source (``accumulate``: += , repeats adding up)."""
    return apply_inplace(self, _put, index, source, accumulate)


def _put(t, index, source, accumulate):
    flat = t.reshape(-1)
    idx = index._data if isinstance(index, TensorBase) else np.asarray(index)
    return _index_put(flat, (idx.reshape(-1),), source.reshape(-1), accumulate).reshape(
        t._data.shape)


def masked_scatter_(self, mask, source):
    """Where ``mask`` is True, self takes source's elements in order."""
    if isinstance(source, TensorBase) and source.dtype != self.dtype:
        raise RuntimeError("masked_scatter: expected self and source to have same dtypes but got"
                           f"{_name(self.dtype)} and {_name(source.dtype)}")
    return apply_inplace(self, _op("masked_scatter", _masked_scatter), mask, source)


def _masked_scatter(t, mask, source):
    m = mask._data if isinstance(mask, TensorBase) else np.asarray(mask)
    if m.dtype != bool:
        raise RuntimeError("masked_scatter_ only supports boolean masks, but got mask with "
                           f"dtype {m.dtype}")
    m = devices.xp_of(t._data).broadcast_to(m, t._data.shape)
    n = int(m.sum())
    if n > source.numel():
        raise RuntimeError("masked_scatter: expected source to have at least as many elements "
                           "as the ones selected by the mask")
    return index_assign(t, m, source.reshape(-1)[:n])


def fill_diagonal_(self, fill_value, wrap: bool = False):
    """The main diagonal (all dims equal) := fill_value; ``wrap`` continues it below N rows
    for a tall matrix."""
    if state.grad_enabled and self._grad_fn is None and self._requires_grad:
        raise RuntimeError(_VIEW_OF_LEAF)  # torch writes through a view of self
    return apply_inplace(self, _fill_diagonal, fill_value, wrap)


def _fill_diagonal(t, value, wrap_):
    shape = t._data.shape
    if len(shape) < 2:
        raise RuntimeError("dimensions must larger than 1")
    if len(shape) > 2 and len(set(shape)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    n = min(shape)
    if len(shape) == 2 and wrap_ and shape[0] > shape[1]:
        step = shape[1] + 1
        flat = np.arange(0, shape[0] * shape[1], step)
        rows, cols = flat // shape[1], flat % shape[1]
        key = (rows, cols)
    else:
        key = (np.arange(n),) * len(shape)
    return index_assign(t, key, value)


# ---- in-place changes of shape: the tensor becomes a view of what it was -----------------------
def _reshaping(op_name: str, name: str):
    def method(self, *args, **kwargs):
        grad = state.grad_enabled
        _check_writable(self, grad and self._requires_grad, grad)
        view = getattr(_late.ops, op_name)(self, *args, **kwargs)
        _become(self, view)
        self._bump_version()
        return self

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place version of :meth:`Tensor.{op_name}` (``self`` changes shape)."
    return method


def _become(t, view) -> None:
    """``t`` takes the place of ``view``, a view of it: the same memory seen another way, and
    (when the view was recorded) the view's history."""
    t._data = view._data
    if view._grad_fn is not None:
        t._rebase(view._grad_fn, view._nr)
    if t._base is not None and view._base is not None:
        t._view, t._view_src = view._view, view._view_src


_SHAPE_METHODS = {"t_": "t", "transpose_": "transpose", "swapaxes_": "swapaxes",
                  "swapdims_": "swapdims", "squeeze_": "squeeze", "unsqueeze_": "unsqueeze"}


# ---- in-place changes of layout and memory: as_strided_, resize_, resize_as_, set_ -----------
# chainrule has no Storage objects: a tensor's "storage" is its base's memory for a view, its own
# array otherwise; offsets count elements from its start. Like as_strided, these read that
# memory in its logical order and refuse it where that is not its memory order (not contiguous).
class AsStridedView(Op):
    """y = the elements of x (x contiguous) at offset + Σ iₖ·strideₖ, sharing x's memory;  the
    gradient adds g back at those places (repeats add up)"""

    is_view = True

    def name(self) -> str:
        return "AsStridedBackward1"  # torch's name for the node

    @staticmethod
    def forward(ctx, x, size, stride, offset):
        ctx.shape, ctx.geometry = x.shape, (size, stride, offset)
        return _strided(x, size, stride, offset)

    @staticmethod
    def backward(ctx, g, *_):
        size, stride, offset = ctx.geometry
        raw = either.data(g)
        pos = devices.asarray_on(_positions(size, stride, offset).reshape(-1), raw)
        numel = 1
        for n in ctx.shape:
            numel *= n
        flat = either.index_put((numel,), (pos,), either.reshape(g, (-1,)))
        return either.reshape(flat, tuple(ctx.shape)), None, None, None


def _strided(x, size, stride, offset):
    """The array of ``size`` whose element i is x's (x in its logical order) at offset +
    Σ iₖ·strideₖ: a view of x's memory where x is contiguous (read-only where a stride-0
    dim repeats elements, as torch refuses to write there)."""
    flat = devices.xp_of(x).ascontiguousarray(x).reshape(-1)  # x's own memory if contiguous
    step = flat.dtype.itemsize
    strides = tuple(s * step for s in stride)
    if isinstance(flat, np.ndarray):
        repeats = any(s == 0 and n > 1 for n, s in zip(size, stride))
        return np.lib.stride_tricks.as_strided(flat[offset:], size, strides,
                                               writeable=not repeats)
    return devices.xp_of(flat).lib.stride_tricks.as_strided(flat[offset:], size, strides)


def _positions(size, stride, offset):
    pos = np.full(tuple(size), offset, np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        pos = pos + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    return pos


def _ints(values, what: str) -> tuple:
    import operator

    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints, got {values!r}") from None


def _check_geometry(size, stride, offset: int, numel: int, itemsize: int) -> None:
    """torch's checks of a layout over ``numel`` elements of memory."""
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    if any(n < 0 for n in size):
        raise RuntimeError("numel: integer multiplication overflow")
    if any(s < 0 for s in stride):
        raise RuntimeError("as_strided: Negative strides are not supported at the moment, got "
                           f"strides: {list(stride)}")
    if offset < 0:
        raise RuntimeError(f"Tensor: invalid storage offset {offset}")
    need = offset if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if need > numel:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                           f"offset {offset}, and itemsize {itemsize} requiring a storage size of "
                           f"{need * itemsize} are out of bounds for storage of size "
                           f"{numel * itemsize}")


def _memory_of(t, name: str):
    """(holder, memory, start): the tensor whose elements ``t``'s memory is read through (its
    base, or itself), the flat memory holder lies in, and where holder starts in it. Refused
    where holder's array is not contiguous (its logical order is not its memory order)."""
    holder = t if t._base is None else t._base
    data = holder._data
    if isinstance(data, np.generic):  # a NumPy scalar (0-d results): an array of its own
        data = holder._data = np.asarray(data)
    mem = storage_of(holder)
    if mem is not None:
        step = data.dtype.itemsize
        return holder, mem, (devices.data_address(data) - devices.data_address(mem)) // step
    if data.ndim and not data.flags.c_contiguous:
        whose = "its base's memory" if holder is not t else "its memory"
        raise RuntimeError(
            f"{name}(): the tensor's {whose} (shape {list(data.shape)}, strides "
            f"{holder.stride()}) is not contiguous: chainrule reads it in its logical order, "
            "torch in its storage order, and the two differ here; call .contiguous() first")
    return holder, devices.xp_of(data).ascontiguousarray(data).reshape(-1), 0


def _storage_for(source):
    """The memory ``set_(source)`` gives a tensor: the memory source lies in."""
    holder = source if source._base is None else source._base
    mem = storage_of(holder)
    if mem is None and holder is not source and holder._data.flags.c_contiguous:
        mem = holder._data.reshape(-1)
    return mem


def _restride(t, name: str, size, stride, offset) -> None:
    """``t`` := the layout ``size``/``stride`` at ``offset`` (None: t's own) of the memory it
    lies in, sharing it; recorded as an ``as_strided`` of the tensor t is read through (its
    base for a view) where grad mode and that tensor ask for it."""
    holder, mem, start = _memory_of(t, name)
    if offset is None:
        offset = (devices.data_address(t._data) - devices.data_address(mem)) // \
            mem.dtype.itemsize if t._data.size else start
    _check_geometry(size, stride, offset, mem.size, mem.dtype.itemsize)
    rel = offset - start
    inside = rel >= 0 and (0 in size or rel + 1 + sum((n - 1) * s for n, s in zip(size, stride))
                           <= holder._data.size) and (holder._data.ndim == 0
                                                      or holder._data.flags.c_contiguous)
    if not inside:
        if t._base is not None or (state.grad_enabled and t._requires_grad):
            raise RuntimeError(
                f"{name}(): the layout (sizes {list(size)}, strides {list(stride)}, offset "
                f"{offset}) reaches memory outside the elements of the tensor it is read "
                f"through ({holder._data.size} from offset {start}): chainrule cannot record or "
                "view it there")
        t._data = _strided(mem, size, stride, offset)  # no history, no view: memory only
        t._storage = mem
        return
    quiet = any(not step[3] for step in (t._view or ()))  # a no_grad view stays one
    prev = state.grad_enabled
    if quiet:
        state.grad_enabled = False
    try:
        view = AsStridedView.apply(holder, size, stride, rel)
    finally:
        state.grad_enabled = prev
    t._data = view._data
    if t._base is not None:
        t._view, t._view_src = view._view, view._view_src
    else:
        t._storage = mem
    if view._grad_fn is not None:
        _rebase(t, view._grad_fn, view._nr)


def as_strided_(self, size, stride, storage_offset=None):
    """self := the view of its memory (its base's, for a view) with ``size`` and ``stride`` at
    ``storage_offset`` (default: self's own); recorded as an ``as_strided`` of the old value."""
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    grad = state.grad_enabled
    _check_writable(self, grad and self._requires_grad, grad, writes=False)
    _restride(self, "as_strided_", size, stride,
              None if storage_offset is None else int(storage_offset))
    self._bump_version()
    return self


def _contiguous_strides(size) -> tuple:
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _check_memory_format(memory_format, ndim: int) -> None:
    """torch's refusals; the layout itself stays contiguous (chainrule keeps its arrays so)."""
    from chainrule import dtypes

    if memory_format is None or memory_format in (dtypes.contiguous_format,
                                                  dtypes.legacy_contiguous_format):
        return
    if memory_format is dtypes.preserve_format:
        raise RuntimeError("Unsupported memory formatPreserve")
    rank = {dtypes.channels_last: 4, dtypes.channels_last_3d: 5}.get(memory_format)
    if rank is None:
        raise TypeError(f"resize_(): memory_format must be a chainrule.memory_format, got "
                        f"{memory_format!r}")
    if ndim != rank:
        raise RuntimeError(f"required rank {rank} tensor to use {memory_format.name} format")


def resize_(self, *sizes, memory_format=None):
    """self := the first prod(sizes) elements of its memory from its offset on, contiguous;
    a larger size gives it new memory, the old elements first, the rest uninitialised. The same
    size changes nothing (not even the version)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    size = _ints(sizes, "resize_(): size")
    base = self._base  # (torch counts a view of a tensor that requires grad, even one made
    if self._requires_grad or (base is not None and base._requires_grad):  # in no_grad mode)
        raise RuntimeError("cannot resize variables that require grad")
    _check_memory_format(memory_format, len(size))
    if any(n < 0 for n in size):
        raise RuntimeError("numel: integer multiplication overflow")
    if size == tuple(self._data.shape):
        return self
    numel = 1
    for n in size:
        numel *= n
    holder = self if self._base is None else self._base
    data = holder._data
    mem = storage_of(holder)
    room = (mem.size if mem is not None else data.size) - self.storage_offset()
    contiguous = mem is not None or getattr(data, "ndim", 0) == 0 or data.flags.c_contiguous
    if numel <= room and contiguous:
        _restride(self, "resize_", size, _contiguous_strides(size), None)
    elif self._base is not None:
        raise RuntimeError(
            f"resize_(): a view of another tensor cannot grow past the end of its base's "
            f"memory ({room} elements from its offset, {numel} asked) or lie in memory that "
            "is not contiguous in chainrule (torch would reallocate the storage they share); "
            "resize a tensor of its own (.clone()) instead")
    else:  # new memory, the old elements (its memory's from its offset on) first
        old = devices.xp_of(self._data).asarray(self._data).reshape(-1) if mem is None else \
            mem[self.storage_offset():]
        new = devices.xp_of(old).empty(numel, old.dtype)
        keep = min(numel, old.size)
        new[:keep] = old[:keep]
        self._data = new.reshape(size)
        self._storage = None
    self._bump_version()
    return self


def resize_as_(self, the_template, *, memory_format=None):
    """self.resize_(the_template.shape)."""
    from chainrule import dtypes

    if memory_format is dtypes.preserve_format:  # the template's format: contiguous here
        memory_format = None
    return resize_(self, tuple(the_template.shape), memory_format=memory_format)


_C_TYPE_NAMES = {"float64": "double", "float32": "float", "float16": "c10::Half",
                 "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int",
                 "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
                 "bool": "bool", "complex64": "c10::complex<float>",
                 "complex128": "c10::complex<double>"}


class SetStorage(Op):
    """y = the memory ``set_`` gave the tensor;  torch has no derivative for set_: backward
    through it raises torch's error"""

    def name(self) -> str:
        return "NotImplemented"  # torch's name for the node

    @staticmethod
    def forward(ctx, x, source, data):
        return data

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("derivative for set_ is not implemented")


def set_(self, source=None, storage_offset=None, size=None, stride=None):
    """self := source's memory (shape, strides and all), or the layout ``size``/``stride`` at
    ``storage_offset`` of the memory source lies in (its base's, for a view); ``set_()``: empty.
    self keeps its own version counter (bumped); the result is not differentiable (torch)."""
    xp = devices.xp_of(self._data)
    if source is None:
        if storage_offset is not None or size is not None or stride is not None:
            raise TypeError("set_(): a storage_offset, size or stride needs a source tensor")
        new = xp.empty((0,), self._data.dtype)
    elif not isinstance(source, TensorBase):
        raise TypeError("set_(): argument 'source' must be a Tensor (chainrule has no Storage "
                        f"objects), not {type(source).__name__}")
    else:
        have, want = source._data.dtype, self._data.dtype
        if have != want:
            raise RuntimeError(f"Could not set tensor of type {_C_TYPE_NAMES.get(have.name, have)}"
                               f" to a tensor of type {_C_TYPE_NAMES.get(want.name, want)}")
        if source.device != self.device:
            raise RuntimeError(f"Attempted to set the storage of a tensor on device "
                               f'"{self.device}" to a storage on different device '
                               f'"{source.device}".  This is no longer allowed; the devices must '
                               "match.")
        if storage_offset is None and size is None and stride is None:
            new = source._data
        else:
            if storage_offset is None or size is None:
                raise TypeError("set_(): pass storage_offset and size together (and stride, "
                                "optionally)")
            size = _ints(size, "set_(): size")
            stride = _contiguous_strides(size) if stride is None else _ints(stride,
                                                                             "set_(): stride")
            memory = _memory_of(source, "set_")[1]
            _check_geometry(size, stride, int(storage_offset), memory.size,
                            memory.dtype.itemsize)
            new = _strided(memory, size, stride, int(storage_offset))
    grad = state.grad_enabled
    graph = grad and (self._requires_grad or _requires_grad(source))
    _check_writable(self, graph, grad, writes=False)
    fn = None
    if graph:
        out = SetStorage.apply(self, source, new)
        fn, nr = out._grad_fn, out._nr
    if self._base is not None:  # self's memory is its base's no more (the counter stays shared)
        self._base = self._view = self._view_src = None
    self._data = new
    self._storage = None if source is None else (
        memory if storage_offset is not None else _storage_for(source))
    if fn is not None:
        _rebase(self, fn, nr)
    self._bump_version()
    return self


_RANDOM = ["uniform_", "normal_", "random_", "exponential_", "bernoulli_", "cauchy_",
           "log_normal_", "geometric_"]
METHODS = ["copy_", "zero_", "fill_"] + _RANDOM + [name + "_" for name in _OF_OPS]
for _op_name in _OF_OPS:
    globals()[_op_name + "_"] = _method(_op_name, _op_name + "_")


def _exists(op_name: str) -> bool:
    import chainrule.ops as ops

    return hasattr(ops, op_name) or hasattr(TensorBase, op_name)


METHODS += ["addcmul_", "addcdiv_", "lerp_", "clamp_min_", "clamp_max_", "index_add_",
            "index_copy_", "index_fill_", "index_put_", "put_", "masked_scatter_",
            "fill_diagonal_"]
METHODS += ["as_strided_", "resize_", "resize_as_", "set_"]
for _name_, _op_name in _SHAPE_METHODS.items():
    globals()[_name_] = _reshaping(_op_name, _name_)
    METHODS.append(_name_)
for _op_name in _IF_OPS:
    if _exists(_op_name) and _op_name + "_" not in globals():
        globals()[_op_name + "_"] = _method(_op_name, _op_name + "_")
        METHODS.append(_op_name + "_")
for _alias, _target in _ALIASES.items():
    globals()[_alias] = globals()[_target]
    METHODS.append(_alias)


# ---- torch's in-place functions: torch.exp_(x) is x.exp_() --------------------------------------
_FUNCTIONS = """
abs_ acos_ acosh_ arccos_ arccosh_ arcsin_ arcsinh_ arctan_ arctanh_ asin_ asinh_ atan_ atanh_
ceil_ clamp_ clamp_max_ clamp_min_ clip_ cos_ cosh_ deg2rad_ erf_ erfc_ exp2_ exp_ expm1_ fill_
fix_ floor_ frac_ gcd_ i0_ index_put_ lcm_ ldexp_ log10_ log1p_ log2_ log_ logit_ nan_to_num_
neg_ negative_ rad2deg_ reciprocal_ relu_ round_ rsqrt_ sigmoid_ sin_ sinc_ sinh_ sqrt_ square_
tan_ tanh_ trunc_ xlogy_ zero_ detach_ as_strided_ resize_as_
""".split()


def _function(name: str):
    def fn(input, *args, **kwargs):
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``input.{name}(...)``: in place."
    return fn


FUNCTIONS = {name: _function(name) for name in _FUNCTIONS
             if name in METHODS or hasattr(TensorBase, name)}
