"""explain: staged forward/backward code for the lecture's examples, checked numerically."""

import math
import re
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule.viz.explain import explain, main
from square_gates import BadSquare

EXERCISE = "(x + sigmoid(y)) / (sigmoid(x) + (x+y)**2)"


def _sig(v):
    return 1 / (1 + math.exp(-v))


def _exercise(x, y):
    return (x + cr.sigmoid(y)) / (cr.sigmoid(x) + (x + y) ** 2)


def _numeric(f, args, k, h=1e-6):
    a, b = list(args), list(args)
    a[k] += h
    b[k] -= h
    return (f(*a) - f(*b)) / (2 * h)


def _value(text: str, name: str) -> float:
    """The value printed in the comment of the first forward line that assigns ``name``."""
    m = re.search(rf"^{name} = .*?#\s*(\S+)", text, re.M)
    assert m, f"no line for {name} in\n{text}"
    return float(m.group(1).rstrip(","))


def _grad(text: str, name: str) -> float:
    m = re.search(rf"^df/d{name} = (\S+)", text, re.M)
    assert m, text
    return float(m.group(1))


def test_lecture_exercise_forward_lines_cache_each_gate():
    text = explain(_exercise, 3.0, -4.0)
    assert re.search(r"^sigx = 1/\(1\+exp\(-x\)\)\s+# 0\.9526$", text, re.M)
    assert re.search(r"^sigy = 1/\(1\+exp\(-y\)\)\s+# 0\.01799$", text, re.M)
    assert re.search(r"^xpy = x \+ y\s+# -1$", text, re.M)
    assert re.search(r"^xpysq = xpy\*\*2\s+# 1$", text, re.M)
    f = (3 + _sig(-4)) / (_sig(3) + 1)
    assert _value(text, "f") == pytest.approx(f, rel=1e-3)


def test_lecture_exercise_backward_adds_up_at_forks_and_matches_finite_differences():
    text = explain(_exercise, 3.0, -4.0)
    backward = text.split("# backward pass")[1].split("# gradients")[0]
    assert len(re.findall(r"^dx \+= ", backward, re.M)) == 2  # x is used three times
    assert len(re.findall(r"^dy \+= ", backward, re.M)) == 1  # y twice
    assert len(re.findall(r"^dx = ", backward, re.M)) == 1
    assert "fork: gradients add up" in backward
    assert re.search(r"^dsigx = dsigxpxpysq", backward, re.M)
    assert re.search(r"^dx \+= sigx\*\(1-sigx\) \* dsigx", backward, re.M)

    def ref(x, y):
        return (x + _sig(y)) / (_sig(x) + (x + y) ** 2)

    for k, name in enumerate("xy"):
        assert _grad(text, name) == pytest.approx(_numeric(ref, (3.0, -4.0), k), rel=1e-3)
    assert text.count(": ok") == 2 and "MISMATCH" not in text


def test_lecture_exercise_matches_torch():
    torch = pytest.importorskip("torch")
    tx = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    ((tx + torch.sigmoid(ty)) / (torch.sigmoid(tx) + (tx + ty) ** 2)).backward()
    text = explain(_exercise, 3.0, -4.0)
    assert _grad(text, "x") == pytest.approx(tx.grad.item(), rel=1e-3)
    assert _grad(text, "y") == pytest.approx(ty.grad.item(), rel=1e-3)


def test_chain_rule_example_x_plus_y_times_z():
    text = explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
    assert re.search(r"^xpy = x \+ y\s+# 3$", text, re.M)
    assert re.search(r"^f = xpy \* z\s+# -12$", text, re.M)
    assert (_grad(text, "x"), _grad(text, "y"), _grad(text, "z")) == (-4.0, -4.0, 3.0)
    assert "mul gate swaps" in text and "add gate distributes" in text


def test_sigmoid_neuron_matches_the_lecture_numbers():
    def neuron(w0, x0, w1, x1, w2):
        return cr.sigmoid(w0 * x0 + w1 * x1 + w2)

    text = explain(neuron, 2.0, -1.0, -3.0, -2.0, -3.0)
    assert _value(text, "f") == pytest.approx(0.7311, abs=1e-4)
    got = [_grad(text, n) for n in ("w0", "x0", "w1", "x1", "w2")]
    np.testing.assert_allclose(got, [-0.1966, 0.3932, -0.3932, -0.5898, 0.1966], atol=1e-4)
    assert re.search(r"^dt = f\*\(1-f\) \* df\s+# local gradient 0\.1966", text, re.M)


