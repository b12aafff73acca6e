"""Random numbers with PyTorch's CPU streams: the same seed gives the same numbers, bit for bit.

PyTorch's CPU generator is a Mersenne Twister (mt19937, seeded with the 32-bit ``init_genrand``);
each distribution turns its raw 32-bit draws into values in a fixed way. NumPy's ``MT19937``
produces the same raw stream and holds the state here; the transforms below repeat PyTorch 2.13's
(learned from its source, checked against it). How a draw becomes a value:

- uniform float32: the low 24 bits of one draw · 2⁻²⁴; float64: the low 53 bits of two draws
  (the first is the high word) · 2⁻⁵³; then ``u·(to - from) + from`` in one fused multiply-add.
- normal, fewer than 16 elements or a non-contiguous tensor: Box-Muller in float64 on two
  float64 uniforms, the sine cached in the generator for the next draw.
- normal, 16 or more contiguous elements: all uniforms first, then Box-Muller on blocks of 16
  (8 cosines, 8 sines); a ragged end is redone on 16 fresh uniforms. float32 on AVX2 machines
  uses PyTorch's polynomial log and sincos (Cephes), elsewhere the C library's.
- integers in [from, to): one 32-bit draw mod the range, two (a 64-bit draw) from 2²⁸ on.
- randperm: Fisher-Yates with ``draw % (n - i)``; bernoulli: uniform < p; multinomial without
  replacement (or one sample): argmax/topk of p / Exp(1); with replacement: binary search of
  a float64 uniform in the normalised cumulative sum.

Exactness needs the C library's log/sin/cos and fused multiply-adds where PyTorch's compiler
fused them: ``chainrule._crandom`` (optional C) does those loops fast; without it the same
results come from ``math`` and exact NumPy emulation, more slowly.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import platform
from fractions import Fraction
from typing import Any

import numpy as np

from chainrule import batching as _batching
from chainrule import devices as _devices
from chainrule.batching import current_levels as _batching_levels
from chainrule._cephes import fma32 as _fma32

__all__ = [
    "Generator", "default_generator", "manual_seed", "seed", "initial_seed", "get_rng_state",
    "set_rng_state", "fork_rng",
]

DEFAULT_SEED = 67280421310721  # the seed of a fresh torch.Generator()
SMALL_PERM = (2**32 - 1) // 20  # randperm below this n: 32-bit draws with swaps
BIG_RANGE = 2**28  # random_ ranges from this size on use 64-bit draws
MASK53 = np.uint64((1 << 53) - 1)

# torch's CPUGeneratorImplState (x86-64 layout): what get_state() returns, byte for byte
STATE = np.dtype([
    ("initial_seed", "<u8"), ("left", "<i4"), ("seeded", "<i4"), ("next", "<u8"),
    ("mt", "<u8", (624,)), ("normal_x", "<f8"), ("normal_y", "<f8"), ("normal_rho", "<f8"),
    ("normal_is_valid", "<i4"), ("_pad", "V4"), ("next_float_normal", "<f4"),
    ("next_float_normal_is_valid", "u1"), ("_pad2", "V3"),
])
assert STATE.itemsize == 5056


# ---- how this machine's PyTorch computes ------------------------------------------------------
def _torch_cpu_kernels() -> str:
    """"avx2" where PyTorch runs its AVX2/AVX512 kernels (x86 with AVX2 and FMA, unless
    ATEN_CPU_CAPABILITY=default): they fuse multiply-adds and draw float32 normals with the
    polynomial log/sincos. "default" otherwise (the C library, no fused multiply-add)."""
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if forced == "default":
        return "default"
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return "default"
    if forced in ("avx2", "avx512"):
        return "avx2"
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return "avx2"
    return "avx2" if features.get("AVX2") and features.get("FMA3") else "default"


KERNELS = _torch_cpu_kernels()
FUSED = KERNELS == "avx2"


def _load_c():
    if os.environ.get("CHAINRULE_PURE_PYTHON"):
        return None
    try:
        from chainrule import _crandom
    except ImportError:
        return None
    return _crandom if getattr(_crandom, "INTERFACE", None) == 1 else None


_c = _load_c()


# ---- exact arithmetic: the C library's functions and fused multiply-adds ----------------------
def libm(name: str, x: np.ndarray) -> np.ndarray:
    """``name`` (log, log1p, sin, cos, tan, exp; logf, sinf, cosf on float32) applied
    elementwise with the C library, as PyTorch's kernels call it (NumPy's differ in the last
    bit)."""
    out = np.array(x, dtype=np.float32 if name.endswith("f") else np.float64, order="C")
    if out.size == 0:
        return out
    if _c is not None:
        _c.libm(name, out.reshape(-1))
        return out
    if name.endswith("f"):
        return _libm_f32(name, out)
    fn = getattr(math, name)
    flat = out.reshape(-1)
    for i, v in enumerate(flat.tolist()):
        try:
            flat[i] = fn(v)
        except (ValueError, OverflowError):  # math raises where C returns ±inf/nan
            with np.errstate(all="ignore"):
                flat[i] = getattr(np, name)(np.float64(v))
    return out


def _libm_f32(name: str, x: np.ndarray) -> np.ndarray:
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    flat = x.reshape(-1)
    for i, v in enumerate(flat.tolist()):
        flat[i] = fn(v)
    return x


def fma(a, b, c, dtype) -> np.ndarray:
    """a·b + c rounded once, elementwise in float32 or float64 (broadcast)."""
    dtype = np.dtype(dtype)
    a, b, c = (np.asarray(v, dtype) for v in (a, b, c))
    shape = np.broadcast_shapes(a.shape, b.shape, c.shape)
    if _c is not None:
        out = np.empty(shape, dtype)
        flat = [np.ascontiguousarray(v if v.size == 1 else np.broadcast_to(v, shape)).reshape(-1)
                for v in (a, b, c)]
        _c.fma(*flat, out.reshape(-1))
        return out
    if dtype == np.float32:
        return _fma32(*np.broadcast_arrays(a, b, c))
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    for i, (x, y, z) in enumerate(zip(*(np.broadcast_to(v, shape).reshape(-1).tolist()
                                        for v in (a, b, c)))):
        if math.isfinite(x) and math.isfinite(y) and math.isfinite(z):
            flat[i] = float(Fraction(x) * Fraction(y) + Fraction(z))
        else:
            flat[i] = x * y + z
    return out


def _fused(a, b, c, acc) -> np.ndarray:
    """a·b + c as this machine's PyTorch computes it: one rounding (fused) or two."""
    if FUSED:
        return fma(a, b, c, acc)
    return (np.asarray(a, acc) * np.asarray(b, acc) + np.asarray(c, acc)).astype(acc)


