"""The CUDA sources and launchers behind :mod:`chainrule.kernels.cuda` (CuPy ``RawKernel``s).

On the GPU a chain of small array ops costs one kernel launch each (several µs of host time
apiece, however small the arrays), so rules like GELU's forward and derivative or tanh's
backward run here as one kernel each. Every function has the plain CuPy-expression path as its
fallback: kernels compile on first use (cached on disk by CuPy), and where they cannot be built
(``CHAINRULE_FUSED_KERNELS=0``, or the CPU stand-in for CuPy in ``tests/fakecupy``) the same
math runs as separate array ops. CPU arrays never come here.
"""

from __future__ import annotations

import os

from chainrule import devices
from chainrule.devices import np
from chainrule.kernels.matmul import cublas_gemm as gemm

__all__ = ["run1", "run2", "erf", "gelu", "unary_backward", "fused", "sgd_step",
           "adam_step", "cross_entropy_forward", "cross_entropy_backward", "sum_rows",
           "channel_sums", "add_bias", "col2im", "max_pool2d_forward", "max_pool2d_backward"]

_ENABLED = os.environ.get("CHAINRULE_FUSED_KERNELS", "1") != "0"
_KERNELS: dict = {}
# keyed by dtype object: numpy's dtype.name is Python code (µs per call on a slow host)
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# Φ and φ for float and double (CUDA's math functions are overloaded per precision)
_PREAMBLE = """
__device__ inline float cr_cdf(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
__device__ inline double cr_cdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }
__device__ inline float cr_pdf(float x) { return 0.3989422804014327f * expf(-0.5f * x * x); }
__device__ inline double cr_pdf(double x) { return 0.3989422804014327 * exp(-0.5 * x * x); }
"""

_SOURCES = {
    # name: (in_params, out_params, body)
    # the plain ops of small-array graphs, for the cheaper RawKernel launch (see run)
    "exp": ("T x", "T y", "y = exp(x)"),
    "tanh": ("T x", "T y", "y = tanh(x)"),
    "sigmoid": ("T x", "T y", "T e = exp(-fabs(x)); y = x >= 0 ? 1 / (1 + e) : e / (1 + e)"),
    "relu": ("T x", "T y", "y = (x > 0 || x != x) ? x : (T)0"),
    "mul": ("T a, T b", "T c", "c = a * b"),
    "add": ("T a, T b", "T c", "c = a + b"),
    "sub": ("T a, T b", "T c", "c = a - b"),
    "gelu": ("T x", "T y", "y = x * cr_cdf(x)"),
    "gelu_grad": ("T x", "T y, T d", "T c = cr_cdf(x); y = x * c; d = c + x * cr_pdf(x)"),
    "tanh_backward": ("T g, T y", "T gx", "gx = g * (1 - y * y)"),
    "sigmoid_backward": ("T g, T y", "T gx", "gx = g * y * (1 - y)"),
    "relu_backward": ("T g, T y", "T gx", "gx = y != 0 ? g : (T)0"),
    # optimizer steps, in PyTorch's order of operations (flags: 1 maximize, 2 decoupled decay)
    "sgd": ("T g, T lr, T wd, int32 flags", "T p",
            "T d = (flags & 1) ? -g : g; if (wd != 0) d += wd * p; p -= lr * d"),
    "sgd_momentum": (
        "T g, T lr, T wd, T mu, T damp, int32 flags", "T p, T buf",
        "T d = (flags & 1) ? -g : g; if (wd != 0) d += wd * p;"
        "T b = (flags & 4) ? d : buf * mu + (damp == 0 ? d : d * (1 - damp)); buf = b;"
        "p -= lr * ((flags & 8) ? d + b * mu : b)"),
    "adam": (
        "T g, T lr, T wd, T b1, T b2, T eps, T step_size, T bc2_sqrt, int32 flags",
        "T p, T m, T v",
        "T d = (flags & 1) ? -g : g;"
        "if (flags & 2) { p *= 1 - lr * wd; } else if (wd != 0) { d += wd * p; }"
        "T w = 1 - b1; m = (w < 0.5) ? m + w * (d - m) : d - (d - m) * b1;"
        "v = v * b2 + d * (1 - b2) * d;"
        "p -= m * step_size / (sqrt(v) / bc2_sqrt + eps)"),
    "adam_amsgrad": (
        "T g, T lr, T wd, T b1, T b2, T eps, T step_size, T bc2_sqrt, int32 flags",
        "T p, T m, T v, T vmax",
        "T d = (flags & 1) ? -g : g;"
        "if (flags & 2) { p *= 1 - lr * wd; } else if (wd != 0) { d += wd * p; }"
        "T w = 1 - b1; m = (w < 0.5) ? m + w * (d - m) : d - (d - m) * b1;"
        "v = v * b2 + d * (1 - b2) * d; vmax = (v > vmax || v != v) ? v : vmax;"
        "p -= m * step_size / (sqrt(vmax) / bc2_sqrt + eps)"),
    # dx of cross-entropy from the saved row log-sum-exp: (softmax - onehot(t)) * scale
    # (mode 0: g per row, 'none'; 1: one g, 'sum'; 2: g / count, 'mean')
    "cross_entropy_backward": (
        "T x, raw T lse, raw I t, raw T g, raw T count, int64 c, int64 ignore, int32 mode",
        "T gx",
        "ptrdiff_t row = i / c; I k = t[row];"
        "T s = mode == 0 ? g[row] : (mode == 1 ? g[0] : g[0] / count[0]);"
        "gx = (k == ignore) ? (T)0 : (exp(x - lse[row]) - (T)(i - row * c == k)) * s"),
    # bias adds in place: on rows of (n, o), and on channels of (n, o, p)
    "add_bias": ("raw T b, int64 o", "T y", "y += b[i % o]"),
    "add_channel_bias": ("raw T b, int64 o, int64 p", "T y", "y += b[(i / p) % o]"),
}


