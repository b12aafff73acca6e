"""chainrule.nn core: Module machinery, Parameter, containers, layers vs torch, init, clip_grad."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck


def _np(t):
    return np.asarray(t.detach().numpy())


def copy_to_torch(cr_module, torch_module):
    """Copy every parameter and buffer of a chainrule module into the same-named torch one."""
    import torch

    sd = cr_module.state_dict()
    tsd = torch_module.state_dict()
    assert list(sd) == list(tsd)
    with torch.no_grad():
        for k, v in sd.items():
            tsd[k].copy_(torch.from_numpy(np.array(v.numpy())))


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ---- Parameter -------------------------------------------------------------------------------
def test_parameter_is_leaf_tensor_requiring_grad():
    p = nn.Parameter(cr.ones(2, 3))
    assert isinstance(p, cr.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert "requires_grad=True" in repr(p)
    q = nn.Parameter(cr.ones(2), requires_grad=False)
    assert not q.requires_grad
    # ops on parameters give plain tensors, and gradients flow into the parameter
    y = (p * 2).sum()
    assert type(y) is cr.Tensor
    y.backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 2.0, np.float32))


def test_parameter_shares_data_and_deepcopies():
    t = cr.zeros(3)
    p = nn.Parameter(t)
    assert p._data is t._data
    p2 = copy.deepcopy(p)
    assert isinstance(p2, nn.Parameter) and p2.requires_grad
    assert p2._data is not p._data


def test_parameter_default_is_empty_float():
    p = nn.Parameter()
    assert tuple(p.shape) == (0,) and p.dtype == cr.float32


# ---- registration and walking ----------------------------------------------------------------
def test_named_parameters_and_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    m = TwoLayer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    seq = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.LayerNorm(4),
                        nn.Embedding(5, 4), nn.GroupNorm(2, 4), nn.Bilinear(2, 3, 4))
    tseq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                               torch.nn.LayerNorm(4), torch.nn.Embedding(5, 4),
                               torch.nn.GroupNorm(2, 4), torch.nn.Bilinear(2, 3, 4))
    assert list(seq.state_dict()) == list(tseq.state_dict())
    assert [n for n, _ in seq.named_parameters()] == [n for n, _ in tseq.named_parameters()]
    assert [n for n, _ in seq.named_buffers()] == [n for n, _ in tseq.named_buffers()]
    assert [n for n, _ in seq.named_modules()] == [n for n, _ in tseq.named_modules()]
    for k, v in seq.state_dict().items():
        assert tuple(v.shape) == tuple(tseq.state_dict()[k].shape), k
    assert seq.state_dict()["1.num_batches_tracked"].dtype == cr.int64


def test_state_dict_tensors_are_detached():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    assert isinstance(sd, OrderedDict)
    assert not sd["weight"].requires_grad and not isinstance(sd["weight"], nn.Parameter)
    kv = m.state_dict(keep_vars=True)
    assert kv["weight"] is m.weight


def test_shared_parameter_listed_once():
    a = nn.Linear(2, 2)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(m.parameters())) == 2
    assert len(list(m.modules())) == 3  # Sequential, Linear (once), ReLU


def test_setattr_registration_and_delattr():
    m = nn.Module()
    m.w = nn.Parameter(cr.ones(2))
    m.sub = nn.Linear(1, 1)
    m.register_buffer("buf", cr.zeros(2))
    m.register_buffer("tmp", cr.zeros(1), persistent=False)
    m.plain = 3
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"]
    assert list(m.state_dict()) == ["w", "buf", "sub.weight", "sub.bias"]
    assert [n for n, _ in m.named_buffers()] == ["buf", "tmp"]
    # a buffer may be reassigned with a tensor; a parameter slot refuses a plain tensor
    m.buf = cr.ones(2)
    assert m.buf.numpy()[0] == 1.0
    with pytest.raises(TypeError, match="parameter 'w'"):
        m.w = cr.ones(2)
    m.w = None
    assert m.w is None and list(m.parameters()) == list(m.sub.parameters())
    del m.sub
    assert "sub" not in m._modules
    with pytest.raises(AttributeError, match="sub"):
        m.sub  # noqa: B018
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", cr.zeros(1))
    with pytest.raises(TypeError, match="buffer 'x'"):
        m.register_buffer("x", 3)
    with pytest.raises(KeyError, match=r'contain "\."'):
        m.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="parameter 'p'"):
        m.register_parameter("p", cr.ones(1))


def test_children_modules_get_submodule_add_module():
    m = TwoLayer()
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert list(m.children())[0] is m.fc1
    outer = nn.Sequential(OrderedDict(block=m))
    assert outer.get_submodule("block.fc2") is m.fc2
    assert outer.get_parameter("block.fc2.bias") is m.fc2.bias
    with pytest.raises(AttributeError, match="nope"):
        outer.get_submodule("block.nope")
    outer.add_module("head", nn.Identity())
    assert [n for n, _ in outer.named_modules()] == [
        "", "block", "block.fc1", "block.act", "block.fc2", "head"]
    assert [n for n, _ in outer.named_parameters(prefix="model")][0] == "model.block.fc1.weight"
    assert list(outer.named_parameters(recurse=False)) == []


def test_train_eval_propagate():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2)))
    assert all(x.training for x in m.modules())
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m.train(False)
    assert not m[2][0].training


def test_zero_grad_and_requires_grad_():
    m = TwoLayer()
    m(cr.randn(3, 4)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_apply_visits_children_first():
    seen = []
    m = nn.Sequential(nn.Linear(1, 1), nn.Sequential(nn.ReLU()))
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]


def test_to_double_keeps_parameter_objects_and_converts_grads_and_buffers():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    params = list(m.parameters())
    m(cr.randn(4, 2)).sum().backward()
    assert m.double() is m
    assert list(m.parameters()) == params and all(a is b for a, b in zip(m.parameters(), params))
    assert all(p.dtype == cr.float64 for p in m.parameters())
    assert all(p.grad.dtype == cr.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == cr.float64
    assert m[1].num_batches_tracked.dtype == cr.int64  # integer buffers keep their dtype
    m.float()
    assert all(p.dtype == cr.float32 for p in m.parameters())
    m.to(cr.float16)
    assert m[0].weight.dtype == cr.float16
    m.half().to("cpu").cpu()
    assert m[0].weight.device == cr.device("cpu")
    with pytest.raises(TypeError, match="floating point"):
        m.to(cr.int64)


def test_load_state_dict_roundtrip_and_strict_errors():
    a, b = TwoLayer(), TwoLayer()
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(_np(p), _np(q))
    # loading copies values: later changes to a do not leak into b
    with cr.no_grad():
        a.fc1.weight.fill_(7.0)
    assert not np.any(_np(b.fc1.weight) == 7.0)

    sd = a.state_dict()
    del sd["fc2.bias"]
    sd["extra"] = cr.zeros(1)
    with pytest.raises(RuntimeError) as info:
        b.load_state_dict(sd)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict for TwoLayer:")
    assert 'Missing key(s) in state_dict: "fc2.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra".' in msg
    res = b.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc2.bias"] and res.unexpected_keys == ["extra"]

    sd = a.state_dict()
    sd["fc1.weight"] = cr.zeros(3, 3)
    with pytest.raises(RuntimeError, match="size mismatch for fc1.weight: copying a param with "
                                           "shape"):
        b.load_state_dict(sd)
    with pytest.raises(RuntimeError, match="size mismatch"):
        b.load_state_dict(sd, strict=False)  # size mismatches fail even when not strict


def test_load_state_dict_from_torch_and_batchnorm_buffers():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    tm(torch.randn(8, 3))  # move the running stats
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    m.load_state_dict({k: cr.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    np.testing.assert_allclose(_np(m[1].running_var), tm[1].running_var.numpy())
    assert m[1].num_batches_tracked.item() == 1


def test_forward_hooks_and_pre_hooks():
    m = nn.Linear(2, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: calls.append(("pre", args[0].shape)))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(("post", out.shape)))
    m(cr.randn(3, 2))
    assert calls == [("pre", (3, 2)), ("post", (3, 2))]
    h1.remove()
    h2.remove()
    m(cr.randn(1, 2))
    assert len(calls) == 2
    # hooks may replace the input and the output
    m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h = m.register_forward_hook(lambda mod, args, out: out + 100)
    y = m(cr.randn(1, 2))
    np.testing.assert_allclose(_np(y), _np(m.bias)[None] + 100, rtol=1e-6)
    h.remove()
    m.register_forward_hook(lambda mod, args, kwargs, out: out * 0, with_kwargs=True)
    assert not _np(m(cr.randn(1, 2))).any()


def test_call_pushes_module_scope_for_the_visualiser():
    from chainrule.autograd.grad_mode import state

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(state.scopes)
            return x * 2

    inner = Probe()
    outer = nn.Sequential(inner)
    x = cr.randn(2, requires_grad=True)
    y = outer(x)
    assert seen[0] == (outer, inner)
    assert state.scopes == ()
    assert y.grad_fn.scope == (outer, inner)


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Dropout(0.25), nn.GELU()),
                      nn.LayerNorm(8), nn.BatchNorm2d(3), nn.Embedding(10, 3, padding_idx=0),
                      nn.LeakyReLU(0.2), nn.Softmax(dim=1), nn.Flatten(), nn.Identity(),
                      nn.GroupNorm(2, 4), nn.Tanh(), nn.CrossEntropyLoss())
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                             torch.nn.Sequential(torch.nn.Dropout(0.25), torch.nn.GELU()),
                             torch.nn.LayerNorm(8), torch.nn.BatchNorm2d(3),
                             torch.nn.Embedding(10, 3, padding_idx=0), torch.nn.LeakyReLU(0.2),
                             torch.nn.Softmax(dim=1), torch.nn.Flatten(), torch.nn.Identity(),
                             torch.nn.GroupNorm(2, 4), torch.nn.Tanh(),
                             torch.nn.CrossEntropyLoss())
    assert repr(m) == repr(tm)
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()])
    tml = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.ReLU()])
    assert repr(ml) == repr(tml)


# ---- containers --------------------------------------------------------------------------------
def test_sequential_indexing_slicing_append_and_ordered_dict():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b
    s.append(c)
    assert len(s) == 3 and s[2] is c and list(s) == [a, b, c]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    x = cr.randn(5, 2)
    np.testing.assert_allclose(_np(s(x)), _np(c(b(a(x)))))
    del s[1]
    assert list(s) == [a, c] and list(s._modules) == ["0", "1"]
    named = nn.Sequential(OrderedDict([("enc", a), ("act", b)]))
    assert named.enc is a and list(named.state_dict()) == ["enc.weight", "enc.bias"]
    with pytest.raises(IndexError):
        s[5]  # noqa: B018


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1)])
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    assert len(ml) == 4 and isinstance(ml[-1], nn.Tanh)
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    md = nn.ModuleDict({"a": nn.Linear(1, 2), "b": nn.ReLU()})
    md["c"] = nn.Linear(2, 2)
    assert list(md.keys()) == ["a", "b", "c"] and "a" in md and len(md) == 3
    assert list(md.state_dict()) == ["a.weight", "a.bias", "c.weight", "c.bias"]
    assert md.pop("b").__class__ is nn.ReLU and len(md) == 2


def test_custom_module_trains_with_sgd_loop():
    cr.manual_seed(0)
    m = TwoLayer()
    x = cr.randn(32, 4)
    y = (x[:, 0] > 0).long()
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        m.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        with cr.no_grad():
            for p in m.parameters():
                p.sub_(p.grad * 0.5)
        first = first if first is not None else loss.item()
    assert loss.item() < 0.25 * first


# ---- layers vs torch --------------------------------------------------------------------------
LAYERS = [
    ("Linear", lambda M: M.Linear(4, 3), (5, 4)),
    ("LinearNoBias3d", lambda M: M.Linear(4, 3, bias=False), (2, 5, 4)),
    ("ReLU", lambda M: M.ReLU(), (3, 4)),
    ("LeakyReLU", lambda M: M.LeakyReLU(0.2), (3, 4)),
    ("GELU", lambda M: M.GELU(), (3, 4)),
    ("GELUtanh", lambda M: M.GELU(approximate="tanh"), (3, 4)),
    ("SiLU", lambda M: M.SiLU(), (3, 4)),
    ("ELU", lambda M: M.ELU(0.7), (3, 4)),
    ("Tanh", lambda M: M.Tanh(), (3, 4)),
    ("Sigmoid", lambda M: M.Sigmoid(), (3, 4)),
    ("Softplus", lambda M: M.Softplus(beta=2.0), (3, 4)),
    ("Softmax", lambda M: M.Softmax(dim=1), (3, 4)),
    ("LogSoftmax", lambda M: M.LogSoftmax(dim=-1), (3, 4)),
    ("Flatten", lambda M: M.Flatten(), (2, 3, 2)),
    ("Identity", lambda M: M.Identity(), (2, 3)),
    ("LayerNorm", lambda M: M.LayerNorm(4), (3, 4)),
    ("LayerNorm2d", lambda M: M.LayerNorm((2, 3)), (2, 2, 3)),
    ("LayerNormNoBias", lambda M: M.LayerNorm(4, bias=False), (3, 4)),
    ("GroupNorm", lambda M: M.GroupNorm(2, 4), (3, 4, 5)),
    ("BatchNorm1d", lambda M: M.BatchNorm1d(4), (6, 4)),
    ("BatchNorm1d3d", lambda M: M.BatchNorm1d(3), (4, 3, 5)),
    ("BatchNorm2d", lambda M: M.BatchNorm2d(3), (2, 3, 4, 4)),
    ("BatchNormNoAffine", lambda M: M.BatchNorm1d(4, affine=False), (5, 4)),
    ("MLP", lambda M: M.Sequential(M.Linear(4, 6), M.ReLU(), M.LayerNorm(6), M.Linear(6, 2)),
     (5, 4)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[p[0] for p in LAYERS])
def test_layer_matches_torch_train_and_eval(name, make, shape):
    torch = pytest.importorskip("torch")
    cr.manual_seed(1)
    m = make(nn).double()
    tm = make(torch.nn).double()
    with cr.no_grad():
        for p in m.parameters():  # non-trivial affine parameters
            p.copy_(cr.randn(*p.shape, dtype=cr.float64))
    copy_to_torch(m, tm)
    rng = np.random.default_rng(0)
    for mode in ("train", "eval"):
        getattr(m, mode)()
        getattr(tm, mode)()
        xn = rng.standard_normal(shape)
        x = cr.tensor(xn, requires_grad=True)
        tx = torch.tensor(xn, requires_grad=True)
        y, ty = m(x), tm(tx)
        gn = rng.standard_normal(tuple(y.shape))
        np.testing.assert_allclose(_np(y), ty.detach().numpy(), rtol=1e-7, atol=1e-9)
        m.zero_grad()
        tm.zero_grad()
        (y * cr.tensor(gn)).sum().backward()
        (ty * torch.tensor(gn)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-9)
        tparams = dict(tm.named_parameters())
        for pname, p in m.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tparams[pname].grad.numpy(), rtol=1e-6,
                                       atol=1e-9, err_msg=f"{name} {mode} {pname}")
        for bname, b in m.named_buffers():
            np.testing.assert_allclose(b.numpy(), tm.get_buffer(bname).numpy(), rtol=1e-7,
                                       err_msg=f"{name} {mode} buffer {bname}")


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[p[0] for p in LAYERS])
def test_layer_gradcheck_inputs_and_parameters(name, make, shape):
    cr.manual_seed(2)
    m = make(nn).double()
    params = [p for p in m.parameters()]
    names = [n for n, _ in m.named_parameters()]
    x = cr.randn(*shape, dtype=cr.float64, requires_grad=True)

    if "BatchNorm" in name:
        m.eval()
    assert gradcheck(lambda x, *ps: _call_with(m, names, ps, x), (x, *params))
    if "BatchNorm" in name:
        m.train()
        assert gradcheck(lambda x, *ps: _call_with(m, names, ps, x), (x, *params))


def _call_with(m, names, ps, x):
    """Run ``m(x)`` with its parameters temporarily replaced by the tensors ``ps``."""
    owners = []
    for n, p in zip(names, ps):
        mod_path, _, attr = n.rpartition(".")
        mod = m.get_submodule(mod_path)
        owners.append((mod, attr, mod._parameters[attr]))
        mod._parameters[attr] = p
    try:
        return m(x)
    finally:
        for mod, attr, old in owners:
            mod._parameters[attr] = old


def test_batchnorm_running_stats_track_torch_over_steps():
    torch = pytest.importorskip("torch")
    for momentum in (0.1, None):
        m = nn.BatchNorm2d(3, momentum=momentum)
        tm = torch.nn.BatchNorm2d(3, momentum=momentum)
        rng = np.random.default_rng(3)
        for _ in range(4):
            xn = (rng.standard_normal((4, 3, 2, 2)) * 3 + 1).astype(np.float32)
            m(cr.tensor(xn))
            tm(torch.tensor(xn))
        np.testing.assert_allclose(_np(m.running_mean), tm.running_mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(_np(m.running_var), tm.running_var.numpy(), rtol=1e-5)
        assert m.num_batches_tracked.item() == tm.num_batches_tracked.item() == 4
        m.eval()
        tm.eval()
        xn = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
        np.testing.assert_allclose(_np(m(cr.tensor(xn))), tm(torch.tensor(xn)).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    m = nn.BatchNorm1d(2, track_running_stats=False).eval()
    assert m.running_mean is None and "running_mean" not in m.state_dict()
    y = m(cr.tensor([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(_np(y), [[-1, -1], [1, 1]], atol=1e-4)


def test_batchnorm_errors():
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(cr.randn(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(cr.randn(1, 3))


def test_embedding_matches_torch_and_padding_row_gets_no_gradient():
    torch = pytest.importorskip("torch")
    m = nn.Embedding(6, 3, padding_idx=2)
    assert not _np(m.weight)[2].any()
    tm = torch.nn.Embedding(6, 3, padding_idx=2)
    copy_to_torch(m, tm)
    idx = np.array([[0, 2, 5], [2, 5, 5]])
    y = m(cr.tensor(idx))
    ty = tm(torch.tensor(idx))
    np.testing.assert_array_equal(_np(y), ty.detach().numpy())
    g = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    (y * cr.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-6)
    assert not m.weight.grad.numpy()[2].any()
    np.testing.assert_allclose(m.weight.grad.numpy()[5], g[0, 2] + g[1, 1] + g[1, 2], rtol=1e-6)
    with pytest.raises(IndexError, match="index out of range"):
        m(cr.tensor([6]))
    w = cr.randn(4, 2, dtype=cr.float64, requires_grad=True)
    assert gradcheck(lambda w: F.embedding(cr.tensor([[1, 0], [1, 2]]), w, padding_idx=3), (w,))
    pre = nn.Embedding.from_pretrained(cr.ones(3, 2))
    assert not pre.weight.requires_grad and tuple(pre(cr.tensor([1])).shape) == (1, 2)


def test_dropout_statistics_and_eval_identity():
    cr.manual_seed(0)
    d = nn.Dropout(p=0.3)
    x = cr.ones(200, 500)
    y = _np(d(x))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02
    d.eval()
    assert d(x) is x
    # gradient flows only through kept elements, scaled like the forward
    d.train()
    xg = cr.ones(50, 40, requires_grad=True)
    out = d(xg)
    out.sum().backward()
    np.testing.assert_array_equal(xg.grad.numpy(), _np(out))
    # the global generator drives it: same seed, same mask
    cr.manual_seed(5)
    a = _np(d(x))
    cr.manual_seed(5)
    np.testing.assert_array_equal(a, _np(d(x)))
    assert not _np(nn.Dropout(1.0)(x)).any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ---- init --------------------------------------------------------------------------------------
def test_linear_default_init_bounds():
    m = nn.Linear(400, 300)
    w, b = _np(m.weight), _np(m.bias)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=√5) gives exactly 1/√fan_in
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.9 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound


def test_init_functions():
    torch = pytest.importorskip("torch")
    assert nn.init.calculate_gain("relu") == torch.nn.init.calculate_gain("relu")
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2))
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("foo")
    cr.manual_seed(0)
    w = cr.empty(256, 512)
    assert nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu") is w
    assert abs(_np(w).std() - math.sqrt(2 / 256)) < 0.03 * math.sqrt(2 / 256)
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert np.abs(_np(w)).max() <= math.sqrt(6 / 512)
    nn.init.xavier_uniform_(w)
    assert np.abs(_np(w)).max() <= math.sqrt(6 / 768)
    nn.init.xavier_normal_(w, gain=2.0)
    assert abs(_np(w).std() - 2 * math.sqrt(2 / 768)) < 0.05 * 2 * math.sqrt(2 / 768)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(_np(w)).max() <= 0.5
    nn.init.orthogonal_(w)
    np.testing.assert_allclose(_np(w) @ _np(w).T, np.eye(256), atol=1e-5)
    p = nn.Parameter(cr.empty(3, 3))
    nn.init.eye_(p)
    np.testing.assert_array_equal(_np(p), np.eye(3))
    assert p.requires_grad and p.grad_fn is None
    nn.init.constant_(p, 0.5)
    assert (_np(p) == 0.5).all()
    nn.init.zeros_(p)
    assert not _np(p).any()
    nn.init.ones_(p)
    assert (_np(p) == 1).all()
    nn.init.uniform_(p, -0.1, 0.1)
    assert np.abs(_np(p)).max() <= 0.1
    nn.init.normal_(p, 3.0, 0.01)
    assert abs(_np(p).mean() - 3) < 0.05
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(cr.empty(3))


# ---- clip_grad and vector utils ----------------------------------------------------------------
def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for norm_type in (2.0, 1.0, float("inf"), 3.0):
        grads = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,)]]
        ps = [nn.Parameter(cr.zeros(*g.shape)) for g in grads]
        tps = [torch.nn.Parameter(torch.zeros(*g.shape)) for g in grads]
        for p, tp, g in zip(ps, tps, grads):
            p.grad = cr.tensor(g)
            tp.grad = torch.tensor(g)
        total = nn.utils.clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm=1.0, norm_type=norm_type)
        assert isinstance(total, cr.Tensor)
        np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-5)
        for p, tp in zip(ps, tps):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-5)
    # small gradients are left alone
    p = nn.Parameter(cr.zeros(2))
    p.grad = cr.tensor([0.1, 0.1])
    nn.utils.clip_grad_norm_(p, 10.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.1, 0.1])
    p.grad = cr.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_([nn.Parameter(cr.zeros(1))], 1.0).item() == 0.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_norm_and_2_norms_are_torchs_bit_for_bit(dtype):
    """torch sums squares in 256-bit lanes, one after another, and its clip coefficient is
    ``max_norm / (norm + 1e-6)`` as a Tensor's reflected division (reciprocal, then product):
    chainrule does the same, so the clipped gradients are torch's exactly (a chaotic training run
    grows any last-bit difference: word_language_model's Transformer at lr 20)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    shapes = [(11145, 64), (64, 64), (192,), (3,), (), (7, 1000, 3)]
    for trial in range(5):
        grads = [(rng.standard_normal(s) * rng.uniform(0.01, 5)).astype(dtype) for s in shapes]
        ps = [nn.Parameter(cr.zeros(g.shape, dtype=getattr(cr, dtype))) for g in grads]
        tps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, dtype)))
               for g in grads]
        for p, tp, g in zip(ps, tps, grads):
            p.grad = cr.tensor(g)
            tp.grad = torch.tensor(g)
        max_norm = [0.25, 1.0, 3.7, 1e3, 0.01][trial]
        total = nn.utils.clip_grad_norm_(ps, max_norm=max_norm)
        ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm=max_norm)
        assert total.dtype == getattr(cr, dtype) and total.item() == ttotal.item()
        for p, tp in zip(ps, tps):
            np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())
    x = rng.standard_normal((37, 1003)).astype(dtype)
    for kwargs in [{}, {"dim": -1}, {"dim": 1, "keepdim": True}, {"dim": (0, 1)}]:
        np.testing.assert_array_equal(cr.linalg.vector_norm(cr.tensor(x), **kwargs).numpy(),
                                      torch.linalg.vector_norm(torch.tensor(x), **kwargs).numpy())
    np.testing.assert_array_equal(cr.tensor(x).norm().numpy(), torch.tensor(x).norm().numpy())
    # other reductions (here over dim 0) still equal torch's to rounding
    np.testing.assert_allclose(cr.linalg.vector_norm(cr.tensor(x), dim=0).numpy(),
                               torch.linalg.vector_norm(torch.tensor(x), dim=0).numpy(),
                               rtol=1e-6 if dtype == "float32" else 1e-14)


