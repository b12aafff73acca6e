/* chainrule._crandom: the few loops of chainrule/random.py that NumPy cannot do exactly or fast.

   PyTorch's CPU random kernels turn raw Mersenne Twister draws into values with the C maths
   library (log, cos, ...), with fused multiply-adds where its compiler fused them, and with a
   polynomial log/sincos on AVX2 machines. NumPy's own log/sin/cos differ from the C library in
   the last bit, and NumPy has no fused multiply-add, so these loops live here:

     libm(name, x)            x[i] = name(x[i]) in place, with the C library's function
     fma(a, b, c, out)        out[i] = a[i]*b[i] + c[i] rounded once (length-1 inputs broadcast)
     normal_cephes(d, m, s)   PyTorch's AVX2 Box-Muller on blocks of 16 float32 uniforms
     shuffle(perm, draws)     Fisher-Yates: swap perm[i], perm[i + draws[i] % (n - i)]
     shuffle_inside_out(p, d) the "inside-out" Fisher-Yates: z = d[i] % (i + 1);
                              p[i] = p[z]; p[z] = i

   Every draw stays in chainrule/random.py (NumPy's MT19937); random.py has a NumPy/`math`
   version of each loop (exact, slower) for installs without a C compiler. Build with
   -ffp-contract=off: the compiler must not fuse a*b+c where PyTorch's compiler did not. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CRANDOM_INTERFACE 1

/* ---- buffers --------------------------------------------------------------------------------- */
/* A C-contiguous buffer of `itemsize`-byte items whose format is one of `formats`. */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *formats,
                      Py_ssize_t itemsize, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->itemsize != itemsize || strlen(f) != 1 || !strchr(formats, *f)) {
        PyErr_Format(PyExc_TypeError, "_crandom: %s must hold %zd-byte items of type '%s', got '%s'",
                     what, itemsize, formats, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---- libm ------------------------------------------------------------------------------------ */
typedef double (*dfun)(double);
typedef float (*ffun)(float);
static const struct { const char *name; dfun f; } dfuns[] = {
    {"log", log}, {"log1p", log1p}, {"sin", sin}, {"cos", cos}, {"tan", tan}, {"exp", exp}};
static const struct { const char *name; ffun f; } ffuns[] = {
    {"logf", logf}, {"sinf", sinf}, {"cosf", cosf}};

static PyObject *py_libm(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *obj;
    Py_buffer v;
    if (!PyArg_ParseTuple(args, "sO", &name, &obj))
        return NULL;
    for (size_t k = 0; k < sizeof(dfuns) / sizeof(dfuns[0]); k++) {
        if (strcmp(name, dfuns[k].name) == 0) {
            if (get_buffer(obj, &v, 1, "d", 8, "x") < 0)
                return NULL;
            double *x = v.buf;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < v.len / 8; i++)
                x[i] = dfuns[k].f(x[i]);
            Py_END_ALLOW_THREADS
            PyBuffer_Release(&v);
            Py_RETURN_NONE;
        }
    }
    for (size_t k = 0; k < sizeof(ffuns) / sizeof(ffuns[0]); k++) {
        if (strcmp(name, ffuns[k].name) == 0) {
            if (get_buffer(obj, &v, 1, "f", 4, "x") < 0)
                return NULL;
            float *x = v.buf;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < v.len / 4; i++)
                x[i] = ffuns[k].f(x[i]);
            Py_END_ALLOW_THREADS
            PyBuffer_Release(&v);
            Py_RETURN_NONE;
        }
    }
    return PyErr_Format(PyExc_ValueError, "_crandom.libm: unknown function '%s'", name);
}

