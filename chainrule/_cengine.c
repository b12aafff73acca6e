/* chainrule._cengine: the engine's per-gate bookkeeping in C (an optional accelerator).
 *
 * On an (8, 8) tensor the math of a gate (one NumPy call forward, one or two backward) costs
 * about 1 µs; the interpreter's bookkeeping around it (create the gate and its output Tensor,
 * record the edges, and in backward pop the gate, call its rule, check and accumulate the
 * gradients) cost 3 µs more. This module does that bookkeeping in C. It mirrors, statement for
 * statement, pure-Python code that stays the readable reference and runs wherever this module
 * is not built (or CHAINRULE_PURE_PYTHON=1 is set):
 *
 *   apply, apply_unary,           Op.apply, Op.apply_unary, Op.apply_binary, _finish_one,
 *   apply_binary                  _sources  (autograd/function.py)
 *   count_consumers, backward     _count_consumers and the plain loop of run_backward (autograd/engine.py)
 *   UnaryGate, BinaryGate         the Tensor method / operator fast paths
 *                                 (ops/elementwise._unary_fn, ops/binary.fast_binary)
 *
 *   relu_*, layer_norm_*,         one-pass loops for the ReLU, LayerNorm, GELU and LSTM rules
 *   gelu_float32, lstm_step_*     (their NumPy versions, several passes each, stay in ops/, nn/)
 *
 * Gates still run their own Python forward/backward rules; only the glue is here. Anything off
 * the fast path (hooks, multi-output gates, user Functions, create_graph, anomaly mode, mixed
 * dtypes) is handed to the Python code it mirrors. chainrule/autograd/accel.py installs it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* The fused loops are compiled for AVX-512, AVX2 and the baseline; the CPU picks at load time
 * (GCC's function multiversioning), so one build runs anywhere. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* Bumped whenever the functions or install()'s arguments change (accel.INTERFACE must match). */
#define CENGINE_INTERFACE 1

/* ---- references handed over by accel.install() -------------------------------------------- */
static PyTypeObject *TensorType, *OpType, *FunctionType, *NdarrayType;
static PyObject *State;          /* chainrule._state.state (thread-local switches) */
static PyObject *Backend;        /* chainrule.backend (its _cupy says whether CuPy is loaded) */
static PyObject *NoteExtras;     /* function._note_extras(ctx, out, arrays) */
static PyObject *Sources;        /* function._sources(saved, arrays, out) */
static PyObject *FromInput0, *FromOutput, *FromInputs01;
static PyObject *FinishMany;     /* function._finish_many(ctx, outs, arrays) */
static PyObject *CheckDevice;    /* backend.check_same_device(arrays, name) */
static PyObject *FloatDtypes[4];
static int n_float_dtypes;

static PyObject *s_grad_enabled, *s_extras, *s_forward, *s_backward, *s_dtype, *s_kind,
    *s_shape, *s_ndim, *s_hooks, *s_saved, *s_f, *s_cupy, *s_edges, *s_outs, *s_dtype_attr,
    *s_grad_fn, *s_shape_attr, *s_data, *s_modes, *s_scopes, *s_scope, *s_differentiable;
static PyObject *Zero, *One, *Two, *EmptyTuple;

/* slot offsets: Tensor's and Op's __slots__ (subclasses keep them where the base put them) */
static Py_ssize_t T_data, T_grad_fn, T_nr, T_requires_grad, T_grad, T_hooks;
static Py_ssize_t N_e0, N_e1, N_nin, N_en, N_saved, N_saved_from, N_shape, N_dtype;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* store a new reference in a slot (steals v) */
static inline void
put_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject *old = SLOT(o, off);
    SLOT(o, off) = v;
    Py_XDECREF(old);
}

static inline void
set_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    Py_INCREF(v);
    put_slot(o, off, v);
}

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyDict_GetItemString(type->tp_dict, name);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    *off = ((PyMemberDescrObject *)d)->d_member->offset;
    return 0;
}

/* a slot read: the value (borrowed), or NULL with Python's AttributeError if it was never set */
static inline PyObject *
get_slot(PyObject *o, Py_ssize_t off, PyObject *name)
{
    PyObject *v = SLOT(o, off);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '%U'",
                     Py_TYPE(o)->tp_name, name);
    return v;
}

