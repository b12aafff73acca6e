"""Tensor creation: tensor, zeros, arange, ... and the random ones (rand, randn, randint, ...),
which draw PyTorch's streams through chainrule.random."""

from __future__ import annotations

import builtins
import math

import numpy as np

from chainrule import batching as _batching
from chainrule import devices
from chainrule import dtypes as _dt
from chainrule import random as _rnd
from chainrule.random import (
    Generator, default_generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state,
)
from chainrule.tensor import Tensor, wrap

__all__ = [
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "arange", "linspace",
    "logspace", "eye", "randn", "rand", "randint", "randperm", "normal", "zeros_like",
    "ones_like", "full_like", "empty_like", "randn_like", "rand_like", "randint_like",
    "manual_seed", "seed", "initial_seed", "Generator", "default_generator", "get_rng_state",
    "set_rng_state", "bernoulli", "multinomial", "poisson",
]


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
    if device is not None and devices.as_device(device).type != "cpu":
        data = devices.to_device(data, device)
    t = wrap(data)
    if requires_grad:
        t.requires_grad_(True)
    if name is not None:  # chainrule's extension: names for cr.viz (not in PyTorch)
        t.name = name
    return t


def _float_dtype(dtype):
    return (_dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()).np


def to_array(data, dtype, device):
    """Convert Python data / arrays / tensors to an array with PyTorch's dtype inference."""
    target = _dt.to_numpy_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        arr = devices.to_device(data._data, "cpu")
        return np.array(arr, dtype=target if target is not None else arr.dtype)
    if isinstance(data, (np.ndarray, np.generic)):
        if data.dtype.kind not in "biuf" and not _dt.is_bfloat16(data.dtype):
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
    return _finish(to_array(data, dtype, device), device, requires_grad, name)


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
    xp = devices.xp(device)
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


def _batched_like(t: Tensor, input: Tensor) -> Tensor:
    """Inside vmap a tensor made like a batched one is batched like it (as torch.func's, so
    that ``empty_like(x).normal_()`` draws per example with randomness="different")."""
    levels = _batching.levels_of(input._data)
    if levels:
        data = t._data
        p = devices.xp_of(data).empty(_batching.layout_shape(levels, data.shape), data.dtype)
        p[...] = data
        t._data = _batching.from_physical(p, levels)
    return t


def _like_axes(input: Tensor, memory_format=None) -> tuple | None:
    """The memory order (axes from the slowest to the fastest) of a tensor made like ``input``
    when it is not C order, as torch's ``*_like(memory_format=...)``: with ``preserve_format``
    (the default) the order of the input's strides (torch's ``infer_dense_strides``: a stable
    sort by stride, a size breaking ties, a 0 stride keeping its place), ``channels_last``
    NHWC (NDHWC for 5-D); else None (C order). Random ``*_like`` draws fill in memory order,
    so the values land where torch's do."""
    data = input._data
    if _batching.levels_of(data):
        return None
    name = getattr(memory_format, "name", "preserve_format")
    if name == "channels_last" or name == "channels_last_3d":
        want = 4 if name == "channels_last" else 5
        if data.ndim != want:
            raise RuntimeError(f"required rank {want} tensor to use {name} format")
        return (0,) + tuple(builtins.range(2, want)) + (1,)
    strides, shape = data.strides, data.shape
    if name != "preserve_format" or data.ndim < 2 or data.flags.c_contiguous or \
            builtins.min(strides) < 0:
        return None

    def after(d0: int, d1: int) -> bool:  # whether d0 is slower in memory than d1
        s0, s1 = strides[d0], strides[d1]
        if s0 == 0 or s1 == 0:
            return False
        return s0 > s1 or (s0 == s1 and shape[d0] > shape[d1])

    perm = list(builtins.range(data.ndim - 1, -1, -1))  # fastest first
    for i in builtins.range(1, data.ndim):
        d1 = i
        for d0 in builtins.range(i - 1, -1, -1):
            if after(perm[d0], perm[d1]):
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif strides[perm[d0]] and strides[perm[d1]] and strides[perm[d0]] < strides[perm[d1]]:
                break
    return tuple(reversed(perm))


