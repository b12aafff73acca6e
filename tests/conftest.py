"""Shared pytest setup: the tests folder on sys.path (for op_registry) and hypothesis profiles."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is optional: its tests skip themselves
    pass
else:
    # No deadline: the machine is shared and timings vary (tests set their own max_examples).
    settings.register_profile("chainrule", deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "chainrule"))
