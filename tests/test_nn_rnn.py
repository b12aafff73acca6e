"""RNN, LSTM, GRU and their cells: PyTorch's parameter names and layouts; identical weights give
the same outputs and gradients as torch; float64 finite differences; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck
from chainrule.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

RNG = np.random.default_rng(0)
KINDS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def _copy_params(cm, tm):
    import torch

    assert [n for n, _ in cm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    for (_, p), (_, tp) in zip(cm.named_parameters(), tm.named_parameters()):
        assert tuple(p.shape) == tuple(tp.shape)
        tp.data = torch.tensor(p.detach().numpy())


CONFIGS = [
    ({}, (5, 2, 3), False),
    ({"num_layers": 2, "bidirectional": True, "batch_first": True}, (2, 5, 3), True),
    ({"num_layers": 2, "bidirectional": True, "bias": False}, (5, 3), True),
    ({"num_layers": 3}, (4, 1, 3), True),
]


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw, shape, with_hx", CONFIGS,
                         ids=["plain", "2layer_bidir_batchfirst", "unbatched_nobias", "3layer"])
def test_recurrent_layers_match_torch(kind, kw, shape, with_hx):
    torch = pytest.importorskip("torch")
    cm = KINDS[kind](3, 4, dtype=cr.float64, **kw)
    tm = getattr(torch.nn, kind)(3, 4, dtype=torch.float64, **kw)
    _copy_params(cm, tm)
    assert repr(cm) == repr(tm)
    xa = RNG.standard_normal(shape)
    x, tx = cr.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
    cargs, targs, states = [x], [tx], []
    if with_hx:
        dirs = 2 if kw.get("bidirectional") else 1
        batch = () if len(shape) == 2 else (shape[0] if kw.get("batch_first") else shape[1],)
        hshape = (kw.get("num_layers", 1) * dirs,) + batch + (4,)
        pairs = [(cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True))
                 for a in (RNG.standard_normal(hshape) for _ in range(2 if kind == "LSTM" else 1))]
        states = pairs
        if kind == "LSTM":
            cargs.append(tuple(c for c, _ in pairs))
            targs.append(tuple(t for _, t in pairs))
        else:
            cargs.append(pairs[0][0])
            targs.append(pairs[0][1])
    out, hn = cm(*cargs)
    tout, thn = tm(*targs)
    if kind == "LSTM":
        assert isinstance(hn, tuple) and len(hn) == 2
        hn, thn = cr.cat(list(hn)), torch.cat(list(thn))
    assert tuple(out.shape) == tuple(tout.shape) and tuple(hn.shape) == tuple(thn.shape)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(hn.detach().numpy(), thn.detach().numpy(), atol=1e-12)
    go, gh = RNG.standard_normal(tuple(tout.shape)), RNG.standard_normal(tuple(thn.shape))
    ((out * cr.tensor(go)).sum() + (hn * cr.tensor(gh)).sum()).backward()
    ((tout * torch.tensor(go)).sum() + (thn * torch.tensor(gh)).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-12)
    for c, t in states:
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), atol=1e-12)
    for (name, p), tp in zip(cm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), atol=1e-12, err_msg=name)


def test_relu_rnn_matches_torch():
    torch = pytest.importorskip("torch")
    cm = RNN(3, 4, num_layers=2, nonlinearity="relu")
    tm = torch.nn.RNN(3, 4, num_layers=2, nonlinearity="relu")
    _copy_params(cm, tm)
    assert repr(cm) == repr(tm)
    xa = RNG.standard_normal((6, 2, 3)).astype(np.float32)
    out, hn = cm(cr.tensor(xa))
    tout, thn = tm(torch.tensor(xa))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hn.detach().numpy(), thn.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert out.dtype == cr.float32


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch(kind):
    torch = pytest.importorskip("torch")
    cls = {"RNNCell": RNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}[kind]
    cm, tm = cls(3, 4, dtype=cr.float64), getattr(torch.nn, kind)(3, 4, dtype=torch.float64)
    _copy_params(cm, tm)
    for shape in [(2, 3), (3,)]:
        xa = RNG.standard_normal(shape)
        x, tx = cr.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
        y, ty = cm(x), tm(tx)
        if kind == "LSTMCell":
            y, ty = y[0] * 2 + y[1], ty[0] * 2 + ty[1]
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=1e-12)
        y.sum().backward()
        ty.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-12)
        for p, tp in zip(cm.parameters(), tm.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), atol=1e-12)
            p.grad, tp.grad = None, None


def test_parameter_names_layouts_and_init():
    cr.manual_seed(0)
    m = LSTM(3, 5, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                         "bias_hh_l0_reverse"]
    assert len(names) == 16
    assert tuple(m.weight_ih_l0.shape) == (20, 3)
    assert tuple(m.weight_ih_l1.shape) == (20, 10)  # layer 1 reads both directions
    assert tuple(GRU(3, 5).weight_hh_l0.shape) == (15, 5)
    assert tuple(RNN(3, 5).bias_ih_l0.shape) == (5,)
    bound = 1 / math.sqrt(5)
    values = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    assert len(m.all_weights) == 4 and len(m.all_weights[0]) == 4
    assert [n for n, _ in GRU(2, 3, bias=False).named_parameters()] == ["weight_ih_l0",
                                                                          "weight_hh_l0"]


def test_lstm_gradcheck_float64():
    cr.manual_seed(1)
    m = LSTM(2, 3, num_layers=2, bidirectional=True, dtype=cr.float64)
    x = cr.tensor(RNG.standard_normal((3, 1, 2)), requires_grad=True)
    w = m.weight_hh_l1_reverse

    def fn(x, w):
        out, (h, c) = m(x)
        return out.sum(0) + c.sum(0).sum()

    assert gradcheck(fn, (x, w))


def test_gru_gradcheck_float64_batch_first_with_hx():
    cr.manual_seed(2)
    m = GRU(2, 3, batch_first=True, dtype=cr.float64)
    x = cr.tensor(RNG.standard_normal((2, 3, 2)), requires_grad=True)
    h0 = cr.tensor(RNG.standard_normal((1, 2, 3)), requires_grad=True)
    assert gradcheck(lambda x, h0, b: m(x, h0)[0], (x, h0, m.bias_hh_l0))


def test_dropout_between_layers_only_in_training():
    cr.manual_seed(0)
    m = GRU(3, 4, num_layers=2, dropout=0.5)
    x = cr.randn(5, 2, 3)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    m.dropout = 0.0
    c, _ = m(x)
    np.testing.assert_array_equal(a.detach().numpy(), c.detach().numpy())
    m.dropout = 0.5
    m.train()
    d, _ = m(x)
    assert not np.allclose(a.detach().numpy(), d.detach().numpy())
    single = GRU(3, 4, dropout=0.5)  # one layer: nothing between layers to drop
    single.eval()
    e, _ = single(x)
    single.train()
    f, _ = single(x)
    np.testing.assert_array_equal(e.detach().numpy(), f.detach().numpy())


def test_errors_name_the_layer_and_shapes():
    m = LSTM(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match=r"LSTM: input.size\(-1\) must be equal to input_size. "
                                           r"Expected 3, got 5"):
        m(cr.randn(2, 1, 5))
    with pytest.raises(RuntimeError, match=r"LSTM: Expected hx size \(2, 1, 4\), got \[1, 1, 4\]"):
        m(cr.randn(2, 1, 3), (cr.randn(1, 1, 4), cr.randn(2, 1, 4)))
    with pytest.raises(ValueError, match="GRU: Expected input to be 2D or 3D"):
        GRU(3, 4)(cr.randn(3))
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        RNN(3, 4, dropout=1.5)
    with pytest.raises(RuntimeError, match=r"LSTM: Expected sequence length to be larger than 0 "
                                           r"in RNN \(input of size \[0, 2, 3\]\)"):
        m(cr.randn(0, 2, 3))
    with pytest.raises(RuntimeError, match="GRU: Expected sequence length to be larger than 0"):
        GRU(3, 4, batch_first=True)(cr.randn(2, 0, 3))


def test_fused_cell_gates_gradcheck_and_gradgradcheck():
    from chainrule.autograd import gradgradcheck
    from chainrule.nn.modules.rnn import GRUCellGate, LSTMCellGate

    z = cr.tensor(RNG.standard_normal((2, 8)), requires_grad=True)
    c0 = cr.tensor(RNG.standard_normal((2, 2)), requires_grad=True)
    for pick in (lambda hc: hc, lambda hc: hc[0], lambda hc: hc[1]):  # h and c, only h, only c
        def lstm(z, c0, pick=pick):
            return pick(LSTMCellGate.apply(z, c0))

        assert gradcheck(lstm, (z, c0))
        assert gradgradcheck(lstm, (z, c0))
    a = cr.tensor(RNG.standard_normal((2, 6)), requires_grad=True)
    b = cr.tensor(RNG.standard_normal((2, 6)), requires_grad=True)
    h = cr.tensor(RNG.standard_normal((2, 2)), requires_grad=True)
    assert gradcheck(GRUCellGate.apply, (a, b, h))
    assert gradgradcheck(GRUCellGate.apply, (a, b, h))


def test_lstm_double_backward_matches_torch():
    torch = pytest.importorskip("torch")
    cm, tm = LSTM(2, 3, dtype=cr.float64), torch.nn.LSTM(2, 3, dtype=torch.float64)
    _copy_params(cm, tm)
    xa = RNG.standard_normal((4, 2, 2))
    x, tx = cr.tensor(xa, requires_grad=True), torch.tensor(xa, requires_grad=True)
    (gx,) = cr.autograd.grad(cm(x)[0].pow(2).sum(), [x], create_graph=True)
    (tgx,) = torch.autograd.grad(tm(tx)[0].pow(2).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(gx.detach().numpy(), tgx.detach().numpy(), atol=1e-12)
    gx.pow(2).sum().backward()
    tgx.pow(2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(cm.weight_hh_l0.grad.numpy(), tm.weight_hh_l0.grad.numpy(),
                               atol=1e-11)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN", "RNN_relu"])
@pytest.mark.parametrize("kw, shape, with_hx", CONFIGS,
                         ids=["plain", "2layer_bidir_batchfirst", "unbatched_nobias", "3layer"])
@pytest.mark.parametrize("dtype", [cr.float64, cr.float32])
def test_fused_layer_gates_match_per_step_graph(monkeypatch, kind, kw, shape, with_hx, dtype):
    from chainrule.nn.modules import rnn

    cr.manual_seed(3)
    extra = {"nonlinearity": "relu"} if kind == "RNN_relu" else {}
    m = KINDS[kind.split("_")[0]](3, 4, dtype=dtype, **kw, **extra)
    xa = RNG.standard_normal(shape)
    n_states = 2 if kind == "LSTM" else 1
    hx = None
    if with_hx:
        dirs = 2 if kw.get("bidirectional") else 1
        batch = () if len(shape) == 2 else (shape[0] if kw.get("batch_first") else shape[1],)
        hshape = (kw.get("num_layers", 1) * dirs,) + batch + (4,)
        hx = [RNG.standard_normal(hshape) for _ in range(n_states)]
    go = None
    results = []
    for fused in (True, False):
        monkeypatch.setattr(rnn, "FUSED", fused)
        m.zero_grad()
        x = cr.tensor(xa, dtype=dtype, requires_grad=True)
        states = None if hx is None else [cr.tensor(a, dtype=dtype, requires_grad=True)
                                          for a in hx]
        arg = states if states is None or kind != "LSTM" else tuple(states)
        out, finals = m(x, arg if kind == "LSTM" or arg is None else arg[0])
        finals = list(finals) if kind == "LSTM" else [finals]
        outs = [out, *finals]
        if go is None:
            go = [RNG.standard_normal(tuple(t.shape)) for t in outs]
        loss = sum((t * cr.tensor(g, dtype=dtype)).sum() for t, g in zip(outs, go))
        loss.backward()
        grads = [x.grad.numpy()] + ([s.grad.numpy() for s in states] if states else [])
        grads += [p.grad.numpy() for p in m.parameters()]
        results.append(([t.detach().numpy() for t in outs], grads))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == cr.float64 else dict(rtol=1e-5, atol=1e-6)
    (fo, fg), (so, sg) = results
    assert len(fg) == len(sg)
    for a, b in zip(fo + fg, so + sg):
        np.testing.assert_allclose(a, b, **tol)


def _graph_names(*roots):
    seen, todo = set(), [r.grad_fn for r in roots]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(n for n, _ in node.next_functions)
    return [n.name() for n in seen]


def test_fused_layer_gates_one_node_per_layer_and_direction():
    out, (h, c) = LSTM(3, 4, num_layers=2, bidirectional=True)(cr.randn(5, 2, 3))
    names = _graph_names(out, h, c)
    assert names.count("LSTMLayerGateBackward0") == 4
    assert "LSTMCellGateBackward0" not in names  # no per-step nodes
    names = _graph_names(*GRU(3, 4, num_layers=3)(cr.randn(5, 2, 3)))
    assert names.count("GRULayerGateBackward0") == 3 and "GRUCellGateBackward0" not in names
    names = _graph_names(*RNN(3, 4, bidirectional=True)(cr.randn(5, 2, 3)))
    assert names.count("RNNLayerGateBackward0") == 2 and "MmBackward0" not in names


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_fused_layers_gradcheck_and_gradgradcheck_float64(kind):
    from chainrule.autograd import gradgradcheck

    cr.manual_seed(4)
    m = KINDS[kind](2, 3, num_layers=2, bidirectional=True, dtype=cr.float64)
    x = cr.tensor(RNG.standard_normal((3, 2, 2)), requires_grad=True)
    h0 = cr.tensor(RNG.standard_normal((4, 2, 3)), requires_grad=True)
    c0 = cr.tensor(RNG.standard_normal((4, 2, 3)), requires_grad=True)

    def fn(x, h0, c0, w_hh, b_ih):
        if kind == "LSTM":
            out, (h, c) = m(x, (h0, c0))
        else:
            out, h = m(x, h0)
            c = c0
        return out.tanh().sum(0).sum(-1) + (h.sum(0) * c.sum(0)).sum(-1)

    inputs = (x, h0, c0, m.weight_hh_l0, m.bias_ih_l1_reverse)
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_fused_lstm_float32_matches_torch_on_the_benchmark_shape():
    torch = pytest.importorskip("torch")
    cm, tm = LSTM(16, 32, num_layers=2), torch.nn.LSTM(16, 32, num_layers=2)
    _copy_params(cm, tm)
    xa = RNG.standard_normal((12, 8, 16)).astype(np.float32)
    out, _ = cm(cr.tensor(xa))
    tout, _ = tm(torch.tensor(xa))
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    ta = RNG.standard_normal(tuple(tout.shape)).astype(np.float32)
    ((out - cr.tensor(ta)) ** 2).mean().backward()
    ((tout - torch.tensor(ta)) ** 2).mean().backward()
    for (name, p), tp in zip(cm.named_parameters(), tm.parameters()):
        assert p.grad.dtype == cr.float32
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)
