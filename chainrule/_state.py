"""Per-thread switches read on every op (kept outside the autograd package to avoid cycles).

Grad mode and the recording modes belong to a thread, as torch's grad mode does: a thread starts
with the defaults, and ``no_grad`` in one thread leaves the others recording. Each thread's
switches are one :class:`Switches` object, which :func:`current` returns: the main thread's is
found by comparing thread idents (an op reads its switches on every call, and a
``threading.local`` lookup costs more than the rest of that read), other threads' live in a
``threading.local``. ``state`` reads and writes the calling thread's switches by attribute
(``state.grad_enabled = False``) for code off the op path. Compiled with the engine
(``_state.pxd``), where ``Switches`` holds C fields.
"""

from __future__ import annotations

import threading
from threading import get_ident


class Switches:
    """``grad_enabled`` plus the optional recording modes; ``extras`` is True when any of the
    modes is on, so the hot path tests one attribute."""

    __slots__ = ("grad_enabled", "extras", "modes", "_record_sites", "_record_inputs", "_anomaly",
                 "_scopes", "inference")

    def __init__(self) -> None:
        self.grad_enabled = True  # record new ops into the graph
        self.extras = False  # any of the modes below is on, or a Module is running (_scopes)
        self.modes = False  # one of the recording modes below is on (not just _scopes)
        self._record_sites = False  # remember file:line of each op (anomaly mode, check_gates, viz)
        self._record_inputs = False  # keep each node's input values (check_gates)
        self._anomaly = False  # check every forward/backward result for NaN/Inf
        self._scopes = ()  # the Modules / Functions being called (for viz clusters)
        self.inference = False  # inside inference_mode (which also turns grad_enabled off)

    def _update(self) -> None:
        self.modes = bool(self._record_sites or self._record_inputs or self._anomaly)
        self.extras = self.modes or bool(self._scopes)

    def enter_scope(self, module) -> tuple:
        """Module.__call__: ops created until ``exit_scope`` record ``module`` in their scope."""
        prev = self._scopes
        self._scopes = prev + (module,)
        self.extras = True
        return prev

    def exit_scope(self, prev: tuple) -> None:
        self._scopes = prev
        if not prev:
            self.extras = self.modes

    @property
    def record_sites(self):
        return self._record_sites

    @record_sites.setter
    def record_sites(self, value) -> None:
        self._record_sites = value
        self._update()

    @property
    def record_inputs(self):
        return self._record_inputs

    @record_inputs.setter
    def record_inputs(self, value) -> None:
        self._record_inputs = value
        self._update()

    @property
    def anomaly(self):
        return self._anomaly

    @anomaly.setter
    def anomaly(self, value) -> None:
        self._anomaly = value
        self._update()

    @property
    def scopes(self):
        return self._scopes

    @scopes.setter
    def scopes(self, value) -> None:
        self._scopes = value
        self._update()


_MAIN = get_ident()  # the thread that imported chainrule (a fork's child keeps its ident)
_main = Switches()
_others = threading.local()


def current() -> Switches:
    """The calling thread's switches."""
    ident = get_ident()
    if ident == _MAIN:
        return _main
    switches = getattr(_others, "switches", None)
    if switches is None:
        switches = _others.switches = Switches()
    return switches


class _ThisThread:
    """``state``: the calling thread's :class:`Switches`, attribute by attribute."""

    __slots__ = ()

    def __getattr__(self, name: str):
        return getattr(current(), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(current(), name, value)


state = _ThisThread()
