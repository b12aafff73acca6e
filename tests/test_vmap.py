"""cr.func.vmap: every registry op batched equals the stacked per-example results (values and
gradients), composition with the other transforms, torch.func's errors, functional_call."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import func as F

import op_registry as R

torch = pytest.importorskip("torch")

B = 3  # examples per batch


def _examples(spec, shapes):
    """B argument lists for one registry case (different arrays, the same Python scalars: vmap
    maps over tensors only)."""
    out = [R.make_args(spec, shapes, seed=s) for s in range(B)]
    for ex in out[1:]:
        for i, a in enumerate(out[0]):
            if not isinstance(a, np.ndarray):
                ex[i] = a
    return out


def _outputs(out) -> list:
    return [o for o in R.as_outputs(out) if isinstance(o, cr.Tensor)]


def _close(a, b, err: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{err}: shape {a.shape} != {b.shape}"
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, equal_nan=True, err_msg=err)
    else:
        np.testing.assert_array_equal(a, b, err_msg=err)


def _batched_case(spec, shapes, kw):
    """(per-example outputs stacked, vmapped outputs, batched tensor args, per-example args)."""
    examples = _examples(spec, shapes)
    tensor_pos = [i for i, a in enumerate(examples[0]) if isinstance(a, np.ndarray)]
    per = [_outputs(spec.op(*R.cr_args(ex), **kw)) for ex in examples]
    stacked = [np.stack([np.asarray(p[k].detach()) for p in per]) for k in range(len(per[0]))]
    args = list(R.cr_args(examples[0]))
    for i in tensor_pos:
        args[i] = cr.tensor(np.stack([ex[i] for ex in examples]))
    dims = tuple(0 if i in tensor_pos else None for i in range(len(args)))
    got = F.vmap(lambda *a: tuple(_outputs(spec.op(*a, **kw))), in_dims=dims)(*args)
    return stacked, list(got), args, tensor_pos, examples


# Ops vmap cannot batch: a boolean mask of batched values selects a different number of
# elements per example (torch.func refuses it too: dynamic shapes).
KNOWN_GAPS = {"x[x > 0]"}


def _gap(spec):
    return pytest.mark.xfail(spec.name in KNOWN_GAPS, reason="output size depends on the values",
                             raises=(RuntimeError, AttributeError, AssertionError, ValueError))


def _params(pred):
    return [pytest.param(*p.values, id=p.id, marks=_gap(p.values[0])) for p in R.params(pred)]


_CASES = _params(lambda s: s.out != "python")

# Ops torch.func.vmap refuses (torch 2.13), and chainrule with torch's error:
# name -> (error type, message pattern, why).
TORCH_REFUSES = {
    "unique": (RuntimeError, r"dynamic shape\. Attempted to vmap over aten::_unique2",
               "the number of distinct values differs per example"),
    "unique_consecutive": (RuntimeError,
                           r"dynamic shape\. Attempted to vmap over aten::unique_consecutive",
                           "the number of runs differs per example"),
}


@pytest.mark.parametrize("spec, shapes, kw", _CASES)
def test_vmap_of_every_registry_op_equals_the_stacked_examples(spec, shapes, kw) -> None:
    if spec.name in TORCH_REFUSES:
        error, pattern, _why = TORCH_REFUSES[spec.name]
        examples = _examples(spec, shapes)  # their outputs differ in size: no stacking
        tensor_pos = [i for i, a in enumerate(examples[0]) if isinstance(a, np.ndarray)]
        args = list(R.cr_args(examples[0]))
        for i in tensor_pos:
            args[i] = cr.tensor(np.stack([ex[i] for ex in examples]))
        dims = tuple(0 if i in tensor_pos else None for i in range(len(args)))
        with pytest.raises(error, match=pattern):
            F.vmap(lambda *a: tuple(_outputs(spec.op(*a, **kw))), in_dims=dims)(*args)
        return
    stacked, got, *_ = _batched_case(spec, shapes, kw)
    assert len(got) == len(stacked), spec.name
    for k, (g, s) in enumerate(zip(got, stacked)):
        _close(g.detach(), s, f"{spec.name} output {k}")


@pytest.mark.parametrize("spec, shapes, kw", _params(lambda s: s.grad and s.out == "same"))
def test_gradients_through_vmap_of_every_registry_op(spec, shapes, kw) -> None:
    """grad(vmap(op)) per example equals grad(op) of that example, for every input (including
    the unbatched Python scalars' neighbours), with the same random cotangents."""
    examples = _examples(spec, shapes)
    mask = R.diff_mask(spec, examples[0])
    if not any(mask):
        pytest.skip("no differentiable input")
    rng = np.random.default_rng(7)
    outs0 = _outputs(spec.op(*R.cr_args(examples[0]), **kw))
    floats = [k for k, o in enumerate(outs0) if o.dtype.is_floating_point]
    cots = [rng.standard_normal((B,) + tuple(outs0[k].shape)) for k in floats]
    expected = []
    for b, ex in enumerate(examples):
        leaves = R.cr_args(ex, mask)
        outs = _outputs(spec.op(*leaves, **kw))
        loss = sum((outs[k] * cr.tensor(c[b])).sum() for k, c in zip(floats, cots))
        loss.backward()
        expected.append([t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
                         for t, m in zip(leaves, mask) if m])
    tensor_pos = [i for i, a in enumerate(examples[0]) if isinstance(a, np.ndarray)]
    args = list(R.cr_args(examples[0]))
    for i in tensor_pos:
        args[i] = cr.tensor(np.stack([ex[i] for ex in examples]), requires_grad=mask[i])
    dims = tuple(0 if i in tensor_pos else None for i in range(len(args)))
    got = F.vmap(lambda *a: tuple(_outputs(spec.op(*a, **kw))), in_dims=dims)(*args)
    loss = sum((got[k] * cr.tensor(c)).sum() for k, c in zip(floats, cots))
    loss.backward()
    leaves = [a for a, m in zip(args, mask) if m]
    for j, leaf in enumerate(leaves):
        want = np.stack([e[j] for e in expected])
        have = leaf.grad.numpy() if leaf.grad is not None else np.zeros(want.shape)
        _close(have, want, f"{spec.name} gradient {j}")


@pytest.mark.parametrize("spec, shapes, kw", _params(lambda s: s.grad and s.out == "same"
                                                    and "nn" not in s.tags
                                                    and s.name != "matmul(empty)"))
def test_per_example_gradients_vmap_of_grad_for_every_registry_op(spec, shapes, kw) -> None:
    """vmap(grad(op)) with the first differentiable input batched and the others shared: the
    gradient of a shared input comes out per example (torch.func's per-sample gradients)."""
    examples = _examples(spec, shapes)
    mask = R.diff_mask(spec, examples[0])
    if not any(mask):
        pytest.skip("no differentiable input")
    first = mask.index(True)
    diff_pos = [i for i, m in enumerate(mask) if m]

    def loss(*ts, rest):
        a = list(rest)
        for i, t in zip(diff_pos, ts):
            a[i] = t
        outs = [o for o in _outputs(spec.op(*a, **kw)) if o.dtype.is_floating_point]
        return sum((o * o.detach().cos()).sum() for o in outs)

    shared = R.cr_args(examples[0])
    expected = []
    for ex in examples:
        rest = list(shared)
        rest[first] = cr.tensor(ex[first])
        ts = [rest[i] for i in diff_pos]
        expected.append(F.grad(lambda *t, _r=rest: loss(*t, rest=_r), argnums=tuple(
            range(len(ts))))(*ts))
    batched = cr.tensor(np.stack([ex[first] for ex in examples]))
    ts = [batched if i == first else shared[i] for i in diff_pos]
    dims = tuple(0 if i == first else None for i in diff_pos)
    got = F.vmap(F.grad(lambda *t: loss(*t, rest=shared), argnums=tuple(range(len(ts)))),
                 in_dims=dims)(*ts)
    for j in range(len(ts)):
        want = np.stack([e[j].numpy() for e in expected])
        _close(got[j], want, f"{spec.name} per-example gradient {j}")


def test_every_registry_op_is_covered() -> None:
    """A new registry op gets the vmap tests automatically; python-valued ops refuse vmap."""
    names = {s.name for s in R.REGISTRY if s.out != "python"}
    assert names == {p.values[0].name for p in _CASES}
    for spec in R.REGISTRY:
        if spec.out == "python":
            args = [cr.tensor(np.stack([a] * B)) if isinstance(a, np.ndarray) else a
                    for a in R.make_args(spec, spec.shapes[0])]
            with pytest.raises(RuntimeError):
                F.vmap(lambda *a, _s=spec: _s.op(*a))(*args)


def test_the_examples_of_docs_func_md_run() -> None:
    """Every ```python block of docs/func.md runs, in order, in one namespace (they assert)."""
    import os
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "func.md")
    with open(path, encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)
    assert len(blocks) >= 5
    scope: dict = {}
    for code in blocks:
        exec(compile(code, path, "exec"), scope)  # noqa: S102  (our own documentation)
    assert scope["per_sample"]["0.weight"].shape == (16, 8, 4)


