"""Tensor creation: tensor, zeros, randn, ... and the global random generator."""

from __future__ import annotations

import builtins
import math

import numpy as np

from chainrule import backend
from chainrule import dtypes as _dt
from chainrule.tensor import Tensor, wrap

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace",
    "logspace", "eye", "randn", "rand", "randint", "randperm", "normal", "zeros_like",
    "ones_like", "full_like", "empty_like", "randn_like", "rand_like", "randint_like",
    "manual_seed", "seed", "initial_seed", "Generator", "default_generator", "get_rng_state",
    "set_rng_state", "bernoulli", "multinomial",
]


class Generator:
    """A seeded source of random numbers (``cr.Generator().manual_seed(0)``)."""

    def __init__(self, device="cpu") -> None:
        self.device = backend.as_device(device)
        self._seed = 0
        self._rng = np.random.default_rng(0)

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        s = int(np.random.SeedSequence().entropy % (2**63))
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> Tensor:
        import json

        state = json.dumps(self._rng.bit_generator.state).encode()
        return wrap(np.frombuffer(state, np.uint8).copy())

    def set_state(self, state: Tensor) -> None:
        import json

        self._rng.bit_generator.state = json.loads(bytes(state._data.astype(np.uint8)).decode())


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed chainrule's global random generator (CPU, and CUDA when present)."""
    default_generator.manual_seed(seed)
    if backend.cuda_available():
        backend.xp("cuda").random.seed(int(seed) % 2**32)
    return default_generator


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(state: Tensor) -> None:
    default_generator.set_state(state)


def _sizes(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = s.item()
        if not isinstance(s, (int, np.integer)) or isinstance(s, builtins.bool):
            raise TypeError(
                f"size must be a tuple of ints, but got an element of type {type(s).__name__}"
            )
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(int(s))
    return tuple(out)


def _finish(data, device, requires_grad: bool, name: str | None = None) -> Tensor:
    if device is not None and backend.as_device(device).type != "cpu":
        data = backend.to_device(data, device)
    t = wrap(data)
    if requires_grad:
        t.requires_grad_(True)
    if name is not None:  # chainrule's extension: names for cr.viz (not in PyTorch)
        t.name = name
    return t


def _float_dtype(dtype):
    return (_dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()).np


def _to_array(data, dtype, device):
    """Convert Python data / arrays / tensors to an array with PyTorch's dtype inference."""
    target = _dt.to_numpy_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        arr = backend.to_device(data._data, "cpu")
        return np.array(arr, dtype=target if target is not None else arr.dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        if data.dtype.kind not in "biuf":
            raise TypeError(f"can't convert np.ndarray of type {data.dtype}")
        return np.array(data, dtype=target if target is not None else data.dtype)
    if hasattr(data, "__cuda_array_interface__"):
        return data.astype(target) if target is not None else data.copy()
    try:
        arr = np.array(data)
    except ValueError as e:
        raise ValueError(f"tensor(): could not build a tensor from this data ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"tensor(): could not infer a dtype for data of type {type(data).__name__} "
            "(expected numbers, nested lists of numbers, arrays or tensors)"
        )
    if target is not None:
        return arr.astype(target)
    if arr.dtype.kind == "f":
        return arr.astype(_dt.get_default_dtype().np)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr


def tensor(data, dtype=None, device=None, requires_grad: bool = False, *,
           name: str | None = None) -> Tensor:
    """A new tensor copying ``data`` (Python floats become float32, ints int64); ``name``
    labels it in ``cr.viz`` diagrams."""
    return _finish(_to_array(data, dtype, device), device, requires_grad, name)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with a tensor/array of the right dtype."""
    if isinstance(data, Tensor):
        out = data if dtype is None else data.to(dtype)
        return out if device is None else out.to(device)
    if isinstance(data, np.ndarray) and (dtype is None or _dt.to_numpy_dtype(dtype) == data.dtype):
        return _finish(data, device, False)
    return tensor(data, dtype, device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    _dt.from_numpy_dtype(ndarray.dtype)
    return wrap(ndarray)


def _filled(size, value, dtype, device, requires_grad, name=None):
    size = _sizes(size)
    if dtype is None:
        if isinstance(value, builtins.bool):
            np_dtype = np.bool_
        elif isinstance(value, (int, np.integer)):
            np_dtype = np.int64
        else:
            np_dtype = _dt.get_default_dtype().np
    else:
        np_dtype = _dt.to_numpy_dtype(dtype)
    xp = backend.xp(device)
    return _finish(xp.full(size, value, np_dtype), None, requires_grad, name)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False,
          name: str | None = None) -> Tensor:
    """A tensor of zeros."""
    return _filled(size, 0.0, dtype or _dt.get_default_dtype(), device, requires_grad, name)


def ones(*size, dtype=None, device=None, requires_grad: bool = False,
         name: str | None = None) -> Tensor:
    """A tensor of ones."""
    return _filled(size, 1.0, dtype or _dt.get_default_dtype(), device, requires_grad, name)


def empty(*size, dtype=None, device=None, requires_grad: bool = False,
          name: str | None = None) -> Tensor:
    """An uninitialised tensor (zeros here, for reproducibility)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad, name=name)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False,
         name: str | None = None) -> Tensor:
    """A tensor filled with ``fill_value`` (dtype inferred from it)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return _filled((tuple(size),) if not isinstance(size, int) else (size,), fill_value, dtype,
                   device, requires_grad, name)


def _like(input: Tensor, dtype, device):
    return (dtype or input.dtype), (device or input.device)


def zeros_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return zeros(input._data.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return ones(input._data.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value, *, dtype=None, device=None,
              requires_grad: bool = False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return full(input._data.shape, fill_value, dtype=dtype, device=device,
                requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False,
           name: str | None = None) -> Tensor:
    """Values from ``start`` up to (not including) ``end`` every ``step``."""
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (vals[1] - vals[0]) * vals[2] < 0:
        raise RuntimeError(
            f"arange: upper bound and lower bound inconsistent with step sign "
            f"(start={vals[0]}, end={vals[1]}, step={vals[2]})"
        )
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in vals)
        np_dtype = np.int64 if is_int else _dt.get_default_dtype().np
    else:
        np_dtype = _dt.to_numpy_dtype(dtype)
    n = max(0, math.ceil((vals[1] - vals[0]) / vals[2]))
    data = (vals[0] + np.arange(n, dtype=np.float64) * vals[2]).astype(np_dtype)
    if np.issubdtype(np_dtype, np.integer) and all(isinstance(v, (int, np.integer)) for v in vals):
        data = np.arange(vals[0], vals[1], vals[2], dtype=np_dtype)
    return _finish(data, device, requires_grad, name)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False,
             name: str | None = None) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    data = np.linspace(start, end, steps).astype(_float_dtype(dtype))
    return _finish(data, device, requires_grad, name)


def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None, device=None,
             requires_grad=False) -> Tensor:
    data = np.logspace(start, end, steps, base=base).astype(_float_dtype(dtype))
    return _finish(data, device, requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The identity matrix (n × m)."""
    return _finish(np.eye(n, m, dtype=_float_dtype(dtype)), device, requires_grad)


