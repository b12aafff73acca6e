"""The linear algebra the distributions use: ``cr.linalg``'s gates (kept under these names for
the distributions' imports)."""

from __future__ import annotations

from chainrule.ops.linalg import Cholesky, SolveTriangular
from chainrule.tensor import Tensor

__all__ = ["cholesky", "solve_triangular"]


def cholesky(input: Tensor) -> Tensor:
    """The lower Cholesky factor L of a symmetric positive-definite matrix (batched)."""
    return Cholesky.apply(input)


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool) -> Tensor:
    """X with A·X = B for a triangular A (batched, broadcasting)."""
    return SolveTriangular.apply(A, B, upper)
