"""cr.optim vs torch.optim: float64 trajectories, param groups, state dicts, errors."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.tensor import Tensor

SHAPES = [(3, 4), (5,), ()]
STEPS = 20


def _problem(seed: int = 0):
    """Start values, targets and positive curvatures of a separable quadratic loss."""
    rng = np.random.default_rng(seed)
    starts = [rng.standard_normal(s) for s in SHAPES]
    targets = [rng.standard_normal(s) for s in SHAPES]
    coefs = [rng.uniform(0.5, 2.0, s) for s in SHAPES]
    return starts, targets, coefs


def _loss(lib, params, targets, coefs):
    total = None
    for p, t, c in zip(params, targets, coefs):
        term = (((p - lib.tensor(t, dtype=lib.float64)) ** 2) * lib.tensor(c, dtype=lib.float64))
        term = term.sum()
        total = term if total is None else total + term
    return total


def _make(lib, name, kwargs, groups=None, seed=0):
    """Parameters (plus one that never gets a gradient) and an optimizer over them."""
    starts, targets, coefs = _problem(seed)
    params = [lib.tensor(a.copy(), dtype=lib.float64, requires_grad=True) for a in starts]
    unused = lib.tensor(np.ones(2), dtype=lib.float64, requires_grad=True)
    if groups is None:
        spec = params + [unused]
    else:
        spec = [dict(groups[0], params=params[:2]), dict(groups[1], params=params[2:] + [unused])]
    opt = getattr(lib.optim, name)(spec, **kwargs)
    return params, unused, opt, targets, coefs


def _run(opt, lib, params, targets, coefs, steps):
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(lib, params, targets, coefs).backward()
        opt.step()
        traj.append([np.array(p.detach().numpy(), copy=True) for p in params])
    return traj


def _trajectory(lib, name, kwargs, steps=STEPS, groups=None):
    params, unused, opt, targets, coefs = _make(lib, name, kwargs, groups)
    traj = _run(opt, lib, params, targets, coefs, steps)
    return traj, opt, unused


def _assert_same(traj_a, traj_b, tol=1e-10):
    assert len(traj_a) == len(traj_b)
    for i, (a, b) in enumerate(zip(traj_a, traj_b)):
        for j, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=f"step {i} param {j}")


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.01, "maximize": True}),
    ("SGD", {"lr": 0.01, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05,
             "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.7, "dampening": 0.3, "weight_decay": 0.1}),
    ("Adam", {}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "maximize": True}),
    ("Adam", {"lr": 0.05, "betas": (0.3, 0.9)}),
    ("Adam", {"lr": 0.05, "eps": 1e-3, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.05, "maximize": True, "betas": (0.5, 0.99)}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.3, "centered": True, "maximize": True}),
    ("RMSprop", {"lr": 0.01, "eps": 1e-3, "weight_decay": 0.2}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("Adagrad", {"lr": 0.1, "eps": 1e-3, "lr_decay": 0.05, "weight_decay": 0.05}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4}),
    ("Adadelta", {"lr": 0.5, "weight_decay": 0.1, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-3}),
    ("Adamax", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.05, "momentum_decay": 0.01, "betas": (0.8, 0.95)}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.05, "betas": (0.5, 0.6)}),  # ρₜ > 5 from step 6 on: both branches
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "maximize": True, "betas": (0.5, 0.6)}),
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 5}),  # averaging starts at step 6
    ("ASGD", {"lr": 0.05, "t0": 3, "weight_decay": 0.1, "maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}),
    ("Rprop", {"lr": 0.05, "maximize": True}),
    ("Adafactor", {}),
    ("Adafactor", {"lr": 0.05, "beta2_decay": -0.5, "eps": (1e-3, 1e-2), "d": 2.0}),
    ("Adafactor", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
]
# torch-only flags that choose an implementation, not the numbers: accepted, same trajectory
FLAG_CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "fused": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "foreach": True}),
    ("Adam", {"lr": 0.05, "fused": True}),
    ("Adam", {"lr": 0.05, "foreach": False}),
    ("AdamW", {"lr": 0.05, "fused": True, "amsgrad": True}),
    ("Adagrad", {"lr": 0.1, "fused": True}),
    ("RMSprop", {"lr": 0.01, "foreach": True}),
    ("NAdam", {"lr": 0.05, "foreach": True}),
    ("Adafactor", {"lr": 0.05, "foreach": True}),
]


def _assert_same_state_dict(sd, tsd, tol=1e-10):
    """Same groups, same per-parameter keys, and each value of the same kind, dtype and value."""
    import torch

    assert sd["param_groups"] == tsd["param_groups"]
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for idx, st in sd["state"].items():
        tst = tsd["state"][idx]
        assert sorted(st) == sorted(tst)
        for key, value in st.items():
            _assert_same_value(value, tst[key], torch, key, tol)


def _assert_same_value(value, theirs, torch, key, tol):
    if isinstance(theirs, torch.Tensor):
        assert isinstance(value, Tensor), key
        assert value.dtype.name == str(theirs.dtype).removeprefix("torch."), key
        assert tuple(value.shape) == tuple(theirs.shape), key
        np.testing.assert_allclose(value.numpy(), theirs.numpy(), rtol=tol, atol=tol,
                                   err_msg=key)
    elif isinstance(theirs, list):
        assert isinstance(value, list) and len(value) == len(theirs), key
        for v, t in zip(value, theirs):
            _assert_same_value(v, t, torch, key, tol)
    else:
        assert type(value) is type(theirs), key
        assert value == (theirs if theirs is None else pytest.approx(theirs, rel=tol)), key


@pytest.mark.parametrize("name,kwargs", CASES + FLAG_CASES,
                         ids=[f"{n}-{k}" for n, k in CASES + FLAG_CASES])
def test_trajectory_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    ours, opt, unused = _trajectory(cr, name, kwargs)
    theirs, topt, _ = _trajectory(torch, name, kwargs)
    _assert_same(ours, theirs)
    # the parameter without a gradient was skipped: unchanged, and (except Adagrad) no state
    np.testing.assert_array_equal(unused.detach().numpy(), np.ones(2))
    if name != "Adagrad":
        assert unused not in opt.state or not opt.state[unused]
    # the state dict has torch's layout: same groups, same per-parameter keys and values
    _assert_same_state_dict(opt.state_dict(), topt.state_dict())


TENSOR_LR = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam",
             "ASGD", "Rprop", "Adafactor"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", TENSOR_LR)
def test_tensor_lr_matches_torch(name, dtype):
    """A Tensor lr enters the update with its own dtype's rounding, as torch's 0-d math does."""
    torch = pytest.importorskip("torch")
    ours, _, _ = _trajectory(cr, name, {"lr": cr.tensor([0.01], dtype=getattr(cr, dtype))})
    theirs, _, _ = _trajectory(torch, name, {"lr": torch.tensor([0.01],
                                                                dtype=getattr(torch, dtype))})
    _assert_same(ours, theirs)


BIG_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "maximize": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.05, "maximize": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.1}),
    ("Adadelta", {"lr": 0.5, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.05, "betas": (0.5, 0.6), "weight_decay": 0.1,
               "decoupled_weight_decay": True}),
    ("ASGD", {"lr": 0.05, "t0": 2, "weight_decay": 0.1}),
    ("Rprop", {"lr": 0.05, "maximize": True}),
]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("name,kwargs", BIG_CASES, ids=[f"{n}-{k}" for n, k in BIG_CASES])
def test_large_parameters_match_torch(name, kwargs, order):
    """Big updates run block by block (C order) or whole (F order): same numbers as torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    start = np.asarray(rng.standard_normal((301, 503)), order=order)  # ~2.3 blocks of 65536
    target = rng.standard_normal((301, 503))

    def run(lib):
        if lib is cr:
            p = cr.from_numpy(start.copy(order="K")).requires_grad_()
            assert p._data.flags.f_contiguous == (order == "F")
        else:
            p = torch.tensor(start, requires_grad=True)
        t = lib.tensor(target, dtype=lib.float64)
        opt = getattr(lib.optim, name)([p], **kwargs)
        out = []
        for _ in range(5):
            opt.zero_grad()
            ((p - t) ** 2).sum().backward()
            opt.step()
            out.append([np.array(p.detach().numpy(), copy=True)])
        return out

    _assert_same(run(cr), run(torch))


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta",
                                  "Adamax", "NAdam", "RAdam", "ASGD", "Rprop", "Adafactor"])
