"""Matrix products, dispatched in one place: MKL's or NumPy's GEMM on the CPU, cuBLAS on GPUs.

:func:`matmul` is ``np.matmul`` for every operand (1-d, stacked, broadcast, ``out=``), taking
the fastest route that can: on the CPU, MKL's ``cblas_?gemm`` / ``cblas_?gemm_batch_strided``
(when installed, see :mod:`chainrule.kernels.mkl`) for float32/float64 operands whose layout
BLAS takes as is and products big enough to pay for the ctypes call; with CHAINRULE_POOL=1 at
more than one thread without MKL, NumPy's OpenBLAS on one thread called from chainrule's own
thread pool, a block of the product per thread (see :mod:`chainrule.kernels.openblas`); else
NumPy. On a GPU, one
direct cuBLAS call where the layouts allow, else CuPy.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from chainrule import batching, devices, backends
from chainrule.kernels import mkl, openblas
from chainrule.kernels.mkl import INT_MAX, NOTRANS, ROW, TRANS, batch_stride, layout, ptr

__all__ = ["matmul", "cublas_gemm"]

_void_p = ctypes.c_void_p
_ndarray = np.ndarray
# CHAINRULE_FUSED_KERNELS=0: CuPy's own routines only (to compare with chainrule's kernels)
_DIRECT_CUBLAS = os.environ.get("CHAINRULE_FUSED_KERNELS", "1") != "0"

# Per-matrix m·n·k from which MKL beats NumPy (measured on one Sapphire Rapids core, float32;
# the ctypes route costs ~3 µs more than NumPy's call, and up to ~100³ MKL is no faster).
# OpenBLAS handles a column-major b (a transposed view) worse, so MKL pays earlier there; a
# stack of products pays only in that case (MKL's batched kernel loses to NumPy's loop over
# row-major matrices below ~2M per matrix, e.g. attention's W·V, but wins for K·Qᵀ).
MIN_FLOPS = 1 << 20  # ~100³
MIN_FLOPS_NT = 1 << 19  # 2-d, a row-major and b column-major (e.g. 256×256 · (10×256)ᵀ)
MIN_FLOPS_BATCH_NT = 1 << 17  # stacked, a row-major and b column-major, m and n >= 32

def _numpy(a, b, out):
    """NumPy's own product: what matmul does wherever MKL does not take the operands."""
    if type(a) is not _ndarray and devices.is_gpu_array(a):
        return _cupy_matmul(a, b, out)
    return a @ b if out is None else np.matmul(a, b, out=out)


def _cupy_matmul(a, b, out):
    """GPU products: one direct cuBLAS call where the layouts allow (``cublas_gemm``),
    else ``ndarray.dot`` for 2-d products and stacks times a matrix, else ``cupy.matmul``
    (a gufunc written in Python: tens of µs of host time a call)."""
    if out is None:
        c = cublas_gemm(a, b)
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
    return devices.xp_of(a).matmul(a, b, out=out)


def matmul(a, b, out=None):
    """``a @ b`` (``np.matmul(a, b, out=out)``), through MKL's GEMM where it can take the operands.

    2-d products call ``cblas_?gemm``; stacked products whose batch dims collapse to one stride
    per operand (broadcast operands included) call ``cblas_?gemm_batch_strided``. Without MKL,
    at more than one thread, large products go to the thread pool (``_pooled``).
    """
    gemm = (mkl.state)["gemm"]
    if not gemm or type(a) is not _ndarray or type(b) is not _ndarray:
        if type(a) is _ndarray and type(b) is _ndarray:
            if _POOL["on"]:
                return _pooled(a, b, out)
            if _POOL["loops_on_blas"] > 1 and (len(a.shape) > 2 or len(b.shape) > 2):
                return _pooled(a, b, out, BLAS_ONE_THREAD)
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
    la = layout(a.strides[-2:], m, k, size)
    lb = layout(b.strides[-2:], k, n, size)
    if la is None or lb is None or max(m, n, k, la[1], lb[1]) > INT_MAX:
        return _numpy(a, b, out)
    flops = m * n * k
    nt = la[0] == NOTRANS and lb[0] == TRANS
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
            lc = _outlayout(out, (m, n), dt, a, b)
            if lc is None:
                return _numpy(a, b, out)
            ldc = lc[0]
        st = mkl.state
        fn(ROW, la[0], lb[0], m, n, k, st["one"][dt],
           _void_p(ptr(a, la[0] == NOTRANS) if la[2] else a.ctypes.data), la[1],
           _void_p(ptr(b, lb[0] == NOTRANS) if lb[2] else b.ctypes.data), lb[1],
           st["zero"][dt], _void_p(ptr(out, True) if ldc == n else out.ctypes.data), ldc)
        return out
    return _batched(a, b, out, dt, m, n, k, la, lb)


