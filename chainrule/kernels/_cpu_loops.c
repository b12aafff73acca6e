/* chainrule.kernels._cpu_loops: one-pass C loops for memory-bound rules (CPU, optional).
 *
 * Each loop does in one pass what NumPy needs several passes (and a temporary per pass) for.
 * The interface is buffers in, buffers out: C-contiguous float32/float64 arrays of one dtype,
 * outputs preallocated by the caller, sizes checked here. Nothing else of chainrule is read.
 * Each loop states the NumPy expression it replaces; chainrule/kernels/reference.py keeps
 * those as the fallback, and chainrule/kernels/cpu.py decides when a loop can take the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* The loops are compiled for AVX-512, AVX2 and the baseline; the CPU picks at load time
 * (GCC's function multiversioning), so one build runs anywhere. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* ---- fused loops for memory-bound rules ----------------------------------------------------
 * One pass where NumPy needs several (and a temporary per pass). Operands are C-contiguous
 * float32/float64 buffers, outputs preallocated by the caller; each loop states the NumPy
 * expression it replaces, which the calling rule keeps as its fallback.
 */
typedef struct {
    Py_buffer v[8];
    int n;
} Bufs;

static void
bufs_release(Bufs *b)
{
    while (b->n)
        PyBuffer_Release(&b->v[--b->n]);
}

/* the epilogue of every entry point: run the float ('f') or double ('d') loop ``name``
 * without the GIL, release the buffers, return None */
#define RUN_TYPED_AND_RETURN(b, fmt, name, ...) \
    do {                                        \
        Py_BEGIN_ALLOW_THREADS                  \
        if ((fmt) == 'f')                       \
            name##_f(__VA_ARGS__);              \
        else                                    \
            name##_d(__VA_ARGS__);              \
        Py_END_ALLOW_THREADS                    \
        bufs_release(&(b));                     \
        Py_RETURN_NONE;                         \
    } while (0)

/* the buffer of array ``a`` (None allowed when ``optional``: data NULL); 'f' or 'd' elements
 * matching ``*fmt`` (set by the first array) */
static int
buf(Bufs *b, PyObject *a, int writable, int optional, char *fmt, void **data, Py_ssize_t *len)
{
    *data = NULL;
    if (a == Py_None && optional)
        return 0;
    Py_buffer *v = &b->v[b->n];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(a, v, flags) < 0)
        return -1;
    b->n++;
    char f = v->format ? v->format[0] : 0;
    if ((f != 'f' && f != 'd') || v->format[1] != 0 || (*fmt && f != *fmt)) {
        PyErr_SetString(PyExc_TypeError, "fused loops take float32/float64 arrays of one dtype");
        return -1;
    }
    *fmt = f;
    *data = v->buf;
    *len = v->len / v->itemsize;
    return 0;
}

/* The buffers of the ``want`` arguments of an elementwise loop: float arrays of one dtype
 * (``*fmt``, if already set, is required) and one size ``*n``; the arguments from ``first_out``
 * on are written, and the last one may be None when ``last_optional`` (its pointer NULL). */
static int
same_size_bufs(Bufs *b, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
               Py_ssize_t first_out, int last_optional, const char *usage, char *fmt,
               void **ptrs, Py_ssize_t *n)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        Py_ssize_t len = 0;
        if (buf(b, args[i], i >= first_out, last_optional && i == want - 1, fmt, &ptrs[i],
                &len) < 0)
            return -1;
        if (i == 0)
            *n = len;
        else if (ptrs[i] != NULL && len != *n) {
            PyErr_Format(PyExc_ValueError, "%s: sizes differ", usage);
            return -1;
        }
    }
    return 0;
}

#define DEFINE_RELU(T, suffix)                                                       \
    CLONES static void relu_forward_##suffix(const T *x, T *y, Py_ssize_t n)         \
    {                                                                                \
        for (Py_ssize_t i = 0; i < n; i++)                                           \
            y[i] = (x[i] > 0 || x[i] != x[i]) ? x[i] : (T)0;                         \
    }                                                                                \
    CLONES static void relu_backward_##suffix(const T *g, const T *y, T *o,          \
                                              Py_ssize_t n)                          \
    {                                                                                \
        for (Py_ssize_t i = 0; i < n; i++)                                           \
            o[i] = y[i] != 0 ? g[i] : (T)0; /* (not g·mask: inf·0 is NaN) */          \
    }
DEFINE_RELU(float, f)
DEFINE_RELU(double, d)

/* relu_forward(x, out): out = np.maximum(x, 0) (NaN stays NaN, -0.0 becomes 0.0) */
/* (the split forms: the thread pool's section, split_relu_* and split_gelu_f) */
static void split_relu_forward_f(const float *, float *, Py_ssize_t);
static void split_relu_forward_d(const double *, double *, Py_ssize_t);
static void split_relu_backward_f(const float *, const float *, float *, Py_ssize_t);
static void split_relu_backward_d(const double *, const double *, double *, Py_ssize_t);
static void split_gelu_f(const float *, float *, float *, Py_ssize_t);

static PyObject *
relu_forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 2, 1, 0, "relu_forward(x, out)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, split_relu_forward, p[0], p[1], n); /* (over threads) */
}

/* relu_backward(g, y, out): out = np.where(y != 0, g, 0) */
static PyObject *
relu_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 3, 2, 0, "relu_backward(g, y, out)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, split_relu_backward, p[0], p[1], p[2], n);
}

/* Row sums accumulate in double, in eight independent lanes (vectorizable; one running sum
 * would wait on each addition's latency). */
#define DEFINE_ROW_SUMS(T, suffix)                                                   \
    static inline double sum_##suffix(const T *a, Py_ssize_t n)                      \
    {                                                                                \
        double acc[8] = {0};                                                         \
        Py_ssize_t j = 0;                                                            \
        for (; j + 8 <= n; j += 8)                                                   \
            for (int k = 0; k < 8; k++)                                              \
                acc[k] += (double)a[j + k];                                          \
        for (; j < n; j++)                                                           \
            acc[0] += a[j];                                                          \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                             \
               ((acc[4] + acc[5]) + (acc[6] + acc[7]));                              \
    }                                                                                \
    static inline double dot_##suffix(const T *a, const T *b, Py_ssize_t n)          \
    {                                                                                \
        double acc[8] = {0};                                                         \
        Py_ssize_t j = 0;                                                            \
        for (; j + 8 <= n; j += 8)                                                   \
            for (int k = 0; k < 8; k++)                                              \
                acc[k] += (double)a[j + k] * b[j + k];                               \
        for (; j < n; j++)                                                           \
            acc[0] += (double)a[j] * b[j];                                           \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                             \
               ((acc[4] + acc[5]) + (acc[6] + acc[7]));                              \
    }
DEFINE_ROW_SUMS(float, f)
DEFINE_ROW_SUMS(double, d)

/* Σ (a - m)² in double, in the lanes of dot_ (the differences rounded to T first) */
#define DEFINE_SQDEV(T, suffix)                                                      \
    static inline double sqdev_##suffix(const T *a, T m, Py_ssize_t n)               \
    {                                                                                \
        double acc[8] = {0};                                                         \
        Py_ssize_t j = 0;                                                            \
        for (; j + 8 <= n; j += 8)                                                   \
            for (int k = 0; k < 8; k++) {                                            \
                T d = a[j + k] - m;                                                  \
                acc[k] += (double)d * d;                                             \
            }                                                                        \
        for (; j < n; j++) {                                                         \
            T d = a[j] - m;                                                          \
            acc[0] += (double)d * d;                                                 \
        }                                                                            \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                             \
               ((acc[4] + acc[5]) + (acc[6] + acc[7]));                              \
    }
DEFINE_SQDEV(float, f)
DEFINE_SQDEV(double, d)

#define LN_FORWARD(T, suffix)                                                \
    CLONES static void ln_forward_##suffix(const T *x, const T *w, const T *bias,   \
                                           double eps, T *y, T *xh, T *rs,         \
                                           Py_ssize_t rows, Py_ssize_t n)          \
    {                                                                        \
        for (Py_ssize_t r = 0; r < rows; r++) {                              \
            const T *xr = x + r * n;                                         \
            T *xhr = xh + r * n, *yr = y + r * n;                            \
            T mean = (T)(sum_##suffix(xr, n) / n);                           \
            /* Σ (x - mean)² without storing x - mean, then x̂ and y in one    \
             * pass (the same roundings as x̂ = x - mean; Σ x̂·x̂; x̂ *= rstd) */ \
            T rstd = (T)(1.0 / sqrt(sqdev_##suffix(xr, mean, n) / n + eps)); \
            rs[r] = rstd;                                                    \
            if (w && bias)                                                   \
                for (Py_ssize_t j = 0; j < n; j++) {                         \
                    T h = (xr[j] - mean) * rstd;                             \
                    xhr[j] = h;                                              \
                    yr[j] = h * w[j] + bias[j];                              \
                }                                                            \
            else if (w)                                                      \
                for (Py_ssize_t j = 0; j < n; j++) {                         \
                    T h = (xr[j] - mean) * rstd;                             \
                    xhr[j] = h;                                              \
                    yr[j] = h * w[j];                                        \
                }                                                            \
            else                                                             \
                for (Py_ssize_t j = 0; j < n; j++) {                         \
                    T h = (xr[j] - mean) * rstd;                             \
                    xhr[j] = h;                                              \
                    yr[j] = h + (bias ? bias[j] : (T)0);                     \
                }                                                            \
        }                                                                    \
    }
LN_FORWARD(float, f)
LN_FORWARD(double, d)

/* layer_norm_forward(x, w, b, eps, y, xhat, rstd, n): per row of n elements
 * xhat = (x - mean)/sqrt(var + eps), y = xhat*w + b (w, b may be None), rstd = 1/sqrt(...) */
static PyObject *
layer_norm_forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *pw, *pb, *py, *pxh, *pr;
    Py_ssize_t len, lw = 0, lb = 0, ly, lxh, rows;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "layer_norm_forward(x, w, b, eps, y, xhat, rstd, n)");
        return NULL;
    }
    double eps = PyFloat_AsDouble(args[3]);
    Py_ssize_t n = PyLong_AsSsize_t(args[7]);
    if ((eps == -1 && PyErr_Occurred()) || (n == -1 && PyErr_Occurred()))
        return NULL;
    if (buf(&b, args[0], 0, 0, &fmt, &px, &len) < 0 || buf(&b, args[1], 0, 1, &fmt, &pw, &lw) < 0
        || buf(&b, args[2], 0, 1, &fmt, &pb, &lb) < 0 || buf(&b, args[4], 1, 0, &fmt, &py, &ly) < 0
        || buf(&b, args[5], 1, 0, &fmt, &pxh, &lxh) < 0
        || buf(&b, args[6], 1, 0, &fmt, &pr, &rows) < 0)
        goto fail;
    /* (len / n, not rows * n: a huge n must not wrap around and pass) */
    if (n <= 0 || len % n != 0 || len / n != rows || ly != len || lxh != len || (pw && lw != n)
        || (pb && lb != n)) {
        PyErr_SetString(PyExc_ValueError, "layer_norm_forward: sizes do not match");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, ln_forward, px, pw, pb, eps, py, pxh, pr, rows, n);
fail:
    bufs_release(&b);
    return NULL;
}

#define LN_BACKWARD(T, suffix)                                               \
    CLONES static int ln_backward_##suffix(const T *g, const T *xh, const T *w,     \
                                           const T *rs, T *gx, T *gw, T *gb,       \
                                           Py_ssize_t rows, Py_ssize_t n)          \
    {                                                                        \
        int nomem = 0;                                                       \
        double *acc_w = NULL, *acc_b = NULL;                                 \
        if (gw)                                                              \
            acc_w = calloc(n, sizeof(double));                               \
        if (gb)                                                              \
            acc_b = calloc(n, sizeof(double));                               \
        if ((gw && !acc_w) || (gb && !acc_b))                                \
            nomem = 1;                                                       \
        for (Py_ssize_t r = 0; r < rows && !nomem; r++) {                    \
            const T *gr = g + r * n, *xr = xh + r * n;                       \
            if (gx) {                                                        \
                T *out = gx + r * n;                                         \
                if (w)                                                       \
                    for (Py_ssize_t j = 0; j < n; j++)                       \
                        out[j] = gr[j] * w[j];                               \
                else                                                         \
                    for (Py_ssize_t j = 0; j < n; j++)                       \
                        out[j] = gr[j];                                      \
                T a = (T)(sum_##suffix(out, n) / n);                         \
                T c = (T)(dot_##suffix(out, xr, n) / n), rstd = rs[r];       \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    out[j] = (out[j] - a - xr[j] * c) * rstd;                \
            }                                                                \
            if (acc_w)                                                       \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    acc_w[j] += (double)gr[j] * xr[j];                       \
            if (acc_b)                                                       \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    acc_b[j] += gr[j];                                       \
        }                                                                    \
        for (Py_ssize_t j = 0; j < n && !nomem; j++) {                       \
            if (gw)                                                          \
                gw[j] = (T)acc_w[j];                                         \
            if (gb)                                                          \
                gb[j] = (T)acc_b[j];                                         \
        }                                                                    \
        free(acc_w);                                                         \
        free(acc_b);                                                         \
        return nomem;                                                        \
    }
LN_BACKWARD(float, f)
LN_BACKWARD(double, d)

/* layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n): per row of n elements, with ĝ = g·w,
 * gx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))·rstd;  over rows gw = Σ g·x̂, gb = Σ g.
 * w may be None; gx, gw, gb may be None (not wanted). */
static PyObject *
layer_norm_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pg, *pxh, *pw, *pr, *pgx, *pgw, *pgb;
    Py_ssize_t len, lxh, lw = 0, rows, lgx = 0, lgw = 0, lgb = 0;
    int nomem = 0;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[7]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (buf(&b, args[0], 0, 0, &fmt, &pg, &len) < 0 || buf(&b, args[1], 0, 0, &fmt, &pxh, &lxh) < 0
        || buf(&b, args[2], 0, 1, &fmt, &pw, &lw) < 0 || buf(&b, args[3], 0, 0, &fmt, &pr, &rows) < 0
        || buf(&b, args[4], 1, 1, &fmt, &pgx, &lgx) < 0 || buf(&b, args[5], 1, 1, &fmt, &pgw, &lgw) < 0
        || buf(&b, args[6], 1, 1, &fmt, &pgb, &lgb) < 0)
        goto fail;
    if (n <= 0 || len % n != 0 || len / n != rows || lxh != len || (pw && lw != n)
        || (pgx && lgx != len)
        || (pgw && lgw != n) || (pgb && lgb != n)) {
        PyErr_SetString(PyExc_ValueError, "layer_norm_backward: sizes do not match");
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        nomem = ln_backward_f(pg, pxh, pw, pr, pgx, pgw, pgb, rows, n);
    else
        nomem = ln_backward_d(pg, pxh, pw, pr, pgx, pgw, pgb, rows, n);
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
        goto fail;
    }
    bufs_release(&b);
    Py_RETURN_NONE;
fail:
    bufs_release(&b);
    return NULL;
}

/* GELU in float32 (nn/functional.py, Gelu): y = x·Φ(x) and dy/dx = Φ(x) + x·φ(x), with
 * Φ(x) = ½(1 + erf(x/√2)) as PyTorch computes it. erf is a rational minimax approximation on
 * [-4, 4] (|error| < 5e-7; erf is ±1 in float32 beyond), e^t for t ≤ 0 a Cody-Waite reduction
 * and a degree-5 polynomial (Cephes' expf): only multiplies, adds and one division, so the
 * loop vectorizes. float64 keeps the NumPy/SciPy path. */
static inline float
erf_approx_f(float x)
{
    x = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x;  /* (NaN stays NaN) */
    float z = x * x;
    float p = -2.72614225801306e-10f;
    p = p * z + 2.77068142495902e-08f;
    p = p * z - 2.10102402082508e-06f;
    p = p * z - 5.69250639462346e-05f;
    p = p * z - 7.34990630326855e-04f;
    p = p * z - 2.95459980854025e-03f;
    p = p * z - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * z - 2.13374055278905e-04f;
    q = q * z - 1.68282697438203e-03f;
    q = q * z - 7.37332916720468e-03f;
    q = q * z - 1.42647390514189e-02f;
    return x * p / q;
}

/* e^t for t <= 0 (0 below -87, where float32's e^t is subnormal) */
static inline float
exp_nonpositive_f(float t)
{
    float underflow = t < -87.0f ? 0.0f : 1.0f;
    t = t < -87.0f ? -87.0f : t;
    int n = -(int)(-t * 1.44269504088896341f + 0.5f);  /* round(t / ln 2) */
    float fn = (float)n;
    float r = t - fn * 0.693359375f + fn * 2.12194440e-4f;  /* t - n·ln 2, in two parts */
    float z = r * r;
    float e = 1.9875691500e-4f;
    e = e * r + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * z + r + 1.0f;
    union { int32_t i; float f; } scale = {.i = (n + 127) << 23};  /* 2^n, n >= -126 */
    return e * scale.f * underflow;
}

CLONES static void
gelu_f(const float *x, float *y, float *d, Py_ssize_t n)
{
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt_2pi = 0.39894228040143268f;
    if (d == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            y[i] = x[i] * (0.5f + 0.5f * erf_approx_f(x[i] * inv_sqrt2));
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        float v = x[i], cdf = 0.5f + 0.5f * erf_approx_f(v * inv_sqrt2);
        y[i] = v * cdf;
        d[i] = cdf + v * (inv_sqrt_2pi * exp_nonpositive_f(-0.5f * v * v));
    }
}

/* gelu_float32(x, y, dydx): y = x·Φ(x); dydx = Φ(x) + x·φ(x) unless dydx is None */
static PyObject *
gelu_float32(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 'f';
    void *p[3];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 3, 1, 1, "gelu_float32(x, y, dydx)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    split_gelu_f(p[0], p[1], p[2], n); /* (over threads) */
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* ---- rows: the softmax family and sums along the last axis, over threads -------------------
 * A C-contiguous (rows, n) array, one row at a time while it is in cache: softmax needs the
 * row's max, a sum of exponentials and one written pass (NumPy: four passes and two full-size
 * temporaries). Large calls split the rows (or, for one long row, fixed chunks) over up to
 * set_threads(k) POSIX threads; every element's arithmetic is the same whatever the split, so
 * the results do not depend on the thread count. Sums go in LANES independent lanes (the
 * compiler vectorizes them) over blocks of at most SUM_BLOCK elements, whose totals are added in
 * double. (Without POSIX threads, on Windows, the loops run on the calling thread.) */
#ifndef _WIN32
#include <pthread.h>
#include <sched.h>
#include <time.h>
#endif

#define LANES 16
#define SUM_BLOCK 1024
#define SHORT_ROW 32 /* rows up to this long are reduced one element at a time */
#define MAX_THREADS 64
#define PAR_MIN_WORK 262144 /* work (elements x passes) a thread must get, else one does all */

static int n_threads = 1;

typedef void (*range_fn)(void *ctx, Py_ssize_t lo, Py_ssize_t hi);

#ifndef _WIN32
/* A split call: chunks of work claimed one at a time from a shared counter by the calling
 * thread and the pool's helpers alike, so a helper that gets no core leaves its chunks to the
 * caller; the caller waits only for chunks a helper has started (a helper preempted in the
 * middle of one holds the call up for a scheduler slice). A helper that joins after the call
 * has returned finds nothing left to claim: the job lives on the heap until its last thread
 * lets go. */
typedef struct {
    range_fn fn;
    void *ctx;
    Py_ssize_t items, chunk, chunks;
    long next, done, refs, slots; /* atomics (GCC builtins); slots: helpers that may still join */
} Job;

static void
job_run(Job *j)
{
    for (;;) {
        Py_ssize_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_ACQ_REL);
        if (c >= j->chunks)
            return;
        Py_ssize_t lo = c * j->chunk, hi = lo + j->chunk < j->items ? lo + j->chunk : j->items;
        j->fn(j->ctx, lo, hi);
        __atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
    }
}

static void
job_release(Job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) == 0)
        PyMem_RawFree(j);
}

/* ---- the thread pool (parallel_for and gemm) --------------------------------------------------
 * Helpers are started once (on the first split call) and kept. A helper that has finished its
 * part spins for pool_spin_ns (checking the job counter between pause instructions), so the next
 * call a few µs later starts at once, then sleeps on a condition variable (a wake-up then costs
 * tens of µs). Jobs are posted under pool_mu; a job posted while another runs (gemm lets go of the
 * GIL) takes the helpers that are free, and each caller does whatever chunks nobody claimed. Products and row loops share these threads: with NumPy's OpenBLAS set to one thread
 * (kernels/cpu.py) no other pool spins beside them. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static Job *pool_job;      /* the job helpers may join (under pool_mu) */
