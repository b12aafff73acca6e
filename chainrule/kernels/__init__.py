"""Kernels: how a gate's math runs on each kind of value, chosen in one place.

A gate states its math; when part of it has a faster form on some hardware — one fused pass
instead of several NumPy calls, a CUDA kernel instead of a chain of CuPy launches — the gate asks
the table for its values, ``kernels_for(x).relu(x)``, and each table fills in the same names:

- :class:`~chainrule.kernels.reference.Kernels`: written with operators and
  :mod:`chainrule.ops.either`, so it runs on any array *and on Tensors* (recorded, hence
  differentiable: what a ``create_graph`` backward gets);
- :class:`~chainrule.kernels.cpu.CpuKernels`: NumPy arrays, with one-pass C loops
  (``_cpu_loops.c``) where the buffers allow and NumPy-tuned code elsewhere;
- :class:`~chainrule.kernels.cuda.CudaKernels`: CuPy arrays, with CUDA kernels.

Matrix products have their own dispatch, :mod:`chainrule.kernels.matmul`.
"""

from __future__ import annotations

from chainrule import devices
from chainrule.devices import np
from chainrule.kernels.cpu import CpuKernels
from chainrule.kernels.reference import Kernels

__all__ = ["kernels_for", "Kernels", "CpuKernels", "REFERENCE", "CPU"]

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
    return REFERENCE
