"""The one place that chooses the array library: NumPy on "cpu", CuPy on "cuda".

Op code uses NumPy's namespace (``np``); CuPy arrays take part through NumPy's array protocols
(``__array_ufunc__``/``__array_function__``), and anything that *creates* an array asks
:func:`xp` for the module of the right device.
"""

from __future__ import annotations

import numpy as np

from chainrule import batching as _batching
from chainrule.batching import BatchedArray as _Batched

__all__ = ["np", "device", "xp", "xp_of", "device_of", "to_device", "asarray_on", "is_array",
           "is_gpu_array", "gpu_ndarray", "loaded_cupy", "check_same_device", "as_array",
           "cuda_available",
           "ndarray"]

ndarray = np.ndarray


class _NoGpuArray:
    """Stands in for ``cupy.ndarray`` until CuPy is loaded: ``type(x) is gpu_ndarray`` is the
    cheapest GPU test for hot paths (False for every CPU array and scalar)."""


gpu_ndarray: type = _NoGpuArray
_cupy = None
on_cupy_loaded: list = []  # called once CuPy is loaded (chainrule.backends sets its switches)
_cupy_checked = False

CUDA_INSTALL_HINT = (
    "CUDA tensors need CuPy and an NVIDIA GPU: install the extra with "
    "`pip install 'chainrule[cuda]'` (cupy-cuda12x) or `pip install cupy-cuda13x`"
)


_malloc_asked = False


def keep_freed_memory() -> bool:
    """Let glibc keep freed arrays for reuse instead of returning them to the OS (once per
    process; the engine asks at the first ``backward()``/``autograd.grad()``, not at import).

    Every op allocates fresh arrays; with glibc's defaults the heap is trimmed after each step
    and the next step page-faults its memory back in (measured: ~40% of a small CNN's backward).
    Arrays up to 32 MiB stay on the heap, and up to 256 MiB of free heap is kept. Linux/glibc
    only; set CHAINRULE_KEEP_MALLOC=1 to leave malloc's settings alone. True if it was set.
    """
    global _malloc_asked
    if _malloc_asked:
        return False
    _malloc_asked = True
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("CHAINRULE_KEEP_MALLOC"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)
                    and libc.mallopt(m_trim_threshold, 256 << 20))
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False


def _load_cupy():
    global _cupy, _cupy_checked, gpu_ndarray
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy, gpu_ndarray = cupy, cupy.ndarray
                for hook in on_cupy_loaded:
                    hook()
        except Exception:
            _cupy = None
    return _cupy


def loaded_cupy():
    """CuPy if it has been loaded and sees a GPU, else None (never imports it)."""
    return _cupy


gpu_seeds: dict = {}  # GPU index -> the seed last given to its generator


def seed_gpu(idx: int, seed: int) -> None:
    """Seed GPU ``idx``'s CuPy generator (cr.cuda.manual_seed's and cr.manual_seed's work)."""
    cp = xp("cuda")
    with cp.cuda.Device(idx):
        cp.random.seed(seed % 2**32)
    gpu_seeds[idx] = seed


def seed_all_gpus(seed: int) -> None:
    """Seed every GPU's generator (nothing without a GPU), as torch.manual_seed does."""
    if cuda_available():
        for i in range(_load_cupy().cuda.runtime.getDeviceCount()):
            seed_gpu(i, seed)


def cuda_available() -> bool:
    return _load_cupy() is not None


# NotImplementedError is a RuntimeError: what torch raises creating (NotImplementedError) or
# moving (RuntimeError) a tensor to "mps" on a build without Apple's Metal.
MPS_MESSAGE = ("chainrule has no mps backend (Apple GPUs): torch.device('mps') can be named, but "
               "tensors can only live on cpu or cuda; torch.backends.mps.is_available() is False")