# ---- the generator ----------------------------------------------------------------------------
class Generator:
    """A Mersenne Twister with PyTorch's CPU stream: ``cr.Generator().manual_seed(0)`` draws
    what ``torch.Generator().manual_seed(0)`` draws. ``get_state``/``set_state`` use torch's
    byte layout, so a state saved by either library restores the same stream in the other.
    A ``device="cuda"`` generator seeds CuPy's generator (GPU streams are CuPy's, not torch's).
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = _devices.as_device(device)
        self._bits = np.random.MT19937()
        self._draw = np.random.Generator(self._bits)
        self._cupy = None
        self.manual_seed(DEFAULT_SEED)

    def __repr__(self) -> str:
        return f"<chainrule.Generator object (device='{self.device}', initial_seed={self._seed})>"

    # -- seeding --
    def manual_seed(self, seed: int) -> Generator:
        """Seed the generator (any int in [-2⁶³, 2⁶⁴); negative seeds wrap mod 2⁶⁴)."""
        if isinstance(seed, (bool, float, str, bytes)) or not hasattr(seed, "__index__"):
            raise RuntimeError(f"manual_seed expected a long, but got {type(seed).__name__}")
        seed = operator.index(seed)
        if not -2**63 <= seed < 2**64:
            raise ValueError("Overflow when unpacking long long")
        self._seed = seed % 2**64
        key = np.random.RandomState(self._seed & 0xFFFFFFFF).get_state()[1]  # init_genrand
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
        self._fresh = True  # torch reports a never-used engine as left=1, next=0
        self._normal64: float | None = None
        self._normal32: float | None = None
        if self.device.type == "cuda":
            self._cupy = _devices.xp(self.device).random.RandomState(self._seed % 2**32)
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy; returns the seed."""
        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    # -- state in torch's layout --
    def get_state(self):
        """The state as a uint8 tensor of 5056 bytes (torch's CPUGeneratorImplState)."""
        from chainrule.tensor import wrap

        st = self._bits.state["state"]
        rec = np.zeros((), STATE)
        rec["initial_seed"] = self._seed
        rec["seeded"] = 1
        pos = int(st["pos"])
        rec["left"], rec["next"] = (1, 0) if self._fresh else (625 - pos, pos)
        rec["mt"] = st["key"].astype(np.uint64)
        if self._normal64 is not None:
            rec["normal_is_valid"], rec["normal_y"] = 1, self._normal64
        if self._normal32 is not None:
            rec["next_float_normal_is_valid"], rec["next_float_normal"] = 1, self._normal32
        return wrap(np.frombuffer(rec.tobytes(), np.uint8).copy())

    def set_state(self, new_state) -> Generator:
        """Restore a state from ``get_state`` (chainrule's or torch's: a uint8 tensor or array
        of 5056 bytes)."""
        data = getattr(new_state, "_data", new_state)
        arr = np.asarray(_devices.to_device(data, "cpu") if _devices.is_array(data) else data)
        if arr.dtype != np.uint8:
            raise TypeError("RNG state must be a torch.ByteTensor")
        if arr.size != STATE.itemsize:
            raise RuntimeError(f"Expected a CPUGeneratorImplState of size {STATE.itemsize} but "
                               f"found the input RNG state size to be {arr.size}")
        rec = np.frombuffer(np.ascontiguousarray(arr).tobytes(), STATE)[0]
        left, nxt = int(rec["left"]), int(rec["next"])
        if not (rec["seeded"] and 0 < left <= 624 and nxt <= 624):
            raise RuntimeError("Invalid mt19937 state")
        key = (rec["mt"] & 0xFFFFFFFF).astype(np.uint32)
        self._bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 625 - left}}
        self._seed = int(rec["initial_seed"])
        self._fresh = left == 1 and nxt == 0
        self._normal64 = float(rec["normal_y"]) if rec["normal_is_valid"] else None
        self._normal32 = (float(rec["next_float_normal"]) if rec["next_float_normal_is_valid"]
                          else None)
        return self

    def clone_state(self) -> Generator:
        """A new generator in this one's state."""
        g = Generator(self.device)
        g.set_state(self.get_state())
        return g

    # -- raw draws (what PyTorch's random() and random64() return) --
    def _u32(self, n: int) -> np.ndarray:
        if n:
            self._fresh = False
        return self._draw.integers(0, 2**32, size=n, dtype=np.uint32)

    def _u64(self, n: int) -> np.ndarray:
        pairs = self._u32(2 * n).reshape(n, 2)
        return (pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1]

    def _snapshot(self):
        return self._bits.state, self._fresh

    def _rewind(self, snap) -> None:
        self._bits.state, self._fresh = snap


