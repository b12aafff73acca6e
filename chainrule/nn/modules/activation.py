"""Activation modules: thin wrappers over ``chainrule.nn.functional``."""

from __future__ import annotations

from typing import Any

from chainrule.nn import activations as _act
from chainrule.nn import functional as F
from chainrule.nn.module import Module
from chainrule.tensor import Tensor

__all__ = [
    "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "ELU", "SELU", "CELU", "Mish", "Tanh",
    "Sigmoid", "Softplus", "Softsign", "LogSigmoid", "Hardtanh", "Hardsigmoid", "Hardswish",
    "Tanhshrink", "Softmax", "Softmin", "LogSoftmax",
]


class _Inplace(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """max(0, x)."""

    def forward(self, input: Tensor) -> Tensor:
        """max(0, x)."""
        return F.relu(input, self.inplace)


class ReLU6(_Inplace):
    """min(max(0, x), 6)."""

    def forward(self, input: Tensor) -> Tensor:
        """min(max(0, x), 6)."""
        return F.relu6(input, self.inplace)


class SiLU(_Inplace):
    """x·σ(x)."""

    def forward(self, input: Tensor) -> Tensor:
        """x·σ(x)."""
        return F.silu(input, self.inplace)


class Mish(_Inplace):
    """x·tanh(softplus(x))."""

    def forward(self, input: Tensor) -> Tensor:
        """x·tanh(softplus(x))."""
        return F.mish(input, self.inplace)


class SELU(_Inplace):
    """Scaled ELU with the self-normalising constants."""

    def forward(self, input: Tensor) -> Tensor:
        """selu(x)."""
        return F.selu(input, self.inplace)


class Hardsigmoid(_Inplace):
    """clamp(x/6 + 1/2, 0, 1)."""

    def forward(self, input: Tensor) -> Tensor:
        """hardsigmoid(x)."""
        return F.hardsigmoid(input, self.inplace)


class Hardswish(_Inplace):
    """x·hardsigmoid(x)."""

    def forward(self, input: Tensor) -> Tensor:
        """hardswish(x)."""
        return F.hardswish(input, self.inplace)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope·x."""

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """leaky_relu(x)."""
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """x if x > 0 else α(eˣ - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """elu(x)."""
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """max(0, x) + min(0, α(e^(x/α) - 1))."""

    def forward(self, input: Tensor) -> Tensor:
        """celu(x)."""
        return F.celu(input, self.alpha, self.inplace)


class GELU(Module):
    """x·Φ(x); ``approximate='tanh'`` uses the tanh approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        """gelu(x)."""
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Hardtanh(Module):
    """clamp(x, min_val, max_val)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input: Tensor) -> Tensor:
        """hardtanh(x)."""
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class Tanh(Module):
    """tanh(x)."""

    def forward(self, input: Tensor) -> Tensor:
        """tanh(x)."""
        return F.tanh(input)


class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, input: Tensor) -> Tensor:
        """σ(x)."""
        return F.sigmoid(input)


class Softsign(Module):
    """x / (1 + |x|)."""

    def forward(self, input: Tensor) -> Tensor:
        """softsign(x)."""
        return F.softsign(input)


class LogSigmoid(Module):
    """ln σ(x)."""

    def forward(self, input: Tensor) -> Tensor:
        """logsigmoid(x)."""
        return F.logsigmoid(input)


class Tanhshrink(Module):
    """x - tanh(x)."""

    def forward(self, input: Tensor) -> Tensor:
        """tanhshrink(x)."""
        return F.tanhshrink(input)


class Softplus(Module):
    """ln(1 + e^(βx))/β, linear above ``threshold``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: Tensor) -> Tensor:
        """softplus(x)."""
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class _DimModule(Module):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_DimModule):
    """e^x / Σ e^x along ``dim``."""

    def forward(self, input: Tensor) -> Tensor:
        """softmax(x, dim)."""
        return F.softmax(input, self.dim)


class Softmin(_DimModule):
    """softmax(-x) along ``dim``."""

    def forward(self, input: Tensor) -> Tensor:
        """softmin(x, dim)."""
        return F.softmin(input, self.dim)


class LogSoftmax(_DimModule):
    """x - ln Σ e^x along ``dim``."""

    def forward(self, input: Tensor) -> Tensor:
        """log_softmax(x, dim)."""
        return F.log_softmax(input, self.dim)


# ---- shrinkage, thresholds, gated and parametric units ------------------------------------------
class Threshold(Module):
    """x where x > threshold, else ``value``."""

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold, self.value, self.inplace = threshold, value, inplace

    def forward(self, input: Tensor) -> Tensor:
        """threshold(x, threshold, value)."""
        return _act.threshold(input, self.threshold, self.value, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"threshold={self.threshold}, value={self.value}{inplace}"


class _Shrink(Module):
    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Hardshrink(_Shrink):
    """x where |x| > λ, else 0."""

    def forward(self, input: Tensor) -> Tensor:
        """hardshrink(x, λ)."""
        return _act.hardshrink(input, self.lambd)


class Softshrink(_Shrink):
    """x ∓ λ outside [-λ, λ], 0 inside."""

    def forward(self, input: Tensor) -> Tensor:
        """softshrink(x, λ)."""
        return _act.softshrink(input, self.lambd)


class GLU(Module):
    """a·σ(b), a and b the halves of the input along ``dim``."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        """glu(x, dim)."""
        return _act.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class PReLU(Module):
    """x for x > 0, else a·x, with ``num_parameters`` learnable slopes (1 or one per channel),
    initialised to ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:
        from chainrule.creation import empty
        from chainrule.nn.parameter import Parameter

        self.num_parameters = num_parameters
        super().__init__()
        self.init = init
        self.weight = Parameter(empty(num_parameters, dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every slope = ``init``."""
        from chainrule.nn import init

        init.constant_(self.weight, self.init)

    def forward(self, input: Tensor) -> Tensor:
        """prelu(x, weight)."""
        return _act.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class RReLU(Module):
    """Leaky ReLU whose negative slope is drawn from U(lower, upper) in training (their mean
    in eval)."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
                 inplace: bool = False) -> None:
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input: Tensor) -> Tensor:
        """rrelu(x, lower, upper, training)."""
        return _act.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"lower={self.lower}, upper={self.upper}{inplace}"


class Softmax2d(Module):
    """Softmax over the channels of (C, H, W) or (N, C, H, W) inputs, at every location."""

    def forward(self, input: Tensor) -> Tensor:
        """softmax(x, dim=-3)."""
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {input.ndim}D "
                             "instead")
        return F.softmax(input, -3)


__all__ += ["Threshold", "Hardshrink", "Softshrink", "GLU", "PReLU", "RReLU", "Softmax2d"]

# torch keeps MultiheadAttention in torch.nn.modules.activation (programs name it by that path).
from chainrule.nn.modules.attention import MultiheadAttention  # noqa: E402

__all__ += ["MultiheadAttention"]
