"""cr.func against torch.func and against float64 finite differences.

Every transform is checked on random inputs (pytrees, argnums tuples, has_aux), nested for
higher derivatives, and for forward mode on every differentiable op of the registry.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import pytest

import chainrule as cr
from chainrule import func as F

RNG = np.random.default_rng(0)


# ---- helpers ------------------------------------------------------------------------------------
def arr(*shape: int, seed: int = 0) -> np.ndarray:
    """Reproducible float64 values in ±[0.3, 1.5]."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.5, shape)


def c(a) -> cr.Tensor:
    return cr.tensor(np.array(a, dtype=np.float64))


def t(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.array(a, dtype=np.float64))


def leaves(tree) -> list:
    """Leaves of a pytree (tuple/list/dict), after checking nothing else is there."""
    if isinstance(tree, (tuple, list)):
        return [x for node in tree for x in leaves(node)]
    if isinstance(tree, dict):
        return [x for k in tree for x in leaves(tree[k])]
    return [tree]


def shape_of(tree):
    """The container structure of a pytree with leaves replaced by their shapes."""
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, tuple(shape_of(x) for x in tree))
    if isinstance(tree, dict):
        return ("dict", tuple((k, shape_of(v)) for k, v in tree.items()))
    return tuple(tree.shape)


def close(ours, ref, atol: float = 1e-9, rtol: float = 1e-7) -> None:
    """Same pytree structure and shapes, and values equal within tolerance."""
    assert shape_of(ours) == shape_of(ref)
    for a, b in zip(leaves(ours), leaves(ref)):
        b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
        np.testing.assert_allclose(np.asarray(a.detach()), b, atol=atol, rtol=rtol)


def numeric_grad(f, args: list, argnum: int, eps: float = 1e-6) -> np.ndarray:
    """d f(*args) / d args[argnum] by central differences (f returns a chainrule scalar)."""
    x = np.array(args[argnum], dtype=np.float64)
    out = np.zeros_like(x)
    flat, gflat = x.reshape(-1), out.reshape(-1)
    for k in range(flat.size):
        vals = []
        for h in (eps, -eps):
            y = flat.copy()
            y[k] += h
            a = [c(v) for v in args]
            a[argnum] = c(y.reshape(x.shape))
            vals.append(f(*a).item())
        gflat[k] = (vals[0] - vals[1]) / (2 * eps)
    return out


def numeric_jvp(f, primals: list, tangents: list, eps: float = 1e-6) -> list:
    """(f(x + h v) - f(x - h v)) / 2h for every output of f (float64 arrays)."""
    def outs(h):
        r = f(*[c(p + h * v) for p, v in zip(primals, tangents)])
        return [np.asarray(o.detach(), dtype=np.float64) for o in leaves(r)]

    return [(a - b) / (2 * eps) for a, b in zip(outs(eps), outs(-eps))]


def f_mixed(m, x, y):
    """A scalar function of two tensors, written once for chainrule and torch."""
    return (m.sin(x) * y.sum() ** 2).sum() + (m.tanh(x @ y.T) * m.exp(-x.sum())).sum()


# ---- grad ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argnums", [0, 1, -1, (0, 1), (1, 0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_grad_matches_torch_func_and_finite_differences(argnums, seed) -> None:
    torch = pytest.importorskip("torch")
    xa, ya = arr(2, 3, seed=seed), arr(4, 3, seed=seed + 10)
    ours = F.grad(lambda x, y: f_mixed(cr, x, y), argnums=argnums)(c(xa), c(ya))
    ref = torch.func.grad(lambda x, y: f_mixed(torch, x, y), argnums=argnums)(t(xa), t(ya))
    close(ours, ref)
    nums = (argnums,) if isinstance(argnums, int) else argnums
    got = (ours,) if isinstance(argnums, int) else ours
    for n, g in zip(nums, got):
        fd = numeric_grad(lambda x, y: f_mixed(cr, x, y), [xa, ya], n % 2)
        np.testing.assert_allclose(g.numpy(), fd, atol=1e-6, rtol=1e-5)