def _default() -> Generator:
    g = Generator()
    g.seed()
    return g


default_generator = _default()


def manual_seed(seed) -> Generator:
    """Seed the default generator (and CuPy's on GPUs); returns the default generator."""
    seed = int(seed)
    if _devices.cuda_available():  # every GPU's generator, as torch.manual_seed
        _devices.seed_all_gpus(seed)
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from the operating system's entropy; returns the seed."""
    s = default_generator.seed()
    if _devices.cuda_available():
        _devices.seed_all_gpus(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state():
    """The default generator's state (a uint8 tensor in torch's layout)."""
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled: bool = True, _caller: str = "fork_rng",
             _devices_kw: str = "devices", device_type: str = "cuda"):
    """Restore the default generator's state (and CuPy's) when the block exits."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    cupy_state = None
    if _devices.cuda_available():
        cupy_state = _devices.xp("cuda").random.get_random_state()
    try:
        yield
    finally:
        set_rng_state(state)
        if cupy_state is not None:
            _devices.xp("cuda").random.set_random_state(cupy_state)


def generator_of(generator: Generator | None) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a chainrule.Generator, got "
                        f"{type(generator).__name__}")
    return generator


# ---- uniform ------------------------------------------------------------------------------------
_DIGITS = {np.dtype(np.float16): 11, np.dtype(np.float32): 24, np.dtype(np.float64): 53}


def unit(gen: Generator, n: int, dtype) -> np.ndarray:
    """n uniforms in [0, 1) as PyTorch draws them for ``dtype``: float64 from the low 53 bits
    of a 64-bit draw, float32 (also for float16) from the low 24 bits of a 32-bit draw."""
    if np.dtype(dtype) == np.float64:
        return (gen._u64(n) & MASK53).astype(np.float64) * 2.0**-53
    v = gen._u32(n)
    v &= np.uint32((1 << 24) - 1)
    out = v.astype(np.float32)
    out *= np.float32(2.0**-24)
    return out


def _acc(dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def uniform(gen: Generator, n: int, dtype, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``uniform_(low, high)``: u·(high - low) + low with the bounds cast to ``dtype``; a value
    that rounds up to ``high`` becomes ``low`` (the interval stays half-open, as in PyTorch)."""
    dtype, acc = np.dtype(dtype), _acc(dtype)
    x = unit(gen, n, dtype)
    if low == 0 and high == 1 and dtype == acc:  # nothing to scale, nothing rounds up to 1
        return x
    lo, hi = acc.type(low), acc.type(high)  # float16 works in float32
    out = _fused(x, hi - lo, lo, acc).astype(dtype, copy=False)
    out[out == dtype.type(high)] = dtype.type(low)
    return out


# ---- normal -------------------------------------------------------------------------------------
def standard_normal_pairs(gen: Generator, n: int) -> np.ndarray:
    """n float64 standard normals from the scalar path: Box-Muller on two float64 uniforms,
    cos first, the sine kept in the generator for the next call."""
    out = np.empty(n)
    start = 0
    if n and gen._normal64 is not None:
        out[0], gen._normal64, start = gen._normal64, None, 1
    pairs = (n - start + 1) // 2
    if pairs:
        u = unit(gen, 2 * pairs, np.float64).reshape(pairs, 2)
        radius = np.sqrt(-2.0 * libm("log1p", -u[:, 1]))
        theta = (2.0 * math.pi) * u[:, 0]
        cos, sin = radius * libm("cos", theta), radius * libm("sin", theta)
        both = np.stack([cos, sin], 1).reshape(-1)
        out[start:] = both[: n - start]
        if (n - start) % 2:
            gen._normal64 = float(sin[-1])
    return out


