"""nn.Transformer and its encoder/decoder stacks against torch: parameter names and state_dict
layout, repr, deep-copied layers, initialisation structure, masks, padding, causal hints,
norm_first, activations, batch_first, float64 outputs and gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nn_module_check import compare, load_from_torch, same_repr

import chainrule as cr
import chainrule.nn as nn

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _pair(ctor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # enable_nested_tensor warnings, on both sides
        torch.manual_seed(0)
        t_mod = ctor(torch.nn).double()
        c_mod = ctor(nn).double()
    load_from_torch(c_mod, t_mod)
    return c_mod, t_mod


def _mask_pair(sz):
    return (nn.Transformer.generate_square_subsequent_mask(sz, dtype=cr.float64),
            torch.nn.Transformer.generate_square_subsequent_mask(sz, dtype=torch.float64))


def test_generate_square_subsequent_mask_matches_torch():
    c, t = _mask_pair(5)
    np.testing.assert_array_equal(c.numpy(), t.numpy())
    assert nn.Transformer.generate_square_subsequent_mask(3).dtype == cr.float32


def _acts(m):
    return {"relu": "relu", "gelu": "gelu", "fn": m.functional.silu, "module": m.GELU()}


@pytest.mark.parametrize("act", ["relu", "gelu", "fn", "module"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_matches_torch(act, norm_first, batch_first):
    def ctor(m):
        return m.Transformer(8, 2, 2, 2, 16, dropout=0.0, activation=_acts(m)[act],
                             norm_first=norm_first, batch_first=batch_first)

    c_mod, t_mod = _pair(ctor)
    same_repr(c_mod, t_mod)
    n, s, t = 3, 5, 4
    src = RNG.standard_normal((n, s, 8) if batch_first else (s, n, 8))
    tgt = RNG.standard_normal((n, t, 8) if batch_first else (t, n, 8))
    pad = np.zeros((n, s), bool)
    pad[0, 3:] = True
    pad[2, 4:] = True
    tpad = np.zeros((n, t), bool)
    tpad[1, 3:] = True
    c_mask, t_mask = _mask_pair(t)
    inputs = [src, tgt, None, None, None, pad, tpad, pad]
    c_kw = {"tgt_mask": c_mask}
    t_kw = {"tgt_mask": t_mask}
    c_in = [cr.tensor(a, requires_grad=a.dtype.kind == "f") if a is not None else None
            for a in inputs]
    t_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") if a is not None else None
            for a in inputs]
    c_out = c_mod(c_in[0], c_in[1], src_key_padding_mask=c_in[5], tgt_key_padding_mask=c_in[6],
                  memory_key_padding_mask=c_in[7], **c_kw)
    t_out = t_mod(t_in[0], t_in[1], src_key_padding_mask=t_in[5], tgt_key_padding_mask=t_in[6],
                  memory_key_padding_mask=t_in[7], **t_kw)
    np.testing.assert_allclose(c_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    w = RNG.standard_normal(tuple(t_out.shape))
    (c_out * cr.tensor(w)).sum().backward()
    (t_out * torch.tensor(w)).sum().backward()
    for i in (0, 1):
        np.testing.assert_allclose(c_in[i].grad.numpy(), t_in[i].grad.numpy(), rtol=1e-8,
                                   atol=1e-11)
    t_params = dict(t_mod.named_parameters())
    for name, p in c_mod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), t_params[name].grad.numpy(), rtol=1e-8,
                                   atol=1e-11, err_msg=name)


def test_encoder_layer_masks_and_causal_hint():
    c_mod, t_mod = _pair(lambda m: m.TransformerEncoderLayer(8, 2, 16, dropout=0.0))
    same_repr(c_mod, t_mod)
    src = RNG.standard_normal((5, 2, 8))
    bool_mask = np.triu(np.ones((5, 5), bool), 1)
    compare(c_mod, t_mod, [src, bool_mask], diff=[True, False])
    compare(c_mod, t_mod, [src], kwargs=None)
    c_mask, t_mask = _mask_pair(5)
    c = c_mod(cr.tensor(src), src_mask=c_mask, is_causal=True)
    t = t_mod(torch.tensor(src), src_mask=t_mask, is_causal=True)
    np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=1e-10)


def test_encoder_stack_is_deep_copies_of_the_layer():
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    assert list(enc.state_dict())[:2] == ["layers.0.self_attn.in_proj_weight",
                                          "layers.0.self_attn.in_proj_bias"]
    for i in range(3):
        assert enc.layers[i] is not layer
        for (n, p), q in zip(enc.layers[i].named_parameters(), layer.parameters()):
            assert p is not q
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(), err_msg=n)


def test_transformer_reinitialises_matrices_with_xavier():
    cr.manual_seed(0)
    model = nn.Transformer(16, 2, 2, 2, 32)
    w = model.encoder.layers[0].linear1.weight.detach().numpy()
    w1 = model.encoder.layers[1].linear1.weight.detach().numpy()
    assert not np.allclose(w, w1)  # each layer redrawn after the deep copy
    bound = np.sqrt(6.0 / (16 + 32))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    b = model.encoder.layers[0].self_attn.in_proj_bias.detach().numpy()
    assert (b == 0).all()  # 1-d parameters keep their layer's init


def test_transformer_state_dict_layout_equals_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.nn.Transformer(8, 2, 1, 2, 16, bias=False)
        c = nn.Transformer(8, 2, 1, 2, 16, bias=False)
    assert [(k, tuple(v.shape)) for k, v in c.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in t.state_dict().items()]


def test_eval_nested_path_zeroes_padded_positions_like_torch():
    def ctor(m):
        layer = m.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        return m.TransformerEncoder(layer, 2, norm=m.LayerNorm(8))

    c_mod, t_mod = _pair(ctor)
    c_mod.eval()
    t_mod.eval()
    src = RNG.standard_normal((3, 5, 8))
    pad = np.zeros((3, 5), bool)
    pad[0, 3:] = True
    pad[1, 1:] = True
    with torch.no_grad():
        t = t_mod(torch.tensor(src), src_key_padding_mask=torch.tensor(pad))
    with cr.no_grad():
        c = c_mod(cr.tensor(src), src_key_padding_mask=cr.tensor(pad))
    np.testing.assert_allclose(c.numpy(), t.numpy(), rtol=1e-10, atol=1e-12)
    # with gradients on, PyTorch takes the ordinary path: padded positions are computed
    t = t_mod(torch.tensor(src), src_key_padding_mask=torch.tensor(pad))
    c = c_mod(cr.tensor(src), src_key_padding_mask=cr.tensor(pad))
    np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_decoder_with_memory_mask_and_unbatched_input():
    c_mod, t_mod = _pair(lambda m: m.TransformerDecoder(
        m.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True), 2))
    tgt, mem = RNG.standard_normal((4, 8)), RNG.standard_normal((6, 8))
    mem_mask = RNG.standard_normal((4, 6))
    compare(c_mod, t_mod, [tgt, mem], kwargs=None)
    c = c_mod(cr.tensor(tgt), cr.tensor(mem), memory_mask=cr.tensor(mem_mask))
    t = t_mod(torch.tensor(tgt), torch.tensor(mem), memory_mask=torch.tensor(mem_mask))
    np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=1e-10)


def test_transformer_errors_match_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = nn.Transformer(8, 2, 1, 1, 16)
    with pytest.raises(RuntimeError, match="batch number"):
        c(cr.ones(3, 2, 8), cr.ones(3, 4, 8))
    with pytest.raises(RuntimeError, match="d_model"):
        c(cr.ones(3, 2, 6), cr.ones(3, 2, 6))
    with pytest.raises(RuntimeError, match="relu/gelu"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    layer = nn.TransformerEncoderLayer(8, 2, norm_first=True)
    with pytest.warns(UserWarning, match="norm_first was True"):
        nn.TransformerEncoder(layer, 1)


def test_training_dropout_is_active_and_eval_is_deterministic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.5)
    src, tgt = cr.randn(4, 2, 8), cr.randn(3, 2, 8)
    a, b = model(src, tgt), model(src, tgt)
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())
    model.eval()
    np.testing.assert_array_equal(model(src, tgt).detach().numpy(),
                                  model(src, tgt).detach().numpy())