def test_grad_of_pytree_arguments_dict_list_namedtuple() -> None:
    torch = pytest.importorskip("torch")
    Pair = namedtuple("Pair", "a b")
    W, b, v, p, q = arr(3, 2), arr(2, seed=1), arr(2, seed=2), arr(3, seed=3), arr(3, seed=4)

    def loss(m, params, extra):
        h = m.tanh(extra[0] @ params["W"] + params["b"])
        return (h * extra[1].a).sum() + (extra[1].b ** 2).sum() * params["b"].sum()

    def build(conv):
        return {"W": conv(W), "b": conv(b)}, [conv(p), Pair(conv(v), conv(q))]

    ours = F.grad(lambda P, E: loss(cr, P, E), argnums=(0, 1))(*build(c))
    ref = torch.func.grad(lambda P, E: loss(torch, P, E), argnums=(0, 1))(*build(t))
    close(ours, ref)
    assert isinstance(ours[1][1], Pair)


def test_grad_has_aux_and_the_value_orders() -> None:
    torch = pytest.importorskip("torch")
    xa = arr(3)

    def f(m, x):
        return (x ** 3).sum(), {"sq": x * x, "n": x.sum()}

    ours = F.grad(lambda x: f(cr, x), has_aux=True)(c(xa))
    ref = torch.func.grad(lambda x: f(torch, x), has_aux=True)(t(xa))
    close(ours, ref)
    g, (value, aux) = F.grad_and_value(lambda x: f(cr, x), has_aux=True)(c(xa))
    rg, (rvalue, raux) = torch.func.grad_and_value(lambda x: f(torch, x), has_aux=True)(t(xa))
    close((g, value, aux), (rg, rvalue, raux))
    g2, v2 = F.grad_and_value(lambda x: (x ** 3).sum())(c(xa))
    np.testing.assert_allclose(g2.numpy(), 3 * xa ** 2)
    assert v2.item() == pytest.approx((xa ** 3).sum())
    v3, g3 = F.value_and_grad(lambda x: (x ** 3).sum())(c(xa))
    np.testing.assert_allclose(g3.numpy(), 3 * xa ** 2)
    assert v3.item() == pytest.approx((xa ** 3).sum())
    (v4, aux4), g4 = F.value_and_grad(lambda x: f(cr, x), has_aux=True)(c(xa))
    close((g4, v4, aux4), (rg, rvalue, raux))
    assert not aux4["sq"].requires_grad and not v4.requires_grad


def test_grad_passes_keyword_arguments_through() -> None:
    g = F.grad(lambda x, scale=1.0: (x * scale).sum())(c([1.0, 2.0]), scale=3.0)
    np.testing.assert_allclose(g.numpy(), [3.0, 3.0])


@pytest.mark.parametrize(
    "f, derivs",
    [
        (lambda x: x.sin(), [math.cos, lambda v: -math.sin(v), lambda v: -math.cos(v),
                             math.sin]),
        (lambda x: x.exp(), [math.exp] * 4),
        (lambda x: 2 * x ** 5 - x ** 3 + 4 * x,
         [lambda v: 10 * v ** 4 - 3 * v ** 2 + 4, lambda v: 40 * v ** 3 - 6 * v,
          lambda v: 120 * v ** 2 - 6, lambda v: 240 * v]),
        (lambda x: x.sin() * x.exp(),
         [lambda v: math.exp(v) * (math.sin(v) + math.cos(v)),
          lambda v: 2 * math.exp(v) * math.cos(v),
          lambda v: 2 * math.exp(v) * (math.cos(v) - math.sin(v)),
          lambda v: -4 * math.exp(v) * math.sin(v)]),
    ],
    ids=["sin", "exp", "polynomial", "sin*exp"],
)
def test_nested_grad_gives_third_and_fourth_derivatives(f, derivs) -> None:
    for v in (0.3, -1.1, 1.7):
        g = f
        for d in derivs:
            g = F.grad(g)
            assert g(c(v)).item() == pytest.approx(d(v), rel=1e-10, abs=1e-10)


def test_nested_grad_matches_torch_on_tensors() -> None:
    torch = pytest.importorskip("torch")
    xa = arr(3)

    def f(x):
        return (x.sin() * x.exp()).sum() * x.sum()

    def third(grad, x):
        return grad(lambda y: grad(lambda z: grad(f)(z).sum())(y).pow(2).sum())(x)

    close(third(F.grad, c(xa)), third(torch.func.grad, t(xa)))


