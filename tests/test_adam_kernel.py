"""Adam's one-pass C update (kernels/cpu.py ``adam_step``) against optim/adam.py's NumPy update,
bit for bit, and the optimizer with it against torch.optim.Adam / AdamW."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import chainrule as cr
from chainrule.kernels import cpu as cpu_kernels
from chainrule.optim import adam as adam_module

torch = pytest.importorskip("torch")
needs_loops = pytest.mark.skipif(cpu_kernels.loops is None
                                 or not hasattr(cpu_kernels.loops, "adam_step"),
                                 reason="built without the C loops")


def _steps(update, arrays, hp, steps=4):
    d, g, m, v, vmax = (None if a is None else a.copy() for a in arrays)
    lr, beta1, beta2, eps, wd, maximize, decoupled = hp
    for step in range(1, steps + 1):
        step_size = lr / (1 - beta1 ** step)
        bc2 = (1 - beta2 ** step) ** 0.5
        update(d, g, m, v, vmax, lr, beta1, beta2, eps, wd, maximize, decoupled, step_size, bc2)
        g = g * np.asarray(-0.7, g.dtype) + np.asarray(0.01, g.dtype)  # a new gradient each step
    return d, m, v, vmax


def _numpy_update(d, g, m, v, vmax, lr, beta1, beta2, eps, wd, maximize, decoupled, step_size,
                  bc2):
    t0, t1 = np.empty_like(d), np.empty_like(d)
    adam_module._update(d, g, m, v, vmax, t0, t1, lr, beta1, beta2, eps, wd, maximize,
                        decoupled, step_size, bc2)


def _c_update(*args):
    assert cpu_kernels.CpuKernels.adam_step(*args)


@needs_loops
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad,maximize,wd,decoupled,beta1",
                         list(itertools.product([False, True], [False, True], [0.0, 0.05],
                                                [False, True], [0.9, 0.5, 0.2])))
def test_c_update_equals_the_numpy_update_bit_for_bit(dtype, amsgrad, maximize, wd, decoupled,
                                                      beta1):
    rng = np.random.default_rng(11)
    n = 1037  # a vector body and a tail
    d = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    g[:4] = [0.0, -0.0, 1e-30, 3e4]
    m = (rng.standard_normal(n) * 0.1).astype(dtype)
    v = (rng.random(n) * 0.01).astype(dtype)
    vmax = (rng.random(n) * 0.02).astype(dtype) if amsgrad else None
    hp = (2e-4, beta1, 0.999, 1e-8, wd, maximize, decoupled)
    want = _steps(_numpy_update, (d, g, m, v, vmax), hp)
    got = _steps(_c_update, (d, g, m, v, vmax), hp)
    for w, h in zip(want, got):
        if w is None:
            assert h is None
        else:
            np.testing.assert_array_equal(h, w)


@needs_loops
def test_c_update_declines_what_the_loops_cannot_take():
    a = np.zeros(8, np.float32)
    step = cpu_kernels.CpuKernels.adam_step
    args = (2e-4, 0.9, 0.999, 1e-8, 0.0, False, False, 1.0, 1.0)
    assert not step(a, np.zeros(8, np.float64), a.copy(), a.copy(), None, *args)  # dtypes
    assert not step(a, np.zeros(16, np.float32)[::2], a.copy(), a.copy(), None, *args)  # strided
    assert not step(a, a, a.copy(), a.copy(), None, *args)  # the gradient is the parameter
    with pytest.raises(ValueError, match="sizes differ"):
        step(a, np.zeros(9, np.float32), a.copy(), a.copy(), None, *args)


@pytest.mark.parametrize("kind,kw", [("Adam", dict(betas=(0.5, 0.999))),
                                     ("Adam", dict(amsgrad=True, weight_decay=0.1)),
                                     ("AdamW", dict(maximize=True))])
def test_adam_steps_equal_torch_and_the_numpy_route(kind, kw, monkeypatch):
    def run(lib):
        rng = np.random.default_rng(12)
        w = lib.tensor(rng.standard_normal((33, 17)).astype(np.float32), requires_grad=True)
        opt = getattr(lib.optim, kind)([w], lr=2e-3, **kw)
        for _ in range(5):  # the same gradients in each run
            w.grad = lib.tensor(rng.standard_normal((33, 17)).astype(np.float32))
            opt.step()
        return w.detach().numpy()

    got, want = run(cr), run(torch)
    # torch's own kernel rounds a few elements differently (1 ulp), the NumPy route alike
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    monkeypatch.setattr(cpu_kernels.CpuKernels, "adam_step", staticmethod(lambda *a: False))
    np.testing.assert_array_equal(got, run(cr))
