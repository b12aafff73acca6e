"""Batched arrays: how ``cr.func.vmap`` runs every op once on the whole batch.

Inside ``vmap`` a tensor's ``_data`` is a :class:`BatchedArray`: a NumPy duck array whose
*logical* shape is one example's (what the user's function and every op see: ``x.shape``,
``x.ndim``, dims to reduce over) and whose *physical* array ``_p`` holds the whole batch along
its first axis. Ops compute on arrays through NumPy's protocols (``__array_ufunc__`` and
``__array_function__``, the same route CuPy arrays take), so the batching rules live here, at
the level of NumPy's API, once for every gate that uses it:

* **ufuncs** (every elementwise op, forward and backward): batched operands get a size-1 axis
  wherever their logical rank is below the widest operand's, then one call on the physical
  arrays; ``reduce``/``accumulate``/``reduceat``/``at`` shift their axis past the batch axis;
* **functions** (``np.sum``, ``np.reshape``, ``np.einsum``, ``np.concatenate``, ``np.pad``...):
  one rule each in ``_FUNCS``, by family (reductions with an axis, shape functions, ...);
* **methods and indexing** (``a.reshape``, ``a.sum``, ``a[key]``, ``a[key] = v``): the same
  rules.

The graph is recorded on the logical tensors, so the backward pass runs on batched arrays too:
``vmap(grad(f))`` gives per-example gradients (the gradient of an unbatched weight comes out
batched, because the backward rule's product with a batched cotangent is), and a batched
cotangent pushed through an unbatched graph gives a whole Jacobian in one pass (``jacrev``,
``jacfwd``).

Levels nest: a vmap inside a vmap makes arrays whose physical array is itself batched at the
outer level. An operation on arrays of several levels handles the highest one first (its
operands at lower levels act as unbatched values there) and recurses into the physical arrays.
Anything NumPy would read element by element (``item``, ``bool``, ``np.asarray``) raises
torch.func's errors; a NumPy function without a rule raises an error naming it and the gate
that called it.
"""

from __future__ import annotations

import builtins
import itertools
import string
import sys
import threading

import numpy as np

__all__ = ["BatchedArray", "Level", "push_level", "pop_level", "current_levels", "is_batched",
           "batch", "unbatch", "NoBatchingRule"]


class _Hooks:
    """What this module needs from the rest of chainrule, filled in by those modules when
    they load (this one imports nothing of chainrule's: the engine and devices import it)."""

    matmul = staticmethod(np.matmul)          # chainrule.kernels.matmul.matmul
    xp_of = staticmethod(lambda a: np)        # chainrule.devices.xp_of
    sum_level_gate = None                     # chainrule.func_vmap.SumLevel


hooks = _Hooks()


class NoBatchingRule(RuntimeError):
    """A NumPy function or method used by an op has no batching rule."""


_ITEM = ("vmap: It looks like you're calling .item() on a Tensor. We don't support vmap over "
         "calling .item() on a Tensor, please try to rewrite what you're doing with other "
         "operations. If error is occurring somewhere inside PyTorch internals, please file a "
         "bug report.")
_CONTROL = ("vmap: It looks like you're attempting to use a Tensor in some data-dependent "
            "control flow. We don't support that yet, please file an issue at "
            "https://github.com/pytorch/pytorch/issues .")
_INPLACE = ("vmap: inplace arithmetic(self, *extra_args) is not possible because there exists a "
            "Tensor `other` in extra_args that has more elements than `self`. This happened due "
            "to `other` being vmapped over but `self` not being vmapped over in a vmap. Please "
            "try to use out-of-place operators instead of inplace arithmetic. If said operator "
            "is being called inside the PyTorch framework, please file a bug report instead.")
_NO_STORAGE = "Cannot access data pointer of Tensor that doesn't have storage"
_DYNAMIC = ("vmap: We do not support batching operators that can output dynamic shape. "
            "Attempted to vmap over aten::{name}. Please file an issue at "
            "https://github.com/pytorch/pytorch/issues if you need this feature.")


# ---- levels -------------------------------------------------------------------------------------
class Level:
    """One ``vmap`` call: its batch size and its place among the others.

    ``key`` orders levels: deeper vmaps are higher; of two at the same depth the earlier one is
    higher (its arrays can only meet the later one's in a backward pass through its recorded
    graph, where they wrap the later one's cotangents).
    """

    __slots__ = ("size", "depth", "key", "randomness", "alone", "live", "__weakref__")

    def __init__(self, size: int, depth: int, serial: int, randomness: str) -> None:
        self.size = size
        self.depth = depth
        self.key = (depth, -serial)
        self.randomness = randomness
        self.alone = (self,)  # the levels of an array batched at this level only
        self.live = True  # until its vmap returns (pop_level)

    def __repr__(self) -> str:
        return f"Level(depth={self.depth}, size={self.size})"


class _Stack(threading.local):
    levels: tuple = ()


_tls = _Stack()
_serial = itertools.count()
used = False  # set by the first vmap: until then the engine skips conform() altogether


def push_level(size: int, randomness: str = "error") -> Level:
    global used
    used = True
    lv = Level(size, len(_tls.levels) + 1, next(_serial), randomness)
    _tls.levels = _tls.levels + (lv,)
    return lv


def pop_level(lv: Level) -> None:
    lv.live = False
    levels = _tls.levels
    if levels and levels[-1] is lv:
        _tls.levels = levels[:-1]
    else:
        _tls.levels = tuple(x for x in levels if x is not lv)


def current_levels() -> tuple:
    return _tls.levels


_RANDOM_ERROR = ("vmap: called random operation while in randomness error mode. Please either "
                 "use the 'same' or 'different' randomness flags on vmap or perform the "
                 "randomness operation out of vmap")
_RANDOM_SAME_BATCHED = ("Vmap does not currently support same randomness with a batched tensor "
                        "input. Please file an issue with functorch")
_RANDOM_INPLACE = ("vmap: Cannot ask for different inplace randomness on an unbatched tensor. "
                   "This will appear like same randomness. If this is necessary for your usage, "
                   "please file an issue with functorch.")


def random_levels(kind: str, inputs=(), target=None, op: str = "") -> tuple:
    """The running vmap levels (outermost first) at which a random op draws independently per
    example, after torch.func's checks, made level by level from the innermost vmap out (so
    nested vmaps with different ``randomness=`` raise what torch raises, in its order).

    ``kind``: "factory" (``rand(shape)``, ``randn_like``, dropout's mask: "same" gives one
    draw, "different" one per example); "pointwise" (draws parametrised by the ``inputs``
    arrays: ``bernoulli(p)``, ``multinomial``, ``poisson``, ``normal(mean, std)``: "same"
    refuses a batched input); "inplace" (``target.normal_()``: "different" needs ``target``
    batched at that level, "same" draws once and writes it into every example; ``inputs``
    are the extra tensor arguments, ``bernoulli_(p)``'s p).
    """
    running = _tls.levels
    if not running:
        return ()
    given: set = set()
    for x in inputs:
        given.update(levels_of(x))
    mine = set(levels_of(target))
    diff = []
    for lv in reversed(running):
        mode = lv.randomness
        if mode == "error":
            raise RuntimeError(_RANDOM_ERROR)
        if mode == "same" and lv in given:
            raise RuntimeError(_RANDOM_SAME_BATCHED)
        if kind == "inplace":
            if lv not in mine:
                if lv in given:
                    raise RuntimeError(_INPLACE.replace("arithmetic", op))
                if mode == "different":
                    raise RuntimeError(_RANDOM_INPLACE)
            elif mode == "same":
                mine = set()  # one draw of the example's shape, written into every example
        if mode == "different":
            diff.append(lv)
    diff.reverse()
    return tuple(diff)


def levels_of(x) -> tuple:
    """The levels array ``x`` is batched at, outermost first (() for a plain array)."""
    return x.shape.levels if isinstance(x, BatchedArray) else ()


def layout_shape(levels: tuple, shape: tuple) -> tuple:
    """The physical shape of a value of logical ``shape`` batched at ``levels``."""
    return tuple(lv.size for lv in levels) + tuple(shape)


def physical(x, levels: tuple):
    """``x``'s values as a plain array laid out for ``levels`` (outermost first, a superset of
    the levels ``x`` is batched at): ``layout_shape(levels, x.shape)``, broadcast along the
    levels ``x`` is not batched at."""
    have = levels_of(x)
    for lv in levels:
        if lv not in have:
            x = expand_level(x, lv, ())
    p = _deep(x)
    if levels_of(x) != tuple(levels):
        raise NoBatchingRule(f"vmap: a value batched at {levels_of(x)} cannot be laid out for "
                             f"{levels}")
    return p


