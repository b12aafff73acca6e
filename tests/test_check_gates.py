"""check_gates: every gate checked on its own inputs; a wrong backward is named exactly."""

import inspect
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.ops.elementwise import Sigmoid
from square_gates import BadSquare, GoodSquare

HERE = os.path.basename(__file__)


def _line() -> int:
    return inspect.currentframe().f_back.f_lineno + 1


def _mlp_params(seed=0):
    cr.manual_seed(seed)
    shapes = [(4, 8), (8,), (8, 8), (8,), (8, 3), (3,)]
    return [(cr.randn(*s) * 0.5).requires_grad_() for s in shapes]


def _mlp(square, record_line=None):
    def fn(W1, b1, W2, b2, W3, b3):
        x = cr.tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
        h = (x @ W1 + b1).tanh()
        if record_line is not None:
            record_line.append(_line())
        h = square.apply(h @ W2 + b2).sigmoid()
        return (h @ W3 + b3).log_softmax(-1).mean()
    return fn


def test_wrong_function_in_3_layer_mlp_is_named_exactly():
    lines = []
    report = cr.autograd.check_gates(_mlp(BadSquare, lines), _mlp_params())
    assert not report.ok
    assert len(report.failures) == 1, str(report)
    f = report.failures[0]
    assert f.op == "BadSquare"
    assert f.site.endswith(f"{HERE}:{lines[0]}")
    assert f.input_index == 0
    assert abs(f.analytic * 2 - f.numeric) < 1e-4 * max(1.0, abs(f.numeric))
    assert f.rel_error == pytest.approx(0.5, rel=1e-3)
    assert len(report.passed) >= 10
    assert {r.op for r in report.passed} >= {"MatMul", "Add", "Tanh", "Sigmoid", "LogSoftmax"}
    text = str(report)
    assert "1 failing" in text and "BadSquare" in text and f"{HERE}:{lines[0]}" in text


def test_correct_mlp_passes_every_gate():
    report = cr.autograd.check_gates(_mlp(GoodSquare), _mlp_params())
    assert report.ok and bool(report)
    assert report.failures == []
    assert "0 failing" in str(report)