# ---- semantics against torch.func ---------------------------------------------------------------
def _t(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _c(a):
    return cr.tensor(np.asarray(a, dtype=np.float64))


def _same(ours, ref, atol=1e-10) -> None:
    if isinstance(ours, (tuple, list)):
        assert isinstance(ref, (tuple, list)) and len(ours) == len(ref)
        for a, b in zip(ours, ref):
            _same(a, b, atol)
        return
    if isinstance(ours, dict):
        assert set(ours) == set(ref)
        for k in ours:
            _same(ours[k], ref[k], atol)
        return
    np.testing.assert_allclose(np.asarray(ours.detach()), ref.detach().numpy(), atol=atol,
                               rtol=1e-9)


def _arr(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_in_dims_out_dims_pytrees_none_and_negative_dims_match_torch() -> None:
    torch = pytest.importorskip("torch")
    a, b, c = _arr(3, 4), _arr(3, 4, seed=1), _arr(2, 3, seed=2)

    def f(m, d, s):
        return {"x": (d["p"] * s).sum(-1), "y": d["q"] @ s}, d["q"].sum()

    def run(m, conv):
        return m.func.vmap(lambda d, s: f(m, d, s), in_dims=({"p": 1, "q": None}, -1),
                           out_dims=({"x": -1, "y": 0}, None))(
            {"p": conv(a), "q": conv(c)}, conv(b))

    _same(run(cr, _c), run(torch, _t))


def test_nested_vmaps_and_chunk_size_match_torch() -> None:
    torch = pytest.importorskip("torch")
    x, y = _arr(3, 4, 5), _arr(5, 2, seed=1)

    def run(m, conv, chunk):
        inner = m.func.vmap(lambda r, w: (r @ w).tanh().sum(), in_dims=(0, None))
        return m.func.vmap(inner, in_dims=(1, None), chunk_size=chunk)(conv(x), conv(y))

    for chunk in (None, 1, 3):
        _same(run(cr, _c, chunk), run(torch, _t, None))


@pytest.mark.parametrize("case", ["vmap_grad", "grad_vmap", "jacrev_jacrev", "vmap_jacfwd",
                                  "vmap_hessian", "jacfwd_vmap", "vmap_vjp", "vmap_jvp",
                                  "vmap_vmap_grad", "grad_vmap_captured"])
def test_transforms_compose_with_vmap_in_any_order_like_torch(case) -> None:
    torch = pytest.importorskip("torch")
    x, w, v = _arr(4, 3), _arr(3, 2, seed=1), _arr(4, 3, seed=2)

    def f(m, a, w):
        return (m.tanh(a @ w) * a.sum()).sum()

    def g(m, a):
        return m.sin(a) * a.sum()

    def run(m, conv):
        F_ = m.func
        X, W, V = conv(x), conv(w), conv(v)
        if case == "vmap_grad":
            return F_.vmap(F_.grad(lambda a, w: f(m, a, w), argnums=(0, 1)),
                           in_dims=(0, None))(X, W)
        if case == "grad_vmap":
            return F_.grad(lambda w: F_.vmap(lambda a: f(m, a, w))(X).sum())(W)
        if case == "jacrev_jacrev":
            return F_.jacrev(F_.jacrev(lambda a: g(m, a)))(X[0])
        if case == "vmap_jacfwd":
            return F_.vmap(F_.jacfwd(lambda a: g(m, a)))(X)
        if case == "vmap_hessian":
            return F_.vmap(F_.hessian(lambda a: f(m, a, W)))(X)
        if case == "jacfwd_vmap":
            return F_.jacfwd(lambda a: F_.vmap(lambda r: g(m, r))(a))(X)
        if case == "vmap_vjp":
            return F_.vmap(lambda a, u: F_.vjp(lambda z: g(m, z), a)[1](u)[0])(X, V)
        if case == "vmap_jvp":
            return F_.vmap(lambda a, u: F_.jvp(lambda z: g(m, z), (a,), (u,))[1])(X, V)
        if case == "vmap_vmap_grad":
            return F_.vmap(F_.vmap(F_.grad(lambda s, w: (s * w).sum() ** 2),
                                   in_dims=(0, None)), in_dims=(None, 0))(X[0], V)
        # a weight captured from outside the vmap gets the sum over the batch
        return F_.grad(lambda w: F_.vmap(lambda a: (a * w[:, 0]).tanh().sum())(X).sum())(W)

    _same(run(cr, _c), run(torch, _t), atol=1e-9)


def test_per_sample_gradients_of_a_cnn_match_torch() -> None:
    torch = pytest.importorskip("torch")

    def build(m):
        return m.nn.Sequential(m.nn.Conv2d(1, 3, 3, padding=1), m.nn.ReLU(), m.nn.MaxPool2d(2),
                               m.nn.Flatten(), m.nn.Linear(12, 4)).double()

    cm, tm = build(cr), build(torch)
    for p, q in zip(cm.parameters(), tm.parameters()):
        q.data = torch.from_numpy(p.detach().numpy().copy())
    X, y = _arr(5, 1, 4, 4, seed=3), np.array([0, 3, 1, 2, 3])

    def loss(m, model, p, x, t):
        out = m.func.functional_call(model, p, (x.unsqueeze(0),))
        return m.nn.functional.cross_entropy(out, t.unsqueeze(0))

    ours = F.vmap(F.grad(lambda p, x, t: loss(cr, cm, p, x, t)), in_dims=(None, 0, 0))(
        {k: v.detach() for k, v in cm.named_parameters()}, _c(X), cr.tensor(y))
    ref = torch.func.vmap(torch.func.grad(lambda p, x, t: loss(torch, tm, p, x, t)),
                          in_dims=(None, 0, 0))(
        {k: v.detach() for k, v in tm.named_parameters()}, _t(X), torch.tensor(y))
    _same(ours, ref, atol=1e-9)


def test_functional_call_swaps_parameters_and_buffers_and_restores_them() -> None:
    bn = cr.nn.Sequential(cr.nn.Linear(3, 2), cr.nn.BatchNorm1d(2))
    before = dict(bn.named_parameters()) | dict(bn.named_buffers())
    w = cr.ones(2, 3)
    out = F.functional_call(bn.eval(), {"0.weight": w, "1.running_mean": cr.ones(2)},
                            (cr.ones(4, 3),))
    assert out.shape == (4, 2)
    expected = (cr.ones(4, 3) @ w.T + bn[0].bias - 1) / (1 + 1e-5) ** 0.5
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), atol=1e-5)
    after = dict(bn.named_parameters()) | dict(bn.named_buffers())
    assert all(after[k] is v for k, v in before.items())  # put back
    with pytest.raises(ValueError, match="appeared in multiple dictionaries"):
        F.functional_call(bn, ({"0.weight": w}, {"0.weight": w}), (cr.ones(1, 3),))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        F.functional_call(bn, {"nope": w}, (cr.ones(1, 3),), strict=True)