def test_flow_patterns_add_distributes_max_routes_mul_swaps():
    text = explain(lambda x, y, z, w: 2 * (x * y + cr.maximum(z, w)), 3.0, -4.0, 2.0, -1.0)
    assert "add gate distributes" in text
    assert "max gate routes" in text
    assert "mul gate swaps" in text
    grads = [_grad(text, n) for n in "xyzw"]
    assert grads == [-8.0, 6.0, 2.0, 0.0]


def test_tensor_inputs_show_shapes_and_are_checked():
    cr.manual_seed(0)
    W, x = cr.randn(3, 4), cr.randn(4)
    text = explain(lambda W, x: (W @ x).tanh().sum(), W, x)
    assert "W = <shape [3, 4]>" in text
    assert re.search(r"^dW = outer\(dWmmx, x\)", text, re.M)
    assert re.search(r"^dx = W\.T @ dWmmx", text, re.M)
    assert re.search(r"^dWmmx = \(1-tanhWmmx\*\*2\) \* dtanhWmmx", text, re.M)
    assert text.count(": ok") == 2 and "entries checked" in text


def test_matrix_multiply_gradient_is_dD_times_X_transposed():
    cr.manual_seed(1)
    W, X = cr.randn(3, 4), cr.randn(4, 2)
    text = explain(lambda W, X: (W @ X).sum(), W, X)
    assert re.search(r"^dW = dWmmX @ X\.T", text, re.M)
    assert re.search(r"^dX = W\.T @ dWmmX", text, re.M)
    assert text.count(": ok") == 2


def test_non_scalar_output_backpropagates_ones():
    text = explain(lambda x: x * x, cr.tensor([1.0, 2.0]))
    assert "not a scalar" in text
    assert "df/dx = [2, 4]" in text


def test_numerical_check_flags_a_wrong_gradient():
    text = explain(lambda x: BadSquare.apply(x), 3.0)
    assert "MISMATCH" in text
    assert "badsquare_backward" in text


def test_markdown_format():
    md = explain(_exercise, 3.0, -4.0, format="markdown")
    assert md.count("```python") == 3
    assert "sigx = 1/(1+exp(-x))" in md


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot not installed")
def test_svg_format():
    svg = explain(_exercise, 3.0, -4.0, format="svg")
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:500]
    assert "Sigmoid" in svg


def test_bad_format_is_a_clear_error():
    with pytest.raises(ValueError, match="format"):
        explain(_exercise, 3.0, -4.0, format="html")


# ---- the CLI ------------------------------------------------------------------------------------
def test_cli_prints_the_exercise(capsys):
    assert main([EXERCISE, "x=3", "y=-4"]) == 0
    out = capsys.readouterr().out
    assert "sigx = 1/(1+exp(-x))" in out and "df/dx = 2.06" in out and "df/dy = 1.592" in out


def test_cli_accepts_leading_subcommand_and_format(capsys):
    assert main(["explain", "x*y", "x=4", "y=-3", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "```python" in out and "df/dx = -3" in out and "df/dy = 4" in out


def test_cli_vectors(capsys):
    assert main(["x*y + x", "x=1,2,3", "y=[4,5,6]"]) == 0
    assert "df/dx = [5, 6, 7]" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["__import__('os').system('echo hi')", "x=1"],
    ["x.y", "x=1"],
    ["x**9**9**9", "x=2"],
    ["x*q", "x=1"],
    ["x", "x=abc"],
    ["x"],
    ["x", "x=1", "--format", "html"],
    ["x", "x=1", "--format"],
    ["(" * 100 + "x" + ")" * 100, "x=1"],
])
def test_cli_refuses_with_exit_2_and_one_line(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule explain: error: ")


def test_cli_help(capsys):
    assert main(["--help"]) == 0
    assert "usage" in capsys.readouterr().out