def _box_muller_blocks(d: np.ndarray, mean: float, std: float) -> None:
    """Box-Muller in place on whole blocks of 16 uniforms: [0:8] -> cosines, [8:16] -> sines,
    with the C library; the scaling r·cos θ·std + mean is one fused multiply-add (on every
    machine: PyTorch's baseline kernels fuse it here too)."""
    blocks = d.reshape(-1, 2, 8)
    u1, u2 = 1 - blocks[:, 0], blocks[:, 1]
    if d.dtype == np.float32:  # only the "default" kernels reach here (AVX2: _cephes_blocks)
        radius = np.sqrt(np.float32(-2) * libm("logf", u1))
        theta = ((2.0 * math.pi) * u2.astype(np.float64)).astype(np.float32)
        trig = ("cosf", "sinf")
    else:
        radius = np.sqrt(-2.0 * libm("log", u1))
        theta = (2.0 * math.pi) * u2
        trig = ("cos", "sin")
    for k, fn in enumerate(trig):
        blocks[:, k] = fma(radius * libm(fn, theta), std, mean, d.dtype)


def _cephes_blocks(d: np.ndarray, mean: float, std: float) -> None:
    """PyTorch's AVX2 float32 Box-Muller on whole blocks of 16, in place."""
    if _c is not None:
        _c.normal_cephes(d, float(np.float32(mean)), float(np.float32(std)))
        return
    from chainrule import _cephes

    blocks = d.reshape(-1, 2, 8)
    radius = np.sqrt(np.float32(-2) * _cephes.log(np.float32(1) - blocks[:, 0]))
    sin, cos = _cephes.sincos(np.float32(2 * math.pi) * blocks[:, 1])
    std, mean = np.float32(std), np.float32(mean)
    blocks[:, 0] = _fma32(*np.broadcast_arrays(radius * cos, std, mean))
    blocks[:, 1] = _fma32(*np.broadcast_arrays(radius * sin, std, mean))


def normal(gen: Generator, n: int, dtype, mean: float = 0.0, std: float = 1.0,
           contiguous: bool = True) -> np.ndarray:
    """``normal_(mean, std)`` on n elements of ``dtype`` (see the module docstring)."""
    dtype = np.dtype(dtype)
    if n < 16 or not contiguous or dtype not in (np.float16, np.float32, np.float64):
        z = standard_normal_pairs(gen, n)
        return _fused(z, std, mean, np.float64).astype(dtype, copy=False)
    acc = _acc(dtype)
    whole = n - n % 16
    transform = _cephes_blocks if acc == np.float32 and KERNELS == "avx2" else _box_muller_blocks
    if acc == np.float64:
        mean, std = float(mean), float(std)
    # float32/64 draw all n uniforms first and the ragged end's 16 after them; float16 (computed
    # in float32) draws only the whole blocks' uniforms before the end's
    d = unit(gen, n if dtype != np.float16 else whole, acc)
    transform(d[:whole], mean, std)
    if n % 16:  # the ragged end: the last 16 places again, on fresh uniforms
        tail = unit(gen, 16, acc)
        transform(tail, mean, std)
        if len(d) < n:
            d = np.concatenate([d, tail[: n - len(d)]])  # overwritten on the next line
        d[n - 16:] = tail
    return d.astype(dtype, copy=False)


# ---- integers -----------------------------------------------------------------------------------
def random_from_to(gen: Generator, n: int, dtype, low: int, span: int) -> np.ndarray:
    """``random_(low, low + span)``: (draw mod span) + low, 64-bit draws from 2²⁸ on."""
    draws = gen._u64(n) if span >= BIG_RANGE else gen._u32(n).astype(np.uint64)
    vals = (draws % np.uint64(span)).astype(np.int64)  # < span <= 2**64, wraps like C
    vals = (vals.astype(np.uint64) + np.uint64(low % 2**64)).view(np.int64)
    return _cast_ints(vals, dtype)


def random_full(gen: Generator, n: int, dtype) -> np.ndarray:
    """``random_(-2⁶³, None)``: a whole 64-bit draw as int64."""
    return _cast_ints(gen._u64(n).view(np.int64), dtype)