def test_stack_module_state_matches_torch() -> None:
    models = [cr.nn.Linear(3, 2) for _ in range(4)]
    params, buffers = F.stack_module_state(models)
    assert set(params) == {"weight", "bias"} and buffers == {}
    assert params["weight"].shape == (4, 2, 3) and params["weight"].requires_grad
    np.testing.assert_array_equal(params["bias"][2].detach().numpy(),
                                  models[2].bias.detach().numpy())
    with pytest.raises(RuntimeError, match="at least one model"):
        F.stack_module_state([])


@pytest.mark.parametrize("case", [
    lambda m, T: m.func.vmap(lambda a: a)(3.0),
    lambda m, T: m.func.vmap(lambda a: a, in_dims=None)(T),
    lambda m, T: m.func.vmap(lambda a, b: a)(T, m.ones(4)),
    lambda m, T: m.func.vmap(lambda a: a, in_dims=2)(T),
    lambda m, T: m.func.vmap(lambda a: a, in_dims=(0, 0))(T),
    lambda m, T: m.func.vmap(lambda a: 3.0)(T),
    lambda m, T: m.func.vmap(lambda a: a, out_dims=3)(T),
    lambda m, T: m.func.vmap(lambda a: a, out_dims=None)(T),
    lambda m, T: m.func.vmap(lambda a: a, in_dims="a")(T),
    lambda m, T: m.func.vmap(lambda a: a.sum().item())(T),
    lambda m, T: m.func.vmap(lambda a: float(a.sum()))(T),
    lambda m, T: m.func.vmap(lambda a: a if a.sum() > 0 else -a)(T),
    lambda m, T: m.func.vmap(lambda a: m.ones(2, dtype=m.float64).mul_(a))(T),
    lambda m, T: m.func.vmap(lambda a: m.ones(2, dtype=m.float64).add_(a))(T),
    lambda m, T: m.func.vmap(m.func.vmap(lambda a: m.ones(2, dtype=m.float64).add_(a)))(
        T.expand(4, 3, 2)),
    lambda m, T: m.func.vmap(lambda a: m.zeros(2, dtype=m.float64).copy_(a))(T),
    lambda m, T: m.func.vmap(lambda a: a.tolist())(T),
    lambda m, T: m.func.vmap(lambda a: a * 2 if a.sum() else a)(T),
    lambda m, T: m.func.vmap(m.func.vmap(lambda a: a.item()))(T),
    lambda m, T: m.func.vmap(lambda a: a, randomness="x")(T),
    lambda m, T: m.func.vmap(lambda a: a, chunk_size=0)(T),
    lambda m, T: m.func.vmap(lambda a: a)(T[0, 0]),
    lambda m, T: m.func.vmap(lambda a: a)(),
    lambda m, T: m.func.vmap(lambda a: a, in_dims=(0,))(T, T),
    lambda m, T: m.func.vmap(lambda a: a.nonzero())(T),
    lambda m, T: m.func.vmap(lambda a: a + m.randn(2, dtype=m.float64))(T),
    lambda m, T: m.func.vmap(lambda a: m.nn.functional.dropout(a, 0.5))(T),
])
def test_vmap_errors_match_torch_func_word_for_word(case) -> None:
    torch = pytest.importorskip("torch")
    try:
        case(torch, torch.ones(3, 2, dtype=torch.float64))
    except Exception as e:  # noqa: BLE001
        expected = (type(e), str(e))
    else:
        raise AssertionError("torch did not raise")
    with pytest.raises(expected[0]) as info:
        case(cr, cr.ones(3, 2, dtype=cr.float64))
    assert str(info.value).replace("chainrule", "torch") == expected[1]


