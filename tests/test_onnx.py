"""cr.onnx.export: the exported file runs in onnxruntime and agrees with chainrule."""

import io
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(model, args, **kw):
    f = io.BytesIO()
    cr.onnx.export(model, args, f, **kw)
    return ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])


def _agree(model, sess, names, *batches, atol=1e-5):
    """Run every batch through chainrule (eval, no grad) and the ONNX session; compare."""
    model.eval()
    for args in batches:
        with cr.no_grad():
            ref = model(*args)
        refs = [r for r in (ref if isinstance(ref, tuple) else (ref,)) if isinstance(r, cr.Tensor)]
        got = sess.run(None, {n: a.numpy() for n, a in zip(names, args)})
        assert len(got) >= 1
        for g, r in zip(got, refs):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-4, atol=atol)


def test_mlp_with_dynamic_batch(tmp_path):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8),
                          nn.GELU(), nn.Linear(8, 3), nn.LogSoftmax(-1))
    path = tmp_path / "mlp.onnx"
    cr.onnx.export(model, (cr.randn(2, 4),), str(path), input_names=["x"],
                   output_names=["logp"], dynamic_axes={"x": {0: "batch"}, "logp": {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["x"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {i.name for i in proto.graph.initializer} >= {"0.weight", "0.bias", "5.weight"}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _agree(model, sess, ["x"], (cr.randn(2, 4),), (cr.randn(7, 4),), (cr.randn(1, 4),))


def test_cnn_conv_pool_batchnorm_eval():
    cr.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2), nn.SiLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5))
    model.train()
    for _ in range(3):  # running statistics that are not the defaults
        model(cr.randn(4, 3, 16, 16) * 2 + 1)
    sess = _session(model, (cr.randn(2, 3, 16, 16),), input_names=["img"],
                    dynamic_axes={"img": [0]})
    assert model.training  # restored after the export
    _agree(model, sess, ["img"], (cr.randn(2, 3, 16, 16),), (cr.randn(5, 3, 16, 16),))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_layers(cls):
    cr.manual_seed(2)
    model = cls(4, 6, num_layers=2, batch_first=True)
    sess = _session(model, (cr.randn(3, 5, 4),), input_names=["seq"],
                    output_names=["out", "h_n"] + (["c_n"] if cls is nn.LSTM else []),
                    dynamic_axes={"seq": {0: "batch", 1: "time"}})
    model.eval()
    for x in (cr.randn(3, 5, 4), cr.randn(2, 9, 4)):
        with cr.no_grad():
            out, state = model(x)
        got = sess.run(None, {"seq": x.numpy()})
        np.testing.assert_allclose(got[0], out.numpy(), rtol=1e-4, atol=1e-5)
        states = state if isinstance(state, tuple) else (state,)
        for g, s in zip(got[1:], states):
            np.testing.assert_allclose(g, s.numpy(), rtol=1e-4, atol=1e-5)


class Classifier(nn.Module):
    """Embedding -> LSTM -> last step -> Linear (integer inputs, basic indexing)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens):
        out, _ = self.rnn(self.emb(tokens))
        return self.head(out[:, -1])


def test_embedding_lstm_classifier_with_integer_input():
    cr.manual_seed(3)
    model = Classifier()
    sess = _session(model, (cr.tensor([[1, 2, 3], [4, 5, 6]]),), input_names=["tokens"],
                    dynamic_axes={"tokens": {0: "b", 1: "t"}})
    _agree(model, sess, ["tokens"], (cr.tensor([[1, 2, 3], [4, 5, 6]]),),
           (cr.tensor([[7, 8, 9, 10, 11]]),))


class EncoderBlock(nn.Module):
    def __init__(self, d=16, heads=4, causal=False):
        super().__init__()
        self.att = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.causal = causal

    def forward(self, x):
        mask = None
        if self.causal:
            n = x.shape[1]
            mask = cr.triu(cr.full((n, n), float("-inf")), diagonal=1)
        h = self.ln1(x)
        x = x + self.att(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ff(self.ln2(x))


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_encoder_block(causal):
    cr.manual_seed(4)
    model = EncoderBlock(causal=causal)
    sess = _session(model, (cr.randn(2, 6, 16),), input_names=["x"],
                    dynamic_axes={"x": {0: "batch"} if causal else {0: "batch", 1: "seq"}})
    batches = [(cr.randn(2, 6, 16),), (cr.randn(3, 6, 16),)]
    if not causal:
        batches.append((cr.randn(1, 9, 16),))
    _agree(model, sess, ["x"], *batches)


def test_sdpa_and_functional_ops():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(8, 8)

        def forward(self, x):
            q = self.q(x).reshape(x.shape[0], x.shape[1], 2, 4).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, q, q)
            y = y.transpose(1, 2).reshape(x.shape[0], x.shape[1], 8)
            y = cr.cat([y, x.tanh(), (x * 2 - 1).sigmoid()], dim=-1)
            return F.softmax(y.sum(-1) / 3 + y.mean(-1), dim=-1)

    cr.manual_seed(5)
    model = Net()
    sess = _session(model, (cr.randn(2, 5, 8),), input_names=["x"])
    _agree(model, sess, ["x"], (cr.randn(2, 5, 8),))


def test_elementwise_reductions_and_shape_ops():
    class Net(nn.Module):
        def forward(self, x):
            p = x.abs() + 0.5
            a = p.log1p() + p.rsqrt() + x.expm1() * 0.1 + p.log2() - p.log10() + x.exp2() * 0.1
            b = x.cumsum(1) + x.flip(1) + x.tril() - x.triu(1) + x.clamp(-0.5, 0.5)
            c = F.pad(x, (1, 2), value=0.5)[:, 1:-2] + x.logsumexp(1, keepdim=True)
            d = x.max(1, keepdim=True)[0] - x.amin(1, keepdim=True) + x.prod(1, keepdim=True)
            d = d + x.std(1, keepdim=True)
            e = F.leaky_relu(x, 0.2) + F.elu(x) + F.softplus(x) + cr.maximum(x, p * 0.3)
            return (a + b + c + d + e).mean(-1) + x.sum(-1) * x.var(-1, keepdim=True).sum()

    cr.manual_seed(7)
    model = Net()
    try:
        sess = _session(model, (cr.randn(3, 4),), input_names=["x"])
    except cr.onnx.UnsupportedOperatorError as e:
        pytest.fail(str(e))
    _agree(model, sess, ["x"], (cr.randn(3, 4),), atol=1e-4)


def test_transformer_encoder_when_available():
    if not hasattr(nn, "TransformerEncoder"):
        pytest.skip("nn.TransformerEncoder is not in this chainrule yet")
    cr.manual_seed(6)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2)
    sess = _session(model, (cr.randn(2, 5, 16),), input_names=["x"],
                    dynamic_axes={"x": {0: "batch", 1: "seq"}})
    _agree(model, sess, ["x"], (cr.randn(2, 5, 16),), (cr.randn(3, 7, 16),))


def test_export_params_false_and_returned_proto():
    model = nn.Linear(3, 2)
    proto = cr.onnx.export(model, (cr.randn(1, 3),), None, export_params=False,
                           input_names=["x"])
    assert isinstance(proto, onnx.ModelProto)
    assert {i.name for i in proto.graph.input} == {"x", "weight", "bias"}
    assert not proto.graph.initializer
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = cr.randn(1, 3)
    got = sess.run(None, {"x": x.numpy(), "weight": model.weight.detach().numpy(),
                          "bias": model.bias.detach().numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5)


def test_opset_version_is_recorded():
    proto = cr.onnx.export(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), (cr.randn(1, 3),), None,
                           opset_version=18)
    assert proto.opset_import[0].version == 18


def test_unsupported_op_names_the_op():
    class Odd(nn.Module):
        def forward(self, x):
            return x.roll(1, 1)

    with pytest.raises(cr.onnx.errors.UnsupportedOperatorError, match="Roll"):
        cr.onnx.export(Odd(), (cr.randn(2, 3),), None)

    class Mine(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class UsesFunction(nn.Module):
        def forward(self, x):
            return Mine.apply(x)

    with pytest.raises(cr.onnx.UnsupportedOperatorError, match="Mine"):
        cr.onnx.export(UsesFunction(), (cr.randn(2, 3),), None)


def test_importable_without_onnx():
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import chainrule as cr, chainrule.onnx\n"
        "try:\n"
        "    cr.onnx.export(cr.nn.Linear(2, 2), (cr.randn(1, 2),), None)\n"
        "except ImportError as e:\n"
        "    assert \"chainrule[onnx]\" in str(e), e\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
