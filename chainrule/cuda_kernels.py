"""Fused CUDA kernels for the GPU's hottest elementwise rules (CuPy ``ElementwiseKernel``).

On the GPU a chain of small array ops costs one kernel launch each (several µs of host time
apiece, however small the arrays), so rules like GELU's forward and derivative or tanh's
backward run here as one kernel each. Every function has the plain CuPy-expression path as its
fallback: kernels compile on first use (cached on disk by CuPy), and where they cannot be built
(``CHAINRULE_FUSED_KERNELS=0``, or the CPU stand-in for CuPy in ``tests/fakecupy``) the same
math runs as separate array ops. CPU arrays never come here.
"""

from __future__ import annotations

import os

from chainrule import backend

__all__ = ["erf", "gelu", "unary_backward", "fused"]

_ENABLED = os.environ.get("CHAINRULE_FUSED_KERNELS", "1") != "0"
_KERNELS: dict = {}
_FLOATS = ("float32", "float64")

# Φ and φ for float and double (CUDA's math functions are overloaded per precision)
_PREAMBLE = """
__device__ inline float cr_cdf(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
__device__ inline double cr_cdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }
__device__ inline float cr_pdf(float x) { return 0.3989422804014327f * expf(-0.5f * x * x); }
__device__ inline double cr_pdf(double x) { return 0.3989422804014327 * exp(-0.5 * x * x); }
"""

_SOURCES = {
    # name: (in_params, out_params, body)
    "gelu": ("T x", "T y", "y = x * cr_cdf(x)"),
    "gelu_grad": ("T x", "T y, T d", "T c = cr_cdf(x); y = x * c; d = c + x * cr_pdf(x)"),
    "tanh_backward": ("T g, T y", "T gx", "gx = g * (1 - y * y)"),
    "sigmoid_backward": ("T g, T y", "T gx", "gx = g * y * (1 - y)"),
    "relu_backward": ("T g, T y", "T gx", "gx = g * (T)(y != 0)"),
}


def fused(name: str):
    """The compiled kernel ``name``, or None where fused kernels cannot run."""
    k = _KERNELS.get(name)
    if k is None:
        k = False
        cupy = backend.loaded_cupy()
        if _ENABLED and cupy is not None:
            ins, outs, body = _SOURCES[name]
            try:
                k = cupy.ElementwiseKernel(ins, outs, body, f"chainrule_{name}",
                                           preamble=_PREAMBLE)
            except NotImplementedError:  # the CPU stand-in for CuPy compiles nothing
                k = False
        _KERNELS[name] = k
    return k or None


def _special(x):
    import cupyx.scipy.special

    return cupyx.scipy.special


def erf(x):
    return _special(x).erf(x)


def gelu(x, with_grad: bool):
    """(y, dy/dx or None) for y = x·Φ(x) on a GPU array, one kernel where it can."""
    k = fused("gelu_grad" if with_grad else "gelu") if x.dtype.name in _FLOATS else None
    if k is not None:
        if with_grad:
            return k(x)
        return k(x), None
    cdf = (erf(x * 0.7071067811865476).astype(x.dtype, copy=False) + 1) * 0.5
    y = x * cdf
    if not with_grad:
        return y, None
    return y, cdf + x * backend.xp_of(x).exp(x * x * -0.5) * 0.3989422804014327


def unary_backward(name: str, g, y):
    """g·f'(x) from the saved output y for tanh/sigmoid/relu; None when not fusable here."""
    if g.shape != y.shape or g.dtype != y.dtype or g.dtype.name not in _FLOATS:
        return None
    k = fused(name)
    return None if k is None else k(g, y)
