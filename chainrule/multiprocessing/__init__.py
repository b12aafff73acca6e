"""``torch.multiprocessing``: Python's ``multiprocessing``, re-exported as torch does, plus
``spawn`` / ``start_processes`` with torch's semantics (``fn(i, *args)`` in ``nprocs``
processes; an exception in one ends the others and is raised in the parent as
``ProcessRaisedException`` carrying the child's traceback) and the sharing-strategy switches.

chainrule's tensors are NumPy arrays: they travel between processes by pickling (copies), not
through shared memory as torch's do, so the sharing strategy is recorded only.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import *  # noqa: F403
from multiprocessing import get_all_start_methods, get_context, get_start_method  # noqa: F401
from multiprocessing import set_start_method  # noqa: F401

from chainrule.multiprocessing.spawn import (
    ProcessContext, ProcessException, ProcessExitedException, ProcessRaisedException, SpawnContext,
    spawn, start_processes,
)

__all__ = (["set_sharing_strategy", "get_sharing_strategy", "get_all_sharing_strategies",
            "spawn", "start_processes", "ProcessContext", "ProcessException",
            "ProcessExitedException", "ProcessRaisedException", "SpawnContext",
            "init_reductions"]
           + list(multiprocessing.__all__))

_STRATEGIES = {"file_descriptor", "file_system"}
_strategy = {"name": "file_descriptor"}


def set_sharing_strategy(new_strategy: str) -> None:
    """Recorded (see the module docstring); one of :func:`get_all_sharing_strategies`."""
    if new_strategy not in _STRATEGIES:
        raise AssertionError(f"invalid sharing strategy {new_strategy!r}, expected one of "
                             f"{sorted(_STRATEGIES)}")
    _strategy["name"] = new_strategy


def get_sharing_strategy() -> str:
    return _strategy["name"]


def get_all_sharing_strategies() -> set[str]:
    return set(_STRATEGIES)


def init_reductions() -> None:
    """Nothing to register: chainrule's tensors pickle as NumPy arrays (copies)."""
