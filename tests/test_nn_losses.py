"""chainrule losses (functional and modules) vs torch and float64 finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(0)
REDUCTIONS = ["mean", "sum", "none"]


def _compare(cr_fn, torch_fn, inputs, consts=(), rtol=1e-10, atol=1e-12):
    """Run both on the same float64 data; compare values and gradients of every input."""
    torch = pytest.importorskip("torch")
    xs = [cr.tensor(a, requires_grad=True) for a in inputs]
    txs = [torch.tensor(a, requires_grad=True) for a in inputs]
    cs = [cr.tensor(c) if isinstance(c, np.ndarray) else c for c in consts]
    tcs = [torch.tensor(c) if isinstance(c, np.ndarray) else c for c in consts]
    y, ty = cr_fn(*xs, *cs), torch_fn(*txs, *tcs)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=atol)
    g = RNG.standard_normal(tuple(y.shape))
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for x, tx in zip(xs, txs):
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol * 10, atol=atol)
    return y


# ---- cross entropy ------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2), (2, 4, 2, 3), (4,)])
def test_cross_entropy_class_indices_fused(reduction, shape):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = RNG.integers(0, c, tshape)
    x = RNG.standard_normal(shape)
    y = _compare(lambda x, t: F.cross_entropy(x, t, reduction=reduction),
                 lambda x, t: TF.cross_entropy(x, t, reduction=reduction), [x], [t])
    if len(shape) == 2:
        # one fused gate (the rows kernel's where the table has one: CPU C loops, GPU)
        assert y.grad_fn.name() in ("CrossEntropyBackward0", "CrossEntropyRowsBackward0")
    xt = cr.tensor(x, requires_grad=True)
    assert gradcheck(lambda x: F.cross_entropy(x, cr.tensor(t), reduction=reduction), (xt,))
    assert gradgradcheck(lambda x: F.cross_entropy(x, cr.tensor(t), reduction=reduction), (xt,))
    del torch


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("use_weight", [False, True])
def test_cross_entropy_ignore_index_smoothing_weights_vs_torch(reduction, smoothing, use_weight):
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((7, 5))
    t = np.array([0, 4, -100, 2, 2, -100, 1])
    w = RNG.uniform(0.2, 2.0, 5) if use_weight else None
    kw = dict(ignore_index=-100, reduction=reduction, label_smoothing=smoothing)
    _compare(lambda x, t, *w: F.cross_entropy(x, t, *w, **kw),
             lambda x, t, *w: TF.cross_entropy(x, t, *w, **kw), [x],
             [t] + ([w] if use_weight else []))
    xt = cr.tensor(x, requires_grad=True)
    wt = [cr.tensor(w)] if use_weight else []
    assert gradcheck(lambda x: F.cross_entropy(x, cr.tensor(t), *wt, **kw), (xt,))


def test_cross_entropy_custom_ignore_index_and_k_dim_smoothing():
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((2, 3, 4))
    t = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])
    for kw in (dict(ignore_index=1), dict(label_smoothing=0.3, ignore_index=2),
               dict(label_smoothing=0.2, weight=None)):
        _compare(lambda x, t, kw=kw: F.cross_entropy(x, t, **kw),
                 lambda x, t, kw=kw: TF.cross_entropy(x, t, **kw), [x], [t])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets(reduction):
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((4, 3, 2))
    p = RNG.uniform(0, 1, (4, 3, 2))
    p /= p.sum(1, keepdims=True)
    w = RNG.uniform(0.5, 1.5, 3)
    for kw in (dict(), dict(label_smoothing=0.1), dict(weight=w)):
        ckw = {k: cr.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        import torch

        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        _compare(lambda x, p, ckw=ckw: F.cross_entropy(x, p, reduction=reduction, **ckw),
                 lambda x, p, tkw=tkw: TF.cross_entropy(x, p, reduction=reduction, **tkw),
                 [x], [p])


def test_cross_entropy_all_ignored_is_nan_like_torch():
    y = F.cross_entropy(cr.randn(2, 3), cr.tensor([-100, -100]))
    assert np.isnan(y.item())


def test_cross_entropy_float32_stays_float32_and_is_stable():
    x = cr.tensor([[1000.0, 0.0], [0.0, -1000.0]], requires_grad=True)
    y = F.cross_entropy(x, cr.tensor([1, 0]))
    assert y.dtype == cr.float32
    np.testing.assert_allclose(y.item(), 500.0, rtol=1e-6)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, -0.5], [0.0, 0.0]], atol=1e-6)


def test_cross_entropy_errors():
    x = cr.randn(3, 4)
    with pytest.raises(IndexError, match="Target 4 is out of bounds"):
        F.cross_entropy(x, cr.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"Expected target of shape \(3,\)"):
        F.cross_entropy(x, cr.tensor([0, 1]))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, cr.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(RuntimeError, match="label_smoothing must be between"):
        F.cross_entropy(x, cr.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="must match the input shape"):
        F.cross_entropy(x, cr.rand(3, 5))


def test_cross_entropy_loss_module_vs_torch():
    torch = pytest.importorskip("torch")
    w = RNG.uniform(0.5, 2, 4)
    m = nn.CrossEntropyLoss(weight=cr.tensor(w), ignore_index=3, label_smoothing=0.1)
    tm = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=3, label_smoothing=0.1)
    assert list(m.state_dict()) == list(tm.state_dict()) == ["weight"]
    _compare(m, tm, [RNG.standard_normal((5, 4))], [np.array([0, 3, 1, 2, 3])])


# ---- nll ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_vs_torch(reduction):
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((6, 3, 2))
    t = np.array([[0, 1], [2, -100], [1, 1], [0, 2], [-100, -100], [2, 0]])
    w = RNG.uniform(0.5, 2, 3)
    _compare(lambda x, t: F.nll_loss(x, t, reduction=reduction),
             lambda x, t: TF.nll_loss(x, t, reduction=reduction), [x], [t])
    _compare(lambda x, t, w: F.nll_loss(x, t, w, reduction=reduction),
             lambda x, t, w: TF.nll_loss(x, t, w, reduction=reduction), [x], [t, w])
    m = nn.NLLLoss(reduction=reduction)
    assert gradcheck(lambda x: m(x, cr.tensor(t)), (cr.tensor(x, requires_grad=True),))


# ---- regression losses --------------------------------------------------------------------------
REGRESSION = [
    ("mse", lambda F, x, y, r: F.mse_loss(x, y, reduction=r),
     lambda nn, r: nn.MSELoss(reduction=r)),
    ("l1", lambda F, x, y, r: F.l1_loss(x, y, reduction=r), lambda nn, r: nn.L1Loss(reduction=r)),
    ("smooth_l1", lambda F, x, y, r: F.smooth_l1_loss(x, y, reduction=r, beta=0.5),
     lambda nn, r: nn.SmoothL1Loss(reduction=r, beta=0.5)),
    ("smooth_l1_b0", lambda F, x, y, r: F.smooth_l1_loss(x, y, reduction=r, beta=0.0),
     lambda nn, r: nn.SmoothL1Loss(reduction=r, beta=0.0)),
    ("huber", lambda F, x, y, r: F.huber_loss(x, y, reduction=r, delta=0.7),
     lambda nn, r: nn.HuberLoss(reduction=r, delta=0.7)),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,fn,mod", REGRESSION, ids=[r[0] for r in REGRESSION])
def test_regression_losses_vs_torch_and_gradcheck(name, fn, mod, reduction):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((3, 4))
    y = x + RNG.choice([-1, 1], (3, 4)) * RNG.uniform(0.1, 1.5, (3, 4))  # away from kinks
    _compare(lambda a, b: fn(F, a, b, reduction), lambda a, b: fn(TF, a, b, reduction), [x, y])
    _compare(mod(nn, reduction), mod(torch.nn, reduction), [x, y])
    ins = (cr.tensor(x, requires_grad=True), cr.tensor(y, requires_grad=True))
    assert gradcheck(lambda a, b: fn(F, a, b, reduction), ins)


def test_mse_warns_on_broadcasting_target():
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(cr.randn(3, 1), cr.randn(3))


def test_legacy_size_average_reduce():
    x, y = cr.randn(3, 2), cr.randn(3, 2)
    np.testing.assert_allclose(F.mse_loss(x, y, size_average=False).item(),
                               F.mse_loss(x, y, reduction="sum").item(), rtol=1e-6)
    assert tuple(nn.L1Loss(reduce=False)(x, y).shape) == (3, 2)


POINTWISE = [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {"beta": 0.5}),
             ("huber_loss", {"delta": 0.7})]


@pytest.mark.parametrize("name,kw", POINTWISE, ids=[p[0] for p in POINTWISE])
def test_pointwise_losses_share_one_prologue(name, kw):
    """Each regression loss: torch's size warning pointing at the caller, the reduction's
    error naming the loss, a plain-list target, autocast's float32 result as torch's."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    fn, tfn = getattr(F, name), getattr(TF, name)
    with pytest.warns(UserWarning, match=f"{name}: Using a target size") as rec:
        fn(cr.randn(3, 1), cr.randn(3), **kw)
    assert rec[0].filename == __file__
    with pytest.raises(ValueError, match=f"^{name}: bad is not a valid value for reduction$"):
        fn(cr.randn(3), cr.randn(3), reduction="bad", **kw)
    x = RNG.standard_normal(4)
    t = [0.5, -1.0, 2.0, 0.25]
    np.testing.assert_allclose(fn(cr.tensor(x), t, reduction="none", **kw).numpy(),
                               tfn(torch.tensor(x), torch.tensor(t, dtype=torch.float64),
                                   reduction="none", **kw).numpy(), rtol=1e-12)
    xb = RNG.standard_normal((2, 3)).astype(np.float32)
    with cr.autocast("cpu", dtype=cr.bfloat16):
        out = fn(cr.tensor(xb).to(cr.bfloat16), cr.tensor(xb[::-1].copy()), **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tout = tfn(torch.tensor(xb).bfloat16(), torch.tensor(xb[::-1].copy()), **kw)
    assert str(out.dtype) == str(tout.dtype).replace("torch", "chainrule")
    np.testing.assert_allclose(out.item(), tout.item(), rtol=1e-6)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pointwise_losses_weight_vs_torch(name, reduction):
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((3, 4))
    y = x + RNG.choice([-1, 1], (3, 4)) * RNG.uniform(0.1, 1.5, (3, 4))
    w = RNG.uniform(0.5, 2, (3, 4))
    _compare(lambda a, b, w: getattr(F, name)(a, b, reduction=reduction, weight=w),
             lambda a, b, w: getattr(TF, name)(a, b, reduction=reduction, weight=w), [x, y], [w])
    ins = (cr.tensor(x, requires_grad=True), cr.tensor(y, requires_grad=True))
    assert gradcheck(lambda a, b: getattr(F, name)(a, b, reduction=reduction,
                                                   weight=cr.tensor(w)), ins)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss"])
def test_pointwise_losses_legacy_reduction_vs_torch(name):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    x, y = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    for sa, rd in [(False, None), (True, None), (None, False), (False, True)]:
        out = getattr(F, name)(cr.tensor(x), cr.tensor(y), sa, rd)
        tout = getattr(TF, name)(torch.tensor(x), torch.tensor(y), sa, rd)
        np.testing.assert_allclose(out.numpy(), tout.numpy(), rtol=1e-12)


def test_smooth_l1_negative_beta_after_the_reduction_check():
    with pytest.raises(RuntimeError, match="does not support negative values for beta"):
        F.smooth_l1_loss(cr.randn(3), cr.randn(3), beta=-1.0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):  # torch's order
        F.smooth_l1_loss(cr.randn(3), cr.randn(3), beta=-1.0, reduction="bad")


# ---- binary cross entropy -----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_vs_torch_and_gradcheck(reduction):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    p = RNG.uniform(0.05, 0.95, (4, 3))
    t = RNG.uniform(0, 1, (4, 3))
    w = RNG.uniform(0.5, 2, (4, 3))
    _compare(lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction),
             lambda p, t: TF.binary_cross_entropy(p, t, reduction=reduction), [p], [t])
    _compare(lambda p, t, w: F.binary_cross_entropy(p, t, w, reduction=reduction),
             lambda p, t, w: TF.binary_cross_entropy(p, t, w, reduction=reduction), [p], [t, w])
    _compare(nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), [p], [t])
    assert gradcheck(lambda p: F.binary_cross_entropy(p, cr.tensor(t), reduction=reduction),
                     (cr.tensor(p, requires_grad=True),))


