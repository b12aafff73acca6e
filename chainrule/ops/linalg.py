"""Vectorized gates: matmul and friends, einsum. For D = W·X the lecture's rule dW = dD·Xᵀ."""

from __future__ import annotations

import math
from collections import namedtuple

from chainrule.devices import np
from chainrule import devices
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.batching import stack_host
from chainrule.kernels.matmul import matmul as _mm
from chainrule import dtypes as _dt
from chainrule.ops import either
from chainrule.ops.binary import _cast, _check_devices, where
from chainrule.tensor import Tensor, wrap

__all__ = ["matmul", "mm", "bmm", "dot", "vdot", "outer", "ger", "einsum", "inner", "mv"]


class MatMul(Op):
    """C = A @ B;  dA = dC @ Bᵀ, dB = Aᵀ @ dC (1-d operands are promoted and squeezed back)"""

    @staticmethod
    def forward(ctx, a, b):
        need_a, need_b = ctx.needs_input_grad  # (each gradient needs the other operand)
        ctx.save_for_backward(a if need_b else None, b if need_a else None)
        ctx.nd = (a.ndim, b.ndim)
        return _mm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad  # X @ W with a constant X: no GEMM for dX
        a_nd, b_nd = ctx.nd
        ga = gb = None
        if a_nd == 1 and b_nd == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        if a_nd == 1:  # (n) @ (..., n, m) -> (..., m)
            if need_a:  # one matrix: one product (and one gate under create_graph)
                ga = either.matmul(b, g) if b_nd == 2 else \
                    (b @ either.expand_dims(g, (-1,)))[..., 0]
            if need_b:
                gb = either.expand_dims(a, (-1,)) * either.expand_dims(g, (-2,))
            return ga, gb
        if b_nd == 1:  # (..., n, m) @ (m) -> (..., n)
            if need_a:
                ga = either.expand_dims(g, (-1,)) * b
            if need_b:
                gb = either.matmul(g, a) if a_nd == 2 else \
                    (either.swapaxes(a, -1, -2) @ either.expand_dims(g, (-1,)))[..., 0]
            return ga, gb
        if need_a:
            ga = either.matmul(g, either.swapaxes(b, -1, -2))
        if need_b:
            if b_nd == 2 and a_nd > 2:  # a stack times one matrix: one GEMM over all the rows
                rows = math.prod(a.shape[:-1])
                gb = either.matmul(either.swapaxes(either.reshape(a, (rows, a.shape[-1])), 0, 1),
                                   either.reshape(g, (rows, g.shape[-1])))
            else:
                gb = either.matmul(either.swapaxes(a, -1, -2), g)
        return ga, gb


class Einsum(Op):
    """Any sum of products written as subscripts; each operand's gradient is another einsum"""

    @staticmethod
    def forward(ctx, equation, *operands):
        ctx.subscripts, ctx.output = _parse(equation, len(operands))
        ctx.save_for_backward(*operands)
        return np.einsum(equation, *operands, optimize=len(operands) > 2)

    @staticmethod
    def backward(ctx, g):
        operands = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grads = [None]
        for k, sub in enumerate(ctx.subscripts):
            if not needs[k + 1]:
                grads.append(None)
                continue
            others = [(s, op) for j, (s, op) in enumerate(zip(ctx.subscripts, operands))
                      if j != k]
            present = set(ctx.output).union(*[set(s) for s, _ in others])
            uniq = "".join(dict.fromkeys(sub))  # 'iij' -> 'ij'
            size = dict(zip(sub, operands[k].shape))
            kept = "".join(c for c in uniq if c in present)
            eq = ",".join([ctx.output] + [s for s, _ in others]) + "->" + kept
            gk = either.einsum(eq, g, *[op for _, op in others])
            if kept != uniq:  # letters summed only within this operand: broadcast back
                missing = tuple(i for i, c in enumerate(uniq) if c not in present)
                gk = either.broadcast_to(either.expand_dims(gk, missing),
                                         tuple(size[c] for c in uniq))
            if uniq != sub:  # a repeated letter reads a diagonal: the gradient goes back onto it
                gk = _onto_diagonal(gk, uniq, sub, size, "".join(ctx.subscripts) + ctx.output)
            grads.append(gk)
        return tuple(grads)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _onto_diagonal(gk, uniq: str, sub: str, size: dict, used: str):
    """zeros of ``sub``'s shape with ``gk`` (indexed by ``uniq``) on its diagonals, e.g. 'ii'."""
    free = iter(c for c in _LETTERS if c not in used)
    seen, renamed, deltas = set(), [], []
    for c in sub:
        if c in seen:
            f = next(free)
            renamed.append(f)
            deltas.append(c + f)
        else:
            seen.add(c)
            renamed.append(c)
    dtype = either.dtype_of(gk)
    xp = devices.xp_of(either.data(gk))
    eyes = [xp.eye(size[d[0]], dtype=dtype) for d in deltas]
    return either.einsum(",".join([uniq] + deltas) + "->" + "".join(renamed), gk, *eyes)


