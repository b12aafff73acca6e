"""``chainrule run SCRIPT.py [ARGS...]`` / ``chainrule run -m MODULE [ARGS...]``.

Runs a program written for PyTorch on chainrule, as ``python SCRIPT.py`` would run it on torch:
``import torch`` (and every ``torch.<path>``) resolves to chainrule through
:mod:`chainrule.torch_alias`; ``sys.argv``, ``__name__ == "__main__"``, ``sys.path[0]`` (the
script's folder, or the current one with ``-m``) and the exit status are Python's own (the program
runs through :mod:`runpy`; ``sys.exit(n)`` exits with ``n``, an uncaught exception prints its
traceback and exits with 1).

When the program reaches for a torch name chainrule lacks, the error is one line naming it and the
place in the program, exit status 1::

    chainrule run: torch.nn.CTCLoss is not implemented by chainrule (train.py:41)
"""

from __future__ import annotations

import os
import re
import runpy
import sys
import types

from chainrule import torch_alias

__all__ = ["main", "missing_name_message", "USAGE"]

USAGE = ("usage: chainrule run SCRIPT.py [ARGS...]\n"
         "       chainrule run -m MODULE [ARGS...]\n\n"
         "Run a program written for PyTorch on chainrule: inside it `import torch` (torch.nn,\n"
         "torch.nn.functional, torch.optim, torch.utils.data, ...) is chainrule.\n")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_RUNPY = os.path.abspath(runpy.__file__)


def _is_program_frame(filename: str) -> bool:
    """A frame of the program (or a library it uses), not chainrule's, runpy's or importlib's."""
    if filename.startswith("<frozen") or os.path.abspath(filename) == _RUNPY:
        return False
    return not os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)


def _frames(tb: types.TracebackType | None) -> list[tuple[str, int, str]]:
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _torch_path_of_class(cls: type) -> str:
    """Shortest torch path of chainrule class ``cls`` (``chainrule.nn.modules.linear.Linear`` ->
    ``torch.nn.Linear``)."""
    parts = cls.__module__.split(".")
    best = cls.__module__
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None and getattr(mod, cls.__name__, None) is cls:
            best = ".".join(parts[:i])
    return f"{torch_alias.torch_name(best)}.{cls.__qualname__}"


_NO_ATTR_MODULE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_NO_ATTR_TYPE = re.compile(r"type object '(\w+)' has no attribute '(\w+)'")
_NO_ATTR_OBJECT = re.compile(r"'(\w+)' object has no attribute '(\w+)'")
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")


def _is_chainrule(name: str) -> bool:
    return name == "chainrule" or name.startswith("chainrule.")


def _missing_torch_name(exc: BaseException) -> str | None:
    """The torch name whose absence in chainrule raised ``exc``, if that is what happened."""
    msg = str(exc)
    if isinstance(exc, ModuleNotFoundError):
        name = exc.name or ""
        return name if name == "torch" or name.startswith("torch.") else None
    if isinstance(exc, ImportError):
        m = _CANNOT_IMPORT.match(msg)
        if m and _is_chainrule(m.group(2)):
            return f"{torch_alias.torch_name(m.group(2))}.{m.group(1)}"
        return None
    if not isinstance(exc, AttributeError):
        return None
    obj, attr = getattr(exc, "obj", None), getattr(exc, "name", None)
    if isinstance(obj, types.ModuleType) and _is_chainrule(obj.__name__) and attr:
        return f"{torch_alias.torch_name(obj.__name__)}.{attr}"
    if isinstance(obj, type) and _is_chainrule(obj.__module__) and attr:
        return f"{_torch_path_of_class(obj)}.{attr}"
    if obj is not None and _is_chainrule(type(obj).__module__) and attr:
        return f"{_torch_path_of_class(type(obj))}.{attr}"
    m = _NO_ATTR_MODULE.match(msg)
    if m and _is_chainrule(m.group(1)):
        return f"{torch_alias.torch_name(m.group(1))}.{m.group(2)}"
    m = _NO_ATTR_TYPE.match(msg) or _NO_ATTR_OBJECT.match(msg)
    if m and obj is None and m.group(1) == "Tensor":
        return f"torch.Tensor.{m.group(2)}"
    return None