def random_default(gen: Generator, n: int, dtype) -> np.ndarray:
    """``random_()``: [0, 2^mantissa] for floats, [0, max] for integers, a bit for bool."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return (gen._u32(n) & np.uint32(1)).astype(np.bool_)
    if dtype == np.int64:
        return (gen._u64(n) % np.uint64(2**63)).astype(np.int64)
    if dtype == np.float64:
        return (gen._u64(n) % np.uint64(2**53 + 1)).astype(np.float64)
    if dtype.kind == "f":
        return (gen._u32(n) % np.uint32(2**_DIGITS[dtype] + 1)).astype(dtype)
    top = int(np.iinfo(dtype).max) + 1
    return (gen._u32(n) % np.uint32(top)).astype(dtype)


def _cast_ints(vals: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return vals != 0
    return vals.astype(dtype)  # int64 -> narrower ints wrap, -> floats round, as C casts do


def random_bounds(dtype, low: int, high: int | None) -> tuple[int, int]:
    """(low, span) for ``random_(low, high)`` on ``dtype`` with PyTorch's checks; high=None means
    up to the largest value of the dtype (2^mantissa for floats)."""
    dtype = np.dtype(dtype)
    name = _torch_name(dtype)
    if high is not None:
        if low >= high:
            raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got "
                               f"from={low} >= to={high}")
        _check_in_range(low, high - 1, dtype, name)
        return low, high - low
    if dtype.kind == "f":
        top = 2**_DIGITS[dtype]
        low = _float_from(low, dtype)
        if low >= top:
            raise RuntimeError(f"random_ expects 'from' casted to dtype to be less than or equal "
                               f"to 'to_inc' casted to dtype, but got from={low} > to_inc={top}")
    else:
        top = 1 if dtype == np.bool_ else int(np.iinfo(dtype).max)
    _check_in_range(low, top, dtype, name)
    return low, top - low + 1


def _float_from(low: int, dtype) -> int:
    """PyTorch's update_from: a ``from`` that the float dtype rounds down moves up to the next
    representable integer."""
    plus1 = int(dtype.type(low + 1))
    if plus1 < low:
        n = abs(low + 1).bit_length() - 1
        low = plus1 + (1 << (n - _DIGITS[dtype] + 1))
    return low


def _check_in_range(low: int, high_inc: int, dtype, name: str) -> None:
    if dtype.kind == "f":
        top = 2**_DIGITS[dtype]
        lo_ok, hi_ok = -top <= low <= top, -top <= high_inc <= top
        bounds = f"[-(2^{_DIGITS[dtype]}), 2^{_DIGITS[dtype]}]"
        if not lo_ok or not hi_ok:
            which = "from" if not lo_ok else "to - 1"
            raise RuntimeError(f"{which} is out of bounds {bounds}. Due to precision "
                               f"limitations {name.lower()} can support discrete uniform "
                               f"distribution only within this range.")
        return
    lo, hi = (0, 1) if dtype == np.bool_ else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    if not lo <= low <= hi:
        raise RuntimeError(f"from is out of bounds for {_C_NAMES[dtype.name]}")
    if not lo <= high_inc <= hi:
        raise RuntimeError(f"to - 1 is out of bounds for {_C_NAMES[dtype.name]}")


_C_NAMES = {"int64": "long int", "int32": "int", "int16": "short int", "int8": "signed char",
            "uint8": "unsigned char", "bool": "bool"}  # as PyTorch's messages spell the types


def _torch_name(dtype) -> str:
    return {"float16": "Half", "float32": "Float", "float64": "Double", "int64": "Long",
            "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool", "bfloat16": "BFloat16"}[np.dtype(dtype).name]


def randperm(gen: Generator, n: int) -> np.ndarray:
    """A permutation of 0..n-1 as PyTorch's randperm draws it (int64)."""
    perm = np.arange(n, dtype=np.int64)
    if n < SMALL_PERM:  # swap i with i + draw % (n - i), one 32-bit draw per i < n - 1
        draws = gen._u32(max(n - 1, 0))
        if _c is not None:
            _c.shuffle(perm, draws)
            return perm
        offsets = (draws % np.arange(n, 1, -1, dtype=np.uint32)).tolist()
        for i, k in enumerate(offsets):
            perm[i], perm[i + k] = perm[i + k], perm[i]
        return perm
    draws = gen._u64(n)  # the "inside-out" shuffle, one 64-bit draw per i
    if _c is not None:
        _c.shuffle_inside_out(perm, draws)
        return perm
    for i, k in enumerate((draws % np.arange(1, n + 1, dtype=np.uint64)).tolist()):
        perm[i] = perm[k]
        perm[k] = i
    return perm


# ---- other distributions ------------------------------------------------------------------------
def bernoulli_scalar(gen: Generator, n: int, p: float) -> np.ndarray:
    """``bernoulli_(p)`` with a float p: float64 uniform < p (bool array)."""
    return unit(gen, n, np.float64) < p


def bernoulli_tensor(gen: Generator, p: np.ndarray) -> np.ndarray:
    """``bernoulli_(p)`` with a tensor p (already broadcast, in draw order): a float64 uniform
    for a float64 p, a float32 one otherwise."""
    p = np.asarray(p)
    if p.size and ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.  (Could "
                           "this error message be improved?  If so, please report an "
                           "enhancement request to PyTorch.)")
    if p.dtype == np.float64:
        return unit(gen, p.size, np.float64).reshape(p.shape) < p
    return unit(gen, p.size, np.float32).reshape(p.shape) < p.astype(np.float32)


def exponential(gen: Generator, n: int, lambd: float) -> np.ndarray:
    """float64 -1/λ · log1p(-u)."""
    return (-1.0 / lambd) * libm("log1p", -unit(gen, n, np.float64))


