"""Forward pass of every registry entry against its NumPy reference, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
from op_registry import (
    API_OPS, BAD_CALLS, OPERATORS, REGISTRY, SCALAR, as_outputs, covered, cr_args, make_args,
    params,
)

import chainrule as cr


def test_registry_covers_the_api():
    names = {covered(s) for s in REGISTRY}
    missing = [n for n in API_OPS + OPERATORS + ["__getitem__"] if n not in names]
    assert not missing, f"ops without a registry entry: {missing}"


def test_registry_entries_are_well_formed():
    for spec in REGISTRY:
        for shapes in spec.shapes:
            assert len(spec.domains(len(shapes))) == len(shapes), spec.name
            assert any(s != SCALAR for s in shapes), spec.name


def _check_output(spec, got, want, dtype, label: str) -> None:
    if spec.out == "python":
        assert type(got) is bool and got == bool(want), label
        return
    assert isinstance(got, cr.Tensor), f"{label}: expected a Tensor, got {type(got).__name__}"
    want = np.asarray(want)
    data = got.detach().numpy()
    assert data.shape == want.shape, f"{label}: shape {data.shape} != reference {want.shape}"
    if want.dtype.kind == "f":
        expected_dtype = np.dtype(dtype) if spec.out == "same" else want.dtype
        assert data.dtype == expected_dtype, f"{label}: dtype {data.dtype} != {expected_dtype}"
        rtol, atol = (spec.rtol32, 1e-6) if dtype == np.float32 else (1e-10, 1e-12)
        np.testing.assert_allclose(data, want, rtol=rtol, atol=atol, err_msg=label)
    else:
        expected_dtype = {"bool": np.bool_, "int64": np.int64}.get(spec.out, want.dtype)
        if want.dtype.kind in "iu" and spec.out == "same":
            expected_dtype = np.int64
        assert data.dtype == expected_dtype, f"{label}: dtype {data.dtype} != {expected_dtype}"
        np.testing.assert_array_equal(data, want, err_msg=label)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.ref is not None))
def test_forward_matches_numpy(spec, shapes, kw, dtype):
    args = make_args(spec, shapes, dtype)
    got = as_outputs(spec.op(*cr_args(args), **kw))
    want = as_outputs(spec.ref(*args, **kw))
    assert len(got) == len(want), f"{spec.name}: {len(got)} outputs, reference has {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        _check_output(spec, g, w, dtype, f"{spec.name} output {k}")


@pytest.mark.parametrize("spec,shapes,kw", params(lambda s: s.out == "same" and s.grad))
def test_forward_records_graph(spec, shapes, kw):
    """With a differentiable input, float outputs carry a grad_fn; under no_grad they do not,
    and only a view of an input (or the input itself) reports requires_grad, as torch's."""
    from op_registry import diff_mask

    args = make_args(spec, shapes)
    mask = diff_mask(spec, args)
    if not any(mask):
        pytest.skip("no differentiable input")
    outs = [o for o in as_outputs(spec.op(*cr_args(args, mask), **kw)) if o.dtype.is_floating_point]
    assert outs and all(o.requires_grad for o in outs), spec.name
    ins = cr_args(args, mask)
    with cr.no_grad():
        outs = as_outputs(spec.op(*ins, **kw))
    assert not any(o.grad_fn is not None for o in outs), spec.name
    inputs = [t for t in ins if isinstance(t, cr.Tensor) and t.requires_grad]
    for o in outs:
        view_of_input = o._base is not None and any(o._base is (t._base or t) for t in inputs)
        assert o.requires_grad == (view_of_input or any(o is t for t in inputs)), spec.name


@pytest.mark.parametrize("spec,shapes,kw", [
    p for p in params(lambda s: getattr(s.call, "by_name", None) in API_OPS
                      and s.call.by_name != "where" and hasattr(cr.Tensor, s.call.by_name))
    if p.values[1][0] != SCALAR  # the method needs a tensor first
])
def test_method_form_matches_function(spec, shapes, kw):
    """``x.op(*rest)`` is ``cr.op(x, *rest)`` for every function that is also a method."""
    args = make_args(spec, shapes)
    ins = cr_args(args)
    fn_out = as_outputs(spec.op(*ins, **kw))
    method_out = as_outputs(getattr(ins[0], spec.call.by_name)(*ins[1:], **kw))
    assert len(fn_out) == len(method_out)
    for f, m in zip(fn_out, method_out):
        if isinstance(f, cr.Tensor):
            assert m.dtype == f.dtype and m.shape == f.shape
            np.testing.assert_array_equal(m.numpy(), f.numpy())
        else:
            assert m == f


@pytest.mark.parametrize("name,call", BAD_CALLS, ids=[f"{n}-{i}" for i, (n, _) in
                                                     enumerate(BAD_CALLS)])
def test_bad_calls_raise_errors_naming_the_op(name, call):
    x = cr.arange(12.0, dtype=cr.float64).reshape(3, 4)
    with pytest.raises((RuntimeError, IndexError, TypeError, ValueError)) as info:
        call(cr, x)
    assert name in str(info.value), f"{type(info.value).__name__}: {info.value}"
