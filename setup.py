"""Native parts of chainrule, all optional: without a C compiler (or without Cython) chainrule
installs and runs as pure Python, with the same results. All metadata is in pyproject.toml.

- ``chainrule/kernels/_cpu_loops.c``: one-pass C loops behind a buffer-in, buffer-out interface.
- ``chainrule/_crandom.c``: the random-number transforms that reproduce PyTorch's roundings.
- The engine's hot modules (those on every op's path), compiled by Cython from the very ``.py`` files that are read and
  run as Python elsewhere (pure-Python mode: the ``.pxd`` beside each only declares the C
  fields of its classes). ``CHAINRULE_PURE_PYTHON=1`` runs the ``.py`` files even where the
  compiled ones are installed.
"""

import sys

from setuptools import Extension, setup

COMPILED = ["chainrule/tensor.py", "chainrule/autograd/function.py", "chainrule/ops/binary.py",
            "chainrule/ops/elementwise.py", "chainrule/kernels/dispatch.py",
            "chainrule/autograd/engine.py", "chainrule/_state.py"]

posix = sys.platform != "win32"
# FP operations never trap in chainrule (NumPy's error flags are not read from this code), so
# the compiler may if-convert the clamps in the fused loops and vectorize them.
flags = ["-fno-trapping-math"] if posix else []
# The random kernels reproduce PyTorch's roundings: no a*b+c may be fused unless the code says
# fma(), and the C library's log/sin/... are called as they are.
random_flags = ["-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"] if posix else []
ext_modules = [
    Extension("chainrule.kernels._cpu_loops", ["chainrule/kernels/_cpu_loops.c"],
              extra_compile_args=flags + (["-pthread"] if posix else []),
              extra_link_args=["-pthread"] if posix else [], optional=True),
    Extension("chainrule._crandom", ["chainrule/_crandom.c"], extra_compile_args=random_flags,
              libraries=["m"] if posix else [], optional=True),
]
try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: the engine runs as Python
    pass
else:
    engine = [Extension(path[:-3].replace("/", "."), [path], optional=True) for path in COMPILED]
    try:
        ext_modules += cythonize(engine, language_level=3, quiet=True, compiler_directives={
            "binding": True, "embedsignature": True,
            # types come from the .pxd files only: annotations stay hints, as in Python
            "annotation_typing": False})
    except Exception as e:  # a Cython that cannot compile them: the engine runs as Python
        print(f"chainrule: not compiling the engine ({e})", file=sys.stderr)
setup(ext_modules=ext_modules)