def from_physical(p, levels: tuple):
    """The batched array whose physical array is ``p`` (``layout_shape(levels, ...)``)."""
    for lv in levels:
        p = BatchedArray(p, lv)
    return p


# ---- the array ----------------------------------------------------------------------------------
class LevelShape(tuple):
    """A batched array's logical shape, which also names the levels it is batched at: the
    graph records it for every output, so the backward pass knows which levels a gradient
    must be summed over (see :func:`conform`)."""

    levels: tuple = ()


_DTYPES: dict = {}


def _own_dtype(dt):
    """An equal copy of ``dt``: the engine conforms a gradient whose dtype is not *identical*
    to its target's, which makes it call :func:`conform` for every batched gradient."""
    entry = _DTYPES.get(id(dt))  # by identity: hashing a dtype is slow
    if entry is None or entry[0] is not dt:
        entry = _DTYPES[id(dt)] = (dt, np.dtype(dt, copy=True))
    return entry[1]


class BatchedArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A batch of arrays of one shape: logically one of them, physically ``_p`` (batch first)."""

    __slots__ = ("_p", "_lv", "shape", "_dt", "_agg")
    __array_priority__ = 100

    def __init__(self, p, lv: Level) -> None:
        self._p = p
        self._lv = lv
        inner = p.shape
        shape = self.shape = LevelShape(inner[1:])
        shape.levels = inner.levels + lv.alone if type(p) is BatchedArray else lv.alone
        self._dt = p.dtype
        self._agg = None

    @property
    def dtype(self):
        """The physical array's dtype while every level of this array is running; after one
        of its vmaps has returned, an equal copy: the engine then conforms each such gradient
        (its dtype is not *identical* to its target's), which sums out the finished level
        (:func:`conform`). Inside the vmaps the engine takes batched gradients as they are."""
        for lv in self.shape.levels:
            if not lv.live:
                return _own_dtype(self._dt)
        return self._dt

    # ---- attributes ----------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def strides(self) -> tuple:
        return tuple(self._p.strides[1:])

    @property
    def flags(self):
        return self._p.flags

    @property
    def base(self):
        return None

    @property
    def T(self):
        return self.transpose()

    @property
    def mT(self):
        return np.swapaxes(self, -1, -2)

    @property
    def real(self):
        return _wrap(self._p.real, self._lv)

    @property
    def imag(self):
        return _wrap(self._p.imag, self._lv)

    @property
    def device(self):
        return getattr(self._p, "device", None)

    def __repr__(self) -> str:
        return f"BatchedArray(level={self._lv.depth}, size={self._lv.size}, shape={self.shape})"

    # ---- reading values is data-dependent ------------------------------------------------------
    def item(self, *args):
        raise RuntimeError(_ITEM)

    def tolist(self):
        raise RuntimeError(_NO_STORAGE)

    def __bool__(self) -> bool:
        if self.size == 1 and _internal_caller():
            # a gate's own test on its values (argument checks, shortcuts): one branch for
            # the whole batch when every example takes it; `if mask.any():` before extra work
            # that is always correct is taken if any example needs it
            flat = _deep(self._p).reshape(-1)
            if self._agg == "any":
                return builtins.bool(flat.any())
            if self._agg == "all":
                return builtins.bool(flat.all())
            first = builtins.bool(flat[0])
            if builtins.bool((flat.astype(bool) == first).all()):
                return first
        raise RuntimeError(_CONTROL)

    def __float__(self) -> float:
        raise RuntimeError(_ITEM)

    def __int__(self) -> int:
        raise RuntimeError(_ITEM)

    def __index__(self) -> int:
        raise RuntimeError(_ITEM)

    __complex__ = __float__

    def __array__(self, dtype=None, copy=None):
        if _caller_in("chainrule.autograd.inplace", "_write", "setitem", "index_assign",
                      "_copy_of"):
            raise RuntimeError(_inplace_message(self))
        raise NoBatchingRule(
            f"vmap: {_gate()} converts a batched value to a plain NumPy array (numpy.asarray); "
            "it has no batching rule"
        )

    def get(self):
        raise RuntimeError(_ITEM)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- NumPy protocols -----------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and not kwargs and ufunc is not np.matmul:
            lv = None  # the highest level among the operands (_top, for a plain call)
            for x in inputs:
                t = type(x)
                if t is BatchedArray:
                    if lv is None or x._lv is not lv and x._lv.key > lv.key:
                        lv = x._lv
                elif t is list or t is tuple:
                    break
            else:
                return _elementwise(lv, ufunc, inputs, kwargs, ufunc.__name__, ufunc.nout)
        lv = _top(inputs, kwargs.get("out", ()), kwargs.get("where"))
        if method == "__call__":
            if ufunc is np.matmul:
                return _matmul(lv, *inputs, **kwargs)
            return _elementwise(lv, ufunc.__call__, inputs, kwargs,
                                ufunc.__name__, ufunc.nout)
        if method == "reduce":
            return _ufunc_reduce(lv, ufunc, *inputs, **kwargs)
        if method == "accumulate":
            return _ufunc_accumulate(lv, ufunc, *inputs, **kwargs)
        if method == "reduceat":
            return _ufunc_reduceat(lv, ufunc, *inputs, **kwargs)
        if method == "at":
            return _ufunc_at(lv, ufunc, *inputs)
        raise NoBatchingRule(f"vmap: {_gate()} calls numpy.{ufunc.__name__}.{method}, which has "
                             "no batching rule")

    def __array_function__(self, func, types, args, kwargs):
        rule = _FUNCS.get(func)
        if rule is None:
            name = getattr(func, "__module__", "numpy") + "." + func.__name__
            if func in _DYNAMIC_FUNCS:
                raise RuntimeError(_DYNAMIC.format(name=name))
            raise NoBatchingRule(f"vmap: {_gate()} calls {name}, which has no batching rule")
        lv = _top(args, kwargs.values())
        return rule(lv, *args, **kwargs)

    # ---- methods -------------------------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return _wrap(self._p.reshape((self._p.shape[0],) + tuple(shape), order=order), self._lv)

    def view(self, dtype=None, type=None):
        if dtype is None:
            return self
        return _wrap(self._p.view(dtype), self._lv)

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return _transpose(self._lv, self, axes or None)

    def swapaxes(self, a, b):
        return _swapaxes(self._lv, self, a, b)

    def squeeze(self, axis=None):
        return _squeeze(self._lv, self, axis)

    def ravel(self, order="C"):
        return self.reshape(-1)

    def flatten(self, order="C"):
        return _wrap(self._p.reshape(self._p.shape[0], -1).copy(), self._lv)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return _wrap(self._p.astype(dtype, casting=casting), self._lv)

    def copy(self, order="C"):
        return _wrap(self._p.copy(), self._lv)

    def fill(self, value) -> None:
        self._p.fill(value)

    def conj(self):
        return _wrap(self._p.conj(), self._lv)

    conjugate = conj

    def repeat(self, repeats, axis=None):
        return _repeat(self._lv, self, repeats, axis)

    def clip(self, min=None, max=None, out=None, **kw):
        return np.clip(self, min, max, out=out, **kw)

    def round(self, decimals=0, out=None):
        return np.round(self, decimals, out=out)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return _diagonal(self._lv, self, offset, axis1, axis2)

    def trace(self, offset=0, axis1=0, axis2=1, dtype=None, out=None):
        return _trace(self._lv, self, offset, axis1, axis2, dtype)

    def dot(self, b):
        return _dot(_top((self, b)), self, b)

    def nonzero(self):
        raise RuntimeError(_DYNAMIC.format(name="nonzero"))

    def argsort(self, axis=-1, kind=None, order=None):
        return _FUNCS[np.argsort](self._lv, self, axis, kind)

    def sort(self, axis=-1, kind=None, order=None) -> None:
        self._p.sort(axis=_axis1(axis, self.ndim), kind=kind)

    def take(self, indices, axis=None):
        return np.take(self, indices, axis)

    def __getitem__(self, key):
        return _getitem(self, key)

    def __setitem__(self, key, value) -> None:
        _setitem(self, key, value)


def _reduction_method(func):
    def method(self, *args, **kwargs):
        return _FUNCS[func](_top((self,) + args, kwargs.values()), self, *args, **kwargs)

    method.__name__ = func.__name__
    return method


def _fast_binary(ufunc, reflected: bool):
    """``a <op> b`` straight to the ufunc's batching rule when the other operand is a batched
    array, a NumPy array or a number (NumPy's protocol, the mixin's method, otherwise)."""
    name = ufunc.__name__
    slow = getattr(np.lib.mixins.NDArrayOperatorsMixin,
                   f"__{'r' if reflected else ''}{_OPERATORS[ufunc]}__")

    def method(self, other):
        t = type(other)
        if t is BatchedArray:
            lv = self._lv
            if other._lv is not lv and other._lv.key > lv.key:
                lv = other._lv
        elif t is _ndarray or t is float or t is int or t in _SCALARS:
            lv = self._lv
        else:
            return slow(self, other)
        return _elementwise(lv, ufunc, (other, self) if reflected else (self, other), {}, name)

    method.__name__ = f"__{'r' if reflected else ''}{_OPERATORS[ufunc]}__"
    return method


_OPERATORS = {np.add: "add", np.subtract: "sub", np.multiply: "mul", np.true_divide: "truediv"}
_SCALARS = frozenset({np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                      np.uint8, np.bool_, np.complex64, np.complex128})
for _ufunc in _OPERATORS:
    setattr(BatchedArray, f"__{_OPERATORS[_ufunc]}__", _fast_binary(_ufunc, False))
    setattr(BatchedArray, f"__r{_OPERATORS[_ufunc]}__", _fast_binary(_ufunc, True))


for _name, _func in (("sum", np.sum), ("prod", np.prod), ("max", np.max), ("min", np.min),
                     ("mean", np.mean), ("var", np.var), ("std", np.std), ("any", np.any),
                     ("all", np.all), ("argmax", np.argmax), ("argmin", np.argmin),
                     ("cumsum", np.cumsum), ("cumprod", np.cumprod)):
    setattr(BatchedArray, _name, _reduction_method(_func))


# ---- helpers ------------------------------------------------------------------------------------
def _wrap(p, lv: Level) -> BatchedArray:
    return BatchedArray(p, lv)


def _deep(p):
    """The plain array under any number of batch levels."""
    while isinstance(p, BatchedArray):
        p = p._p
    return p


def deep(x):
    """The plain array under any number of batch levels (``x`` itself if it is plain)."""
    return _deep(x)


def is_batched(x) -> bool:
    return isinstance(x, BatchedArray)


def copy_for(x, *values):
    """A copy of array ``x`` to write ``values`` into: batched like them if they are (an
    out-of-place scatter of batched values into a shared array makes a batched result)."""
    lv = _top(values)
    if lv is None or _mine(x, lv):
        return x.copy()
    out = namespace(next(v for v in values if _mine(v, lv))).empty(_shape(x), x.dtype)
    out[...] = x
    return out


def index_plain(arr, key):
    """``arr[key]`` for a plain array ``arr`` whose key may hold batched index arrays (NumPy
    cannot be asked to: the result is batched like the key)."""
    parts = key if isinstance(key, tuple) else (key,)
    lv = _top(parts)
    if lv is None:
        return arr[key]
    return _index_unbatched(arr, key, lv)


def every_value(x):
    """The plain array of all of ``x``'s values (every example's, for error messages)."""
    return _deep(x._p) if isinstance(x, BatchedArray) else x


def map_batched(fn, x):
    """``fn`` (an elementwise function of plain arrays) on a batched array: one call on the
    physical array, under any number of levels."""
    if isinstance(x, BatchedArray):
        return BatchedArray(map_batched(fn, x._p), x._lv)
    return fn(x)


def elementwise_host(fn):
    """Decorator for an elementwise function of plain arrays that reads its values directly
    (SciPy, a host copy, boolean masks): with batched arguments it runs once on the physical
    arrays, broadcast like a ufunc's (size-1 axes aligned), and its result comes out batched.
    Plain arguments call ``fn`` as is."""

    def wrapper(*args, **kwargs):
        lv = _top(args)
        if lv is None:
            return fn(*args, **kwargs)
        return _elementwise(lv, wrapper, args, kwargs, fn.__name__)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def axis_host(fn):
    """Decorator for ``fn(x, axis, *rest)``: a function of one array along one non-negative
    ``axis`` that treats every other axis independently (a running maximum, a mode) and keeps
    ``x``'s leading axes in its result. With ``x`` batched it runs once on the physical array,
    along ``axis + 1``, and its result comes out batched."""

    def wrapper(x, axis, *args, **kwargs):
        if isinstance(x, BatchedArray):
            return BatchedArray(wrapper(x._p, axis + 1, *args, **kwargs), x._lv)
        return fn(x, axis, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def stack_host(fn):
    """Decorator for ``fn(x, *rest)``: a function of one array that treats ``x``'s leading axes
    as a stack of independent problems (a batch of matrices: LU, the matrix exponential) and
    returns an array or a tuple of arrays with those leading axes. With ``x`` batched it runs
    once on the physical array, and its results come out batched."""

    def wrapper(x, *args, **kwargs):
        if isinstance(x, BatchedArray):
            r = wrapper(x._p, *args, **kwargs)
            if isinstance(r, tuple):
                return tuple(BatchedArray(p, x._lv) for p in r)
            return BatchedArray(r, x._lv)
        return fn(x, *args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


_ndarray = np.ndarray


def _top(*groups) -> Level:
    """The highest level among the batched arrays in ``groups`` (iterables, lists nested once)."""
    best = None
    for group in groups:
        if group is None:
            continue
        if isinstance(group, BatchedArray):
            group = (group,)
        for x in group:
            if isinstance(x, BatchedArray):
                lv = x._lv
                if best is None or lv.key > best.key:
                    best = lv
            elif isinstance(x, (list, tuple)):
                for y in x:
                    if isinstance(y, BatchedArray) and (best is None or y._lv.key > best.key):
                        best = y._lv
    return best


def _mine(x, lv) -> bool:
    return isinstance(x, BatchedArray) and x._lv is lv


def _ndim(x) -> int:
    if isinstance(x, (BatchedArray, np.ndarray)):
        return x.ndim
    return np.ndim(x)


def _shape(x) -> tuple:
    if isinstance(x, (BatchedArray, np.ndarray)):
        return tuple(x.shape)
    return np.shape(x)


def _padded(x: BatchedArray, nd: int):
    """``x``'s physical array with size-1 axes after the batch axis up to logical rank ``nd``."""
    p = x._p
    k = nd - len(x.shape)
    if k <= 0:
        return p
    return p.reshape((p.shape[0],) + (1,) * k + x.shape)


