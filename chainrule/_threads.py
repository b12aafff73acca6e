"""The thread counts ``set_num_threads`` records, and who must follow them: a module that imports
nothing, so the kernels can read it (``chainrule._runtime``, where the setters live, reaches the
whole library)."""

from __future__ import annotations

# "n": set_num_threads's count (None: never called), "interop": set_num_interop_threads's,
# "limiter": threadpoolctl's controller, made at the first call
counts: dict = {"n": None, "interop": None, "limiter": None}
# called with no arguments after set_num_threads (kernels.cpu re-sizes its row loops' threads)
on_set: list = []
