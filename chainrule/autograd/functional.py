"""``cr.autograd.functional``: thin aliases over :mod:`chainrule.func` (PyTorch's older API)."""

from __future__ import annotations

__all__ = ["jacobian", "hessian", "vjp", "jvp", "hvp"]


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False):
    from chainrule import func as F

    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    jac = F.jacrev(func, argnums=0 if single else tuple(range(len(args))))(*args)
    return jac


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False):
    from chainrule import func as F

    single = not isinstance(inputs, tuple)
    args = (inputs,) if single else inputs
    return F.hessian(func, argnums=0 if single else tuple(range(len(args))))(*args)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    from chainrule import func as F

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    out, fn = F.vjp(func, *args)
    grads = fn(v if v is not None else out.new_ones(out.shape))
    return out, grads if isinstance(inputs, tuple) else grads[0]


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    from chainrule import func as F

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    tangents = v if isinstance(v, tuple) else (v,)
    return F.jvp(func, args, tangents)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    from chainrule import func as F

    return F.hvp(func, inputs, v)  # same structure rules as torch: Tensor in, Tensor out
