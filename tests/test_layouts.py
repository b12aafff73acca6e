"""Every registry entry on inputs with unusual memory layouts (issue 14, defect 1).

A kernel that assumes C-contiguous input (``np.empty_like`` keeps a transposed layout, then a
flat ``reshape(-1)`` copies and the results go into the copy) returns garbage for transposed
input. Here each entry runs twice: once on contiguous inputs, once on the same values seen
through a view (transposed, permuted, expanded, strided slice, offset slice), with a
non-contiguous upstream gradient too. Values and the gradients of the viewed inputs must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_registry import SCALAR, as_outputs, diff_mask, make_args, params

import chainrule as cr

LAYOUTS = ("transposed", "permuted", "expanded", "sliced", "offset")


def layout_of(a: np.ndarray, how: str):
    """(base array, Tensor view fn, NumPy view fn) presenting ``a``'s shape through ``how``;
    None when the layout does not apply to ``a``'s shape. For "expanded" the values change
    (one dim is broadcast), so callers take the values from the view."""
    nd = a.ndim
    if how == "transposed" and nd >= 2:
        return (np.ascontiguousarray(np.swapaxes(a, -1, -2)), lambda t: t.transpose(-1, -2),
                lambda x: np.swapaxes(x, -1, -2))
    if how == "permuted" and nd >= 3:
        order = tuple(range(nd - 1, -1, -1))
        return (np.ascontiguousarray(np.transpose(a, order)), lambda t: t.permute(*order),
                lambda x: np.transpose(x, order))
    if how == "expanded" and nd >= 1:
        big = [d for d in range(nd) if a.shape[d] > 1]
        if not big:
            return None
        d = big[0]
        shape = a.shape
        return (np.ascontiguousarray(np.take(a, [0], axis=d)), lambda t: t.expand(*shape),
                lambda x: np.broadcast_to(x, shape))
    if how == "sliced" and nd >= 1:
        base = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        base[..., ::2] = a
        return base, lambda t: t[..., ::2], lambda x: x[..., ::2]
    if how == "offset" and nd >= 1:
        base = np.zeros((a.shape[0] + 1,) + a.shape[1:], a.dtype)
        base[1:] = a
        return base, lambda t: t[1:], lambda x: x[1:]
    return None


def _float_outputs(out) -> list:
    return [o for o in as_outputs(out) if isinstance(o, cr.Tensor) and o.dtype.is_floating_point]


def _upstream(o: cr.Tensor, seed: int) -> cr.Tensor:
    """A fixed weight for ``o``, as a non-contiguous tensor where ``o`` has 2 or more dims."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(tuple(o.shape)).astype(o.detach().numpy().dtype)
    if w.ndim >= 2:
        return cr.from_numpy(np.ascontiguousarray(np.swapaxes(w, -1, -2))).transpose(-1, -2)
    return cr.tensor(w)


def _tolerances(dtype):
    return (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-12)


def run_layout(spec, shapes, kw, how: str, dtype) -> bool:
    """Compare ``spec`` on contiguous inputs with the same values through layout ``how``;
    False when ``how`` applies to none of the inputs."""
    args = make_args(spec, shapes, dtype)
    mask = diff_mask(spec, args)
    leaves, views, np_views, values = [], [], [], []
    for a, g in zip(args, mask):
        lay = layout_of(a, how) if isinstance(a, np.ndarray) else None
        if lay is None:
            leaves.append(cr.tensor(a, requires_grad=g) if isinstance(a, np.ndarray) else a)
            views.append(None)
            np_views.append(None)
            values.append(a)
            continue
        base, view, np_view = lay
        leaves.append(cr.tensor(base, requires_grad=g))
        views.append(view)
        np_views.append(np_view)
        values.append(np.ascontiguousarray(np_view(base)))
    if all(v is None for v in views):
        return False
    ref_in = [cr.tensor(v, requires_grad=g) if isinstance(v, np.ndarray) else v
              for v, g in zip(values, mask)]
    lay_in = [view(t) if view is not None else t for t, view in zip(leaves, views)]
    ref_out = as_outputs(spec.op(*ref_in, **kw))
    lay_out = as_outputs(spec.op(*lay_in, **kw))
    rtol, atol = _tolerances(dtype)
    assert len(ref_out) == len(lay_out)
    for k, (r, got) in enumerate(zip(ref_out, lay_out)):
        label = f"{spec.name} {how} output {k}"
        if not isinstance(r, cr.Tensor):
            assert got == r, label
            continue
        assert got.shape == r.shape and got.dtype == r.dtype, label
        if r.dtype.is_floating_point:
            np.testing.assert_allclose(got.detach().numpy(), r.detach().numpy(), rtol=rtol,
                                       atol=atol, err_msg=label)
        else:
            np.testing.assert_array_equal(got.detach().numpy(), r.detach().numpy(), err_msg=label)
    if not (any(mask) and spec.grad):
        return True
    ref_f, lay_f = _float_outputs(ref_out), _float_outputs(lay_out)
    if not ref_f or not any(o.requires_grad for o in ref_f):
        return True
    ref_loss = sum((o * _upstream(o, 3 + i).contiguous()).sum() for i, o in enumerate(ref_f))
    lay_loss = sum((o * _upstream(o, 3 + i)).sum() for i, o in enumerate(lay_f))
    ref_loss.backward()
    lay_loss.backward()
    for i, (r, leaf, np_view, g) in enumerate(zip(ref_in, leaves, np_views, mask)):
        if not g:
            continue
        label = f"{spec.name} {how} gradient of input {i}"
        want = r.grad.numpy() if r.grad is not None else np.zeros(r.shape, dtype)
        got = leaf.grad.numpy() if leaf.grad is not None else np.zeros(leaf.shape, dtype)
        if np_view is None:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=label)
        elif how == "expanded":  # the base's gradient sums the broadcast dim
            d = [k for k in range(want.ndim) if leaf.shape[k] != want.shape[k]][0]
            np.testing.assert_allclose(got, want.sum(d, keepdims=True), rtol=rtol,
                                       atol=atol * want.shape[d], err_msg=label)
        else:
            np.testing.assert_allclose(np_view(got), want, rtol=rtol, atol=atol, err_msg=label)
            assert np.abs(got).sum() == pytest.approx(np.abs(np_view(got)).sum()), \
                f"{label}: gradient outside the view"
    return True


