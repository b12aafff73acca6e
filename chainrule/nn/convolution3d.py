"""3-d (transposed) convolution and the time-batch-channel convolution, built on the 2-d gates.

A 3-d convolution is a sum over the kernel's depth offsets of 2-d convolutions: for offset a,
every output depth slice d reads input slice d·s + a·dil, so the (N, C, D_out, H, W) slab of
those slices, with depth folded into the batch, goes through ``conv2d`` with the kernel's a-th
(kh × kw) slice. The transposed convolution is its adjoint: each input slice's 2-d transposed
convolution lands on output slice d·s + a·dil (zeros in between). Both reuse the im2col gates,
so gradients of every order come for free.
"""

from __future__ import annotations

from typing import Any

from chainrule.ops import conv as _conv
from chainrule.ops.shape import pad, stack
from chainrule.tensor import Tensor

__all__ = ["conv3d", "conv_transpose3d", "conv_tbc"]


def _triple(value: Any, name: str, op: str) -> tuple:
    return _conv._tuple(value, 3, name, op)


def _check(input: Tensor, weight: Tensor, bias: Tensor | None, op: str) -> tuple:
    _conv._check_float(input, "input", op)
    _conv._check_float(weight, "weight", op)
    if input.ndim not in (4, 5):
        raise RuntimeError(f"{op}: Expected 4D (unbatched) or 5D (batched) input to {op}, but "
                           f"got input of size: {list(input.shape)}")
    if weight.ndim != 5:
        raise RuntimeError(f"{op}: weight should have 5 dimensions, but got weight of size "
                           f"{list(weight.shape)}")
    if bias is not None:
        _conv._check_float(bias, "bias", op)
    _conv._same_dtype(input, weight, bias, op)
    unbatched = input.ndim == 4
    return (input.unsqueeze(0) if unbatched else input), unbatched


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """3-D cross-correlation: y[n, o] = Σ_c W[o, c] ⋆ x[n, c] + b[o] (PyTorch's conv3d)."""
    op = "conv3d"
    x, unbatched = _check(input, weight, bias, op)
    n, c, d, h, w = x.shape
    o, cg, kd, kh, kw = weight.shape
    if groups <= 0:
        raise RuntimeError(f"{op}: non-positive groups is not supported (groups={groups})")
    if c != cg * groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, weight of size {list(weight.shape)}, expected "
            f"input{list(x.shape)} to have {cg * groups} channels, but got {c} channels instead")
    if bias is not None and tuple(bias.shape) != (o,):
        raise RuntimeError(
            f"{op}: Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional "
            f"with {o} elements, but got bias of size {list(bias.shape)} instead")
    s = _triple(stride, "stride", op)
    dil = _triple(dilation, "dilation", op)
    _conv._check_positive(s, "stride", op)
    _conv._check_positive(dil, "dilation", op)
    pads = _conv._conv_padding(padding, (kd, kh, kw), dil, s, op)
    p_lo, p_hi = pads[0]
    plane_pad = padding if isinstance(padding, str) else (pads[1][0], pads[2][0])
    d_out = (d + p_lo + p_hi - dil[0] * (kd - 1) - 1) // s[0] + 1
    if d_out <= 0:
        raise RuntimeError(
            f"{op}: Calculated padded input depth {d + p_lo + p_hi} is smaller than the "
            f"kernel's ({dil[0] * (kd - 1) + 1}): Kernel size can't be greater than actual input "
            f"size (input{list(x.shape)}, weight{list(weight.shape)})")
    xp = pad(x, (0, 0, 0, 0, p_lo, p_hi)) if p_lo or p_hi else x
    y = None
    for a in range(kd):
        start = a * dil[0]
        slab = xp[:, :, start:start + (d_out - 1) * s[0] + 1:s[0]]  # (N, C, D_out, H, W)
        slab = slab.transpose(1, 2).reshape(n * d_out, c, h, w)
        part = _conv.conv2d(slab, weight[:, :, a], None, s[1:], plane_pad, dil[1:], groups)
        y = part if y is None else y + part
    ho, wo = y.shape[-2:]
    y = y.reshape(n, d_out, o, ho, wo).transpose(1, 2)
    if bias is not None:
        y = y + bias.reshape(o, 1, 1, 1)
    return y.squeeze(0) if unbatched else y


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """3-D transposed convolution (the gradient of conv3d in its input), PyTorch's layout."""
    op = "conv_transpose3d"
    x, unbatched = _check(input, weight, bias, op)
    n, c, d, h, w = x.shape
    cin, cout_g, kd, kh, kw = weight.shape
    if groups <= 0 or cin % groups:
        raise RuntimeError(f"{op}: weight{list(weight.shape)} is not divisible into "
                           f"groups={groups}")
    if c != cin:
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {list(weight.shape)}, expected "
            f"input{list(x.shape)} to have {cin} channels, but got {c} channels instead")
    cout = cout_g * groups
    if bias is not None and tuple(bias.shape) != (cout,):
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {list(weight.shape)}, expected bias to be "
            f"1-dimensional with {cout} elements, but got bias of size {list(bias.shape)} "
            "instead")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple, got {padding!r}")
    s = _triple(stride, "stride", op)
    dil = _triple(dilation, "dilation", op)
    p = _triple(padding, "padding", op)
    opad = _triple(output_padding, "output_padding", op)
    _conv._check_positive(s, "stride", op)
    _conv._check_positive(dil, "dilation", op)
    for p_, s_, d_ in zip(opad, s, dil):
        if p_ < 0 or (p_ >= s_ and p_ >= d_):
            raise RuntimeError(
                f"{op}: output padding must be smaller than either stride or dilation, but got "
                f"output_padding={opad}, stride={s}, dilation={dil}")
    d_out = (d - 1) * s[0] - 2 * p[0] + dil[0] * (kd - 1) + opad[0] + 1
    if d_out <= 0:
        raise RuntimeError(
            f"{op}: Given input size per channel: ({d} x {h} x {w}), calculated output depth "
            f"{d_out}. Output size is too small")
    planes = x.transpose(1, 2).reshape(n * d, c, h, w)
    spread = (d - 1) * s[0] + 1  # input slice i lands on i·s (+ the offset's a·dil)
    y = None
    for a in range(kd):
        z = _conv.conv_transpose2d(planes, weight[:, :, a], None, s[1:], p[1:], opad[1:],
                                   groups, dil[1:])
        ho, wo = z.shape[-2:]
        z = z.reshape(n, d, cout, ho, wo)
        if s[0] > 1:  # zeros between the slices
            z = stack([z] + [z * 0.0] * (s[0] - 1), 2).reshape(n, d * s[0], cout, ho, wo)
            z = z[:, :spread]
        before = a * dil[0] - p[0]
        z = pad(z, (0, 0, 0, 0, 0, 0, before, d_out - before - spread))
        y = z if y is None else y + z
    y = y.transpose(1, 2)
    if bias is not None:
        y = y + bias.reshape(cout, 1, 1, 1)
    return y.squeeze(0) if unbatched else y


def conv_tbc(input: Tensor, weight: Tensor, bias: Tensor, pad: int = 0) -> Tensor:
    """1-D convolution of a (time, batch, channel) input with a (k, C_in, C_out) weight."""
    if input.ndim != 3:
        raise RuntimeError("conv_tbc: Input must have 3 dims: time, batch, in_channel")
    if weight.ndim != 3:
        raise RuntimeError("conv_tbc: Weight tensor must have 3 dims: kernel_width, in_channels, "
                           "out_channels.")
    if bias.ndim != 1:
        raise RuntimeError("conv_tbc: Bias must be 1-D")
    if input.shape[2] != weight.shape[1]:
        raise RuntimeError("conv_tbc: Input dim 2 (input channels) is not == dim 1 in the weight "
                           "tensor")
    if weight.shape[2] != bias.shape[0]:
        raise RuntimeError("conv_tbc: Bias size must equal dim 2 in the weight tensor (output "
                           "channels).")
    y = _conv.conv1d(input.permute(1, 2, 0), weight.permute(2, 1, 0), bias, padding=pad)
    return y.permute(2, 0, 1)