def test_an_op_without_a_batching_rule_names_itself() -> None:
    with pytest.raises(RuntimeError, match="vmap: .*numpy.*has no batching rule"):
        F.vmap(lambda a: cr.tensor(np.vstack([a._data, a._data])))(cr.ones(3, 2))


def test_jacobians_with_chunk_size_and_many_outputs_match_torch() -> None:
    torch = pytest.importorskip("torch")
    x, y = _arr(5), _arr(3, seed=1)

    def f(m, a, b):
        return {"u": m.sin(a) * b.sum(), "v": (a[:3] * b).exp()}

    for chunk in (None, 2):
        for jac in ("jacrev", "jacfwd"):
            ours = getattr(F, jac)(lambda a, b: f(cr, a, b), (0, 1), chunk_size=chunk)(
                _c(x), _c(y))
            ref = torch.func.jacrev(lambda a, b: f(torch, a, b), (0, 1))(_t(x), _t(y))
            _same(ours, ref)


# ---- randomness= ---------------------------------------------------------------------------------
def _F(m):
    return m.nn.functional


# every kind of random op: factories, *_like, in-place fills (of a batched tensor, of a shared
# one), draws parametrised by a tensor, the dropout family, a sampler built on fills
_RANDOM_OPS = {
    "rand": lambda m, x, p: m.rand(16),
    "randn": lambda m, x, p: m.randn(4, 4),
    "randint": lambda m, x, p: m.randint(0, 1000, (16,)),
    "randperm": lambda m, x, p: m.randperm(16),
    "normal_floats": lambda m, x, p: m.normal(0.0, 1.0, (16,)),
    "randn_like": lambda m, x, p: m.randn_like(x),
    "rand_like_shared": lambda m, x, p: m.rand_like(m.ones(16)),
    "randint_like": lambda m, x, p: m.randint_like(x, 1000),
    "normal_": lambda m, x, p: x.clone().normal_(),
    "uniform_": lambda m, x, p: x.clone().uniform_(-1, 1),
    "exponential_": lambda m, x, p: x.clone().exponential_(),
    "random_": lambda m, x, p: x.clone().random_(1000),
    "bernoulli_float_": lambda m, x, p: x.clone().bernoulli_(0.5),
    "empty_like_normal_": lambda m, x, p: m.empty_like(x).normal_(),
    "zeros_like_cauchy_": lambda m, x, p: m.zeros_like(x).cauchy_(),
    "shared_normal_": lambda m, x, p: m.ones(16).normal_(),
    "bernoulli": lambda m, x, p: m.bernoulli(p),
    "bernoulli_float_p": lambda m, x, p: m.bernoulli(p, 0.5),
    "bernoulli_shared": lambda m, x, p: m.bernoulli(m.full((16,), 0.5)),
    "bernoulli_tensor_": lambda m, x, p: x.clone().bernoulli_(p),
    "bernoulli_tensor_shared_": lambda m, x, p: m.zeros(16).bernoulli_(p),
    "multinomial": lambda m, x, p: m.multinomial(p.reshape(4, 4), 3, True),
    "multinomial_shared": lambda m, x, p: m.multinomial(m.ones(16), 8),
    "poisson": lambda m, x, p: m.poisson(p * 9),
    "normal_tensor_float": lambda m, x, p: m.normal(x, 1.0),
    "normal_float_tensor": lambda m, x, p: m.normal(0.0, p),
    "normal_tensors": lambda m, x, p: m.normal(x, p),
    "dropout": lambda m, x, p: _F(m).dropout(x, 0.5),
    "dropout_shared": lambda m, x, p: _F(m).dropout(m.ones(16), 0.5),
    "dropout_eval": lambda m, x, p: _F(m).dropout(x, 0.5, training=False),
    "dropout1d": lambda m, x, p: _F(m).dropout1d(x.reshape(2, 8, 1).expand(2, 8, 3), 0.5),
    "dropout2d": lambda m, x, p: _F(m).dropout2d(x.reshape(2, 8, 1, 1).expand(2, 8, 2, 2)),
    "alpha_dropout": lambda m, x, p: _F(m).alpha_dropout(x, 0.5, True),
    "feature_alpha_dropout": lambda m, x, p: _F(m).feature_alpha_dropout(
        x.reshape(2, 8, 1).expand(2, 8, 3), 0.5, True),
    "gumbel_softmax": lambda m, x, p: _F(m).gumbel_softmax(x),
}


def _random_result(m, f, mode: str, in_dims=0):
    """What vmap(f, randomness=mode) gives on 5 identical examples: the error, or the output's
    shape and whether the examples' draws are equal (the inputs are all alike, so any
    difference between examples is the randomness)."""
    x = m.ones(5, 16)
    p = m.full((5, 16), 0.5)
    try:
        out = m.func.vmap(lambda a, b: f(m, a, b), in_dims=in_dims, randomness=mode)(x, p)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    o = out.double().numpy()
    equal = all(np.array_equal(o[0], o[i]) for i in range(1, 5))
    return tuple(out.shape), "same" if equal else "different"


@pytest.mark.parametrize("mode", ["error", "same", "different"])
@pytest.mark.parametrize("name", sorted(_RANDOM_OPS))
def test_randomness_modes_match_torch_func(name: str, mode: str) -> None:
    """Each random op under each randomness= mode: torch.func's error word for word, or an
    output whose examples share one draw ("same") or draw their own ("different") exactly
    where torch.func's do."""
    f = _RANDOM_OPS[name]
    assert _random_result(cr, f, mode) == _random_result(torch, f, mode)


