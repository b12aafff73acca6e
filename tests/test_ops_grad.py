"""Gradients of every differentiable registry entry: float64 gradcheck and gradgradcheck against
central differences, plus the special cases (ties, repeated indices, extreme inputs)."""

from __future__ import annotations

import numpy as np
import pytest
from op_registry import (
    REGISTRY, SCALAR, as_outputs, closure, cr_args, diff_mask, make_args, params,
)

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck
from square_gates import BadSquare


def _grad_case(spec, shapes, kw):
    inputs, fn = closure(spec, make_args(spec, shapes), kw)
    if not inputs:
        pytest.skip("no differentiable input")
    return inputs, fn


@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.grad and s.out == "same"))
def test_gradcheck(spec, shapes, kw):
    inputs, fn = _grad_case(spec, shapes, kw)
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("spec,shapes,kw",
                         params(lambda s: s.grad and s.gradgrad and s.out == "same"))
def test_gradgradcheck(spec, shapes, kw):
    inputs, fn = _grad_case(spec, shapes, kw)
    assert gradgradcheck(fn, inputs)


def test_every_differentiable_entry_is_checked():
    """No entry with a float result opts out of gradcheck or gradgradcheck."""
    skipped = [s.name for s in REGISTRY if s.out == "same" and not (s.grad and s.gradgrad)]
    assert not skipped


