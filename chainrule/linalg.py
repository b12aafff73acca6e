"""``cr.linalg``: PyTorch's ``torch.linalg``, with gradients where torch has them.

The gates (inverse, solve, determinants, Cholesky, QR, eigh, SVD, LU, the matrix exponential)
are in ``chainrule.ops.linalg``; the rest is composed from them, so its gradient follows.
"""

from __future__ import annotations

import math
from collections import namedtuple

from chainrule import devices
from chainrule.devices import np
from chainrule.ops import linalg as _la
from chainrule.ops.binary import where
from chainrule.ops.linalg import LinAlgError, matmul
from chainrule.ops.reduce import amax, amin, sum as _sum
from chainrule.ops.reduce import check_inf_norm
from chainrule.ops.reduce import norm as _vnorm
from chainrule.ops.shape import diagonal as _diagonal
from chainrule.tensor import Tensor, wrap

__all__ = [
    "LinAlgError", "norm", "vector_norm", "matrix_norm", "solve", "solve_ex", "inv", "inv_ex",
    "det", "slogdet", "svd", "svdvals", "qr", "cholesky", "cholesky_ex", "eigh", "eigvalsh",
    "pinv", "lstsq", "cross", "multi_dot", "matmul", "diagonal", "vecdot", "vander",
    "matrix_power", "matrix_exp", "matrix_rank", "cond", "solve_triangular", "lu", "lu_factor",
    "lu_factor_ex", "lu_solve", "tensorinv", "tensorsolve", "householder_product",
]

_float = _la._float_input
_square = _la._square


def _info(A: Tensor) -> Tensor:
    return wrap(devices.xp_of(A._data).zeros(A._data.shape[:-2], np.int32))


# ---- norms --------------------------------------------------------------------------------------
def vector_norm(x: Tensor, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """(Σ|x|^ord)^(1/ord) over ``dim`` (all elements when None); ord = inf, -inf, 0 too."""
    x = _float(x, "linalg.vector_norm")
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: ord must be a number, got {ord!r}")
    if dim is None:
        if ord in (math.inf, -math.inf):
            check_inf_norm(x, None, ord)  # (torch's message names no dim)
        if keepdim:
            return _vnorm(x, ord, tuple(range(x.ndim)), True)
        x = x.reshape(-1)
        dim = 0 if x.ndim else None
    return _vnorm(x, ord, dim, keepdim)


def matrix_norm(A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False, *,
                dtype=None) -> Tensor:
    """'fro', 'nuc', ±1 (column sums), ±2 (singular values), ±inf (row sums) of the matrices
    on ``dim``."""
    A = _float(A, "linalg.matrix_norm")
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 "
                           "dimensions.")
    d0, d1 = (d % A.ndim for d in dim)
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dim[0]}, "
                           f"{dim[1]})")
    if ord == "fro":
        return _vnorm(A, 2, (d0, d1), keepdim)
    M = A.movedim((d0, d1), (-2, -1))
    if ord in ("nuc", 2, -2):
        s = svdvals(M)
        out = s.sum(-1) if ord == "nuc" else (amax(s, -1) if ord == 2 else amin(s, -1))
    elif ord in (1, -1, math.inf, -math.inf):
        over, pick = (-2, -1) if ord in (1, -1) else (-1, -2)
        sums = M.abs().sum(over)
        out = amax(sums, -1) if ord in (1, math.inf) else amin(sums, -1)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    if keepdim:
        for d in sorted((d0, d1)):
            out = out.unsqueeze(d)
    return out


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, out=None,
         dtype=None) -> Tensor:
    """A vector norm or a matrix norm, chosen as torch.linalg.norm does (by ``dim``/``ord``)."""
    A = _float(A, "linalg.norm")
    if dim is not None:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        if len(dims) == 1:
            return vector_norm(A, 2 if ord is None else ord, dims[0], keepdim, dtype=dtype)
        return matrix_norm(A, "fro" if ord is None else ord, dims, keepdim, dtype=dtype)
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D "
                       f"or 2D. Got {A.ndim}D.")


# ---- inverses and solves ------------------------------------------------------------------------
def inv(A: Tensor) -> Tensor:
    """A⁻¹ (batched); LinAlgError for a singular matrix."""
    return _la.inverse(A)


InvEx = namedtuple("inv_ex", ["inverse", "info"])


