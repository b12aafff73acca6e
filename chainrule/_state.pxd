# Cython declarations for _state.py (pure-Python mode: the .py is the one source; compiled, an
# op reads its thread's switches as C fields, through a C call of current()).

cimport cython


cdef class Switches:
    cdef public bint grad_enabled, extras, modes, _record_sites, _record_inputs, _anomaly, inference
    cdef public object _scopes


cdef unsigned long _MAIN
cdef Switches _main
cdef object _others

@cython.locals(ident="unsigned long", switches=Switches)
cpdef Switches current()
