"""CPU convolutions as GEMMs on pixel-major columns of channels-last images.

The image (N, C, H, W) is copied once to channels-last (N, H, W, C); each output pixel's window
is then one row of a (N·OH·OW) × (kh·kw·C) matrix, built from runs of kw·C contiguous values
(``im2col_nhwc`` of ``_cpu_loops.c``) instead of im2col_cn's runs of OW values (4 to 16 in
DCGAN, strided by 2). With the weight reordered to (O, kh·kw·C):

- forward: yᵀ = cols · Wᵀ, (N·OH·OW) × O, transposed back to (N, O, OH, OW) (a small copy);
- weight gradient: dW = dyᵀᵀ · cols, the batch summed inside the GEMM (K = N·OH·OW);
- input gradient: dcols = dyᵀ · W, added back onto the channels-last image by ``col2im_nhwc``,
  then transposed to (N, C, H, W).

OpenBLAS runs these pixel-major products faster than the channel-major ones of DCGAN's layers
(one Zen 4 core: 85-98 GFLOPS against 60-100, e.g. 16→32 channels on 32×32, k4 s2: 0.76 ms
against 1.12 for the forward), and the copies are runs of 64 to 1024 bytes (the transposes,
``planes_transpose``, 8 × 8 blocks in registers). Per layer forward + both gradients, one
core: 16→32 on 32×32 3.8 -> 3.2 ms, 32→64 on 16×16 3.1 -> 2.6, 64→128 on 8×8 2.7 -> 2.4. The
columns live in a reused scratch array, the whole batch at once up to ``_WHOLE_BYTES`` per
BLAS thread, else in chunks of about ``_CHUNK_BYTES`` (written and read while in L2); the
weight gradient builds them again from the kept channels-last image (cheaper than keeping
them: 0.05 ms for 2 MB, and nothing held between forward and backward).
"""

from __future__ import annotations

import math
import os
import threading

from chainrule import _threads
from chainrule.devices import np
from chainrule.kernels.matmul import matmul as _matmul

__all__ = ["NhwcColumns", "TransposedRows", "takes", "conv2d", "weight_grad", "input_grad",
           "grads", "conv_transpose", "conv_transpose_grads", "pixel_rows", "planes_transposed"]

# CHAINRULE_CONV_NHWC=0: the channel-major route everywhere (to compare the two)
_ENABLED = os.environ.get("CHAINRULE_CONV_NHWC", "1") != "0"
_WHOLE_BYTES = 2 << 20
_CHUNK_BYTES = 512 << 10


class NhwcColumns:
    """What :func:`conv2d` keeps for :func:`weight_grad`: the channels-last image (whose
    columns the weight gradient builds again, chunk by chunk, in cache), and the weight in the
    columns' tap order for :func:`grads`' input gradient (the gate's saved weight, whose version
    the engine checks, so it is still that weight's; one reorder of a cache-cold weight fewer
    per backward: 50 µs for DCGAN's 128×64×4×4)."""

    __slots__ = ("xh", "wr")

    def __init__(self, xh, wr=None):
        self.xh, self.wr = xh, wr


def takes(x_shape: tuple, w, geom, loops) -> bool:
    """True when the pixel-major route is the faster one for this convolution (groups = 1, the
    C loops taking x, checked by the caller), as measured on one core: at least 8 input
    channels (DCGAN's 3-channel first conv: 1.7 ms channel-major, 2.5 pixel-major, its runs of
    kw·C = 12 values too short), a stride (the stride-1 3×3 conv of MNIST, 32→64 on 26×26, is
    10% faster channel-major: its rows of 24 contiguous values copy well there) and at least 16
    output pixels per image."""
    c = x_shape[1]
    return (_ENABLED and c >= 8 and (geom.sh > 1 or geom.sw > 1) and geom.oh * geom.ow >= 16
            and hasattr(loops, "im2col_nhwc"))  # (a C module built before them: not)


def pool_args(planes: int, h: int, w: int, geom) -> tuple:
    """The geometry arguments of the C loops' im2col/col2im/pooling calls for ``planes`` planes
    of h × w."""
    return (planes, h, w, geom.kh, geom.kw, geom.sh, geom.sw, geom.dh, geom.dw, geom.pt,
            geom.pl, geom.oh, geom.ow)


