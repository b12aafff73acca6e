"""Intel MKL through ctypes, when the ``mkl`` wheel is installed (``pip install 'chainrule[mkl]'``).

MKL's GEMM is 12-17% faster than NumPy's OpenBLAS sgemm on recent Intel CPUs, and its vector
math (exp, erf, Φ, tanh) and ``?axpy`` save passes over memory. This module finds and loads
the library once and exposes its routines; :mod:`chainrule.kernels.matmul` decides when a
product goes to MKL. ``CHAINRULE_BLAS=numpy`` turns MKL off.

Threads (decided when chainrule is imported): with ``MKL_NUM_THREADS=1`` or
``OMP_NUM_THREADS=1`` MKL runs its SEQUENTIAL layer, which needs no OpenMP runtime. With more
threads, or none set, matrix products stay with NumPy: MKL's INTEL layer (``libiomp5`` from the
``intel-openmp`` wheel) keeps a second spinning thread pool beside OpenBLAS's, and the training
step measured 1.4-5x slower on 2 cores than with multi-threaded OpenBLAS alone.
``CHAINRULE_BLAS=mkl`` uses MKL anyway (INTEL layer, MKL's own thread settings);
``CHAINRULE_BLAS=numpy`` never loads it. ``MKL_THREADING_LAYER`` is overridden.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

__all__ = ["state", "mkl_available", "backend_name", "axpy", "vector_math", "ptr", "layout",
           "batch_stride", "ROW", "NOTRANS", "TRANS", "INT_MAX"]

# Below this many elements NumPy's two in-cache passes beat the ctypes call of ?axpy.
MIN_AXPY = 1 << 14

ROW, NOTRANS, TRANS = 101, 111, 112
_MKL_INTEL, _MKL_SEQUENTIAL = 0, 1
INT_MAX = 2**31 - 1

# MKL's vector-math (VML) routines y = f(x), by the names vector_math() takes.
_VML = {"exp": "Exp", "erf": "Erf", "cdf_norm": "CdfNorm", "tanh": "Tanh"}

state: dict = {}  # filled once by _load(): {"gemm": {dtype: fn}, "batch": {...}, ...}
_c_char = ctypes.c_char
_addressof = ctypes.addressof
_void_p = ctypes.c_void_p
_ndarray = np.ndarray
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _is_mkl_rt(name: str) -> bool:
    return name.startswith("libmkl_rt.so") or (name.startswith("mkl_rt") and name.endswith(".dll"))


def _mkl_files() -> list:
    """Paths of the ``mkl`` wheel's runtime library (``libmkl_rt``): under ``sys.prefix`` (where
    pip puts the wheel's libraries), else wherever the installed distribution's files say."""
    libdir = os.path.join(sys.prefix, "Library", "bin" if os.name == "nt" else "lib")
    found = []
    if os.path.isdir(libdir):
        found = sorted((os.path.join(libdir, n) for n in os.listdir(libdir) if _is_mkl_rt(n)),
                       reverse=True)
    if not found:  # e.g. a --user install
        try:
            from importlib.metadata import distribution

            dist = distribution("mkl")
            found = [str(dist.locate_file(f)) for f in dist.files or [] if _is_mkl_rt(f.name)]
        except Exception:  # not installed, or broken metadata
            found = []
    return [os.path.realpath(p) for p in found if os.path.exists(p)]


def _env_threads() -> int | None:
    """The thread count the user asked MKL for (MKL_NUM_THREADS, else OMP_NUM_THREADS)."""
    for var in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _load_iomp(rt_path: str) -> bool:
    """Load Intel's OpenMP runtime globally, so that MKL's INTEL layer finds it."""
    names = ["libiomp5.so", "libiomp5md.dll"]
    dirs = [os.path.dirname(rt_path)]
    try:
        from importlib.metadata import distribution

        dist = distribution("intel-openmp")
        dirs += [os.path.dirname(str(dist.locate_file(f))) for f in dist.files or []
                 if f.name in names]
    except Exception:
        pass
    for d in dict.fromkeys(dirs):
        for n in names:
            p = os.path.join(d, n)
            if os.path.exists(p):
                try:
                    ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)
                    return True
                except OSError:
                    pass
    return False


def _load() -> dict:
    """Find and set up MKL once; an empty "gemm" table means: use NumPy."""
    state["gemm"] = {}
    choice = os.environ.get("CHAINRULE_BLAS", "").strip().lower()
    if choice in ("numpy", "openblas", "0", "off"):
        state["reason"] = "disabled by CHAINRULE_BLAS"
        return state
    forced = choice == "mkl"
    sequential = _env_threads() == 1
    if not (sequential or forced):
        state["reason"] = ("more than one thread: NumPy's OpenBLAS (set OMP_NUM_THREADS=1, or "
                            "CHAINRULE_BLAS=mkl)")
        return state
    paths = _mkl_files()
    if not paths:
        state["reason"] = "mkl not installed"
        return state
    try:
        lib = ctypes.CDLL(paths[0], mode=ctypes.RTLD_LOCAL)
        # the layers must be chosen before any other MKL call loads the default ones
        lib.MKL_Set_Interface_Layer(0)  # LP64: 32-bit ints, whatever MKL_INTERFACE_LAYER says
        if sequential:
            lib.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL)
        elif _load_iomp(paths[0]):
            lib.MKL_Set_Threading_Layer(_MKL_INTEL)
        else:
            state["reason"] = "CHAINRULE_BLAS=mkl, but libiomp5 (intel-openmp) is not loadable"
            return state
        # MKL's memory manager would keep its GEMM packing buffers for good; without it they
        # go back to malloc after each call, and chainrule's arrays reuse that memory
        # : W3 at batch 1024 peaks ~2.5 MiB lower,
        # at no measurable time cost.
        lib.MKL_Disable_Fast_MM()
        gemm = {_F32: lib.cblas_sgemm, _F64: lib.cblas_dgemm}
        batch = {_F32: lib.cblas_sgemm_batch_strided, _F64: lib.cblas_dgemm_batch_strided}
        vml = {name: {_F32: getattr(lib, "vs" + suffix), _F64: getattr(lib, "vd" + suffix)}
               for name, suffix in _VML.items()}
        axpy_fns = {_F32: (lib.cblas_saxpy, ctypes.c_float),
                    _F64: (lib.cblas_daxpy, ctypes.c_double)}
    except (OSError, AttributeError) as e:
        state["reason"] = f"could not load MKL: {e}"
        return state
    for table in (gemm, batch, *vml.values()):
        for fn in table.values():
            fn.restype = None
    for table in vml.values():
        for fn in table.values():
            fn.argtypes = [ctypes.c_int, _void_p, _void_p]
    for fn, scalar in axpy_fns.values():
        fn.restype = None
        fn.argtypes = [ctypes.c_int, scalar, _void_p, ctypes.c_int, _void_p, ctypes.c_int]
    state.update(gemm=gemm, batch=batch, vml=vml, axpy=axpy_fns, path=paths[0], reason="",
                  one={_F32: ctypes.c_float(1.0), _F64: ctypes.c_double(1.0)},
                  zero={_F32: ctypes.c_float(0.0), _F64: ctypes.c_double(0.0)})
    return state


def mkl_available() -> bool:
    """True when :func:`matmul` calls MKL (the ``mkl`` wheel is installed and not disabled)."""
    return bool((state or _load())["gemm"])


def backend_name() -> str:
    """"mkl (PATH)" or "numpy (why not MKL)", for reports."""
    st = state or _load()
    return f"mkl ({st['path']})" if st["gemm"] else f"numpy ({st['reason']})"


def axpy(alpha: float, x, y) -> bool:
    """``y += alpha·x`` in place with MKL's ``?axpy`` (one pass over memory, where NumPy needs a
    temporary); False, and nothing done, unless MKL is in use and both are C-contiguous,
    writable float32/float64 NumPy arrays of one dtype and size, at least ``MIN_AXPY`` long."""
    fns = (state or _load()).get("axpy")
    if not fns or type(x) is not _ndarray or type(y) is not _ndarray:
        return False
    entry = fns.get(y.dtype)
    n = y.size
    if (entry is None or x.dtype is not y.dtype or x.size != n or n < MIN_AXPY or n > INT_MAX
            or not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)):
        return False
    fn, scalar = entry
    fn(n, scalar(alpha), ptr(x, True), 1, ptr(y, True), 1)
    return True


def vector_math(name: str, dtype):
    """MKL's elementwise ``name`` ("exp", "erf", "cdf_norm" (Φ), "tanh") for float32/float64,
    as ``f(x, out)`` on C-contiguous arrays of one size (``out`` may be ``x``); None without MKL,
    when callers use NumPy. VML's default high-accuracy mode: about 1 ulp."""
    vml = (state or _load()).get("vml")
    fn = vml[name].get(np.dtype(dtype)) if vml else None
    if fn is None:
        return None

    def apply(x, out):
        if x.size:
            fn(x.size, ptr(x, True), ptr(out, True))
        return out

    return apply


