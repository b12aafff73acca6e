"""cr.optim.lr_scheduler against torch.optim.lr_scheduler: the same lr sequences, state dicts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.optim import lr_scheduler as lrs
from chainrule.tensor import Tensor

STEPS = 30


def _optimizer(lib, opt_name="SGD", lrs_=(0.1, 0.02), **kwargs):
    p = lib.zeros(2, requires_grad=True)
    q = lib.zeros(3, requires_grad=True)
    groups = [{"params": [p], "lr": lrs_[0]}, {"params": [q], "lr": lrs_[1]}]
    return getattr(lib.optim, opt_name)(groups, **kwargs)


def _lambda_a(epoch):
    return 0.95**epoch


def _lambda_b(epoch):
    return 1.0 / (1 + epoch)


SCHEDULERS = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("StepLR", {"step_size": 1}),
    ("MultiStepLR", {"milestones": [3, 7, 7, 12], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    ("CosineAnnealingLR", {"T_max": 10}),
    ("LambdaLR", {"lr_lambda": _lambda_a}),
    ("LambdaLR", {"lr_lambda": [_lambda_a, _lambda_b]}),
    ("MultiplicativeLR", {"lr_lambda": lambda e: 0.97}),
    ("ConstantLR", {"factor": 0.25, "total_iters": 4}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 0.9, "total_iters": 12}),
    ("LinearLR", {}),
    ("PolynomialLR", {"total_iters": 20, "power": 2.0}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS + 1}),
    ("OneCycleLR", {"max_lr": [0.5, 0.1], "total_steps": STEPS + 1, "anneal_strategy": "linear"}),
    ("OneCycleLR", {"max_lr": 0.5, "epochs": 4, "steps_per_epoch": 8, "three_phase": True}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS + 1, "pct_start": 0.5,
                    "cycle_momentum": False, "div_factor": 10.0, "final_div_factor": 100.0}),
    ("CosineAnnealingWarmRestarts", {"T_0": 5}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.001}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4}),
    ("CyclicLR", {"base_lr": [0.01, 0.001], "max_lr": 0.1, "step_size_up": 3,
                  "step_size_down": 5, "mode": "triangular2"}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "mode": "exp_range",
                  "gamma": 0.95, "base_momentum": 0.7, "max_momentum": 0.95}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "cycle_momentum": False,
                  "scale_fn": _lambda_b, "scale_mode": "iterations"}),
]


def _sequence(lib, name, kwargs, opt_name="SGD", opt_kwargs=None, steps=STEPS):
    opt = _optimizer(lib, opt_name, **({"momentum": 0.9} if opt_kwargs is None else opt_kwargs))
    sched = getattr(lib.optim.lr_scheduler, name)(opt, **kwargs)
    seq = [(list(sched.get_last_lr()), _momenta(opt))]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append((list(sched.get_last_lr()), _momenta(opt)))
        assert [g["lr"] for g in opt.param_groups] == seq[-1][0]
    return seq


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=[f"{n}-{k}" for n, k in SCHEDULERS])
def test_lr_sequence_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    ours = _sequence(cr, name, kwargs)
    theirs = _sequence(torch, name, kwargs)
    assert ours == theirs  # the same recursive formulas give bit-identical floats


@pytest.mark.parametrize("kwargs", [
    {"max_lr": 0.01, "total_steps": STEPS + 1},
    {"max_lr": 0.01, "total_steps": STEPS + 1, "three_phase": True, "base_momentum": 0.8,
     "max_momentum": 0.9, "anneal_strategy": "linear"},
])
def test_one_cycle_cycles_adam_beta1_like_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours = _sequence(cr, "OneCycleLR", kwargs, "Adam", {})
    theirs = _sequence(torch, "OneCycleLR", kwargs, "Adam", {})
    assert ours == theirs
    opt = _optimizer(cr, "Adam")
    lrs.OneCycleLR(opt, **kwargs)
    assert opt.param_groups[0]["betas"][1] == 0.999


COMPOSED = {
    "sequential": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=5), L.CosineAnnealingLR(o, T_max=12),
            L.ExponentialLR(o, gamma=0.9)], milestones=[5, 17]),
    "chained": lambda L, o: L.ChainedScheduler(
        [L.ConstantLR(o, factor=0.5, total_iters=4), L.ExponentialLR(o, gamma=0.9),
         L.StepLR(o, step_size=7, gamma=0.5)]),
    "nested": lambda L, o: L.SequentialLR(
        o, [L.ChainedScheduler([L.LinearLR(o, start_factor=0.2, total_iters=6),
                                L.ExponentialLR(o, gamma=0.97)]),
            L.MultiStepLR(o, milestones=[3, 9])], milestones=[10]),
}


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # torch warns too
@pytest.mark.parametrize("kind", sorted(COMPOSED))
def test_composed_schedulers_match_torch(kind):
    torch = pytest.importorskip("torch")

    def run(lib):
        opt = _optimizer(lib, momentum=0.9)
        sched = COMPOSED[kind](lib.optim.lr_scheduler, opt)
        out = [list(sched.get_last_lr())]
        for _ in range(STEPS):
            opt.step()
            sched.step()
            out.append([g["lr"] for g in opt.param_groups])
        return out, sched

    (ours, sched), (theirs, _) = run(cr), run(torch)
    assert ours == theirs
    assert _plain(sched.state_dict())


def test_cyclic_lr_cycles_adam_beta1_like_torch():
    torch = pytest.importorskip("torch")
    kwargs = {"base_lr": 0.001, "max_lr": 0.01, "step_size_up": 5, "mode": "triangular2"}
    assert (_sequence(cr, "CyclicLR", kwargs, "Adam", {})
            == _sequence(torch, "CyclicLR", kwargs, "Adam", {}))


def test_one_cycle_trains_sgd_with_cycled_momentum_like_torch():
    torch = pytest.importorskip("torch")

    def run(lib):
        rng = np.random.default_rng(1)
        start, target = rng.standard_normal(6), rng.standard_normal(6)
        p = lib.tensor(start, dtype=lib.float64, requires_grad=True)
        t = lib.tensor(target, dtype=lib.float64)
        opt = lib.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
        sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=25)
        out = []
        for _ in range(25):
            opt.zero_grad()
            ((p - t) ** 2).sum().backward()
            opt.step()
            sched.step()
            out.append(np.array(p.detach().numpy(), copy=True))
        return out

    for a, b in zip(run(cr), run(torch)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_one_cycle_past_total_steps_raises():
    opt = _optimizer(cr)
    sched = lrs.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(2):
        opt.step()
        sched.step()
    opt.step()
    sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times. The specified number of total "
                                         "steps is 3"):
        sched.step()


METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.8, 0.8,
           0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7]


@pytest.mark.parametrize("kwargs", [
    {"patience": 2},
    {"patience": 1, "factor": 0.5, "cooldown": 2, "min_lr": [0.01, 0.001]},
    {"mode": "max", "patience": 1, "threshold_mode": "abs", "threshold": 0.01},
    {"patience": 0, "threshold": 0.1, "eps": 1e-3},
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")

    def run(lib):
        opt = _optimizer(lib)
        sched = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        out = []
        for m in METRICS:
            opt.step()
            sched.step(m)
            out.append((list(sched.get_last_lr()), sched.num_bad_epochs, sched.cooldown_counter))
        return out

    assert run(cr) == run(torch)


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [2, 5, 5, 9]}),
    ("CosineAnnealingLR", {"T_max": 6, "eta_min": 0.01}),
    ("ExponentialLR", {"gamma": 0.8}),
])
def test_step_with_epoch_uses_closed_form_and_warns_like_torch(name, kwargs):
    torch = pytest.importorskip("torch")

    def run(lib):
        opt = _optimizer(lib)
        sched = getattr(lib.optim.lr_scheduler, name)(opt, **kwargs)
        out = []
        for epoch in (3, 7, 4, 10):
            opt.step()
            with pytest.warns(UserWarning, match="epoch parameter"):
                sched.step(epoch)
            out.append(sched.get_last_lr())
        return out

    ours, theirs = run(cr), run(torch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return all(_plain(v) for v in x)
    return x is None or isinstance(x, (bool, int, float, str, Tensor))


class _Warmup:
    """A callable object: LambdaLR keeps its ``__dict__`` in the state dict."""

    def __init__(self, n):
        self.n = n

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.n)


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", {"step_size": 4, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [3, 12, 12, 15], "gamma": 0.5}),
    ("CosineAnnealingLR", {"T_max": 9, "eta_min": 0.001}),
    ("OneCycleLR", {"max_lr": 0.4, "total_steps": 25, "three_phase": True}),
    ("LambdaLR", {"lr_lambda": _Warmup(8)}),
    ("LinearLR", {"start_factor": 0.2, "total_iters": 15}),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "mode": "exp_range",
                  "gamma": 0.9}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2}),
])
@pytest.mark.parametrize("via", ["direct", "save"])
def test_state_dict_round_trip_mid_run(name, kwargs, via, tmp_path):
    def fresh():
        opt = _optimizer(cr, momentum=0.9)
        return opt, getattr(lrs, name)(opt, **kwargs)

    opt, sched = fresh()
    for _ in range(10):
        opt.step()
        sched.step()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    assert _plain(state["scheduler"])
    if via == "save":
        cr.save(state, str(tmp_path / "ckpt.safetensors"))
        state = cr.load(str(tmp_path / "ckpt.safetensors"))
    opt2, sched2 = fresh()
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == sched.last_epoch == 10
    for _ in range(14):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
        assert _momenta(opt2) == _momenta(opt)


def test_scheduler_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    ours = lrs.CosineAnnealingLR(_optimizer(cr), T_max=5).state_dict()
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(_optimizer(torch), T_max=5).state_dict()
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs


def test_resume_with_last_epoch_requires_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        lrs.StepLR(_optimizer(cr), step_size=2, last_epoch=3)
    opt = _optimizer(cr)
    lrs.StepLR(opt, step_size=2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.02]


def test_scheduler_step_before_optimizer_step_warns():
    opt = _optimizer(cr)
    sched = lrs.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2 = _optimizer(cr)
    sched2 = lrs.StepLR(opt2, step_size=2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()


def test_get_lr_outside_step_warns():
    sched = lrs.ExponentialLR(_optimizer(cr), gamma=0.5)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()


def test_scheduler_argument_errors():
    opt = _optimizer(cr)
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        lrs.StepLR([], step_size=2)
    with pytest.raises(ValueError, match="You must define either total_steps OR"):
        lrs.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="Expected positive integer total_steps, but got 0"):
        lrs.OneCycleLR(opt, max_lr=0.1, total_steps=0)
    with pytest.raises(ValueError, match="Expected float between 0 and 1 pct_start"):
        lrs.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy must be one of 'cos' or 'linear'"):
        lrs.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="max_lr must have the same length as "
                                         "optimizer.param_groups"):
        lrs.OneCycleLR(opt, max_lr=[0.1], total_steps=10)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        lrs.OneCycleLR(_optimizer(cr, "Adagrad"), max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        lrs.LambdaLR(opt, lr_lambda=[_lambda_a])
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        lrs.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        lrs.ReduceLROnPlateau(opt, mode="avg")
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        lrs.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="Constant multiplicative factor"):
        lrs.ConstantLR(opt, factor=2.0)


def test_every_torch_scheduler_exists_with_torch_signature():
    torch = pytest.importorskip("torch")
    import inspect

    ours = cr.optim.lr_scheduler
    for name in torch.optim.lr_scheduler.__all__:
        assert hasattr(ours, name), name
        theirs = inspect.signature(getattr(torch.optim.lr_scheduler, name).__init__)
        mine = inspect.signature(getattr(ours, name).__init__)
        assert [(p.name, p.default) for p in mine.parameters.values()] == [
            (p.name, p.default) for p in theirs.parameters.values()], name
        public = {m for m in dir(getattr(torch.optim.lr_scheduler, name)) if not m.startswith("_")}
        assert public <= set(dir(getattr(ours, name))), name


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_sequential_recursive_undo_like_torch():
    torch = pytest.importorskip("torch")

    def run(lib):
        opt = _optimizer(lib)
        s = lib.optim.lr_scheduler
        inner = s.ChainedScheduler([s.ConstantLR(opt, factor=0.5, total_iters=2),
                                    s.ExponentialLR(opt, gamma=0.9)])
        seq = s.SequentialLR(opt, [inner, s.StepLR(opt, step_size=2)], milestones=[3])
        seq.recursive_undo()
        seq.recursive_undo(seq._schedulers[1])
        return [c.last_epoch for c in inner._schedulers] + [seq._schedulers[1].last_epoch]

    assert run(cr) == run(torch)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
@pytest.mark.parametrize("name", ["NAdam", "RAdam", "Adamax", "Adadelta", "ASGD", "Rprop"])
def test_one_cycle_drives_the_other_optimizers_like_torch(name):
    """OneCycleLR cycles beta1 of every optimizer with ``betas`` and sets lr of the rest."""
    torch = pytest.importorskip("torch")

    def run(lib):
        p = lib.tensor([1.0, -2.0], dtype=lib.float64, requires_grad=True)
        opt = getattr(lib.optim, name)([p])
        cycle = "betas" in opt.defaults
        sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=12,
                                                  cycle_momentum=cycle)
        out = []
        for _ in range(10):
            opt.zero_grad()
            (p**2).sum().backward()
            opt.step()
            sched.step()
            g = opt.param_groups[0]
            out.append((g["lr"], g.get("betas"), *p.detach().numpy().tolist()))
        return out

    ours, theirs = run(cr), run(torch)
    np.testing.assert_allclose(np.array([o[2:] for o in ours]), np.array([t[2:] for t in theirs]),
                               rtol=1e-10, atol=1e-12)
    assert [o[:2] for o in ours] == [t[:2] for t in theirs]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", {"step_size": 2, "gamma": 0.5}), ("CosineAnnealingLR", {"T_max": 6}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 12}),
    ("ReduceLROnPlateau", {"patience": 0, "factor": 0.5}),
])
def test_tensor_lr_stays_a_tensor_filled_in_place_like_torch(name, kwargs):
    """A Tensor lr keeps its identity and dtype (float32 rounding) through the schedule."""
    torch = pytest.importorskip("torch")

    def run(lib):
        p = lib.tensor([1.0, -2.0], dtype=lib.float64, requires_grad=True)
        lr = lib.tensor(0.1)
        opt = lib.optim.Adam([p], lr=lr)
        sched = getattr(lib.optim.lr_scheduler, name)(opt, **kwargs)
        out = []
        for _ in range(10):
            opt.zero_grad()
            (p**2).sum().backward()
            opt.step()
            sched.step(*([1.0] if name == "ReduceLROnPlateau" else []))
            assert opt.param_groups[0]["lr"] is lr
            out.append([float(lr.item())] + p.detach().numpy().tolist())
        return out

    np.testing.assert_allclose(run(cr), run(torch), rtol=1e-12, atol=1e-14)