def _program_location(exc: BaseException) -> str | None:
    """``file:line`` of the program's line that touched the missing name, if the program itself
    did (only chainrule's ``__getattr__``, the import machinery and the alias hook ran after it;
    a deeper failure is chainrule's own and keeps its traceback)."""
    frames = _frames(exc.__traceback__)
    last = None
    for i, (filename, _, _) in enumerate(frames):
        if _is_program_frame(filename):
            last = i
    if last is None:
        return None
    for filename, _, func in frames[last + 1:]:
        if filename.startswith("<frozen") or os.path.abspath(filename) == torch_alias.__file__:
            continue
        if func in ("__getattr__", "__getattribute__", "find_spec", "_resolve"):
            continue
        return None
    filename, lineno, _ = frames[last]
    shown = os.path.relpath(filename) if not os.path.isabs(filename) or \
        not os.path.relpath(filename).startswith("..") else filename
    return f"{shown}:{lineno}"


def missing_name_message(exc: BaseException) -> str | None:
    """``chainrule run: torch.X is not implemented by chainrule (file.py:N)``, or None when
    ``exc`` is not a program touching a torch name chainrule lacks."""
    name = _missing_torch_name(exc)
    if name is None:
        return None
    where = _program_location(exc)
    if where is None:
        return None
    return f"chainrule run: {name} is not implemented by chainrule ({where})"


def _program_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without this runner's and runpy's frames at its top."""
    while tb is not None and not _is_program_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _run_file(path: str) -> None:
    """Run a source file as ``python path`` does: as module ``__main__``, with ``__file__`` (and
    so tracebacks and warnings) absolute and ``sys.argv[0]`` as given (``runpy.run_path`` makes
    them one and the same string)."""
    import builtins
    import importlib.machinery
    import io

    path = os.path.abspath(path)
    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __cached__=None, __builtins__=builtins,
                         __loader__=importlib.machinery.SourceFileLoader("__main__", path))
    sys.modules["__main__"] = main  # (pickle finds the program's classes here, as in Python)
    exec(code, main.__dict__)


def _parse(argv: list[str]) -> tuple[str | None, str | None, list[str]] | int:
    """``(script, module, args)``, or an exit status after printing usage or an error."""
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return 0 if argv else 2
    first = argv[0]
    if first == "-m":
        if len(argv) < 2:
            print("chainrule run: error: argument -m: expected a module name", file=sys.stderr)
            return 2
        return None, argv[1], argv[2:]
    if first.startswith("-m"):
        return None, first[2:], argv[1:]
    if first == "--":
        return _parse(argv[1:]) if len(argv) > 1 else _parse([])
    if first.startswith("-"):
        print(f"chainrule run: error: unknown option {first!r} (options go after the script)",
              file=sys.stderr)
        return 2
    return first, None, argv[1:]


def main(argv: list[str]) -> int:
    """Run the program; returns its exit status (``sys.exit`` from the program propagates)."""
    parsed = _parse(list(argv))
    if isinstance(parsed, int):
        return parsed
    script, module, args = parsed
    if script is not None and not os.path.exists(script):
        print(f"chainrule run: can't open file {os.path.abspath(script)!r}: "
              f"[Errno 2] No such file or directory", file=sys.stderr)
        return 2
    torch_alias.install()
    if script is not None:
        sys.argv = [script, *args]
        if os.path.isfile(script):  # a folder or zip with __main__.py: runpy puts it first
            sys.path[0] = os.path.dirname(os.path.abspath(script))
    else:
        sys.argv = [module, *args]  # runpy replaces argv[0] by the module's file
        sys.path[0] = os.getcwd()
    try:
        if script is not None:
            if os.path.isfile(script):
                _run_file(script)
            else:
                runpy.run_path(script, run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001  (reported the way Python reports it)
        message = missing_name_message(exc)
        if message is not None:
            print(message, file=sys.stderr)
            return 1
        tb = _program_traceback(exc.__traceback__)
        if tb is None and module is not None and isinstance(exc, ImportError):
            print(f"chainrule run: {exc}", file=sys.stderr)
            return 1
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0