def _laid_out(t: Tensor, axes: tuple | None) -> Tensor:
    """``t`` with its values stored in memory order ``axes`` (None: as it is)."""
    if axes is None or list(axes) == sorted(axes):
        return t
    data = t._data
    base = devices.xp_of(data).empty(tuple(data.shape[a] for a in axes), data.dtype)
    view = base.transpose(tuple(int(i) for i in np.argsort(axes)))
    view[...] = data
    t._data = view
    return t


def zeros_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False,
               layout=None, pin_memory: bool = False, memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return _laid_out(_batched_like(zeros(input._data.shape, dtype=dtype, device=device,
                                         requires_grad=requires_grad), input),
                     _like_axes(input, memory_format))


def ones_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False,
              layout=None, pin_memory: bool = False, memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return _laid_out(_batched_like(ones(input._data.shape, dtype=dtype, device=device,
                                        requires_grad=requires_grad), input),
                     _like_axes(input, memory_format))


def empty_like(input: Tensor, *, dtype=None, device=None, requires_grad: bool = False,
               layout=None, pin_memory: bool = False, memory_format=None) -> Tensor:
    return zeros_like(input, dtype=dtype, device=device, requires_grad=requires_grad,
                      memory_format=memory_format)


def full_like(input: Tensor, fill_value, *, dtype=None, device=None,
              requires_grad: bool = False, layout=None, pin_memory: bool = False,
              memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return _laid_out(_batched_like(full(input._data.shape, fill_value, dtype=dtype,
                                        device=device, requires_grad=requires_grad), input),
                     _like_axes(input, memory_format))


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


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"linspace(): argument 'steps' must be int, not {type(steps).__name__}")
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False,
             name: str | None = None) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    _check_steps(steps)
    np_dtype = np.dtype(_float_dtype(dtype))
    if np_dtype.kind in "iuf":
        data = _torch_linspace(start, end, steps, np_dtype)
    else:
        data = np.linspace(_scalar(start), _scalar(end), steps).astype(np_dtype)
    return _finish(data, device, requires_grad, name)


def _scalar(v):
    return v.item() if isinstance(v, Tensor) else v


def _torch_linspace(start, end, steps: int, np_dtype: np.dtype) -> np.ndarray:
    """PyTorch's CPU linspace, value for value: with step = (end - start) / (steps - 1) in the
    dtype (float64 for integers), element i is start + step·i below steps // 2 and
    end - step·(steps - 1 - i) from there, each a multiply-add rounded as torch's kernel rounds
    it (fused where its compiler fused it); integers are truncated."""
    start, end = _scalar(start), _scalar(end)
    if np_dtype.kind != "f":
        acc = np.dtype(np.float64)
        start = float(np.array(start).astype(np_dtype))  # torch casts start and end first
        end = float(np.array(end).astype(np_dtype))
    else:
        acc = np_dtype
    if steps <= 1:
        return np.full(steps, start, acc).astype(np_dtype)
    s, e = acc.type(start), acc.type(end)
    step = acc.type((e - s) / acc.type(steps - 1))
    half = steps // 2
    idx = np.arange(steps)
    if acc.itemsize < 4:  # float16: every operand and operation rounded to half, no fma
        f32 = np.float32
        step = acc.type(f32(e - s) / f32(acc.type(steps - 1)))

        def times_step(k):
            return (f32(step) * k.astype(acc).astype(f32)).astype(acc).astype(f32)

        lo = (f32(s) + times_step(idx[:half])).astype(acc)
        hi = (f32(e) - times_step(steps - 1 - idx[half:])).astype(acc)
        return np.concatenate([lo, hi])
    lo = _rnd._fused(step, idx[:half].astype(acc), s, acc)
    hi = _rnd._fused(-step, (steps - 1 - idx[half:]).astype(acc), e, acc)
    out = np.concatenate([np.asarray(lo, acc).reshape(-1), np.asarray(hi, acc).reshape(-1)])
    return out.astype(np_dtype)


