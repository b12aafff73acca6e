"""Optional MKL GEMM for CPU matrix products (``pip install 'chainrule[mkl]'``).

NumPy's OpenBLAS sgemm is 12-17% slower than MKL on recent Intel CPUs, and the big layers
(linear, conv, attention, RNNs) spend most of their time in GEMM. When the ``mkl`` wheel is
installed, :func:`matmul` calls its ``cblas_?gemm`` / ``cblas_?gemm_batch_strided`` through
ctypes for float32/float64 operands whose memory layout BLAS takes as is (each matrix with a
unit stride along rows or columns), and is exactly ``a @ b`` for everything else: other dtypes,
1-d operands, other strides, CuPy arrays, empty products, and products too small for MKL's
gain to outweigh the ~3 µs of the ctypes route. ``CHAINRULE_BLAS=numpy`` turns it off.

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

from chainrule import backend

__all__ = ["matmul", "axpy", "vector_math", "mkl_available", "backend_name"]

# Per-matrix m·n·k from which MKL beats NumPy (measured on one Sapphire Rapids core, float32;
# the ctypes route costs ~3 µs more than NumPy's call, and up to ~100³ MKL is no faster).
# OpenBLAS handles a column-major b (a transposed view) worse, so MKL pays earlier there; a
# stack of products pays only in that case (MKL's batched kernel loses to NumPy's loop over
# row-major matrices below ~2M per matrix, e.g. attention's W·V, but wins for K·Qᵀ).
MIN_FLOPS = 1 << 20  # ~100³
MIN_FLOPS_NT = 1 << 19  # 2-d, a row-major and b column-major (e.g. 256×256 · (10×256)ᵀ)
MIN_FLOPS_BATCH_NT = 1 << 17  # stacked, a row-major and b column-major, m and n >= 32

# Below this many elements NumPy's two in-cache passes beat the ctypes call of ?axpy.
MIN_AXPY = 1 << 14

_ROW, _NOTRANS, _TRANS = 101, 111, 112
_MKL_INTEL, _MKL_SEQUENTIAL = 0, 1
_INT_MAX = 2**31 - 1

# MKL's vector-math (VML) routines y = f(x), by the names vector_math() takes.
_VML = {"exp": "Exp", "erf": "Erf", "cdf_norm": "CdfNorm", "tanh": "Tanh"}

_state: dict = {}  # filled once by _load(): {"gemm": {dtype: fn}, "batch": {...}, ...}
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
    _state["gemm"] = {}
    choice = os.environ.get("CHAINRULE_BLAS", "").strip().lower()
    if choice in ("numpy", "openblas", "0", "off"):
        _state["reason"] = "disabled by CHAINRULE_BLAS"
        return _state
    forced = choice == "mkl"
    sequential = _env_threads() == 1
    if not (sequential or forced):
        _state["reason"] = ("more than one thread: NumPy's OpenBLAS (set OMP_NUM_THREADS=1, or "
                            "CHAINRULE_BLAS=mkl)")
        return _state
    paths = _mkl_files()
    if not paths:
        _state["reason"] = "mkl not installed"
        return _state
    try:
        lib = ctypes.CDLL(paths[0], mode=ctypes.RTLD_LOCAL)
        # the layers must be chosen before any other MKL call loads the default ones
        lib.MKL_Set_Interface_Layer(0)  # LP64: 32-bit ints, whatever MKL_INTERFACE_LAYER says
        if sequential:
            lib.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL)
        elif _load_iomp(paths[0]):
            lib.MKL_Set_Threading_Layer(_MKL_INTEL)
        else:
            _state["reason"] = "CHAINRULE_BLAS=mkl, but libiomp5 (intel-openmp) is not loadable"
            return _state
        # MKL's memory manager would keep its GEMM packing buffers for good; without it they
        # go back to malloc after each call, and chainrule's arrays reuse that memory
        # (backend.py keeps freed memory on the heap): W3 at batch 1024 peaks ~2.5 MiB lower,
        # at no measurable time cost.
        lib.MKL_Disable_Fast_MM()
        gemm = {_F32: lib.cblas_sgemm, _F64: lib.cblas_dgemm}
        batch = {_F32: lib.cblas_sgemm_batch_strided, _F64: lib.cblas_dgemm_batch_strided}
        vml = {name: {_F32: getattr(lib, "vs" + suffix), _F64: getattr(lib, "vd" + suffix)}
               for name, suffix in _VML.items()}
        axpy_fns = {_F32: (lib.cblas_saxpy, ctypes.c_float),
                    _F64: (lib.cblas_daxpy, ctypes.c_double)}
    except (OSError, AttributeError) as e:
        _state["reason"] = f"could not load MKL: {e}"
        return _state
    for table in (gemm, batch, *vml.values()):
        for fn in table.values():
            fn.restype = None
    for table in vml.values():
        for fn in table.values():
            fn.argtypes = [ctypes.c_int, _void_p, _void_p]
    for fn, scalar in axpy_fns.values():
        fn.restype = None
        fn.argtypes = [ctypes.c_int, scalar, _void_p, ctypes.c_int, _void_p, ctypes.c_int]
    _state.update(gemm=gemm, batch=batch, vml=vml, axpy=axpy_fns, path=paths[0], reason="",
                  one={_F32: ctypes.c_float(1.0), _F64: ctypes.c_double(1.0)},
                  zero={_F32: ctypes.c_float(0.0), _F64: ctypes.c_double(0.0)})
    return _state


def mkl_available() -> bool:
    """True when :func:`matmul` calls MKL (the ``mkl`` wheel is installed and not disabled)."""
    return bool((_state or _load())["gemm"])


def backend_name() -> str:
    """"mkl (PATH)" or "numpy (why not MKL)", for reports."""
    st = _state or _load()
    return f"mkl ({st['path']})" if st["gemm"] else f"numpy ({st['reason']})"


def axpy(alpha: float, x, y) -> bool:
    """``y += alpha·x`` in place with MKL's ``?axpy`` (one pass over memory, where NumPy needs a
    temporary); False, and nothing done, unless MKL is in use and both are C-contiguous,
    writable float32/float64 NumPy arrays of one dtype and size, at least ``MIN_AXPY`` long."""
    fns = (_state or _load()).get("axpy")
    if not fns or type(x) is not _ndarray or type(y) is not _ndarray:
        return False
    entry = fns.get(y.dtype)
    n = y.size
    if (entry is None or x.dtype is not y.dtype or x.size != n or n < MIN_AXPY or n > _INT_MAX
            or not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)):
        return False
    fn, scalar = entry
    fn(n, scalar(alpha), _ptr(x, True), 1, _ptr(y, True), 1)
    return True


def vector_math(name: str, dtype):
    """MKL's elementwise ``name`` ("exp", "erf", "cdf_norm" (Φ), "tanh") for float32/float64,
    as ``f(x, out)`` on C-contiguous arrays of one size (``out`` may be ``x``); None without MKL,
    when callers use NumPy. VML's default high-accuracy mode: about 1 ulp."""
    vml = (_state or _load()).get("vml")
    fn = vml[name].get(np.dtype(dtype)) if vml else None
    if fn is None:
        return None

    def apply(x, out):
        if x.size:
            fn(x.size, _ptr(x, True), _ptr(out, True))
        return out

    return apply


