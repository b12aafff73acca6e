"""The optional C accelerators: the engine (chainrule/_cengine.c) and the random kernels
(chainrule/_crandom.c); all metadata is in pyproject.toml. ``optional=True``: without a C
compiler chainrule installs and runs its pure-Python versions."""

import sys

from setuptools import Extension, setup

# FP operations never trap in chainrule (NumPy's error flags are not read from this code), so
# the compiler may if-convert the clamps in the fused loops and vectorize them.
flags = [] if sys.platform == "win32" else ["-fno-trapping-math"]
# The random kernels reproduce PyTorch's roundings: no a*b+c may be fused unless the code says
# fma(), and the C library's log/sin/... are called as they are.
random_flags = [] if sys.platform == "win32" else ["-ffp-contract=off", "-fno-math-errno",
                                                 "-fno-trapping-math"]
libm = [] if sys.platform == "win32" else ["m"]
setup(ext_modules=[
    Extension("chainrule._cengine", ["chainrule/_cengine.c"], extra_compile_args=flags,
              optional=True),
    Extension("chainrule._crandom", ["chainrule/_crandom.c"], extra_compile_args=random_flags,
              libraries=libm, optional=True),
])