def test_bce_clamps_log_at_minus_100_like_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    p = np.array([0.0, 1.0, 0.5])
    t = np.array([1.0, 0.0, 1.0])
    y = F.binary_cross_entropy(cr.tensor(p), cr.tensor(t), reduction="none")
    ty = TF.binary_cross_entropy(torch.tensor(p), torch.tensor(t), reduction="none")
    np.testing.assert_allclose(y.numpy(), ty.numpy())
    assert y.numpy()[0] == 100.0
    # saturated probabilities give finite gradients equal to torch's (its 1e-12 guard)
    x, tx = cr.tensor(p, requires_grad=True), torch.tensor(p, requires_grad=True)
    yt, tyt = cr.tensor(t, requires_grad=True), torch.tensor(t, requires_grad=True)
    F.binary_cross_entropy(x, yt, reduction="sum").backward()
    TF.binary_cross_entropy(tx, tyt, reduction="sum").backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-8)  # torch: 1e-12f
    np.testing.assert_allclose(yt.grad.numpy(), tyt.grad.numpy(), rtol=1e-10)
    assert np.isfinite(x.grad.numpy()).all()
    pg = cr.tensor(RNG.uniform(0.1, 0.9, 4), requires_grad=True)
    tg = cr.tensor(RNG.uniform(0, 1, 4), requires_grad=True)
    assert gradcheck(F.binary_cross_entropy, (pg, tg))
    assert gradgradcheck(F.binary_cross_entropy, (pg, tg))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(cr.tensor([1.5]), cr.tensor([1.0]))
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(cr.tensor([[0.5]]), cr.tensor([1.0]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_vs_torch_and_gradcheck(reduction):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    x = RNG.standard_normal((4, 3)) * 3
    t = RNG.uniform(0, 1, (4, 3))
    w = RNG.uniform(0.5, 2, (4, 3))
    pw = RNG.uniform(0.5, 3, 3)
    _compare(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=reduction),
             lambda x, t: TF.binary_cross_entropy_with_logits(x, t, reduction=reduction),
             [x], [t])
    _compare(lambda x, t, w, pw: F.binary_cross_entropy_with_logits(
                 x, t, w, reduction=reduction, pos_weight=pw),
             lambda x, t, w, pw: TF.binary_cross_entropy_with_logits(
                 x, t, w, reduction=reduction, pos_weight=pw), [x], [t, w, pw])
    m = nn.BCEWithLogitsLoss(pos_weight=cr.tensor(pw), reduction=reduction)
    tm = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw), reduction=reduction)
    assert list(m.state_dict()) == list(tm.state_dict())
    _compare(m, tm, [x], [t])
    ins = (cr.tensor(x, requires_grad=True), cr.tensor(t, requires_grad=True))
    assert gradcheck(lambda x, t: F.binary_cross_entropy_with_logits(
        x, t, reduction=reduction, pos_weight=cr.tensor(pw)), ins)


