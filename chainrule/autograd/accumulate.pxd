# Cython declarations for accumulate.py (pure-Python mode: accumulate.py stays the one source;
# compiled, the engine calls add_into as a C function).

cpdef object add_into(object old, object g)