def _rng(generator):
    return (generator or default_generator)._rng


def _random(kind: str, shape, np_dtype, device, generator, a=0.0, b=1.0):
    """Random numbers of ``kind`` drawn on the target device."""
    if np.dtype(np_dtype).kind != "f":
        name = "randn" if kind == "normal" else "rand"
        raise NotImplementedError(
            f"{name}: {kind} samples need a floating point dtype, got "
            f"{_dt.from_numpy_dtype(np.dtype(np_dtype))} (use randint for integers)"
        )
    device = backend.as_device(device)
    if device.type == "cuda":
        cp = backend.xp(device)
        if kind == "normal":
            return (cp.random.standard_normal(shape, dtype=np.float32) * b + a).astype(np_dtype)
        return (cp.random.random(shape, dtype=np.float32) * (b - a) + a).astype(np_dtype)
    rng = _rng(generator)
    fast = np_dtype in (np.float32, np.float64)
    if kind == "normal":
        out = rng.standard_normal(shape, dtype=np_dtype if fast else np.float64)
        if a != 0.0 or b != 1.0:
            out = out * b + a
    else:
        out = rng.random(shape, dtype=np_dtype if fast else np.float64)
        if a != 0.0 or b != 1.0:
            out = out * (b - a) + a
    return np.asarray(out, dtype=np_dtype)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False,
          name: str | None = None) -> Tensor:
    """Standard normal samples."""
    data = _random("normal", _sizes(size), _float_dtype(dtype), device, generator)
    return _finish(data, None, requires_grad, name)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False,
         name: str | None = None) -> Tensor:
    """Uniform samples in [0, 1)."""
    data = _random("uniform", _sizes(size), _float_dtype(dtype), device, generator)
    return _finish(data, None, requires_grad, name)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean._data if isinstance(mean, Tensor) else mean
        s = std._data if isinstance(std, Tensor) else std
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
        z = _random("normal", shape, _float_dtype(dtype), device, generator)
        return _finish((z * s + m).astype(z.dtype), None, False)
    return _finish(_random("normal", _sizes((size,)), _float_dtype(dtype), device, generator,
                           mean, std), None, False)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    """Uniform integers in [low, high)."""
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    np_dtype = _dt.to_numpy_dtype(dtype) if dtype is not None else np.int64
    data = _rng(generator).integers(low, high, size=_sizes((size,)), dtype=np.int64)
    data = data.astype(np_dtype)
    return _finish(data, device, requires_grad)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1."""
    np_dtype = _dt.to_numpy_dtype(dtype) if dtype is not None else np.int64
    return _finish(_rng(generator).permutation(n).astype(np_dtype), device, False)


def randn_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return randn(input._data.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def rand_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return rand(input._data.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randint_like(input: Tensor, low, high=None, *, dtype=None, device=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return randint(low, high, input._data.shape, dtype=dtype, device=device)


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    """1 with probability ``input`` (or ``p``), else 0."""
    probs = input._data if p is None else np.full(input._data.shape, p)
    draw = _rng(generator).random(np.shape(probs))
    return wrap((draw < probs).astype(input._data.dtype))


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    p = np.asarray(input._data, np.float64)
    rng = _rng(generator)
    rows = p.reshape(-1, p.shape[-1])
    out = np.stack([rng.choice(len(r), num_samples, replace=replacement, p=r / r.sum())
                    for r in rows])
    return wrap(out.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64))