def _full(x, lv: Level):
    """``x``'s physical array at ``lv``, broadcast along the batch axis if it is unbatched."""
    if _mine(x, lv):
        return x._p
    shape = _shape(x)
    return np.broadcast_to(x, (lv.size,) + tuple(shape))


def _axis1(axis, nd: int) -> int:
    """A logical axis (negative allowed) as the physical one."""
    if not -nd <= axis < max(nd, 1) and not (nd == 0 and axis in (0, -1)):
        raise np.exceptions.AxisError(axis, nd)
    return axis % nd + 1 if nd else 1


def _axes1(axis, nd: int):
    """Logical axis / axes / None (all) as physical."""
    if axis is None:
        return tuple(range(1, nd + 1))
    if isinstance(axis, (tuple, list)):
        return tuple(_axis1(a, nd) for a in axis)
    return _axis1(axis, nd)


def _internal_caller() -> bool:
    """Whether the code asking is a chainrule gate (not the user's function): the first frame
    out of here and Tensor's own methods."""
    f = sys._getframe(2)
    while f is not None and f.f_globals.get("__name__") == "chainrule.tensor":
        f = f.f_back
    return f is not None and f.f_globals.get("__name__", "").startswith("chainrule.")


def _inplace_message(values) -> str:
    """torch's error for writing batched ``values`` into an unbatched tensor in place: its
    ``add_`` and ``atan2_`` check the output's shape first, the others say "in-place"."""
    f = sys._getframe(2)
    target = op = None
    for _ in range(12):
        if f is None:
            break
        if f.f_globals.get("__name__") == "chainrule.autograd.inplace":
            if f.f_code.co_name == "_write" and target is None:
                target = f.f_locals.get("data")
            elif f.f_code.co_name == "method":
                op = f.f_locals.get("op_name")
                break
        f = f.f_back
    if op in ("add", "atan2", "arctan2") and target is not None:
        return (f"output with shape {list(_shape(target))} doesn't match the broadcast shape "
                f"{list(layout_shape(levels_of(values), _broadcast_shape(target, values)))}")
    return _INPLACE