def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None, device=None,
             requires_grad=False) -> Tensor:
    _check_steps(steps)
    data = np.logspace(start, end, steps, base=base).astype(_float_dtype(dtype))
    return _finish(data, device, requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The identity matrix (n × m)."""
    return _finish(np.eye(n, m, dtype=_float_dtype(dtype)), device, requires_grad)


# ---- random tensors: an empty tensor filled in place, as PyTorch makes them ----------------------
def _empty(shape, np_dtype, device, levels: tuple = ()) -> Tensor:
    """A zero tensor to draw into; inside vmap batched at ``levels`` (the vmaps at which every
    example draws its own values: ``chainrule.random.vmap_levels``)."""
    data = devices.xp(device).zeros(_batching.layout_shape(levels, shape), np_dtype)
    return wrap(_batching.from_physical(data, levels))


def _done(t: Tensor, requires_grad: bool, name: str | None = None) -> Tensor:
    t._version_holder()._vc = 0  # drawn into through copy_, but new (version 0, as torch's)
    if name is not None:  # chainrule's extension: names for cr.viz (not in PyTorch)
        t.name = name
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False,
         pin_memory=False, name: str | None = None) -> Tensor:
    """Uniform samples in [0, 1)."""
    t = _empty(_sizes(size), _float_dtype(dtype), device, _rnd.vmap_levels())
    return _done(_rnd.uniform_(t, 0.0, 1.0, generator), requires_grad, name)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False,
          pin_memory=False, name: str | None = None) -> Tensor:
    """Standard normal samples."""
    t = _empty(_sizes(size), _float_dtype(dtype), device, _rnd.vmap_levels())
    return _done(_rnd.normal_(t, 0.0, 1.0, generator), requires_grad, name)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad=False) -> Tensor:
    """Uniform integers in [low, high) (``randint(high, size)`` or ``randint(low, high, size)``)."""
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    t = _empty(_sizes((size,)), _dt.to_numpy_dtype(dtype) if dtype is not None else np.int64,
               device, _rnd.vmap_levels())
    return _done(_rnd.random_(t, _int_arg(low), _int_arg(high), generator), requires_grad)


def _int_arg(v) -> int:
    return int(v.item()) if isinstance(v, Tensor) else int(v)


_C_INT_NAMES = {"int8": "int8_t", "int16": "int16_t", "int32": "int", "int64": "int64_t",
                "uint8": "uint8_t"}


def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad=False,
             pin_memory=False) -> Tensor:
    """A random permutation of 0..n-1 (PyTorch's Fisher-Yates on its stream)."""
    n = _int_arg(n)
    if n < 0:
        raise RuntimeError(f"Trying to create tensor with negative dimension {n}: [{n}]")
    d = _dt.to_dtype(dtype) if dtype is not None else _dt.int64
    if d.np == np.bool_:
        raise NotImplementedError("\"randperm\" not implemented for 'Bool'")
    if d.np.kind == "f":
        digits = {2: 11, 4: 24, 8: 53}[d.itemsize]
        if n > 2**digits + 1:
            limit = "2049" if digits == 11 else f"2^{digits}+1"
            raise RuntimeError(f"n cannot be greater than {limit} for "
                               f"{_rnd._torch_name(d.np)} type.")
    elif n > 0 and n - 1 > np.iinfo(d.np).max:
        raise RuntimeError(f"value cannot be converted to type {_C_INT_NAMES[d.name]} without "
                           "overflow")
    levels = _rnd.vmap_levels()  # inside vmap, randomness="different": one per example
    count = math.prod(lv.size for lv in levels)
    if device is not None and devices.as_device(device).type == "cuda":
        rs = _rnd._cupy_random(generator, devices.xp(device).zeros(0))
        perms = [rs.permutation(n).astype(d.np) for _ in builtins.range(count)]
    else:
        gen = _rnd.generator_of(generator)
        perms = [_rnd.randperm(gen, n).astype(d.np) for _ in builtins.range(count)]
    data = perms[0] if not levels else devices.xp_of(perms[0]).stack(perms).reshape(
        _batching.layout_shape(levels, (n,)))
    return _done(wrap(_batching.from_physical(data, levels)), requires_grad)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None,
           requires_grad=False) -> Tensor:
    """N(mean, std²) samples; ``mean`` and ``std`` may be tensors (broadcast together; the
    result is differentiable with respect to them) or floats (then ``size`` is required)."""
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor):
        if size is None:
            raise TypeError("normal() received floats for mean and std but no size")
        t = _empty(_sizes((size,)), _float_dtype(dtype), device, _rnd.vmap_levels())
        return _done(_rnd.normal_(t, float(mean), float(std), generator), requires_grad)
    levels = _rnd.vmap_levels([t for t in (mean, std) if isinstance(t, Tensor)])
    if isinstance(std, Tensor):
        s = _batching.deep(std._data)
        if s.size and bool((s < 0).any()):
            raise RuntimeError("normal expects all elements of std >= 0.0")
    elif std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {_rnd._num(std)}")
    if isinstance(mean, Tensor) and not isinstance(std, Tensor):
        z = _empty(mean._data.shape, mean._data.dtype, mean.device, levels)
        return _rnd.normal_(z, 0.0, float(std), generator) + mean
    like = std if not isinstance(mean, Tensor) else (
        mean if not isinstance(std, Tensor) else None)
    if like is None:
        shape = _broadcast_shape(mean, std)
        out_dtype = np.result_type(mean._data.dtype, std._data.dtype)
        z = _empty(shape, out_dtype, mean.device, levels)
    else:
        z = _empty(like._data.shape, like._data.dtype, like.device, levels)
    return _rnd.normal_(z, 0.0, 1.0, generator) * std + mean


