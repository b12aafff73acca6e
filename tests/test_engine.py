"""The backward engine: deep graphs, forks, retain_graph, higher order, grad modes, hooks."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import chainrule as cr


# ---- depth: iterative, no recursion --------------------------------------------------------------
def test_million_op_chain_backward_completes() -> None:
    x = cr.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(1_000_000):
        y = y + 0.0
    y.backward()
    assert x.grad.item() == 1.0


def test_deep_chain_gradient_is_exact() -> None:
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 1.0
    y = y * 3.0
    y.backward()
    assert x.grad.item() == 3.0
    assert y.item() == pytest.approx(3 * (0.5 + 100_000))


def test_deep_chain_double_backward() -> None:
    x = cr.tensor(0.5, dtype=cr.float64, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y.sin() * 0.0 + y
    (g,) = cr.autograd.grad(y * y, x, create_graph=True)
    (gg,) = cr.autograd.grad(g, x)
    assert g.item() == 1.0 and gg.item() == 2.0


def test_backward_in_parallel_threads() -> None:
    """Each thread backpropagates its own graphs; results do not mix."""
    errors, results = [], {}

    def work(k: int) -> None:
        try:
            for _ in range(50):
                x = cr.tensor([float(k), 1.0], requires_grad=True)
                ((x * x).sum() * k).backward()
                results[k] = x.grad.tolist()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {k: [2.0 * k * k, 2.0 * k] for k in range(1, 5)}


# ---- forks, diamonds, reuse ----------------------------------------------------------------------
def test_diamond_gradients_add() -> None:
    x = cr.tensor(3.0, requires_grad=True)
    a = x * 2
    b = x * x
    (a + b).backward()  # d/dx (2x + x²) = 2 + 2x
    assert x.grad.item() == 8.0


def test_fork_of_a_non_leaf() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x.exp()
    out = (h * 2 + h.sin() + h).sum()  # d/dx = e^x (3 + cos e^x)
    out.backward()
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), e * (3 + np.cos(e)), rtol=1e-6)


def test_same_leaf_used_many_times() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x
    for _ in range(9):
        y = y * x  # x^10
    y.backward()
    assert x.grad.item() == pytest.approx(10 * 2.0**9)
    z = cr.tensor(1.5, requires_grad=True)
    (z + z + z + z).backward()
    assert z.grad.item() == 4.0


def test_broadcast_gradient_is_summed_back() -> None:
    a = cr.ones(3, 1, requires_grad=True)
    b = cr.ones(4, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and a.grad.tolist() == [[4.0]] * 3
    assert b.grad.tolist() == [3.0] * 4


def test_gradients_accumulate_across_backward_calls() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_grad_is_not_an_alias_of_an_intermediate() -> None:
    """Accumulating into .grad in place must not corrupt a tensor the user holds."""
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    g = cr.tensor([1.0, 1.0])
    x.backward(g)
    x.backward(g)
    assert g.tolist() == [1.0, 1.0] and x.grad.tolist() == [2.0, 2.0]


# ---- retain_graph --------------------------------------------------------------------------------
def test_second_backward_raises_pytorch_error() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x * x
    y.backward()
    with pytest.raises(RuntimeError) as e:
        y.backward()
    msg = str(e.value)
    assert "Trying to backward through the graph a second time" in msg
    assert "Specify retain_graph=True" in msg


def test_retain_graph_allows_second_backward() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 8.0


SECOND_BACKWARD = {
    "add": lambda m, x: x + 1, "mul_scalar": lambda m, x: x * 2, "square": lambda m, x: x * x,
    "exp": lambda m, x: x.exp(), "neg": lambda m, x: -x, "reshape": lambda m, x: x.reshape(2, 1),
    "sin": lambda m, x: x.sin(), "relu": lambda m, x: x.relu(), "mean": lambda m, x: x.mean(),
    "index": lambda m, x: x[0], "cat": lambda m, x: m.cat([x, x]),
}


@pytest.mark.parametrize("name", list(SECOND_BACKWARD))
def test_second_backward_raises_exactly_when_torch_does(name) -> None:
    """Only gates that saved tensors refuse a second backward (as in PyTorch)."""
    torch = pytest.importorskip("torch")
    outcome = []
    for m in (torch, cr):
        x = m.ones(2, requires_grad=True)
        y = SECOND_BACKWARD[name](m, x).sum()
        y.backward()
        try:
            y.backward()
            outcome.append("ok")
        except RuntimeError:
            outcome.append("raised")
    assert outcome[1] == outcome[0]


def test_saved_tensors_freed_after_backward() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x.exp()
    y.backward()
    with pytest.raises(RuntimeError, match="a second time"):
        _ = y.grad_fn.saved_tensors


# ---- higher order --------------------------------------------------------------------------------
def _derivatives(f, x0: float, n: int) -> list:
    x = cr.tensor(x0, dtype=cr.float64, requires_grad=True)
    y = f(x)
    out = []
    for _ in range(n):
        (y,) = cr.autograd.grad(y, x, create_graph=True)
        out.append(y.item())
    return out


@pytest.mark.parametrize("f,derivs", [
    (lambda x: x**3, lambda x: [3 * x**2, 6 * x, 6.0]),
    (lambda x: x.sin(), lambda x: [np.cos(x), -np.sin(x), -np.cos(x)]),
    (lambda x: x.exp(), lambda x: [np.exp(x)] * 3),
    (lambda x: x.tanh(), lambda x: [
        1 - np.tanh(x) ** 2,
        -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
        -2 * (1 - np.tanh(x) ** 2) ** 2 + 4 * np.tanh(x) ** 2 * (1 - np.tanh(x) ** 2),
    ]),
    (lambda x: (x * x).sin(), lambda x: [
        2 * x * np.cos(x * x),
        2 * np.cos(x * x) - 4 * x * x * np.sin(x * x),
        -12 * x * np.sin(x * x) - 8 * x**3 * np.cos(x * x),
    ]),
], ids=["cube", "sin", "exp", "tanh", "sin_of_square"])
def test_higher_order_derivatives(f, derivs) -> None:
    x0 = 0.7
    np.testing.assert_allclose(_derivatives(f, x0, 3), derivs(x0), rtol=1e-10)


def test_backward_create_graph_gives_differentiable_grad() -> None:
    x = cr.tensor(1.5, dtype=cr.float64, requires_grad=True)
    y = x**3
    y.backward(create_graph=True)
    g = x.grad
    assert g.requires_grad and g.item() == pytest.approx(3 * 1.5**2)
    x.grad = None
    g.backward()
    assert x.grad.item() == pytest.approx(6 * 1.5)


def test_hessian_vector_product_of_a_vector_function() -> None:
    x = cr.tensor([1.0, 2.0, 3.0], dtype=cr.float64, requires_grad=True)
    y = (x**2).sum() * x.sum()  # H = 2·sum(x)·I + 2(x1ᵀ + 1xᵀ)
    (g,) = cr.autograd.grad(y, x, create_graph=True)
    v = cr.tensor([1.0, 0.0, -1.0], dtype=cr.float64)
    (hv,) = cr.autograd.grad((g * v).sum(), x)
    xn, vn = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, -1.0])
    h = 2 * xn.sum() * np.eye(3) + 2 * (np.outer(xn, np.ones(3)) + np.outer(np.ones(3), xn))
    np.testing.assert_allclose(hv.numpy(), h @ vn)


# ---- grad modes ----------------------------------------------------------------------------------
def test_no_grad_context_and_decorator() -> None:
    x = cr.tensor([1.0], requires_grad=True)
    with cr.no_grad():
        assert not cr.is_grad_enabled()
        y = x * 2
        with cr.enable_grad():
            assert cr.is_grad_enabled()
            z = x * 2
    assert cr.is_grad_enabled()
    assert not y.requires_grad and z.requires_grad

    @cr.no_grad()
    def f(t):
        return t * 2

    @cr.enable_grad()
    def g(t):
        return t * 2

    assert not f(x).requires_grad and cr.is_grad_enabled()
    with cr.no_grad():
        assert g(x).requires_grad
        assert not cr.is_grad_enabled()


def test_set_grad_enabled_function_context_decorator() -> None:
    x = cr.tensor([1.0], requires_grad=True)
    with cr.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert cr.is_grad_enabled()
    cr.set_grad_enabled(False)
    try:
        assert not cr.is_grad_enabled()
    finally:
        cr.set_grad_enabled(True)
    assert cr.is_grad_enabled()

    @cr.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert cr.is_grad_enabled()
    assert not f(x).requires_grad and cr.is_grad_enabled()


def test_bare_decorators_and_generators() -> None:
    @cr.no_grad
    def off():
        return cr.is_grad_enabled()

    @cr.enable_grad
    def on():
        return cr.is_grad_enabled()

    assert off() is False and cr.is_grad_enabled()
    with cr.no_grad():
        assert on() is True and not cr.is_grad_enabled()
    assert off.__name__ == "off"

    @cr.no_grad()
    def gen():
        received = yield cr.is_grad_enabled()
        yield received, cr.is_grad_enabled()

    g = gen()
    assert next(g) is False and cr.is_grad_enabled()  # the mode does not leak between steps
    assert g.send("x") == ("x", False) and cr.is_grad_enabled()

    @cr.set_grad_enabled(False)
    def gen2():
        yield cr.is_grad_enabled()

    assert list(gen2()) == [False] and cr.is_grad_enabled()


def test_grad_mode_restored_after_exception() -> None:
    with pytest.raises(ValueError):
        with cr.no_grad():
            raise ValueError
    assert cr.is_grad_enabled()


def test_grad_mode_is_thread_local() -> None:
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def worker():
        with cr.no_grad():
            inside.set()
            release.wait(5)
            seen["worker"] = cr.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(5)
    x = cr.tensor([1.0], requires_grad=True)
    seen["main"] = cr.is_grad_enabled()
    seen["main_records"] = (x * 2).requires_grad
    release.set()
    t.join()
    assert seen == {"worker": False, "main": True, "main_records": True}

    fresh = {}
    with cr.no_grad():
        th = threading.Thread(target=lambda: fresh.setdefault("v", cr.is_grad_enabled()))
        th.start()
        th.join()
    assert fresh["v"] is True  # a new thread starts with grad enabled


def test_ops_record_by_their_own_threads_grad_mode() -> None:
    """What the op path reads (not only is_grad_enabled) is per thread, both ways round."""
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    ready, go = threading.Event(), threading.Event()
    seen = {}

    def worker(mode):
        with cr.set_grad_enabled(mode):
            ready.set()
            go.wait(5)
            y = (x * 2).exp()
            seen["worker"] = (y.requires_grad, y.grad_fn is not None)

    for main_mode in (True, False):
        ready.clear()
        go.clear()
        t = threading.Thread(target=worker, args=(not main_mode,))
        t.start()
        assert ready.wait(5)
        with cr.set_grad_enabled(main_mode):
            z = (x * 3).tanh()
            go.set()
            t.join()
        assert (z.requires_grad, z.grad_fn is not None) == (main_mode, main_mode)
        assert seen["worker"] == (not main_mode, not main_mode)


# ---- detach / retain_grad / hooks ----------------------------------------------------------------
def test_detach_blocks_gradient() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x * x
    z = y.detach() * x + y
    z.backward()
    assert x.grad.item() == 4.0 + 4.0  # d(4x + x²)/dx at 2


def test_retain_grad_on_non_leaf() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    assert h.retains_grad
    (h * h).sum().backward()
    assert h.grad.tolist() == [6.0, 12.0]
    assert x.grad.tolist() == [18.0, 36.0]
    x.retain_grad()  # no-op on a leaf


def test_non_leaf_grad_is_none_with_warning() -> None:
    x = cr.tensor([1.0], requires_grad=True)
    y = x * 2
    y.sum().backward()
    with pytest.warns(UserWarning, match="retain_grad"):
        assert y.grad is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is not None


def test_hook_on_leaf_modifies_grad_and_can_be_removed() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h1 = x.register_hook(lambda g: seen.append(g.tolist()))
    h2 = x.register_hook(lambda g: g * 10)
    (x * 2).sum().backward()
    assert seen == [[2.0, 2.0]] and x.grad.tolist() == [20.0, 20.0]
    h2.remove()
    h1.remove()
    x.grad = None
    (x * 2).sum().backward()
    assert seen == [[2.0, 2.0]] and x.grad.tolist() == [2.0, 2.0]


def test_hook_on_non_leaf_changes_what_flows_upstream() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    handle = h.register_hook(lambda g: g * 0.5)
    seen = []
    h.register_hook(lambda g: seen.append(g.tolist()))  # sees the modified gradient
    (h * 3).sum().backward()
    assert seen == [[1.5, 1.5]] and x.grad.tolist() == [3.0, 3.0]
    handle.remove()


def test_hook_requires_grad() -> None:
    with pytest.raises(RuntimeError, match="doesn't require"):
        cr.tensor([1.0]).register_hook(lambda g: g)


# ---- backward arguments --------------------------------------------------------------------------
def test_backward_with_gradient_argument() -> None:
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    y.backward(cr.tensor([1.0, 0.0, -1.0]))
    assert x.grad.tolist() == [2.0, 0.0, -6.0]


def test_backward_non_scalar_without_gradient_raises() -> None:
    y = cr.tensor([1.0, 2.0], requires_grad=True) * 2
    msg = "grad can be implicitly created only for scalar outputs"
    with pytest.raises(RuntimeError, match=msg):
        y.backward()


def test_backward_gradient_shape_mismatch() -> None:
    y = cr.tensor([1.0, 2.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"Mismatch in shape.*\[3\].*\[2\]"):
        y.backward(cr.ones(3))


def test_backward_gradient_argument_checks() -> None:
    x = cr.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="gradients can be either Tensors or None, but got float"):
        (x * 2).backward([1.0, 1.0])
    with pytest.raises(RuntimeError, match="got 2 tensors and 1 gradients"):
        cr.autograd.backward([x * 2, x * 3], [cr.ones(2)])


def test_backward_on_tensor_without_grad_raises() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.tensor(1.0).backward()


def test_backward_inputs_restricts_accumulation() -> None:
    a = cr.tensor(2.0, requires_grad=True)
    b = cr.tensor(3.0, requires_grad=True)
    (a * b).backward(inputs=[a])
    assert a.grad.item() == 3.0 and b.grad is None
    c = a * b
    h = c * 1.0
    (h * h).backward(inputs=[b])
    assert a.grad.item() == 3.0 and b.grad.item() == 2 * 6.0 * 2.0


def test_backward_inputs_non_leaf_fills_its_grad() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x + 1
    (h * h).sum().backward(inputs=[h, x])
    assert h.grad.tolist() == [4.0, 6.0] and x.grad.tolist() == [4.0, 6.0]
    x.grad.add_(1.0)  # x.grad must not alias h.grad
    assert h.grad.tolist() == [4.0, 6.0]
    g = cr.tensor([1.0, 2.0], requires_grad=True)
    k = g * 2
    (k * k).sum().backward(inputs=[k])
    assert k.grad.tolist() == [4.0, 8.0] and g.grad is None


def test_autograd_backward_function_with_several_roots() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y1, y2 = x * 2, (x * x).sum()
    cr.autograd.backward([y1, y2], [cr.tensor([1.0, 1.0]), None])
    assert x.grad.tolist() == [4.0, 6.0]


# ---- autograd.grad -------------------------------------------------------------------------------
def test_grad_returns_tuple_and_leaves_dot_grad_alone() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    w = cr.tensor([3.0, 4.0], requires_grad=True)
    gx, gw = cr.autograd.grad((x * w).sum(), [x, w])
    assert gx.tolist() == [3.0, 4.0] and gw.tolist() == [1.0, 2.0]
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad


def test_grad_allow_unused() -> None:
    x = cr.tensor(1.0, requires_grad=True)
    u = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        cr.autograd.grad(x * 2, [x, u])
    gx, gu = cr.autograd.grad(x * 2, [x, u], allow_unused=True)
    assert gx.item() == 2.0 and gu is None


def test_grad_outputs() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (g,) = cr.autograd.grad(x**2, x, grad_outputs=cr.tensor([10.0, -1.0]))
    assert g.tolist() == [20.0, -4.0]


def test_grad_with_respect_to_a_non_leaf() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    (g,) = cr.autograd.grad((h**2).sum(), h)
    assert g.tolist() == [4.0, 8.0]


def test_grad_materialize_grads_and_batched_grad_outputs() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    u = cr.tensor([3.0], requires_grad=True)
    gx, gu = cr.autograd.grad((x * 2).sum(), [x, u], materialize_grads=True)
    assert gx.tolist() == [2.0, 2.0] and gu.tolist() == [0.0]
    (rows,) = cr.autograd.grad(x * 2, x, cr.eye(2), is_grads_batched=True)  # one vmapped pass
    assert rows.tolist() == [[2.0, 0.0], [0.0, 2.0]]
    gx, gu = cr.autograd.grad(x * 2, [x, u], cr.eye(2), is_grads_batched=True,
                              allow_unused=True)
    assert gx.tolist() == [[2.0, 0.0], [0.0, 2.0]] and gu is None


def test_grad_of_input_not_requiring_grad_raises() -> None:
    x = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.autograd.grad(x * 2, cr.tensor(1.0))


# ---- errors that name things ---------------------------------------------------------------------
def test_requires_grad_on_int_tensor_raises() -> None:
    with pytest.raises(RuntimeError, match="floating point"):
        cr.tensor([1, 2]).requires_grad_()


def test_int_result_does_not_require_grad() -> None:
    x = cr.tensor([1.5, 2.5], requires_grad=True)
    assert not (x > 2).requires_grad
    assert not x.argmax().requires_grad


def test_mixed_int_and_float_graph() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x * cr.tensor([3, 4])).sum().backward()
    assert x.grad.tolist() == [3.0, 4.0]


# ---- random graphs vs torch ---------------------------------------------------------------------
def _random_graph(m, leaves, rng_seed: int):
    """Build the same random DAG (forks, reuse, broadcasting) in torch or chainrule."""
    rng = np.random.default_rng(rng_seed)
    nodes = list(leaves)
    unary = [lambda a: a.sin(), lambda a: a.tanh(), lambda a: a * a, lambda a: a.exp() * 0.1,
             lambda a: (a * a + 1).sqrt(), lambda a: a.sigmoid(), lambda a: -a,
             lambda a: a.sum(dim=-1, keepdim=True), lambda a: a.mean(dim=0)]
    binary = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b,
              lambda a, b: a / (b * b + 1), lambda a, b: m.maximum(a, b)]
    for _ in range(int(rng.integers(5, 25))):
        if rng.random() < 0.45:
            a = nodes[int(rng.integers(len(nodes)))]
            nodes.append(unary[int(rng.integers(len(unary)))](a))
        else:
            a = nodes[int(rng.integers(len(nodes)))]
            b = nodes[int(rng.integers(len(nodes)))]
            nodes.append(binary[int(rng.integers(len(binary)))](a, b))
    picks = rng.integers(len(nodes), size=3)
    return sum((nodes[int(i)] * float(k + 1)).sum() for k, i in enumerate(picks))


@pytest.mark.parametrize("seed", range(25))
def test_random_graph_gradients_match_torch(seed) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1000 + seed)
    shapes = [(3, 4), (4,), (1, 4), ()]
    values = [rng.standard_normal(s) for s in shapes]
    t_leaves = [torch.tensor(v, requires_grad=True) for v in values]
    c_leaves = [cr.tensor(v, requires_grad=True) for v in values]
    t_out = _random_graph(torch, t_leaves, seed)
    c_out = _random_graph(cr, c_leaves, seed)
    assert c_out.item() == pytest.approx(t_out.item(), rel=1e-10, abs=1e-12)
    t_grads = torch.autograd.grad(t_out, t_leaves, create_graph=True, allow_unused=True)
    c_grads = cr.autograd.grad(c_out, c_leaves, create_graph=True, allow_unused=True)
    for tg, cg, v in zip(t_grads, c_grads, values):
        if tg is None:
            assert cg is None or np.all(cg.detach().numpy() == 0)
            continue
        assert cg.shape == v.shape
        np.testing.assert_allclose(cg.detach().numpy(), tg.detach().numpy(), rtol=1e-9, atol=1e-12)
    # second order: gradient of the sum of first derivatives
    t_used = [(i, g) for i, g in enumerate(t_grads) if g is not None and g.requires_grad]
    if t_used:
        t_s = sum(g.sum() for _, g in t_used)
        c_s = sum(c_grads[i].sum() for i, _ in t_used)
        t_hv = torch.autograd.grad(t_s, t_leaves, allow_unused=True)
        c_hv = cr.autograd.grad(c_s, c_leaves, allow_unused=True)
        for tg, cg in zip(t_hv, c_hv):
            if tg is not None and cg is not None:
                np.testing.assert_allclose(cg.numpy(), tg.numpy(), rtol=1e-8, atol=1e-10)
            elif tg is not None:
                assert np.all(tg.numpy() == 0)


# ---- consumers outside the backward ----------------------------------------------------------
# Nodes whose outputs also feed gates the backward never reaches must still run (Kahn counts
# consumers from the roots, not every consumer ever recorded).
def test_dropped_consumer_of_a_non_leaf() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    _unused = h.exp() * 2  # noqa: F841  (a consumer of h that the backward never reaches)
    (h * h).sum().backward()  # d/dx (3x)² = 18x
    np.testing.assert_allclose(x.grad.numpy(), [18.0, 36.0])


def test_root_with_a_dropped_consumer() -> None:
    x = cr.tensor(2.0, requires_grad=True)
    y = x * x
    _later = y * 5  # noqa: F841
    y.backward()
    assert x.grad.item() == 4.0


def test_two_losses_sharing_a_subgraph() -> None:
    x = cr.tensor([0.5, -1.0], requires_grad=True)
    h = x.tanh()
    first, second = (h * 2).sum(), (h * h).sum()
    first.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    x.grad = None
    second.backward()
    d = 1 - np.tanh([0.5, -1.0]) ** 2
    np.testing.assert_allclose(g1, 2 * d)
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.tanh([0.5, -1.0]) * d)


def test_several_roots_where_one_feeds_another() -> None:
    x = cr.tensor(3.0, requires_grad=True)
    a = x * x
    b = a * 2
    cr.autograd.backward([a, b], [cr.tensor(1.0), cr.tensor(1.0)])  # d/dx (x² + 2x²) = 6x
    assert x.grad.item() == 18.0


@pytest.mark.parametrize("seed", range(25))
def test_random_graph_backward_matches_torch(seed) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2000 + seed)
    values = [rng.standard_normal(s) for s in [(3, 4), (4,), (1, 4), ()]]
    t_leaves = [torch.tensor(v, requires_grad=True) for v in values]
    c_leaves = [cr.tensor(v, requires_grad=True) for v in values]
    _random_graph(torch, t_leaves, seed).backward()  # most nodes are never used by the output
    _random_graph(cr, c_leaves, seed).backward()
    for t, c in zip(t_leaves, c_leaves):
        if t.grad is None:
            assert c.grad is None or np.all(c.grad.numpy() == 0)
        else:
            np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)
