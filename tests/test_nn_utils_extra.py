"""nn.utils against torch: packed sequences (and RNN/LSTM/GRU on them), parametrizations,
weight/spectral norm (both forms), fusion, functional_call, skip_init, vector conversion; and
nn.init's distributions, error messages and deprecated aliases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from nn_module_check import load_from_torch

import chainrule as cr
import chainrule.nn as nn
from chainrule.nn.utils import rnn as R

torch = pytest.importorskip("torch")
TR = torch.nn.utils.rnn

RNG = np.random.default_rng(0)


def _seqs(lengths, feat=3):
    return [RNG.standard_normal((n, feat)) for n in lengths]


# ---- packed sequences --------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, side):
    seqs = _seqs([4, 1, 3])
    c = R.pad_sequence([cr.tensor(s) for s in seqs], batch_first, -1.5, side)
    t = TR.pad_sequence([torch.tensor(s) for s in seqs], batch_first, -1.5, side)
    np.testing.assert_array_equal(c.numpy(), t.numpy())


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_and_unpack_match_torch_and_carry_gradients(enforce_sorted):
    lengths = [5, 4, 2, 2, 1] if enforce_sorted else [2, 5, 1, 4, 2]
    seqs = _seqs(lengths)
    cs = [cr.tensor(s, requires_grad=True) for s in seqs]
    ts = [torch.tensor(s, requires_grad=True) for s in seqs]
    ck = R.pack_sequence(cs, enforce_sorted=enforce_sorted)
    tk = TR.pack_sequence(ts, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(ck.data.detach().numpy(), tk.data.detach().numpy())
    assert ck.batch_sizes.tolist() == tk.batch_sizes.tolist()
    for a, b in ((ck.sorted_indices, tk.sorted_indices),
                 (ck.unsorted_indices, tk.unsorted_indices)):
        assert (a is None and b is None) or a.tolist() == b.tolist()
    cp, cl = R.pad_packed_sequence(ck, batch_first=True, padding_value=9.0, total_length=6)
    tp, tl = TR.pad_packed_sequence(tk, batch_first=True, padding_value=9.0, total_length=6)
    np.testing.assert_array_equal(cp.detach().numpy(), tp.detach().numpy())
    assert cl.tolist() == tl.tolist()
    w = RNG.standard_normal(tuple(tp.shape))
    (cp * cr.tensor(w)).sum().backward()
    (tp * torch.tensor(w)).sum().backward()
    for a, b in zip(cs, ts):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
    for a, b in zip(R.unpack_sequence(ck), TR.unpack_sequence(tk)):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    for a, b in zip(R.unpad_sequence(cp, cl, batch_first=True),
                    TR.unpad_sequence(tp, tl, batch_first=True)):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_pack_padded_sequence_errors():
    x = cr.ones(3, 2, 1)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        R.pack_padded_sequence(x, [1, 3])
    with pytest.raises(RuntimeError, match="greater than 0"):
        R.pack_padded_sequence(x, [3, 0])
    with pytest.raises(ValueError, match="total_length"):
        R.pad_packed_sequence(R.pack_padded_sequence(x, [3, 2]), total_length=2)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_recurrent_layers_accept_packed_sequences(kind, batch_first, with_hx):
    torch.manual_seed(0)
    t = getattr(torch.nn, kind)(3, 4, num_layers=2, bidirectional=True,
                                batch_first=batch_first).double()
    c = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True,
                          batch_first=batch_first).double()
    load_from_torch(c, t)
    seqs = _seqs([2, 5, 3, 3, 1])
    cs = [cr.tensor(s, requires_grad=True) for s in seqs]
    ts = [torch.tensor(s, requires_grad=True) for s in seqs]
    ck = R.pack_sequence(cs, enforce_sorted=False)
    tk = TR.pack_sequence(ts, enforce_sorted=False)
    c_hx = t_hx = None
    if with_hx:
        h = RNG.standard_normal((4, 5, 4))
        c_hx, t_hx = cr.tensor(h), torch.tensor(h)
        if kind == "LSTM":
            c_hx, t_hx = (c_hx, c_hx * 0.5), (t_hx, t_hx * 0.5)
    co, ch = c(ck, c_hx)
    to, th = t(tk, t_hx)
    assert isinstance(co, R.PackedSequence)
    assert co.batch_sizes.tolist() == to.batch_sizes.tolist()
    np.testing.assert_allclose(co.data.detach().numpy(), to.data.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    ch = ch if isinstance(ch, tuple) else (ch,)
    th = th if isinstance(th, tuple) else (th,)
    loss_c = (co.data ** 2).sum() + sum((h * (i + 2)).sum() for i, h in enumerate(ch))
    loss_t = (to.data ** 2).sum() + sum((h * (i + 2)).sum() for i, h in enumerate(th))
    for a, b in zip(ch, th):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    loss_c.backward()
    loss_t.backward()
    for a, b in zip(cs, ts):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (n, p), q in zip(c.named_parameters(), t.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=n)


# ---- weight and spectral normalization ----------------------------------------------------------
def _pair_linear(make_c=None):
    torch.manual_seed(0)
    t = torch.nn.Conv1d(3, 4, 2).double()
    c = nn.Conv1d(3, 4, 2).double()
    load_from_torch(c, t)
    return c, t


def _check_forward_and_grads(c, t, steps=1):
    x = RNG.standard_normal((2, 3, 5))
    for _ in range(steps):
        cy, ty = c(cr.tensor(x)), t(torch.tensor(x))
        np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    (cy ** 2).sum().backward()
    (ty ** 2).sum().backward()
    tp = dict(t.named_parameters())
    for n, p in c.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[n].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=n)


@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_parametrization_matches_torch(dim):
    c, t = _pair_linear()
    c = nn.utils.parametrizations.weight_norm(c, dim=dim)
    t = torch.nn.utils.parametrizations.weight_norm(t, dim=dim)
    assert type(c).__name__ == type(t).__name__ == "ParametrizedConv1d"
    assert list(c.state_dict()) == list(t.state_dict())
    _check_forward_and_grads(c, t)
    nn.utils.parametrize.remove_parametrizations(c, "weight")
    torch.nn.utils.parametrize.remove_parametrizations(t, "weight")
    assert type(c) is nn.Conv1d and list(c.state_dict()) == list(t.state_dict())
    np.testing.assert_allclose(c.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("dim", [0, 2, None])
def test_hook_weight_norm_matches_torch_and_removes(dim):
    c, t = _pair_linear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        c = nn.utils.weight_norm(c, dim=dim)
        t = torch.nn.utils.weight_norm(t, dim=dim)
    assert list(c.state_dict()) == list(t.state_dict()) == ["bias", "weight_g", "weight_v"]
    _check_forward_and_grads(c, t)
    nn.utils.remove_weight_norm(c)
    torch.nn.utils.remove_weight_norm(t)
    assert list(c.state_dict()) == list(t.state_dict())
    np.testing.assert_allclose(c.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="weight_norm of 'weight' not found"):
        nn.utils.remove_weight_norm(c)


def test_weight_norm_parametrization_loads_old_checkpoints():
    old = nn.utils.weight_norm(nn.Linear(3, 2))
    new = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))
    new.load_state_dict(old.state_dict())
    np.testing.assert_allclose(new.weight.detach().numpy(), old.weight.detach().numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("form", ["parametrization", "hook"])
def test_spectral_norm_matches_torch_over_training_steps(form):
    c, t = _pair_linear()
    if form == "parametrization":
        c = nn.utils.parametrizations.spectral_norm(c)
        t = torch.nn.utils.parametrizations.spectral_norm(t)
    else:
        c = nn.utils.spectral_norm(c, n_power_iterations=2)
        t = torch.nn.utils.spectral_norm(t, n_power_iterations=2)
    assert list(c.state_dict()) == list(t.state_dict())
    load_from_torch(c, t)  # the same u, v buffers
    _check_forward_and_grads(c, t, steps=3)
    c.eval()
    t.eval()
    _check_forward_and_grads(c, t)


def test_spectral_norm_bounds_the_largest_singular_value():
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5))
    for _ in range(30):
        lin(cr.ones(1, 6))
    s = np.linalg.svd(lin.weight.detach().numpy(), compute_uv=False)
    assert abs(s[0] - 1) < 1e-3


def test_register_parametrization_custom_and_cached():
    class Symmetric(nn.Module):
        def forward(self, x):
            return x.triu() + x.triu(1).transpose(0, 1)

    lin = nn.Linear(3, 3)
    nn.utils.parametrize.register_parametrization(lin, "weight", Symmetric())
    w = lin.weight.detach().numpy()
    np.testing.assert_array_equal(w, w.T)
    assert nn.utils.parametrize.is_parametrized(lin, "weight")
    assert nn.utils.parametrize.type_before_parametrizations(lin) is nn.Linear
    with nn.utils.parametrize.cached():
        assert lin.weight is lin.weight
    assert lin.weight is not lin.weight
    with pytest.raises(ValueError, match="does not have a parameter"):
        nn.utils.parametrize.register_parametrization(lin, "nothing", Symmetric())


# ---- fusion, functional_call, skip_init, vectors ------------------------------------------------
def test_fuse_conv_and_linear_with_batchnorm_match_torch():
    torch.manual_seed(0)
    t_conv, t_bn = torch.nn.Conv2d(2, 3, 3).double().eval(), torch.nn.BatchNorm2d(3).double()
    t_bn.running_mean.uniform_(-1, 1)
    t_bn.running_var.uniform_(0.5, 2)
    t_bn.weight.data.uniform_(0.5, 2)
    t_bn.eval()
    c_conv, c_bn = nn.Conv2d(2, 3, 3).double().eval(), nn.BatchNorm2d(3).double().eval()
    load_from_torch(c_conv, t_conv)
    load_from_torch(c_bn, t_bn)
    t_f = torch.nn.utils.fuse_conv_bn_eval(t_conv, t_bn)
    c_f = nn.utils.fuse_conv_bn_eval(c_conv, c_bn)
    x = RNG.standard_normal((1, 2, 5, 5))
    np.testing.assert_allclose(c_f(cr.tensor(x)).detach().numpy(),
                               t_f(torch.tensor(x)).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(c_f(cr.tensor(x)).detach().numpy(),
                               c_bn(c_conv(cr.tensor(x))).detach().numpy(), rtol=1e-12)
    t_lin, t_bn1 = torch.nn.Linear(4, 3).double().eval(), torch.nn.BatchNorm1d(3).double().eval()
    c_lin, c_bn1 = nn.Linear(4, 3).double().eval(), nn.BatchNorm1d(3).double().eval()
    load_from_torch(c_lin, t_lin)
    load_from_torch(c_bn1, t_bn1)
    x = RNG.standard_normal((2, 4))
    np.testing.assert_allclose(
        nn.utils.fuse_linear_bn_eval(c_lin, c_bn1)(cr.tensor(x)).detach().numpy(),
        torch.nn.utils.fuse_linear_bn_eval(t_lin, t_bn1)(torch.tensor(x)).detach().numpy(),
        rtol=1e-12)
    with pytest.raises(AssertionError, match="Fusion only for eval"):
        nn.utils.fuse_conv_bn_eval(c_conv.train(), c_bn)


def test_functional_call_swaps_and_restores():
    lin = nn.Linear(2, 1)
    w = cr.tensor([[2.0, 3.0]], requires_grad=True)
    out = nn.utils.stateless.functional_call(lin, {"weight": w, "bias": cr.zeros(1)},
                                             (cr.ones(1, 2),))
    np.testing.assert_allclose(out.detach().numpy(), [[5.0]])
    out.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [[1.0, 1.0]])
    assert isinstance(lin.weight, nn.Parameter) and lin.weight is not w
    with pytest.raises(RuntimeError, match="Missing key"):
        nn.utils.stateless.functional_call(lin, {"weight": w}, (cr.ones(1, 2),), strict=True)


def test_skip_init_leaves_the_random_stream_alone():
    cr.manual_seed(3)
    m = nn.utils.skip_init(nn.Linear, 4, 5)
    after = cr.rand(3).numpy()
    cr.manual_seed(3)
    np.testing.assert_array_equal(after, cr.rand(3).numpy())
    assert tuple(m.weight.shape) == (5, 4) and isinstance(m.weight, nn.Parameter)


def test_vector_conversions_match_torch():
    torch.manual_seed(0)
    t = torch.nn.Linear(3, 2).double()
    c = nn.Linear(3, 2).double()
    load_from_torch(c, t)
    v_c = nn.utils.parameters_to_vector(c.parameters())
    v_t = torch.nn.utils.parameters_to_vector(t.parameters())
    np.testing.assert_array_equal(v_c.detach().numpy(), v_t.detach().numpy())
    nn.utils.vector_to_parameters(v_c * 2, c.parameters())
    np.testing.assert_array_equal(c.bias.detach().numpy(), 2 * t.bias.detach().numpy())


# ---- nn.init ------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [(-2.0, 2.0), (0.5, 3.0), (-4.0, -1.5)])
def test_trunc_normal_stays_in_bounds_with_the_truncated_moments(a, b):
    """Both of PyTorch's samplers (redraw when [a, b] holds > 30% of the mass, else uniform
    proposals): values in [a, b] with the truncated normal's mean."""
    cr.manual_seed(0)
    x = nn.init.trunc_normal_(cr.empty(40000, dtype=cr.float64), 0.0, 1.0, a, b).numpy()
    assert x.min() >= a and x.max() <= b

    def pdf(v):
        return math.exp(-v * v / 2) / math.sqrt(2 * math.pi)

    def cdf(v):
        return (1 + math.erf(v / math.sqrt(2))) / 2

    mean = (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))
    assert abs(x.mean() - mean) < 0.02