def test_randomness_error_mode_is_the_default() -> None:
    with pytest.raises(RuntimeError, match="called random operation while in randomness error "
                                           "mode"):
        F.vmap(lambda a: a + cr.rand(3))(cr.zeros(4, 3))
    out = F.vmap(lambda a: _F(cr).dropout(a, 0.5, training=False))(cr.ones(4, 3))  # no draw
    assert np.array_equal(out.numpy(), np.ones((4, 3)))


_NESTED = {
    "rand": lambda m, x, y: m.rand(16),
    "randn_like_outer": lambda m, x, y: m.randn_like(x),
    "randn_like_inner": lambda m, x, y: m.randn_like(y),
    "randn_like_both": lambda m, x, y: m.randn_like(x + y),
    "normal_outer": lambda m, x, y: x.clone().normal_(),
    "normal_inner": lambda m, x, y: y.clone().normal_(),
    "normal_both": lambda m, x, y: (x + y).normal_(),
    "bernoulli_outer": lambda m, x, y: m.bernoulli(x * 0 + 0.5),
    "bernoulli_inner": lambda m, x, y: m.bernoulli(y * 0 + 0.5),
    "dropout_outer": lambda m, x, y: _F(m).dropout(x * 0 + 1),
    "dropout_inner": lambda m, x, y: _F(m).dropout(y * 0 + 1),
    "multinomial_shared": lambda m, x, y: m.multinomial(m.ones(2, 16), 4).double(),
    "randperm": lambda m, x, y: m.randperm(16).double(),
    "gumbel_softmax_both": lambda m, x, y: _F(m).gumbel_softmax(x + y),
}


def _nested_result(m, f, outer: str, inner: str):
    """vmap(vmap(f, randomness=inner), randomness=outer) over 3 x 4 identical examples: the
    error, or whether the draws differ along the outer and along the inner batch."""
    x, y = m.ones(3, 16), m.ones(4, 16)
    try:
        out = m.func.vmap(lambda a: m.func.vmap(lambda b: f(m, a, b), randomness=inner)(y),
                          randomness=outer)(x)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    o = out.double().numpy()
    return (not all(np.array_equal(o[0], o[i]) for i in range(3)),
            not all(np.array_equal(o[:, 0], o[:, j]) for j in range(4)))


@pytest.mark.parametrize("inner", ["error", "same", "different"])
@pytest.mark.parametrize("outer", ["error", "same", "different"])
@pytest.mark.parametrize("name", sorted(_NESTED))
def test_nested_randomness_matches_torch_func(name: str, outer: str, inner: str) -> None:
    """Nested vmaps with their own randomness= apply each level's rule from the inside out, as
    torch.func does: the same errors (in its order) and the same same/different structure."""
    f = _NESTED[name]
    assert _nested_result(cr, f, outer, inner) == _nested_result(torch, f, outer, inner)


@pytest.mark.parametrize("name", ["rand", "randn", "randint", "randperm", "randn_like",
                                  "normal_", "uniform_", "exponential_", "bernoulli_float_",
                                  "bernoulli", "bernoulli_tensor_", "multinomial", "poisson",
                                  "normal_tensors", "dropout", "dropout1d"])
@pytest.mark.parametrize("mode", ["same", "different"])
def test_randomness_draws_torchs_numbers(name: str, mode: str) -> None:
    """From the same seed the batched draws are torch.func's, bit for bit (one call on the
    whole batch, laid out batch first, as torch's batching rules draw)."""
    f = _RANDOM_OPS[name]
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    p = np.random.default_rng(1).random((5, 16)).astype(np.float32)
    outs = []
    for m in (cr, torch):
        m.manual_seed(11)
        try:
            outs.append(m.func.vmap(lambda a, b, m=m: f(m, a, b), randomness=mode)(
                m.tensor(x), m.tensor(p)).numpy())
        except RuntimeError as e:
            outs.append(str(e))
    assert type(outs[0]) is type(outs[1])
    if isinstance(outs[0], str):
        assert outs[0] == outs[1]
    else:
        np.testing.assert_array_equal(outs[0], outs[1])