def _ptr(x, c_order: bool) -> int:
    """The address of x's first element (a buffer export is 3x cheaper than ``x.ctypes``)."""
    try:
        return _addressof(_c_char.from_buffer(x if c_order else x.T))
    except (TypeError, ValueError, BufferError):  # read-only or not contiguous
        return x.ctypes.data


def _layout(strides, rows: int, cols: int, size: int):
    """(trans, ld, contiguous) of a rows×cols matrix with these byte strides, or None."""
    r, c = strides
    if (c == size or cols == 1) and (rows == 1 or (r % size == 0 and r >= cols * size)):
        ld = r // size if rows > 1 else cols
        return _NOTRANS, ld, ld == cols
    if (r == size or rows == 1) and (cols == 1 or (c % size == 0 and c >= rows * size)):
        ld = c // size if cols > 1 else rows
        return _TRANS, ld, ld == rows
    return None


def _batch_stride(batch: tuple, shape: tuple, strides: tuple, size: int):
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


def _numpy(a, b, out):
    """NumPy's own product: what matmul does wherever MKL does not take the operands."""
    if type(a) is not _ndarray and backend.is_gpu_array(a):
        return _cupy_matmul(a, b, out)
    return a @ b if out is None else np.matmul(a, b, out=out)


def _cupy_matmul(a, b, out):
    """GPU products: one direct cuBLAS call where the layouts allow (``cuda_kernels.gemm``),
    else ``ndarray.dot`` for 2-d products and stacks times a matrix, else ``cupy.matmul``
    (a gufunc written in Python: tens of µs of host time a call)."""
    if out is None:
        from chainrule import cuda_kernels

        c = cuda_kernels.gemm(a, b)
        if c is not None:
            return c
    if out is None and b.ndim == 2 and a.ndim >= 2:
        if a.ndim == 2:
            return a.dot(b)
        if a.flags.c_contiguous:
            rows = 1
            for d in a.shape[:-1]:
                rows *= d
            return a.reshape(rows, a.shape[-1]).dot(b).reshape(a.shape[:-1] + (b.shape[1],))
    return backend.xp_of(a).matmul(a, b, out=out)


