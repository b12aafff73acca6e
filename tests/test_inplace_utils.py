"""Utilities that write tensors in place without an in-place op (gradient clipping, nn.init,
zero_grad, SWA averaging, parametrize, GradScaler, embedding's max_norm) move version counters
on exactly as torch 2.13 does, so that a graph which saved such a tensor refuses to
backpropagate (torch's error) instead of using the new values without a word."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


def _clip_steps(m):
    """(label, the change of the gradient's version) for each clipping call, on one parameter."""
    p = m.nn.Parameter(m.tensor([0.5, -1.0, 2.0]))
    p.grad = m.tensor([10.0, -20.0, 5.0])
    U = m.nn.utils
    calls = [
        ("norm, clipped", lambda: U.clip_grad_norm_([p], 1.0)),
        ("norm, not clipped", lambda: U.clip_grad_norm_([p], 100.0)),
        ("norm, foreach=False", lambda: U.clip_grad_norm_([p], 0.5, foreach=False)),
        ("norm, foreach=True", lambda: U.clip_grad_norm_([p], 0.25, foreach=True)),
        ("norm, inf", lambda: U.clip_grad_norm_([p], 0.1, norm_type="inf")),
        ("value", lambda: U.clip_grad_value_([p], 0.05)),
        ("value, foreach=False", lambda: U.clip_grad_value_([p], 0.04, foreach=False)),
        ("value, foreach=True", lambda: U.clip_grad_value_(p, 0.03, foreach=True)),
        ("with norm", lambda: U.clip_grads_with_norm_([p], 1.0, m.tensor(5.0))),
        ("with norm, not clipped", lambda: U.clip_grads_with_norm_([p], 10.0, m.tensor(5.0))),
    ]
    out = []
    for label, call in calls:
        before = p.grad._version
        call()
        out.append((label, p.grad._version - before, p._version))
    return out, p.grad.detach().numpy().copy()


def test_clipping_bumps_gradient_versions_as_torch():
    mine, mine_grad = _clip_steps(cr)
    theirs, their_grad = _clip_steps(torch)
    assert mine == theirs
    np.testing.assert_allclose(mine_grad, their_grad, rtol=1e-6)


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_clipping_a_gradient_a_graph_saved_raises_torchs_error(clip):
    """The gradient was created with a graph (``create_graph=True`` style) and used by it."""
    errors = []
    for m in (cr, torch):
        p = m.nn.Parameter(m.tensor([1.0, 2.0, 3.0]))
        g = m.tensor([3.0, -4.0, 12.0], requires_grad=True) * 1.0
        p.grad = g  # a non-leaf gradient
        y = (g * g).sum()
        if clip == "norm":
            m.nn.utils.clip_grad_norm_([p], 1.0)
        else:
            m.nn.utils.clip_grad_value_([p], 1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as e:
            y.backward()
        errors.append(str(e.value))
    assert "is at version" in errors[0]


def test_clipping_writes_into_the_gradients_memory():
    """torch scales the gradient in place: a view of it sees the new values."""
    for m in (cr, torch):
        base = m.tensor([30.0, 40.0, 7.0, 9.0])
        p = m.nn.Parameter(m.zeros(2))
        p.grad = base[:2]
        m.nn.utils.clip_grad_norm_([p], 5.0)
        np.testing.assert_allclose(base.numpy(), [3.0, 4.0, 7.0, 9.0], rtol=1e-5)
        assert base._version == 1
        m.nn.utils.clip_grad_value_([p], 3.5)
        np.testing.assert_allclose(base.numpy(), [3.0, 3.5, 7.0, 9.0], rtol=1e-5)


def _init_versions(m):
    I = m.nn.init
    m.manual_seed(0)
    calls = [
        ("uniform_", (4, 5), lambda w: I.uniform_(w)),
        ("normal_", (4, 5), lambda w: I.normal_(w)),
        ("constant_", (4, 5), lambda w: I.constant_(w, 0.3)),
        ("ones_", (4, 5), I.ones_),
        ("zeros_", (4, 5), I.zeros_),
        ("eye_", (4, 5), I.eye_),
        ("dirac_", (4, 4, 3), I.dirac_),
        ("dirac_ groups", (6, 2, 3, 3), lambda w: I.dirac_(w, 2)),
        ("xavier_uniform_", (4, 5), I.xavier_uniform_),
        ("xavier_normal_", (4, 5), I.xavier_normal_),
        ("kaiming_uniform_", (4, 5), I.kaiming_uniform_),
        ("kaiming_normal_", (4, 5), I.kaiming_normal_),
        ("trunc_normal_ wide", (4, 5), lambda w: I.trunc_normal_(w, a=-5.0, b=5.0)),
        ("trunc_normal_ redraws", (40, 50), lambda w: I.trunc_normal_(w, a=-1.0, b=1.0)),
        ("trunc_normal_ narrow", (4, 5), lambda w: I.trunc_normal_(w, a=0.0, b=0.2)),
        ("orthogonal_", (4, 5), I.orthogonal_),
        ("orthogonal_ tall", (5, 4), I.orthogonal_),
        ("sparse_", (4, 5), lambda w: I.sparse_(w, 0.5)),
    ]
    out = []
    for label, shape, call in calls:
        w = m.zeros(*shape)
        before = w._version
        call(w)
        out.append((label, w._version - before))
    return out


def test_init_functions_bump_versions_as_torch():
    assert _init_versions(cr) == _init_versions(torch)


def test_dirac_values_are_unchanged():
    for shape, groups in (((4, 4, 3), 1), ((6, 2, 3, 3), 2), ((2, 4, 1, 3, 3), 1)):
        w = cr.full(shape, 7.0)
        t = torch.full(shape, 7.0)
        cr.nn.init.dirac_(w, groups)
        torch.nn.init.dirac_(t, groups)
        np.testing.assert_array_equal(w.numpy(), t.numpy())


def _module_versions(m):
    out = []
    nn = m.nn
    lin = nn.Linear(2, 2)
    lin(m.ones(1, 2)).sum().backward()
    g = lin.weight.grad
    lin.zero_grad(set_to_none=False)
    out.append(("zero_grad", g._version, lin.weight.grad is g, float(g.abs().sum())))
    lin.double()
    out.append(("double", lin.weight._version, lin.weight.grad._version))
    # zero_grad on a gradient that is itself in a graph: detached in place, then zeroed
    p = nn.Parameter(m.ones(2))
    q = m.ones(2, requires_grad=True)
    p.grad = q * 2
    net = nn.Module()
    net.p = p
    g = p.grad
    net.zero_grad(set_to_none=False)
    out.append(("zero_grad non-leaf", g is p.grad, g.grad_fn is None, g.requires_grad,
                g._version))
    # SWA / EMA averaging
    src = nn.Linear(2, 2)
    avg = m.optim.swa_utils.AveragedModel(src)
    pa = next(avg.module.parameters())
    avg.update_parameters(src)
    avg.update_parameters(src)
    out.append(("swa", pa._version, avg.n_averaged._version))
    ema = m.optim.swa_utils.AveragedModel(
        src, multi_avg_fn=m.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    pa = next(ema.module.parameters())
    ema.update_parameters(src)
    ema.update_parameters(src)
    out.append(("ema", pa._version, ema.n_averaged._version))
    # parametrize: assigning the parametrized tensor sets the original
    P = m.nn.utils.parametrize

    class Sym(nn.Module):
        def forward(self, X):
            return X.triu() + X.triu(1).transpose(-1, -2)

        def right_inverse(self, A):
            return A.triu()

    lin3 = nn.Linear(3, 3)
    P.register_parametrization(lin3, "weight", Sym())
    orig = lin3.parametrizations.weight.original
    before = orig._version
    lin3.weight = m.eye(3)
    out.append(("parametrize", orig._version - before))
    # embedding max_norm renormalises the weight in place
    emb = nn.Embedding(5, 3, max_norm=0.1)
    before = emb.weight._version
    emb(m.tensor([0, 1]))
    emb(m.tensor([], dtype=m.int64))
    out.append(("embedding", emb.weight._version - before))
    bag = nn.EmbeddingBag(5, 3, max_norm=0.1)
    before = bag.weight._version
    bag(m.tensor([[0, 1]]))
    out.append(("embedding_bag", bag.weight._version - before))
    # GradScaler.update moves the scale's version on
    scaler = m.amp.GradScaler("cpu", init_scale=4.0)
    lin4 = nn.Linear(2, 2)
    opt = m.optim.SGD(lin4.parameters(), 0.1)
    scaler.scale(lin4(m.ones(1, 2)).sum()).backward()
    scaler.step(opt)
    scaler.update()
    out.append(("grad scaler", scaler._scale._version, scaler._growth_tracker._version))
    return out


def test_module_utilities_bump_versions_as_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _module_versions(cr) == _module_versions(torch)


def test_zero_grad_zeroes_in_place_so_a_saved_gradient_is_refused():
    for m in (cr, torch):
        lin = m.nn.Linear(2, 2)
        lin(m.ones(1, 2)).sum().backward()
        g = lin.weight.grad
        x = m.ones(2, requires_grad=True)
        y = (g @ x * x).sum()  # saves g
        view = g[0]
        lin.zero_grad(set_to_none=False)
        assert float(view.abs().sum()) == 0.0  # the same memory
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def _wrapper_and_dropout_versions(m):
    out = []
    t = m.ones(2)
    t.add_(1)
    p, b = m.nn.Parameter(t), m.nn.Buffer(t)
    out.append(("wrapped", p._version, b._version))
    t.add_(1)  # the same memory and the same counter
    with m.no_grad():
        p.mul_(2)
    out.append(("shared", t._version, p._version, b._version, b.tolist()))
    F = m.nn.functional
    for name, p_, f in [("alpha_dropout", 0.5, F.alpha_dropout),
                        ("alpha_dropout p=1", 1.0, F.alpha_dropout),
                        ("feature_alpha_dropout", 0.5, F.feature_alpha_dropout)]:
        y = m.ones(1, 3, 2) * -1
        before = y._version
        f(y, p_, training=True, inplace=True)
        out.append((name, y._version - before))
    return out


def test_parameter_and_buffer_share_the_counter_and_dropout_counts_torchs_steps():
    assert _wrapper_and_dropout_versions(cr) == _wrapper_and_dropout_versions(torch)