def inv_ex(A: Tensor, *, check_errors: bool = False):
    """(A⁻¹, info) (info 0: success)."""
    return InvEx(inv(A), _info(A))


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:
    """X with A X = B (or X A = B with ``left=False``); B may be a (batch of) vector(s)."""
    A = _float(A, "linalg.solve")
    _square(A, "linalg.solve")
    if not left:
        return solve(A.mT, B.mT).mT
    if _la._vector_rhs(A, B):
        return _la.Solve.apply(A, B.unsqueeze(-1)).squeeze(-1)
    if B.shape[-2] != A.shape[-1]:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation AX = "
                           f"B ({A.shape[-2]}x{A.shape[-1]} and {B.shape[-2]}x{B.shape[-1]})")
    return _la.Solve.apply(A, B)


SolveEx = namedtuple("solve_ex", ["result", "info"])


def solve_ex(A: Tensor, B: Tensor, *, left: bool = True, check_errors: bool = False):
    return SolveEx(solve(A, B, left=left), _info(A))


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool, left: bool = True,
                     unitriangular: bool = False) -> Tensor:
    """X with A X = B for triangular A (X A = B with ``left=False``)."""
    A = _float(A, "linalg.solve_triangular")
    if not left:
        return solve_triangular(A.mT, B.mT, upper=not upper, unitriangular=unitriangular).mT
    if unitriangular:
        eye = _la._eye_t(A)
        A = A * (1 - eye) + eye
    return _la.SolveTriangular.apply(A, B, upper)


def det(A: Tensor) -> Tensor:
    return _la.det(A)


def slogdet(A: Tensor):
    return _la.slogdet(A)


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:
    """L with A = LLᵀ (U = Lᵀ with ``upper=True``); LinAlgError if A is not positive-definite."""
    return _la.cholesky(A, upper)


CholeskyEx = namedtuple("cholesky_ex", ["L", "info"])


def cholesky_ex(A: Tensor, *, upper: bool = False, check_errors: bool = False):
    return CholeskyEx(cholesky(A, upper=upper), _info(A))


# ---- decompositions -----------------------------------------------------------------------------
QR = namedtuple("qr", ["Q", "R"])


def qr(A: Tensor, mode: str = "reduced"):
    """(Q, R) with A = QR; mode 'reduced', 'complete' or 'r' (R only, Q empty)."""
    A = _float(A, "linalg.qr")
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of "
                           "'reduced' (default), 'r', or 'complete'")
    q, r = _la.QR.apply(A, "complete" if mode == "complete" else "reduced")
    if mode == "r":
        return QR(wrap(devices.xp_of(A._data).zeros((0,), A._data.dtype)), r)
    return QR(q, r)


Eigh = namedtuple("eigh", ["eigenvalues", "eigenvectors"])


def eigh(A: Tensor, UPLO: str = "L"):
    """(λ ascending, Q) with A = Q diag(λ) Qᵀ for symmetric A (only the ``UPLO`` triangle read)."""
    A = _float(A, "linalg.eigh")
    _square(A, "linalg.eigh")
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    return Eigh(*_la.Eigh.apply(A, UPLO))


def eigvalsh(A: Tensor, UPLO: str = "L") -> Tensor:
    """The eigenvalues (ascending) of symmetric A."""
    A = _float(A, "linalg.eigvalsh")
    _square(A, "linalg.eigvalsh")
    return _la.EigvalsH.apply(A, UPLO)


SVD = namedtuple("svd", ["U", "S", "Vh"])


def svd(A: Tensor, full_matrices: bool = True, *, driver=None):
    """(U, S, Vh) with A = U diag(S) Vh."""
    A = _float(A, "linalg.svd")
    return SVD(*_la.SVD.apply(A, full_matrices))


def svdvals(A: Tensor, *, driver=None) -> Tensor:
    """The singular values of A, descending."""
    return _la.SVDVals.apply(_float(A, "linalg.svdvals"))


