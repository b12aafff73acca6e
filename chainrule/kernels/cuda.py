"""The CUDA kernels: CuPy arrays, with one fused kernel where CuPy would launch several.

On the GPU a chain of small array ops costs one kernel launch each (several µs of host time
apiece, however small the arrays), so the hot rules run as single kernels from
:mod:`chainrule.kernels.cuda_raw`; each falls back to the CPU table's NumPy code (which CuPy
arrays run through NumPy's array protocols) where its kernel cannot run.
"""

from __future__ import annotations

from chainrule.devices import np
from chainrule.kernels import cuda_raw
from chainrule.kernels.cpu import CpuKernels
from chainrule.kernels.reference import Kernels, col2im_array, conv2d_input_columns

__all__ = ["CudaKernels"]


def _relu_array(x):
    return np.maximum(x, 0)


class CudaKernels(CpuKernels):
    """The CUDA table (see :mod:`chainrule.kernels`)."""

    name = "cuda"

    @staticmethod
    def exp(x):
        return cuda_raw.run1("exp", np.exp, x)

    @staticmethod
    def tanh(x):
        return cuda_raw.run1("tanh", np.tanh, x)

    @staticmethod
    def sigmoid(x):
        return cuda_raw.run1("sigmoid", Kernels.sigmoid, x)

    @staticmethod
    def relu(x):
        return cuda_raw.run1("relu", _relu_array, x)

    @staticmethod
    def erf(x):
        return cuda_raw.erf(x)

    @staticmethod
    def tanh_backward(g, y):
        gx = cuda_raw.unary_backward("tanh_backward", g, y)
        return Kernels.tanh_backward(g, y) if gx is None else gx

    @staticmethod
    def sigmoid_backward(g, y):
        gx = cuda_raw.unary_backward("sigmoid_backward", g, y)
        return Kernels.sigmoid_backward(g, y) if gx is None else gx

    @staticmethod
    def relu_backward(g, y):
        gx = cuda_raw.unary_backward("relu_backward", g, y)
        return Kernels.relu_backward(g, y) if gx is None else gx

    @staticmethod
    def gelu(x, with_grad: bool) -> tuple:
        return cuda_raw.gelu(x, with_grad)

    @staticmethod
    def add_bias(y, b):
        if not cuda_raw.add_bias(y, b):
            y += b
        return y

    @staticmethod
    def sum_rows(g):
        s = cuda_raw.sum_rows(g)
        return g.sum(0) if s is None else s

    @staticmethod
    def add_channel_bias(y, b):
        p = 1
        for d in y.shape[2:]:
            p *= d
        if not cuda_raw.add_bias(y, b, per_channel=p):
            y += b.reshape((-1,) + (1,) * (y.ndim - 2))
        return y

    @staticmethod
    def channel_sums(g):
        s = cuda_raw.channel_sums(g)
        return Kernels.channel_sums(g) if s is None else s

    @staticmethod
    def col2im(cols, x_shape: tuple, geom):
        out = cuda_raw.col2im(cols, tuple(x_shape), geom)
        return col2im_array(cols, tuple(x_shape), geom) if out is None else out

    @staticmethod
    def conv2d_input_grad(g, w, x_shape: tuple, geom, groups: int):  # col2im: one kernel
        return CudaKernels.col2im(conv2d_input_columns(g, w, x_shape, geom, groups),
                                  tuple(x_shape), geom)

    @staticmethod
    def max_pool2d(x, geom) -> tuple:
        fused = cuda_raw.max_pool2d_forward(x, geom)
        return Kernels.max_pool2d(x, geom) if fused is None else fused

    @staticmethod
    def max_pool2d_backward(g, idx, x_shape: tuple, geom):
        gx = cuda_raw.max_pool2d_backward(g, idx, x_shape, geom)
        return Kernels.max_pool2d_backward(g, idx, x_shape, geom) if gx is None else gx

    @staticmethod
    def cross_entropy_rows(x, t, ignore_index: int, reduction: str):
        """(row log-sum-exps, row losses, [loss, count]) from one kernel, or None."""
        return cuda_raw.cross_entropy_forward(x, t, ignore_index, reduction)

    @staticmethod
    def cross_entropy_rows_backward(g, x, lse, t, count, ignore_index: int, reduction: str):
        return cuda_raw.cross_entropy_backward(x, lse, t, g, count, ignore_index, reduction)

    @staticmethod
    def sgd_step(p, g, buf, first, lr, momentum, dampening, weight_decay, nesterov,
                 maximize) -> bool:
        return cuda_raw.sgd_step(p, g, buf, first, lr, momentum, dampening, weight_decay,
                                 nesterov, maximize)

    @staticmethod
    def adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
                  step_size, bias_correction2_sqrt) -> bool:
        return cuda_raw.adam_step(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay,
                                  maximize, decoupled, step_size, bias_correction2_sqrt)