def _args(x_shape: tuple, geom) -> tuple:
    n, c, h, w = x_shape
    return (c, n, h, w, geom.kh, geom.kw, geom.sh, geom.sw, geom.dh, geom.dw, geom.pt,
            geom.pl, geom.oh, geom.ow)


def _step(n: int, per_image: int):
    """Images per chunk, or None when the whole batch's columns are kept."""
    threads = _threads.blas_threads()
    if per_image * n <= _WHOLE_BYTES * threads:
        return None
    return max(1, min(n, _CHUNK_BYTES * threads // max(per_image, 1)))


def planes_transposed(loops, a, batch: int, rows: int, cols: int, shape: tuple):
    """The contiguous (batch, cols, rows) transpose of ``a`` seen (in C order) as (batch, rows,
    cols), shaped ``shape``: ``planes_transpose`` of the C loops (8 × 8 float tiles in
    registers). Shared with CpuKernels' copy of transposed layouts (``x.T``)."""
    out = np.empty(shape, a.dtype)
    loops.planes_transpose(np.ascontiguousarray(a), out, batch, rows, cols)
    return out



_SCRATCH_MAX = 8 << 20
_scratch_arrays = threading.local()


def _scratch(shape: tuple, dtype):
    """A C-contiguous array of ``shape`` (contents undefined) for columns that live only inside
    one kernel call, reused by the calls of this thread: written while its pages are mapped and
    in cache (a fresh 2 MB array costs ~500 page faults each time glibc returns it to the
    system). Over ``_SCRATCH_MAX`` bytes a fresh array."""
    size = math.prod(shape)
    dtype = np.dtype(dtype)
    if size * dtype.itemsize > _SCRATCH_MAX:
        return np.empty(shape, dtype)
    buf = getattr(_scratch_arrays, dtype.char, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype)
        setattr(_scratch_arrays, dtype.char, buf)
    return buf[:size].reshape(shape)


def _channels_last(loops, x):
    """(N, C, H, W) -> the contiguous (N, H, W, C) array."""
    n, c, h, w = x.shape
    return planes_transposed(loops, x, n, c, h * w, (n, h, w, c))


def pixel_rows(loops, g):
    """(N, O, OH, OW) -> the contiguous (N·OH·OW, O) matrix (dy as both gradients read it:
    :func:`grads` makes it once for the two)."""
    n, o = g.shape[0], g.shape[1]
    area = g.size // max(n * o, 1)
    return planes_transposed(loops, g, n, o, area, (n * area, o))


def _weight_rows(loops, w):
    """(O, C, kh, kw) -> (O, kh·kw·C), the taps in the columns' order."""
    o, c, kh, kw = w.shape
    return planes_transposed(loops, w, o, c, kh * kw, (o, kh * kw * c))


def conv2d(x, w, geom, loops, wr=None) -> tuple:
    """(y, NhwcColumns) of a groups = 1 convolution of (N, C, H, W) x; ``wr``: the weight's
    rows when already made."""
    n, c = x.shape[0], x.shape[1]
    o, area = w.shape[0], geom.oh * geom.ow
    k = c * geom.kh * geom.kw
    xh = _channels_last(loops, x)
    if wr is None:
        wr = _weight_rows(loops, w)
    wt = wr.T  # (K, O), a transposed view: BLAS reads it as such
    args = _args(x.shape, geom)
    step = _step(n, area * k * x.itemsize) or n
    yt = np.empty((n * area, o), x.dtype)
    buf = _scratch((step * area, k), x.dtype)
    for n0 in range(0, n, step):
        r = min(step, n - n0)
        part = buf[:r * area]
        loops.im2col_nhwc(xh, part, *args, n0, r)
        _matmul(part, wt, out=yt[n0 * area:(n0 + r) * area])
    y = planes_transposed(loops, yt, n, area, o, (n, o, geom.oh, geom.ow))
    return y, NhwcColumns(xh, wr)


def weight_grad(g, saved: NhwcColumns, w_shape: tuple, geom, loops, gt=None):
    """dW = Σ over the batch and pixels of dy · cols (one GEMM, or one per chunk, summed);
    ``gt``: :func:`pixel_rows` of g when already made."""
    o, c, kh, kw = w_shape
    n, area = g.shape[0], geom.oh * geom.ow
    if gt is None:
        gt = pixel_rows(loops, g)
    xh, k = saved.xh, c * kh * kw
    args = _args((n, c) + xh.shape[1:3], geom)
    step = _step(n, area * k * g.itemsize) or n
    buf = _scratch((step * area, k), g.dtype)
    dwr = None
    for n0 in range(0, n, step):  # the columns again, written into cache
        r = min(step, n - n0)
        part = buf[:r * area]
        loops.im2col_nhwc(xh, part, *args, n0, r)
        prod = _matmul(gt[n0 * area:(n0 + r) * area].T, part)  # (O, K)
        if dwr is None:
            dwr = prod
        else:
            dwr += prod
    return planes_transposed(loops, dwr, o, kh * kw, c, w_shape)


def input_grad(g, w, x_shape: tuple, geom, loops, gt=None, wr=None):
    """dx = col2im(dyᵀ · W) on the channels-last image, transposed back to (N, C, H, W);
    ``gt``: :func:`pixel_rows` of g when already made; ``wr``: the weight's rows when made."""
    n, c, h, wd = x_shape
    area = geom.oh * geom.ow
    k = c * geom.kh * geom.kw
    if gt is None:
        gt = pixel_rows(loops, g)
    if wr is None:
        wr = _weight_rows(loops, w)
    args = _args(x_shape, geom)
    dxh = np.empty((n, h, wd, c), g.dtype)
    step = _step(n, area * k * g.itemsize) or n
    buf = _scratch((step * area, k), g.dtype)
    for n0 in range(0, n, step):
        r = min(step, n - n0)
        part = buf[:r * area]
        _matmul(gt[n0 * area:(n0 + r) * area], wr, out=part)
        loops.col2im_nhwc(part, dxh, *args, n0, r)
    return planes_transposed(loops, dxh, n, h * wd, c, x_shape)


def grads(g, saved: NhwcColumns, w, x_shape: tuple, geom, loops) -> tuple:
    """(dx, dW) when both are wanted: dy's pixel rows made once for the two products (one
    transpose of dy fewer), the weight's rows those of the forward."""
    gt = pixel_rows(loops, g)
    return (input_grad(g, w, x_shape, geom, loops, gt, saved.wr),
            weight_grad(g, saved, tuple(w.shape), geom, loops, gt))



class TransposedRows:
    """What :func:`conv_transpose` keeps for :func:`conv_transpose_grads`: the input's pixel
    rows (dW's dy side) and the weight's rows, both made by the forward already (one transpose
    of x and one reorder of a cache-cold weight fewer per backward)."""

    __slots__ = ("xt", "wr")

    def __init__(self, xt, wr):
        self.xt, self.wr = xt, wr


def conv_transpose(x, w, y_shape: tuple, geom, loops) -> tuple:
    """(y, TransposedRows) of a groups = 1 transposed convolution: conv2d's input gradient
    (:func:`input_grad`) with x as dy."""
    xt, wr = pixel_rows(loops, x), _weight_rows(loops, w)
    return input_grad(x, w, y_shape, geom, loops, xt, wr), TransposedRows(xt, wr)


def conv_transpose_grads(g, x, w, saved: TransposedRows, geom, loops, need_w: bool) -> tuple:
    """(dx, dW) of :func:`conv_transpose`: dx = conv2d(dy), dW = conv2d's weight gradient with
    x as dy; the forward's rows reused (the gate's saved x and w, whose versions the engine
    checks)."""
    gx, cols = conv2d(g, w, geom, loops, saved.wr)
    if not need_w:
        return gx, None
    return gx, weight_grad(x, cols, tuple(w.shape), geom, loops, saved.xt)


# ---- few window values (in_channels = 1): one product per image, stacked --------------------
# With K = C·kh·kw this small (MNIST's first conv: 9) the batch-wide GEMM is a thin product
# whose output must then be transposed to (N, O, OH, OW), and its weight gradient reads dy
# transposed to (O, N·OH·OW): both copies of the whole output. One product per image,
# y[n] = W · cols[n] and dW = Σ_n dy[n] · cols[n]ᵀ (NumPy's stacked matmul, one BLAS call per
# image from C), reads and writes (N, O, OH, OW) as it is: on one core, 64×1×28×28 with 32
# 3×3 filters: forward 0.47 ms against 0.75, weight gradient 0.31 against 2.1.
_STACKED_MAX_K = 16


class ImageColumns:
    """What :func:`stacked_conv2d` keeps for :func:`stacked_weight_grad`: the image and, when
    small enough to keep, its per-image columns (N, K, OH·OW) (else None)."""

    __slots__ = ("x", "cols")

    def __init__(self, x, cols):
        self.x, self.cols = x, cols


def takes_stacked(x_shape: tuple, w, geom) -> bool:
    """True for convolutions with at most ``_STACKED_MAX_K`` values per window."""
    return _ENABLED and x_shape[1] * geom.kh * geom.kw <= _STACKED_MAX_K


def _image_columns(loops, x, buf, n0: int, r: int, geom):
    """im2col of images n0 .. n0 + r into ``buf[:r]`` (r, K, OH·OW); returns that part."""
    c, h, w = x.shape[1:]
    part = buf[:r]
    loops.im2col(x[n0:n0 + r], part, *pool_args(r * c, h, w, geom))
    return part


def stacked_conv2d(x, w, geom, loops) -> tuple:
    n, o, area = x.shape[0], w.shape[0], geom.oh * geom.ow
    w2 = w.reshape(o, -1)
    k = w2.shape[1]
    y = np.empty((n, o, area), x.dtype)
    step = _step(n, area * k * x.itemsize)
    buf = np.empty((step or n, k, area), x.dtype)
    for n0 in range(0, n, step or n):
        r = min(step or n, n - n0)
        np.matmul(w2, _image_columns(loops, x, buf, n0, r, geom), out=y[n0:n0 + r])
    return y.reshape(n, o, geom.oh, geom.ow), ImageColumns(x, None if step else buf)


def stacked_weight_grad(g, saved: ImageColumns, w_shape: tuple, geom, loops):
    n, o, area = g.shape[0], g.shape[1], geom.oh * geom.ow
    g3 = np.ascontiguousarray(g).reshape(n, o, area)
    if saved.cols is not None:
        return np.matmul(g3, saved.cols.transpose(0, 2, 1)).sum(0).reshape(w_shape)
    x = saved.x
    k = x.shape[1] * geom.kh * geom.kw
    step = _step(n, area * k * g.itemsize)
    buf = np.empty((step, k, area), g.dtype)
    dw = np.zeros((o, k), g.dtype)
    for n0 in range(0, n, step):
        r = min(step, n - n0)
        part = _image_columns(loops, x, buf, n0, r, geom)
        dw += np.matmul(g3[n0:n0 + r], part.transpose(0, 2, 1)).sum(0)
    return dw.reshape(w_shape)


def stacked_input_grad(g, w, x_shape: tuple, geom, loops):
    n, c, h, wd = x_shape
    o, area = w.shape[0], geom.oh * geom.ow
    wt = w.reshape(o, -1).T
    g3 = np.ascontiguousarray(g).reshape(n, o, area)
    gx = np.empty(x_shape, g.dtype)
    step = _step(n, area * wt.shape[0] * g.itemsize) or n
    buf = np.empty((step, wt.shape[0], area), g.dtype)
    args = pool_args(c, h, wd, geom)
    for n0 in range(0, n, step):
        r = min(step, n - n0)
        part = np.matmul(wt, g3[n0:n0 + r], out=buf[:r])
        for i in range(r):  # one image's columns are in im2col_cn's layout
            loops.col2im_cn(part[i], gx[n0 + i:n0 + i + 1], c, *args)
    return gx


def channel_sums(g):
    """Σ g over every dim but 1 of a C-contiguous float (N, C, ...) array (a convolution's bias
    gradient): one matrix-vector product per image and a sum over the batch, a single pass
    over g (NumPy's sum over dims 0, 2, 3 takes ~3× as long: 64×64×24×24, 0.65 -> 0.21 ms)."""
    n, c = g.shape[0], g.shape[1]
    area = g.size // (n * c)
    return (g.reshape(n, c, area) @ np.ones(area, g.dtype)).sum(0)