/* the truth of state.<name> (grad_enabled, extras, modes): 1, 0, or -1 with an error */
static int
state_flag(PyObject *name)
{
    PyObject *v = PyObject_GetAttr(State, name);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* dtype.kind in dtypes.FLOAT_KINDS ("fV": "V" is ml_dtypes' bfloat16) */
static int
is_float_dtype(PyObject *dt)
{
    for (int i = 0; i < n_float_dtypes; i++)
        if (dt == FloatDtypes[i])
            return 1;
    PyObject *kind = PyObject_GetAttr(dt, s_kind);
    if (kind == NULL)
        return -1;
    int r = PySequence_Contains(s_f, kind);
    Py_DECREF(kind);
    return r;
}

/* the dtype of array ``a`` is a float one */
static int
is_float_array(PyObject *a)
{
    PyObject *dt = PyObject_GetAttr(a, s_dtype);
    if (dt == NULL)
        return -1;
    int r = is_float_dtype(dt);
    Py_DECREF(dt);
    return r;
}

/* function.wrap(data, fn, 0): a new plain Tensor (fn NULL: a leaf that needs no gradient) */
static PyObject *
new_tensor(PyObject *data, PyObject *fn)
{
    PyObject *t = TensorType->tp_alloc(TensorType, 0);
    if (t == NULL)
        return NULL;
    Py_INCREF(data);
    SLOT(t, T_data) = data;
    PyObject *f = fn ? fn : Py_None;
    Py_INCREF(f);
    SLOT(t, T_grad_fn) = f;
    Py_INCREF(Zero);
    SLOT(t, T_nr) = Zero;
    PyObject *rg = fn ? Py_True : Py_False;
    Py_INCREF(rg);
    SLOT(t, T_requires_grad) = rg;
    Py_INCREF(Py_None);
    SLOT(t, T_grad) = Py_None;
    Py_INCREF(Py_None);
    SLOT(t, T_hooks) = Py_None;
    return t;
}

/* wrap(out) for a result computed without recording (steals out) */
static PyObject *
wrap_plain(PyObject *out)
{
    if (out == NULL)
        return NULL;
    PyObject *t = new_tensor(out, NULL);
    Py_DECREF(out);
    return t;
}

/* The graph edge of Tensor x: the leaf itself, its node, or (node, output number). New ref. */
static PyObject *
edge_of(PyObject *x)
{
    PyObject *fn = get_slot(x, T_grad_fn, s_grad_fn);
    if (fn == NULL)
        return NULL;
    if (fn == Py_None) {
        Py_INCREF(x);
        return x;
    }
    PyObject *nr = SLOT(x, T_nr);
    if (nr == NULL || nr == Zero || (PyLong_Check(nr) && PyLong_AsSsize_t(nr) == 0)) {
        Py_INCREF(fn);
        return fn;
    }
    return PyTuple_Pack(2, fn, nr);
}

static inline int
requires_grad(PyObject *x)
{
    PyObject *rg = SLOT(x, T_requires_grad);
    if (rg == Py_True)
        return 1;
    if (rg == Py_False || rg == NULL)
        return 0;
    return PyObject_IsTrue(rg);
}

static PyObject *
call_forward(PyObject *cls, PyObject *const *args, Py_ssize_t n)
{
    PyObject *forward = PyObject_GetAttr(cls, s_forward);
    if (forward == NULL)
        return NULL;
    PyObject *out = PyObject_Vectorcall(forward, args, n, NULL);
    Py_DECREF(forward);
    return out;
}

/* The gate's input arrays as a Python object, for a call into function.py: ``given`` (apply's
 * list), or a tuple of the m arrays. New reference. */
static PyObject *
arrays_object(PyObject *const *arrays, Py_ssize_t m, PyObject *given)
{
    if (given != NULL)
        return Py_NewRef(given);
    PyObject *t = PyTuple_New(m);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < m; i++)
        PyTuple_SET_ITEM(t, i, Py_NewRef(arrays[i]));
    return t;
}

/* _finish_one(ctx, out, arrays): record the single output's meta and wrap it (steals out) */
static PyObject *
finish_one(PyObject *ctx, PyObject *out, PyObject *const *arrays, Py_ssize_t m, PyObject *given)
{
    int extras = state_flag(s_extras);
    if (extras < 0)
        goto fail;
    if (extras) {
        /* only Modules are running (no recording mode): _note_creation's ctx.scope = scopes */
        int any_mode = state_flag(s_modes);
        if (any_mode < 0)
            goto fail;
        if (!any_mode) {
            PyObject *scopes = PyObject_GetAttr(State, s_scopes);
            if (scopes == NULL)
                goto fail;
            int nonempty = PyObject_IsTrue(scopes);
            int r = nonempty > 0 ? PyObject_SetAttr(ctx, s_scope, scopes) : nonempty;
            Py_DECREF(scopes);
            if (r < 0)
                goto fail;
            extras = 0;
        }
    }
    if (extras) {
        PyObject *inputs = arrays_object(arrays, m, given);
        if (inputs == NULL)
            goto fail;
        PyObject *r = PyObject_CallFunctionObjArgs(NoteExtras, ctx, out, inputs, NULL);
        Py_DECREF(inputs);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
    }
    PyObject *dtype = PyObject_GetAttr(out, s_dtype);
    if (dtype == NULL)
        goto fail;
    PyObject *shape = PyObject_GetAttr(out, s_shape);
    if (shape == NULL) {
        Py_DECREF(dtype);
        goto fail;
    }
    put_slot(ctx, N_shape, shape);
    int is_float = is_float_dtype(dtype);
    put_slot(ctx, N_dtype, dtype);
    if (is_float < 0)
        goto fail;
    PyObject *t = new_tensor(out, is_float ? ctx : NULL);
    Py_DECREF(out);
    return t;
fail:
    Py_DECREF(out);
    return NULL;
}

/* where saved value s came from: its input index, -1 (the output), or -2 (a constant: None) */
static Py_ssize_t
source_index(PyObject *s, PyObject *const *arrays, Py_ssize_t m, PyObject *out)
{
    for (Py_ssize_t j = 0; j < m; j++)
        if (arrays[j] == s)
            return j;
    return s == out ? -1 : -2;
}

/* function._sources for a one-output gate, the commonest answers as shared constant tuples;
 * NULL without an error: a case for the Python version (several outputs, saved not a tuple) */
static PyObject *
sources_one(PyObject *saved, PyObject *const *arrays, Py_ssize_t m, PyObject *out)
{
    if (!PyTuple_CheckExact(saved) || PyTuple_CheckExact(out))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(saved);
    Py_ssize_t i0 = n ? source_index(PyTuple_GET_ITEM(saved, 0), arrays, m, out) : -2;
    if (n == 1 && (i0 == 0 || i0 == -1))
        return Py_NewRef(i0 == 0 ? FromInput0 : FromOutput);
    /* positional, as Op.apply_binary: for a·a it says (0, 1), where the scan says (0, 0); both
     * name the same Tensor */
    if (n == 2 && m >= 2 && PyTuple_GET_ITEM(saved, 0) == arrays[0] &&
        PyTuple_GET_ITEM(saved, 1) == arrays[1])
        return Py_NewRef(FromInputs01);
    PyObject *src = PyTuple_New(n);
    if (src == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = source_index(PyTuple_GET_ITEM(saved, i), arrays, m, out);
        PyObject *v = k == -2 ? Py_NewRef(Py_None) : PyLong_FromSsize_t(k);
        if (v == NULL) {
            Py_DECREF(src);
            return NULL;
        }
        PyTuple_SET_ITEM(src, i, v);
    }
    return src;
}

/* after a recorded forward: note where the saved values came from (ctx._saved_from) */
static int
note_saved(PyObject *ctx, PyObject *out, PyObject *const *arrays, Py_ssize_t m,
           PyObject *given)
{
    PyObject *saved = SLOT(ctx, N_saved);
    if (saved == NULL)
        return 0;
    int nonempty = PyObject_IsTrue(saved);
    if (nonempty <= 0)
        return nonempty;
    Py_INCREF(saved);
    PyObject *src = sources_one(saved, arrays, m, out);
    if (src == NULL && !PyErr_Occurred()) {
        PyObject *inputs = arrays_object(arrays, m, given);
        if (inputs != NULL) {
            src = PyObject_CallFunctionObjArgs(Sources, saved, inputs, out, NULL);
            Py_DECREF(inputs);
        }
    }
    Py_DECREF(saved);
    if (src == NULL)
        return -1;
    put_slot(ctx, N_saved_from, src);
    return 0;
}

static PyObject *
new_ctx(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, OpType)) {
        PyErr_SetString(PyExc_TypeError, "expected an Op subclass");
        return NULL;
    }
    PyObject *ctx = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    if (ctx != NULL)
        set_slot(ctx, N_saved, EmptyTuple);
    return ctx;
}

