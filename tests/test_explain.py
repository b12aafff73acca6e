"""explain: staged forward/backward code for the lecture's examples, checked numerically."""

import math
import re
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule.viz.explain import explain
from chainrule.viz.explain_command import main
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


# ---- kinks, domains, ties ------------------------------------------------------------------------
def _check_line(text: str, name: str) -> str:
    m = re.search(rf"^df/d{name} = .*?#\s*(.*)$", text, re.M)
    assert m, text
    return m.group(1)


def test_relu_at_zero_is_a_kink_explained_not_a_mismatch():
    text = explain(lambda x: cr.relu(x) * 3.0, 0.0)
    line = _check_line(text, "x")
    assert "MISMATCH" not in text
    assert "a kink: the slope is 0 on the left and 3 on the right; chainrule takes 0" in line
    assert "# note: `relux = max(0, x)` sits on its kink (its input is 0)" in text


def test_log_of_a_negative_is_undefined_not_a_mismatch():
    with np.errstate(all="ignore"):
        text = explain(lambda x: cr.log(x), -1.0)
    assert "MISMATCH" not in text
    assert "undefined" in _check_line(text, "x") and "outside its domain" in text
    assert "log of a number ≤ 0" in text


def test_max_tie_code_line_agrees_with_the_printed_half():
    text = explain(lambda z, w: 2 * cr.maximum(z, w), 2.0, 2.0)
    dz = re.search(r"^dz = (.*?)\s+# local gradient (\S+);", text, re.M)
    assert dz.group(1) == "((z > w) + 0.5*(z == w)) * dzmaxw"
    assert float(dz.group(2).rstrip(";")) == 0.5
    # the code line, evaluated at z = w = 2 with dzmaxw = 2, gives the printed gradient
    z = w = 2.0
    assert ((z > w) + 0.5 * (z == w)) * 2.0 == _grad(text, "z") == 1.0
    assert "split" in text and "MISMATCH" not in text
    # away from a tie the line stays the lecture's
    assert re.search(r"^dz = \(z > w\) \* dzmaxw", explain(
        lambda z, w: 2 * cr.maximum(z, w), 2.0, -1.0), re.M)


def test_cli_exit_status_is_0_at_kinks_and_1_only_for_a_real_mismatch(capsys, monkeypatch):
    assert main(["relu(x) + max(x, y) + abs(y)", "x=0", "y=0"]) == 0
    assert "kink" in capsys.readouterr().out
    with np.errstate(all="ignore"):
        assert main(["log(x) + sqrt(y)", "x=-1", "y=-2"]) == 0
    assert "undefined" in capsys.readouterr().out
    from chainrule.ops.elementwise import Tanh

    monkeypatch.setattr(Tanh, "backward", staticmethod(lambda ctx, g: g * 2.0))  # wrong
    assert main(["tanh(x)", "x=0.5"]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "disagree" in captured.err


def test_numerical_work_is_bounded_and_the_limit_is_said(monkeypatch):
    import sys

    ex = sys.modules["chainrule.viz.explain"]  # the module (cr.viz.explain is the function)
    calls = []
    real = ex._evaluate
    monkeypatch.setattr(ex, "_evaluate", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(ex, "WORK_LIMIT", 200_000)
    xs = [np.full(1000, 0.5) for _ in range(6)]
    text = explain(lambda a, b, c, d, e, f: (a * b + c * d + e * f).sum(), *xs)
    cost = 7 * 1000  # about the elements every evaluation touches
    assert len(calls) * cost <= 2 * 200_000 + 6 * 3 * cost
    assert "work limit: the numerical check stopped at 200,000 element operations" in text
    assert text.count(": ok") == 6 and "MISMATCH" not in text


def test_cli_30_inputs_of_10000_elements_finish_with_a_bounded_check(capsys):
    value = ",".join(["0.5"] * 10_000)
    names = [f"v{i}" for i in range(30)]
    expr = " + ".join(f"{a}*{b}" for a, b in zip(names, names[1:] + names[:1]))
    assert main([expr] + [f"{n}={value}" for n in names]) == 0
    out = capsys.readouterr().out
    assert "work limit" in out and out.count(": ok") == 30


@pytest.mark.parametrize("text", ["x**print(1)", "x**open(1)", "pow(x, print(1))",
                                  "x**(9" + "9" * 400 + ")", "x**((-8)**0.5)", "x**(1/0)",
                                  "x**__import__('os')", "x**(x.y)"])
def test_exponents_are_validated_before_they_are_evaluated(text, capsys):
    assert main([text, "x=2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_shapes_that_do_not_broadcast_or_grow_too_large_are_refused(capsys):
    assert main(["x*y", "x=1,2,3", "y=1,2"]) == 2
    assert "do not broadcast" in capsys.readouterr().err
    col = "[" + ",".join(f"[{i}]" for i in range(200)) + "]"
    row = "[" + ",".join(str(i) for i in range(200)) + "]"
    assert main(["x*y", f"x={col}", f"y=[{row}]"]) == 2
    assert "broadcast to shape [200, 200]" in capsys.readouterr().err


def test_cli_html_writes_the_interactive_page(tmp_path, capsys):
    path = tmp_path / "page.html"
    assert main([EXERCISE, "x=3", "y=-4", "--html", str(path)]) == 0
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "cr-steps" in page
    assert "f = (x + sigmoid(y)) / (sigmoid(x) + (x+y)**2) at x = 3, y = -4" in page
    assert main(["x", "x=1", "--html", str(tmp_path / "no" / "such" / "dir.html")]) == 2


def test_markdown_format():
    md = explain(_exercise, 3.0, -4.0, format="markdown")
    assert md.count("```python") == 3
    assert "sigx = 1/(1+exp(-x))" in md


def test_svg_format_needs_no_system_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Graphviz `dot` anywhere
    svg = explain(_exercise, 3.0, -4.0, format="svg")
    assert svg.startswith("<svg") and "Sigmoid" in svg and ">Σ 2.06<" in svg


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
