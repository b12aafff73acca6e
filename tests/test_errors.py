"""Errors that say what went wrong: gradcheck reports, bad dims, shape mismatches, misuse."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import Function, GradcheckError, gradcheck, gradgradcheck


def _f64(values, requires_grad: bool = True) -> cr.Tensor:
    return cr.tensor(values, dtype=cr.float64, requires_grad=requires_grad)


# ---- gradcheck / gradgradcheck pass on correct functions -----------------------------------------
@pytest.mark.parametrize("fn", [
    lambda x, y: x * y + x.sin(),
    lambda x, y: (x @ y.T).tanh(),
    lambda x, y: (x.exp() / (1 + y * y)).sum(dim=1),
    lambda x, y: (x - y).abs().pow(1.5),
], ids=["mul_sin", "matmul_tanh", "div_sum", "abs_pow"])
def test_gradcheck_and_gradgradcheck_pass(fn) -> None:
    rng = np.random.default_rng(0)
    x = _f64(rng.uniform(0.5, 1.5, (2, 3)))
    y = _f64(rng.uniform(-1.5, -0.5, (2, 3)))
    assert gradcheck(fn, (x, y))
    assert gradgradcheck(fn, (x, y))


def test_gradcheck_only_checks_inputs_that_require_grad() -> None:
    x = _f64([1.0, 2.0])
    c = _f64([3.0, 4.0], requires_grad=False)
    assert gradcheck(lambda a, b: a * b, (x, c))


def test_gradcheck_accepts_non_tensor_inputs() -> None:
    x = _f64([1.0, 2.0])
    assert gradcheck(lambda a, k: a * k, (x, 3))
    assert gradgradcheck(lambda k, a: (a * a * k).sin(), (2.5, x))


def test_gradcheck_warns_for_float32_inputs() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="double precision"):
        gradcheck(lambda a: a * 2, (x,), eps=1e-2, atol=1e-2, rtol=1e-2)


# ---- gradcheck on a wrong backward ---------------------------------------------------------------
class WrongSquare(Function):
    """y = x²·w, with a backward that is wrong for x at one element only."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = g * 2 * x * w
        bump = np.zeros(x.shape)
        bump[1, 2] = 1.0  # the bug: d y[1,2] / d x[1,2] is off by one
        return gx + cr.tensor(bump) * g, g * x * x


def test_gradcheck_error_names_output_input_element_and_values() -> None:
    x = _f64(np.arange(1.0, 7.0).reshape(2, 3))
    w = _f64(np.full((2, 3), 0.5))
    with pytest.raises(GradcheckError) as e:
        gradcheck(WrongSquare.apply, (x, w))
    msg = str(e.value)
    assert "output 0" in msg
    assert "input 0" in msg and "input 1" not in msg
    assert "output[1, 2]" in msg and "input[1, 2]" in msg
    analytic = 2 * 6.0 * 0.5 + 1.0
    numeric = 2 * 6.0 * 0.5
    m = re.search(r"analytic ([-\d.e+]+) vs numerical ([-\d.e+]+)", msg)
    assert m, msg
    assert float(m.group(1)) == pytest.approx(analytic)
    assert float(m.group(2)) == pytest.approx(numeric, rel=1e-6)
    assert "WrongSquare" in msg  # names the gate that made the output


