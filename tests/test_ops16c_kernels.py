"""The C loops added for issue 16's per-op rows: each against torch (or NumPy), on
non-contiguous inputs, float32 and float64, and edge shapes."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.kernels import CPU, REFERENCE
from chainrule.kernels import cpu as cpu_kernels

torch = pytest.importorskip("torch")
F = cr.nn.functional
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _ce_pair(x, t, **kw):
    a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    la = F.cross_entropy(a, cr.tensor(t), **kw)
    lb = torch.nn.functional.cross_entropy(b, torch.tensor(t), **kw)
    g = np.random.default_rng(3).standard_normal(tuple(lb.shape)).astype(x.dtype)
    la.backward(cr.tensor(g))
    lb.backward(torch.tensor(g))
    return la, lb, a.grad, b.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 11145), (17, 3), (32, 10), (384, 65), (512, 27),
                                   (33, 128), (5, 129), (40, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_rows_kernel_matches_torch(dtype, shape, reduction):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 6).astype(dtype)
    x[0, 0] = 90  # a row whose max is far above the rest: e^(x - m) underflows
    t = rng.integers(0, shape[1], shape[0])
    t[::7] = -1
    la, lb, ga, gb = _ce_pair(x, t, reduction=reduction, ignore_index=-1)
    tol = TOL[dtype]
    assert la.dtype == getattr(cr, np.dtype(dtype).name)
    np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=tol, atol=tol)


def test_cross_entropy_rows_kernel_is_used_and_checks_targets():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, -100, 1])
    assert CPU.cross_entropy_rows(x, t, -100, "mean") is not None
    lse, nll, out = CPU.cross_entropy_rows(x, t, -100, "sum")
    want_lse = np.log(np.exp(x.astype(np.float64)).sum(1))
    np.testing.assert_allclose(lse, want_lse, rtol=1e-6)
    assert nll[4] == 0 and out[1] == 5
    np.testing.assert_allclose(out[0], nll.sum(), rtol=1e-6)
    # out of range (not ignored): the kernel declines, the generic path raises torch's error
    assert CPU.cross_entropy_rows(x, np.array([0, 1, 2, 4, 0, 0]), -100, "mean") is None
    with pytest.raises(IndexError, match="Target 4 is out of bounds"):
        F.cross_entropy(cr.tensor(x), cr.tensor([0, 1, 2, 4, 0, 0]))
    with pytest.raises(IndexError, match="Target -3 is out of bounds"):
        F.cross_entropy(cr.tensor(x), cr.tensor([0, 1, 2, -3, 0, 0]))
    # int32 targets, non-contiguous scores: not the kernel's, same answers through the rest
    xt = np.asfortranarray(x)
    assert CPU.cross_entropy_rows(xt, t, -100, "mean") is None
    assert CPU.cross_entropy_rows(x, t.astype(np.int32), -100, "mean") is None


def test_cross_entropy_rows_kernel_non_contiguous_and_int32_targets_match_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 12)).astype(np.float32)
    t = rng.integers(0, 30, 12)
    a = cr.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    la = F.cross_entropy(a.t(), cr.tensor(t))  # (12, 30), not contiguous
    lb = torch.nn.functional.cross_entropy(b.t(), torch.tensor(t))
    la.backward()
    lb.backward()
    np.testing.assert_allclose(la.item(), lb.item(), rtol=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_cross_entropy_rows_all_ignored_and_infinities_like_torch():
    x = np.array([[1.0, np.inf, 0.0], [-np.inf, 0.0, 1.0], [2.0, 1.0, np.nan]], np.float32)
    for t in ([1, 0, 2], [-100, -100, -100], [0, 2, -100]):
        for reduction in ("mean", "sum", "none"):
            la, lb, ga, gb = _ce_pair(x, np.array(t), reduction=reduction)
            np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=1e-6)
            np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-6)


def test_cross_entropy_rows_double_backward_matches_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 5))
    t = rng.integers(0, 5, 7)
    a = cr.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    (ga,) = cr.autograd.grad(F.cross_entropy(a, cr.tensor(t)), a, create_graph=True)
    (gb,) = torch.autograd.grad(torch.nn.functional.cross_entropy(b, torch.tensor(t)), b,
                                create_graph=True)
    (ga * ga).sum().backward()
    (gb * gb).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert cr.autograd.gradcheck(lambda z: F.cross_entropy(z, cr.tensor(t), ignore_index=2),
                                 (cr.tensor(x, requires_grad=True),))


def test_cross_entropy_rows_backward_kernel_matches_the_reference():
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        for shape in ((20, 7), (3, 300)):
            x = rng.standard_normal(shape).astype(dtype)
            t = rng.integers(0, shape[1], shape[0])
            t[1] = -5
            for reduction in ("mean", "sum", "none"):
                lse, nll, out = CPU.cross_entropy_rows(x, t, -5, reduction)
                g = (rng.standard_normal(shape[0]) if reduction == "none"
                     else np.array(1.7)).astype(dtype)
                got = CPU.cross_entropy_rows_backward(g, x, lse, t, out[1:], -5, reduction)
                want = REFERENCE.cross_entropy_rows_backward(g, x, lse, t, out[1:], -5,
                                                             reduction)
                np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype])
    assert cpu_kernels.loops is None or hasattr(cpu_kernels.loops, "cross_entropy_rows")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.complex64])
@pytest.mark.parametrize("shape,perm", [
    ((300, 200), (1, 0)), ((3, 130, 257), (0, 2, 1)), ((129, 2, 140), (2, 1, 0)),
    ((2, 150, 3, 131), (0, 3, 2, 1)), ((128, 128), (1, 0))])
def test_copy_kernel_matches_numpy_on_transposed_layouts(dtype, shape, perm):
    x = (np.random.default_rng(1).standard_normal(shape) * 100).astype(dtype).transpose(perm)
    for v in (x, x[::-1], x[..., ::2], x[1:]):
        got = CPU.copy(v)
        assert got.flags.c_contiguous and got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, v)
        assert not np.shares_memory(got, v)


def test_copy_kernel_declines_what_it_does_not_tile():
    loops = cpu_kernels.loops
    if loops is None:
        pytest.skip("built without the C loops")
    x = np.arange(300 * 200, dtype=np.float32).reshape(300, 200)
    out = np.empty((300, 100), np.float32)
    assert loops.strided_copy(x[:, ::2], out) is False  # densest along the last axis already
    small = np.ones((20, 30), np.float32).T
    assert loops.strided_copy(small, np.empty((30, 20), np.float32)) is False
    big = x.T
    out = np.empty(big.shape, np.float32)
    assert loops.strided_copy(big, out) is True
    np.testing.assert_array_equal(out, big)
    with pytest.raises((ValueError, BufferError, TypeError)):
        loops.strided_copy(big, np.empty(big.shape, np.float32).T)  # dst must be C-contiguous
    obj = np.empty((200, 200), object).T
    assert CPU.copy(obj).flags.c_contiguous  # object arrays: NumPy's copy
    for a in (np.ones((0, 5), np.float32).T, np.float32(3.0) * np.ones(()), x[:, :1]):
        np.testing.assert_array_equal(CPU.copy(a), a)


@pytest.mark.parametrize("itype", [np.int64, np.int32, np.int16, np.uint8])
def test_gather_bounds_check_in_one_pass_keeps_torch_errors(itype):
    x = cr.tensor(np.arange(12.0).reshape(3, 4))
    ok = np.array([[0, 3], [1, 2], [3, 3]], itype)
    np.testing.assert_array_equal(cr.gather(x, 1, cr.tensor(ok)).numpy(),
                                  np.take_along_axis(x.numpy(), ok.astype(np.int64), 1))
    bad = ok.copy()
    bad[1, 1] = 4
    with pytest.raises(RuntimeError, match="gather\\(\\): index 4 is out of bounds for dimension 1"
                                           " with size 4"):
        cr.gather(x, 1, cr.tensor(bad))
    if np.dtype(itype).kind == "i":
        bad[1, 1] = -1
        with pytest.raises(RuntimeError, match="index -1 is out of bounds"):
            cr.gather(x, 1, cr.tensor(bad))
        with pytest.raises(RuntimeError, match="index -1 is out of bounds"):
            x.scatter_add(1, cr.tensor(bad), cr.tensor(np.ones((3, 2))))
    t = cr.tensor(np.array([[0, 3], [1, 2], [3, 3]]).T.copy().T)  # non-contiguous index
    np.testing.assert_array_equal(cr.gather(x, 1, t).numpy(),
                                  np.take_along_axis(x.numpy(), t.numpy(), 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(), (7,), (5, 3, 4)])
def test_mse_loss_one_gate_matches_torch(dtype, reduction, shape):
    rng = np.random.default_rng(6)
    xv, yv = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    for target_grad in (False, True):
        a, b = cr.tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
        ya = cr.tensor(yv, requires_grad=target_grad)
        yb = torch.tensor(yv, requires_grad=target_grad)
        la, lb = F.mse_loss(a, ya, reduction=reduction), TF_mse(b, yb, reduction=reduction)
        assert la.dtype == getattr(cr, np.dtype(dtype).name)
        g = rng.standard_normal(tuple(lb.shape)).astype(dtype)
        la.backward(cr.tensor(g))
        lb.backward(torch.tensor(g))
        tol = TOL[dtype] * 10
        np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=tol, atol=tol)
        assert (ya.grad is None) == (not target_grad)
        if target_grad:
            np.testing.assert_allclose(ya.grad.numpy(), yb.grad.numpy(), rtol=tol, atol=tol)


def TF_mse(x, y, **kw):
    return torch.nn.functional.mse_loss(x, y, **kw)


def test_mse_loss_one_gate_second_derivatives_and_non_contiguous():
    rng = np.random.default_rng(7)
    x = cr.tensor(rng.standard_normal((4, 6)), requires_grad=True)
    y = cr.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    for red in ("mean", "sum", "none"):
        def f(p, q, red=red):
            return F.mse_loss(p, q.t(), reduction=red)
        assert cr.autograd.gradcheck(f, (x, y))
        assert cr.autograd.gradgradcheck(f, (x, y))
    # broadcasting targets (torch warns) and int targets keep the general path
    with pytest.warns(UserWarning):
        got = F.mse_loss(x, cr.tensor(np.ones((1, 6)))).item()
    want = torch.nn.functional.mse_loss(torch.tensor(x.detach().numpy()),
                                        torch.ones((1, 6), dtype=torch.float64)).item()
    assert abs(got - want) < 1e-12


def test_cat_shape_errors_and_mixed_dtypes_like_torch():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 3), np.float64)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match except in dimension 1"):
        cr.cat([cr.tensor(a), cr.tensor(b)], 1)
    with pytest.raises(RuntimeError):
        torch.cat([torch.tensor(a), torch.tensor(b)], 1)
    got = cr.cat([cr.tensor(a), cr.tensor(b)], 0)
    want = torch.cat([torch.tensor(a), torch.tensor(b)], 0)
    assert got.dtype == cr.float64 and want.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    same = cr.cat([cr.tensor(a)] * 3, -1)
    np.testing.assert_array_equal(same.numpy(), np.concatenate([a] * 3, -1))