def test_nested_closures_have_no_perturbation_confusion() -> None:
    # d/dx [x * d/dy (x + y)] = d/dx [x] = 1 (a naive nesting gets 2)
    g = F.grad(lambda x: x * F.grad(lambda y: x + y)(c(1.0)))(c(1.0))
    assert g.item() == pytest.approx(1.0)
    # the inner input is the outer variable itself: d/dx [d/dy (x * y)]_(y=x) = d/dx [x] = 1
    g = F.grad(lambda x: F.grad(lambda y: x * y)(x))(c(2.0))
    assert g.item() == pytest.approx(1.0)
    # captured outer variable: d/dx [d/dy (x y²)]_(y=c) = 2c
    g = F.grad(lambda x: F.grad(lambda y: x * y ** 2)(c(3.0)))(c(0.5))
    assert g.item() == pytest.approx(6.0)


def test_unused_inputs_and_constant_outputs_give_zeros() -> None:
    torch = pytest.importorskip("torch")
    x, y = arr(2, 3), arr(4)
    g = F.grad(lambda a, b: (b * 2).sum(), argnums=(0, 1))(c(x), c(y))
    rg = torch.func.grad(lambda a, b: (b * 2).sum(), argnums=(0, 1))(t(x), t(y))
    close(g, rg)
    g = F.grad(lambda a: cr.tensor(1.0, dtype=cr.float64))(c(x))
    np.testing.assert_array_equal(g.numpy(), np.zeros((2, 3)))
    jr = F.jacrev(lambda a, b: b * 2)(c([1.0, 2.0]), c(y))
    jf = F.jacfwd(lambda a, b: b * 2)(c([1.0, 2.0]), c(y))
    np.testing.assert_array_equal(jr.numpy(), np.zeros((4, 2)))
    np.testing.assert_array_equal(jf.numpy(), np.zeros((4, 2)))
    _, jv = F.jvp(lambda a: cr.ones(3, dtype=cr.float64), (c(x),), (c(y[:1] * 0 + x),))
    np.testing.assert_array_equal(jv.numpy(), np.zeros(3))


def test_top_level_results_are_detached_like_torch() -> None:
    x = c(arr(3))
    g, v = F.grad_and_value(lambda a: (a ** 3).sum())(x)
    assert not g.requires_grad and not v.requires_grad
    out, fn = F.vjp(lambda a: a.sin(), x)
    assert not out.requires_grad and not fn(cr.ones(3, dtype=cr.float64))[0].requires_grad
    o, jv = F.jvp(lambda a: a.sin(), (x,), (x,))
    assert not o.requires_grad and not jv.requires_grad
    assert not F.jacrev(lambda a: a.sin())(x).requires_grad
    assert not F.hessian(lambda a: (a ** 3).sum())(x).requires_grad
    assert not F.hvp(lambda a: (a ** 3).sum(), x, x)[1].requires_grad


def test_results_stay_differentiable_for_plain_autograd_like_torch() -> None:
    torch = pytest.importorskip("torch")
    xa, wa = arr(3), arr(3, seed=5)
    x = c(xa).requires_grad_()
    w = c(wa).requires_grad_()
    g = F.grad(lambda a: (a.sin() * w).sum())(x)  # depends on x (input) and on w (captured)
    assert g.requires_grad
    (g * g).sum().backward()
    tx = t(xa).requires_grad_()
    tw = t(wa).requires_grad_()
    tg = torch.func.grad(lambda a: (a.sin() * tw).sum())(tx)
    (tg * tg).sum().backward()
    close((x.grad, w.grad), (tx.grad, tw.grad))


def test_grad_works_inside_no_grad_and_respects_inner_no_grad() -> None:
    x = c(arr(3))
    with cr.no_grad():
        g = F.grad(lambda a: (a ** 2).sum())(x)
        h = F.grad(F.grad(lambda a: a ** 3))(c(2.0))
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy())
    assert h.item() == pytest.approx(12.0)

    def f(a):
        with cr.no_grad():
            b = a * 2
        return (a * b).sum()

    np.testing.assert_allclose(F.grad(f)(x).numpy(), 2 * x.numpy())


def _torch_error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return type(e), str(e)
    raise AssertionError("torch did not raise")


