"""The optional C engine (chainrule/_cengine.c, installed by chainrule/autograd/accel.py).

`make test` runs the whole suite twice: with the C engine (when a C compiler built it) and
with CHAINRULE_PURE_PYTHON=1 (the Python reference). These tests cover what is specific to the
C module: that it is in use when expected, that its gates behave as the Python functions they
replace, and that its bookkeeping leaks nothing and matches the reference bit for bit.
"""

from __future__ import annotations

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

C = accel.engine is not None
needs_c = pytest.mark.skipif(not C, reason="the C engine is not built or is switched off")


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
        "import json, numpy as np, chainrule as cr\n"
        "import tests.test_cengine as t\n"
        "x, w, h = t._w2_graph()\n"
        "(h.sum() + (h * h).mean()).backward()\n"
        "print(json.dumps([x.grad.numpy().tolist(), w.grad.numpy().tolist()]))\n"
    )
    env = dict(os.environ, CHAINRULE_PURE_PYTHON="1" if pure else "0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


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