def test_gradcheck_error_for_the_second_input_and_second_output() -> None:
    class WrongSecond(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a + b, a * b

        @staticmethod
        def backward(ctx, g_sum, g_prod):
            a, b = ctx.saved_tensors
            return g_sum + g_prod * b, g_sum + g_prod * a * 3  # wrong: factor 3

    a = _f64([1.0, 2.0])
    b = _f64([3.0, 4.0])
    with pytest.raises(GradcheckError) as e:
        gradcheck(WrongSecond.apply, (a, b))
    msg = str(e.value)
    assert "output 1" in msg and "input 1" in msg
    assert "output[1]" in msg and "input[1]" in msg  # |3a - a| is largest at a=2
    m = re.search(r"analytic ([-\d.e+]+) vs numerical ([-\d.e+]+)", msg)
    assert float(m.group(1)) == pytest.approx(6.0) and float(m.group(2)) == pytest.approx(2.0)


def test_gradcheck_raise_exception_false_returns_false() -> None:
    x = _f64(np.ones((2, 3)))
    w = _f64(np.ones((2, 3)))
    assert gradcheck(WrongSquare.apply, (x, w), raise_exception=False) is False


def test_gradgradcheck_catches_a_wrong_second_derivative() -> None:
    class DetachedCube(Function):
        """First derivative right, but computed from raw numbers: no second derivative."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * cr.tensor(3 * x.detach().numpy() ** 2)

    x = _f64([0.5, 1.5])
    assert gradcheck(DetachedCube.apply, (x,))
    with pytest.raises(GradcheckError, match="input 0"):
        gradgradcheck(DetachedCube.apply, (x,))


# ---- errors that name the op, the argument and the shapes ----------------------------------------
BAD_DIMS = [
    ("sum", lambda x: x.sum(dim=2), 2), ("mean", lambda x: x.mean(-3), -3),
    ("softmax", lambda x: x.softmax(5), 5), ("size", lambda x: x.size(2), 2),
    ("transpose", lambda x: x.transpose(0, 2), 2), ("max", lambda x: x.max(dim=3), 3),
    ("cumsum", lambda x: x.cumsum(2), 2), ("squeeze", lambda x: x.squeeze(3), 3),
    ("cat", lambda x: cr.cat([x, x], 2), 2), ("argmax", lambda x: x.argmax(2), 2),
    ("var", lambda x: x.var(2), 2), ("flip", lambda x: x.flip(3), 3),
    ("unbind", lambda x: x.unbind(2), 2),
    ("gather", lambda x: x.gather(2, cr.zeros(2, 3, dtype=cr.int64)), 2),
    ("logsumexp", lambda x: x.logsumexp(2), 2), ("norm", lambda x: x.norm(dim=2), 2),
]


@pytest.mark.parametrize("name,call,dim", BAD_DIMS, ids=[c[0] for c in BAD_DIMS])
def test_bad_dim_names_op_dim_and_ndim(name, call, dim) -> None:
    with pytest.raises(IndexError) as e:
        call(cr.zeros(2, 3))
    msg = str(e.value)
    assert name in msg and "Dimension out of range" in msg, msg
    assert "[-2, 1]" in msg and f"got {dim}" in msg and "ndim 2" in msg, msg


def test_bad_dim_for_ops_that_add_a_dim() -> None:
    for call in (lambda x: x.unsqueeze(4), lambda x: cr.stack([x, x], 4)):
        with pytest.raises(IndexError, match=r"\[-3, 2\], but got 4"):
            call(cr.zeros(2, 3))


@pytest.mark.parametrize("op,name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"), (lambda a, b: a - b, "sub"),
    (lambda a, b: a / b, "div"), (lambda a, b: cr.maximum(a, b), "maximum"),
])
def test_broadcast_mismatch_names_op_and_both_shapes(op, name) -> None:
    with pytest.raises(RuntimeError) as e:
        op(cr.zeros(2, 3), cr.zeros(4))
    msg = str(e.value)
    assert name in msg and "[2, 3]" in msg and "[4]" in msg
    assert "The size of tensor a (3) must match the size of tensor b (4)" in msg


def test_matmul_mismatch_names_op_and_shapes() -> None:
    with pytest.raises(RuntimeError) as e:
        cr.zeros(2, 3) @ cr.zeros(4, 2)
    msg = str(e.value)
    assert "matmul" in msg and "2x3" in msg and "4x2" in msg


@pytest.mark.parametrize("name,call", [
    ("cat", lambda a, b: cr.cat([a, b])),
    ("stack", lambda a, b: cr.stack([a, b])),
    ("where", lambda a, b: cr.where(a > 0, a, b)),
    ("masked_fill", lambda a, b: a.masked_fill(b > 0, 1.0)),
    ("matmul", lambda a, b: cr.bmm(a[None], b[None])),
    ("dot", lambda a, b: cr.dot(a[0], b[:, 0])),
    ("outer", lambda a, b: cr.outer(a, b)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_shape_errors_name_op_and_shapes(name, call) -> None:
    a, b = cr.zeros(2, 3), cr.zeros(4, 2)
    with pytest.raises(RuntimeError) as e:
        call(a, b)
    msg = str(e.value)
    assert name in msg, msg
    assert any(f in msg for f in ("2, 3]", "[3]")) and any(f in msg for f in ("4, 2]", "[4]")), msg


def test_reshape_error_names_shapes() -> None:
    with pytest.raises(RuntimeError, match=r"reshape.*\[4, 2\].*size 6.*\[2, 3\]"):
        cr.zeros(2, 3).reshape(4, 2)


def test_requires_grad_on_integer_tensor() -> None:
    for make in (lambda: cr.tensor([1, 2], requires_grad=True),
                 lambda: cr.arange(3).requires_grad_(),
                 lambda: cr.ones(2, dtype=cr.int32, requires_grad=True)):
        with pytest.raises(RuntimeError, match="floating point"):
            make()


def test_non_scalar_backward_message() -> None:
    y = cr.ones(3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        y.backward()


def test_second_backward_message_says_what_to_do() -> None:
    x = cr.tensor(1.0, requires_grad=True)
    y = (x * 2).exp()
    y.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        y.backward()


def test_numpy_on_requires_grad_says_detach() -> None:
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        cr.ones(2, requires_grad=True).numpy()


def test_inplace_on_leaf_requiring_grad() -> None:
    x = cr.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1.0)


def test_unknown_dtype_name() -> None:
    with pytest.raises(TypeError, match="complex64"):
        cr.zeros(2, dtype="complex64")


def test_errors_match_torch_types() -> None:
    torch = pytest.importorskip("torch")
    cases = [
        lambda m: m.zeros(2, 3).sum(dim=2),
        lambda m: m.zeros(2, 3) + m.zeros(4),
        lambda m: m.zeros(2, 3) @ m.zeros(4, 2),
        lambda m: m.tensor([1, 2], requires_grad=True),
        lambda m: m.zeros(2, requires_grad=True).numpy(),
        lambda m: (m.ones(2, requires_grad=True) * 2).backward(),
        lambda m: m.zeros(3).item(),
        lambda m: len(m.tensor(1.0)),
        lambda m: m.zeros(2, 3).size(5),
    ]
    for case in cases:
        with pytest.raises(Exception) as te:
            case(torch)
        with pytest.raises(Exception) as ce:
            case(cr)
        assert isinstance(ce.value, type(te.value)), (te.value, ce.value)