def pinv(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The pseudo-inverse: singular values ≤ max(atol, rtol·σ₁) are dropped (torch's default
    rtol: ε·max(m, n) when neither is given)."""
    A = _float(A, "linalg.pinv")
    u, s, vh = _la.SVD.apply(A, False)
    smax = amax(s, -1, keepdim=True) if s.shape[-1] else s.sum(-1, keepdim=True)
    if rtol is None:
        rtol = (0.0 if atol is not None and _pos(atol) else
                float(np.finfo(A._data.dtype).eps) * max(A.shape[-2:]))
    cut = rtol * smax.detach()
    if atol is not None:
        from chainrule.ops.binary import maximum

        a = atol if isinstance(atol, Tensor) else wrap(np.asarray(atol, A._data.dtype))
        cut = maximum(cut, a.unsqueeze(-1) if a.ndim else a)
    keep = s > cut
    s_inv = where(keep, 1 / where(keep, s, 1.0), 0.0)
    return (vh.mT * s_inv.unsqueeze(-2)) @ u.mT


def _pos(v) -> bool:
    return bool((v > 0).all()) if isinstance(v, Tensor) else v > 0


def matrix_rank(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The number of singular values above the tolerance of ``pinv``."""
    A = _float(A, "linalg.matrix_rank")
    s = svdvals(A).detach()
    if rtol is None:
        rtol = 0.0 if atol is not None else float(np.finfo(A._data.dtype).eps) * max(
            A.shape[-2:])
    smax = amax(s, -1, keepdim=True) if s.shape[-1] else s.sum(-1, keepdim=True)
    cut = rtol * smax
    if atol is not None:
        from chainrule.ops.binary import maximum

        cut = maximum(cut, wrap(np.asarray(atol, A._data.dtype)) if not isinstance(
            atol, Tensor) else atol)
    return (s > cut).sum(-1)


Lstsq = namedtuple("lstsq", ["solution", "residuals", "rank", "singular_values"])


def lstsq(A: Tensor, B: Tensor, rcond=None, *, driver=None):
    """The least-squares solution of A X ≈ B (minimum norm where A is rank deficient)."""
    A = _float(A, "linalg.lstsq")
    vec = B.ndim == A.ndim - 1
    Bm = B.unsqueeze(-1) if vec else B
    if rcond is None:
        rcond = float(np.finfo(A._data.dtype).eps) * max(A.shape[-2:])
    x = pinv(A, rtol=rcond) @ Bm
    empty = wrap(devices.xp_of(A._data).zeros((0,), A._data.dtype))
    m, n = A.shape[-2:]
    residuals = empty
    if driver not in (None, "gelsy") and m > n:
        residuals = ((A @ x - Bm) ** 2).sum(-2)
    rank = matrix_rank(A, rtol=rcond) if driver != "gels" else wrap(
        devices.xp_of(A._data).zeros((0,), np.int64))
    sv = svdvals(A) if driver in ("gelsd", "gelss") else empty
    return Lstsq(x.squeeze(-1) if vec else x, residuals, rank, sv)


def cond(A: Tensor, p=None) -> Tensor:
    """The condition number ‖A‖·‖A⁻¹‖ in norm ``p`` (σ₁/σₙ by default)."""
    A = _float(A, "linalg.cond")
    if p in (None, 2, -2):
        s = svdvals(A)
        r = s[..., 0] / s[..., -1]
        return r if p != -2 else 1 / r
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


# ---- products -----------------------------------------------------------------------------------
def cross(input: Tensor, other: Tensor, *, dim: int = -1) -> Tensor:
    """a × b of 3-vectors along ``dim`` (broadcasting)."""
    return _la.cross_along(input, other, dim)


def multi_dot(tensors) -> Tensor:
    """tensors[0] @ tensors[1] @ ... (the first may be a row vector, the last a column)."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(tensors)}")
    first_vec, last_vec = tensors[0].ndim == 1, tensors[-1].ndim == 1
    if first_vec:
        tensors[0] = tensors[0].unsqueeze(0)
    if last_vec:
        tensors[-1] = tensors[-1].unsqueeze(-1)
    for i, t in enumerate(tensors):
        if t.ndim != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {t.ndim}D")
    out = tensors[0]
    for t in tensors[1:]:
        out = out @ t
    if first_vec:
        out = out.squeeze(0)
    if last_vec:
        out = out.squeeze(-1)
    return out


def diagonal(A: Tensor, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    return _diagonal(A, offset, dim1, dim2)


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """Σ x·y along ``dim`` (broadcasting)."""
    return _sum(x * y, dim)


def vander(x: Tensor, *, N=None) -> Tensor:
    """The Vandermonde matrix [1, x, x², ..., x^(N-1)] (increasing powers, as torch.linalg)."""
    n = x.shape[-1] if N is None else N
    if n < 1:
        raise RuntimeError("N must be greater than 1.")
    cols = [x ** 0] + [x ** k for k in range(1, n)]
    from chainrule.ops.shape import stack

    return stack(cols, -1)


def matrix_power(A: Tensor, n: int) -> Tensor:
    return _la.matrix_power(A, n)


def matrix_exp(A: Tensor) -> Tensor:
    return _la.matrix_exp(A)


# ---- LU -----------------------------------------------------------------------------------------
LUResult = namedtuple("lu", ["P", "L", "U"])


def lu(A: Tensor, *, pivot: bool = True):
    """(P, L, U) with A = P L U (partial pivoting, square A)."""
    A = _float(A, "linalg.lu")
    if not pivot:
        raise RuntimeError("linalg.lu_factor: LU without pivoting is not implemented on the CPU")
    _square(A, "linalg.lu")
    return LUResult(*_la.LU.apply(A))


LUFactor = namedtuple("lu_factor", ["LU", "pivots"])
LUFactorEx = namedtuple("lu_factor_ex", ["LU", "pivots", "info"])


def lu_factor(A: Tensor, *, pivot: bool = True):
    """(LU, pivots): L (unit diagonal, not stored) and U packed in one matrix, and LAPACK's
    1-based row swaps."""
    LU, piv, _ = lu_factor_ex(A, pivot=pivot)
    return LUFactor(LU, piv)


def lu_factor_ex(A: Tensor, *, pivot: bool = True, check_errors: bool = False):
    P, L, U = lu(A, pivot=pivot)
    return LUFactorEx(L - _la._eye_t(L) + U, _la.pivots_of(P._data), _info(A))


def lu_solve(LU: Tensor, pivots: Tensor, B: Tensor, *, left: bool = True,
             adjoint: bool = False) -> Tensor:
    """X with A X = B from A's packed LU factorization (X A = B with ``left=False``; Aᵀ with
    ``adjoint=True``)."""
    return _la.lu_solve_packed(LU, pivots, B, left=left, adjoint=adjoint)


# ---- tensor equations ---------------------------------------------------------------------------
def tensorinv(A: Tensor, ind: int = 2) -> Tensor:
    """The inverse of A seen as a matrix of (first ``ind`` dims) × (the rest)."""
    if ind <= 0:
        raise RuntimeError(f"Expected a strictly positive integer for 'ind', but got {ind}")
    out_shape = tuple(A.shape[ind:]) + tuple(A.shape[:ind])
    rows = math.prod(A.shape[:ind])
    return inv(A.reshape(rows, -1)).reshape(out_shape)


def tensorsolve(A: Tensor, B: Tensor, dims=None) -> Tensor:
    """X with tensordot(A, X, X.ndim) = B."""
    if dims is not None:
        dims = [d % A.ndim for d in dims]
        A = A.movedim(dims, list(range(A.ndim - len(dims), A.ndim)))
    x_shape = tuple(A.shape[B.ndim:])
    return solve(A.reshape(B.numel(), -1), B.reshape(-1)).reshape(x_shape)


def householder_product(A: Tensor, tau: Tensor) -> Tensor:
    """The first n columns of H₁H₂…Hₖ, Hᵢ = I - τᵢvᵢvᵢᵀ with vᵢ the i-th column of A below
    the diagonal and 1 on it (LAPACK's orgqr; composed, so the gradient follows)."""
    A = _float(A, "linalg.householder_product")
    m, n = A.shape[-2:]
    k = tau.shape[-1]
    if n > m:
        raise RuntimeError("torch.linalg.householder_product: input.shape[-2] must be greater "
                           "than or equal to input.shape[-1]")
    if k > n:
        raise RuntimeError("torch.linalg.householder_product: input.shape[-1] must be greater "
                           "than or equal to tau.shape[-1]")
    xp = devices.xp_of(A._data)
    rows = xp.arange(m)
    eye = wrap(xp.broadcast_to(xp.eye(m, dtype=A._data.dtype), tuple(A.shape[:-2]) + (m, m)))
    Q = eye
    for i in range(k):
        below = wrap((rows > i).astype(A._data.dtype))
        at = wrap((rows == i).astype(A._data.dtype))
        v = A[..., :, i] * below + at  # (..., m)
        Q = Q - tau[..., i, None, None] * ((Q @ v.unsqueeze(-1)) @ v.unsqueeze(-2))
    return Q[..., :, :n]
