"""Property tests: random shapes (broadcast-compatible pairs, random dims) for a representative
set of elementwise, binary and reduction ops; forward against NumPy, gradients by gradcheck and,
with torch installed, against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SMALL = settings(max_examples=12, deadline=None)

UNARY = {
    "exp": (cr.exp, np.exp, "real"),
    "tanh": (cr.tanh, np.tanh, "real"),
    "sigmoid": (cr.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "real"),
    "log": (cr.log, np.log, "positive"),
    "sqrt": (cr.sqrt, np.sqrt, "positive"),
    "relu": (cr.relu, lambda x: np.maximum(x, 0), "real"),
    "abs": (cr.abs, np.abs, "real"),
}
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (cr.maximum, np.maximum),
    "pow": (lambda a, b: a.abs() ** b, lambda a, b: np.abs(a) ** b),
}
REDUCE = {
    "sum": (cr.sum, np.sum),
    "mean": (cr.mean, np.mean),
    "amax": (cr.amax, np.amax),
    "var": (cr.var, lambda x, axis, keepdims: np.var(x, axis=axis, keepdims=keepdims, ddof=1)),
    "logsumexp": (cr.logsumexp, lambda x, axis, keepdims: np.log(
        np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
}


def _values(draw, shape, domain="real"):
    """Floats away from 0 and from each other (no kinks or ties within finite differences)."""
    n = int(np.prod(shape, dtype=np.int64))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mag = rng.uniform(0.3, 2.0, n)
    sign = np.ones(n) if domain == "positive" else rng.choice([-1.0, 1.0], n)
    return (sign * mag).reshape(shape)


@st.composite
def unary_case(draw):
    name = draw(st.sampled_from(sorted(UNARY)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3))
    return name, _values(draw, shape, UNARY[name][2])


@st.composite
def binary_case(draw):
    name = draw(st.sampled_from(sorted(BINARY)))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                    max_side=3))
    a, b = shapes.input_shapes
    return name, _values(draw, a), _values(draw, b)


@st.composite
def reduce_case(draw):
    name = draw(st.sampled_from(sorted(REDUCE)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=3))
    nd = len(shape)
    dims = draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd,
                         unique_by=lambda d: d % nd))
    dim = dims[0] if len(dims) == 1 and draw(st.booleans()) else tuple(dims)
    keepdim = draw(st.booleans())
    return name, _values(draw, shape), dim, keepdim


def _axis(dim, nd):
    return tuple(d % nd for d in dim) if isinstance(dim, tuple) else dim % nd


@SMALL
@given(unary_case())
def test_unary_random_shapes(case):
    name, x = case
    fn, ref, _ = UNARY[name]
    out = fn(cr.tensor(x))
    assert tuple(out.shape) == x.shape
    np.testing.assert_allclose(out.numpy(), ref(x), rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, (cr.tensor(x, requires_grad=True),))


@SMALL
@given(binary_case())
def test_binary_broadcast_random_shapes(case):
    name, a, b = case
    fn, ref = BINARY[name]
    out = fn(cr.tensor(a), cr.tensor(b))
    want = ref(a, b)
    assert tuple(out.shape) == np.broadcast_shapes(a.shape, b.shape)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    ta, tb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    assert gradcheck(fn, (ta, tb))
    (fn(ta, tb)).sum().backward()
    assert ta.grad.shape == ta.shape and tb.grad.shape == tb.shape


@SMALL
@given(reduce_case())
def test_reductions_random_dims(case):
    name, x, dim, keepdim = case
    fn, ref = REDUCE[name]
    out = fn(cr.tensor(x), dim, keepdim=keepdim)
    want = ref(x, axis=_axis(dim, x.ndim), keepdims=keepdim)
    assert tuple(out.shape) == np.shape(want)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda t: fn(t, dim, keepdim=keepdim), (cr.tensor(x, requires_grad=True),))


@SMALL
@given(binary_case())
def test_binary_gradients_match_torch(case):
    torch = pytest.importorskip("torch")
    name, a, b = case
    fn, _ = BINARY[name]
    ta, tb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    pa, pb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    t_fn = torch.maximum if name == "maximum" else fn
    w = np.random.default_rng(0).standard_normal(np.broadcast_shapes(a.shape, b.shape))
    (fn(ta, tb) * cr.tensor(w)).sum().backward()
    (t_fn(pa, pb) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ta.grad.numpy(), pa.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), pb.grad.numpy(), rtol=1e-10, atol=1e-12)


@SMALL
@given(reduce_case())
def test_reductions_match_torch(case):
    torch = pytest.importorskip("torch")
    name, x, dim, keepdim = case
    fn, _ = REDUCE[name]
    t = cr.tensor(x, requires_grad=True)
    p = torch.tensor(x, requires_grad=True)
    out = fn(t, dim, keepdim=keepdim)
    t_out = getattr(torch, name)(p, dim, keepdim=keepdim)
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), rtol=1e-10)
    w = np.random.default_rng(0).standard_normal(tuple(t_out.shape))
    (out * cr.tensor(w)).sum().backward()
    (t_out * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), p.grad.numpy(), rtol=1e-10, atol=1e-12)
