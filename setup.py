"""The optional C accelerator of the engine (chainrule/_cengine.c); all metadata is in
pyproject.toml. ``optional=True``: without a C compiler chainrule installs and runs its
pure-Python engine."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("chainrule._cengine", ["chainrule/_cengine.c"], optional=True)])