/* ---- fused multiply-add ---------------------------------------------------------------------- */
/* fma/fmaf round once whatever the CPU (the C library uses the instruction where it exists). */
static PyObject *py_fma(PyObject *self, PyObject *args) {
    PyObject *objs[4];
    Py_buffer v[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3]))
        return NULL;
    Py_ssize_t size = 8;        /* float64 or float32, as `out` is */
    const char *fmt = "d";
    if (get_buffer(objs[3], &v[3], 1, fmt, size, "out") < 0) {
        PyErr_Clear();
        size = 4;
        fmt = "f";
        if (get_buffer(objs[3], &v[3], 1, fmt, size, "out") < 0)
            return NULL;
    }
    Py_ssize_t n = v[3].len / size, step[3];
    int got = 0;
    for (; got < 3; got++) {
        if (get_buffer(objs[got], &v[got], 0, fmt, size, "a, b and c") < 0)
            break;
        Py_ssize_t m = v[got].len / size;
        if (m != n && m != 1) {
            PyErr_Format(PyExc_ValueError, "_crandom.fma: input of length %zd for output of "
                         "length %zd", m, n);
            PyBuffer_Release(&v[got]);
            break;
        }
        step[got] = m == 1 ? 0 : 1;    /* a length-1 input broadcasts */
    }
    if (got == 3) {
        Py_BEGIN_ALLOW_THREADS
        if (size == 8) {
            const double *a = v[0].buf, *b = v[1].buf, *c = v[2].buf;
            double *o = v[3].buf;
            for (Py_ssize_t i = 0; i < n; i++)
                o[i] = fma(a[i * step[0]], b[i * step[1]], c[i * step[2]]);
        } else {
            const float *a = v[0].buf, *b = v[1].buf, *c = v[2].buf;
            float *o = v[3].buf;
            for (Py_ssize_t i = 0; i < n; i++)
                o[i] = fmaf(a[i * step[0]], b[i * step[1]], c[i * step[2]]);
        }
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&v[k]);
    PyBuffer_Release(&v[3]);
    if (got < 3)
        return NULL;
    Py_RETURN_NONE;
}

/* The Box-Muller loop below runs in a copy compiled for AVX2 and FMA where the CPU has them
   (it vectorises 8 lanes, like PyTorch's); the same source, so the same results, elsewhere. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FMA_TARGET __attribute__((target("avx2,fma")))
#define HAVE_FMA_TARGET 1
#else
#define FMA_TARGET
#define HAVE_FMA_TARGET 0
#endif
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

static int cpu_has_fma(void) {
#if HAVE_FMA_TARGET
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}
static int has_fma;

/* ---- PyTorch's AVX2 normal: polynomial log and sincos (Cephes, as in sse_mathfun) ------------ */
/* The same float operations in the same order as PyTorch's 8-lane version, one lane at a time;
   fmaf wherever PyTorch's compiler fused a multiply into the following add (found by comparing
   against torch 2.13 on millions of draws). */
INLINE float bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
INLINE uint32_t float_to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

