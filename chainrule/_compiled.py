"""Which of chainrule's modules run compiled, and the switch that runs them as Python.

Where a C compiler and Cython were present at install time, ``setup.py`` compiles the engine's
hot modules from their own ``.py`` files (:data:`MODULES`). ``CHAINRULE_PURE_PYTHON=1`` in the
environment makes Python load the ``.py`` files instead (same results: the test suite runs both
ways); :func:`engine_compiled` says which is running.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

__all__ = ["MODULES", "engine_compiled", "pure_python_requested"]

MODULES = ("chainrule.tensor", "chainrule.autograd.function", "chainrule.autograd.engine",
           "chainrule.ops.binary", "chainrule.ops.elementwise", "chainrule.kernels.dispatch",
           "chainrule._state")


def pure_python_requested() -> bool:
    return os.environ.get("CHAINRULE_PURE_PYTHON", "") not in ("", "0")


def engine_compiled() -> bool:
    """True when the engine's modules run as compiled extensions."""
    module = sys.modules.get(MODULES[0])
    return module is not None and not getattr(module, "__file__", "").endswith(".py")


class _SourceOnly:
    """A meta-path finder that loads :data:`MODULES` from their ``.py`` files."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in MODULES or not path:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        return importlib.machinery.FileFinder(path[0], loader).find_spec(name, target)


if pure_python_requested():
    sys.meta_path.insert(0, _SourceOnly())