@pytest.mark.parametrize(
    "case",
    [
        lambda m, T: m.func.grad(lambda x: x * 2)(T),
        lambda m, T: m.func.grad(lambda x: x[:1] * 2)(T[0]),
        lambda m, T: m.func.grad_and_value(lambda x: x.sum(1))(T),
        lambda m, T: m.func.grad(lambda x: 3.0)(T),
        lambda m, T: m.func.grad(lambda x: None)(T),
        lambda m, T: m.func.grad(lambda x: x.sum(), has_aux=True)(T),
        lambda m, T: m.func.grad(lambda x: (x.sum(), 3), has_aux=True)(T),
        lambda m, T: m.func.grad(lambda x: x.sum(), argnums=2)(T),
        lambda m, T: m.func.grad(lambda x: x.sum(), argnums=1.0)(T),
        lambda m, T: m.func.grad(lambda x: x.sum(), argnums=())(T),
        lambda m, T: m.func.grad(lambda x, y: x.sum(), argnums=(0, 0))(T, T),
        lambda m, T: m.func.grad(lambda x: x.sum())(3.0),
        lambda m, T: m.func.vjp(lambda x: 3.0, T),
        lambda m, T: m.func.vjp(lambda x: x, T, has_aux=True),
        lambda m, T: m.func.vjp(lambda x: x * 2, T)[1](T[0]),
        lambda m, T: m.func.vjp(lambda x: (x * 2, x), T)[1](T),
        lambda m, T: m.func.vjp(lambda x: x, T)[1](3.0),
        lambda m, T: m.func.jvp(lambda x: x * 2, T, T),
        lambda m, T: m.func.jvp(lambda x: x * 2, [T], [T]),
        lambda m, T: m.func.jvp(lambda x: x * 2, (T,), (T[0],)),
        lambda m, T: m.func.jvp(lambda x: x * 2, (T,), (1.0,)),
        lambda m, T: m.func.jvp(lambda x: 3.0, (T,), (T,)),
        lambda m, T: m.func.jvp(lambda x: x, (T,), (T,), has_aux=True),
        lambda m, T: m.func.jacrev(lambda x: x, has_aux=True)(T),
        lambda m, T: m.func.jacfwd(lambda x: x, has_aux=True)(T),
        lambda m, T: m.func.jacrev(lambda x: 3.0)(T),
        lambda m, T: m.func.jacrev(lambda x: x, argnums=3)(T),
        lambda m, T: m.func.jacfwd(lambda x: x, argnums=(0, 3))(T),
    ],
)
def test_errors_match_torch_func_word_for_word(case) -> None:
    torch = pytest.importorskip("torch")
    expected = _torch_error(lambda: case(torch, torch.ones(2, 3, dtype=torch.float64)))
    with pytest.raises(expected[0]) as info:
        case(cr, cr.ones(2, 3, dtype=cr.float64))
    assert str(info.value).replace("chainrule", "torch") == expected[1]


def test_error_texts_that_torch_phrases_with_its_own_names() -> None:
    x = cr.ones(3, dtype=cr.float64)
    with pytest.raises(RuntimeError, match="Expected f\\(\\*args\\) to return a scalar Tensor, "
                                           "got tensor with 2 dims"):
        F.grad(lambda a: a.reshape(1, 3))(x)
    with pytest.raises(ValueError, match="Expected primal to be floating point"):
        F.jacfwd(lambda a: a * 2)(cr.arange(3))
    with pytest.raises(ValueError, match="Expected tangent to be floating point"):
        F.jvp(lambda a: a, (x,), (cr.arange(3),))
    with pytest.raises(RuntimeError, match="All outputs of f must be floating-point"):
        F.jacrev(lambda a: a.long())(x)
    with pytest.raises(RuntimeError, match="structure \\(\\*,\\) and tangents with structure "
                                           "\\(\\*, \\*\\)"):
        F.jvp(lambda a: a, (x,), (x, x))


