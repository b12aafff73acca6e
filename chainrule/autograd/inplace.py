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

from chainrule import devices, random
from chainrule._state import state
from chainrule.autograd.function import Op
from chainrule.devices import np
from chainrule.ops import either
from chainrule.ops.elementwise import copy_value
from chainrule.ops.index import getitem, index_assign, is_basic, normalize_index
from chainrule.tensor import TensorBase, late as _late, wrap

__all__ = ["apply_inplace", "overwrite", "setitem", "METHODS", "CopySlices", "replay_view"]

_LEAF = "a leaf Variable that requires grad is being used in an in-place operation."
_VIEW_OF_LEAF = ("a view of a leaf Variable that requires grad is being used in an in-place "
                 "operation.")
_OVERLAP = ("unsupported operation: more than one element of the written-to tensor refers to a "
            "single memory location. Please clone() the tensor before performing the operation.")
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
    graph = state.grad_enabled and (
        _requires_grad(target) or any(_requires_grad(a) for a in args)
        or any(_requires_grad(v) for v in kwargs.values()))
    _check_writable(target, graph)
    if not graph:
        prev = state.grad_enabled
        state.grad_enabled = False
        try:
            result = op(target.detach(), *args, **kwargs)
        finally:
            state.grad_enabled = prev
        _write(target, result._data if isinstance(result, TensorBase) else result)
        target._bump_version()
        return target
    base = target._base
    if base is None:
        new = op(_current(target), *args, **kwargs)
        new = _as_dtype_of(target, new)
        _write(target, new._data)
        target._bump_version()
        _adopt(target, new)
        return target
    region = replay_view(target._view, _current(base))
    new = _as_dtype_of(target, op(region, *args, **kwargs))
    updated = CopySlices.apply(_current(base), new, target._view, base._data)
    base._bump_version()
    base._rebase(updated._grad_fn, updated._nr)
    target._refresh_view()
    return target


def overwrite(target, values):
    """``target`` := ``values`` (constants: zero_, fill_, random fills): the old value's
    gradient is zero, so a tensor in the graph is rebased onto a gate without inputs."""
    if not state.grad_enabled or not (target._requires_grad):
        _check_writable(target, False)
        _write(target, values)
        target._bump_version()
        return target
    return apply_inplace(target, _constant_like, values)


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
    if is_basic(key):
        view = getitem(target, key)
        if view._base is not None:
            copy_(view, value)
            return
    apply_inplace(target, index_assign, key, value)


# ---- the pieces ---------------------------------------------------------------------------------
def _check_writable(target, graph: bool) -> None:
    if graph and target._grad_fn is None and target._requires_grad:
        raise RuntimeError(_LEAF)
    base = target._base
    if base is not None and graph:
        if base._grad_fn is None and base._requires_grad:
            raise RuntimeError(_VIEW_OF_LEAF)
        step = target._view[-1]
        cls, nr, made_with_grad = step[0], step[2], step[3]
        if cls.multi_view:
            raise RuntimeError(
                f"Output {nr} of {cls.__name__}Backward0 is a view and is being modified "
                "inplace. This view is the output of a function that returns multiple views. "
                "Such functions do not allow the output views to be modified inplace. You should "
                "replace the inplace operation by an out-of-place one.")
        if not made_with_grad and base._requires_grad:
            raise RuntimeError(_NO_GRAD_VIEW)
    data = target._data
    if isinstance(data, np.ndarray) and not data.flags.writeable:
        if 0 in data.strides and data.size > 1:
            raise RuntimeError(_OVERLAP)
        raise RuntimeError("in-place operation on a read-only tensor (its memory is shared "
                           "with a read-only array)")


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
    that saved its output saved ``new``'s memory; it watches target's version from now on."""
    fn = new._grad_fn
    target._rebase(fn, new._nr)
    if fn is not None and fn.on_arrays and fn._saved_from and -1 in fn._saved_from:
        holder = target._version_holder()
        entry = (holder, holder._vc)
        fn._versions = (entry,) if fn._versions is None else fn._versions + (entry,)


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


class CopySlices(Op):
    """base' = base with its view region replaced by v;  d/dbase = g outside the region,
    d/dv = g's region"""

    @staticmethod
    def forward(ctx, base, v, chain, memory):
        # ``memory``, the base tensor's own array, holds ``base`` (a copy of it, which carries
        # its history): the result is written there, so it *is* the base
        replay_view(chain, memory)[...] = v
        ctx.chain = chain
        return memory

    @staticmethod
    def backward(ctx, g):
        outside = either.ones_like_data(g)
        replay_view(ctx.chain, outside)[...] = 0
        return g * outside, replay_view(ctx.chain, g), None, None


# ---- the methods ---------------------------------------------------------------------------------
def _method(op_name: str, name: str):
    def method(self, *args, **kwargs):
        return apply_inplace(self, getattr(_late.ops, op_name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place version of :meth:`Tensor.{op_name}` (``self`` is overwritten)."
    return method


# torch's in-place variants of chainrule's ops: name_ is name computed in place
_OF_OPS = """
abs absolute acos arccos add asin arcsin atan arctan atan2 arctan2 bitwise_and bitwise_not
bitwise_or bitwise_xor ceil clamp clip cos cosh cumsum cumprod div divide eq erf exp exp2 expm1
float_power floor floor_divide fmod frac ge gt le log log10 log1p log2 logical_and logical_not
logical_or logical_xor logit lt masked_fill mul multiply ne neg negative pow reciprocal relu
remainder round rsqrt sigmoid sign sin sinh sqrt square sub subtract tan tanh tril triu
true_divide trunc xlogy scatter scatter_add
""".split()


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


_RANDOM = ["uniform_", "normal_", "random_", "exponential_", "bernoulli_", "cauchy_",
           "log_normal_", "geometric_"]
METHODS = ["copy_", "zero_", "fill_"] + _RANDOM + [name + "_" for name in _OF_OPS]
for _op_name in _OF_OPS:
    globals()[_op_name + "_"] = _method(_op_name, _op_name + "_")