def _outlayout(out, shape: tuple, dt, a, b, batch: tuple = ()):
    """(ldc, stridec) when GEMM can write ``out`` as is (shape, dtype, unit stride along rows,
    one batch stride, no overlap with itself or the operands), else None."""
    if (type(out) is not _ndarray or out.shape != shape or out.dtype != dt
            or not out.flags.writeable):
        return None
    size = dt.itemsize
    m, n = shape[-2:]
    lc = layout(out.strides[-2:], m, n, size)
    if lc is None or lc[0] != NOTRANS:
        return None
    stride = batch_stride(batch, shape[:-2], out.strides[:-2], size) if batch else 0
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
    sa = batch_stride(batch, ashape[:-2], a.strides[:-2], size)
    sb = batch_stride(batch, bshape[:-2], b.strides[:-2], size)
    if sa is None or sb is None or count == 0 or max(sa, sb, count * m * n) > INT_MAX:
        return _numpy(a, b, out)
    shape = batch + (m, n)
    if out is None:
        out = np.empty(shape, dt)
        ldc, sc, pc = n, m * n, ptr(out, True)
    else:
        lc = _outlayout(out, shape, dt, a, b, batch)
        if lc is None:
            return _numpy(a, b, out)
        (ldc, sc), pc = lc, out.ctypes.data
    st = mkl.state
    st["batch"][dt](ROW, la[0], lb[0], m, n, k, st["one"][dt],
                    _void_p(a.ctypes.data), la[1], sa, _void_p(b.ctypes.data), lb[1], sb,
                    st["zero"][dt], _void_p(pc), ldc, sc, count)
    return out


# ---- the CPU pool: NumPy's OpenBLAS on one thread, a block of each product per pool thread -------
_POOL = openblas.state
_POOL.setdefault("loops_on_blas", 1)
_F64 = np.dtype(np.float64)
# m·n·k up to which NumPy's OpenBLAS computes a product on the calling thread (its
# GEMM_MULTITHREAD_THRESHOLD 4 × SMP_THRESHOLD_MIN 65536): NumPy runs a stack of such matrices
# (attention's per-head products) as one call after another on one thread; where the loops run on
# OpenBLAS's threads (kernels/openblas.py's loop_runner) the pool's gemm shares the stack out
# over them, each matrix one single-threaded call. (Never larger: a product OpenBLAS would thread,
# called from one of its own threads, waits on those threads; 4 × 128³ hung that way in a test.
# Half its threshold, because OpenBLAS versions differ on whether m·n·k equal to it is threaded;
# attention's per-head products of W7, 64·64·32, are 2^17.)
BLAS_ONE_THREAD = 1 << 17


