"""Which kernel table serves a value: the one decision every gate delegates (compiled with the
engine, since the hottest gates ask it on every call)."""

from __future__ import annotations

from chainrule import devices
from chainrule.batching import BatchedArray
from chainrule.devices import np
from chainrule.kernels.batched import BatchedKernels
from chainrule.kernels.cpu import CpuKernels
from chainrule.kernels.reference import Kernels

__all__ = ["kernels_for", "REFERENCE", "CPU"]

REFERENCE = Kernels()
CPU = CpuKernels()
_ndarray = np.ndarray
_cuda: list = []  # the CUDA table, made when CuPy is first loaded


def kernels_for(x):
    """The kernel table for ``x``: a NumPy array, a CuPy array, or anything else (a Tensor, a
    NumPy scalar, a Python number)."""
    t = type(x)
    if t is _ndarray:
        return CPU
    if t is devices.gpu_ndarray:
        if not _cuda:
            from chainrule.kernels.cuda import CudaKernels  # needs CuPy: loaded on first use

            _cuda.append(CudaKernels())
        return _cuda[0]
    if t is BatchedArray:
        return BATCHED
    return REFERENCE


BATCHED = BatchedKernels(kernels_for)  # inside cr.func.vmap: on the folded batch where it can