# ---- vjp ----------------------------------------------------------------------------------------
def test_vjp_matches_torch_with_pytree_outputs_and_several_primals() -> None:
    torch = pytest.importorskip("torch")
    xa, ya = arr(2, 3), arr(3, seed=2)
    ca, cb = arr(2, 3, seed=3), arr(seed=4)

    def f(m, x, y):
        return {"a": m.sin(x) * y, "b": (x @ y).sum()}, (x * 2).sum()

    out, fn, aux = F.vjp(lambda x, y: f(cr, x, y), c(xa), c(ya), has_aux=True)
    rout, rfn, raux = torch.func.vjp(lambda x, y: f(torch, x, y), t(xa), t(ya), has_aux=True)
    close((out, aux), (rout, raux))
    cots = {"a": ca, "b": cb}
    first = fn({k: c(v) for k, v in cots.items()})
    close(first, rfn({k: t(v) for k, v in cots.items()}))
    again = fn({k: c(2 * v) for k, v in cots.items()})  # vjp_fn may be called many times
    close(again, tuple(2 * g for g in rfn({k: t(v) for k, v in cots.items()})))


def test_vjp_of_a_single_primal_returns_a_one_tuple() -> None:
    out, fn = F.vjp(lambda x: x.exp(), c([0.0, 1.0]))
    (g,) = fn(c([1.0, 1.0]))
    np.testing.assert_allclose(g.numpy(), np.exp([0.0, 1.0]))


# ---- jvp ----------------------------------------------------------------------------------------
def test_jvp_matches_torch_and_finite_differences() -> None:
    torch = pytest.importorskip("torch")
    xa, ya, va, wa = arr(2, 3), arr(4, 3, seed=1), arr(2, 3, seed=2), arr(4, 3, seed=3)

    def f(m, x, y):
        return [m.tanh(x @ y.T), {"s": (x.exp() * 3).sum()}], (y * 2).sum()

    out, jv, aux = F.jvp(lambda x, y: f(cr, x, y), (c(xa), c(ya)), (c(va), c(wa)), has_aux=True)
    rout, rjv, raux = torch.func.jvp(lambda x, y: f(torch, x, y), (t(xa), t(ya)),
                                     (t(va), t(wa)), has_aux=True)
    close((out, jv, aux), (rout, rjv, raux))
    fd = numeric_jvp(lambda x, y: f(cr, x, y)[0], [xa, ya], [va, wa])
    for a, b in zip(leaves(jv), fd):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-6, rtol=1e-6)


def _registry_params():
    try:
        import op_registry as R
    except ImportError:
        return []
    return R.params(lambda s: s.grad)


@pytest.mark.parametrize("spec, shapes, kw", _registry_params())
def test_jvp_supports_every_registry_op(spec, shapes, kw) -> None:
    """Forward mode (double VJP) on each op: J v equals the directional finite difference."""
    import op_registry as R

    args = R.make_args(spec, shapes)
    inputs, fn = R.closure(spec, args, kw)
    if not inputs or not fn(*inputs):
        pytest.skip("no differentiable input or output")
    rng = np.random.default_rng(1)
    primals = [x.detach() for x in inputs]
    tangents = [cr.tensor(rng.standard_normal(x.shape)) for x in primals]
    out, jv = F.jvp(fn, tuple(primals), tuple(tangents))
    fd = numeric_jvp(fn, [p.numpy() for p in primals], [v.numpy() for v in tangents])
    assert len(leaves(jv)) == len(fd)
    for a, b in zip(leaves(jv), fd):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-5, rtol=1e-5, err_msg=spec.name)


def test_jvp_with_differentiable_tangents_and_jvp_of_grad() -> None:
    xa, va = arr(3), arr(3, seed=7)

    def f(x):
        return (x.sin() * x.sum()).sum()

    # forward-over-reverse: jvp(grad(f)) is H v, the same as hvp (reverse-over-reverse)
    _, hv1 = F.jvp(F.grad(f), (c(xa),), (c(va),))
    _, hv2 = F.hvp(f, c(xa), c(va))
    np.testing.assert_allclose(hv1.numpy(), hv2.numpy(), atol=1e-12)
    # a jvp is linear in the tangent: grad w.r.t. the tangent of <Jv, 1> is J^T 1
    g = F.grad(lambda v: F.jvp(lambda x: x.sin() * 2, (c(xa),), (v,))[1].sum())(c(va))
    np.testing.assert_allclose(g.numpy(), 2 * np.cos(xa), atol=1e-12)