def _pooled(a, b, out, per_matrix_max: int = 0):
    """``np.matmul(a, b, out=out)`` for float32/float64 operands whose layouts BLAS takes, with
    one stride per operand through the batch dims: the pool's ``gemm`` (kernels/_cpu_loops.c)
    splits it into single-threaded ``cblas_?gemm`` calls over its threads; else NumPy.
    ``per_matrix_max``: only stacks of at least two matrices of at most this m·n·k (0: any)."""
    dt = a.dtype
    fn = _POOL["gemm"].get(dt)
    ashape, bshape = a.shape, b.shape
    nd = len(ashape)
    if (fn is None or b.dtype != dt or nd < 2 or len(bshape) < 2 or ashape[-1] != bshape[-2]
            or ashape[-1] * ashape[-2] * bshape[-1] < 1):
        return _numpy(a, b, out)
    m, k = ashape[-2:]
    n = bshape[-1]
    count = 1
    stacked = nd > 2 or len(bshape) > 2
    if stacked:
        try:
            batch = np.broadcast_shapes(ashape[:-2], bshape[:-2])
        except ValueError:
            return _numpy(a, b, out)
        for d in batch:
            count *= d
    if per_matrix_max and (count < 2 or m * n * k > per_matrix_max):
        return _numpy(a, b, out)
    # below the pool's threshold its C function would make one single-threaded call, as NumPy
    # does (kernels/_cpu_loops.c's gemm_min_flops, which says why it is as large as it is)
    if m * n * k * count < _POOL["min_flops"]:
        return _numpy(a, b, out)
    size = dt.itemsize
    la = layout(a.strides[-2:], m, k, size)
    lb = layout(b.strides[-2:], k, n, size)
    if la is None or lb is None or (not _POOL["ilp64"] and max(m, n, k, la[1], lb[1]) > INT_MAX):
        return _numpy(a, b, out)
    two = ()  # (inner, sa2, sb2, sc2): a stack of two levels (see _two_level)
    if stacked:
        sa = batch_stride(batch, ashape[:-2], a.strides[:-2], size)
        sb = batch_stride(batch, bshape[:-2], b.strides[:-2], size)
        if sa is None or sb is None:
            two = _two_level(batch, a, b, size) if out is None else None
            if not two:
                return _numpy(a, b, out)
            sa, sb = two[4:]
            two = two[:4]
        shape = batch + (m, n)
    else:
        sa = sb = 0
        batch, shape = (), (m, n)
    if out is None:
        out = np.empty(shape, dt)
        ldc, sc = n, m * n
    else:
        lc = _outlayout(out, shape, dt, a, b, batch)
        if lc is None:
            return _numpy(a, b, out)
        ldc, sc = lc
    flags = (dt == _F64) | (_POOL["ilp64"] << 1) | ((la[0] == TRANS) << 2) | ((lb[0] == TRANS) << 3)
    _POOL["split_gemm"](fn, flags, m, n, k, a.ctypes.data, la[1], sa, b.ctypes.data, lb[1], sb,
                        out.ctypes.data, ldc, sc, count, *two)
    return out


def _two_level(batch: tuple, a, b, size: int):
    """(inner, sa2, sb2, sc2, sa, sb) where the batch dims of ``a`` and ``b`` (element strides)
    split into outer dims and inner dims that each step by one stride per operand, e.g. a
    (batch, heads) stack of per-head views into a (batch, seq, heads·dim) array, and the
    output is a new C-contiguous array; else None."""
    nd = len(batch)
    pads = [(1,) * (nd - x.ndim + 2) + x.shape[:-2] for x in (a, b)]
    strides = [(0,) * (nd - x.ndim + 2) + x.strides[:-2] for x in (a, b)]
    for cut in range(1, nd):
        inner = 1
        for d in batch[cut:]:
            inner *= d
        found = []
        for shape, st in zip(pads, strides):
            s_in = batch_stride(batch[cut:], shape[cut:], st[cut:], size)
            s_out = batch_stride(batch[:cut], shape[:cut], st[:cut], size)
            if s_in is None or s_out is None:
                break
            found.append((s_in, s_out))
        else:
            m, n = a.shape[-2], b.shape[-1]
            return (inner, found[0][1], found[1][1], inner * m * n, found[0][0], found[1][0])
    return None