def test_param_groups_with_different_options_match_torch(name):
    torch = pytest.importorskip("torch")
    groups = [{"lr": 0.02}, {"lr": 0.2, "weight_decay": 0.1}]
    if name == "Rprop":
        groups = [{"lr": 0.02}, {"lr": 0.2, "etas": (0.4, 1.1)}]
    kwargs = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    ours, opt, _ = _trajectory(cr, name, kwargs, groups=groups)
    theirs, topt, _ = _trajectory(torch, name, kwargs, groups=groups)
    _assert_same(ours, theirs)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.2]
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


def test_param_group_lr_actually_used():
    p = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True)
    q = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True)
    opt = cr.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    (p.sum() + q.sum()).backward()
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), [0.9, 1.9])
    np.testing.assert_allclose(q.detach().numpy(), [0.5, 1.5])


def test_add_param_group_fills_defaults_and_matches_torch():
    torch = pytest.importorskip("torch")

    def run(lib):
        params, unused, opt, targets, coefs = _make(lib, "Adam", {"lr": 0.05})
        extra = lib.tensor([0.5, -1.5], dtype=lib.float64, requires_grad=True)
        opt.add_param_group({"params": [extra], "lr": 0.1, "amsgrad": True})
        traj = []
        for _ in range(10):
            opt.zero_grad()
            (_loss(lib, params, targets, coefs) + (extra ** 2).sum()).backward()
            opt.step()
            traj.append([np.array(t.detach().numpy(), copy=True) for t in params + [extra]])
        return traj, opt

    ours, opt = run(cr)
    theirs, topt = run(torch)
    _assert_same(ours, theirs)
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("AdamW", {"lr": 0.05}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.1}),
    ("Adadelta", {"lr": 0.5}),
    ("Adamax", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05}),
    ("RAdam", {"lr": 0.05, "betas": (0.5, 0.6)}),
    ("ASGD", {"lr": 0.05, "t0": 5}),
    ("Rprop", {"lr": 0.05}),
    ("Adafactor", {"lr": 0.05}),
])
@pytest.mark.parametrize("via", ["direct", "plain", "save"])
def test_state_dict_round_trip_mid_run_continues_identically(name, kwargs, via, tmp_path):
    params, _, opt, targets, coefs = _make(cr, name, kwargs)
    first = _run(opt, cr, params, targets, coefs, 10)
    sd = opt.state_dict()
    if via == "plain":  # what a JSON-based serializer may hand back: str keys, lists for tuples
        sd = {
            "state": {str(k): dict(v) for k, v in sd["state"].items()},
            "param_groups": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
                for g in sd["param_groups"]
            ],
        }
    elif via == "save":
        path = tmp_path / "opt.safetensors"
        cr.save(sd, str(path))
        sd = cr.load(str(path))
    # a fresh model at the same point, with a fresh optimizer that loads the state
    params2 = [cr.tensor(p.detach().numpy().copy(), dtype=cr.float64, requires_grad=True)
               for p in params]
    opt2 = getattr(cr.optim, name)(params2 + [cr.zeros(2, dtype=cr.float64,
                                                       requires_grad=True)], **kwargs)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["params"][0] is params2[0]
    if "betas" in opt2.param_groups[0]:
        assert isinstance(opt2.param_groups[0]["betas"], tuple)
    cont_a = _run(opt, cr, params, targets, coefs, 10)
    cont_b = _run(opt2, cr, params2, targets, coefs, 10)
    # loading casts float32 scalar state (NAdam's mu_product, ASGD's eta, mu) to the
    # parameters' dtype, as torch's load_state_dict does: then the runs differ by that rounding
    rounded = name in ("NAdam", "ASGD")
    _assert_same(cont_a, cont_b, tol=1e-6 if rounded else 0)
    # and the uninterrupted run is torch's run
    try:
        import torch
    except ImportError:
        return
    theirs, _, _ = _trajectory(torch, name, kwargs, steps=20)
    _assert_same(first + cont_b, theirs, tol=1e-6 if rounded else 1e-10)