def _broadcast_shape(*arrays) -> tuple:
    return tuple(np.broadcast_shapes(*[_shape(x) for x in arrays]))


def _caller_in(module: str, *functions: str) -> bool:
    f = sys._getframe(2)
    for _ in range(8):
        if f is None:
            return False
        if f.f_globals.get("__name__") == module and f.f_code.co_name in functions:
            return True
        f = f.f_back
    return False


def _gate() -> str:
    """The chainrule function (gate) that made the failing NumPy call, for error messages."""
    f = sys._getframe(2)
    while f is not None:
        mod = f.f_globals.get("__name__", "")
        if mod.startswith("chainrule.") and mod != __name__:
            name = getattr(f.f_code, "co_qualname", f.f_code.co_name)
            return f"{name} ({mod})"
        f = f.f_back
    return "an op"


# ---- ufuncs -------------------------------------------------------------------------------------
def _elementwise(lv, fn, inputs, kwargs, name: str, nout: int = 1):
    """One call of a broadcasting function on the physical arrays (size-1 axes aligned)."""
    if not kwargs:  # the common case, without the helpers' calls
        nd = 0
        for x in inputs:
            t = type(x)
            n = len(x.shape) if t is BatchedArray or t is _ndarray else np.ndim(x)
            if n > nd:
                nd = n
        args = []
        for x in inputs:
            if type(x) is BatchedArray and x._lv is lv:
                k = nd - len(x.shape)
                p = x._p
                args.append(p if k <= 0 else p.reshape((p.shape[0],) + (1,) * k + x.shape))
            else:
                args.append(x)
        r = fn(*args)
        if nout > 1:
            return tuple(BatchedArray(p, lv) for p in r)
        return BatchedArray(r, lv)
    nd = 0
    for x in inputs:
        n = _ndim(x)
        if n > nd:
            nd = n
    out = kwargs.get("out")
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            if o is not None and _ndim(o) > nd:
                nd = _ndim(o)
    args = [_padded(x, nd) if _mine(x, lv) else x for x in inputs]
    if out is not None:
        phys = []
        for o in outs:
            if o is None or _mine(o, lv):
                phys.append(None if o is None else _padded(o, nd))
            elif name in ("add", "arctan2"):  # torch's add_/atan2_ check the output's shape
                raise RuntimeError(
                    f"output with shape {list(_shape(o))} doesn't match the broadcast shape "
                    f"{list(_broadcast_layout(inputs))}")
            else:
                raise RuntimeError(_INPLACE)
        kwargs = dict(kwargs, out=tuple(phys) if isinstance(out, tuple) else phys[0])
    where = kwargs.get("where")
    if _mine(where, lv):
        kwargs = dict(kwargs, where=_padded(where, nd))
    r = fn(*args, **kwargs)
    if out is not None:
        return outs[0] if len(outs) == 1 else tuple(outs)
    if nout > 1:
        return tuple(_wrap(p, lv) for p in r)
    return _wrap(r, lv)


def _broadcast_layout(inputs) -> tuple:
    """The physical shape of the operands broadcast together: every level's batch size
    (outermost first), then the broadcast logical shape."""
    have = set()
    for x in inputs:
        have.update(levels_of(x))
    levels = sorted(have, key=lambda lv: lv.key)
    return layout_shape(tuple(levels), np.broadcast_shapes(*[_shape(x) for x in inputs]))


def _ufunc_reduce(lv, ufunc, a, axis=0, dtype=None, out=None, keepdims=False, **kw):
    if not _mine(a, lv):
        raise RuntimeError(_INPLACE)
    if out is not None:
        out = out[0] if isinstance(out, tuple) else out
        if not _mine(out, lv):
            raise RuntimeError(_INPLACE)
        kw["out"] = out._p
    w = kw.get("where")
    if _mine(w, lv):
        kw["where"] = _padded(w, a.ndim)
    r = ufunc.reduce(a._p, axis=_axes1(axis, a.ndim), dtype=dtype, keepdims=keepdims, **kw)
    return out if out is not None else _wrap(r, lv)


def _ufunc_accumulate(lv, ufunc, a, axis=0, dtype=None, out=None):
    return _wrap(ufunc.accumulate(a._p, axis=_axis1(axis, a.ndim), dtype=dtype), lv)


def _ufunc_reduceat(lv, ufunc, a, indices, axis=0, dtype=None, out=None):
    if _mine(indices, lv):
        raise RuntimeError(_DYNAMIC.format(name=ufunc.__name__ + ".reduceat"))
    return _wrap(ufunc.reduceat(a._p, indices, axis=_axis1(axis, a.ndim), dtype=dtype), lv)


def _ufunc_at(lv, ufunc, a, indices, b=None):
    if not _mine(a, lv):
        raise RuntimeError(_INPLACE)
    key, post = _phys_key(a, indices, lv)
    if b is None:
        ufunc.at(a._p, key)
        return None
    region = _region_shape(a, indices)
    ufunc.at(a._p, key, _value_phys(b, lv, region, post))
    return None


# ---- matrix products ----------------------------------------------------------------------------
def _matmul(lv, a, b, out=None, **kw):
    """``a @ b`` with NumPy's rules for 1-d operands, on the batch: a 1-d batched operand gets
    its matrix axis back; an unbatched matrix times a batch of (stacks of) rows is one GEMM."""
    mm = hooks.matmul
    if out is not None:
        raise NoBatchingRule("vmap: matmul with out= has no batching rule")
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    ma, mb = _mine(a, lv), _mine(b, lv)
    if ma and not mb and nb == 2 and not isinstance(b, BatchedArray):
        # rows times one matrix: fold the batch into the rows (one GEMM)
        p = a._p
        if p.shape[-1] == 1 and b.shape[0] == 1:  # k = 1: an outer product, a broadcast multiply
            return _wrap(p * b, lv)
        if na == 1:
            return _wrap(mm(p, b), lv)
        if not isinstance(p, BatchedArray) and (p.shape[-2] <= 16 or p.size < 1 << 16):
            rows = p.reshape(-1, p.shape[-1])  # few rows per example: all rows in one GEMM
            return _wrap(mm(rows, b).reshape(p.shape[:-1] + (b.shape[1],)), lv)
        return _wrap(mm(p, b), lv)  # many rows each: NumPy's own loop of GEMMs is faster
    if mb and not ma and na == 2 and not isinstance(a, BatchedArray) and nb <= 2:
        # one matrix times a batch of vectors / matrices: the batch joins the columns (one GEMM)
        p = b._p
        if a.shape[1] == 1 and b.shape[0] == 1:  # k = 1: an outer product, a broadcast multiply
            return _wrap(p * a.T if nb == 1 else a * p, lv)
        if nb == 1:
            return _wrap(mm(p, a.T), lv)
        if p.shape[-1] == 1:  # a batch of columns: one GEMM
            return _wrap(mm(p[..., 0], a.T)[..., None], lv)
        return _wrap(mm(a, p), lv)  # batch-first result; NumPy loops over the batch
    # general case: make the 1-d operands matrices, line up the stack axes, one stacked call
    pa = a._p if ma else a
    pb = b._p if mb else b
    if na == 1:
        pa = pa[..., None, :] if ma else pa[None, :]
    if nb == 1:
        pb = pb[..., :, None] if mb else pb[:, None]
    la, lb = max(na, 2), max(nb, 2)
    stack = max(la, lb)
    if ma:
        pa = pa.reshape((pa.shape[0],) + (1,) * (stack - la) + pa.shape[1:])
    if mb:
        pb = pb.reshape((pb.shape[0],) + (1,) * (stack - lb) + pb.shape[1:])
    if ma and mb and _outer_like(pa, pb):
        r = pa * pb  # (.., n, 1) @ (.., 1, m): an outer product, cheaper as a broadcast multiply
    else:
        r = mm(pa, pb) if not isinstance(pa, BatchedArray) and not isinstance(
            pb, BatchedArray) else np.matmul(pa, pb)
    if na == 1 and nb == 1:
        r = r[..., 0, 0]
    elif na == 1:
        r = r[..., 0, :]
    elif nb == 1:
        r = r[..., 0]
    return _wrap(r, lv)


def _outer_like(pa, pb) -> bool:
    return pa.shape[-1] == 1 and pb.shape[-2] == 1


def _dot(lv, a, b):
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        return np.multiply(a, b)
    if na <= 2 and nb <= 2:
        return _matmul(lv, a, b)
    raise NoBatchingRule("vmap: numpy.dot of arrays above 2-d has no batching rule")


