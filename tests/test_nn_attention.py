"""scaled_dot_product_attention and MultiheadAttention: same outputs and gradients as torch with
identical weights and masks; float64 finite differences; errors."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.nn.attention import scaled_dot_product_attention as sdpa
from chainrule.nn.modules.attention import MultiheadAttention

RNG = np.random.default_rng(0)


def _pair(a):
    import torch

    return cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _kw(kw, lib):
    return {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


MASK = RNG.random((4, 6)) > 0.3
MASK_DEAD = MASK.copy()
MASK_DEAD[1] = False  # a query that may attend nowhere: PyTorch returns zeros, not NaN


@pytest.mark.parametrize("kw", [
    {},
    {"is_causal": True},
    {"attn_mask": MASK},
    {"attn_mask": MASK_DEAD},
    {"attn_mask": RNG.standard_normal((2, 1, 4, 6))},
    {"scale": 0.3},
], ids=["plain", "causal", "bool_mask", "dead_row", "float_mask", "scale"])
def test_sdpa_matches_torch(kw):
    torch = pytest.importorskip("torch")
    arrays = [RNG.standard_normal(s) for s in [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7)]]
    pairs = [_pair(a) for a in arrays]
    y = sdpa(*[c for c, _ in pairs], **_kw(kw, cr))
    ty = torch.nn.functional.scaled_dot_product_attention(*[t for _, t in pairs],
                                                          **_kw(kw, torch))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=1e-12)
    g = RNG.standard_normal(tuple(ty.shape))
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    for c, t in pairs:
        assert not np.isnan(c.grad.numpy()).any()
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), atol=1e-12)


def test_sdpa_grouped_query_attention_matches_torch():
    torch = pytest.importorskip("torch")
    arrays = [RNG.standard_normal(s) for s in [(2, 4, 3, 5), (2, 2, 6, 5), (2, 2, 6, 7)]]
    y = sdpa(*[cr.tensor(a) for a in arrays], enable_gqa=True)
    ty = torch.nn.functional.scaled_dot_product_attention(*[torch.tensor(a) for a in arrays],
                                                          enable_gqa=True)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), atol=1e-12)


def test_sdpa_gradcheck_and_gradgradcheck():
    q, k, v = (cr.tensor(RNG.standard_normal(s), requires_grad=True)
               for s in [(1, 3, 2), (1, 4, 2), (1, 4, 3)])
    mask = cr.tensor(RNG.random((3, 4)) > 0.4)

    def fn(q, k, v):
        return sdpa(q, k, v, attn_mask=mask)

    assert gradcheck(fn, (q, k, v))
    assert gradgradcheck(fn, (q, k, v))
    assert gradcheck(lambda q, k, v: sdpa(q, k, v, is_causal=True, scale=0.7), (q, k, v))


def test_sdpa_fused_gate_mask_grad_broadcast_and_float32():
    # the fused gate: a float mask that needs a gradient, key/value broadcast over the batch
    torch = pytest.importorskip("torch")
    arrays = [RNG.standard_normal(s) for s in [(2, 3, 4, 5), (3, 6, 5), (1, 3, 6, 7), (4, 6)]]
    arrays[3][1, :] = -np.inf  # a query that may attend nowhere
    for dtype, atol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        pairs = [_pair(a.astype(dtype)) for a in arrays]
        y = sdpa(*[c for c, _ in pairs[:3]], attn_mask=pairs[3][0])
        assert type(y.grad_fn).__name__ == "Attention"
        ty = torch.nn.functional.scaled_dot_product_attention(*[t for _, t in pairs[:3]],
                                                              attn_mask=pairs[3][1])
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=atol)
        g = RNG.standard_normal(tuple(ty.shape)).astype(dtype)
        (y * cr.tensor(g)).sum().backward()
        (ty * torch.tensor(g)).sum().backward()
        for c, t in pairs:
            np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), atol=atol)
    q, k, v, m = (cr.tensor(RNG.standard_normal(s), requires_grad=True)
                  for s in [(2, 3, 2), (4, 2), (4, 3), (3, 4)])
    assert gradcheck(lambda *a: sdpa(*a[:3], attn_mask=a[3], scale=0.6), (q, k, v, m))
    assert gradgradcheck(lambda *a: sdpa(*a[:3], attn_mask=a[3]), (q, k, v, m))


def test_sdpa_dropout_is_inverted_and_random():
    cr.manual_seed(0)
    q = cr.randn(1, 8, 4)
    v = cr.ones(1, 8, 4)
    out = sdpa(q, q, v, dropout_p=0.5).numpy()
    # weights rows sum to 1; dropped entries are 0 and kept ones are scaled by 2
    assert not np.allclose(out, 1.0)
    np.testing.assert_allclose(sdpa(q, q, v).numpy(), 1.0, rtol=1e-6)
    assert 0.5 < out.mean() < 1.5


def test_sdpa_errors():
    q = cr.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when "
                                           "is_causal=True"):
        sdpa(q, q, q, attn_mask=cr.ones(3, 3, dtype=cr.bool), is_causal=True)
    with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention: expected query.*"
                                           r"query \[2, 3, 4\], key \[2, 3, 5\]"):
        sdpa(q, cr.randn(2, 3, 5), q)
    with pytest.raises(RuntimeError, match="attn_mask of size \\[2, 2\\] does not broadcast"):
        sdpa(q, q, q, attn_mask=cr.zeros(2, 2))


# ---- MultiheadAttention -------------------------------------------------------------------------
KPM = np.array([[False, False, True, False, True], [False] * 5])


@pytest.mark.parametrize("ctor, call, L, S, N, unbatched", [
    ({}, {}, 4, 5, 2, False),
    ({"num_heads": 3, "batch_first": True}, {}, 4, 5, 2, False),
    ({"kdim": 3, "vdim": 5}, {"need_weights": False}, 4, 5, 2, False),
    ({"bias": False}, {"average_attn_weights": False}, 4, 5, 2, False),
    ({"add_bias_kv": True, "add_zero_attn": True}, {"key_padding_mask": KPM}, 4, 5, 2, False),
    ({}, {"key_padding_mask": KPM, "attn_mask": RNG.random((4, 5)) > 0.8}, 4, 5, 2, False),
    ({}, {"key_padding_mask": KPM, "attn_mask": RNG.standard_normal((4, 5)),
          "average_attn_weights": False}, 4, 5, 2, False),
    ({}, {"attn_mask": RNG.random((4, 4, 5)) > 0.8, "need_weights": False}, 4, 5, 2, False),
    ({}, {"key_padding_mask": KPM[0]}, 4, 5, 1, True),
    ({"batch_first": True}, {"attn_mask": np.triu(np.ones((4, 4), bool), 1), "is_causal": True},
     4, 4, 2, False),
], ids=["plain", "batch_first", "kdim_vdim", "nobias_heads", "bias_kv_zero_attn", "bool_masks",
        "float_mask", "3d_mask_sdpa", "unbatched", "causal"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_multihead_attention_matches_torch(ctor, call, L, S, N, unbatched):
    torch = pytest.importorskip("torch")
    ctor = {"embed_dim": 6, "num_heads": 2, **ctor}
    cm = MultiheadAttention(**ctor, dtype=cr.float64)
    tm = torch.nn.MultiheadAttention(**ctor, dtype=torch.float64)
    assert [n for n, _ in cm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    for p, tp in zip(cm.parameters(), tm.parameters()):
        assert tuple(p.shape) == tuple(tp.shape)
        tp.data = torch.tensor(p.detach().numpy())
    E, kd, vd = 6, ctor.get("kdim", 6), ctor.get("vdim", 6)

    def shape(length, d):
        if unbatched:
            return (length, d)
        return (N, length, d) if ctor.get("batch_first") else (length, N, d)

    pairs = [_pair(RNG.standard_normal(shape(n, d))) for n, d in [(L, E), (S, kd), (S, vd)]]
    out, w = cm(*[c for c, _ in pairs], **_kw(call, cr))
    tout, tw = tm(*[t for _, t in pairs], **_kw(call, torch))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), atol=1e-12)
    if tw is None:
        assert w is None
    else:
        np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), atol=1e-12)
    g = RNG.standard_normal(tuple(tout.shape))
    (out * cr.tensor(g)).sum().backward()
    (tout * torch.tensor(g)).sum().backward()
    for c, t in pairs:
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), atol=1e-12)
    for (name, p), tp in zip(cm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), atol=1e-12, err_msg=name)


@pytest.mark.parametrize("ctor, call, shape", [
    ({}, {}, (4, 2, 6)),
    ({"batch_first": True}, {"need_weights": False}, (2, 4, 6)),
    ({"batch_first": True, "add_bias_kv": True, "add_zero_attn": True}, {}, (2, 4, 6)),
    ({"add_bias_kv": True}, {"key_padding_mask": np.array([[False] * 3 + [True]] * 2)},
     (4, 2, 6)),
    ({"batch_first": True}, {}, (4, 6)),
], ids=["seq_first", "batch_first", "bias_kv_zero_attn", "bias_kv_seq_first", "unbatched"])
def test_multihead_self_attention_matches_torch(ctor, call, shape):
    # query is key is value: one packed in-projection GEMM, split into q, k, v
    torch = pytest.importorskip("torch")
    ctor = {"embed_dim": 6, "num_heads": 2, **ctor}
    cm = MultiheadAttention(**ctor, dtype=cr.float64)
    tm = torch.nn.MultiheadAttention(**ctor, dtype=torch.float64)
    for p, tp in zip(cm.parameters(), tm.parameters()):
        tp.data = torch.tensor(p.detach().numpy())
    x, tx = _pair(RNG.standard_normal(shape))
    out, w = cm(x, x, x, **_kw(call, cr))
    tout, tw = tm(tx, tx, tx, **_kw(call, torch))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), atol=1e-12)
    if tw is not None:
        np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), atol=1e-12)
    g = RNG.standard_normal(tuple(tout.shape))
    (out * cr.tensor(g)).sum().backward()
    (tout * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-12)
    for (name, p), tp in zip(cm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), atol=1e-12, err_msg=name)


def test_multihead_attention_init_and_layout():
    cr.manual_seed(0)
    m = MultiheadAttention(8, 2)
    assert tuple(m.in_proj_weight.shape) == (24, 8)
    assert tuple(m.out_proj.weight.shape) == (8, 8)
    np.testing.assert_array_equal(m.in_proj_bias.detach().numpy(), 0.0)
    np.testing.assert_array_equal(m.out_proj.bias.detach().numpy(), 0.0)
    bound = np.sqrt(6 / (24 + 8))  # xavier_uniform on (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    m2 = MultiheadAttention(8, 2, kdim=3, vdim=5)
    assert m2.in_proj_weight is None
    assert tuple(m2.k_proj_weight.shape) == (8, 3) and tuple(m2.v_proj_weight.shape) == (8, 5)


def test_multihead_attention_gradcheck():
    cr.manual_seed(0)
    m = MultiheadAttention(4, 2, dtype=cr.float64)
    x = cr.tensor(RNG.standard_normal((3, 1, 4)), requires_grad=True)
    mask = cr.tensor(np.array([[False, True, False]]))
    assert gradcheck(lambda x, w: m(x, x, x, key_padding_mask=mask)[0], (x, m.in_proj_weight))


def test_multihead_attention_dropout_only_in_training():
    cr.manual_seed(0)
    m = MultiheadAttention(4, 2, dropout=0.5)
    x = cr.randn(3, 2, 4)
    m.eval()
    a, _ = m(x, x, x)
    b, _ = m(x, x, x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    m.train()
    c, _ = m(x, x, x)
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())


def test_multihead_attention_errors():
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        MultiheadAttention(6, 4)
    m = MultiheadAttention(4, 2)
    x = cr.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        m(x, x, x, is_causal=True)
    with pytest.raises(RuntimeError, match=r"The shape of the 2D attn_mask is \[2, 3\], but "
                                           r"should be \(3, 3\)"):
        m(x, x, x, attn_mask=cr.zeros(2, 3))
    with pytest.raises(AssertionError, match="expecting key_padding_mask shape of \\(2, 3\\)"):
        m(x, x, x, key_padding_mask=cr.zeros(3, 2, dtype=cr.bool))
    with pytest.raises(AssertionError, match="was expecting embedding dimension of 4, but got 5"):
        m(cr.randn(3, 2, 5), x, x)