CROSS = [("SGD", {"lr": 0.05, "momentum": 0.9}), ("Adam", {"lr": 0.05, "amsgrad": True}),
         ("AdamW", {"lr": 0.05}), ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
         ("Adagrad", {"lr": 0.1}), ("Adadelta", {"lr": 0.5}), ("Adamax", {"lr": 0.05}),
         ("NAdam", {"lr": 0.05}), ("RAdam", {"lr": 0.05, "betas": (0.5, 0.6)}),
         ("ASGD", {"lr": 0.05, "t0": 5}), ("Rprop", {"lr": 0.05}), ("Adafactor", {"lr": 0.05})]


@pytest.mark.parametrize("name,kwargs", CROSS, ids=[n for n, _ in CROSS])
def test_state_dict_loads_across_libraries(name, kwargs):
    """torch's state dict loads into chainrule as it is, chainrule's into torch once its Tensors
    are torch's; either way the next 10 steps are those of torch resuming from its own."""
    torch = pytest.importorskip("torch")
    theirs, _, _ = _trajectory(torch, name, kwargs, steps=10)

    def resume(lib, sd):
        starts = [lib.tensor(a, dtype=lib.float64, requires_grad=True) for a in theirs[-1]]
        spare = lib.zeros(2, dtype=lib.float64, requires_grad=True)
        opt = getattr(lib.optim, name)(starts + [spare], **kwargs)
        opt.load_state_dict(sd)
        _, targets, coefs = _problem()
        return _run(opt, lib, starts, targets, coefs, 10)

    _, _, topt, targets, coefs = _make(torch, name, kwargs)
    _run(topt, torch, topt.param_groups[0]["params"][:3], targets, coefs, 10)
    reference = resume(torch, copy.deepcopy(topt.state_dict()))  # torch's load keeps its Tensors
    _assert_same(resume(cr, topt.state_dict()), reference)

    params, _, opt, targets, coefs = _make(cr, name, kwargs)
    _run(opt, cr, params, targets, coefs, 10)

    def to_torch(x):
        if isinstance(x, Tensor):
            return torch.from_numpy(x.numpy().copy())
        if isinstance(x, dict):
            return {k: to_torch(v) for k, v in x.items()}
        return x

    _assert_same(resume(torch, to_torch(opt.state_dict())), reference)


def test_step_state_follows_the_default_dtype():
    p = cr.zeros(2, dtype=cr.float64, requires_grad=True)
    p.grad = cr.ones(2, dtype=cr.float64)
    opt = cr.optim.Adam([p])
    opt.step()
    assert opt.state[p]["step"].dtype == cr.float32 and opt.state[p]["step"].shape == ()
    old = cr.get_default_dtype()
    cr.set_default_dtype(cr.float64)
    try:
        q = cr.zeros(2, requires_grad=True)
        q.grad = cr.ones(2)
        opt = cr.optim.NAdam([q])
        opt.step()
        assert opt.state[q]["step"].dtype == cr.float64
        assert opt.state[q]["mu_product"].dtype == cr.float64
    finally:
        cr.set_default_dtype(old)
    # a step saved as a plain number (older chainrule, other tools) loads as a 0-d Tensor
    sd = opt.state_dict()
    sd["state"][0]["step"] = 3
    opt.load_state_dict(sd)
    assert isinstance(opt.state[q]["step"], Tensor) and opt.state[q]["step"].item() == 3


@pytest.mark.parametrize("name,kwargs", [
    ("Adam", {"lr": 0.01, "amsgrad": True}), ("NAdam", {"lr": 0.01}), ("RAdam", {"lr": 0.01}),
    ("Adamax", {"lr": 0.01}), ("ASGD", {"lr": 0.01, "t0": 3}), ("Adadelta", {}),
    ("Rprop", {"lr": 0.01}), ("Adafactor", {"lr": 0.01}),
])
def test_float32_trajectory_close_to_torch(name, kwargs):
    """float32 parameters (and float32 scalar state) stay within float32 rounding of torch."""
    torch = pytest.importorskip("torch")

    def run(lib):
        starts, targets, coefs = _problem()
        params = [lib.tensor(a, dtype=lib.float32, requires_grad=True) for a in starts]
        opt = getattr(lib.optim, name)(params, **kwargs)
        out = []
        for _ in range(5):
            opt.zero_grad()
            loss = None
            for p, t, c in zip(params, targets, coefs):
                term = (((p - lib.tensor(t, dtype=lib.float32)) ** 2)
                        * lib.tensor(c, dtype=lib.float32)).sum()
                loss = term if loss is None else loss + term
            loss.backward()
            opt.step()
            out.append([p.detach().numpy().copy() for p in params])
        return out

    _assert_same(run(cr), run(torch), tol=1e-5)


# ---- LBFGS and SparseAdam ----------------------------------------------------------------------
def _lbfgs_run(lib, kwargs, steps=10):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal(6)
    x = lib.tensor(rng.standard_normal(4), dtype=lib.float64, requires_grad=True)
    w = lib.tensor(rng.standard_normal((2, 2)), dtype=lib.float64, requires_grad=True)
    at, bt = lib.tensor(a, dtype=lib.float64), lib.tensor(b, dtype=lib.float64)
    opt = lib.optim.LBFGS([x, w], **kwargs)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        r = at @ x - bt
        loss = (r * r).sum() + ((w - 1.5) ** 4).sum() + (x**4).sum() * 0.1
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        loss = opt.step(closure)
        out.append([np.array([loss.item()]), x.detach().numpy().copy(),
                    w.detach().numpy().copy()])
    return out, opt, len(calls)


LBFGS_CASES = [
    {}, {"lr": 0.5, "max_iter": 3}, {"max_iter": 4, "history_size": 2},
    {"line_search_fn": "strong_wolfe"}, {"line_search_fn": "strong_wolfe", "max_iter": 4},
    {"line_search_fn": "strong_wolfe", "history_size": 2, "max_eval": 6},
    {"tolerance_grad": 1e-3, "tolerance_change": 1e-4},
]


@pytest.mark.parametrize("kwargs", LBFGS_CASES, ids=[str(k) for k in LBFGS_CASES])
def test_lbfgs_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, opt, calls = _lbfgs_run(cr, kwargs)
    theirs, topt, tcalls = _lbfgs_run(torch, kwargs)
    _assert_same(ours, theirs)
    assert calls == tcalls  # the same number of closure evaluations
    # near convergence the curvature pairs are differences of nearly equal gradients: rounding
    # shows at 1e-10 there while the parameters still agree to 1e-10
    _assert_same_state_dict(opt.state_dict(), topt.state_dict(), tol=1e-6)