/* Op.apply_unary(cls, x) */
static PyObject *
apply_unary_impl(PyObject *cls, PyObject *x)
{
    if (!PyObject_TypeCheck(x, TensorType)) {
        PyErr_SetString(PyExc_TypeError, "apply_unary expects a Tensor");
        return NULL;
    }
    PyObject *data = get_slot(x, T_data, s_data);
    if (data == NULL)
        return NULL;
    PyObject *ctx = new_ctx(cls);
    if (ctx == NULL)
        return NULL;
    PyObject *result = NULL;
    Py_INCREF(data);
    int record = requires_grad(x);
    if (record > 0)
        record = state_flag(s_grad_enabled);
    if (record < 0)
        goto done;
    PyObject *args[2] = {ctx, data};
    if (!record) {
        result = wrap_plain(call_forward(cls, args, 2));
        goto done;
    }
    PyObject *edge = edge_of(x);
    if (edge == NULL)
        goto done;
    put_slot(ctx, N_e0, edge);
    set_slot(ctx, N_nin, One);
    PyObject *out = call_forward(cls, args, 2);
    if (out == NULL)
        goto done;
    PyObject *inputs[1] = {data};
    if (note_saved(ctx, out, inputs, 1, NULL) < 0) {
        Py_DECREF(out);
        goto done;
    }
    result = finish_one(ctx, out, inputs, 1, NULL);
done:
    Py_DECREF(data);
    Py_DECREF(ctx);
    return result;
}

/* a 0-d NumPy array goes into a binary gate as a NumPy scalar (new ref) */
static PyObject *
scalarize(PyObject *d)
{
    if (Py_TYPE(d) == NdarrayType) {
        PyObject *ndim = PyObject_GetAttr(d, s_ndim);
        if (ndim == NULL)
            return NULL;
        int zero_d = ndim == Zero || (PyLong_Check(ndim) && PyLong_AsSsize_t(ndim) == 0);
        Py_DECREF(ndim);
        if (zero_d)
            return PyObject_GetItem(d, EmptyTuple);
    }
    Py_INCREF(d);
    return d;
}

/* Op.apply_binary(cls, a, b): a a Tensor, b a Tensor of the same dtype or a scalar */
static PyObject *
apply_binary_impl(PyObject *cls, PyObject *a, PyObject *b)
{
    if (!PyObject_TypeCheck(a, TensorType)) {
        PyErr_SetString(PyExc_TypeError, "apply_binary expects a Tensor first");
        return NULL;
    }
    PyObject *ctx = new_ctx(cls);
    if (ctx == NULL)
        return NULL;
    PyObject *result = NULL, *da = NULL, *db = NULL, *ea = NULL, *eb = NULL;
    PyObject *raw = get_slot(a, T_data, s_data);
    if (raw == NULL || (da = scalarize(raw)) == NULL)
        goto done;
    if (PyObject_TypeCheck(b, TensorType)) {
        raw = get_slot(b, T_data, s_data);
        if (raw == NULL || (db = scalarize(raw)) == NULL)
            goto done;
        int rg = requires_grad(b);
        if (rg < 0 || (rg && (eb = edge_of(b)) == NULL))
            goto done;
    }
    else {
        Py_INCREF(b);
        db = b;
    }
    int rg = requires_grad(a);
    if (rg < 0 || (rg && (ea = edge_of(a)) == NULL))
        goto done;
    PyObject *args[3] = {ctx, da, db};
    int record = ea != NULL || eb != NULL;
    if (record)
        record = state_flag(s_grad_enabled);
    if (record < 0)
        goto done;
    if (!record) {
        result = wrap_plain(call_forward(cls, args, 3));
        goto done;
    }
    put_slot(ctx, N_e0, ea ? ea : Py_NewRef(Py_None));
    put_slot(ctx, N_e1, eb ? eb : Py_NewRef(Py_None));
    ea = eb = NULL;
    set_slot(ctx, N_nin, Two);
    PyObject *out = call_forward(cls, args, 3);
    if (out == NULL)
        goto done;
    PyObject *inputs[2] = {da, db};
    if (note_saved(ctx, out, inputs, 2, NULL) < 0) {
        Py_DECREF(out);
        goto done;
    }
    result = finish_one(ctx, out, inputs, 2, NULL);
done:
    Py_XDECREF(da);
    Py_XDECREF(db);
    Py_XDECREF(ea);
    Py_XDECREF(eb);
    Py_DECREF(ctx);
    return result;
}

/* forward(ctx, *arrays); a TypeError (CuPy refusing NumPy operands) becomes the error that
 * names the devices, when they differ */
static PyObject *
forward_checked(PyObject *cls, PyObject *ctx, PyObject *arrays)
{
    Py_ssize_t n = PyList_GET_SIZE(arrays);
    PyObject *small[9], **stack = small;
    if (n + 1 > 9 && (stack = PyMem_Malloc((n + 1) * sizeof(PyObject *))) == NULL)
        return PyErr_NoMemory();
    stack[0] = ctx;
    for (Py_ssize_t i = 0; i < n; i++)
        stack[i + 1] = PyList_GET_ITEM(arrays, i);
    PyObject *out = call_forward(cls, stack, n + 1);
    if (stack != small)
        PyMem_Free(stack);
    if (out == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *name = PyObject_GetAttrString(cls, "__name__");
        PyObject *lower = name ? PyObject_CallMethod(name, "lower", NULL) : NULL;
        PyObject *r = lower ? PyObject_CallFunctionObjArgs(CheckDevice, arrays, lower, NULL)
                            : NULL;
        Py_XDECREF(name);
        Py_XDECREF(lower);
        if (r == NULL) {  /* the devices differ: that error replaces CuPy's */
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        Py_DECREF(r);
        PyErr_Restore(type, value, tb);
    }
    return out;
}

/* Op.apply(cls, *args): any number of inputs (Tensors or not), one or several outputs */
static PyObject *
apply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "apply(cls, *args)");
        return NULL;
    }
    PyObject *cls = args[0];
    args++;
    nargs--;
    PyObject *ctx = new_ctx(cls);
    if (ctx == NULL)
        return NULL;
    PyObject *result = NULL, *edges = NULL, *arrays = NULL, *out = NULL;
    set_slot(ctx, N_nin, Zero);
    set_slot(ctx, N_en, EmptyTuple);
    int record = state_flag(s_grad_enabled);
    if (record > 0) {
        PyObject *d = PyObject_GetAttr(cls, s_differentiable);
        if (d == NULL)
            goto done;
        record = PyObject_IsTrue(d);
        Py_DECREF(d);
    }
    if (record < 0 || (arrays = PyList_New(nargs)) == NULL)
        goto done;
    int found = 0;
    if (record && (edges = PyTuple_New(nargs)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *a = args[i], *e = NULL;
        if (PyObject_TypeCheck(a, TensorType)) {
            PyObject *data = get_slot(a, T_data, s_data);
            if (data == NULL)
                goto done;
            PyList_SET_ITEM(arrays, i, Py_NewRef(data));
            if (record) {
                int rg = requires_grad(a);
                if (rg < 0 || (rg && (e = edge_of(a)) == NULL))
                    goto done;
                found |= rg;
            }
        }
        else
            PyList_SET_ITEM(arrays, i, Py_NewRef(a));
        if (record)
            PyTuple_SET_ITEM(edges, i, e ? e : Py_NewRef(Py_None));
    }
    if (!found) {
        out = forward_checked(cls, ctx, arrays);
        if (out == NULL)
            goto done;
        if (!PyTuple_CheckExact(out)) {
            result = wrap_plain(out);
            out = NULL;
            goto done;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(out);
        if ((result = PyTuple_New(n)) == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *t = new_tensor(PyTuple_GET_ITEM(out, i), NULL);
            if (t == NULL) {
                Py_CLEAR(result);
                goto done;
            }
            PyTuple_SET_ITEM(result, i, t);
        }
        goto done;
    }
    if (nargs == 1 || nargs == 2) {  /* ctx._edges = edges: one or two edges live in slots */
        set_slot(ctx, N_e0, PyTuple_GET_ITEM(edges, 0));
        if (nargs == 2)
            set_slot(ctx, N_e1, PyTuple_GET_ITEM(edges, 1));
        set_slot(ctx, N_nin, nargs == 1 ? One : Two);
    }
    else
        set_slot(ctx, N_en, edges);
    out = forward_checked(cls, ctx, arrays);
    if (out == NULL)
        goto done;
    if (note_saved(ctx, out, PySequence_Fast_ITEMS(arrays), nargs, arrays) < 0)
        goto done;
    if (!PyTuple_CheckExact(out)) {
        result = finish_one(ctx, out, PySequence_Fast_ITEMS(arrays), nargs, arrays);
        out = NULL;  /* finish_one took it */
    }
    else
        result = PyObject_CallFunctionObjArgs(FinishMany, ctx, out, arrays, NULL);
done:
    Py_XDECREF(out);
    Py_XDECREF(edges);
    Py_XDECREF(arrays);
    Py_DECREF(ctx);
    return result;
}

static PyObject *
apply_unary(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_unary(cls, x)");
        return NULL;
    }
    return apply_unary_impl(args[0], args[1]);
}

