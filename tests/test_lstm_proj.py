"""LSTM(proj_size=...) as torch's: parameter names, shapes and initialisation order, h = W_hr·
(o·tanh(c)), state sizes (h: proj_size, c: hidden_size), bidirectional, batch_first, packed
input, gradients, and torch's errors."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("bidirectional,batch_first", [(False, False), (True, True)])
def test_projected_lstm_matches_torch(bidirectional, batch_first) -> None:
    torch.manual_seed(0)
    cr.manual_seed(0)
    kw = dict(input_size=5, hidden_size=6, num_layers=2, proj_size=3, batch_first=batch_first,
              bidirectional=bidirectional, dtype=None)
    kw.pop("dtype")
    tl, cl = torch.nn.LSTM(**kw).double(), cr.nn.LSTM(**kw).double()
    assert list(cl.state_dict()) == list(tl.state_dict())
    for (n, cp), tp in zip(cl.named_parameters(), tl.parameters()):
        assert tuple(cp.shape) == tuple(tp.shape), n
        np.testing.assert_allclose(cp.detach().numpy(), tp.detach().numpy(), rtol=1e-7)  # init
    dirs = 2 if bidirectional else 1
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * dirs, 4 if batch_first else 3, 3, dtype=torch.float64)
    c0 = torch.randn(2 * dirs, 4 if batch_first else 3, 6, dtype=torch.float64)
    cx = cr.tensor(x.detach().numpy(), requires_grad=True)
    to, (th, tc) = tl(x, (h0, c0))
    co, (ch, cc) = cl(cx, (cr.tensor(h0.numpy()), cr.tensor(c0.numpy())))
    for a, b in ((co, to), (ch, th), (cc, tc)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10)
    (to.sum() + th.square().sum() + tc.sum()).backward()
    (co.sum() + ch.square().sum() + cc.sum()).backward()
    np.testing.assert_allclose(cx.grad.numpy(), x.grad.numpy(), rtol=1e-9)
    for cp, tp in zip(cl.parameters(), tl.parameters()):
        np.testing.assert_allclose(cp.grad.numpy(), tp.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert "proj_size=3" in repr(cl)


def test_projected_lstm_packed_and_errors() -> None:
    torch.manual_seed(1)
    cr.manual_seed(1)
    tl, cl = torch.nn.LSTM(4, 5, proj_size=2), cr.nn.LSTM(4, 5, proj_size=2)
    seqs = [torch.randn(n, 4) for n in (5, 3, 2)]
    tp = torch.nn.utils.rnn.pack_sequence(seqs)
    cp = cr.nn.utils.rnn.pack_sequence([cr.tensor(s.numpy()) for s in seqs])
    to, (th, tc) = tl(tp)
    co, (ch, cc) = cl(cp)
    np.testing.assert_allclose(co.data.detach().numpy(), to.data.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ch.detach().numpy(), th.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cc.detach().numpy(), tc.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        cr.nn.LSTM(4, 5, proj_size=5)
    with pytest.raises(ValueError, match="positive integer or zero"):
        cr.nn.LSTM(4, 5, proj_size=-1)
    with pytest.raises(RuntimeError, match=r"\(1, 2, 2\)"):  # h0 is (layers, N, proj_size)
        cl(cr.randn(3, 2, 4), (cr.zeros(1, 2, 5), cr.zeros(1, 2, 5)))
