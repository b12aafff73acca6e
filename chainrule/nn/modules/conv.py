"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d (PyTorch's layouts)."""

from __future__ import annotations

from typing import Any

from chainrule.creation import empty
from chainrule.nn import convolution3d as _conv3d
from chainrule.nn import init
from chainrule.nn.module import Module
from chainrule.nn.parameter import Parameter
from chainrule.ops import conv as _conv
from chainrule.ops.shape import pad as _pad
from chainrule.tensor import Tensor

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value: Any, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) != 1 else tuple(value) * n
    return (value,) * n


class _ConvNd(Module):
    """Shared bookkeeping of the convolution layers (weights, init, repr)."""

    _dims = 2
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", output_padding: Any = 0, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer, got groups={groups}")
        if in_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} must be divisible by groups="
                             f"{groups}")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels={out_channels} must be divisible by groups="
                             f"{groups}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, but got "
                             f"padding_mode={padding_mode!r}")
        n = self._dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _ntuple(kernel_size, n)
        self.stride = _ntuple(stride, n)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"{name}: Invalid padding string {padding!r}, should be one of "
                                 "{'valid', 'same'}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 "convolutions")
            self.padding = padding
        else:
            self.padding = _ntuple(padding, n)
        self.dilation = _ntuple(dilation, n)
        self.output_padding = _ntuple(output_padding, n)
        self.groups = groups
        self.padding_mode = padding_mode
        if self.transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=√5) weight, U(±1/√fan_in) bias."""
        init.layer_default_(self.weight, self.bias)

    def _explicit_padding(self, input: Tensor) -> tuple[Tensor, Any]:
        """Apply a non-zeros padding_mode by hand; return the input and the conv's padding."""
        if self.padding_mode == "zeros":
            return input, self.padding
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return input, 0
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
        else:
            pads = [(p, p) for p in self.padding]
        flat = [v for lo_hi in reversed(pads) for v in lo_hi]
        return _pad(input, flat, mode=self.padding_mode), 0

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        zeros = (0,) * self._dims
        ones = (1,) * self._dims
        if self.padding != zeros:
            s += f", padding={self.padding}"
        if self.dilation != ones:
            s += f", dilation={self.dilation}"
        if self.transposed and self.output_padding != zeros:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """Conv1d / Conv2d: PyTorch's constructor and the forward through ``_fn``."""

    _fn: Any = None  # ops.conv.conv1d / conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, 0, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        """conv1d / conv2d(input, weight, bias), after a non-zeros padding_mode's padding."""
        x, padding = self._explicit_padding(input)
        return type(self)._fn(x, self.weight, self.bias, self.stride, padding, self.dilation,
                              self.groups)


class Conv1d(_Conv):
    """1-D convolution over (N, C_in, L): weight (C_out, C_in/groups, k)."""

    _dims = 1
    _fn = staticmethod(_conv.conv1d)


class Conv2d(_Conv):
    """2-D convolution over (N, C_in, H, W): weight (C_out, C_in/groups, kh, kw)."""

    _dims = 2
    _fn = staticmethod(_conv.conv2d)


class _ConvTransposeNd(_ConvNd):
    transposed = True
    _fn: Any = None  # ops.conv.conv_transpose1d / conv_transpose2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        name = type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {name}')
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or a tuple, got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, device, dtype)

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:
        """conv_transpose1d / 2d(input, weight, bias), optionally to a given output size."""
        return type(self)._fn(input, self.weight, self.bias, self.stride, self.padding,
                              self._output_padding(input, output_size), self.groups,
                              self.dilation)

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple:
        """output_padding that makes the output ``output_size`` (PyTorch's rule)."""
        if output_size is None:
            return self.output_padding
        n = self._dims
        sizes = list(output_size)[-n:]
        if len(sizes) != n:
            raise ValueError(f"{type(self).__name__}: output_size must have {n} or {n + 2} "
                             f"elements (got {len(list(output_size))})")
        result = []
        for d in range(n):
            in_size = input.shape[input.ndim - n + d]
            k, s, p, dl = (self.kernel_size[d], self.stride[d], self.padding[d],
                           self.dilation[d])
            smallest = (in_size - 1) * s - 2 * p + dl * (k - 1) + 1
            if not smallest <= sizes[d] < smallest + s:
                raise ValueError(
                    f"{type(self).__name__}: requested an output size of {sizes}, but valid "
                    f"sizes range from {smallest} to {smallest + s - 1} (for an input of "
                    f"{list(input.shape)})"
                )
            result.append(sizes[d] - smallest)
        return tuple(result)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over (N, C_in, L): weight (C_in, C_out/groups, k)."""

    _dims = 1
    _fn = staticmethod(_conv.conv_transpose1d)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution over (N, C_in, H, W): weight (C_in, C_out/groups, kh, kw)."""

    _dims = 2
    _fn = staticmethod(_conv.conv_transpose2d)


# ---- 3-d ----------------------------------------------------------------------------------------
class Conv3d(_Conv):
    """3-D convolution over (N, C_in, D, H, W): weight (C_out, C_in/groups, kd, kh, kw)."""

    _dims = 3
    _fn = staticmethod(_conv3d.conv3d)


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution over (N, C_in, D, H, W): weight (C_in, C_out/groups, kd, kh,
    kw)."""

    _dims = 3
    _fn = staticmethod(_conv3d.conv_transpose3d)


__all__ += ["Conv3d", "ConvTranspose3d"]
