"""xlogy and xlog1py: one gate (Xlog1py is Xlogy with u = 1 + y), values and gradients of every
order at the special points (0, the log's bound, NaN, ±inf) as torch's."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.ops.binary import Xlog1py, Xlogy

torch = pytest.importorskip("torch")

INF, NAN = math.inf, math.nan
SPECIAL_Y = {"xlogy": [0.0, -0.0, -1.0, 0.5, 2.0, NAN, INF, -INF],
             "xlog1py": [-1.0, -2.0, -0.5, 0.0, 0.5, NAN, INF, -INF]}
SPECIAL_X = [0.0, -0.0, 1.5, -2.0, NAN, INF]


def _fn(m, name):
    return getattr(m.special, name) if name == "xlog1py" else getattr(m, name)


def test_one_gate():
    assert issubclass(Xlog1py, Xlogy)
    assert Xlog1py.forward is Xlogy.forward and Xlog1py.backward is Xlogy.backward


@pytest.mark.parametrize("name", ["xlogy", "xlog1py"])
def test_values_and_gradients_at_special_points_as_torch(name):
    ys = SPECIAL_Y[name]
    xs = [a for a in SPECIAL_X for _ in ys]
    ys = ys * len(SPECIAL_X)
    out = []
    for m in (cr, torch):
        x = m.tensor(xs, dtype=m.float64, requires_grad=True)
        y = m.tensor(ys, dtype=m.float64, requires_grad=True)
        z = _fn(m, name)(x, y)
        gx, gy = (m.autograd.grad(z.sum(), (x, y), create_graph=True))
        # second derivatives through the gradient graph (d/dy of dz/dx and of dz/dy)
        ggy = m.autograd.grad((gx + gy).sum(), y)[0]
        out.append([t.detach().numpy() for t in (z, gx, gy, ggy)])
    for got, want, what in zip(*out, ("value", "d/dx", "d/dy", "d2")):
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {what}")


@pytest.mark.parametrize("name", ["xlogy", "xlog1py"])
def test_gradcheck_and_gradgradcheck(name):
    rng = np.random.default_rng(3)
    x = cr.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = cr.tensor(rng.uniform(0.2, 2.0, (1, 4)), requires_grad=True)  # broadcast
    fn = _fn(cr, name)
    assert cr.autograd.gradcheck(fn, (x, y))
    assert cr.autograd.gradgradcheck(fn, (x, y))


@pytest.mark.parametrize("name", ["xlogy", "xlog1py"])
def test_float32_with_a_number_stays_float32_as_torch(name):
    x = cr.tensor([0.0, 1.0, 2.0], requires_grad=True)
    z = _fn(cr, name)(x, 3.0)
    tz = _fn(torch, name)(torch.tensor([0.0, 1.0, 2.0]), 3.0)
    assert z.dtype == cr.float32
    np.testing.assert_allclose(z.detach().numpy(), tz.numpy(), rtol=1e-6)
    assert type(z.grad_fn).__name__ == ("Xlogy" if name == "xlogy" else "Xlog1py")
    z2 = _fn(cr, name)(3.0, x)
    assert z2.dtype == cr.float32
    np.testing.assert_allclose(z2.detach().numpy(),
                               _fn(torch, name)(3.0, torch.tensor([0.0, 1.0, 2.0])).numpy(),
                               rtol=1e-6)
