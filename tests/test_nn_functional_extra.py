"""The functional forms that the op registry does not reach: multi_head_attention_forward, the
deprecated upsample aliases, the *_with_indices variants, channel dropout and the helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

RNG = np.random.default_rng(0)


def _both(a, grad=False):
    return cr.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("bias_kv", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_multi_head_attention_forward_matches_torch(separate, bias_kv, need_weights, average):
    e, h, length, s, n = 8, 2, 3, 4, 2
    q, k, v = (RNG.standard_normal(shape) for shape in ((length, n, e), (s, n, e), (s, n, e)))
    arrays = {"in_w": RNG.standard_normal((3 * e, e)), "in_b": RNG.standard_normal(3 * e),
              "out_w": RNG.standard_normal((e, e)), "out_b": RNG.standard_normal(e),
              "qw": RNG.standard_normal((e, e)), "kw": RNG.standard_normal((e, e)),
              "vw": RNG.standard_normal((e, e)), "bk": RNG.standard_normal((1, 1, e)),
              "bv": RNG.standard_normal((1, 1, e))}
    mask = np.zeros((n, s), bool)
    mask[1, -1] = True
    attn = RNG.standard_normal((length, s))
    outs = []
    for lib, fn, wrap in ((cr, F, lambda a: cr.tensor(a, requires_grad=True)),
                          (torch, TF, lambda a: torch.tensor(a, requires_grad=True))):
        w = {key: wrap(val) for key, val in arrays.items()}
        qt, kt, vt = wrap(q), wrap(k), wrap(v)
        out, weights = fn.multi_head_attention_forward(
            qt, kt, vt, e, h, None if separate else w["in_w"], w["in_b"],
            w["bk"] if bias_kv else None, w["bv"] if bias_kv else None, bias_kv, 0.0,
            w["out_w"], w["out_b"], key_padding_mask=lib.tensor(mask),
            attn_mask=lib.tensor(attn), need_weights=need_weights,
            average_attn_weights=average, use_separate_proj_weight=separate,
            q_proj_weight=w["qw"], k_proj_weight=w["kw"], v_proj_weight=w["vw"])
        loss = (out ** 2).sum() + (0 if weights is None else (weights * 3).sum())
        loss.backward()
        outs.append((out, weights, [qt, kt, vt] + list(w.values())))
    (c_out, c_w, c_in), (t_out, t_w, t_in) = outs
    np.testing.assert_allclose(c_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-10)
    assert (c_w is None) == (t_w is None)
    if c_w is not None:
        np.testing.assert_allclose(c_w.detach().numpy(), t_w.detach().numpy(), rtol=1e-10,
                                   atol=1e-14)
    for a, b in zip(c_in, t_in):
        want = np.zeros(b.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_multi_head_attention_forward_errors():
    x = cr.ones(3, 1, 4)
    with pytest.raises(AssertionError, match="was expecting embedding dimension of 6"):
        F.multi_head_attention_forward(x, x, x, 6, 2, cr.ones(12, 4), None, None, None, False,
                                       0.0, cr.ones(4, 4), None)
    with pytest.raises(NotImplementedError, match="static_k"):
        F.multi_head_attention_forward(x, x, x, 4, 2, cr.ones(12, 4), None, None, None, False,
                                       0.0, cr.ones(4, 4), None, static_k=x)


@pytest.mark.parametrize("name,kw", [("upsample", {"scale_factor": 2, "mode": "nearest"}),
                                     ("upsample", {"size": 5, "mode": "bilinear",
                                                   "align_corners": False}),
                                     ("upsample_nearest", {"scale_factor": 3}),
                                     ("upsample_bilinear", {"size": (5, 7)})])
def test_deprecated_upsample_aliases_warn_and_match_torch(name, kw):
    cx, tx = _both(RNG.standard_normal((1, 2, 3, 4)), grad=True)
    with pytest.warns(UserWarning, match="deprecated"):
        c = getattr(F, name)(cx, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = getattr(TF, name)(tx, **kw)
    np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=1e-12)
    c.sum().backward()
    t.sum().backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name,args", [
    ("max_pool1d_with_indices", ((1, 2, 9), 3)), ("max_pool2d_with_indices", ((1, 2, 6, 5), 2)),
    ("max_pool3d_with_indices", ((1, 1, 4, 5, 4), 2)),
    ("adaptive_max_pool1d_with_indices", ((1, 2, 9), 4)),
    ("adaptive_max_pool2d_with_indices", ((1, 2, 6, 5), (3, 2))),
    ("adaptive_max_pool3d_with_indices", ((1, 1, 4, 5, 4), 2))])
def test_with_indices_variants_return_values_and_indices(name, args):
    shape, size = args
    cx, tx = _both(RNG.standard_normal(shape))
    c, ci = getattr(F, name)(cx, size)
    t, ti = getattr(TF, name)(tx, size)
    np.testing.assert_array_equal(c.numpy(), t.numpy())
    np.testing.assert_array_equal(ci.numpy(), ti.numpy())
    assert ci.dtype == cr.int64


def test_fractional_max_pool_with_indices_and_default_samples():
    cr.manual_seed(0)
    x = cr.tensor(RNG.standard_normal((2, 3, 8, 8)))
    y, idx = F.fractional_max_pool2d_with_indices(x, 2, output_size=4)
    assert tuple(y.shape) == (2, 3, 4, 4) and idx.dtype == cr.int64
    flat = x.reshape(2, 3, -1).numpy()
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.reshape(2, 3, -1).numpy(), 2),
                                  y.reshape(2, 3, -1).numpy())
    y3 = F.fractional_max_pool3d(cr.ones(1, 2, 6, 6, 6), 2, output_ratio=0.5)
    assert tuple(y3.shape) == (1, 2, 3, 3, 3)


def test_dropout3d_zeroes_whole_channels():
    cr.manual_seed(0)
    x = cr.ones(4, 8, 2, 3, 2)
    y = F.dropout3d(x, 0.5).numpy()
    per_channel = y.reshape(4, 8, -1)
    assert set(np.unique(per_channel.std(-1))) == {0.0}
    assert set(np.unique(y)) <= {0.0, 2.0} and (y == 0).any() and (y == 2).any()
    assert F.dropout3d(x, 0.5, training=False) is x
    with pytest.raises(RuntimeError):
        F.dropout3d(cr.ones(2, 3), 0.5)


def test_native_channel_shuffle_and_assert_int_or_pair():
    cx, tx = _both(RNG.standard_normal((1, 6, 2)))
    np.testing.assert_array_equal(F.native_channel_shuffle(cx, 3).numpy(),
                                  TF.native_channel_shuffle(tx, 3).numpy())
    F.assert_int_or_pair(3, "k", "{} bad")
    F.assert_int_or_pair((1, 2), "k", "{} bad")
    with pytest.raises(AssertionError, match="k bad"):
        F.assert_int_or_pair((1, 2, 3), "k", "{} bad")


def test_instance_norm_without_input_stats_uses_running_stats():
    x = RNG.standard_normal((2, 3, 4))
    rm, rv = RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)
    c = F.instance_norm(cr.tensor(x), cr.tensor(rm), cr.tensor(rv), use_input_stats=False)
    t = TF.instance_norm(torch.tensor(x), torch.tensor(rm), torch.tensor(rv),
                         use_input_stats=False)
    np.testing.assert_allclose(c.numpy(), t.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        F.instance_norm(cr.ones(2, 3, 1))