_CTYPE_OF = {"int32": "int", "int64": "long long", "I": "long long"}
_NP_OF = {"int32": np.int32, "int64": np.int64, "I": np.int64}


class _Elementwise:
    """One fused elementwise kernel, called like CuPy's ElementwiseKernel (inputs, then outputs,
    which are allocated when left out). Where every array is C-contiguous and all non-``raw``
    arrays have one shape, it launches a RawKernel built from the same body: several times
    cheaper on the host than ElementwiseKernel's argument handling, which is what small
    arrays pay for. Anything else (broadcasting, strides) goes to the ElementwiseKernel."""

    def __init__(self, cupy, name: str) -> None:
        ins, outs, body = _SOURCES[name]
        self.general = cupy.ElementwiseKernel(ins, outs, body, f"chainrule_{name}",
                                              preamble=_PREAMBLE)
        self.params = [_param(p, False) for p in ins.split(",")] + [
            _param(p, True) for p in outs.split(",")]
        self.nin = len(ins.split(","))
        self.cupy, self.name, self.body = cupy, name, body
        self.ndarray = cupy.ndarray
        self.raws: dict = {}

    def __call__(self, *args):
        out = self.fast(*args)
        return self.general(*args) if out is None else out

    def fast(self, *args):
        """The RawKernel launch, or None where the arguments need the general kernel.

        Written for host speed (this is most of a small GPU op's cost): one pass over the
        arguments, CuPy's C-level ``_c_contiguous``, outputs made by the ndarray constructor,
        and the compiled ``Function`` called directly."""
        ndarray = self.cupy.ndarray
        params = self.params
        shape = dtype = first = None
        bits = 0
        others = False  # scalars or raw arrays, which need more checks
        for j, a in enumerate(args):
            if type(a) is not ndarray:
                others = True
                continue
            bits |= 1 << j
            if not a._c_contiguous:
                return None
            if params[j][0]:
                others = True
                continue
            if first is None:
                first, shape, dtype = a, a.shape, a.dtype
            elif a.shape != shape or (a.dtype is not dtype and a.dtype != dtype):
                return None
        if first is None or dtype not in _CTYPES:
            return None
        call = list(args)
        if others:
            for j, a in enumerate(args):
                raw, ty = params[j][0], params[j][1]
                if raw:
                    want = dtype if ty == "T" else _NP_OF[ty]
                    if type(a) is not ndarray or a.dtype != want:
                        return None
                elif type(a) is not ndarray:
                    if ty == "T":  # a NumPy scalar of another float type would promote
                        if isinstance(a, np.generic) and a.dtype != dtype:
                            return None
                        call[j] = dtype.type(a)
                    else:
                        call[j] = _NP_OF[ty](a)
        outs = call[self.nin:]
        for j in range(len(args), len(params)):
            ty = params[j][1]
            out = ndarray(shape, dtype if ty == "T" else _NP_OF[ty])
            outs.append(out)
            call.append(out)
            bits |= 1 << j
        n = first.size
        if n:
            fn = self.raws.get((dtype, bits))
            if fn is None:
                fn = self._compile(dtype, bits)
            call.append(np.int64(n))
            fn(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), tuple(call))
        return outs[0] if len(outs) == 1 else tuple(outs)

    # The same for the two commonest shapes of call, with the least Python possible: one
    # array in (the unary ops), and two arrays of one shape or an array and a Python number.
    def fast1(self, x):
        if type(x) is not self.ndarray or not x._c_contiguous:
            return None
        dtype = x.dtype
        fn = self.raws.get((dtype, 3))
        if fn is None:
            if dtype not in _CTYPES:
                return None
            fn = self._compile(dtype, 3)
        out = self.ndarray(x.shape, dtype)
        n = x.size
        if n:
            fn(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), (x, out, np.int64(n)))
        return out

    def fast2(self, a, b):
        ndarray = self.ndarray
        if type(a) is not ndarray or not a._c_contiguous:
            return None
        dtype, shape = a.dtype, a.shape
        if type(b) is ndarray:
            if not b._c_contiguous or b.shape != shape or (b.dtype is not dtype
                                                            and b.dtype != dtype):
                return None
            bits = 7
        elif type(b) is float or type(b) is int:
            bits, b = 5, dtype.type(b)
        else:
            return None
        fn = self.raws.get((dtype, bits))
        if fn is None:
            if dtype not in _CTYPES:
                return None
            fn = self._compile(dtype, bits)
        out = ndarray(shape, dtype)
        n = a.size
        if n:
            fn(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), (a, b, out, np.int64(n)))
        return out

    def _compile(self, dtype, bits: int):
        mask = tuple(bool(bits >> j & 1) for j in range(len(self.params)))
        kname, code = elementwise_source(self.name, _CTYPES[dtype], mask)
        kernel = self.cupy.RawKernel(code, kname)
        fn = self.raws[(dtype, bits)] = getattr(kernel, "kernel", kernel)  # skip a wrapper layer
        return fn


