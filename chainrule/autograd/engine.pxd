# Cython declarations for engine.py (pure-Python mode: engine.py stays the one source).

from chainrule._state cimport Switches, current
from chainrule.autograd.function cimport Function
from chainrule.tensor cimport TensorBase, wrap

cimport cython


cdef dict _SCALAR_META


@cython.locals(meta=tuple, node=Function, parent=Function, buffers=dict, leaf_grads=dict, deps=dict,
               ready=list, switches=Switches, i=Py_ssize_t, nr=Py_ssize_t, left=Py_ssize_t, plain=bint)
cpdef object run_backward(object roots, object root_grads, object retain_graph,
                          object create_graph, object inputs=*, object accumulate=*)
cpdef object _add(dict buffers, Function node, Py_ssize_t nr, object g)
cpdef object _add_leaf(dict leaf_grads, object leaf, object g, bint owned)
@cython.locals(node=Function, deps=dict, todo=list)
cpdef dict count_consumers(list starts)