static PyObject *
apply_binary(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply_binary(cls, a, b)");
        return NULL;
    }
    return apply_binary_impl(args[0], args[1], args[2]);
}

/* ---- gates installed as Tensor methods and operators ---------------------------------------
 * Called as methods (Py_TPFLAGS_METHOD_DESCRIPTOR: no bound method is created for x.exp()).
 * The fast path handles the common case; everything else goes to ``fallback``, the Python
 * function the gate replaces, which also supplies __name__, __doc__ and the signature.
 */
typedef struct {
    PyObject_HEAD
    PyObject *cls;       /* the Op subclass */
    PyObject *fallback;  /* the Python function this gate stands for */
    int binary, reflected;
    vectorcallfunc vectorcall;
} Gate;

static PyObject *
unary_gate_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Gate *g = (Gate *)self;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n == 1 && kwnames == NULL && Py_IS_TYPE(args[0], TensorType)) {
        PyObject *data = SLOT(args[0], T_data);
        if (data != NULL) {
            int f = is_float_array(data);
            if (f < 0)
                return NULL;
            if (f)
                return apply_unary_impl(g->cls, args[0]);
        }
    }
    return PyObject_Vectorcall(g->fallback, args, nargsf, kwnames);
}

static PyObject *
binary_fast(Gate *g, PyObject *self, PyObject *other)
{
    PyObject *data = SLOT(self, T_data);
    if (data == NULL)
        return Py_NotImplemented;  /* marker: take the fallback */
    if (PyFloat_CheckExact(other) || PyLong_CheckExact(other)) {
        if (g->reflected)
            return Py_NotImplemented;
        int f = is_float_array(data);
        if (f < 0)
            return NULL;
        return f ? apply_binary_impl(g->cls, self, other) : Py_NotImplemented;
    }
    if (!PyObject_TypeCheck(other, TensorType) || SLOT(other, T_data) == NULL)
        return Py_NotImplemented;
    PyObject *dt = PyObject_GetAttr(data, s_dtype);
    if (dt == NULL)
        return NULL;
    PyObject *odt = PyObject_GetAttr(SLOT(other, T_data), s_dtype);
    if (odt == NULL) {
        Py_DECREF(dt);
        return NULL;
    }
    int same = dt == odt;
    int f = same ? is_float_dtype(dt) : 0;
    Py_DECREF(dt);
    Py_DECREF(odt);
    if (f <= 0)
        return f < 0 ? NULL : Py_NotImplemented;
    PyObject *cupy = PyObject_GetAttr(Backend, s_cupy);
    if (cupy == NULL)
        return NULL;
    Py_DECREF(cupy);
    if (cupy != Py_None)
        return Py_NotImplemented;
    PyObject *r = g->reflected ? apply_binary_impl(g->cls, other, self)
                               : apply_binary_impl(g->cls, self, other);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();  /* shapes that do not broadcast: the fallback raises the full message */
        return Py_NotImplemented;
    }
    return r;
}

static PyObject *
binary_gate_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Gate *g = (Gate *)self;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (n == 2 && kwnames == NULL && PyObject_TypeCheck(args[0], TensorType)) {
        PyObject *r = binary_fast(g, args[0], args[1]);
        if (r != Py_NotImplemented)
            return r;
    }
    return PyObject_Vectorcall(g->fallback, args, nargsf, kwnames);
}

static PyObject *
gate_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *cls, *fallback;
    int binary = 0, reflected = 0;
    static char *kwlist[] = {"cls", "fallback", "binary", "reflected", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|pp", kwlist, &cls, &fallback, &binary,
                                     &reflected))
        return NULL;
    if (OpType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "chainrule._cengine.install() was not called");
        return NULL;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, OpType)) {
        PyErr_SetString(PyExc_TypeError, "Gate: cls must be an Op subclass");
        return NULL;
    }
    Gate *g = (Gate *)type->tp_alloc(type, 0);
    if (g == NULL)
        return NULL;
    g->cls = Py_NewRef(cls);
    g->fallback = Py_NewRef(fallback);
    g->binary = binary;
    g->reflected = reflected;
    g->vectorcall = binary ? binary_gate_call : unary_gate_call;
    return (PyObject *)g;
}

static int
gate_traverse(Gate *g, visitproc visit, void *arg)
{
    Py_VISIT(g->cls);
    Py_VISIT(g->fallback);
    return 0;
}

static int
gate_clear(Gate *g)
{
    Py_CLEAR(g->cls);
    Py_CLEAR(g->fallback);
    return 0;
}

static void
gate_dealloc(Gate *g)
{
    PyObject_GC_UnTrack(g);
    gate_clear(g);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *
gate_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *
gate_getattro(PyObject *self, PyObject *name)
{
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return PyObject_GetAttr(((Gate *)self)->fallback, name);
    }
    return r;
}

static PyObject *
gate_fallback_attr(PyObject *self, void *name)
{
    return PyObject_GetAttrString(((Gate *)self)->fallback, (const char *)name);
}

