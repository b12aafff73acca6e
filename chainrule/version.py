"""``torch.version``: what programs read to learn the build (``torch.version.cuda is None`` on a
CPU-only build; chainrule's GPU support comes from CuPy at run time, not from the build, so
``cuda`` says None and ``cr.cuda.is_available()`` is the question to ask)."""

from __future__ import annotations

from chainrule import __version__

__all__ = ["__version__", "cuda", "hip", "rocm", "xpu", "debug", "git_version"]

cuda = None   # no CUDA toolkit compiled in (CuPy, if present, brings its own)
hip = None
rocm = None
xpu = None
debug = False
git_version = "Unknown"