# ---- the GPU back end: cuBLAS directly -----------------------------------------------------------
_CUBLAS: list = []  # [module, {dtype: (cuda data type, alpha ptr, beta ptr)}, keepalive] or [None]
_CUDA_R = {np.dtype(np.float32): 0, np.dtype(np.float64): 1}  # cudaDataType CUDA_R_32F/64F


def _cublas():
    if not _CUBLAS:
        try:
            from cupy_backends.cuda.libs import cublas
        except ImportError:  # the CPU stand-in for CuPy
            _CUBLAS.append(None)
            return None
        scalars = {dt: (np.ones(1, dt), np.zeros(1, dt)) for dt in _CUDA_R}
        consts = {dt: (code, scalars[dt][0].ctypes.data, scalars[dt][1].ctypes.data)
                  for dt, code in _CUDA_R.items()}
        _CUBLAS.extend([cublas, consts, scalars])
    return _CUBLAS[0]


def cublas_gemm(a, b):
    """``a @ b`` for float GPU arrays as one cuBLAS call (gemmEx, or gemmStridedBatchedEx for
    stacks, a broadcast operand given stride 0), or None where the layouts need CuPy.

    CuPy's own products cost tens of µs of host time a call; this is a few. Row-major C = A·B
    is column-major Cᵀ = Bᵀ·Aᵀ, so B goes first; each operand's (trans, ld) comes from
    ``layout``. float32 uses TF32 only when ``cr.backends.cuda.matmul.allow_tf32``.
    """
    dt = a.dtype
    if dt not in _CUDA_R or b.dtype != dt or a.ndim < 2 or b.ndim < 2 or not _DIRECT_CUBLAS:
        return None
    cublas = _cublas()
    if cublas is None:
        return None
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    if k != k2 or not (m and n and k):
        return None
    size = dt.itemsize
    la, lb = layout(a.strides[-2:], m, k, size), layout(b.strides[-2:], k, n, size)
    if la is None or lb is None or max(m, n, k, la[1], lb[1]) >= 2**31:
        return None
    code, one, zero = _CUBLAS[1][dt]
    if dt == np.float64:
        compute = cublas.CUBLAS_COMPUTE_64F
    elif backends.cuda.matmul.allow_tf32:
        compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32
    else:
        compute = cublas.CUBLAS_COMPUTE_32F
    op_a = cublas.CUBLAS_OP_T if la[0] == TRANS else cublas.CUBLAS_OP_N
    op_b = cublas.CUBLAS_OP_T if lb[0] == TRANS else cublas.CUBLAS_OP_N
    cupy = devices.loaded_cupy()
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    if a.ndim == 2 and b.ndim == 2:
        out = cupy.empty((m, n), dt)
        cublas.gemmEx(handle, op_b, op_a, n, m, k, one, b.data.ptr, code, lb[1], a.data.ptr,
                      code, la[1], zero, out.data.ptr, code, n, compute,
                      cublas.CUBLAS_GEMM_DEFAULT)
        return out
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        return None
    sa = batch_stride(batch, a.shape[:-2], a.strides[:-2], size)
    sb = batch_stride(batch, b.shape[:-2], b.strides[:-2], size)
    count = 1
    for d in batch:
        count *= d
    if sa is None or sb is None or not count or count >= 2**31:
        return None
    out = cupy.empty(batch + (m, n), dt)
    cublas.gemmStridedBatchedEx(handle, op_b, op_a, n, m, k, one, b.data.ptr, code, lb[1], sb,
                                a.data.ptr, code, la[1], sa, zero, out.data.ptr, code, n, m * n,
                                count, compute, cublas.CUBLAS_GEMM_DEFAULT)
    return out


batching.hooks.matmul = matmul  # vmap's products of batched arrays take the same routes