def _explicit(equation: str, operands: tuple):
    """The equation with '...' written out in letters and an explicit output, and the operands
    expanded where their '...' dims are 1 and another operand's are not (PyTorch broadcasts)."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise RuntimeError(
            f"einsum(): more operands were provided than specified in the equation "
            f"({equation!r} names {len(subs)}, got {len(operands)})"
        )
    shapes = [tuple(np.shape(o._data if isinstance(o, Tensor) else o)) for o in operands]
    ell = ""
    if "..." in eq:
        nd = []
        for sub, shape in zip(subs, shapes):
            n = len(shape) - (len(sub) - 3) if "..." in sub else 0
            if n < 0:
                raise RuntimeError(
                    f"einsum(): the subscripts {sub!r} name more dims than the operand of shape "
                    f"{list(shape)} has"
                )
            nd.append(n)
        ell = "".join([c for c in _LETTERS if c not in eq][: max(nd)])
        subs = [sub.replace("...", ell[len(ell) - n:]) for sub, n in zip(subs, nd)]
        out = out.replace("...", ell)
        size = {}
        for sub, shape in zip(subs, shapes):
            for c, n in zip(sub, shape):
                if c in ell and n != 1:
                    size[c] = n
        operands = tuple(
            o.expand(*[size.get(c, n) if c in ell else n for c, n in zip(sub, shape)])
            if any(c in ell and n == 1 and size.get(c, 1) != 1 for c, n in zip(sub, shape))
            else o
            for o, sub, shape in zip(operands, subs, shapes)
        )
    if not arrow:  # implicit output: the '...' dims, then the letters used once, sorted
        letters = "".join(subs)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                   and c not in ell))
    return ",".join(subs) + "->" + out, operands


def _parse(equation: str, n: int):
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    inputs = lhs.split(",")
    if len(inputs) != n:
        raise RuntimeError(
            f"einsum(): more operands were provided than specified in the equation "
            f"({equation!r} names {len(inputs)}, got {n})"
        )
    return inputs, out


def _matmul_error(a: Tensor, b: Tensor, name: str) -> RuntimeError:
    sa, sb = a._data.shape, b._data.shape
    if len(sa) == 2 and len(sb) == 2:
        return RuntimeError(
            f"{name}: mat1 and mat2 shapes cannot be multiplied ({sa[0]}x{sa[1]} and "
            f"{sb[0]}x{sb[1]})"
        )
    return RuntimeError(f"{name}: shapes {list(sa)} and {list(sb)} cannot be multiplied")


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch broadcasting of batch dims."""
    if _amp.active and (out := _amp.run("matmul", matmul, input, other)) is not None:
        return out

    if not isinstance(other, Tensor) or not isinstance(input, Tensor):
        raise TypeError("matmul(): arguments must be Tensors")
    if input._data.ndim == 0 or other._data.ndim == 0:
        raise RuntimeError(
            "matmul: both arguments to matmul need to be at least 1D, but they are "
            f"{input._data.ndim}D and {other._data.ndim}D"
        )
    if input._data.dtype != other._data.dtype:
        target = _dt.result_type(input._data, other._data)
        input, other = _cast(input, target), _cast(other, target)
    _check_devices(input, other, "matmul")
    try:
        return MatMul.apply(input, other)
    except ValueError:
        raise _matmul_error(input, other, "matmul") from None


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """2-d matrix product."""
    if _amp.active and (out := _amp.run("mm", mm, input, mat2)) is not None:
        return out
    if input._data.ndim != 2 or mat2._data.ndim != 2:
        raise RuntimeError(
            f"mm: self must be a matrix (got {input._data.ndim}D and {mat2._data.ndim}D)"
        )
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched (3-d) matrix product."""
    if _amp.active and (out := _amp.run("bmm", bmm, input, mat2)) is not None:
        return out
    if input._data.ndim != 3 or mat2._data.ndim != 3:
        raise RuntimeError(
            f"bmm: batch1 must be a 3D tensor (got {input._data.ndim}D and {mat2._data.ndim}D)"
        )
    if input._data.shape[0] != mat2._data.shape[0]:
        raise RuntimeError(
            f"bmm: batch sizes differ: {input._data.shape[0]} and {mat2._data.shape[0]}"
        )
    return matmul(input, mat2)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    if _amp.active and (out := _amp.run("mv", mv, input, vec)) is not None:
        return out
    return matmul(input, vec)


def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-d tensors."""
    if _amp.active and (out := _amp.run("dot", dot, input, other)) is not None:
        return out
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(
            f"1D tensors expected, but got {input._data.ndim}D and {other._data.ndim}D tensors"
        )
    if input._data.shape != other._data.shape:
        raise RuntimeError(
            "dot: inconsistent tensor size, expected tensor [" + str(input._data.shape[0])
            + "] and src [" + str(other._data.shape[0]) + "] to have the same number of elements"
        )
    return matmul(input, other)


vdot = inner = dot


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """Outer product aᵢbⱼ of two 1-d tensors."""
    if input._data.ndim != 1 or vec2._data.ndim != 1:
        raise RuntimeError(
            f"outer: expected 1D tensors, but got shapes {list(input._data.shape)} and "
            f"{list(vec2._data.shape)}"
        )
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