def test_clip_grad_value_and_vector_conversion():
    p = nn.Parameter(cr.zeros(3))
    p.grad = cr.tensor([-2.0, 0.5, 3.0])
    nn.utils.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, 0.5, 1.0])
    m = TwoLayer()
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert tuple(vec.shape) == (sum(p.numel() for p in m.parameters()),)
    params = list(m.parameters())
    nn.utils.vector_to_parameters(cr.arange(vec.shape[0], dtype=cr.float32), m.parameters())
    assert all(a is b for a, b in zip(m.parameters(), params))
    np.testing.assert_array_equal(_np(m.fc1.weight).ravel()[:3], [0, 1, 2])
    assert _np(m.fc2.bias)[-1] == vec.shape[0] - 1
    with pytest.raises(TypeError, match="expected torch.Tensor"):
        nn.utils.vector_to_parameters([1.0], m.parameters())


def test_bilinear_and_unflatten_modules_vs_torch():
    torch = pytest.importorskip("torch")
    m = nn.Bilinear(3, 2, 4).double()
    tm = torch.nn.Bilinear(3, 2, 4).double()
    copy_to_torch(m, tm)
    a, b = RNG_NP.standard_normal((5, 3)), RNG_NP.standard_normal((5, 2))
    ca, cb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    y, ty = m(ca, cb), tm(ta, tb)
    np.testing.assert_allclose(_np(y), ty.detach().numpy(), rtol=1e-10)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ca.grad.numpy(), ta.grad.numpy(), rtol=1e-10)
    assert repr(m) == repr(tm)
    bound = 1 / math.sqrt(3)
    assert np.abs(_np(nn.Bilinear(3, 2, 50).weight)).max() <= bound
    u = nn.Unflatten(1, (2, 3))
    assert tuple(u(cr.zeros(4, 6)).shape) == (4, 2, 3)
    assert repr(u) == repr(torch.nn.Unflatten(1, (2, 3)))
    f = nn.Flatten(0, 1)
    assert tuple(f(cr.zeros(2, 3, 4)).shape) == (6, 4)


