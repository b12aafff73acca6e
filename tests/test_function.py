"""cr.autograd.Function: custom gates written exactly as with torch.autograd.Function."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import Function, gradcheck, gradgradcheck, once_differentiable


def _f64(*values, requires_grad: bool = True) -> cr.Tensor:
    return cr.tensor(list(values), dtype=cr.float64, requires_grad=requires_grad)


# ---- the lecture's sigmoid gate ------------------------------------------------------------------
class Sigmoid(Function):
    """σ(x) = 1/(1+e^-x) as one gate; local gradient σ(1-σ)."""

    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + (-x).exp())
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        return grad * s * (1 - s)


def _neuron(w, x, sigmoid):
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    return sigmoid(dot)


def test_grouped_sigmoid_gate_equals_decomposed_circuit() -> None:
    grads = []
    for sigmoid in (Sigmoid.apply, lambda z: 1 / (1 + (-z).exp())):
        w = _f64(2.0, -3.0, -3.0)
        x = _f64(-1.0, -2.0)
        out = _neuron(w, x, sigmoid)
        out.backward()
        grads.append((out.item(), w.grad.numpy().copy(), x.grad.numpy().copy()))
    (o1, w1, x1), (o2, w2, x2) = grads
    assert o1 == pytest.approx(o2)
    np.testing.assert_allclose(w1, w2, rtol=1e-12)
    np.testing.assert_allclose(x1, x2, rtol=1e-12)
    np.testing.assert_allclose(w1, [-0.19661193, -0.39322387, 0.19661193], rtol=1e-6)


def test_sigmoid_gate_gradcheck_and_node() -> None:
    x = _f64(-2.0, 0.0, 1.5)
    assert gradcheck(Sigmoid.apply, (x,))
    y = Sigmoid.apply(x)
    assert y.grad_fn.name() == "SigmoidBackward" and not y.is_leaf
    np.testing.assert_allclose(y.detach().numpy(), 1 / (1 + np.exp([2.0, 0.0, -1.5])))


# ---- ctx API -------------------------------------------------------------------------------------
class MulConst(Function):
    """y = x·k for a Python number k (a non-tensor argument gets a None gradient)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.k, None


def test_non_tensor_arguments_and_ctx_attributes() -> None:
    x = _f64(1.0, 2.0)
    y = MulConst.apply(x, 3.0)
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    assert gradcheck(lambda t: MulConst.apply(t, -2.5), (x,))


class Bilinear(Function):
    """z = a·b, recording which inputs needed gradients."""

    seen: list = []

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        Bilinear.seen.append(ctx.needs_input_grad)
        a, b = ctx.saved_tensors
        ga = grad * b if ctx.needs_input_grad[0] else None
        gb = grad * a if ctx.needs_input_grad[1] else None
        return ga, gb


def test_needs_input_grad_and_save_for_backward() -> None:
    Bilinear.seen.clear()
    a = _f64(1.0, 2.0)
    b = _f64(3.0, 4.0, requires_grad=False)
    Bilinear.apply(a, b).sum().backward()
    assert Bilinear.seen == [(True, False)]
    assert a.grad.tolist() == [3.0, 4.0] and b.grad is None
    b.requires_grad_()
    assert gradcheck(Bilinear.apply, (a, b))


def test_forward_runs_without_recording() -> None:
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            seen.append(cr.is_grad_enabled())
            y = x * 2
            seen.append(y.requires_grad)
            return y

        @staticmethod
        def backward(ctx, g):
            return g * 2

    out = Probe.apply(_f64(1.0))
    assert seen == [False, False] and out.requires_grad


def test_no_graph_when_no_input_requires_grad() -> None:
    y = Sigmoid.apply(_f64(1.0, requires_grad=False))
    assert not y.requires_grad and y.grad_fn is None
    with cr.no_grad():
        z = Sigmoid.apply(_f64(1.0))
    assert not z.requires_grad


class SortWithIndices(Function):
    """Two outputs: sorted values (differentiable) and the permutation (not)."""

    @staticmethod
    def forward(ctx, x):
        xn = x.detach().numpy()
        idx = np.argsort(xn, kind="stable")
        values = cr.tensor(xn[idx])
        order = cr.tensor(idx.astype(np.float64))  # float on purpose: marked non-differentiable
        ctx.mark_non_differentiable(order)
        ctx.save_for_backward(cr.tensor(idx))
        return values, order

    @staticmethod
    def backward(ctx, g_values, g_order):
        (idx,) = ctx.saved_tensors
        out = np.zeros(g_values.shape, g_values.numpy().dtype)
        out[idx.numpy()] = g_values.numpy()
        return cr.tensor(out)


def test_multiple_outputs_and_mark_non_differentiable() -> None:
    x = _f64(3.0, 1.0, 2.0)
    values, order = SortWithIndices.apply(x)
    assert values.tolist() == [1.0, 2.0, 3.0] and order.tolist() == [1.0, 2.0, 0.0]
    assert values.requires_grad and not order.requires_grad
    (values * cr.tensor([1.0, 10.0, 100.0], dtype=cr.float64)).sum().backward()
    assert x.grad.tolist() == [100.0, 1.0, 10.0]


