"""``torch.compiler``: chainrule captures no graphs, so ``compile`` is ``cr.compile`` (the
callable itself, run eagerly), code is never inside a compiled region (``is_compiling()`` is
False), and ``disable``, ``allow_in_graph``, ``reset``, ... accept torch's arguments and leave
the code as it is."""

from __future__ import annotations

import contextlib
import types

from chainrule._runtime import compile

__all__ = ["compile", "config", "reset", "allow_in_graph", "assume_constant_result",
           "substitute_in_graph", "list_backends", "disable", "set_stance",
           "cudagraph_mark_step_begin", "is_compiling", "is_dynamo_compiling", "is_exporting",
           "set_default_backend", "get_default_backend", "nested_compile_region", "wrap_numpy"]

# torch.compiler.config: plain attributes, read back as set
config = types.SimpleNamespace(job_id=None, dynamic_sources="", unbacked_sources="",
                               force_disable_caches=False, cache_key_tag="")

_backend = {"name": "inductor"}


def reset() -> None:
    """Nothing is cached: no compiled code exists."""


def disable(fn=None, recursive: bool = True, *, reason=None):
    """``@torch.compiler.disable`` (with or without arguments): ``fn`` unchanged."""
    if fn is None:
        return lambda f: f
    if not callable(fn):
        raise TypeError(f"disable: expected a callable, got {type(fn).__name__}")
    return fn


def allow_in_graph(fn):
    if isinstance(fn, (list, tuple)):
        return [allow_in_graph(f) for f in fn]
    if not callable(fn):
        raise TypeError("allow_in_graph expects a callable")
    return fn


def assume_constant_result(fn):
    return fn


def substitute_in_graph(original_fn, *, can_constant_fold_through: bool = False,
                        skip_signature_check: bool = False):
    """A decorator that keeps ``original_fn`` where it is (nothing is traced)."""
    if not callable(original_fn):
        raise TypeError(f"substitute_in_graph expects a function but got {type(original_fn)!r}")
    return lambda fn: fn


def list_backends(exclude_tags=("debug", "experimental")) -> list[str]:
    """The backend names ``cr.compile`` accepts by default (all run eagerly)."""
    return ["inductor"]


def set_default_backend(backend: str) -> None:
    _backend["name"] = backend


def get_default_backend() -> str:
    return _backend["name"]


def set_stance(stance: str = "default", *, skip_guard_eval_unsafe: bool = False,
               force_backend=None):
    """Accepted (decorator or context manager); chainrule always runs eagerly."""
    stances = ("default", "force_eager", "eager_on_recompile", "fail_on_recompile",
               "eager_then_compile", "aot_eager_then_compile")
    if stance not in stances:
        raise RuntimeError(f"invalid torch.compile stance '{stance}'")
    return contextlib.nullcontext()


def cudagraph_mark_step_begin() -> None:
    """No CUDA graphs are recorded."""


def is_compiling() -> bool:
    """False: chainrule code never runs inside a captured graph."""
    return False


def is_dynamo_compiling() -> bool:
    return False


def is_exporting() -> bool:
    return False


def nested_compile_region(fn=None):
    return fn if fn is not None else (lambda f: f)


def wrap_numpy(fn):
    """Calls ``fn`` with its Tensor arguments as NumPy arrays and returns Tensors (what torch's
    wrapper does outside a compiled region)."""
    import functools

    import numpy as np

    from chainrule._pytree import _tree_map
    from chainrule.creation import as_tensor
    from chainrule.tensor import Tensor

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        args, kwargs = _tree_map(lambda x: x.numpy() if isinstance(x, Tensor) else x,
                                 (args, kwargs))
        out = fn(*args, **kwargs)
        return _tree_map(lambda x: as_tensor(x) if isinstance(x, np.ndarray) else x, out)
    return wrapped