def _broadcast_shape(a: Tensor, b: Tensor) -> tuple:
    try:
        return np.broadcast_shapes(a._data.shape, b._data.shape)
    except ValueError:
        raise RuntimeError(f"normal: mean of shape {list(a._data.shape)} and std of shape "
                           f"{list(b._data.shape)} do not broadcast") from None


def _random_like(input: Tensor, dtype, device, memory_format, draw, requires_grad) -> Tensor:
    """A new tensor like ``input`` (torch's layout rule: :func:`_like_axes`) filled by
    ``draw(t)`` in memory order."""
    levels = _rnd.vmap_levels()
    t = _empty(input._data.shape, dtype, device, levels)
    t = _laid_out(t, None if levels else _like_axes(input, memory_format))
    return _done(draw(t), requires_grad)


def randn_like(input: Tensor, *, generator=None, dtype=None, device=None,
               requires_grad=False, layout=None, memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return _random_like(input, _float_dtype(dtype), device, memory_format,
                        lambda t: _rnd.normal_(t, 0.0, 1.0, generator), requires_grad)


def rand_like(input: Tensor, *, generator=None, dtype=None, device=None,
              requires_grad=False, layout=None, memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return _random_like(input, _float_dtype(dtype), device, memory_format,
                        lambda t: _rnd.uniform_(t, 0.0, 1.0, generator), requires_grad)


def randint_like(input: Tensor, low=0, high=None, *, generator=None, dtype=None, device=None,
                 requires_grad=False, layout=None, memory_format=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    if high is None:
        low, high = 0, low
    low, high = _int_arg(low), _int_arg(high)
    return _random_like(input, _dt.to_numpy_dtype(dtype), device, memory_format,
                        lambda t: _rnd.random_(t, low, high, generator), requires_grad)


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    """1 with probability ``input`` (elementwise), or with probability ``p`` if given."""
    levels = _rnd.vmap_levels([input] + ([p] if isinstance(p, Tensor) else []))
    out = _empty(input._data.shape, input._data.dtype, input.device, levels)
    out = _rnd.bernoulli_(out, input.detach() if p is None else p, generator)
    out._version_holder()._vc = 0  # a new tensor: version 0, as torch's
    return out


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    """Indices sampled from the rows of ``input`` (non-negative weights), as PyTorch samples."""
    probs = input._data
    if probs.dtype.kind != "f":
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: "
                           f"{_rnd._torch_name(probs.dtype)}")
    if probs.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    if not replacement and num_samples > probs.shape[-1]:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without "
                           "replacement")
    if probs.shape[-1] > 2**24:
        raise RuntimeError("number of categories cannot exceed 2^24")
    levels = _rnd.vmap_levels([probs])  # inside vmap: the rows of every example's draw
    shape = _batching.layout_shape(levels, probs.shape[:-1] + (int(num_samples),))
    probs = _batching.physical(probs, levels)
    rows = devices.to_device(probs, "cpu").reshape(-1, probs.shape[-1])
    out = _rnd.multinomial(_rnd.generator_of(generator), rows, int(num_samples), replacement)
    out = _batching.from_physical(devices.to_device(out.reshape(shape), input.device), levels)
    return wrap(out)


def poisson(input: Tensor, generator=None) -> Tensor:
    """Poisson(rate) samples for the rates in ``input``."""
    levels = _rnd.vmap_levels([input])  # inside vmap: every example's rates at once
    rates = devices.to_device(_batching.physical(input._data, levels), "cpu")
    if rates.size and bool((rates < 0).any()):
        raise RuntimeError("invalid Poisson rate, expected rate to be non-negative")
    out = _rnd.poisson(_rnd.generator_of(generator), rates.astype(np.float64))
    out = devices.to_device(out.astype(rates.dtype), input.device)
    return wrap(_batching.from_physical(out, levels))


# ---- more of torch's creation functions ---------------------------------------------------------
def range(start=0, end=None, step=1, *, dtype=None, device=None,  # noqa: A001
          requires_grad: bool = False) -> Tensor:
    """Values from ``start`` to ``end`` inclusive every ``step`` (deprecated in torch for
    arange); the default float dtype."""
    import warnings

    if end is None:
        start, end = 0, start
    warnings.warn("torch.range is deprecated and will be removed in a future release because "
                  "its behavior is inconsistent with Python's range builtin. Instead, use "
                  "torch.arange, which produces values in [start, end).", UserWarning,
                  stacklevel=2)
    if step == 0:
        raise RuntimeError("step must be nonzero")
    n = int(math.floor((end - start) / step)) + 1
    d = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
    data = np.asarray([start + i * step for i in builtins.range(builtins.max(n, 0))], d.np)
    return tensor(data, dtype=d, device=device, requires_grad=requires_grad)


def scalar_tensor(s, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A 0-d tensor holding ``s`` (the default float dtype unless ``dtype``)."""
    return tensor(s, dtype=dtype or _dt.get_default_dtype(), device=device,
                  requires_grad=requires_grad)


def asarray(obj, *, dtype=None, device=None, copy=None, requires_grad: bool = False) -> Tensor:
    """``obj`` as a tensor, sharing memory where it can (``copy=True`` always copies)."""
    if isinstance(obj, Tensor):
        out = obj
        if dtype is not None or device is not None:
            out = out.to(dtype=dtype, device=device)
        if copy:
            out = out.clone() if out is obj else out
        return out.requires_grad_(requires_grad) if requires_grad else out
    if copy:
        return tensor(obj, dtype=dtype, device=device, requires_grad=requires_grad)
    out = as_tensor(obj, dtype=dtype, device=device)
    return out.requires_grad_(True) if requires_grad else out


def empty_strided(size, stride, *, dtype=None, device=None, requires_grad: bool = False,
                  **kwargs) -> Tensor:
    """An uninitialised (zero) tensor of ``size``; chainrule's tensors are contiguous."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def frombuffer(buffer, *, dtype, count: int = -1, offset: int = 0,
               requires_grad: bool = False) -> Tensor:
    """A 1-d tensor over the bytes of a Python buffer (shared, as torch)."""
    d = _dt.to_dtype(dtype)
    data = np.frombuffer(buffer, dtype=d.np, count=count, offset=offset)
    t = Tensor.__new__(Tensor)
    from chainrule.tensor import init_leaf

    init_leaf(t, data)
    return t.requires_grad_(True) if requires_grad else t


def _tri_indices(row: int, col: int, offset: int, upper: bool, dtype, device) -> Tensor:
    r, c = np.triu_indices(row, offset, col) if upper else np.tril_indices(row, offset, col)
    return tensor(np.stack([r, c]).astype(np.int64), dtype=dtype or _dt.int64, device=device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None,
                 layout=None) -> Tensor:
    """The (2, N) row and column indices of the lower triangle."""
    return _tri_indices(row, col, offset, False, dtype, device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None,
                 layout=None) -> Tensor:
    """The (2, N) row and column indices of the upper triangle."""
    return _tri_indices(row, col, offset, True, dtype, device)


def _window(name: str, window_length: int, periodic: bool, dtype, device, fn) -> Tensor:
    if window_length < 0:
        raise RuntimeError(f"{name} requires non-negative window_length, got "
                           f"window_length={window_length}")
    d = _dt.to_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
    if window_length == 0:
        return zeros(0, dtype=d, device=device)
    if window_length == 1:
        return ones(1, dtype=d, device=device)
    n = window_length + 1 if periodic else window_length
    w = fn(n)
    if periodic:
        w = w[:-1]
    return tensor(np.asarray(w, np.float64).astype(d.np), dtype=d, device=device)


def hann_window(window_length: int, periodic: bool = True, *, dtype=None, device=None,
                requires_grad: bool = False, layout=None) -> Tensor:
    """½ - ½cos(2πn/(N-1))."""
    return _window("hann_window", window_length, periodic, dtype, device, np.hanning)


def hamming_window(window_length: int, periodic: bool = True, alpha: float = 0.54,
                   beta: float = 0.46, *, dtype=None, device=None, requires_grad: bool = False,
                   layout=None) -> Tensor:
    """α - β cos(2πn/(N-1))."""
    return _window("hamming_window", window_length, periodic, dtype, device,
                   lambda n: alpha - beta * np.cos(2 * np.pi * np.arange(n) / (n - 1)))


def bartlett_window(window_length: int, periodic: bool = True, *, dtype=None, device=None,
                    requires_grad: bool = False, layout=None) -> Tensor:
    """The triangular window 1 - |2n/(N-1) - 1|."""
    return _window("bartlett_window", window_length, periodic, dtype, device, np.bartlett)


def blackman_window(window_length: int, periodic: bool = True, *, dtype=None, device=None,
                    requires_grad: bool = False, layout=None) -> Tensor:
    """0.42 - ½cos(2πn/(N-1)) + 0.08cos(4πn/(N-1))."""
    return _window("blackman_window", window_length, periodic, dtype, device, np.blackman)


def kaiser_window(window_length: int, periodic: bool = True, beta: float = 12.0, *,
                  dtype=None, device=None, requires_grad: bool = False, layout=None) -> Tensor:
    """I₀(β√(1 - (2n/(N-1) - 1)²)) / I₀(β)."""
    return _window("kaiser_window", window_length, periodic, dtype, device,
                   lambda n: np.kaiser(n, beta))


def from_dlpack(ext_tensor) -> Tensor:
    """A tensor sharing the memory of a DLPack-capable array (NumPy, CuPy, torch, ...)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor
    try:
        data = np.from_dlpack(ext_tensor)
    except (TypeError, RuntimeError, BufferError):
        from chainrule import devices as _devices

        cp = _devices.loaded_cupy()
        if cp is None:
            raise
        data = cp.from_dlpack(ext_tensor)
    t = Tensor.__new__(Tensor)
    from chainrule.tensor import init_leaf

    init_leaf(t, data)
    return t


def fill(input: Tensor, value) -> Tensor:
    """A tensor like ``input`` filled with ``value`` (out of place)."""
    return full_like(input, value.item() if isinstance(value, Tensor) else value)


__all__ += [
    "range", "scalar_tensor", "asarray", "empty_strided", "frombuffer", "tril_indices",
    "triu_indices", "hann_window", "hamming_window", "bartlett_window", "blackman_window",
    "kaiser_window", "from_dlpack", "fill",
]
