"""The CPU kernels of convolution, transposed convolution, batch norm and leaky ReLU: every route
(one GEMM over the batch, chunk by chunk, pixel-major columns of channels-last images whole or
chunk by chunk, NumPy without the C loops) against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.kernels import conv as conv_kernels
from chainrule.kernels import cpu as cpu_kernels

torch = pytest.importorskip("torch")

ROUTES = ["whole", "chunks", "one_image_chunks", "no_loops", "pixel_major",
          "pixel_major_chunks", "pixel_major_one_image", "stacked", "stacked_chunks"]


def _route(route, monkeypatch):
    if route.startswith("stacked"):  # every groups = 1 conv: one product per image
        monkeypatch.setattr(conv_kernels, "takes", lambda *a: False)
        monkeypatch.setattr(conv_kernels, "takes_stacked", lambda *a: True)
        monkeypatch.setattr(conv_kernels, "_WHOLE_BYTES", 1 << 30 if route == "stacked" else 0)
        monkeypatch.setattr(conv_kernels, "_CHUNK_BYTES", 3000)
    elif route.startswith("pixel_major"):  # every groups = 1 conv through kernels/conv.py
        monkeypatch.setattr(conv_kernels, "takes", lambda *a: True)
        if route == "pixel_major":
            monkeypatch.setattr(conv_kernels, "_WHOLE_BYTES", 1 << 30)
        else:
            monkeypatch.setattr(conv_kernels, "_WHOLE_BYTES", 0)
            monkeypatch.setattr(conv_kernels, "_CHUNK_BYTES", 3000 if route.endswith("chunks")
                                else 1)
    elif route == "no_loops":
        monkeypatch.setattr(cpu_kernels, "loops", None)
    elif route == "chunks":  # every conv chunked, several images a chunk
        monkeypatch.setattr(cpu_kernels, "_WHOLE_BATCH_BYTES", 0)
        monkeypatch.setattr(cpu_kernels, "_CHUNK_BYTES", 3000)
    elif route == "one_image_chunks":
        monkeypatch.setattr(cpu_kernels, "_WHOLE_BATCH_BYTES", 0)
        monkeypatch.setattr(cpu_kernels, "_CHUNK_BYTES", 1)


def _compare(fn_cr, fn_torch, arrays, rng, tol):
    c = [cr.tensor(v, requires_grad=True) for v in arrays]
    t = [torch.tensor(v, requires_grad=True) for v in arrays]
    cy, ty = fn_cr(*c), fn_torch(*t)
    g = rng.standard_normal(tuple(ty.shape)).astype(arrays[0].dtype)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    for cv, tv in zip(c, t):
        np.testing.assert_allclose(cv.grad.numpy(), tv.grad.numpy(), rtol=tol, atol=tol)


CONV = [dict(), dict(stride=2, padding=1), dict(padding=(2, 1), dilation=2),
        dict(stride=(2, 3), padding=(0, 2)), dict(groups=2, padding=1)]


@pytest.mark.parametrize("kw", CONV)
@pytest.mark.parametrize("route", ROUTES)
def test_conv2d_routes_match_torch(kw, route, monkeypatch):
    _route(route, monkeypatch)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4, 11, 10)).astype(np.float32)
    w = (rng.standard_normal((6, 4 // kw.get("groups", 1), 4, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    _compare(lambda *a: cr.nn.functional.conv2d(*a, **kw),
             lambda *a: torch.nn.functional.conv2d(*a, **kw), (x, w, b), rng, 1e-4)


CONVT = [dict(), dict(stride=2, padding=1), dict(stride=2, padding=1, output_padding=1),
         dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2)), dict(groups=2, stride=2)]


@pytest.mark.parametrize("kw", CONVT)
@pytest.mark.parametrize("route", ROUTES)
def test_conv_transpose2d_routes_match_torch(kw, route, monkeypatch):
    _route(route, monkeypatch)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4, 6, 7)).astype(np.float32)
    w = (rng.standard_normal((4, 6 // kw.get("groups", 1), 4, 4)) * 0.3).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    _compare(lambda *a: cr.nn.functional.conv_transpose2d(*a, **kw),
             lambda *a: torch.nn.functional.conv_transpose2d(*a, **kw), (x, w, b), rng, 1e-4)


@pytest.mark.parametrize("route", ROUTES)
def test_whole_image_windows_match_torch(route, monkeypatch):
    # one window per image (DCGAN's last conv, 4×4 kernel on 4×4 maps) and its adjoint, the
    # transposed conv of 1×1 inputs (DCGAN's first layer): plain products, no columns
    _route(route, monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6, 4, 3)).astype(np.float32)
    w = (rng.standard_normal((2, 6, 4, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    for kw in (dict(), dict(stride=2)):
        _compare(lambda *a, kw=kw: cr.nn.functional.conv2d(*a, **kw),
                 lambda *a, kw=kw: torch.nn.functional.conv2d(*a, **kw), (x, w, b), rng, 1e-4)
    # one output channel (DCGAN's discriminator score): dx is an outer product
    _compare(lambda *a: cr.nn.functional.conv2d(*a), lambda *a: torch.nn.functional.conv2d(*a),
             (x, np.ascontiguousarray(w[:1]), b[:1]), rng, 1e-4)
    z = rng.standard_normal((5, 6, 1, 1)).astype(np.float32)
    wt = (rng.standard_normal((6, 3, 4, 4)) * 0.3).astype(np.float32)
    for kw in (dict(), dict(stride=2), dict(stride=2, output_padding=1)):
        _compare(lambda *a, kw=kw: cr.nn.functional.conv_transpose2d(*a, **kw),
                 lambda *a, kw=kw: torch.nn.functional.conv_transpose2d(*a, **kw),
                 (z, wt, b[:1].repeat(3)), rng, 1e-4)


@pytest.mark.parametrize("route", ["whole", "one_image_chunks", "pixel_major",
                                   "pixel_major_chunks", "stacked", "stacked_chunks"])
def test_conv_gradchecks_float64(route, monkeypatch):
    _route(route, monkeypatch)
    rng = np.random.default_rng(3)
    x = cr.tensor(rng.standard_normal((3, 2, 5, 5)), requires_grad=True)
    w = cr.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    wt = cr.tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    assert cr.autograd.gradcheck(
        lambda a, b: cr.nn.functional.conv2d(a, b, stride=2, padding=1), (x, w))
    assert cr.autograd.gradcheck(
        lambda a, b: cr.nn.functional.conv_transpose2d(a, b, stride=2, padding=1), (x, wt))
    assert cr.autograd.gradcheck(lambda a, b: cr.nn.functional.conv2d(a, b[:, :, :3]),
                                 (x[:, :, :3, :3].detach().requires_grad_(), w))
    assert cr.autograd.gradcheck(lambda a, b: cr.nn.functional.conv_transpose2d(a, b),
                                 (x[:, :, :1, :1].detach().requires_grad_(), wt))
    # second order: the backward rules run on Tensors (the reference kernels)
    assert cr.autograd.gradgradcheck(
        lambda a, b: cr.nn.functional.conv2d(a, b, stride=2, padding=1), (x, w))
    assert cr.autograd.gradgradcheck(
        lambda a, b: cr.nn.functional.conv_transpose2d(a, b, stride=2, padding=1), (x, wt))


@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (4, 5, 9), (8, 3), (2, 3, 2, 2), (3, 2, 4, 4, 3)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_loops", [True, False])
def test_batch_norm_matches_torch(shape, affine, dtype, with_loops, monkeypatch):
    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    rng = np.random.default_rng(4)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    cls = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}[len(shape)]
    cm, tm = getattr(cr.nn, cls)(c, affine=affine), getattr(torch.nn, cls)(c, affine=affine)
    if dtype == np.float64:
        cm, tm = cm.double(), tm.double()
    if affine:
        wv, bv = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(wv))
            tm.bias.copy_(torch.tensor(bv))
        with cr.no_grad():
            cm.weight.copy_(cr.tensor(wv))
            cm.bias.copy_(cr.tensor(bv))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    _compare(cm, tm, (x,), rng, tol)
    np.testing.assert_allclose(cm.running_mean.numpy(), tm.running_mean.numpy(), rtol=tol,
                               atol=tol)
    np.testing.assert_allclose(cm.running_var.numpy(), tm.running_var.numpy(), rtol=tol,
                               atol=tol)
    if affine:
        for p, q in ((cm.weight, tm.weight), (cm.bias, tm.bias)):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=tol, atol=tol)


def test_batch_norm_gradchecks_float64_and_double_backward():
    rng = np.random.default_rng(5)
    x = cr.tensor(rng.standard_normal((3, 2, 4, 4)), requires_grad=True)
    w = cr.tensor(rng.standard_normal(2), requires_grad=True)
    b = cr.tensor(rng.standard_normal(2), requires_grad=True)

    def f(x, w, b):
        return cr.nn.functional.batch_norm(x, None, None, w, b, training=True)

    assert cr.autograd.gradcheck(f, (x, w, b))
    assert cr.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("slope", [0.2, 0.01, 1.5, -0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_loops", [True, False])
def test_leaky_relu_matches_torch(slope, dtype, with_loops, monkeypatch):
    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5, 6)).astype(dtype)
    x[0, 0, :4] = [np.nan, -0.0, 0.0, np.inf]
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cy = cr.nn.functional.leaky_relu(c, slope)
    ty = torch.nn.functional.leaky_relu(t, slope)
    np.testing.assert_array_equal(cy.detach().numpy(), ty.detach().numpy())
    # the sign of zero as torch's (-0.0 · slope)
    np.testing.assert_array_equal(np.signbit(cy.detach().numpy()),
                                  np.signbit(ty.detach().numpy()))
    g = rng.standard_normal(x.shape).astype(dtype)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(c.grad.numpy(), t.grad.numpy())


def test_leaky_relu_in_place_matches_torch():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (cr.nn.LeakyReLU(0.2, inplace=True)(c * 2) * 3).sum().backward()
    (torch.nn.LeakyReLU(0.2, inplace=True)(t * 2) * 3).sum().backward()
    np.testing.assert_array_equal(c.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("slope", [0.2, 0.0, -0.3])
@pytest.mark.parametrize("with_loops", [True, False])
def test_leaky_relu_in_place_keeps_its_output_and_matches_torch(slope, with_loops, monkeypatch):
    """In place with a slope ≥ 0 the gate keeps its output (y > 0 exactly where x > 0, also at
    -0.0, ±inf and NaN), so nothing else holds the old value: the gradient is torch's, and a
    later in-place op on the result leaves the saved value alone."""
    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    x[0, 0, :5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    g = rng.standard_normal(x.shape).astype(np.float32)
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ch, th = c * 2, t * 2
    cy = cr.nn.functional.leaky_relu(ch, slope, inplace=True)
    # (torch refuses the backward of an in-place negative slope; chainrule keeps the input)
    ty = torch.nn.functional.leaky_relu(th, slope, inplace=slope >= 0)
    assert cy is ch
    np.testing.assert_array_equal(cy.detach().numpy(), ty.detach().numpy())
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(c.grad.numpy(), t.grad.numpy())
    c2 = cr.tensor(x, requires_grad=True)
    y2 = cr.nn.functional.leaky_relu(c2 * 1, slope, inplace=True)
    y2.zero_()  # overwrites the result; the gate's saved copy stays
    cr.nn.functional.leaky_relu(c2 * 1, slope).backward(cr.tensor(g))
    z = cr.tensor(x, requires_grad=True)
    cr.nn.functional.leaky_relu(z * 1, slope, inplace=True).backward(cr.tensor(g))
    np.testing.assert_array_equal(c2.grad.numpy(), z.grad.numpy())


def test_leaky_relu_in_place_writes_over_its_own_memory(monkeypatch):
    """Where nothing else holds the tensor's array, leaky_relu_ (slope ≥ 0) computes over that
    memory: no result array copied back (apply_inplace's _write is not called), the same
    memory, the version bumped, torch's values and gradient; a later in-place op on the result
    (which the gate saved) makes backward raise, as torch's."""
    from chainrule.autograd import inplace

    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    cr.nn.functional.leaky_relu(cr.tensor(x, requires_grad=True) * 1, 0.2, inplace=True)  # learn
    writes = []
    real_write = inplace._write
    monkeypatch.setattr(inplace, "_write", lambda t, v: (writes.append(v), real_write(t, v)))
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ch, th = c * 2, t * 2
    ptr, version = ch.data_ptr(), ch._version
    cy = cr.nn.functional.leaky_relu(ch, 0.2, inplace=True)
    ty = torch.nn.functional.leaky_relu(th, 0.2, inplace=True)
    assert cy is ch and ch.data_ptr() == ptr and ch._version == version + 1
    if cpu_kernels.loops is not None:
        assert writes == []
    np.testing.assert_array_equal(cy.detach().numpy(), ty.detach().numpy())
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(c.grad.numpy(), t.grad.numpy())
    c2, t2 = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cy2 = cr.nn.functional.leaky_relu(c2 * 2, 0.2, inplace=True)
    ty2 = torch.nn.functional.leaky_relu(t2 * 2, 0.2, inplace=True)
    cy2.mul_(3)
    ty2.mul_(3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ty2.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        cy2.sum().backward()


def test_leaky_relu_into_kernel_writes_its_input():
    x = np.random.default_rng(11).standard_normal((3, 5, 7)).astype(np.float32)
    want = np.where(x > 0, x, x * np.float32(0.1))
    a = x.copy()
    y = cpu_kernels.CpuKernels.leaky_relu_into(a, 0.1)
    np.testing.assert_array_equal(y, want)
    if cpu_kernels.loops is not None:
        assert y.base is a and np.array_equal(a, want)
    b = np.asfortranarray(x)  # not C-contiguous: a new array, the input untouched
    y = cpu_kernels.CpuKernels.leaky_relu_into(b, 0.1)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(b, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_backward_loop_is_the_reference_and_torch(dtype):
    """CpuKernels.tanh_backward (one C pass) gives NumPy's g·(1 - y²) bit for bit (no fused
    multiply-add), and tanh's gradient equals torch's."""
    from chainrule.kernels.reference import Kernels

    rng = np.random.default_rng(12)
    for n in (1, 7, 8, 33, 1000):
        g = rng.standard_normal(n).astype(dtype)
        y = np.tanh(rng.standard_normal(n) * 3).astype(dtype)
        y[:1] = np.nan if n > 3 else y[:1]
        np.testing.assert_array_equal(cpu_kernels.CpuKernels.tanh_backward(g, y),
                                      Kernels.tanh_backward(g, y))
    x = rng.standard_normal((16, 3, 9, 9)).astype(dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cr.tanh(c).backward(cr.tensor(gy))
    torch.tanh(t).backward(torch.tensor(gy))
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-6)
    xd = cr.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert cr.autograd.gradcheck(cr.tanh, (xd,))


def test_leaky_relu_in_place_gradchecks_float64():
    rng = np.random.default_rng(9)
    x = cr.tensor(rng.standard_normal((3, 4, 5)), requires_grad=True)

    def f(v):
        return cr.nn.functional.leaky_relu(v * 1.5, 0.2, inplace=True) * v

    assert cr.autograd.gradcheck(f, (x,))
    assert cr.autograd.gradgradcheck(f, (x,))


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
def test_loops_reject_mismatched_sizes():
    loops = cpu_kernels.loops
    x = np.zeros((2, 3, 5, 5), np.float32)
    args = (2 * 3, 5, 5, 3, 3, 1, 1, 1, 1, 0, 0, 3, 3)
    with pytest.raises(ValueError, match="im2col_cn"):
        loops.im2col_cn(x, np.zeros((27, 17), np.float32), 3, *args)
    with pytest.raises(ValueError, match="col2im_cn"):
        loops.col2im_cn(np.zeros((27, 18), np.float32), np.zeros((2, 3, 5, 4), np.float32), 3,
                        *args)
    with pytest.raises(ValueError, match="col2im_cn"):  # planes not a multiple of chans
        loops.col2im_cn(np.zeros((27, 18), np.float32), x, 4, *args)
    with pytest.raises(TypeError):
        loops.im2col_cn(x, np.zeros((27, 18), np.float64), 3, *args)
    with pytest.raises(ValueError, match="batch_norm_stats"):
        loops.batch_norm_stats(x, np.empty_like(x), *(np.empty(2, np.float32),) * 3, 1e-5, 2, 3)
    with pytest.raises(ValueError, match="batch_norm_backward"):
        loops.batch_norm_backward(x, x, None, np.empty(3, np.float32), None,
                                  np.empty(2, np.float32), None, 2, 3)
    with pytest.raises(TypeError, match="leaky_relu"):
        loops.leaky_relu(x, np.empty_like(x))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1, dilation=(2, 1)),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_forward_equals_the_reference_and_torch(kw, dtype):
    from chainrule.kernels import CPU, REFERENCE
    from chainrule.ops.conv import _pool_geom

    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 0, 1, 1] = x[1, 2, 4, 4] = np.nan
    x[0, 1, :2, :2] = 1.0  # ties: the first maximum
    ks = kw["kernel_size"]
    geom = _pool_geom(x.shape, ks, kw.get("stride"), kw.get("padding", 0),
                      kw.get("dilation", 1), kw.get("ceil_mode", False), "max_pool2d")
    y, idx = CPU.max_pool2d(x, geom)
    ry, ridx = REFERENCE.max_pool2d(x, geom)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(idx, ridx)
    ty = torch.nn.functional.max_pool2d(torch.tensor(x), **kw)
    np.testing.assert_array_equal(y, ty.numpy())


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_cn_equal_the_reference_on_many_geometries(dtype):
    # im2col_cn / col2im_cn (through a zero-padded plane) against the strided-view reference:
    # strides 1-3, dilation, asymmetric padding, windows that skip pixels or stop short of the
    # bottom padding, 1×1 outputs, short and long rows
    from chainrule.kernels.reference import col2im_array, im2col_array
    from chainrule.ops.conv import _Geom, _out_size

    rng = np.random.default_rng(8)
    cases = [((2, 3, 7, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
             ((2, 2, 8, 8), (4, 4), (2, 2), (1, 1), (1, 1, 1, 1)),
             ((3, 2, 9, 7), (2, 3), (3, 2), (1, 2), (0, 1, 2, 0)),
             ((1, 4, 10, 11), (3, 2), (2, 3), (2, 1), (2, 1, 0, 2)),
             ((2, 1, 5, 5), (2, 2), (3, 3), (1, 1), (0, 0, 0, 0)),
             ((2, 3, 4, 4), (4, 4), (1, 1), (1, 1), (0, 0, 0, 0)),
             ((2, 2, 6, 5), (3, 3), (1, 2), (1, 1), (1, 2, 0, 1))]
    for shape, (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) in cases:
        n, c, h, w = shape
        geom = _Geom(kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, _out_size(h, kh, sh, dh, pt, pb),
                     _out_size(w, kw, sw, dw, pl, pr))
        x = rng.standard_normal(shape).astype(dtype)
        want = im2col_array(x, geom)  # (N, C, kh, kw, OH, OW)
        cols = cpu_kernels._columns_cn(x, geom)
        np.testing.assert_array_equal(
            cols.reshape(c, kh, kw, n, geom.oh, geom.ow), want.transpose(1, 2, 3, 0, 4, 5))
        g = rng.standard_normal(want.shape).astype(dtype)
        gx = np.empty(shape, dtype)
        gcn = np.ascontiguousarray(g.transpose(1, 2, 3, 0, 4, 5))
        cpu_kernels.loops.col2im_cn(gcn, gx, c, *conv_kernels.pool_args(n * c, h, w, geom))
        np.testing.assert_allclose(gx, col2im_array(g, shape, geom), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_nhwc_equal_the_reference_on_many_geometries(dtype):
    # im2col_nhwc / col2im_nhwc against the strided-view reference, whole and for a slice of the
    # batch (the chunks): strides 1-3, dilation, asymmetric padding, windows off the image
    from chainrule.kernels.reference import col2im_array, im2col_array
    from chainrule.ops.conv import _Geom, _out_size

    rng = np.random.default_rng(9)
    cases = [((3, 3, 7, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
             ((2, 8, 8, 8), (4, 4), (2, 2), (1, 1), (1, 1, 1, 1)),
             ((3, 2, 9, 7), (2, 3), (3, 2), (1, 2), (0, 1, 2, 0)),
             ((2, 4, 10, 11), (3, 2), (2, 3), (2, 1), (2, 1, 0, 2)),
             ((2, 5, 5, 5), (2, 2), (3, 3), (1, 1), (0, 0, 0, 0)),
             ((2, 3, 4, 4), (4, 4), (1, 1), (1, 1), (0, 0, 0, 0)),
             ((2, 1, 3, 3), (3, 3), (1, 1), (1, 3), (3, 1, 4, 3))]
    for shape, (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) in cases:
        n, c, h, w = shape
        geom = _Geom(kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, _out_size(h, kh, sh, dh, pt, pb),
                     _out_size(w, kw, sw, dw, pl, pr))
        x = rng.standard_normal(shape).astype(dtype)
        want = im2col_array(x, geom).transpose(0, 4, 5, 2, 3, 1)  # (N, OH, OW, kh, kw, C)
        xh = conv_kernels._channels_last(cpu_kernels.loops, x)
        np.testing.assert_array_equal(xh, x.transpose(0, 2, 3, 1))
        args = conv_kernels._args(shape, geom)
        area, k = geom.oh * geom.ow, c * kh * kw
        cols = np.full((n * area, k), np.nan, dtype)
        cpu_kernels.loops.im2col_nhwc(xh, cols, *args, 0, n)
        np.testing.assert_array_equal(cols, want.reshape(n * area, k))
        part = np.full(((n - 1) * area, k), np.nan, dtype)  # images 1 .. n-1
        cpu_kernels.loops.im2col_nhwc(xh, part, *args, 1, n - 1)
        np.testing.assert_array_equal(part, want[1:].reshape(-1, k))
        g = rng.standard_normal(want.shape).astype(dtype)
        gxh = np.full((n, h, w, c), np.nan, dtype)
        cpu_kernels.loops.col2im_nhwc(np.ascontiguousarray(g).reshape(n * area, k), gxh, *args,
                                      0, n)
        ref = col2im_array(np.ascontiguousarray(g.transpose(0, 5, 3, 4, 1, 2)), shape, geom)
        np.testing.assert_allclose(gxh.transpose(0, 3, 1, 2), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dims", [(1, 1, 1), (2, 3, 4096), (3, 1024, 16), (2, 37, 70),
                                  (4, 64, 33), (1, 0, 5)])
def test_planes_transpose_equals_numpy(dtype, dims):
    b, r, c = dims
    a = np.arange(b * r * c, dtype=dtype).reshape(b, r, c)
    out = np.empty((b, c, r), dtype)
    cpu_kernels.loops.planes_transpose(a, out, b, r, c)
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
def test_nhwc_loops_reject_mismatched_sizes():
    loops = cpu_kernels.loops
    xh = np.zeros((2, 5, 5, 3), np.float32)
    args = (3, 2, 5, 5, 3, 3, 1, 1, 1, 1, 0, 0, 3, 3)
    with pytest.raises(ValueError, match="im2col_nhwc"):
        loops.im2col_nhwc(xh, np.zeros((18, 26), np.float32), *args, 0, 2)
    with pytest.raises(ValueError, match="im2col_nhwc"):  # images past the batch
        loops.im2col_nhwc(xh, np.zeros((18, 27), np.float32), *args, 1, 2)
    with pytest.raises(ValueError, match="col2im_nhwc"):
        loops.col2im_nhwc(np.zeros((18, 27), np.float32), np.zeros((2, 5, 4, 3), np.float32),
                          *args, 0, 2)
    with pytest.raises(TypeError):
        loops.im2col_nhwc(xh, np.zeros((18, 27), np.float64), *args, 0, 2)
    with pytest.raises(ValueError, match="planes_transpose"):
        loops.planes_transpose(xh, np.zeros(10, np.float32), 2, 25, 3)


# DCGAN's layers (16 images, k4 s2 p1) and an odd one: the default policy routes them through
# the pixel-major columns; whole and chunk by chunk, forward and both gradients against torch
DCGAN_LIKE = [((16, 16, 32, 32), 32), ((16, 64, 8, 8), 128), ((3, 9, 13, 11), 5)]


@pytest.mark.parametrize("shape,out", DCGAN_LIKE)
@pytest.mark.parametrize("chunks", [False, True])
def test_pixel_major_route_is_taken_and_matches_torch(shape, out, chunks, monkeypatch):
    if cpu_kernels.loops is None:
        pytest.skip("built without the C loops")
    if chunks:
        monkeypatch.setattr(conv_kernels, "_WHOLE_BYTES", 0)
        monkeypatch.setattr(conv_kernels, "_CHUNK_BYTES", 20000)
    rng = np.random.default_rng(10)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((out, shape[1], 4, 4)) * 0.1).astype(np.float32)
    from chainrule.ops.conv import _Geom, _out_size

    oh, ow = (_out_size(s, 4, 2, 1, 1, 1) for s in shape[2:])
    geom = _Geom(4, 4, 2, 2, 1, 1, 1, 1, 1, 1, oh, ow)
    _, saved = cpu_kernels.CpuKernels.conv2d(x, w, geom, 1)
    assert isinstance(saved, conv_kernels.NhwcColumns)
    kw = dict(stride=2, padding=1)
    _compare(lambda *a: cr.nn.functional.conv2d(*a, **kw),
             lambda *a: torch.nn.functional.conv2d(*a, **kw), (x, w), rng, 2e-4)
    z = rng.standard_normal((shape[0], out, oh, ow)).astype(np.float32)
    _compare(lambda *a: cr.nn.functional.conv_transpose2d(*a, **kw),
             lambda *a: torch.nn.functional.conv_transpose2d(*a, **kw),
             (z, np.ascontiguousarray(w)), rng, 2e-4)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_channel_conv_takes_the_stacked_route_and_matches_torch(kw, dtype):
    # MNIST's first conv (in_channels = 1, 3×3): by default one product per image
    if cpu_kernels.loops is None:
        pytest.skip("built without the C loops")
    from chainrule.ops.conv import _Geom, _out_size

    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 1, 14, 12)).astype(dtype)
    w = (rng.standard_normal((5, 1, 3, 3)) * 0.3).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    geom = _Geom(3, 3, 1, 1, 1, 1, 0, 0, 0, 0, _out_size(14, 3, 1, 1, 0, 0),
                 _out_size(12, 3, 1, 1, 0, 0))
    assert isinstance(cpu_kernels.CpuKernels.conv2d(x, w, geom, 1)[1], conv_kernels.ImageColumns)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    _compare(lambda *a: cr.nn.functional.conv2d(*a, **kw),
             lambda *a: torch.nn.functional.conv2d(*a, **kw), (x, w, b), rng, tol)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 7, 9), (3, 2, 1, 1), (2, 3, 2, 2, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sums_equal_numpy(shape, dtype):
    # the conv bias gradient (matrix-vector products per image): C-contiguous and strided
    rng = np.random.default_rng(12)
    g = rng.standard_normal(shape).astype(dtype)
    want = g.sum(axis=(0,) + tuple(range(2, g.ndim)), dtype=np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for arr in (g, np.swapaxes(g, 0, 1).copy().swapaxes(0, 1)):
        got = cpu_kernels.CpuKernels.channel_sums(arr)
        assert got.dtype == dtype and got.shape == (shape[1],)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_pixel_major_chain_of_layers_matches_torch():
    # two pixel-major convs and a transposed one in a row: each forward's columns share the
    # scratch array with the next layer's and the backward builds them again from its image
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    w1 = (rng.standard_normal((16, 8, 4, 4)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    w3 = (rng.standard_normal((24, 8, 4, 4)) * 0.1).astype(np.float32)

    def net(F, x, a, b, c):
        h = F.leaky_relu(F.conv2d(x, a, stride=2, padding=1), 0.2)
        h = F.conv2d(h, b, stride=2, padding=1)
        return F.conv_transpose2d(h, c, stride=2, padding=1)

    _compare(lambda *a: net(cr.nn.functional, *a), lambda *a: net(torch.nn.functional, *a),
             (x, w1, w2, w3), rng, 2e-4)


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
@pytest.mark.parametrize("need", ["both", "x", "w"])
def test_pixel_major_backward_transposes_dy_once_and_matches_torch(need, monkeypatch):
    """With dx and dW both wanted, conv2d's backward on the pixel-major route makes dy's pixel
    rows once for the two products (conv2d_grads); either gradient alone, its own kernel."""
    calls = []
    real = conv_kernels.pixel_rows
    monkeypatch.setattr(conv_kernels, "pixel_rows", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    assert conv_kernels.takes(x.shape, w, _geom_of(x.shape, w.shape, 2, 1), cpu_kernels.loops)
    c = [cr.tensor(x, requires_grad=need != "w"), cr.tensor(w, requires_grad=need != "x")]
    t = [torch.tensor(x, requires_grad=need != "w"), torch.tensor(w, requires_grad=need != "x")]
    cy = cr.nn.functional.conv2d(*c, stride=2, padding=1)
    ty = torch.nn.functional.conv2d(*t, stride=2, padding=1)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    calls.clear()
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    assert len(calls) == 1
    for cv, tv in zip(c, t):
        if tv.requires_grad:
            np.testing.assert_allclose(cv.grad.numpy(), tv.grad.numpy(), rtol=1e-4, atol=1e-4)
        else:
            assert cv.grad is None


def _geom_of(x_shape, w_shape, s, p):
    from chainrule.ops.conv import _Geom

    oh = (x_shape[2] + 2 * p - w_shape[2]) // s + 1
    ow = (x_shape[3] + 2 * p - w_shape[3]) // s + 1
    return _Geom(w_shape[2], w_shape[3], s, s, 1, 1, p, p, p, p, oh, ow)


@pytest.mark.skipif(cpu_kernels.loops is None, reason="built without the C loops")
@pytest.mark.parametrize("need", ["both", "x", "w"])
@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_pixel_major_backward_reuses_the_forward_rows_and_matches_torch(op, need, monkeypatch):
    """On the pixel-major route the backward reorders no weight the forward reordered already
    (conv2d with both gradients; conv_transpose2d always), and conv_transpose2d's backward
    does not transpose x again: values and gradients stay torch's."""
    rows, transposes = [], []
    real_rows, real_pixel = conv_kernels._weight_rows, conv_kernels.pixel_rows
    monkeypatch.setattr(conv_kernels, "_weight_rows", lambda *a: rows.append(1) or real_rows(*a))
    monkeypatch.setattr(conv_kernels, "pixel_rows",
                        lambda *a: transposes.append(1) or real_pixel(*a))
    rng = np.random.default_rng(14)
    if op == "conv2d":
        x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)
        w = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    else:
        x = rng.standard_normal((4, 24, 6, 6)).astype(np.float32)
        w = (rng.standard_normal((24, 16, 4, 4)) * 0.1).astype(np.float32)
    c = [cr.tensor(x, requires_grad=need != "w"), cr.tensor(w, requires_grad=need != "x")]
    t = [torch.tensor(x, requires_grad=need != "w"), torch.tensor(w, requires_grad=need != "x")]
    cy = getattr(cr.nn.functional, op)(*c, stride=2, padding=1)
    ty = getattr(torch.nn.functional, op)(*t, stride=2, padding=1)
    assert rows == [1]  # the forward's one reorder (the pixel-major route was taken)
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    rows.clear()
    transposes.clear()
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    if op == "conv_transpose2d" or need == "both":
        assert rows == []
    if op == "conv_transpose2d":
        assert transposes == []  # dW reads the forward's pixel rows of x
    for cv, tv in zip(c, t):
        if tv.requires_grad:
            np.testing.assert_allclose(cv.grad.numpy(), tv.grad.numpy(), rtol=1e-4, atol=1e-4)
        else:
            assert cv.grad is None


@pytest.mark.parametrize("view", ["row", "column", "transposed", "whole"])
def test_leaky_relu_in_place_on_views_matches_torch(view):
    """leaky_relu_ writing over its input's memory stays torch's in place on views of a tensor
    (in the graph: on a copy, put back by CopySlices; under no_grad: the view's own memory),
    values, gradients and versions."""
    pick = {"row": lambda h: h[1], "column": lambda h: h[:, 1],
            "transposed": lambda h: h.transpose(0, 1)[2], "whole": lambda h: h}[view]
    x = np.random.default_rng(15).standard_normal((3, 4, 5)).astype(np.float32)
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    hc, ht = c * 2, t * 2
    cr.nn.functional.leaky_relu(pick(hc), 0.2, inplace=True)
    torch.nn.functional.leaky_relu(pick(ht), 0.2, inplace=True)
    (hc * hc).sum().backward()
    (ht * ht).sum().backward()
    np.testing.assert_array_equal(hc.detach().numpy(), ht.detach().numpy())
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-6)
    with cr.no_grad():
        hc = cr.tensor(x * 2)
        cr.nn.functional.leaky_relu(pick(hc), 0.2, inplace=True)
    with torch.no_grad():
        ht = torch.tensor(x * 2)
        torch.nn.functional.leaky_relu(pick(ht), 0.2, inplace=True)
    np.testing.assert_array_equal(hc.numpy(), ht.numpy())
    assert hc._version == ht._version
