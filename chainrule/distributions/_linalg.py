"""Cholesky factorization and triangular solves as gates (private to the distributions until
``cr.linalg`` has them; another change adds them there, then these go)."""

from __future__ import annotations

from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.ops import either
from chainrule.tensor import Tensor, TensorBase

__all__ = ["cholesky", "solve_triangular"]


def _mT(a):
    return either.swapaxes(a, -1, -2)


def _solve_tri_array(a, b, upper: bool):
    """Solve a·x = b for triangular a, with batch broadcasting (LAPACK's general solver)."""
    xp = devices.xp_of(a)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = xp.broadcast_to(xp.triu(a) if upper else xp.tril(a), shape + a.shape[-2:])
    b = xp.broadcast_to(b, shape + b.shape[-2:])
    return xp.linalg.solve(a, b)


def _solve(a, b, upper: bool):
    """a⁻¹b for triangular ``a`` on raw arrays, or through the gate on Tensors."""
    if isinstance(a, TensorBase) or isinstance(b, TensorBase):
        return SolveTriangular.apply(a, b, upper)
    return _solve_tri_array(a, b, upper)


class SolveTriangular(Op):
    """X = A⁻¹B (A triangular);  gB = A⁻ᵀ gX,  gA = -tri(gB Xᵀ)"""

    @staticmethod
    def forward(ctx, a, b, upper):
        x = _solve_tri_array(a, b, upper)
        ctx.save_for_backward(a, x)
        ctx.upper = upper
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = _solve(_mT(a), g, not ctx.upper)
        ga = None
        if ctx.needs_input_grad[0]:
            ga = -(gb @ _mT(x))
            ga = either.triu(ga, 0) if ctx.upper else either.tril(ga, 0)
        return ga, gb, None


class Cholesky(Op):
    """A = LLᵀ;  gA = ½(S + Sᵀ),  S = L⁻ᵀ Φ(Lᵀ gL) L⁻¹  (Φ: lower triangle, halved diagonal)"""

    @staticmethod
    def forward(ctx, a):
        xp = devices.xp_of(a)
        try:
            low = xp.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            raise RuntimeError(
                "linalg.cholesky: The factorization could not be completed because the input "
                "is not positive-definite.") from None
        ctx.save_for_backward(low)
        return low

    @staticmethod
    def backward(ctx, g):
        (low,) = ctx.saved_tensors
        phi = either.tril(_mT(low) @ g, 0)
        phi = phi - either.tril(either.triu(phi, 0), 0) * 0.5  # halve the diagonal
        s = _solve(_mT(low), _mT(_solve(_mT(low), _mT(phi), True)), True)  # L⁻ᵀ Φ L⁻¹
        return (s + _mT(s)) * 0.5


def cholesky(input: Tensor) -> Tensor:
    """The lower Cholesky factor L of a symmetric positive-definite matrix (batched)."""
    return Cholesky.apply(input)


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool) -> Tensor:
    """X with A·X = B for a triangular A (batched, broadcasting)."""
    return SolveTriangular.apply(A, B, upper)