ger = outer


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation, e.g. ``einsum("ij,jk->ik", a, b)``."""
    if _amp.active and (out := _amp.run("einsum", einsum, equation, *operands)) is not None:
        return out
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq, operands = _explicit(equation, operands)
    try:
        return Einsum.apply(eq, *operands)
    except ValueError as e:
        shapes = [list(np.shape(o._data if isinstance(o, Tensor) else o)) for o in operands]
        raise RuntimeError(f"einsum({equation!r}): {e} (operand shapes {shapes})") from None


# ---- decompositions and inverses (cr.linalg; torch's top-level names below) ---------------------
class LinAlgError(RuntimeError):
    """A linear-algebra routine failed (singular or not positive-definite input), as
    ``torch.linalg.LinAlgError``."""


def _mT(a):
    return either.swapaxes(a, -1, -2)


def _square(A: Tensor, name: str, arg: str = "A") -> None:
    shape = A._data.shape
    if len(shape) < 2:
        raise RuntimeError(f"{name}: The input tensor {arg} must have at least 2 dimensions.")
    if shape[-1] != shape[-2]:
        raise RuntimeError(f"{name}: {arg} must be batches of square matrices, but they are "
                           f"{shape[-2]} by {shape[-1]} matrices")


def _float_input(A: Tensor, name: str) -> Tensor:
    if not isinstance(A, Tensor):
        raise TypeError(f"{name}(): argument 'A' must be Tensor, not {type(A).__name__}")
    if A._data.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError(f"{name}: Expected a floating point or complex tensor as input. "
                           f"Got {A.dtype.name.capitalize()}")
    return A


def _lapack(fn, name: str, what: str):
    """Run ``fn``, turning NumPy's LinAlgError into torch's message."""
    try:
        return fn()
    except np.linalg.LinAlgError:
        raise LinAlgError(f"{name}: {what}") from None


_SINGULAR = "The input matrix is singular, the operation could not be completed."


class Inv(Op):
    """Y = A⁻¹;  gA = -Yᵀ g Yᵀ"""

    @staticmethod
    def forward(ctx, a):
        y = _lapack(lambda: devices.xp_of(a).linalg.inv(a), "linalg.inv", _SINGULAR)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        yt = _mT(y)
        return -(yt @ g @ yt)


class Solve(Op):
    """X = A⁻¹B;  gB = A⁻ᵀ g,  gA = -gB Xᵀ"""

    @staticmethod
    def forward(ctx, a, b):
        x = _lapack(lambda: devices.xp_of(a).linalg.solve(a, b), "linalg.solve", _SINGULAR)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = _solve(_mT(a), g)
        ga = -(gb @ _mT(x)) if ctx.needs_input_grad[0] else None
        return ga, gb


class Det(Op):
    """d = det A;  gA = g·d·A⁻ᵀ"""

    @staticmethod
    def forward(ctx, a):
        d = devices.xp_of(a).linalg.det(a)
        ctx.save_for_backward(a, d)
        return d

    @staticmethod
    def backward(ctx, g):
        a, d = ctx.saved_tensors
        return _as_matrix_scale(g * d) * _mT(_inv(a))


class Slogdet(Op):
    """(sign, ln|det A|);  gA = g_logabs · A⁻ᵀ (the sign has no gradient)"""

    @staticmethod
    def forward(ctx, a):
        sign, logabs = devices.xp_of(a).linalg.slogdet(a)
        ctx.save_for_backward(a)
        ctx.mark_non_differentiable(sign)
        return sign, logabs

    @staticmethod
    def backward(ctx, g_sign, g_logabs):
        (a,) = ctx.saved_tensors
        return _as_matrix_scale(g_logabs) * _mT(_inv(a))


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
        gb = _solve_tri(_mT(a), g, not ctx.upper)
        ga = None
        if ctx.needs_input_grad[0]:
            ga = -(gb @ _mT(x))
            ga = either.triu(ga, 0) if ctx.upper else either.tril(ga, 0)
        return ga, gb, None


def _solve_tri_array(a, b, upper: bool):
    """Solve a·x = b for triangular a, with batch broadcasting (LAPACK's general solver)."""
    xp = devices.xp_of(a)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = xp.broadcast_to(xp.triu(a) if upper else xp.tril(a), shape + a.shape[-2:])
    b = xp.broadcast_to(b, shape + b.shape[-2:])
    return _lapack(lambda: xp.linalg.solve(a, b), "linalg.solve_triangular", _SINGULAR)


def _solve_tri(a, b, upper: bool):
    """a⁻¹b for triangular ``a`` on raw arrays, or through the gate on Tensors."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return SolveTriangular.apply(a, b, upper)
    return _solve_tri_array(a, b, upper)


# In a backward, on raw arrays (a plain backward) or through the gates (create_graph=True):
def _inv(a):
    return Inv.apply(a) if isinstance(a, Tensor) else devices.xp_of(a).linalg.inv(a)


def _solve(a, b):
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return Solve.apply(a, b)
    return devices.xp_of(a).linalg.solve(a, b)


def _expm(a):
    return MatrixExp.apply(a) if isinstance(a, Tensor) else expm_array(a)


def _svd_uv(a, u, vh):
    if isinstance(a, Tensor):
        u, _, vh = SVD.apply(a, False)
    return u, vh


def _eigh_q(a, uplo, q):
    return Eigh.apply(a, uplo)[1] if isinstance(a, Tensor) else q


class Cholesky(Op):
    """A = LLᵀ;  gA = ½(S + Sᵀ),  S = L⁻ᵀ Φ(Lᵀ gL) L⁻¹  (Φ: lower triangle, halved diagonal)"""

    @staticmethod
    def forward(ctx, a):
        low = _lapack(lambda: devices.xp_of(a).linalg.cholesky(a), "linalg.cholesky",
                      "The factorization could not be completed because the input is not "
                      "positive-definite.")
        ctx.save_for_backward(low)
        return low

    @staticmethod
    def backward(ctx, g):
        (low,) = ctx.saved_tensors
        phi = either.tril(_mT(low) @ g, 0)
        phi = phi - either.tril(either.triu(phi, 0), 0) * 0.5  # halve the diagonal
        s = _solve_tri(_mT(low), _mT(_solve_tri(_mT(low), _mT(phi), True)), True)  # L⁻ᵀ Φ L⁻¹
        return (s + _mT(s)) * 0.5


def _as_matrix_scale(v):
    """A batch of numbers (…,) as (…, 1, 1), to scale a batch of matrices."""
    return either.expand_dims(either.expand_dims(v, (-1,)), (-1,))


def _eye_like(a, n: int):
    return devices.xp_of(either.data(a)).eye(n, dtype=either.data(a).dtype)


class QR(Op):
    """A = QR (reduced, m ≥ n);  gA = (gQ + Q·copyltu(M)) R⁻ᵀ,  M = R gRᵀ - gQᵀ Q"""

    @staticmethod
    def forward(ctx, a, mode):
        q, r = devices.xp_of(a).linalg.qr(a, mode="complete" if mode == "complete" else
                                          "reduced")
        ctx.save_for_backward(q, r)
        ctx.mode = mode
        return q, r

    @staticmethod
    def backward(ctx, gq, gr):
        q, r = ctx.saved_tensors
        m, n = q.shape[-2], r.shape[-1]
        if ctx.mode == "complete" and m > n:
            raise NotImplementedError("The derivative of linalg.qr depends on Q, which is not "
                                      "computed when mode='complete' and nrows > ncols.")
        if m < n:
            raise NotImplementedError("The QR decomposition is not differentiable when "
                                      "mode='complete' and nrows > ncols, or when nrows < ncols")
        gq = either.zeros_like(q) if gq is None else gq
        gr = either.zeros_like(r) if gr is None else gr
        mm = r @ _mT(gr) - _mT(gq) @ q
        low = either.tril(mm, -1)
        copyltu = low + _mT(low) + either.tril(either.triu(mm, 0), 0)
        b = gq + q @ copyltu
        # B R⁻ᵀ = (R⁻¹ Bᵀ)ᵀ: one triangular solve
        return _mT(_solve_tri(r, _mT(b), True)), None


class Eigh(Op):
    """A = Q diag(λ) Qᵀ (symmetric A, lower triangle read);
    gA = Q (diag(gλ) + skew(Qᵀ gQ)/E) Qᵀ, E_ij = λⱼ - λᵢ"""

    @staticmethod
    def forward(ctx, a, uplo):
        lam, q = devices.xp_of(a).linalg.eigh(a, UPLO=uplo)
        ctx.save_for_backward(lam, q)
        return lam, q

    @staticmethod
    def backward(ctx, glam, gq):
        lam, q = ctx.saved_tensors
        inner = either.zeros_like(q) if glam is None else _diag_embed(glam)
        if gq is not None:
            vgv = _mT(q) @ gq
            vgv = (vgv - _mT(vgv)) * 0.5
            e = either.expand_dims(lam, (-2,)) - either.expand_dims(lam, (-1,))
            n = lam.shape[-1]
            eye = _eye_like(lam, n)
            e = e + eye  # the diagonal of vgv is 0 after the projection
            inner = inner + vgv / e
        return q @ inner @ _mT(q), None


def _diag_embed(v):
    """A batch of diagonal matrices from a batch of vectors (raw arrays or Tensors)."""
    n = v.shape[-1]
    return either.expand_dims(v, (-1,)) * _eye_like(v, n)


class SVD(Op):
    """A = U diag(s) Vᴴ (reduced);  gA = U[(F∘(UᵀgU - gUᵀU))S + diag(gs) + S(F∘(VᵀgV - gVᵀV))]Vᵀ
    + (I - UUᵀ) gU S⁻¹ Vᵀ + U S⁻¹ gVᵀ (I - VVᵀ),  F_ij = 1/(sⱼ² - sᵢ²)"""

    @staticmethod
    def forward(ctx, a, full_matrices):
        u, s, vh = devices.xp_of(a).linalg.svd(a, full_matrices=full_matrices)
        ctx.save_for_backward(u, s, vh)
        ctx.full = full_matrices
        return u, s, vh

    @staticmethod
    def backward(ctx, gu, gs, gvh):
        u, s, vh = ctx.saved_tensors
        if ctx.full and (gu is not None or gvh is not None) and u.shape[-1] != vh.shape[-2]:
            raise NotImplementedError("linalg.svd: The derivative is not implemented when "
                                      "full_matrices=True and the matrix is not square.")
        k = s.shape[-1]
        v = _mT(vh)
        if gu is None and gvh is None:
            return u[..., :k] @ _diag_embed(gs) @ vh[..., :k, :], None
        u, v = u[..., :k], v[..., :k]
        gu = either.zeros_like(u) if gu is None else gu[..., :k]
        gv = either.zeros_like(v) if gvh is None else _mT(gvh)[..., :k]
        s2 = s * s
        f = either.expand_dims(s2, (-2,)) - either.expand_dims(s2, (-1,))
        eye = _eye_like(s, k)
        f = (1 - eye) / (f + eye)  # 0 on the diagonal
        j = f * (_mT(u) @ gu - _mT(gu) @ u)
        kk = f * (_mT(v) @ gv - _mT(gv) @ v)
        s_mat = _diag_embed(s)
        inner = j @ s_mat + s_mat @ kk
        if gs is not None:
            inner = inner + _diag_embed(gs)
        out = u @ inner @ _mT(v)
        m, n = u.shape[-2], v.shape[-2]
        s_inv = either.expand_dims(1 / s, (-2,))
        if m > k:
            out = out + (gu - u @ (_mT(u) @ gu)) * s_inv @ _mT(v)
        if n > k:
            out = out + (u * s_inv) @ _mT(gv - v @ (_mT(v) @ gv))
        return out, None


class LU(Op):
    """PA = LU (partial pivoting, square A);  gA = Pᵀ L⁻ᵀ [tril(Lᵀ gL, -1) + triu(gU Uᵀ)] U⁻ᵀ"""

    @staticmethod
    def forward(ctx, a):
        p, low, up = lu_array(a)
        ctx.save_for_backward(p, low, up)
        ctx.mark_non_differentiable(p)
        return p, low, up

    @staticmethod
    def backward(ctx, gp, gl, gu):
        p, low, up = ctx.saved_tensors
        inner = 0
        if gl is not None:
            inner = either.tril(_mT(low) @ gl, -1)
        if gu is not None:
            inner = inner + either.triu(gu @ _mT(up), 0)
        # L⁻ᵀ inner U⁻ᵀ with triangular solves, then undo the row permutation
        x = _solve_tri(_mT(low), inner, True)
        x = _mT(_solve_tri(up, _mT(x), True))
        return p @ x


@stack_host
def lu_array(a):
    """(P, L, U) with A = P L U, unit lower L (LAPACK's getrf, written out: Doolittle with
    partial pivoting, vectorized over the batch)."""
    xp = devices.xp_of(a)
    shape = a.shape
    m, n = shape[-2], shape[-1]
    k = min(m, n)
    u = xp.array(a, copy=True).reshape((-1, m, n))
    b = u.shape[0]
    perm = xp.broadcast_to(xp.arange(m), (b, m)).copy()
    low = xp.zeros((b, m, k), dtype=a.dtype)
    rows = xp.arange(b)
    for j in range(k):
        piv = j + xp.argmax(xp.abs(u[:, j:, j]), axis=1)
        for arr in (u, low):
            tmp = arr[rows, j].copy()
            arr[rows, j] = arr[rows, piv]
            arr[rows, piv] = tmp
        tmp = perm[rows, j].copy()
        perm[rows, j] = perm[rows, piv]
        perm[rows, piv] = tmp
        pivot = u[:, j, j]
        safe = xp.where(pivot == 0, 1, pivot)
        factors = xp.where((pivot == 0)[:, None], 0, u[:, j + 1:, j] / safe[:, None])
        low[:, j + 1:, j] = factors
        u[:, j + 1:, :] -= factors[:, :, None] * u[:, j:j + 1, :]
    low[:, range(k), range(k)] = 1
    pmat = xp.zeros((b, m, m), dtype=a.dtype)
    pmat[rows[:, None], perm, xp.arange(m)[None, :]] = 1
    batch = shape[:-2]
    return (pmat.reshape(batch + (m, m)), low.reshape(batch + (m, k)),
            xp.triu(u[:, :k, :]).reshape(batch + (k, n)))


class MatrixExp(Op):
    """Y = e^A (scaling and squaring of a Taylor series);  gA = the upper-right block of
    exp([[Aᵀ, g], [0, Aᵀ]])"""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return expm_array(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        n = a.shape[-1]
        at = _mT(a)
        zero = either.zeros_like(at)
        top = either.concat([at, g], -1)
        bottom = either.concat([zero, at], -1)
        big = either.concat([top, bottom], -2)
        return _expm(big)[..., :n, n:]


@stack_host
def expm_array(a):
    """e^A for a batch of square matrices: scale by 2⁻ˢ until ‖A‖ ≤ ½, 18 Taylor terms (far
    below float64 rounding there), square s times."""
    xp = devices.xp_of(a)
    norm = float(xp.max(xp.abs(a).sum(-1))) if a.size else 0.0
    s = max(0, int(np.ceil(np.log2(norm / 0.5))) if norm > 0.5 else 0)
    x = a / (2.0 ** s)
    n = a.shape[-1]
    eye = xp.broadcast_to(xp.eye(n, dtype=a.dtype), a.shape)
    term, out = eye.copy(), eye.copy()
    for i in range(1, 19):
        term = term @ x / i
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


class SVDVals(Op):
    """s = singular values of A;  gA = U diag(gs) Vᵀ"""

    @staticmethod
    def forward(ctx, a):
        u, s, vh = devices.xp_of(a).linalg.svd(a, full_matrices=False)
        ctx.u, ctx.vh = u, vh  # constants of the backward (their own gradient is not needed)
        ctx.save_for_backward(a)
        return s

    @staticmethod
    def backward(ctx, gs):
        (a,) = ctx.saved_tensors
        u, vh = _svd_uv(a, ctx.u, ctx.vh)
        return u @ _diag_embed(gs) @ vh


class EigvalsH(Op):
    """λ = eigenvalues of symmetric A;  gA = Q diag(gλ) Qᵀ"""

    @staticmethod
    def forward(ctx, a, uplo):
        lam, q = devices.xp_of(a).linalg.eigh(a, UPLO=uplo)
        ctx.q, ctx.uplo = q, uplo
        ctx.save_for_backward(a)
        return lam

    @staticmethod
    def backward(ctx, glam):
        (a,) = ctx.saved_tensors
        q = _eigh_q(a, ctx.uplo, ctx.q)
        return q @ _diag_embed(glam) @ _mT(q), None


# ---- public functions: torch's top-level names (cr.linalg has the linalg.* ones) ---------------
def _vector_rhs(A: Tensor, B: Tensor) -> bool:
    """Is B a (batch of) vector(s) for A, in torch.linalg.solve's sense?"""
    nb = B._data.ndim
    return nb == 1 or (nb == A._data.ndim - 1 and tuple(B._data.shape) == tuple(
        A._data.shape[:-1]))


def inverse(input: Tensor) -> Tensor:
    """A⁻¹ (batched)."""
    A = _float_input(input, "linalg.inv")
    _square(A, "linalg.inv")
    return Inv.apply(A)


def det(input: Tensor) -> Tensor:
    """det A (batched)."""
    A = _float_input(input, "linalg.det")
    _square(A, "linalg.det")
    return Det.apply(A)


SignLogAbsDet = namedtuple("slogdet", ["sign", "logabsdet"])


def slogdet(input: Tensor):
    """(sign, ln|det A|), stable where det over- or underflows."""
    A = _float_input(input, "linalg.slogdet")
    _square(A, "linalg.slogdet")
    return SignLogAbsDet(*Slogdet.apply(A))


def logdet(input: Tensor) -> Tensor:
    """ln det A: NaN where det A < 0, -inf where it is 0."""
    sign, logabs = slogdet(input)
    return where(sign < 0, float("nan"), logabs)


def matrix_power(input: Tensor, n: int) -> Tensor:
    """Aⁿ by repeated squaring (A⁻¹ for negative n, the identity for 0)."""
    A = _float_input(input, "linalg.matrix_power") if input._data.dtype.kind in "fc" else input
    _square(A, "linalg.matrix_power")
    if not isinstance(n, int):
        raise TypeError(f"matrix_power(): argument 'n' must be int, not {type(n).__name__}")
    if n == 0:  # the identity, in the graph with gradient 0 (as torch)
        xp = devices.xp_of(A._data)
        eye = xp.broadcast_to(xp.eye(A._data.shape[-1], dtype=A._data.dtype), A._data.shape)
        return where(xp.ones(A._data.shape, bool), wrap(eye.copy()), A)
    if n < 0:
        A, n = inverse(A), -n
    result, base = None, A
    while n:
        if n & 1:
            result = base if result is None else result @ base
        n >>= 1
        if n:
            base = base @ base
    return result


def matrix_exp(input: Tensor) -> Tensor:
    """e^A = Σ Aᵏ/k! (batched)."""
    A = _float_input(input, "linalg.matrix_exp")
    _square(A, "linalg.matrix_exp")
    return MatrixExp.apply(A)


def cholesky(input: Tensor, upper: bool = False) -> Tensor:
    """The Cholesky factor L (A = LLᵀ), or U = Lᵀ with ``upper=True``."""
    A = _float_input(input, "linalg.cholesky")
    _square(A, "linalg.cholesky")
    low = Cholesky.apply(A)
    return low.mT if upper else low


def cholesky_solve(B: Tensor, L: Tensor, upper: bool = False) -> Tensor:
    """X with A X = B, given A's Cholesky factor (lower L, or upper with ``upper=True``)."""
    if upper:
        y = SolveTriangular.apply(L.mT, B, False)
        return SolveTriangular.apply(L, y, True)
    y = SolveTriangular.apply(L, B, False)
    return SolveTriangular.apply(L.mT, y, True)


def cholesky_inverse(L: Tensor, upper: bool = False) -> Tensor:
    """A⁻¹ from A's Cholesky factor."""
    eye = devices.xp_of(L._data).eye(L._data.shape[-1], dtype=L._data.dtype)
    from chainrule.tensor import wrap

    return cholesky_solve(wrap(devices.xp_of(L._data).broadcast_to(eye, L._data.shape).copy()),
                          L, upper)


QRResult = namedtuple("qr", ["Q", "R"])


def qr(input: Tensor, some: bool = True) -> tuple:
    """(Q, R) with A = QR: reduced (``some=True``) or complete."""
    A = _float_input(input, "linalg.qr")
    return QRResult(*QR.apply(A, "reduced" if some else "complete"))


SVDResult = namedtuple("svd", ["U", "S", "V"])


def svd(input: Tensor, some: bool = True, compute_uv: bool = True) -> tuple:
    """(U, S, V) with A = U diag(S) Vᵀ (torch.svd's V, not Vᴴ; cr.linalg.svd returns Vh)."""
    A = _float_input(input, "svd")
    if not compute_uv:
        s = SVDVals.apply(A)
        m, n = A._data.shape[-2:]
        from chainrule.tensor import wrap

        z = devices.xp_of(A._data).zeros
        return SVDResult(wrap(z(A._data.shape[:-2] + (m, m if not some else min(m, n)),
                                A._data.dtype)), s,
                         wrap(z(A._data.shape[:-2] + (n, n if not some else min(m, n)),
                                A._data.dtype)))
    u, s, vh = SVD.apply(A, not some)
    return SVDResult(u, s, vh.mT)


def pinverse(input: Tensor, rcond: float = 1e-15) -> Tensor:
    """The Moore-Penrose pseudo-inverse V diag(1/s) Uᵀ (singular values ≤ rcond·max dropped)."""
    A = _float_input(input, "pinverse")
    u, s, vh = SVD.apply(A, False)
    cut = rcond * s.amax(-1, keepdim=True)
    keep = s > cut
    s_inv = where(keep, 1 / where(keep, s, 1.0), 0.0)
    return (vh.mT * s_inv.unsqueeze(-2)) @ u.mT


TriangularSolveResult = namedtuple("triangular_solve", ["solution", "cloned_coefficient"])


def triangular_solve(b: Tensor, A: Tensor, upper: bool = True, transpose: bool = False,
                     unitriangular: bool = False):
    """(X, A) with A X = b for triangular A (deprecated in torch, kept for old programs)."""
    M = A.mT if transpose else A
    up = upper != transpose
    if unitriangular:
        from chainrule.ops.shape import diagonal

        M = M - _diag_embed_t(diagonal(M, 0, -2, -1)) + _eye_t(M)
    x = SolveTriangular.apply(M, b, up)
    return TriangularSolveResult(x, A.clone())


def _diag_embed_t(v: Tensor) -> Tensor:
    return v.unsqueeze(-1) * _eye_t(v.unsqueeze(-1).expand(*v.shape, v.shape[-1]))


def _eye_t(M: Tensor) -> Tensor:
    from chainrule.tensor import wrap

    n = M._data.shape[-1]
    return wrap(devices.xp_of(M._data).eye(n, dtype=M._data.dtype))


LUResult = namedtuple("lu_unpack", ["P", "L", "U"])


def lu(A: Tensor, pivot: bool = True, get_infos: bool = False):
    """(LU, pivots[, infos]): L and U packed in one matrix, and 1-based row swaps (LAPACK's)."""
    A = _float_input(A, "linalg.lu_factor")
    _square(A, "linalg.lu_factor")
    P, L, U = LU.apply(A)
    packed = L - _eye_t(L) + U
    piv = pivots_of(P._data)
    info = wrap(devices.xp_of(A._data).zeros(A._data.shape[:-2], np.int32))
    return (packed, piv, info) if get_infos else (packed, piv)


def lu_unpack(LU_data: Tensor, LU_pivots: Tensor, unpack_data: bool = True,
              unpack_pivots: bool = True):
    """(P, L, U) from lu_factor's packed result."""
    return LUResult(*_unpack(LU_data, LU_pivots))


def lu_solve(b: Tensor, LU_data: Tensor, LU_pivots: Tensor) -> Tensor:
    """X with A X = b, from A's packed LU factorization."""
    return lu_solve_packed(LU_data, LU_pivots, b)


def pivots_of(pmat):
    """LAPACK's sequential row swaps (1-based) that produce permutation matrix P (A = P L U)."""
    return wrap(_pivots_array(pmat))


@stack_host
def _pivots_array(pmat):
    """The row swaps of every matrix of the stack at once (a loop over rows, not matrices)."""
    xp = devices.xp_of(pmat)
    p = np.asarray(devices.to_device(pmat, "cpu"))
    n = p.shape[-1]
    flat = p.reshape(-1, n, n)
    m = flat.shape[0]
    rows = np.arange(m)
    perm = np.argmax(flat, axis=1)  # perm[b, i]: row of A that went to row i of PᵀA
    cur = np.broadcast_to(np.arange(n), (m, n)).copy()  # which original row sits at i
    where_is = cur.copy()
    out = np.zeros((m, n), np.int32)
    for i in range(n):
        j = where_is[rows, perm[:, i]]
        out[:, i] = j + 1
        ci, cj = cur[:, i].copy(), cur[rows, j]
        cur[:, i], cur[rows, j] = cj, ci
        where_is[rows, cj] = i
        where_is[rows, ci] = j
    return xp.asarray(out.reshape(p.shape[:-2] + (n,)))


def _unpack(LU: Tensor, pivots: Tensor):
    """(P, L, U) from a packed LU and its pivots."""
    eye = _eye_t(LU)
    L = LU.tril(-1) + eye
    U = LU.triu()
    P = wrap(_permutations(pivots._data, LU._data.dtype, LU.device))
    return P, L, U


@stack_host
def _permutations(pivots, dtype, device):
    """The permutation matrices of LAPACK's 1-based sequential row swaps ``pivots``."""
    n = pivots.shape[-1]
    piv = np.asarray(devices.to_device(pivots, "cpu")).reshape(-1, n) - 1
    m = piv.shape[0]
    rows = np.arange(m)
    order = np.broadcast_to(np.arange(n), (m, n)).copy()
    for i in range(n):  # every matrix's i-th swap at once
        j = piv[:, i]
        oi, oj = order[:, i].copy(), order[rows, j]
        order[:, i], order[rows, j] = oj, oi
    perms = np.zeros((m, n, n), dtype)
    perms[rows[:, None], order, np.arange(n)[None, :]] = 1  # row i of (LU) -> row order[i] of A
    return devices.to_device(perms.reshape(tuple(pivots.shape[:-1]) + (n, n)), device)


def lu_solve_packed(LU: Tensor, pivots: Tensor, B: Tensor, *, left: bool = True,
                    adjoint: bool = False) -> Tensor:
    """X with A X = B from A's packed LU factorization (X A = B with ``left=False``; Aᵀ with
    ``adjoint=True``)."""
    P, L, U = _unpack(LU, pivots)
    if not left:
        return lu_solve_packed(LU, pivots, B.mT, adjoint=not adjoint).mT
    if adjoint:  # Aᵀ = Uᵀ Lᵀ Pᵀ
        y = SolveTriangular.apply(U.mT, B, False)
        y = SolveTriangular.apply(L.mT, y, True)
        return P @ y
    y = SolveTriangular.apply(L, P.mT @ B, False)
    return SolveTriangular.apply(U, y, True)




def cross_along(input: Tensor, other: Tensor, dim: int = -1) -> Tensor:
    """a × b of 3-vectors along ``dim`` (broadcasting)."""
    shape = np.broadcast_shapes(tuple(input.shape), tuple(other.shape))
    if shape[dim] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got "
                           f"{input.shape[dim] if input.ndim else 0} and "
                           f"{other.shape[dim] if other.ndim else 0}")
    a = input.expand(*shape)
    b = other.expand(*shape)
    a1, a2 = a.roll(-1, dim), a.roll(-2, dim)
    b1, b2 = b.roll(-1, dim), b.roll(-2, dim)
    return a1 * b2 - a2 * b1





