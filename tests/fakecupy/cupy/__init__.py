"""A CPU stand-in for CuPy, as strict as CuPy, for testing chainrule's GPU paths without a GPU.

Put ``tests/fakecupy`` on ``PYTHONPATH`` (``make test-fakecuda``) and ``cr.cuda.is_available()``
becomes True on a "GPU" whose arrays are NumPy arrays in a wrapper. The wrapper refuses what
CuPy refuses, so code that works here is likely to work on a real GPU:

* no implicit conversion to NumPy (``np.asarray(x)`` raises TypeError, as in CuPy);
* a NumPy array mixed with a device array in an operator, ufunc, index or CuPy function raises
  TypeError ("Unsupported type"), as in CuPy;
* only the functions, keyword arguments, methods and ufuncs that CuPy 14.2 has exist
  (``cupy_api.json`` was read off a real CuPy install);
* reductions and integer indexing give 0-d device arrays, never host scalars;
* every device-to-host read (``get``, ``item``, ``float``, ``bool``, ``tolist``, boolean-mask
  indexing, ``nonzero``) is counted in ``cupy.host_reads`` so tests can assert that a training
  step never syncs behind the user's back;
* hand-written CUDA kernels (``ElementwiseKernel``, ``RawKernel``, ``fuse``...) cannot run and
  raise ``NotImplementedError`` when built, so callers must keep a plain-array path.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import types

import numpy as _np

IS_FAKE = True
# FAKECUPY_DEVICES=N: N stand-in GPUs (default 1); arrays remember the device current when made
DEVICE_COUNT = builtins.int(os.environ.get("FAKECUPY_DEVICES", "1"))
_current_device = [0]
__version__ = "14.2.0"
host_reads = 0
launches = 0  # kernels a GPU would launch (approximate: every op that makes or writes an array)
_VIEWS = frozenset({"reshape", "transpose", "swapaxes", "squeeze", "expand_dims", "broadcast_to",
                    "atleast_1d", "atleast_2d", "atleast_3d", "moveaxis", "view", "ravel",
                    "as_strided", "sliding_window_view", "diagonal", "shape", "ndim", "result_type",
                    "can_cast", "broadcast_shapes", "get_array_module", "asnumpy", "split",
                    "array_split", "unravel_index"})
launch_log = None  # a list to record (kernel, "file:line" of the first chainrule caller)


def _count_launch(name):
    global launches
    if name in _VIEWS:
        return
    launches += 1
    if launch_log is not None:  # a site string: keeping frames would keep their arrays alive
        frame = sys._getframe(2)
        while frame is not None and "chainrule" not in frame.f_code.co_filename:
            frame = frame.f_back
        site = "?" if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"
        launch_log.append((name, site))

_API = json.load(open(os.path.join(os.path.dirname(__file__), "..", "cupy_api.json")))
_NDARRAY_NAMES = frozenset(_API["ndarray"])
_SCALARS = (builtins.int, builtins.float, builtins.complex, builtins.bool, _np.generic)


def _count_read():
    global host_reads
    host_reads += 1
    if os.environ.get("FAKECUPY_TRACE_READS"):  # where did the host read the device?
        import traceback

        traceback.print_stack(limit=8)


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


def _wrap(r):
    if isinstance(r, _np.ndarray):
        out = object.__new__(ndarray)
        out._a = r
        out._dev = _current_device[0]  # CuPy makes new arrays on the current device
        return out
    if isinstance(r, _np.generic):
        return _wrap(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    if isinstance(r, list):
        return [_wrap(x) for x in r]
    return r


def _unwrap(x, allow_host=False):
    """Device wrappers to their NumPy arrays; a NumPy array here is a host array CuPy refuses."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        if allow_host:
            return x
        raise _unsupported(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    return x


def _unwrap_index(key):
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    if isinstance(key, ndarray):
        if key.dtype == bool:
            _count_read()  # a mask's true count must come to the host
        return key._a
    if isinstance(key, _np.ndarray):
        raise _unsupported(key)
    if isinstance(key, list):
        return _np.asarray(key)
    return key


class ndarray:
    """A device array: a NumPy array the host may not read implicitly."""

    __slots__ = ("_a", "_dev")
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = _np.empty(shape, dtype, order=order)
        self._dev = _current_device[0]

    # -- attributes ----------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    _c_contiguous = property(lambda self: self._a.flags.c_contiguous)  # CuPy's C-level flag
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(self._a.mT))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))
    base = property(lambda self: None if self._a.base is None else _wrap(self._a.base))
    device = property(lambda self: cuda.Device(self._dev))

    def __getattr__(self, name):
        if name not in _NDARRAY_NAMES or name.startswith("_"):
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            if not (name == "astype" and args and self._a.dtype == _np.dtype(args[0])
                    and kwargs.get("copy", True) is False):
                _count_launch(name)
            return _wrap(method(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
        return call

    # -- host reads ----------------------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        _count_read()
        return _np.array(self._a, order=order)

    def item(self, *args):
        _count_read()
        return self._a.item(*args)

    def tolist(self):
        _count_read()
        return self._a.tolist()

    def __float__(self):
        _count_read()
        return builtins.float(self._a)

    def __int__(self):
        _count_read()
        return builtins.int(self._a)

    def __complex__(self):
        _count_read()
        return builtins.complex(self._a)

    def __bool__(self):
        _count_read()
        return builtins.bool(self._a)

    def nonzero(self):
        _count_read()
        return _wrap(self._a.nonzero())

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` "
                        "to construct a NumPy array explicitly.")

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(x) for x in self._a)

    def copy(self, order="C"):  # to the current device, as CuPy's (also across devices)
        _count_launch("copy")
        return _wrap(self._a.copy(order=order))

    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    def __reduce__(self):
        return (_wrap, (self._a.copy(),))

    def set(self, arr, stream=None):
        self._a[...] = arr

    # -- indexing ------------------------------------------------------------------------------
    def __getitem__(self, key):
        parts = key if isinstance(key, tuple) else (key,)
        if builtins.any(isinstance(k, (ndarray, list)) for k in parts):
            _count_launch("getitem")  # advanced indexing gathers; basic indexing is a view
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray):
            raise _unsupported(value)
        _count_launch("setitem")
        self._a[_unwrap_index(key)] = _unwrap(value)

    # -- NumPy protocols: CuPy serves NumPy's functions and ufuncs it has ----------------------
    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        cp_uf = getattr(sys.modules[__name__], uf.__name__, None)
        if cp_uf is None:
            return NotImplemented
        if method == "__call__":
            return cp_uf(*inputs, **kwargs)
        return NotImplemented  # CuPy serves only calls: np.add.at(x) fails, cupy.add.at works

    def __array_function__(self, func, types_, args, kwargs):
        mod = sys.modules[__name__]
        try:
            for part in func.__module__.split(".")[1:]:
                mod = getattr(mod, part)
            cp_func = getattr(mod, func.__name__)
        except AttributeError:
            return NotImplemented
        return cp_func(*args, **kwargs)


def _binop(np_uf, reflected=False):
    def op(self, other):
        if not isinstance(other, (ndarray, _np.ndarray) + _SCALARS):
            return NotImplemented
        uf = getattr(sys.modules[__name__], np_uf.__name__)
        return uf(other, self) if reflected else uf(self, other)
    return op


def _inplace(np_uf):
    def op(self, other):
        _UFUNCS[np_uf.__name__](self, other, out=self)
        return self
    return op


for _name, _uf in [("add", _np.add), ("sub", _np.subtract), ("mul", _np.multiply),
                   ("truediv", _np.true_divide), ("floordiv", _np.floor_divide),
                   ("mod", _np.remainder), ("pow", _np.power), ("matmul", _np.matmul),
                   ("and", _np.bitwise_and), ("or", _np.bitwise_or), ("xor", _np.bitwise_xor),
                   ("lshift", _np.left_shift), ("rshift", _np.right_shift)]:
    setattr(ndarray, f"__{_name}__", _binop(_uf))
    setattr(ndarray, f"__r{_name}__", _binop(_uf, reflected=True))
    if _name != "matmul":
        setattr(ndarray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in [("eq", _np.equal), ("ne", _np.not_equal), ("lt", _np.less),
                   ("le", _np.less_equal), ("gt", _np.greater), ("ge", _np.greater_equal)]:
    setattr(ndarray, f"__{_name}__", _binop(_uf))
ndarray.__neg__ = lambda self: _UFUNCS["negative"](self)
ndarray.__pos__ = lambda self: _UFUNCS["positive"](self)
ndarray.__abs__ = lambda self: _UFUNCS["absolute"](self)
ndarray.__invert__ = lambda self: _UFUNCS["invert"](self)


class ufunc:
    """CuPy's ufunc: refuses host arrays; ``at``/``reduce`` only where CuPy has them."""

    _AT = {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}
    _REDUCE = {"add", "multiply", "maximum", "minimum", "logical_and", "logical_or",
               "bitwise_and", "bitwise_or", "bitwise_xor", "fmax", "fmin"}

    def __init__(self, np_uf):
        self._uf = np_uf
        self.name = self.__name__ = np_uf.__name__
        self.nin, self.nout, self.nargs = np_uf.nin, np_uf.nout, np_uf.nargs
        self.types = np_uf.types

    def _check_kwargs(self, kwargs):
        bad = set(kwargs) - {"out", "dtype", "casting", "where"}
        if bad:
            raise TypeError(f"Wrong arguments {bad} for ufunc {self.name}")
        out = kwargs.get("out")
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            if not builtins.all(isinstance(o, ndarray) for o in outs):
                raise TypeError("Output arguments must be cupy.ndarray")
            kwargs["out"] = tuple(o._a for o in outs) if isinstance(out, tuple) else out._a
        if isinstance(kwargs.get("where"), (ndarray, _np.ndarray)):
            kwargs["where"] = _unwrap(kwargs["where"])

    def __call__(self, *args, **kwargs):
        _count_launch(self.name)
        self._check_kwargs(kwargs)
        out = kwargs.get("out")
        with _np.errstate(all="ignore"):  # CuPy never warns about NaN or Inf
            res = self._uf(*[_unwrap(a) for a in args], **kwargs)
        if out is not None:
            return kwargs_out_wrap(res, out)
        return _wrap(res)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        _count_launch(self.name + ".reduce")
        if self.name not in self._REDUCE:
            raise NotImplementedError(f"{self.name}.reduce")
        return _wrap(self._uf.reduce(_unwrap(array), axis=axis, dtype=dtype, keepdims=keepdims))

    def accumulate(self, array, axis=0, dtype=None, out=None):
        if self.name not in ("add", "multiply", "maximum", "minimum"):
            raise NotImplementedError(f"{self.name}.accumulate")
        return _wrap(self._uf.accumulate(_unwrap(array), axis=axis, dtype=dtype))

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        if self.name != "add":
            raise NotImplementedError(f"{self.name}.reduceat")
        return _wrap(self._uf.reduceat(_unwrap(array), _unwrap(indices), axis=axis, dtype=dtype))

    def at(self, a, indices, b=None):
        _count_launch(self.name + ".at")
        if self.name not in self._AT:
            raise NotImplementedError(f"{self.name}.at")
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        args = () if b is None else (_unwrap(b),)
        self._uf.at(a._a, _unwrap_index(indices), *args)

    def outer(self, a, b, **kwargs):
        return _wrap(self._uf.outer(_unwrap(a), _unwrap(b), **kwargs))


def kwargs_out_wrap(res, out):
    if isinstance(out, tuple):
        return tuple(_wrap(r) for r in res)
    return _wrap(res)


def _function(np_func, api_name, host_ok=False):
    sig = _API["sigs"].get(api_name)

    def call(*args, **kwargs):
        _count_launch(api_name.rsplit(".", 1)[-1])
        if sig is not None and not sig["varkw"]:
            bad = set(kwargs) - set(sig["params"])
            if bad:
                raise TypeError(f"{api_name}() got an unexpected keyword argument {bad}")
        args = [_unwrap(a, host_ok) for a in args]
        kwargs = {k: _unwrap(v, host_ok) for k, v in kwargs.items()}
        if "out" in kwargs and kwargs["out"] is not None:
            raise NotImplementedError("out= on a fake CuPy function")
        return _wrap(np_func(*args, **kwargs))
    call.__name__ = np_func.__name__ if hasattr(np_func, "__name__") else api_name
    return call


def _populate(module, api_module, np_module, special=None):
    special = special or {}
    for name in _API["modules"].get(api_module, ()):
        full = f"{api_module}.{name}"
        if name in special:
            setattr(module, name, special[name])
        elif full in _API["ufuncs"]:
            np_uf = getattr(np_module, name, None)
            if isinstance(np_uf, _np.ufunc):
                setattr(module, name, ufunc(np_uf))
        elif hasattr(np_module, name) and callable(getattr(np_module, name)):
            obj = getattr(np_module, name)
            if isinstance(obj, type):
                setattr(module, name, obj)  # dtypes and scalar types are NumPy's own in CuPy
            else:
                setattr(module, name, _function(obj, full))
        elif hasattr(np_module, name):
            setattr(module, name, getattr(np_module, name))


def _not_on_cpu(name):
    class Kernel:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(f"fake CuPy cannot compile CUDA code ({name})")
    Kernel.__name__ = name
    return Kernel


def _asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else _wrap(a._a.astype(dtype))
    return _wrap(_np.array(_unwrap(a, True), dtype=dtype, order=order or "K", copy=True))


def _array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        return _wrap(_np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return _wrap(_np.array(_unwrap(obj, True), dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) else _np


def fuse(*args, **kwargs):
    raise NotImplementedError("fake CuPy cannot compile CUDA code (fuse)")


_this = sys.modules[__name__]
_special = {"ndarray": ndarray, "asarray": _asarray, "array": _array, "asanyarray": _asarray,
            "asnumpy": asnumpy, "get_array_module": get_array_module, "fuse": fuse,
            "ufunc": ufunc}
for _k in ("ElementwiseKernel", "RawKernel", "ReductionKernel", "RawModule"):
    _special[_k] = _not_on_cpu(_k)
_populate(_this, "cupy", _np, _special)
_UFUNCS = {name: obj for name, obj in vars(_this).items() if isinstance(obj, ufunc)}
for _alias, _target in [("true_divide", "divide"), ("absolute", "abs")]:
    _UFUNCS.setdefault(_alias, _UFUNCS.get(_target))
for _dt in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool_",
            "complex64", "complex128", "dtype", "generic", "integer", "floating", "number",
            "inf", "nan", "pi", "e", "newaxis", "finfo", "iinfo", "result_type", "can_cast",
            "promote_types"):
    if hasattr(_np, _dt):
        setattr(_this, _dt, getattr(_np, _dt))


def _submodule(name, api_module, np_module, special=None):
    mod = types.ModuleType(name)
    _populate(mod, api_module, np_module, special)
    sys.modules[name] = mod
    return mod


linalg = _submodule("cupy.linalg", "cupy.linalg", _np.linalg)
fft = _submodule("cupy.fft", "cupy.fft", _np.fft)
lib = types.ModuleType("cupy.lib")
sys.modules["cupy.lib"] = lib
lib.stride_tricks = _submodule("cupy.lib.stride_tricks", "cupy.lib.stride_tricks",
                               _np.lib.stride_tricks)


# -- random: NumPy's generator, arrays made on the "device" -------------------------------------
class RandomState:
    def __init__(self, seed=None):
        self._rs = _np.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs.seed(seed)

    def __getattr__(self, name):
        if name not in _API["modules"]["cupy.random"] or name.startswith("_"):
            raise AttributeError(name)
        fn = getattr(self._rs, name)

        def draw(*args, dtype=None, **kwargs):  # CuPy's draws take a dtype, NumPy's don't
            out = _np.asarray(fn(*_unwrap(args), **kwargs))
            return _wrap(out if dtype is None else out.astype(dtype))
        return draw


_random_states = {}  # one generator per device, as CuPy's


def _random_state():
    return _random_states.setdefault(_current_device[0], RandomState())


random = types.ModuleType("cupy.random")
sys.modules["cupy.random"] = random
random.RandomState = RandomState
random.seed = lambda seed=None: _random_state().seed(seed)
random.get_random_state = _random_state
random.set_random_state = lambda rs: _random_states.__setitem__(_current_device[0], rs)
random.default_rng = lambda seed=None: _Generator(seed)
for _name in _API["modules"]["cupy.random"]:
    if not hasattr(random, _name) and hasattr(_np.random.RandomState, _name):
        setattr(random, _name, (lambda n: lambda *a, **k: getattr(_random_state(), n)(*a, **k))(
            _name))


class _Generator:
    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def __getattr__(self, name):
        fn = getattr(self._g, name)
        return lambda *a, **k: _wrap(_np.asarray(fn(*_unwrap(a), **k)))


# -- cuda: one device, synchronous ---------------------------------------------------------------
cuda = types.ModuleType("cupy.cuda")
sys.modules["cupy.cuda"] = cuda


class _Device:
    def __init__(self, device=None):
        self.id = _current_device[0] if device is None else builtins.int(device)
        if not 0 <= self.id < DEVICE_COUNT:
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal (fake CuPy has "
                               f"{DEVICE_COUNT} device(s), not {self.id})")
        self._prev = []

    def __enter__(self):
        self._prev.append(_current_device[0])
        _current_device[0] = self.id
        return self

    def __exit__(self, *exc):
        _current_device[0] = self._prev.pop()
        return False

    def use(self):
        _current_device[0] = self.id

    def synchronize(self):
        pass

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return self.id


class _Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        import time
        self._time = time
        self.disable_timing = disable_timing
        self.t = None

    def record(self, stream=None):
        self.t = self._time.perf_counter()

    def synchronize(self):
        pass

    done = property(lambda self: True)


_stream_ptrs = [0]


class _Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null:
            self.ptr = 0
        else:
            _stream_ptrs[0] += 1
            self.ptr = 0x1000 + _stream_ptrs[0]
        self.device_id = _current_device[0]
        self._prev = []

    def synchronize(self):
        pass

    done = property(lambda self: True)

    def record(self, event=None):
        event = _Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        pass

    def use(self):  # current on the current device, as CuPy's
        _current_stream[_current_device[0]] = self
        return self

    def __enter__(self):
        self._prev.append(_current_stream.get(_current_device[0], _Stream.null))
        self.use()
        return self

    def __exit__(self, *exc):
        _current_stream[_current_device[0]] = self._prev.pop()
        return False


_Stream.null = _Stream(null=True)


class _ExternalStream(_Stream):
    def __init__(self, ptr, device_id=-1):
        super().__init__()
        self.ptr = builtins.int(ptr)
_current_stream = {}


class _Pointer:
    """What ``MemoryPool.malloc`` gives: its bytes count as used until it is dropped."""

    def __init__(self, pool, size):
        self.pool, self.size, self.device_id = pool, size, _current_device[0]
        pool._used[self.device_id] = pool._used.get(self.device_id, 0) + size
        pool._total[self.device_id] = builtins.max(pool._total.get(self.device_id, 0),
                                                   pool._used[self.device_id])

    def __del__(self):
        self.pool._used[self.device_id] -= self.size


class _MemoryPool:
    """Counts only what goes through ``malloc`` (the fake's arrays are NumPy's own)."""

    def __init__(self):
        self._used, self._total, self._limit = {}, {}, 0

    def malloc(self, size):
        return _Pointer(self, size)

    def used_bytes(self):
        return self._used.get(_current_device[0], 0)

    def total_bytes(self):
        return self._total.get(_current_device[0], 0)

    def free_bytes(self):
        return self.total_bytes() - self.used_bytes()

    def free_all_blocks(self):
        self._total[_current_device[0]] = self.used_bytes()

    def set_limit(self, size=None, fraction=None):
        self._limit = builtins.int(fraction * (1 << 34)) if fraction is not None else size

    def get_limit(self):
        return self._limit


_pool = _MemoryPool()
_pinned_pool = _MemoryPool()
_allocator = [_pool.malloc]
cuda.Device = _Device
cuda.Event = _Event
cuda.Stream = _Stream
cuda.ExternalStream = _ExternalStream
cuda.MemoryPool = _MemoryPool
cuda.get_current_stream = lambda device_id=-1: _current_stream.get(
    _current_device[0] if device_id == -1 else device_id, _Stream.null)
cuda.get_elapsed_time = lambda a, b: (b.t - a.t) * 1e3
cuda.is_available = lambda: True
cuda.set_allocator = lambda allocator=None: _allocator.__setitem__(0, allocator or _pool.malloc)
cuda.get_allocator = lambda: _allocator[0]
runtime = types.ModuleType("cupy.cuda.runtime")
sys.modules["cupy.cuda.runtime"] = runtime
cuda.runtime = runtime
runtime.getDeviceCount = lambda: DEVICE_COUNT
runtime.getDevice = lambda: _current_device[0]
runtime.setDevice = lambda i: _Device(i).use()
runtime.deviceSynchronize = lambda: None
runtime.getDeviceProperties = lambda i: {"name": b"Fake GPU (NumPy on the CPU)",
                                         "totalGlobalMem": 1 << 34, "major": 9, "minor": 0,
                                         "multiProcessorCount": 4}
runtime.memGetInfo = lambda: ((1 << 34) - _pool.total_bytes(), 1 << 34)
runtime.deviceCanAccessPeer = lambda a, b: 1
runtime.is_hip = False
get_default_memory_pool = lambda: _pool  # noqa: E731
get_default_pinned_memory_pool = lambda: _pinned_pool  # noqa: E731

# -- TF32 switch, where CuPy keeps it ------------------------------------------------------------
_core = types.ModuleType("cupy._core")
sys.modules["cupy._core"] = _core
_routines_linalg = types.ModuleType("cupy._core._routines_linalg")
sys.modules["cupy._core._routines_linalg"] = _routines_linalg
_core._routines_linalg = _routines_linalg
_compute_type = {}
for _i, _n in enumerate(("COMPUTE_TYPE_TBD", "COMPUTE_TYPE_DEFAULT", "COMPUTE_TYPE_PEDANTIC",
                         "COMPUTE_TYPE_FP16", "COMPUTE_TYPE_FP32", "COMPUTE_TYPE_FP64",
                         "COMPUTE_TYPE_BF16", "COMPUTE_TYPE_TF32")):
    setattr(_routines_linalg, _n, _i)
_routines_linalg.get_compute_type = lambda dtype: _compute_type.get(_np.dtype(dtype), 1)
_routines_linalg.set_compute_type = (
    lambda dtype, ct: _compute_type.__setitem__(_np.dtype(dtype), ct))