def test_randomness_different_statistics() -> None:
    """Per-example draws are independent samples of the right law; "same" shares one draw."""
    cr.manual_seed(0)
    n = 2000
    z = F.vmap(lambda a: a + cr.randn(50, dtype=cr.float64), randomness="different")(
        cr.zeros(n, 50, dtype=cr.float64)).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.1  # examples independent
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 0.1
    keep = F.vmap(lambda a: _F(cr).dropout(a, 0.25), randomness="different")(
        cr.ones(n, 50)).numpy()
    assert set(np.unique(keep)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((keep > 0).mean() - 0.75) < 0.01
    per_example = (keep > 0).mean(1)
    assert per_example.std() > 0.02  # every example its own mask
    counts = np.bincount(F.vmap(lambda w: cr.multinomial(w, 1), randomness="different")(
        cr.tensor([[1.0, 3.0]]).expand(n, 2)).numpy().ravel(), minlength=2)
    assert abs(counts[1] / n - 0.75) < 0.04
    same = F.vmap(lambda a: a.clone().normal_(), randomness="same")(cr.zeros(6, 5)).numpy()
    assert (same == same[0]).all() and len(np.unique(same[0])) == 5


def test_randomness_different_in_place_on_a_batched_tensor() -> None:
    """x.normal_() on a batched x fills every example with its own draw; with chunk_size the
    chunks go on drawing from the stream (no two examples alike)."""
    cr.manual_seed(1)
    out = F.vmap(lambda a: a.normal_(mean=3.0, std=0.5), randomness="different",
                 chunk_size=3)(cr.zeros(8, 64, dtype=cr.float64)).numpy()
    assert len({row.tobytes() for row in out}) == 8
    assert abs(out.mean() - 3.0) < 0.05 and abs(out.std() - 0.5) < 0.05


def test_randomness_per_sample_gradients_with_dropout() -> None:
    """vmap(grad(loss)) with dropout and randomness="different": each example's gradient uses
    its own mask (the gradient of sum(dropout(w * x)) is mask / (1 - p) * x)."""
    cr.manual_seed(2)
    w = cr.ones(32, dtype=cr.float64)

    def loss(w, x):
        return _F(cr).dropout(w * x, 0.5).sum()

    g = F.vmap(F.grad(loss), in_dims=(None, 0), randomness="different")(
        w, cr.full((6, 32), 3.0, dtype=cr.float64)).numpy()
    assert set(np.unique(g)) <= {0.0, 6.0}
    assert len({row.tobytes() for row in g}) == 6


def test_a_batched_tensor_prints_as_torch_prints_it() -> None:
    torch = pytest.importorskip("torch")
    shown = {}

    def grab(key):
        def f(a):
            shown[key] = repr(a)
            return a
        return f

    F.vmap(grab("c1"))(cr.ones(2, 3))
    torch.func.vmap(grab("t1"))(torch.ones(2, 3))
    F.vmap(F.vmap(grab("c2")))(cr.ones(2, 3))
    torch.func.vmap(torch.func.vmap(grab("t2")))(torch.ones(2, 3))
    assert shown["c1"] == shown["t1"] and shown["c2"] == shown["t2"]


# nn.functional layers beyond the registry, each on one example (vmap adds the batch)
_LAYERS = {
    "linear": (lambda m, x, w, b: m.nn.functional.linear(x, w, b), [(3, 4), (5, 4), (5,)]),
    "conv1d": (lambda m, x, w: m.nn.functional.conv1d(x, w, padding=1), [(1, 2, 6), (3, 2, 3)]),
    "conv2d": (lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=2, padding=1),
               [(1, 2, 5, 6), (4, 2, 3, 3), (4,)]),
    "conv2d(groups)": (lambda m, x, w: m.nn.functional.conv2d(x, w, groups=2),
                       [(1, 4, 5, 5), (4, 2, 3, 3)]),
    "conv_transpose2d": (lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2),
                         [(1, 3, 3, 4), (3, 2, 2, 2)]),
    "max_pool2d": (lambda m, x: m.nn.functional.max_pool2d(x, 2), [(1, 2, 6, 6)]),
    "avg_pool2d": (lambda m, x: m.nn.functional.avg_pool2d(x, 3, 2, 1), [(1, 2, 6, 5)]),
    "adaptive_avg_pool2d": (lambda m, x: m.nn.functional.adaptive_avg_pool2d(x, (2, 3)),
                            [(1, 2, 5, 7)]),
    "layer_norm": (lambda m, x, w, b: m.nn.functional.layer_norm(x, (4,), w, b),
                   [(3, 4), (4,), (4,)]),
    "group_norm": (lambda m, x: m.nn.functional.group_norm(x, 2), [(1, 4, 3)]),
    "batch_norm(eval)": (lambda m, x, mu, var: m.nn.functional.batch_norm(
        x, mu, var.abs() + 0.5, training=False), [(2, 3), (3,), (3,)]),
    "cross_entropy": (lambda m, x: m.nn.functional.cross_entropy(
        x, m.tensor([1, 0, 3])), [(3, 4)]),
    "nll_loss": (lambda m, x: m.nn.functional.nll_loss(
        m.nn.functional.log_softmax(x, -1), m.tensor([2, 0])), [(2, 3)]),
    "mse_loss": (lambda m, x, y: m.nn.functional.mse_loss(x, y), [(3, 2), (3, 2)]),
    "bce_with_logits": (lambda m, x, y: m.nn.functional.binary_cross_entropy_with_logits(
        x, y.sigmoid()), [(4,), (4,)]),
    "gelu": (lambda m, x: m.nn.functional.gelu(x), [(3, 4)]),
    "silu": (lambda m, x: m.nn.functional.silu(x), [(3, 4)]),
    "elu": (lambda m, x: m.nn.functional.elu(x), [(3, 4)]),
    "leaky_relu": (lambda m, x: m.nn.functional.leaky_relu(x, 0.1), [(3, 4)]),
    "dropout(eval)": (lambda m, x: m.nn.functional.dropout(x, 0.5, training=False), [(3,)]),
    "embedding": (lambda m, w: m.nn.functional.embedding(m.tensor([[1, 0], [3, 3]]), w),
                  [(4, 3)]),
    "normalize": (lambda m, x: m.nn.functional.normalize(x, dim=-1), [(2, 3)]),
    "cosine_similarity": (lambda m, x, y: m.nn.functional.cosine_similarity(x, y), [(2, 3),
                                                                                   (2, 3)]),
    "attention": (lambda m, q, k, v: m.nn.functional.scaled_dot_product_attention(q, k, v),
                  [(2, 3, 4), (2, 5, 4), (2, 5, 4)]),
    "interpolate": (lambda m, x: m.nn.functional.interpolate(x, scale_factor=2,
                                                             mode="bilinear"), [(1, 2, 3, 3)]),
    "pad(reflect)": (lambda m, x: m.nn.functional.pad(x, (1, 2), mode="reflect"),
                     [(1, 2, 4)]),
}


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_nn_functional_layers_under_vmap_values_and_per_example_gradients(name) -> None:
    """vmap over examples equals the per-example loop, and so do the gradients of a weighted
    sum of the outputs w.r.t. every input (grad(vmap))."""
    fn, shapes = _LAYERS[name]
    rng = np.random.default_rng(0)
    data = [rng.uniform(-1.5, 1.5, (B,) + s) for s in shapes]
    cot = None
    expected, grads = [], []
    for b in range(B):
        xs = [cr.tensor(d[b], requires_grad=True) for d in data]
        out = fn(cr, *xs)
        if cot is None:
            cot = rng.standard_normal((B,) + tuple(out.shape))
        (out * cr.tensor(cot[b])).sum().backward()
        expected.append(out.detach().numpy())
        grads.append([np.zeros(x.shape) if x.grad is None else x.grad.numpy() for x in xs])
    xs = [cr.tensor(d, requires_grad=True) for d in data]
    out = F.vmap(lambda *a: fn(cr, *a))(*xs)
    _close(out.detach(), np.stack(expected), name)
    (out * cr.tensor(cot)).sum().backward()
    for j, x in enumerate(xs):
        have = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        _close(have, np.stack([g[j] for g in grads]), f"{name} gradient {j}")


def test_a_mask_of_batched_values_is_refused_like_torch() -> None:
    with pytest.raises(RuntimeError, match="dynamic shape"):
        F.vmap(lambda a: a[a > 0])(cr.tensor([[1.0, -1.0], [2.0, 3.0]]))