static PyObject *
gate_repr(Gate *g)
{
    return PyUnicode_FromFormat("<chainrule gate %R for %R>", g->fallback, g->cls);
}

static PyMemberDef gate_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Gate, fallback), READONLY, NULL},
    {"gate", T_OBJECT, offsetof(Gate, cls), READONLY, "the Op subclass"},
    {NULL},
};

static PyGetSetDef gate_getset[] = {
    {"__name__", gate_fallback_attr, NULL, NULL, "__name__"},
    {"__qualname__", gate_fallback_attr, NULL, NULL, "__qualname__"},
    {"__doc__", gate_fallback_attr, NULL, NULL, "__doc__"},
    {"__module__", gate_fallback_attr, NULL, NULL, "__module__"},
    {NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "chainrule._cengine.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = gate_new,
    .tp_dealloc = (destructor)gate_dealloc,
    .tp_traverse = (traverseproc)gate_traverse,
    .tp_clear = (inquiry)gate_clear,
    .tp_vectorcall_offset = offsetof(Gate, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = gate_descr_get,
    .tp_getattro = gate_getattro,
    .tp_repr = (reprfunc)gate_repr,
    .tp_members = gate_members,
    .tp_getset = gate_getset,
};

/* ---- the backward pass -------------------------------------------------------------------- */

static inline int
is_op(PyObject *node)
{
    return PyObject_TypeCheck(node, OpType);
}

/* A node's edges as a C array of borrowed references. ``hold`` keeps a sequence alive for the
 * non-Op case (set to NULL for Ops). Returns the count, -1 on error. */
static Py_ssize_t
node_edges(PyObject *node, PyObject **two, PyObject ***edges, PyObject **hold)
{
    *hold = NULL;
    if (is_op(node)) {
        PyObject *nin = get_slot(node, N_nin, s_edges);
        if (nin == NULL)
            return -1;
        Py_ssize_t k = PyLong_AsSsize_t(nin);
        if (k == 1 || k == 2) {
            two[0] = get_slot(node, N_e0, s_edges);
            if (two[0] == NULL)
                return -1;
            if (k == 2 && (two[1] = get_slot(node, N_e1, s_edges)) == NULL)
                return -1;
            *edges = two;
            return k;
        }
        if (k == -1 && PyErr_Occurred())
            return -1;
        PyObject *en = get_slot(node, N_en, s_edges);
        if (en == NULL)
            return -1;
        *hold = PySequence_Fast(en, "edges");
    }
    else {
        PyObject *e = PyObject_GetAttr(node, s_edges);
        if (e == NULL)
            return -1;
        *hold = PySequence_Fast(e, "edges");
        Py_DECREF(e);
    }
    if (*hold == NULL)
        return -1;
    *edges = PySequence_Fast_ITEMS(*hold);
    return PySequence_Fast_GET_SIZE(*hold);
}

/* the node (borrowed) an edge points to, or NULL for None and leaves */
static inline PyObject *
edge_node(PyObject *e, PyObject **nr)
{
    *nr = Zero;
    if (e == Py_None)
        return NULL;
    if (PyTuple_CheckExact(e)) {
        *nr = PyTuple_GET_ITEM(e, 1);
        e = PyTuple_GET_ITEM(e, 0);
    }
    return PyObject_TypeCheck(e, FunctionType) ? e : NULL;
}

/* _count_consumers(starts): {node: how many edges from reachable nodes reach it} */
static PyObject *
count_consumers(PyObject *module, PyObject *starts)
{
    PyObject *deps = PyDict_New();
    PyObject *todo = PyList_New(0);
    PyObject *seq = PySequence_Fast(starts, "starts");
    if (deps == NULL || todo == NULL || seq == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *n = PySequence_Fast_GET_ITEM(seq, i);
        int has = PyDict_Contains(deps, n);
        if (has < 0)
            goto fail;
        if (!has && (PyDict_SetItem(deps, n, Zero) < 0 || PyList_Append(todo, n) < 0))
            goto fail;
    }
    while (PyList_GET_SIZE(todo)) {
        Py_ssize_t last = PyList_GET_SIZE(todo) - 1;
        PyObject *node = Py_NewRef(PyList_GET_ITEM(todo, last));
        if (PyList_SetSlice(todo, last, last + 1, NULL) < 0) {
            Py_DECREF(node);
            goto fail;
        }
        PyObject *two[2], **edges, *hold;
        Py_ssize_t k = node_edges(node, two, &edges, &hold);
        if (k < 0) {
            Py_DECREF(node);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *nr, *parent = edge_node(edges[j], &nr);
            if (parent == NULL)
                continue;
            PyObject *c = PyDict_GetItemWithError(deps, parent);
            if (c == NULL && PyErr_Occurred())
                goto fail_node;
            if (c != NULL) {
                PyObject *c1 = PyNumber_Add(c, One);
                if (c1 == NULL || PyDict_SetItem(deps, parent, c1) < 0) {
                    Py_XDECREF(c1);
                    goto fail_node;
                }
                Py_DECREF(c1);
            }
            else if (PyDict_SetItem(deps, parent, One) < 0 || PyList_Append(todo, parent) < 0)
                goto fail_node;
        }
        Py_XDECREF(hold);
        Py_DECREF(node);
        continue;
    fail_node:
        Py_XDECREF(hold);
        Py_DECREF(node);
        goto fail;
    }
    Py_DECREF(todo);
    Py_DECREF(seq);
    return deps;
fail:
    Py_XDECREF(deps);
    Py_XDECREF(todo);
    Py_XDECREF(seq);
    return NULL;
}

/* g.shape != shape or g.dtype is not dtype: 1 if g must be conformed */
static int
needs_conform(PyObject *g, PyObject *shape, PyObject *dtype)
{
    PyObject *gdtype = PyObject_GetAttr(g, s_dtype);
    if (gdtype == NULL)
        return -1;
    Py_DECREF(gdtype);
    if (gdtype != dtype)
        return 1;
    PyObject *gshape = PyObject_GetAttr(g, s_shape);
    if (gshape == NULL)
        return -1;
    int r = gshape == shape ? 0 : PyObject_RichCompareBool(gshape, shape, Py_NE);
    Py_DECREF(gshape);
    return r;
}

typedef struct {
    PyObject *buffers, *deps, *leaf_grads, *slow, *conform, *add_multi;
    PyObject **stack;
    Py_ssize_t n, cap;
} Pass;

static int
push(Pass *p, PyObject *node)
{
    if (p->n == p->cap) {
        Py_ssize_t cap = p->cap ? 2 * p->cap : 64;
        PyObject **s = PyMem_Realloc(p->stack, cap * sizeof(PyObject *));
        if (s == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        p->stack = s;
        p->cap = cap;
    }
    p->stack[p->n++] = Py_NewRef(node);
    return 0;
}

/* _add_leaf(leaf_grads, leaf, g) */
static int
add_leaf(Pass *p, PyObject *leaf, PyObject *g)
{
    PyObject *key = PyLong_FromVoidPtr(leaf);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(p->leaf_grads, key);
    int r = -1;
    if (entry == NULL) {
        if (!PyErr_Occurred()) {
            PyObject *pair = PyList_New(2);
            if (pair != NULL) {
                PyList_SET_ITEM(pair, 0, Py_NewRef(leaf));
                PyList_SET_ITEM(pair, 1, Py_NewRef(g));
                r = PyDict_SetItem(p->leaf_grads, key, pair);
                Py_DECREF(pair);
            }
        }
    }
    else {
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(entry, 1), g);
        if (sum != NULL)
            r = PyList_SetItem(entry, 1, sum);
    }
    Py_DECREF(key);
    return r;
}

/* g (borrowed) as a new reference, summed back to ``shape`` and cast to ``dtype`` by
 * engine._conform where it differs (g.shape != shape or g.dtype is not dtype) */
static PyObject *
conformed(Pass *p, PyObject *g, PyObject *shape, PyObject *dtype, PyObject *node)
{
    int c = needs_conform(g, shape, dtype);
    if (c < 0)
        return NULL;
    if (c == 0)
        return Py_NewRef(g);
    return PyObject_CallFunctionObjArgs(p->conform, g, shape, dtype, Py_False, node, NULL);
}

/* Send gradient g (borrowed) along one edge of ``node``. */
static int
deliver(Pass *p, PyObject *node, PyObject *edge, PyObject *g)
{
    PyObject *nr, *parent = edge_node(edge, &nr);
    int r = -1;
    if (parent == NULL) {
        if (edge == Py_None || g == Py_None)
            return 0;
        /* a leaf */
        PyObject *data = PyObject_TypeCheck(edge, TensorType) ? get_slot(edge, T_data, s_data)
                                                              : NULL;
        if (data == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a graph edge is neither a node nor a Tensor");
            return -1;
        }
        Py_INCREF(data);
        PyObject *shape = PyObject_GetAttr(data, s_shape);
        PyObject *dtype = shape ? PyObject_GetAttr(data, s_dtype) : NULL;
        Py_DECREF(data);
        if (dtype == NULL) {
            Py_XDECREF(shape);
            return -1;
        }
        PyObject *gc = conformed(p, g, shape, dtype, node);
        if (gc != NULL)
            r = add_leaf(p, edge, gc);
        Py_XDECREF(gc);
        Py_DECREF(shape);
        Py_DECREF(dtype);
        return r;
    }
    Py_INCREF(parent);
    Py_INCREF(nr);
    if (g != Py_None) {
        PyObject *shape, *dtype = NULL;
        int op = is_op(parent);
        if (op) {
            shape = get_slot(parent, N_shape, s_shape_attr);
            Py_XINCREF(shape);
        }
        else
            shape = PyObject_GetAttr(parent, s_shape_attr);
        if (shape == NULL)
            goto done;
        int one_output = shape != Py_None;
        if (one_output) {
            if (op) {
                dtype = get_slot(parent, N_dtype, s_dtype_attr);
                Py_XINCREF(dtype);
            }
            else
                dtype = PyObject_GetAttr(parent, s_dtype_attr);
        }
        else {
            Py_DECREF(shape);
            shape = NULL;
            PyObject *outs = PyObject_GetAttr(parent, s_outs);
            PyObject *meta = outs ? PyObject_GetItem(outs, nr) : NULL;
            Py_XDECREF(outs);
            if (meta != NULL && PyTuple_Check(meta) && PyTuple_GET_SIZE(meta) == 2) {
                shape = Py_NewRef(PyTuple_GET_ITEM(meta, 0));
                dtype = Py_NewRef(PyTuple_GET_ITEM(meta, 1));
            }
            else if (meta != NULL)
                PyErr_SetString(PyExc_TypeError, "a node's output meta is not (shape, dtype)");
            Py_XDECREF(meta);
        }
        if (dtype == NULL) {
            Py_XDECREF(shape);
            goto done;
        }
        g = conformed(p, g, shape, dtype, node);
        Py_DECREF(shape);
        Py_DECREF(dtype);
        if (g == NULL)
            goto done;
        int ok;
        if (one_output) {
            PyObject *old = PyDict_GetItemWithError(p->buffers, parent);
            if (old == NULL && PyErr_Occurred())
                ok = -1;
            else if (old == NULL)
                ok = PyDict_SetItem(p->buffers, parent, g);
            else {
                PyObject *sum = PyNumber_Add(old, g);
                ok = sum ? PyDict_SetItem(p->buffers, parent, sum) : -1;
                Py_XDECREF(sum);
            }
        }
        else {
            PyObject *res = PyObject_CallFunctionObjArgs(p->add_multi, p->buffers, parent, nr,
                                                         g, NULL);
            ok = res ? 0 : -1;
            Py_XDECREF(res);
        }
        Py_DECREF(g);
        if (ok < 0)
            goto done;
    }
    PyObject *count = PyDict_GetItemWithError(p->deps, parent);
    if (count == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "backward reached a node it did not count");
        goto done;
    }
    Py_ssize_t left = PyLong_AsSsize_t(count) - 1;
    if (left == -2 && PyErr_Occurred())
        goto done;
    PyObject *left_obj = PyLong_FromSsize_t(left);
    if (left_obj == NULL)
        goto done;
    int ok = PyDict_SetItem(p->deps, parent, left_obj);
    Py_DECREF(left_obj);
    if (ok < 0 || (left == 0 && push(p, parent) < 0))
        goto done;
    r = 0;
done:
    Py_DECREF(parent);
    Py_DECREF(nr);
    return r;
}

/* Run one node: its backward rule, then deliver the input gradients. */
static int
run_node(Pass *p, PyObject *node, int retain_graph)
{
    PyObject *two[2], **edges, *hold;
    Py_ssize_t k = node_edges(node, two, &edges, &hold);
    if (k < 0)
        return -1;
    /* keep the edges alive while the rule runs (it may not touch them, but be safe) */
    PyObject *e0 = k >= 1 && hold == NULL ? Py_NewRef(edges[0]) : NULL;
    PyObject *e1 = k == 2 && hold == NULL ? Py_NewRef(edges[1]) : NULL;
    PyObject *grads = NULL, *grad = NULL;
    int r = -1;

    grad = PyDict_GetItemWithError(p->buffers, node);
    if (grad != NULL) {
        Py_INCREF(grad);
        if (PyDict_DelItem(p->buffers, node) < 0)
            goto done;
    }
    else if (PyErr_Occurred())
        goto done;

    if (grad != NULL && grad != Py_None) {
        int fast = is_op(node) && SLOT(node, N_shape) != NULL && SLOT(node, N_shape) != Py_None;
        if (fast) {
            PyObject *hooks = PyObject_GetAttr(node, s_hooks);
            if (hooks == NULL)
                goto done;
            fast = hooks == Py_None;
            Py_DECREF(hooks);
        }
        PyObject *res;
        if (fast) {
            PyObject *backward = PyObject_GetAttr(node, s_backward);
            if (backward == NULL)
                goto done;
            PyObject *args[2] = {node, grad};
            res = PyObject_Vectorcall(backward, args, 2, NULL);
            Py_DECREF(backward);
        }
        else
            res = PyObject_CallFunctionObjArgs(p->slow, node, grad, NULL);
        if (res == NULL)
            goto done;
        if (PyTuple_CheckExact(res))
            grads = res;
        else {
            grads = PyTuple_Pack(1, res);
            Py_DECREF(res);
            if (grads == NULL)
                goto done;
        }
        if (PyTuple_GET_SIZE(grads) < k) {
            PyObject *name = PyObject_CallMethod(node, "name", NULL);
            if (name != NULL) {
                PyErr_Format(PyExc_RuntimeError,
                             "function %S returned an incorrect number of gradients "
                             "(expected %zd, got %zd)", name, k, PyTuple_GET_SIZE(grads));
                Py_DECREF(name);
            }
            goto done;
        }
        if (!retain_graph) {
            /* node._saved = None frees the saved arrays; a second backward now raises */
            if (is_op(node)) {
                PyObject *saved = SLOT(node, N_saved);
                if (saved != NULL && saved != Py_None) {
                    int t = PyObject_IsTrue(saved);
                    if (t < 0)
                        goto done;
                    if (t)
                        set_slot(node, N_saved, Py_None);
                }
            }
            else {
                PyObject *saved = PyObject_GetAttr(node, s_saved);
                if (saved == NULL)
                    goto done;
                int t = PyObject_IsTrue(saved);
                Py_DECREF(saved);
                if (t < 0 || (t && PyObject_SetAttr(node, s_saved, Py_None) < 0))
                    goto done;
            }
        }
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *g = grads ? PyTuple_GET_ITEM(grads, j) : Py_None;
        if (deliver(p, node, edges[j], g) < 0)
            goto done;
    }
    r = 0;
done:
    Py_XDECREF(grad);
    Py_XDECREF(grads);
    Py_XDECREF(e0);
    Py_XDECREF(e1);
    Py_XDECREF(hold);
    return r;
}

/* backward(ready, buffers, deps, leaf_grads, retain_graph, slow, conform, add_multi):
 * the plain loop of engine.run_backward (no create_graph, no autograd.grad captures, no
 * anomaly mode). Leaf gradients land in leaf_grads as {id(leaf): [leaf, grad]}. */
static PyObject *
backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "backward(ready, buffers, deps, leaf_grads, retain_graph, slow, "
                        "conform, add_multi)");
        return NULL;
    }
    Pass p = {args[1], args[2], args[3], args[5], args[6], args[7], NULL, 0, 0};
    int retain_graph = PyObject_IsTrue(args[4]);
    if (retain_graph < 0)
        return NULL;
    PyObject *ready = PySequence_Fast(args[0], "ready");
    if (ready == NULL)
        return NULL;
    int r = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(ready) && r == 0; i++)
        r = push(&p, PySequence_Fast_GET_ITEM(ready, i));
    Py_DECREF(ready);
    while (r == 0 && p.n) {
        PyObject *node = p.stack[--p.n];
        r = run_node(&p, node, retain_graph);
        Py_DECREF(node);
    }
    while (p.n)
        Py_DECREF(p.stack[--p.n]);
    PyMem_Free(p.stack);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

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
            o[i] = g[i] * (T)(y[i] != 0);                                            \
    }
