"""``torch.jit`` for programs that use it in passing: chainrule has no TorchScript compiler, so
``script`` and ``trace`` return the function or Module itself, which runs eagerly with the same
results. What a TorchScript file would be for, ``jit.save``/``jit.load``, is refused with the
alternative: ``cr.save(model.state_dict(), path)``.

Differences from torch (docs/api.md): a scripted function keeps Python's semantics (no static
type checks, no TorchScript errors for code TorchScript would reject), ``is_scripting()`` and
``is_tracing()`` are always False, ``fork`` runs the call at once.
"""

from __future__ import annotations

import typing
import warnings

__all__ = ["script", "trace", "trace_module", "script_method", "script_if_tracing", "ignore",
           "unused", "export", "interface", "is_scripting", "is_tracing", "annotate",
           "Final", "Attribute", "fork", "wait", "Future", "save", "load", "freeze",
           "optimize_for_inference", "optimized_execution", "set_fusion_strategy",
           "strict_fusion", "ScriptModule", "ScriptFunction", "Error", "annotations",
           "enable_onednn_fusion", "onednn_fusion_enabled", "ScriptWarning", "TracerWarning",
           "TracingCheckError", "isinstance", "set_module"]

Final = typing.Final
Error = RuntimeError
_builtin_isinstance = isinstance


class ScriptWarning(Warning):
    pass


class TracerWarning(Warning):
    pass


class TracingCheckError(Exception):
    def __init__(self, graph_diff_error, tensor_compare_error, extra_msg=None) -> None:
        super().__init__(extra_msg or "Tracing failed sanity checks!")
        self.graph_diff_error, self.tensor_compare_error = graph_diff_error, tensor_compare_error
annotations = typing  # torch.jit.annotations: the typing names TorchScript reads

def _deprecated(name: str, instead: str = "switch to `torch.compile` or `torch.export`") -> None:
    """torch 2.13's DeprecationWarning for this function, word for word."""
    warnings.warn(f"`torch.jit.{name}` is deprecated. Please {instead}.", DeprecationWarning,
                  stacklevel=3)


def _check_callable(obj, what: str) -> None:
    if isinstance(obj, type) and obj.__module__ == "builtins":
        raise RuntimeError(f"jit.{what}: cannot compile the built-in class {obj.__name__}")
    if not callable(obj):
        if type(obj).__module__ == "builtins":
            raise TypeError(f"{type(obj)!r} is a built-in class")
        raise RuntimeError(f"jit.{what}: expected a function, a class or a Module, got "
                           f"{type(obj).__name__}")


def script(obj, optimize=None, _frames_up: int = 0, _rcb=None, example_inputs=None):
    """``obj`` itself (a function, a Module or a class): run eagerly."""
    _deprecated("script")
    _check_callable(obj, "script")
    return obj


def trace(func, example_inputs=None, optimize=None, check_trace: bool = True,
          check_inputs=None, check_tolerance: float = 1e-05, strict: bool = True,
          _force_outplace: bool = False, _module_class=None, _compilation_unit=None,
          example_kwarg_inputs=None, _store_inputs: bool = True):
    """``func`` itself: a trace would record one path through the code, chainrule runs the
    code (so data-dependent branches keep working, where a trace would freeze them)."""
    _deprecated("trace")
    if not callable(func):
        raise RuntimeError("Could not get name of python class object")
    return func


def trace_module(mod, inputs, optimize=None, check_trace: bool = True, check_inputs=None,
                 check_tolerance: float = 1e-05, strict: bool = True, **kwargs):
    """``mod`` itself (see :func:`trace`)."""
    _deprecated("trace_method")
    if not callable(mod):
        raise AttributeError(f"expected torch.nn.Module as the first argument, got "
                             f"{type(mod).__name__}")
    return mod


def script_if_tracing(fn):
    return fn


def script_method(fn):
    return fn


def ignore(drop=False, **kwargs):
    """``@torch.jit.ignore`` / ``@torch.jit.ignore(drop=True)``: the function, unchanged."""
    if callable(drop):
        return drop
    return lambda fn: fn


