"""cr.optim.swa_utils vs torch.optim.swa_utils: averaged weights, buffers, update_bn, SWALR."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = [RNG.standard_normal((8, 3)) for _ in range(6)]
Y = [RNG.standard_normal((8, 1)) for _ in range(6)]


def _model(lib):
    nn = lib.nn
    lib.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1)).double()
    start = np.random.default_rng(1)
    with lib.no_grad():
        for p in m.parameters():
            p.copy_(lib.tensor(start.standard_normal(tuple(p.shape)), dtype=lib.float64))
    return m


def _train(lib, make_avg, steps=6):
    model = _model(lib)
    avg = make_avg(lib, model)
    opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    for x, y in zip(X[:steps], Y[:steps]):
        opt.zero_grad()
        loss = ((model(lib.tensor(x, dtype=lib.float64)) - lib.tensor(y, dtype=lib.float64))
                ** 2).mean()
        loss.backward()
        opt.step()
        avg.update_parameters(model)
    return avg


def _numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _assert_same_state(a, b):
    sa, sb = _numpy_state(a), _numpy_state(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-12, atol=1e-12, err_msg=k)


AVERAGERS = {
    "swa": lambda lib, m: lib.optim.swa_utils.AveragedModel(m),
    "swa-buffers": lambda lib, m: lib.optim.swa_utils.AveragedModel(m, use_buffers=True),
    "ema-multi": lambda lib, m: lib.optim.swa_utils.AveragedModel(
        m, multi_avg_fn=lib.optim.swa_utils.get_ema_multi_avg_fn(0.9)),
    "ema-one": lambda lib, m: lib.optim.swa_utils.AveragedModel(
        m, avg_fn=lib.optim.swa_utils.get_ema_avg_fn(0.8), use_buffers=True),
    "swa-multi": lambda lib, m: lib.optim.swa_utils.AveragedModel(
        m, multi_avg_fn=lib.optim.swa_utils.get_swa_multi_avg_fn()),
}


@pytest.mark.parametrize("kind", sorted(AVERAGERS))
def test_averaged_model_matches_torch(kind):
    ours, theirs = _train(cr, AVERAGERS[kind]), _train(torch, AVERAGERS[kind])
    _assert_same_state(ours, theirs)  # includes n_averaged and the module.* names
    assert int(ours.n_averaged.item()) == 6
    x = X[0]
    np.testing.assert_allclose(ours(cr.tensor(x, dtype=cr.float64)).detach().numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_update_bn_matches_torch():
    def run(lib):
        avg = _train(lib, AVERAGERS["swa"])
        loader = [(lib.tensor(x, dtype=lib.float64), None) for x in X]
        avg.eval()
        lib.optim.swa_utils.update_bn(loader, avg)
        assert not avg.training  # the mode is restored
        return avg

    _assert_same_state(run(cr), run(torch))


def test_averaging_function_errors_match_torch():
    for lib in (cr, torch):
        with pytest.raises(ValueError, match=r"Invalid decay value 1.5 provided"):
            lib.optim.swa_utils.get_ema_avg_fn(1.5)
        with pytest.raises(ValueError, match=r"Invalid decay value -0.1 provided"):
            lib.optim.swa_utils.get_ema_multi_avg_fn(-0.1)
        with pytest.raises(AssertionError, match="Only one of avg_fn and multi_avg_fn"):
            lib.optim.swa_utils.AveragedModel(lib.nn.Linear(2, 2), avg_fn=lambda *a: a[0],
                                              multi_avg_fn=lambda *a: None)


@pytest.mark.parametrize("kwargs", [
    {"swa_lr": 0.05}, {"swa_lr": [0.05, 0.01], "anneal_strategy": "linear", "anneal_epochs": 4},
    {"swa_lr": 0.02, "anneal_epochs": 0},
])
def test_swalr_sequence_matches_torch(kwargs):
    def run(lib):
        a = lib.zeros(2, requires_grad=True)
        b = lib.zeros(2, requires_grad=True)
        opt = lib.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.5)
        sched = lib.optim.swa_utils.SWALR(opt, **kwargs)
        out = [sched.get_last_lr()]
        for _ in range(14):
            opt.step()
            sched.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out, sched

    (ours, sched), (theirs, tsched) = run(cr), run(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    assert sorted(sched.state_dict()) == sorted(tsched.state_dict())


def test_swalr_argument_errors_match_torch():
    for lib in (cr, torch):
        opt = lib.optim.SGD([lib.zeros(2, requires_grad=True)], lr=0.1)
        with pytest.raises(ValueError, match="anneal_strategy must be one of 'cos' or 'linear'"):
            lib.optim.swa_utils.SWALR(opt, swa_lr=0.1, anneal_strategy="exp")
        with pytest.raises(ValueError, match="anneal_epochs must be equal or greater than 0"):
            lib.optim.swa_utils.SWALR(opt, swa_lr=0.1, anneal_epochs=-1)