# ---- products with an added term (β·input + α·product) ------------------------------------------
def _scaled(input: Tensor, product: Tensor, beta, alpha) -> Tensor:
    out = product if alpha == 1 else product * alpha
    if beta == 0:
        return out + _zero_like_broadcast(input)
    return out + (input if beta == 1 else input * beta)


def _zero_like_broadcast(input: Tensor) -> Tensor:
    """β = 0: input is ignored (nan and inf in it do not propagate; its gradient is 0), its
    shape still broadcasts."""
    everywhere = devices.xp_of(input._data).ones(input._data.shape, bool)
    return where(everywhere, 0.0, input)


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """β·input + α·(mat1 @ mat2)."""
    return _scaled(input, mm(mat1, mat2), beta, alpha)


def addmv(input: Tensor, mat: Tensor, vec: Tensor, *, beta=1, alpha=1) -> Tensor:
    """β·input + α·(mat @ vec)."""
    return _scaled(input, mv(mat, vec), beta, alpha)


def addbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """β·input + α·Σᵦ batch1[b] @ batch2[b]."""
    return _scaled(input, bmm(batch1, batch2).sum(0), beta, alpha)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """β·input + α·(batch1 @ batch2), batch by batch."""
    return _scaled(input, bmm(batch1, batch2), beta, alpha)


