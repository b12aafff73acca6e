"""A safe parser for the arithmetic expressions ``chainrule explain`` accepts.

User text is parsed with :mod:`ast` and checked against a whitelist before anything runs: names
that are declared variables, numbers, ``+ - * / **``, unary ``-``/``+`` and the functions in
:data:`FUNCTIONS`. Everything else (attributes, subscripts, lambdas, comprehensions, strings,
keywords, calls of other names, huge constant exponents, deep nesting, over-long input) is
refused with an :class:`ExprError` (a ``ValueError``). Nothing is ever passed to ``eval``/``exec``:
the checked tree is walked and each node is mapped to a chainrule op.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import warnings
from typing import Any
from collections.abc import Iterable

import numpy as np

__all__ = ["ExprError", "Expr", "parse", "FUNCTIONS", "MAX_LENGTH", "MAX_DEPTH", "MAX_NODES",
           "MAX_EXPONENT", "MAX_ELEMENTS", "parse_value", "check_shapes"]

MAX_LENGTH = 500        # characters of expression text
MAX_DEPTH = 32          # nesting levels of the syntax tree (and of parentheses)
MAX_NODES = 400         # syntax-tree nodes
MAX_EXPONENT = 1000.0   # largest constant exponent |p| in a ** p
MAX_ELEMENTS = 10_000   # elements of one variable's value

# name -> (min args, max args)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "exp": (1, 1), "log": (1, 1), "sqrt": (1, 1), "sigmoid": (1, 1), "tanh": (1, 1),
    "sin": (1, 1), "cos": (1, 1), "abs": (1, 1), "relu": (1, 1), "max": (2, 8), "min": (2, 8),
    "pow": (2, 2),
}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_NUMPY_FN = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin,
             "cos": np.cos, "abs": np.abs, "relu": lambda v: np.maximum(v, 0.0),
             "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}


class ExprError(ValueError):
    """The expression (or a variable's value) was refused; the message says why."""


_DESCRIBE = {
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Subscript: "subscripts ('[...]') are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.Starred: "starred arguments ('*') are not allowed",
    ast.IfExp: "conditional expressions (a if c else b) are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "'and'/'or' are not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.NamedExpr: "assignment (':=') is not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}


def _fail(msg: str, node: ast.AST | None = None) -> ExprError:
    col = getattr(node, "col_offset", None)
    return ExprError(msg + (f" (at column {col + 1})" if col is not None else ""))


def check_variables(variables: Iterable[str]) -> tuple[str, ...]:
    """Validate declared variable names: identifiers, not keywords, functions or dunders."""
    names = tuple(variables)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or not n.isascii():
            raise ExprError(f"invalid variable name {n!r}: use a name like x, y or w0")
        if keyword.iskeyword(n) or n.startswith("_"):
            raise ExprError(f"invalid variable name {n!r}: keywords and names starting with '_' "
                            "are not allowed")
        if n in FUNCTIONS:
            raise ExprError(f"invalid variable name {n!r}: it is a function name")
    if len(set(names)) != len(names):
        raise ExprError(f"variables declared twice: {', '.join(names)}")
    return names


def _prescan(text: str) -> None:
    if not isinstance(text, str):
        raise ExprError(f"expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression too long: {len(text)} characters (limit {MAX_LENGTH})")
    if not text.strip():
        raise ExprError("empty expression")
    if any(not (c.isprintable() or c == " ") for c in text) or not text.isascii():
        raise ExprError("expression contains non-ASCII or control characters")
    depth = 0
    for c in text:
        depth += c == "("
        depth -= c == ")"
        if depth > MAX_DEPTH:
            raise ExprError(f"expression nested too deeply (more than {MAX_DEPTH} levels)")


def _constant(node: ast.AST) -> float | None:
    """The value of a variable-free subtree (float64 math, never Python big ints), else None."""
    try:
        with np.errstate(all="ignore"):
            v = _Evaluator({}, constants_only=True).visit(node)
    except _NotConstant:
        return None
    except (OverflowError, ValueError):  # an int literal beyond float64
        return math.inf
    return float(v)


class _NotConstant(Exception):
    pass


def _check_tree(tree: ast.Expression, names: tuple[str, ...]) -> None:
    """Every node against the whitelist first; only then are constant exponents evaluated
    (so ``x**print(1)`` is refused for ``print``, never evaluated)."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    count = 0
    exponents: list = []
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExprError(f"expression too long: more than {MAX_NODES} syntax nodes")
        if depth > MAX_DEPTH:
            raise _fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", node)
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise _fail(f"operator {type(node.op).__name__} is not allowed "
                            "(allowed: + - * / **)", node)
            if isinstance(node.op, ast.Pow):
                _defer_exponent(exponents, node.right, node)
            stack += [(node.left, depth + 1), (node.right, depth + 1)]
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise _fail(f"unary operator {type(node.op).__name__} is not allowed "
                            "(allowed: unary - and +)", node)
            stack.append((node.operand, depth + 1))
        elif isinstance(node, ast.Call):
            _check_call(node)
            if node.func.id == "pow":
                _defer_exponent(exponents, node.args[1], node)
            stack += [(a, depth + 1) for a in node.args]
        elif isinstance(node, ast.Constant):
            _check_number(node)
        elif isinstance(node, ast.Name):
            if node.id not in names:
                if node.id in FUNCTIONS:
                    raise _fail(f"function '{node.id}' must be called, e.g. {node.id}(x)", node)
                declared = ", ".join(names) or "none"
                raise _fail(f"unknown name '{node.id}' (declared variables: {declared})", node)
        else:
            msg = _DESCRIBE.get(type(node), f"{type(node).__name__} is not allowed")
            raise _fail(msg, node)
    for expo, where in exponents:
        _check_exponent(expo, where)


def _defer_exponent(exponents: list, expo: ast.AST, where: ast.AST) -> None:
    """A plain number is checked as an exponent at once; anything else after the whole tree
    passed the whitelist (evaluating it earlier could run what the whitelist refuses)."""
    if isinstance(expo, ast.Constant) and type(expo.value) in (int, float):
        _check_exponent(expo, where)
    else:
        exponents.append((expo, where))


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise _fail("attribute access ('.') is not allowed", node)
        raise _fail("only calls of the whitelisted functions are allowed", node)
    name = node.func.id
    if name not in FUNCTIONS:
        allowed = " ".join(FUNCTIONS)
        raise _fail(f"unknown function '{name}' (allowed: {allowed})", node)
    if node.keywords:
        raise _fail(f"keyword arguments are not allowed in {name}()", node)
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise _fail(f"starred arguments ('*') are not allowed in {name}()", node)
    lo, hi = FUNCTIONS[name]
    if not lo <= len(node.args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise _fail(f"{name}() takes {want} arguments, got {len(node.args)}", node)


def _check_number(node: ast.Constant) -> None:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        what = "strings" if isinstance(v, (str, bytes)) else f"constant {v!r}"
        raise _fail(f"{what} are not allowed; only numbers" if what == "strings"
                    else f"{what} is not allowed; only numbers", node)
    try:
        f = float(v)
    except OverflowError:
        raise _fail("number out of range", node) from None
    if not math.isfinite(f):
        raise _fail("number out of range", node)


def _check_exponent(expo: ast.AST, where: ast.AST) -> None:
    v = _constant(expo)
    if v is not None and math.isnan(v):
        raise _fail("exponent is not a real number", where)
    if v is not None and not (math.isfinite(v) and abs(v) <= MAX_EXPONENT):
        raise _fail(f"exponent too large (|exponent| must be at most {MAX_EXPONENT:g})", where)


class _Evaluator:
    """Map a checked tree to chainrule ops (or to float64 constants where no variable occurs)."""

    def __init__(self, env: dict, constants_only: bool = False) -> None:
        self.env = env
        self.constants_only = constants_only

    def visit(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            return np.float64(node.value)
        if isinstance(node, ast.Name):
            if self.constants_only:
                raise _NotConstant
            return self.env[node.id]
        if isinstance(node, ast.UnaryOp):
            v = self.visit(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = self.visit(node.left), self.visit(node.right)
            return _binop(type(node.op), a, b)
        if isinstance(node, ast.Call):
            args = [self.visit(a) for a in node.args]
            return _call(node.func.id, args)
        raise _fail(f"{type(node).__name__} is not allowed", node)  # unreachable after checks


def _binop(op, a, b):
    a, b = _operand(a, b), _operand(b, a)
    if op is ast.Add:
        return a + b
    if op is ast.Sub:
        return a - b
    if op is ast.Mult:
        return a * b
    if op is ast.Div:
        return a / b
    return a**b


def _operand(v, other):
    # float64 constants stay NumPy scalars among themselves (no OverflowError, no complex);
    # next to a Tensor they become Python floats so PyTorch's scalar promotion applies.
    if isinstance(v, np.floating) and not isinstance(other, np.floating):
        return float(v)
    return v


def _call(name: str, args: list):
    import chainrule as cr

    if all(isinstance(a, np.floating) for a in args):  # a constant: plain float64 math
        if name == "pow":
            return args[0] ** args[1]
        if name in ("max", "min"):
            return np.float64((max if name == "max" else min)(args))
        return np.float64(_NUMPY_FN[name](args[0]))
    if name == "pow":
        return _binop(ast.Pow, args[0], args[1])
    if name in ("max", "min"):
        fn = cr.maximum if name == "max" else cr.minimum
        out = args[0]
        for a in args[1:]:
            x, y = _tensorize(out, a), _tensorize(a, out)
            out = fn(x, y)
        return out
    return getattr(cr, name)(_tensorize(args[0], None))


def _tensorize(v, like):
    import chainrule as cr

    if isinstance(v, np.floating):
        dtype = like.dtype if isinstance(like, cr.Tensor) else cr.float64
        return cr.tensor(float(v), dtype=dtype)
    return v


class Expr:
    """A checked expression; call it with one Tensor (or number) per declared variable."""

    def __init__(self, text: str, variables: tuple[str, ...], tree: ast.Expression) -> None:
        self.text = text
        self.variables = variables
        self._tree = tree
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for n in variables]
        self.__signature__ = inspect.Signature(params)

    def __call__(self, *values: Any, **named: Any):
        """Evaluate with chainrule ops; Tensors in give a recorded graph out."""
        import chainrule as cr

        env = dict(zip(self.variables, values))
        env.update(named)
        missing = [n for n in self.variables if n not in env]
        if missing or len(env) != len(self.variables):
            raise ExprError(f"expression needs values for {', '.join(self.variables)}; "
                            f"missing {', '.join(missing) or '-'}")
        env = {k: v if isinstance(v, cr.Tensor) else cr.tensor(v, dtype=cr.float64)
               for k, v in env.items()}
        with np.errstate(all="ignore"):
            out = _Evaluator(env).visit(self._tree.body)
        if not isinstance(out, cr.Tensor):
            out = cr.tensor(float(out), dtype=cr.float64)
        return out

    def __repr__(self) -> str:
        return f"Expr({self.text!r}, variables={self.variables})"


def parse(text: str, variables: Iterable[str]) -> Expr:
    """Check ``text`` against the whitelist and return a callable :class:`Expr`."""
    names = check_variables(variables)
    _prescan(text)
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and the like: not for users
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        where = f" (at column {e.offset})" if e.offset else ""
        detail = "" if e.msg == "invalid syntax" else f": {e.msg}"
        raise ExprError(f"invalid syntax{detail}{where}") from None
    except (RecursionError, MemoryError):
        raise ExprError(f"expression nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as e:  # e.g. null bytes, int literals beyond the digit limit
        raise ExprError(f"invalid expression: {e}") from None
    _check_tree(tree, names)
    return Expr(text.strip(), names, tree)


def check_shapes(shapes: dict) -> tuple:
    """The shape every value broadcasts to; refused (ExprError) when the variables' shapes do
    not broadcast or the result would exceed MAX_ELEMENTS elements (this bounds the work of
    every gate: an expression is elementwise)."""
    try:
        shape = np.broadcast_shapes(*shapes.values()) if shapes else ()
    except ValueError:
        listed = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
        raise ExprError(f"the variables' shapes do not broadcast together: {listed}") from None
    size = int(np.prod(shape, dtype=np.float64))
    if size > MAX_ELEMENTS:
        raise ExprError(f"the variables broadcast to shape {list(shape)} ({size} elements; "
                        f"at most {MAX_ELEMENTS})")
    return tuple(shape)


def parse_value(text: str, name: str = "value") -> np.ndarray:
    """A variable's value from the command line: ``3``, ``-4.5``, ``1,2,3`` or ``[[1,2],[3,4]]``."""
    import json

    if len(text) > 20 * MAX_ELEMENTS:
        raise ExprError(f"value of {name} too long")
    s = text.strip()
    try:
        if s.startswith("["):
            data = json.loads(s)
        elif "," in s:
            data = [float(p) for p in s.split(",")]
        else:
            data = float(s)
        arr = np.array(data, dtype=np.float64)
    except (ValueError, TypeError, RecursionError):
        raise ExprError(f"invalid value for {name}: {text!r} (use a number like 3, a list like "
                        "1,2,3 or [[1,2],[3,4]])") from None
    if arr.size > MAX_ELEMENTS or arr.ndim > 4:
        raise ExprError(f"value of {name} too large (at most {MAX_ELEMENTS} elements, 4 dims)")
    if not np.isfinite(arr).all():
        raise ExprError(f"value of {name} must be finite, got {text!r}")
    return arr
