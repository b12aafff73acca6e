"""The CPU kernels: NumPy arrays, with one-pass C loops where the buffers allow.

Each override computes what :class:`~chainrule.kernels.reference.Kernels` states, faster: the
C loops of ``_cpu_loops.c`` (built by ``pip install`` where a C compiler is present) take
C-contiguous float32/float64 arrays of one dtype; anything else goes to NumPy code tuned for the
memory hierarchy (blocked passes, in-place ufuncs, GEMV sums), or to the reference.
"""

from __future__ import annotations

import math
import os

from chainrule import _threads, devices
from chainrule.devices import np
from chainrule.kernels import mkl, openblas
from chainrule.kernels.matmul import matmul as _matmul
from chainrule.kernels.reference import Kernels, conv2d_of_columns, conv2d_weight_of_columns
from chainrule.kernels import conv as _conv

__all__ = ["CpuKernels", "loops", "fits_loops"]

_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_LOOP_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_LANE_DTYPES = _LOOP_DTYPES
_INT64 = np.dtype(np.int64)
# np.concatenate without its __array_function__ dispatch (~0.2 µs a call), for plain arrays only
_concatenate = getattr(np.concatenate, "_implementation", np.concatenate)
_CAT_ROWS_MIN = 1 << 17  # elements joined from which cat's C row copies beat NumPy's join


def _load_loops():
    if os.environ.get("CHAINRULE_C_LOOPS", "1") == "0":
        return None
    try:
        from chainrule.kernels import _cpu_loops
    except ImportError:  # built without a C compiler: NumPy code everywhere
        return None
    return _cpu_loops


loops = _load_loops()  # the C module, or None


# At the default thread count a row loop is split only when each thread gets at least this much
# work (elements x passes, ~0.5 ms): a thread per call costs ~20-50 µs to start and join.
DEFAULT_MIN_WORK = 1 << 20
# With the pool running the products too (kernels/openblas.py) its helpers are awake between
# calls (a few µs to start a job), so far smaller calls pay for a split.
POOL_MIN_WORK = 1 << 16
POOL_MIN_AXPY = 1 << 16  # y += a·x on the pool from this size (smaller: NumPy, one thread)
# How long the pool's helpers spin after a job before they sleep (CHAINRULE_POOL_SPIN_US sets it
# in µs): waking a sleeping one costs ~100-200 µs on a VM's idle core.
POOL_SPIN_NS = 1_000_000