INLINE float cephes_logf(float x) {
    float lo = bits_to_float(0x00800000u);           /* smallest normal float */
    x = x < lo ? lo : x;
    uint32_t b = float_to_bits(x);
    float e = (float)((int32_t)(b >> 23) - 0x7f) + 1.0f;
    x = bits_to_float((b & ~0x7f800000u) | float_to_bits(0.5f));   /* mantissa in [0.5, 1) */
    float small = x < 0.707106781186547524f ? 1.0f : 0.0f;
    float tmp = x * small;
    x = x - 1.0f;
    e = e - small;
    x = x + tmp;
    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(z, -0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

INLINE void cephes_sincosf(float x, float *s, float *c) {
    int negative = x < 0.0f;
    x = fabsf(x);
    int j = (int)(x * 1.27323954473516f);                /* x * 4/pi, truncated */
    j = (j + 1) & ~1;
    float y = (float)j;
    int sin_flip = negative ^ ((j & 4) != 0);
    int cos_flip = ((j - 2) & 4) == 0;
    int use_sin_poly = (j & 2) == 0;
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    float sv = use_sin_poly ? ys : yc, cv = use_sin_poly ? yc : ys;
    *s = sin_flip ? -sv : sv;
    *c = cos_flip ? -cv : cv;
}

INLINE void normal_cephes_loop(float *d, Py_ssize_t n, float mean, float std) {
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (Py_ssize_t off = 0; off + 16 <= n; off += 16) {
        float *blk = d + off;
        for (int j = 0; j < 8; j++) {
            float radius = sqrtf(-2.0f * cephes_logf(1.0f - blk[j]));
            float s, c;
            cephes_sincosf(two_pi * blk[j + 8], &s, &c);
            blk[j] = fmaf(radius * c, std, mean);
            blk[j + 8] = fmaf(radius * s, std, mean);
        }
    }
}
FMA_TARGET static void normal_cephes_hw(float *d, Py_ssize_t n, float mean, float std) {
    normal_cephes_loop(d, n, mean, std);
}
static void normal_cephes_sw(float *d, Py_ssize_t n, float mean, float std) {
    normal_cephes_loop(d, n, mean, std);
}

static PyObject *py_normal_cephes(PyObject *self, PyObject *args) {
    PyObject *obj;
    float mean, std;
    if (!PyArg_ParseTuple(args, "Off", &obj, &mean, &std))
        return NULL;
    Py_buffer v;
    if (get_buffer(obj, &v, 1, "f", 4, "d") < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    (has_fma ? normal_cephes_hw : normal_cephes_sw)((float *)v.buf, v.len / 4, mean, std);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    Py_RETURN_NONE;
}

/* ---- Fisher-Yates ---------------------------------------------------------------------------- */
/* perm: int64 of length n; draws: the raw draws (uint32 for shuffle, uint64 for inside_out). */
static int perm_and_draws(PyObject *args, Py_buffer *p, Py_buffer *d, const char *fmt,
                          Py_ssize_t size) {
    PyObject *po, *dobj;
    if (!PyArg_ParseTuple(args, "OO", &po, &dobj))
        return -1;
    if (get_buffer(po, p, 1, "lq", 8, "perm") < 0)
        return -1;
    if (get_buffer(dobj, d, 0, fmt, size, "draws") < 0) {
        PyBuffer_Release(p);
        return -1;
    }
    if (d->len / size > p->len / 8) {
        PyErr_SetString(PyExc_ValueError, "_crandom: more draws than permutation entries");
        PyBuffer_Release(p);
        PyBuffer_Release(d);
        return -1;
    }
    return 0;
}

static PyObject *py_shuffle(PyObject *self, PyObject *args) {
    Py_buffer p, d;
    if (perm_and_draws(args, &p, &d, "I", 4) < 0)
        return NULL;
    int64_t *r = p.buf;
    const uint32_t *draw = d.buf;
    Py_ssize_t n = p.len / 8, m = d.len / 4;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {          /* swap i with i + draw % (n - i) */
        Py_ssize_t j = i + (Py_ssize_t)(draw[i] % (uint64_t)(n - i));
        int64_t t = r[i];
        r[i] = r[j];
        r[j] = t;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p);
    PyBuffer_Release(&d);
    Py_RETURN_NONE;
}

static PyObject *py_shuffle_inside_out(PyObject *self, PyObject *args) {
    Py_buffer p, d;
    if (perm_and_draws(args, &p, &d, "LQ", 8) < 0)
        return NULL;
    int64_t *r = p.buf;
    const uint64_t *draw = d.buf;
    Py_ssize_t m = d.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < m; i++) {          /* r[i] = r[z]; r[z] = i, z = draw % (i + 1) */
        Py_ssize_t z = (Py_ssize_t)(draw[i] % (uint64_t)(i + 1));
        r[i] = r[z];
        r[z] = i;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p);
    PyBuffer_Release(&d);
    Py_RETURN_NONE;
}

/* ---- module ---------------------------------------------------------------------------------- */
static PyMethodDef methods[] = {
    {"libm", py_libm, METH_VARARGS, "libm(name, x): x[i] = name(x[i]) in place (C library)."},
    {"fma", py_fma, METH_VARARGS, "fma(a, b, c, out): out = a*b + c rounded once."},
    {"normal_cephes", py_normal_cephes, METH_VARARGS,
     "normal_cephes(d, mean, std): PyTorch's AVX2 Box-Muller on blocks of 16 uniforms."},
    {"shuffle", py_shuffle, METH_VARARGS,
     "shuffle(perm, draws): swap perm[i], perm[i + draws[i] % (n - i)] for i = 0, 1, ..."},
    {"shuffle_inside_out", py_shuffle_inside_out, METH_VARARGS,
     "shuffle_inside_out(perm, draws): z = draws[i] % (i + 1); perm[i] = perm[z]; perm[z] = i."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_crandom",
                                    "C loops for chainrule.random", -1, methods};

PyMODINIT_FUNC PyInit__crandom(void) {
    has_fma = cpu_has_fma();
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "INTERFACE", CRANDOM_INTERFACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