static long pool_gen;      /* bumped (under pool_mu) each time a job is posted */
static long pool_sleepers; /* helpers waiting on pool_cv (under pool_mu) */
static int pool_helpers;   /* helpers started (under pool_mu) */
static long pool_spin_ns = 100000;

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *
pool_helper(void *arg)
{
    long seen = (long)(intptr_t)arg;
    for (;;) {
        long g = __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE);
        if (g == seen) {
            long spin = __atomic_load_n(&pool_spin_ns, __ATOMIC_RELAXED);
            long deadline = spin > 0 ? now_ns() + spin : 0;
            for (unsigned i = 1; spin > 0; i++) {
                cpu_relax();
                if ((g = __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE)) != seen
                    || ((i & 63) == 0 && now_ns() > deadline))
                    break;
            }
        }
        pthread_mutex_lock(&pool_mu);
        if (g == seen) {
            pool_sleepers++;
            while ((g = __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE)) == seen)
                pthread_cond_wait(&pool_cv, &pool_mu);
            pool_sleepers--;
        }
        seen = g;
        Job *j = pool_job;
        if (j != NULL && j->slots > 0) {
            j->slots--;
            __atomic_add_fetch(&j->refs, 1, __ATOMIC_ACQ_REL);
        }
        else
            j = NULL;
        pthread_mutex_unlock(&pool_mu);
        if (j != NULL) {
            job_run(j);
            job_release(j);
        }
    }
    return NULL;
}

static void
pool_after_fork(void)
{ /* the child has none of the parent's helpers */
    pthread_mutex_init(&pool_mu, NULL);
    pthread_cond_init(&pool_cv, NULL);
    pool_job = NULL;
    pool_sleepers = 0;
    pool_helpers = 0;
}

/* fn(ctx, lo, hi) over [0, items) in chunks of `chunk` items, on the calling thread and up to
 * helpers - 1 ... helpers of the pool (started here when fewer are running); returns when all
 * chunks are done */
/* ---- another library's threads as the pool: NumPy's OpenBLAS ---------------------------------
 * Where NumPy's OpenBLAS keeps its own threads (the default install at more than one thread),
 * they spin for ~0.1 s after each product, holding the other cores: threads of our own would
 * only share those cores with them. So split calls run on OpenBLAS's threads instead, through
 * its exported gotoblas_pthread(n, fn, args, stride) (fn(args + i·stride) for i < n, i = 0 on
 * the caller, the others on its workers; it returns when all have): one pool for the products
 * and the loops, as PyTorch's OpenMP pool is. kernels/openblas.py finds the function and sets
 * ext_runner (NULL: the pool below). A worker runs only chainrule's loops or, for gemm, products
 * below OpenBLAS's own threading threshold (those never call back into its threads). */
typedef int (*ext_runner_fn)(int, void *, void *, int);
static ext_runner_fn ext_runner;
static int ext_threads = 1; /* the most threads ext_runner takes (OpenBLAS's count) */

typedef struct {
    Job *job;
    int first; /* the caller's part: chunk 0 first */
} ExtPart;

static void
ext_part(void *arg)
{
    ExtPart *p = arg;
    Job *j = p->job;
    if (p->first) {
        j->fn(j->ctx, 0, j->chunk < j->items ? j->chunk : j->items);
        __atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
    }
    job_run(j);
}

static void
ext_run(range_fn fn, void *ctx, Py_ssize_t items, Py_ssize_t chunk, int helpers)
{
    ExtPart parts[MAX_THREADS];
    if (helpers + 1 > ext_threads)
        helpers = ext_threads - 1;
    if (helpers + 1 > MAX_THREADS)
        helpers = MAX_THREADS - 1;
    Job j = {fn, ctx, items, chunk, (items + chunk - 1) / chunk, 1, 0, 1, helpers};
    if (helpers < 1) {
        fn(ctx, 0, items);
        return;
    }
    for (int i = 0; i <= helpers; i++)
        parts[i] = (ExtPart){&j, i == 0};
    ext_runner(helpers + 1, (void *)ext_part, parts, (int)sizeof(ExtPart));
}

static void
pool_run(range_fn fn, void *ctx, Py_ssize_t items, Py_ssize_t chunk, int helpers)
{
    if (ext_runner != NULL) {
        ext_run(fn, ctx, items, chunk, helpers);
        return;
    }
    Job *j = helpers > 0 ? PyMem_RawMalloc(sizeof(Job)) : NULL;
    if (j == NULL) {
        fn(ctx, 0, items);
        return;
    }
    /* the caller takes chunk 0 and the helpers the next ones, so that calls split alike (a
     * product, then a loop over its output) leave each part of the memory with one thread */
    *j = (Job){fn, ctx, items, chunk, (items + chunk - 1) / chunk, 1, 0, 1, helpers};
    pthread_mutex_lock(&pool_mu);
    if (pool_helpers < helpers) { /* helpers started now see this job's generation */
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) == 0) {
            if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0) {
                long g = __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE);
                while (pool_helpers < helpers) {
                    pthread_t id;
                    if (pthread_create(&id, &attr, pool_helper, (void *)(intptr_t)g) != 0)
                        break; /* fewer helpers: the caller claims more chunks */
                    pool_helpers++;
                }
            }
            pthread_attr_destroy(&attr);
        }
    }
    pool_job = j;
    __atomic_add_fetch(&pool_gen, 1, __ATOMIC_RELEASE);
    if (pool_sleepers > 0)
        pthread_cond_broadcast(&pool_cv);
    pthread_mutex_unlock(&pool_mu);
    fn(ctx, 0, chunk < items ? chunk : items);
    __atomic_fetch_add(&j->done, 1, __ATOMIC_RELEASE);
    job_run(j);
    for (unsigned i = 1; __atomic_load_n(&j->done, __ATOMIC_ACQUIRE) < j->chunks; i++) {
        if (i < 4096)
            cpu_relax(); /* a helper is finishing a chunk it claimed */
        else
            sched_yield();
    }
    pthread_mutex_lock(&pool_mu);
    if (pool_job == j)
        pool_job = NULL;
    pthread_mutex_unlock(&pool_mu);
    job_release(j);
}
#endif

/* fn(ctx, lo, hi) over [0, items): with up to n_threads threads when items·cost (elements) is at
 * least par_min_work per thread, else on the calling thread */
static Py_ssize_t par_min_work = PAR_MIN_WORK;

static void
parallel_for(range_fn fn, void *ctx, Py_ssize_t items, Py_ssize_t cost)
{
    Py_ssize_t t = n_threads, work = items * cost;
    if (t > work / par_min_work)
        t = work / par_min_work;
    if (t > items)
        t = items;
#ifdef _WIN32
    (void)t;
    fn(ctx, 0, items);
#else
    if (t <= 1) {
        fn(ctx, 0, items);
        return;
    }
    Py_ssize_t chunk = (PAR_MIN_WORK / 4) / (cost > 0 ? cost : 1);
    pool_run(fn, ctx, items, chunk < 1 ? 1 : chunk, (int)t - 1);
#endif
}

/* ---- matrix products split over the pool ------------------------------------------------------
 * gemm(...) computes C = op(A)·op(B) for a stack of `count` row-major matrices with a BLAS's
 * cblas_?gemm, given as a function pointer (kernels/matmul.py finds NumPy's OpenBLAS and sets it
 * to one thread): each call below is a single-threaded product of a block of C's rows (or of its
 * columns, where C is wide), or of a run of the stack's matrices, and the pool's threads take the
 * blocks. Each element of C is one dot product over all of k, so the split changes which call
 * computes it, not the order of its sums. */
typedef void (*sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *,
                           int64_t, const float *, int64_t, float, float *, int64_t);
typedef void (*dgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, double, const double *,
                           int64_t, const double *, int64_t, double, double *, int64_t);
typedef void (*sgemm32_fn)(int, int, int, int, int, int, float, const float *, int,
                           const float *, int, float, float *, int);
typedef void (*dgemm32_fn)(int, int, int, int, int, int, double, const double *, int,
                           const double *, int, double, double *, int);

#define GEMM_DOUBLE 1
#define GEMM_ILP64 2
#define GEMM_TRANS_A 4
#define GEMM_TRANS_B 8
#define CBLAS_ROW 101
#define CBLAS_NOTRANS 111
#define CBLAS_TRANS 112

typedef struct {
    void *fn;
    int flags;
    Py_ssize_t m, n, k, lda, ldb, ldc, sa, sb, sc; /* sa, sb, sc: elements between matrices */
    char *a, *b, *c;
    Py_ssize_t parts, step; /* blocks per matrix, rows (or columns) per block */
    int by_rows;
    /* a stack of two levels: matrix i at (i / inner)·s?2 + (i % inner)·s? (one level: inner is
     * the whole stack) */
    Py_ssize_t inner, sa2, sb2, sc2;
} GemmJob;

/* m·n·k (whole stack) from which a product is split (OpenBLAS's own threshold for using its
 * threads; smaller ones stay on the calling thread) */
static Py_ssize_t gemm_min_flops = 1 << 18;

static void
gemm_one(const GemmJob *g, const char *a, const char *b, char *c, Py_ssize_t m, Py_ssize_t n)
{
    int ta = g->flags & GEMM_TRANS_A ? CBLAS_TRANS : CBLAS_NOTRANS;
    int tb = g->flags & GEMM_TRANS_B ? CBLAS_TRANS : CBLAS_NOTRANS;
    if (g->flags & GEMM_DOUBLE) {
        if (g->flags & GEMM_ILP64)
            ((dgemm64_fn)g->fn)(CBLAS_ROW, ta, tb, m, n, g->k, 1.0, (const double *)a, g->lda,
                                (const double *)b, g->ldb, 0.0, (double *)c, g->ldc);
        else
            ((dgemm32_fn)g->fn)(CBLAS_ROW, ta, tb, (int)m, (int)n, (int)g->k, 1.0,
                                (const double *)a, (int)g->lda, (const double *)b, (int)g->ldb,
                                0.0, (double *)c, (int)g->ldc);
    }
    else {
        if (g->flags & GEMM_ILP64)
            ((sgemm64_fn)g->fn)(CBLAS_ROW, ta, tb, m, n, g->k, 1.0f, (const float *)a, g->lda,
                                (const float *)b, g->ldb, 0.0f, (float *)c, g->ldc);
        else
            ((sgemm32_fn)g->fn)(CBLAS_ROW, ta, tb, (int)m, (int)n, (int)g->k, 1.0f,
                                (const float *)a, (int)g->lda, (const float *)b, (int)g->ldb,
                                0.0f, (float *)c, (int)g->ldc);
    }
}

static void
gemm_blocks(void *ctx, Py_ssize_t lo, Py_ssize_t hi)
{
    const GemmJob *g = ctx;
    size_t size = g->flags & GEMM_DOUBLE ? sizeof(double) : sizeof(float);
    for (Py_ssize_t blk = lo; blk < hi; blk++) {
        Py_ssize_t i = blk / g->parts, p = blk % g->parts;
        Py_ssize_t io = i / g->inner, ii = i % g->inner;
        const char *a = g->a + (size_t)(io * g->sa2 + ii * g->sa) * size;
        const char *b = g->b + (size_t)(io * g->sb2 + ii * g->sb) * size;
        char *c = g->c + (size_t)(io * g->sc2 + ii * g->sc) * size;
        Py_ssize_t first = p * g->step, rest = (g->by_rows ? g->m : g->n) - first;
        Py_ssize_t len = rest < g->step ? rest : g->step;
        if (len <= 0)
            continue;
        if (g->by_rows)
            gemm_one(g, a + (size_t)(g->flags & GEMM_TRANS_A ? first : first * g->lda) * size, b,
                     c + (size_t)(first * g->ldc) * size, len, g->n);
        else
            gemm_one(g, a, b + (size_t)(g->flags & GEMM_TRANS_B ? first * g->ldb : first) * size,
                     c + (size_t)first * size, g->m, len);
    }
}

/* gemm(fn, flags, m, n, k, a, lda, sa, b, ldb, sb, c, ldc, sc, count[, inner, sa2, sb2, sc2]):
 * the stack's products (addresses and element strides; alpha 1, beta 0), split over the pool's
 * threads when the stack has at least gemm_min_flops multiply-adds; with ``inner``, a stack of
 * count / inner runs (strides s?2) of ``inner`` matrices (strides s?) */
