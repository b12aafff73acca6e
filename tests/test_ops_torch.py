"""Every registry entry against PyTorch (the oracle): forward values and result dtypes in
float32 and float64, and the gradients of each differentiable input in float64."""

from __future__ import annotations

import numpy as np
import pytest
from op_registry import as_outputs, cr_args, diff_mask, make_args, params, to_torch

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


@pytest.mark.parametrize("spec,shapes,kw",
                         params(lambda s: s.torch and s.torch_grad and s.grad and s.out == "same"))
def test_gradients_match_torch(spec, shapes, kw):
    mask, c_in, t_in, c_out, t_out = _run_both(spec, shapes, kw, np.float64, grad=True)
    if not any(mask):
        pytest.skip("no differentiable input")
    rng = np.random.default_rng(1)
    c_loss, t_loss = 0, 0
    for c, t in zip(c_out, t_out):
        if not t.dtype.is_floating_point:
            continue
        w = rng.standard_normal(tuple(t.shape))
        c_loss = c_loss + (c * cr.tensor(w)).sum()
        t_loss = t_loss + (t * torch.from_numpy(w)).sum()
    c_loss.backward()
    t_loss.backward()
    for i, (c, t, g) in enumerate(zip(c_in, t_in, mask)):
        if not g:
            continue
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        assert c.grad is not None, f"{spec.name}: input {i} got no gradient"
        got = c.grad.numpy()
        assert got.shape == want.shape and got.dtype == want.dtype, f"{spec.name}: input {i}"
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                                   err_msg=f"{spec.name}: gradient of input {i}")