def elementwise_source(name: str, ctype: str, mask: tuple) -> tuple:
    """(kernel name, CUDA source) of fused kernel ``name`` as a RawKernel over contiguous
    arrays; ``mask`` says which parameters are arrays (the rest are scalars)."""
    ins, outs, body = _SOURCES[name]
    params = [_param(p, False) for p in ins.split(",")] + [_param(p, True) for p in
                                                            outs.split(",")]
    decl, loads = [], []
    for (raw, ty, pname, is_out), is_array in zip(params, mask):
        cty = ctype if ty == "T" else _CTYPE_OF[ty]
        const = "" if is_out else "const "
        if raw:
            decl.append(f"const {cty}* __restrict__ {pname}")
        elif is_array:
            decl.append(f"{const}{cty}* __restrict__ {pname}_p")
            loads.append(f"{const}{cty}& {pname} = {pname}_p[i];")
        else:
            decl.append(f"{cty} {pname}")
    bits = sum(1 << j for j, m in enumerate(mask) if m)
    kname = f"chainrule_{name}_{ctype.replace(' ', '')}_{bits}"
    code = (f"typedef {ctype} T;\ntypedef long long I;\n{_PREAMBLE}\n"
            f'extern "C" __global__ void {kname}({", ".join(decl)}, long long n) {{\n'
            "  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
            f"  if (i >= n) return;\n  {' '.join(loads)}\n  {body};\n}}\n")
    return kname, code


