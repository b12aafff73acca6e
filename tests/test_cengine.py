"""The optional C engine (chainrule/_cengine.c, installed by chainrule/autograd/accel.py).

`make test` runs the whole suite twice: with the C engine (when a C compiler built it) and
with CHAINRULE_PURE_PYTHON=1 (the Python reference). These tests cover what is specific to the
C module: that it is in use when expected, that its gates behave as the Python functions they
replace, and that its bookkeeping leaks nothing and matches the reference bit for bit.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import accel
from square_gates import GoodSquare

C = accel.engine is not None
needs_c = pytest.mark.skipif(not C, reason="the C engine is not built or is switched off")
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def _run_python(code: str, pure: bool) -> str:
    """The stdout of ``code`` in a fresh interpreter started in tests/ (so the test modules
    import), on the pure-Python engine or the C one."""
    env = dict(os.environ, CHAINRULE_PURE_PYTHON="1" if pure else "0")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=TESTS_DIR,
                          capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def _engine_as(engine):
    """accel.engine replaced for the block (None: the rules take their NumPy fallbacks)."""
    real = accel.engine
    accel.engine = engine
    try:
        yield
    finally:
        accel.engine = real


def _spy(calls: list):
    """The C engine, with the name of every function called through accel appended to calls."""
    real = accel.engine

    class Spy:
        def __getattr__(self, name):
            fn = getattr(real, name)
            return lambda *a: calls.append(name) or fn(*a)

    return Spy()


def test_engine_in_use_when_expected() -> None:
    expect = os.environ.get("CHAINRULE_EXPECT_CENGINE")
    if os.environ.get("CHAINRULE_PURE_PYTHON", "") not in ("", "0"):
        assert accel.engine is None
        assert not hasattr(cr.Tensor.exp, "gate")
    elif expect == "1":
        assert accel.engine is not None, "a C compiler is present but chainrule._cengine is not"
    elif expect is None:
        pytest.skip("CHAINRULE_EXPECT_CENGINE not set (make test sets it)")


@needs_c
def test_gates_look_like_the_functions_they_replace() -> None:
    exp, add = cr.Tensor.exp, cr.Tensor.__add__
    assert exp.gate is cr.ops.elementwise.Exp and add.gate is cr.ops.binary.Add
    assert exp.__name__ == "exp" and exp.__doc__ == cr.exp.__doc__
    assert add.__name__ == "__add__"
    assert list(inspect.signature(exp).parameters) == ["input"]
    x = cr.tensor([1.0, 2.0])
    bound = x.exp
    assert callable(bound) and np.allclose(bound().numpy(), np.exp([1.0, 2.0]))
    assert np.allclose(x.__add__(1.0).numpy(), [2.0, 3.0])
    assert cr.Tensor.__dict__["exp"].__get__(None, cr.Tensor) is exp


@needs_c
def test_gates_fall_back_off_the_fast_path() -> None:
    i = cr.tensor([1, 2, 3])
    assert (i + 1).dtype == cr.int64 and (i * 2).tolist() == [2, 4, 6]
    assert (i.exp()).dtype == cr.float32  # integer input: promoted by the Python function
    h = cr.tensor([1.0, 2.0], dtype=cr.float16)
    f = cr.tensor([1.0, 2.0], dtype=cr.float64)
    assert (h + f).dtype == cr.float64  # mixed dtypes: PyTorch's promotion
    assert (2.0 - cr.tensor([1.0])).tolist() == [1.0]  # reflected with a scalar
    with pytest.raises(RuntimeError, match=r"size of tensor a \(3\).*tensor b \(2\)"):
        cr.ones(3, requires_grad=True) + cr.ones(2)
    with pytest.raises(TypeError):
        cr.Tensor.exp(np.ones(2))


@needs_c
def test_parameters_and_subclasses_take_the_gates() -> None:
    p = cr.nn.Parameter(cr.tensor([0.5, -1.0]))
    y = (p * 3.0 + p).tanh().sum()
    y.backward()
    expected = 4 * (1 - np.tanh(4 * np.array([0.5, -1.0], np.float32)) ** 2)
    assert np.allclose(p.grad.numpy(), expected, rtol=1e-6)


def _w2_graph():
    x = cr.tensor(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), requires_grad=True)
    w = cr.tensor(np.full((8, 8), 0.9, np.float32), requires_grad=True)
    h = x
    for _ in range(30):
        h = (h.exp() + 0.5) * 0.5
        h = h.tanh() * w
        h = 0.5 * h + x - 0.1
        h = h / 2.0
    return x, w, h


@needs_c
def test_no_references_leak_and_graphs_are_freed() -> None:
    def step():
        x, w, h = _w2_graph()
        h.sum().backward()

    for _ in range(20):
        step()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(200):
        step()
    gc.collect()
    assert len(gc.get_objects()) <= before + 5
    x, _, h = _w2_graph()
    node = weakref.ref(h.grad_fn)
    del h
    assert node() is None  # freed by reference counting alone
    x, _, h = _w2_graph()
    h.sum().backward()
    assert h.grad_fn._saved is None  # saved arrays freed after the backward


def _gradients_in_subprocess(pure: bool) -> list:
    code = (
        "import json, test_cengine as t\n"
        "x, w, h = t._w2_graph()\n"
        "(h.sum() + (h * h).mean()).backward()\n"
        "print(json.dumps([x.grad.numpy().tolist(), w.grad.numpy().tolist()]))\n"
    )
    return json.loads(_run_python(code, pure))


@needs_c
def test_c_and_python_engines_give_identical_gradients() -> None:
    assert _gradients_in_subprocess(pure=False) == _gradients_in_subprocess(pure=True)


@needs_c
def test_errors_in_rules_propagate_and_leave_no_state() -> None:
    class Bad(cr.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise ValueError("bad rule")

    x = cr.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="bad rule"):
        Bad.apply(x.exp()).sum().backward()
    y = (x.exp() * 2.0).sum()
    y.backward()
    assert np.allclose(x.grad.numpy(), 2 * np.e)


@needs_c
def test_hooks_retain_grad_and_multi_output_gates_on_the_c_loop() -> None:
    x = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    a = x * 2.0
    a.retain_grad()
    seen = []
    a.register_hook(lambda g: seen.append(g.clone()) or g * 10)
    values, _ = a.max(dim=1)  # a two-output gate
    values.sum().backward()
    assert np.array_equal(a.grad.numpy(), [[0.0, 10.0], [0.0, 10.0]])  # after hooks, as torch
    assert len(seen) == 1
    assert np.array_equal(x.grad.numpy(), [[0.0, 20.0], [0.0, 20.0]])


# ---- fused loops: each against the NumPy expression it replaces ----------------------------
DTYPES = [np.float32, np.float64]


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_loops_match_numpy_bit_for_bit(dtype) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1003).astype(dtype)
    x[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1e-30]
    y = np.empty_like(x)
    accel.engine.relu_forward(x, y)
    ref = np.maximum(x, 0)
    assert np.array_equal(y, ref, equal_nan=True)
    assert np.array_equal(np.signbit(y), np.signbit(ref))  # -0.0 becomes 0.0, as np.maximum
    g = rng.standard_normal(1003).astype(dtype)
    g[6:9] = [np.inf, np.nan, 2.0]
    out = np.empty_like(g)
    accel.engine.relu_backward(g, y, out)
    with np.errstate(invalid="ignore"):  # inf·0 is NaN in the reference too
        assert np.array_equal(out, g * (y != 0), equal_nan=True)


@needs_c
def test_fused_loops_refuse_what_they_cannot_take() -> None:
    f32, f64 = np.ones(8, np.float32), np.ones(8, np.float64)
    with pytest.raises(TypeError, match="one dtype"):
        accel.engine.relu_backward(f32, f64, np.empty(8, np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        accel.engine.relu_forward(np.ones(8, np.int64), np.empty(8, np.int64))
    with pytest.raises(ValueError, match="sizes"):
        accel.engine.relu_forward(f32, np.empty(7, np.float32))
    with pytest.raises((ValueError, BufferError)):
        accel.engine.relu_forward(np.ones((4, 4), np.float32).T, np.empty((4, 4), np.float32))
    assert not accel.fusable(np.ones((4, 4), np.float32).T)
    assert not accel.fusable(f32, f64)
    assert accel.fusable(f32, None, np.ones(3, np.float32))


def _layer_norm_numpy(x, w, b, eps):
    mean = x.mean(-1, keepdims=True, dtype=np.float64)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * rstd
    y = xhat * (1 if w is None else w) + (0 if b is None else b)
    return y, xhat, rstd


@needs_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 128, 300])
@pytest.mark.parametrize("affine", ["wb", "w", "b", ""])
def test_layer_norm_loops_match_the_formulas(dtype, n, affine) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((5, 3, n)) * 3 + 1).astype(dtype)
    w = rng.standard_normal(n).astype(dtype) if "w" in affine else None
    b = rng.standard_normal(n).astype(dtype) if "b" in affine else None
    y, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty((5, 3, 1), dtype)
    accel.engine.layer_norm_forward(x, w, b, 1e-5, y, xhat, rstd, n)
    ry, rxhat, rrstd = _layer_norm_numpy(x.astype(np.float64), w, b, 1e-5)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype is np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, ry, **tol)
    np.testing.assert_allclose(xhat, rxhat, **tol)
    np.testing.assert_allclose(rstd, rrstd, **tol)

    g = rng.standard_normal(x.shape).astype(dtype)
    gx, gw, gb = np.empty_like(x), np.empty(n, dtype), np.empty(n, dtype)
    accel.engine.layer_norm_backward(g, xhat, w, rstd, gx, gw, gb, n)
    gh = g.astype(np.float64) * (1 if w is None else w)
    m1 = gh.mean(-1, keepdims=True)
    m2 = (gh * xhat).mean(-1, keepdims=True)
    np.testing.assert_allclose(gx, (gh - m1 - xhat * m2) * rstd, **tol)
    np.testing.assert_allclose(gw, (g.astype(np.float64) * xhat).sum((0, 1)), **tol)
    np.testing.assert_allclose(gb, g.astype(np.float64).sum((0, 1)), **tol)
    # only some of the gradients wanted
    gw2 = np.empty(n, dtype)
    accel.engine.layer_norm_backward(g, xhat, w, rstd, None, gw2, None, n)
    np.testing.assert_array_equal(gw2, gw)


@needs_c
def test_layer_norm_and_relu_modules_take_the_loops_and_agree_with_the_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 32)).astype(np.float32)
    ln = cr.nn.LayerNorm(32)
    with cr.no_grad():
        ln.weight.copy_(cr.tensor(rng.standard_normal(32).astype(np.float32)))
        ln.bias.copy_(cr.tensor(rng.standard_normal(32).astype(np.float32)))
    calls = []
    xt = cr.tensor(x, requires_grad=True)
    with _engine_as(_spy(calls)):
        out = cr.relu(ln(xt))
        (out * out).sum().backward()
    assert calls == ["layer_norm_forward", "relu_forward", "relu_backward",
                     "layer_norm_backward"]
    grads = [xt.grad.numpy(), ln.weight.grad.numpy(), ln.bias.grad.numpy()]
    xt.grad = None
    ln.zero_grad()
    with _engine_as(None):  # the NumPy reference in the same rules
        out_ref = cr.relu(ln(xt))
        (out_ref * out_ref).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), out_ref.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    for got, ref in zip(grads, [xt.grad.numpy(), ln.weight.grad.numpy(), ln.bias.grad.numpy()]):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@needs_c
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_step_loops_agree_with_the_numpy_steps(bidirectional) -> None:
    rng = np.random.default_rng(4)
    lstm = cr.nn.LSTM(6, 10, num_layers=2, bidirectional=bidirectional)
    x = cr.tensor(rng.standard_normal((7, 3, 6)).astype(np.float32), requires_grad=True)
    h0 = cr.tensor(rng.standard_normal((4 if bidirectional else 2, 3, 10)).astype(np.float32),
                   requires_grad=True)
    c0 = cr.tensor(rng.standard_normal(h0.shape).astype(np.float32), requires_grad=True)
    target = cr.tensor(rng.standard_normal((7, 3, 20 if bidirectional else 10)).astype(
        np.float32))
    calls = []
    results = []
    for engine in (_spy(calls), None):
        with _engine_as(engine):
            out, (hn, cn) = lstm(x, (h0, c0))
            loss = ((out - target) ** 2).mean() + hn.sum() + (cn * cn).sum()
            for t in (x, h0, c0, *lstm.parameters()):
                t.grad = None
            loss.backward()
        results.append([out.detach().numpy(), hn.detach().numpy(), cn.detach().numpy()] +
                       [t.grad.numpy() for t in (x, h0, c0, *lstm.parameters())])
    assert calls.count("lstm_step_forward") == 7 * 2 * (2 if bidirectional else 1)
    assert calls.count("lstm_step_backward") == 7 * 2 * (2 if bidirectional else 1)
    for fused, ref in zip(*results):
        np.testing.assert_allclose(fused, ref, rtol=1e-5, atol=1e-6)


@needs_c
def test_gelu_loop_matches_the_exact_formula_in_float32() -> None:
    from math import erf, exp, pi, sqrt

    x = np.concatenate([np.linspace(-12, 12, 20001),
                        [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(np.float32)
    y, d = np.empty_like(x), np.empty_like(x)
    accel.engine.gelu_float32(x, y, d)
    xs = x.astype(np.float64)
    cdf = np.array([0.5 * (1 + erf(v / sqrt(2))) for v in xs])
    pdf = np.array([exp(-v * v / 2) / sqrt(2 * pi) for v in xs])
    np.testing.assert_allclose(y, xs * cdf, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(d, cdf + xs * pdf, rtol=2e-6, atol=2e-6)
    assert (y[-2], d[-2], y[-1], d[-1]) == (40.0, 1.0, 0.0, 0.0)
    nan = np.array([np.nan], np.float32)
    out = np.empty_like(nan)
    accel.engine.gelu_float32(nan, out, None)
    assert np.isnan(out[0])
    y_only = np.empty_like(x)
    accel.engine.gelu_float32(x, y_only, None)
    np.testing.assert_array_equal(y_only, y)


# ---- differential: random graphs on both engines -----------------------------------------------
def _random_graph_grads(seed: int) -> list:
    """Gradients of a random float64 graph: forks, broadcasting, multi-output gates, a user
    Function, hooks, retain_grad, 0-d leaves, scalar operands, reductions over dims (keepdim,
    so every value broadcasts against every other: shapes (3, 4), (4,), (3, 1), (1,), ())."""
    rng = np.random.default_rng(seed)
    leaves = [cr.tensor(rng.standard_normal((3, 4)), requires_grad=True),
              cr.tensor(rng.standard_normal((4,)), requires_grad=True),
              cr.tensor(rng.standard_normal((3, 1)), requires_grad=True),
              cr.tensor(float(rng.standard_normal()), dtype=cr.float64, requires_grad=True)]
    pool = list(leaves)
    hooked = []
    for _ in range(12):
        a, b = (pool[i] for i in rng.integers(0, len(pool), 2))
        kind = int(rng.integers(0, 12))
        if kind == 0:
            v = a + b
        elif kind == 1:
            v = a * b
        elif kind == 2:
            v = a - 0.5 * b
        elif kind == 3:
            v = a / (b * b + 1.0)
        elif kind == 4:
            v = a.tanh() + b.sigmoid()
        elif kind == 5:
            v = cr.relu(a) * 2.0 + b.exp() * 0.1
        elif kind == 6:
            v = GoodSquare.apply(a) + b
        elif kind == 7:
            v = (a * b).sum(dim=-1, keepdim=True)
        elif kind == 8:
            v = (a + b).max(dim=-1, keepdim=True)[0] if (a + b).ndim else a + b
        elif kind == 9:
            v = (a * b).mean() + a
        elif kind == 10:
            v = a + b
            v.register_hook(lambda g: g * 0.5)
        else:
            v = a * b
            v.retain_grad()
            hooked.append(v)
        pool.append(v)
    loss = sum(p.sum() for p in pool[len(leaves):])
    loss.backward()
    return [None if t.grad is None else t.grad.numpy().tolist() for t in leaves + hooked]


def _random_graphs_in_subprocess(pure: bool, seeds: range) -> list:
    code = ("import json, test_cengine as t\n"
            f"print(json.dumps([t._random_graph_grads(s) for s in {list(seeds)!r}]))\n")
    return json.loads(_run_python(code, pure))


@needs_c
def test_random_graphs_give_identical_gradients_on_both_engines() -> None:
    seeds = range(60)
    c_engine = _random_graphs_in_subprocess(False, seeds)
    python = _random_graphs_in_subprocess(True, seeds)
    assert len(c_engine) == len(python) == 60
    for seed, (got, ref) in enumerate(zip(c_engine, python)):
        assert got == ref, f"seed {seed}"


def test_a_stale_build_falls_back_to_python_with_a_warning() -> None:
    code = (
        "import sys, types, warnings\n"
        "stale = types.ModuleType('chainrule._cengine')\n"
        "stale.INTERFACE = 0\n"
        "stale.__file__ = 'old.so'\n"
        "sys.modules['chainrule._cengine'] = stale\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import chainrule as cr\n"
        "from chainrule.autograd import accel\n"
        "x = cr.ones(3, requires_grad=True)\n"
        "(x.exp() * 2.0).sum().backward()\n"
        "print(accel.engine is None, any('Rebuild' in str(m.message) for m in w),\n"
        "      round(float(x.grad[0]), 4))\n"
    )
    assert _run_python(code, pure=False).split() == ["True", "True", "5.4366"]
