"""The default process group: which backend serves which tensors, the watchdog, work handles.

``init_process_group`` starts MPI (every process must have been started by an MPI launcher,
e.g. ``chainrule launch``); MPI carries host tensors and bootstraps NCCL, which carries CuPy
tensors when the backend names it (``"nccl"``, or the default, with a GPU).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import time
import warnings

from chainrule import devices

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "is_available",
           "is_mpi_available", "is_nccl_available", "is_torchelastic_launched", "get_rank",
           "get_world_size", "get_backend", "get_node_local_rank", "Work", "DistBackendError",
           "DistError", "Backend", "group", "GroupMember", "default_timeout"]

_NOT_INITIALIZED = ("Default process group has not been initialized, please make sure to call "
                    "init_process_group.")
INSTALL_HINT = ("chainrule.distributed needs mpi4py and an MPI library: "
                "pip install 'chainrule[distributed]' (mpi4py and Open MPI's wheel)")
# The rank variables that MPI launchers set (Open MPI, MPICH/Intel MPI's hydra, PMIx).
_MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")
_MPI_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")


class DistError(RuntimeError):
    """An error of the distributed package (torch.distributed.DistError)."""


class DistBackendError(DistError):
    """A collective failed or timed out (torch.distributed.DistBackendError)."""


class Backend(str):
    """Backend names, as ``torch.distributed.Backend`` (``Backend.MPI == "mpi"``)."""

    UNDEFINED, GLOO, NCCL, MPI = "undefined", "gloo", "nccl", "mpi"

    def __new__(cls, name: str):
        return super().__new__(cls, name.lower())


class _World:
    """The default group: the MPI backend, NCCL (made on first use by a CuPy tensor)."""

    def __init__(self, comm, backend_name: str, timeout: float) -> None:
        from chainrule.distributed.mpi_backend import MPIBackend
        from chainrule.distributed.watchdog import Watchdog

        self.mpi_comm = comm
        self.mpi = MPIBackend(comm)
        self.rank, self.size = self.mpi.rank, self.mpi.size
        self.backend_name = backend_name
        self.timeout = timeout
        self.use_nccl = "nccl" in backend_name
        self.nccl = None
        self.watchdog = None
        if self.size > 1:
            from mpi4py import MPI

            if MPI.Query_thread() >= MPI.THREAD_MULTIPLE:
                self.watchdog = Watchdog(comm, timeout)
            else:
                warnings.warn("chainrule.distributed: this MPI gives no MPI_THREAD_MULTIPLE, so "
                              "there is no watchdog: a failed or hung rank may leave the others "
                              "waiting", RuntimeWarning, stacklevel=3)

    def backend_for(self, a):
        """NCCL for CuPy arrays when the backend names it; MPI otherwise (GPU arrays through
        host copies)."""
        if self.use_nccl and devices.is_gpu_array(a):
            if self.nccl is None:
                from chainrule.distributed.nccl_backend import NCCLBackend

                with self.guard("nccl init"):
                    self.nccl = NCCLBackend(self.mpi_comm)
            return self.nccl
        return self.mpi

    def guard(self, name: str):
        """The main thread waits on collective ``name``: the watchdog times it (a context)."""
        wd = self.watchdog
        return _NO_WATCHDOG if wd is None else _Timed(wd, name)

    def close(self) -> None:
        if self.nccl is not None:
            self.nccl.close()
        if self.watchdog is not None:
            self.watchdog.close()
        self.mpi.close()


class _Timed:
    """``with``: the watchdog times collective ``name`` while the block runs."""

    __slots__ = ("wd", "name")

    def __init__(self, wd, name: str) -> None:
        self.wd, self.name = wd, name

    def __enter__(self) -> None:
        self.wd.enter(self.name)

    def __exit__(self, *exc) -> None:
        self.wd.leave()


_NO_WATCHDOG = contextlib.nullcontext()
_world: _World | None = None


class group:  # noqa: N801  (torch.distributed.group)
    """``group.WORLD``: the default group (the only group chainrule has)."""

    WORLD = None


GroupMember = group


def world(g=None) -> _World:
    """The default group, or ValueError (torch's message) when it was never initialized."""
    if _world is None:
        raise ValueError(_NOT_INITIALIZED)
    if g is not None and g is not _world:
        raise ValueError("chainrule.distributed has only the default group (group=None)")
    return _world


def default_timeout() -> float:
    """Seconds a collective may wait: $CHAINRULE_DIST_TIMEOUT, else 60."""
    text = os.environ.get("CHAINRULE_DIST_TIMEOUT", "")
    try:
        return float(text) if text else 60.0
    except ValueError:
        raise ValueError(f"CHAINRULE_DIST_TIMEOUT must be a number of seconds, got {text!r}") \
            from None


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") \
            from None


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | float | None = None, world_size: int = -1,
                       rank: int = -1, store=None, group_name: str = "", pg_options=None,
                       device_id=None) -> None:
    """Join the default process group: MPI's world (the processes an MPI launcher started).

    ``backend``: ``"mpi"`` (also ``"gloo"``, MPI serving torch's CPU backend's role),
    ``"nccl"`` (CuPy tensors through NCCL, host tensors through MPI) or None (both).
    ``rank``/``world_size`` and torchrun's ``RANK``/``WORLD_SIZE`` must agree with MPI's.
    ``timeout``: how long a collective may wait before every rank stops with an error naming
    the rank that did not come (default 60 s, or $CHAINRULE_DIST_TIMEOUT).
    """
    global _world
    if _world is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name = "mpi,nccl" if backend is None else str(backend).lower()
    for part in name.replace(",", " ").split():
        if part.split(":")[-1] not in ("mpi", "gloo", "nccl"):
            raise ValueError(f"Invalid backend: {backend!r} (chainrule has 'mpi' (alias 'gloo') "
                             "and 'nccl')")
    if init_method not in (None, "env://") and not str(init_method).startswith(("tcp://",
                                                                                "file://")):
        raise ValueError(f"init_method {init_method!r} is not supported (MPI finds the peers)")
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    timeout = default_timeout() if timeout is None else float(timeout)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(INSTALL_HINT) from e
    comm = MPI.COMM_WORLD
    mpi_rank, mpi_size = comm.Get_rank(), comm.Get_size()
    for what, given, mine in (("rank", rank, mpi_rank), ("world_size", world_size, mpi_size),
                              ("RANK", _env_int("RANK"), mpi_rank),
                              ("WORLD_SIZE", _env_int("WORLD_SIZE"), mpi_size)):
        if given is not None and given != -1 and given != mine:
            raise ValueError(
                f"init_process_group: {what}={given} but MPI started this process as rank "
                f"{mpi_rank} of {mpi_size}: start every process with an MPI launcher "
                f"(chainrule launch --nproc-per-node N SCRIPT, or mpiexec -n N), not torchrun"
            )
    if "nccl" in name and backend is not None and not devices.cuda_available():
        raise RuntimeError(f"backend {backend!r} needs CuPy and an NVIDIA GPU; use 'mpi' on CPUs")
    _world = _World(comm, name if backend is not None else "mpi", timeout)
    _world.use_nccl = "nccl" in name and devices.cuda_available()
    group.WORLD = _world
    atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    # before mpi4py finalizes MPI (atexit runs last-registered first): stop the watchdog
    if _world is not None and _world.watchdog is not None:
        _world.watchdog.close()
        _world.watchdog = None


