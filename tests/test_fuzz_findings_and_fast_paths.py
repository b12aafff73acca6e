"""Issue 16: two differential-fuzzer findings, checked against torch, and the small-call
fast paths of cat / sum / softmax / log_softmax / gather against torch on the shapes they take."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")

NAN, INF = float("nan"), float("inf")


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a.detach().numpy()), b.detach().numpy())


# ---- nansum / nanmean: the gradient at NaN inputs is g·0 (NaN when g is NaN or ±inf) ----------
@pytest.mark.parametrize("op", ["nansum", "nanmean"])
@pytest.mark.parametrize("g", [NAN, 2.0, INF, -INF])
def test_nan_reductions_backward_matches_torch_for_any_upstream_gradient(op, g):
    x = np.array([1.0, NAN, 3.0, -2.0])
    a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        getattr(cr, op)(a).backward(cr.tensor(g, dtype=cr.float64))
    getattr(torch, op)(b).backward(torch.tensor(g, dtype=torch.float64))
    _same(a.grad, b.grad)


@pytest.mark.parametrize("op", ["nansum", "nanmean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_reductions_over_a_dim_with_nan_rows_match_torch(op, dtype):
    """A row of NaN only (nanmean divides by a count of 0) and a NaN upstream gradient."""
    x = np.array([[1.0, NAN, 2.0], [NAN, NAN, NAN], [0.5, -1.0, NAN]], dtype)
    g = np.array([[NAN], [1.0], [3.0]], dtype)
    a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ya = getattr(cr, op)(a, 1, keepdim=True)
        ya.backward(cr.tensor(g))
    yb = getattr(torch, op)(b, 1, keepdim=True)
    yb.backward(torch.tensor(g))
    _same(ya, yb)
    _same(a.grad, b.grad)
    assert a.grad.dtype == getattr(cr, np.dtype(dtype).name)


def test_nansum_gradient_is_still_right_where_nothing_is_nan():
    x = cr.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert cr.autograd.gradcheck(lambda t: cr.nansum(t, 0) * cr.nanmean(t, 1).sum(), (x,))


def test_nansum_double_backward_matches_torch():
    x = np.array([1.0, NAN, 3.0])
    a, b = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (ga,) = cr.autograd.grad(cr.nansum(a * a), a, create_graph=True)
    (gb,) = torch.autograd.grad(torch.nansum(b * b), b, create_graph=True)
    _same(ga, gb)
    (ga * ga).sum().backward()
    (gb * gb).sum().backward()
    _same(a.grad, b.grad)


# ---- index_add / index_copy / index_reduce refuse a source of another dtype, as torch ---------
def _reducer(i, r):
    return lambda a, b: a.index_reduce(0, i, b, r)


def _index_calls(lib):
    i = lib.tensor([0, 2])
    return {
        "index_add": lambda a, b: a.index_add(0, i, b),
        "index_add alpha": lambda a, b: lib.index_add(a, 0, i, b, alpha=2),
        "index_add_": lambda a, b: a.clone().index_add_(0, i, b),
        "index_copy": lambda a, b: lib.index_copy(a, 0, i, b),
        "index_copy_": lambda a, b: a.clone().index_copy_(0, i, b),
        **{f"index_reduce {r}": _reducer(i, r) for r in ("prod", "mean", "amax", "amin")},
        "index_reduce_": lambda a, b: a.clone().index_reduce_(0, i, b, "mean"),
    }


def _outcome(fn, a, b):
    try:
        out = fn(a, b)
    except Exception as e:  # noqa: BLE001  (the error type and message are what is compared)
        return type(e).__name__, str(e)
    return "ok", np.asarray(out.detach().numpy()).tolist()


@pytest.mark.parametrize("call", list(_index_calls(cr)))
@pytest.mark.parametrize("dtypes", [("float64", "float32"), ("float32", "float64"),
                                    ("int64", "float32"), ("float64", "int64"),
                                    ("float64", "bool"), ("bool", "bool"), ("float32", "float32"),
                                    ("int64", "int64")])
def test_index_functions_check_the_source_dtype_as_torch(call, dtypes):
    self_dt, src_dt = dtypes
    x = np.arange(6).reshape(3, 2) % 3
    s = (np.arange(4).reshape(2, 2) % 2) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: index_reduce is in beta
        want = _outcome(_index_calls(torch)[call], torch.tensor(x.astype(self_dt)),
                        torch.tensor(s.astype(src_dt)))
    got = _outcome(_index_calls(cr)[call], cr.tensor(x.astype(self_dt)),
                   cr.tensor(s.astype(src_dt)))
    assert got == want


@pytest.mark.parametrize("seed", [
    140031509,  # isnan -> nanmean -> asinh: the NaN-gradient difference
    140029191,  # a != b -> argmin -> log1p -> index_reduce(mean): float32 source, float64 self
])
def test_fuzzer_seeds_of_these_findings_replay_clean(seed):
    FP = pytest.importorskip("fuzz_programs")
    prog = FP.generate(FP.RandomChooser(seed), FP.catalog())
    verdict, diffs = FP.check(prog, torch)
    assert verdict in ("ok", "torch-limit"), diffs


# ---- the small-call fast paths keep torch's answers and errors ---------------------------------
def _both(fn_cr, fn_torch):
    """(outcome of chainrule, outcome of torch): values, or (error type, message)."""
    out = []
    for fn in (fn_cr, fn_torch):
        try:
            y = fn()
        except Exception as e:  # noqa: BLE001  (compared below)
            out.append((type(e).__name__, str(e)))
        else:
            out.append(("ok", str(y.dtype).split(".")[-1], np.asarray(y.detach().numpy()).tolist()))
    return out


CAT_CASES = {
    "two alike, dim -1": lambda m: m.cat([m.ones(2, 3), m.zeros(2, 3)], -1),
    "tuple of three, dim 0": lambda m: m.cat((m.ones(2), m.zeros(3), m.ones(1)), 0),
    "mixed dtypes": lambda m: m.cat([m.ones(2, dtype=m.int64), m.zeros(2)]),
    "float32 and float64": lambda m: m.cat([m.ones(2), m.zeros(2, dtype=m.float64)]),
    "legacy empty skipped": lambda m: m.cat([m.ones(2, 2), m.zeros(0), m.ones(1, 2)]),
    "all empty": lambda m: m.cat([m.zeros(0), m.zeros(0)]),
    "sizes differ": lambda m: m.cat([m.ones(2, 3), m.ones(3, 2)], 1),
    "dim out of range": lambda m: m.cat([m.ones(2, 3), m.ones(2, 3)], 2),
    "dim -3": lambda m: m.cat([m.ones(2, 3), m.ones(2, 3)], -3),
    "zero-dim": lambda m: m.cat([m.tensor(1.0), m.tensor(2.0)]),
    "empty list": lambda m: m.cat([]),
    "axis alias": lambda m: m.cat([m.ones(2, 1), m.ones(2, 1)], axis=1),
}


def _same_outcome(got, want, op):
    """Values equal; or the same error type, chainrule's message naming the op (torch's own
    messages name it only sometimes)."""
    if want[0] == "ok":
        assert got == want
    else:
        assert got[0] == want[0], (got, want)
        assert op in got[1] and (got[1] == want[1] or "cat" not in want[1]), (got, want)


@pytest.mark.parametrize("case", list(CAT_CASES))
def test_cat_matches_torch_on_its_fast_and_general_paths(case):
    got, want = _both(lambda: CAT_CASES[case](cr), lambda: CAT_CASES[case](torch))
    _same_outcome(got, want, "cat")


def test_cat_gradients_reach_each_input():
    xs = [np.random.default_rng(k).standard_normal((3, k + 1)) for k in range(3)]
    a = [cr.tensor(x, requires_grad=True) for x in xs]
    b = [torch.tensor(x, requires_grad=True) for x in xs]
    g = np.random.default_rng(9).standard_normal((3, 6))
    cr.cat(a, 1).backward(cr.tensor(g))
    torch.cat(b, 1).backward(torch.tensor(g))
    for p, q in zip(a, b):
        _same(p.grad, q.grad)
    u, v = (cr.tensor(np.random.default_rng(k).standard_normal((2, 3)), requires_grad=True)
            for k in (4, 5))
    assert cr.autograd.gradcheck(lambda u, v: cr.cat([u, v], 0) ** 2, (u, v))


SOFTMAX_CASES = {
    "dim -1": lambda m, f: f(m.tensor([[1.0, 2.0], [3.0, -1.0]]), -1),
    "dim 0": lambda m, f: f(m.tensor([[1.0, 2.0], [3.0, -1.0]]), 0),
    "dtype float64": lambda m, f: f(m.tensor([1.0, 2.0]), 0, dtype=m.float64),
    "0-d": lambda m, f: f(m.tensor(3.0), 0),
    "0-d dim -1": lambda m, f: f(m.tensor(3.0), -1),
    "dim out of range": lambda m, f: f(m.ones(2, 2), 2),
    "dim -3": lambda m, f: f(m.ones(2, 2), -3),
}


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_fast_path_matches_torch(fn, case):
    got, want = _both(lambda: SOFTMAX_CASES[case](cr, getattr(cr.nn.functional, fn)),
                      lambda: SOFTMAX_CASES[case](torch, getattr(torch.nn.functional, fn)))
    if want[0] == "ok":
        assert got[:2] == want[:2]
        np.testing.assert_allclose(got[2], want[2], rtol=1e-6)
    else:
        assert got[0] == want[0], (got, want)


@pytest.mark.parametrize("dim", [-1, 0, 1, (0, 1), None, -3, 2])
def test_sum_dims_match_torch(dim):
    x = np.arange(600, dtype=np.float32).reshape(20, 30) / 7
    got, want = _both(lambda: cr.tensor(x).sum(dim) if dim is not None else cr.tensor(x).sum(),
                      lambda: torch.tensor(x).sum(dim) if dim is not None
                      else torch.tensor(x).sum())
    if want[0] == "ok":
        assert got[:2] == want[:2]
        np.testing.assert_allclose(got[2], want[2], rtol=1e-5)
    else:
        assert got[0] == want[0]


GATHER_CASES = {
    "in range": lambda m, x, i: m.gather(x, 1, i),
    "dim 0": lambda m, x, i: m.gather(x, 0, i[:2]),
    "too large": lambda m, x, i: m.gather(x, 1, i + 5),
    "negative": lambda m, x, i: m.gather(x, 1, i - 1),
    "int32 index": lambda m, x, i: m.gather(x, 1, i.to(m.int32)),
    "transposed index": lambda m, x, i: m.gather(x, 0, i[:3, :3].t()),
    "index larger than input": lambda m, x, i: m.gather(x, 1, m.zeros(5, 2, dtype=m.int64)),
    "3-d": lambda m, x, i: m.gather(x.reshape(2, 2, 5), 2, i[:4].reshape(2, 2, 3)),
    "scatter_add too large": lambda m, x, i: m.scatter_add(x, 1, i + 5, m.ones(4, 3)),
    "scatter_add negative": lambda m, x, i: m.scatter_add(x, 1, i - 1, m.ones(4, 3)),
    "scatter_add": lambda m, x, i: m.scatter_add(x, 1, i, m.ones(4, 3)),
}


@pytest.mark.parametrize("case", list(GATHER_CASES))
def test_gather_checks_match_torch(case):
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    i = np.array([[0, 4, 1], [2, 2, 0], [1, 3, 4], [0, 0, 0]])
    got, want = _both(lambda: GATHER_CASES[case](cr, cr.tensor(x), cr.tensor(i)),
                      lambda: GATHER_CASES[case](torch, torch.tensor(x), torch.tensor(i)))
    _same_outcome(got, want, case.split()[0] if "scatter" in case else "gather")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("n", [0, 1, 5, 7])
def test_index_in_range_kernels_agree(dtype, n):
    from chainrule.kernels import CPU, REFERENCE

    rng = np.random.default_rng(n)
    for idx in (rng.integers(0, 7, (3, 4)), rng.integers(-2, 5, 11), np.zeros(0, np.int64),
                rng.integers(0, 7, (4, 3)).T):
        if dtype is np.uint8:
            idx = np.abs(idx)
        idx = idx.astype(dtype)
        want = bool(idx.size == 0 or (idx.min() >= 0 and idx.max() < n))
        assert CPU.index_in_range(idx, n) is want
        assert REFERENCE.index_in_range(idx, n) is want


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape,dim,ishape", [((32, 64), 1, (32, 32)), ((32, 64), 0, (40, 64)),
                                              ((3, 4, 5), 2, (3, 4, 7)), ((3, 4, 5), 1, (3, 2, 5)),
                                              ((3, 4, 5), 0, (1, 4, 5)), ((6,), 0, (9,)),
                                              ((4, 5), 1, (3, 2)), ((4, 5), 0, (4, 0))])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_gather_and_its_backward_match_torch_on_every_path(dtype, shape, dim, ishape, layout):
    """The C call (gather_dim), NumPy's take and the reference, by shape, dtype and layout."""
    rng = np.random.default_rng(len(shape) * 10 + dim)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    i = rng.integers(0, shape[dim], ishape)
    if layout == "transposed" and x.ndim > 1:
        x = np.ascontiguousarray(x.T).T  # a non-contiguous view of the same values
        i = np.ascontiguousarray(i.T).T
    grad = dtype != np.int64
    a = cr.tensor(x, requires_grad=grad)
    b = torch.tensor(x, requires_grad=grad)
    ya, yb = cr.gather(a, dim, cr.tensor(i)), torch.gather(b, dim, torch.tensor(i))
    _same(ya, yb)
    if grad and ya.numel():
        g = rng.standard_normal(ishape).astype(dtype)
        ya.backward(cr.tensor(g))
        yb.backward(torch.tensor(g))
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_gather_dim_refuses_what_it_does_not_take():
    from chainrule.kernels import cpu as cpu_kernels

    loops = cpu_kernels.loops
    if loops is None:
        pytest.skip("no C loops")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.empty((3, 2), np.float32)
    assert loops.gather_dim(x, np.array([[0, 3], [1, 1], [2, 0]]), y, 1, False) is True
    np.testing.assert_array_equal(y, [[0, 3], [5, 5], [10, 8]])
    assert loops.gather_dim(x.T, np.zeros((4, 2), np.int64), np.empty((4, 2), np.float32), 1,
                            False) is False  # not C-contiguous
    assert loops.gather_dim(x, np.zeros((3, 2), np.int32), y, 1, False) is False  # int32
    assert loops.gather_dim(x, np.zeros((2, 2), np.int64), y, 1, False) is False  # shapes
    assert loops.gather_dim(x, np.zeros((3, 2), np.int64), y, 2, False) is False  # dim
    with pytest.raises(IndexError):
        loops.gather_dim(x, np.array([[0, 4], [1, 1], [2, 0]]), y, 1, False)