def test_init_functions_follow_torch_definitions():
    cr.manual_seed(0)
    w = nn.init.kaiming_uniform_(cr.empty(200, 300), a=math.sqrt(5))
    bound = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + 5)) / math.sqrt(300))
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.99 * bound
    w = nn.init.xavier_uniform_(cr.empty(100, 50), gain=2.0)
    assert w.abs().max().item() <= 2.0 * math.sqrt(6.0 / 150)
    q = nn.init.orthogonal_(cr.empty(4, 7), gain=1.5).numpy()
    np.testing.assert_allclose(q @ q.T, 2.25 * np.eye(4), atol=1e-5)
    s = nn.init.sparse_(cr.empty(10, 6), 0.35).numpy()
    assert ((s == 0).sum(0) == math.ceil(0.35 * 10)).all()
    e = nn.init.eye_(cr.empty(3, 4)).numpy()
    np.testing.assert_array_equal(e, np.eye(3, 4))
    d = nn.init.dirac_(cr.empty(4, 2, 3, 3), groups=2).numpy()
    t = torch.nn.init.dirac_(torch.empty(4, 2, 3, 3), groups=2).numpy()
    np.testing.assert_array_equal(d, t)
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu"):
        assert nn.init.calculate_gain(name) == torch.nn.init.calculate_gain(name)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain(
        "leaky_relu", 0.2)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(cr.empty(3))
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_normal_(cr.empty(0, 3))


def test_deprecated_init_aliases_warn_and_work():
    for name in ("uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
                 "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"):
        assert getattr(nn.init, name).__name__ == name
    with pytest.warns(FutureWarning, match="nn.init.constant_"):
        t = nn.init.constant(cr.empty(2), 3.0)
    np.testing.assert_array_equal(t.numpy(), [3.0, 3.0])