def test_autograd_grad_is_grads_batched_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    xa, wa = _arr(3), _arr(2, 3, seed=1)

    def run(m, conv):
        x = conv(xa).requires_grad_()
        w = conv(wa).requires_grad_()
        y = m.tanh(w @ x) * x.sum()
        cots = conv(np.eye(2))
        return m.autograd.grad(y, (x, w), cots, is_grads_batched=True)

    _same(run(cr, _c), run(torch, _t))


def test_backward_inside_vmap_raises_like_torch() -> None:
    w = cr.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="backward\\(\\) called inside a functorch transform"):
        F.vmap(lambda a: (a * w).sum().backward())(cr.ones(2, 3))


def test_torch_func_per_sample_gradient_tutorial_runs_unchanged() -> None:
    """The SimpleCNN of torch.func's per-sample-gradients tutorial, with nll_loss on batched
    targets and (params, buffers) dicts, gives torch's per-sample gradients."""
    torch = pytest.importorskip("torch")

    def build(m):
        nn, Fn = m.nn, m.nn.functional

        class SimpleCNN(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(1, 4, 3, 1)
                self.conv2 = nn.Conv2d(4, 8, 3, 1)
                self.fc1 = nn.Linear(8 * 4 * 4, 16)
                self.fc2 = nn.Linear(16, 10)

            def forward(self, x):
                x = Fn.relu(self.conv2(Fn.relu(self.conv1(x))))
                x = m.flatten(Fn.max_pool2d(x, 2), 1)
                return Fn.log_softmax(self.fc2(Fn.relu(self.fc1(x))), dim=1)

        return SimpleCNN().double()

    cm, tm = build(cr), build(torch)
    for p, q in zip(cm.parameters(), tm.parameters()):
        q.data = torch.from_numpy(p.detach().numpy().copy())
    X, y = _arr(3, 1, 12, 12, seed=4), np.array([7, 0, 3])

    def run(m, model, data, targets):
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}

        def compute_loss(params, buffers, sample, target):
            predictions = m.func.functional_call(model, (params, buffers), (sample.unsqueeze(0),))
            return m.nn.functional.nll_loss(predictions, target.unsqueeze(0))

        return m.func.vmap(m.func.grad(compute_loss), in_dims=(None, None, 0, 0))(
            params, buffers, data, targets)

    _same(run(cr, cm, _c(X), cr.tensor(y)), run(torch, tm, _t(X), torch.tensor(y)), atol=1e-9)


def test_bincount_of_batched_values_stacks_or_refuses_like_torch() -> None:
    """torch.func runs bincount per example and stacks: equal lengths batch, unequal ones give
    torch.stack's error."""
    x = np.array([[0, 1, 3, 3], [3, 0, 0, 1]])
    w = np.arange(8.0).reshape(2, 4)
    got = F.vmap(lambda a, b: cr.bincount(a, b))(cr.tensor(x), cr.tensor(w))
    want = torch.func.vmap(lambda a, b: torch.bincount(a, b))(torch.tensor(x), torch.tensor(w))
    np.testing.assert_allclose(got.numpy(), want.numpy())
    with pytest.raises(RuntimeError, match=r"stack expects each tensor to be equal size, but "
                                           r"got \[4\] at entry 0 and \[6\] at entry 1"):
        F.vmap(cr.bincount)(cr.tensor(np.array([[0, 1, 3, 3], [3, 0, 5, 1]])))


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted_with_batched_sequences_and_values_matches_torch(right) -> None:
    rng = np.random.default_rng(3)
    s = np.sort(rng.standard_normal((4, 6)), -1)
    v = rng.standard_normal((4, 3))
    v[0, 1] = s[0, 2]  # a tie: left and right differ
    for dims in ((0, 0), (0, None), (None, 0)):
        sv = s if dims[0] == 0 else s[0]
        vv = v if dims[1] == 0 else v[1]
        got = F.vmap(lambda a, b: cr.searchsorted(a, b, right=right), in_dims=dims)(
            cr.tensor(sv), cr.tensor(vv))
        want = torch.func.vmap(lambda a, b: torch.searchsorted(a, b, right=right),
                               in_dims=dims)(torch.tensor(sv), torch.tensor(vv).contiguous())
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_host_special_functions_batch_in_nested_vmaps() -> None:
    """SciPy-backed special functions run once on the physical batch, under two levels."""
    x = np.abs(np.random.default_rng(4).standard_normal((2, 3, 4))) + 0.5
    got = F.vmap(F.vmap(lambda t: cr.special.gammainc(t, t * 2) + cr.lgamma(t)
                        + cr.special.zeta(t + 1, t)))(cr.tensor(x))
    tx = torch.tensor(x)
    want = torch.special.gammainc(tx, tx * 2) + torch.lgamma(tx) + torch.special.zeta(tx + 1, tx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_histc_and_histogram_per_example_ranges_match_torch(dtype) -> None:
    """Each example's own range when none is given (a constant example: ±1 for histc, ±0.5 for
    histogram), values outside a given range ignored, density."""
    x = np.random.default_rng(5).standard_normal((5, 3, 4)).astype(dtype)
    x[1] = 0.5
    for kw in (dict(bins=5), dict(bins=4, min=-1, max=1), dict(bins=7, min=-0.5, max=0.5)):
        got = F.vmap(lambda a, kw=kw: cr.histc(a, **kw))(cr.tensor(x))
        want = torch.func.vmap(lambda a, kw=kw: torch.histc(a, **kw))(torch.tensor(x))
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    for kw in (dict(bins=4), dict(bins=3, range=(-1.0, 1.0)), dict(bins=4, density=True)):
        got = F.vmap(lambda a, kw=kw: tuple(cr.histogram(a.flatten(), **kw)))(cr.tensor(x))
        want = torch.func.vmap(lambda a, kw=kw: tuple(torch.histogram(a.flatten(), **kw)))(
            torch.tensor(x))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6)


