"""The Tensor API: creation functions, attributes, methods, repr and __setitem__ (vs PyTorch)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr


def _torch_name(dtype) -> str:
    return str(dtype).removeprefix("torch.").removeprefix("chainrule.")


# ---- creation ------------------------------------------------------------------------------------
def test_tensor_copies_and_infers_dtype() -> None:
    src = np.array([1.0, 2.0], np.float32)
    t = cr.tensor(src)
    src[0] = 99.0
    assert t.tolist() == [1.0, 2.0]
    assert cr.tensor([[1, 2], [3, 4]]).shape == (2, 2)
    assert cr.tensor(3).ndim == 0 and cr.tensor(3).item() == 3
    assert cr.tensor([1, 2], dtype=cr.float64).dtype is cr.float64
    t = cr.tensor([1.0], device="cpu", requires_grad=True)
    assert t.requires_grad and t.is_leaf and str(t.device) == "cpu"


def test_tensor_class_constructor_like_torch() -> None:
    torch = pytest.importorskip("torch")
    for args in ([[1, 2]], [[True, False]], [[1.5]], [3], [2, 3], []):
        c, t = cr.Tensor(*args), torch.Tensor(*args)
        assert c.dtype.name == _torch_name(t.dtype) and c.shape == tuple(t.shape), args
        if args and not isinstance(args[0], int):
            np.testing.assert_array_equal(c.numpy(), t.numpy())
    assert cr.Tensor(cr.tensor([1, 2])).dtype is cr.int64


def test_tensor_rejects_non_numeric_data() -> None:
    with pytest.raises(TypeError):
        cr.tensor(["a", "b"])
    with pytest.raises(ValueError):
        cr.tensor([[1, 2], [3]])


def test_as_tensor_shares_memory_when_it_can() -> None:
    a = np.arange(3.0)
    t = cr.as_tensor(a)
    a[0] = 7.0
    assert t.tolist()[0] == 7.0
    u = cr.as_tensor(a, dtype=cr.float32)  # dtype change: a copy
    a[1] = 8.0
    assert u.tolist()[1] == 1.0 and u.dtype is cr.float32
    x = cr.tensor([1.0])
    assert cr.as_tensor(x) is x
    assert cr.as_tensor([1, 2]).dtype is cr.int64


def test_from_numpy_shares_memory_both_ways() -> None:
    a = np.zeros(3, np.float32)
    t = cr.from_numpy(a)
    a[1] = 5.0
    assert t.tolist() == [0.0, 5.0, 0.0]
    t[2] = 3.0
    assert a[2] == 3.0
    assert np.shares_memory(t.numpy(), a)
    assert cr.from_numpy(np.zeros(2, np.int32)).dtype is cr.int32
    with pytest.raises(TypeError):
        cr.from_numpy([1, 2])


@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
def test_filled_creation(name) -> None:
    torch = pytest.importorskip("torch")
    fn = getattr(cr, name)
    for args in [(2, 3), ((2, 3),), ([4],), ((),)]:
        t, ref = fn(*args), getattr(torch, name)(*args)
        assert t.shape == tuple(ref.shape) and t.dtype is cr.float32
        if name != "empty":
            np.testing.assert_array_equal(t.numpy(), ref.numpy())
    t = fn(2, dtype=cr.int32, device="cpu", requires_grad=False)
    assert t.dtype is cr.int32
    g = fn(2, requires_grad=True)
    assert g.requires_grad and g.is_leaf


def test_full_and_full_like() -> None:
    t = cr.full((2, 2), 3.5)
    assert t.dtype is cr.float32 and t.tolist() == [[3.5, 3.5], [3.5, 3.5]]
    assert cr.full((2,), 3, dtype=cr.float64).dtype is cr.float64
    f = cr.full_like(cr.tensor([1, 2]), 7)
    assert f.dtype is cr.int64 and f.tolist() == [7, 7]
    f = cr.full_like(cr.tensor([1, 2]), 2.5, dtype=cr.float32, requires_grad=True)
    assert f.dtype is cr.float32 and f.requires_grad


def test_arange_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    for args in [(5,), (1, 7), (1, 7, 2), (0.0, 1.0, 0.25), (5, 0, -2), (1, 2.5, 0.5), (-3.5, 2)]:
        t, ref = cr.arange(*args), torch.arange(*args)
        assert t.dtype.name == _torch_name(ref.dtype), args
        np.testing.assert_allclose(t.numpy(), ref.numpy(), err_msg=str(args))
    assert cr.arange(1, 1, -1).shape == (0,)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        cr.arange(0, -1, 1)
    t = cr.arange(4, dtype=cr.float64, requires_grad=True)
    assert t.dtype is cr.float64 and t.requires_grad


def test_linspace_and_eye_match_torch() -> None:
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(cr.linspace(-1, 1, 5).numpy(), torch.linspace(-1, 1, 5).numpy())
    assert cr.linspace(0, 1, 3).dtype is cr.float32
    assert cr.linspace(0, 1, 3, dtype=cr.float64).dtype is cr.float64
    np.testing.assert_array_equal(cr.eye(3).numpy(), torch.eye(3).numpy())
    np.testing.assert_array_equal(cr.eye(2, 3).numpy(), torch.eye(2, 3).numpy())
    assert cr.eye(2, dtype=cr.int64).dtype is cr.int64
    assert cr.eye(2, requires_grad=True).requires_grad


def test_random_creation_shapes_dtypes_ranges() -> None:
    cr.manual_seed(0)
    r = cr.rand(1000)
    assert r.dtype is cr.float32 and float(r.min()) >= 0.0 and float(r.max()) < 1.0
    n = cr.randn(2000, dtype=cr.float64)
    assert n.dtype is cr.float64 and abs(float(n.mean())) < 0.1 and abs(float(n.std()) - 1) < 0.1
    i = cr.randint(3, 6, (500,))
    assert i.dtype is cr.int64 and set(i.tolist()) == {3, 4, 5}
    assert cr.randint(4, (2, 2)).shape == (2, 2)
    assert cr.randint(0, 2, (3,), dtype=cr.int32).dtype is cr.int32
    assert cr.randn(2, 3, requires_grad=True).requires_grad
    like = cr.randn_like(cr.zeros(4, 2, dtype=cr.float64))
    assert like.shape == (4, 2) and like.dtype is cr.float64


def test_manual_seed_reproducibility() -> None:
    cr.manual_seed(123)
    a = (cr.randn(5), cr.rand(3), cr.randint(0, 100, (4,)))
    cr.manual_seed(123)
    b = (cr.randn(5), cr.rand(3), cr.randint(0, 100, (4,)))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    cr.manual_seed(124)
    assert not np.array_equal(cr.randn(5).numpy(), a[0].numpy())


def test_like_functions_keep_shape_dtype() -> None:
    x = cr.tensor([[1, 2, 3]], dtype=cr.int32)
    for fn in (cr.zeros_like, cr.ones_like):
        t = fn(x)
        assert t.shape == (1, 3) and t.dtype is cr.int32
    assert cr.zeros_like(x, dtype=cr.float32).dtype is cr.float32
    assert cr.ones_like(x).tolist() == [[1, 1, 1]]
    assert cr.ones_like(cr.zeros(2), requires_grad=True).requires_grad


CREATION = {
    "tensor": lambda m, **k: m.tensor([1.0, 2.0], **k),
    "zeros": lambda m, **k: m.zeros(2, 3, **k),
    "ones": lambda m, **k: m.ones((2,), **k),
    "full": lambda m, **k: m.full((2,), 1.5, **k),
    "empty": lambda m, **k: m.empty(2, **k),
    "arange": lambda m, **k: m.arange(0, 3, 1, **k),
    "linspace": lambda m, **k: m.linspace(0, 1, 4, **k),
    "eye": lambda m, **k: m.eye(3, **k),
    "randn": lambda m, **k: m.randn(2, **k),
    "rand": lambda m, **k: m.rand(2, **k),
    "zeros_like": lambda m, **k: m.zeros_like(m.ones(2), **k),
    "ones_like": lambda m, **k: m.ones_like(m.ones(2), **k),
    "full_like": lambda m, **k: m.full_like(m.ones(2), 3.0, **k),
    "randn_like": lambda m, **k: m.randn_like(m.ones(2), **k),
}


@pytest.mark.parametrize("name", list(CREATION))
@pytest.mark.parametrize("dtype", ["float64", "float16", "int32", "bool"])
def test_creation_keywords_match_torch(name, dtype) -> None:
    """dtype=, device="cpu", requires_grad= on every creation function, as torch does it."""
    torch = pytest.importorskip("torch")
    results = []
    for m in (torch, cr):
        kw = {"dtype": getattr(m, dtype), "device": "cpu"}
        if dtype.startswith("float"):
            kw["requires_grad"] = True
        try:
            t = CREATION[name](m, **kw)
        except Exception as e:  # the error type is what is compared
            results.append(type(e).__name__)
            continue
        results.append((_torch_name(t.dtype), tuple(t.shape), t.requires_grad, str(t.device)))
    if name in ("arange", "linspace") and dtype == "bool":
        pytest.skip("torch has no bool arange/linspace kernels; chainrule allows them")
    assert results[1] == results[0]


def test_as_tensor_device_keyword() -> None:
    t = cr.as_tensor([1.0, 2.0], dtype=cr.float64, device="cpu")
    assert t.dtype is cr.float64 and str(t.device) == "cpu"


def test_random_floats_refuse_integer_dtypes() -> None:
    # torch's messages: '"normal_kernel_cpu" not implemented for 'Long'' etc.
    for call, kernel, name in ((lambda: cr.randn(2, dtype=cr.int64), "normal_kernel_cpu", "Long"),
                               (lambda: cr.rand(2, dtype=cr.bool), "check_uniform_bounds", "Bool"),
                               (lambda: cr.zeros(2, dtype=cr.int32).normal_(),
                                "normal_kernel_cpu", "Int")):
        with pytest.raises(NotImplementedError, match=f'"{kernel}" not implemented for .{name}.'):
            call()


def test_creation_errors() -> None:
    with pytest.raises(RuntimeError, match="negative dimension"):
        cr.zeros(2, -1)
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        cr.zeros(2, dtype=cr.int64, requires_grad=True)
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        cr.tensor([1, 2], requires_grad=True)


# ---- attributes ----------------------------------------------------------------------------------
def test_basic_attributes() -> None:
    x = cr.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple) and repr(x.shape).endswith(
        "Size([2, 3, 4])")
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.dtype is cr.float32 and str(x.device) == "cpu" and x.device.type == "cpu"
    assert x.grad is None and not x.requires_grad and x.is_leaf and x.grad_fn is None
    assert len(x) == 2


def test_type_names_and_device_repr_match_torch() -> None:
    torch = pytest.importorskip("torch")
    for name in ("float32", "float64", "float16", "int64", "int32", "bool"):
        c, t = cr.ones(2, dtype=getattr(cr, name)), torch.ones(2, dtype=getattr(torch, name))
        assert c.type() == t.type().replace("torch.", "chainrule.")
    assert repr(cr.ones(1).device) == repr(torch.ones(1).device)
    assert cr.ones(2, 3).ndimension() == 2
    assert cr.ones(2).type(cr.float64).dtype is cr.float64


def test_size_bad_dim_names_dim_and_ndim() -> None:
    with pytest.raises(IndexError) as e:
        cr.zeros(2, 3).size(2)
    assert "2" in str(e.value) and "[-2, 1]" in str(e.value)


def test_T_and_mT_match_torch() -> None:
    torch = pytest.importorskip("torch")
    a = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(cr.tensor(a).T.numpy(), torch.tensor(a).permute(2, 1, 0).numpy())
    np.testing.assert_array_equal(cr.tensor(a).mT.numpy(), torch.tensor(a).mT.numpy())
    assert cr.tensor(a[0]).T.shape == (4, 3)
    with pytest.raises(RuntimeError, match="mT"):
        _ = cr.zeros(3).mT


def test_grad_fn_and_is_leaf() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.grad_fn.name() == "MulBackward0"
    assert y.grad_fn.next_functions[0][0].name() == "AccumulateGrad"
    assert cr.tensor([1.0]).is_leaf
    with cr.no_grad():
        z = x * 2
    assert z.is_leaf and not z.requires_grad and z.grad_fn is None


def test_grad_setter_checks_type_shape_dtype() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    x.grad = cr.tensor([0.5, 0.5])
    assert x.grad.tolist() == [0.5, 0.5]
    (x * 2).sum().backward()
    assert x.grad.tolist() == [2.5, 2.5]  # accumulates onto the assigned gradient
    with pytest.raises(TypeError):
        x.grad = [1.0, 2.0]
    with pytest.raises(RuntimeError, match="size"):
        x.grad = cr.ones(3)
    with pytest.raises(RuntimeError, match="dtype"):
        x.grad = cr.ones(2, dtype=cr.float64)
    x.grad = None
    assert x.grad is None


def test_data_is_detached_and_shares_memory() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    d = x.data
    assert not d.requires_grad and d.is_leaf
    d[0] = 5.0
    assert x.tolist()[0] == 5.0
    x.data = cr.tensor([7.0, 8.0])
    assert x.tolist() == [7.0, 8.0] and x.requires_grad


# ---- methods -------------------------------------------------------------------------------------
def test_numpy_item_tolist() -> None:
    x = cr.tensor([[1.5, 2.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x.tolist() == [[1.5, 2.0]]
    assert cr.tensor(2.5).item() == 2.5 and isinstance(cr.tensor(3).item(), int)
    assert isinstance(cr.tensor(True).item(), bool)
    assert cr.tensor([[4.0]]).item() == 4.0
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="detach"):
        cr.tensor([1.0], requires_grad=True).numpy()
    assert float(cr.tensor(2.5)) == 2.5 and int(cr.tensor(3)) == 3


def test_detach_shares_memory_and_cuts_graph() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.tolist() == [3.0, 6.0]
    d[0] = 100.0
    assert y.tolist()[0] == 100.0  # shares memory like torch
    (d * x).sum().backward()
    assert x.grad.tolist() == [100.0, 6.0]  # d is a constant


def test_clone_copies_and_is_differentiable() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.grad_fn is not None and not c.is_leaf
    (c * c).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    p = cr.tensor([1.0, 2.0])
    q = p.clone()
    q[0] = 9.0
    assert p.tolist() == [1.0, 2.0]


def test_requires_grad_() -> None:
    x = cr.tensor([1.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="floating point"):
        cr.tensor([1]).requires_grad_()


def test_zero_() -> None:
    x = cr.tensor([1.0, 2.0])
    assert x.zero_() is x and x.tolist() == [0.0, 0.0]
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    w.grad.zero_()
    assert w.grad.tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.zero_()
    with cr.no_grad():
        w.zero_()
    assert w.tolist() == [0.0, 0.0]


def test_to_cpu_float_double() -> None:
    x = cr.tensor([1, 2])
    assert x.to(cr.float32).dtype is cr.float32
    assert x.to("cpu") is x and x.cpu() is x
    assert x.to(dtype=cr.float64).dtype is cr.float64
    assert x.to("cpu", cr.float64).dtype is cr.float64
    assert x.float().dtype is cr.float32 and x.double().dtype is cr.float64
    assert x.to(cr.tensor([1.0], dtype=cr.float64)).dtype is cr.float64
    assert x.float().to(cr.float32, copy=True) is not x
    # a cast is differentiable and the gradient comes back in the input's dtype
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    d = w.double()
    assert d.dtype is cr.float64 and d.grad_fn is not None
    (d * d).sum().backward()
    assert w.grad.dtype is cr.float32 and w.grad.tolist() == [2.0, 4.0]


def test_array_len_iter() -> None:
    x = cr.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    a = np.asarray(x)
    assert isinstance(a, np.ndarray) and a.shape == (3, 2)
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3 and all(isinstance(r, cr.Tensor) for r in rows)
    assert rows[2].tolist() == [5.0, 6.0]
    with pytest.raises(TypeError):
        len(cr.tensor(1.0))
    with pytest.raises(TypeError):
        iter(cr.tensor(1.0))


def test_iteration_is_differentiable() -> None:
    x = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    total = sum((r * (i + 1)).sum() for i, r in enumerate(x))
    total.backward()
    assert x.grad.tolist() == [[1.0, 1.0], [2.0, 2.0]]


# ---- __setitem__ ---------------------------------------------------------------------------------
def test_setitem_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
    c, t = cr.tensor(a), torch.tensor(a)
    for key, value in [((0, 1), 100.0), ((slice(None), 2), -1.0), ((1,), 5.0),
                       ((Ellipsis, 0), 9.0)]:
        c[key] = value
        t[key] = value
    c[c > 50] = 0.0
    t[t > 50] = 0.0
    c[cr.tensor([0, 2])] = cr.tensor([1.0, 2.0, 3.0, 4.0])
    t[torch.tensor([0, 2])] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(c.numpy(), t.numpy())


SETITEM_CASES = [
    ("list", lambda m: ([0, 1], -1.0)),
    ("negative ints", lambda m: ((-1, -1), 7.0)),
    ("None", lambda m: ((None, 0), 3.0)),
    ("ellipsis", lambda m: ((Ellipsis, 1), m.tensor([1.0, 2.0, 3.0]))),
    ("0-d index tensor", lambda m: (m.tensor(1), 9.0)),
    ("index tensors", lambda m: ((m.tensor([0, 1]), m.tensor([2, 0])), m.tensor([[1.0], [2.0]]))),
    ("step slice", lambda m: ((slice(None), slice(0, 3, 2)), 4.0)),
    ("bool mask on dim 0", lambda m: (m.tensor([True, False]), 5.0)),
    ("int value into float", lambda m: ((1, 1, 1), m.tensor(5))),
    ("float64 value", lambda m: ((1, 1), m.tensor([1.0, 2.0, 3.0, 4.0], dtype=m.float64))),
]


@pytest.mark.parametrize("case", [c[1] for c in SETITEM_CASES], ids=[c[0] for c in SETITEM_CASES])
def test_setitem_cases_match_torch(case) -> None:
    torch = pytest.importorskip("torch")
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    results = []
    for m in (torch, cr):
        t = m.tensor(a.copy())
        key, value = case(m)
        t[key] = value
        results.append(t.numpy())
    np.testing.assert_array_equal(results[1], results[0])


def test_setitem_on_graph_tensors_is_recorded_as_torch() -> None:
    torch = pytest.importorskip("torch")
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in "
                                           "an in-place operation"):
        x[0] = 3.0
    grads = []
    for m in (torch, cr):
        a = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = a * 2
        y[0] = 3.0  # y's history now goes through the assignment
        y[1:] = a[:2] * a[1:]
        (y * y).sum().backward()
        grads.append(a.grad.tolist())
        z = a * 2
        z[1:] = z[1:] * a[:2]  # the product saved the view z[1:], which the assignment changes
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()
    assert grads[1] == grads[0]
    with cr.no_grad():
        x[0] = 3.0
    assert x.tolist() == [3.0, 2.0] and x._version == 1


def test_setitem_of_a_value_that_requires_grad_is_recorded_as_torch() -> None:
    torch = pytest.importorskip("torch")
    results = []
    for m in (torch, cr):
        x = m.zeros(3)
        v = m.tensor(2.0, requires_grad=True)
        x[0] = v
        x[[1, 2]] = v * 3
        assert x.requires_grad
        (x * m.tensor([1.0, 2.0, 4.0])).sum().backward()
        results.append((x.tolist(), v.grad.item()))
    assert results[1] == results[0]
    x = cr.zeros(3)
    with cr.no_grad():
        x[1] = cr.tensor(2.0, requires_grad=True)
    assert x.tolist() == [0.0, 2.0, 0.0] and not x.requires_grad


def test_setitem_shape_error_names_shapes() -> None:
    x = cr.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"\[3\].*\[4\]"):
        x[0] = cr.zeros(4)
    with pytest.raises(IndexError, match=r"\[2, 3\]"):
        x[5] = 1.0


# ---- repr ----------------------------------------------------------------------------------------
REPR_CASES = [
    ("scalar", lambda m: m.tensor(3.5)),
    ("neg scalar", lambda m: m.tensor(-0.5)),
    ("int scalar", lambda m: m.tensor(3)),
    ("bool scalar", lambda m: m.tensor(True)),
    ("vector", lambda m: m.tensor([1.5, -2.25, 3.0])),
    ("int-valued floats", lambda m: m.tensor([[1.0, -2.0], [3.0, 4.0]])),
    ("matrix", lambda m: m.tensor([[0.1234567, -12.5], [100.25, 3.0]])),
    ("ints", lambda m: m.tensor([[1, -20], [3, 4]])),
    ("bools", lambda m: m.tensor([[True, False], [False, True]])),
    ("sci", lambda m: m.tensor([0.001, 1000.0])),
    ("tiny", lambda m: m.tensor([1e-5, 1.0])),
    ("huge", lambda m: m.tensor([1e10, 1.0])),
    ("nonfinite", lambda m: m.tensor([math.nan, 1.0, -math.inf])),
    ("float64", lambda m: m.tensor([1.0, 2.5], dtype=m.float64)),
    ("int32", lambda m: m.tensor([1, 2], dtype=m.int32)),
    ("empty", lambda m: m.tensor([])),
    ("empty 2-d", lambda m: m.zeros(2, 0)),
    ("requires_grad", lambda m: m.tensor([1.0, -2.0], requires_grad=True)),
    ("grad_fn", lambda m: m.tensor([1.0, -2.0], requires_grad=True) * 2),
    ("grad_fn scalar", lambda m: (m.tensor([1.0, -2.0], requires_grad=True) * 2).sum()),
    ("float64 grad", lambda m: m.tensor([[1.5, 2.0]], dtype=m.float64, requires_grad=True)),
    ("3-d", lambda m: m.arange(24).reshape(2, 3, 4) - 5),
    ("wrapped line", lambda m: m.arange(40.0) / 3),
    ("summarized", lambda m: m.arange(2000.0)),
    ("summarized 2-d", lambda m: m.arange(1600).reshape(40, 40)),
]


@pytest.mark.parametrize("make", [c[1] for c in REPR_CASES], ids=[c[0] for c in REPR_CASES])
def test_repr_matches_torch(make) -> None:
    torch = pytest.importorskip("torch")
    expected = repr(make(torch)).replace("torch.", "chainrule.")
    assert repr(make(cr)) == expected


def test_repr_with_float64_default() -> None:
    torch = pytest.importorskip("torch")
    try:
        cr.set_default_dtype(cr.float64)
        torch.set_default_dtype(torch.float64)
        for make in (lambda m: m.tensor([1.5]), lambda m: m.tensor([1.5], dtype=m.float32)):
            assert repr(make(cr)) == repr(make(torch)).replace("torch.", "chainrule.")
    finally:
        cr.set_default_dtype(cr.float32)
        torch.set_default_dtype(torch.float32)


def test_non_leaf_grad_warns_like_torch() -> None:
    x = cr.tensor([1.0], requires_grad=True)
    y = x * 2
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None
    y.retain_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert y.grad is None
        y.sum().backward()
        assert y.grad.tolist() == [1.0]


def test_setitem_without_graph_matches_torch_values_versions_and_views() -> None:
    torch = pytest.importorskip("torch")
    results = []
    for lib in (cr, torch):
        x = lib.zeros(3, 5, dtype=lib.long)
        v = x[1]  # a view: sees the writes, shares the version counter
        x[1, 1:4] = lib.tensor([3, 4, 5])
        x[2] = 7.9  # cast as copy_ (truncation)
        x[:, 0] = lib.tensor([1, 2, 3])[:, None][:, 0]
        x[0, ::2] = -1
        results.append((x.tolist(), v.tolist(), x._version, v._version))
    assert results[0] == results[1]
    # a saved tensor written through a basic key is still caught by backward
    w = cr.ones(4, requires_grad=True)
    y = cr.ones(4)
    z = (w * y).sum()
    y[1:3] = 5.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()
    # a read-only array stays read-only; broadcasting and index errors as before
    ro = np.zeros(3)
    ro.setflags(write=False)
    with pytest.raises(RuntimeError, match="read-only"):
        cr.from_numpy(ro)[0:2] = 1.0
    with pytest.raises(RuntimeError, match=r"\[2\].*\[3\]"):
        cr.zeros(4)[0:2] = cr.zeros(3)


def test_stack_matches_torch_with_gradients() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)) for _ in range(4)]
    for dim in (0, 1, 2, -1):
        xs = [cr.tensor(a, requires_grad=True) for a in arrays]
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        y, ty = cr.stack(xs, dim), torch.stack(ts, dim)
        assert y.grad_fn.name() == ty.grad_fn.name()
        g = rng.standard_normal(tuple(ty.shape))
        y.backward(cr.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_array_equal(y.detach().numpy(), ty.detach().numpy())
        for x, t in zip(xs, ts):
            np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())
    assert cr.autograd.gradgradcheck(lambda *x: cr.stack(x, 1),
                                     [cr.tensor(a, requires_grad=True) for a in arrays])