def test_bce_with_logits_is_stable_for_large_logits():
    x = cr.tensor([200.0, -200.0, 0.0], requires_grad=True)
    t = cr.tensor([0.0, 1.0, 1.0])
    y = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(y.detach().numpy(), [200.0, 200.0, np.log(2)], rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0, -0.5], atol=1e-6)


def test_kl_div_vs_torch():
    pytest.importorskip("torch")
    import torch.nn.functional as TF

    logq = np.log(RNG.dirichlet(np.ones(4), 3))
    p = RNG.dirichlet(np.ones(4), 3)
    for red in ("batchmean", "sum", "none"):
        _compare(lambda a, b, red=red: F.kl_div(a, b, reduction=red),
                 lambda a, b, red=red: TF.kl_div(a, b, reduction=red), [logq, p])
    _compare(lambda a, b: F.kl_div(a, b, reduction="sum", log_target=True),
             lambda a, b: TF.kl_div(a, b, reduction="sum", log_target=True), [logq, np.log(p)])


def test_loss_modules_train_a_classifier():
    cr.manual_seed(0)
    x = cr.randn(64, 2)
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(150):
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        with cr.no_grad():
            for p in model.parameters():
                p.sub_(p.grad * 0.5)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_pointwise_losses_weight_of_another_shape_raises_as_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    for name in ("mse_loss", "l1_loss", "huber_loss"):
        with pytest.raises(ValueError) as ours:
            getattr(F, name)(cr.randn(3, 2), cr.randn(3, 2), weight=cr.ones(2))
        with pytest.raises(ValueError) as theirs:
            getattr(TF, name)(torch.randn(3, 2), torch.randn(3, 2), weight=torch.ones(2))
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("call", [
    lambda m: m.nn.functional.mse_loss(m.ones(2), m.ones(2), size_average=False),
    lambda m: m.nn.functional.l1_loss(m.ones(2), m.ones(2), reduce=False),
    lambda m: m.nn.functional.smooth_l1_loss(m.ones(2), m.ones(2), True, True),
    lambda m: m.nn.functional.kl_div(m.ones(2), m.ones(2), reduce=True),
    lambda m: m.nn.functional.margin_ranking_loss(m.ones(2), m.ones(2), m.ones(2),
                                                  size_average=True),
    lambda m: m.nn.MSELoss(size_average=False),
    lambda m: m.nn.functional.mse_loss(m.ones(2), m.ones(2)),  # no legacy argument: quiet
])
def test_legacy_reduction_arguments_warn_as_torch(call):
    import warnings

    torch = pytest.importorskip("torch")
    seen = []
    for m in (cr, torch):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call(m)
        seen.append([str(w.message) for w in caught if "size_average" in str(w.message)])
    assert seen[0] == seen[1]
