"""PyTorch's float32 polynomial log and sincos (Cephes, as in sse_mathfun/avx_mathfun) in NumPy.

PyTorch's AVX2 ``randn`` computes its Box-Muller with these instead of the C library; they are
repeated here operation for operation, with a fused multiply-add wherever PyTorch's compiler
fused one (found by comparing with torch 2.13 on millions of draws). This is the fallback of
``chainrule._crandom.normal_cephes`` for installs without a C compiler; both give the same bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["log", "sincos"]

def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 a·b + c rounded once. The product is exact in float64 and the float64 sum s is
    off only where it lands exactly on a float32 tie (or in float32's subnormal range): there
    the sum's rounding error (TwoSum) says which way the true value lies."""
    p = a.astype(np.float64) * b.astype(np.float64)
    s = p + c
    with np.errstate(over="ignore"):
        out = s.astype(np.float32)
    bits = s.view(np.int64)
    suspect = ((bits & 0x1FFFFFFF) == 0x10000000) | (np.abs(s) < 2.0**-125)
    if suspect.any():
        p, s, c = p[suspect], s[suspect], np.broadcast_to(c, suspect.shape)[suspect]
        t = s - p
        err = (p - (s - t)) + (c.astype(np.float64) - t)  # s + err == p + c exactly
        odd = np.where((err != 0) & ((s.view(np.int64) & 1) == 0),
                       np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
        out[suspect] = odd.astype(np.float32)  # rounding to odd first: no double rounding
    return out


f32 = np.float32
_LOG_POLY = [f32(c) for c in (
    7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
    -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1)]


def _fma(a, b, c) -> np.ndarray:
    return fma32(*np.broadcast_arrays(np.asarray(a, f32), np.asarray(b, f32),
                                       np.asarray(c, f32)))


def log(x: np.ndarray) -> np.ndarray:
    """Natural log of positive float32 x: x = m·2^e with m in [√½, √2), log(1 + (m - 1)) by a
    degree-9 polynomial, plus e·log 2 in two parts."""
    x = np.maximum(np.asarray(x, f32), np.array(0x00800000, np.int32).view(f32))
    bits = x.view(np.int32)
    e = ((bits >> 23) - 0x7F).astype(f32) + f32(1)
    m = ((bits & ~0x7F800000) | np.array(0.5, f32).view(np.int32)).view(f32)
    small = m < f32(0.707106781186547524)
    m = (m - f32(1)) + np.where(small, m, f32(0))
    e = e - np.where(small, f32(1), f32(0))
    z = m * m
    y = np.full_like(m, _LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        y = _fma(y, m, c)
    y = _fma(y * m, z, e * f32(-2.12194440e-4))
    y = _fma(z, f32(-0.5), y)
    return _fma(e, f32(0.693359375), m + y)


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x) of float32 x: reduce by multiples of π/4 (in three parts), then one of two
    polynomials on [-π/4, π/4] and the octant's signs."""
    x = np.asarray(x, f32)
    negative = x < 0
    x = np.abs(x)
    j = (x * f32(1.27323954473516)).astype(np.int32)
    j = (j + 1) & ~1
    y = j.astype(f32)
    sin_flip = negative ^ ((j & 4) != 0)
    cos_flip = ((j - 2) & 4) == 0
    sin_poly = (j & 2) == 0
    for c in (-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8):
        x = _fma(y, f32(c), x)
    z = x * x
    yc = _fma(_fma(f32(2.443315711809948E-005), z, f32(-1.388731625493765E-003)), z,
              f32(4.166664568298827E-002))
    yc = _fma(yc * z, z, -(z * f32(0.5))) + f32(1)
    ys = _fma(_fma(f32(-1.9515295891E-4), z, f32(8.3321608736E-3)), z, f32(-1.6666654611E-1))
    ys = _fma(ys * z, x, x)
    s, c = np.where(sin_poly, ys, yc), np.where(sin_poly, yc, ys)
    return np.where(sin_flip, -s, s), np.where(cos_flip, -c, c)
