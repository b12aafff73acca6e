"""Fake ``cupyx`` for the CPU stand-in: ``cupyx.scipy.special`` over SciPy's ufuncs."""

from __future__ import annotations

import sys
import types

import cupy
import scipy.special as _scipy_special

scipy_ = types.ModuleType("cupyx.scipy")
special = types.ModuleType("cupyx.scipy.special")
sys.modules["cupyx.scipy"] = scipy_
sys.modules["cupyx.scipy.special"] = special
scipy_.special = special
scipy = scipy_
cupy._populate(special, "cupyx.scipy.special", _scipy_special)
cupy._populate(sys.modules[__name__], "cupyx", cupy)