def openblas_thread_timeout() -> int | None:
    """OPENBLAS_THREAD_TIMEOUT as NumPy's OpenBLAS read it when it loaded (its threads spin for
    2**value cycles after their part of a product, then sleep; 0: unset, its default 2**28, about
    0.1 s), or None where no OpenBLAS is loaded or it does not say (not Linux, another BLAS)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if not path.startswith("/"):
            continue
        try:
            fn = ctypes.CDLL(path).openblas_thread_timeout
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        return int(fn())
    return None


def default_threads() -> tuple:
    """(threads, work per thread) for chainrule's C row loops: CHAINRULE_LOOP_THREADS where set;
    else BLAS's thread count when the pool runs the products too (kernels/openblas.py), or
    when NumPy's OpenBLAS lets go of the cores right after a product (OPENBLAS_THREAD_TIMEOUT of
    at most 16, set before NumPy loads), for large calls only; else one thread. (The pool's
    count is also the products' where it runs them.)

    With OpenBLAS's default timeout its threads spin for ~0.1 s after each product (busy
    no-ops, no sched_yield), so in a training step they hold the other cores all the time and a
    row loop's own threads only share those cores with them (pytorch/examples' MNIST at 2
    threads, idle 2-core machine: 120 ms a step with 2 loop threads, 81 with one)."""
    env = os.environ.get("CHAINRULE_LOOP_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), None
    n = _threads.blas_threads()
    if openblas.state["on"]:  # one pool for the products and the loops
        return n, POOL_MIN_WORK
    if openblas.state.get("loops_on_blas", 1) > 1:  # on OpenBLAS's own threads (configure_threads)
        return openblas.state["loops_on_blas"], POOL_MIN_WORK
    timeout = openblas_thread_timeout() if n > 1 else None
    if timeout is not None and 4 <= timeout <= 16:
        return n, DEFAULT_MIN_WORK
    return 1, None


def set_loop_threads(n: int, min_work: int | None = None) -> None:
    """Let the C row loops (softmax family, row sums) use up to ``n`` threads, splitting a call
    when each thread gets ``min_work`` elements x passes (None: the loops' own minimum)."""
    if loops is not None:
        if min_work is None:
            loops.set_threads(int(n))
        else:
            loops.set_threads(int(n), int(min_work))


def configure_threads() -> None:
    """Threads for this process's count (``set_num_threads``'s, else BLAS's default): the pool
    takes the products where it can (OpenBLAS then runs on one thread), and the row loops."""
    possible = (loops is not None and hasattr(loops, "gemm") and not mkl.state["gemm"]
                and os.name != "nt")  # (no POSIX threads: the pool's calls run serially)
    if openblas.use_pool(_threads.blas_threads(), possible):
        openblas.state["split_gemm"] = loops.gemm  # what kernels/matmul.py calls
        spin = os.environ.get("CHAINRULE_POOL_SPIN_US", "").strip()
        minf = os.environ.get("CHAINRULE_POOL_MIN_FLOPS", "").strip()
        loops.pool_config(int(spin) * 1000 if spin.isdigit() else POOL_SPIN_NS,
                          int(minf) if minf.isdigit() else -1)
        openblas.state["min_flops"] = loops.pool_config(-1, -1)[1]  # matmul's threshold too
    if loops is not None and hasattr(loops, "pool_runner"):  # else: OpenBLAS's threads, if it has
        runner, n = (0, 1) if mkl.state["gemm"] else openblas.loop_runner(_threads.blas_threads())
        loops.pool_runner(runner, n)
        openblas.state["loops_on_blas"] = n
        if n > 1:
            openblas.state["split_gemm"] = loops.gemm  # stacks of small products (matmul.py)
    set_loop_threads(*default_threads())


configure_threads()
_threads.on_set.append(configure_threads)


def fits_loops(*arrays) -> bool:
    """True when the C loops can take these arrays: C-contiguous float32 or float64 NumPy
    arrays of one dtype (None entries are skipped)."""
    if loops is None:
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or not a.flags.c_contiguous:
            return False
        if dtype is None:
            dtype = a.dtype
            if dtype not in _LOOP_DTYPES:
                return False
        elif a.dtype is not dtype:
            return False
    return True


class CpuKernels(Kernels):
    """The CPU table (see :mod:`chainrule.kernels`)."""

    name = "cpu"

    @staticmethod
    def relu(x):
        if fits_loops(x):
            y = np.empty_like(x)
            loops.relu_forward(x, y)
            return y
        return np.maximum(x, 0)

    @staticmethod
    def relu_backward(g, y):
        if fits_loops(g, y) and g.shape == y.shape:
            gx = np.empty_like(g)
            loops.relu_backward(g, y, gx)
            return gx
        return np.where(y != 0, g, g.dtype.type(0))

    @staticmethod
    def pow(a, b):
        if type(b) is float or type(b) is int:  # a float array to a small integer or half power
            table = _POWERS.get(a.dtype) if type(a) is np.ndarray else None
            power = table.get(b) if table is not None else None
            if power is not None:
                return power(a)
        return a**b

    @staticmethod
    def gelu(x, with_grad: bool) -> tuple:
        if x.dtype == np.float32:
            if fits_loops(x):  # one C loop
                y, dydx = np.empty_like(x), np.empty_like(x) if with_grad else None
                loops.gelu_float32(x, y, dydx)
                return y, dydx
            return _gelu_float32(x, with_grad)
        return Kernels.gelu(x, with_grad)

    @staticmethod
    def gelu_backward(g, x, dydx):
        return g * dydx

    @staticmethod
    def gelu_tanh(x, with_grad: bool) -> tuple:
        if fits_loops(x):  # one C loop
            y, dydx = np.empty_like(x), np.empty_like(x) if with_grad else None
            loops.gelu_tanh(x, y, dydx)
            return y, dydx
        return Kernels.gelu_tanh(x, with_grad)

    @staticmethod
    def sum_squares(x, axes, keepdim: bool):
        """Σ x² in PyTorch's CPU order where its 2-norm kernel has one (float32/float64, every
        dim or the last one, contiguous): 256-bit lanes (4 float64 / 8 float32), each summing
        every 4th/8th square in turn, added together lane after lane, then the leftover tail
        squares one by one, all in x's dtype. The same numbers as torch's ``vector_norm`` and
        ``clip_grad_norm_`` (pairwise sums differ in the last bits, which a chaotic training
        run, e.g. SGD at a large learning rate with clipping, grows into visible differences)."""
        nd = x.ndim
        lastdim = axes is not None and nd > 0 and tuple(sorted(a % nd for a in axes)) == (nd - 1,)
        alldims = axes is None or nd == 0 or len(set(a % nd for a in axes)) == nd
        if (type(x) is not np.ndarray or x.dtype not in _LANE_DTYPES or not x.flags.c_contiguous
                or not (alldims or lastdim) or x.size == 0):
            return Kernels.sum_squares(x, axes, keepdim)
        if alldims:
            rows = x.reshape(1, x.size)
        else:
            rows = x.reshape(-1, x.shape[-1])
        if loops is not None and rows.size:  # the same order in one C loop
            total = np.empty(rows.shape[0], x.dtype)
            loops.sum_squares_rows(rows, total, rows.shape[1])
            if alldims:
                return total.reshape((1,) * nd if keepdim else ())
            return total.reshape(x.shape[:-1] + ((1,) if keepdim else ()))
        lanes = 32 // x.dtype.itemsize
        n = rows.shape[1]
        body = n - n % lanes
        sq = rows * rows
        if body:
            acc = np.add.reduce(sq[:, :body].reshape(rows.shape[0], -1, lanes), axis=1)
            total = acc[:, 0].copy()
            for j in range(1, lanes):
                total += acc[:, j]
        else:
            total = np.zeros(rows.shape[0], x.dtype)
        for k in range(body, n):
            total += sq[:, k]
        if alldims:
            return total.reshape((1,) * nd if keepdim else ())
        return total.reshape(x.shape[:-1] + ((1,) if keepdim else ()))

    @staticmethod
    def matmul(a, b):
        return _matmul(a, b)

    @staticmethod
    def embedding_backward(g, idx, shape: tuple, padding_idx):
        gw = devices.xp_of(g).zeros(shape, g.dtype)  # (CudaKernels inherits this rule)
        CpuKernels.add_at(gw, idx.reshape(-1), g.reshape(-1, shape[1]))
        if padding_idx is not None:
            gw[padding_idx] = 0
        return gw

    @staticmethod
    def gather(x, dim: int, index):
        if loops is not None and type(x) is np.ndarray and type(index) is np.ndarray:
            y = np.empty(index.shape, x.dtype)
            if loops.gather_dim(x, index, y, dim, False):  # one C call (False: not its arrays)
                return y
        if type(x) is not np.ndarray or type(index) is not np.ndarray or x.ndim != index.ndim:
            return Kernels.gather(x, dim, index)
        # one take at flat offsets (NumPy's fancy indexing with one index array per dim is
        # about twice as slow)
        return np.take(np.ascontiguousarray(x).reshape(-1), _flat_offsets(x.shape, dim, index))

    @staticmethod
    def index_in_range(index, n: int) -> bool:
        if (loops is not None and type(index) is np.ndarray and index.dtype is _INT64
                and index.flags.c_contiguous):  # one C pass (NumPy's max: ~1 µs a call)
            return loops.index_in_range(index, n)
        return Kernels.index_in_range(index, n)

    @staticmethod
    def scatter_add(out, dim: int, index, values) -> None:
        around = _around_axis(out, dim, index)
        if around is not None and type(values) is np.ndarray:  # one C loop
            v = np.ascontiguousarray(np.broadcast_to(values, index.shape), out.dtype)
            loops.gather_axis(out, index, v, *around, True)
            return
        if not (type(index) is np.ndarray and out.ndim == index.ndim and fits_loops(out)
                and index.size):
            Kernels.scatter_add(out, dim, index, values)
            return
        flat = _flat_offsets(out.shape, dim, index).reshape(-1)
        v = np.ascontiguousarray(np.broadcast_to(values, index.shape), out.dtype)
        loops.add_rows(out.reshape(-1, 1), flat, v.reshape(-1, 1))

    @staticmethod
    def add_at(out, index, values) -> None:
        rows = _flat_rows(out, index) if type(out) is np.ndarray else None
        if rows is None:  # slices, masks, out of range, other dtypes, CuPy: the reference's add.at
            Kernels.add_at(out, index, values)
            return
        idx, k = rows
        tail = out.shape[k:]
        width = math.prod(tail)
        v = np.broadcast_to(values, idx.shape + tail).reshape(-1, width)
        idx = idx.reshape(-1)
        if idx.size == 0:
            return
        if fits_loops(out) and idx.dtype == np.int64:  # one C loop over the rows
            loops.add_rows(out, np.ascontiguousarray(idx), np.ascontiguousarray(v, out.dtype))
        else:  # the rows sorted, each run summed by add.reduceat
            order = np.argsort(idx, kind="stable")
            sorted_idx = idx[order]
            starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
            out.reshape(-1, width)[sorted_idx[starts]] += np.add.reduceat(v[order], starts, 0)

    @staticmethod
    def sigmoid(x):
        if x.ndim and fits_loops(x):  # one C loop
            y = np.empty_like(x)
            loops.sigmoid(x, y)
            return y
        if type(x) is np.ndarray and x.ndim and x.dtype in _LOOP_DTYPES:  # 1/(1 + e^-x)
            y = np.negative(x)
            with np.errstate(over="ignore", under="ignore"):  # e^-x = inf: 1/inf = 0, exactly
                np.exp(y, out=y)
                y += 1
                np.reciprocal(y, out=y)
            return y
        return Kernels.sigmoid(x)

    @staticmethod
    def sum(x, axes, keepdim: bool):
        n, shape = _row_length(x, axes)
        if n:  # C-contiguous float rows: lanes of SIMD sums, rows (or chunks) over threads
            out = np.empty(shape, x.dtype)
            loops.sum_rows(x, out, n)
            return out.reshape((1,) * x.ndim if shape == () else shape + (1,)) if keepdim else out
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def mean(x, axes, keepdim: bool):
        n, shape = _row_length(x, axes)
        if n:
            out = np.empty(shape, x.dtype)
            loops.sum_rows(x, out, n)
            out /= n
            return out.reshape((1,) * x.ndim if shape == () else shape + (1,)) if keepdim else out
        return x.mean(axis=axes, keepdims=keepdim)

    @staticmethod
    def softmax(x, axis: int):
        if _last_axis_rows(x, axis):  # row by row
            y = np.empty(x.shape, x.dtype)
            loops.softmax_rows(x, y, x.shape[-1], False)
            return y
        if not x.size or x.dtype.kind != "f":
            return Kernels.softmax(x, axis)
        e = x - np.amax(x, axis=axis, keepdims=True)  # then in place: no more temporaries
        np.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        return e

    @staticmethod
    def log_softmax(x, axis: int):
        if _last_axis_rows(x, axis):  # row by row
            y = np.empty(x.shape, x.dtype)
            loops.softmax_rows(x, y, x.shape[-1], True)
            return y
        if not x.size or x.dtype.kind != "f":
            return Kernels.log_softmax(x, axis)
        y = x - np.amax(x, axis=axis, keepdims=True)
        lse = np.exp(y).sum(axis=axis, keepdims=True)
        y -= np.log(lse, out=lse)
        return y

    @staticmethod
    def log_softmax_backward(g, y, axis: int):
        if _rows_pair(g, y, axis):
            gx = np.empty_like(y)
            loops.softmax_backward_rows(np.ascontiguousarray(g), y, gx, y.shape[-1], True)
            return gx
        out = np.exp(y)
        out *= g.sum(axis, keepdims=True)
        np.subtract(g, out, out=out)
        return out

    @staticmethod
    def softmax_backward(g, y, axis: int):
        if _rows_pair(g, y, axis):
            gx = np.empty_like(y)
            loops.softmax_backward_rows(np.ascontiguousarray(g), y, gx, y.shape[-1], False)
            return gx
        out = g - (g * y).sum(axis, keepdims=True)
        out *= y  # in place: one temporary less than the reference
        return out

    @staticmethod
    def cat(xs, axis: int):
        for x in xs:
            if type(x) is not np.ndarray:  # (a duck array: NumPy's dispatch)
                return np.concatenate(xs, axis)
        x0 = xs[0]
        if not axis or loops is None or x0.size * len(xs) < _CAT_ROWS_MIN:
            return _concatenate(xs, axis)  # one block per input, or small: NumPy's join
        shape, dt = x0.shape, x0.dtype
        outer = shape[0] if axis == 1 else math.prod(shape[:axis])
        if outer == 1 or dt.hasobject:
            return _concatenate(xs, axis)
        n = 0
        for x in xs:
            if x.dtype != dt or not x.flags.c_contiguous:
                return _concatenate(xs, axis)
            n += x.shape[axis]
        out = np.empty(shape[:axis] + (n,) + shape[axis + 1:], dt)
        if out.size:  # one memcpy per input per outer row
            loops.cat_rows(out, xs, outer)
        return out

    @staticmethod
    def cross_entropy(x, t, valid) -> tuple:
        if x.ndim == 2 and x.size and fits_loops(x):  # softmax and each row's (max, Σ) in C
            p = np.empty_like(x)
            stats = np.empty((x.shape[0], 2), x.dtype)  # (max, Σ e^(x - max)) per row
            loops.softmax_rows(x, p, x.shape[1], False, stats)
            picked = x[np.arange(x.shape[0]), t]
            picked -= stats[:, 0]  # x[t] - max, then ln Σ e^(x - max) - (x[t] - max)
            nll = np.subtract(np.log(stats[:, 1]), picked, out=picked)
            if valid is not None:
                nll *= valid
            return nll, p
        return Kernels.cross_entropy(x, t, valid)

    @staticmethod
    def attention_weights_t(q, k, mask, scale: float, wt):
        return wt

    @staticmethod
    def layer_norm(x, w, b, k: int, eps: float) -> tuple:
        n = 1
        for s in x.shape[x.ndim - k:]:
            n *= s
        if n and fits_loops(x, w, b):  # the rows in one C loop
            y, xhat = np.empty_like(x), np.empty_like(x)
            rstd = np.empty(x.shape[: x.ndim - k] + (1,) * k, x.dtype)
            loops.layer_norm_forward(x, w, b, float(eps), y, xhat, rstd, n)
            return y, xhat, rstd
        return Kernels.layer_norm(x, w, b, k, eps)

    @staticmethod
    def norm_stats(x, xhat, rstd, axes: tuple, eps: float) -> tuple:
        return xhat, rstd

    @staticmethod
    def batch_norm_stats(x, axes: tuple, eps: float) -> tuple:
        planes = _bn_planes(x, axes)
        if planes is None:
            return Kernels.batch_norm_stats(x, axes, eps)
        n, c = planes
        kept = (1, c) + (1,) * (x.ndim - 2)
        xhat = np.empty_like(x)
        mean, var, rstd = (np.empty(kept, x.dtype) for _ in range(3))
        loops.batch_norm_stats(x, xhat, mean, var, rstd, eps, n, c)
        return xhat, rstd, mean, var

    @staticmethod
    def channel_affine(xhat, w, b):
        planes = _bn_planes(xhat, (0,) + tuple(range(2, xhat.ndim)))
        if planes is None or not fits_loops(xhat, w, b):
            return Kernels.channel_affine(xhat, w, b)
        y = np.empty_like(xhat)
        loops.channel_affine(xhat, w, b, y, *planes)
        return y

    @staticmethod
    def batch_norm_backward(g, w, xhat, rstd, axes: tuple, needs) -> tuple:
        planes = _bn_planes(g, axes)
        if planes is None or not fits_loops(g, xhat, w, rstd):
            return Kernels.batch_norm_backward(g, w, xhat, rstd, axes, needs)
        c = planes[1]
        gx = np.empty_like(g) if needs[0] else None
        gw = np.empty(c, g.dtype) if needs[1] else None
        gb = np.empty(c, g.dtype) if needs[2] else None
        loops.batch_norm_backward(g, xhat, w, rstd, gx, gw, gb, *planes)
        return gx, gw, gb

    @staticmethod
    def leaky_relu(x, slope: float):
        if fits_loops(x):
            y = np.empty_like(x)
            loops.leaky_relu(x, y, slope)
            return y
        return Kernels.leaky_relu(x, slope)

    @staticmethod
    def leaky_relu_backward(g, x, slope: float):
        if fits_loops(g, x) and g.shape == x.shape:
            gx = np.empty_like(g)
            loops.leaky_relu_backward(g, x, gx, slope)
            return gx
        return Kernels.leaky_relu_backward(g, x, slope)

    @staticmethod
    def layer_norm_backward(g, x, w, xhat, rstd, axes: tuple, eps: float, needs) -> tuple:
        n = 1
        for a in axes:
            n *= x.shape[a]
        normalized = tuple(x.shape[len(x.shape) - len(axes):])
        if n and fits_loops(g, xhat, w, rstd) and g.shape == xhat.shape:  # one C loop
            gx = np.empty_like(g) if needs[0] else None
            gw = np.empty(normalized, g.dtype) if needs[1] else None
            gb = np.empty(normalized, g.dtype) if needs[2] else None
            loops.layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n)
            return gx, gw, gb
        # the same on rows (one per normalized group), with the row and column sums as
        # matrix-vector products or einsum, and dx = ĝ/σ - (m1/σ) - x̂·(m2/σ) in place
        gx = gw = gb = None
        xp = devices.xp_of(g)
        g2, xh = g.reshape(-1, n), xhat.reshape(-1, n)
        if needs[1]:
            gw = np.einsum("ij,ij->j", g2, xh).reshape(normalized)
        if needs[2]:
            gb = (xp.ones(len(g2), g.dtype) @ g2).reshape(normalized)
        if needs[0]:
            gx = g2 * w.reshape(-1) if w is not None else g2.copy()
            inv_n = g.dtype.type(1.0 / n)
            r = rstd.reshape(-1)
            m1 = gx @ xp.full(n, inv_n, g.dtype)
            m2 = np.einsum("ij,ij->i", gx, xh)
            gx *= r[:, None]
            m1 *= r
            gx -= m1[:, None]
            m2 *= r * inv_n
            gx -= xh * m2[:, None]
            gx = gx.reshape(x.shape)
        return gx, gw, gb

    @staticmethod
    def im2col(x, geom):
        if x.ndim == 4 and fits_loops(x):  # each window row copied as one run
            n, c, h, w = x.shape
            cols = np.empty((n, c, geom.kh, geom.kw, geom.oh, geom.ow), x.dtype)
            loops.im2col(x, cols, *_conv.pool_args(n * c, h, w, geom))
            return cols
        return Kernels.im2col(x, geom)

    @staticmethod
    def conv2d(x, w, geom, groups: int) -> tuple:
        if groups == 1 and _one_gemm(x, w) and _conv.takes(x.shape, w, geom, loops):
            return _conv.conv2d(x, w, geom, loops)  # pixel-major columns (kernels/conv.py)
        if groups == 1 and _one_gemm(x, w) and _conv.takes_stacked(x.shape, w, geom):
            return _conv.stacked_conv2d(x, w, geom, loops)  # one product per image
        if groups == 1 and _one_gemm(x, w) and _whole_window(x.shape, geom):
            # one window covers each image: y = x·Wᵀ on (N, C·kh·kw) rows, no columns to build
            xm = x.reshape(x.shape[0], -1)
            y = _matmul(xm, w.reshape(w.shape[0], -1).T)
            return y.reshape(y.shape + (1, 1)), xm.T  # xm.T: the (C·kh·kw) × N columns
        if groups == 1 and _one_gemm(x, w) and _chunk(x, w.shape[0], geom) is not None:
            return _conv2d_chunked(x, w, geom), None  # dW recomputes the columns chunk by chunk
        if groups == 1 and _one_gemm(x, w):  # the whole batch in one GEMM (see _columns_cn)
            n, o = x.shape[0], w.shape[0]
            cols = _columns_cn(x, geom)
            if o <= _FEW_ROWS:  # yᵀ = colsᵀ·Wᵀ: OpenBLAS is faster with the long side as rows
                yt = _matmul(cols.T, w.reshape(o, -1).T)  # (N·OH·OW, O)
                y = np.swapaxes(yt.reshape(n, geom.oh * geom.ow, o), 1, 2)
                return np.ascontiguousarray(y).reshape(n, o, geom.oh, geom.ow), cols
            y = _matmul(w.reshape(o, -1), cols)  # (O, N·OH·OW)
            return _batch_first(y, n, (geom.oh, geom.ow)), cols
        cols = CpuKernels.im2col(x, geom)
        return conv2d_of_columns(cols, w, geom, groups), cols

    @staticmethod
    def channel_sums(g):
        if type(g) is np.ndarray and g.ndim >= 3 and fits_loops(g):
            return _conv.channel_sums(g)
        return Kernels.channel_sums(g)

    @staticmethod
    def conv2d_columns(x, cols, geom):
        return cols

    @staticmethod
    def conv2d_weight_grad(g, x, cols, w_shape: tuple, geom, groups: int):
        if isinstance(cols, _conv.NhwcColumns):
            return _conv.weight_grad(g, cols, w_shape, geom, loops)
        if isinstance(cols, _conv.ImageColumns):
            return _conv.stacked_weight_grad(g, cols, w_shape, geom, loops)
        if cols is None:  # conv2d went chunk by chunk
            return _conv2d_weight_grad_chunked(g, x, w_shape, geom)
        if cols.ndim == 2:  # conv2d's (C·kh·kw, N·OH·OW) columns: dW = dy · colsᵀ, one GEMM
            # computed as dWᵀ = cols · dyᵀ (the long N·OH·OW side inner to both: OpenBLAS's
            # faster order for these shapes), then transposed (a small copy)
            return np.ascontiguousarray(_matmul(cols, _channels_first(g).T).T).reshape(w_shape)
        return conv2d_weight_of_columns(g, cols, w_shape, geom, groups)

    @staticmethod
    def conv2d_input_grad(g, w, x_shape: tuple, geom, groups: int):
        if groups == 1 and _one_gemm(g, w) and _conv.takes(x_shape, w, geom, loops):
            return _conv.input_grad(g, w, x_shape, geom, loops)
        if groups == 1 and _one_gemm(g, w) and _conv.takes_stacked(x_shape, w, geom):
            return _conv.stacked_input_grad(g, w, x_shape, geom, loops)
        if groups == 1 and _one_gemm(g, w) and _whole_window(x_shape, geom):
            # each image is one window: dx = dy·W on (N, O) rows (a transposed convolution from
            # 1×1 inputs, as DCGAN's first layer, is this product)
            g2, w2 = g.reshape(g.shape[0], -1), w.reshape(w.shape[0], -1)
            # one output channel (DCGAN's discriminator score): an outer product, which
            # OpenBLAS runs ~10× slower as a GEMM with K = 1 than NumPy's broadcast multiply
            gx = g2 * w2 if g2.shape[1] == 1 else _matmul(g2, w2)
            return gx.reshape(x_shape)
        if groups == 1 and _one_gemm(g, w):  # dcols = Wᵀ · dy over the whole batch, col2im in C
            n, c, h, wd = x_shape
            if _chunk(g, c, geom, x_shape[1] * geom.kh * geom.kw) is not None:
                return _conv2d_input_grad_chunked(g, w, x_shape, geom)
            gcols = _matmul(w.reshape(w.shape[0], -1).T, _channels_first(g))
            gx = np.empty(x_shape, g.dtype)
            loops.col2im_cn(gcols, gx, c, *_conv.pool_args(n * c, h, wd, geom))
            return gx
        if geom.sh == 1 and geom.sw == 1:
            return _conv_input_grad_wide(g, w, x_shape, geom, groups)
        return Kernels.conv2d_input_grad(g, w, x_shape, geom, groups)

    @staticmethod
    def max_pool2d_backward(g, idx, x_shape: tuple, geom):
        if (type(g) is np.ndarray and len(x_shape) == 4 and idx.dtype == np.uint8
                and g.dtype in _LOOP_DTYPES):
            g, idx = np.ascontiguousarray(g), np.ascontiguousarray(idx)
            if fits_loops(g):
                n, c, h, w = x_shape
                gx = np.empty(x_shape, g.dtype)
                loops.max_pool2d_backward(g, idx, gx, *_conv.pool_args(n * c, h, w, geom))
                return gx
        return Kernels.max_pool2d_backward(g, idx, x_shape, geom)

    @staticmethod
    def lstm_step(act, cs, t: int, prev: int, cur: int, tmp) -> None:
        if fits_loops(act, cs):
            loops.lstm_step_forward(act, cs, t, prev, cur)
        else:
            Kernels.lstm_step(act, cs, t, prev, cur, tmp)

    @staticmethod
    def lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t: int, tmp) -> None:
        if fits_loops(dh, dc, g_out_t, a_c, p, act, dz):
            loops.lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t)
        else:
            Kernels.lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t, tmp)

    @staticmethod
    def axpy(alpha: float, x, y) -> bool:
        if mkl.axpy(alpha, x, y):
            return True
        # on the pool: each thread updates the part of y it wrote in the product before
        if (openblas.state["on"] and fits_loops(x, y) and y.size >= POOL_MIN_AXPY
                and x.size == y.size and y.flags.writeable):
            loops.axpy(alpha, x, y)
            return True
        return False

    # (xfmr16, issue 16: one Adadelta pass over the pool's threads; bit-identical to NumPy's passes)
    @staticmethod
    def adadelta_step(grad, d, v, u, lr: float, rho: float, eps: float) -> bool:
        if hasattr(loops, "adadelta") and fits_loops(grad, d, v, u) and d.flags.writeable:
            loops.adadelta(grad, d, v, u, lr, rho, eps)
            return True
        return False


