"""At more than one thread without chainrule's own pool (the default install): split C loops and
stacks of small products run on NumPy's OpenBLAS's own threads (kernels/openblas.loop_runner,
_cpu_loops.c's ext_runner), with the answers of one thread; and Adadelta's one-pass step."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import _threads
from chainrule.kernels import cpu as cpu_kernels
from chainrule.kernels import mkl, openblas
from chainrule.kernels.matmul import matmul

loops = cpu_kernels.loops


@pytest.fixture
def on_blas(monkeypatch):
    """Two threads, the loops and small stacks on OpenBLAS's threads, every loop split."""
    if loops is None or not hasattr(loops, "pool_runner") or not openblas.find()["gemm"]:
        pytest.skip("the C loops are not built, or NumPy's BLAS is not OpenBLAS")
    if mkl.state["gemm"] or not openblas.state.get("runner"):
        pytest.skip("MKL's GEMM is in use, or this OpenBLAS exports no gotoblas_pthread")
    monkeypatch.delenv("CHAINRULE_POOL", raising=False)
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS", raising=False)
    monkeypatch.delenv("CHAINRULE_LOOPS_ON_BLAS", raising=False)
    recorded = _threads.counts["n"]
    cr.set_num_threads(2)
    assert openblas.state["loops_on_blas"] == 2 and not openblas.state["on"]
    cpu_kernels.set_loop_threads(2, 1)  # split every call, however small
    yield
    cr.set_num_threads(recorded or _threads.blas_threads())
    _threads.counts["n"] = recorded


def test_off_at_one_thread_and_by_variable(on_blas, monkeypatch):
    cr.set_num_threads(1)
    assert openblas.state["loops_on_blas"] == 1
    monkeypatch.setenv("CHAINRULE_LOOPS_ON_BLAS", "0")
    cr.set_num_threads(2)
    assert openblas.state["loops_on_blas"] == 1
    assert openblas.loop_runner(2) == (0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_softmax_matches_one_thread(on_blas, dtype):
    x = np.random.default_rng(0).standard_normal((300, 70)).astype(dtype)
    t = cr.tensor(x, requires_grad=True)
    y = cr.softmax(t, 1)
    (y * cr.tensor(np.arange(70, dtype=dtype))).sum().backward()
    split = y.detach().numpy().copy(), t.grad.numpy().copy()
    cpu_kernels.set_loop_threads(1)
    t.grad = None
    y = cr.softmax(t, 1)
    (y * cr.tensor(np.arange(70, dtype=dtype))).sum().backward()
    np.testing.assert_array_equal(split[0], y.detach().numpy())
    np.testing.assert_array_equal(split[1], t.grad.numpy())


def _heads(rng, dtype):
    """(q, k): per-head views (16, 4, 64, 32) into one (16, 64, 384) projection, as attention
    takes them: batch dims that need two strides."""
    x = rng.standard_normal((16, 64, 384)).astype(dtype)
    q = x[..., :128].reshape(16, 64, 4, 32).transpose(0, 2, 1, 3)
    k = x[..., 128:256].reshape(16, 64, 4, 32).transpose(0, 2, 1, 3)
    return q, k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_stacks_split_over_blas_threads(on_blas, monkeypatch, dtype):
    calls = []
    real = openblas.state["split_gemm"]
    monkeypatch.setitem(openblas.state, "split_gemm", lambda *a: calls.append(a) or real(*a))
    rng = np.random.default_rng(1)
    q, k = _heads(rng, dtype)
    s = rng.standard_normal((16, 4, 64, 64)).astype(dtype)
    kt = k.swapaxes(-1, -2)
    cases = [(q, kt), (s, k), (s.swapaxes(-1, -2), q), (q[:, :1], kt),
             (np.ascontiguousarray(q), np.ascontiguousarray(kt)),
             (s[:3], np.ascontiguousarray(k[0]))]
    for a, b in cases:
        got = matmul(a, b)
        np.testing.assert_allclose(got, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)
    assert len(calls) == len(cases)
    assert len(calls[0]) == 19  # the two-level form (batch, heads strides)


def test_large_or_2d_products_stay_with_numpy(on_blas, monkeypatch):
    calls = []
    monkeypatch.setitem(openblas.state, "split_gemm", lambda *a: calls.append(a))
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 128, 128)).astype(np.float32)  # 2M multiply-adds a matrix
    np.testing.assert_allclose(matmul(a, a), a @ a, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(matmul(a[0], a[1]), a[0] @ a[1], rtol=1e-5, atol=1e-4)
    assert calls == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_adadelta_one_pass_bits_match_numpy_and_torch(monkeypatch, dtype, threads):
    if loops is None or not hasattr(loops, "adadelta"):
        pytest.skip("the C loops are not built")
    recorded = _threads.counts["n"]
    cr.set_num_threads(threads)
    if threads > 1:
        cpu_kernels.set_loop_threads(threads, 1)
    try:
        rng = np.random.default_rng(3)
        w0 = rng.standard_normal(20001).astype(dtype)
        grads = [rng.standard_normal(20001).astype(dtype) for _ in range(3)]
        calls = []
        real = cpu_kernels.CpuKernels.__dict__["adadelta_step"].__func__

        def fused(*args):
            calls.append(1)
            return real(*args)

        results = []
        for kernel in (fused, lambda *args: False):
            monkeypatch.setattr(cpu_kernels.CpuKernels, "adadelta_step", staticmethod(kernel))
            p = cr.tensor(w0.copy(), requires_grad=True)
            opt = cr.optim.Adadelta([p], lr=0.7, rho=0.8, eps=1e-5)
            for g in grads:
                p.grad = cr.tensor(g)
                opt.step()
            results.append(p.detach().numpy().copy())
        assert calls == [1, 1, 1]
        np.testing.assert_array_equal(results[0], results[1])
        torch = pytest.importorskip("torch")
        tp = torch.tensor(w0.copy(), requires_grad=True)
        topt = torch.optim.Adadelta([tp], lr=0.7, rho=0.8, eps=1e-5)
        for g in grads:
            tp.grad = torch.tensor(g)
            topt.step()
        np.testing.assert_allclose(results[0], tp.detach().numpy(),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    finally:
        cr.set_num_threads(recorded or _threads.blas_threads())
        _threads.counts["n"] = recorded


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_relu_and_gelu_match_one_thread(on_blas, dtype):
    x = np.random.default_rng(4).standard_normal((257, 129)).astype(dtype)
    outs = []
    for threads in (2, 1):
        if threads == 1:
            cpu_kernels.set_loop_threads(1)
        results = []
        for fn in (cr.nn.functional.relu, cr.nn.functional.gelu):
            t = cr.tensor(x, requires_grad=True)
            y = fn(t)
            (y * cr.tensor(x[::-1].copy())).sum().backward()
            results += [y.detach().numpy().copy(), t.grad.numpy().copy()]
        outs.append(results)
    for split, one in zip(*outs):
        np.testing.assert_array_equal(split, one)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(outs[0][2], torch.nn.functional.gelu(torch.tensor(x)).numpy(),
                               rtol=1e-5, atol=1e-6)
