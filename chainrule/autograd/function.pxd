# Cython declarations for function.py (pure-Python mode: function.py stays the one source;
# compiled, a gate's node state becomes C fields).

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
    cdef dict __dict__
    cdef object __weakref__


cdef class Op(Function):
    pass