# ---- indexing -----------------------------------------------------------------------------------
def _is_adv(k) -> bool:
    return isinstance(k, (BatchedArray, np.ndarray, list)) and not (
        isinstance(k, np.ndarray) and k.ndim == 0 and k.dtype.kind != "b")


def _key_parts(key, nd: int):
    """(key tuple with Ellipsis expanded, positions of advanced indices, whether they are next
    to each other, broadcast rank of the advanced indices, result dims before them)."""
    if not isinstance(key, tuple):
        key = (key,)
    used = 0
    for k in key:
        if k is None or k is Ellipsis:
            continue
        if isinstance(k, (np.ndarray, BatchedArray)) and k.dtype == bool:
            used += k.ndim
        else:
            used += 1
    parts = []
    for k in key:
        if k is Ellipsis:
            parts.extend([slice(None)] * (nd - used))
            used = nd
        else:
            parts.append(k)
    arrays = [i for i, k in enumerate(parts) if _is_adv(k)]
    if not arrays:
        return tuple(parts), [], True, 0, 0
    adv = [i for i, k in enumerate(parts)
           if _is_adv(k) or isinstance(k, (int, np.integer))]
    adjacent = adv == list(range(adv[0], adv[-1] + 1))
    shapes = []
    for i in adv:
        k = parts[i]
        if isinstance(k, (np.ndarray, BatchedArray)) and k.dtype == bool:
            shapes.append((-1,))  # a mask selects along one result axis
        else:
            shapes.append(_shape(k) if not isinstance(k, list) else np.shape(k))
    adv_nd = max(len(s) for s in shapes)
    pre = 0
    if adjacent:
        for k in parts[:adv[0]]:
            if k is None or isinstance(k, slice):
                pre += 1
    return tuple(parts), adv, adjacent, adv_nd, pre


def _phys_key(x: BatchedArray, key, lv: Level):
    """The physical key for ``x[key]`` and how to put the result's axes in logical order:
    None (already batch-first, logical order) or ``(adv_nd, pre)``: the batch axis sits after
    the advanced-index axes (move it first) / the advanced axes sit right after the batch axis
    and must move behind ``pre`` others."""
    parts, adv, adjacent, adv_nd, pre = _key_parts(key, x.ndim)
    batched_idx = [i for i in adv if _mine(parts[i], lv)]
    if not batched_idx:
        phys = (slice(None),) + parts
        if adv and not adjacent:
            return phys, ("batch_after", adv_nd)
        return phys, None
    for i in batched_idx:
        if parts[i].dtype == bool:
            raise RuntimeError(_DYNAMIC.format(name="boolean mask indexing"))
    B = lv.size
    ar = np.arange(B).reshape((B,) + (1,) * adv_nd)
    new = list(parts)
    for i in batched_idx:
        new[i] = _padded(parts[i], adv_nd)
    phys = (ar,) + tuple(new)
    if adjacent and adv[0] == 0:
        return phys, None
    if adjacent:
        return phys, ("adv_first", adv_nd, pre)
    return phys, None


def _fix(r, post):
    if post is None:
        return r
    if post[0] == "batch_after":
        return np.moveaxis(r, post[1], 0)
    _, adv_nd, pre = post
    order = [0] + list(range(1 + adv_nd, 1 + adv_nd + pre)) + list(range(1, 1 + adv_nd))
    order += list(range(1 + adv_nd + pre, r.ndim))
    return r.transpose(order)


def _unfix_order(post, nd: int):
    """The axis order that takes a logical-order batch-first array to the physical region's."""
    if post is None:
        return None
    if post[0] == "batch_after":
        k = post[1]
        return list(range(1, k + 1)) + [0] + list(range(k + 1, nd + 1))
    _, adv_nd, pre = post
    order = [0] + list(range(1 + pre, 1 + pre + adv_nd)) + list(range(1, 1 + pre))
    return order + list(range(1 + pre + adv_nd, nd + 1))


def _getitem(x: BatchedArray, key):
    lv = x._lv
    if isinstance(key, BatchedArray) and key._lv.key > lv.key:
        return _getitem_higher(x, key)
    if isinstance(key, tuple) and any(isinstance(k, BatchedArray) and k._lv.key > lv.key
                                      for k in key):
        return _getitem_higher(x, key)
    phys, post = _phys_key(x, key, lv)
    return _wrap(_fix(x._p[phys], post), lv)


def _getitem_higher(x, key):
    """x (lower level) indexed by a batched key of a higher level: x acts as unbatched there."""
    lv = _top((key,) if not isinstance(key, tuple) else key)
    return _index_unbatched(x, key, lv)


def _index_unbatched(x, key, lv):
    """``x[key]`` for an array unbatched at ``lv`` and a key batched there."""
    xb = BatchedArray(np.broadcast_to(x, (lv.size,) + _shape(x)) if not isinstance(x, BatchedArray)
                      else _broadcast_batched(x, lv), lv)
    return _getitem(xb, key)


def _broadcast_batched(x, lv):
    return np.broadcast_to(x, (lv.size,) + tuple(x.shape))


def _region_shape(x, key) -> tuple:
    """The logical shape of ``x[key]``."""
    dummy = np.broadcast_to(np.empty((), dtype=np.int8), x.shape)
    k = key if isinstance(key, tuple) else (key,)
    k = tuple(np.zeros(v.shape, np.intp) if isinstance(v, BatchedArray) and v.dtype != bool
              else v for v in k)
    return dummy[k].shape


def _value_phys(value, lv, region: tuple, post):
    """``value`` laid out like the physical region ``x._p[phys key]``."""
    nd = len(region)
    if _mine(value, lv):
        v = _padded(value, nd)
    else:
        if post is None:
            return value
        v = np.broadcast_to(value, region)[None]
    order = _unfix_order(post, nd)
    if order is None:
        return v
    v = np.broadcast_to(v, (v.shape[0],) + tuple(region)) if v.ndim == nd + 1 else v
    return v.transpose(order)


def _setitem(x: BatchedArray, key, value) -> None:
    lv = x._lv
    if isinstance(value, BatchedArray) and value._lv.key > lv.key:
        raise RuntimeError(_INPLACE)
    phys, post = _phys_key(x, key, lv)
    region = _region_shape(x, key)
    x._p[phys] = _value_phys(value, lv, region, post)


# ---- functions ----------------------------------------------------------------------------------
_FUNCS: dict = {}
_DYNAMIC_FUNCS = {np.nonzero, np.flatnonzero, np.argwhere, np.unique,
                  np.extract, np.compress, np.trim_zeros}


def rule(*funcs):
    def register(fn):
        for f in funcs:
            _FUNCS[f] = fn
        return fn

    return register


def _reduction(func, flatten_none: bool = False, default_axis=None):
    def r(lv, a, axis=default_axis, *args, **kw):
        if not _mine(a, lv):
            a = BatchedArray(_full(a, lv), lv)
        out = kw.pop("out", None)
        if out is not None:
            raise NoBatchingRule(f"vmap: numpy.{func.__name__} with out= has no batching rule")
        w = kw.get("where")
        if _mine(w, lv):
            kw["where"] = _padded(w, a.ndim)
        p = a._p
        if axis is None and flatten_none:
            res = func(p.reshape(p.shape[0], -1), 1, *args, **kw)
        else:
            res = func(p, _axes1(axis, a.ndim), *args, **kw)
        out = _wrap(res, lv)
        if func in (np.any, np.all):
            out._agg = func.__name__
        return out

    return r


for _f in (np.sum, np.prod, np.max, np.min, np.amax, np.amin, np.mean, np.var, np.std, np.any,
           np.all, np.nansum, np.nanmax, np.nanmin, np.nanmean, np.count_nonzero, np.ptp,
           np.median):
    _FUNCS[_f] = _reduction(_f)
for _f in (np.argmax, np.argmin, np.cumsum, np.cumprod, np.nanargmax, np.nanargmin):
    _FUNCS[_f] = _reduction(_f, flatten_none=True)
for _f in (np.sort, np.argsort):
    _FUNCS[_f] = _reduction(_f, flatten_none=True, default_axis=-1)


def dynamic_shape_error(name: str) -> RuntimeError:
    """torch.func's error for an op whose output size depends on the values (``aten::name``)."""
    return RuntimeError(_DYNAMIC.format(name=name))


