"""The thread counts ``set_num_threads`` records, and who must follow them: a module that imports
nothing, so the kernels can read it (``chainrule._runtime``, where the setters live, reaches the
whole library)."""

from __future__ import annotations

import os

# "n": set_num_threads's count (None: never called), "interop": set_num_interop_threads's,
# "limiter": threadpoolctl's controller, made at the first call
counts: dict = {"n": None, "interop": None, "limiter": None}
# called with no arguments after set_num_threads (kernels.cpu re-sizes its row loops' threads)
on_set: list = []


def blas_threads() -> int:
    """The threads a BLAS call may use: ``set_num_threads``'s value where it was called, else
    what OpenBLAS starts with (OPENBLAS/OMP_NUM_THREADS, else the CPUs this process may use)."""
    n = counts["n"]
    if n:
        return n
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
