"""chainrule.kernels.matmul and .mkl: MKL's GEMM where BLAS takes the operands as they are,
NumPy's ``@`` otherwise.

The MKL tests run when the ``mkl`` wheel is installed (``pip install 'chainrule[mkl]'``); they
switch the backend on in this process (sequential MKL) and drop the size thresholds, so that
small shapes exercise every MKL path.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.kernels import matmul as mm
from chainrule.kernels import mkl as mklib

RNG = np.random.default_rng(0)


def _reload_backend() -> None:
    mklib.state.clear()
    mklib._load()


@pytest.fixture(scope="module")
def mkl_backend():
    if not mklib._mkl_files():
        pytest.skip("mkl not installed (pip install 'chainrule[mkl]')")
    saved = {k: os.environ.get(k) for k in ("CHAINRULE_BLAS", "MKL_NUM_THREADS")}
    os.environ.pop("CHAINRULE_BLAS", None)
    os.environ["MKL_NUM_THREADS"] = "1"
    _reload_backend()
    try:
        if not mklib.mkl_available():
            pytest.skip(f"MKL not usable here: {mklib.backend_name()}")
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_backend()


@pytest.fixture
def mkl(mkl_backend, monkeypatch):
    """MKL on, no size thresholds, and a count of the MKL calls: {"gemm": n, "batch": n}."""
    monkeypatch.setattr(mm, "MIN_FLOPS", 0)
    monkeypatch.setattr(mm, "MIN_FLOPS_NT", 0)
    monkeypatch.setattr(mm, "MIN_FLOPS_BATCH_NT", 0)
    calls = {"gemm": 0, "batch": 0}
    for kind in calls:
        table = dict(mklib.state[kind])
        for dt, fn in table.items():
            def counted(*args, _fn=fn, _kind=kind):
                calls[_kind] += 1
                return _fn(*args)

            table[dt] = counted
        monkeypatch.setitem(mklib.state, kind, table)
    return calls


def _rand(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


def _assert_matches(got, a, b):
    want = a @ b
    assert type(got) is type(want) and got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-5 if want.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1, a.shape[-1]))


# ---- layouts BLAS takes as they are ---------------------------------------------------------
LAYOUTS = {
    "C": lambda x: x,
    "F": np.asfortranarray,
    "transposed view": lambda x: x.T.copy().T,
    "row slice of a wider array": lambda x: np.pad(x, ((0, 0), (0, 3)))[:, :x.shape[1]],
    "every other row": lambda x: np.repeat(x, 2, axis=0)[::2],
    "read-only": lambda x: _readonly(x),
}


def _readonly(x):
    x = x.copy()
    x.setflags(write=False)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mkn", [(7, 5, 3), (1, 300, 200), (200, 300, 1), (1, 1, 1),
                                 (1, 64, 1), (64, 1, 64), (129, 257, 65)])
def test_2d_layouts_equal_numpy_and_call_mkl(mkl, dtype, mkn):
    m, k, n = mkn
    a0, b0 = _rand((m, k), dtype), _rand((k, n), dtype)
    for la in LAYOUTS.values():
        for lb in LAYOUTS.values():
            a, b = la(a0), lb(b0)
            before = mkl["gemm"]
            _assert_matches(mm.matmul(a, b), a, b)
            assert mkl["gemm"] == before + 1


def test_large_product(mkl):
    a, b = _rand((513, 1031), np.float32), _rand((1031, 777), np.float32)
    _assert_matches(mm.matmul(a, b.T.copy().T), a, b)
    _assert_matches(mm.matmul(a, b), a, b)
    assert mkl["gemm"] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_argument(mkl, dtype):
    a, b = _rand((6, 4), dtype), _rand((4, 5), dtype)
    out = np.empty((6, 5), dtype)
    assert mm.matmul(a, b, out=out) is out
    _assert_matches(out, a, b)
    wide = np.zeros((6, 9), dtype)  # rows of a wider array: ldc = 9
    mm.matmul(a, b, out=wide[:, 2:7])
    _assert_matches(wide[:, 2:7], a, b)
    assert not wide[:, :2].any() and not wide[:, 7:].any()
    assert mkl["gemm"] == 2
    sq = _rand((5, 5), dtype)  # out is an input: NumPy's buffered path
    want = sq @ sq
    mm.matmul(sq, sq, out=sq)
    np.testing.assert_allclose(sq, want, rtol=1e-5)
    assert mkl["gemm"] == 2


# ---- stacked products -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [
    ((8, 6, 4), (8, 4, 5)), ((8, 6, 4), (4, 5)), ((6, 4), (8, 4, 5)),
    ((2, 3, 6, 4), (2, 3, 4, 5)), ((1, 3, 6, 4), (2, 1, 4, 5)), ((2, 1, 6, 4), (3, 4, 5)),
    ((1, 6, 4), (8, 4, 5)), ((2, 3, 1, 4), (2, 3, 4, 1)),
])
def test_batched_equal_numpy(mkl, dtype, shapes):
    a0, b0 = _rand(shapes[0], dtype), _rand(shapes[1], dtype)
    tr = lambda x: np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2)  # noqa: E731
    for a, b in [(a0, b0), (tr(a0), b0), (a0, tr(b0)), (tr(a0), tr(b0))]:
        _assert_matches(mm.matmul(a, b), a, b)


def test_batched_calls_mkl_once_and_writes_out(mkl):
    a, b = _rand((4, 8, 6, 5), np.float32), _rand((4, 8, 5, 7), np.float32)
    _assert_matches(mm.matmul(a, b), a, b)
    assert mkl["batch"] == 1
    big = np.zeros((4, 8, 6, 9), np.float32)  # out: rows of 9, one batch stride (54)
    out = big[..., 1:8]
    assert mm.matmul(a, b, out=out) is out
    _assert_matches(out, a, b)
    assert mkl["batch"] == 2 and not big[..., 0].any() and not big[..., 8:].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [(1,), (1, 1)])
def test_stack_of_one_matrix_into_out(mkl, dtype, batch):
    # found by fuzzing: with one matrix the out stride came out 0, which MKL rejects
    # ("Parameter 17 was incorrect"), leaving out unwritten
    a, b = _rand(batch + (6, 4), dtype), _rand(batch + (4, 5), dtype)
    out = np.full(batch + (6, 5), np.nan, dtype)
    assert mm.matmul(a, b, out=out) is out
    _assert_matches(out, a, b)


def test_random_layouts_equal_numpy(mkl):
    rng = np.random.default_rng(7)

    def view(shape, dtype):
        kind = rng.integers(4)
        if kind == 1:  # a transposed stack
            return np.swapaxes(_rand(shape[:-2] + shape[-2:][::-1], dtype), -1, -2)
        if kind == 2:  # every other row, columns offset by one
            big = _rand(shape[:-2] + (2 * shape[-2], shape[-1] + 3), dtype)
            return big[..., ::2, 1:shape[-1] + 1]
        if kind == 3:  # a non-unit inner stride (stays on NumPy)
            return _rand(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
        return _rand(shape, dtype)

    for _ in range(300):
        dtype = (np.float32, np.float64)[int(rng.integers(2))]
        m, k, n = (int(v) for v in rng.integers(1, 12, 3))
        batch = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
        a = view(batch + (m, k), dtype)
        b = view((batch if rng.random() < 0.7 else (1,) * len(batch)) + (k, n), dtype)
        if rng.random() < 0.3:
            out = np.full(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (m, n), np.nan,
                          dtype)
            assert mm.matmul(a, b, out=out) is out
        else:
            out = mm.matmul(a, b)
        _assert_matches(out, a, b)


def test_batch_dims_that_need_two_strides_use_numpy(mkl):
    x = _rand((3, 6, 4, 5), np.float32).transpose(0, 2, 1, 3)  # (3, 4, 6, 5), heads split
    y = _rand((3, 4, 5, 2), np.float32)
    _assert_matches(mm.matmul(x, y), x, y)
    w = _rand((2, 6, 5), np.float32)  # (2, 1) against (1, 3) broadcast: two strides
    v = _rand((3, 5, 4), np.float32)
    _assert_matches(mm.matmul(w[:, None], v[None]), w[:, None], v[None])
    assert mkl["batch"] == 0 and mkl["gemm"] == 0


# ---- what stays with NumPy ------------------------------------------------------------------
def test_fallbacks(mkl):
    f32 = _rand((4, 3), np.float32)
    cases = [
        (f32.astype(np.int64), f32.T.astype(np.int64)),  # integers
        (f32.astype(np.float16), f32.T.astype(np.float16)),
        (f32.astype(np.complex64), f32.T.astype(np.complex64)),
        (f32, f32.T.astype(np.float64)),  # mixed dtypes promote as NumPy does
        (f32[:, 0], f32),  # 1-d
        (f32, f32[0]),
        (f32[:, ::2], _rand((2, 3), np.float32)),  # no unit stride
        (f32[::-1], f32.T),  # negative stride
        (np.zeros((0, 3), np.float32), f32.T),  # empty
        (np.zeros((4, 0), np.float32), np.zeros((0, 5), np.float32)),
        (f32.astype(">f4"), f32.T.astype(">f4")),  # byte-swapped
    ]
    for a, b in cases:
        _assert_matches(mm.matmul(a, b), a, b)
    m = np.asmatrix(f32)  # subclasses keep their own @
    assert type(mm.matmul(m, m.T)) is np.matrix
    assert mkl["gemm"] == 0 and mkl["batch"] == 0
    with pytest.raises(ValueError):
        mm.matmul(f32, f32)


def test_thresholds_keep_tiny_products_on_numpy(mkl_backend):
    calls = []
    gemm = mklib.state["gemm"]
    a = _rand((8, 8), np.float32)
    try:
        mklib.state["gemm"] = {dt: (lambda *args, _f=f: calls.append(1) or _f(*args))
                               for dt, f in gemm.items()}
        _assert_matches(mm.matmul(a, a), a, a)
        assert not calls
        big = _rand((256, 256), np.float32)
        _assert_matches(mm.matmul(big, big), big, big)
        assert calls
    finally:
        mklib.state["gemm"] = gemm


def test_numpy_backend_is_exact():
    """Whatever the backend, mm.matmul agrees with @ (with MKL off it *is* @)."""
    a, b = _rand((40, 30), np.float64), _rand((30, 20), np.float64)
    _assert_matches(mm.matmul(a, b), a, b)


def _backend_in_subprocess(**env) -> str:
    full = {k: v for k, v in os.environ.items()
            if k not in ("CHAINRULE_BLAS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    full.update(env)
    code = "import chainrule.kernels.mkl as b; print(b.backend_name())"
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_env_switches(mkl_backend):
    assert _backend_in_subprocess(OMP_NUM_THREADS="1").startswith("mkl")
    assert _backend_in_subprocess(MKL_NUM_THREADS="1", OMP_NUM_THREADS="4").startswith("mkl")
    off = _backend_in_subprocess(OMP_NUM_THREADS="1", CHAINRULE_BLAS="numpy")
    assert off.startswith("numpy") and "CHAINRULE_BLAS" in off
    assert _backend_in_subprocess(OMP_NUM_THREADS="2").startswith("numpy")


# ---- the gates that use it, against PyTorch -------------------------------------------------
def _torch():
    torch = pytest.importorskip("torch")
    return torch


def _both(shape, dtype=np.float64):
    torch = _torch()
    x = _rand(shape, dtype)
    return cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)


def _close(c, t, tol=1e-10):
    np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("xshape", [(5, 7), (2, 5, 7)])
def test_linear_gradients_match_torch(mkl, xshape):
    torch = _torch()
    (x, tx), (w, tw), (b, tb) = _both(xshape), _both((4, 7)), _both((4,))
    y = cr.nn.functional.linear(x, w, b)
    ty = torch.nn.functional.linear(tx, tw, tb)
    g = _rand(y.shape, np.float64)
    y.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    _close(y, ty)
    for c, t in ((x, tx), (w, tw), (b, tb)):
        _close(c.grad, t.grad)
    assert mkl["gemm"] >= 3


@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((3, 5, 7), (3, 7, 2)),
                                    ((3, 5, 7), (7, 2)), ((2, 1, 5, 7), (4, 7, 2))])
def test_matmul_gradients_match_torch(mkl, shapes):
    """(the last case broadcasts both operands: two batch strides each, so NumPy)"""
    torch = _torch()
    (a, ta), (b, tb) = _both(shapes[0]), _both(shapes[1])
    y, ty = a @ b, ta @ tb
    g = _rand(y.shape, np.float64)
    y.backward(cr.tensor(g))
    ty.backward(torch.tensor(g))
    _close(y, ty)
    _close(a.grad, ta.grad)
    _close(b.grad, tb.grad)
    assert mkl["gemm"] + mkl["batch"] >= (0 if len(shapes[0]) == 4 else 2)


def test_matmul_second_order_with_mkl(mkl):
    a = cr.tensor(_rand((4, 3), np.float64), requires_grad=True)
    b = cr.tensor(_rand((3, 5), np.float64), requires_grad=True)
    assert cr.autograd.gradgradcheck(lambda a, b: a @ b, (a, b))


def test_attention_conv_lstm_match_torch(mkl):
    torch = _torch()
    F, tF = cr.nn.functional, torch.nn.functional
    (q, tq), (k, tk), (v, tv) = _both((2, 3, 6, 4)), _both((2, 3, 5, 4)), _both((2, 3, 5, 4))
    y, ty = F.scaled_dot_product_attention(q, k, v), tF.scaled_dot_product_attention(tq, tk, tv)
    y.sum().backward()
    ty.sum().backward()
    _close(y, ty)
    for c, t in ((q, tq), (k, tk), (v, tv)):
        _close(c.grad, t.grad)
    (x, tx), (w, tw) = _both((2, 3, 7, 6)), _both((4, 3, 3, 3))
    y, ty = F.conv2d(x, w, padding=1), tF.conv2d(tx, tw, padding=1)
    (y * y).sum().backward()
    (ty * ty).sum().backward()
    _close(y, ty)
    _close(x.grad, tx.grad)
    _close(w.grad, tw.grad)
    cr.manual_seed(0)
    lstm = cr.nn.LSTM(4, 6, num_layers=1).double()
    tlstm = torch.nn.LSTM(4, 6, num_layers=1).double()
    with torch.no_grad():
        for p, tp in zip(lstm.parameters(), tlstm.parameters()):
            tp.copy_(torch.tensor(p.detach().numpy()))
    (s, ts) = _both((5, 3, 4))
    out, _ = lstm(s)
    tout, _ = tlstm(ts)
    out.sum().backward()
    tout.sum().backward()
    _close(out, tout)
    _close(s.grad, ts.grad)
    for p, tp in zip(lstm.parameters(), tlstm.parameters()):
        _close(p.grad, tp.grad)
    assert mkl["gemm"] > 0 and mkl["batch"] > 0


# ---- vector math (VML) -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["exp", "erf", "cdf_norm", "tanh"])
def test_vector_math_matches_the_definition(mkl_backend, name, dtype) -> None:
    import math

    exact = {"exp": math.exp, "erf": math.erf, "tanh": math.tanh,
             "cdf_norm": lambda v: 0.5 * math.erfc(-v / math.sqrt(2))}[name]
    fn = mklib.vector_math(name, dtype)
    x = np.linspace(-6, 6, 2001).astype(dtype)
    y = fn(x, np.empty_like(x))
    ref = np.array([exact(float(v)) for v in x])
    np.testing.assert_allclose(y, ref, rtol=2e-7 if dtype == np.float32 else 1e-14,
                               atol=1e-30)
    inplace = x.copy()
    assert fn(inplace, inplace) is inplace
    np.testing.assert_array_equal(inplace, y)
    assert fn(x[:0], np.empty(0, dtype)).size == 0


def test_vector_math_is_none_without_mkl() -> None:
    code = ("from chainrule.kernels import mkl; import sys; "
            "sys.exit(mkl.vector_math('exp', 'float32') is not None)")
    env = dict(os.environ, CHAINRULE_BLAS="numpy")
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.mark.parametrize("backend", ["mkl", "numpy"])
def test_gelu_float32_both_backends_match_torch(mkl_backend, monkeypatch, backend) -> None:
    torch = _torch()
    if backend == "numpy":
        monkeypatch.setattr(mklib, "vector_math", lambda name, dtype: None)
    x = (RNG.standard_normal(70_000) * 4).astype(np.float32)  # several blocks and a tail
    c = cr.tensor(x, requires_grad=True)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    cr.nn.functional.gelu(c).sum().backward()
    torch.nn.functional.gelu(t).sum().backward()
    ty = torch.nn.functional.gelu(t).detach().numpy()
    np.testing.assert_allclose(cr.nn.functional.gelu(c).detach().numpy(), ty, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_axpy_updates_in_place_and_declines_what_it_cannot_take(mkl_backend,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(mklib, "MIN_AXPY", 1)
    for dt in (np.float32, np.float64):
        x = RNG.standard_normal((37, 11)).astype(dt)
        y = RNG.standard_normal((37, 11)).astype(dt)
        expected = y + dt(-0.25) * x
        y_before = y
        assert mklib.axpy(-0.25, x, y)
        assert y is y_before
        np.testing.assert_allclose(y, expected, rtol=1e-6 if dt is np.float32 else 1e-14)
    y = np.ones(6, np.float32)
    for x, target in [
        (np.ones(6, np.float64), y),               # dtypes differ
        (np.ones(5, np.float32), y),               # sizes differ
        (np.ones(12, np.float32)[::2], y),         # not contiguous
        (np.ones(6, np.float32), np.ones(6, np.int64)),
        (np.ones(6, np.float32), np.ones((6, 2), np.float32).T[0]),
    ]:
        before = target.copy()
        assert not mklib.axpy(2.0, x, target)
        assert np.array_equal(target, before)
    frozen = np.ones(6, np.float32)
    frozen.flags.writeable = False
    assert not mklib.axpy(2.0, np.ones(6, np.float32), frozen)


def test_sgd_plain_step_through_axpy_matches_the_numpy_update(mkl_backend,
                                                               monkeypatch) -> None:
    monkeypatch.setattr(mklib, "MIN_AXPY", 1)
    w0 = RNG.standard_normal((64, 48)).astype(np.float32)
    g = RNG.standard_normal((64, 48)).astype(np.float32)
    p = cr.nn.Parameter(cr.tensor(w0))
    p.grad = cr.tensor(g)
    opt = cr.optim.SGD([p], lr=0.1)
    calls = []
    fn, scalar = mklib.state["axpy"][np.dtype(np.float32)]
    mklib.state["axpy"][np.dtype(np.float32)] = (lambda *a: calls.append(a) or fn(*a), scalar)
    try:
        opt.step()
    finally:
        mklib.state["axpy"][np.dtype(np.float32)] = (fn, scalar)
    assert len(calls) == 1
    np.testing.assert_allclose(p.detach().numpy(), w0 - np.float32(0.1) * g, rtol=1e-6,
                               atol=1e-7)
