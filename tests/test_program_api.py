"""PyTorch API that real programs reach for (found by running programs under ``chainrule run``),
each checked against torch where it is installed."""

from __future__ import annotations


import pytest

import chainrule as cr

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def test_inference_mode_records_no_graph_and_nests():
    x = cr.ones(2, requires_grad=True)
    assert not cr.is_inference_mode_enabled()
    with cr.inference_mode():
        assert cr.is_inference_mode_enabled() and not cr.is_grad_enabled()
        assert not (x * 2).requires_grad
        with cr.inference_mode(False):
            assert cr.is_inference_mode_enabled() and not cr.is_grad_enabled()
    assert cr.is_grad_enabled() and not cr.is_inference_mode_enabled()
    assert (x * 2).requires_grad


def test_inference_mode_as_decorator_with_and_without_parentheses():
    x = cr.ones(2, requires_grad=True)

    @cr.inference_mode()
    def f(t):
        return t * 2

    @cr.inference_mode
    def g(t):
        return t * 3

    def gen(t):
        yield t * 4

    assert not f(x).requires_grad and not g(x).requires_grad
    assert not next(cr.inference_mode()(gen)(x)).requires_grad
    assert cr.autograd.inference_mode is cr.inference_mode


@pytest.mark.skipif(torch is None, reason="needs torch")
@pytest.mark.parametrize("shape, k, dim, largest", [
    ((5,), 2, -1, True), ((4, 6), 3, 1, True), ((4, 6), 2, 0, False), ((3, 4, 5), 5, -1, True),
    ((3, 4), 0, 1, True),
])
def test_topk_matches_torch_with_gradient(shape, k, dim, largest):
    import numpy as np

    data = np.random.default_rng(0).permutation(int(np.prod(shape))).reshape(shape) / 7.0
    x = cr.tensor(data, requires_grad=True)
    tx = torch.tensor(data, requires_grad=True)
    v, i = cr.topk(x, k, dim=dim, largest=largest)
    tv, ti = torch.topk(tx, k, dim=dim, largest=largest)
    np.testing.assert_array_equal(v.detach().numpy(), tv.detach().numpy())
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    assert i.dtype == cr.int64 and type(v).__name__ == "Tensor"
    w = np.arange(v.numel(), dtype=np.float64).reshape(v.shape)
    (v * cr.tensor(w)).sum().backward()
    (tv * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    assert x.topk(k, dim, largest).indices.tolist() == ti.tolist()


def test_topk_ties_nan_and_bad_k():
    v, i = cr.topk(cr.tensor([1.0, float("nan"), 3.0, 3.0]), 3)
    assert i.tolist() == [1, 2, 3]
    assert cr.autograd.gradcheck(lambda t: cr.topk(t, 2, dim=0).values,
                                 (cr.tensor([[0.3, 2.0], [1.5, -1.0], [0.1, 0.7]],
                                            dtype=cr.float64, requires_grad=True),))
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        cr.topk(cr.ones(3), 4)


def test_backends_switches_and_accelerator_as_torch_on_a_cpu():
    import chainrule.backends as b

    assert b.cudnn.enabled and not b.cudnn.benchmark and not b.cudnn.deterministic
    b.cudnn.benchmark = True
    assert cr.backends.cudnn.benchmark
    b.cudnn.benchmark = False
    assert b.mps.is_available() is False and b.mps.is_built() is False
    assert isinstance(cr.backends.cuda.is_built(), bool)
    if not cr.cuda.is_available():
        assert cr.accelerator.is_available() is False
        assert cr.accelerator.current_accelerator() is None
    t = cr.ones(1)
    assert not (t.is_xpu or t.is_mps or t.is_xla or t.is_mkldnn or t.is_nested)


class _Net(cr.nn.Module):  # an importable class, as a program's own model
    def __init__(self):
        super().__init__()
        self.emb = cr.nn.Embedding(5, 4)
        self.rnn = cr.nn.LSTM(4, 4)
        self.out = cr.nn.Linear(4, 5)
        self.out.weight = self.emb.weight  # tied: stays one Parameter
        self.act = cr.nn.functional.relu
        self.tags = {"a", "b"}


def _net_globals():
    return [_Net, cr.nn.Embedding, cr.nn.LSTM, cr.nn.Linear, cr.nn.functional.relu]


def test_whole_module_round_trips_when_its_classes_are_allowlisted(tmp_path):
    cr.manual_seed(0)
    net = _Net()
    cr.save(net, tmp_path / "m.pt")
    with cr.serialization.safe_globals(_net_globals()):
        back = cr.load(tmp_path / "m.pt")
    assert cr.serialization.get_safe_globals() == []
    assert type(back) is _Net and back.act is cr.nn.functional.relu and back.tags == {"a", "b"}
    assert back.out.weight is back.emb.weight
    assert isinstance(back.out.weight, cr.nn.Parameter) and back.out.weight.requires_grad
    x = cr.tensor([[1, 2], [3, 4]])
    out, ref = back.out(back.rnn(back.emb(x))[0]), net.out(net.rnn(net.emb(x))[0])
    assert cr.equal(out, ref)
    assert list(back.state_dict()) == list(net.state_dict())


def test_loading_an_object_needs_its_class_allowlisted(tmp_path):
    cr.save({"model": _Net()}, tmp_path / "m.pt")
    with pytest.raises(cr.serialization.SerializationError, match=r"_Net.*add_safe_globals"):
        cr.load(tmp_path / "m.pt")
    cr.serialization.add_safe_globals([_Net])
    try:
        with pytest.raises(cr.serialization.SerializationError, match="Embedding"):
            cr.load(tmp_path / "m.pt")
    finally:
        cr.serialization.clear_safe_globals()


def test_local_classes_and_lambdas_are_refused_at_save(tmp_path):
    class Local:
        pass

    with pytest.raises(TypeError, match="cannot store an object of type Local"):
        cr.save(Local(), tmp_path / "x.pt")
    with pytest.raises(TypeError, match="cannot store an object of type function"):
        cr.save({"f": lambda: 0}, tmp_path / "x.pt")


def test_torch_module_paths():
    import chainrule.nn.modules.activation as act
    import chainrule.nn.modules.batchnorm as bn
    import chainrule.nn.modules.module as mod

    assert act.MultiheadAttention is cr.nn.MultiheadAttention
    assert bn.BatchNorm1d is cr.nn.BatchNorm1d and bn.SyncBatchNorm is cr.nn.SyncBatchNorm
    assert mod.Module is cr.nn.Module