def matmul(a, b, out=None):
    """``a @ b`` (``np.matmul(a, b, out=out)``), through MKL's GEMM where it can take the operands.

    2-d products call ``cblas_?gemm``; stacked products whose batch dims collapse to one stride
    per operand (broadcast operands included) call ``cblas_?gemm_batch_strided``.
    """
    gemm = (_state or _load())["gemm"]
    if not gemm or type(a) is not _ndarray or type(b) is not _ndarray:
        return _numpy(a, b, out)
    dt = a.dtype
    fn = gemm.get(dt)
    ashape, bshape = a.shape, b.shape
    nd = len(ashape)
    if (fn is None or b.dtype != dt or nd < 2 or len(bshape) < 2
            or ashape[-1] != bshape[-2]
            or ashape[-1] * ashape[-2] * bshape[-1] < max(MIN_FLOPS_BATCH_NT, 1)):
        return _numpy(a, b, out)
    m, k = ashape[-2:]
    n = bshape[-1]
    size = dt.itemsize
    la = _layout(a.strides[-2:], m, k, size)
    lb = _layout(b.strides[-2:], k, n, size)
    if la is None or lb is None or max(m, n, k, la[1], lb[1]) > _INT_MAX:
        return _numpy(a, b, out)
    flops = m * n * k
    nt = la[0] == _NOTRANS and lb[0] == _TRANS
    stacked = nd > 2 or len(bshape) > 2
    if flops < MIN_FLOPS and not (
            nt and (flops >= MIN_FLOPS_BATCH_NT and min(m, n) >= 32 if stacked
                    else flops >= MIN_FLOPS_NT)):
        return _numpy(a, b, out)
    if not stacked:
        if out is None:
            out = np.empty((m, n), dt)
            ldc = n
        else:
            lc = _out_layout(out, (m, n), dt, a, b)
            if lc is None:
                return _numpy(a, b, out)
            ldc = lc[0]
        st = _state
        fn(_ROW, la[0], lb[0], m, n, k, st["one"][dt],
           _void_p(_ptr(a, la[0] == _NOTRANS) if la[2] else a.ctypes.data), la[1],
           _void_p(_ptr(b, lb[0] == _NOTRANS) if lb[2] else b.ctypes.data), lb[1],
           st["zero"][dt], _void_p(_ptr(out, True) if ldc == n else out.ctypes.data), ldc)
        return out
    return _batched(a, b, out, dt, m, n, k, la, lb)


def _out_layout(out, shape: tuple, dt, a, b, batch: tuple = ()):
    """(ldc, stridec) when GEMM can write ``out`` as is (shape, dtype, unit stride along rows,
    one batch stride, no overlap with itself or the operands), else None."""
    if (type(out) is not _ndarray or out.shape != shape or out.dtype != dt
            or not out.flags.writeable):
        return None
    size = dt.itemsize
    m, n = shape[-2:]
    lc = _layout(out.strides[-2:], m, n, size)
    if lc is None or lc[0] != _NOTRANS:
        return None
    stride = _batch_stride(batch, shape[:-2], out.strides[:-2], size) if batch else 0
    count = 1
    for d in batch:
        count *= d
    if stride is None or (count > 1 and stride < (m - 1) * lc[1] + n):
        return None
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    if count <= 1:  # one matrix: any stride will do, but MKL insists on stridec >= ldc·m
        stride = lc[1] * m
    return lc[1], stride


def _batched(a, b, out, dt, m, n, k, la, lb):
    ashape, bshape = a.shape, b.shape
    try:
        batch = np.broadcast_shapes(ashape[:-2], bshape[:-2])
    except ValueError:
        return _numpy(a, b, out)
    count = 1
    for d in batch:
        count *= d
    size = dt.itemsize
    sa = _batch_stride(batch, ashape[:-2], a.strides[:-2], size)
    sb = _batch_stride(batch, bshape[:-2], b.strides[:-2], size)
    if sa is None or sb is None or count == 0 or max(sa, sb, count * m * n) > _INT_MAX:
        return _numpy(a, b, out)
    shape = batch + (m, n)
    if out is None:
        out = np.empty(shape, dt)
        ldc, sc, pc = n, m * n, _ptr(out, True)
    else:
        lc = _out_layout(out, shape, dt, a, b, batch)
        if lc is None:
            return _numpy(a, b, out)
        (ldc, sc), pc = lc, out.ctypes.data
    st = _state
    st["batch"][dt](_ROW, la[0], lb[0], m, n, k, st["one"][dt],
                    _void_p(a.ctypes.data), la[1], sa, _void_p(b.ctypes.data), lb[1], sb,
                    st["zero"][dt], _void_p(pc), ldc, sc, count)
    return out


# Load MKL with chainrule, as PyTorch loads its BLAS with ``import torch``: dlopen and setup
# (~16 ms, ~12 MiB of library pages) then belong to the import rather than to the first
# training step; MKL's kernels page in at their first call either way.
_load()
