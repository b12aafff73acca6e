"""chainrule.nn.functional: activations, linear, dropout, norms, embedding, one_hot vs torch and
float64 finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(0)


def _t(shape, lo=-2.0, hi=2.0):
    return cr.tensor(RNG.uniform(lo, hi, shape), dtype=cr.float64, requires_grad=True)


ACTIVATIONS = [
    ("relu", lambda F, x: F.relu(x)),
    ("relu6", lambda F, x: F.relu6(x * 4)),
    ("leaky_relu", lambda F, x: F.leaky_relu(x, 0.1)),
    ("gelu", lambda F, x: F.gelu(x)),
    ("gelu_tanh", lambda F, x: F.gelu(x, approximate="tanh")),
    ("silu", lambda F, x: F.silu(x)),
    ("elu", lambda F, x: F.elu(x, alpha=0.5)),
    ("selu", lambda F, x: F.selu(x)),
    ("celu", lambda F, x: F.celu(x, alpha=2.0)),
    ("mish", lambda F, x: F.mish(x)),
    ("tanh", lambda F, x: F.tanh(x)),
    ("sigmoid", lambda F, x: F.sigmoid(x)),
    ("softplus", lambda F, x: F.softplus(x, beta=2.0, threshold=3.0)),
    ("softsign", lambda F, x: F.softsign(x)),
    ("logsigmoid", lambda F, x: F.logsigmoid(x)),
    ("hardtanh", lambda F, x: F.hardtanh(x, -0.5, 0.5)),
    ("hardsigmoid", lambda F, x: F.hardsigmoid(x * 4)),
    ("hardswish", lambda F, x: F.hardswish(x * 4)),
    ("tanhshrink", lambda F, x: F.tanhshrink(x)),
    ("softmax", lambda F, x: F.softmax(x, dim=1)),
    ("softmin", lambda F, x: F.softmin(x, dim=0)),
    ("log_softmax", lambda F, x: F.log_softmax(x, dim=-1)),
    ("normalize", lambda F, x: F.normalize(x, dim=1)),
    ("normalize_p1", lambda F, x: F.normalize(x, p=1.0, dim=0)),
]


def _avoid_kinks(x: np.ndarray) -> np.ndarray:
    # keep finite-difference probes away from the non-differentiable points of relu & co.
    x = np.where(np.abs(x) < 0.05, 0.3, x)
    for k in (-0.5, 0.5, 1.5, -1.5, 0.75, -0.75):
        x = np.where(np.abs(x - k) < 0.05, k + 0.2, x)
    return x


@pytest.mark.parametrize("name,fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_torch(name, fn):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    xn = _avoid_kinks(RNG.uniform(-3, 3, (4, 5)))
    x = cr.tensor(xn, requires_grad=True)
    tx = torch.tensor(xn, requires_grad=True)
    y, ty = fn(F, x), fn(TF, tx)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal((4, 5))
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    # torch's hardsigmoid/hardswish backward uses the float32 constant 1.0f/6.0f
    rtol = 1e-7 if name.startswith("hards") else 1e-9
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("name,fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_gradcheck(name, fn):
    x = cr.tensor(_avoid_kinks(RNG.uniform(-3, 3, (3, 4))), requires_grad=True)
    assert gradcheck(lambda x: fn(F, x), (x,))


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "leaky_relu"])
def test_fused_activation_second_order(name):
    fn = dict(ACTIVATIONS)[name]
    x = cr.tensor(_avoid_kinks(RNG.uniform(-3, 3, (3, 4))), requires_grad=True)
    assert gradgradcheck(lambda x: fn(F, x), (x,))


def test_activations_keep_float32():
    x = cr.randn(3, 4)
    for name, fn in ACTIVATIONS:
        assert fn(F, x).dtype == cr.float32, name


def test_elu_no_overflow_warning_for_large_inputs():
    x = cr.tensor([1000.0, -1000.0], requires_grad=True)
    with np.errstate(over="raise"):
        y = F.elu(x)
        y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), [1000.0, -1.0])
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0])


# ---- linear / bilinear ------------------------------------------------------------------------
@pytest.mark.parametrize("xshape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_and_gradchecks(xshape, bias):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    xn, wn, bn = RNG.standard_normal(xshape), RNG.standard_normal((3, 4)), RNG.standard_normal(3)
    x, w = cr.tensor(xn, requires_grad=True), cr.tensor(wn, requires_grad=True)
    b = cr.tensor(bn, requires_grad=True) if bias else None
    tx, tw = torch.tensor(xn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    tb = torch.tensor(bn, requires_grad=True) if bias else None
    y, ty = F.linear(x, w, b), TF.linear(tx, tw, tb)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    g = RNG.standard_normal(tuple(y.shape))
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for a, ta in [(x, tx), (w, tw)] + ([(b, tb)] if bias else []):
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    inputs = (x, w, b) if bias else (x, w)
    assert gradcheck(F.linear, inputs)
    assert gradgradcheck(F.linear, inputs)


def test_linear_is_one_gate_and_partial_grads():
    x = cr.randn(3, 4)
    w = cr.randn(2, 4, requires_grad=True)
    y = F.linear(x, w, cr.zeros(2))
    assert y.grad_fn.name() == "LinearBackward0"
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.tile(x.numpy().sum(0), (2, 1)), rtol=1e-5)


def test_linear_errors_name_the_shapes():
    with pytest.raises(RuntimeError, match=r"linear\(\).*\(5, 3\).*\(2, 4\)"):
        F.linear(cr.randn(5, 3), cr.randn(2, 4))
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear(cr.randn(5, 4), cr.randn(2, 4, dtype=cr.float64))
    with pytest.raises(RuntimeError, match="bias"):
        F.linear(cr.randn(5, 4), cr.randn(2, 4), cr.randn(3))


def test_bilinear_matches_torch_and_gradchecks():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    a, b, w, bias = (RNG.standard_normal(s) for s in [(3, 2), (3, 4), (5, 2, 4), (5,)])
    y = F.bilinear(*(cr.tensor(v) for v in (a, b, w, bias)))
    ty = TF.bilinear(*(torch.tensor(v) for v in (a, b, w, bias)))
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-12)
    ins = tuple(cr.tensor(v, requires_grad=True) for v in (a, b, w, bias))
    assert gradcheck(F.bilinear, ins)
    with pytest.raises(RuntimeError, match="bilinear"):
        F.bilinear(cr.randn(3, 2), cr.randn(3, 3), cr.randn(5, 2, 4))


# ---- dropout ----------------------------------------------------------------------------------
def test_dropout_functional():
    cr.manual_seed(0)
    x = cr.ones(100, 100)
    assert F.dropout(x, 0.5, training=False) is x
    y = F.dropout(x, 0.5).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.03
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, -0.1)
    y2 = F.dropout2d(cr.ones(8, 50, 3, 3), 0.5).numpy()
    per_channel = y2.reshape(8, 50, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))


# ---- normalization ---------------------------------------------------------------------------
def test_batch_norm_functional_vs_torch_and_gradcheck():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    xn = RNG.standard_normal((4, 3, 5))
    rm, rv = RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)
    wn, bn = RNG.standard_normal(3), RNG.standard_normal(3)
    for training in (True, False):
        crm, crv = cr.tensor(rm), cr.tensor(rv)
        trm, trv = torch.tensor(rm), torch.tensor(rv)
        y = F.batch_norm(cr.tensor(xn), crm, crv, cr.tensor(wn), cr.tensor(bn), training, 0.2)
        ty = TF.batch_norm(torch.tensor(xn), trm, trv, torch.tensor(wn), torch.tensor(bn),
                           training, 0.2)
        np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(crm.numpy(), trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(crv.numpy(), trv.numpy(), rtol=1e-12)
        x, w, b = _t((4, 3, 2)), _t(3), _t(3)
        stats = (None, None) if training else (cr.tensor(rm), cr.tensor(rv))
        assert gradcheck(lambda x, w, b, s=stats, tr=training: F.batch_norm(x, *s, w, b, tr),
                         (x, w, b))
    bn = lambda x, w, b: F.batch_norm(x, None, None, w, b, True)  # noqa: E731
    assert gradgradcheck(bn, (_t((3, 2, 2)), _t(2), _t(2)))
    assert bn(_t((3, 2)), _t(2), None).grad_fn.name() == "BatchNormBackward0"
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements"):
        F.batch_norm(cr.randn(2, 3), cr.zeros(4), cr.ones(3))


def test_layer_norm_and_group_norm_vs_torch_and_gradcheck():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    xn = RNG.standard_normal((2, 4, 3))
    wn, bn = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    y = F.layer_norm(cr.tensor(xn), (4, 3), cr.tensor(wn), cr.tensor(bn), 1e-3)
    ty = TF.layer_norm(torch.tensor(xn), (4, 3), torch.tensor(wn), torch.tensor(bn), 1e-3)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, [3], w, b), (_t((2, 3)), _t(3), _t(3)))
    assert gradgradcheck(lambda x: F.layer_norm(x, 3), (_t((2, 3)),))
    assert gradgradcheck(lambda x, w, b: F.layer_norm(x, (2, 3), w, b),
                         (_t((2, 2, 3)), _t((2, 3)), _t((2, 3))))
    assert F.layer_norm(_t((2, 3)), [3], _t(3)).grad_fn.name() == "LayerNormBackward0"
    with pytest.raises(RuntimeError, match=r"normalized_shape=\[4\].*\[2, 3\]"):
        F.layer_norm(cr.randn(2, 3), [4])
    gw, gb = RNG.standard_normal(4), RNG.standard_normal(4)
    y = F.group_norm(cr.tensor(xn), 2, cr.tensor(gw), cr.tensor(gb))
    ty = TF.group_norm(torch.tensor(xn), 2, torch.tensor(gw), torch.tensor(gb))
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), (_t((2, 4, 2)), _t(4), _t(4)))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(cr.randn(2, 3), 2)


def test_cosine_similarity_vs_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    np.testing.assert_allclose(F.cosine_similarity(cr.tensor(a), cr.tensor(b)).numpy(),
                               TF.cosine_similarity(torch.tensor(a), torch.tensor(b)).numpy(),
                               rtol=1e-10)


# ---- embedding / one_hot / pad ------------------------------------------------------------------
def test_embedding_functional_vs_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    w = RNG.standard_normal((5, 3))
    idx = np.array([[4, 0], [1, 4]])
    np.testing.assert_array_equal(F.embedding(cr.tensor(idx), cr.tensor(w)).numpy(),
                                  TF.embedding(torch.tensor(idx), torch.tensor(w)).numpy())
    with pytest.raises(RuntimeError, match="Long, Int"):
        F.embedding(cr.tensor([0.5]), cr.tensor(w))
    with pytest.raises(IndexError, match="index out of range"):
        F.embedding(cr.tensor([-1]), cr.tensor(w))
    # second order through the lookup (padding row excluded)
    wt = cr.tensor(w, requires_grad=True)
    assert gradgradcheck(lambda w: F.embedding(cr.tensor([0, 2, 2]), w, padding_idx=4) ** 2,
                         (wt,))


def test_embedding_max_norm_renormalises_looked_up_rows():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    w = RNG.standard_normal((5, 3)) * 3
    cw, tw = cr.tensor(w), torch.tensor(w)
    y = F.embedding(cr.tensor([1, 3]), cw, max_norm=1.0)
    ty = TF.embedding(torch.tensor([1, 3]), tw, max_norm=1.0)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-6)
    np.testing.assert_allclose(cw.numpy(), tw.numpy(), rtol=1e-6)


def test_one_hot():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    idx = np.array([[0, 3], [2, 1]])
    y = F.one_hot(cr.tensor(idx))
    assert y.dtype == cr.int64 and tuple(y.shape) == (2, 2, 4)
    np.testing.assert_array_equal(y.numpy(), TF.one_hot(torch.tensor(idx)).numpy())
    assert tuple(F.one_hot(cr.tensor([1]), num_classes=5).shape) == (1, 5)
    with pytest.raises(RuntimeError, match="index tensor"):
        F.one_hot(cr.tensor([1.0]))
    with pytest.raises(RuntimeError, match="Class values"):
        F.one_hot(cr.tensor([5]), 3)


def test_pad_is_cr_pad():
    x = cr.ones(2, 3)
    assert tuple(F.pad(x, (1, 2)).shape) == (2, 6)
    assert F.pad is cr.pad


def test_gelu_float32_blocks_match_torch():
    # float32 GELU has its own blocked kernel (several blocks here, tails included)
    torch = pytest.importorskip("torch")
    xn = np.concatenate([np.linspace(-12, 12, 50001), RNG.standard_normal(39999) * 3])
    xn = xn.astype(np.float32).reshape(-1, 10)
    x = cr.tensor(xn, requires_grad=True)
    tx = torch.tensor(xn, requires_grad=True)
    y, ty = F.gelu(x), torch.nn.functional.gelu(tx)
    assert y.dtype == cr.float32
    # torch's own float32 erf is off by ~1e-6 around x = -3
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=2e-6)
    g = RNG.standard_normal(xn.shape).astype(np.float32)
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [cr.float32, cr.float64])
def test_gelu_of_a_zero_dim_op_result(dtype):
    # a 0-d op result is a NumPy scalar, not an array: it must take the CPU path
    t = cr.tensor(1.5, dtype=dtype, requires_grad=True)
    y = cr.nn.functional.gelu(t * 2)
    y.backward()
    x = 3.0
    cdf = 0.5 * (1 + math.erf(x / math.sqrt(2)))
    pdf = math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    assert abs(float(y) - x * cdf) < 1e-6
    assert abs(float(t.grad) - 2 * (cdf + x * pdf)) < 1e-5
