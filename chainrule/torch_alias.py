"""``import torch`` resolving to chainrule: the import hook behind ``chainrule run``.

:func:`install` puts a finder first on ``sys.meta_path`` that answers every import of ``torch``
or ``torch.<anything>`` with the chainrule module of the same path (``torch.nn.functional`` is
``chainrule.nn.functional``, ``torch.nn.modules.linear`` is ``chainrule.nn.modules.linear``),
plus the few places where chainrule's layout differs from torch's (:data:`RENAMES`:
``torch.utils.data`` is ``chainrule.data``). The module object is chainrule's own, so
``torch.nn.Linear is chainrule.nn.Linear`` and monkey-patching one patches the other.

Nothing is installed under the name ``torch``: only a process that calls :func:`install` (the
``chainrule run`` command does) sees the alias, and a real PyTorch in the same environment stays
importable everywhere else. A torch path chainrule lacks raises ``ModuleNotFoundError`` here (never
falls through to a real torch); :func:`torch_name` turns chainrule's names back into torch's for
error messages.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__all__ = ["install", "uninstall", "installed", "chainrule_name", "torch_name", "RENAMES"]

# torch path prefix -> chainrule path prefix, where chainrule keeps a part under another name.
# Tried after the same-named chainrule module (so a later chainrule.utils.data wins).
RENAMES: dict[str, str] = {
    "torch.utils.data": "chainrule.data",
}


def _is_torch(fullname: str) -> bool:
    return fullname == "torch" or fullname.startswith("torch.")


def chainrule_name(fullname: str) -> list[str]:
    """The chainrule module paths that may stand for torch path ``fullname``, best first."""
    names = ["chainrule" + fullname[len("torch"):]]
    for torch_prefix, cr_prefix in RENAMES.items():
        if fullname == torch_prefix or fullname.startswith(torch_prefix + "."):
            names.append(cr_prefix + fullname[len(torch_prefix):])
    return names


def torch_name(name: str) -> str:
    """Torch's spelling of chainrule path ``name`` (``chainrule.data``: ``torch.utils.data``)."""
    for torch_prefix, cr_prefix in RENAMES.items():
        if name == cr_prefix or name.startswith(cr_prefix + "."):
            return torch_prefix + name[len(cr_prefix):]
    if name == "chainrule" or name.startswith("chainrule."):
        return "torch" + name[len("chainrule"):]
    return name


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _resolve(fullname: str):
    """The chainrule object that ``import fullname`` should give, or None.

    A chainrule module of the same (or renamed) path, else a non-module attribute that plays
    the module's part (``cr.cuda.amp``, ``cr.backends.cudnn`` are namespace objects).
    """
    for name in chainrule_name(fullname):
        parent, _, child = name.rpartition(".")
        if parent and parent not in sys.modules and not _module_exists(parent):
            continue
        if not parent or _module_exists(name):
            return importlib.import_module(name)
        owner = importlib.import_module(parent)
        try:
            value = getattr(owner, child)
        except (AttributeError, ImportError):
            continue
        if value is not None and not isinstance(value, (type, types.FunctionType)):
            return value
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads ``torch.X`` by putting chainrule's object for it in ``sys.modules``."""

    def __init__(self, target) -> None:
        self.target = target

    def create_module(self, spec):
        return None  # a throwaway module; exec_module swaps in the target

    def exec_module(self, module) -> None:
        target = self.target
        if isinstance(target, types.ModuleType) and not hasattr(target, "__path__"):
            # torch.cuda, torch.backends, ... are packages in torch (torch.cuda.amp,
            # torch.backends.cudnn); an empty search path lets the import system ask this
            # finder for their children.
            target.__path__ = []
        sys.modules[module.__name__] = target


class TorchAliasFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``: every ``torch`` import is answered from chainrule."""

    def find_spec(self, fullname, path=None, target=None):
        if not _is_torch(fullname):
            return None
        obj = _resolve(fullname)
        if obj is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} ({fullname} is not implemented by chainrule)",
                name=fullname)
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(obj),
                                              is_package=isinstance(obj, types.ModuleType))


_finder: TorchAliasFinder | None = None


def install() -> None:
    """Make ``import torch...`` resolve to chainrule in this process (idempotent)."""
    global _finder
    if _finder is None:
        _finder = TorchAliasFinder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    _carry_to_spawned_children()


class _InstallInChild:
    """Rides in ``multiprocessing``'s preparation data to a spawned child, where it is unpickled
    before the child re-imports the program's main module: it installs the hook there, so the
    program's ``import torch`` is chainrule in its worker processes too (``torch.multiprocessing
    .spawn``, ``DataLoader`` workers with ``spawn``/``forkserver``)."""

    def __reduce__(self):
        return (install, ())


def _carry_to_spawned_children() -> None:
    import multiprocessing.spawn as mp_spawn

    prepare = mp_spawn.get_preparation_data
    if getattr(prepare, "_chainrule_alias", False):
        return

    def get_preparation_data(name):
        data = prepare(name)
        if installed():
            data["chainrule_torch_alias"] = _InstallInChild()
        return data

    get_preparation_data._chainrule_alias = True
    mp_spawn.get_preparation_data = get_preparation_data


def installed() -> bool:
    return _finder is not None and _finder in sys.meta_path


def uninstall() -> None:
    """Remove the hook and every ``torch`` entry it put in ``sys.modules``."""
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name in [n for n in sys.modules if _is_torch(n)]:
        mod = sys.modules[name]
        if not getattr(mod, "__name__", "").startswith("torch"):
            del sys.modules[name]
