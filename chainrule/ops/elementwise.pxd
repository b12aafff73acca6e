# Cython declarations for elementwise.py (pure-Python mode: the .py is the one source).

from chainrule.autograd.function cimport _apply