def run1(name: str, fallback, x):
    """``fallback(x)`` (the op's CuPy expression) as one RawKernel launch where ``x`` is a
    contiguous float array: about half the host time of a CuPy ufunc call, which is what a
    small-array GPU graph is made of."""
    k = _KERNELS.get(name) or fused(name)
    out = None if k is None else k.fast1(x)
    return fallback(x) if out is None else out


def run2(name: str, fallback, a, b):
    """``fallback(a, b)`` as one RawKernel launch for same-shape arrays or array and number."""
    k = _KERNELS.get(name) or fused(name)
    out = None if k is None else k.fast2(a, b)
    return fallback(a, b) if out is None else out


def _param(text: str, is_out: bool) -> tuple:
    """("raw T lse" -> (True, "T", "lse", is_out))"""
    words = text.split()
    raw = words[0] == "raw"
    return raw, words[-2], words[-1], is_out


def _cached(key, build, *args):
    """The kernel cached under ``key``, made by ``build(cupy, *args)`` on first use; None
    where none can run (fused kernels off, or the CPU stand-in for CuPy, which compiles
    nothing). Before CuPy is loaded nothing is cached: ask again later."""
    k = _KERNELS.get(key)
    if k is None:
        cupy = devices.loaded_cupy()
        if cupy is None:
            return None
        k = False
        if _ENABLED:
            try:
                k = build(cupy, *args)
            except NotImplementedError:
                k = False
        _KERNELS[key] = k
    return k or None


def fused(name: str):
    """The fused kernel ``name`` (an :class:`_Elementwise`), or None where none can run."""
    return _cached(name, _Elementwise, name)