# ---- the harness can fail ---------------------------------------------------------------------
class _FirstOrderOnlySquare(cr.autograd.Function):
    """y = x²  whose backward is right but built from a detached x (no second derivative)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x.detach()


def test_gradcheck_catches_a_wrong_backward():
    x = cr.tensor([0.5, -1.5, 2.0], dtype=cr.float64, requires_grad=True)
    with pytest.raises(cr.autograd.GradcheckError, match="input 0"):
        gradcheck(BadSquare.apply, (x,))
    assert gradcheck(lambda t: t * t, (x,))


def test_gradgradcheck_catches_a_wrong_second_derivative():
    x = cr.tensor([0.5, -1.5, 2.0], dtype=cr.float64, requires_grad=True)
    assert gradcheck(_FirstOrderOnlySquare.apply, (x,))
    with pytest.raises(cr.autograd.GradcheckError):
        gradgradcheck(_FirstOrderOnlySquare.apply, (x,))


# ---- specials -----------------------------------------------------------------------------------
def _grad(fn, x: np.ndarray, w=None):
    """d/dx of sum(w · fn(x)) for chainrule, as an ndarray (w = ones by default)."""
    t = cr.tensor(x, requires_grad=True)
    out = fn(t)
    out = out[0] if isinstance(out, tuple) else out
    w = np.ones(out.shape) if w is None else w
    (out * cr.tensor(w, dtype=out.dtype)).sum().backward()
    return t.grad.numpy()


def _torch_grad(fn, x: np.ndarray, w=None):
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    out = fn(t)
    out = out[0] if isinstance(out, tuple) else out
    w = np.ones(tuple(out.shape)) if w is None else w
    (out * torch.tensor(w, dtype=out.dtype)).sum().backward()
    return t.grad.numpy()


_X = np.arange(12, dtype=np.float64).reshape(3, 4) / 7.0

# (name, chainrule/torch call as f(m, x), key whose repeats must accumulate)
_REPEATS = [
    ("int list", lambda m, x: x[[0, 0, 2, 0]], ([0, 0, 2, 0],)),
    ("nested list", lambda m, x: x[m.tensor([[1, 1], [1, 0]])], (np.array([[1, 1], [1, 0]]),)),
    ("pairs", lambda m, x: x[[0, 0, 2], [1, 1, 3]], ([0, 0, 2], [1, 1, 3])),
    ("slice and list", lambda m, x: x[1:, [3, 3, 0]],
     (np.array([[1], [2]]), np.array([[3, 3, 0]]))),
    ("int and list", lambda m, x: x[2, [1, 1, 1]], (2, [1, 1, 1])),
    ("index_select", lambda m, x: m.index_select(x, 0, m.tensor([2, 2, 2, 1])),
     ([2, 2, 2, 1],)),
    ("gather", lambda m, x: m.gather(x, 1, m.tensor([[0, 0], [3, 3], [1, 1]])),
     (np.array([[0], [1], [2]]), np.array([[0, 0], [3, 3], [1, 1]]))),
    ("take_along_dim", lambda m, x: m.take_along_dim(x, m.tensor([[2, 2, 2, 0]]), 0),
     (np.array([[2, 2, 2, 0]]), np.arange(4)[None])),
]


@pytest.mark.parametrize("name,call,key", _REPEATS, ids=[r[0] for r in _REPEATS])
def test_repeated_indices_accumulate(name, call, key):
    out_shape = call(cr, cr.tensor(_X)).shape
    w = np.random.default_rng(0).standard_normal(tuple(out_shape))
    want = np.zeros_like(_X)
    np.add.at(want, key, w)  # the adjoint of reading at ``key``: add back, repeats summed
    got = _grad(lambda t: call(cr, t), _X, w)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert (got != 0).sum() < got.size  # untouched places stay zero
    np.testing.assert_allclose(got, _torch_grad(lambda t: call(_torch(), t), _X, w), rtol=1e-12)


def _torch():
    return pytest.importorskip("torch")


def test_repeated_scatter_add_accumulates_forward_and_backward():
    x = np.zeros((2, 3))
    src = np.arange(1.0, 7.0).reshape(2, 3)
    idx = [[0, 0, 0], [0, 2, 0]]
    out = cr.scatter_add(cr.tensor(x), 1, cr.tensor(idx), cr.tensor(src))
    np.testing.assert_allclose(out.numpy(), [[6.0, 0, 0], [10.0, 0, 5.0]])
    s = cr.tensor(src, requires_grad=True)
    w = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (cr.scatter_add(cr.tensor(x), 1, cr.tensor(idx), s) * cr.tensor(w)).sum().backward()
    np.testing.assert_allclose(s.grad.numpy(), [[1.0, 1.0, 1.0], [4.0, 6.0, 4.0]])


def _max_dim(m, x):
    return m.max(x, dim=1)


def test_max_with_dim_ties_pick_the_first_index_and_route_the_gradient_there():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [5.0, 5.0, 5.0]])
    values, indices = cr.max(cr.tensor(x), dim=1)
    np.testing.assert_array_equal(indices.numpy(), [1, 0, 0])
    np.testing.assert_array_equal(cr.argmax(cr.tensor(x), dim=1).numpy(), [1, 0, 0])
    g = _grad(lambda t: cr.max(t, dim=1).values, x)
    np.testing.assert_array_equal(g, [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(g, _torch_grad(lambda t: _torch().max(t, dim=1).values, x))
    t_idx = _torch().max(_torch().tensor(x), dim=1).indices.numpy()
    np.testing.assert_array_equal(indices.numpy(), t_idx)


def test_min_with_dim_ties_pick_the_first_index_and_route_the_gradient_there():
    x = np.array([[3.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    values, indices = cr.min(cr.tensor(x), dim=-1, keepdim=True)
    np.testing.assert_array_equal(indices.numpy(), [[1], [0]])
    np.testing.assert_array_equal(cr.argmin(cr.tensor(x), dim=1).numpy(), [1, 0])
    g = _grad(lambda t: cr.min(t, dim=-1, keepdim=True)[0], x)
    np.testing.assert_array_equal(g, [[0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(
        g, _torch_grad(lambda t: _torch().min(t, dim=-1, keepdim=True)[0], x))


_SHARE = [
    ("amax", lambda m, t: m.amax(t), np.array([1.0, 3.0, 3.0]), [0, 0.5, 0.5]),
    ("max()", lambda m, t: m.max(t), np.array([1.0, 3.0, 3.0]), [0, 0.5, 0.5]),
    ("amin", lambda m, t: m.amin(t), np.array([-1.0, 3.0, -1.0]), [0.5, 0, 0.5]),
    ("min()", lambda m, t: t.min(), np.array([-1.0, -1.0, -1.0]), [1 / 3, 1 / 3, 1 / 3]),
    ("amax(dim=1)", lambda m, t: m.amax(t, dim=1),
     np.array([[3.0, 3.0, 1.0], [2.0, 2.0, 2.0]]), [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]),
    ("amax(dim=(0, 1), keepdim)", lambda m, t: m.amax(t, dim=(0, 1), keepdim=True),
     np.array([[3.0, 0.0], [3.0, 3.0]]), [[1 / 3, 0], [1 / 3, 1 / 3]]),
    ("amin(dim=0)", lambda m, t: m.amin(t, 0), np.array([[1.0, 2.0], [1.0, 0.0]]),
     [[0.5, 0], [0.5, 1]]),
]


@pytest.mark.parametrize("name,call,x,want", _SHARE, ids=[s[0] for s in _SHARE])
def test_amax_and_full_max_share_the_gradient_evenly_among_ties(name, call, x, want):
    g = _grad(lambda t: call(cr, t), x)
    np.testing.assert_allclose(g, want, rtol=1e-12)
    np.testing.assert_allclose(g, _torch_grad(lambda t: call(_torch(), t), x), rtol=1e-12)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_halve_the_gradient_at_ties(name):
    a = np.array([[1.0, 2.0, -3.0], [0.5, 0.5, 4.0]])
    b = np.array([[1.0, 1.0, -3.0], [0.5, 0.7, 4.0]])
    ta = cr.tensor(a, requires_grad=True)
    tb = cr.tensor(b, requires_grad=True)
    getattr(cr, name)(ta, tb).sum().backward()
    tie = a == b
    win_a = a > b if name == "maximum" else a < b
    np.testing.assert_array_equal(ta.grad.numpy(), np.where(tie, 0.5, win_a * 1.0))
    np.testing.assert_array_equal(tb.grad.numpy(), np.where(tie, 0.5, ~win_a * 1.0))
    torch = _torch()
    pa = torch.tensor(a, requires_grad=True)
    pb = torch.tensor(b, requires_grad=True)
    getattr(torch, name)(pa, pb).sum().backward()
    np.testing.assert_array_equal(ta.grad.numpy(), pa.grad.numpy())
    np.testing.assert_array_equal(tb.grad.numpy(), pb.grad.numpy())


def test_maximum_tie_with_a_broadcast_scalar_accumulates_halves():
    x = cr.tensor([1.0, 2.0, 2.0, 3.0], dtype=cr.float64, requires_grad=True)
    c = cr.tensor(2.0, dtype=cr.float64, requires_grad=True)
    cr.maximum(x, c).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0.5, 1])
    assert c.grad.item() == 2.0  # 1 (from x=1) + 0.5 + 0.5


_EXTREME = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -999.0],
                     [1000.0, 1000.0, 1000.0]])
_STABLE = [
    ("softmax", lambda m, t: m.softmax(t, dim=1)),
    ("log_softmax", lambda m, t: m.log_softmax(t, dim=-1)),
    ("logsumexp", lambda m, t: m.logsumexp(t, dim=1)),
    ("logsumexp(all)", lambda m, t: m.logsumexp(t, dim=(0, 1))),
    ("softmax(dim=0)", lambda m, t: m.softmax(t, dim=0)),
    ("log_softmax(dim=0)", lambda m, t: m.log_softmax(t, dim=0)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,call", _STABLE, ids=[s[0] for s in _STABLE])
def test_softmax_family_is_finite_at_plus_minus_1000(name, call, dtype):
    x = _EXTREME.astype(dtype)
    t = cr.tensor(x, requires_grad=True)
    out = call(cr, t)
    assert np.isfinite(out.detach().numpy()).all(), out
    w = np.random.default_rng(0).standard_normal(tuple(out.shape)).astype(dtype)
    (out * cr.tensor(w)).sum().backward()
    assert np.isfinite(t.grad.numpy()).all(), t.grad
    torch = _torch()
    p = torch.tensor(x, requires_grad=True)
    p_out = call(torch, p)
    (p_out * torch.tensor(w)).sum().backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.detach().numpy(), p_out.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(t.grad.numpy(), p.grad.numpy(), rtol=tol, atol=tol)


def test_softmax_family_second_derivatives_at_large_inputs():
    x = cr.tensor(_EXTREME[:2] / 100.0 + 990.0, dtype=cr.float64, requires_grad=True)
    for fn in (lambda t: cr.softmax(t, 1), lambda t: cr.log_softmax(t, 0),
               lambda t: cr.logsumexp(t, 1)):
        assert gradcheck(fn, (x,))
        assert gradgradcheck(fn, (x,))


_NEG_STEPS = [
    ("::-1", (slice(None, None, -1),)),
    ("::-2", (slice(None, None, -2),)),
    ("3:0:-1", (slice(3, 0, -1),)),
    ("-1:-5:-2", (slice(-1, -5, -2),)),
    (":, ::-1", (slice(None), slice(None, None, -1))),
    ("::-1, 1", (slice(None, None, -1), 1)),
    ("::-2, [0, 0, 2]", (slice(None, None, -2), [0, 0, 2])),
]


@pytest.mark.parametrize("name,key", _NEG_STEPS, ids=[n[0] for n in _NEG_STEPS])
def test_negative_step_slices(name, key):
    x = np.arange(15, dtype=np.float64).reshape(5, 3)
    np.testing.assert_array_equal(cr.tensor(x)[key].numpy(), x[key])
    w = np.random.default_rng(0).standard_normal(x[key].shape)
    want = np.zeros_like(x)
    np.add.at(want, key if not isinstance(key[-1], list) else (np.arange(5)[key[0]][:, None],
                                                                 np.array(key[1])[None]), w)
    np.testing.assert_allclose(_grad(lambda t: t[key], x, w), want, rtol=1e-12)
    t = cr.tensor(x, requires_grad=True)
    assert gradgradcheck(lambda v: v[key], (t,))


_MASKS = [
    ("full mask", np.array([[True, False, True], [False, False, False], [True, True, True]])),
    ("row mask", np.array([True, False, True])),
    ("all false", np.zeros((3, 3), bool)),
]


@pytest.mark.parametrize("name,mask", _MASKS, ids=[m[0] for m in _MASKS])
def test_boolean_masks(name, mask):
    x = np.arange(9, dtype=np.float64).reshape(3, 3) - 4
    out = cr.tensor(x)[cr.tensor(mask)]
    np.testing.assert_array_equal(out.numpy(), x[mask])
    np.testing.assert_array_equal(cr.tensor(x)[mask].numpy(), x[mask])  # a NumPy mask too
    w = np.arange(1.0, x[mask].size + 1).reshape(x[mask].shape)
    want = np.zeros_like(x)
    want[mask] = w
    np.testing.assert_array_equal(_grad(lambda t: t[cr.tensor(mask)], x, w), want)
    np.testing.assert_array_equal(
        _grad(lambda t: t[cr.tensor(mask)], x, w),
        _torch_grad(lambda t: t[_torch().tensor(mask)], x, w))


def test_mask_from_a_comparison_routes_gradient_only_to_selected():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    g = _grad(lambda t: t[t > 0] * 3.0, x)
    np.testing.assert_array_equal(g, [[0, 3], [3, 0]])


_BASIC = [
    ("None", lambda t: t[None]),
    ("...", lambda t: t[...]),
    ("None, ..., 1", lambda t: t[None, ..., 1]),
    ("..., None, 0", lambda t: t[..., None, 0]),
    ("1, None, ...", lambda t: t[1, None, ...]),
    ("-1", lambda t: t[-1]),
    ("[-1, 0]", lambda t: t[[-1, 0]]),
    ("..., [2, 2]", lambda t: t[..., [2, 2]]),
]


@pytest.mark.parametrize("name,call", _BASIC, ids=[b[0] for b in _BASIC])
def test_none_ellipsis_and_int_lists_match_torch(name, call):
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 5
    out = call(cr.tensor(x))
    torch = _torch()
    want = call(torch.tensor(x))
    assert tuple(out.shape) == tuple(want.shape)
    np.testing.assert_array_equal(out.numpy(), want.numpy())
    w = np.random.default_rng(3).standard_normal(tuple(want.shape))
    np.testing.assert_allclose(_grad(call, x, w), _torch_grad(call, x, w), rtol=1e-12)


@pytest.mark.parametrize("x", [
    np.array([[2.0, 0.0, 3.0], [1.5, -2.0, 0.5]]),   # one zero in a slice
    np.array([[0.0, 0.0, 3.0], [1.5, -2.0, 0.5]]),   # two zeros in a slice
    np.array([[0.0, 1.0, 3.0], [1.5, 0.0, 0.0]]),
    np.array([[0.0, 0.0, 0.0], [1.5, 0.0, -1.0]]),   # three zeros
], ids=["one zero", "two zeros", "mixed", "three zeros"])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_prod_with_zeros(x, dim):
    def fn(t):
        return cr.prod(t) if dim is None else cr.prod(t, dim)

    t = cr.tensor(x, requires_grad=True)
    assert gradcheck(fn, (t,))
    assert gradgradcheck(fn, (t,))
    torch = _torch()
    want = _torch_grad(lambda p: torch.prod(p) if dim is None else torch.prod(p, dim), x)
    np.testing.assert_allclose(_grad(fn, x), want, rtol=1e-12)


# ---- gradients keep the input's dtype and work through strided views ----------------------------
@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.grad and s.out == "same"))
def test_float32_gradients_stay_float32(spec, shapes, kw):
    args = make_args(spec, shapes, np.float32)
    mask = diff_mask(spec, args)
    if not any(mask):
        pytest.skip("no differentiable input")
    ins = cr_args(args, mask)
    outs = [o for o in as_outputs(spec.op(*ins, **kw)) if o.dtype.is_floating_point]
    assert all(o.dtype == cr.float32 for o in outs), [o.dtype for o in outs]
    sum(o.sum() for o in outs).backward()
    for i, (t, g) in enumerate(zip(ins, mask)):
        if g:
            assert t.grad is not None, f"{spec.name}: input {i} got no gradient"
            assert t.grad.dtype == cr.float32, f"{spec.name}: input {i} grad {t.grad.dtype}"
            assert t.grad.shape == t.shape, f"{spec.name}: input {i} grad {t.grad.shape}"


def _strided(a: np.ndarray, how: str):
    """(leaf data, view(leaf) -> tensor equal to ``a`` but with unusual strides)."""
    if how == "transposed":
        return np.ascontiguousarray(a.T), lambda t: t.permute(*range(a.ndim - 1, -1, -1))
    return np.ascontiguousarray(a[::-1]), lambda t: t[::-1]  # negative stride on dim 0


@pytest.mark.parametrize("how", ["transposed", "reversed"])
@pytest.mark.parametrize("spec,shapes,kw", [
    p for p in params(lambda s: s.grad and s.out == "same")
    if any(s != SCALAR and len(s) >= 2 for s in p.values[1])
])
def test_gradcheck_through_strided_views(spec, shapes, kw, how):
    if spec.name.startswith("view"):
        pytest.skip("view() of a non-contiguous tensor raises, as torch's (test_view_*)")
    if "storage" in spec.tags:
        pytest.skip("reads the storage: refused for a non-contiguous input (test_defects)")
    args = make_args(spec, shapes)
    mask = diff_mask(spec, args)
    if not any(mask):
        pytest.skip("no differentiable input")
    leaves, views = [], []
    for a, g in zip(args, mask):
        if isinstance(a, np.ndarray) and a.ndim >= 2:
            data, view = _strided(a, how)
            leaves.append(cr.tensor(data, requires_grad=g))
            views.append(view)
        else:
            leaves.append(cr.tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a)
            views.append(None)

    def call(*leaf_values):
        ins = [v(t) if v is not None else t for t, v in zip(leaf_values, views)]
        return tuple(o for o in as_outputs(spec.op(*ins, **kw))
                     if isinstance(o, cr.Tensor) and o.dtype.is_floating_point)

    if spec.ref is not None:
        want = [w for w in as_outputs(spec.ref(*args, **kw))
                if np.asarray(w).dtype.kind == "f"]
        for got, w in zip(call(*leaves), want):
            np.testing.assert_allclose(got.detach().numpy(), w, rtol=1e-10, atol=1e-12)
    inputs = [t for t in leaves if isinstance(t, cr.Tensor) and t.requires_grad]

    def fn(*ts):
        it = iter(ts)
        return call(*[next(it) if isinstance(t, cr.Tensor) and t.requires_grad else t
                      for t in leaves])

    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.grad and s.out == "same"))
def test_inputs_unchanged_and_backward_repeatable(spec, shapes, kw):
    """Neither forward nor backward writes into an input; with retain_graph a second backward
    adds the same gradient again (no rule mutates what it saved)."""
    args = make_args(spec, shapes)
    mask = diff_mask(spec, args)
    if not any(mask):
        pytest.skip("no differentiable input")
    ins = cr_args(args, mask)
    outs = [o for o in as_outputs(spec.op(*ins, **kw)) if o.dtype.is_floating_point]
    w = [cr.tensor(np.random.default_rng(k).standard_normal(tuple(o.shape))) for k, o in
         enumerate(outs)]
    loss = sum((o * wk).sum() for o, wk in zip(outs, w))
    loss.backward(retain_graph=True)
    first = [t.grad.numpy().copy() if g else None for t, g in zip(ins, mask)]
    loss.backward()
    for i, (t, a, g) in enumerate(zip(ins, args, mask)):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(t.detach().numpy(), a, err_msg=f"input {i} changed")
        if g:
            np.testing.assert_allclose(t.grad.numpy(), 2 * first[i], rtol=1e-12, atol=1e-300,
                                       err_msg=f"{spec.name}: second backward of input {i}")
