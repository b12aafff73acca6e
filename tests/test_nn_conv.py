"""Convolution and pooling: forward and gradients vs torch, float64 finite differences (first and
second order), modules (weights, init, repr), errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.nn.modules.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from chainrule.nn.modules.pooling import (
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
)
from chainrule.ops import conv as C

RNG = np.random.default_rng(0)


def _arr(*shape):
    return RNG.standard_normal(shape)


def _leaf(a):
    return cr.tensor(a, dtype=cr.float64, requires_grad=True)


def _compare_with_torch(cr_fn, torch_fn, arrays, kwargs, atol=1e-10):
    """Same output and same gradient of every input as torch, for a random output gradient."""
    torch = pytest.importorskip("torch")
    cx = [None if a is None else _leaf(a) for a in arrays]
    tx = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    cy = cr_fn(*cx, **kwargs)
    ty = torch_fn(*tx, **kwargs)
    if isinstance(ty, tuple):
        assert np.array_equal(cy[1].numpy(), ty[1].numpy())
        cy, ty = cy[0], ty[0]
    assert tuple(cy.shape) == tuple(ty.shape)
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), atol=atol, rtol=1e-9)
    g = _arr(*ty.shape)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    for c, t in zip(cx, tx):
        if c is not None:
            np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), atol=atol, rtol=1e-9)


# ---- functional vs torch ------------------------------------------------------------------------
CONV2D = [
    ((2, 3, 7, 6), (4, 3, 3, 2), True, {}),
    ((2, 4, 7, 6), (6, 2, 3, 2), True, {"stride": 2, "padding": 1, "dilation": (1, 2),
                                        "groups": 2}),
    ((2, 4, 7, 6), (6, 4, 2, 3), True, {"padding": "same", "dilation": 2}),
    ((1, 2, 5, 5), (3, 2, 4, 4), False, {"padding": "same"}),
    ((4, 7, 6), (6, 4, 2, 3), True, {"padding": "valid"}),
    ((2, 4, 8, 7), (4, 1, 3, 3), False, {"stride": (2, 3), "padding": (2, 0), "groups": 4}),
    ((2, 4, 6, 5), (6, 2, 3, 3), True, {"padding": 1, "groups": 2, "dilation": (2, 1)}),
    ((1, 2, 6, 7), (3, 2, 2, 3), True, {"stride": (1, 2), "padding": (0, 2)}),
]


@pytest.mark.parametrize("xs, ws, bias, kw", CONV2D)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv2d_matches_torch(xs, ws, bias, kw):
    torch = pytest.importorskip("torch")
    arrays = [_arr(*xs), _arr(*ws), _arr(ws[0]) if bias else None]
    _compare_with_torch(C.conv2d, torch.nn.functional.conv2d, arrays, kw)


@pytest.mark.parametrize("xs, ws, kw", [
    ((2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ((2, 3, 9), (2, 3, 4), {"padding": "same", "dilation": 2}),
    ((3, 9), (2, 3, 2), {}),
])
def test_conv1d_matches_torch(xs, ws, kw):
    torch = pytest.importorskip("torch")
    _compare_with_torch(C.conv1d, torch.nn.functional.conv1d,
                        [_arr(*xs), _arr(*ws), _arr(ws[0])], kw)


@pytest.mark.parametrize("xs, ws, kw", [
    ((2, 4, 5, 4), (4, 3, 3, 2), {}),
    ((2, 4, 5, 4), (4, 3, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2,
                                  "dilation": (2, 1)}),
    ((1, 2, 3, 3), (2, 2, 2, 2), {"stride": (3, 2), "padding": (0, 1)}),
    ((2, 3, 3), (2, 3, 3, 3), {"stride": 2, "output_padding": (1, 0)}),
])
def test_conv_transpose2d_matches_torch(xs, ws, kw):
    torch = pytest.importorskip("torch")
    cout = ws[1] * kw.get("groups", 1)
    _compare_with_torch(C.conv_transpose2d, torch.nn.functional.conv_transpose2d,
                        [_arr(*xs), _arr(*ws), _arr(cout)], kw)


def test_conv_transpose1d_matches_torch():
    torch = pytest.importorskip("torch")
    _compare_with_torch(C.conv_transpose1d, torch.nn.functional.conv_transpose1d,
                        [_arr(2, 4, 5), _arr(4, 3, 3), _arr(3)],
                        {"stride": 3, "padding": 1, "output_padding": 2})


POOL_CASES = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "ceil_mode": True},
    {"kernel_size": 2, "stride": 1},
]


@pytest.mark.parametrize("kw", POOL_CASES + [
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": 1, "dilation": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "padding": 1, "return_indices": True},
    {"kernel_size": (3, 2), "dilation": (1, 2), "ceil_mode": True, "return_indices": True},
])
def test_max_pool2d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    _compare_with_torch(C.max_pool2d, torch.nn.functional.max_pool2d, [_arr(2, 3, 9, 8)], kw)


@pytest.mark.parametrize("kw", POOL_CASES + [
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    {"kernel_size": (3, 2), "stride": (3, 1), "padding": 1, "count_include_pad": False},
    {"kernel_size": 3, "stride": 2, "padding": 1, "divisor_override": 5},
])
def test_avg_pool2d_matches_torch(kw):
    torch = pytest.importorskip("torch")
    _compare_with_torch(C.avg_pool2d, torch.nn.functional.avg_pool2d, [_arr(2, 3, 7, 8)], kw)


@pytest.mark.parametrize("size", [(3, 4), (4, None), 1, (7, 8), (2, 2), 5, (10, 9)])
def test_adaptive_avg_pool2d_matches_torch(size):
    torch = pytest.importorskip("torch")
    _compare_with_torch(C.adaptive_avg_pool2d, torch.nn.functional.adaptive_avg_pool2d,
                        [_arr(2, 3, 7, 8)], {"output_size": size})


def test_pools_1d_and_unbatched_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    _compare_with_torch(C.max_pool1d, F.max_pool1d, [_arr(2, 3, 8)], kw)
    _compare_with_torch(C.avg_pool1d, F.avg_pool1d, [_arr(2, 3, 8)],
                        dict(kw, count_include_pad=False))
    _compare_with_torch(C.adaptive_avg_pool1d, F.adaptive_avg_pool1d, [_arr(2, 3, 8)],
                        {"output_size": 3})
    _compare_with_torch(C.max_pool2d, F.max_pool2d, [_arr(3, 6, 5)], {"kernel_size": 2})
    _compare_with_torch(C.avg_pool2d, F.avg_pool2d, [_arr(3, 6, 5)], {"kernel_size": 2})


def test_max_pool_ties_send_gradient_to_first_maximum_like_torch():
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = 1.0
    _compare_with_torch(C.max_pool2d, torch.nn.functional.max_pool2d, [x], {"kernel_size": 2})
    _compare_with_torch(C.max_pool2d, torch.nn.functional.max_pool2d, [x],
                        {"kernel_size": 3, "stride": 1, "padding": 1})


def test_unfold_fold_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    _compare_with_torch(C.unfold, F.unfold, [_arr(2, 3, 7, 6)],
                        {"kernel_size": (2, 3), "stride": 2, "padding": 1, "dilation": (2, 1)})
    _compare_with_torch(C.fold, F.fold, [_arr(2, 12, 12)],
                        {"output_size": (5, 6), "kernel_size": 2, "stride": 2, "padding": 1})


def test_float32_stays_float32():
    x = cr.randn(2, 3, 8, 8, requires_grad=True)
    w = cr.randn(4, 3, 3, 3, requires_grad=True)
    y = C.max_pool2d(C.conv2d(x, w, padding=1), 2)
    y = C.avg_pool2d(C.conv_transpose2d(y, w, stride=2), 2)
    assert y.dtype == cr.float32
    y.sum().backward()
    assert x.grad.dtype == cr.float32 and w.grad.dtype == cr.float32


# ---- finite differences -------------------------------------------------------------------------
def test_conv2d_gradcheck_and_gradgradcheck():
    x, w, b = _leaf(_arr(1, 2, 5, 4)), _leaf(_arr(2, 1, 2, 3)), _leaf(_arr(2))

    def fn(x, w, b):
        return C.conv2d(x, w, b, stride=2, padding=1, groups=2)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))
    x, w = _leaf(_arr(1, 2, 4, 4)), _leaf(_arr(3, 2, 3, 2))
    assert gradgradcheck(lambda x, w: C.conv2d(x, w, padding="same", dilation=(1, 2)), (x, w))


def test_conv_transpose2d_and_conv1d_gradcheck():
    x, w, b = _leaf(_arr(1, 2, 3, 3)), _leaf(_arr(2, 2, 2, 3)), _leaf(_arr(2))

    def fn(x, w, b):
        return C.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)

    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))
    x, w = _leaf(_arr(2, 2, 6)), _leaf(_arr(2, 2, 3))
    assert gradcheck(lambda x, w: C.conv1d(x, w, stride=2, padding=1), (x, w))


@pytest.mark.parametrize("fn", [
    lambda x: C.max_pool2d(x, 2),
    lambda x: C.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    lambda x: C.max_pool2d(x, (2, 3), 1, dilation=(2, 1)),
    lambda x: C.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda x: C.avg_pool2d(x, 2, 1),
    lambda x: C.adaptive_avg_pool2d(x, (2, 3)),
    lambda x: C.unfold(x, 2, stride=1, padding=1),
], ids=["max2", "max3ceil", "maxdil", "avgceil", "avgoverlap", "adaptive", "unfold"])
def test_pool_gradcheck_and_gradgradcheck(fn):
    # distinct values spaced apart, so max never sits on a tie under the finite differences
    x = _leaf(RNG.permutation(50)[:2 * 5 * 5].reshape(1, 2, 5, 5) * 0.1)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_conv_double_backward_matches_torch():
    torch = pytest.importorskip("torch")
    xa, wa = _arr(1, 2, 5, 5), _arr(3, 2, 3, 3)
    x, w = _leaf(xa), _leaf(wa)
    (gx,) = cr.autograd.grad(C.conv2d(x, w, stride=2).pow(2).sum(), [x], create_graph=True)
    gx.pow(2).sum().backward()
    tx, tw = torch.tensor(xa, requires_grad=True), torch.tensor(wa, requires_grad=True)
    (tgx,) = torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, stride=2).pow(2).sum(),
                                 [tx], create_graph=True)
    tgx.pow(2).sum().backward()
    np.testing.assert_allclose(gx.detach().numpy(), tgx.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_small_cnn_step_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xa = RNG.standard_normal((4, 1, 28, 28)).astype(np.float32)
    ya = np.array([1, 0, 7, 3])
    shapes = [(8, 1, 3, 3), (8,), (16, 8, 3, 3), (16,), (10, 400), (10,)]
    ps = [(RNG.standard_normal(s) * 0.1).astype(np.float32) for s in shapes]
    cp = [cr.tensor(p, requires_grad=True) for p in ps]
    tp = [torch.tensor(p, requires_grad=True) for p in ps]
    h = C.max_pool2d(C.conv2d(cr.tensor(xa), cp[0], cp[1]).relu(), 2)
    h = C.max_pool2d(C.conv2d(h, cp[2], cp[3]).relu(), 2)
    logits = h.reshape(4, -1) @ cp[4].T + cp[5]
    loss = -logits.log_softmax(1)[cr.arange(4), cr.tensor(ya)].mean()
    loss.backward()
    th = F.max_pool2d(F.conv2d(torch.tensor(xa), tp[0], tp[1]).relu(), 2)
    th = F.max_pool2d(F.conv2d(th, tp[2], tp[3]).relu(), 2)
    tloss = F.cross_entropy(th.reshape(4, -1) @ tp[4].T + tp[5], torch.tensor(ya))
    tloss.backward()
    assert abs(loss.item() - tloss.item()) < 1e-5
    for c, t in zip(cp, tp):
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)


# ---- errors -------------------------------------------------------------------------------------
def test_conv2d_channel_mismatch_names_op_and_shapes():
    x, w = cr.randn(32, 3, 28, 28), cr.randn(8, 1, 3, 3)
    with pytest.raises(RuntimeError, match=r"conv2d: .*expected input\[32, 3, 28, 28\] to have 1 "
                                           r"channels, but got 3 channels"):
        C.conv2d(x, w)


def test_conv_and_pool_errors():
    with pytest.raises(RuntimeError, match=r"conv2d: .*Kernel size can't be greater"):
        C.conv2d(cr.randn(1, 1, 2, 2), cr.randn(1, 1, 3, 3))
    with pytest.raises(RuntimeError, match=r"conv2d: Expected 3D \(unbatched\) or 4D"):
        C.conv2d(cr.randn(2, 2), cr.randn(1, 1, 3, 3))
    with pytest.raises(RuntimeError, match=r"conv2d: .*same dtype"):
        C.conv2d(cr.randn(1, 1, 4, 4), cr.randn(1, 1, 3, 3, dtype=cr.float64))
    with pytest.raises(RuntimeError, match=r"conv2d: .*bias.* 2 elements"):
        C.conv2d(cr.randn(1, 1, 4, 4), cr.randn(2, 1, 3, 3), cr.randn(3))
    with pytest.raises(ValueError, match="conv2d: padding='same' is not supported for strided"):
        C.conv2d(cr.randn(1, 1, 4, 4), cr.randn(1, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="conv1d: .*expected input\\[2, 3, 9\\] to have 4"):
        C.conv1d(cr.randn(2, 3, 9), cr.randn(2, 4, 3))
    with pytest.raises(RuntimeError, match="conv_transpose2d: .*to have 4 channels, but got 3"):
        C.conv_transpose2d(cr.randn(1, 3, 4, 4), cr.randn(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="max_pool2d: pad should be at most half"):
        C.max_pool2d(cr.randn(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(RuntimeError, match="avg_pool2d: .*Output size is too small"):
        C.avg_pool2d(cr.randn(1, 1, 2, 2), 3)


# ---- modules ------------------------------------------------------------------------------------
def _copy_params(cm, tm):
    import torch

    cnames = [n for n, _ in cm.named_parameters()]
    tnames = [n for n, _ in tm.named_parameters()]
    assert cnames == tnames
    for (_, p), (_, tp) in zip(cm.named_parameters(), tm.named_parameters()):
        assert tuple(p.shape) == tuple(tp.shape)
        tp.data = torch.tensor(p.detach().numpy())


@pytest.mark.parametrize("make", [
    lambda nn, **kw: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, **kw),
    lambda nn, **kw: nn.Conv2d(4, 6, (3, 2), padding="same", bias=False,
                               padding_mode="reflect", **kw),
    lambda nn, **kw: nn.Conv2d(4, 2, 3, padding=2, padding_mode="circular", **kw),
    lambda nn, **kw: nn.Conv2d(4, 2, 3, padding=1, padding_mode="replicate", **kw),
    lambda nn, **kw: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                        groups=2, **kw),
    lambda nn, **kw: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    lambda nn, **kw: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
    lambda nn, **kw: nn.AdaptiveAvgPool2d((2, 3)),
], ids=["conv", "conv_reflect", "conv_circular", "conv_replicate", "convT", "maxpool",
        "avgpool", "adaptive"])
def test_2d_modules_match_torch(make):
    torch = pytest.importorskip("torch")
    import types

    ns = types.SimpleNamespace(Conv2d=Conv2d, ConvTranspose2d=ConvTranspose2d,
                               MaxPool2d=MaxPool2d, AvgPool2d=AvgPool2d,
                               AdaptiveAvgPool2d=AdaptiveAvgPool2d)
    cm = make(ns, dtype=cr.float64)
    tm = make(torch.nn, dtype=torch.float64)
    _copy_params(cm, tm)
    assert repr(cm) == repr(tm)
    xa = _arr(2, 4, 7, 6)
    x, tx = _leaf(xa), torch.tensor(xa, requires_grad=True)
    y, ty = cm(x), tm(tx)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-9, atol=1e-10)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-10)
    for p, tp in zip(cm.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_1d_modules_match_torch():
    torch = pytest.importorskip("torch")
    pairs = [
        (Conv1d(3, 4, 3, stride=2, padding=1), torch.nn.Conv1d(3, 4, 3, stride=2, padding=1)),
        (ConvTranspose1d(3, 4, 3, stride=2), torch.nn.ConvTranspose1d(3, 4, 3, stride=2)),
        (MaxPool1d(2), torch.nn.MaxPool1d(2)),
        (AvgPool1d(3, 2, 1), torch.nn.AvgPool1d(3, 2, 1)),
        (AdaptiveAvgPool1d(4), torch.nn.AdaptiveAvgPool1d(4)),
    ]
    xa = _arr(2, 3, 9).astype(np.float32)
    for cm, tm in pairs:
        _copy_params(cm, tm)
        assert repr(cm) == repr(tm)
        np.testing.assert_allclose(cm(cr.tensor(xa)).detach().numpy(),
                                   tm(torch.tensor(xa)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_conv_transpose2d_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    cm = ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    tm = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    _copy_params(cm, tm)
    xa = _arr(1, 2, 4, 4).astype(np.float32)
    for size in [(7, 7), (8, 8), (7, 8)]:
        y = cm(cr.tensor(xa), output_size=size)
        ty = tm(torch.tensor(xa), output_size=size)
        assert tuple(y.shape) == tuple(ty.shape)
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ConvTranspose2d: requested an output size"):
        cm(cr.tensor(xa), output_size=(9, 9))


def test_conv_init_bounds_and_shapes_like_torch():
    cr.manual_seed(0)
    m = Conv2d(16, 32, 3, groups=2)
    assert tuple(m.weight.shape) == (32, 8, 3, 3)
    fan_in = 8 * 9
    # kaiming_uniform(a=√5) gives U(±1/√fan_in) for the weight; the bias has the same bound
    bound = 1 / math.sqrt(fan_in)
    w = m.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    b = m.bias.detach().numpy()
    assert np.abs(b).max() <= bound
    t = ConvTranspose2d(4, 6, (2, 3), groups=2)
    assert tuple(t.weight.shape) == (4, 3, 2, 3)
    assert np.abs(t.weight.detach().numpy()).max() <= 1 / math.sqrt(3 * 6)
    assert Conv2d(2, 2, 1, bias=False).bias is None


def test_module_constructor_errors():
    with pytest.raises(ValueError, match="in_channels=3 must be divisible by groups=2"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        Conv2d(3, 4, 3, stride=2, padding="same")


def test_check_gates_accepts_tied_maxima_but_catches_a_wrong_pool_backward(monkeypatch):
    x = _leaf(_arr(1, 2, 6, 6))
    w = _leaf(_arr(3, 2, 3, 3))

    def net(x, w):  # relu zeros tie inside pooling windows: a kink, not a wrong gradient
        h = C.max_pool2d(C.conv2d(x, w, padding=1).relu(), 2, ceil_mode=True)
        return C.avg_pool2d(h, 2, 1).sum()

    assert np.any(C.conv2d(x, w, padding=1).detach().numpy() < 0)
    report = cr.autograd.check_gates(net, (x, w))
    assert report.ok, str(report)
    good = C.MaxPool2d.backward

    def wrong(ctx, g, _g_idx=None):
        gx, none = good(ctx, g)
        return gx * 1.5, none

    monkeypatch.setattr(C.MaxPool2d, "backward", staticmethod(wrong))
    report = cr.autograd.check_gates(net, (x, w))
    assert not report.ok and "MaxPool2d" in str(report)


def test_hessian_through_conv_and_pool_matches_torch():
    torch = pytest.importorskip("torch")
    xa, wa = _arr(1, 1, 4, 4), _arr(2, 1, 2, 2)

    def f(w):
        return C.max_pool2d(C.conv2d(cr.tensor(xa), w, padding=1).tanh(), 2).pow(2).sum()

    def tf(w):
        F = torch.nn.functional
        return F.max_pool2d(F.conv2d(torch.tensor(xa), w, padding=1).tanh(), 2).pow(2).sum()

    h = cr.func.hessian(f)(cr.tensor(wa))
    th = torch.autograd.functional.hessian(tf, torch.tensor(wa))
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-9, atol=1e-10)