def ptr(x, c_order: bool) -> int:
    """The address of x's first element (a buffer export is 3x cheaper than ``x.ctypes``)."""
    try:
        return _addressof(_c_char.from_buffer(x if c_order else x.T))
    except (TypeError, ValueError, BufferError):  # read-only or not contiguous
        return x.ctypes.data


def layout(strides, rows: int, cols: int, size: int):
    """(trans, ld, contiguous) of a rows×cols matrix with these byte strides, or None."""
    r, c = strides
    if (c == size or cols == 1) and (rows == 1 or (r % size == 0 and r >= cols * size)):
        ld = r // size if rows > 1 else cols
        return NOTRANS, ld, ld == cols
    if (r == size or rows == 1) and (cols == 1 or (c % size == 0 and c >= rows * size)):
        ld = c // size if cols > 1 else rows
        return TRANS, ld, ld == rows
    return None


def batch_stride(batch: tuple, shape: tuple, strides: tuple, size: int):
    """One element stride that steps an operand through all ``batch`` dims (0 when broadcast
    over all of them), or None when its batch dims need more than one."""
    pad = len(batch) - len(shape)
    shape, strides = (1,) * pad + shape, (0,) * pad + strides
    stride = expect = None
    for nb, nd, s in zip(reversed(batch), reversed(shape), reversed(strides)):
        if nb == 1:
            continue
        if nd == 1:  # broadcast along this dim
            s = 0
        if stride is None:
            if s < 0 or s % size:
                return None
            stride = s
        elif s != expect:
            return None
        expect = s * nb
    return 0 if stride is None else stride // size


_load()