# ---- Jacobians ----------------------------------------------------------------------------------
@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
def test_jacfwd_equals_jacrev_equals_torch(argnums) -> None:
    torch = pytest.importorskip("torch")
    xa, ya = arr(2, 3), arr(3, seed=1)

    def f(m, x, y):
        return {"v": m.sin(x @ y) * y.sum(), "m": m.exp(x) * y}, (x * 3).sum()

    fwd = F.jacfwd(lambda x, y: f(cr, x, y), argnums, has_aux=True)(c(xa), c(ya))
    rev = F.jacrev(lambda x, y: f(cr, x, y), argnums, has_aux=True)(c(xa), c(ya))
    ref = torch.func.jacrev(lambda x, y: f(torch, x, y), argnums, has_aux=True)(t(xa), t(ya))
    close(fwd, ref)
    close(rev, ref)


def test_jacobians_of_pytree_inputs_and_scalar_and_0d() -> None:
    torch = pytest.importorskip("torch")
    a, b = arr(2), arr(2, seed=1)

    def f(d):
        return d["a"] * d["b"].exp()

    for jac in (F.jacrev, F.jacfwd):
        close(jac(f)({"a": c(a), "b": c(b)}), torch.func.jacrev(f)({"a": t(a), "b": t(b)}))
        close(jac(lambda x: (x ** 2).sum())(c(a)), t(2 * a))
        close(jac(lambda x: x * cr.ones(3, dtype=cr.float64))(c(1.5)), t(np.ones(3)))
        close(jac(lambda x: [x, x * 2])(c(a)), [t(np.eye(2)), t(2 * np.eye(2))])


def test_jacobian_matches_finite_differences() -> None:
    xa = arr(4)

    def f(x):
        return (x.unsqueeze(0) * x.unsqueeze(1)).tanh().sum(0) + x.sum() ** 2

    fd = np.stack([numeric_jvp(f, [xa], [e])[0] for e in np.eye(4)], axis=-1)
    np.testing.assert_allclose(F.jacfwd(f)(c(xa)).numpy(), fd, atol=1e-6)
    np.testing.assert_allclose(F.jacrev(f)(c(xa)).numpy(), fd, atol=1e-6)


# ---- Hessians -----------------------------------------------------------------------------------
def mlp_loss(m, params, X, y):
    h = m.tanh(X @ params["W1"] + params["b1"])
    out = h @ params["W2"] + params["b2"]
    return ((out.squeeze(-1) - y) ** 2).mean()


def test_hessian_of_a_small_mlp_matches_torch_func_hessian() -> None:
    torch = pytest.importorskip("torch")
    P = {"W1": arr(3, 4), "b1": arr(4, seed=1), "W2": arr(4, 1, seed=2), "b2": arr(1, seed=3)}
    X, y = arr(5, 3, seed=4), arr(5, seed=5)
    ours = F.hessian(lambda p: mlp_loss(cr, p, c(X), c(y)))({k: c(v) for k, v in P.items()})
    ref = torch.func.hessian(lambda p: mlp_loss(torch, p, t(X), t(y)))(
        {k: t(v) for k, v in P.items()})
    close(ours, ref, atol=1e-10)
    assert ours["W1"]["W2"].shape == (3, 4, 4, 1)


def test_hessian_with_argnums_tuple_and_symmetry() -> None:
    torch = pytest.importorskip("torch")
    xa, ya = arr(3), arr(2, seed=1)

    def f(m, x, y):
        return (m.sin(x).sum() * y.exp()).sum() + (x ** 3).sum() * (y ** 2).sum()

    ours = F.hessian(lambda x, y: f(cr, x, y), argnums=(0, 1))(c(xa), c(ya))
    ref = torch.func.hessian(lambda x, y: f(torch, x, y), argnums=(0, 1))(t(xa), t(ya))
    close(ours, ref)
    np.testing.assert_allclose(ours[0][1].numpy(), ours[1][0].numpy().T, atol=1e-12)
    # jacrev(jacrev(f)) is the same matrix
    close(F.jacrev(F.jacrev(lambda x: f(cr, x, c(ya))))(c(xa)), ours[0][0])