def _bn_planes(x, axes: tuple):
    """(N, C) when batch norm's C loops can take x over ``axes``: a C-contiguous float array
    (N, C, *S) normalized over every dim but 1, with planes of S >= 8 elements (shorter
    planes, e.g. BatchNorm1d's (N, C), are strided channels: NumPy's reductions do better)."""
    if not fits_loops(x) or x.ndim < 3 or tuple(axes) != (0,) + tuple(range(2, x.ndim)):
        return None
    n, c = x.shape[0], x.shape[1]
    if n * c == 0 or x.size // (n * c) < 8:
        return None
    return n, c


def _whole_window(x_shape: tuple, geom) -> bool:
    """True when a convolution's single window covers each whole (unpadded) image: a 1×1
    output whose columns are the images themselves (DCGAN's last conv and, as its adjoint, its
    first transposed conv)."""
    return (geom.oh == 1 and geom.ow == 1 and geom.kh == x_shape[2] and geom.kw == x_shape[3]
            and geom.dh == 1 and geom.dw == 1
            and geom.pt == 0 and geom.pb == 0 and geom.pl == 0 and geom.pr == 0)


def _one_gemm(x, w) -> bool:
    """True when a convolution of (N, C, H, W) ``x`` with ``w`` can run as one GEMM over the
    batch: the C loops take x, and w is a NumPy array of x's dtype."""
    return (x.ndim == 4 and fits_loops(x) and type(w) is np.ndarray and w.dtype == x.dtype
            and x.size > 0)


