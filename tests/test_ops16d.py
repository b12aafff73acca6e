"""Issue 16 (ops16d): two differential-fuzzer findings, checked against torch, and the small-call
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


def test_fuzzer_seed_140031509_replays_clean():
    """isnan -> nanmean -> asinh: the seed that found the NaN-gradient difference."""
    FP = pytest.importorskip("fuzz_programs")
    prog = FP.generate(FP.RandomChooser(140031509), FP.catalog())
    verdict, diffs = FP.check(prog, torch)
    assert verdict in ("ok", "torch-limit"), diffs


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


def test_fuzzer_seed_140029191_replays_clean():
    """a != b -> argmin -> log1p -> index_reduce(mean): a float32 source into float64 self."""
    FP = pytest.importorskip("fuzz_programs")
    prog = FP.generate(FP.RandomChooser(140029191), FP.catalog())
    verdict, diffs = FP.check(prog, torch)
    assert verdict in ("ok", "torch-limit"), diffs