# ---- hvp ----------------------------------------------------------------------------------------
def test_hvp_equals_hessian_times_vector_and_torch_functional() -> None:
    torch = pytest.importorskip("torch")
    xa, ya, va, wa = arr(4), arr(3, seed=1), arr(4, seed=2), arr(3, seed=3)

    def f(m, x, y):
        return (m.tanh(x).sum() * m.sin(y)).sum() + (x ** 4).sum() * y.sum()

    value, hv = F.hvp(lambda x, y: f(cr, x, y), (c(xa), c(ya)), (c(va), c(wa)))
    rvalue, rhv = torch.autograd.functional.hvp(lambda x, y: f(torch, x, y), (t(xa), t(ya)),
                                                (t(va), t(wa)))
    close((value, hv), (rvalue, rhv))
    H = F.hessian(lambda x, y: f(cr, x, y), argnums=(0, 1))(c(xa), c(ya))
    Hx = H[0][0].numpy() @ va + H[0][1].numpy() @ wa
    np.testing.assert_allclose(hv[0].numpy(), Hx, atol=1e-12)
    value1, hv1 = F.hvp(lambda x: f(cr, x, c(ya)), c(xa), c(va))  # single tensor in, out
    np.testing.assert_allclose(hv1.numpy(), H[0][0].numpy() @ va, atol=1e-12)


def test_hvp_errors_follow_torch_autograd_functional() -> None:
    x = cr.ones(3, dtype=cr.float64)
    with pytest.raises(RuntimeError, match="should contain a single element"):
        F.hvp(lambda a: a ** 3, x, x)
    with pytest.raises(RuntimeError, match="v has invalid size"):
        F.hvp(lambda a: (a ** 3).sum(), x, cr.ones(2, dtype=cr.float64))
    with pytest.raises(RuntimeError, match="can only be None"):
        F.hvp(lambda a: (a ** 3).sum(), x)
    value, hv = F.hvp(lambda a: (a ** 3).sum(), c([2.0]))
    assert hv.item() == pytest.approx(12.0)


def test_autograd_functional_aliases_use_cr_func() -> None:
    x, v = c(arr(3)), c(arr(3, seed=1))
    _, hv = cr.autograd.functional.hvp(lambda a: (a ** 3).sum(), x, v)
    np.testing.assert_allclose(np.asarray(hv), 6 * x.numpy() * v.numpy())
    H = cr.autograd.functional.hessian(lambda a: (a ** 3).sum(), x)
    np.testing.assert_allclose(H.numpy(), np.diag(6 * x.numpy()))


# ---- random shapes and compositions --------------------------------------------------------------
def test_random_shapes_jacfwd_jacrev_grad_match_torch() -> None:
    torch = pytest.importorskip("torch")
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    def f(m, x, y):
        return m.sin(x) * (y ** 2).sum() + m.exp(x * 0.1).sum()

    @hyp.given(st.lists(st.integers(1, 3), min_size=0, max_size=3),
               st.lists(st.integers(1, 3), min_size=1, max_size=2),
               st.integers(0, 2 ** 16))
    def check(xs, ys, seed):
        xa, ya = arr(*xs, seed=seed), arr(*ys, seed=seed + 1)
        ref = torch.func.jacrev(lambda x, y: f(torch, x, y), (0, 1))(t(xa), t(ya))
        close(F.jacrev(lambda x, y: f(cr, x, y), (0, 1))(c(xa), c(ya)), ref)
        close(F.jacfwd(lambda x, y: f(cr, x, y), (0, 1))(c(xa), c(ya)), ref)
        g = F.grad(lambda x, y: f(cr, x, y).sum(), (0, 1))(c(xa), c(ya))
        close(g, torch.func.grad(lambda x, y: f(torch, x, y).sum(), (0, 1))(t(xa), t(ya)))

    check()


def test_transforms_compose_with_each_other_like_torch() -> None:
    torch = pytest.importorskip("torch")
    xa, ua = arr(3), arr(3, seed=1)

    def f(m, x):
        return m.sin(x) * x.sum()

    def compose(fn, m, x, u):
        # gradient of a vjp, jvp of a jacrev, jacrev of a jvp
        a = fn.grad(lambda z: fn.vjp(lambda w: f(m, w), z)[1](u)[0].pow(2).sum())(x)
        b = fn.jvp(fn.jacrev(lambda w: f(m, w)), (x,), (u,))[1]
        cc = fn.jacrev(lambda z: fn.jvp(lambda w: f(m, w), (z,), (u,))[1])(x)
        return a, b, cc

    close(compose(F, cr, c(xa), c(ua)), compose(torch.func, torch, t(xa), t(ua)))


# ---- linearize and replace_all_batch_norm_modules_ ----------------------------------------------

