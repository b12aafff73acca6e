"""Tensors made "like" a non-contiguous one keep its memory layout, as torch's (memory_format=
torch.preserve_format): random ``*_like`` draws and dropout noise, which fill in memory order,
then put each value where torch puts it; MultiheadAttention(batch_first=True) returns torch's
transposed layout, so the dropout after it (TransformerEncoderLayer) draws torch's mask."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F

torch = pytest.importorskip("torch")


def same(a, b) -> None:
    a, b = a.detach().numpy(), b.detach().numpy()
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a, b)


def layouts():
    """(chainrule, torch) pairs of the same values in different layouts."""
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    c = cr.tensor(x.numpy())
    return [
        (c, x),
        (c.transpose(0, 3), x.transpose(0, 3)),
        (c.permute(2, 0, 3, 1), x.permute(2, 0, 3, 1)),
        (c[:, :, ::2], x[:, :, ::2]),  # not dense: C order
        (c.transpose(1, 2)[:, ::2], x.transpose(1, 2)[:, ::2]),
        (c[0, :, :1].transpose(0, 2), x[0, :, :1].transpose(0, 2)),  # a size-1 dim
        (c[:1].expand(3, 3, 4, 5), x[:1].expand(3, 3, 4, 5)),
    ]  # overlapping: C order


@pytest.mark.parametrize("name", ["randn_like", "rand_like", "randint_like", "dropout"])
def test_random_like_fills_in_the_inputs_memory_order(name) -> None:
    for c, t in layouts():
        draws = {
            "randn_like": (cr.randn_like, torch.randn_like),
            "rand_like": (cr.rand_like, torch.rand_like),
            "randint_like": (
                lambda a: cr.randint_like(a, 3, 9),
                lambda a: torch.randint_like(a, 3, 9),
            ),
            "dropout": (lambda a: F.dropout(a, 0.4), lambda a: torch.nn.functional.dropout(a, 0.4)),
        }
        ours, theirs = draws[name]
        cr.manual_seed(7)
        torch.manual_seed(7)
        same(ours(c), theirs(t))
        np.testing.assert_array_equal(cr.get_rng_state().numpy(), torch.get_rng_state().numpy())


def test_like_memory_format_and_strides() -> None:
    for c, t in layouts():
        for fn in ("empty_like", "zeros_like", "ones_like"):
            assert getattr(cr, fn)(c).stride() == getattr(torch, fn)(t).stride(), (fn, t.stride())
        assert cr.full_like(c, 2.0).stride() == torch.full_like(t, 2.0).stride()
        assert (
            cr.zeros_like(c, memory_format=cr.contiguous_format).stride()
            == torch.zeros_like(t, memory_format=torch.contiguous_format).stride()
        )
    c, t = layouts()[0]
    assert (
        cr.empty_like(c, memory_format=cr.channels_last).stride()
        == torch.empty_like(t, memory_format=torch.channels_last).stride()
    )
    cr.manual_seed(1)
    torch.manual_seed(1)
    same(
        cr.randn_like(c, memory_format=cr.channels_last),
        torch.randn_like(t, memory_format=torch.channels_last),
    )
    cr.manual_seed(1)
    torch.manual_seed(1)
    same(cr.empty_like(c.transpose(1, 3)).normal_(), torch.empty_like(t.transpose(1, 3)).normal_())
    with pytest.raises(RuntimeError, match="rank 4"):
        cr.empty_like(c[0], memory_format=cr.channels_last)


def test_batch_first_attention_output_layout_and_encoder_dropout_like_torch() -> None:
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    cm = cr.nn.MultiheadAttention(8, 2, batch_first=True)
    cm.load_state_dict({k: cr.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    x = torch.randn(3, 5, 8)
    cx = cr.tensor(x.numpy())
    for nw in (True, False):
        assert (
            cm(cx, cx, cx, need_weights=nw)[0].stride() == tm(x, x, x, need_weights=nw)[0].stride()
        )
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True, norm_first=True)
    cl = cr.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True, norm_first=True)
    cl.load_state_dict({k: cr.tensor(v.numpy()) for k, v in tl.state_dict().items()})
    torch.manual_seed(4)
    cr.manual_seed(4)
    np.testing.assert_allclose(
        cl(cx).detach().numpy(), tl(x).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_embedding_and_index_add_with_a_strided_index_column() -> None:
    # a column of a token matrix (teacher forcing: tokens[:, i]) is a strided 1-D index
    tokens = torch.tensor([[1, 2, 3], [4, 1, 5], [1, 9, 0], [7, 1, 1]])
    ctokens = cr.tensor(tokens.numpy())
    tw = torch.nn.Embedding(10, 3)
    cw = cr.nn.Embedding(10, 3)
    cw.weight.data = cr.tensor(tw.weight.detach().numpy())
    tw(tokens[:, 1]).square().sum().backward()
    cw(ctokens[:, 1]).square().sum().backward()
    np.testing.assert_allclose(cw.weight.grad.numpy(), tw.weight.grad.numpy(), rtol=1e-6)
    out = cr.zeros(10, 2).index_add_(0, ctokens[:, 1], cr.ones(4, 2))
    same(out, torch.zeros(10, 2).index_add_(0, tokens[:, 1], torch.ones(4, 2)))


def test_attention_warns_on_mismatched_mask_types_like_torch() -> None:
    cm = cr.nn.MultiheadAttention(4, 2)
    tm = torch.nn.MultiheadAttention(4, 2)
    for mod, lib in ((cm, cr), (tm, torch)):
        x = lib.ones(3, 2, 4)
        kpm = lib.zeros(2, 3, dtype=lib.bool)
        with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
            mod(x, x, x, key_padding_mask=kpm, attn_mask=lib.zeros(3, 3))
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mod(x, x, x, key_padding_mask=kpm, attn_mask=lib.zeros(3, 3, dtype=lib.bool))
