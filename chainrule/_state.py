"""Thread-local switches read on every op (kept outside the autograd package to avoid cycles)."""

from __future__ import annotations

import threading


class _State(threading.local):
    """``grad_enabled`` plus the optional recording modes; ``extras`` is True when any of the
    modes is on, so the hot path tests one attribute."""

    grad_enabled = True   # record new ops into the graph
    extras = False        # any of the modes below is on
    _record_sites = False  # remember file:line of each op (anomaly mode, check_gates, viz)
    _record_inputs = False  # keep each node's input values (check_gates)
    _anomaly = False       # check every forward/backward result for NaN/Inf
    _scopes: tuple = ()    # the Modules / Functions being called (for viz clusters)

    def _update(self) -> None:
        self.extras = bool(self._record_sites or self._record_inputs or self._anomaly
                           or self._scopes)

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
