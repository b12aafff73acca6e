"""The package's layout rules, checked on its source (docs/internals.md, "Where things are").

- Modules import in layers: the only import circle is Tensor <-> the modules built on it,
  closed by one mechanism (``tensor._late``, bound once by ``chainrule/__init__.py``), so no
  ``import`` statement anywhere (module level or inside a function) closes a circle.
- Gates keep to the gate contract: no device or fast-path branches, no engine-private reads,
  no type tests of their values (``kernels_for`` chooses; ``ctx.needs_input_grad`` asks).
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
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


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
    graph = {name: _imports(name, path, modules) - OPTIONAL for name, path in modules.items()}
    # a package imports its submodules (to re-export them): that edge is not a layer crossing
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert _cycles(graph) == []


def _gate_classes() -> list:
    import chainrule.nn.functional  # noqa: F401  (load every gate)
    import chainrule.nn.attention  # noqa: F401
    import chainrule.nn.modules.rnn  # noqa: F401
    import chainrule.ops.conv  # noqa: F401

    seen, todo = [], [Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("chainrule.") and sub not in seen:
                seen.append(sub)
                todo.append(sub)
    import chainrule.distributions  # noqa: F401

    return [c for c in seen if not c.__module__.startswith("chainrule.autograd")]


FORBIDDEN = ("gpu_ndarray", "is_gpu_array", "fits_loops", "isinstance(g, Tensor)",
             "isinstance(x, Tensor)", "is_tensor(", "ctx._", "cuda", "_cpu_loops")


def _method_source(cls, method: str) -> str:
    """The source of ``cls.method``, read from its module's .py file (a compiled module's
    functions have no Python code object for ``inspect.getsource``)."""
    path = pathlib.Path(sys.modules[cls.__module__].__file__)
    if path.suffix != ".py":  # chainrule/ops/binary.cpython-311-x86_64-linux-gnu.so
        path = path.with_name(path.name.split(".")[0] + ".py")
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
