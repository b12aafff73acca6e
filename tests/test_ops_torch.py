"""Every registry entry against PyTorch (the oracle): forward values and result dtypes in
float32 and float64, and the gradients of each differentiable input in float64."""

from __future__ import annotations

import numpy as np
import pytest
from op_registry import (
    BAD_CALLS, DOMAINS, REGISTRY, SCALAR, as_outputs, cases, cr_args, diff_mask, make_args, params,
    to_torch,
)

import chainrule as cr

torch = pytest.importorskip("torch")


def _np(x):
    if isinstance(x, cr.Tensor):
        return x.detach().numpy()
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return x


def _run_both(spec, shapes, kw, dtype, grad: bool):
    args = make_args(spec, shapes, dtype)
    mask = diff_mask(spec, args) if grad else [False] * len(args)
    c_in = cr_args(args, mask)
    t_in = [to_torch(a, g) for a, g in zip(args, mask)]
    c_out = as_outputs(spec.op(*c_in, **kw))
    t_out = as_outputs(spec.torch_op(*t_in, **kw))
    return mask, c_in, t_in, c_out, t_out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.torch))
def test_forward_matches_torch(spec, shapes, kw, dtype):
    _, _, _, c_out, t_out = _run_both(spec, shapes, kw, dtype, grad=False)
    assert len(c_out) == len(t_out), f"{spec.name}: {len(c_out)} outputs, torch {len(t_out)}"
    for k, (c, t) in enumerate(zip(c_out, t_out)):
        label = f"{spec.name} output {k}"
        if not isinstance(t, torch.Tensor):
            assert type(c) is type(t) and c == t, f"{label}: {c!r} vs torch {t!r}"
            continue
        c, t = _np(c), _np(t)
        assert c.dtype == t.dtype, f"{label}: dtype {c.dtype}, torch gives {t.dtype}"
        assert c.shape == t.shape, f"{label}: shape {c.shape}, torch gives {t.shape}"
        if t.dtype.kind == "f":
            rtol, atol = (spec.rtol32, 1e-6) if dtype == np.float32 else (1e-10, 1e-12)
            np.testing.assert_allclose(c, t, rtol=rtol, atol=atol, err_msg=label)
        else:
            np.testing.assert_array_equal(c, t, err_msg=label)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec,shapes,kw",
                         params(lambda s: s.torch and s.torch_grad and s.grad and s.out == "same"))
def test_gradients_match_torch(spec, shapes, kw, dtype):
    assert _compare_gradients(spec, shapes, kw, dtype), "no differentiable input"


def _compare_gradients(spec, shapes, kw, dtype=np.float64) -> bool:
    """Gradients of sum(w · outputs) against torch's; False when nothing is differentiable."""
    mask, c_in, t_in, c_out, t_out = _run_both(spec, shapes, kw, dtype, grad=True)
    if not any(mask):
        return False
    rng = np.random.default_rng(1)
    c_loss, t_loss = 0, 0
    for c, t in zip(c_out, t_out):
        if not t.dtype.is_floating_point:
            continue
        w = rng.standard_normal(tuple(t.shape)).astype(dtype)
        c_loss = c_loss + (c * cr.tensor(w)).sum()
        t_loss = t_loss + (t * torch.from_numpy(w)).sum()
    c_loss.backward()
    t_loss.backward()
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
    for i, (c, t, g) in enumerate(zip(c_in, t_in, mask)):
        if not g:
            continue
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        assert c.grad is not None, f"{spec.name}: input {i} got no gradient"
        got = c.grad.numpy()
        assert got.shape == want.shape and got.dtype == want.dtype, f"{spec.name}: input {i}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"{spec.name}: gradient of input {i}")
    return True


# ---- dtypes of mixed and non-float inputs follow PyTorch's promotion ---------------------------
_DTYPES = ["bool", "int32", "int64", "float16", "float32", "float64"]


