# Cython declarations for tensor.py (pure-Python mode: tensor.py stays the one source; compiled,
# TensorBase becomes a C type whose fields the engine reads directly).

cimport cython


cdef class TensorBase:
    cdef public object _data
    cdef public object _grad_fn
    cdef public Py_ssize_t _nr
    cdef public bint _requires_grad
    cdef public object _grad
    cdef public object _hooks
    cdef public object _post_hooks
    cdef public Py_ssize_t _vc
    cdef public object _vholder
    cdef public object _base
    cdef public object _view
    cdef public object _view_src
    cdef object __weakref__


cdef class VersionCounter:
    cdef public Py_ssize_t _vc
    cdef public Py_ssize_t _rebased


cdef class _Late:
    cdef public object ops, autograd, inplace, creation, printing


cdef _Late _late
cdef type _tensor_type  # Tensor, for wrap()'s direct allocation

cpdef VersionCounter version_counter(TensorBase t)

@cython.locals(t=TensorBase)
cpdef object wrap(object data, object fn=*, long nr=*)
