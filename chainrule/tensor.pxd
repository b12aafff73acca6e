# Cython declarations for tensor.py (pure-Python mode: tensor.py stays the one source; compiled,
# TensorBase becomes a C type whose fields the engine reads directly).

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
    cdef dict __dict__
    cdef object __weakref__
