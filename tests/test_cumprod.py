"""cumprod: one gate (a NumPy running product; torch's backward, zeros included), against torch
in float64 (values, first and second derivatives, with zeros, NaN, inf and overflow), finite
differences, dtypes and edge shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(7)
INF, NAN = math.inf, math.nan


def _run(m, xv, dim, g, create):
    x = m.tensor(xv, dtype=m.float64, requires_grad=True)
    y = x.cumprod(dim)
    gt = m.tensor(g, dtype=m.float64)
    (gx,) = m.autograd.grad(y, x, gt, create_graph=create)
    out = [y.detach().numpy(), gx.detach().numpy()]
    if create:  # a second derivative: d/dx of <gx, v> (gx is g itself for one factor, in both)
        out.append(gx.requires_grad)
        if gx.requires_grad:
            v = m.tensor(np.linspace(-1.0, 1.5, gx.numel()).reshape(tuple(gx.shape)),
                         dtype=m.float64)
            out.append(m.autograd.grad((gx * v).sum(), x)[0].detach().numpy())
    return out


SPECIAL = [
    [2.0, 0.0, 3.0, 4.0, 0.0, 5.0],  # two zeros
    [0.0, 2.0, 3.0],                  # a zero first
    [3.0, 4.0, 0.0],                  # a zero last
    [0.0, 0.0, 2.0],
    [1e308, 10.0, 0.5],               # overflow: torch's division formula gives NaN
    [1e308, 10.0, 0.0, 2.0],
    [2.0, NAN, 0.0, 3.0],
    [INF, 0.0, 2.0],
    [-INF, 3.0, -2.0],
    [1.5, -2.0, 0.25, 4.0],
]


@pytest.mark.parametrize("create", [False, True], ids=["backward", "create_graph"])
@pytest.mark.parametrize("xv", SPECIAL, ids=[str(i) for i in range(len(SPECIAL))])
def test_special_values_as_torch(xv, create):
    g = [1.0, -2.0, 3.0, 0.5, 1.5, -1.0][:len(xv)]
    ours, theirs = _run(cr, xv, 0, g, create), _run(torch, xv, 0, g, create)
    for a, b, what in zip(ours, theirs, ("value", "gradient", "second derivative")):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0, equal_nan=True, err_msg=what)


def _with_zeros(shape, dim, rng):
    x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    x[rng.random(shape) < 0.2] = 0.0
    return x


@pytest.mark.parametrize("create", [False, True], ids=["backward", "create_graph"])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 6), 1), ((6, 3), 0), ((2, 5, 3), 1),
                                       ((2, 3, 5), -1), ((4, 1), 1), ((1, 4), 0)])
def test_random_with_zeros_as_torch(shape, dim, create):
    for _ in range(3):
        x = _with_zeros(shape, dim, RNG)
        g = RNG.standard_normal(shape)
        for a, b in zip(_run(cr, x, dim, g, create), _run(torch, x, dim, g, create)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 1), ((2, 4, 3), 1)])
def test_gradcheck_and_gradgradcheck(shape, dim, zeros):
    x = _with_zeros(shape, dim, RNG) if zeros else RNG.uniform(0.5, 1.5, shape)
    if zeros:  # a slice with two zeros and one with one, whatever the draw
        x.reshape(-1)[:2] = 0.0
    t = cr.tensor(x, requires_grad=True)
    assert gradcheck(lambda a: a.cumprod(dim), (t,))
    assert gradgradcheck(lambda a: a.cumprod(dim), (t,))


def test_third_derivative_with_a_zero_as_torch():
    out = []
    for m in (cr, torch):
        x = m.tensor([1.5, 0.0, -2.0, 3.0], dtype=m.float64, requires_grad=True)
        (g1,) = m.autograd.grad(x.cumprod(0).sum(), x, create_graph=True)
        (g2,) = m.autograd.grad((g1 * g1).sum(), x, create_graph=True)
        (g3,) = m.autograd.grad(g2.sum(), x)
        out.append([t.detach().numpy() for t in (g1, g2, g3)])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_one_gate_named_as_torchs():
    x = cr.randn(4, 100, requires_grad=True)
    y = x.cumprod(1)
    assert type(y.grad_fn).__name__ == "Cumprod"
    assert y.grad_fn.name() == torch.randn(2, requires_grad=True).cumprod(0).grad_fn.name()
    assert [type(f).__name__ for f, _ in y.grad_fn.next_functions if f is not None] == [
        "AccumulateGrad"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_running_product_accumulates_as_torch(dtype):
    """torch's CPU kernel carries float32 in float64 and the half types in float32: every
    output bit-equal."""
    x = RNG.uniform(0.5, 1.5, (3, 400))
    ours = cr.tensor(x).to(getattr(cr, dtype)).cumprod(1).to(cr.float64).numpy()
    theirs = torch.tensor(x).to(getattr(torch, dtype)).cumprod(1).double().numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", ["int8", "int32", "int64", "uint8", "bool"])
def test_integers_give_int64_as_torch(dtype):
    x = np.array([[1, 2, 0, 3], [1, 1, 2, 2]])
    ours = cr.tensor(x).to(getattr(cr, dtype)).cumprod(1)
    theirs = torch.tensor(x).to(getattr(torch, dtype)).cumprod(1)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch", "chainrule")
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert cr.tensor(x).cumprod(1, dtype=cr.float32).dtype == cr.float32


def test_edge_shapes_and_errors_as_torch():
    for shape, dim in [((), 0), ((), -1), ((0,), 0), ((3, 0), 1), ((0, 3), 1), ((1,), 0)]:
        x = RNG.uniform(0.5, 1.5, shape)
        out = []
        for m in (cr, torch):
            t = m.tensor(x, dtype=m.float64, requires_grad=True)
            y = t.cumprod(dim)
            y.backward(m.ones(tuple(y.shape), dtype=m.float64) * 2)
            out.append((y.detach().numpy(), t.grad.numpy()))
        for a, b in zip(*out):
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError, match="Dimension out of range"):
        cr.tensor([1.0, 2.0]).cumprod(2)


def test_in_place_and_autocast_as_torch():
    x = RNG.uniform(0.5, 1.5, (2, 5))
    a, b = cr.tensor(x), torch.tensor(x)
    a.cumprod_(1)
    b.cumprod_(1)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-15)
    assert a._version == b._version == 1
    xf = x.astype(np.float32)
    with cr.autocast("cpu", dtype=cr.bfloat16):
        ours = cr.tensor(xf).to(cr.bfloat16).cumprod(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = torch.tensor(xf).bfloat16().cumprod(1)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch", "chainrule")
    np.testing.assert_array_equal(ours.to(cr.float32).numpy(), theirs.float().numpy())


def test_cumsum_of_unsigned_integers_gives_int64_as_torch():
    x = np.array([200, 100, 50], dtype=np.uint8)
    ours, theirs = cr.tensor(x).cumsum(0), torch.tensor(x).cumsum(0)
    assert ours.dtype == cr.int64 and theirs.dtype == torch.int64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())  # 350 does not wrap at 256