class device:
    """Where a tensor lives: ``cr.device("cpu")`` or ``cr.device("cuda", 0)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: str | device, index: int | None = None) -> None:
        if isinstance(type, device):
            type, index = type.type, type.index
        if ":" in type:
            type, idx = type.split(":", 1)
            index = int(idx)
        if type not in ("cpu", "cuda", "mps"):
            raise RuntimeError(
                f"Expected one of cpu, cuda, mps device type at start of device string: {type}"
            )
        self.type = type
        self.index = index

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and (self.index or 0) == (other.index or 0)

    def __hash__(self) -> int:
        return hash((self.type, self.index or 0))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


CPU = device("cpu")
CUDA = device("cuda", 0)


def as_device(d) -> device:
    if d is None:
        return CPU
    if isinstance(d, int):
        return device("cuda", d)
    return d if isinstance(d, device) else device(d)


def cuda_device(d=None) -> device:
    """The GPU that ``.cuda(d)`` means: an index, ``"cuda:1"``, a ``device``; None or a bare
    ``"cuda"``: the current GPU (``cr.cuda.set_device``), as torch."""
    if isinstance(d, int) and not isinstance(d, bool):
        return device("cuda", d)
    d = device("cuda") if d is None else as_device(d)
    if d.type != "cuda":
        raise RuntimeError("Invalid device, must be cuda device")
    if d.index is None:
        cupy = _load_cupy()
        return device("cuda", cupy.cuda.runtime.getDevice() if cupy is not None else 0)
    return d


def xp(d=None):
    """The array module for a device: numpy for cpu, cupy for cuda."""
    d = as_device(d)
    if d.type == "cpu":
        return np
    if d.type == "mps":  # a device object torch can name; no tensor can live there
        raise NotImplementedError(MPS_MESSAGE)
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError(CUDA_INSTALL_HINT)
    return cupy


def is_array(a) -> bool:
    """A NumPy or CuPy array (0-d included; NumPy scalars are not arrays)."""
    if isinstance(a, np.ndarray):
        return True
    if isinstance(a, _Batched):  # inside cr.func.vmap
        return True
    cupy = _cupy if _cupy_checked else _load_cupy()
    return cupy is not None and isinstance(a, cupy.ndarray)


def is_writable(a) -> bool:
    """An array that may be written in place: a CuPy array, or a NumPy array that is not
    read-only (a broadcast view is). False for NumPy scalars and anything else."""
    if not is_array(a):
        return False
    flags = getattr(a, "flags", None)  # (a CuPy array's flags have no ``writeable``)
    return flags is not None and getattr(flags, "writeable", True)


def is_gpu_array(a) -> bool:
    """A CuPy array (cheap where CuPy is not loaded: the CPU hot paths ask this)."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def is_cpu_array(a) -> bool:
    if isinstance(a, _Batched):
        return is_cpu_array(_plain(a))
    return isinstance(a, (np.ndarray, np.generic))


def data_address(a) -> int:
    """Where ``a``'s first element is in memory (a NumPy or CuPy array; 0 for a NumPy scalar,
    which has no memory of its own)."""
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    if isinstance(a, np.generic):
        return 0
    if isinstance(a, _Batched):  # inside vmap: where the whole batch's physical array starts
        return data_address(_plain(a))
    return a.data.ptr


_GPU_DEVICES = [CUDA]  # device("cuda", i) by index, made once each


def device_of(a) -> device:
    if isinstance(a, (np.ndarray, np.generic)):
        return CPU
    if isinstance(a, _Batched):
        return device_of(_plain(a))
    try:
        i = a.device.id  # the GPU that holds the CuPy array
    except AttributeError:  # not an array: as before, the (first) GPU
        return CUDA
    if i == 0:
        return CUDA
    while len(_GPU_DEVICES) <= i:
        _GPU_DEVICES.append(device("cuda", len(_GPU_DEVICES)))
    return _GPU_DEVICES[i]


def xp_of(a):
    """The array module that owns array ``a``."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    if isinstance(a, _Batched):  # NumPy/CuPy, making new arrays batched like ``a``
        return _batching.namespace(a)
    return _load_cupy() or np


_batching.hooks.xp_of = xp_of


def _plain(a):
    """The plain (CPU or GPU) array under a vmap's batched array."""
    while isinstance(a, _Batched):
        a = a._p
    return a


def as_array(r):
    """``r`` as an array: NumPy gives a scalar where a full reduction or a 0-d op ends."""
    return np.asarray(r) if isinstance(r, np.generic) else r


def check_same_device(arrays, name: str, what: str = "") -> None:
    """RuntimeError naming the devices when ``arrays`` (arrays and others, which are skipped)
    do not all live on one; ``name`` leads the message, ``what`` ends it."""
    devices = list(dict.fromkeys(str(device_of(a)) for a in arrays if is_array(a)))
    if len(devices) > 1:
        raise RuntimeError(
            f"{name}: Expected all tensors to be on the same device, but found at least two "
            f"devices, {' and '.join(devices)}!{what}") from None  # (not CuPy's TypeError)


def asarray_on(a, like, dtype=None):
    """``a`` (array, list or number) as an array of ``dtype`` on the device of array ``like``."""
    return xp_of(like).asarray(a, dtype=dtype)


def to_device(a, d):
    d = as_device(d)
    if d.type == "cpu":
        if isinstance(a, (np.ndarray, np.generic)) or (isinstance(a, _Batched) and
                                                       is_cpu_array(a)):
            return a
        return a.get()
    cupy = xp(d)
    if d.index is None:  # "cuda": the current GPU (cr.cuda.set_device), as torch
        idx = cupy.cuda.runtime.getDevice()
    else:
        idx = d.index
    with cupy.cuda.Device(idx):
        if isinstance(a, cupy.ndarray) and a.device.id != idx:
            return a.copy()  # CuPy copies to the current GPU; asarray would keep ``a``
        return cupy.asarray(a)
