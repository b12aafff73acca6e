"""Linear and bilinear maps (PyTorch's ``torch.nn.functional.linear``/``bilinear``): ``linear``
is one fused gate (a single GEMM for any number of batch dims), ``bilinear`` an ``einsum``."""

from __future__ import annotations

from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.kernels.matmul import matmul as _mm
from chainrule.nn.checks import check_tensor, shape_of
from chainrule.ops import either
from chainrule.ops.linalg import einsum
from chainrule.tensor import Tensor

__all__ = ["linear", "bilinear"]


class Linear(Op):
    """y = x Wᵀ + b;  dx = g W,  dW = gᵀ x (summed over batch dims),  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b):
        need_x, need_w, _ = ctx.needs_input_grad  # (each gradient needs the other operand)
        ctx.save_for_backward(x if need_w else None, w if need_x else None)
        ctx.xshape = x.shape
        if x.ndim > 2:  # one 2-D GEMM beats NumPy's loop of per-batch GEMMs
            y = _mm(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
        else:
            y = _mm(x, w.T)
        if b is not None:
            y = kernels_for(y).add_bias(y, b)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        xshape = tuple(ctx.xshape)
        if len(xshape) > 2:
            g = either.reshape(g, (-1, g.shape[-1]))
        gx = either.matmul(g, w) if need_x else None
        if gx is not None and len(xshape) > 2:
            gx = either.reshape(gx, xshape)
        gw = gb = None
        if need_w or need_b:
            if len(xshape) != 2:
                g = either.reshape(g, (-1, g.shape[-1]))
                if need_w:
                    x = either.reshape(x, (-1, xshape[-1]))
            if need_w:
                gw = either.matmul(either.swapaxes(g, 0, 1), x)
            if need_b:
                gb = kernels_for(g).sum_rows(g)
        return gx, gw, gb


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b (one fused gate)."""
    if _amp.active and (out := _amp.run("linear", linear, input, weight, bias)) is not None:
        return out
    check_tensor(input, "linear")
    check_tensor(weight, "linear", "weight")
    x, w = input._data, weight._data
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[-1]:
        rows = int(np.prod(x.shape[:-1])) if x.ndim else 1
        raise RuntimeError(
            f"linear(): input of shape {shape_of(x)} and weight of shape {shape_of(w)} cannot be "
            f"multiplied (mat1 and mat2 shapes cannot be multiplied "
            f"({rows}x{x.shape[-1] if x.ndim else 1} and "
            f"{'x'.join(str(s) for s in w.shape[::-1])}))"
        )
    if x.dtype != w.dtype:
        raise RuntimeError(
            f"linear(): input and weight must have the same dtype, but got input "
            f"{input.dtype} and weight {weight.dtype} (mat1 and mat2 must have the same dtype)"
        )
    if bias is not None:
        check_tensor(bias, "linear", "bias")
        if bias._data.dtype != x.dtype or bias._data.shape not in ((w.shape[0],), (), (1,)):
            raise RuntimeError(
                f"linear(): bias of shape {shape_of(bias)} and dtype {bias.dtype} does not match "
                f"weight of shape {shape_of(w)} and input dtype {input.dtype}"
            )
    return Linear.apply(input, weight, bias)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_k = x1ᵀ W_k x2 + b_k."""
    if _amp.active and (out := _amp.run(
            "bilinear", bilinear, input1, input2, weight, bias)) is not None:
        return out
    if (weight.ndim != 3 or input1.shape[-1] != weight.shape[1]
            or input2.shape[-1] != weight.shape[2] or input1.shape[:-1] != input2.shape[:-1]):
        raise RuntimeError(
            f"bilinear(): shapes do not match: input1 {shape_of(input1)}, input2 "
            f"{shape_of(input2)}, weight {shape_of(weight)} (expected weight (out, in1, in2) and "
            f"inputs (..., in1), (..., in2))"
        )
    lead = tuple(input1.shape[:-1])
    y = einsum("bi,kij,bj->bk", input1.reshape(-1, weight.shape[1]), weight,
               input2.reshape(-1, weight.shape[2]))
    y = y.reshape(*lead, weight.shape[0])
    return y if bias is None else y + bias