def _plain_rows(x, lv: Level):
    """``x``'s physical array at ``lv`` (broadcast if unbatched); no lower levels allowed."""
    p = _full(x, lv)
    if isinstance(p, BatchedArray) or (isinstance(x, BatchedArray)
                                       and isinstance(x._p, BatchedArray)):
        raise NoBatchingRule(f"vmap: {_gate()} calls numpy.bincount inside nested vmaps, "
                             "which has no batching rule")
    return p


@rule(np.bincount)
def _bincount(lv, x, weights=None, minlength=0):
    """Counts per example in one call (each example's values offset by its row): torch.func
    runs bincount per example and stacks the results, which fails when their lengths differ
    (``size`` depends on the largest value), with torch.stack's error."""
    if _mine(x, lv):
        p = _plain_rows(x, lv)
        tops = (p.max(axis=1) + 1) if p.shape[1] else np.zeros(p.shape[0], np.intp)
        sizes = np.maximum(tops, minlength)
        bad = np.nonzero(sizes != sizes[0])[0]
        if bad.size:
            k = int(bad[0])
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"[{int(sizes[0])}] at entry 0 and [{int(sizes[k])}] at entry {k}")
        size = int(sizes[0]) if sizes.size else minlength
    else:
        p = np.broadcast_to(np.asarray(x), (lv.size,) + _shape(x))
        size = max(int(p.max()) + 1 if p.size else 0, minlength)
    w = None if weights is None else _plain_rows(weights, lv).reshape(-1)
    flat = (p + (np.arange(lv.size) * size)[:, None]).reshape(-1)
    out = np.bincount(flat, weights=w, minlength=lv.size * size)
    return _wrap(out.reshape(lv.size, size), lv)


@rule(np.searchsorted)
def _searchsorted(lv, a, v, side="left", sorter=None):
    """Insertion points in a 1-d sorted ``a``: one NumPy call when only the values are batched;
    a batched ``a`` counts, per example, the elements before each value (NaN sorts last)."""
    if sorter is not None:
        a = np.take_along_axis(a, sorter, -1)
    if not _mine(a, lv):
        return _wrap(np.searchsorted(a, _full(v, lv) if _mine(v, lv) else v, side=side), lv)
    pa = a._p                                   # (B, n)
    nd = _ndim(v)
    rows = pa.reshape((pa.shape[0],) + (1,) * nd + (pa.shape[-1],))
    vals = _full(v, lv)[..., None]              # (B, *v.shape, 1)
    with np.errstate(invalid="ignore"):
        if side == "right":
            before = (rows <= vals) | np.isnan(vals)
        else:
            before = (rows < vals) | (np.isnan(vals) & ~np.isnan(rows))
    out = before.sum(-1).astype(np.intp)
    return _wrap(out, lv)


@rule(np.diff)
def _diff(lv, a, n=1, axis=-1, **kw):
    return _wrap(np.diff(_full(a, lv), n, axis=_axis1(axis, _ndim(a)), **kw), lv)


@rule(np.unravel_index)
def _unravel(lv, indices, shape, order="C"):
    return tuple(_wrap(p, lv) for p in np.unravel_index(_full(indices, lv), shape, order))


@rule(np.shape)
def _np_shape(lv, a):
    return tuple(a.shape)


@rule(np.ndim)
def _np_ndim(lv, a):
    return a.ndim


@rule(np.size)
def _np_size(lv, a, axis=None):
    return a.size if axis is None else a.shape[axis]


@rule(np.result_type)
def _result_type(lv, *args):
    return np.result_type(*[a.dtype if isinstance(a, BatchedArray) else a for a in args])


@rule(np.may_share_memory, np.shares_memory)
def _share(lv, a, b, max_work=None):
    pa = a._p if isinstance(a, BatchedArray) else a
    pb = b._p if isinstance(b, BatchedArray) else b
    return np.may_share_memory(_deep(pa), _deep(pb))


@rule(np.copy)
def _copy(lv, a, order="K", subok=False):
    return _wrap(_full(a, lv).copy(), lv)


@rule(np.ascontiguousarray)
def _contig(lv, a, dtype=None, **kw):
    return _wrap(np.ascontiguousarray(_full(a, lv), dtype=dtype), lv)


def _like(maker):
    def r(lv, a, *args, dtype=None, order="K", subok=True, shape=None, **kw):
        shape = _shape(a) if shape is None else ((shape,) if isinstance(shape, int) else
                                                 tuple(shape))
        dt = a.dtype if dtype is None else dtype
        phys_like = a._p if _mine(a, lv) else a  # batched at the lower levels too, if a is
        p = maker(phys_like, *args, dtype=dt, shape=(lv.size,) + shape)
        return _wrap(p, lv)

    return r


for _f in (np.zeros_like, np.ones_like, np.empty_like, np.full_like):
    _FUNCS[_f] = _like(_f)


@rule(np.where)
def _where(lv, cond, x=None, y=None):
    if x is None and y is None:
        raise RuntimeError(_DYNAMIC.format(name="nonzero"))
    return _elementwise(lv, np.where, (cond, x, y), {}, "where")


def _unary_rule(func):
    def r(lv, x, out=None):
        return _elementwise(lv, func, (x,), {} if out is None else {"out": out},
                            func.__name__)

    return r


for _f in (np.isneginf, np.isposinf, np.real_if_close, np.sinc, np.i0):
    _FUNCS[_f] = _unary_rule(_f)


@rule(np.clip)
def _clip(lv, a, a_min=None, a_max=None, out=None, **kw):
    kw = dict(kw)
    if out is not None:
        kw["out"] = out
    return _elementwise(lv, np.clip, (a, a_min, a_max), kw, "clip")