def test_lbfgs_resumes_from_a_torch_state_dict():
    torch = pytest.importorskip("torch")
    kwargs = {"line_search_fn": "strong_wolfe", "max_iter": 3, "history_size": 4}
    theirs, topt, _ = _lbfgs_run(torch, kwargs, steps=4)
    full, _, _ = _lbfgs_run(torch, kwargs, steps=8)
    ours, opt, _ = _lbfgs_run(cr, kwargs, steps=0)
    for p, value in zip(opt.param_groups[0]["params"], theirs[-1][1:]):
        p.data = cr.tensor(value, dtype=cr.float64)
    opt.load_state_dict(topt.state_dict())
    x, w = opt.param_groups[0]["params"]
    rng = np.random.default_rng(0)
    at, bt = cr.tensor(rng.standard_normal((6, 4))), cr.tensor(rng.standard_normal(6))

    def closure():
        opt.zero_grad()
        r = at @ x - bt
        loss = (r * r).sum() + ((w - 1.5) ** 4).sum() + (x**4).sum() * 0.1
        loss.backward()
        return loss

    for i in range(4):
        opt.step(closure)
        _assert_same([[x.detach().numpy(), w.detach().numpy()]], [full[4 + i][1:]])


def test_lbfgs_errors_match_torch():
    torch = pytest.importorskip("torch")
    for lib in (cr, torch):
        p, q = lib.zeros(2, requires_grad=True), lib.zeros(2, requires_grad=True)
        with pytest.raises(ValueError, match="doesn't support per-parameter options"):
            lib.optim.LBFGS([{"params": [p]}, {"params": [q]}])
        opt = lib.optim.LBFGS([p], line_search_fn="armijo")

        def closure(opt=opt, p=p):
            opt.zero_grad()
            loss = ((p - 1) ** 2).sum()
            loss.backward()
            return loss

        with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
            opt.step(closure)
        assert opt.param_groups[0]["max_eval"] == 25