class SplitSum(Function):
    """Two differentiable outputs; an unused one gets a zero gradient (materialized)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, ga, gb):
        assert ga is not None and gb is not None
        return ga * 2 + gb * 3


def test_multiple_outputs_gradients_and_materialized_zeros() -> None:
    x = _f64(1.0, 2.0)
    a, b = SplitSum.apply(x)
    (a.sum() + b.sum()).backward()
    assert x.grad.tolist() == [5.0, 5.0]
    x.grad = None
    a, b = SplitSum.apply(x)
    b.sum().backward()  # a unused: its gradient arrives as zeros
    assert x.grad.tolist() == [3.0, 3.0]
    assert gradcheck(SplitSum.apply, (x,))


class Cube(Function):
    """y = x³ with the setup_context style (forward without ctx)."""

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x**2


def test_setup_context_style() -> None:
    x = _f64(2.0, -1.0)
    Cube.apply(x).sum().backward()
    assert x.grad.tolist() == [12.0, 3.0]
    assert gradcheck(Cube.apply, (x,))


def test_double_backward_through_custom_function() -> None:
    """backward written with differentiable ops: second derivative of x³ is 6x."""
    x = _f64(2.0, -1.0)
    (g,) = cr.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    assert g.requires_grad and g.tolist() == [12.0, 3.0]
    (gg,) = cr.autograd.grad(g.sum(), x)
    assert gg.tolist() == [12.0, -6.0]
    assert gradgradcheck(Cube.apply, (x,))
    assert gradgradcheck(Sigmoid.apply, (_f64(0.3, -1.2),))


class OnceExp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        assert not cr.is_grad_enabled()
        return grad * y


def test_once_differentiable() -> None:
    x = _f64(0.5)
    OnceExp.apply(x).backward()
    assert x.grad.item() == pytest.approx(np.exp(0.5))
    (g,) = cr.autograd.grad(OnceExp.apply(x), x, create_graph=True)
    assert not g.requires_grad  # no graph recorded through a once_differentiable backward
    (g,) = cr.autograd.grad(OnceExp.apply(x).exp(), x, create_graph=True)
    assert g.requires_grad and g.item() == pytest.approx(np.exp(0.5) * np.exp(np.exp(0.5)))
    with pytest.raises(RuntimeError, match="differentiate twice.*once_differentiable"):
        g.backward()


def test_saved_tensors_freed_after_backward() -> None:
    x = _f64(1.0)
    y = Sigmoid.apply(x)
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()
    z = Sigmoid.apply(x)
    z.backward(retain_graph=True)
    z.backward()
    s = 1 / (1 + np.exp(-1.0))
    assert x.grad.item() == pytest.approx(3 * s * (1 - s))


def test_wrong_number_of_gradients_is_an_error() -> None:
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    y = Bad.apply(_f64(1.0), _f64(2.0))
    with pytest.raises(RuntimeError, match=r"incorrect number of gradients \(expected 2, got 1\)"):
        y.backward()


def test_gradient_for_a_non_tensor_argument_is_an_error() -> None:
    class Swapped(Function):
        @staticmethod
        def forward(ctx, k, x):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g * 3, None  # wrong order: the number k gets a gradient

    x = _f64(1.0, 2.0)
    with pytest.raises(RuntimeError, match="position 1, but the corresponding forward input"):
        Swapped.apply(3.0, x).sum().backward()


def test_wrong_gradient_shape_is_an_error_unless_reducible() -> None:
    def gate(grad_shape):
        class Gate(Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, g):
                return cr.ones(*grad_shape, dtype=cr.float64)

        return Gate

    x = _f64(1.0, 2.0)
    with pytest.raises(RuntimeError, match=r"invalid gradient.*\[3\].*\[2\]"):
        gate((3,)).apply(x).sum().backward()
    gate((4, 2)).apply(x).sum().backward()  # broadcastable: summed back, as in PyTorch
    assert x.grad.tolist() == [4.0, 4.0]


def test_custom_function_repr_matches_torch() -> None:
    torch = pytest.importorskip("torch")

    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    expected = repr(Twice.apply(torch.ones(2, requires_grad=True)))
    got = repr(MulConst.apply(cr.ones(2, requires_grad=True), 2.0))
    assert got == expected.replace("TwiceBackward", "MulConstBackward")


def test_custom_function_matches_torch() -> None:
    torch = pytest.importorskip("torch")

    class TorchCube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x**2

    xv = [0.5, -1.5, 2.0]
    tx = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad(TorchCube.apply(tx).sin().sum(), tx, create_graph=True)
    (tgg,) = torch.autograd.grad(tg.sum(), tx)
    cx = _f64(*xv)
    (cg,) = cr.autograd.grad(Cube.apply(cx).sin().sum(), cx, create_graph=True)
    (cgg,) = cr.autograd.grad(cg.sum(), cx)
    np.testing.assert_allclose(cg.detach().numpy(), tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(cgg.numpy(), tgg.numpy(), rtol=1e-12)


def test_function_inside_larger_graph_with_broadcast_inputs() -> None:
    a = _f64(1.0, 2.0, 3.0)
    b = cr.tensor([[2.0], [3.0]], dtype=cr.float64, requires_grad=True)
    assert gradcheck(lambda p, q: Bilinear.apply(p.exp(), q * 1.0 + p.sum()).tanh(), (a, b))