@rule(np.isclose)
def _isclose(lv, a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return _elementwise(lv, lambda x, y: np.isclose(x, y, rtol, atol, equal_nan), (a, b), {},
                        "isclose")


@rule(np.round, np.around)
def _round(lv, a, decimals=0, out=None):
    kw = {} if out is None else {"out": out}
    return _elementwise(lv, lambda x, **k: np.round(x, decimals, **k), (a,), kw, "round")


@rule(np.nan_to_num)
def _nan_to_num(lv, x, copy=True, nan=0.0, posinf=None, neginf=None):
    return _wrap(np.nan_to_num(x._p, copy=copy, nan=nan, posinf=posinf, neginf=neginf), lv)


@rule(np.copyto)
def _copyto(lv, dst, src, casting="same_kind", where=True):
    if not _mine(dst, lv):
        raise RuntimeError(_INPLACE)
    nd = max(dst.ndim, _ndim(src))
    s = _padded(src, nd) if _mine(src, lv) else src
    w = _padded(where, nd) if _mine(where, lv) else where
    np.copyto(dst._p, s, casting=casting, where=w)


@rule(np.reshape)
def _reshape(lv, a, newshape=None, order="C", *, shape=None, copy=None):
    s = shape if shape is not None else newshape
    s = (s,) if isinstance(s, (int, np.integer)) else tuple(s)
    return _wrap(_full(a, lv).reshape((lv.size,) + s, order=order), lv)


@rule(np.ravel)
def _ravel(lv, a, order="C"):
    return _wrap(_full(a, lv).reshape(lv.size, -1), lv)


@rule(np.transpose)
def _transpose(lv, a, axes=None):
    nd = _ndim(a)
    axes = tuple(range(nd - 1, -1, -1)) if axes is None else tuple(axes)
    return _wrap(_full(a, lv).transpose((0,) + tuple(_axis1(x, nd) for x in axes)), lv)


@rule(np.swapaxes)
def _swapaxes(lv, a, axis1, axis2):
    nd = _ndim(a)
    return _wrap(np.swapaxes(_full(a, lv), _axis1(axis1, nd), _axis1(axis2, nd)), lv)


@rule(np.moveaxis)
def _moveaxis(lv, a, source, destination):
    nd = _ndim(a)
    src = _axes1(source, nd)
    dst = _axes1(destination, nd)
    return _wrap(np.moveaxis(_full(a, lv), src, dst), lv)


@rule(np.expand_dims)
def _expand_dims(lv, a, axis):
    nd = _ndim(a)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out_nd = nd + len(axes)
    return _wrap(np.expand_dims(_full(a, lv), tuple(_axis1(x, out_nd) for x in axes)), lv)


@rule(np.squeeze)
def _squeeze(lv, a, axis=None):
    shape = _shape(a)
    if axis is None:
        axes = tuple(i + 1 for i, s in enumerate(shape) if s == 1)
    else:
        axes = _axes1(axis, len(shape))
        axes = axes if isinstance(axes, tuple) else (axes,)
    return _wrap(np.squeeze(_full(a, lv), axes), lv)


@rule(np.broadcast_to)
def _broadcast_to(lv, a, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not _mine(a, lv):
        return _wrap(np.broadcast_to(a, (lv.size,) + shape), lv)
    return _wrap(np.broadcast_to(_padded(a, len(shape)), (lv.size,) + shape), lv)


@rule(np.broadcast_arrays)
def _broadcast_arrays(lv, *args, subok=False):
    shape = np.broadcast_shapes(*[_shape(a) for a in args])
    return [_broadcast_to(lv, a, shape) for a in args]


@rule(np.atleast_1d)
def _atleast_1d(lv, *arys):
    out = [a if _ndim(a) >= 1 else a.reshape(1) for a in arys]
    return out[0] if len(out) == 1 else out


@rule(np.flip)
def _flip(lv, m, axis=None):
    return _wrap(np.flip(_full(m, lv), _axes1(axis, _ndim(m))), lv)


@rule(np.fliplr)
def _fliplr(lv, m):
    return _flip(lv, m, 1)


@rule(np.flipud)
def _flipud(lv, m):
    return _flip(lv, m, 0)


@rule(np.roll)
def _roll(lv, a, shift, axis=None):
    p = _full(a, lv)
    if axis is None:
        return _wrap(np.roll(p.reshape(lv.size, -1), shift, 1).reshape(p.shape), lv)
    return _wrap(np.roll(p, shift, _axes1(axis, _ndim(a))), lv)


@rule(np.tile)
def _tile(lv, a, reps):
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    nd = max(len(reps), _ndim(a))
    reps = (1,) * (nd - len(reps)) + reps
    p = _padded(a, nd) if _mine(a, lv) else _full(a, lv).reshape(
        (lv.size,) + (1,) * (nd - _ndim(a)) + _shape(a))
    return _wrap(np.tile(p, (1,) + reps), lv)


@rule(np.repeat)
def _repeat(lv, a, repeats, axis=None):
    if _mine(repeats, lv):
        raise RuntimeError(_DYNAMIC.format(name="repeat"))
    p = _full(a, lv)
    if axis is None:
        return _wrap(np.repeat(p.reshape(lv.size, -1), repeats, 1), lv)
    return _wrap(np.repeat(p, repeats, _axis1(axis, _ndim(a))), lv)


@rule(np.concatenate)
def _concatenate(lv, arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    arrays = list(arrays)
    if out is not None:
        raise NoBatchingRule("vmap: numpy.concatenate with out= has no batching rule")
    if axis is None:
        phys = [_full(a, lv).reshape(lv.size, -1) for a in arrays]
        return _wrap(np.concatenate(phys, 1, dtype=dtype, casting=casting), lv)
    nd = _ndim(arrays[0])
    phys = [_full(a, lv) for a in arrays]
    return _wrap(np.concatenate(phys, _axis1(axis, nd), dtype=dtype, casting=casting), lv)


@rule(np.stack)
def _stack(lv, arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    arrays = list(arrays)
    nd = _ndim(arrays[0]) + 1
    phys = [_full(a, lv) for a in arrays]
    return _wrap(np.stack(phys, _axis1(axis, nd), dtype=dtype, casting=casting), lv)


def _split(func):
    def r(lv, ary, indices_or_sections, axis=0):
        parts = func(_full(ary, lv), indices_or_sections, _axis1(axis, _ndim(ary)))
        return [_wrap(p, lv) for p in parts]

    return r


_FUNCS[np.split] = _split(np.split)
_FUNCS[np.array_split] = _split(np.array_split)


@rule(np.pad)
def _pad(lv, array, pad_width, mode="constant", **kw):
    nd = _ndim(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (nd, 2)) if nd else \
        np.zeros((0, 2), np.int64)
    widths = [(0, 0)] + [tuple(int(v) for v in w) for w in widths]
    for k in ("constant_values", "end_values"):
        if _mine(kw.get(k), lv):
            raise NoBatchingRule(f"vmap: numpy.pad with batched {k} has no batching rule")
    return _wrap(np.pad(_full(array, lv), widths, mode=mode, **kw), lv)


def _tri(func):
    def r(lv, m, k=0):
        p = _full(m, lv)
        if _ndim(m) == 1:
            n = p.shape[1]
            p = np.broadcast_to(p[:, None, :], (lv.size, n, n))
        return _wrap(func(p, k), lv)

    return r


_FUNCS[np.tril] = _tri(np.tril)
_FUNCS[np.triu] = _tri(np.triu)


@rule(np.diag)
def _diag(lv, v, k=0):
    p = _full(v, lv)
    if _ndim(v) == 2:
        return _wrap(np.diagonal(p, k, axis1=1, axis2=2).copy(), lv)
    if _ndim(v) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = p.shape[1]
    size = n + abs(k)
    out = np.zeros((lv.size, size, size), dtype=p.dtype)
    idx = np.arange(n)
    out[:, idx + max(-k, 0), idx + max(k, 0)] = p
    return _wrap(out, lv)


@rule(np.diagonal)
def _diagonal(lv, a, offset=0, axis1=0, axis2=1):
    nd = _ndim(a)
    return _wrap(np.diagonal(_full(a, lv), offset, _axis1(axis1, nd), _axis1(axis2, nd)), lv)


@rule(np.trace)
def _trace(lv, a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    nd = _ndim(a)
    return _wrap(np.trace(_full(a, lv), offset, _axis1(axis1, nd), _axis1(axis2, nd), dtype),
                 lv)


@rule(np.outer)
def _outer(lv, a, b, out=None):
    pa = a._p.reshape(lv.size, -1, 1) if _mine(a, lv) else np.ravel(a)[:, None]
    pb = b._p.reshape(lv.size, 1, -1) if _mine(b, lv) else np.ravel(b)[None, :]
    return _wrap(pa * pb, lv)


@rule(np.dot)
def _np_dot(lv, a, b, out=None):
    return _dot(lv, a, b)


@rule(np.matmul)
def _np_matmul(lv, a, b, out=None, **kw):
    return _matmul(lv, a, b, out=out)


@rule(np.inner)
def _inner(lv, a, b):
    if _ndim(a) <= 1 and _ndim(b) <= 1:
        return np.sum(np.multiply(a, b), -1) if _ndim(a) else np.multiply(a, b)
    raise NoBatchingRule("vmap: numpy.inner above 1-d has no batching rule")


@rule(np.einsum)
def _einsum(lv, subscripts, *operands, **kw):
    if not isinstance(subscripts, str):
        raise NoBatchingRule("vmap: numpy.einsum in its sublist form has no batching rule")
    eq = subscripts.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "").replace(".", "")
        out = ("..." if "..." in lhs else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = lhs.split(",")
    free = next(c for c in string.ascii_letters if c not in eq)
    new_terms, phys = [], []
    for t, op in zip(terms, operands):
        if _mine(op, lv):
            new_terms.append(free + t)
            phys.append(op._p)
        else:
            new_terms.append(t)
            phys.append(op)
    r = np.einsum(",".join(new_terms) + "->" + free + out, *phys, **kw)
    return _wrap(r, lv)


@rule(np.take_along_axis)
def _take_along_axis(lv, arr, indices, axis=-1):
    if axis is None:
        pa = _full(arr, lv).reshape(lv.size, -1)
        return _wrap(np.take_along_axis(pa, _full(indices, lv), 1), lv)
    nd = _ndim(arr)
    return _wrap(np.take_along_axis(_full(arr, lv), _full(indices, lv), _axis1(axis, nd)), lv)


@rule(np.put_along_axis)
def _put_along_axis(lv, arr, indices, values, axis):
    if not _mine(arr, lv):
        raise RuntimeError(_INPLACE)
    nd = arr.ndim
    v = _padded(values, nd) if _mine(values, lv) else values
    np.put_along_axis(arr._p, _full(indices, lv), v, _axis1(axis, nd))


@rule(np.take)
def _take(lv, a, indices, axis=None, out=None, mode="raise"):
    if axis is None:
        return _getitem(BatchedArray(_full(a, lv).reshape(lv.size, -1), lv), indices) \
            if not _mine(indices, lv) else _index_unbatched_take(lv, a, indices)
    key = (slice(None),) * (axis % _ndim(a)) + (indices,)
    a = a if _mine(a, lv) else BatchedArray(_full(a, lv), lv)
    return _getitem(a, key)


def _index_unbatched_take(lv, a, indices):
    flat = BatchedArray(_full(a, lv).reshape(lv.size, -1), lv)
    return _getitem(flat, indices)


@rule(np.atleast_2d)
def _atleast_2d(lv, *arys):
    raise NoBatchingRule("vmap: numpy.atleast_2d has no batching rule")


def _stacked(func, nin: int = 1):
    """A function of the last two axes (stacks allowed): one call on the physical arrays."""
    def r(lv, *args, **kw):
        phys = [_full(a, lv) if i < nin else a for i, a in enumerate(args)]
        res = func(*phys, **kw)
        if isinstance(res, tuple):
            return type(res)(*[_wrap(x, lv) for x in res]) if hasattr(res, "_fields") else \
                tuple(_wrap(x, lv) for x in res)
        return _wrap(res, lv)

    return r


for _f in (np.linalg.inv, np.linalg.det, np.linalg.slogdet, np.linalg.cholesky, np.linalg.eigh,
           np.linalg.eigvalsh, np.linalg.svd, np.linalg.qr, np.linalg.pinv, np.linalg.eig,
           np.linalg.eigvals, np.linalg.matrix_power):
    _FUNCS[_f] = _stacked(_f)


@rule(np.linalg.solve)
def _solve(lv, a, b):
    pa = _full(a, lv)
    vec = _ndim(b) == 1
    pb = _full(b, lv)
    if vec:
        pb = pb[..., None]
    else:
        nd = max(_ndim(a), _ndim(b))
        pa = pa.reshape((lv.size,) + (1,) * (nd - _ndim(a)) + pa.shape[1:])
        pb = pb.reshape((lv.size,) + (1,) * (nd - _ndim(b)) + pb.shape[1:])
    r = np.linalg.solve(pa, pb)
    return _wrap(r[..., 0] if vec else r, lv)


@rule(np.linalg.norm)
def _linalg_norm(lv, x, ord=None, axis=None, keepdims=False):
    nd = _ndim(x)
    p = _full(x, lv)
    if axis is None:
        if ord is None:
            return _wrap(np.sqrt(np.sum(np.abs(p.reshape(lv.size, -1)) ** 2, axis=1,
                                        keepdims=False)).reshape(
                (lv.size,) + ((1,) * nd if keepdims else ())), lv)
        axis = tuple(range(nd)) if nd <= 2 else None
    return _wrap(np.linalg.norm(p, ord, _axes1(axis, nd), keepdims), lv)


# ---- the array module of a batched array -------------------------------------------------------
class _Namespace:
    """What ``devices.xp_of(batched)`` gives: NumPy (or CuPy), except that new arrays made "on
    the device of" a batched array are batched like it (a gate that fills ``xp.zeros(shape)``
    with batched values then writes into a batched buffer)."""

    __slots__ = ("_like", "_xp")

    def __init__(self, like: BatchedArray, xp) -> None:
        self._like = like
        self._xp = xp

    def __getattr__(self, name: str):
        return getattr(self._xp, name)

    def _make(self, maker: str, shape, *args, **kw):
        like = self._like
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        inner = like._p
        full = (like._lv.size,) + shape
        if isinstance(inner, BatchedArray):
            p = getattr(namespace(inner), maker)(full, *args, **kw)
        else:
            p = getattr(self._xp, maker)(full, *args, **kw)
        return BatchedArray(p, like._lv)

    def zeros(self, shape, dtype=float, **kw):
        return self._make("zeros", shape, dtype, **kw)

    def ones(self, shape, dtype=float, **kw):
        return self._make("ones", shape, dtype, **kw)

    def empty(self, shape, dtype=float, **kw):
        return self._make("empty", shape, dtype, **kw)

    def full(self, shape, fill_value, dtype=None, **kw):
        if _mine(fill_value, self._like._lv):
            raise NoBatchingRule("vmap: full() with a batched fill value has no batching rule")
        return self._make("full", shape, fill_value, dtype, **kw)

    @property
    def lib(self):
        return _Lib(self._xp)

    def ascontiguousarray(self, a, dtype=None, **kw):
        if isinstance(a, BatchedArray):
            return _contig(a._lv, a, dtype)
        return self._xp.ascontiguousarray(a, dtype=dtype, **kw)

    def asarray(self, a, dtype=None, **kw):
        if isinstance(a, BatchedArray):
            return a if dtype is None else a.astype(dtype, copy=False)
        return self._xp.asarray(a, dtype=dtype, **kw)


class _Lib:
    """``xp.lib`` for batched arrays: strided views keep the batch axis (its own stride)."""

    __slots__ = ("_xp",)

    def __init__(self, xp) -> None:
        self._xp = xp

    def __getattr__(self, name: str):
        return getattr(self._xp.lib, name)

    @property
    def stride_tricks(self):
        return self

    def as_strided(self, x, shape=None, strides=None, **kw):
        if not isinstance(x, BatchedArray):
            return self._xp.lib.stride_tricks.as_strided(x, shape, strides, **kw)
        p = x._p
        inner = namespace(p).lib if isinstance(p, BatchedArray) else self._xp.lib.stride_tricks
        return BatchedArray(inner.as_strided(p, (p.shape[0],) + tuple(shape),
                                             (p.strides[0],) + tuple(strides), **kw), x._lv)


def namespace(a: BatchedArray):
    return _Namespace(a, hooks.xp_of(_deep(a._p)))


# ---- gradients leaving a level -------------------------------------------------------------------
def conform(g, shape):
    """Gradient ``g`` for a value of logical ``shape`` (a :class:`LevelShape` if that value was
    batched): summed over each level ``g`` is batched at that the value was not, unless that
    level is still running (inside ``vmap(grad(f))`` the per-example gradients are the point;
    after a ``vmap`` has returned, e.g. ``grad(vmap(f))``, a value shared by every example
    gets the sum over the batch, as broadcasting would give it)."""
    data = g if type(g) is BatchedArray else getattr(g, "_data", g)
    if type(data) is not BatchedArray:
        return g
    have = data.shape.levels
    keep = getattr(shape, "levels", ())
    if have is keep:  # batched like the value (one level: the level's own tuple)
        return g
    live = _tls.levels
    if len(have) == 1 and have[0] in live:
        return g
    dead = [lv for lv in have if lv not in keep and lv not in live]
    if not dead:
        return g
    if data is g:
        for lv in dead:
            g = sum_level(g, lv)
        return g
    for lv in dead:
        g = hooks.sum_level_gate.apply(g, lv)
    return g


def sum_level(x, lv: Level):
    """``x`` summed over the batch of level ``lv`` (wherever in its nesting that level is)."""
    if not isinstance(x, BatchedArray):
        return x
    if x._lv is lv:
        return x._p.sum(axis=0)
    if lv not in x.shape.levels:
        return x
    return BatchedArray(_sum_inner(x._p, lv), x._lv)


def _sum_inner(p, lv):
    """Sum level ``lv`` out of ``p`` (the physical array of a higher level: its logical axis 0
    is that higher level's batch, which stays)."""
    if p._lv is lv:
        return p._p.sum(axis=0)
    return BatchedArray(_sum_inner(p._p, lv), p._lv)


def expand_level(x, lv: Level, shape_levels: tuple):
    """The adjoint of :func:`sum_level`: ``x`` broadcast along a new batch of level ``lv``."""
    if isinstance(x, BatchedArray) and x._lv.key > lv.key:
        return BatchedArray(_expand_inner(x._p, lv), x._lv)
    return BatchedArray(np.broadcast_to(x, (lv.size,) + _shape(x)), lv)


def _expand_inner(p, lv):
    if isinstance(p, BatchedArray) and p._lv.key > lv.key:
        return BatchedArray(_expand_inner(p._p, lv), p._lv)
    return BatchedArray(np.broadcast_to(p, (lv.size,) + _shape(p)), lv)


# ---- moving between batched and plain arrays -----------------------------------------------------
def batch(p, dim: int, lv: Level) -> BatchedArray:
    """Physical array ``p`` with its batch along ``dim`` as a batched array at ``lv``."""
    if dim != 0:
        p = np.moveaxis(p, dim, 0)
    return BatchedArray(p, lv)


def unbatch(x, lv: Level, dim: int):
    """The physical array of ``x`` at ``lv`` with the batch axis at ``dim`` (``x`` unbatched at
    ``lv``: broadcast along a new axis there)."""
    if _mine(x, lv):
        p = x._p
    else:
        p = np.broadcast_to(x, (lv.size,) + _shape(x))
    if dim != 0:
        p = np.moveaxis(p, 0, dim)
    return p
