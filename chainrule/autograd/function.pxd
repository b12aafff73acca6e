# Cython declarations for function.py (pure-Python mode: function.py stays the one source;
# compiled, a gate's node state becomes C fields and the helpers of apply C functions).

cimport cython
from chainrule._state cimport Switches, current
from chainrule.tensor cimport TensorBase, VersionCounter, version_counter, wrap


# the cyclic collector's C API (see "nodes and the cyclic garbage collector" in function.py)
cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object o)
    void PyObject_GC_Track(object o)
    bint PyObject_GC_IsTracked(object o)
    int PyObject_GenericSetAttr(object o, object name, object value) except -1


cdef class Function:
    cdef public object _edges
    cdef public object _outs
    cdef public object _saved
    cdef public object _saved_from
    cdef public object _versions
    cdef public object _hooks
    cdef public object _retained
    cdef public object _dirty
    cdef public object _non_differentiable
    cdef public object _tensor_args
    cdef public object _materialize_grads
    cdef public object site
    cdef public object scope
    cdef object __weakref__


cdef class Op(Function):
    pass


cdef dict _sources_seen, _SCALAR_OUTS  # (_SCALAR_META: a Python global, read by the engine)
cdef list _last_outs


@cython.locals(ctx=Function, n=Py_ssize_t)
cpdef object _apply(type cls, tuple args, dict kwargs)
@cython.locals(n=Py_ssize_t)
cdef tuple _values(tuple args)
@cython.locals(t=TensorBase)
cdef object _value(object a)
@cython.locals(n=Py_ssize_t)
cdef object _edges_of(tuple args)
@cython.locals(t=TensorBase)
cdef object _edge(object a)
@cython.locals(nr=Py_ssize_t)
@cython.locals(meta=tuple)
cdef tuple _record_op(Function ctx, tuple args, tuple values, tuple outs, object kwargs,
                      bint extras)
cdef object _output(Function ctx, object o, Py_ssize_t nr, object dtype)
@cython.locals(t=TensorBase, holder=VersionCounter, sources=tuple, saved=tuple, versions=tuple,
               i=Py_ssize_t)
cdef object _note_saved(Function ctx, tuple args, tuple values, tuple outs)
@cython.locals(i=Py_ssize_t, k=Py_ssize_t)
cdef object _source(object s, tuple values, tuple outs)
cdef object _record_function(Function ctx, tuple args, object out, object kwargs)
cdef object _function_output(Function ctx, long nr, object o, tuple args)
cdef bint _marked(object o, object objects) except -1
cdef object _mark_views(tuple args, tuple outs, tuple tensors, object cls)
cdef bint _shares_memory(object a, object b) except -1
@cython.locals(last=tuple, meta=tuple)
cdef tuple _one_output(object shape, object dtype)
@cython.locals(t=TensorBase)
cdef bint _acyclic(Function ctx) except -1
@cython.locals(edges=tuple, versions=tuple, k=Py_ssize_t)
cdef object _leave_collector(Function ctx)
@cython.locals(edges=tuple, versions=tuple)
cdef object _rejoin_collector(Function node)
cdef object _keep_parents(Function ctx)
@cython.locals(versions=tuple, k=Py_ssize_t, holder=VersionCounter)
cpdef object check_saved_versions(object node)
@cython.locals(t=TensorBase, holder=VersionCounter, nr=Py_ssize_t)
cdef object _note_output_versions(Function ctx, tuple wrapped)