@pytest.mark.parametrize("kwargs", [{}, {"lr": 0.05, "maximize": True, "betas": (0.5, 0.9)}])
def test_sparse_adam_on_dense_rows_matches_torch_sparse_gradients(kwargs):
    """The rows of a dense gradient that are not all zero play torch's sparse gradient rows."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.standard_normal((7, 3))
    grads = []
    for _ in range(STEPS):
        g = rng.standard_normal((7, 3))
        g[rng.random(7) < 0.5] = 0  # rows an embedding lookup did not touch
        grads.append(g)

    def run(lib):
        w = lib.tensor(start, dtype=lib.float64, requires_grad=True)
        opt = lib.optim.SparseAdam([w], **kwargs)
        out = []
        for g in grads:
            w.grad = torch.tensor(g).to_sparse(1) if lib is torch else cr.tensor(g)
            opt.step()
            out.append([w.detach().numpy().copy()])
        return out, opt

    ours, opt = run(cr)
    theirs, topt = run(torch)
    _assert_same(ours, theirs)
    _assert_same_state_dict(opt.state_dict(), topt.state_dict())


def test_load_state_dict_copies_state_and_casts_to_param_dtype():
    p = cr.tensor([1.0, 2.0], requires_grad=True)  # float32
    opt = cr.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = cr.tensor([1.0, 1.0])
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"] = cr.tensor([1.0, 1.0], dtype=cr.float64)
    q = cr.tensor([1.0, 2.0], requires_grad=True)
    opt2 = cr.optim.SGD([q], lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    buf = opt2.state[q]["momentum_buffer"]
    assert buf.dtype == cr.float32
    q.grad = cr.tensor([1.0, 1.0])
    opt2.step()
    np.testing.assert_array_equal(sd["state"][0]["momentum_buffer"].numpy(), [1.0, 1.0])


def test_load_state_dict_errors_match_torch():
    a = cr.zeros(2, requires_grad=True)
    b = cr.zeros(3, requires_grad=True)
    opt = cr.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    one_group = cr.optim.SGD([a, b], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(one_group.state_dict())
    other = cr.optim.SGD([{"params": [a, b]}, {"params": [cr.zeros(1, requires_grad=True)]}])
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(KeyError, match="param_groups"):
        opt.load_state_dict({"state": {}})
    mom = cr.optim.SGD([a], momentum=0.9)
    a.grad = cr.ones(2)
    mom.step()
    wrong = cr.optim.SGD([b], momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum_buffer.*\(2,\).*\(3,\)"):
        wrong.load_state_dict(mom.state_dict())


def test_state_dict_is_plain_and_uses_indices():
    p, q = cr.zeros(2, requires_grad=True), cr.zeros(3, requires_grad=True)
    opt = cr.optim.Adam([{"params": [p]}, {"params": [q], "lr": 0.1}])
    p.grad, q.grad = cr.ones(2), cr.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert set(sd["state"]) == {0, 1}
    assert sd["state"][1]["step"] == 1

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, (int, str)) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str, Tensor))

    assert plain(sd)


# ---- semantics ---------------------------------------------------------------------------------
def test_zero_grad_set_to_none_and_zeros():
    p = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = cr.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.numpy().tolist() == [0.0, 0.0]
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0])
    opt.zero_grad()
    assert p.grad is None


def test_step_does_not_touch_grad_and_keeps_dtype():
    p = cr.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    for opt in (cr.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True),
                cr.optim.Adam([p], weight_decay=0.1, maximize=True),
                cr.optim.RMSprop([p], weight_decay=0.1, centered=True),
                cr.optim.Adagrad([p], weight_decay=0.1)):
        p.grad = cr.tensor([[0.1, 0.2], [0.3, 0.4]])
        before = p.detach().numpy().copy()
        opt.step()
        opt.step()
        np.testing.assert_array_equal(p.grad.numpy(), np.float32([[0.1, 0.2], [0.3, 0.4]]))
        assert p.dtype == cr.float32 and p.is_leaf and p.requires_grad
        assert not np.array_equal(p.detach().numpy(), before)
        for value in opt.state[p].values():
            if isinstance(value, Tensor):
                assert value.dtype == cr.float32


def test_update_is_in_place_on_the_parameter_array():
    p = cr.tensor([1.0, 2.0], requires_grad=True)
    data = p._data
    opt = cr.optim.Adam([p], lr=0.1)
    p.grad = cr.tensor([1.0, -1.0])
    opt.step()
    assert p._data is data
    np.testing.assert_allclose(data, [0.9, 2.1], rtol=1e-6)


def test_step_with_closure_returns_loss_and_records_graph():
    p = cr.tensor([3.0], requires_grad=True)
    opt = cr.optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with cr.no_grad():
        loss = opt.step(closure)
    assert loss.item() == pytest.approx(9.0)
    assert p.item() == pytest.approx(1.5)


def test_step_hooks():
    p = cr.tensor([1.0], requires_grad=True)
    opt = cr.optim.SGD([p], lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: calls.append(("pre", p.item())))
    opt.register_step_post_hook(lambda o, a, k: calls.append(("post", p.item())))
    p.grad = cr.tensor([1.0])
    opt.step()
    assert calls == [("pre", 1.0), ("post", pytest.approx(0.9))]
    h1.remove()
    opt.step()
    assert [c[0] for c in calls] == ["pre", "post", "post"]


def test_momentum_switched_on_by_scheduler_like_torch():
    torch = pytest.importorskip("torch")

    def run(lib):
        params, _, opt, targets, coefs = _make(lib, "SGD", {"lr": 0.05})
        traj = _run(opt, lib, params, targets, coefs, 3)
        for g in opt.param_groups:
            g["momentum"] = 0.9
        return traj + _run(opt, lib, params, targets, coefs, 5)

    _assert_same(run(cr), run(torch))


def test_readonly_and_scalar_parameter_arrays_are_updated():
    a = np.array([1.0, 2.0])
    a.setflags(write=False)
    p = cr.from_numpy(a).requires_grad_()
    p.grad = cr.tensor([1.0, 1.0], dtype=cr.float64)
    cr.optim.SGD([p], lr=0.5).step()
    np.testing.assert_allclose(p.detach().numpy(), [0.5, 1.5])
    np.testing.assert_array_equal(a, [1.0, 2.0])


def test_sgd_trains_a_small_model():
    cr.manual_seed(0)
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.uniform(-1, 1, (64, 2)))
    y = cr.tensor(np.sin(2 * x.numpy()[:, :1]) + x.numpy()[:, 1:] ** 2)
    w1 = (cr.randn(2, 16) * 0.5).requires_grad_()
    b1 = cr.zeros(16, requires_grad=True)
    w2 = (cr.randn(16, 1) * 0.5).requires_grad_()
    b2 = cr.zeros(1, requires_grad=True)
    opt = cr.optim.SGD([w1, b1, w2, b2], lr=0.1, momentum=0.9)

    def loss_fn():
        pred = (x @ w1 + b1).tanh() @ w2 + b2
        return ((pred - y) ** 2).mean()

    first = loss_fn().item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    last = loss_fn().item()
    assert math.isfinite(last) and last < 0.1 * first


# ---- argument validation -----------------------------------------------------------------------
BAD_ARGS = [
    ("SGD", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("SGD", {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    ("SGD", {"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov momentum requires"),
    ("Adam", {"lr": -0.5}, "Invalid learning rate: -0.5"),
    ("Adam", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ("Adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("Adam", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    ("Adam", {"betas": (0, 0.9)}, "betas must be either both floats or both Tensors"),
    ("Adam", {"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    ("AdamW", {"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    ("RMSprop", {"alpha": -0.1}, "Invalid alpha value: -0.1"),
    ("RMSprop", {"momentum": -0.1}, "Invalid momentum value: -0.1"),
    ("RMSprop", {"eps": -0.1}, "Invalid epsilon value: -0.1"),
    ("Adagrad", {"lr_decay": -0.1}, "Invalid lr_decay value: -0.1"),
    ("Adagrad", {"initial_accumulator_value": -1.0},
     "Invalid initial_accumulator_value value: -1.0"),
    ("Adagrad", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ("Adadelta", {"rho": 1.5}, "Invalid rho value: 1.5"),
    ("Adadelta", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("Adadelta", {"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    ("Adamax", {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    ("Adamax", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ("NAdam", {"momentum_decay": -0.1}, "Invalid momentum_decay value: -0.1"),
    ("NAdam", {"betas": (-0.1, 0.9)}, "Invalid beta parameter at index 0: -0.1"),
    ("RAdam", {"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ("ASGD", {"lr": -0.1}, "Invalid learning rate: -0.1"),
    ("ASGD", {"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ("Rprop", {"etas": (1.1, 1.2)}, "Invalid eta values: 1.1, 1.2"),
    ("Rprop", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("LBFGS", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("SparseAdam", {"lr": 0.0}, "Invalid learning rate: 0.0"),
    ("SparseAdam", {"eps": 0.0}, "Invalid epsilon value: 0.0"),
    ("Adafactor", {"beta2_decay": 0.5}, "beta2_decay should be <= 0 but is: 0.5"),
    ("Adafactor", {"d": 0.5}, "Clipping threshold d should be >= 1 but is: 0.5"),
    ("Adafactor", {"eps": (-1.0, 1e-3)}, "epsilon1 should be >= 0 but is: -1.0"),
    ("Adafactor", {"lr": -1.0}, "Learning rate should be >= 0 but is: -1.0"),
    ("Adam", {"lr": "tensor"}, "Tensor lr must be 1-element"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD_ARGS)
def test_invalid_arguments_raise_like_torch(name, kwargs, message):
    p = cr.zeros(2, requires_grad=True)
    if kwargs.get("lr") == "tensor":
        kwargs = {"lr": cr.tensor([0.1, 0.2])}
    with pytest.raises(ValueError) as ours:
        getattr(cr.optim, name)([p], **kwargs)
    assert message in str(ours.value)
    try:
        import torch
    except ImportError:
        return
    if isinstance(kwargs.get("lr"), Tensor):
        kwargs = {"lr": torch.tensor([0.1, 0.2])}
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    assert str(ours.value) == str(theirs.value)


def test_invalid_params_raise_like_torch():
    p = cr.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        cr.optim.SGD([])
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        cr.optim.SGD(p)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the "
                                        "params is numpy.ndarray"):
        cr.optim.Adam([np.zeros(2)])
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        cr.optim.SGD([p * 2])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter"):
        cr.optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(TypeError, match="ordered collections"):
        cr.optim.SGD([{"params": {p}}])
    with pytest.raises(TypeError, match="param_group must be a dict"):
        cr.optim.SGD([p]).add_param_group([p])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cr.optim.SGD([p, p])
    assert any("duplicate parameters" in str(x.message) for x in w)


def test_named_parameters_are_accepted():
    p, q = cr.zeros(2, requires_grad=True), cr.zeros(3, requires_grad=True)
    opt = cr.optim.SGD([("a", p), ("b", q)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["a", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["a", "b"]


def test_repr_lists_groups():
    opt = cr.optim.SGD([cr.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "momentum: 0.9" in text


ALL_OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam",
                  "RAdam", "ASGD", "Rprop", "LBFGS", "SparseAdam", "Adafactor"]


@pytest.mark.parametrize("name", ALL_OPTIMIZERS)
def test_constructor_signature_and_defaults_match_torch(name):
    """Every argument of torch's optimizer, with its default and kind (keyword-only or not)."""
    torch = pytest.importorskip("torch")
    import inspect

    def sig(cls):
        return [(p.name, p.default, p.kind) for p in
                inspect.signature(cls.__init__).parameters.values()]

    assert sig(getattr(cr.optim, name)) == sig(getattr(torch.optim, name))
    p = cr.zeros(2, requires_grad=True)
    tp = torch.zeros(2, requires_grad=True)
    ours, theirs = getattr(cr.optim, name)([p]), getattr(torch.optim, name)([tp])
    assert ours.defaults == theirs.defaults