def addr(input: Tensor, vec1: Tensor, vec2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """β·input + α·(vec1 ⊗ vec2)."""
    return _scaled(input, outer(vec1, vec2), beta, alpha)


def chain_matmul(*matrices) -> Tensor:
    """matrices[0] @ matrices[1] @ ... (deprecated in torch for linalg.multi_dot)."""
    if len(matrices) == 1 and isinstance(matrices[0], (list, tuple)):
        matrices = tuple(matrices[0])
    out = matrices[0]
    for m in matrices[1:]:
        out = mm(out, m)
    return out


def tensordot(a: Tensor, b: Tensor, dims=2, out=None) -> Tensor:
    """Σ over ``dims`` of a's last and b's first dims (or the listed pairs)."""
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        da = list(range(a.ndim - dims, a.ndim))
        db = list(range(dims))
    else:
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
    da = [d % a.ndim for d in da]
    db = [d % b.ndim for d in db]
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size "
                               f"{a.shape[i]} in dim {i} and second has size {b.shape[j]} in "
                               f"dim {j}")
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    sa = list(letters[:a.ndim])
    sb = list(letters[a.ndim:a.ndim + b.ndim])
    for i, j in zip(da, db):
        sb[j] = sa[i]
    out_s = [c for k, c in enumerate(sa) if k not in da] + [c for k, c in enumerate(sb)
                                                           if k not in db]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out_s)}", a, b)


