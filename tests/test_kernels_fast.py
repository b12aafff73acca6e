"""The CPU kernel table's fast paths against the reference table and PyTorch: float powers as
products and square roots, scatter-add as one loop over rows, gates that skip the gradients
no input needs, and conv2d."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import _threads
from chainrule.kernels import CPU, REFERENCE
from chainrule.kernels import cpu as cpu_kernels
from chainrule.kernels import openblas

torch = pytest.importorskip("torch")

# x ** e where PyTorch itself multiplies, takes square roots or divides: the same bits
TORCH_FORMS = [2, 3, -0.5, -1, -2, 2.0, 3.0, -1.0, -2.0]


def _sample(dtype, positive: bool, n: int = 20000):
    x = (np.random.default_rng(0).standard_normal(n) * 3).astype(dtype)
    x[:4] = [0.0, -0.0, np.inf, -np.inf]
    x[4] = np.nan
    return np.abs(x) if positive else x


def _ulps(got, want):
    fin = np.isfinite(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    return np.max(np.abs(got[fin] - want[fin]) / np.spacing(np.abs(want[fin]).astype(got.dtype)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("e", TORCH_FORMS)
def test_pow_fast_forms_match_torch_bit_for_bit(dtype, e):
    x = _sample(dtype, positive=e == -0.5)
    a = cr.tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    with np.errstate(all="ignore"):
        y, ty = a**e, t**e
        y.sum().backward()
        ty.sum().backward()
        assert np.array_equal(y.detach().numpy(), ty.detach().numpy(), equal_nan=True)
        assert _ulps(a.grad.numpy(), t.grad.numpy()) <= 1.0


@pytest.mark.parametrize("e", [4, 1.5, 4.0, 0.5])
def test_pow_float32_is_as_accurate_as_pow(e):
    """x⁴ and x^1.5 through float64, √x correctly rounded (PyTorch's x**0.5 is within 0.75
    ulp: it is not checked bit for bit)."""
    x = _sample(np.float32, positive=True)
    with np.errstate(all="ignore"):
        got = CPU.pow(x, e)
        exact = (x.astype(np.float64) ** e).astype(np.float32)  # correctly rounded, but for ties
        assert got.dtype == np.float32
        assert _ulps(got, exact) <= 0.5
        assert _ulps((cr.tensor(x) ** e).numpy(), exact) <= 0.5


def test_pow_other_exponents_and_dtypes_keep_numpy_power():
    x = np.arange(1, 7, dtype=np.float32)
    assert np.array_equal(CPU.pow(x, 2.7), x**2.7)
    xi = np.arange(-3, 4)
    assert np.array_equal(CPU.pow(xi, 3), xi**3) and CPU.pow(xi, 3).dtype == xi.dtype
    assert np.array_equal(CPU.pow(x, np.float32(3.0)), x**np.float32(3.0))
    assert np.array_equal(CPU.pow(x.astype(np.float16), 3.0), x.astype(np.float16) ** 3.0)


def test_pow_gradcheck_float64():
    x = cr.tensor(np.random.default_rng(1).uniform(0.5, 2.0, (3, 4)), requires_grad=True)
    for e in (3.0, 2.5, -0.5, 1.5, 4):
        assert cr.autograd.gradcheck(lambda v, e=e: v**e, (x,))
        assert cr.autograd.gradgradcheck(lambda v, e=e: v**e, (x,))


# ---- scatter-add -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.float16])
@pytest.mark.parametrize("with_loops", [True, False])
def test_add_at_rows_matches_numpy_add_at(dtype, with_loops, monkeypatch):
    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    rng = np.random.default_rng(2)
    for shape, index, vshape in [
        ((7, 3), rng.integers(0, 7, 50), (50, 3)),
        ((7, 3), rng.integers(-7, 7, (5, 4)), (5, 4, 3)),
        ((7, 3, 2), rng.integers(0, 7, 9), (9, 3, 2)),
        ((7, 3), rng.integers(0, 7, 9), (3,)),  # values broadcast
        ((4, 5, 3), (rng.integers(-4, 4, (6, 2)), rng.integers(0, 5, 2)), (6, 2, 3)),
        ((4, 5), (rng.integers(0, 4, 8), rng.integers(0, 5, 8)), (8,)),
        ((7, 3), rng.integers(0, 7, 0), (0, 3)),
    ]:
        values = (rng.standard_normal(vshape) * 4).astype(dtype)
        out = (rng.standard_normal(shape) * 4).astype(dtype)
        want = out.copy()
        np.add.at(want, index, values)
        CPU.add_at(out, index, values)
        if dtype == np.float16 or cpu_kernels.loops is None:  # other summation orders
            np.testing.assert_allclose(out, want, rtol=2e-3, atol=1e-2)
        else:
            assert np.array_equal(out, want)


def test_add_at_falls_back_for_slices_masks_and_bad_indices():
    out = np.zeros((4, 3))
    CPU.add_at(out, (slice(None), np.array([0, 0, 2])), np.ones(3))
    assert np.array_equal(out[:, 0], [2, 2, 2, 2])
    with pytest.raises(IndexError):
        CPU.add_at(np.zeros((4, 3)), np.array([0, 4]), np.ones((2, 3)))
    with pytest.raises(IndexError):
        CPU.add_at(np.zeros((4, 3)), np.array([-5]), np.ones((1, 3)))


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_backward_matches_torch(padding_idx):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((27, 10)).astype(np.float32)
    idx = rng.integers(0, 27, (32, 16))
    g = rng.standard_normal((32, 16, 10)).astype(np.float32)
    cw, tw = cr.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    cr.nn.functional.embedding(cr.tensor(idx), cw, padding_idx).backward(cr.tensor(g))
    torch.nn.functional.embedding(torch.tensor(idx), tw, padding_idx).backward(torch.tensor(g))
    np.testing.assert_allclose(cw.grad.numpy(), tw.grad.numpy(), rtol=1e-5, atol=1e-5)
    ref = REFERENCE.embedding_backward(g, idx, w.shape, padding_idx)
    ours = CPU.embedding_backward(g, idx, w.shape, padding_idx)
    if cpu_kernels.loops is not None:  # the C loop adds the rows in add.at's order
        assert np.array_equal(ours, ref)
    else:  # (CHAINRULE_C_LOOPS=0: add.reduceat's pairwise sums, another order)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_gather_index_put_and_index_add_backward_match_torch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5))
    idx = rng.integers(0, 5, (6, 8))
    rows = rng.integers(-6, 6, 10)
    src = rng.standard_normal((4, 5))
    cx, tx = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (cr.gather(cx, 1, cr.tensor(idx)).sum() * 2 + (cx[cr.tensor(rows)] ** 2).sum()).backward()
    (torch.gather(tx, 1, torch.tensor(idx)).sum() * 2 + (tx[torch.tensor(rows)] ** 2).sum()
     ).backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    sidx = rng.integers(0, 6, (4, 5))
    cs, ts = cr.tensor(src, requires_grad=True), torch.tensor(src, requires_grad=True)
    got = cr.scatter_add(cr.tensor(x), 0, cr.tensor(sidx), cs)
    want = torch.scatter_add(torch.tensor(x), 0, torch.tensor(sidx), ts)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)
    (got**2).sum().backward()
    (want**2).sum().backward()
    np.testing.assert_allclose(cs.grad.numpy(), ts.grad.numpy(), rtol=1e-12)


# ---- gradients nobody needs ----------------------------------------------------------------------
def _count_matmuls(monkeypatch):
    from chainrule.kernels import matmul as mm

    calls = []
    real = mm.matmul

    def counting(a, b, out=None):
        calls.append((np.shape(a), np.shape(b)))
        return real(a, b, out)

    for mod in ("chainrule.ops.either", "chainrule.ops.linalg", "chainrule.kernels.cpu",
                "chainrule.kernels.reference", "chainrule.nn.functional", "chainrule.ops.conv"):
        if hasattr(__import__(mod, fromlist=["x"]), "_matmul"):
            monkeypatch.setattr(f"{mod}._matmul", counting)
        if hasattr(__import__(mod, fromlist=["x"]), "_mm"):
            monkeypatch.setattr(f"{mod}._mm", counting)
    return calls


def test_raw_mlp_skips_the_gradient_of_its_data(monkeypatch):
    """relu(X @ W1 + b1) @ W2: X needs no gradient, so backward runs 3 GEMMs, not 4."""
    rng = np.random.default_rng(5)
    X = cr.tensor(rng.standard_normal((16, 8)).astype(np.float32))
    W1 = cr.tensor(rng.standard_normal((8, 6)).astype(np.float32), requires_grad=True)
    b1 = cr.tensor(np.zeros(6, np.float32), requires_grad=True)
    W2 = cr.tensor(rng.standard_normal((6, 3)).astype(np.float32), requires_grad=True)
    loss = (cr.relu(X @ W1 + b1) @ W2).sum()
    calls = _count_matmuls(monkeypatch)
    loss.backward()
    assert len(calls) == 3
    assert X.grad is None and W1.grad is not None


@pytest.mark.parametrize("shapes", [((5, 4), (4, 3)), ((2, 5, 4), (4, 3)), ((4,), (4, 3)),
                                    ((5, 4), (4,)), ((4,), (4,)), ((2, 5, 4), (2, 4, 3))])
@pytest.mark.parametrize("needs", [(True, False), (False, True), (True, True)])
def test_matmul_gradients_match_torch(shapes, needs):
    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal(s) for s in shapes)
    ca, cb = cr.tensor(a, requires_grad=needs[0]), cr.tensor(b, requires_grad=needs[1])
    ta, tb = torch.tensor(a, requires_grad=needs[0]), torch.tensor(b, requires_grad=needs[1])
    ((ca @ cb) ** 2).sum().backward()
    ((ta @ tb) ** 2).sum().backward()
    for c, t in ((ca, ta), (cb, tb)):
        if t.grad is None:
            assert c.grad is None
        else:
            np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-10)


# ---- convolution and pooling -------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1, dilation=2),
                                dict(kernel_size=3, stride=(1, 2), padding=(1, 0))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_backward_matches_torch_and_reference(kw, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    cx, tx = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cy, ty = cr.nn.functional.max_pool2d(cx, **kw), torch.nn.functional.max_pool2d(tx, **kw)
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(cy.detach().numpy(), ty.detach().numpy())
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_max_pool2d_backward_loop_equals_the_reference():
    from chainrule.ops.conv import _Geom

    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 10, 11)).astype(np.float32)
    for geom in (_Geom(2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 5, 5),
                 _Geom(3, 3, 1, 2, 2, 1, 1, 1, 1, 1, 8, 6)):
        y, idx = CPU.max_pool2d(x, geom)
        g = rng.standard_normal(y.shape).astype(np.float32)
        want = REFERENCE.max_pool2d_backward(g, idx, x.shape, geom)
        # overlapping windows add up in another order
        np.testing.assert_allclose(CPU.max_pool2d_backward(g, idx, x.shape, geom), want,
                                   rtol=1e-6, atol=1e-6)
        gt = np.asfortranarray(g)  # not C-contiguous: copied, same answer
        np.testing.assert_allclose(CPU.max_pool2d_backward(gt, idx, x.shape, geom), want,
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(padding=1), dict(padding=(2, 1), dilation=2),
                                dict(stride=2, padding=1), dict(groups=2)])
@pytest.mark.parametrize("with_loops", [True, False])
def test_conv2d_gradients_match_torch(kw, with_loops, monkeypatch):
    if not with_loops:
        monkeypatch.setattr(cpu_kernels, "loops", None)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 11, 10)).astype(np.float32)
    w = (rng.standard_normal((6, 4 // kw.get("groups", 1), 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    c = [cr.tensor(v, requires_grad=True) for v in (x, w, b)]
    t = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    cy, ty = cr.nn.functional.conv2d(*c, **kw), torch.nn.functional.conv2d(*t, **kw)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    for cv, tv in zip(c, t):
        np.testing.assert_allclose(cv.grad.numpy(), tv.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conv2d_skips_the_input_gradient_of_data(monkeypatch):
    x = cr.tensor(np.random.default_rng(10).standard_normal((2, 1, 8, 8)).astype(np.float32))
    conv = cr.nn.Conv2d(1, 4, 3)
    loss = conv(x).sum()
    called = []
    monkeypatch.setattr(type(CPU), "conv2d_input_grad",
                        staticmethod(lambda *a: called.append(1)))
    loss.backward()
    assert not called and x.grad is None and conv.weight.grad is not None


# ---- sigmoid, softmax, log-softmax in place ------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_matches_torch_everywhere(dtype):
    x = np.concatenate([np.linspace(-120, 120, 20001), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    x = x.astype(dtype)
    with np.errstate(all="raise"):  # no warning escapes, even where e^-x overflows
        y = CPU.sigmoid(x)
    want = torch.sigmoid(torch.tensor(x)).numpy()
    assert np.array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-37)
    with np.errstate(all="ignore"):  # within 3 ulps of the exact value (as the split form)
        exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    normal = exact > np.finfo(dtype).tiny
    ulps = np.abs(y[normal] - exact[normal]) / np.spacing(exact[normal].astype(dtype))
    assert ulps.max() <= 3
    assert CPU.sigmoid(np.float32(3.0)) == REFERENCE.sigmoid(np.float32(3.0))
    a = cr.tensor(x[:-5].copy(), requires_grad=True)
    a.sigmoid().sum().backward()
    t = torch.tensor(x[:-5].copy(), requires_grad=True)
    t.sigmoid().sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-30)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, -1, 1])
def test_softmax_family_matches_torch(fn, dim):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((5, 7, 3)) * 10).astype(np.float32)
    x[0, 0, 0] = -np.inf
    g = rng.standard_normal(x.shape).astype(np.float32)
    c, t = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    cy, ty = getattr(cr.nn.functional, fn)(c, dim), getattr(torch.nn.functional, fn)(t, dim)
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)
    x64 = cr.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert cr.autograd.gradcheck(lambda v: getattr(cr.nn.functional, fn)(v, dim % 2), (x64,))
    assert cr.autograd.gradgradcheck(lambda v: getattr(cr.nn.functional, fn)(v, dim % 2), (x64,))


# ---- the row loops (softmax family, sums) and the one-pass gather, GELU-tanh, sigmoid --------
def _rows_threads(n):
    if cpu_kernels.loops is None:
        pytest.skip("the C loops are not built")
    return cpu_kernels.loops.set_threads(n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_loops_do_not_depend_on_the_thread_count(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((300, 1000)) * 4).astype(dtype)  # large enough to be split
    g = rng.standard_normal(x.shape).astype(dtype)
    old = _rows_threads(1)
    try:
        one = [CPU.softmax(x, -1), CPU.log_softmax(x, -1), CPU.sum(x, (1,), False),
               CPU.mean(x, None, False), CPU.softmax_backward(g, CPU.softmax(x, -1), -1)]
        _rows_threads(4)
        four = [CPU.softmax(x, -1), CPU.log_softmax(x, -1), CPU.sum(x, (1,), False),
                CPU.mean(x, None, False), CPU.softmax_backward(g, CPU.softmax(x, -1), -1)]
    finally:
        _rows_threads(old)
    for a, b in zip(one, four):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2000, 27), (3000, 16), (70, 1111), (1, 400001)])
def test_row_loops_split_in_small_chunks_give_the_same_bits(dtype, shape):
    # two threads taking chunks of a few rows each (work per thread down to the minimum):
    # short rows (one element at a time), long rows with ragged tails, one long row summed
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    t = rng.integers(0, shape[-1], shape[0])

    def run():
        y = CPU.softmax(x, -1)
        ly = CPU.log_softmax(x, -1)
        return [y, ly, CPU.sum(x, (x.ndim - 1,), False), CPU.mean(x, None, False),
                CPU.softmax_backward(g, y, -1), CPU.log_softmax_backward(g, ly, -1),
                *CPU.cross_entropy(x, t, None)]

    _rows_threads(1)
    try:
        one = run()
        cpu_kernels.loops.set_threads(2, 1024)
        two = [run() for _ in range(3)]
    finally:
        cpu_kernels.set_loop_threads(*cpu_kernels.default_threads())
    for again in two:
        for a, b in zip(one, again):
            assert np.array_equal(a, b, equal_nan=True)


def test_default_loop_threads_follow_openblas_thread_timeout(monkeypatch):
    # several threads by default only where OpenBLAS's threads sleep right after a product
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setitem(_threads.counts, "n", None)  # as if set_num_threads was never called
    monkeypatch.setitem(openblas.state, "on", False)  # products on OpenBLAS's own threads
    monkeypatch.setitem(openblas.state, "loops_on_blas", 1)  # loops not on OpenBLAS's threads
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    for timeout, want in [(None, (1, None)), (0, (1, None)), (28, (1, None)),
                          (4, (3, cpu_kernels.DEFAULT_MIN_WORK))]:
        monkeypatch.setattr(cpu_kernels, "openblas_thread_timeout", lambda t=timeout: t)
        assert cpu_kernels.default_threads() == want
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_kernels.default_threads() == (1, None)
    monkeypatch.setenv("CHAINRULE_LOOP_THREADS", "2")
    assert cpu_kernels.default_threads() == (2, None)
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS")
    # the loops on OpenBLAS's own threads (kernels/openblas.loop_runner): its count, small calls
    monkeypatch.setitem(openblas.state, "loops_on_blas", 2)
    assert cpu_kernels.default_threads() == (2, cpu_kernels.POOL_MIN_WORK)


def test_openblas_thread_timeout_is_read_from_the_loaded_library():
    got = cpu_kernels.openblas_thread_timeout()
    if got is None:
        pytest.skip("no OpenBLAS loaded that reports its thread timeout")
    import os

    env = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "")
    assert got == (int(env) if env.isdigit() else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 1000), (1, 300001)])
def test_row_sums_match_torch(dtype, shape):
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    t = torch.tensor(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for dim in (None, -1, (0, -1) if len(shape) > 1 else 0):
        for keepdim in (False, True):
            for op in ("sum", "mean"):
                kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
                got = getattr(cr.tensor(x), op)(**kw)
                want = getattr(t, op)(**kw)
                assert got.shape == tuple(want.shape) and got.dtype == getattr(cr, str(
                    want.dtype).split(".")[-1])
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol,
                                           atol=tol * np.sqrt(x.shape[-1]))


def test_softmax_rows_with_infinities_and_nans_match_torch():
    x = np.array([[1, np.nan, 2], [-np.inf, 0, 1], [np.inf, 0, 1], [-np.inf] * 3,
                  [-100, 0, 100]], np.float32)
    for fn in ("softmax", "log_softmax"):
        got = getattr(cr, fn)(cr.tensor(x), -1).numpy()
        want = getattr(torch, fn)(torch.tensor(x), -1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6)  # NaN where torch's are NaN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 300), (512, 27), (33, 5)])
def test_cross_entropy_matches_torch(dtype, shape):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x[5, 1] = 80  # a row whose max is far above the rest
    t = rng.integers(0, shape[1], shape[0])
    t[3] = -100
    for reduction in ("mean", "sum", "none"):
        a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        la = cr.nn.functional.cross_entropy(a, cr.tensor(t), reduction=reduction)
        lb = torch.nn.functional.cross_entropy(b, torch.tensor(t), reduction=reduction)
        la.sum().backward()
        lb.sum().backward()
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_kernel_matches_the_reference(dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((40, 19)) * 4).astype(dtype)
    t = rng.integers(0, 19, 40)
    valid = (rng.random(40) > 0.2).astype(dtype)
    for v in (None, valid):
        nll, p = CPU.cross_entropy(x, t, v)
        nll_ref, p_ref = REFERENCE.cross_entropy(x, t, v)
        assert nll.dtype == x.dtype and p.dtype == x.dtype
        tol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(nll, nll_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(p, p_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_loop_along_every_axis_matches_torch(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5, 6)).astype(dtype)
    for dim in range(3):
        shape = list(x.shape)
        shape[dim] = 7  # more picks than the axis has: repeats accumulate in the backward
        idx = rng.integers(0, x.shape[dim], shape)
        a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ya, yb = cr.gather(a, dim, cr.tensor(idx)), torch.gather(b, dim, torch.tensor(idx))
        g = rng.standard_normal(shape).astype(dtype)
        ya.backward(cr.tensor(g))
        yb.backward(torch.tensor(g))
        assert np.array_equal(ya.detach().numpy(), yb.detach().numpy())
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-6)
    if cpu_kernels.loops is not None:
        with pytest.raises(IndexError, match="out of range"):
            cpu_kernels.loops.gather_axis(x, np.full((4, 1, 6), 5, np.int64),
                                          np.empty((4, 1, 6), dtype), 4, 5, 1, 6, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_tanh_gate_matches_torch(dtype):
    x = np.concatenate([np.linspace(-12, 12, 2001), [0.0, -0.0, 1e-8, np.inf, -np.inf]])
    x = x.astype(dtype)
    a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ya = cr.nn.functional.gelu(a, approximate="tanh")
    yb = torch.nn.functional.gelu(b, approximate="tanh")
    assert type(ya.grad_fn).__name__ == "GeluTanh"
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ya.detach().numpy(), yb.detach().numpy(), rtol=tol, atol=tol)
    g = np.ones_like(x)
    ya.backward(cr.tensor(g))
    yb.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad.numpy()[:-2], b.grad.numpy()[:-2], rtol=tol, atol=tol)
    x64 = cr.tensor(np.linspace(-3, 3, 7), requires_grad=True)
    f = lambda v: cr.nn.functional.gelu(v, approximate="tanh")  # noqa: E731
    assert cr.autograd.gradcheck(f, (x64,)) and cr.autograd.gradgradcheck(f, (x64,))


# ---- joins and rolls --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_, np.complex64])
def test_cat_kernel_matches_numpy_along_every_axis(dtype):
    rng = np.random.default_rng(9)
    for axis in range(3):
        shapes = [[2, 3, 4] for _ in range(3)]
        for k, s in enumerate(shapes):
            s[axis] = k + 1  # pieces of different widths, one of them 1
        xs = [(rng.standard_normal(s) * 5).astype(dtype) for s in shapes]
        got = CPU.cat(xs, axis)
        assert got.dtype == xs[0].dtype and np.array_equal(got, np.concatenate(xs, axis))
    xs = [np.zeros((2, 0, 3), dtype), np.ones((2, 2, 3), dtype)]  # an empty piece
    assert np.array_equal(CPU.cat(xs, 1), np.concatenate(xs, 1))
    assert CPU.cat([np.zeros((0, 3), dtype)] * 2, 0).shape == (0, 3)
    t = np.arange(24).reshape(4, 6).astype(dtype)
    xs = [t[:, :3], t[:, 3:].copy()]  # not contiguous: NumPy's join
    assert np.array_equal(CPU.cat(xs, 1), t)


def test_cat_of_many_short_rows_matches_torch_forward_and_backward():
    rng = np.random.default_rng(10)
    xs = [rng.standard_normal((4, 5, 3)).astype(np.float32) for _ in range(16)]
    g = rng.standard_normal((4, 5, 48)).astype(np.float32)
    cs = [cr.tensor(x, requires_grad=True) for x in xs]
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    cy, ty = cr.cat(cs, -1), torch.cat(ts, -1)
    assert np.array_equal(cy.detach().numpy(), ty.detach().numpy())
    cy.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    for c, t in zip(cs, ts):
        assert np.array_equal(c.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("shifts, dims", [(1, 1), (-1, 1), (7, 0), (-13, 2), (0, 1), (5, -1),
                                          ((2,), (1,)), ((1, -2), (0, 2)), (3, None)])
def test_roll_matches_torch(shifts, dims):
    x = np.arange(60).reshape(3, 4, 5)
    kw = {} if dims is None else {"dims": dims}
    got = cr.roll(cr.tensor(x), shifts, **kw).numpy()
    assert np.array_equal(got, torch.roll(torch.tensor(x), shifts, **kw).numpy())
    xf = cr.tensor(x.astype(np.float64), requires_grad=True)
    assert cr.autograd.gradcheck(lambda v: cr.roll(v, shifts, **kw), (xf,))
    e = np.zeros((2, 0))
    assert cr.roll(cr.tensor(e), 1, 1).shape == (2, 0)


def test_set_num_threads_resizes_the_row_loops(monkeypatch):
    calls = []
    monkeypatch.setattr(cpu_kernels, "set_loop_threads", lambda *a: calls.append(a))
    monkeypatch.setattr(cpu_kernels, "openblas_thread_timeout", lambda: 4)
    monkeypatch.delenv("CHAINRULE_LOOP_THREADS", raising=False)
    monkeypatch.setenv("CHAINRULE_POOL", "0")  # products on OpenBLAS's own threads
    monkeypatch.setenv("CHAINRULE_LOOPS_ON_BLAS", "0")  # the loops on threads of their own
    before, recorded = cr.get_num_threads(), _threads.counts["n"]
    try:
        cr.set_num_threads(2)
        assert calls[-1] == (2, cpu_kernels.DEFAULT_MIN_WORK)
        cr.set_num_threads(1)
        assert calls[-1] == (1, None)
        monkeypatch.setenv("CHAINRULE_POOL", "1")  # the pool runs products and loops alike
        cr.set_num_threads(2)
        if openblas.state["on"]:
            assert calls[-1] == (2, cpu_kernels.POOL_MIN_WORK)
        monkeypatch.setenv("CHAINRULE_POOL", "0")
        monkeypatch.delenv("CHAINRULE_LOOPS_ON_BLAS")  # the loops on OpenBLAS's threads
        cr.set_num_threads(2)
        if openblas.state.get("loops_on_blas", 1) > 1:
            assert calls[-1] == (2, cpu_kernels.POOL_MIN_WORK)
    finally:
        monkeypatch.delenv("CHAINRULE_POOL", raising=False)
        cr.set_num_threads(before)
        _threads.counts["n"] = recorded