def test_every_torch_optimizer_exists():
    torch = pytest.importorskip("torch")
    theirs = {n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
              and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)}
    assert theirs - {"Optimizer"} <= set(ALL_OPTIMIZERS) | {"Muon"}  # Muon: tests below


# ---- Muon ----------------------------------------------------------------------------------------
MUON_SHAPES = [(3, 4), (6, 2), (16, 16), (5, 5)]
BF16_ULP = 2.0 ** -7  # bfloat16's spacing at 1: Muon's orthogonalized updates are bfloat16


def _muon_problem(lib, dtype):
    rng = np.random.default_rng(0)
    starts = [rng.standard_normal(s) for s in MUON_SHAPES]
    targets = [rng.standard_normal(s) for s in MUON_SHAPES]
    weights = [rng.uniform(0.5, 2.0, s) for s in MUON_SHAPES]
    dt = getattr(lib, dtype)
    params = [lib.tensor(a, dtype=dt, requires_grad=True) for a in starts]

    def loss():
        return sum((((p - lib.tensor(t, dtype=dt)) ** 2) * lib.tensor(w, dtype=dt)).sum()
                   for p, t, w in zip(params, targets, weights))

    return params, loss


def _muon_run(lib, kwargs, steps=20, dtype="float64", resume=None):
    """Muon on a sum of weighted quadratics over 2-D parameters (plus one without gradient)."""
    params, loss = _muon_problem(lib, dtype)
    unused = lib.ones(2, 3, dtype=getattr(lib, dtype), requires_grad=True)
    opt = lib.optim.Muon(params + [unused], **kwargs)
    out = []
    for i in range(steps):
        if resume is not None and i == resume[0]:
            resume[1](opt)
        opt.zero_grad()
        loss().backward()
        opt.step()
        out.append([np.array(p.detach().numpy(), copy=True) for p in params])
    return out, opt, unused


def _max_step(kwargs, shape=(16, 16)):
    """The largest learning rate an update of ``shape`` gets (lr after Muon's adjustment)."""
    lr = float(kwargs.get("lr", 1e-3))
    rows, cols = shape
    if kwargs.get("adjust_lr_fn") == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * max(math.sqrt(max(1, r / c)) for r, c in MUON_SHAPES)


MUON_CASES = [
    {},
    {"lr": 0.02},
    {"lr": 0.02, "nesterov": False},
    {"lr": 0.05, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.0},
    {"lr": 0.03, "adjust_lr_fn": "original", "weight_decay": 0.2},
    {"lr": 0.02, "momentum": 0.5, "ns_steps": 3, "eps": 1e-3},
    {"lr": 0.02, "momentum": 0.0, "ns_coefficients": (2.0, -1.5, 0.5)},
]


