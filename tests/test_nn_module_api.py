"""Module API parity with torch: backward hooks, state-dict hooks and the _load_from_state_dict
protocol, extra state, assign loading, train() overrides, set_submodule, to_empty,
ParameterList/ParameterDict, and the remaining methods."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn

torch = pytest.importorskip("torch")


def _mlp(m):
    return m.Sequential(m.Linear(3, 4), m.Tanh(), m.Linear(4, 2))


def _paired_mlp():
    torch.manual_seed(0)
    t = _mlp(torch.nn).double()
    c = _mlp(nn).double()
    c.load_state_dict({k: cr.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    return c, t


# ---- backward hooks ----------------------------------------------------------------------------
def _record_hooks(mod, log, scale_input=None):
    def hook(module, grad_input, grad_output):
        log.append(("full", [None if g is None else g.detach().numpy().copy()
                             for g in grad_input],
                    [g.detach().numpy().copy() for g in grad_output]))
        if scale_input is not None:
            return tuple(None if g is None else g * scale_input for g in grad_input)
        return None

    def pre_hook(module, grad_output):
        log.append(("pre", [g.detach().numpy().copy() for g in grad_output]))
        return None

    mod.register_full_backward_pre_hook(pre_hook)
    return mod.register_full_backward_hook(hook)


@pytest.mark.parametrize("scale", [None, 3.0])
def test_full_backward_hooks_match_torch(scale):
    c, t = _paired_mlp()
    c_log, t_log = [], []
    _record_hooks(c[2], c_log, scale)
    _record_hooks(t[2], t_log, scale)
    x = np.random.default_rng(0).standard_normal((5, 3))
    cx, tx = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    c(cx).pow(2).sum().backward()
    t(tx).pow(2).sum().backward()
    assert [e[0] for e in c_log] == [e[0] for e in t_log] == ["pre", "full"]
    for a, b in zip(c_log, t_log):
        for ga, gb in zip(a[1:], b[1:]):
            for x1, x2 in zip(ga, gb):
                np.testing.assert_allclose(x1, x2, rtol=1e-12)
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    for (n, p), q in zip(c.named_parameters(), t.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12, err_msg=n)


def test_backward_hook_on_first_layer_without_input_grad_fires_at_outputs():
    c, t = _paired_mlp()
    c_log, t_log = [], []
    _record_hooks(c[0], c_log)
    _record_hooks(t[0], t_log)
    x = np.ones((2, 3))
    with pytest.warns(UserWarning, match="no inputs require gradients"):
        c(cr.tensor(x)).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t(torch.tensor(x)).sum().backward()
    assert [e[0] for e in c_log] == [e[0] for e in t_log]
    assert c_log[1][1] == [None] and t_log[1][1] == [None]
    np.testing.assert_allclose(c_log[1][2][0], t_log[1][2][0], rtol=1e-12)


def test_backward_hook_handle_removes_and_kinds_do_not_mix():
    lin = nn.Linear(2, 2)
    calls = []
    h = lin.register_full_backward_hook(lambda m, gi, go: calls.append(1))
    x = cr.ones(1, 2, requires_grad=True)
    lin(x).sum().backward()
    h.remove()
    lin(x).sum().backward()
    assert calls == [1]
    with pytest.raises(RuntimeError, match="both regular backward hooks and full"):
        lin.register_backward_hook(lambda *a: None)


def test_backward_pre_hook_can_replace_grad_output():
    lin = nn.Linear(2, 1, bias=False)
    lin.register_full_backward_pre_hook(lambda m, go: (go[0] * 10,))
    x = cr.ones(1, 2, requires_grad=True)
    lin(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 10 * lin.weight.detach().numpy(), rtol=1e-6)


# ---- state dict --------------------------------------------------------------------------------
def test_state_dict_metadata_prefix_keep_vars_and_hooks():
    c = _mlp(nn)
    sd = c.state_dict()
    assert list(sd._metadata) == ["", "0", "1", "2"]
    assert sd._metadata["0"] == {"version": 1}
    assert list(c.state_dict(prefix="m.")) == ["m.0.weight", "m.0.bias", "m.2.weight",
                                               "m.2.bias"]
    assert c.state_dict(keep_vars=True)["0.weight"] is c[0].weight
    assert not c.state_dict()["0.weight"].requires_grad
    seen = []
    c[0].register_state_dict_pre_hook(lambda m, prefix, keep_vars: seen.append(prefix))

    def post(m, d, prefix, meta):
        d[prefix + "extra"] = cr.ones(1)

    c[2].register_state_dict_post_hook(post)
    sd = c.state_dict()
    assert seen == ["0."] and "2.extra" in sd
    c[2]._register_state_dict_hook(lambda m, d, p, meta: OrderedDict(only=cr.zeros(1)))
    assert "only" not in c.state_dict()  # a child's replacement is not the parent's result
    c._register_state_dict_hook(lambda m, d, p, meta: OrderedDict(only=cr.zeros(1)))
    assert list(c.state_dict()) == ["only"]


def test_load_state_dict_reports_keys_and_runs_hooks():
    c = _mlp(nn)
    sd = c.state_dict()
    del sd["2.bias"]
    sd["2.unknown"] = cr.ones(1)
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "2.bias"'):
        c.load_state_dict(sd)
    res = c.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["2.bias"] and res.unexpected_keys == ["2.unknown"]
    assert repr(c.load_state_dict(c.state_dict())) == "<All keys matched successfully>"
    calls = []
    c[0].register_load_state_dict_pre_hook(lambda m, sd, prefix, *a: calls.append(
        (type(m).__name__, prefix)))
    c.register_load_state_dict_post_hook(lambda m, keys: calls.append(("post", len(keys[0]))))
    c.load_state_dict(c.state_dict())
    assert calls == [("Linear", "0."), ("post", 0)]


def test_load_state_dict_size_mismatch_and_non_tensor_errors_match_torch():
    c, t = _mlp(nn), _mlp(torch.nn)
    bad_c = dict(c.state_dict(), **{"0.weight": cr.ones(2, 2)})
    bad_t = dict(t.state_dict(), **{"0.weight": torch.ones(2, 2)})
    with pytest.raises(RuntimeError) as ce:
        c.load_state_dict(bad_c)
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(bad_t)
    assert str(ce.value).replace("chainrule", "torch") == str(te.value)


def test_load_state_dict_assign_puts_the_given_tensors_in_place():
    c = nn.Linear(2, 3)
    w = cr.ones(3, 2)
    c.load_state_dict({"weight": w, "bias": cr.zeros(3)}, assign=True)
    assert isinstance(c.weight, nn.Parameter) and c.weight.requires_grad
    np.testing.assert_array_equal(c.weight.detach().numpy(), np.ones((3, 2)))
    old = c.bias
    c.load_state_dict({"weight": cr.zeros(3, 2), "bias": cr.ones(3)})
    assert c.bias is old  # copied into, not replaced


def test_subclass_load_from_state_dict_override_is_used():
    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(cr.zeros(2))

        def _load_from_state_dict(self, state_dict, prefix, *args):
            if prefix + "old_w" in state_dict:
                state_dict[prefix + "w"] = state_dict.pop(prefix + "old_w")
            super()._load_from_state_dict(state_dict, prefix, *args)

    m = nn.Sequential(Renamed())
    m.load_state_dict({"0.old_w": cr.ones(2)})
    np.testing.assert_array_equal(m[0].w.detach().numpy(), [1, 1])


def test_extra_state_round_trips():
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)
            self.count = 0

        def get_extra_state(self):
            return {"count": self.count}

        def set_extra_state(self, state):
            self.count = state["count"]

    a, b = WithExtra(), WithExtra()
    a.count = 7
    sd = a.state_dict()
    assert "_extra_state" in sd
    b.load_state_dict(sd)
    assert b.count == 7
    with pytest.raises(RuntimeError, match="_extra_state"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "_extra_state"})
    with pytest.raises(RuntimeError, match="Unexpected"):
        nn.Linear(1, 1).load_state_dict(dict(nn.Linear(1, 1).state_dict(), _extra_state=1))


# ---- modes, structure, devices -----------------------------------------------------------------
def test_train_calls_each_childs_own_train():
    class FrozenBN(nn.BatchNorm1d):
        def train(self, mode=True):
            return super().train(False)

    m = nn.Sequential(nn.Linear(2, 2), FrozenBN(2))
    m.train()
    assert m.training and m[0].training and not m[1].training
    with pytest.raises(ValueError, match="boolean"):
        m.train(1)


def test_set_submodule_get_parameter_and_errors():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    m.set_submodule("1.0", nn.Tanh())
    assert isinstance(m[1][0], nn.Tanh)
    with pytest.raises(AttributeError, match="has no attribute `x`"):
        m.set_submodule("1.x", nn.ReLU(), strict=True)
    with pytest.raises(ValueError):
        m.set_submodule("", nn.ReLU())
    assert m.get_parameter("0.weight") is m[0].weight
    with pytest.raises(AttributeError):
        m.get_submodule("0.nothing")


def test_named_modules_prefix_and_duplicates():
    shared = nn.Linear(1, 1)
    m = nn.Sequential(shared, shared)
    assert [n for n, _ in m.named_modules()] == ["", "0"]
    assert [n for n, _ in m.named_modules(prefix="net", remove_duplicate=False)] == [
        "net", "net.0", "net.1"]
    assert len(list(m.named_parameters(remove_duplicate=False))) == 4


def test_to_empty_share_memory_compile_and_no_devices():
    m = nn.Linear(3, 2)
    w = m.weight
    assert m.to_empty(device="cpu") is m and m.weight is w and tuple(w.shape) == (2, 3)
    assert m.share_memory() is m and m.compile() is None
    for name in ("xpu", "ipu", "mtia"):
        with pytest.raises(RuntimeError, match=name):
            getattr(m, name)()
    m.to(cr.float64, non_blocking=True, memory_format=None)
    assert m.weight.dtype == cr.float64
    m.half()
    assert m.weight.dtype == cr.float16
    assert nn.Module.call_super_init is False and nn.Module.dump_patches is False


def test_forward_hook_always_call_runs_when_forward_raises():
    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    seen = []
    m = Boom()
    m.register_forward_hook(lambda mod, args, out: seen.append(out), always_call=True)
    with pytest.raises(ValueError, match="boom"):
        m(1)
    assert seen == [None]


def test_module_deepcopy_keeps_hooks_and_independent_parameters():
    m = nn.Linear(2, 2)
    m.register_forward_hook(lambda *a: None)
    m2 = copy.deepcopy(m)
    assert m2.weight is not m.weight and len(m2._forward_hooks) == 1
    np.testing.assert_array_equal(m2.weight.detach().numpy(), m.weight.detach().numpy())


# ---- ParameterList / ParameterDict -------------------------------------------------------------
def test_parameter_list_matches_torch():
    c = nn.ParameterList([cr.ones(2, 3), nn.Parameter(cr.zeros(4)), "text"])
    t = torch.nn.ParameterList([torch.ones(2, 3), torch.nn.Parameter(torch.zeros(4)), "text"])
    assert repr(c) == repr(t).replace("torch.", "chainrule.")
    assert list(dict(c.named_parameters())) == list(dict(t.named_parameters())) == ["0", "1"]
    assert isinstance(c[0], nn.Parameter) and c[2] == "text" and len(c) == 3
    c.append(cr.ones(1))
    c[0] = cr.zeros(2, 3)
    assert isinstance(c[0], nn.Parameter) and len(c[1:]) == 3
    assert list(c.state_dict()) == ["0", "1", "3"]
    with pytest.raises(IndexError):
        c[9]
    with pytest.raises(TypeError):
        c.extend(cr.ones(2))
    with pytest.raises(RuntimeError, match="should not be called"):
        c()


def test_parameter_dict_matches_torch():
    c = nn.ParameterDict({"b": cr.ones(2), "a": cr.zeros(3, 1)})
    t = torch.nn.ParameterDict({"b": torch.ones(2), "a": torch.zeros(3, 1)})
    assert repr(c) == repr(t).replace("torch.", "chainrule.")
    assert list(c.keys()) == list(t.keys()) == ["a", "b"]
    c["z"] = cr.ones(1)
    assert isinstance(c["z"], nn.Parameter) and "z" in c and len(c) == 3
    assert c.pop("z").shape == (1,) and "z" not in c
    assert c.get("q", 5) == 5 and c.setdefault("q", cr.ones(2)).shape == (2,)
    k, v = c.popitem()
    assert k == "q"
    merged = c | nn.ParameterDict({"y": cr.ones(1)})
    assert list(merged.keys()) == ["a", "b", "y"]
    assert list(c.state_dict()) == ["a", "b"]
    with pytest.raises(TypeError, match="not a string"):
        c[1] = cr.ones(1)
    with pytest.raises(ValueError, match="has length 3"):
        c.update([("a", 1, 2)])


def test_parameter_containers_train_with_an_optimizer():
    ps = nn.ParameterList([cr.ones(3)])
    opt = cr.optim.SGD(ps.parameters(), lr=0.5)
    (ps[0] * ps[0]).sum().backward()
    opt.step()
    np.testing.assert_allclose(ps[0].detach().numpy(), [0.0, 0.0, 0.0])


def test_container_is_deprecated_but_registers_modules():
    with pytest.warns(FutureWarning):
        c = nn.Container(a=nn.Linear(1, 1))
    assert list(dict(c.named_children())) == ["a"]


def test_factory_kwargs():
    assert nn.factory_kwargs({"device": "cpu", "factory_kwargs": {"dtype": cr.float64}}) == {
        "device": "cpu", "dtype": cr.float64}
    assert nn.factory_kwargs(None) == {}
    with pytest.raises(TypeError, match="unexpected kwargs"):
        nn.factory_kwargs({"bias": True})
    with pytest.raises(TypeError, match="specified twice"):
        nn.factory_kwargs({"dtype": 1, "factory_kwargs": {"dtype": 2}})


def test_data_parallel_wraps_with_module_prefix():
    inner = nn.Linear(2, 2)
    dp = nn.DataParallel(inner)
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    x = cr.ones(3, 2)
    np.testing.assert_array_equal(dp(x).detach().numpy(), inner(x).detach().numpy())


def test_sync_batchnorm_convert_replaces_batchnorms():
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Sequential(nn.BatchNorm1d(2)))
    w = m[1].weight
    s = nn.SyncBatchNorm.convert_sync_batchnorm(m)
    assert isinstance(s[1], nn.SyncBatchNorm) and isinstance(s[2][0], nn.SyncBatchNorm)
    assert s[1].weight is w
    with pytest.raises(ValueError, match="at least 2D"):
        s[1](cr.ones(3))
