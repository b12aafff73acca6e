"""The ``chainrule explain`` command: the staged forward and backward pass of an expression,
as text, markdown or SVG, or as the interactive page (``--html``)."""

from __future__ import annotations

import sys

from chainrule.viz.explain import _explain, _fmt
from chainrule.viz.expr import ExprError, check_shapes, parse, parse_value
from chainrule.viz.html import html

__all__ = ["main"]


_USAGE = ('usage: chainrule explain "EXPR" NAME=VALUE ... [--format text|markdown|svg] '
          "[--html PATH]\n"
          '  e.g. chainrule explain "(x + sigmoid(y)) / (sigmoid(x) + (x+y)**2)" x=3 y=-4\n'
          "  values: 3, -4.5, 1,2,3 or [[1,2],[3,4]]; functions: "
          "exp log sqrt sigmoid tanh sin cos abs max min relu pow\n"
          "  --html PATH also writes the interactive page (step forward, then backward)\n"
          "  exit status: 0, or 1 when a gradient disagrees with the numerical check (kinks "
          "and points outside the domain are explained, not counted), 2 for a bad expression")


def _option(argv: list, i: int, name: str) -> tuple[str, int]:
    a = argv[i]
    if "=" in a:
        return a.split("=", 1)[1], i
    if i + 1 < len(argv):
        return argv[i + 1], i + 1
    raise ExprError(f"{name} needs a value")


def main(argv: list[str] | None = None) -> int:
    """``chainrule explain "EXPR" x=3 y=-4 [--format text|markdown|svg] [--html PATH]``;
    returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) > 1 and argv[0] == "explain":
        argv = argv[1:]
    fmt, text, assigns, html_path = "text", None, [], None
    i = 0
    try:
        while i < len(argv):
            a = argv[i]
            if a in ("-h", "--help"):
                print(_USAGE)
                return 0
            if a == "--format" or a.startswith("--format="):
                fmt, i = _option(argv, i, "--format")
                if fmt not in ("text", "markdown", "svg"):
                    raise ExprError(f"--format must be text, markdown or svg, got {fmt!r}")
            elif a == "--html" or a.startswith("--html="):
                html_path, i = _option(argv, i, "--html")
                if not html_path:
                    raise ExprError("--html needs a file name")
            elif text is None and not _is_assignment(a):
                text = a
            elif _is_assignment(a):
                name, value = a.split("=", 1)
                assigns.append((name.strip(), parse_value(value, name.strip())))
            else:
                raise ExprError(f"unexpected argument {a!r} (expected NAME=VALUE)")
            i += 1
        if text is None:
            raise ExprError("missing EXPR")
        if not assigns:
            raise ExprError("no variables given: add NAME=VALUE arguments, e.g. x=3")
        expr = parse(text, [n for n, _ in assigns])
        check_shapes({n: v.shape for n, v in assigns})
        names = [n for n, _ in assigns]
        out, mismatches, tr = _explain(expr, tuple(v for _, v in assigns), fmt, names)
        if html_path is not None:
            html(tr.output, html_path, names={leaf: n for n, leaf in zip(names, tr.leaves)},
                 title=f"f = {expr.text} at " + ", ".join(
                     f"{n} = {_fmt(leaf._data)}" for n, leaf in zip(names, tr.leaves)))
    except ExprError as e:
        print(f"chainrule explain: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"chainrule explain: error: cannot write {html_path}: {e.strerror or e}",
              file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, ImportError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"chainrule explain: error: {msg}", file=sys.stderr)
        return 2
    sys.stdout.write(out)
    if mismatches:
        print(f"chainrule explain: {mismatches} gradient entries disagree with the numerical "
              "check (MISMATCH above)", file=sys.stderr)
        return 1
    return 0


def _is_assignment(a: str) -> bool:
    name = a.split("=", 1)[0].strip()
    return "=" in a and name.isidentifier() and not a.startswith("-") and "==" not in a


if __name__ == "__main__":
    raise SystemExit(main())
