"""chainrule's own thread pool at more than one thread: products split over it through NumPy's
OpenBLAS on one thread (kernels/openblas.py, _cpu_loops.c's gemm), its axpy, and the thread
settings that switch it."""

import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import _threads
from chainrule.kernels import cpu as cpu_kernels
from chainrule.kernels import mkl, openblas
from chainrule.kernels.matmul import matmul

loops = cpu_kernels.loops
if loops is None or not hasattr(loops, "gemm") or not openblas.find()["gemm"]:
    pytest.skip("the C loops are not built, or NumPy's BLAS is not OpenBLAS",
                allow_module_level=True)


def _blas_threads():
    """NumPy's OpenBLAS's thread count (other BLAS libraries, e.g. torch's, are left alone)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import os.path

    return [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if os.path.realpath(i["filepath"]) == os.path.realpath(openblas.state["path"])]


def _on_or_skip(monkeypatch, recorded) -> None:
    """Assert the pool came on; skip where MKL's GEMM is in use (the pool splits NumPy's
    OpenBLAS products only: kernels/cpu.configure_threads), after putting the threads back."""
    if not openblas.state["on"] and mkl.state["gemm"]:
        monkeypatch.delenv("CHAINRULE_POOL")
        cr.set_num_threads(recorded or _threads.blas_threads())
        _threads.counts["n"] = recorded
        pytest.skip("MKL's GEMM is in use: chainrule's pool runs NumPy's OpenBLAS only")
    assert openblas.state["on"]


@pytest.fixture
def pool(monkeypatch):
    """The pool on with 2 threads (whatever this machine's CPU count), every product split."""
    monkeypatch.setenv("CHAINRULE_POOL", "1")
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS", raising=False)
    recorded = _threads.counts["n"]
    cr.set_num_threads(2)
    _on_or_skip(monkeypatch, recorded)
    old = loops.pool_config(-1, 0)
    monkeypatch.setitem(openblas.state, "min_flops", 1)
    yield
    loops.pool_config(-1, old[1])
    monkeypatch.delenv("CHAINRULE_POOL")  # back to the default before the threads are reset
    cr.set_num_threads(recorded or _threads.blas_threads())
    _threads.counts["n"] = recorded


def _operands(rng, shape_a, shape_b, dtype, transpose_a=False, transpose_b=False):
    a = rng.standard_normal(shape_a[:-2] + (shape_a[-1], shape_a[-2]) if transpose_a
                            else shape_a).astype(dtype)
    b = rng.standard_normal(shape_b[:-2] + (shape_b[-1], shape_b[-2]) if transpose_b
                            else shape_b).astype(dtype)
    return (a.swapaxes(-1, -2) if transpose_a else a), (b.swapaxes(-1, -2) if transpose_b else b)


SHAPES = [((256, 784), (784, 512)),  # rows split
          ((5, 300), (300, 700)),  # few rows: columns split
          ((37, 19), (19, 3)),  # odd sizes, blocks of 16 rows
          ((1, 64), (64, 1)),
          ((300, 1), (1, 200)),  # k = 1
          ((3, 70, 40), (3, 40, 50)),  # a stack: a run of matrices per thread
          ((6, 1, 33, 20), (5, 20, 17)),  # broadcast stacks
          ((2, 130, 64), (64, 90))]  # a stack times one matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_pooled_products_match_numpy(pool, dtype, shapes, ta, tb):
    rng = np.random.default_rng(len(shapes[0]) * 7 + shapes[0][-1])
    a, b = _operands(rng, *shapes, dtype, ta, tb)
    want = np.matmul(a, b)
    for threads in (1, 2, 3):
        loops.set_threads(threads)
        got = matmul(a, b)
        assert got.shape == want.shape and got.dtype == want.dtype
        # (within rounding: OpenBLAS may take another kernel for a narrower block)
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)
        assert np.array_equal(got, matmul(a, b))  # the same split each time
    loops.set_threads(2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_pooled_products_are_numpys_bits(pool, dtype):
    rng = np.random.default_rng(0)
    for (m, k, n) in [(256, 784, 512), (784, 256, 512), (64, 9216, 128), (20, 500, 3000)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        assert np.array_equal(matmul(a, b), a @ b)
        assert np.array_equal(matmul(b.T, a.T), b.T @ a.T)


def test_pooled_products_take_strided_operands_and_out(pool):
    rng = np.random.default_rng(1)
    big = rng.standard_normal((300, 500)).astype(np.float32)
    a, b = big[:200:, :100], big[100:200, 50:450]  # row strides larger than the rows
    out = np.full((300, 800), 7.0, np.float32)
    view = out[50:250, 100:500]
    r = matmul(a, b, out=view)
    assert r is view
    np.testing.assert_allclose(view, a @ b, rtol=1e-5, atol=1e-4)
    assert (out[:50] == 7).all() and (out[:, :100] == 7).all() and (out[:, 500:] == 7).all()
    c = big[::2, ::3]  # no unit stride: NumPy's route
    np.testing.assert_allclose(matmul(c[:, :100], c[:100]), c[:, :100] @ c[:100], rtol=1e-5,
                               atol=1e-4)
    z = np.zeros((0, 5), np.float32)
    assert matmul(z, np.ones((5, 3), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError):
        matmul(np.ones((3, 4), np.float32), np.ones((5, 3), np.float32))


def test_pooled_products_in_autograd_match_torch(pool):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((128, 300)).astype(np.float32)
    w = rng.standard_normal((300, 200)).astype(np.float32)
    cx, cw = cr.tensor(x, requires_grad=True), cr.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (cx @ cw).relu().sum().backward()
    (tx @ tw).relu().sum().backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_set_num_threads_switches_the_pool(monkeypatch):
    monkeypatch.setenv("CHAINRULE_POOL", "1")
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS", raising=False)
    recorded = _threads.counts["n"]
    try:
        cr.set_num_threads(2)
        _on_or_skip(monkeypatch, recorded)
        assert openblas.state["on"] and cr.get_num_threads() == 2
        assert _blas_threads() == [1]  # OpenBLAS itself on one thread
        assert cpu_kernels.default_threads() == (2, cpu_kernels.POOL_MIN_WORK)
        assert loops.set_threads(2) == 2
        cr.set_num_threads(1)
        assert not openblas.state["on"] and cr.get_num_threads() == 1
        assert _blas_threads() == [1]
        monkeypatch.setenv("CHAINRULE_POOL", "0")  # OpenBLAS's own threads (the default)
        cr.set_num_threads(2)
        assert not openblas.state["on"] and _blas_threads() == [2]
        a = np.ones((300, 300), np.float32)
        assert (matmul(a, a) == 300).all()
    finally:
        monkeypatch.delenv("CHAINRULE_POOL", raising=False)
        cr.set_num_threads(recorded or _threads.blas_threads())
        _threads.counts["n"] = recorded


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [10, (1 << 16) + 3, 1 << 18])
def test_axpy_gives_numpys_bits(pool, dtype, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    y0 = rng.standard_normal(n).astype(dtype)
    want = y0 - dtype(0.01) * x if dtype == np.float32 else y0 - 0.01 * x
    for threads in (1, 2):
        loops.set_threads(threads, 1024)
        y = y0.copy()
        loops.axpy(-0.01, x, y)
        assert np.array_equal(y, want)
    loops.set_threads(*cpu_kernels.default_threads())
    y = y0.copy()
    took = cpu_kernels.CpuKernels.axpy(-0.01, x, y)
    assert took == (n >= cpu_kernels.POOL_MIN_AXPY) and (not took or np.array_equal(y, want))
    with pytest.raises(ValueError):
        loops.axpy(1.0, x, y0[:-1].copy())
    with pytest.raises(TypeError):
        loops.axpy(1.0, x.astype(np.int64), y0)


def test_sgd_on_the_pool_matches_torch(pool):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    w = rng.standard_normal((400, 300)).astype(np.float32)
    g = rng.standard_normal((400, 300)).astype(np.float32)
    cp, tp = cr.tensor(w.copy(), requires_grad=True), torch.tensor(w.copy(), requires_grad=True)
    cp.grad, tp.grad = cr.tensor(g), torch.tensor(g)
    cr.optim.SGD([cp], lr=0.1).step()
    torch.optim.SGD([tp], lr=0.1).step()
    np.testing.assert_allclose(cp.detach().numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_the_pool_works_in_a_forked_child(pool):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 400)).astype(np.float32)
    want = a @ a.T
    assert np.array_equal(matmul(a, a.T), want)  # the parent's helpers are running
    pid = os.fork()
    if pid == 0:  # the child has none of them: the pool starts its own
        ok = np.array_equal(matmul(a, a.T), want) and np.array_equal(matmul(a, a.T), want)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_pool_config_reads_back():
    old = loops.pool_config(-1, -1)
    try:
        assert loops.pool_config(12345, 678) == old
        assert loops.pool_config(-1, -1) == (12345, 678)
    finally:
        loops.pool_config(*old)
    with pytest.raises(TypeError):
        loops.pool_config(1)
    with pytest.raises(TypeError):
        loops.gemm(1, 2, 3)


def test_chunked_convolutions_on_the_pool_match_torch(pool):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 32, 26, 26)).astype(np.float32)  # columns in chunks
    w = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np.float32)
    cx, cw = cr.tensor(x, requires_grad=True), cr.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    cy = cr.nn.functional.conv2d(cx, cw)
    ty = torch.nn.functional.conv2d(tx, tw)
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(ty.shape).astype(np.float32)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-2)