static PyObject *
gemm(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 15 && nargs != 19) {
        PyErr_SetString(PyExc_TypeError, "expected gemm(fn, flags, m, n, k, a, lda, sa, b, ldb, "
                                         "sb, c, ldc, sc, count[, inner, sa2, sb2, sc2])");
        return NULL;
    }
    GemmJob g;
    Py_ssize_t v[19];
    void *p[19];
    for (int i = 0; i < (int)nargs; i++) {
        int is_ptr = i == 0 || i == 5 || i == 8 || i == 11;
        if (is_ptr)
            p[i] = PyLong_AsVoidPtr(args[i]);
        else
            v[i] = PyLong_AsSsize_t(args[i]);
        if ((is_ptr ? p[i] == NULL : v[i] == -1) && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t count = v[14];
    g = (GemmJob){p[0], (int)v[1], v[2], v[3], v[4], v[6], v[9], v[12], v[7], v[10], v[13],
                  p[5], p[8], p[11], 1, 0, 1, count > 0 ? count : 1, 0, 0, 0};
    if (nargs == 19)
        g.inner = v[15], g.sa2 = v[16], g.sb2 = v[17], g.sc2 = v[18];
    if (g.fn == NULL || g.m < 0 || g.n < 0 || g.k < 0 || count < 0 || g.inner < 1
        || (count > 0 && count % g.inner)) {
        PyErr_SetString(PyExc_ValueError, "gemm: bad function pointer or sizes");
        return NULL;
    }
    if (g.m == 0 || g.n == 0 || count == 0)
        Py_RETURN_NONE;
    g.step = g.m;
    Py_ssize_t t = n_threads;
    double flops = (double)g.m * (double)g.n * (double)g.k * (double)count;
#ifdef _WIN32
    t = 1;
#endif
    if (t > 1 && flops >= (double)gemm_min_flops && count < 2 * t) {
        /* too few matrices to share out: split each one's rows (its columns where it has few
         * rows) into one block per thread of whole 16-row (column) panels: then each thread
         * holds a contiguous part of C, as a loop over C split the same way takes it next */
        g.by_rows = g.m >= 16 * t || g.m >= g.n;
        Py_ssize_t len = g.by_rows ? g.m : g.n;
        Py_ssize_t parts = t;
        Py_ssize_t step = (len + parts - 1) / parts;
        step = (step + 15) / 16 * 16;
        g.step = step < len ? step : len;
        g.parts = (len + g.step - 1) / g.step;
    }
    Py_ssize_t blocks = count * g.parts;
    if (t > blocks)
        t = blocks;
    if (t <= 1 || flops < (double)gemm_min_flops) {
        gemm_blocks(&g, 0, blocks);
        Py_RETURN_NONE;
    }
#ifndef _WIN32
    /* one block, or one run of the stack, per thread */
    Py_ssize_t chunk = (blocks + t - 1) / t;
    Py_BEGIN_ALLOW_THREADS
    pool_run(gemm_blocks, &g, blocks, chunk, (int)t - 1);
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

/* axpy(alpha, x, y): y += alpha·x for C-contiguous float arrays of one dtype and size, in one
 * contiguous part per pool thread (as gemm splits C's rows), alpha·x rounded before the sum (no
 * fused multiply-add: NumPy's y -= lr·x gives the same bits) */
typedef struct {
    const char *x;
    char *y;
    double alpha;
    int dbl;
} AxpyJob;

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
CLONES static void
axpy_part(void *ctx, Py_ssize_t lo, Py_ssize_t hi)
{
    const AxpyJob *a = ctx;
    if (a->dbl) {
        const double *restrict x = (const double *)a->x;
        double *restrict y = (double *)a->y;
        double alpha = a->alpha;
        for (Py_ssize_t i = lo; i < hi; i++) {
            double t = alpha * x[i];
            y[i] = y[i] + t;
        }
    }
    else {
        const float *restrict x = (const float *)a->x;
        float *restrict y = (float *)a->y;
        float alpha = (float)a->alpha;
        for (Py_ssize_t i = lo; i < hi; i++) {
            float t = alpha * x[i];
            y[i] = y[i] + t;
        }
    }
}

static PyObject *
pool_axpy(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected axpy(alpha, x, y)");
        return NULL;
    }
    double alpha = PyFloat_AsDouble(args[0]);
    if (alpha == -1.0 && PyErr_Occurred())
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args + 1, 2, 2, 1, 0, "axpy(alpha, x, y)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    AxpyJob a = {p[0], p[1], alpha, fmt == 'd'};
    Py_ssize_t t = n_threads;
    if (t > n / (par_min_work / 2))
        t = n / (par_min_work / 2);
#ifndef _WIN32
    if (t > 1) {
        Py_ssize_t chunk = (n + t - 1) / t;
        chunk = (chunk + 15) / 16 * 16;
        pool_run(axpy_part, &a, n, chunk, (int)t - 1);
    }
    else
#endif
        axpy_part(&a, 0, n);
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* adadelta(g, d, v, u, lr, rho, eps): one Adadelta step in one pass over C-contiguous float
 * arrays of one dtype and size, split over the pool (PyTorch's order of operations, each one
 * rounded as NumPy's passes round it: no fused multiply-add, so the bits are those of
 *   v = v·ρ + (1-ρ)·g·g;  δ = √(u+ε) / √(v+ε) · g;  u = u·ρ + (1-ρ)·δ·δ;  d = d + (-lr)·δ
 * in NumPy, optim/adadelta.py's fallback) */
typedef struct {
    char *d, *v, *u;
    const char *g;
    double lr, rho, eps;
    int dbl;
} AdadeltaJob;

/* sqrt of n values in place, 4 (2) at a time with SSE's sqrtps (sqrtpd) where the CPU is x86-64
 * (correctly rounded, as sqrtf: the same bits): GCC does not vectorize sqrtf while errno may
 * be set, and setup.py does not pass -fno-math-errno to this file */
#if defined(__x86_64__) || defined(__SSE2__)
#include <emmintrin.h>
#define SQRT_BLOCK_SIMD 1
#endif
static inline void
sqrt_block_f(float *x, int n)
{
    int i = 0;
#ifdef SQRT_BLOCK_SIMD
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrtf(x[i]);
}

static inline void
sqrt_block_d(double *x, int n)
{
    int i = 0;
#ifdef SQRT_BLOCK_SIMD
    for (; i + 2 <= n; i += 2)
        _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrt(x[i]);
}

#define ADADELTA_BLOCK 256
#define ADADELTA_BODY(T, S)                                                   \
    do {                                                                      \
        T *restrict d = (T *)a->d, *restrict v = (T *)a->v, *restrict u = (T *)a->u; \
        const T *restrict g = (const T *)a->g;                                \
        const T rho = (T)a->rho, one_m = (T)(1.0 - a->rho), eps = (T)a->eps;  \
        const T neg_lr = (T)(-a->lr);                                         \
        T sv[ADADELTA_BLOCK], su[ADADELTA_BLOCK];                             \
        for (Py_ssize_t b0 = lo; b0 < hi; b0 += ADADELTA_BLOCK) {             \
            int nb = (int)(hi - b0 < ADADELTA_BLOCK ? hi - b0 : ADADELTA_BLOCK); \
            T *restrict vb = v + b0, *restrict ub = u + b0, *restrict db = d + b0; \
            const T *restrict gb = g + b0;                                    \
            for (int i = 0; i < nb; i++) {                                    \
                T gi = gb[i];                                                 \
                T t0 = one_m * gi;                                            \
                t0 = t0 * gi;                                                 \
                T vi = vb[i] * rho;                                           \
                vi = vi + t0;                                                 \
                vb[i] = vi;                                                   \
                sv[i] = vi + eps;                                             \
                su[i] = ub[i] + eps;                                          \
            }                                                                 \
            sqrt_block_##S(sv, nb);                                           \
            sqrt_block_##S(su, nb);                                           \
            for (int i = 0; i < nb; i++) {                                    \
                T delta = su[i] / sv[i];                                      \
                delta = delta * gb[i];                                        \
                T ui = ub[i] * rho;                                           \
                T t2 = delta * one_m;                                         \
                t2 = t2 * delta;                                              \
                ub[i] = ui + t2;                                              \
                T step = delta * neg_lr;                                      \
                db[i] = db[i] + step;                                         \
            }                                                                 \
        }                                                                     \
    } while (0)

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
CLONES static void
adadelta_part(void *ctx, Py_ssize_t lo, Py_ssize_t hi)
{
    const AdadeltaJob *a = ctx;
    if (a->dbl)
        ADADELTA_BODY(double, d);
    else
        ADADELTA_BODY(float, f);
}

static PyObject *
adadelta(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "expected adadelta(g, d, v, u, lr, rho, eps)");
        return NULL;
    }
    double h[3];
    for (int i = 0; i < 3; i++) {
        h[i] = PyFloat_AsDouble(args[4 + i]);
        if (h[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[4];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, 4, 4, 1, 0, "adadelta(g, d, v, u, lr, rho, eps)", &fmt, p, &n)
        < 0) {
        bufs_release(&b);
        return NULL;
    }
    AdadeltaJob a = {p[1], p[2], p[3], p[0], h[0], h[1], h[2], fmt == 'd'};
    Py_BEGIN_ALLOW_THREADS
    parallel_for(adadelta_part, &a, n, 16);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* ---- elementwise loops split over the pool (xfmr16, issue 16) --------------------------------
 * GELU (float32) and ReLU forward/backward over contiguous parts of their arrays, one per
 * thread where the call is large enough (parallel_for): at the default thread count they run on
 * NumPy's OpenBLAS's threads (ext_runner), as PyTorch's elementwise ops run on its OpenMP pool.
 * Each element's arithmetic is the same whatever the split. */
typedef struct {
    const char *x, *y; /* inputs (y: relu_backward's output of the forward) */
    char *o, *d;       /* outputs (d: GELU's dy/dx, may be NULL) */
} ElemJob;

static void
gelu_part(void *ctx, Py_ssize_t lo, Py_ssize_t hi)
{
    const ElemJob *e = ctx;
    gelu_f((const float *)e->x + lo, (float *)e->o + lo, e->d ? (float *)e->d + lo : NULL,
           hi - lo);
}

static void
split_gelu_f(const float *x, float *y, float *d, Py_ssize_t n)
{
    ElemJob e = {(const char *)x, NULL, (char *)y, (char *)d};
    parallel_for(gelu_part, &e, n, 8); /* (an erf and an exp an element) */
}

#define DEFINE_SPLIT_RELU(T, suffix)                                                  \
    static void relu_fwd_part_##suffix(void *ctx, Py_ssize_t lo, Py_ssize_t hi)       \
    {                                                                                 \
        const ElemJob *e = ctx;                                                       \
        relu_forward_##suffix((const T *)e->x + lo, (T *)e->o + lo, hi - lo);         \
    }                                                                                 \
    static void split_relu_forward_##suffix(const T *x, T *y, Py_ssize_t n)           \
    {                                                                                 \
        ElemJob e = {(const char *)x, NULL, (char *)y, NULL};                         \
        parallel_for(relu_fwd_part_##suffix, &e, n, 1);                               \
    }                                                                                 \
    static void relu_bwd_part_##suffix(void *ctx, Py_ssize_t lo, Py_ssize_t hi)       \
    {                                                                                 \
        const ElemJob *e = ctx;                                                       \
        relu_backward_##suffix((const T *)e->x + lo, (const T *)e->y + lo, (T *)e->o + lo, \
                               hi - lo);                                              \
    }                                                                                 \
    static void split_relu_backward_##suffix(const T *g, const T *y, T *o, Py_ssize_t n) \
    {                                                                                 \
        ElemJob e = {(const char *)g, (const char *)y, (char *)o, NULL};              \
        parallel_for(relu_bwd_part_##suffix, &e, n, 1);                               \
    }
DEFINE_SPLIT_RELU(float, f)
DEFINE_SPLIT_RELU(double, d)

/* pool_runner(address, threads): split calls run on another library's threads through the
 * function at ``address`` (gotoblas_pthread's signature, see ext_runner), at most ``threads``
 * of them; address 0: on the pool's own threads. Returns the previous address. */
static PyObject *
pool_runner(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected pool_runner(address, threads)");
        return NULL;
    }
    void *addr = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t t = PyLong_AsSsize_t(args[1]);
    if ((addr == NULL || t == -1) && PyErr_Occurred())
        return NULL;
#ifndef _WIN32
    void *old = (void *)ext_runner;
    ext_runner = (ext_runner_fn)addr;
    ext_threads = t < 1 ? 1 : t > MAX_THREADS ? MAX_THREADS : (int)t;
#else
    void *old = NULL;
    (void)addr;
#endif
    return PyLong_FromVoidPtr(old);
}

/* pool_config(spin_ns, gemm_min_flops): how long (ns) the pool's helpers spin before they sleep,
 * and the m·n·k from which gemm splits a product (-1: leave as is); returns the previous pair */
static PyObject *
pool_config(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected pool_config(spin_ns, gemm_min_flops)");
        return NULL;
    }
    Py_ssize_t spin = PyLong_AsSsize_t(args[0]), minf = PyLong_AsSsize_t(args[1]);
    if ((spin == -1 || minf == -1) && PyErr_Occurred())
        return NULL;
#ifndef _WIN32
    long old_spin = __atomic_load_n(&pool_spin_ns, __ATOMIC_RELAXED);
    if (spin >= 0)
        __atomic_store_n(&pool_spin_ns, (long)spin, __ATOMIC_RELAXED);
#else
    long old_spin = 0;
#endif
    Py_ssize_t old_min = gemm_min_flops;
    if (minf >= 0)
        gemm_min_flops = minf;
    return Py_BuildValue("(ln)", old_spin, old_min);
}

/* e^t for t <= 0 down to float32's subnormals (0 below -104): as exp_nonpositive_f, with
 * 2^n applied as two normal powers of two, so that only the last product rounds */
static inline float
exp_nonpositive_sub_f(float t)
{
    float underflow = t < -104.0f ? 0.0f : 1.0f;
    t = t < -104.0f ? -104.0f : t;
    int n = -(int)(-t * 1.44269504088896341f + 0.5f);
    float fn = (float)n;
    float r = t - fn * 0.693359375f + fn * 2.12194440e-4f;
    float z = r * r;
    float e = 1.9875691500e-4f;
    e = e * r + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * z + r + 1.0f;
    int n1 = n / 2, n2 = n - n1;  /* each >= -75 */
    union { int32_t i; float f; } s1 = {.i = (n1 + 127) << 23}, s2 = {.i = (n2 + 127) << 23};
    return e * s1.f * s2.f * underflow;
}

static inline float exp_f(float t) { return exp_nonpositive_sub_f(t); }
static inline double exp_d(double t) { return exp(t); }

/* acc = p > acc ? p : acc in each of LANES lanes (NaNs in p skipped). GCC and Clang compile the
 * select in the loop below to scalar compares; written on vectors it becomes one packed
 * compare and blend per LANES elements in every clone. */
#if defined(__GNUC__)
typedef float lanes_f __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t lanes_mask_f __attribute__((vector_size(LANES * sizeof(float))));
typedef double lanes_d __attribute__((vector_size(LANES * sizeof(double))));
typedef int64_t lanes_mask_d __attribute__((vector_size(LANES * sizeof(double))));
#define LANES_DECL(T, suffix, name) lanes_##suffix name
#define LANES_MAX(T, suffix, acc, p)                                                          \
    do {                                                                                      \
        lanes_##suffix v_;                                                                    \
        memcpy(&v_, (p), sizeof v_);                                                          \
        lanes_mask_##suffix gt_ = v_ > (acc);                                                 \
        (acc) = (lanes_##suffix)(((lanes_mask_##suffix)v_ & gt_)                              \
                                 | ((lanes_mask_##suffix)(acc) & ~gt_));                      \
    } while (0)
#else
#define LANES_DECL(T, suffix, name) T name[LANES]
#define LANES_MAX(T, suffix, acc, p)                                                          \
    for (int k_ = 0; k_ < LANES; k_++)                                                        \
    (acc)[k_] = (p)[k_] > (acc)[k_] ? (p)[k_] : (acc)[k_]
#endif

#define DEFINE_ROWS(T, suffix)                                                                \
    /* the row's max, NaNs skipped (a NaN makes the sum of exponentials NaN anyway) */      \
    CLONES static T row_max_##suffix(const T *x, Py_ssize_t n)                                \
    {                                                                                         \
        if (n <= SHORT_ROW) { /* four running maxima (4k + i into i) */                       \
            T a0 = x[0], a1 = x[0], a2 = x[0], a3 = x[0];                                     \
            Py_ssize_t j = 0;                                                                 \
            for (; j + 4 <= n; j += 4) {                                                      \
                a0 = x[j] > a0 ? x[j] : a0;                                                   \
                a1 = x[j + 1] > a1 ? x[j + 1] : a1;                                           \
                a2 = x[j + 2] > a2 ? x[j + 2] : a2;                                           \
                a3 = x[j + 3] > a3 ? x[j + 3] : a3;                                           \
            }                                                                                 \
            for (; j < n; j++)                                                                \
                a0 = x[j] > a0 ? x[j] : a0;                                                   \
            a0 = a1 > a0 ? a1 : a0;                                                           \
            a2 = a3 > a2 ? a3 : a2;                                                           \
            return a2 > a0 ? a2 : a0;                                                         \
        }                                                                                     \
        LANES_DECL(T, suffix, acc);                                                           \
        for (int k = 0; k < LANES; k++)                                                       \
            acc[k] = x[0];                                                                    \
        Py_ssize_t j = 0;                                                                     \
        for (; j + LANES <= n; j += LANES)                                                    \
            LANES_MAX(T, suffix, acc, x + j);                                                 \
        if (j < n) { /* the tail in one more pass of the lanes, padded with x[0] */           \
            T pad[LANES];                                                                     \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = j + k < n ? x[j + k] : x[0];                                         \
            LANES_MAX(T, suffix, acc, pad);                                                   \
        }                                                                                     \
        T m = acc[0];                                                                         \
        for (int k = 1; k < LANES; k++)                                                       \
            m = acc[k] > m ? acc[k] : m;                                                      \
        return m;                                                                             \
    }                                                                                         \
    /* one block of at most SUM_BLOCK elements, in lanes: Σ x (y NULL), Σ x·y */             \
    CLONES static double block_sum_##suffix(const T *x, const T *y, Py_ssize_t n)            \
    {                                                                                         \
        T acc[LANES] = {0};                                                                   \
        Py_ssize_t j = 0;                                                                     \
        if (y) {                                                                              \
            for (; j + LANES <= n; j += LANES)                                                \
                for (int k = 0; k < LANES; k++)                                               \
                    acc[k] += x[j + k] * y[j + k];                                            \
        } else {                                                                              \
            for (; j + LANES <= n; j += LANES)                                                \
                for (int k = 0; k < LANES; k++)                                               \
                    acc[k] += x[j + k];                                                       \
        }                                                                                     \
        if (j < n) { /* the tail into the same lanes (element j into lane j % LANES), the    \
                      * missing ones as + 0 */                                                \
            T pad[LANES];                                                                     \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = j + k < n ? (y ? x[j + k] * y[j + k] : x[j + k]) : 0;                \
            for (int k = 0; k < LANES; k++)                                                   \
                acc[k] += pad[k];                                                             \
        }                                                                                     \
        for (int w = LANES / 2; w > 0; w /= 2)                                                \
            for (int k = 0; k < w; k++)                                                       \
                acc[k] += acc[k + w];                                                         \
        return (double)acc[0];                                                                \
    }                                                                                         \
    /* y = e^(x - m) over one block */                                                     \
    CLONES static void block_exp_##suffix(const T *x, T *y, T m, Py_ssize_t n)               \
    {                                                                                         \
        Py_ssize_t j = 0;                                                                     \
        for (; j + LANES <= n; j += LANES) /* whole lanes: vector code, no scalar peeling */  \
            for (int k = 0; k < LANES; k++)                                                   \
                y[j + k] = exp_##suffix(x[j + k] - m);                                        \
        if (j < n) { /* the tail through the same lanes */                                   \
            T pad[LANES];                                                                     \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = j + k < n ? x[j + k] : m;                                            \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = exp_##suffix(pad[k] - m);                                            \
            for (int k = 0; j + k < n; k++)                                                   \
                y[j + k] = pad[k];                                                            \
        }                                                                                     \
    }                                                                                         \
    static double block_expsum_##suffix(const T *x, T *y, T m, Py_ssize_t n)                 \
    {                                                                                         \
        T tmp[SUM_BLOCK];                                                                     \
        T *e = y ? y : tmp;                                                                   \
        block_exp_##suffix(x, e, m, n);                                                       \
        return block_sum_##suffix(e, NULL, n);                                                \
    }                                                                                         \
    /* Σ x (op 0), Σ x·y (op 2) or Σ e^(x - m) (op 1, storing e^(x - m) in y when not NULL)  \
     * over a row, block by block, the blocks' totals added in double */                     \
    static double row_sum_##suffix(const T *x, T *y, T m, int op, Py_ssize_t n)               \
    {                                                                                         \
        double s = 0;                                                                         \
        if (n <= SHORT_ROW) { /* four running sums (4k + i into i, the tail into 0), then     \
                               * (0 + 1) + (2 + 3): lanes cost more than they save here */   \
            T e[SHORT_ROW], t0 = 0, t1 = 0, t2 = 0, t3 = 0;                                   \
            const T *v = x;                                                                   \
            if (op == 1) {                                                                    \
                v = y ? y : e;                                                                \
                block_exp_##suffix(x, (T *)v, m, n);                                          \
            }                                                                                 \
            if (op == 2) {                                                                    \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    e[j] = v[j] * y[j];                                                       \
                v = e;                                                                        \
            }                                                                                 \
            Py_ssize_t j = 0;                                                                 \
            for (; j + 4 <= n; j += 4) {                                                      \
                t0 += v[j];                                                                   \
                t1 += v[j + 1];                                                               \
                t2 += v[j + 2];                                                               \
                t3 += v[j + 3];                                                               \
            }                                                                                 \
            for (; j < n; j++)                                                                \
                t0 += v[j];                                                                   \
            return (double)((t0 + t1) + (t2 + t3));                                           \
        }                                                                                     \
        for (Py_ssize_t j = 0; j < n; j += SUM_BLOCK) {                                       \
            Py_ssize_t len = n - j < SUM_BLOCK ? n - j : SUM_BLOCK;                           \
            if (op == 1)                                                                      \
                s += block_expsum_##suffix(x + j, y ? y + j : NULL, m, len);                  \
            else                                                                              \
                s += block_sum_##suffix(x + j, op == 2 ? y + j : NULL, len);                  \
        }                                                                                     \
        return s;                                                                             \
    }                                                                                         \
    typedef struct {                                                                          \
        const T *x, *g;                                                                       \
        T *y, *stats;                                                                         \
        double *partial;                                                                      \
        Py_ssize_t n;                                                                         \
        int log;                                                                              \
    } Rows_##suffix;                                                                          \
    /* softmax (log 0) or log-softmax (log 1) of rows [lo, hi) */                             \
    CLONES static void softmax_rows_##suffix(void *arg, Py_ssize_t lo, Py_ssize_t hi)         \
    {                                                                                         \
        Rows_##suffix *c = arg;                                                               \
        Py_ssize_t n = c->n;                                                                  \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                \
            const T *x = c->x + r * n;                                                        \
            T *y = c->y + r * n;                                                              \
            T m = row_max_##suffix(x, n);                                                     \
            if (c->log) {                                                                     \
                T lse = (T)log((T)row_sum_##suffix(x, NULL, m, 1, n));                        \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    y[j] = (x[j] - m) - lse;                                                  \
            } else {                                                                          \
                T s = (T)row_sum_##suffix(x, y, m, 1, n);                                     \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    y[j] /= s;                                                                \
                if (c->stats) {                                                               \
                    c->stats[2 * r] = m;                                                      \
                    c->stats[2 * r + 1] = s;                                                  \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* their backward from the output y: y·(g - Σ g·y), or g - e^y·Σ g */                    \
    CLONES static void softmax_backward_rows_##suffix(void *arg, Py_ssize_t lo, Py_ssize_t hi) \
    {                                                                                         \
        Rows_##suffix *c = arg;                                                               \
        Py_ssize_t n = c->n;                                                                  \
        for (Py_ssize_t r = lo; r < hi; r++) {                                                \
            const T *g = c->g + r * n, *y = c->x + r * n;                                     \
            T *gx = c->y + r * n;                                                             \
            if (c->log) {                                                                     \
                T s = (T)row_sum_##suffix(g, NULL, 0, 0, n);                                  \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    gx[j] = g[j] - exp_##suffix(y[j]) * s;                                    \
            } else {                                                                          \
                T s = (T)row_sum_##suffix(g, (T *)y, 0, 2, n);                                \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    gx[j] = y[j] * (g[j] - s);                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    /* Σ of each row [lo, hi), into partial[r] */                                            \
    static void sum_rows_##suffix(void *arg, Py_ssize_t lo, Py_ssize_t hi)                    \
    {                                                                                         \
        Rows_##suffix *c = arg;                                                               \
        for (Py_ssize_t r = lo; r < hi; r++)                                                  \
            c->partial[r] = row_sum_##suffix(c->x + r * c->n, NULL, 0, 0, c->n);              \
    }
DEFINE_ROWS(float, f)
DEFINE_ROWS(double, d)

/* The (rows, n) shape of buffers of ``len`` elements with rows of n; -1 (error set) if not */
static Py_ssize_t
rows_of(Py_ssize_t len, Py_ssize_t n, const char *name)
{
    if (n <= 0 || len % n != 0) {
        PyErr_Format(PyExc_ValueError, "%s: the size is not a multiple of the row length", name);
        return -1;
    }
    return len / n;
}

/* The arguments (x, out, n) of a row reduction: x as rows of n elements, out (x's dtype) one
 * element per row. Returns the row count, or -1 with an exception set. */
static Py_ssize_t
row_reduction_args(Bufs *b, PyObject *const *args, Py_ssize_t nargs, const char *usage,
                   char *fmt, void **px, void **po, Py_ssize_t *n)
{
    Py_ssize_t len, lo, rows;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return -1;
    }
    *n = PyLong_AsSsize_t(args[2]);
    if ((*n == -1 && PyErr_Occurred()) || buf(b, args[0], 0, 0, fmt, px, &len) < 0
        || buf(b, args[1], 1, 0, fmt, po, &lo) < 0 || (rows = rows_of(len, *n, usage)) < 0)
        return -1;
    if (lo != rows) {
        PyErr_Format(PyExc_ValueError, "%s: out needs one element per row", usage);
        return -1;
    }
    return rows;
}

/* softmax_rows(x, y, n, log[, stats]): y = softmax (log 0) or log_softmax (log 1) of each row
 * of n elements of x:  y = e^(x - max)/Σ e^(x - max),  or  y = (x - max) - ln Σ e^(x - max);
 * with softmax, stats (2 per row, x's dtype) receives each row's max and Σ e^(x - max) */
static PyObject *
softmax_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2], *ps = NULL;
    Py_ssize_t len = 0, n, rows, ls = 0;
    const char *usage = "softmax_rows(x, y, n, log[, stats])";
    if (nargs != 4 && nargs != 5) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return NULL;
    }
    n = PyLong_AsSsize_t(args[2]);
    int log_ = PyObject_IsTrue(args[3]);
    if ((n == -1 && PyErr_Occurred()) || log_ < 0
        || same_size_bufs(&b, args, 2, 2, 1, 0, usage, &fmt, p, &len) < 0
        || (rows = rows_of(len, n, usage)) < 0
        || (nargs == 5 && buf(&b, args[4], 1, 1, &fmt, &ps, &ls) < 0)) {
        bufs_release(&b);
        return NULL;
    }
    if (ps && (log_ || ls != 2 * rows)) {
        PyErr_Format(PyExc_ValueError, "%s: stats needs 2 elements per row (softmax only)", usage);
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f') {
        Rows_f c = {.x = p[0], .y = p[1], .stats = ps, .n = n, .log = log_};
        parallel_for(softmax_rows_f, &c, rows, 4 * n);
    } else {
        Rows_d c = {.x = p[0], .y = p[1], .stats = ps, .n = n, .log = log_};
        parallel_for(softmax_rows_d, &c, rows, 4 * n);
    }
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* softmax_backward_rows(g, y, gx, n, log): per row of n elements, from the output y,
 * gx = y·(g - Σ g·y) (log 0) or gx = g - e^y·Σ g (log 1) */
static PyObject *
softmax_backward_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t len = 0, n, rows;
    const char *usage = "softmax_backward_rows(g, y, gx, n, log)";
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return NULL;
    }
    n = PyLong_AsSsize_t(args[3]);
    int log_ = PyObject_IsTrue(args[4]);
    if ((n == -1 && PyErr_Occurred()) || log_ < 0
        || same_size_bufs(&b, args, 3, 3, 2, 0, usage, &fmt, p, &len) < 0
        || (rows = rows_of(len, n, usage)) < 0) {
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f') {
        Rows_f c = {.g = p[0], .x = p[1], .y = p[2], .n = n, .log = log_};
        parallel_for(softmax_backward_rows_f, &c, rows, 3 * n);
    } else {
        Rows_d c = {.g = p[0], .x = p[1], .y = p[2], .n = n, .log = log_};
        parallel_for(softmax_backward_rows_d, &c, rows, 3 * n);
    }
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* sum_rows(x, out, n): out[r] = Σ x[r, :] for rows of n elements (out: one element per row,
 * x's dtype); one long row (out of one element) is summed in chunks over the threads */
static PyObject *
sum_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *po;
    Py_ssize_t n, rows = row_reduction_args(&b, args, nargs, "sum_rows(x, out, n)", &fmt, &px, &po,
                                            &n);
    if (rows < 0)
        goto fail;
    /* one long row: chunks of SUM_BLOCK·64 elements (then their partial sums, in order) */
    Py_ssize_t chunk = rows == 1 && n > 2 * SUM_BLOCK * 64 ? SUM_BLOCK * 64 : n;
    Py_ssize_t items = rows == 1 ? (n + chunk - 1) / chunk : rows;
    double *partial = PyMem_RawMalloc(sizeof(double) * (items ? items : 1));
    if (partial == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    if (rows == 1 && chunk < n) {
        /* the chunks as rows of `chunk` elements, the last one shorter */
        Py_ssize_t full = n / chunk;
        if (fmt == 'f') {
            Rows_f c = {.x = px, .partial = partial, .n = chunk};
            parallel_for(sum_rows_f, &c, full, chunk);
            if (full < items)
                partial[full] = row_sum_f((const float *)px + full * chunk, NULL, 0, 0, n - full * chunk);
        } else {
            Rows_d c = {.x = px, .partial = partial, .n = chunk};
            parallel_for(sum_rows_d, &c, full, chunk);
            if (full < items)
                partial[full] = row_sum_d((const double *)px + full * chunk, NULL, 0, 0, n - full * chunk);
        }
        double s = 0;
        for (Py_ssize_t k = 0; k < items; k++)
            s += partial[k];
        partial[0] = s;
        items = 1;
    } else if (fmt == 'f') {
        Rows_f c = {.x = px, .partial = partial, .n = n};
        parallel_for(sum_rows_f, &c, rows, n);
    } else {
        Rows_d c = {.x = px, .partial = partial, .n = n};
        parallel_for(sum_rows_d, &c, rows, n);
    }
    for (Py_ssize_t r = 0; r < items; r++) {
        if (fmt == 'f')
            ((float *)po)[r] = (float)partial[r];
        else
            ((double *)po)[r] = partial[r];
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(partial);
    bufs_release(&b);
    Py_RETURN_NONE;
fail:
    bufs_release(&b);
    return NULL;
}

/* cat_rows(out, xs, outer): out = the arrays xs joined along one axis, every array (out too)
 * C-contiguous with one item size: out as `outer` rows, each the rows of xs[0], xs[1], ... in
 * turn (x's row: its size / outer items). What np.concatenate does, with one memcpy per piece:
 * NumPy's strided copies cost ~25 ns per piece, which dominates when rows are short (a join
 * along the last axis of many (32, 16, 32) arrays: 8192 pieces of 128 bytes). */
static PyObject *
cat_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected cat_rows(out, xs, outer)");
        return NULL;
    }
    Py_ssize_t outer = PyLong_AsSsize_t(args[2]);
    if (outer == -1 && PyErr_Occurred())
        return NULL;
    PyObject *seq = PySequence_Fast(args[1], "cat_rows: xs must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq), got = 0, total = 0;
    Py_buffer out;
    Py_buffer *v = PyMem_Calloc(k ? k : 1, sizeof(Py_buffer));
    if (v == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    int have_out = PyObject_GetBuffer(args[0], &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) == 0;
    int ok = have_out;
    for (; ok && got < k; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &v[got], PyBUF_C_CONTIGUOUS) < 0) {
            ok = 0;
            break;
        }
        if (outer <= 0 || v[got].len % outer != 0 || v[got].itemsize != out.itemsize) {
            PyErr_SetString(PyExc_ValueError, "cat_rows: an array's size is not outer rows of out's items");
            got++;
            ok = 0;
            break;
        }
        total += v[got].len;
    }
    if (ok && total != out.len) {
        PyErr_SetString(PyExc_ValueError, "cat_rows: the arrays' sizes do not add up to out's");
        ok = 0;
    }
    if (ok && out.len) {
        Py_BEGIN_ALLOW_THREADS
        char *dst = out.buf;
        for (Py_ssize_t r = 0; r < outer; r++)
            for (Py_ssize_t i = 0; i < k; i++) {
                Py_ssize_t w = v[i].len / outer;
                memcpy(dst, (const char *)v[i].buf + r * w, (size_t)w);
                dst += w;
            }
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    if (have_out)
        PyBuffer_Release(&out);
    PyMem_Free(v);
    Py_DECREF(seq);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* set_threads(k[, min_work]): the most threads a row loop uses (1 to 64), and the work
 * (elements x passes) each thread must get before a call is split (default PAR_MIN_WORK);
 * returns the previous thread count */
static PyObject *
set_threads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 && nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected set_threads(k[, min_work])");
        return NULL;
    }
    long k = PyLong_AsLong(args[0]);
    Py_ssize_t w = nargs == 2 ? PyLong_AsSsize_t(args[1]) : PAR_MIN_WORK;
    if ((k == -1 || w == -1) && PyErr_Occurred())
        return NULL;
    int old = n_threads;
    n_threads = k < 1 ? 1 : k > MAX_THREADS ? MAX_THREADS : (int)k;
    par_min_work = w < 1024 ? 1024 : w;
    return PyLong_FromLong(old);
}

/* ---- Σ x² in PyTorch's CPU order (kernels/cpu.py, sum_squares) --------------------------------
 * Per row of n: 256-bit lanes (8 float32 / 4 float64), lane k summing the squares of elements
 * k, k + lanes, ... in turn; the lanes then added in order, then the tail's squares one by one,
 * all in the array's dtype (the NumPy form it replaces gives the same bits: squares rounded
 * before they are added, no fused multiply-adds). */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_FMA __attribute__((optimize("fp-contract=off")))
#else
#define NO_FMA
#endif
#define DEFINE_SUMSQ(T, suffix, L)                                                            \
    CLONES NO_FMA static void sum_squares_##suffix(const T *x, T *out, Py_ssize_t rows, Py_ssize_t n) \
    {                                                                                         \
        Py_ssize_t body = n - n % L;                                                          \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T *xr = x + r * n;                                                          \
            T acc[L] = {0};                                                                   \
            for (Py_ssize_t j = 0; j < body; j += L)                                          \
                for (int k = 0; k < L; k++)                                                   \
                    acc[k] += xr[j + k] * xr[j + k];                                          \
            T total = acc[0];                                                                 \
            for (int k = 1; k < L; k++)                                                       \
                total += acc[k];                                                              \
            for (Py_ssize_t j = body; j < n; j++)                                             \
                total += xr[j] * xr[j];                                                       \
            out[r] = total;                                                                   \
        }                                                                                     \
    }
DEFINE_SUMSQ(float, f, 8)
DEFINE_SUMSQ(double, d, 4)

/* sum_squares_rows(x, out, n): out[r] = Σ x[r, :]² in PyTorch's lane order (rows of n) */
static PyObject *
sum_squares_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *po;
    Py_ssize_t n, rows = row_reduction_args(&b, args, nargs, "sum_squares_rows(x, out, n)", &fmt, &px, &po,
                                            &n);
    if (rows < 0)
        goto fail;
    RUN_TYPED_AND_RETURN(b, fmt, sum_squares, px, po, rows, n);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- elementwise: sigmoid, GELU's tanh form, gather along the last axis ----------------------
 * One pass each (NumPy: four to ten, with temporaries); float32 through the e^t above (t <= 0),
 * float64 through the C library. */
static inline float
tanh_approx_f(float u)  /* tanh u = sign(u)·(1 - e)/(1 + e), e = e^(-2|u|): absolute error ~1e-7 */
{
    float a = u < 0 ? -u : u;
    float e = exp_nonpositive_f(-2.0f * a);
    float t = (1.0f - e) / (1.0f + e);
    return u < 0 ? -t : t;
}

CLONES static void
sigmoid_f(const float *x, float *y, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {  /* e = e^-|x|: 1/(1 + e) for x >= 0, e/(1 + e) else */
        float v = x[i], e = exp_nonpositive_sub_f(v < 0 ? v : -v);
        y[i] = (v < 0 ? e : 1.0f) / (1.0f + e);
    }
}

static void
sigmoid_d(const double *x, double *y, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = x[i], e = exp(v < 0 ? v : -v);
        y[i] = (v < 0 ? e : 1.0) / (1.0 + e);
    }
}

/* sigmoid(x, y): y = 1/(1 + e^-x) */
static PyObject *
sigmoid(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 2, 1, 0, "sigmoid(x, y)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, sigmoid, p[0], p[1], n);
}

/* GELU, tanh form: y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³);
 * dy/dx = ½(1 + tanh u) + ½x(1 - tanh² u)·√(2/π)(1 + 3·0.044715x²) */
#define DEFINE_GELU_TANH(T, suffix, TANH)                                                     \
    CLONES static void gelu_tanh_##suffix(const T *x, T *y, T *d, Py_ssize_t n)               \
    {                                                                                         \
        const T beta = (T)0.7978845608028654, kappa = (T)0.044715;                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                                  \
            T v = x[i], v2 = v * v;                                                           \
            T t = TANH(beta * (v + kappa * (v2 * v)));                                        \
            T half = (T)0.5 * v;                                                              \
            y[i] = half * ((T)1 + t);                                                         \
            if (d)                                                                            \
                d[i] = (T)0.5 * ((T)1 + t)                                                    \
                       + half * ((T)1 - t * t) * beta * ((T)1 + (T)3 * kappa * v2);          \
        }                                                                                     \
    }
DEFINE_GELU_TANH(float, f, tanh_approx_f)
DEFINE_GELU_TANH(double, d, tanh)

/* gelu_tanh(x, y, dydx): y and (unless dydx is None) dy/dx of GELU's tanh form */
static PyObject *
gelu_tanh(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 3, 1, 1, "gelu_tanh(x, y, dydx)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, gelu_tanh, p[0], p[1], p[2], n);
}

/* LSTM time steps (nn/modules/rnn.py, LSTMLayerGate): the elementwise work of one step, which
 * NumPy spends five to seven calls on. Gates are stored (i, f, o, g), gate-major:
 * act (4, T, N, K), cell states cs (T + 1, N, K). */
#define DEFINE_LSTM(T, suffix)                                                                \
    CLONES static void lstm_forward_##suffix(T *act, T *cs, Py_ssize_t t, Py_ssize_t prev,   \
                                             Py_ssize_t cur, Py_ssize_t steps, Py_ssize_t nk) \
    {                                                                                         \
        T *i = act + t * nk, *f = i + steps * nk, *o = f + steps * nk, *g = o + steps * nk;   \
        const T *cp = cs + prev * nk;                                                         \
        T *c = cs + cur * nk;                                                                 \
        for (Py_ssize_t j = 0; j < nk; j++) {                                                 \
            i[j] = i[j] * (T)0.5 + (T)0.5;                                                    \
            f[j] = f[j] * (T)0.5 + (T)0.5;                                                    \
            o[j] = o[j] * (T)0.5 + (T)0.5;                                                    \
            c[j] = f[j] * cp[j] + i[j] * g[j];                                                \
        }                                                                                     \
    }                                                                                         \
    CLONES static void lstm_backward_##suffix(T *dh, T *dc, const T *gout, const T *a_c,     \
                                              const T *p, const T *act, T *dz, Py_ssize_t t,  \
                                              Py_ssize_t steps, Py_ssize_t n, Py_ssize_t k)   \
    {                                                                                         \
        Py_ssize_t nk = n * k;                                                                \
        const T *ac = a_c + t * nk, *f = act + (steps + t) * nk;                              \
        const T *p0 = p + t * nk, *p1 = p0 + steps * nk, *p2 = p1 + steps * nk,               \
                *p3 = p2 + steps * nk;                                                        \
        for (Py_ssize_t b = 0; b < n; b++) {                                                  \
            T *dzb = dz + (t * n + b) * 4 * k;                                                \
            for (Py_ssize_t j = 0; j < k; j++) {                                              \
                Py_ssize_t e = b * k + j;                                                     \
                T h = gout ? dh[e] + gout[e] : dh[e];                                         \
                T c = dc[e] + h * ac[e];                                                      \
                dzb[j] = p0[e] * c;                                                           \
                dzb[k + j] = p1[e] * c;                                                       \
                dzb[2 * k + j] = p2[e] * c;                                                   \
                dzb[3 * k + j] = p3[e] * h;                                                   \
                dh[e] = h;                                                                    \
                dc[e] = c * f[e];                                                             \
            }                                                                                 \
        }                                                                                     \
    }
DEFINE_LSTM(float, f)
DEFINE_LSTM(double, d)

/* lstm_step_forward(act, cs, t, prev, cur): act holds tanh of step t's pre-activations (the σ
 * gates' halved, as σ(z) = ½·tanh(z/2) + ½); makes i, f, o the σ values in place and sets
 * cs[cur] = f·cs[prev] + i·g. */
static PyObject *
lstm_step_forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pa, *pc;
    Py_ssize_t la, lc, ix[3];
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "lstm_step_forward(act, cs, t, prev, cur)");
        return NULL;
    }
    for (int q = 0; q < 3; q++)
        if ((ix[q] = PyLong_AsSsize_t(args[2 + q])) == -1 && PyErr_Occurred())
            return NULL;
    if (buf(&b, args[0], 1, 0, &fmt, &pa, &la) < 0 || buf(&b, args[1], 1, 0, &fmt, &pc, &lc) < 0)
        goto fail;
    Py_buffer *va = &b.v[0], *vc = &b.v[1];
    if (va->ndim != 4 || vc->ndim != 3 || va->shape[0] != 4 || vc->shape[0] != va->shape[1] + 1
        || vc->shape[1] != va->shape[2] || vc->shape[2] != va->shape[3]) {
        PyErr_SetString(PyExc_ValueError, "lstm_step_forward: act (4, T, N, K), cs (T+1, N, K)");
        goto fail;
    }
    Py_ssize_t steps = va->shape[1], nk = va->shape[2] * va->shape[3];
    if (ix[0] < 0 || ix[0] >= steps || ix[1] < 0 || ix[1] > steps || ix[2] < 0 || ix[2] > steps) {
        PyErr_SetString(PyExc_IndexError, "lstm_step_forward: step out of range");
        goto fail;
    }
    if (fmt == 'f')
        lstm_forward_f(pa, pc, ix[0], ix[1], ix[2], steps, nk);
    else
        lstm_forward_d(pa, pc, ix[0], ix[1], ix[2], steps, nk);
    bufs_release(&b);
    Py_RETURN_NONE;
fail:
    bufs_release(&b);
    return NULL;
}

/* lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t): one step of BPTT, in place on dh, dc:
 * dh += g_out_t (None: nothing);  dc += dh·a_c[t];  dz[t] = [p_i·dc, p_f·dc, p_g·dc, p_o·dh]
 * (dz (T, N, 4K) in PyTorch's gate order);  dc ·= f[t]. */
static PyObject *
lstm_step_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pdh, *pdc, *pg, *pac, *pp, *pa, *pdz;
    Py_ssize_t ldh, ldc, lg = 0, lac, lp, la, ldz;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t)");
        return NULL;
    }
    Py_ssize_t t = PyLong_AsSsize_t(args[7]);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    if (buf(&b, args[0], 1, 0, &fmt, &pdh, &ldh) < 0 || buf(&b, args[1], 1, 0, &fmt, &pdc, &ldc) < 0
        || buf(&b, args[2], 0, 1, &fmt, &pg, &lg) < 0 || buf(&b, args[3], 0, 0, &fmt, &pac, &lac) < 0
        || buf(&b, args[4], 0, 0, &fmt, &pp, &lp) < 0 || buf(&b, args[5], 0, 0, &fmt, &pa, &la) < 0
        || buf(&b, args[6], 1, 0, &fmt, &pdz, &ldz) < 0)
        goto fail;
    Py_buffer *vac = &b.v[pg ? 3 : 2];
    if (vac->ndim != 3) {
        PyErr_SetString(PyExc_ValueError, "lstm_step_backward: a_c must be (T, N, K)");
        goto fail;
    }
    Py_ssize_t steps = vac->shape[0], n = vac->shape[1], k = vac->shape[2], nk = n * k;
    if (ldh != nk || ldc != nk || (pg && lg != nk) || lp != 4 * lac || la != 4 * lac
        || ldz != 4 * lac || t < 0 || t >= steps) {
        PyErr_SetString(PyExc_ValueError, "lstm_step_backward: sizes do not match");
        goto fail;
    }
    if (fmt == 'f')
        lstm_backward_f(pdh, pdc, pg, pac, pp, pa, pdz, t, steps, n, k);
    else
        lstm_backward_d(pdh, pdc, pg, pac, pp, pa, pdz, t, steps, n, k);
    bufs_release(&b);
    Py_RETURN_NONE;
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- scatter-add of rows -------------------------------------------------------------------
 * add_rows(out, idx, values): out[idx[i], :] += values[i, :] for i in order (repeats
 * accumulate, in the order np.add.at(out, idx, values) adds them). out is (R, C) and values
 * (n, C), flat C-contiguous float buffers of one dtype; idx n int64 rows in [0, R) (checked).
 */
#define DEFINE_ADD_ROWS(T, S)                                                              \
    static CLONES void add_rows_##S(T *restrict out, const int64_t *restrict idx,          \
                                    const T *restrict v, Py_ssize_t n, Py_ssize_t c)       \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            T *restrict o = out + idx[i] * c;                                              \
            const T *restrict s = v + i * c;                                               \
            for (Py_ssize_t j = 0; j < c; j++)                                             \
                o[j] += s[j];                                                              \
        }                                                                                  \
    }
DEFINE_ADD_ROWS(float, f)
DEFINE_ADD_ROWS(double, d)

static PyObject *
add_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *po, *pv;
    Py_ssize_t lo, lv;
    Py_buffer *ib;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected add_rows(out, idx, values)");
        return NULL;
    }
    if (buf(&b, args[0], 1, 0, &fmt, &po, &lo) < 0 || buf(&b, args[2], 0, 0, &fmt, &pv, &lv) < 0)
        goto fail;
    ib = &b.v[b.n];
    if (PyObject_GetBuffer(args[1], ib, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto fail;
    b.n++;
    if (ib->itemsize != 8 || !ib->format || (ib->format[0] != 'l' && ib->format[0] != 'q')
        || ib->format[1] != 0) {
        PyErr_SetString(PyExc_TypeError, "add_rows: idx must be an int64 array");
        goto fail;
    }
    Py_ssize_t n = ib->len / 8;
    if (n == 0) {
        bufs_release(&b);
        Py_RETURN_NONE;
    }
    if (lv % n != 0) {
        PyErr_SetString(PyExc_ValueError, "add_rows: values must have len(idx) rows");
        goto fail;
    }
    Py_ssize_t c = lv / n;
    if (c == 0) {
        bufs_release(&b);
        Py_RETURN_NONE;
    }
    if (lo % c != 0) {
        PyErr_SetString(PyExc_ValueError, "add_rows: out and values rows differ in length");
        goto fail;
    }
    const int64_t *idx = ib->buf;
    int64_t rows = lo / c;
    for (Py_ssize_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows) {
            PyErr_Format(PyExc_IndexError, "index %lld is out of bounds for %lld rows",
                         (long long)idx[i], (long long)rows);
            goto fail;
        }
    RUN_TYPED_AND_RETURN(b, fmt, add_rows, po, idx, pv, n, c);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- convolution and pooling on (planes, H, W) ------------------------------------------------
 * col2im_rows: the col2im of a stride-1 convolution on the padded image's flat rows (see
 * cpu.py's _conv_input_grad_wide), each row of ``out`` written once while in cache:
 *     out[r, :] = 0;  out[r, starts[t] : starts[t] + L] += src[r, t, :]  for every tap t
 * max_pool2d_backward: each window's gradient added to its maximum, one pass per plane
 * (``idx``: each window's offset i·kw + j of its maximum, uint8 as the reference makes it).
 */
#define DEFINE_COL2IM_ROWS(T, S)                                                           \
    static CLONES void col2im_rows_##S(T *restrict out, const T *restrict src,             \
                                       const int64_t *restrict starts, Py_ssize_t rows,    \
                                       Py_ssize_t width, Py_ssize_t taps, Py_ssize_t len)  \
    {                                                                                      \
        for (Py_ssize_t r = 0; r < rows; r++) {                                            \
            T *restrict o = out + r * width;                                               \
            for (Py_ssize_t j = 0; j < width; j++)                                         \
                o[j] = 0;                                                                  \
            for (Py_ssize_t t = 0; t < taps; t++) {                                        \
                const T *restrict s = src + (r * taps + t) * len;                          \
                T *restrict d = o + starts[t];                                             \
                for (Py_ssize_t j = 0; j < len; j++)                                       \
                    d[j] += s[j];                                                          \
            }                                                                              \
        }                                                                                  \
    }
DEFINE_COL2IM_ROWS(float, f)
DEFINE_COL2IM_ROWS(double, d)

/* the buffer of an int array with ``itemsize``-byte elements (format 'B' for 1, 'l'/'q' for 8) */
static int
int_buf(Bufs *b, PyObject *a, int writable, Py_ssize_t itemsize, void **data, Py_ssize_t *len)
{
    Py_buffer *v = &b->v[b->n];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(a, v, flags) < 0)
        return -1;
    b->n++;
    char f = v->format ? v->format[0] : 0;
    int ok = v->itemsize == itemsize && v->format && v->format[1] == 0
             && (itemsize == 1 ? f == 'B' : (f == 'l' || f == 'q'));
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, itemsize == 1 ? "expected a uint8 array"
                                                       : "expected an int64 array");
        return -1;
    }
    *data = v->buf;
    *len = v->len / itemsize;
    return 0;
}

/* col2im_rows(out, src, starts, rows) */
static PyObject *
col2im_rows(PyObject *module, PyObject *args)
{
    PyObject *ao, *as, *at;
    Py_ssize_t rows;
    if (!PyArg_ParseTuple(args, "OOOn", &ao, &as, &at, &rows))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *po, *ps, *pt;
    Py_ssize_t lo, ls, taps;
    if (buf(&b, ao, 1, 0, &fmt, &po, &lo) < 0 || buf(&b, as, 0, 0, &fmt, &ps, &ls) < 0
        || int_buf(&b, at, 0, 8, &pt, &taps) < 0)
        goto fail;
    if (rows <= 0 || taps <= 0 || lo % rows || ls % (rows * taps)) {
        PyErr_SetString(PyExc_ValueError, "col2im_rows: sizes do not match");
        goto fail;
    }
    Py_ssize_t width = lo / rows, len = ls / (rows * taps);
    const int64_t *starts = pt;
    for (Py_ssize_t t = 0; t < taps; t++)
        if (starts[t] < 0 || starts[t] + len > width) {
            PyErr_SetString(PyExc_ValueError, "col2im_rows: a tap falls outside the row");
            goto fail;
        }
    RUN_TYPED_AND_RETURN(b, fmt, col2im_rows, po, ps, starts, rows, width, taps, len);
fail:
    bufs_release(&b);
    return NULL;
}

typedef struct {
    Py_ssize_t planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
} PoolGeom;