def _typed(dtype: str, shape, seed: int):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    # positive: valid for log, sqrt and division
    return np.asarray(rng.integers(1, 4, shape)).astype(dtype)


def _pair_values(c_out, t_out, label):
    if not isinstance(t_out, torch.Tensor):
        assert c_out == t_out, label
        return
    assert isinstance(c_out, cr.Tensor), label
    c, t = _np(c_out), _np(t_out)
    assert c.dtype == t.dtype, f"{label}: dtype {c.dtype}, torch gives {t.dtype}"
    assert c.shape == t.shape, f"{label}: shape {c.shape}, torch gives {t.shape}"
    if t.dtype.kind == "f":
        tol = 2e-3 if t.dtype == np.float16 else 1e-6
        np.testing.assert_allclose(c.astype(np.float64), t.astype(np.float64), rtol=tol,
                                   atol=tol, err_msg=label)
    else:
        np.testing.assert_array_equal(c, t, err_msg=label)


def _compare_call(spec, args, kw, label):
    try:
        want = as_outputs(spec.torch_op(*[to_torch(a) for a in args], **kw))
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as err:
        with pytest.raises(type(err)):  # torch refuses: so must chainrule, with its error type
            spec.op(*cr_args(args), **kw)
        return type(err)
    got = as_outputs(spec.op(*cr_args(args), **kw))
    assert len(got) == len(want), label
    for k, (c, t) in enumerate(zip(got, want)):
        _pair_values(c, t, f"{label} output {k}")
    return None


_UNARY_SPECS = [s for s in REGISTRY if "unary" in s.tags and "method" not in s.tags
                and s.name not in ("isnan", "isinf", "isfinite")]


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("spec", _UNARY_SPECS, ids=[s.name for s in _UNARY_SPECS])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns on 1/0, log 0
def test_unary_result_dtype_matches_torch(spec, dtype):
    for shapes, kw in cases(spec):
        if any(s == SCALAR for s in shapes):
            continue
        if kw == {"decimals": 0} and "float" not in dtype:
            continue  # torch.round(int, decimals=0) refuses while torch.round(int) works
        args = [_typed(dtype if i == 0 else "float32", s, i) for i, s in enumerate(shapes)]
        _compare_call(spec, args, kw, f"{spec.name}({dtype}) {kw}")


_BIN_SPECS = [s for s in REGISTRY if "binary" in s.tags and "method" not in s.tags
              and any(SCALAR not in sh for sh in s.shapes) and s.name not in
              ("where", "where(scalar)", "masked_fill", "Tensor.masked_fill", "allclose(near)")]


