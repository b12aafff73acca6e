"""The safe expression parser: whitelisted arithmetic only, clear errors for everything else."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.viz.expr import MAX_DEPTH, MAX_LENGTH, ExprError, parse, parse_value

VARS = ["x", "y"]

HOSTILE = [
    ("__import__('os')", "unknown function '__import__'"),
    ("__import__('os').system('true')", "attribute access"),
    ("x.__class__", "attribute access"),
    ("x.__class__.__bases__[0].__subclasses__()", "not allowed"),
    ("().__class__", "not allowed"),
    ("x[0]", "subscripts"),
    ("lambda: 1", "lambda"),
    ("[i for i in (1, 2)]", "comprehensions"),
    ("(i for i in (1, 2))", "generator"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("exec('1')", "unknown function 'exec'"),
    ("globals()", "unknown function 'globals'"),
    ("import os", "invalid syntax"),
    ("x; import os", "invalid syntax"),
    ("'abc'", "strings"),
    ("b'abc'", "strings"),
    ("f'{x}'", "strings"),
    ("exp(x=1)", "keyword"),
    ("max(*x)", "starred"),
    ("x**9**9**9", "exponent too large"),
    ("2**2**2**2**2", "exponent too large"),
    ("pow(x, 10**6)", "exponent too large"),
    ("x**1e999", "exponent too large"),
    ("1e999 + x", "number out of range"),
    ("(" * 200 + "x" + ")" * 200, "nested too deeply"),
    ("-" * 300 + "x", "nested too deeply"),
    ("+".join(["x"] * 300), "too long"),
    ("x" * (MAX_LENGTH + 1), "too long"),
    ("z + 1", "unknown name 'z'"),
    ("exp", "must be called"),
    ("exp(x, y)", "takes 1 arguments"),
    ("max(x)", "takes 2 to 8"),
    ("x if y else 1", "conditional"),
    ("x < y", "comparisons"),
    ("x and y", "'and'/'or'"),
    ("(x, y)", "tuples"),
    ("{x: 1}", "dicts"),
    ("(y := 2)", "assignment"),
    ("x // y", "FloorDiv"),
    ("x % y", "Mod"),
    ("x @ y", "MatMult"),
    ("~x", "Invert"),
    ("not x", "Not"),
    ("True + x", "constant True"),
    ("None", "constant None"),
    ("1j * x", "constant 1j"),
    ("", "empty"),
    ("   ", "empty"),
    ("x\x00", "control"),
    ("x + \u00e9", "non-ASCII"),
    ("x +", "invalid syntax"),
    (123, "must be a string"),
]


@pytest.mark.parametrize("text, fragment", HOSTILE)
def test_hostile_inputs_are_refused_with_clear_errors(text, fragment):
    with pytest.raises(ExprError) as info:
        parse(text, VARS)
    assert isinstance(info.value, ValueError)
    assert fragment.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_deep_nesting_limit_is_exact_enough():
    ok = "(" * (MAX_DEPTH - 2) + "x" + ")" * (MAX_DEPTH - 2)
    assert float(parse(ok, VARS)(2.0, 0.0)) == 2.0


@pytest.mark.parametrize("bad", ["1x", "exp", "x y", "_x", "__class__", "for", "max", ""])
def test_bad_variable_names_are_refused(bad):
    with pytest.raises(ExprError):
        parse("1", [bad])


def test_duplicate_variables_are_refused():
    with pytest.raises(ExprError, match="twice"):
        parse("x", ["x", "x"])


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


CASES = [
    ("(x + sigmoid(y)) / (sigmoid(x) + (x+y)**2)",
     lambda x, y: (x + _sigmoid(y)) / (_sigmoid(x) + (x + y) ** 2)),
    ("x*y", lambda x, y: x * y),
    ("max(x, y) + min(x, y, 0)", lambda x, y: max(x, y) + min(x, y, 0)),
    ("exp(x) - log(abs(y)) + sqrt(x*x) + tanh(y)",
     lambda x, y: math.exp(x) - math.log(abs(y)) + math.sqrt(x * x) + math.tanh(y)),
    ("sin(x)*cos(y) + relu(y) + pow(x, 3) + -x + +y",
     lambda x, y: math.sin(x) * math.cos(y) + max(y, 0) + x**3 - x + y),
    ("2**3 + x/4", lambda x, y: 8 + x / 4),
]


@pytest.mark.parametrize("text, ref", CASES)
def test_allowed_expressions_evaluate_like_python(text, ref):
    f = parse(text, VARS)
    assert float(f(3.0, -4.0)) == pytest.approx(ref(3.0, -4.0), rel=1e-12)


def test_expression_records_a_graph_with_correct_gradients():
    torch = pytest.importorskip("torch")
    f = parse("(x + sigmoid(y)) / (sigmoid(x) + (x+y)**2)", VARS)
    x = cr.tensor(3.0, dtype=cr.float64, requires_grad=True)
    y = cr.tensor(-4.0, dtype=cr.float64, requires_grad=True)
    f(x, y).backward()
    tx = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    ((tx + torch.sigmoid(ty)) / (torch.sigmoid(tx) + (tx + ty) ** 2)).backward()
    assert float(x.grad) == pytest.approx(tx.grad.item(), rel=1e-12)
    assert float(y.grad) == pytest.approx(ty.grad.item(), rel=1e-12)


def test_missing_values_are_a_clear_error():
    with pytest.raises(ExprError, match="missing y"):
        parse("x + y", VARS)(1.0)


@pytest.mark.parametrize("text, expected", [("3", 3.0), ("-4.5", -4.5), ("1,2,3", [1, 2, 3]),
                                            ("[[1,2],[3,4]]", [[1, 2], [3, 4]])])
def test_parse_value(text, expected):
    np.testing.assert_array_equal(parse_value(text, "x"), np.array(expected, float))


@pytest.mark.parametrize("text", ["abc", "__import__('os')", "[1, [2]]", "nan", "inf", "[1,'a']",
                                  "[" * 5000 + "]" * 5000, "1," * 20000])
def test_parse_value_refuses_junk(text):
    with pytest.raises(ExprError):
        parse_value(text, "x")


# ---- random strings: only clear errors or correct results ---------------------------------------
ALPHABET = "xy0123456789.+-*/()eE ,_[]'\"abcdefghijklmnopqrstuvwz:=<>!@#%^&~`|\\;{}"
TOKENS = ["x", "y", "1", "2", "0.5", "+", "-", "*", "/", "**", "(", ")", "exp(", "log(",
          "sqrt(", "sigmoid(", "tanh(", "max(", "min(", "pow(", ",", "abs(", "relu(", "9",
          "__import__(", ".", "[", "]", "'s'", "lambda", ":", "x.y", " "]


def _check_random(text: str) -> None:
    try:
        f = parse(text, VARS)
    except ExprError as e:
        assert str(e) and "\n" not in str(e)
        return
    with np.errstate(all="ignore"):
        out = f(cr.tensor(0.7, dtype=cr.float64), cr.tensor(-1.3, dtype=cr.float64))
    assert isinstance(out, cr.Tensor)
    # the same text in Python (it passed the whitelist, so only arithmetic and the functions)
    ref = _reference(text)
    if ref is not None and np.isfinite(ref) and np.isfinite(float(out)):
        assert float(out) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def _reference(text: str):
    """Evaluate an already-whitelisted expression with NumPy scalars, via the same checked tree."""
    import ast

    tree = ast.parse(text.strip(), mode="eval")
    fns = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin,
           "cos": np.cos, "abs": np.abs, "relu": lambda v: np.maximum(v, 0.0),
           "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "pow": lambda a, b: a**b,
           "max": lambda *a: np.max(a), "min": lambda *a: np.min(a)}
    env = {"x": np.float64(0.7), "y": np.float64(-1.3)}

    def ev(n):
        if isinstance(n, ast.Constant):
            return np.float64(n.value)
        if isinstance(n, ast.Name):
            return env[n.id]
        if isinstance(n, ast.UnaryOp):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            return {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                    ast.Div: np.divide, ast.Pow: np.power}[type(n.op)](a, b)
        return fns[n.func.id](*[ev(a) for a in n.args])

    with np.errstate(all="ignore"):
        return float(ev(tree.body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_random_character_strings_give_clear_errors_or_results(text):
    _check_random(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_random_token_strings_give_clear_errors_or_correct_results(text):
    _check_random(text)