#define DEFINE_MAX_POOL(T, S)                                                              \
    static CLONES void max_pool_bwd_##S(const T *restrict gy, const uint8_t *restrict idx, \
                                        T *restrict gx, const PoolGeom *g)                 \
    {                                                                                      \
        for (Py_ssize_t p = 0; p < g->planes; p++) {                                       \
            T *xp = gx + p * g->h * g->w;                                                  \
            for (Py_ssize_t j = 0; j < g->h * g->w; j++)                                   \
                xp[j] = 0;                                                                 \
            for (Py_ssize_t oy = 0; oy < g->oh; oy++)                                      \
                for (Py_ssize_t ox = 0; ox < g->ow; ox++) {                                \
                    Py_ssize_t o = (p * g->oh + oy) * g->ow + ox;                          \
                    Py_ssize_t t = idx[o], i = t / g->kw, j = t % g->kw;                   \
                    Py_ssize_t yy = oy * g->sh - g->pt + i * g->dh;                        \
                    Py_ssize_t xx = ox * g->sw - g->pl + j * g->dw;                        \
                    if (yy >= 0 && yy < g->h && xx >= 0 && xx < g->w)                      \
                        xp[yy * g->w + xx] += gy[o];                                       \
                }                                                                          \
        }                                                                                  \
    }
DEFINE_MAX_POOL(float, f)
DEFINE_MAX_POOL(double, d)

/* the output columns [lo, hi) whose tap j falls inside the image's width, and the tap's
 * column offset */
static inline void
tap_range(const PoolGeom *g, Py_ssize_t j, Py_ssize_t *plo, Py_ssize_t *phi, Py_ssize_t *poff)
{
    Py_ssize_t off = j * g->dw - g->pl, lo, hi;
    lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    hi = g->w - off <= 0 ? 0 : (g->w - off + g->sw - 1) / g->sw;
    lo = lo < g->ow ? lo : g->ow;
    hi = hi < g->ow ? hi : g->ow;
    *plo = lo;
    *phi = hi > lo ? hi : lo;
    *poff = off;
}

/* im2col: cols[p, i, j, oy, ox] = x[p, oy·sh - pt + i·dh, ox·sw - pl + j·dw] (0 in the padding),
 * each window row copied as one run (contiguous when sw = 1) */
#define DEFINE_IM2COL(T, S)                                                                \
    static CLONES void im2col_##S(const T *restrict x, T *restrict cols, const PoolGeom *gp) \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        T *restrict d = cols;                                                              \
        for (Py_ssize_t p = 0; p < g.planes; p++)                                          \
            for (Py_ssize_t i = 0; i < g.kh; i++)                                          \
                for (Py_ssize_t j = 0; j < g.kw; j++) {                                    \
                    Py_ssize_t off = j * g.dw - g.pl, lo, hi;                              \
                    lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;                          \
                    hi = g.w - off <= 0 ? 0 : (g.w - off + g.sw - 1) / g.sw;               \
                    lo = lo < g.ow ? lo : g.ow;                                            \
                    hi = hi < g.ow ? hi : g.ow;                                            \
                    hi = hi > lo ? hi : lo;                                                \
                    for (Py_ssize_t oy = 0; oy < g.oh; oy++, d += g.ow) {                  \
                        Py_ssize_t yy = oy * g.sh - g.pt + i * g.dh;                       \
                        if (yy < 0 || yy >= g.h) {                                         \
                            for (Py_ssize_t ox = 0; ox < g.ow; ox++)                       \
                                d[ox] = 0;                                                 \
                            continue;                                                      \
                        }                                                                  \
                        const T *src = x + (p * g.h + yy) * g.w + off;                     \
                        for (Py_ssize_t ox = 0; ox < lo; ox++)                             \
                            d[ox] = 0;                                                     \
                        if (g.sw == 1)                                                     \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] = src[ox];                                           \
                        else                                                               \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] = src[ox * g.sw];                                    \
                        for (Py_ssize_t ox = hi; ox < g.ow; ox++)                          \
                            d[ox] = 0;                                                     \
                    }                                                                      \
                }                                                                          \
    }
DEFINE_IM2COL(float, f)
DEFINE_IM2COL(double, d)

static int
pool_geom_ok(const PoolGeom *g, Py_ssize_t xlen, Py_ssize_t ylen, Py_ssize_t ilen)
{
    if (g->planes < 0 || g->h < 0 || g->w < 0 || g->kh <= 0 || g->kw <= 0 || g->kh * g->kw > 255
        || g->sh <= 0 || g->sw <= 0 || g->dh <= 0 || g->dw <= 0 || g->oh < 0 || g->ow < 0
        || xlen != g->planes * g->h * g->w || ylen != g->planes * g->oh * g->ow
        || ilen != ylen) {
        PyErr_SetString(PyExc_ValueError, "max_pool2d loops: sizes do not match the geometry");
        return 0;
    }
    return 1;
}

#define POOL_ARGS "OOOnnnnnnnnnnnnn"
#define POOL_FIELDS(g)                                                                     \
    &(g).planes, &(g).h, &(g).w, &(g).kh, &(g).kw, &(g).sh, &(g).sw, &(g).dh, &(g).dw,       \
        &(g).pt, &(g).pl, &(g).oh, &(g).ow

/* im2col(x, cols, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow) */
static PyObject *
im2col(PyObject *module, PyObject *args)
{
    PyObject *ax, *ac;
    PoolGeom g;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnnnnn", &ax, &ac, POOL_FIELDS(g)))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *pc;
    Py_ssize_t lx, lc;
    if (buf(&b, ax, 0, 0, &fmt, &px, &lx) < 0 || buf(&b, ac, 1, 0, &fmt, &pc, &lc) < 0)
        goto fail;
    if (g.planes < 0 || g.h < 0 || g.w < 0 || g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0
        || g.dh <= 0 || g.dw <= 0 || g.oh < 0 || g.ow < 0 || lx != g.planes * g.h * g.w
        || lc != g.planes * g.kh * g.kw * g.oh * g.ow) {
        PyErr_SetString(PyExc_ValueError, "im2col: sizes do not match the geometry");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, im2col, px, pc, &g);
fail:
    bufs_release(&b);
    return NULL;
}

/* max_pool2d_backward(gy, idx, gx, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow) */
static PyObject *
max_pool2d_backward(PyObject *module, PyObject *args)
{
    PyObject *ag, *ai, *ax;
    PoolGeom g;
    if (!PyArg_ParseTuple(args, POOL_ARGS, &ag, &ai, &ax, POOL_FIELDS(g)))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pg, *px, *pi;
    Py_ssize_t lg, lx, li;
    if (buf(&b, ag, 0, 0, &fmt, &pg, &lg) < 0 || int_buf(&b, ai, 0, 1, &pi, &li) < 0
        || buf(&b, ax, 1, 0, &fmt, &px, &lx) < 0 || !pool_geom_ok(&g, lx, lg, li))
        goto fail;
    RUN_TYPED_AND_RETURN(b, fmt, max_pool_bwd, pg, pi, px, &g);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- convolution over the whole batch: columns in channel-major order ---------------------
 * A convolution is one GEMM over the batch when the window columns are laid out (C, kh, kw, N,
 * OH, OW), i.e. a (C·kh·kw) × (N·OH·OW) matrix:
 *   im2col_cn: cols[c, i, j, n, oy, ox] = x[n, c, oy·sh - pt + i·dh, ox·sw - pl + j·dw] (0 in
 *              the padding), each window row copied as one run;
 *   col2im_cn: its adjoint, out[n, c] = Σ over taps (i, j) of cols[c, i, j, n] added back onto
 *              the pixels under them (out is written whole, each plane while in cache).
 * ``g.planes`` is N·C here, with ``chans`` = C.
 */

#define DEFINE_IM2COL_CN(T, S)                                                             \
    static CLONES void im2col_cn_##S(const T *restrict x, T *restrict cols,                \
                                     const PoolGeom *gp, Py_ssize_t chans)                 \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        Py_ssize_t batch = g.planes / chans, area = g.oh * g.ow;                           \
        for (Py_ssize_t p = 0; p < g.planes; p++) {                                        \
            Py_ssize_t n = p / chans, c = p % chans;                                       \
            for (Py_ssize_t i = 0; i < g.kh; i++)                                          \
                for (Py_ssize_t j = 0; j < g.kw; j++) {                                    \
                    Py_ssize_t lo, hi, off;                                                \
                    tap_range(&g, j, &lo, &hi, &off);                                      \
                    T *restrict d = cols + (((c * g.kh + i) * g.kw + j) * batch + n) * area; \
                    for (Py_ssize_t oy = 0; oy < g.oh; oy++, d += g.ow) {                  \
                        Py_ssize_t yy = oy * g.sh - g.pt + i * g.dh;                       \
                        if (yy < 0 || yy >= g.h) {                                         \
                            for (Py_ssize_t ox = 0; ox < g.ow; ox++)                       \
                                d[ox] = 0;                                                 \
                            continue;                                                      \
                        }                                                                  \
                        const T *src = x + (p * g.h + yy) * g.w + off;                     \
                        for (Py_ssize_t ox = 0; ox < lo; ox++)                             \
                            d[ox] = 0;                                                     \
                        if (g.sw == 1)                                                     \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] = src[ox];                                           \
                        else if (g.sw == 2) /* a constant stride: shuffles, not gathers */ \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] = src[2 * ox];                                       \
                        else                                                               \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] = src[ox * g.sw];                                    \
                        for (Py_ssize_t ox = hi; ox < g.ow; ox++)                          \
                            d[ox] = 0;                                                     \
                    }                                                                      \
                }                                                                          \
        }                                                                                  \
    }                                                                                      \
    static CLONES void col2im_cn_##S(const T *restrict cols, T *restrict out,              \
                                     const PoolGeom *gp, Py_ssize_t chans)                 \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        Py_ssize_t batch = g.planes / chans, area = g.oh * g.ow;                           \
        for (Py_ssize_t p = 0; p < g.planes; p++) {                                        \
            Py_ssize_t n = p / chans, c = p % chans;                                       \
            T *restrict plane = out + p * g.h * g.w;                                       \
            for (Py_ssize_t k = 0; k < g.h * g.w; k++)                                     \
                plane[k] = 0;                                                              \
            for (Py_ssize_t i = 0; i < g.kh; i++)                                          \
                for (Py_ssize_t j = 0; j < g.kw; j++) {                                    \
                    Py_ssize_t lo, hi, off;                                                \
                    tap_range(&g, j, &lo, &hi, &off);                                      \
                    const T *restrict s =                                                  \
                        cols + (((c * g.kh + i) * g.kw + j) * batch + n) * area;           \
                    for (Py_ssize_t oy = 0; oy < g.oh; oy++, s += g.ow) {                  \
                        Py_ssize_t yy = oy * g.sh - g.pt + i * g.dh;                       \
                        if (yy < 0 || yy >= g.h)                                           \
                            continue;                                                      \
                        T *restrict d = plane + yy * g.w + off;                            \
                        if (g.sw == 1)                                                     \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox] += s[ox];                                            \
                        else if (g.sw == 2)                                                \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[2 * ox] += s[ox];                                        \
                        else                                                               \
                            for (Py_ssize_t ox = lo; ox < hi; ox++)                        \
                                d[ox * g.sw] += s[ox];                                     \
                    }                                                                      \
                }                                                                          \
        }                                                                                  \
    }
DEFINE_IM2COL_CN(float, f)
DEFINE_IM2COL_CN(double, d)

/* The same two through a zero-padded copy of each plane (``pad``: hp × wp, see pad_dims): every
 * window row then lies inside it, so each row is copied (or added) whole, with no bounds to
 * test, and a stride of 1 or 2 is a constant the compiler vectorizes with. For the short rows of
 * small maps (DCGAN's 8×8 and 4×4 outputs) the bounds tests cost more than the copies. */
static void
pad_dims(const PoolGeom *g, Py_ssize_t *hp, Py_ssize_t *wp)
{
    Py_ssize_t rows = g->oh ? (g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1 : 0;
    Py_ssize_t cols = g->ow ? (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1 : 0;
    *hp = g->h + g->pt > rows ? g->h + g->pt : rows;
    *wp = g->w + g->pl > cols ? g->w + g->pl : cols;
}

#define PADDED_ROWS(T, OP)                                                                 \
    for (Py_ssize_t i = 0; i < g.kh; i++)                                                  \
        for (Py_ssize_t j = 0; j < g.kw; j++) {                                            \
            T *restrict c_ = cols + (((c * g.kh + i) * g.kw + j) * batch + n) * area;      \
            T *restrict p_ = pad + i * g.dh * wp + j * g.dw;                               \
            if (g.sw == 1)                                                                 \
                for (Py_ssize_t oy = 0; oy < g.oh; oy++) {                                 \
                    T *restrict r_ = p_ + oy * g.sh * wp;                                  \
                    T *restrict q_ = c_ + oy * g.ow;                                       \
                    for (Py_ssize_t ox = 0; ox < g.ow; ox++)                               \
                        OP(q_[ox], r_[ox]);                                                \
                }                                                                          \
            else if (g.sw == 2)                                                            \
                for (Py_ssize_t oy = 0; oy < g.oh; oy++) {                                 \
                    T *restrict r_ = p_ + oy * g.sh * wp;                                  \
                    T *restrict q_ = c_ + oy * g.ow;                                       \
                    for (Py_ssize_t ox = 0; ox < g.ow; ox++)                               \
                        OP(q_[ox], r_[2 * ox]);                                            \
                }                                                                          \
            else                                                                           \
                for (Py_ssize_t oy = 0; oy < g.oh; oy++) {                                 \
                    T *restrict r_ = p_ + oy * g.sh * wp;                                  \
                    T *restrict q_ = c_ + oy * g.ow;                                       \
                    for (Py_ssize_t ox = 0; ox < g.ow; ox++)                               \
                        OP(q_[ox], r_[ox * g.sw]);                                         \
                }                                                                          \
        }
#define COPY_TO_COL(col, px) ((col) = (px))
#define ADD_TO_PIXEL(col, px) ((px) += (col))

#define DEFINE_CN_PADDED(T, S)                                                             \
    static CLONES void im2col_cn_pad_##S(const T *restrict x, T *restrict cols,            \
                                         const PoolGeom *gp, Py_ssize_t chans,             \
                                         T *restrict pad)                                  \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        Py_ssize_t batch = g.planes / chans, area = g.oh * g.ow, hp, wp;                   \
        pad_dims(&g, &hp, &wp);                                                            \
        for (Py_ssize_t k = 0; k < hp * wp; k++)                                           \
            pad[k] = 0; /* the border stays 0; each plane overwrites the inside */         \
        for (Py_ssize_t p = 0; p < g.planes; p++) {                                        \
            Py_ssize_t n = p / chans, c = p % chans;                                       \
            for (Py_ssize_t y = 0; y < g.h; y++) {                                         \
                const T *restrict src = x + (p * g.h + y) * g.w;                           \
                T *restrict dst = pad + (y + g.pt) * wp + g.pl;                            \
                for (Py_ssize_t k = 0; k < g.w; k++)                                       \
                    dst[k] = src[k];                                                       \
            }                                                                              \
            PADDED_ROWS(T, COPY_TO_COL)                                                    \
        }                                                                                  \
    }                                                                                      \
    static CLONES void col2im_cn_pad_##S(T *restrict cols, T *restrict out,                \
                                         const PoolGeom *gp, Py_ssize_t chans,             \
                                         T *restrict pad)                                  \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        Py_ssize_t batch = g.planes / chans, area = g.oh * g.ow, hp, wp;                   \
        pad_dims(&g, &hp, &wp);                                                            \
        for (Py_ssize_t p = 0; p < g.planes; p++) {                                        \
            Py_ssize_t n = p / chans, c = p % chans;                                       \
            for (Py_ssize_t k = 0; k < hp * wp; k++)                                       \
                pad[k] = 0;                                                                \
            PADDED_ROWS(T, ADD_TO_PIXEL)                                                   \
            for (Py_ssize_t y = 0; y < g.h; y++) {                                         \
                const T *restrict src = pad + (y + g.pt) * wp + g.pl;                      \
                T *restrict dst = out + (p * g.h + y) * g.w;                               \
                for (Py_ssize_t k = 0; k < g.w; k++)                                       \
                    dst[k] = src[k];                                                       \
            }                                                                              \
        }                                                                                  \
    }
DEFINE_CN_PADDED(float, f)
DEFINE_CN_PADDED(double, d)

/* im2col_cn(x, cols, chans, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow) and
 * col2im_cn(cols, out, chans, planes, ...): x / out (N, C, H, W), cols (C, kh, kw, N, OH, OW) */
static PyObject *
conv_cn(PyObject *args, int adjoint)
{
    PyObject *ain, *aout;
    Py_ssize_t chans;
    PoolGeom g;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnnnnnn", &ain, &aout, &chans, POOL_FIELDS(g)))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pin, *pout;
    Py_ssize_t lin, lout;
    if (buf(&b, ain, 0, 0, &fmt, &pin, &lin) < 0 || buf(&b, aout, 1, 0, &fmt, &pout, &lout) < 0)
        goto fail;
    Py_ssize_t lx = adjoint ? lout : lin, lc = adjoint ? lin : lout;
    if (chans <= 0 || g.planes < 0 || g.planes % chans || g.h < 0 || g.w < 0 || g.kh <= 0
        || g.kw <= 0 || g.sh <= 0 || g.sw <= 0 || g.dh <= 0 || g.dw <= 0 || g.oh < 0 || g.ow < 0
        || lx != g.planes * g.h * g.w || lc != g.planes * g.kh * g.kw * g.oh * g.ow) {
        PyErr_SetString(PyExc_ValueError, adjoint ? "col2im_cn: sizes do not match the geometry"
                                                  : "im2col_cn: sizes do not match the geometry");
        goto fail;
    }
    Py_ssize_t hp, wp;
    pad_dims(&g, &hp, &wp);
    void *pad = g.pt >= 0 && g.pl >= 0 && g.planes
                    ? malloc((size_t)(hp * wp + 1) * (fmt == 'f' ? sizeof(float) : sizeof(double)))
                    : NULL;
    if (pad != NULL) { /* the padded route; without its scratch plane, the bounds-tested one */
        Py_BEGIN_ALLOW_THREADS
        if (adjoint && fmt == 'f')
            col2im_cn_pad_f(pin, pout, &g, chans, pad);
        else if (adjoint)
            col2im_cn_pad_d(pin, pout, &g, chans, pad);
        else if (fmt == 'f')
            im2col_cn_pad_f(pin, pout, &g, chans, pad);
        else
            im2col_cn_pad_d(pin, pout, &g, chans, pad);
        Py_END_ALLOW_THREADS
        free(pad);
        bufs_release(&b);
        Py_RETURN_NONE;
    }
    if (adjoint)
        RUN_TYPED_AND_RETURN(b, fmt, col2im_cn, pin, pout, &g, chans);
    RUN_TYPED_AND_RETURN(b, fmt, im2col_cn, pin, pout, &g, chans);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- gather and its scatter-add along one axis -----------------------------------------------
 * x viewed as (A, X, B) around the axis, the index (and y) as (A, I, B): y[a, i, b] =
 * x[a, idx[a, i, b], b]; the backward adds g back at the same places (repeats accumulating, in
 * order). An index outside [0, X) is an IndexError (before anything is written to x; y, the
 * gather's output, may be partly written: the gather checks each index as it reads it). */
#define DEFINE_GATHER(T, suffix)                                                              \
    static int gather_##suffix(const T *x, const int64_t *idx, T *y, Py_ssize_t na,           \
                               Py_ssize_t nx, Py_ssize_t ni, Py_ssize_t nb, int add)          \
    {                                                                                         \
        if (add || nb != 1)                                                                   \
            for (Py_ssize_t e = 0; e < na * ni * nb; e++)                                     \
                if ((uint64_t)idx[e] >= (uint64_t)nx)                                         \
                    return -1;                                                                \
        for (Py_ssize_t a = 0; a < na; a++) {                                                 \
            const int64_t *ia = idx + a * ni * nb;                                            \
            if (nb == 1) {                                                                    \
                if (add) {                                                                    \
                    T *xa = (T *)x + a * nx;                                                  \
                    const T *ya = y + a * ni;                                                 \
                    for (Py_ssize_t i = 0; i < ni; i++)                                       \
                        xa[ia[i]] += ya[i];                                                   \
                } else {                                                                      \
                    const T *xa = x + a * nx;                                                 \
                    T *ya = y + a * ni;                                                       \
                    for (Py_ssize_t i = 0; i < ni; i++) {                                     \
                        if ((uint64_t)ia[i] >= (uint64_t)nx)                                  \
                            return -1;                                                        \
                        ya[i] = xa[ia[i]];                                                    \
                    }                                                                         \
                }                                                                             \
                continue;                                                                     \
            }                                                                                 \
            for (Py_ssize_t i = 0; i < ni; i++)                                               \
                for (Py_ssize_t k = 0; k < nb; k++) {                                         \
                    Py_ssize_t from = (a * nx + ia[i * nb + k]) * nb + k;                     \
                    Py_ssize_t to = (a * ni + i) * nb + k;                                    \
                    if (add)                                                                  \
                        ((T *)x)[from] += y[to];                                              \
                    else                                                                      \
                        y[to] = x[from];                                                      \
                }                                                                             \
        }                                                                                     \
        return 0;                                                                             \
    }
DEFINE_GATHER(float, f)
DEFINE_GATHER(double, d)

/* *out = a·b for a, b >= 0; 1 if that overflows */
static int
mul_overflows(Py_ssize_t a, Py_ssize_t b, Py_ssize_t *out)
{
    if (a && b > PY_SSIZE_T_MAX / a)
        return 1;
    *out = a * b;
    return 0;
}

/* gather_axis(x, idx, y, a, x_len, i_len, b, add): y[a, i, b] = x[a, idx[a, i, b], b] (add 0),
 * or x[a, idx[a, i, b], b] += y[a, i, b] (add 1) */
static PyObject *
gather_axis(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *pi, *py;
    Py_ssize_t lx, li, ly, dims[4];
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "expected gather_axis(x, idx, y, a, x_len, i_len, b, add)");
        return NULL;
    }
    for (int k = 0; k < 4; k++) {
        dims[k] = PyLong_AsSsize_t(args[3 + k]);
        if (dims[k] == -1 && PyErr_Occurred())
            return NULL;
    }
    int add = PyObject_IsTrue(args[7]);
    if (add < 0 || buf(&b, args[0], add, 0, &fmt, &px, &lx) < 0
        || int_buf(&b, args[1], 0, 8, &pi, &li) < 0 || buf(&b, args[2], !add, 0, &fmt, &py, &ly) < 0)
        goto fail;
    Py_ssize_t ab, sx, si;  /* (sizes that overflow cannot pass) */
    if (dims[0] < 0 || dims[1] < 0 || dims[2] < 0 || dims[3] < 0
        || mul_overflows(dims[0], dims[3], &ab) || mul_overflows(ab, dims[1], &sx)
        || mul_overflows(ab, dims[2], &si) || lx != sx || li != si || ly != li) {
        PyErr_SetString(PyExc_ValueError, "gather_axis: sizes do not match");
        goto fail;
    }
    int bad;
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        bad = gather_f(px, pi, py, dims[0], dims[1], dims[2], dims[3], add);
    else
        bad = gather_d(px, pi, py, dims[0], dims[1], dims[2], dims[3], add);
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "gather_axis: an index is out of range");
        goto fail;
    }
    bufs_release(&b);
    Py_RETURN_NONE;
