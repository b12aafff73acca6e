"""The backpropagation lecture's worked examples, with its numbers."""

from __future__ import annotations

import math
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _leaves(*values, dtype=cr.float64):
    return [cr.tensor(v, dtype=dtype, requires_grad=True) for v in values]


def _numeric_grad(f, point: list, h: float = 1e-6) -> list:
    """Central differences of a plain-Python function, one input at a time."""
    out = []
    for i in range(len(point)):
        plus, minus = list(point), list(point)
        plus[i] += h
        minus[i] -= h
        out.append((f(*plus) - f(*minus)) / (2 * h))
    return out


# ---- interpreting the gradient -------------------------------------------------------------------
def test_mul_gate_at_4_minus_3() -> None:
    """f(x, y) = xy at x=4, y=-3: ∇f = [y, x] = [-3, 4]."""
    x, y = _leaves(4.0, -3.0)
    (x * y).backward()
    assert (x.grad.item(), y.grad.item()) == (-3.0, 4.0)


def test_add_gate_derivatives_are_one() -> None:
    x, y = _leaves(4.0, -3.0)
    (x + y).backward()
    assert (x.grad.item(), y.grad.item()) == (1.0, 1.0)


def test_max_gate_derivative_is_an_indicator() -> None:
    """d max(x, y)/dx = 1 if x >= y else 0."""
    x, y = _leaves(4.0, -3.0)
    cr.maximum(x, y).backward()
    assert (x.grad.item(), y.grad.item()) == (1.0, 0.0)


def test_derivative_is_the_limit_of_the_difference_quotient() -> None:
    x, y = _leaves(4.0, -3.0)
    (x * y).backward()
    h = 1e-4
    assert ((4.0 + h) * -3.0 - 4.0 * -3.0) / h == pytest.approx(x.grad.item())


# ---- chain rule ----------------------------------------------------------------------------------
def test_chain_rule_example() -> None:
    """f = (x + y)z at (-2, 5, -4): q = 3, f = -12, df/dx = df/dy = z = -4, df/dz = q = 3."""
    x, y, z = _leaves(-2.0, 5.0, -4.0)
    q = x + y
    q.retain_grad()
    f = q * z
    f.backward()
    assert q.item() == 3.0 and f.item() == -12.0
    assert q.grad.item() == -4.0  # df/dq = z
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (-4.0, -4.0, 3.0)


def test_chain_rule_by_hand_matches() -> None:
    """The staged version from the lecture, compared with the engine."""
    x, y, z = -2.0, 5.0, -4.0
    q = x + y
    f = q * z
    dfdz = q
    dfdq = z
    dfdx = 1.0 * dfdq
    dfdy = 1.0 * dfdq
    tx, ty, tz = _leaves(x, y, z)
    ((tx + ty) * tz).backward()
    assert f == -12.0
    assert [tx.grad.item(), ty.grad.item(), tz.grad.item()] == [dfdx, dfdy, dfdz]


# ---- the sigmoid example -------------------------------------------------------------------------
def test_sigmoid_neuron() -> None:
    """f(w, x) = 1/(1+e^-(w0x0+w1x1+w2)) at w=(2,-3,-3), x=(-1,-2)."""
    w = cr.tensor([2.0, -3.0, -3.0], requires_grad=True)
    x = cr.tensor([-1.0, -2.0], requires_grad=True)
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1.0 + (-dot).exp())
    f.backward()
    assert round(f.item(), 2) == 0.73
    assert [round(v, 2) for v in w.grad.tolist()] == [-0.2, -0.39, 0.2]
    assert [round(v, 2) for v in x.grad.tolist()] == [0.39, -0.59]


