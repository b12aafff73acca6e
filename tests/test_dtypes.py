"""dtypes: defaults, get/set_default_dtype and PyTorch's type promotion (vs torch.result_type)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]


def _cr_value(kind: str, dtype: str):
    """A chainrule operand: a 1-d tensor, a 0-d tensor, or a Python scalar."""
    if kind == "dim":
        return cr.ones(2, dtype=getattr(cr, dtype))
    if kind == "zero":
        return cr.ones((), dtype=getattr(cr, dtype))
    return {"float": 2.5, "int": 3, "bool": True}[dtype]


def _torch_value(torch, kind: str, dtype: str):
    if kind == "dim":
        return torch.ones(2, dtype=getattr(torch, dtype))
    if kind == "zero":
        return torch.ones((), dtype=getattr(torch, dtype))
    return {"float": 2.5, "int": 3, "bool": True}[dtype]


PROMOTION_CASES = (
    [(("dim", a), ("dim", b)) for a in DTYPES for b in DTYPES]
    + [(("dim", a), ("zero", b)) for a in DTYPES for b in DTYPES]
    + [(("zero", a), ("zero", b)) for a in DTYPES for b in DTYPES]
    + [(("dim", a), ("scalar", s)) for a in DTYPES for s in ("float", "int", "bool")]
    + [(("zero", a), ("scalar", s)) for a in DTYPES for s in ("float", "int", "bool")]
)


def test_default_dtypes_from_python_values() -> None:
    assert cr.tensor(1.5).dtype is cr.float32
    assert cr.tensor([1, 2]).dtype is cr.int64
    assert cr.tensor([True, False]).dtype is cr.bool
    assert cr.tensor([1, 2.5]).dtype is cr.float32  # mixed list: float wins
    assert cr.tensor(np.array([1.0], np.float64)).dtype is cr.float64  # arrays keep their dtype
    assert cr.zeros(2).dtype is cr.float32
    assert cr.arange(3).dtype is cr.int64
    assert cr.arange(3.0).dtype is cr.float32
    assert cr.full((2,), 7).dtype is cr.int64
    assert cr.full((2,), True).dtype is cr.bool
    assert cr.full((2,), 7.0).dtype is cr.float32


def test_get_set_default_dtype() -> None:
    assert cr.get_default_dtype() is cr.float32
    try:
        cr.set_default_dtype(cr.float64)
        assert cr.get_default_dtype() is cr.float64
        assert cr.tensor(1.5).dtype is cr.float64
        assert cr.zeros(2).dtype is cr.float64
        assert cr.randn(2).dtype is cr.float64
        assert (cr.tensor([1, 2]) * 0.5).dtype is cr.float64  # int * float scalar -> default
        assert cr.tensor([1, 2]).dtype is cr.int64  # ints unaffected
    finally:
        cr.set_default_dtype(cr.float32)
    assert cr.tensor(1.5).dtype is cr.float32


def test_set_default_dtype_rejects_integers() -> None:
    with pytest.raises(TypeError, match="floating point"):
        cr.set_default_dtype(cr.int64)
    assert cr.get_default_dtype() is cr.float32


def test_dtype_names_and_aliases() -> None:
    assert cr.float is cr.float32 and cr.double is cr.float64 and cr.half is cr.float16
    assert cr.long is cr.int64 and cr.int is cr.int32
    assert repr(cr.float32) == "chainrule.float32"
    assert cr.float32.is_floating_point and not cr.int64.is_floating_point
    assert cr.float64.itemsize == 8


def test_promotion_examples_from_the_brief() -> None:
    i = cr.tensor([1, 2])
    f32 = cr.tensor([1.0, 2.0])
    assert (i + 1.5).dtype is cr.float32  # int tensor + float scalar -> float32
    assert (f32 + cr.tensor(1.0, dtype=cr.float64)).dtype is cr.float32  # 0-d doesn't upcast
    assert (i / cr.tensor([2, 2])).dtype is cr.float32  # int/int true division
    assert (cr.tensor([True]) + cr.tensor([1])).dtype is cr.int64
    assert (cr.tensor([True]) + 1).dtype is cr.int64
    assert (i * 2).dtype is cr.int64
    assert (f32 * cr.tensor([1.0], dtype=cr.float64)).dtype is cr.float64  # dimensioned: upcast
    assert (cr.tensor([1], dtype=cr.int32) + 5).dtype is cr.int32  # int scalar keeps int32
    assert (cr.tensor([1.0], dtype=cr.float16) + 2.5).dtype is cr.float16


@pytest.mark.parametrize("a,b", PROMOTION_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_result_type_matches_torch(a, b) -> None:
    torch = pytest.importorskip("torch")
    expected = torch.result_type(_torch_value(torch, *a), _torch_value(torch, *b))
    got = cr.result_type(_cr_value(*a), _cr_value(*b))
    assert got.name == str(expected).removeprefix("torch.")


@pytest.mark.parametrize("a,b", PROMOTION_CASES, ids=str)
def test_add_result_dtype_matches_torch(a, b) -> None:
    """The dtype an actual op produces, not only result_type."""
    torch = pytest.importorskip("torch")
    ta, tb = _torch_value(torch, *a), _torch_value(torch, *b)
    ca, cb = _cr_value(*a), _cr_value(*b)
    expected = (ta * tb).dtype
    got = (ca * cb).dtype
    assert got.name == str(expected).removeprefix("torch.")


def test_zero_dim_op_results_promote_as_zero_dim_tensors() -> None:
    """A 0-d op result holds a NumPy scalar; it must still promote as a 0-d tensor (float64
    wins over int32), not as a weak Python float (which would give float32)."""
    zero_dim = cr.tensor(2.0, dtype=cr.float64) * 1.0
    assert not isinstance(zero_dim._data, np.ndarray)
    assert (zero_dim + cr.tensor([1, 2], dtype=cr.int32)).dtype == cr.float64
    assert cr.where(cr.tensor([True, False]), 0.0, zero_dim).dtype == cr.float64


@pytest.mark.parametrize("a,b", PROMOTION_CASES, ids=str)
def test_where_result_dtype_and_values_match_torch(a, b) -> None:
    """where promotes its two branches like any binary op (a bool tensor with 5 gives int64)."""
    torch = pytest.importorskip("torch")
    cond = [True, False]
    expected = torch.where(torch.tensor(cond), _torch_value(torch, *a), _torch_value(torch, *b))
    got = cr.where(cr.tensor(cond), _cr_value(*a), _cr_value(*b))
    assert got.dtype.name == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("a,b", [("int64", "int64"), ("int32", "int64"), ("bool", "int64"),
                                 ("int64", "float16"), ("float16", "float64")])
def test_true_division_dtype_matches_torch(a, b) -> None:
    torch = pytest.importorskip("torch")
    expected = (torch.ones(2, dtype=getattr(torch, a)) / torch.ones(2, dtype=getattr(torch, b)))
    got = cr.ones(2, dtype=getattr(cr, a)) / cr.ones(2, dtype=getattr(cr, b))
    assert got.dtype.name == str(expected.dtype).removeprefix("torch.")


def test_promote_types() -> None:
    assert cr.promote_types(cr.int32, cr.float16) is cr.float16
    assert cr.promote_types(cr.bool, cr.int32) is cr.int32
    assert cr.promote_types(cr.float32, cr.float64) is cr.float64


def test_gradient_dtype_follows_the_input_dtype() -> None:
    """A float32 leaf mixed with a float64 tensor gets a float32 gradient (engine casts back)."""
    a = cr.tensor([1.0, 2.0], requires_grad=True)
    b = cr.tensor([3.0, 4.0], dtype=cr.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype is cr.float32 and b.grad.dtype is cr.float64
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 2.0])


@pytest.mark.parametrize("scalar", [np.float64(2.5), np.float32(2.5), np.int64(2), np.int32(2)],
                         ids=["np.float64", "np.float32", "np.int64", "np.int32"])
@pytest.mark.parametrize("base", ["int64", "float32", "float16"])
def test_numpy_scalars_promote_like_python_numbers(scalar, base) -> None:
    """x * np.float64(2.5) stays float32, as in torch (NumPy alone would upcast to float64)."""
    torch = pytest.importorskip("torch")
    t, c = torch.ones(2, dtype=getattr(torch, base)), cr.ones(2, dtype=getattr(cr, base))
    for op in (lambda a: a * scalar, lambda a: scalar * a, lambda a: a + scalar,
               lambda a: a / scalar, lambda a: a - scalar, lambda a: a.clamp(min=scalar)):
        assert op(c).dtype.name == str(op(t).dtype).removeprefix("torch.")
