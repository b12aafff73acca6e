"""The optional C accelerator of the engine (chainrule/_cengine.c); all metadata is in
pyproject.toml. ``optional=True``: without a C compiler chainrule installs and runs its
pure-Python engine."""

import sys

from setuptools import Extension, setup

# FP operations never trap in chainrule (NumPy's error flags are not read from this code), so
# the compiler may if-convert the clamps in the fused loops and vectorize them.
flags = [] if sys.platform == "win32" else ["-fno-trapping-math"]
setup(ext_modules=[Extension("chainrule._cengine", ["chainrule/_cengine.c"],
                             extra_compile_args=flags, optional=True)])