fail:
    bufs_release(&b);
    return NULL;
}

/* gather_dim(x, idx, y, dim, add): gather_axis with its geometry read from the buffers'
 * shapes: x and idx (int64) of one rank > 0, alike but along ``dim``, y of idx's shape, all
 * C-contiguous (x and y float32/float64 of one dtype, idx not empty). Returns False, nothing
 * done, where the arrays are not such (the caller takes another way); an index outside x's
 * size along dim is an IndexError (before anything is written). */
static PyObject *
gather_dim(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *pi, *py;
    Py_ssize_t lx, li, ly;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "expected gather_dim(x, idx, y, dim, add)");
        return NULL;
    }
    Py_ssize_t dim = PyLong_AsSsize_t(args[3]);
    int add = PyObject_IsTrue(args[4]);
    if ((dim == -1 && PyErr_Occurred()) || add < 0)
        return NULL;
    if (buf(&b, args[0], add, 0, &fmt, &px, &lx) < 0 || int_buf(&b, args[1], 0, 8, &pi, &li) < 0
        || buf(&b, args[2], !add, 0, &fmt, &py, &ly) < 0) {
        PyErr_Clear();  /* a layout or dtype the loop does not take */
        bufs_release(&b);
        Py_RETURN_FALSE;
    }
    const Py_buffer *vx = &b.v[0], *vi = &b.v[1], *vy = &b.v[2];
    int nd = vx->ndim, fits = nd > 0 && vi->ndim == nd && vy->ndim == nd && dim >= 0
                              && dim < nd && li > 0 && ly == li;
    Py_ssize_t na = 1, nb = 1;
    for (int k = 0; fits && k < nd; k++) {
        fits = vy->shape[k] == vi->shape[k] && (k == dim || vx->shape[k] == vi->shape[k]);
        if (k < dim)
            na *= vx->shape[k];
        else if (k > dim)
            nb *= vx->shape[k];
    }
    if (!fits) {
        bufs_release(&b);
        Py_RETURN_FALSE;
    }
    Py_ssize_t nx = vx->shape[dim], ni = vi->shape[dim];
    int bad;
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        bad = gather_f(px, pi, py, na, nx, ni, nb, add);
    else
        bad = gather_d(px, pi, py, na, nx, ni, nb, add);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "gather_dim: an index is out of range");
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* 1 when every q[i] (i < len) is in [0, n), else 0: the bounds check of gather/scatter's
 * indices in one pass (a negative index is a huge one as unsigned: no wrap-around, as torch) */
static CLONES int
ints_in_range(const int64_t *restrict q, Py_ssize_t len, uint64_t n)
{
    uint64_t bad = 0;
    for (Py_ssize_t i = 0; i < len; i++)
        bad |= (uint64_t)q[i] >= n;
    return !bad;
}

/* index_in_range(idx, n): True when every element of the C-contiguous int64 array idx is in
 * [0, n) */
static PyObject *
index_in_range(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    void *pi;
    Py_ssize_t li;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected index_in_range(idx, n)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (int_buf(&b, args[0], 0, 8, &pi, &li) < 0) {
        bufs_release(&b);
        return NULL;
    }
    int ok = n > 0 ? ints_in_range(pi, li, (uint64_t)n) : li == 0;
    bufs_release(&b);
    return PyBool_FromLong(ok);
}

static PyObject *
im2col_cn(PyObject *module, PyObject *args)
{
    return conv_cn(args, 0);
}

static PyObject *
col2im_cn(PyObject *module, PyObject *args)
{
    return conv_cn(args, 1);
}

/* ---- convolution columns in pixel-major order, from channels-last images ------------------
 * For x (N, H, W, C) the columns of every output pixel are one row of a (N·OH·OW) × (kh·kw·C)
 * matrix (the transpose of im2col_cn's, taps ordered (i, j, c)):
 *   im2col_nhwc: cols[n, oy, ox, i, j, c] = x[n, oy·sh - pt + i·dh, ox·sw - pl + j·dw, c]
 *                (0 in the padding): each window row a run of kw·C values (C when dw > 1);
 *   col2im_nhwc: its adjoint, out (N, H, W, C) written whole: each row's runs added back.
 * ``g.planes`` is N here, ``chans`` C. Rows n0 .. n0 + rows of the batch: cols holds only
 * those images' rows (the caller's chunk), x / out the whole batch. */
static inline void
nhwc_taps(const PoolGeom *g, Py_ssize_t ox, Py_ssize_t *jlo, Py_ssize_t *jhi, Py_ssize_t *x0)
{
    Py_ssize_t base = ox * g->sw - g->pl, lo = 0, hi = g->kw;
    while (lo < hi && base + lo * g->dw < 0)
        lo++;
    while (hi > lo && base + (hi - 1) * g->dw >= g->w)
        hi--;
    *jlo = lo;
    *jhi = hi;
    *x0 = base;
}

#define DEFINE_NHWC(T, S)                                                                  \
    static CLONES void im2col_nhwc_##S(const T *restrict x, T *restrict cols,              \
                                       const PoolGeom *gp, Py_ssize_t chans,               \
                                       Py_ssize_t n0, Py_ssize_t rows)                     \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        const Py_ssize_t C = chans, run = g.kw * C, K = g.kh * run;                        \
        T *restrict d = cols;                                                              \
        for (Py_ssize_t n = n0; n < n0 + rows; n++)                                        \
            for (Py_ssize_t oy = 0; oy < g.oh; oy++)                                       \
                for (Py_ssize_t ox = 0; ox < g.ow; ox++, d += K) {                         \
                    Py_ssize_t jlo, jhi, x0;                                               \
                    nhwc_taps(&g, ox, &jlo, &jhi, &x0);                                    \
                    for (Py_ssize_t i = 0; i < g.kh; i++) {                                \
                        T *restrict r = d + i * run;                                       \
                        Py_ssize_t yy = oy * g.sh - g.pt + i * g.dh;                       \
                        if (yy < 0 || yy >= g.h || jlo >= jhi) {                           \
                            memset(r, 0, (size_t)run * sizeof(T));                         \
                            continue;                                                      \
                        }                                                                  \
                        const T *src = x + ((n * g.h + yy) * g.w + x0) * C;                \
                        if (jlo)                                                           \
                            memset(r, 0, (size_t)(jlo * C) * sizeof(T));                   \
                        if (g.dw == 1)                                                     \
                            memcpy(r + jlo * C, src + jlo * C,                             \
                                   (size_t)((jhi - jlo) * C) * sizeof(T));                 \
                        else                                                               \
                            for (Py_ssize_t j = jlo; j < jhi; j++)                         \
                                memcpy(r + j * C, src + j * g.dw * C, (size_t)C * sizeof(T)); \
                        if (jhi < g.kw)                                                    \
                            memset(r + jhi * C, 0, (size_t)((g.kw - jhi) * C) * sizeof(T)); \
                    }                                                                      \
                }                                                                          \
    }                                                                                      \
    static CLONES void col2im_nhwc_##S(const T *restrict cols, T *restrict out,            \
                                       const PoolGeom *gp, Py_ssize_t chans,               \
                                       Py_ssize_t n0, Py_ssize_t rows)                     \
    {                                                                                      \
        const PoolGeom g = *gp;                                                            \
        const Py_ssize_t C = chans, run = g.kw * C, K = g.kh * run;                        \
        const T *restrict s = cols;                                                        \
        memset(out + n0 * g.h * g.w * C, 0, (size_t)(rows * g.h * g.w * C) * sizeof(T));   \
        for (Py_ssize_t n = n0; n < n0 + rows; n++)                                        \
            for (Py_ssize_t oy = 0; oy < g.oh; oy++)                                       \
                for (Py_ssize_t ox = 0; ox < g.ow; ox++, s += K) {                         \
                    Py_ssize_t jlo, jhi, x0;                                               \
                    nhwc_taps(&g, ox, &jlo, &jhi, &x0);                                    \
                    for (Py_ssize_t i = 0; i < g.kh; i++) {                                \
                        Py_ssize_t yy = oy * g.sh - g.pt + i * g.dh;                       \
                        if (yy < 0 || yy >= g.h)                                           \
                            continue;                                                      \
                        const T *restrict r = s + i * run;                                 \
                        T *restrict dst = out + ((n * g.h + yy) * g.w + x0) * C;           \
                        if (g.dw == 1) {                                                   \
                            for (Py_ssize_t k = jlo * C; k < jhi * C; k++)                 \
                                dst[k] += r[k];                                            \
                        } else                                                             \
                            for (Py_ssize_t j = jlo; j < jhi; j++)                         \
                                for (Py_ssize_t c = 0; c < C; c++)                         \
                                    dst[j * g.dw * C + c] += r[j * C + c];                 \
                    }                                                                      \
                }                                                                          \
    }
DEFINE_NHWC(float, f)
DEFINE_NHWC(double, d)

/* im2col_nhwc(x, cols, chans, batch, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, n0, rows) and
 * col2im_nhwc(cols, out, ...): x / out (N, H, W, C), cols (rows, OH, OW, kh, kw, C) for the
 * images n0 .. n0 + rows */
static PyObject *
conv_nhwc(PyObject *args, int adjoint)
{
    PyObject *ain, *aout;
    Py_ssize_t chans, n0, rows;
    PoolGeom g;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnnnnnnnn", &ain, &aout, &chans, POOL_FIELDS(g),
                          &n0, &rows))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pin, *pout;
    Py_ssize_t lin, lout;
    if (buf(&b, ain, 0, 0, &fmt, &pin, &lin) < 0 || buf(&b, aout, 1, 0, &fmt, &pout, &lout) < 0)
        goto fail;
    Py_ssize_t lx = adjoint ? lout : lin, lc = adjoint ? lin : lout;
    if (chans <= 0 || g.planes < 0 || g.h < 0 || g.w < 0 || g.kh <= 0 || g.kw <= 0 || g.sh <= 0
        || g.sw <= 0 || g.dh <= 0 || g.dw <= 0 || g.oh < 0 || g.ow < 0 || n0 < 0 || rows < 0
        || n0 + rows > g.planes || lx != g.planes * g.h * g.w * chans
        || lc != rows * g.oh * g.ow * g.kh * g.kw * chans) {
        PyErr_SetString(PyExc_ValueError, adjoint ? "col2im_nhwc: sizes do not match the geometry"
                                                  : "im2col_nhwc: sizes do not match the geometry");
        goto fail;
    }
    if (adjoint)
        RUN_TYPED_AND_RETURN(b, fmt, col2im_nhwc, pin, pout, &g, chans, n0, rows);
    RUN_TYPED_AND_RETURN(b, fmt, im2col_nhwc, pin, pout, &g, chans, n0, rows);
fail:
    bufs_release(&b);
    return NULL;
}

/* planes_transpose(src, dst, batch, rows, cols): dst[b, j, i] = src[b, i, j], in tiles that stay
 * in L1 (the (N, C, H·W) <-> (N, H·W, C) copies around the pixel-major convolutions: NumPy's
 * strided copy takes ~3x as long for a few channels) */
#define PT_ROWS 32
#define PT_COLS 64
#define DEFINE_PLANES_TRANSPOSE(T, S)                                                      \
    static CLONES void planes_transpose_tiles_##S(const T *restrict s, T *restrict d,      \
                                                  Py_ssize_t rows, Py_ssize_t cols,        \
                                                  Py_ssize_t i0, Py_ssize_t j0)            \
    {                                                                                      \
        for (; i0 < rows; i0 += PT_ROWS) {                                                 \
            Py_ssize_t i1 = i0 + PT_ROWS < rows ? i0 + PT_ROWS : rows;                     \
            for (Py_ssize_t jb = j0; jb < cols; jb += PT_COLS) {                           \
                Py_ssize_t j1 = jb + PT_COLS < cols ? jb + PT_COLS : cols;                 \
                T tile[PT_COLS][PT_ROWS]; /* each source line read once (rows whose       \
                                             stride is 4 KB share an L1 set) */           \
                for (Py_ssize_t i = i0; i < i1; i++)                                       \
                    for (Py_ssize_t j = jb; j < j1; j++)                                   \
                        tile[j - jb][i - i0] = s[i * cols + j];                            \
                for (Py_ssize_t j = jb; j < j1; j++)                                       \
                    for (Py_ssize_t i = i0; i < i1; i++)                                   \
                        d[j * rows + i] = tile[j - jb][i - i0];                            \
            }                                                                              \
        }                                                                                  \
    }
DEFINE_PLANES_TRANSPOSE(float, f)
DEFINE_PLANES_TRANSPOSE(double, d)

/* float: 8 × 8 blocks transposed in registers (three rounds of two-vector shuffles: the
 * unpack / shuffle / 128-bit-lane permutes of AVX), the ragged edges by the tiles above */
typedef float pt_v8f __attribute__((vector_size(32)));
typedef int pt_v8i __attribute__((vector_size(32)));
#define PT_SHUF(a, b, ...) __builtin_shuffle(a, b, (pt_v8i){__VA_ARGS__})