def cauchy(gen: Generator, n: int, median: float, sigma: float) -> np.ndarray:
    """float64 median + σ · tan(π (u - ½))."""
    return _fused(sigma, libm("tan", math.pi * (unit(gen, n, np.float64) - 0.5)), median,
                  np.float64)


def log_normal(gen: Generator, n: int, mean: float, std: float) -> np.ndarray:
    """float64 exp(N(mean, std²)), the normals from the scalar path."""
    return libm("exp", _fused(standard_normal_pairs(gen, n), std, mean, np.float64))


def geometric(gen: Generator, n: int, p: float) -> np.ndarray:
    """float64 ⌈log u / log(1 - p)⌉."""
    with np.errstate(divide="ignore"):
        return np.ceil(libm("log", unit(gen, n, np.float64)) / math.log(1.0 - p))


def poisson(gen: Generator, rates: np.ndarray) -> np.ndarray:
    """PyTorch's Poisson sampler per rate (in order): multiplication of uniforms below 10,
    Hörmann's transformed rejection from 10 on. Returns float64."""
    stream = _UniformStream(gen)
    out = np.empty(rates.size)
    for i, lam in enumerate(rates.reshape(-1).tolist()):
        out[i] = _poisson_one(lam, stream)
    stream.close()
    return out.reshape(rates.shape)


def _poisson_one(lam: float, u) -> int:
    if lam >= 10:
        slam, loglam = math.sqrt(lam), math.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
        vr = 0.9277 - 3.6224 / (b - 2)
        while True:
            uu = u() - 0.5
            v = u()
            us = 0.5 - abs(uu)
            k = math.floor((2 * a / us + b) * uu + lam + 0.43)
            if us >= 0.07 and v <= vr:
                return k
            if k < 0 or (us < 0.013 and v > us):
                continue
            if (math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                    <= -lam + k * loglam - math.lgamma(k + 1)):
                return k
    if lam == 0:
        return 0
    enlam, x, prod = math.exp(-lam), 0, 1.0
    while True:
        prod *= u()
        if prod <= enlam:
            return x
        x += 1


class _UniformStream:
    """float64 uniforms one at a time for samplers that need an unknown number: drawn in blocks,
    and on close the generator is left exactly after the ones used."""

    def __init__(self, gen: Generator, block: int = 1024) -> None:
        self.gen, self.block, self.used = gen, block, 0
        self.snap = gen._snapshot()
        self.buf: list[float] = []
        self.pos = 0

    def __call__(self) -> float:
        if self.pos == len(self.buf):
            self.buf = unit(self.gen, self.block, np.float64).tolist()
            self.pos = 0
        self.pos += 1
        self.used += 1
        return self.buf[self.pos - 1]

    def close(self) -> None:
        self.gen._rewind(self.snap)
        self.gen._u32(2 * self.used)