def _has_array_input(p) -> bool:
    return any(s != SCALAR and len(s) >= 1 for s in p.values[1])


@pytest.mark.parametrize("dtype,how", [(np.float32, h) for h in LAYOUTS] + [
    (np.float64, "transposed"), (np.float64, "sliced")], ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("spec,shapes,kw", [p for p in params() if _has_array_input(p)])
def test_layout_matches_contiguous(spec, shapes, kw, how, dtype):
    if spec.name.startswith("view") and how in ("transposed", "permuted", "expanded", "sliced"):
        pytest.skip("view() of a non-contiguous tensor raises, as torch's")
    if "storage" in spec.tags:  # (test_inplace_layout.py compares these with torch's)
        pytest.skip("reads the storage: refused for a non-contiguous input, offsets counted from "
                    "a view's base (see as_strided)")
    if "linalg" in spec.tags and how == "expanded":
        pytest.skip("an expanded matrix has equal rows: singular, outside these ops' domain")
    if not run_layout(spec, shapes, kw, how, dtype):
        pytest.skip(f"{how} does not apply to these shapes")


# ---- the reported cases, and big inputs (the C loops and the blocked NumPy paths) --------------
_BIG_UNARY = {
    "gelu": lambda x: cr.nn.functional.gelu(x),
    "gelu(tanh)": lambda x: cr.nn.functional.gelu(x, approximate="tanh"),
    "GELU module": lambda x: cr.nn.GELU()(x),
    "erf": cr.erf, "relu": cr.relu, "sigmoid": cr.sigmoid, "tanh": cr.tanh,
    "silu": lambda x: cr.nn.functional.silu(x),
    "layer_norm": lambda x: cr.nn.functional.layer_norm(x, x.shape[-1:]),
    "softmax": lambda x: cr.softmax(x, -1), "log_softmax": lambda x: cr.log_softmax(x, -1),
}


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("name", sorted(_BIG_UNARY))
def test_big_transposed_and_sliced_inputs(name, dtype):
    fn = _BIG_UNARY[name]
    if dtype == np.float16 and name in ("layer_norm", "GELU module", "gelu", "gelu(tanh)", "silu"):
        dtype = np.float32  # (float16 on the CPU: only the elementwise math is checked)
    a = np.random.default_rng(0).standard_normal((72, 65)).astype(dtype)
    rtol, atol = (2e-3, 2e-3) if dtype == np.float16 else _tolerances(dtype)
    for view in (lambda t: t.t(), lambda t: t[:, ::3], lambda t: t.t()[::2]):
        x = view(cr.tensor(a, requires_grad=dtype != np.float16))
        ref = cr.tensor(np.ascontiguousarray(x.detach().numpy()),
                        requires_grad=dtype != np.float16)
        y, want = fn(x), fn(ref)
        np.testing.assert_allclose(y.detach().numpy().astype(np.float64),
                                   want.detach().numpy().astype(np.float64), rtol=rtol,
                                   atol=atol, err_msg=name)
        if dtype == np.float16:
            continue
        x.retain_grad()
        w = _upstream(y, 1)
        (y * w).sum().backward()
        (want * w.contiguous()).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), ref.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{name} gradient")


def test_gelu_of_a_transposed_float32_tensor_matches_torch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((64, 70)).astype(np.float32)
    np.testing.assert_allclose(cr.nn.functional.gelu(cr.tensor(a).t()).numpy(),
                               torch.nn.functional.gelu(torch.tensor(a).t()).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cr.erf(cr.tensor(a).t()).numpy(),
                               torch.erf(torch.tensor(a).t()).numpy(), rtol=1e-5, atol=1e-6)