static inline __attribute__((always_inline)) void
pt_block8(const float *restrict s, float *restrict d, Py_ssize_t rows, Py_ssize_t cols,
          Py_ssize_t i0, Py_ssize_t j0)
{
    pt_v8f r[8], t[8], u[8];
    for (int k = 0; k < 8; k++)
        memcpy(&r[k], s + (i0 + k) * cols + j0, sizeof(pt_v8f));
    for (int k = 0; k < 8; k += 2) {
        t[k] = PT_SHUF(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[k + 1] = PT_SHUF(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = PT_SHUF(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[k + 1] = PT_SHUF(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[k + 2] = PT_SHUF(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[k + 3] = PT_SHUF(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int k = 0; k < 4; k++) {
        pt_v8f lo = PT_SHUF(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        pt_v8f hi = PT_SHUF(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(d + (j0 + k) * rows + i0, &lo, sizeof(pt_v8f));
        memcpy(d + (j0 + k + 4) * rows + i0, &hi, sizeof(pt_v8f));
    }
}

static CLONES void
planes_transpose_f(const float *restrict src, float *restrict dst, Py_ssize_t batch,
                   Py_ssize_t rows, Py_ssize_t cols)
{
    Py_ssize_t r8 = rows & ~(Py_ssize_t)7, c8 = cols & ~(Py_ssize_t)7;
    for (Py_ssize_t b = 0; b < batch; b++) {
        const float *restrict s = src + b * rows * cols;
        float *restrict d = dst + b * rows * cols;
        if (rows < 8) { /* a few rows: read side by side, written in order */
            for (Py_ssize_t j = 0; j < cols; j++)
                for (Py_ssize_t i = 0; i < rows; i++)
                    d[j * rows + i] = s[i * cols + j];
            continue;
        }
        /* blocks along the longer side in the inner loop: the 8 rows written (or read) at
         * once advance together instead of jumping by a row of the other side */
        if (cols <= rows)
            for (Py_ssize_t j0 = 0; j0 < c8; j0 += 8)
                for (Py_ssize_t i0 = 0; i0 < r8; i0 += 8)
                    pt_block8(s, d, rows, cols, i0, j0);
        else
            for (Py_ssize_t i0 = 0; i0 < r8; i0 += 8)
                for (Py_ssize_t j0 = 0; j0 < c8; j0 += 8)
                    pt_block8(s, d, rows, cols, i0, j0);
        if (c8 < cols) /* the last columns of every row */
            for (Py_ssize_t i = 0; i < r8; i++)
                for (Py_ssize_t j = c8; j < cols; j++)
                    d[j * rows + i] = s[i * cols + j];
        planes_transpose_tiles_f(s, d, rows, cols, r8, 0); /* the last rows */
    }
}

static void
planes_transpose_d(const double *restrict src, double *restrict dst, Py_ssize_t batch,
                   Py_ssize_t rows, Py_ssize_t cols)
{
    for (Py_ssize_t b = 0; b < batch; b++)
        planes_transpose_tiles_d(src + b * rows * cols, dst + b * rows * cols, rows, cols, 0, 0);
}

static PyObject *
planes_transpose(PyObject *module, PyObject *args)
{
    PyObject *ain, *aout;
    Py_ssize_t batch, rows, cols;
    if (!PyArg_ParseTuple(args, "OOnnn", &ain, &aout, &batch, &rows, &cols))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pin, *pout;
    Py_ssize_t lin, lout;
    if (buf(&b, ain, 0, 0, &fmt, &pin, &lin) < 0 || buf(&b, aout, 1, 0, &fmt, &pout, &lout) < 0)
        goto fail;
    if (batch < 0 || rows < 0 || cols < 0 || lin != lout || lin != batch * rows * cols) {
        PyErr_SetString(PyExc_ValueError, "planes_transpose: sizes do not match");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, planes_transpose, pin, pout, batch, rows, cols);
fail:
    bufs_release(&b);
    return NULL;
}

static PyObject *
im2col_nhwc(PyObject *module, PyObject *args)
{
    return conv_nhwc(args, 0);
}

static PyObject *
col2im_nhwc(PyObject *module, PyObject *args)
{
    return conv_nhwc(args, 1);
}

/* ---- batch norm over (N, C, S) and leaky ReLU ---------------------------------------------
 * batch_norm_stats: per channel c over its N planes of S elements, in double,
 *     mean = Σx / (N·S),  var = Σ(x - mean)² / (N·S),  rstd = 1/√(var + eps),
 *     xhat = (x - mean)·rstd;  mean and var (biased) are returned per channel for the running
 *     statistics;
 * channel_affine: y = xhat·w[c] + b[c] (w, b may be None);
 * batch_norm_backward: with Σg and Σg·x̂ per channel (double), gw = Σg·x̂, gb = Σg,
 *     gx = w·rstd·(g - Σg/(N·S) - x̂·Σg·x̂/(N·S))  (w None: 1; gx None: not wanted);
 * leaky_relu: y = x > 0 ? x : x·slope;  leaky_relu_backward: gx = x > 0 ? g : g·slope.
 */
#define DEFINE_BATCH_NORM(T, S)                                                            \
    static CLONES void bn_stats_##S(const T *restrict x, T *restrict xh, T *restrict mean, \
                                    T *restrict var, T *restrict rstd, double eps,         \
                                    Py_ssize_t n, Py_ssize_t c, Py_ssize_t sp)             \
    {                                                                                      \
        double count = (double)n * sp;                                                     \
        for (Py_ssize_t ch = 0; ch < c; ch++) {                                            \
            double s = 0, q = 0;                                                           \
            for (Py_ssize_t i = 0; i < n; i++)                                             \
                s += sum_##S(x + (i * c + ch) * sp, sp);                                   \
            double m = s / count;                                                          \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                const T *restrict a = x + (i * c + ch) * sp;                               \
                double acc[8] = {0};                                                       \
                Py_ssize_t j = 0;                                                          \
                for (; j + 8 <= sp; j += 8)                                                \
                    for (int k = 0; k < 8; k++) {                                          \
                        double d = (double)a[j + k] - m;                                   \
                        acc[k] += d * d;                                                   \
                    }                                                                      \
                for (; j < sp; j++)                                                        \
                    acc[0] += ((double)a[j] - m) * ((double)a[j] - m);                     \
                q += ((acc[0] + acc[1]) + (acc[2] + acc[3])) +                             \
                     ((acc[4] + acc[5]) + (acc[6] + acc[7]));                              \
            }                                                                              \
            double v = q / count;                                                          \
            T r = (T)(1.0 / sqrt(v + eps)), mt = (T)m;                                     \
            mean[ch] = mt;                                                                 \
            var[ch] = (T)v;                                                                \
            rstd[ch] = r;                                                                  \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                const T *restrict a = x + (i * c + ch) * sp;                               \
                T *restrict o = xh + (i * c + ch) * sp;                                    \
                for (Py_ssize_t j = 0; j < sp; j++)                                        \
                    o[j] = (a[j] - mt) * r;                                                \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    static CLONES void channel_affine_##S(const T *restrict xh, const T *restrict w,       \
                                          const T *restrict b, T *restrict y, Py_ssize_t n, \
                                          Py_ssize_t c, Py_ssize_t sp)                     \
    {                                                                                      \
        for (Py_ssize_t p = 0; p < n * c; p++) {                                           \
            T wc = w ? w[p % c] : (T)1, bc = b ? b[p % c] : (T)0;                          \
            const T *restrict a = xh + p * sp;                                             \
            T *restrict o = y + p * sp;                                                    \
            if (w)                                                                         \
                for (Py_ssize_t j = 0; j < sp; j++)                                        \
                    o[j] = a[j] * wc + bc;                                                 \
            else                                                                           \
                for (Py_ssize_t j = 0; j < sp; j++)                                        \
                    o[j] = a[j] + bc;                                                      \
        }                                                                                  \
    }                                                                                      \
    static CLONES void bn_backward_##S(const T *restrict g, const T *restrict xh,          \
                                       const T *restrict w, const T *restrict rstd,        \
                                       T *restrict gx, T *restrict gw, T *restrict gb,     \
                                       Py_ssize_t n, Py_ssize_t c, Py_ssize_t sp)          \
    {                                                                                      \
        double count = (double)n * sp;                                                     \
        for (Py_ssize_t ch = 0; ch < c; ch++) {                                            \
            double sg = 0, sgx = 0;                                                        \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                Py_ssize_t off = (i * c + ch) * sp;                                        \
                sg += sum_##S(g + off, sp);                                                \
                sgx += dot_##S(g + off, xh + off, sp);                                     \
            }                                                                              \
            if (gw)                                                                        \
                gw[ch] = (T)sgx;                                                           \
            if (gb)                                                                        \
                gb[ch] = (T)sg;                                                            \
            if (!gx)                                                                       \
                continue;                                                                  \
            T scale = (T)((w ? (double)w[ch] : 1.0) * rstd[ch]);                           \
            T m1 = (T)(sg / count), m2 = (T)(sgx / count);                                 \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                Py_ssize_t off = (i * c + ch) * sp;                                        \
                const T *restrict a = g + off, *restrict h = xh + off;                     \
                T *restrict o = gx + off;                                                  \
                for (Py_ssize_t j = 0; j < sp; j++)                                        \
                    o[j] = (a[j] - m1 - h[j] * m2) * scale;                                \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    static CLONES void leaky_fwd_##S(const T *x, T *y, T slope, Py_ssize_t n)              \
    { /* y may be x (leaky_relu_ writes over its input: no restrict) */                    \
        for (Py_ssize_t i = 0; i < n; i++)                                                 \
            y[i] = x[i] > 0 ? x[i] : x[i] * slope;                                         \
    }                                                                                      \
    static CLONES void leaky_bwd_##S(const T *restrict g, const T *restrict x,             \
                                     T *restrict o, T slope, Py_ssize_t n)                 \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++)                                                 \
            o[i] = x[i] > 0 ? g[i] : g[i] * slope;                                         \
    }
DEFINE_BATCH_NORM(float, f)
DEFINE_BATCH_NORM(double, d)

/* batch_norm_stats(x, xhat, mean, var, rstd, eps, n, c):  x, xhat (n, c, S); the others (c,) */
static PyObject *
batch_norm_stats(PyObject *module, PyObject *args)
{
    PyObject *ax, *axh, *am, *av, *ar;
    double eps;
    Py_ssize_t n, c;
    if (!PyArg_ParseTuple(args, "OOOOOdnn", &ax, &axh, &am, &av, &ar, &eps, &n, &c))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *pxh, *pm, *pv, *pr;
    Py_ssize_t lx, lxh, lm, lv, lr;
    if (buf(&b, ax, 0, 0, &fmt, &px, &lx) < 0 || buf(&b, axh, 1, 0, &fmt, &pxh, &lxh) < 0
        || buf(&b, am, 1, 0, &fmt, &pm, &lm) < 0 || buf(&b, av, 1, 0, &fmt, &pv, &lv) < 0
        || buf(&b, ar, 1, 0, &fmt, &pr, &lr) < 0)
        goto fail;
    if (n <= 0 || c <= 0 || lx % (n * c) || lxh != lx || lm != c || lv != c || lr != c) {
        PyErr_SetString(PyExc_ValueError, "batch_norm_stats: sizes do not match");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, bn_stats, px, pxh, pm, pv, pr, eps, n, c, lx / (n * c));
fail:
    bufs_release(&b);
    return NULL;
}

/* channel_affine(xhat, w, b, y, n, c): w, b (c,) or None */
static PyObject *
channel_affine(PyObject *module, PyObject *args)
{
    PyObject *axh, *aw, *ab, *ay;
    Py_ssize_t n, c;
    if (!PyArg_ParseTuple(args, "OOOOnn", &axh, &aw, &ab, &ay, &n, &c))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pxh, *pw, *pb, *py;
    Py_ssize_t lxh, lw = 0, lb = 0, ly;
    if (buf(&b, axh, 0, 0, &fmt, &pxh, &lxh) < 0 || buf(&b, aw, 0, 1, &fmt, &pw, &lw) < 0
        || buf(&b, ab, 0, 1, &fmt, &pb, &lb) < 0 || buf(&b, ay, 1, 0, &fmt, &py, &ly) < 0)
        goto fail;
    if (n <= 0 || c <= 0 || lxh % (n * c) || ly != lxh || (pw && lw != c) || (pb && lb != c)) {
        PyErr_SetString(PyExc_ValueError, "channel_affine: sizes do not match");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, channel_affine, pxh, pw, pb, py, n, c, lxh / (n * c));
fail:
    bufs_release(&b);
    return NULL;
}

/* batch_norm_backward(g, xhat, w, rstd, gx, gw, gb, n, c): w, gx, gw, gb may be None */
static PyObject *
batch_norm_backward(PyObject *module, PyObject *args)
{
    PyObject *ag, *axh, *aw, *ar, *agx, *agw, *agb;
    Py_ssize_t n, c;
    if (!PyArg_ParseTuple(args, "OOOOOOOnn", &ag, &axh, &aw, &ar, &agx, &agw, &agb, &n, &c))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pg, *pxh, *pw, *pr, *pgx, *pgw, *pgb;
    Py_ssize_t lg, lxh, lw = 0, lr, lgx = 0, lgw = 0, lgb = 0;
    if (buf(&b, ag, 0, 0, &fmt, &pg, &lg) < 0 || buf(&b, axh, 0, 0, &fmt, &pxh, &lxh) < 0
        || buf(&b, aw, 0, 1, &fmt, &pw, &lw) < 0 || buf(&b, ar, 0, 0, &fmt, &pr, &lr) < 0
        || buf(&b, agx, 1, 1, &fmt, &pgx, &lgx) < 0 || buf(&b, agw, 1, 1, &fmt, &pgw, &lgw) < 0
        || buf(&b, agb, 1, 1, &fmt, &pgb, &lgb) < 0)
        goto fail;
    if (n <= 0 || c <= 0 || lg % (n * c) || lxh != lg || lr != c || (pw && lw != c)
        || (pgx && lgx != lg) || (pgw && lgw != c) || (pgb && lgb != c)) {
        PyErr_SetString(PyExc_ValueError, "batch_norm_backward: sizes do not match");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, bn_backward, pg, pxh, pw, pr, pgx, pgw, pgb, n, c,
                         lg / (n * c));
fail:
    bufs_release(&b);
    return NULL;
}

/* leaky_relu(x, out, slope) and leaky_relu_backward(g, x, out, slope) */
static PyObject *
leaky_relu(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2];
    Py_ssize_t n = 0;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected leaky_relu(x, out, slope)");
        return NULL;
    }
    double slope = PyFloat_AsDouble(args[2]);
    if (slope == -1 && PyErr_Occurred())
        return NULL;
    if (same_size_bufs(&b, args, 2, 2, 1, 0, "leaky_relu(x, out, slope)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, leaky_fwd, p[0], p[1], slope, n); /* slope in x's dtype */
}

static PyObject *
leaky_relu_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t n = 0;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "expected leaky_relu_backward(g, x, out, slope)");
        return NULL;
    }
    double slope = PyFloat_AsDouble(args[3]);
    if (slope == -1 && PyErr_Occurred())
        return NULL;
    if (same_size_bufs(&b, args, 3, 3, 2, 0, "leaky_relu_backward(g, x, out, slope)", &fmt, p,
                       &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, leaky_bwd, p[0], p[1], p[2], slope, n);
}

/* tanh_backward(g, y, out): out = g·(1 - y·y), y tanh's output (NumPy's g * (1 - y * y): the
 * same roundings, one pass instead of three and no temporaries) */
#define DEFINE_TANH_BWD(T, S)                                                              \
    static CLONES NO_FMA void tanh_bwd_##S(const T *restrict g, const T *restrict y,       \
                                    T *restrict o, Py_ssize_t n)                           \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            T yy = y[i] * y[i];                                                            \
            T d = (T)1 - yy;                                                               \
            o[i] = g[i] * d;                                                               \
        }                                                                                  \
    }
DEFINE_TANH_BWD(float, f)
DEFINE_TANH_BWD(double, d)

static PyObject *
tanh_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t n = 0;
    if (same_size_bufs(&b, args, nargs, 3, 2, 0, "tanh_backward(g, y, out)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    RUN_TYPED_AND_RETURN(b, fmt, tanh_bwd, p[0], p[1], p[2], n);
}

/* ---- Adam's update in one pass (optim/adam.py's _update, in its order and roundings) ----------
 * Per element, in the arrays' dtype, each scalar rounded to it as NumPy rounds a Python float,
 * no fused multiply-adds:  (AdamW: p·(1 - lr·wd));  d = ±g (+ wd·p, coupled decay);
 * m = lerp(m, d, 1 - β₁) as PyTorch rounds it;  v = v·β₂ + (d·(1 - β₂))·d;  (amsgrad:
 * vmax = max(vmax, v), NaN first, and v = vmax);  p -= (m·step) / (√v / √(1-β₂ᵗ) + ε). */
/* The common case (no decay, no maximize, no amsgrad: DCGAN's) 8 float32 / 4 float64 at a time in AVX
 * (the C library's √ is not vectorized while it may set errno); AVX has no FMA: the same
 * roundings as the element loop. Returns the elements done. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define DEFINE_ADAM_AVX(T, S, V, X, L)                                                         \
    __attribute__((target("avx"))) static Py_ssize_t adam_avx_##S(                            \
        T *p, const T *g, T *m, T *v, Py_ssize_t n, int near, T tw, T tomb2, T tb2, T tbc2,   \
        T teps, T tss)                                                                         \
    {                                                                                          \
        V w = _mm256_set1_##X(tw), omb2 = _mm256_set1_##X(tomb2), b2 = _mm256_set1_##X(tb2);  \
        V bc2 = _mm256_set1_##X(tbc2), eps = _mm256_set1_##X(teps), ss = _mm256_set1_##X(tss); \
        Py_ssize_t i = 0;                                                                      \
        for (; i + L <= n; i += L) {                                                           \
            V d = _mm256_loadu_##X(g + i), mo = _mm256_loadu_##X(m + i);                       \
            V tt = _mm256_mul_##X(_mm256_sub_##X(d, mo), w);                                   \
            V mm = near ? _mm256_add_##X(mo, tt) : _mm256_sub_##X(d, tt);                      \
            V q = _mm256_mul_##X(d, omb2);                                                     \
            V vv = _mm256_add_##X(_mm256_mul_##X(_mm256_loadu_##X(v + i), b2),                 \
                                  _mm256_mul_##X(q, d));                                       \
            V den = _mm256_add_##X(_mm256_div_##X(_mm256_sqrt_##X(vv), bc2), eps);             \
            _mm256_storeu_##X(m + i, mm);                                                      \
            _mm256_storeu_##X(v + i, vv);                                                      \
            _mm256_storeu_##X(p + i, _mm256_sub_##X(_mm256_loadu_##X(p + i),                   \
                                                    _mm256_div_##X(_mm256_mul_##X(mm, ss),     \
                                                                   den)));                     \
        }                                                                                      \
        return i;                                                                              \
    }
DEFINE_ADAM_AVX(float, f, __m256, ps, 8)
DEFINE_ADAM_AVX(double, d, __m256d, pd, 4)
#define ADAM_VECTOR(S, ...) (__builtin_cpu_supports("avx") ? adam_avx_##S(__VA_ARGS__) : 0)
#else
#define ADAM_VECTOR(S, ...) 0
#endif
#define DEFINE_ADAM(T, S, SQRT)                                                                \
    CLONES NO_FMA static void adam_##S(T *restrict p, const T *restrict g, T *restrict m,     \
                                       T *restrict v, T *restrict vmax, Py_ssize_t n,         \
                                       double lr, double b1, double b2, double eps, double wd, \
                                       double step_size, double bc2, int flags)               \
    {                                                                                          \
        double w = 1 - b1;                                                                     \
        int near = fabs(w) < 0.5, decoupled = flags & 2, maximize = flags & 1;                 \
        T tw = (T)(near ? w : 1 - w), tb2 = (T)b2, tomb2 = (T)(1 - b2), tbc2 = (T)bc2;         \
        T teps = (T)eps, tss = (T)step_size, shrink = (T)(1 - lr * wd), twd = (T)wd;           \
        if (!vmax && !maximize && wd == 0) { /* the common case */                            \
            Py_ssize_t i = ADAM_VECTOR(S, p, g, m, v, n, near, tw, tomb2, tb2, tbc2, teps, tss); \
            for (; i < n; i++) {                                                               \
                T d = g[i], t = d - m[i];                                                      \
                T mm = near ? m[i] + t * tw : d - t * tw;                                      \
                T q = d * tomb2;                                                               \
                T vv = v[i] * tb2 + q * d;                                                     \
                T den = SQRT(vv) / tbc2 + teps;                                                \
                m[i] = mm;                                                                     \
                v[i] = vv;                                                                     \
                p[i] = p[i] - (mm * tss) / den;                                                \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                                   \
            if (decoupled && wd != 0)                                                          \
                p[i] = p[i] * shrink;                                                          \
            T d = g[i];                                                                        \
            if (!decoupled && wd != 0) {                                                       \
                T t = p[i] * twd;                                                              \
                d = maximize ? t - d : t + d;                                                  \
            } else if (maximize)                                                               \
                d = -d;                                                                        \
            T t = d - m[i];                                                                    \
            T mm = near ? m[i] + t * tw : d - t * tw;                                          \
            T q = d * tomb2;                                                                   \
            T vv = v[i] * tb2 + q * d;                                                         \
            v[i] = vv;                                                                         \
            if (vmax) {                                                                        \
                T a = vmax[i];                                                                 \
                vv = (a != a || a >= vv) ? a : vv;                                             \
                vmax[i] = vv;                                                                  \
            }                                                                                  \
            T den = SQRT(vv) / tbc2 + teps;                                                    \
            m[i] = mm;                                                                         \
            p[i] = p[i] - (mm * tss) / den;                                                    \
        }                                                                                      \
    }
DEFINE_ADAM(float, f, sqrtf)
DEFINE_ADAM(double, d, sqrt)

/* adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt,
 * flags): p, m, v (and vmax, or None) updated in place; flags: 1 maximize, 2 decoupled */