DEFINE_RELU(float, f)
DEFINE_RELU(double, d)

/* relu_forward(x, out): out = np.maximum(x, 0) (NaN stays NaN, -0.0 becomes 0.0) */
static PyObject *
relu_forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[2];
    Py_ssize_t n;
    if (same_size_bufs(&b, args, nargs, 2, 1, 0, "relu_forward(x, out)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        relu_forward_f(p[0], p[1], n);
    else
        relu_forward_d(p[0], p[1], n);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
}

/* relu_backward(g, y, out): out = g * (y != 0) */
static PyObject *
relu_backward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Bufs b = {.n = 0};
    char fmt = 0;
    void *p[3];
    Py_ssize_t n;
    if (same_size_bufs(&b, args, nargs, 3, 2, 0, "relu_backward(g, y, out)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        relu_backward_f(p[0], p[1], p[2], n);
    else
        relu_backward_d(p[0], p[1], p[2], n);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
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

#define LN_FORWARD(T, suffix)                                                \
    CLONES static void ln_forward_##suffix(const T *x, const T *w, const T *bias,   \
                                           double eps, T *y, T *xh, T *rs,         \
                                           Py_ssize_t rows, Py_ssize_t n)          \
    {                                                                        \
        for (Py_ssize_t r = 0; r < rows; r++) {                              \
            const T *xr = x + r * n;                                         \
            T *xhr = xh + r * n, *yr = y + r * n;                            \
            T mean = (T)(sum_##suffix(xr, n) / n);                           \
            for (Py_ssize_t j = 0; j < n; j++)                               \
                xhr[j] = xr[j] - mean;                                       \
            T rstd = (T)(1.0 / sqrt(dot_##suffix(xhr, xhr, n) / n + eps));   \
            rs[r] = rstd;                                                    \
            for (Py_ssize_t j = 0; j < n; j++)                               \
                xhr[j] *= rstd;                                              \
            if (w && bias)                                                   \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    yr[j] = xhr[j] * w[j] + bias[j];                         \
            else if (w)                                                      \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    yr[j] = xhr[j] * w[j];                                   \
            else                                                             \
                for (Py_ssize_t j = 0; j < n; j++)                           \
                    yr[j] = xhr[j] + (bias ? bias[j] : (T)0);                \
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
    if (n <= 0 || len != rows * n || ly != len || lxh != len || (pw && lw != n) || (pb && lb != n)) {
        PyErr_SetString(PyExc_ValueError, "layer_norm_forward: sizes do not match");
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt == 'f')
        ln_forward_f(px, pw, pb, eps, py, pxh, pr, rows, n);
    else
        ln_forward_d(px, pw, pb, eps, py, pxh, pr, rows, n);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
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
    if (n <= 0 || len != rows * n || lxh != len || (pw && lw != n) || (pgx && lgx != len)
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
    Py_ssize_t n;
    if (same_size_bufs(&b, args, nargs, 3, 1, 1, "gelu_float32(x, y, dydx)", &fmt, p, &n) < 0) {
        bufs_release(&b);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    gelu_f(p[0], p[1], p[2], n);
    Py_END_ALLOW_THREADS
    bufs_release(&b);
    Py_RETURN_NONE;
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

/* ---- installation ------------------------------------------------------------------------- */

static PyObject *
install(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"Tensor", "Op", "Function", "ndarray", "state", "backend",
                             "note_extras", "sources", "from_input0", "from_output",
                             "from_inputs01", "float_dtypes", "finish_many", "check_device",
                             NULL};
    PyObject *tensor, *op, *function, *ndarray, *float_dtypes;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!OOOOOOOOOO", kwlist, &PyType_Type,
                                     &tensor, &PyType_Type, &op, &PyType_Type, &function,
                                     &PyType_Type, &ndarray, &State, &Backend, &NoteExtras,
                                     &Sources, &FromInput0, &FromOutput, &FromInputs01,
                                     &float_dtypes, &FinishMany, &CheckDevice))
        return NULL;
    Py_INCREF(FinishMany);
    Py_INCREF(CheckDevice);
    TensorType = (PyTypeObject *)Py_NewRef(tensor);
    OpType = (PyTypeObject *)Py_NewRef(op);
    FunctionType = (PyTypeObject *)Py_NewRef(function);
    NdarrayType = (PyTypeObject *)Py_NewRef(ndarray);
    Py_INCREF(State);
    Py_INCREF(Backend);
    Py_INCREF(NoteExtras);
    Py_INCREF(Sources);
    Py_INCREF(FromInput0);
    Py_INCREF(FromOutput);
    Py_INCREF(FromInputs01);
    PyObject *seq = PySequence_Fast(float_dtypes, "float_dtypes");
    if (seq == NULL)
        return NULL;
    n_float_dtypes = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && n_float_dtypes < 4; i++)
        FloatDtypes[n_float_dtypes++] = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (slot_offset(TensorType, "_data", &T_data) < 0 ||
        slot_offset(TensorType, "_grad_fn", &T_grad_fn) < 0 ||
        slot_offset(TensorType, "_nr", &T_nr) < 0 ||
        slot_offset(TensorType, "_requires_grad", &T_requires_grad) < 0 ||
        slot_offset(TensorType, "_grad", &T_grad) < 0 ||
        slot_offset(TensorType, "_hooks", &T_hooks) < 0 ||
        slot_offset(OpType, "_e0", &N_e0) < 0 || slot_offset(OpType, "_e1", &N_e1) < 0 ||
        slot_offset(OpType, "_nin", &N_nin) < 0 || slot_offset(OpType, "_en", &N_en) < 0 ||
        slot_offset(OpType, "_saved", &N_saved) < 0 ||
        slot_offset(OpType, "_saved_from", &N_saved_from) < 0 ||
        slot_offset(OpType, "_shape", &N_shape) < 0 ||
        slot_offset(OpType, "_dtype", &N_dtype) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_VARARGS | METH_KEYWORDS,
     "Hand over the classes and helpers the fast paths mirror (chainrule.autograd.accel)."},
    {"apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL, "Op.apply(cls, *args)"},
    {"apply_unary", (PyCFunction)(void (*)(void))apply_unary, METH_FASTCALL,
     "Op.apply_unary(cls, x)"},
    {"apply_binary", (PyCFunction)(void (*)(void))apply_binary, METH_FASTCALL,
     "Op.apply_binary(cls, a, b)"},
    {"count_consumers", count_consumers, METH_O, "engine._count_consumers(starts)"},
    {"relu_forward", (PyCFunction)(void (*)(void))relu_forward, METH_FASTCALL,
     "relu_forward(x, out): out = np.maximum(x, 0) (NaN stays NaN, -0.0 becomes 0.0)"},
    {"relu_backward", (PyCFunction)(void (*)(void))relu_backward, METH_FASTCALL,
     "relu_backward(g, y, out): out = g * (y != 0)"},
    {"layer_norm_forward", (PyCFunction)(void (*)(void))layer_norm_forward, METH_FASTCALL,
     "layer_norm_forward(x, w, b, eps, y, xhat, rstd, n)"},
    {"layer_norm_backward", (PyCFunction)(void (*)(void))layer_norm_backward, METH_FASTCALL,
     "layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n)"},
    {"gelu_float32", (PyCFunction)(void (*)(void))gelu_float32, METH_FASTCALL,
     "gelu_float32(x, y, dydx): y = x·Φ(x), dydx = Φ(x) + x·φ(x) (None: not wanted)"},
    {"lstm_step_forward", (PyCFunction)(void (*)(void))lstm_step_forward, METH_FASTCALL,
     "lstm_step_forward(act, cs, t, prev, cur)"},
    {"lstm_step_backward", (PyCFunction)(void (*)(void))lstm_step_backward, METH_FASTCALL,
     "lstm_step_backward(dh, dc, g_out_t, a_c, p, act, dz, t)"},
    {"backward", (PyCFunction)(void (*)(void))backward, METH_FASTCALL,
     "the plain loop of engine.run_backward"},
    {NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "chainrule._cengine",
    "The engine's per-gate bookkeeping in C (optional; mirrors chainrule.autograd).", -1,
    methods,
};

#define INTERN(var, text)                                   \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;

PyMODINIT_FUNC
PyInit__cengine(void)
{
    INTERN(s_grad_enabled, "grad_enabled");
    INTERN(s_extras, "extras");
    INTERN(s_forward, "forward");
    INTERN(s_backward, "backward");
    INTERN(s_dtype, "dtype");
    INTERN(s_kind, "kind");
    INTERN(s_shape, "shape");
    INTERN(s_ndim, "ndim");
    INTERN(s_hooks, "_hooks");
    INTERN(s_saved, "_saved");
    INTERN(s_f, "fV");
    INTERN(s_cupy, "_cupy");
    INTERN(s_edges, "_edges");
    INTERN(s_outs, "_outs");
    INTERN(s_dtype_attr, "_dtype");
    INTERN(s_grad_fn, "_grad_fn");
    INTERN(s_shape_attr, "_shape");
    INTERN(s_data, "_data");
    INTERN(s_modes, "modes");
    INTERN(s_scopes, "_scopes");
    INTERN(s_scope, "scope");
    INTERN(s_differentiable, "differentiable");
    if ((Zero = PyLong_FromLong(0)) == NULL || (One = PyLong_FromLong(1)) == NULL ||
        (Two = PyLong_FromLong(2)) == NULL || (EmptyTuple = PyTuple_New(0)) == NULL)
        return NULL;
    if (PyType_Ready(&GateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    /* accel.py refuses a build whose interface differs from the Python it mirrors */
    if (PyModule_AddIntConstant(m, "INTERFACE", CENGINE_INTERFACE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&GateType);
    if (PyModule_AddObject(m, "Gate", (PyObject *)&GateType) < 0) {
        Py_DECREF(&GateType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