def test_wrong_builtin_gate_is_named(monkeypatch):
    def wrong(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y  # should be g * y * (1 - y)

    monkeypatch.setattr(Sigmoid, "backward", staticmethod(wrong))
    x = cr.tensor([0.5, -1.0, 2.0], requires_grad=True)
    line = _line()
    report = cr.autograd.check_gates(lambda x: (cr.sigmoid(x) * 3.0).sum(), (x,))
    assert [f.op for f in report.failures] == ["Sigmoid"]
    assert report.failures[0].site.endswith(f"{HERE}:{line}")


class WrongSecondInput(cr.autograd.Function):
    """z = a * b, with the gradient for b wrong at exactly one element."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        gb = (g * a).detach().numpy().copy()
        gb[1, 2] += 5.0
        return g * b, cr.tensor(gb)


def test_input_index_and_worst_element_are_reported():
    cr.manual_seed(1)
    a = cr.randn(3, 4, dtype=cr.float64, requires_grad=True)
    b = cr.randn(3, 4, dtype=cr.float64, requires_grad=True)
    report = cr.autograd.check_gates(lambda a, b: WrongSecondInput.apply(a, b).sum(), (a, b))
    (f,) = report.failures
    assert f.op == "WrongSecondInput" and f.input_index == 1 and f.index == (1, 2)
    assert f.analytic - f.numeric == pytest.approx(5.0, abs=1e-5)


class Noisy(cr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x + cr.tensor(np.random.default_rng().standard_normal(x.shape))

    @staticmethod
    def backward(ctx, g):
        return g


def test_nondeterministic_gate_is_skipped_not_failed():
    x = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True)
    report = cr.autograd.check_gates(lambda x: Noisy.apply(x).sum(), (x,))
    assert report.ok
    assert [r.op for r in report.skipped] == ["Noisy"]
    assert "not deterministic" in report.skipped[0].reason


def test_large_inputs_are_sampled():
    cr.manual_seed(2)
    w = cr.randn(40, 40, requires_grad=True)
    report = cr.autograd.check_gates(lambda w: (w @ w).tanh().sum(), (w,), max_elements=16)
    assert report.ok and len(report.passed) == 3


def test_no_graph_is_a_clear_error():
    x = cr.tensor([1.0])
    with pytest.raises(ValueError, match="check_gates"):
        cr.autograd.check_gates(lambda x: x * 2, (x,))


def test_nn_mlp_with_wrong_function_when_nn_is_available():
    nn = pytest.importorskip("chainrule.nn")
    cr.manual_seed(3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.fc1(x).relu()
            self.line = _line()
            h = BadSquare.apply(self.fc2(h)).tanh()
            return self.fc3(h)

    net = Net()
    x = cr.randn(5, 4)
    params = list(net.parameters())
    report = cr.autograd.check_gates(lambda *ps: net(x).pow(2).mean(), params)
    assert [f.op for f in report.failures] == ["BadSquare"]
    assert report.failures[0].site.endswith(f"{HERE}:{net.line}")


def test_gate_whose_input_is_a_transposed_view_is_checked_correctly():
    # x.T is not C-contiguous; the float64 copy must stay perturbable in place
    cr.manual_seed(4)
    x = cr.randn(3, 4, requires_grad=True)
    report = cr.autograd.check_gates(lambda x: (x.T.reshape(-1)[:5] ** 2).sum(), (x,))
    assert report.ok, str(report)
    assert "Reshape" in {r.op for r in report.passed}


def test_local_gradients_use_a_unit_upstream_gradient_and_match_a_hand_derivation():
    # the lecture's exercise: every local gradient is what a learner derives by hand
    x = cr.tensor(3.0, dtype=cr.float64, requires_grad=True)
    y = cr.tensor(-4.0, dtype=cr.float64, requires_grad=True)
    report = cr.autograd.check_gates(
        lambda x, y: (x + cr.sigmoid(y)) / (cr.sigmoid(x) + (x + y) ** 2), (x, y))
    assert report.ok and len(report.passed) == 7

    def sig(v):
        return 1 / (1 + np.exp(-v))

    num, den = 3 + sig(-4), sig(3) + 1.0
    expected = {  # op -> local gradient per input, at this point, with upstream gradient 1
        "Pow": [2 * (3 - 4)],
        "Div": [1 / den, -num / den**2],
        "Sigmoid": sorted([sig(-4) * (1 - sig(-4)), sig(3) * (1 - sig(3))]),
        "Add": [1.0, 1.0],
    }
    got: dict = {}
    for r in report.passed:
        for g in r.local:
            assert g.analytic.shape == g.numeric.shape == (1,)
            assert g.numeric[0] == pytest.approx(g.analytic[0], rel=1e-6, abs=1e-9)
        got.setdefault(r.op, []).append([float(g.analytic[0]) for g in r.local])
    assert got["Pow"] == [expected["Pow"]]
    assert got["Div"][0] == pytest.approx(expected["Div"], rel=1e-12)
    assert sorted(v[0] for v in got["Sigmoid"]) == pytest.approx(expected["Sigmoid"], rel=1e-12)
    assert all(v == expected["Add"] for v in got["Add"])
    text = str(report)
    assert "local gradients (backward with upstream gradient 1)" in text
    assert "ok Pow at " in text and "d/d(input 0) = -2 (numeric -2)" in text


def test_a_wrong_local_gradient_is_caught_with_the_unit_upstream_first():
    report = cr.autograd.check_gates(lambda x: BadSquare.apply(x).sum(),
                                     (cr.tensor([1.0, 2.0], requires_grad=True),))
    (f,) = report.failures
    assert f.upstream == "1" and "local gradient (upstream gradient 1)" in str(f)
    assert f.analytic == pytest.approx(f.numeric / 2, rel=1e-4)  # BadSquare forgets the 2