@pytest.mark.parametrize("pair", [(a, b) for a in _DTYPES for b in _DTYPES if a <= b],
                         ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("spec", _BIN_SPECS, ids=[s.name for s in _BIN_SPECS])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns on 1/0, log 0
def test_binary_result_dtype_matches_torch(spec, pair):
    shapes = next(sh for sh in spec.shapes if SCALAR not in sh)
    for order in (pair, pair[::-1]):
        args = [_typed(d, s, i) for i, (d, s) in enumerate(zip(order, shapes))]
        _compare_call(spec, args, {}, f"{spec.name}{order}")


_SCALARS = [2, 2.5, True, -1]


@pytest.mark.parametrize("scalar", _SCALARS, ids=repr)
@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("spec", [s for s in _BIN_SPECS if "operator" in s.tags],
                         ids=[s.name for s in _BIN_SPECS if "operator" in s.tags])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns on 1/0, log 0
def test_tensor_scalar_result_dtype_matches_torch(spec, dtype, scalar):
    x = _typed(dtype, (2, 3), 0)
    for args in ((x, scalar), (scalar, x)):
        _compare_call(spec, args, {}, f"{spec.name}{tuple(type(a).__name__ for a in args)}"
                                      f"[{dtype}]")


@pytest.mark.parametrize("spec,shapes,kw", params(
    lambda s: s.torch and s.torch_grad and s.torch_gradgrad and s.grad and s.gradgrad
    and s.out == "same"))
def test_second_derivatives_match_torch(spec, shapes, kw):
    """Hessian-vector products vᵀ·∂(wᵀ·∂f/∂x)/∂x through create_graph, against torch's."""
    mask, c_in, t_in, c_out, t_out = _run_both(spec, shapes, kw, np.float64, grad=True)
    if not any(mask):
        pytest.skip("no differentiable input")
    rng = np.random.default_rng(2)
    c_loss, t_loss = 0, 0
    for c, t in zip(c_out, t_out):
        if t.dtype.is_floating_point:
            w = rng.standard_normal(tuple(t.shape))
            c_loss = c_loss + (c * cr.tensor(w)).sum()
            t_loss = t_loss + (t * torch.from_numpy(w)).sum()
    c_x = [x for x, g in zip(c_in, mask) if g]
    t_x = [x for x, g in zip(t_in, mask) if g]
    c_g = cr.autograd.grad(c_loss, c_x, create_graph=True)
    t_g = torch.autograd.grad(t_loss, t_x, create_graph=True)
    vs = [rng.standard_normal(tuple(g.shape)) for g in t_g]
    c_h = sum(((g * cr.tensor(v)).sum() for g, v in zip(c_g, vs) if g.requires_grad), 0)
    t_h = sum(((g * torch.from_numpy(v)).sum() for g, v in zip(t_g, vs) if g.requires_grad), 0)
    # a gradient that does not depend on x (linear ops) has no graph: its derivative is zero
    t_hv = (torch.autograd.grad(t_h, t_x, allow_unused=True)
            if isinstance(t_h, torch.Tensor) and t_h.requires_grad else [None] * len(t_x))
    c_hv = (cr.autograd.grad(c_h, c_x, allow_unused=True)
            if isinstance(c_h, cr.Tensor) and c_h.requires_grad else [None] * len(c_x))
    for i, (c, t) in enumerate(zip(c_hv, t_hv)):
        want = np.zeros(tuple(t_x[i].shape)) if t is None else t.numpy(force=True)
        got = np.zeros(tuple(c_x[i].shape)) if c is None else c.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{spec.name}: second derivative, input {i}")


def test_api_functions_are_methods_where_torch_has_them():
    from op_registry import API_OPS

    missing = [n for n in API_OPS if hasattr(torch.Tensor, n) and not hasattr(cr.Tensor, n)]
    assert not missing, f"Tensor methods PyTorch has and chainrule lacks: {missing}"


def _emptied(shapes):
    """The same shapes with the first dim of every non-0-d input set to 0."""
    return tuple(s if s == SCALAR or len(s) == 0 else (0,) + tuple(s)[1:] for s in shapes)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy warns on the mean of nothing
@pytest.mark.parametrize("spec,shapes,kw", [
    p for p in params(lambda s: s.torch and any(t in s.tags for t in ("unary", "binary", "reduce")))
    if any(sh != SCALAR and len(sh) > 0 for sh in p.values[1])
])
def test_empty_inputs_match_torch(spec, shapes, kw):
    """Zero-size inputs give torch's result (shape, dtype, value) or torch's error type, and
    torch's gradients (of the input's shape) when the op is differentiable."""
    shapes = _emptied(shapes)
    args = make_args(spec, shapes)
    refused = _compare_call(spec, args, kw, f"{spec.name}{shapes} {kw}")
    if refused is None and spec.out == "same" and spec.torch_grad:
        _compare_gradients(spec, shapes, kw)


def _at_kinks(spec, shapes, seed: int) -> list:
    """Inputs drawn from 0, ±0.5, ±1, 2, 3 (kinks of abs/relu/clamp/floor, ties everywhere)."""
    rng = np.random.default_rng(seed)
    args = []
    for shape, dom in zip(shapes, spec.domains(len(shapes))):
        if shape == SCALAR:
            args.append(float(rng.choice([0.0, 0.5, 1.0, 2.0])))
        elif dom == "bool":
            args.append(np.asarray(rng.random(shape) < 0.5))
        else:
            args.append(np.asarray(DOMAINS["kinks"](rng, shape)))
    return args


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log 0, 0/0: torch gives inf/nan silently
@pytest.mark.parametrize("spec,shapes,kw", params(
    lambda s: s.torch and s.torch_grad and s.out == "same"
    and any(t in s.tags for t in ("unary", "binary", "reduce"))))
def test_values_and_gradients_at_kinks_and_ties_match_torch(spec, shapes, kw):
    """At non-differentiable points PyTorch's conventions decide (relu'(0) = 0, ties, inf/nan)."""
    for seed in range(3):
        args = _at_kinks(spec, shapes, seed)
        mask = diff_mask(spec, args)
        t_in = [to_torch(a, g) for a, g in zip(args, mask)]
        try:
            t_out = as_outputs(spec.torch_op(*t_in, **kw))
        except (RuntimeError, IndexError) as err:
            with pytest.raises(type(err)):
                spec.op(*cr_args(args, mask), **kw)
            continue
        c_in = cr_args(args, mask)
        c_out = as_outputs(spec.op(*c_in, **kw))
        label = f"{spec.name} at {[a.tolist() if isinstance(a, np.ndarray) else a for a in args]}"
        for c, t in zip(c_out, t_out):
            np.testing.assert_allclose(_np(c), _np(t), rtol=1e-12, atol=1e-12, equal_nan=True,
                                       err_msg=label)
        w = [np.random.default_rng(seed).standard_normal(tuple(t.shape)) for t in t_out]
        sum((t * torch.from_numpy(wk)).sum() for t, wk in zip(t_out, w)
            if t.dtype.is_floating_point).backward()
        sum((c * cr.tensor(wk)).sum() for c, wk in zip(c_out, w)
            if c.dtype.is_floating_point).backward()
        for i, (c, t, g) in enumerate(zip(c_in, t_in, mask)):
            if g:
                want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
                np.testing.assert_allclose(c.grad.numpy(), want, rtol=1e-12, atol=1e-12,
                                           equal_nan=True, err_msg=f"{label}: input {i}")


_INF, _NAN = float("inf"), float("nan")
_SPECIAL_POINTS = [
    ("norm(p=2) of zeros", lambda m, x: m.norm(x), [0.0, 0.0, 0.0]),
    ("norm(p=1) of zeros", lambda m, x: m.norm(x, p=1), [0.0, 0.0, 0.0]),
    ("norm(p=3) of zeros", lambda m, x: m.norm(x, p=3), [[0.0, 0.0], [1.0, -2.0]]),
    ("norm(p=3, dim) with a zero row", lambda m, x: m.norm(x, p=3, dim=1),
     [[0.0, 0.0], [1.0, -2.0]]),
    ("norm(p=inf) ties", lambda m, x: m.norm(x, p=_INF), [1.0, -1.0, 0.5]),
    ("sqrt(0)", lambda m, x: m.sqrt(x), [0.0, 1.0]),
    ("log(0)", lambda m, x: m.log(x), [0.0, 1.0]),
    ("sigmoid(±inf)", lambda m, x: m.sigmoid(x), [-_INF, _INF, 0.0]),
    ("tanh(±inf)", lambda m, x: m.tanh(x), [-_INF, _INF, 0.0]),
    ("softmax with -inf mask", lambda m, x: m.softmax(x, -1), [[0.0, -_INF, 1.0],
                                                              [-_INF, -_INF, 2.0]]),
    ("softmax of all -inf", lambda m, x: m.softmax(x, -1), [[-_INF, -_INF]]),
    ("log_softmax with -inf mask", lambda m, x: m.log_softmax(x, -1), [[0.0, -_INF, 1.0]]),
    ("logsumexp with -inf", lambda m, x: m.logsumexp(x, -1), [[0.0, -_INF, 1.0],
                                                            [-_INF, -_INF, -_INF]]),
    ("logsumexp with +inf", lambda m, x: m.logsumexp(x, -1), [[0.0, _INF, 1.0]]),
    ("amax with NaN", lambda m, x: m.amax(x), [1.0, _NAN, 2.0]),
    ("max(dim) with NaN", lambda m, x: m.max(x, 0)[0], [1.0, _NAN, 2.0]),
    ("maximum with NaN", lambda m, x: m.maximum(x, m.flip(x, [0])), [1.0, _NAN, 1.0, -2.0]),
    ("minimum with NaN", lambda m, x: m.minimum(x, m.flip(x, [0])), [1.0, _NAN, 1.0, -2.0]),
    ("relu(NaN)", lambda m, x: m.relu(x), [1.0, _NAN, -2.0, 0.0]),
    ("sign(NaN)", lambda m, x: m.sign(x), [_NAN, 0.0, -3.0]),
    ("abs(±0)", lambda m, x: m.abs(x), [0.0, -0.0]),
    ("var of one element", lambda m, x: m.var(x), [2.0]),
    ("std of one element", lambda m, x: m.std(x), [2.0]),
    ("std of a constant", lambda m, x: m.std(x, 1), [[2.0, 2.0], [1.0, 3.0]]),
    ("x / 0", lambda m, x: x / (x * 0), [0.0, 1.0, -1.0]),
    ("negative base ** 0.5", lambda m, x: x**0.5, [-1.0, 4.0]),
    ("0 ** -1", lambda m, x: x**-1.0, [0.0, 2.0]),
    ("0 ** tensor 0", lambda m, x: x ** (x * 0), [0.0, 2.0]),
    ("tensor 0 ** 0.5", lambda m, x: (x * 0) ** (x + 0.5), [0.0, 2.0]),
    ("clamp at its bounds", lambda m, x: m.clamp(x, 0.0, 1.0), [0.0, 1.0, 0.5, _NAN]),
    ("round half to even", lambda m, x: m.round(x), [0.5, 1.5, 2.5, -0.5]),
    ("remainder by a negative", lambda m, x: x % -1.5, [2.0, -2.0, 3.0]),
    ("exp2 overflow", lambda m, x: m.exp2(x), [2000.0, -2000.0]),
    ("prod with zero, 0-d", lambda m, x: m.prod(x), 0.0),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name,call,x", _SPECIAL_POINTS, ids=[s[0] for s in _SPECIAL_POINTS])
def test_values_and_gradients_at_special_points_match_torch(name, call, x):
    """inf, NaN, zeros and masked softmax rows: value and gradient as PyTorch gives them."""
    results = []
    for m in (torch, cr):
        t = m.tensor(x, dtype=m.float64, requires_grad=True)
        y = call(m, t)
        y.backward(m.ones_like(y))
        results.append((_np(y), _np(t.grad)))
    (t_y, t_g), (c_y, c_g) = results
    np.testing.assert_allclose(c_y, t_y, rtol=1e-12, equal_nan=True, err_msg=f"{name}: value")
    np.testing.assert_allclose(c_g, t_g, rtol=1e-12, equal_nan=True, err_msg=f"{name}: gradient")


@pytest.mark.parametrize("name,call", BAD_CALLS, ids=[f"{n}-{i}" for i, (n, _) in
                                                     enumerate(BAD_CALLS)])
def test_bad_calls_raise_torchs_error_type(name, call):
    with pytest.raises(Exception) as want:  # noqa: B017  whatever torch raises
        call(torch, torch.arange(12.0, dtype=torch.float64).reshape(3, 4))
    with pytest.raises(type(want.value)):
        call(cr, cr.arange(12.0, dtype=cr.float64).reshape(3, 4))
