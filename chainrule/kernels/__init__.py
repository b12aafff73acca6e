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

from chainrule.kernels.cpu import CpuKernels
from chainrule.kernels.dispatch import CPU, REFERENCE, kernels_for
from chainrule.kernels.reference import Kernels

__all__ = ["kernels_for", "Kernels", "CpuKernels", "REFERENCE", "CPU"]