def destroy_process_group(group=None) -> None:
    """Leave the default group (its communicators and the watchdog are freed)."""
    global _world
    w = world(group)
    w.close()
    _world = None
    globals()["group"].WORLD = None


def is_initialized() -> bool:
    return _world is not None


def is_available() -> bool:
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_nccl_available() -> bool:
    if not devices.cuda_available():
        return False
    try:
        from cupy.cuda import nccl  # noqa: F401
    except ImportError:
        return False
    return True


def is_torchelastic_launched() -> bool:
    return os.environ.get("TORCHELASTIC_RUN_ID") is not None


def get_rank(group=None) -> int:
    return world(group).rank


def get_world_size(group=None) -> int:
    return world(group).size


def get_backend(group=None) -> str:
    return Backend(world(group).backend_name)


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """This process's rank on its machine (LOCAL_RANK, or the MPI launcher's variable)."""
    for var in ("LOCAL_RANK", *_MPI_LOCAL_RANK_VARS):
        value = _env_int(var)
        if value is not None:
            return value
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("LOCAL_RANK is not in the environment (start with chainrule launch)")


class Work:
    """The handle of a collective started with ``async_op=True``: ``wait()`` finishes it."""

    def __init__(self, w: _World, name: str, request, finish=None, result=None) -> None:
        self._world, self._name, self._req = w, name, request
        self._finish, self._result, self._done = finish, result, False

    def wait(self, timeout: datetime.timedelta | None = None) -> bool:
        if self._done:
            return True
        req = self._req
        if hasattr(req, "Wait"):  # MPI
            wait_request(self._world, req, self._name)
        elif req is not None:  # a CUDA event (NCCL): the current stream waits on it
            devices.loaded_cupy().cuda.get_current_stream().wait_event(req)
        self._done = True
        if self._finish is not None:
            self._finish()
        return True

    def is_completed(self) -> bool:
        if self._done:
            return True
        req = self._req
        if hasattr(req, "Test"):
            return bool(req.Test())
        return req is None or bool(req.done)

    def is_success(self) -> bool:
        return self.is_completed()

    def exception(self):
        return None

    def result(self) -> list:
        self.wait()
        return list(self._result or ())

    def synchronize(self) -> None:
        self.wait()


def wait_request(w: _World, req, name: str) -> None:
    """Wait for an MPI request: polls that yield the core to any process that wants it (a rank
    ready before its peers leaves the CPU to them), then, after 5 ms, polls with short sleeps."""
    with w.guard(name):
        spin = time.perf_counter() + 5e-3
        while not req.Test():
            if time.perf_counter() < spin:
                os.sched_yield()
            else:
                time.sleep(5e-5)


def run(w: _World, name: str, start, finish=None, async_op: bool = False, result=None):
    """Start a collective with ``start(async_op)``; return a Work or finish it now."""
    with w.guard(name):
        req = start(async_op)
    if async_op:
        return Work(w, name, req, finish, result)
    if finish is not None:
        finish()
    return None