def kron(input: Tensor, other: Tensor) -> Tensor:
    """The Kronecker product: blocks input[i, j]·other."""
    nd = max(input.ndim, other.ndim)
    a = input.reshape((1,) * (nd - input.ndim) + tuple(input.shape))
    b = other.reshape((1,) * (nd - other.ndim) + tuple(other.shape))
    a_sh = []
    b_sh = []
    for sa, sb in zip(a.shape, b.shape):
        a_sh += [sa, 1]
        b_sh += [1, sb]
    prod = a.reshape(a_sh) * b.reshape(b_sh)
    return prod.reshape(tuple(sa * sb for sa, sb in zip(a.shape, b.shape)))


def cross(input: Tensor, other: Tensor, dim=None) -> Tensor:
    """The 3-vector cross product along ``dim`` (default: the first dim of size 3)."""
    if dim is None:
        shape = np.broadcast_shapes(tuple(input.shape), tuple(other.shape))
        dim = next((i for i, s in enumerate(shape) if s == 3), None)
        if dim is None:
            raise RuntimeError("no dimension of size 3 in input")
    return cross_along(input, other, dim)


def vander(x: Tensor, N=None, increasing: bool = False) -> Tensor:
    """Columns x^(N-1), ..., x, 1 (or increasing powers)."""
    n = x.shape[-1] if N is None else N
    if n < 0:
        raise RuntimeError("N must be non-negative.")
    from chainrule.ops.shape import stack

    cols = [x ** k for k in range(n)]
    out = stack(cols, -1) if cols else x.unsqueeze(-1)[..., :0]
    return out if increasing else out.flip(-1)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0,
          compute_mode: str = "use_mm_for_euclid_dist_if_necessary") -> Tensor:
    """The p-norm distances between each row of x1 and each row of x2 (batched)."""
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {x1.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: "
                           f"{x1.shape[-1]} X2: {x2.shape[-1]}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    from chainrule.ops.reduce import norm

    return norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, -1)


__all__ += [
    "cdist", "vander", "inverse", "det", "slogdet", "logdet", "matrix_power", "matrix_exp",
    "cholesky",
    "cholesky_solve", "cholesky_inverse", "qr", "svd", "pinverse", "triangular_solve", "lu",
    "lu_unpack", "lu_solve", "addmm", "addmv", "addbmm", "baddbmm", "addr", "chain_matmul",
    "tensordot", "kron", "cross",
]