@pytest.mark.parametrize("kwargs", MUON_CASES, ids=[str(k) for k in MUON_CASES])
def test_muon_step_from_torchs_state_is_torchs_step(kwargs):
    """Each of 20 steps, started from torch's parameters, gradients and momentum buffers, gives
    torch's new parameters to 1e-10. Both orthogonalize in bfloat16 with float32 sums, whose
    order is the BLAS's: where a float32 sum lands on a bfloat16 rounding tie the two may round
    apart (rarely), so a step may differ by a few bfloat16 steps, and most steps not at all."""
    torch = pytest.importorskip("torch")
    tparams, tloss = _muon_problem(torch, "float64")
    params, _ = _muon_problem(cr, "float64")
    topt, opt = torch.optim.Muon(tparams, **kwargs), cr.optim.Muon(params, **kwargs)
    exact = 0
    for _ in range(20):
        topt.zero_grad()
        tloss().backward()
        sd = copy.deepcopy(topt.state_dict())
        for p, tp in zip(params, tparams):
            p.data = cr.tensor(tp.detach().numpy().copy())
            p.grad = cr.tensor(tp.grad.numpy().copy())
        if sd["state"]:
            opt.load_state_dict(sd)
        topt.step()
        opt.step()
        for p, tp in zip(params, tparams):
            ours, theirs = p.detach().numpy(), tp.detach().numpy()
            np.testing.assert_allclose(ours, theirs, rtol=0,
                                       atol=1e-10 + 4 * BF16_ULP * _max_step(kwargs))
            exact += bool(np.allclose(ours, theirs, rtol=1e-10, atol=1e-10))
        for i, st in topt.state_dict()["state"].items():  # the momentum is float64: no bfloat16
            np.testing.assert_allclose(opt.state_dict()["state"][i]["momentum_buffer"].numpy(),
                                       st["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-15)
    assert exact >= 0.9 * 20 * len(params)


@pytest.mark.parametrize("kwargs", MUON_CASES[:4], ids=[str(k) for k in MUON_CASES[:4]])
def test_muon_trajectory_close_to_torch(kwargs):
    """20 free-running float64 steps: within bfloat16 rounding of the updates of torch's run,
    the unused parameter untouched and stateless, torch's state dict layout."""
    torch = pytest.importorskip("torch")
    ours, opt, unused = _muon_run(cr, kwargs)
    theirs, topt, _ = _muon_run(torch, kwargs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=0, atol=(i + 1) * 4 * BF16_ULP * _max_step(
                kwargs))
    np.testing.assert_array_equal(unused.detach().numpy(), np.ones((2, 3)))
    assert unused not in opt.state
    _assert_same_state_dict(opt.state_dict(), topt.state_dict(), tol=1e-2)
    assert opt.param_groups[0]["ns_coefficients"] == topt.param_groups[0]["ns_coefficients"]


@pytest.mark.parametrize("lr_dtype", [None, "float64", "float32"])
def test_muon_float32_and_tensor_lr_close_to_torch(lr_dtype):
    torch = pytest.importorskip("torch")

    def kwargs(lib):
        return {"lr": 0.02 if lr_dtype is None else lib.tensor([0.02],
                                                                dtype=getattr(lib, lr_dtype))}

    for dtype in ("float32", "float64"):
        ours, _, _ = _muon_run(cr, kwargs(cr), steps=5, dtype=dtype)
        theirs, _, _ = _muon_run(torch, kwargs(torch), steps=5, dtype=dtype)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-6 + (i + 1) * 4 * BF16_ULP
                                           * _max_step({"lr": 0.02}))


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (16, 16), (24, 40), (64, 32)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_muon_newton_schulz_is_torchs_bfloat16_iteration(shape, dtype):
    """The orthogonalization alone, on the same input: torch's bfloat16 numbers (all of them
    but where a float32 sum's order decides a bfloat16 tie, see above), nearly orthogonal."""
    torch = pytest.importorskip("torch")
    muon = pytest.importorskip("torch.optim._muon")
    from chainrule.optim.muon import zeropower_via_newtonschulz

    rng = np.random.default_rng(sum(shape))
    same = total = 0
    for _ in range(4):
        g = rng.standard_normal(shape).astype(dtype)
        ours = zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7)
        theirs = muon._zeropower_via_newtonschulz(torch.from_numpy(g), (3.4445, -4.7750, 2.0315),
                                                  5, 1e-7).float().numpy()
        assert ours.dtype == np.float32 and ours.shape == shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=4 * BF16_ULP)
        same += int(np.array_equal(ours, theirs))
        total += 1
        s = np.linalg.svd(ours.astype(np.float64), compute_uv=False)  # singular values ≈ 1
        assert s.min() > 0.3 and s.max() < 1.6
    assert same >= total - 1


def test_muon_round_to_bfloat16_is_torchs_cast():
    torch = pytest.importorskip("torch")
    from chainrule.optim.muon import round_to_bfloat16

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(1000) * 10.0 ** rng.integers(-30, 30, 1000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 3.3895e38, 1e-40, 1.00390625,
                         1.01171875]]).astype(np.float32)
    theirs = torch.from_numpy(x).bfloat16().float().numpy()
    np.testing.assert_array_equal(round_to_bfloat16(x), theirs)


def test_muon_state_dict_round_trip_mid_run_continues_identically():
    torch = pytest.importorskip("torch")
    kwargs = {"lr": 0.02, "weight_decay": 0.05}
    straight, opt, _ = _muon_run(cr, kwargs)
    sd = opt.state_dict()
    assert sorted(sd["state"][0]) == ["momentum_buffer"]

    def reload(o):  # halfway: a fresh optimizer over the same parameters loads the state
        fresh = cr.optim.Muon(o.param_groups[0]["params"], **kwargs)
        fresh.load_state_dict(o.state_dict())
        o.state, o.param_groups = fresh.state, fresh.param_groups

    resumed, _, _ = _muon_run(cr, kwargs, resume=(10, reload))
    _assert_same(resumed, straight, tol=0)
    # torch's state dict loads into chainrule's Muon (and its tuple of coefficients stays one)
    _, topt, _ = _muon_run(torch, kwargs, steps=3)
    ps = [cr.zeros(s, dtype=cr.float64, requires_grad=True) for s in MUON_SHAPES]
    ours = cr.optim.Muon(ps + [cr.ones(2, 3, dtype=cr.float64, requires_grad=True)], **kwargs)
    ours.load_state_dict(topt.state_dict())
    np.testing.assert_array_equal(ours.state[ps[2]]["momentum_buffer"].numpy(),
                                  topt.state_dict()["state"][2]["momentum_buffer"].numpy())
    assert isinstance(ours.param_groups[0]["ns_coefficients"], tuple)


def test_muon_signature_defaults_and_errors_match_torch():
    torch = pytest.importorskip("torch")
    import inspect

    def sig(cls):
        return [(p.name, p.default, p.kind) for p in
                inspect.signature(cls.__init__).parameters.values()]

    assert sig(cr.optim.Muon) == sig(torch.optim.Muon)
    ours = cr.optim.Muon([cr.zeros(2, 3, requires_grad=True)])
    theirs = torch.optim.Muon([torch.zeros(2, 3, requires_grad=True)])
    assert ours.defaults == theirs.defaults
    for kwargs in [{"lr": -1.0}, {"momentum": -0.5}, {"weight_decay": -0.1},
                   {"adjust_lr_fn": "rms"}]:
        with pytest.raises(ValueError) as a:
            cr.optim.Muon([cr.zeros(2, 3, requires_grad=True)], **kwargs)
        with pytest.raises(ValueError) as b:
            torch.optim.Muon([torch.zeros(2, 3, requires_grad=True)], **kwargs)
        assert str(a.value) == str(b.value)
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        cr.optim.Muon([cr.zeros(2, 3, requires_grad=True)], lr=cr.tensor([0.1, 0.2]))
    # parameters that are not matrices: refused when the optimizer is made ...
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters whereas we found a "
                                         r"parameter with size: chainrule.Size\(\[5\]\)"):
        cr.optim.Muon([cr.zeros(2, 3, requires_grad=True), cr.zeros(5, requires_grad=True)])
    # ... or when their gradient reaches a step (a group added later is not checked)
    for lib in (cr, torch):
        opt = lib.optim.Muon([lib.zeros(2, 3, requires_grad=True)])
        v = lib.zeros(5, requires_grad=True)
        opt.add_param_group({"params": [v]})
        v.grad = lib.ones(5)
        with pytest.raises(ValueError, match="Param gradient must be a 2D matrix"):
            opt.step()
    # options checked by the orthogonalization itself, at the step
    for kwargs, message in [({"ns_steps": 100}, "Number of steps must be less than 100"),
                            ({"ns_coefficients": (1.0, 2.0)}, "exactly 3 values")]:
        for lib in (cr, torch):
            p = lib.ones(2, 3, requires_grad=True)
            opt = lib.optim.Muon([p], **kwargs)
            p.grad = lib.ones(2, 3)
            with pytest.raises(ValueError, match=message):
                opt.step()