def multinomial(gen: Generator, probs: np.ndarray, num_samples: int,
                replacement: bool) -> np.ndarray:
    """Rows of ``probs`` (2-d, float) -> (rows, num_samples) int64 indices, as PyTorch samples."""
    rows, k = probs.shape
    if not replacement or num_samples == 1:
        if probs.size and not (np.isfinite(probs.max()) and probs.min() >= 0):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        if (probs.sum(1) == 0).any():
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        q = exponential(gen, probs.size, 1.0).astype(probs.dtype).reshape(probs.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = probs / q
        if num_samples == 1:
            return np.argmax(q, axis=1).reshape(rows, 1).astype(np.int64)
        return np.argsort(-q, axis=1, kind="stable")[:, :num_samples].astype(np.int64)
    acc = np.float64 if probs.dtype == np.float64 else np.float32
    out = np.empty((rows, num_samples), np.int64)
    for r in range(rows):
        row = probs[r].astype(acc)
        if (row < 0).any():
            raise RuntimeError("invalid multinomial distribution (encountering probability entry "
                               "< 0)")
        if not np.isfinite(row).all():
            raise RuntimeError("invalid multinomial distribution (encountering probability entry "
                               "= infinity or NaN)")
        cum = np.cumsum(row)  # sequential, in the input's precision
        if not cum[-1] > 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        cum = cum / cum[-1]
        cum[-1] = 1
        u = unit(gen, num_samples, np.float64)
        out[r] = np.searchsorted(cum.astype(np.float64), u, side="left")
    return out


# ---- filling a tensor in place ------------------------------------------------------------------
def memory_axes(arr: np.ndarray) -> tuple:
    """The axes of ``arr`` from the largest stride to the smallest: PyTorch fills a tensor in
    memory order (C order for a contiguous one, column by column for a transposed one)."""
    if arr.ndim < 2 or arr.flags.c_contiguous:
        return tuple(range(arr.ndim))
    return tuple(sorted(range(arr.ndim), key=lambda d: -abs(arr.strides[d])))


def fill(tensor, values, levels: tuple = (), shape: tuple | None = None,
         axes: tuple | None = None) -> Any:
    """Write ``values`` (in draw order) into ``tensor`` in place, in memory order; returns it
    (through ``copy_``: a version bump, and torch's rules for tensors in a graph). Inside vmap
    the values are laid out for ``levels`` (see :func:`vmap_layout`): ``shape`` and fill order
    ``axes``."""
    data = tensor._data
    if shape is None:
        shape, axes = data.shape, memory_axes(data)
    arranged = _devices.xp_of(_batching.deep(data)).empty(shape, data.dtype)
    view = arranged.transpose(axes)  # arranged's logical positions are tensor's
    view[...] = values.reshape(view.shape)
    return tensor.copy_(_batching.from_physical(arranged, levels))


def vmap_levels(inputs=None) -> tuple:
    """The vmap levels at which a new random tensor draws per example (outermost first; () out
    of vmap): a factory (``inputs`` None) or a draw parametrised by ``inputs`` (arrays or
    tensors: ``bernoulli(p)``, ``multinomial``, ...). Raises torch.func's errors."""
    if not _batching_levels():
        return ()
    if inputs is None:
        return _batching.random_levels("factory")
    return _batching.random_levels("pointwise", [getattr(x, "_data", x) for x in inputs])


def vmap_layout(tensor, extra=(), op: str = "") -> tuple:
    """``(levels, shape, axes)`` of an in-place draw into ``tensor``: the vmap levels at which
    it draws per example (torch.func's checks), the shape of the draw and the order to write
    it in (``tensor``'s memory order; out of vmap: ``(), tensor.shape, memory_axes``)."""
    data = tensor._data
    if not _batching_levels():
        return (), data.shape, memory_axes(data)
    levels = _batching.random_levels("inplace", [getattr(x, "_data", x) for x in extra], data,
                                     op)
    if levels == _batching.levels_of(data):  # every example its own draw: the tensor's layout
        phys = _batching.deep(data)
        return levels, phys.shape, memory_axes(phys)
    shape = _batching.layout_shape(levels, data.shape)  # then broadcast over the other levels
    return levels, shape, tuple(range(len(shape)))


# ---- the in-place fills behind Tensor.uniform_, normal_, ... ------------------------------------
_MISSING = object()


def _draw_into(tensor, generator, draw, gpu, layout: tuple | None = None) -> Any:
    """Fill ``tensor`` with ``draw(gen, n)`` (CPU) or ``gpu(cupy_random, shape)`` (GPU), laid
    out as :func:`vmap_layout` says."""
    levels, shape, axes = layout or vmap_layout(tensor)
    if _devices.device_of(tensor._data).type == "cuda":
        rs = _cupy_random(generator, tensor._data)
        return fill(tensor, gpu(rs, shape).astype(tensor._data.dtype), levels, shape, axes)
    gen = generator_of(generator)
    n = 1
    for s in shape:
        n *= s
    return fill(tensor, np.asarray(draw(gen, n)).astype(tensor._data.dtype, copy=False),
                levels, shape, axes)


def _cupy_random(generator, data):
    if generator is None:
        return _devices.xp_of(data).random
    if generator.device.type != "cuda":
        raise RuntimeError(f"Expected a 'cuda' device type for generator but found "
                           f"'{generator.device.type}'")
    return generator._cupy


def _floating(tensor, kernel: str) -> np.dtype:
    """The dtype to draw in: the tensor's, or float32 for bfloat16 (rounded when written)."""
    dtype = tensor._data.dtype
    if dtype.kind == "V" and dtype.name == "bfloat16":
        return np.dtype(np.float32)
    if dtype.kind != "f":
        raise NotImplementedError(f'"{kernel}" not implemented for \'{_torch_name(dtype)}\'')
    return dtype


def _continuous(tensor, name: str, ctype: bool = False) -> np.dtype:
    dtype = tensor._data.dtype
    if dtype.kind != "f":
        spelled = _C_NAMES.get(dtype.name, dtype.name) if ctype else _torch_name(dtype)
        raise RuntimeError(f"{name} distribution is a continuous probability distribution. dtype "
                           f"must be a floating point but you specified {spelled}")
    return dtype


def uniform_(tensor, from_: float = 0.0, to: float = 1.0, generator=None):
    """Fill with U(from, to) samples."""
    dtype = _floating(tensor, "check_uniform_bounds")
    if from_ > to:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found "
                           f"from={_num(from_)} > to={_num(to)}")
    return _draw_into(tensor, generator, lambda g, n: uniform(g, n, dtype, from_, to),
                      lambda rs, shape: rs.uniform(from_, to, shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std²) samples."""
    dtype = _floating(tensor, "normal_kernel_cpu")
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {_num(std)}")
    contiguous = tensor._data.flags.c_contiguous
    return _draw_into(tensor, generator,
                      lambda g, n: normal(g, n, dtype, mean, std, contiguous),
                      lambda rs, shape: rs.normal(mean, std, shape))


def random_(tensor, from_=_MISSING, to=_MISSING, generator=None):
    """Fill with integers: ``random_()`` over [0, 2^mantissa] (floats) or [0, max] (integers),
    ``random_(to)`` over [0, to), ``random_(from, to)`` over [from, to) (to=None: up to max)."""
    dtype = tensor._data.dtype
    if from_ is _MISSING and to is _MISSING:
        return _draw_into(tensor, generator, lambda g, n: random_default(g, n, dtype),
                          lambda rs, shape: _gpu_random(rs, shape, dtype, 0, None))
    if to is _MISSING:
        from_, to = 0, from_
    from_ = operator.index(from_)
    to = None if to is None else operator.index(to)
    if to is None and from_ == -2**63:
        if dtype not in (np.int64, np.float32, np.float64):
            raise RuntimeError("random_full_64_bits_range_kernel_cpu handles only int64, "
                               "double, float and bfloat16")
        return _draw_into(tensor, generator, lambda g, n: random_full(g, n, dtype),
                          lambda rs, shape: _gpu_random(rs, shape, dtype, from_, None))
    low, span = random_bounds(dtype, from_, to)
    return _draw_into(tensor, generator, lambda g, n: random_from_to(g, n, dtype, low, span),
                      lambda rs, shape: _gpu_random(rs, shape, dtype, low, low + span))


def _gpu_random(rs, shape, dtype, low, high):
    if high is None:
        high = 2**_DIGITS[dtype] + 1 if dtype.kind == "f" else (
            2 if dtype == np.bool_ else int(np.iinfo(dtype).max) + 1)
    return rs.randint(low, min(high, 2**63 - 1), shape, dtype=np.int64)


def exponential_(tensor, lambd: float = 1.0, generator=None):
    """Fill with Exp(λ) samples."""
    _continuous(tensor, "Exponential")
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={_num(lambd)}")
    return _draw_into(tensor, generator, lambda g, n: exponential(g, n, lambd),
                      lambda rs, shape: rs.exponential(1.0 / lambd, shape))


def cauchy_(tensor, median: float = 0.0, sigma: float = 1.0, generator=None):
    """Fill with Cauchy(median, σ) samples."""
    _continuous(tensor, "Cauchy", ctype=True)
    if not sigma > 0:
        raise RuntimeError(f"cauchy_ expects sigma > 0.0, but found sigma={_num(sigma)}")
    return _draw_into(tensor, generator, lambda g, n: cauchy(g, n, median, sigma),
                      lambda rs, shape: median + sigma * rs.standard_cauchy(shape))


def log_normal_(tensor, mean: float = 1.0, std: float = 2.0, generator=None):
    """Fill with exp(N(mean, std²)) samples."""
    _floating(tensor, "log_normal_cpu")
    if not std > 0:
        raise RuntimeError(f"log_normal_ expects std > 0.0, but found std={_num(std)}")
    return _draw_into(tensor, generator, lambda g, n: log_normal(g, n, mean, std),
                      lambda rs, shape: rs.lognormal(mean, std, shape))


def geometric_(tensor, p: float, generator=None):
    """Fill with the number of Bernoulli(p) trials up to the first success."""
    if not 0 < p < 1:
        raise RuntimeError(f"geometric_ expects p to be in (0, 1), but got p={_num(p)}")
    return _draw_into(tensor, generator, lambda g, n: geometric(g, n, p),
                      lambda rs, shape: rs.geometric(p, shape))


def bernoulli_(tensor, p=0.5, generator=None):
    """Fill with 1 with probability p (a float, or a tensor broadcastable to ``tensor``)."""
    p_data = getattr(p, "_data", None)
    if p_data is None:
        if not 0 <= p <= 1:
            raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={_num(p)}")
        return _draw_into(tensor, generator, lambda g, n: bernoulli_scalar(g, n, p),
                          lambda rs, shape: rs.random_sample(shape) < p)
    if p_data.dtype.kind != "f":
        raise NotImplementedError(f'"bernoulli_tensor_cpu_p_" not implemented for '
                                  f"'{_torch_name(p_data.dtype)}'")
    layout = levels, shape, axes = vmap_layout(tensor, (p_data,), "bernoulli")
    if levels or _batching.levels_of(p_data):  # inside vmap: p laid out like the draw
        pad = (1,) * (tensor._data.ndim - p_data.ndim)
        p_data = _batching.physical(p_data, levels)
        p_data = p_data.reshape(shape[:len(levels)] + pad + p_data.shape[len(levels):])
    if _devices.device_of(tensor._data).type == "cuda":
        probs = _devices.to_device(p_data, tensor.device)  # broadcast by the comparison
        return _draw_into(tensor, generator, None,
                          lambda rs, shape: rs.random_sample(shape) < probs, layout=layout)
    probs = np.broadcast_to(_devices.to_device(p_data, "cpu"), shape)
    probs = probs.transpose(axes).reshape(-1)
    return _draw_into(tensor, generator, lambda g, n: bernoulli_tensor(g, probs), None,
                      layout=layout)


def _num(x) -> str:
    """A number as PyTorch prints it in messages (1.0 -> 1, 1.5 -> 1.5)."""
    return f"{x:g}" if isinstance(x, float) else str(x)
