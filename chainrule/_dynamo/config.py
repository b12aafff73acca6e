"""``torch._dynamo.config``: the switches programs set around ``torch.compile``, kept as plain
attributes (chainrule compiles nothing: ``cr.compile`` returns the callable, which runs eagerly,
so none of them changes what runs). ``patch(...)`` sets some for a block, as torch's does."""

from __future__ import annotations

import contextlib
import sys

suppress_errors = False
verbose = False
cache_size_limit = 8
recompile_limit = 8
accumulated_cache_size_limit = 256
accumulated_recompile_limit = 256
optimize_ddp = True
capture_scalar_outputs = False
capture_dynamic_output_shape_ops = False
automatic_dynamic_shapes = True
assume_static_by_default = True
specialize_int = False
specialize_float = False
force_parameter_static_shapes = True
inline_inbuilt_nn_modules = True
guard_nn_modules = False
error_on_recompile = False
raise_on_ctx_manager_usage = True
log_compilation_metrics = True
skip_nnmodule_hook_guards = True
allow_unspec_int_on_nn_module = False
compiled_autograd = False


@contextlib.contextmanager
def _patch_block(values: dict):
    mod = sys.modules[__name__]
    missing = [k for k in values if not hasattr(mod, k)]
    if missing:
        raise AttributeError(f"{__name__}.{missing[0]} does not exist")
    prev = {k: getattr(mod, k) for k in values}
    for k, v in values.items():
        setattr(mod, k, v)
    try:
        yield
    finally:
        for k, v in prev.items():
            setattr(mod, k, v)


def patch(arg1=None, arg2=None, **kwargs):
    """``with config.patch(suppress_errors=True):`` / ``config.patch("verbose", True)`` /
    ``config.patch({...})``, also as a decorator."""
    values = dict(kwargs)
    if isinstance(arg1, str):
        values[arg1] = arg2
    elif isinstance(arg1, dict):
        values.update(arg1)
    return _Patch(values)


class _Patch(contextlib.ContextDecorator):
    def __init__(self, values: dict) -> None:
        self.values = values
        self._cm = None

    def __enter__(self):
        self._cm = _patch_block(self.values)
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