@pytest.mark.parametrize("size", [3, 8, 20])
def test_nonzero_static_per_example_matches_torch(size) -> None:
    x = np.random.default_rng(6).standard_normal((4, 3, 4))
    got = F.vmap(lambda a: cr.nonzero_static(a > 0, size=size, fill_value=-2))(cr.tensor(x))
    want = torch.func.vmap(lambda a: torch.nonzero_static(a > 0, size=size, fill_value=-2))(
        torch.tensor(x))
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("dims", [(0, 0), (0, None), (None, 0)])
def test_weighted_histogram_per_example_matches_torch(dims) -> None:
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((5, 12)), rng.random((5, 12))
    x[1] = 0.5
    xs, ws = (x if dims[0] == 0 else x[0]), (w if dims[1] == 0 else w[0])
    for kw in (dict(bins=4), dict(bins=3, range=(-1.0, 1.0)), dict(bins=4, density=True)):
        got = F.vmap(lambda a, b, kw=kw: tuple(cr.histogram(a, weight=b, **kw)), in_dims=dims)(
            cr.tensor(xs), cr.tensor(ws))
        want = torch.func.vmap(lambda a, b, kw=kw: tuple(torch.histogram(a, weight=b, **kw)),
                               in_dims=dims)(torch.tensor(xs), torch.tensor(ws))
        for g, t in zip(got, want):
            np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-12)


def test_jacfwd_randomness_is_torchs_for_error_and_same() -> None:
    """jacfwd(f, randomness=...) as torch.func's: a random op in f raises torch's error by
    default; with "same" it draws once and the Jacobian is that of the drawn function."""
    x = np.linspace(0.1, 0.9, 4)

    def f(m, a):
        return a.sin() * m.rand(4, dtype=m.float64)

    msgs = []
    for m in (cr, torch):
        with pytest.raises(RuntimeError) as info:
            m.func.jacfwd(lambda a, m=m: f(m, a))(m.tensor(x))
        msgs.append(str(info.value))
        with pytest.raises(RuntimeError) as info:
            m.func.jacfwd(lambda a, m=m: f(m, a), randomness="x")(m.tensor(x))
        msgs.append(str(info.value))
    assert msgs[:2] == msgs[2:]
    for m in (cr, torch):
        m.manual_seed(5)
        J = m.func.jacfwd(lambda a, m=m: f(m, a), randomness="same")(m.tensor(x))
        m.manual_seed(5)
        r = m.rand(4, dtype=m.float64)
        np.testing.assert_allclose(J.numpy(), np.diag(np.cos(x) * r.numpy()), rtol=1e-12)


_SAMPLERS = {
    "gamma": lambda m, c: m.distributions.Gamma(c, 1.0).sample(),
    "gamma_shared": lambda m, c: m.distributions.Gamma(m.full((16,), 2.0, dtype=m.float64),
                                                      1.0).rsample() + c,
    "poisson": lambda m, c: m.distributions.Poisson(c).sample(),
    "binomial": lambda m, c: m.distributions.Binomial(10, c / 4).sample(),
}


@pytest.mark.parametrize("mode", ["error", "same", "different"])
@pytest.mark.parametrize("name", sorted(_SAMPLERS))
def test_distribution_samplers_follow_randomness_like_torch(name: str, mode: str) -> None:
    """Gamma, Poisson and Binomial sample with torch.func's rule for draws parametrised by a
    tensor (one physical draw for all examples with "different")."""
    f = _SAMPLERS[name]

    def result(m):
        c = m.full((5, 16), 2.0, dtype=m.float64)
        try:
            o = m.func.vmap(lambda a: f(m, a), randomness=mode)(c).numpy()
        except RuntimeError as e:
            return str(e)
        return o.shape, all(np.array_equal(o[0], o[i]) for i in range(5))

    assert result(cr) == result(torch)


def test_per_example_gamma_reparameterized_gradients() -> None:
    """vmap(grad) through a Gamma rsample with randomness="different": every example its own
    draw, and its gradient the implicit one (-dP/dalpha / p at the drawn x) for that draw."""
    from chainrule.distributions._special import gamma_grad

    cr.manual_seed(0)
    c = cr.tensor(np.linspace(0.5, 3.0, 12).reshape(4, 3))

    def f(a):
        x = cr.distributions.Gamma(a, 1.0).rsample()
        return x.sum(), x

    g, x = F.vmap(F.grad(f, has_aux=True), randomness="different")(c)
    assert len({row.tobytes() for row in x.numpy()}) == 4
    np.testing.assert_allclose(g.numpy(), gamma_grad(c.numpy(), x.numpy()), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("conv", [dict(stride=1, padding=1), dict(stride=2, padding=0)])
def test_per_sample_gradients_through_the_folded_kernels_match_the_loop(dtype, conv) -> None:
    """Convolution, relu, max pooling and cross-entropy on two images per example, weights
    shared: the batched kernel table runs them on the batch folded into N (the plain arrays'
    kernels); values and per-example gradients equal the loop over the examples."""
    from chainrule.batching import BatchedArray, pop_level, push_level
    from chainrule.kernels.dispatch import BATCHED, kernels_for

    lv = push_level(2)
    try:
        assert kernels_for(BatchedArray(np.zeros((2, 3)), lv)) is BATCHED
    finally:
        pop_level(lv)
    rng = np.random.default_rng(3)
    fn = cr.nn.functional
    w = cr.tensor(rng.normal(size=(4, 2, 3, 3)).astype(dtype))
    b = cr.tensor(rng.normal(size=4).astype(dtype))
    x = cr.tensor(rng.normal(size=(5, 2, 2, 8, 7)).astype(dtype))
    t = cr.tensor(rng.integers(0, 6, (5, 2)))
    oh, ow = fn.max_pool2d(fn.conv2d(x[0], w, b, **conv), 2, padding=1).shape[2:]
    lin = cr.tensor(rng.normal(size=(4 * oh * ow, 6)).astype(dtype))

    def loss(w, b, lin, x, t):
        h = fn.max_pool2d(fn.relu(fn.conv2d(x, w, b, **conv)), 2, padding=1)
        return fn.cross_entropy(h.flatten(1) @ lin, t)

    argnums = (0, 1, 2)
    got = F.vmap(F.grad_and_value(loss, argnums), in_dims=(None, None, None, 0, 0))(
        w, b, lin, x, t)
    want = [F.grad_and_value(loss, argnums)(w, b, lin, x[i], t[i]) for i in range(5)]
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1].numpy(), np.stack([v.numpy() for _, v in want]), **tol)
    for k in range(3):
        np.testing.assert_allclose(got[0][k].numpy(),
                                   np.stack([g[k].numpy() for g, _ in want]), **tol)