static PyObject *
adam_step(PyObject *module, PyObject *args)
{
    PyObject *ap, *ag, *am, *av, *avm;
    double lr, b1, b2, eps, wd, step_size, bc2;
    int flags;
    if (!PyArg_ParseTuple(args, "OOOOOdddddddi", &ap, &ag, &am, &av, &avm, &lr, &b1, &b2, &eps,
                          &wd, &step_size, &bc2, &flags))
        return NULL;
    Bufs b = {.n = 0};
    char fmt = 0;
    void *pp, *pg, *pm, *pv, *pvm;
    Py_ssize_t lp, lg, lm, lv, lvm = 0;
    if (buf(&b, ap, 1, 0, &fmt, &pp, &lp) < 0 || buf(&b, ag, 0, 0, &fmt, &pg, &lg) < 0
        || buf(&b, am, 1, 0, &fmt, &pm, &lm) < 0 || buf(&b, av, 1, 0, &fmt, &pv, &lv) < 0
        || buf(&b, avm, 1, 1, &fmt, &pvm, &lvm) < 0)
        goto fail;
    if (lg != lp || lm != lp || lv != lp || (pvm && lvm != lp)) {
        PyErr_SetString(PyExc_ValueError, "adam_step: sizes differ");
        goto fail;
    }
    RUN_TYPED_AND_RETURN(b, fmt, adam, pp, pg, pm, pv, pvm, lp, lr, b1, b2, eps, wd, step_size,
                         bc2, flags);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- cross-entropy over rows of class scores (ops16c) ----------------------------------------
 * Forward without the softmax: each row's max m and s = Σ e^(x - m) in lanes, lse = m + ln s,
 * the loss ln s - (x[t] - m); backward (e^(x - lse) - onehot(t))·g per row. */
#define CE_SHORT 128 /* rows up to this long go 16 (LANES) rows at a time, a row per lane */
#if defined(__GNUC__)
#define CE_INLINE static inline __attribute__((always_inline)) /* into each clone */
#else
#define CE_INLINE static inline
#endif
#define DEFINE_CE(T, suffix)                                                                  \
    /* a row's max m and Σ e^(x - m), in lanes along the row */                              \
    CE_INLINE void ce_long_row_##suffix(const T *xr, Py_ssize_t n, T *pm, double *ps)     \
    {                                                                                         \
        LANES_DECL(T, suffix, mx);                                                            \
        for (int k = 0; k < LANES; k++)                                                       \
            mx[k] = xr[0];                                                                    \
        Py_ssize_t j = 0;                                                                     \
        for (; j + LANES <= n; j += LANES)                                                    \
            LANES_MAX(T, suffix, mx, xr + j);                                                 \
        T pad[LANES];                                                                         \
        if (j < n) {                                                                          \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = j + k < n ? xr[j + k] : xr[0];                                       \
            LANES_MAX(T, suffix, mx, pad);                                                    \
        }                                                                                     \
        T m = mx[0];                                                                          \
        for (int k = 1; k < LANES; k++)                                                       \
            m = mx[k] > m ? mx[k] : m;                                                        \
        double s = 0;                                                                         \
        T acc[LANES] = {0};                                                                   \
        for (j = 0; j + LANES <= n; j += LANES) {                                             \
            for (int k = 0; k < LANES; k++)                                                   \
                acc[k] += exp_##suffix(xr[j + k] - m);                                        \
            if ((j + LANES) % SUM_BLOCK == 0) { /* blocks' totals in double */                \
                for (int k = 0; k < LANES; k++) {                                             \
                    s += acc[k];                                                              \
                    acc[k] = 0;                                                               \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        if (j < n) { /* the tail, padded with m, whose e^0 are left out */                   \
            for (int k = 0; k < LANES; k++)                                                   \
                pad[k] = j + k < n ? xr[j + k] : m;                                           \
            for (int k = 0; k < LANES; k++) {                                                 \
                T e = exp_##suffix(pad[k] - m);                                               \
                acc[k] += j + k < n ? e : (T)0;                                               \
            }                                                                                 \
        }                                                                                     \
        for (int w = LANES / 2; w > 0; w /= 2)                                                \
            for (int k = 0; k < w; k++)                                                       \
                acc[k] += acc[k + w];                                                         \
        *pm = m;                                                                              \
        *ps = s + acc[0];                                                                     \
    }                                                                                         \
    /* the max m and Σ e^(x - m) of rows r0 .. r0 + nr - 1 (nr <= LANES, n <= CE_SHORT): the \
     * rows transposed into lanes (the last row repeated), then whole-lane passes */         \
    CE_INLINE void ce_short_rows_##suffix(const T *x, Py_ssize_t nr, Py_ssize_t n,        \
                                              T *pm, double *ps)                              \
    {                                                                                         \
        T tr[CE_SHORT * LANES];                                                               \
        for (int k = 0; k < LANES; k++) {                                                     \
            const T *xr = x + (k < nr ? k : nr - 1) * n;                                      \
            for (Py_ssize_t j = 0; j < n; j++)                                                \
                tr[j * LANES + k] = xr[j];                                                    \
        }                                                                                     \
        LANES_DECL(T, suffix, mx);                                                            \
        for (int k = 0; k < LANES; k++)                                                       \
            mx[k] = tr[k];                                                                    \
        for (Py_ssize_t j = 1; j < n; j++)                                                    \
            LANES_MAX(T, suffix, mx, tr + j * LANES);                                         \
        T m[LANES], acc[LANES] = {0};                                                         \
        for (int k = 0; k < LANES; k++)                                                       \
            m[k] = mx[k];                                                                     \
        for (Py_ssize_t j = 0; j < n; j++)                                                    \
            for (int k = 0; k < LANES; k++)                                                   \
                acc[k] += exp_##suffix(tr[j * LANES + k] - m[k]);                             \
        for (int k = 0; k < nr; k++) {                                                        \
            pm[k] = m[k];                                                                     \
            ps[k] = acc[k];                                                                   \
        }                                                                                     \
    }                                                                                         \
    CLONES static int ce_rows_##suffix(const T *x, const int64_t *t, int64_t ignore, T *lse,  \
                                       T *nll, T *out, int mode, Py_ssize_t rows,             \
                                       Py_ssize_t n)                                          \
    {                                                                                         \
        double total = 0;                                                                     \
        Py_ssize_t count = 0;                                                                 \
        int bad = 0;                                                                          \
        for (Py_ssize_t r0 = 0; r0 < rows; r0 += LANES) {                                     \
            Py_ssize_t nr = rows - r0 < LANES ? rows - r0 : LANES;                            \
            T ms[LANES];                                                                      \
            double ss[LANES];                                                                 \
            if (n <= CE_SHORT)                                                                \
                ce_short_rows_##suffix(x + r0 * n, nr, n, ms, ss);                            \
            else                                                                              \
                for (Py_ssize_t k = 0; k < nr; k++)                                           \
                    ce_long_row_##suffix(x + (r0 + k) * n, n, ms + k, ss + k);                \
            for (Py_ssize_t k = 0; k < nr; k++) {                                             \
                Py_ssize_t r = r0 + k;                                                        \
                T m = ms[k], ls = (T)log(ss[k]);                                              \
                lse[r] = m + ls;                                                              \
                int64_t c = t[r];                                                             \
                if (c == ignore) {                                                            \
                    nll[r] = 0;                                                               \
                    continue;                                                                 \
                }                                                                             \
                if (c < 0 || c >= n) {                                                        \
                    bad = 1;                                                                  \
                    nll[r] = 0;                                                               \
                    continue;                                                                 \
                }                                                                             \
                nll[r] = ls - (x[r * n + c] - m);                                             \
                total += nll[r];                                                              \
                count++;                                                                      \
            }                                                                                 \
        }                                                                                     \
        out[0] = (T)(mode == 2 ? total / (double)count : total);                              \
        out[1] = (T)count;                                                                    \
        return bad;                                                                           \
    }                                                                                         \
    CLONES static void ce_rows_backward_##suffix(const T *x, const T *lse, const int64_t *t,  \
                                                 int64_t ignore, const T *g, int per_row,     \
                                                 double scale, T *gx, Py_ssize_t rows,        \
                                                 Py_ssize_t n)                                \
    {                                                                                         \
        if (n >= 256) { /* long rows: one pass each */                                     \
            for (Py_ssize_t r = 0; r < rows; r++) {                                           \
                const T *xr = x + r * n;                                                      \
                T *o = gx + r * n;                                                            \
                int64_t c = t[r];                                                             \
                int skip = c == ignore || c < 0 || c >= n;                                    \
                T gr = skip ? (T)0 : (T)(g[per_row ? r : 0] * scale), l = lse[r];             \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    o[j] = exp_##suffix(xr[j] - l) * gr;                                      \
                if (!skip)                                                                    \
                    o[c] -= gr;                                                               \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        /* short rows: x - lse row by row, then e^ over the whole block (no per-row tails),    \
         * then ·g */                                                                         \
        Py_ssize_t block = 4096 / n;                                                          \
        for (Py_ssize_t r0 = 0; r0 < rows; r0 += block) {                                     \
            Py_ssize_t r1 = rows - r0 < block ? rows : r0 + block;                            \
            for (Py_ssize_t r = r0; r < r1; r++) {                                            \
                const T *xr = x + r * n;                                                      \
                T *o = gx + r * n, l = lse[r];                                                \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    o[j] = xr[j] - l;                                                         \
            }                                                                                 \
            T *o = gx + r0 * n;                                                               \
            for (Py_ssize_t i = 0; i < (r1 - r0) * n; i++)                                    \
                o[i] = exp_##suffix(o[i]);                                                    \
            for (Py_ssize_t r = r0; r < r1; r++) {                                            \
                T *o = gx + r * n;                                                            \
                int64_t c = t[r];                                                             \
                int skip = c == ignore || c < 0 || c >= n; /* ·0: NaN stays NaN, as torch */  \
                T gr = skip ? (T)0 : (T)(g[per_row ? r : 0] * scale);                         \
                for (Py_ssize_t j = 0; j < n; j++)                                            \
                    o[j] *= gr;                                                               \
                if (!skip)                                                                    \
                    o[c] -= gr;                                                               \
            }                                                                                 \
        }                                                                                     \
    }
DEFINE_CE(float, f)
DEFINE_CE(double, d)

/* the int64 buffer of array ``a`` (C-contiguous) */
static int
int64_buf(Bufs *b, PyObject *a, const int64_t **data, Py_ssize_t *len)
{
    Py_buffer *v = &b->v[b->n];
    if (PyObject_GetBuffer(a, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    b->n++;
    char f = v->format ? v->format[0] : 0;
    if (v->itemsize != 8 || (f != 'l' && f != 'q') || v->format[1] != 0) {
        PyErr_SetString(PyExc_TypeError, "expected an int64 array of targets");
        return -1;
    }
    *data = v->buf;
    *len = v->len / 8;
    return 0;
}

/* cross_entropy_rows(x, t, ignore, lse, nll, out, mode): for the rows of n = x.shape[1]
 * classes (n given by lse: rows = len(lse)), lse = ln Σ e^x per row, nll = lse - x[t] (0 where
 * t == ignore), out = [Σ nll (mode 1) or its mean over rows not ignored (mode 2), that count].
 * Returns True when every target not ignored is in [0, n), else False (those rows give 0). */
static PyObject *
cross_entropy_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *plse, *pnll, *pout;
    const int64_t *pt;
    Py_ssize_t len, lt, rows, lnll, lout;
    const char *usage = "cross_entropy_rows(x, t, ignore, lse, nll, out, mode)";
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return NULL;
    }
    long long ignore = PyLong_AsLongLong(args[2]);
    int mode = (int)PyLong_AsLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (buf(&b, args[0], 0, 0, &fmt, &px, &len) < 0 || int64_buf(&b, args[1], &pt, &lt) < 0
        || buf(&b, args[3], 1, 0, &fmt, &plse, &rows) < 0
        || buf(&b, args[4], 1, 0, &fmt, &pnll, &lnll) < 0
        || buf(&b, args[5], 1, 0, &fmt, &pout, &lout) < 0)
        goto fail;
    if (rows <= 0 || len % rows != 0 || len / rows <= 0 || lt != rows || lnll != rows
        || lout != 2) {
        PyErr_Format(PyExc_ValueError, "%s: sizes do not match", usage);
        goto fail;
    }
    Py_ssize_t n = len / rows;
    int bad;
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        bad = ce_rows_f(px, pt, ignore, plse, pnll, pout, mode, rows, n);
    else
        bad = ce_rows_d(px, pt, ignore, plse, pnll, pout, mode, rows, n);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    return PyBool_FromLong(!bad);
fail:
    bufs_release(&b);
    return NULL;
}

/* cross_entropy_rows_backward(x, lse, t, ignore, g, scale, gx): per row of x,
 * gx = (e^(x - lse) - onehot(t))·g·scale, g one number or one per row; e^(x - lse)·0 on rows
 * whose target is ignore (or out of range): 0, or NaN where the row's softmax is, as torch */
static PyObject *
cross_entropy_rows_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *px, *plse, *pg, *pgx;
    const int64_t *pt;
    Py_ssize_t len, lt, rows, lg, lgx;
    const char *usage = "cross_entropy_rows_backward(x, lse, t, ignore, g, scale, gx)";
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "expected %s", usage);
        return NULL;
    }
    long long ignore = PyLong_AsLongLong(args[3]);
    double scale = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (buf(&b, args[0], 0, 0, &fmt, &px, &len) < 0
        || buf(&b, args[1], 0, 0, &fmt, &plse, &rows) < 0 || int64_buf(&b, args[2], &pt, &lt) < 0
        || buf(&b, args[4], 0, 0, &fmt, &pg, &lg) < 0
        || buf(&b, args[6], 1, 0, &fmt, &pgx, &lgx) < 0)
        goto fail;
    if (rows <= 0 || len % rows != 0 || len / rows <= 0 || lt != rows || lgx != len
        || (lg != 1 && lg != rows)) {
        PyErr_Format(PyExc_ValueError, "%s: sizes do not match", usage);
        goto fail;
    }
    Py_ssize_t n = len / rows;
    int per_row = lg != 1;
    RUN_TYPED_AND_RETURN(b, fmt, ce_rows_backward, px, plse, pt, ignore, pg, per_row, scale, pgx,
                         rows, n);
fail:
    bufs_release(&b);
    return NULL;
}

/* ---- copies of strided arrays into C order (ops16c) ---------------------------------------
 * strided_copy(src, dst): dst (C-contiguous, src's shape and item size) = src, any strides: when
 * src's smallest stride is not along the last axis (a transposed array), in tiles of that axis
 * and the last one, so that both the reads and the writes stay in cache lines. */
#define TC_BLOCK 64  /* in 64 x 64 blocks: few pages at a time */
#define DEFINE_TILED_COPY(T, suffix, TC_TILE)                                                       \
    static void tiled_copy_##suffix(const char *src, T *dst, Py_ssize_t rows, Py_ssize_t cols, \
                                    Py_ssize_t s_row, Py_ssize_t s_col, Py_ssize_t d_row)     \
    {                                                                                         \
        for (Py_ssize_t b0 = 0; b0 < rows; b0 += TC_BLOCK)                                    \
            for (Py_ssize_t c0 = 0; c0 < cols; c0 += TC_BLOCK) {                              \
                Py_ssize_t b1 = rows - b0 < TC_BLOCK ? rows : b0 + TC_BLOCK;                  \
                Py_ssize_t c1 = cols - c0 < TC_BLOCK ? cols : c0 + TC_BLOCK;                  \
                for (Py_ssize_t i0 = b0; i0 < b1; i0 += TC_TILE) {                            \
                    Py_ssize_t i1 = b1 - i0 < TC_TILE ? b1 : i0 + TC_TILE;                    \
                    for (Py_ssize_t j0 = c0; j0 < c1; j0 += TC_TILE) {                        \
                        Py_ssize_t j1 = c1 - j0 < TC_TILE ? c1 : j0 + TC_TILE;                \
                        for (Py_ssize_t j = j0; j < j1; j++) {                                \
                            const char *s = src + j * s_col;                                  \
                            T *d = dst + j;                                                   \
                            for (Py_ssize_t i = i0; i < i1; i++) {                            \
                                T v;                                                          \
                                memcpy(&v, s + i * s_row, sizeof(T));                         \
                                d[i * d_row] = v;                                             \
                            }                                                                 \
                        }                                                                     \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
    }
/* tiles of 8 x 8 floats, 4 x 4 doubles: few cache lines each way (power-of-two strides alias
 * in the cache sets) */
DEFINE_TILED_COPY(uint32_t, 4, 8)
DEFINE_TILED_COPY(uint64_t, 8, 4)

/* Returns True when copied, False when the layout is not a transposed one (the caller copies). */
static PyObject *
strided_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer s, d;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "expected strided_copy(src, dst)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &s, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &d, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&s);
        return NULL;
    }
    int ok = s.ndim == d.ndim && s.ndim >= 2 && s.ndim <= 32 && s.itemsize == d.itemsize
             && (s.itemsize == 4 || s.itemsize == 8) && s.suboffsets == NULL;
    for (int k = 0; ok && k < s.ndim; k++)
        ok = s.shape[k] == d.shape[k] && s.shape[k] > 0;
    int n = s.ndim, a = n - 1, b = -1;
    Py_ssize_t item = s.itemsize;
    for (int k = 0; ok && k < n; k++) /* b: the axis along which src is densest */
        if (s.shape[k] > 1 && (b < 0 || llabs(s.strides[k]) < llabs(s.strides[b])))
            b = k;
    if (!ok || b < 0 || b == a || s.shape[a] < 128 || s.shape[b] < 128) { /* (NumPy's is as
                                                                          * fast on small ones) */
        PyBuffer_Release(&s);
        PyBuffer_Release(&d);
        Py_RETURN_FALSE;
    }
    Py_ssize_t dstr[32], idx[32] = {0}, outer = 1;
    dstr[n - 1] = 1;
    for (int k = n - 2; k >= 0; k--)
        dstr[k] = dstr[k + 1] * d.shape[k + 1];
    for (int k = 0; k < n; k++)
        if (k != a && k != b)
            outer *= s.shape[k];
    const char *src = s.buf;
    char *dst = d.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t o = 0; o < outer; o++) {
        Py_ssize_t so = 0, dof = 0;
        for (int k = 0; k < n; k++) {
            so += idx[k] * s.strides[k];
            dof += idx[k] * dstr[k];
        }
        if (item == 4)
            tiled_copy_4(src + so, (uint32_t *)dst + dof, s.shape[b], s.shape[a], s.strides[b],
                         s.strides[a], dstr[b]);
        else
            tiled_copy_8(src + so, (uint64_t *)dst + dof, s.shape[b], s.shape[a], s.strides[b],
                         s.strides[a], dstr[b]);
        for (int k = n - 1; k >= 0; k--) { /* the next index over the other axes */
            if (k == a || k == b)
                continue;
            if (++idx[k] < s.shape[k])
                break;
            idx[k] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&s);
    PyBuffer_Release(&d);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"col2im_rows", (PyCFunction)col2im_rows, METH_VARARGS,
     "col2im_rows(out, src, starts, rows): out[r] = 0; out[r, starts[t]:+L] += src[r, t]"},
    {"batch_norm_stats", (PyCFunction)batch_norm_stats, METH_VARARGS,
     "batch_norm_stats(x, xhat, mean, var, rstd, eps, n, c)"},
    {"channel_affine", (PyCFunction)channel_affine, METH_VARARGS,
     "channel_affine(xhat, w, b, y, n, c)"},
    {"batch_norm_backward", (PyCFunction)batch_norm_backward, METH_VARARGS,
     "batch_norm_backward(g, xhat, w, rstd, gx, gw, gb, n, c)"},
    {"leaky_relu", (PyCFunction)(void (*)(void))leaky_relu, METH_FASTCALL,
     "leaky_relu(x, out, slope)"},
    {"leaky_relu_backward", (PyCFunction)(void (*)(void))leaky_relu_backward, METH_FASTCALL,
     "leaky_relu_backward(g, x, out, slope)"},
    {"tanh_backward", (PyCFunction)(void (*)(void))tanh_backward, METH_FASTCALL,
     "tanh_backward(g, y, out): out = g·(1 - y·y)"},
    {"adam_step", (PyCFunction)adam_step, METH_VARARGS,
     "adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, "
     "flags): Adam's update in one pass"},
    {"planes_transpose", (PyCFunction)planes_transpose, METH_VARARGS,
     "planes_transpose(src, dst, batch, rows, cols): dst[b, j, i] = src[b, i, j]"},
    {"im2col_nhwc", (PyCFunction)im2col_nhwc, METH_VARARGS,
     "im2col_nhwc(x, cols, chans, batch, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, n0, rows)"},
    {"col2im_nhwc", (PyCFunction)col2im_nhwc, METH_VARARGS,
     "col2im_nhwc(cols, out, chans, batch, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, n0, rows)"},
    {"im2col_cn", (PyCFunction)im2col_cn, METH_VARARGS,
     "im2col_cn(x, cols, chans, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)"},
    {"col2im_cn", (PyCFunction)col2im_cn, METH_VARARGS,
     "col2im_cn(cols, out, chans, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)"},
    {"im2col", (PyCFunction)im2col, METH_VARARGS,
     "im2col(x, cols, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)"},
    {"max_pool2d_backward", (PyCFunction)max_pool2d_backward, METH_VARARGS,
     "max_pool2d_backward(gy, idx, gx, planes, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)"},
    {"add_rows", (PyCFunction)(void (*)(void))add_rows, METH_FASTCALL,
     "add_rows(out, idx, values): out[idx[i]] += values[i] in order (np.add.at on rows)"},
    {"relu_forward", (PyCFunction)(void (*)(void))relu_forward, METH_FASTCALL,
     "relu_forward(x, out): out = np.maximum(x, 0) (NaN stays NaN, -0.0 becomes 0.0)"},
    {"relu_backward", (PyCFunction)(void (*)(void))relu_backward, METH_FASTCALL,
     "relu_backward(g, y, out): out = np.where(y != 0, g, 0)"},
    {"layer_norm_forward", (PyCFunction)(void (*)(void))layer_norm_forward, METH_FASTCALL,
     "layer_norm_forward(x, w, b, eps, y, xhat, rstd, n)"},
    {"layer_norm_backward", (PyCFunction)(void (*)(void))layer_norm_backward, METH_FASTCALL,
     "layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n)"},
    {"gelu_float32", (PyCFunction)(void (*)(void))gelu_float32, METH_FASTCALL,
     "gelu_float32(x, y, dydx): y = x·Φ(x), dydx = Φ(x) + x·φ(x) (None: not wanted)"},
    {"softmax_rows", (PyCFunction)(void (*)(void))softmax_rows, METH_FASTCALL,
     "softmax_rows(x, y, n, log): softmax (log_softmax if log) of each row of n elements"},
    {"softmax_backward_rows", (PyCFunction)(void (*)(void))softmax_backward_rows, METH_FASTCALL,
     "softmax_backward_rows(g, y, gx, n, log): their backward from the output y"},
    {"cross_entropy_rows", (PyCFunction)(void (*)(void))cross_entropy_rows, METH_FASTCALL,
     "cross_entropy_rows(x, t, ignore, lse, nll, out, mode): row log-sum-exps and losses"},
    {"cross_entropy_rows_backward", (PyCFunction)(void (*)(void))cross_entropy_rows_backward,
     METH_FASTCALL, "cross_entropy_rows_backward(x, lse, t, ignore, g, scale, gx)"},
    {"strided_copy", (PyCFunction)(void (*)(void))strided_copy, METH_FASTCALL,
     "strided_copy(src, dst): a transposed src copied into C-contiguous dst in tiles"},
    {"sum_rows", (PyCFunction)(void (*)(void))sum_rows, METH_FASTCALL,
     "sum_rows(x, out, n): out[r] = sum of row r (rows of n elements)"},
    {"cat_rows", (PyCFunction)(void (*)(void))cat_rows, METH_FASTCALL,
     "cat_rows(out, xs, outer): the C-contiguous arrays xs joined into out, row by row"},
    {"set_threads", (PyCFunction)(void (*)(void))set_threads, METH_FASTCALL,
     "set_threads(k[, min_work]): the most threads a row loop uses, and the work each thread "
     "must get; returns the previous thread count"},
    {"gemm", (PyCFunction)(void (*)(void))gemm, METH_FASTCALL,
     "gemm(fn, flags, m, n, k, a, lda, sa, b, ldb, sb, c, ldc, sc, count[, inner, sa2, sb2, sc2]): "
     "a stack of row-major "
     "products by a cblas_?gemm function pointer, split over the thread pool"},
    {"axpy", (PyCFunction)(void (*)(void))pool_axpy, METH_FASTCALL,
     "axpy(alpha, x, y): y += alpha·x (C-contiguous, one float dtype), over the thread pool"},
    {"adadelta", (PyCFunction)(void (*)(void))adadelta, METH_FASTCALL,
     "adadelta(g, d, v, u, lr, rho, eps): one Adadelta step in one pass (split over the pool)"},
    {"pool_runner", (PyCFunction)(void (*)(void))pool_runner, METH_FASTCALL,
     "pool_runner(address, threads): split calls on another library's threads (0: the pool's)"},
    {"pool_config", (PyCFunction)(void (*)(void))pool_config, METH_FASTCALL,
     "pool_config(spin_ns, gemm_min_flops): the pool's spin time and gemm's split threshold "
     "(-1: unchanged); returns the previous pair"},
    {"sum_squares_rows", (PyCFunction)(void (*)(void))sum_squares_rows, METH_FASTCALL,
     "sum_squares_rows(x, out, n): out[r] = sum of row r's squares, in PyTorch's lane order"},
    {"sigmoid", (PyCFunction)(void (*)(void))sigmoid, METH_FASTCALL,
     "sigmoid(x, y): y = 1/(1 + e^-x)"},
    {"gelu_tanh", (PyCFunction)(void (*)(void))gelu_tanh, METH_FASTCALL,
     "gelu_tanh(x, y, dydx): GELU's tanh form and (unless dydx is None) its derivative"},
    {"gather_axis", (PyCFunction)(void (*)(void))gather_axis, METH_FASTCALL,
     "gather_axis(x, idx, y, a, x_len, i_len, b, add): y = x gathered at idx along an axis "
     "(add: x += y scattered there)"},
    {"gather_dim", (PyCFunction)(void (*)(void))gather_dim, METH_FASTCALL,
     "gather_dim(x, idx, y, dim, add): gather_axis with its geometry from the shapes (False: "
     "arrays it does not take, nothing done)"},
    {"index_in_range", (PyCFunction)(void (*)(void))index_in_range, METH_FASTCALL,
     "index_in_range(idx, n): every element of the C-contiguous int64 idx in [0, n)"},
    {"lstm_step_forward", (PyCFunction)(void (*)(void))lstm_step_forward, METH_FASTCALL,
     "lstm_step_forward(act, cs, t, prev, cur)"},
    {"lstm_step_backward", (PyCFunction)(void (*)(void))lstm_step_backward, METH_FASTCALL,
     "lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t)"},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "chainrule.kernels._cpu_loops",
    "One-pass C loops for memory-bound rules: buffers in, buffers out.", -1, methods,
};

PyMODINIT_FUNC
PyInit__cpu_loops(void)
{
#ifndef _WIN32
    pthread_atfork(NULL, NULL, pool_after_fork);
#endif
    return PyModule_Create(&moduledef);
}
