"""Native code validates what it is given (issue 14, defect 5): the C loops of
``chainrule/kernels/_cpu_loops.c`` check argument counts, dtypes, contiguity, writability and
sizes, and nothing reachable through private attributes (the loops, the compiled engine's node
and tensor fields) crashes the interpreter. Crash checks run in a subprocess: a segfault there
is a failed test, not a dead test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from chainrule.kernels import cpu

loops = cpu.loops
needs_loops = pytest.mark.skipif(loops is None, reason="the C loops are not built")


def _run(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _f32(*shape):
    return np.zeros(shape, np.float32)


# ---- the C loops: each bad call is an exception ----------------------------------------------
_X = _f32(4, 3)
_BAD = [
    # (loop, args, error)
    ("relu_forward", (_X,), TypeError),                                   # argument count
    ("relu_forward", (_X, _X, _X), TypeError),
    ("relu_forward", (_X, np.zeros((4, 3), np.int64)), TypeError),        # dtype
    ("relu_forward", (_X, np.zeros((4, 3), np.float64)), TypeError),      # mixed dtypes
    ("relu_forward", (_X.astype(np.float16), _X.astype(np.float16)), TypeError),
    ("relu_forward", (_X.astype(">f4"), _X), TypeError),                  # byte order
    ("relu_forward", (_X, _f32(5, 3)), ValueError),                       # sizes
    ("relu_forward", (_X.T, _f32(3, 4)), (ValueError, BufferError)),      # not contiguous
    ("relu_forward", (_X, np.broadcast_to(_f32(1, 3), (4, 3))), (ValueError, BufferError)),
    ("relu_forward", (None, _X), TypeError),                              # not buffers
    ("relu_forward", ([1.0, 2.0], _X), TypeError),
    ("relu_forward", (_X, b"0123" * 12), (TypeError, BufferError)),
    ("relu_backward", (_X, _X, _f32(12)[:11]), ValueError),
    ("gelu_float32", (_X.astype(np.float64), _f32(4, 3), None), TypeError),
    ("gelu_float32", (_X, _f32(3, 3), None), ValueError),
    ("gelu_float32", (_X, _f32(4, 3), _f32(2)), ValueError),
    ("softmax_rows", (_X, _f32(4, 3), 3), TypeError),
    ("softmax_rows", (_X, _f32(4, 3), 0, False), ValueError),
    ("softmax_rows", (_X, _f32(4, 3), 5, False), ValueError),
    ("softmax_rows", (_X, _f32(4, 3), 3, True, _f32(8)), ValueError),  # stats: softmax only
    ("softmax_rows", (_X, _f32(4, 3), 3, False, _f32(7)), ValueError),
    ("softmax_backward_rows", (_X, _X, _f32(4, 2), 3, False), ValueError),
    ("sum_rows", (_X, _f32(3), 3), ValueError),
    ("sum_rows", (_X, _f32(4), -3), ValueError),
    ("sum_squares_rows", (_X, _f32(4), 2), ValueError),
    ("sigmoid", (_X, _f32(3, 4)[:2]), ValueError),
    ("gelu_tanh", (_X, _f32(4, 3), _f32(5)), ValueError),
    ("gather_axis", (_X, np.zeros(12, np.int32), _f32(12), 1, 12, 12, 1, False), TypeError),
    ("gather_axis", (_X, np.zeros(12, np.int64), _f32(12), 1, 11, 12, 1, False), ValueError),
    ("gather_axis", (_X, np.zeros(12, np.int64), _f32(12), 2**62, 2**62, 12, 4, False),
     ValueError),
    ("gather_axis", (_X, np.full(12, 12, np.int64), _f32(12), 1, 12, 12, 1, True), IndexError),
    ("gather_axis", (_X, np.full(12, -1, np.int64), _f32(12), 1, 12, 12, 1, False), IndexError),
    ("layer_norm_forward", (_X, None, None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4)), TypeError),
    ("layer_norm_forward", (_X, None, None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4), 0),
     ValueError),
    ("layer_norm_forward", (_X, None, None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4), -3),
     ValueError),
    ("layer_norm_forward", (_X, None, None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4), 5),
     ValueError),
    ("layer_norm_forward", (_X, _f32(4), None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4), 3),
     ValueError),
    ("layer_norm_forward", (_X, None, None, "eps", _f32(4, 3), _f32(4, 3), _f32(4), 3),
     TypeError),
    ("layer_norm_forward", (_X, None, None, 1e-5, _f32(4, 3), _f32(4, 3), _f32(4), 2**80),
     OverflowError),
    # rows·n wrapping around 2^64 must not pass the size check
    ("layer_norm_forward", (_f32(4), None, None, 1e-5, _f32(4), _f32(4), _f32(4), 2**62 + 1),
     ValueError),
    ("layer_norm_backward", (_f32(4), _f32(4), None, _f32(4), _f32(4), None, None, 2**62 + 1),
     ValueError),
    ("layer_norm_backward", (_X, _X, None, _f32(4), _f32(4, 3), _f32(2), None, 3), ValueError),
    ("layer_norm_backward", (_X, _X, None, _f32(4), np.zeros((4, 3), np.float32).T.copy().T,
                             None, None, 3), (ValueError, BufferError)),
    ("lstm_step_forward", (_f32(4, 2, 1, 3), _f32(3, 1, 3), 2, 0, 1), IndexError),
    ("lstm_step_forward", (_f32(4, 2, 1, 3), _f32(3, 1, 3), 0, -1, 1), IndexError),
    ("lstm_step_forward", (_f32(4, 2, 1, 3), _f32(3, 1, 3), 0, 0, 3), IndexError),
    ("lstm_step_forward", (_f32(3, 2, 1, 3), _f32(3, 1, 3), 0, 0, 1), ValueError),
    ("lstm_step_forward", (_f32(4, 2, 1, 3), _f32(2, 1, 3), 0, 0, 1), ValueError),
    ("lstm_step_forward", (_f32(24), _f32(9), 0, 0, 1), ValueError),
    ("lstm_step_backward", (_f32(1, 3), _f32(1, 3), None, _f32(2, 1, 3), _f32(24), _f32(24),
                            _f32(24), 2), ValueError),
    ("lstm_step_backward", (_f32(1, 3), _f32(1, 3), None, _f32(2, 1, 3), _f32(23), _f32(24),
                            _f32(24), 0), ValueError),
    ("lstm_step_backward", (_f32(1, 3), _f32(1, 2), None, _f32(2, 1, 3), _f32(24), _f32(24),
                            _f32(24), 0), ValueError),
    ("lstm_step_backward", (_f32(1, 3), _f32(1, 3), _f32(2), _f32(2, 1, 3), _f32(24), _f32(24),
                            _f32(24), 0), ValueError),
    ("lstm_step_backward", (_f32(1, 3), _f32(1, 3), None, _f32(6), _f32(24), _f32(24),
                            _f32(24), 0), ValueError),
]


@needs_loops
@pytest.mark.parametrize("name,args,error", _BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(_BAD)])
def test_c_loops_refuse_bad_buffers(name, args, error):
    with pytest.raises(error):
        getattr(loops, name)(*args)


@needs_loops
def test_c_loops_refuse_read_only_outputs():
    out = _f32(4, 3)
    out.flags.writeable = False
    with pytest.raises((ValueError, BufferError, TypeError)):
        loops.relu_forward(_X, out)
    with pytest.raises((ValueError, BufferError, TypeError)):
        loops.gelu_float32(_X, out, None)


@needs_loops
def test_c_loops_accept_good_buffers_and_compute():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3)
    y = np.empty_like(x)
    loops.relu_forward(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    y64 = np.empty(12)
    loops.relu_forward(x.astype(np.float64).reshape(-1), y64)  # (sizes, not shapes, must match)
    np.testing.assert_array_equal(y64, np.maximum(x, 0).reshape(-1))
    y2, xh, r = np.empty_like(x), np.empty_like(x), np.empty(4, np.float32)
    loops.layer_norm_forward(x, None, None, 1e-5, y2, xh, r, 3)
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y2, want, rtol=1e-5, atol=1e-5)


@needs_loops
def test_c_loops_survive_random_hostile_arguments():
    """Every loop called with random mixes of arrays (any size, dtype, layout), None, numbers,
    bytes and objects; in a subprocess, which must neither crash nor hang."""
    r = _run("""
        import numpy as np
        from chainrule.kernels import _cpu_loops as L
        rng = np.random.default_rng(0)
        names = ["relu_forward", "relu_backward", "gelu_float32", "layer_norm_forward",
                 "layer_norm_backward", "lstm_step_forward", "lstm_step_backward",
                 "softmax_rows", "softmax_backward_rows", "sum_rows", "sum_squares_rows",
                 "sigmoid", "gelu_tanh", "gather_axis"]
        def value():
            k = rng.integers(12)
            if k < 6:
                shape = tuple(int(s) for s in rng.integers(0, 5, rng.integers(0, 5)))
                dt = [np.float32, np.float64, np.float16, np.int64, np.float32, np.float64][k]
                a = np.zeros(shape, dt)
                if a.ndim >= 2 and rng.random() < 0.3:
                    a = a.T
                if rng.random() < 0.1:
                    a.flags.writeable = False
                return a
            return [None, 0, -1, 2**40, 2**63 - 1, 1e-5, b"abcd", "x", [1.0], object()][
                rng.integers(10) if k < 11 else 3]
        calls = errors = 0
        for _ in range(30000):
            name = names[rng.integers(len(names))]
            args = [value() for _ in range(rng.integers(0, 10))]
            try:
                getattr(L, name)(*args)
            except (TypeError, ValueError, IndexError, OverflowError, BufferError):
                errors += 1
            calls += 1
        print(calls, errors)
    """)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])


# ---- private attributes of the compiled engine ---------------------------------------------------
def test_private_attributes_set_to_hostile_values_never_crash():
    """Tensor and node fields (``_data``, ``_grad_fn``, ``_nr``, ``_edges``, ``_outs``,
    ``_saved``, ...) overwritten with hostile values, then forward and backward run: Python
    exceptions only (in a subprocess, on whichever engine this run uses)."""
    r = _run("""
        import random, threading
        import numpy as np
        import chainrule as cr

        rng = random.Random(0)
        HOSTILE = [None, 0, -1, 1, 2**62, 1.5, "x", (), (None,), ((None,),), ((None, 0),),
                   (1, 2, 3), [], [None], {}, object(), np.zeros(3), np.zeros(()), cr.ones(3),
                   (cr.ones(2),), ((cr.ones(2), 0),), ((), ()), (((3,), None),)]
        T_FIELDS = ["_data", "_grad_fn", "_nr", "_requires_grad", "_grad", "_hooks",
                    "_post_hooks", "_vc", "_vholder", "_base", "_view", "_view_src"]
        N_FIELDS = ["_edges", "_outs", "_saved", "_saved_from", "_versions", "_hooks",
                    "_retained", "_dirty", "_non_differentiable", "_tensor_args",
                    "_materialize_grads", "_e0", "_e1", "_nin", "_en", "_shape", "_dtype",
                    "_metas"]

        def graph():
            x = cr.randn(3, requires_grad=True)
            w = cr.randn(3, requires_grad=True)
            y = (x * w).exp() + x.sin()
            a, b = y.split(2) if rng.random() < 0.5 else (y, y)
            return x, w, y, (a.sum() * 2 + b.sum())

        done = 0
        for trial in range(3000):
            x, w, y, loss = graph()
            nodes = [y.grad_fn, loss.grad_fn]
            for _ in range(rng.randint(1, 3)):
                if rng.random() < 0.5:
                    target = rng.choice([x, w, y, loss])
                    field = rng.choice(T_FIELDS)
                else:
                    target = rng.choice(nodes)
                    field = rng.choice(N_FIELDS)
                try:
                    setattr(target, field, rng.choice(HOSTILE))
                except Exception:
                    pass
            try:
                loss.backward(retain_graph=rng.random() < 0.5)
                cr.autograd.grad(y.sum(), [x], allow_unused=True)
                (y * 2).sum().backward()
            except Exception:
                pass
            done += 1

        # a user Function that changes its own edges during backward
        class Evil(cr.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a * b

            @staticmethod
            def backward(ctx, g):
                for v in [(), (None,), None, ((None, 0),), 5, [None, None]]:
                    try:
                        ctx._edges = v
                    except Exception:
                        pass
                return g, g

        for _ in range(50):
            a = cr.ones(3, requires_grad=True)
            b = cr.ones(3, requires_grad=True)
            try:
                Evil.apply(a, b).sum().backward()
            except Exception:
                pass
        print("ok", done)
    """)
    assert r.returncode == 0 and "ok" in r.stdout, (r.returncode, r.stderr[-3000:])