def unused(fn):
    return fn


def export(fn):
    return fn


def interface(obj):
    return obj


def is_scripting() -> bool:
    """False: chainrule code always runs as Python."""
    return False


def is_tracing() -> bool:
    return False


def annotate(the_type, the_value):
    return the_value


class Attribute:
    """``torch.jit.Attribute(value, type)``: in Python, the value."""

    def __new__(cls, value, type=None):  # noqa: A002
        return value


class Future:
    """The result of :func:`fork`: the call has already run."""

    def __init__(self, value=None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def wait(self):
        if self._error is not None:
            raise self._error
        return self._value

    value = wait

    def done(self) -> bool:
        return True


def fork(func, *args, **kwargs) -> Future:
    """Runs ``func(*args, **kwargs)`` now (torch runs it asynchronously only in TorchScript)."""
    _deprecated("fork", "use `torch.compile` instead")
    try:
        return Future(func(*args, **kwargs))
    except Exception as e:  # noqa: BLE001  (raised again by wait, as torch does)
        return Future(error=e)


def wait(future):
    return future.wait()


def save(m, f, _extra_files=None) -> None:
    raise NotImplementedError(
        "torch.jit.save: chainrule has no TorchScript archives; save the weights with "
        "cr.save(model.state_dict(), path) (or safetensors) and rebuild the model in Python")


def load(f, map_location=None, _extra_files=None, _restore_shapes: bool = False):
    _deprecated("load", "switch to `torch.export`")
    raise NotImplementedError(
        "torch.jit.load: chainrule cannot read TorchScript archives (they hold code); load "
        "weights with model.load_state_dict(cr.load(path)) from a file written by cr.save "
        "or a safetensors file")


def freeze(mod, preserved_attrs=None, optimize_numerics: bool = True):
    _deprecated("freeze", "use `torch.compile` instead")
    return mod


def optimize_for_inference(mod, other_methods=None):
    return mod


class optimized_execution:  # noqa: N801  (torch's name)
    def __init__(self, should_optimize: bool) -> None:
        self.should_optimize = should_optimize

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None


class strict_fusion(optimized_execution):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(True)


def set_fusion_strategy(strategy):
    return [("STATIC", 2), ("DYNAMIC", 10)]


_onednn = {"on": False}


def enable_onednn_fusion(enabled: bool) -> None:
    _onednn["on"] = bool(enabled)


def onednn_fusion_enabled() -> bool:
    return _onednn["on"]


class ScriptModule:
    """Never made by chainrule (``script`` returns the Module); present for ``isinstance``."""


class ScriptFunction:
    """Never made by chainrule (``script`` returns the function); present for ``isinstance``."""



def isinstance(obj, target_type) -> bool:  # noqa: A001  (torch's name)
    """``torch.jit.isinstance``: also takes ``list[int]``, ``dict[str, Tensor]``,
    ``Optional[...]`` (checked element by element, as in eager torch)."""
    origin, args = typing.get_origin(target_type), typing.get_args(target_type)
    if origin is None:
        return target_type is None and obj is None or (
            target_type is not None and _builtin_isinstance(obj, target_type))
    if origin is typing.Union:
        return any(isinstance(obj, a) for a in args)
    if origin is list:
        return _builtin_isinstance(obj, list) and all(isinstance(x, args[0]) for x in obj)
    if origin is tuple:
        return (_builtin_isinstance(obj, tuple) and len(obj) == len(args)
                and all(isinstance(x, a) for x, a in zip(obj, args)))
    if origin is dict:
        return _builtin_isinstance(obj, dict) and all(
            isinstance(k, args[0]) and isinstance(v, args[1]) for k, v in obj.items())
    return _builtin_isinstance(obj, origin)


def set_module(obj, mod: str) -> None:
    """Sets ``obj.__module__`` (as torch's helper)."""
    if not _builtin_isinstance(mod, str):
        raise TypeError("The mod argument should be a string")
    obj.__module__ = mod