def test_linearize_matches_torch_and_finite_differences():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(4)

    def f(a, b):
        return {"s": (a.sin() * b).sum(0), "p": a @ b.exp()}

    out, jvp_fn = F.linearize(f, cr.tensor(x), cr.tensor(y))
    t_out, t_jvp_fn = torch.func.linearize(f, torch.tensor(x), torch.tensor(y))
    for k in out:
        np.testing.assert_allclose(out[k].numpy(), t_out[k].numpy(), rtol=1e-12)
    for _ in range(2):  # the recorded graph serves every call
        u, v = rng.standard_normal((3, 4)), rng.standard_normal(4)
        got = jvp_fn(cr.tensor(u), cr.tensor(v))
        want = t_jvp_fn(torch.tensor(u), torch.tensor(v))
        for k in got:
            np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=1e-10, atol=1e-12)
        eps = 1e-6  # and a central difference along (u, v)
        hi, lo = f(cr.tensor(x + eps * u), cr.tensor(y + eps * v)), f(cr.tensor(x - eps * u),
                                                                    cr.tensor(y - eps * v))
        np.testing.assert_allclose(got["p"].numpy(), (hi["p"] - lo["p"]).numpy() / (2 * eps),
                                   rtol=1e-6, atol=1e-8)


def test_linearize_checks_tangents_as_torch():
    _, jvp_fn = F.linearize(lambda a: a * 2, cr.zeros(3, 4, dtype=cr.float64))
    with pytest.raises(RuntimeError, match=r"tangent:0 with shape .*\[2, 4\].* doesn't match the "
                                           r"shape .*\[3, 4\]"):
        jvp_fn(cr.zeros(2, 4, dtype=cr.float64))
    with pytest.raises(RuntimeError, match="tangent:0 with dtype .*float32.* doesn't match"):
        jvp_fn(cr.zeros(3, 4))
    with pytest.raises(RuntimeError, match="to have the same argspec as the primals"):
        jvp_fn(cr.zeros(3, 4, dtype=cr.float64), cr.zeros(3, 4, dtype=cr.float64))


def test_replace_all_batch_norm_modules_drops_running_stats_of_batch_norms_only():
    model = cr.nn.Sequential(cr.nn.Linear(3, 3), cr.nn.BatchNorm1d(3),
                             cr.nn.Sequential(cr.nn.BatchNorm1d(3)),
                             cr.nn.InstanceNorm1d(3, track_running_stats=True))
    assert F.replace_all_batch_norm_modules_(model) is model
    for bn in (model[1], model[2][0]):
        assert not bn.track_running_stats
        assert bn.running_mean is None and bn.running_var is None
        assert bn.num_batches_tracked is None
    # instance norm is not a batch norm (as in torch): its statistics stay
    assert model[3].track_running_stats and model[3].running_mean is not None
    from chainrule.nn.modules.batchnorm import _BatchNorm, _NormBase

    assert not isinstance(model[3], _BatchNorm) and isinstance(model[3], _NormBase)
    x = cr.randn(5, 3)
    model.train()
    y = model[1](x)  # batch statistics, nothing to update
    np.testing.assert_allclose(y.mean(0).detach().numpy(), 0, atol=1e-6)


def test_tanh_higher_derivatives_go_through_one_backward_gate_like_torch() -> None:
    """Under create_graph tanh's gradient is one gate (TanhBackwardBackward0, as torch's), whose
    own backward gives the second, third and fourth derivatives torch gives; gradgradcheck of
    the gradient checks that gate's backward against finite differences."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal(5)
    ours, ref = [cr.tensor(x, requires_grad=True)], [torch.tensor(x, requires_grad=True)]
    for m, xs in ((cr, ours), (torch, ref)):
        y = m.tanh(xs[0])
        for _ in range(4):
            (y,) = m.autograd.grad(y.sum(), xs[0], create_graph=True)
            xs.append(y)
    assert ours[1].grad_fn.name() == ref[1].grad_fn.name() == "TanhBackwardBackward0"
    for a, b in zip(ours[1:], ref[1:]):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
    t = cr.tensor(x, requires_grad=True)
    assert cr.autograd.gradgradcheck(lambda a: F.grad(lambda b: (b.tanh() ** 2).sum())(a), (t,))