def test_sigmoid_neuron_staged_like_the_lecture() -> None:
    """Forward, then backward with the grouped local gradient (1 - f)·f."""
    w, x = [2.0, -3.0, -3.0], [-1.0, -2.0]
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    f = 1.0 / (1 + math.exp(-dot))
    ddot = (1 - f) * f
    dx = [w[0] * ddot, w[1] * ddot]
    dw = [x[0] * ddot, x[1] * ddot, 1.0 * ddot]
    tw = cr.tensor(w, dtype=cr.float64, requires_grad=True)
    tx = cr.tensor(x, dtype=cr.float64, requires_grad=True)
    (tw[:2] * tx).sum().add(tw[2]).sigmoid().backward()
    np.testing.assert_allclose(tw.grad.numpy(), dw, rtol=1e-12)
    np.testing.assert_allclose(tx.grad.numpy(), dx, rtol=1e-12)


def test_vectorised_neuron_matches_scalar_circuit() -> None:
    w = cr.tensor([2.0, -3.0, -3.0], dtype=cr.float64, requires_grad=True)
    x = cr.tensor([-1.0, -2.0, 1.0], dtype=cr.float64)  # bias as a constant input
    (w @ x).sigmoid().backward()
    np.testing.assert_allclose(w.grad.numpy(), [-0.19661193, -0.39322387, 0.19661193],
                               rtol=1e-7)


# ---- the exercise: f(x, y) = (x + σ(y)) / (σ(x) + (x + y)²) --------------------------------------
def _exercise(x: float, y: float) -> float:
    s = lambda v: 1.0 / (1 + math.exp(-v))  # noqa: E731
    return (x + s(y)) / (s(x) + (x + y) ** 2)


def _exercise_staged(x: float, y: float) -> tuple:
    """Forward caching every variable, backward in reverse with += at the forks (the lecture)."""
    # forward pass
    sigy = 1.0 / (1 + math.exp(-y))
    num = x + sigy
    sigx = 1.0 / (1 + math.exp(-x))
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    invden = 1.0 / den
    f = num * invden
    # backward pass
    dnum = invden
    dinvden = num
    dden = (-1.0 / (den**2)) * dinvden
    dsigx = 1 * dden
    dxpysqr = 1 * dden
    dxpy = (2 * xpy) * dxpysqr
    dx = 1 * dxpy
    dy = 1 * dxpy
    dx += ((1 - sigx) * sigx) * dsigx  # gradients add up at forks
    dx += 1 * dnum
    dsigy = 1 * dnum
    dy += ((1 - sigy) * sigy) * dsigy
    return f, dx, dy


@pytest.mark.parametrize("point", [(3.0, -4.0), (0.5, 1.5), (-1.0, 0.25)])
def test_exercise_matches_staged_backward_and_finite_differences(point) -> None:
    x, y = _leaves(*point)
    f = (x + y.sigmoid()) / (x.sigmoid() + (x + y) ** 2)
    f.backward()
    f_ref, dx, dy = _exercise_staged(*point)
    assert f.item() == pytest.approx(f_ref, rel=1e-12)
    assert x.grad.item() == pytest.approx(dx, rel=1e-10)
    assert y.grad.item() == pytest.approx(dy, rel=1e-10)
    num = _numeric_grad(_exercise, list(point))
    assert [x.grad.item(), y.grad.item()] == pytest.approx(num, rel=1e-6)


def test_exercise_with_elementary_gates_and_gradcheck() -> None:
    def sig(v):
        return 1 / (1 + (-v).exp())

    def f(x, y):
        return (x + sig(y)) / (sig(x) + (x + y) ** 2)

    x, y = _leaves([3.0, 0.5, -1.0], [-4.0, 1.5, 0.25])
    assert cr.autograd.gradcheck(f, (x, y))
    assert cr.autograd.gradgradcheck(f, (x, y))
    f(x, y).sum().backward()
    staged = [_exercise_staged(a, b) for a, b in zip([3.0, 0.5, -1.0], [-4.0, 1.5, 0.25])]
    np.testing.assert_allclose(x.grad.numpy(), [s[1] for s in staged], rtol=1e-10)
    np.testing.assert_allclose(y.grad.numpy(), [s[2] for s in staged], rtol=1e-10)


