"""In-place ops in the graph read the tensor's own memory (no copy first) only where nothing
else holds its old values: these tests fail if that shortcut is taken where it must not be."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import inplace

torch = pytest.importorskip("torch")
F = cr.nn.functional
TF = torch.nn.functional


def _pair(seed=0, shape=(4, 6)):
    x = np.random.default_rng(seed).standard_normal(shape)
    return cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


@pytest.mark.parametrize("name", ["relu_", "relu_inplace", "elu_", "leaky_relu_", "hardtanh_",
                                  "silu_inplace"])
def test_inplace_activation_twice_matches_torch(name):
    def f(m, Fm, y):
        if name == "relu_":
            return y.relu_()
        if name == "relu_inplace":
            return Fm.relu(y, inplace=True)
        if name == "silu_inplace":
            return Fm.silu(y, inplace=True)
        return getattr(Fm, name)(y)
    for seed in (0, 1, 2):  # the first call learns whether the gate keeps its input
        a, b = _pair(seed)
        ya, yb = a * 2, b * 2
        ptr, version = ya.data_ptr(), ya._version
        oa, ob = f(cr, F, ya), f(torch, TF, yb)
        assert oa is ya and ya.data_ptr() == ptr and ya._version == version + 1
        (oa * oa).sum().backward()
        (ob * ob).sum().backward()
        np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_inplace_on_a_saved_input_still_raises_like_torch():
    for _ in range(2):
        a, b = _pair()
        w = cr.tensor(np.ones((4, 6)), requires_grad=True)
        ya = a * 2
        z = ya * w  # saves ya
        before = z.detach().numpy().copy()
        ya.relu_()
        assert np.array_equal(z.detach().numpy(), before)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()


def test_inplace_on_a_saved_output_still_raises_like_torch():
    for _ in range(2):
        a, b = _pair()
        ya, yb = a.exp(), b.exp()  # exp saves its output
        ya.relu_()
        yb.relu_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            ya.sum().backward()
        with pytest.raises(RuntimeError):
            yb.sum().backward()


def test_inplace_writes_through_views_and_shared_tensors():
    for _ in range(2):
        a, b = _pair()
        ya, yb = a - 0.5, b - 0.5
        va, vb = ya[1], yb[1]
        da = ya.detach()
        arr = ya.detach().numpy()
        ya.relu_()
        yb.relu_()
        np.testing.assert_array_equal(va.detach().numpy(), vb.detach().numpy())
        np.testing.assert_array_equal(da.numpy(), yb.detach().numpy())
        np.testing.assert_array_equal(arr, yb.detach().numpy())
        (va * 3).sum().backward()
        (vb * 3).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy())


def test_inplace_op_that_keeps_its_input_only_sometimes():
    """mul_ by a number saves nothing; by a tensor that needs a gradient it saves the old value:
    a learned 'keeps nothing' must not lose that value."""
    for k in range(3):
        a, b = _pair(k)
        ya, yb = a * 1.5, b * 1.5
        ya.mul_(2.0)
        yb.mul_(2.0)
        wa = cr.tensor(np.full((4, 6), 3.0), requires_grad=True)
        wb = torch.tensor(np.full((4, 6), 3.0), requires_grad=True)
        za, zb = a * 0.5 + 1, b * 0.5 + 1
        za.mul_(wa)
        zb.mul_(wb)
        (ya.sum() + (za * za).sum()).backward()
        (yb.sum() + (zb * zb).sum()).backward()
        np.testing.assert_allclose(wa.grad.numpy(), wb.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


def test_apply_inplace_shortcut_with_an_op_that_keeps_its_input(monkeypatch):
    """The shortcut taken for an op learned as keeping nothing, whose gate then does keep its
    input: that value stays the gate's, the tensor gets the result."""
    def scale(t, w):
        return t * w
    monkeypatch.setitem(inplace._KEEPS_OLD, scale, False)
    a, b = _pair(3)
    w = cr.tensor(np.full((4, 6), 2.0), requires_grad=True)
    wb = torch.tensor(np.full((4, 6), 2.0), requires_grad=True)
    ya, yb = a + 1, b + 1
    inplace.apply_inplace(ya, scale, w)
    yb.mul_(wb)
    assert inplace._KEEPS_OLD[scale] is True
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy())
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wb.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


def test_relu_inplace_leaf_and_no_grad_rules_unchanged():
    a, _ = _pair()
    with pytest.raises(RuntimeError, match="leaf Variable"):
        a.relu_()
    with cr.no_grad():
        y = a * 1
    y.relu_()
    assert y.grad_fn is None