def test_parameter_of_integer_dtype_cannot_require_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(cr.tensor([1, 2]))
    p = nn.Parameter(cr.tensor([1, 2]), requires_grad=False)
    assert p.dtype == cr.int64 and not p.requires_grad


def test_sequential_insert_extend_pop_and_module_dict_update():
    s = nn.Sequential(nn.ReLU())
    s.insert(0, nn.Tanh())
    s.extend([nn.Sigmoid()])
    assert [type(m).__name__ for m in s] == ["Tanh", "ReLU", "Sigmoid"]
    assert isinstance(s.pop(1), nn.ReLU) and len(s) == 2
    assert list(s._modules) == ["0", "1"]
    s2 = s + nn.Sequential(nn.Identity())
    assert len(s2) == 3
    md = nn.ModuleDict([("x", nn.ReLU())])
    md.update({"y": nn.Tanh()})
    assert list(md) == ["x", "y"]
    with pytest.raises(TypeError, match="not a Module subclass"):
        md["z"] = 3


def test_forward_pre_hook_with_kwargs_and_prepend_order():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            return x * factor

    m = Scale()
    order = []
    m.register_forward_hook(lambda mod, a, out: order.append("second"))
    m.register_forward_hook(lambda mod, a, out: order.append("first"), prepend=True)
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"factor": 3.0}),
                                with_kwargs=True)
    y = m(cr.ones(2), factor=2.0)
    np.testing.assert_array_equal(_np(y), [3.0, 3.0])
    assert order == ["first", "second"]


def test_module_errors_name_what_went_wrong():
    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(cr.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        NoInit()
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(cr.ones(1))
    m = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope  # noqa: B018
    with pytest.raises(TypeError, match="dict-like"):
        m.load_state_dict([1, 2])


def test_state_dict_is_a_snapshot_view_and_load_assign():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    new = {k: v * 0 + 5 for k, v in sd.items()}
    m.load_state_dict(new, assign=True)
    assert (_np(m.weight) == 5).all() and isinstance(m.weight, nn.Parameter)
    assert m.weight.requires_grad


def test_module_scope_restored_after_an_exception():
    from chainrule.autograd.grad_mode import state

    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        nn.Sequential(Boom())(cr.ones(1))
    assert state.scopes == ()


RNG_NP = np.random.default_rng(7)
