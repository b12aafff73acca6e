"""NumPy's own OpenBLAS, driven from chainrule's thread pool at more than one thread.

OpenBLAS's threads spin for ~0.1 s after each product (OPENBLAS_THREAD_TIMEOUT), so beside
them chainrule's C loops and NumPy's elementwise work ran on one core in effect; waking them per
product instead (a short timeout) made the products slower. So where chainrule runs on several
threads, it sets this OpenBLAS to one thread and splits each large product itself into blocks,
each one single-threaded ``cblas_?gemm`` call from the pool of ``kernels/_cpu_loops.c`` (see its
``gemm``), the same threads that run the row loops: one pool for everything, as PyTorch's OpenMP
pool does for its GEMMs and its elementwise ops. :mod:`chainrule.kernels.matmul` sends products
here; this module finds the library and its functions (by the symbol names OpenBLAS exports,
``scipy_cblas_sgemm64_`` in NumPy's ILP64 wheels) and switches the threads.

Opt-in (``CHAINRULE_POOL=1``, read when chainrule is imported and at each
``set_num_threads``): on the 2-core machine of BENCHMARKS.md it measured at parity with
OpenBLAS's own threads (within the 20-50% run-to-run noise of 2-thread timings there), and it
sets the process's OpenBLAS, the user's own NumPy products included, to one thread.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

__all__ = ["state", "find", "use_pool", "loop_runner"]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
# (prefix, suffix, ILP64) of the names OpenBLAS builds export, most specific first
_NAMINGS = [("scipy_", "64_", True), ("", "64_", True), ("scipy_", "", False), ("", "", False)]

# "gemm": {dtype: address of cblas_?gemm}, "ilp64": 64-bit integer arguments, "lib": the CDLL,
# "set_threads": openblas_set_num_threads, "on": products go through the pool (matmul reads it)
# "min_flops": the m·n·k from which a product goes to the pool, "split_gemm": the pool's gemm
# (kernels/_cpu_loops.c; both set by kernels/cpu.py)
state: dict = {"on": False, "gemm": None, "min_flops": 1 << 18}


def _openblas_paths() -> list:
    """Files of the OpenBLAS libraries loaded in this process (NumPy's first)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line}
    except OSError:
        paths = set()
    paths = sorted(p for p in paths if p.startswith("/"))
    if not paths:  # not Linux: ask threadpoolctl
        try:
            from threadpoolctl import threadpool_info

            paths = [i["filepath"] for i in threadpool_info()
                     if i.get("internal_api") == "openblas"]
        except Exception:
            paths = []
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    return sorted(paths, key=lambda p: not p.startswith(numpy_dir))


def find() -> dict:
    """Look up NumPy's OpenBLAS once: fills ``state`` with its gemm addresses (none: empty)."""
    if state["gemm"] is not None:
        return state
    state["gemm"] = {}
    np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)  # NumPy loads its BLAS lazily
    for path in _openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, ilp64 in _NAMINGS:
            try:
                sgemm = getattr(lib, f"{prefix}cblas_sgemm{suffix}")
                dgemm = getattr(lib, f"{prefix}cblas_dgemm{suffix}")
                set_threads = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
                get_threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
            except AttributeError:
                continue
            if not ilp64:  # plain names: 64-bit integers only where the build says so
                try:
                    config = getattr(lib, f"{prefix}openblas_get_config")
                    config.restype = ctypes.c_char_p
                    ilp64 = b"USE64BITINT" in (config() or b"")
                except AttributeError:
                    pass
            runner = None  # gotoblas_pthread: runs functions on OpenBLAS's own threads
            for name in (f"{prefix}gotoblas_pthread{suffix}", "gotoblas_pthread"):
                try:
                    runner = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                    break
                except AttributeError:
                    pass
            set_threads.restype = None
            set_threads.argtypes = [ctypes.c_int]
            get_threads.restype = ctypes.c_int
            address = ctypes.cast
            state.update(lib=lib, path=path, ilp64=ilp64, set_threads=set_threads, runner=runner,
                         get_threads=get_threads,
                         gemm={_F32: address(sgemm, ctypes.c_void_p).value,
                               _F64: address(dgemm, ctypes.c_void_p).value})
            return state
    return state


def use_pool(threads: int, possible: bool = True) -> bool:
    """Run products on chainrule's pool with ``threads`` threads (OpenBLAS itself on one) where
    CHAINRULE_POOL=1, ``possible`` (the pool is built, no MKL), ``threads`` > 1 and NumPy's
    OpenBLAS is found;
    else give OpenBLAS its ``threads`` back. True when the pool takes the products."""
    on = (possible and threads > 1 and os.environ.get("CHAINRULE_POOL", "0") == "1"
          and bool(find()["gemm"]))
    if on or state["on"]:
        state["set_threads"](1 if on else threads)
    state["on"] = on
    return on


def loop_runner(threads: int) -> tuple:
    """(address of OpenBLAS's ``gotoblas_pthread``, its thread count) where chainrule's split
    loops should run on NumPy's OpenBLAS's own threads, else (0, 1).

    That is the default install at more than one thread (the pool off, OpenBLAS threaded): its
    threads spin for ~0.1 s after each product, holding the other cores, so threads of
    chainrule's own would only share those cores with them; on OpenBLAS's threads the row loops
    and the stacks of small products (attention's) use the second core as PyTorch's OpenMP pool
    does. CHAINRULE_LOOPS_ON_BLAS=0 turns it off (the loops then run on one thread)."""
    if (threads <= 1 or state["on"] or os.environ.get("CHAINRULE_LOOPS_ON_BLAS", "1") == "0"
            or os.name == "nt"):
        return 0, 1
    st = find()
    if not st.get("runner"):
        return 0, 1
    n = int(st["get_threads"]())
    return (st["runner"], n) if n > 1 else (0, 1)