# ---- raw kernels: one thread per output element, T = float or double --------------------------
# Shared by the gather kernels: thread p is pixel (h, w) of plane r (= n·C + c), and BODY runs
# for each window (oy, ox) and kernel offset (i, j) that covers it.
_RAW_PREAMBLE = r"""
#define PIXEL_OF_THREAD \
  long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; \
  if (p >= total) return; \
  int w = p % W; long long r = p / W; int h = r % H; r /= H; \
  T acc = 0;
#define FOR_WINDOWS_OVER_PIXEL(BODY) \
  for (int i = 0; i < kh; ++i) { \
    int y = h + pt - i * dh; \
    if (y < 0 || y % sh) continue; \
    int oy = y / sh; \
    if (oy >= OH) continue; \
    for (int j = 0; j < kw; ++j) { \
      int x = w + pl - j * dw; \
      if (x < 0 || x % sw) continue; \
      int ox = x / sw; \
      if (ox >= OW) continue; \
      BODY \
    } \
  }
"""
_RAW_SOURCES = {
    # one block of 256 threads, a thread per row at a time: each row's log-sum-exp l and
    # loss l - x[t] (0 where t is ignored), then the block's sums: out = [loss, count]
    # (loss = total / count for mode 2 'mean', total for 1 'sum')
    "cross_entropy_forward": r"""
extern "C" __global__ void KNAME(const T* x, const long long* t, T* lse, T* nll, T* out,
                                 long long n, long long c, long long ignore, int mode) {
  __shared__ T s_total[256];
  __shared__ T s_count[256];
  T total = 0, count = 0;
  for (long long r = threadIdx.x; r < n; r += blockDim.x) {
    const T* xr = x + r * c;
    T m = xr[0];
    for (long long j = 1; j < c; ++j) { T v = xr[j]; if (v > m || v != v) m = v; }
    T s = 0;
    for (long long j = 0; j < c; ++j) s += exp(xr[j] - m);
    T l = m + log(s);
    lse[r] = l;
    long long k = t[r];
    bool ok = k != ignore;
    T loss = ok ? l - xr[ok ? k : 0] : (T)0;
    nll[r] = loss;
    total += loss;
    count += ok ? (T)1 : (T)0;
  }
  s_total[threadIdx.x] = total;
  s_count[threadIdx.x] = count;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h) {
      s_total[threadIdx.x] += s_total[threadIdx.x + h];
      s_count[threadIdx.x] += s_count[threadIdx.x + h];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = mode == 2 ? s_total[0] / s_count[0] : s_total[0];
    out[1] = s_count[0];
  }
}""",
    # the adjoint of im2col, gathered: each pixel sums the window entries that cover it
    "col2im": r"""
extern "C" __global__ void KNAME(const T* cols, T* out, long long total, int H, int W,
    int kh, int kw, int OH, int OW, int sh, int sw, int pt, int pl, int dh, int dw) {
  PIXEL_OF_THREAD
  FOR_WINDOWS_OVER_PIXEL(acc += cols[(((r * kh + i) * kw + j) * OH + oy) * OW + ox];)
  out[p] = acc;
}""",
    # window max and the offset of its first maximum (NaN wins and stays, as np.maximum)
    "max_pool2d_forward": r"""
extern "C" __global__ void KNAME(const T* x, T* y, int* idx, long long total, int H, int W,
    int OH, int OW, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw) {
  long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (o >= total) return;
  int ox = o % OW; long long r = o / OW; int oy = r % OH; r /= OH;
  const T* xr = x + r * H * W;
  T best = 0; int arg = 0;
  for (int i = 0; i < kh; ++i) {
    for (int j = 0; j < kw; ++j) {
      int hy = oy * sh - pt + i * dh, wx = ox * sw - pl + j * dw;
      T v = (hy >= 0 && hy < H && wx >= 0 && wx < W) ? xr[hy * W + wx] : (T)NEG_INF;
      int t = i * kw + j;
      if (t == 0) best = v;
      else if (v > best) { best = v; arg = t; }
      else if (v != v) best = v;
    }
  }
  y[o] = best; idx[o] = arg;
}""",
    # each input pixel gathers the gradients of the windows whose maximum it was
    "max_pool2d_backward": r"""
extern "C" __global__ void KNAME(const T* g, const int* idx, T* gx, long long total, int H,
    int W, int OH, int OW, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw) {
  PIXEL_OF_THREAD
  FOR_WINDOWS_OVER_PIXEL(long long o = (r * OH + oy) * OW + ox;
                         if (idx[o] == i * kw + j) acc += g[o];)
  gx[p] = acc;
}""",
}
_BLOCK = 256


def raw(name: str, dtype):
    """The compiled raw kernel ``name`` for float32/float64 ``dtype``, or None."""
    ctype = _CTYPES.get(dtype)
    return None if ctype is None else _cached((name, ctype), _build_raw, name, ctype)


def _build_raw(cupy, name: str, ctype: str):
    kname = f"chainrule_{name}_{ctype}"
    return cupy.RawKernel(f"typedef {ctype} T;\n#define NEG_INF (-__int_as_float(0x7f800000))\n"
                          + _RAW_PREAMBLE + _RAW_SOURCES[name].replace("KNAME", kname), kname)