def test_muon_orthogonalizes_a_tall_matrix_and_scales_its_lr():
    """A tall ``A×B`` gradient step moves θ by ``lr·√(A/B)·O`` with ``O`` nearly orthonormal
    columns; "match_rms_adamw" scales by ``0.2·√max(A, B)`` instead."""
    rng = np.random.default_rng(1)
    g = rng.standard_normal((32, 8))
    for fn, scale in [(None, math.sqrt(32 / 8)), ("match_rms_adamw", 0.2 * math.sqrt(32))]:
        p = cr.zeros(32, 8, dtype=cr.float64, requires_grad=True)
        opt = cr.optim.Muon([p], lr=0.1, momentum=0.0, weight_decay=0.0, adjust_lr_fn=fn)
        p.grad = cr.tensor(g)
        opt.step()
        o = -p.detach().numpy() / (0.1 * scale)
        s = np.linalg.svd(o, compute_uv=False)
        assert s.min() > 0.5 and s.max() < 1.5
        assert np.sum(o * g) > 0  # a descent direction: θ moved against the gradient


# ---- swap_in_optimizer_params_and_state --------------------------------------------------------
def _swap_case(lib):
    """An Adam over two groups after 3 steps, and a second set of parameters with its own
    (deep-copied, then differently advanced) state dict, stepped inside the swap."""
    params, _, opt, targets, coefs = _make(lib, "Adam", {"lr": 0.05},
                                           groups=[{"lr": 0.02}, {"lr": 0.1}])
    _run(opt, lib, params, targets, coefs, 3)
    own_before = [np.array(p.detach().numpy(), copy=True) for p in params]
    others = [lib.tensor(np.array(p.detach().numpy()) + 0.5, dtype=lib.float64,
                         requires_grad=True) for p in params]
    spare = lib.zeros(2, dtype=lib.float64, requires_grad=True)
    named = {f"w{i}": t for i, t in enumerate(others + [spare])}
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][1]["lr"] = 0.3  # the swapped-in group options are used inside
    first_group = opt.param_groups[0]
    first_params = first_group["params"]
    traj = []
    with lib.optim.swap_in_optimizer_params_and_state(opt, named, sd):
        assert opt.param_groups[0]["params"][0] is others[0]
        assert opt.param_groups[1]["lr"] == 0.3
        for _ in range(3):
            opt.zero_grad()
            _loss(lib, others, targets, coefs).backward()
            opt.step()
            traj.append([np.array(t.detach().numpy(), copy=True) for t in others])
    # the live optimizer is back: same group dicts and params lists, own state, own options
    assert opt.param_groups[0] is first_group and first_group["params"] is first_params
    assert opt.param_groups[1]["lr"] == 0.1
    for p, b in zip(params, own_before):
        np.testing.assert_array_equal(p.detach().numpy(), b)
    swapped_state = [np.array(sd["state"][i]["exp_avg"].numpy(), copy=True) for i in range(3)]
    steps_after = [float(sd["state"][i]["step"]) for i in range(3)]
    cont = _run(opt, lib, params, targets, coefs, 2)  # and continues as if nothing happened
    return traj, swapped_state, steps_after, cont


def test_swap_in_optimizer_params_and_state_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = _swap_case(cr), _swap_case(torch)
    _assert_same(ours[0], theirs[0])
    for a, b in zip(ours[1], theirs[1]):  # the supplied state's tensors were updated in place
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    assert ours[2] == theirs[2] == [6.0, 6.0, 6.0]
    _assert_same(ours[3], theirs[3])
    # and that continuation is the uninterrupted run's
    uninterrupted, _, _ = _trajectory(cr, "Adam", {"lr": 0.05}, steps=5,
                                      groups=[{"lr": 0.02}, {"lr": 0.1}])
    _assert_same(ours[3], uninterrupted[3:], tol=0)


def test_swap_in_optimizer_params_and_state_errors_match_torch():
    torch = pytest.importorskip("torch")

    def attempt(lib, make_sd, fresh=False):
        p = lib.ones(2, 3, dtype=lib.float64, requires_grad=True)
        opt = lib.optim.SGD([p], lr=0.1, momentum=0.9)
        if not fresh:
            p.grad = lib.ones(2, 3, dtype=lib.float64)
            opt.step()
        sd = make_sd(copy.deepcopy(opt.state_dict()))
        with pytest.raises(RuntimeError) as info:
            with lib.optim.swap_in_optimizer_params_and_state(opt, {"p": p}, sd):
                pass
        return str(info.value)

    cases = [
        (lambda sd: sd, True),
        (lambda sd: [sd], False),
        (lambda sd: dict(sd, state=[1]), False),
        (lambda sd: dict(sd, param_groups=sd["param_groups"] * 2), False),
        (lambda sd: dict(sd, param_groups=[dict(sd["param_groups"][0], params=[0, 1])]), False),
        (lambda sd: dict(sd, param_groups=[dict(sd["param_groups"][0], extra=1)]), False),
        (lambda sd: dict(sd, param_groups=[dict(sd["param_groups"][0], params=["a"])]), False),
        (lambda sd: dict(sd, state={**sd["state"], 7: {}}), False),
        (lambda sd: dict(sd, state={0: 3}), False),
    ]
    for make_sd, fresh in cases:
        assert attempt(cr, make_sd, fresh) == attempt(torch, make_sd, fresh)