# ---- patterns in backward flow -------------------------------------------------------------------
def test_patterns_add_distributes_max_routes_mul_swaps() -> None:
    """The lecture's circuit f = 2·(x·y + max(z, w)) at x=3, y=-4, z=2, w=-1."""
    x, y, z, w = _leaves(3.0, -4.0, 2.0, -1.0)
    prod = x * y
    mx = cr.maximum(z, w)
    s = prod + mx
    for t in (prod, mx, s):
        t.retain_grad()
    f = s * 2.0
    f.backward()
    assert f.item() == -20.0
    assert prod.grad.item() == mx.grad.item() == s.grad.item() == 2.0  # add distributes
    assert (z.grad.item(), w.grad.item()) == (2.0, 0.0)  # max routes to the larger input
    assert (x.grad.item(), y.grad.item()) == (-8.0, 6.0)  # mul swaps: dx = y·g, dy = x·g


def test_mul_gate_scales_with_the_other_input() -> None:
    """Scaling one input by 1000 scales the other's gradient by 1000 (why preprocessing matters)."""
    x, w = _leaves([1.0, 2.0], [0.5, -0.5])
    (x * w).sum().backward()
    x2, w2 = _leaves([1000.0, 2000.0], [0.5, -0.5])
    (x2 * w2).sum().backward()
    np.testing.assert_allclose(w2.grad.numpy(), 1000 * w.grad.numpy())


def test_max_reduction_routes_to_the_argmax() -> None:
    v = cr.tensor([1.0, 5.0, 3.0], requires_grad=True)
    v.max().backward()
    assert v.grad.tolist() == [0.0, 1.0, 0.0]


def test_max_gate_ties_match_torch() -> None:
    torch = pytest.importorskip("torch")
    a, b = _leaves([1.0, 2.0, 3.0], [1.0, 5.0, 3.0])
    cr.maximum(a, b).sum().backward()
    ta = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64, requires_grad=True)
    torch.maximum(ta, tb).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.numpy())
    np.testing.assert_array_equal(b.grad.numpy(), tb.grad.numpy())


# ---- gradients for vectorized operations ---------------------------------------------------------
def test_matrix_multiply_gradients() -> None:
    """D = W·X: dW = dD·Xᵀ, dX = Wᵀ·dD (dimensions tell you the order)."""
    rng = np.random.default_rng(0)
    Wn, Xn = rng.standard_normal((5, 10)), rng.standard_normal((10, 3))
    dDn = rng.standard_normal((5, 3))
    W = cr.tensor(Wn, requires_grad=True)
    X = cr.tensor(Xn, requires_grad=True)
    D = W @ X
    assert D.shape == (5, 3)
    D.backward(cr.tensor(dDn))
    assert W.grad.shape == W.shape and X.grad.shape == X.shape
    np.testing.assert_allclose(W.grad.numpy(), dDn @ Xn.T, rtol=1e-12)
    np.testing.assert_allclose(X.grad.numpy(), Wn.T @ dDn, rtol=1e-12)
    assert cr.autograd.gradcheck(lambda w, x: w @ x, (W, X))


def test_matrix_multiply_gradients_match_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    Wn, Xn = rng.standard_normal((4, 6)), rng.standard_normal((6, 2))
    W, X = cr.tensor(Wn, requires_grad=True), cr.tensor(Xn, requires_grad=True)
    (W @ X).tanh().sum().backward()
    tW, tX = torch.tensor(Wn, requires_grad=True), torch.tensor(Xn, requires_grad=True)
    (tW @ tX).tanh().sum().backward()
    np.testing.assert_allclose(W.grad.numpy(), tW.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(X.grad.numpy(), tX.grad.numpy(), rtol=1e-12)


# ---- docs/custom_gates.md runs -------------------------------------------------------------------
def test_custom_gates_doc_code_runs(tmp_path, capsys) -> None:
    text = (DOCS / "custom_gates.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    script = tmp_path / "custom_gates_doc.py"
    script.write_text("\n\n".join(blocks))
    namespace = runpy.run_path(str(script))
    out = capsys.readouterr().out
    assert "0.73" in out and "[-0.2, -0.39, 0.2]" in out and "[0.39, -0.59]" in out
    assert "analytic" in namespace["message"]
    assert issubclass(namespace["Sigmoid"], cr.autograd.Function)