def _launch(kernel, total: int, args: tuple) -> None:
    kernel(((total + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def _i32(*values):
    return tuple(np.int32(v) for v in values)


# ---- optimizer steps --------------------------------------------------------------------------
def _fusable(p, *arrays) -> bool:
    return p.dtype in _CTYPES and all(
        a is None or (a.dtype == p.dtype and a.shape == p.shape) for a in arrays)


def sgd_step(p, g, buf, first, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """One SGD update of GPU array ``p`` in one kernel; False where it cannot run."""
    if not _fusable(p, g, buf):
        return False
    flags = np.int32(int(maximize) | 4 * int(first) | 8 * int(nesterov))
    if buf is None:
        k = fused("sgd")
        if k is None:
            return False
        k(g, lr, weight_decay, flags, p)
    else:
        k = fused("sgd_momentum")
        if k is None:
            return False
        k(g, lr, weight_decay, momentum, dampening, flags, p, buf)
    return True


def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
              step_size, bias_correction2_sqrt):
    """One Adam/AdamW update of GPU array ``p`` and its moments in one kernel."""
    if not _fusable(p, g, m, v, vmax):
        return False
    k = fused("adam" if vmax is None else "adam_amsgrad")
    if k is None:
        return False
    flags = np.int32(int(maximize) | 2 * int(decoupled))
    outs = (p, m, v) if vmax is None else (p, m, v, vmax)
    k(g, lr, weight_decay, beta1, beta2, eps, step_size, bias_correction2_sqrt, flags, *outs)
    return True


# ---- cross-entropy over rows of class scores ---------------------------------------------------
_CE_MODES = {"none": 0, "sum": 1, "mean": 2}


def cross_entropy_forward(x, t, ignore_index: int, reduction: str):
    """(lse, nll, [loss, count]) for the rows of 2-d GPU ``x`` and int64 targets ``t``, from
    one kernel launch; None where it does not apply (many classes, or rows: one block does it)."""
    n, c = x.shape
    if c > 4096 or n * c > (1 << 24) or t.dtype != np.int64 or not x.flags.c_contiguous:
        return None
    k = raw("cross_entropy_forward", x.dtype)
    if k is None:
        return None
    xp = devices.xp_of(x)
    t = xp.ascontiguousarray(t)
    lse, nll, out = xp.empty(n, x.dtype), xp.empty(n, x.dtype), xp.empty(2, x.dtype)
    k((1,), (256,), (x, t, lse, nll, out, np.int64(n), np.int64(c), np.int64(ignore_index),
                     np.int32(_CE_MODES[reduction])))
    return lse, nll, out


def cross_entropy_backward(x, lse, t, g, count, ignore_index: int, reduction: str):
    """dx = (softmax(x) - onehot(t))·g (·/count for 'mean'), 0 on ignored rows: one kernel."""
    k = fused("cross_entropy_backward")
    if k is None:
        return None
    g = devices.xp_of(x).ascontiguousarray(g, dtype=x.dtype)
    return k(x, lse, t, g, count, np.int64(x.shape[1]), np.int64(ignore_index),
             np.int32(_CE_MODES[reduction]))


# ---- sums and bias adds as cuBLAS products and one-kernel adds --------------------------------
_ONES: dict = {}


def _ones(n: int, dtype):
    key = (n, dtype)
    v = _ONES.get(key)
    if v is None:
        if len(_ONES) > 64:
            _ONES.clear()
        v = _ONES[key] = devices.loaded_cupy().ones((1, n), dtype)
    return v


def sum_rows(a):
    """a.sum(0) of a contiguous 2-d GPU array as one GEMV-like cuBLAS product, or None."""
    if a.ndim != 2 or not a.flags.c_contiguous or a.dtype not in _CTYPES:
        return None
    out = gemm(_ones(a.shape[0], a.dtype), a)
    return None if out is None else out.reshape(a.shape[1])


def channel_sums(g):
    """g.sum over every dim but 1, for a contiguous (N, C, ...) GPU array: two products."""
    if g.ndim < 2 or not g.flags.c_contiguous or g.dtype not in _CTYPES:
        return None
    n, c = g.shape[:2]
    per = sum_rows(g.reshape(n, -1))
    if per is None:
        return None
    out = gemm(per.reshape(c, -1), _ones(per.size // max(c, 1), g.dtype).T)
    return None if out is None else out.reshape(c)


def add_bias(y, b, per_channel: int = 0):
    """y += b in place on rows (2-d y) or on dim 1 of (N, C, per_channel) y; False if not run."""
    k = fused("add_channel_bias" if per_channel else "add_bias")
    if k is None or type(b) is not devices.gpu_ndarray or not b.flags.c_contiguous:
        return False
    if per_channel:
        out = k.fast(b, np.int64(b.size), np.int64(per_channel), y)
    else:
        out = k.fast(b, np.int64(b.size), y)
    return out is not None


# ---- convolution and pooling on (N, C, H, W) ---------------------------------------------------
def _geom_args(geom) -> tuple:
    """(kh, kw, oh, ow, sh, sw, pt, pl, dh, dw) as the int32s the kernels take."""
    return _i32(geom.kh, geom.kw, geom.oh, geom.ow, geom.sh, geom.sw, geom.pt, geom.pl,
                geom.dh, geom.dw)


def _pool_geom_args(h: int, w: int, geom) -> tuple:
    """The max-pool kernels' (H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw)."""
    kh, kw, oh, ow, *rest = _geom_args(geom)
    return (*_i32(h, w), oh, ow, kh, kw, *rest)


def col2im(cols, x_shape: tuple, geom):
    """The adjoint of im2col for GPU ``cols`` (N, C, kh, kw, OH, OW), as one kernel; or None."""
    k = raw("col2im", cols.dtype)
    if k is None or not cols.flags.c_contiguous:
        return None
    n, c, h, w = x_shape
    out = devices.xp_of(cols).empty((n, c, h, w), cols.dtype)
    _launch(k, out.size, (cols, out, np.int64(out.size), *_i32(h, w), *_geom_args(geom)))
    return out


def max_pool2d_forward(x, geom):
    """(y, window offset of each maximum as int32) for GPU ``x``; or None."""
    k = raw("max_pool2d_forward", x.dtype)
    if k is None or not x.flags.c_contiguous:
        return None
    n, c, h, w = x.shape
    xp = devices.xp_of(x)
    y = xp.empty((n, c, geom.oh, geom.ow), x.dtype)
    idx = xp.empty(y.shape, np.int32)
    _launch(k, y.size, (x, y, idx, np.int64(y.size), *_pool_geom_args(h, w, geom)))
    return y, idx


def max_pool2d_backward(g, idx, x_shape: tuple, geom):
    k = raw("max_pool2d_backward", g.dtype)
    if k is None or idx.dtype != np.int32:
        return None
    xp = devices.xp_of(g)
    g = xp.ascontiguousarray(g)
    n, c, h, w = x_shape
    gx = xp.empty((n, c, h, w), g.dtype)
    _launch(k, gx.size, (g, idx, gx, np.int64(gx.size), *_pool_geom_args(h, w, geom)))
    return gx


def _special(x):
    import cupyx.scipy.special

    return cupyx.scipy.special


def erf(x):
    return _special(x).erf(x)


def gelu(x, with_grad: bool):
    """(y, dy/dx or None) for y = x·Φ(x) on a GPU array, one kernel where it can."""
    k = fused("gelu_grad" if with_grad else "gelu") if x.dtype in _CTYPES else None
    if k is not None:
        if with_grad:
            return k(x)
        return k(x), None
    cdf = (erf(x * 0.7071067811865476).astype(x.dtype, copy=False) + 1) * 0.5
    y = x * cdf
    if not with_grad:
        return y, None
    return y, cdf + x * devices.xp_of(x).exp(x * x * -0.5) * 0.3989422804014327


def unary_backward(name: str, g, y):
    """g·f'(x) from the saved output y for tanh/sigmoid/relu; None when not fusable here."""
    if g.shape != y.shape or g.dtype != y.dtype or g.dtype not in _CTYPES:
        return None
    k = _KERNELS.get(name) or fused(name)
    if k is None:
        return None
    out = k.fast2(g, y)
    return k.general(g, y) if out is None else out
