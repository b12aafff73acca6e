"""Vectorized gates: matmul and friends, einsum. For D = W·X the lecture's rule dW = dD·Xᵀ."""

from __future__ import annotations

from chainrule.devices import np
from chainrule import devices
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.kernels.matmul import matmul as _mm
from chainrule import dtypes as _dt
from chainrule.ops import either
from chainrule.ops.binary import _cast, _check_devices
from chainrule.tensor import Tensor

__all__ = ["matmul", "mm", "bmm", "dot", "vdot", "outer", "ger", "einsum", "inner", "mv"]


class MatMul(Op):
    """C = A @ B;  dA = dC @ Bᵀ, dB = Aᵀ @ dC (1-d operands are promoted and squeezed back)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _mm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        a_nd, b_nd = len(a.shape), len(b.shape)
        if a_nd == 1 and b_nd == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        if a_nd == 1:  # (n) @ (..., n, m) -> (..., m)
            ga = (b @ either.expand_dims(g, (-1,)))[..., 0] if need_a else None
            gb = either.expand_dims(a, (-1,)) * either.expand_dims(g, (-2,)) if need_b else None
            return ga, gb
        if b_nd == 1:  # (..., n, m) @ (m) -> (..., n)
            ga = either.expand_dims(g, (-1,)) * b if need_a else None
            gb = (either.swapaxes(a, -1, -2) @ either.expand_dims(g, (-1,)))[..., 0] \
                if need_b else None
            return ga, gb
        return (either.matmul(g, either.swapaxes(b, -1, -2)) if need_a else None,
                either.matmul(either.swapaxes(a, -1, -2), g) if need_b else None)


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