# Output channels up to which conv2d computes yᵀ = colsᵀ·Wᵀ instead of y = W·cols (OpenBLAS
# runs a GEMM with few rows and a long inner side slowly: 16 × 48 × 16384 takes 1.6× as long as
# its transpose, on one Zen 4 core; from 32 rows the two orders are even).
_FEW_ROWS = 16


def _columns_cn(x, geom):
    """im2col of (N, C, H, W) x as a (C·kh·kw) × (N·OH·OW) matrix: a convolution over the
    whole batch is one GEMM with it (one BLAS call instead of one per image: on several threads
    each call wakes BLAS's thread pool), and its rows are long."""
    n, c, h, w = x.shape
    cols = np.empty((c * geom.kh * geom.kw, n * geom.oh * geom.ow), x.dtype)
    loops.im2col_cn(x, cols, c, *_conv.pool_args(n * c, h, w, geom))
    return cols


# Convolutions whose columns would exceed _WHOLE_BATCH_BYTES (a core's L2) go through the batch
# in chunks of about _CHUNK_BYTES of columns: each chunk's columns are written and read by the
# GEMM (or col2im) while in L2, and not kept (dW recomputes them, again in cache). Smaller ones
# keep their columns for dW. Columns written to memory once cost more than written to L2 twice:
# DCGAN's iteration (3 and 4 MB columns in D's first two convs and G's last two transposed
# ones), one thread, CPU time: 67 ms whole, 61-62 ms with 1-2 MB kept whole and 256 KB chunks,
# 65 with 128 KB chunks, 69 with 512 KB; the MNIST example (42 MB columns) the same at 256 KB
# and 1 MB chunks (one image a chunk either way).
# Both are per BLAS thread (each core has its own L2, and a GEMM splits its columns over the
# threads): at 2 threads DCGAN's columns stay whole, as before, and each GEMM call (a wake-up of
# the thread pool) covers twice the images.
_WHOLE_BATCH_BYTES = 2 << 20
_CHUNK_BYTES = 256 << 10


