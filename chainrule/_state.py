"""Thread-local switches read on every op (kept outside the autograd package to avoid cycles)."""

from __future__ import annotations

import threading


class _State(threading.local):
    """``grad_enabled`` plus the optional recording modes; ``extras`` is True when any of the
    modes is on, so the hot path tests one attribute."""

    grad_enabled = True   # record new ops into the graph
    extras = False        # any of the modes below is on, or a Module is running (_scopes)
    modes = False         # one of the recording modes below is on (not just _scopes)
    _record_sites = False  # remember file:line of each op (anomaly mode, check_gates, viz)
    _record_inputs = False  # keep each node's input values (check_gates)
    _anomaly = False       # check every forward/backward result for NaN/Inf
    _scopes: tuple = ()    # the Modules / Functions being called (for viz clusters)

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

    def _mode(name):  # noqa: N805  (a property factory used in the class body)
        private = "_" + name

        def get(self):
            return getattr(self, private)

        def set(self, value):
            setattr(self, private, value)
            self._update()

        return property(get, set)

    record_sites = _mode("record_sites")
    record_inputs = _mode("record_inputs")
    anomaly = _mode("anomaly")
    scopes = _mode("scopes")
    del _mode


state = _State()
