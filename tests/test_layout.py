"""The package's layout rules, checked on its source (docs/internals.md: "Module map", "The one
import circle", "Where is the backward of X?").

- Modules import in layers: the only import circle is Tensor <-> the modules built on it,
  closed by one mechanism (``tensor._late``, bound once by ``chainrule/__init__.py``), so no
  ``import`` statement anywhere (module level, inside a function, or a package importing its
  own submodules) closes a circle.
- Gates keep to the gate contract: no device or fast-path branches, no engine-private reads,
  no type tests of their values (``kernels_for`` chooses; ``ctx.needs_input_grad`` asks).
- Each gate is found in one step from its node, and the paths internals.md names exist.
- ``import chainrule`` leaves glibc's malloc alone (the first backward tunes it).
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

import chainrule
from chainrule.autograd.function import Function

ROOT = pathlib.Path(chainrule.__file__).parent
# modules that are imported only for their optional dependency (CuPy, ...), never in a circle
OPTIONAL = {"chainrule.kernels.cuda"}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict:
    """The package's modules: its .py files, and its C extensions (named by their .c source)
    as modules that import nothing, so ``from chainrule import _crandom`` is not an import of
    the package ``chainrule``."""
    found = {_module_name(p): p for p in ROOT.rglob("*.py")}
    for p in ROOT.rglob("*.c"):
        found.setdefault(_module_name(p), None)  # a Cython build's .c twin of a .py is not one
    return found


def _imports(name: str, path: pathlib.Path, modules: dict) -> set:
    """The chainrule modules ``name`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_circles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) - OPTIONAL if path else set()
             for name, path in modules.items()}
    # A package's imports of its own submodules count too: a submodule that imports a name from
    # its package (``from chainrule.autograd import grad``) closes a circle, since the package
    # is half-initialised while it imports that submodule.
    assert _cycles(graph) == []


def _gate_classes() -> list:
    import chainrule.nn.functional  # noqa: F401  (load every gate)
    import chainrule.nn.attention  # noqa: F401
    import chainrule.nn.modules.rnn  # noqa: F401
    import chainrule.ops.conv  # noqa: F401
    import chainrule.distributions  # noqa: F401
    import chainrule.func  # noqa: F401

    seen, todo = [], [Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("chainrule.") and sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return [c for c in seen if not c.__module__.startswith("chainrule.autograd")]


FORBIDDEN = ("gpu_ndarray", "is_gpu_array", "fits_loops", "isinstance(g, Tensor)",
             "isinstance(x, Tensor)", "is_tensor(", "ctx._", "cuda", "_cpu_loops")


def _source_path(cls) -> pathlib.Path:
    """The .py file of ``cls``'s module, also where that module runs compiled."""
    path = pathlib.Path(sys.modules[cls.__module__].__file__)
    if path.suffix != ".py":  # chainrule/ops/binary.cpython-311-x86_64-linux-gnu.so
        path = path.with_name(path.name.split(".")[0] + ".py")
    return path


def _method_source(cls, method: str) -> str:
    """The source of ``cls.method``, read from its module's .py file (a compiled module's
    functions have no Python code object for ``inspect.getsource``)."""
    path = _source_path(cls)
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    return ast.get_source_segment(text, item)
    raise AssertionError(f"no source for {cls.__name__}.{method} in {path}")


@pytest.mark.parametrize("cls", _gate_classes(), ids=lambda c: c.__name__)
def test_gates_keep_to_the_contract(cls) -> None:
    for method in ("forward", "backward", "differentiable_backward"):
        fn = cls.__dict__.get(method)
        if fn is None:
            continue
        source = _method_source(cls, method)
        for word in FORBIDDEN:
            assert word not in source, f"{cls.__name__}.{method} contains {word!r}"


def test_malloc_is_tuned_by_the_first_backward_not_by_import() -> None:
    """``import chainrule`` leaves glibc's malloc alone; the first backward asks once."""
    import os
    import subprocess
    import sys

    code = (
        "import chainrule as cr\n"
        "from chainrule import devices\n"
        "assert not devices._malloc_asked, 'import tuned malloc'\n"
        "x = cr.ones(3, requires_grad=True)\n"
        "(x * x).sum().backward()\n"
        "assert devices._malloc_asked, 'backward did not ask'\n"
        "assert devices.keep_freed_memory() is False  # once per process\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CHAINRULE_KEEP_MALLOC"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_where_is_the_backward_of_each_gate() -> None:
    """docs/internals.md's one-step answer: ``type(y.grad_fn)`` is ``chainrule.<file>.<Gate>``,
    and ``grep -rn "class <Gate>(" chainrule/`` finds that gate once (any other hit is an
    ``nn.Module`` layer of the same name, never a second gate)."""
    import importlib
    import re

    sources = {p.resolve(): p.read_text() for p in ROOT.rglob("*.py")}
    for cls in _gate_classes():
        own = _source_path(cls).resolve()
        assert own == (ROOT.parent / (cls.__module__.replace(".", "/") + ".py")).resolve() or (
            own.name == "__init__.py"), f"{cls.__name__}: its module path is not its file"
        pattern = re.compile(rf"^class {re.escape(cls.__name__)}\(", re.M)
        for path, text in sources.items():
            if path == own or not pattern.search(text):
                continue
            other = getattr(importlib.import_module(_module_name(path)), cls.__name__)
            assert not issubclass(other, Function), (
                f"two gates named {cls.__name__}: {own} and {path}")


def test_internals_names_files_that_exist() -> None:
    """Every ``chainrule`` path docs/internals.md names is a file or folder of the package."""
    import re

    text = (ROOT.parent / "docs" / "internals.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.(?:py|c|pxd))`", text))
    named |= {m + "/" for m in re.findall(r"`([a-z_]+)/`", text)}
    missing = [n for n in sorted(named)
               if not any((base / n).exists() for base in (ROOT, *ROOT.iterdir(), ROOT.parent))]
    assert missing == []