def _chunk(x, o: int, geom, k: int | None = None):
    """Images per chunk for a conv2d of (N, C, H, W) ``x`` (``k``: rows of its columns,
    C·kh·kw by default), or None when the whole batch's columns are small enough to keep."""
    n = x.shape[0]
    if k is None:
        k = x.shape[1] * geom.kh * geom.kw
    per_image = k * geom.oh * geom.ow * x.itemsize
    threads = _threads.blas_threads()
    if per_image * n <= _WHOLE_BATCH_BYTES * threads:
        return None
    return max(1, min(n, _CHUNK_BYTES * threads // max(per_image, 1)))


def _conv2d_chunked(x, w, geom):
    n, o = x.shape[0], w.shape[0]
    step = _chunk(x, o, geom)
    wm = w.reshape(o, -1)
    y = np.empty((n, o, geom.oh, geom.ow), x.dtype)
    for n0 in range(0, n, step):
        cols = _columns_cn(x[n0:n0 + step], geom)
        part = y[n0:n0 + step]
        if part.shape[0] == 1:
            _matmul(wm, cols, out=part.reshape(o, -1))
        else:
            part[...] = _batch_first(_matmul(wm, cols), part.shape[0], (geom.oh, geom.ow))
    return y


def _conv2d_weight_grad_chunked(g, x, w_shape: tuple, geom):
    o = g.shape[1]
    step = _chunk(x, o, geom)
    dwt = None  # dWᵀ = Σ cols · dyᵀ over the chunks
    for n0 in range(0, x.shape[0], step):
        cols = _columns_cn(x[n0:n0 + step], geom)
        part = _matmul(cols, _channels_first(g[n0:n0 + step]).T)
        if dwt is None:
            dwt = part
        else:
            dwt += part
    return np.ascontiguousarray(dwt.T).reshape(w_shape)


def _conv2d_input_grad_chunked(g, w, x_shape: tuple, geom):
    n, c, h, wd = x_shape
    o = g.shape[1]
    step = _chunk(g, c, geom, c * geom.kh * geom.kw)
    wt = w.reshape(o, -1).T
    gx = np.empty(x_shape, g.dtype)
    for n0 in range(0, n, step):
        gc = g[n0:n0 + step]
        gcols = _matmul(wt, gc.reshape(o, -1) if gc.shape[0] == 1 else _channels_first(gc))
        loops.col2im_cn(gcols, gx[n0:n0 + step], c, *_conv.pool_args(gc.shape[0] * c, h, wd, geom))
    return gx


def _channels_first(g):
    """(N, O, ...) -> the contiguous (O, N·...) matrix."""
    n, o = g.shape[0], g.shape[1]
    return np.ascontiguousarray(np.swapaxes(g.reshape(n, o, -1), 0, 1)).reshape(o, -1)


def _batch_first(y, n: int, spatial: tuple):
    """(O, N·...) -> the contiguous (N, O, ...) array."""
    o = y.shape[0]
    return np.ascontiguousarray(np.swapaxes(y.reshape((o, n) + spatial), 0, 1))


def _around_axis(x, dim: int, index):
    """(A, X, I, B) when the C gather loop can take ``x`` and ``index`` along ``dim`` (indices
    in range, checked by the caller): x C-contiguous float, viewed as (A, X, B) around the axis,
    and a C-contiguous int64 index of x's shape but along the axis (I); else None."""
    if (loops is None or type(x) is not np.ndarray or type(index) is not np.ndarray
            or x.dtype not in _LOOP_DTYPES or index.dtype != _INT64 or not index.size):
        return None
    shape, ishape = x.shape, index.shape
    nd = len(shape)
    if (not nd or len(ishape) != nd or shape[:dim] != ishape[:dim]
            or shape[dim + 1:] != ishape[dim + 1:]
            or not x.flags.c_contiguous or not index.flags.c_contiguous):
        return None
    if nd == 2:  # (the common case: no products to take)
        return (shape[0], shape[1], ishape[1], 1) if dim else (1, shape[0], ishape[0], shape[1])
    return math.prod(shape[:dim]), shape[dim], ishape[dim], math.prod(shape[dim + 1:])


def _last_axis_rows(x, axis: int) -> bool:
    """True when the C row loops can take ``x`` along ``axis``: its last axis, x a non-empty
    C-contiguous float32/float64 NumPy array (the checks of fits_loops, inline: the small
    calls' cost)."""
    if loops is None or type(x) is not np.ndarray or x.dtype not in _LOOP_DTYPES:
        return False
    nd = x.ndim
    return nd > 0 and axis % nd == nd - 1 and x.size > 0 and x.flags.c_contiguous


def _row_length(x, axes) -> tuple:
    """(n, the result's shape) when the C row sums can reduce ``x`` over ``axes`` as rows of n
    elements: a C-contiguous float32/float64 array of 512 elements or more, reduced over every
    dim or over its last one only; else (0, None)."""
    if (x.size < 512 or loops is None or type(x) is not np.ndarray  # (small: NumPy's call costs
            or x.dtype not in _LOOP_DTYPES or not x.flags.c_contiguous):  # less)
        return 0, None
    nd = x.ndim
    if (axes is None or nd == 0 or (nd == 1 and len(axes) == 1)
            or len(set(a % nd for a in axes)) == nd):
        return x.size, ()
    if len(axes) == 1 and axes[0] % nd == nd - 1:
        return x.shape[-1], x.shape[:-1]
    return 0, None


def _rows_pair(g, y, axis: int) -> bool:
    """True when a softmax backward can run as C row loops: y (the forward's output) along its
    last axis, C-contiguous float, and g an array of y's shape and dtype (copied to C order if
    it is not)."""
    return (y.ndim > 0 and y.size > 0 and axis % y.ndim == y.ndim - 1 and fits_loops(y)
            and type(g) is np.ndarray and g.shape == y.shape and g.dtype is y.dtype)


def _flat_offsets(shape: tuple, dim: int, index):
    """Flat (C order) positions of a C-contiguous array of ``shape`` that ``index`` addresses
    along ``dim`` (in range, checked by the caller), its own position elsewhere."""
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    flat = index.astype(np.int64) * strides[dim]
    for a, n in enumerate(index.shape):
        if a != dim and n > 1:
            flat += (np.arange(n, dtype=np.int64) * strides[a]).reshape(
                (-1,) + (1,) * (index.ndim - a - 1))
    return flat


def _flat_rows(out, index):
    """(flat row numbers, k) when ``index`` is integer arrays for ``out``'s first k dims, all in
    range (negative ones counted from the end): out[index] is then rows of out viewed as
    (rows, the size of its other dims); None for anything else (slices, masks, out of range)."""
    parts = index if type(index) is tuple else (index,)
    k = len(parts)
    if not parts or k > out.ndim or not out.flags.c_contiguous or out.size == 0:
        return None
    fixed = []
    for p, n in zip(parts, out.shape):
        if type(p) is not np.ndarray or p.dtype.kind not in "iu":
            return None
        if p.size:
            lo, hi = p.min(), p.max()
            if lo < -n or hi >= n:
                return None
            if lo < 0:
                p = np.where(p < 0, p + n, p)
        fixed.append(p)
    if k == 1:
        flat = fixed[0]
    else:
        flat = np.ravel_multi_index(np.broadcast_arrays(*fixed), out.shape[:k])
    return flat.astype(np.int64, copy=False), k


def _cube(x):
    y = x * x
    y *= x
    return y


def _pow_m0_5(x):
    y = np.sqrt(x)
    np.divide(1, y, out=y)
    return y


def _pow_m2(x):
    y = x * x
    np.divide(1, y, out=y)
    return y


def _fourth_f32(x):
    y = x.astype(np.float64)
    np.square(y, out=y)
    np.square(y, out=y)
    return y.astype(np.float32)


def _pow_1_5_f32(x):
    y = x.astype(np.float64)
    np.multiply(np.sqrt(y), y, out=y)
    return y.astype(np.float32)


# x ** e for the exponents small programs use (GELU's x³, norms' x², √x, 1/x, 1/√x), as
# products, square roots and one division: NumPy's float power calls pow() per element, ~100×
# slower. x·x·x, 1/√x and 1/(x·x) are PyTorch's own forms for these exponents (the results
# agree bit for bit); float32 x⁴ and x^1.5 go through float64 (within half an ulp, as pow()).
_POWERS_F64 = {2: np.square, 3: _cube, 0.5: np.sqrt, -0.5: _pow_m0_5, -1: np.reciprocal,
               -2: _pow_m2}
_POWERS = {np.dtype(np.float64): _POWERS_F64,
           np.dtype(np.float32): {**_POWERS_F64, 4: _fourth_f32, 1.5: _pow_1_5_f32}}


def _conv_input_grad_wide(g, w, x_shape: tuple, geom, groups: int):
    """dx of a stride-1 conv2d, computed on the padded image's flat rows.

    Padding dy's rows to the padded width Wp turns every kernel offset (i, j) into one shift of
    the flattened image, so col2im becomes kh·kw adds of long contiguous runs (not of OW-pixel
    rows). The extra Wp - OW columns of dy are zeros and add nothing.
    """
    n, o, oh, ow = g.shape
    c, h, w_ = x_shape[1], x_shape[2], x_shape[3]
    hp, wp = h + geom.pt + geom.pb, w_ + geom.pl + geom.pr
    length = (oh - 1) * wp + ow
    gw = np.zeros_like(g, shape=(n, o, oh * wp))
    gw.reshape(n, o, oh, wp)[..., :ow] = g
    g4 = gw[:, :, :length].reshape(n, groups, o // groups, length)
    wg = w.reshape(groups, o // groups, -1)
    gcols = _matmul(np.swapaxes(wg, -1, -2), g4).reshape(n, c, geom.kh, geom.kw, length)
    starts = [i * geom.dh * wp + j * geom.dw for i in range(geom.kh) for j in range(geom.kw)]
    if fits_loops(gcols) and n * c:  # each image row written once, while in cache
        flat = np.empty_like(g, shape=(n, c, hp * wp))
        loops.col2im_rows(flat, gcols, np.array(starts, np.int64), n * c)
    else:
        flat = np.zeros_like(g, shape=(n, c, hp * wp))
        taps = gcols.reshape(n, c, geom.kh * geom.kw, length)
        for t, start in enumerate(starts):
            flat[:, :, start:start + length] += taps[:, :, t]
    out = flat.reshape(n, c, hp, wp)
    if geom.pt or geom.pb or geom.pl or geom.pr:
        return out[:, :, geom.pt:geom.pt + h, geom.pl:geom.pl + w_]
    return out


# 1 - Φ(a) = φ(a)·(b₁t + … + b₅t⁵), t = 1/(1 + p·a), a ≥ 0 (Abramowitz & Stegun 26.2.17,
# |error| < 7.5e-8): float32 GELU without erf, its derivative from the same φ and t.
_PHI_P = 0.2316419
_PHI_B = (1.330274429, -1.821255978, 1.781477937, -0.356563782, 0.319381530)  # b₅, …, b₁


def _gelu_float32(x, with_grad: bool) -> tuple:
    """y = x·Φ(x) and, if ``with_grad``, dy/dx = Φ(x) + x·φ(x), for a float32 array, on
    cache-sized blocks with in-place ufuncs (no full-size temporaries): MKL's vector Φ and exp
    when the ``mkl`` extra is loaded (8 calls a block), else Φ from A&S (about 25)."""
    y = np.empty(x.shape, np.float32)  # C order, whatever x's layout: the flat views below
    dydx = np.empty(x.shape, np.float32) if with_grad else None
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    flat_d = dydx.reshape(-1) if with_grad else None
    cdf_norm, exp = mkl.vector_math("cdf_norm", np.float32), mkl.vector_math("exp", np.float32)
    block = max(1, min(32768, flat_x.size))
    scratch = [np.empty(block, np.float32) for _ in range(2)]  # Φ(x), φ(x)
    if cdf_norm is None:  # A&S also needs |x|, t and x's sign bits
        scratch += [np.empty(block, np.float32), np.empty(block, np.float32),
                    np.empty(block, np.uint32)]
    for i in range(0, flat_x.size, block):
        xb = np.ascontiguousarray(flat_x[i:i + block])
        if xb.size < block:
            scratch = [v[:xb.size] for v in scratch]
        q, pdf = scratch[0], scratch[1]
        if cdf_norm is not None:
            cdf_norm(xb, q)
            if with_grad:
                np.multiply(xb, xb, out=pdf)
                pdf *= -0.5
                exp(pdf, pdf)
                pdf *= _INV_SQRT_2PI  # φ(x)
        else:
            _cdf_as(xb, q, pdf, *scratch[2:])
        np.multiply(xb, q, out=flat_y[i:i + block])
        if with_grad:
            db = flat_d[i:i + block]
            np.multiply(xb, pdf, out=db)
            db += q
    return y, dydx


def _cdf_as(x, q, pdf, a, t, sign) -> None:
    """q = Φ(x) and pdf = φ(x) for a float32 block, by A&S 26.2.17 (scratch: a, t, sign)."""
    np.abs(x, out=a)
    np.multiply(a, a, out=pdf)
    pdf *= -0.5
    np.exp(pdf, out=pdf)
    pdf *= _INV_SQRT_2PI  # φ(x)
    np.multiply(a, _PHI_P, out=t)
    t += 1.0
    np.divide(1.0, t, out=t)
    np.multiply(t, _PHI_B[0], out=q)
    for b in _PHI_B[1:]:
        q += b
        q *= t
    q *= pdf  # Φ(-|x|)
    # Φ(x) = 1/2 + sign(x)·(1/2 - Φ(-|x|)): x's sign bit ORed in (np.copysign is 5× slower)
    np.subtract(0.5, q, out=q)
    np.bitwise_and(x.view(np.uint32), 0x80000000, out=sign)
    np.bitwise_or(q.view(np.uint32), sign, out=q.view(np.uint32))
    q += 0.5


# ---- ops16c: cross-entropy rows in one C pass each way (added to CpuKernels below) -----------
_CE_MODES = {"none": 0, "sum": 1, "mean": 2}
_INT64 = np.dtype(np.int64)
# np.concatenate without its __array_function__ dispatch (~0.2 µs a call), for plain arrays only
_concatenate = getattr(np.concatenate, "_implementation", np.concatenate)
_CAT_ROWS_MIN = 1 << 17  # elements joined from which cat's C row copies beat NumPy's join


def _cross_entropy_rows(x, t, ignore_index: int, reduction: str):
    """(row log-sum-exps, row losses, [loss, count]) of 2-d x from one C loop; None where the
    loop does not apply (or a target is out of range: the generic path reports it)."""
    if (x.ndim != 2 or not x.shape[0] or not x.shape[1] or not fits_loops(x)
            or type(t) is not np.ndarray or t.dtype != _INT64 or not t.flags.c_contiguous
            or not -(1 << 63) <= ignore_index < (1 << 63)
            or not hasattr(loops, "cross_entropy_rows")):
        return None
    n = x.shape[0]
    lse, nll, out = np.empty(n, x.dtype), np.empty(n, x.dtype), np.empty(2, x.dtype)
    if not loops.cross_entropy_rows(x, t, ignore_index, lse, nll, out, _CE_MODES[reduction]):
        return None
    return lse, nll, out


def _cross_entropy_rows_backward(g, x, lse, t, count, ignore_index: int, reduction: str):
    if type(g) is not np.ndarray or not fits_loops(x, lse) or type(t) is not np.ndarray:
        return Kernels.cross_entropy_rows_backward(g, x, lse, t, count, ignore_index, reduction)
    g = np.ascontiguousarray(g, dtype=x.dtype)
    if reduction == "mean":
        c = float(count[0])
        scale = 1.0 / c if c else 0.0  # no rows count: every row is ignored, all zeros
    else:
        scale = 1.0
    gx = np.empty_like(x)
    loops.cross_entropy_rows_backward(x, lse, t, ignore_index, g, scale, gx)
    return gx


CpuKernels.cross_entropy_rows = staticmethod(_cross_entropy_rows)
CpuKernels.cross_entropy_rows_backward = staticmethod(_cross_entropy_rows_backward)


def _copy(x):
    """A C-contiguous copy of array x (``x.copy()``), transposed layouts in tiles, in C: planes
    of one contiguous array with their last two axes swapped (``x.T``, ``x.transpose(1, 2)``)
    by ``planes_transpose`` (float tiles in registers), other transposed layouts by
    ``strided_copy``."""
    if (type(x) is np.ndarray and x.ndim >= 2 and x.size >= 4096 and not x.flags.c_contiguous
            and x.itemsize in (4, 8) and not x.dtype.hasobject
            and hasattr(loops, "strided_copy")):
        planes = np.swapaxes(x, -1, -2)
        if planes.flags.c_contiguous and (x.dtype == np.float32 or x.dtype == np.float64):
            rows, cols = planes.shape[-2:]
            return _conv.planes_transposed(loops, planes, x.size // (rows * cols), rows, cols,
                                           x.shape)
        out = np.empty(x.shape, x.dtype)
        if loops.strided_copy(x, out):
            return out
    return x.copy()


CpuKernels.copy = staticmethod(_copy)


def _adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
               step_size, bias_correction2_sqrt) -> bool:
    """Adam's update of ``p`` and its moments in one C pass (optim/adam.py's ``_update``, the
    same roundings; ~15 NumPy passes there); False where the C loops cannot take the arrays,
    or a hyper-parameter is not a Python number (a Tensor lr: a NumPy scalar, whose own dtype
    NumPy's update rounds in)."""
    for s in (lr, beta1, beta2, eps, weight_decay, step_size, bias_correction2_sqrt):
        if type(s) is not float and type(s) is not int:
            return False
    if not (fits_loops(p, g, m, v, vmax) and hasattr(loops, "adam_step")
            and p.flags.writeable and not np.may_share_memory(p, g)):
        return False
    loops.adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step_size,
                    bias_correction2_sqrt, int(bool(maximize)) | 2 * int(bool(decoupled)))
    return True


CpuKernels.adam_step = staticmethod(_adam_step)


def _conv2d_grads(cls, g, x, w, cols, geom, groups: int) -> tuple:
    """(dx, dW) of conv2d: on the pixel-major route (kernels/conv.py) dy's pixel rows are made
    once for both products; elsewhere the table's two kernels."""
    if (isinstance(cols, _conv.NhwcColumns) and groups == 1 and _one_gemm(g, w)
            and _conv.takes(tuple(x.shape), w, geom, loops)):
        return _conv.grads(g, cols, w, tuple(x.shape), geom, loops)
    return Kernels.conv2d_grads.__func__(cls, g, x, w, cols, geom, groups)


CpuKernels.conv2d_grads = classmethod(_conv2d_grads)


def _tanh_backward(g, y):
    """g·(1 - y²) in one C pass (the reference's NumPy form, the same roundings)."""
    if type(g) is np.ndarray and fits_loops(g, y) and g.shape == y.shape and \
            hasattr(loops, "tanh_backward"):
        gx = np.empty_like(g)
        loops.tanh_backward(g, y, gx)
        return gx
    return Kernels.tanh_backward(g, y)


CpuKernels.tanh_backward = staticmethod(_tanh_backward)


def _leaky_relu_into(cls, x, slope: float):
    """leaky_relu written over x's own memory (its result: a view of x), for leaky_relu_ where
    nothing else holds x's values; elsewhere a new array, as leaky_relu."""
    if type(x) is np.ndarray and fits_loops(x) and x.flags.writeable:
        loops.leaky_relu(x, x, slope)
        return x.view()
    return cls.leaky_relu(x, slope)


CpuKernels.leaky_relu_into = classmethod(_leaky_relu_into)


def _conv_transpose2d(cls, x, w, out_shape: tuple, geom, groups: int) -> tuple:
    """conv_transpose2d and what its backward reuses: on the pixel-major route (kernels/conv.py)
    x's pixel rows and the weight's rows; elsewhere the reference (conv2d_input_grad, None)."""
    if groups == 1 and _one_gemm(x, w) and _conv.takes(tuple(out_shape), w, geom, loops):
        return _conv.conv_transpose(x, w, tuple(out_shape), geom, loops)
    return Kernels.conv_transpose2d.__func__(cls, x, w, out_shape, geom, groups)


def _conv_transpose2d_grads(cls, g, x, w, saved, geom, groups: int, need_w: bool) -> tuple:
    if (isinstance(saved, _conv.TransposedRows) and groups == 1 and _one_gemm(g, w)
            and _conv.takes(tuple(g.shape), w, geom, loops)):
        return _conv.conv_transpose_grads(g, x, w, saved, geom, loops, need_w)
    return Kernels.conv_transpose2d_grads.__func__(cls, g, x, w, saved, geom, groups, need_w)


CpuKernels.conv_transpose2d = classmethod(_conv_transpose2d)
CpuKernels.conv_transpose2d_grads = classmethod(_conv_transpose2d_grads)
