# Cython declarations for binary.py (pure-Python mode: the .py is the one source).

cimport cython

from chainrule.autograd.function cimport _apply
from chainrule.tensor cimport TensorBase


@cython.locals(x=TensorBase, y=TensorBase)
cpdef binary(op, a, b, str name)
