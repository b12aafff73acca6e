"""Thread-local switch for recording the graph: no_grad, enable_grad, set_grad_enabled."""

from __future__ import annotations

import functools
import inspect

from chainrule._state import state

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "state",
           "inference_mode", "is_inference_mode_enabled"]


def is_grad_enabled() -> bool:
    return state.grad_enabled


def _decorate(fn, make_context):
    """Run ``fn`` (or, for a generator function, each step of its generator) in a fresh context."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            gen = fn(*args, **kwargs)
            try:
                with make_context():
                    value = next(gen)
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as e:  # forwarded into the generator, as torch does
                        with make_context():
                            value = gen.throw(e)
                    else:
                        with make_context():
                            value = gen.send(sent)
            except StopIteration as e:
                return e.value

        return generator

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with make_context():
            return fn(*args, **kwargs)

    return wrapper


class _GradMode:
    """Base for the context managers; each also works as a decorator, with or without ()."""

    mode = True

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)  # bare ``@no_grad``

    def __enter__(self):
        self.prev = state.grad_enabled
        state.grad_enabled = self.mode

    def __exit__(self, *exc):
        state.grad_enabled = self.prev

    def __call__(self, fn):
        return _decorate(fn, self.__class__)


class no_grad(_GradMode):
    """Ops inside do not record the graph (inference, optimizer updates)."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` acts at once (like PyTorch) and as a context manager."""

    def __new__(cls, mode: bool):
        return object.__new__(cls)

    def __init__(self, mode: bool) -> None:
        self.prev = state.grad_enabled
        self.mode = bool(mode)
        state.grad_enabled = self.mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        state.grad_enabled = self.prev

    def __call__(self, fn):
        state.grad_enabled = self.prev
        mode = self.mode
        return _decorate(fn, lambda: set_grad_enabled(mode))


def is_inference_mode_enabled() -> bool:
    return getattr(state, "inference", False)


class inference_mode(_GradMode):
    """``inference_mode()``: no graph is recorded inside, as ``no_grad`` (chainrule keeps no
    per-tensor version counters to skip, so the two cost the same); ``inference_mode(False)``
    changes nothing. A context manager and a decorator, with or without ()."""

    def __new__(cls, mode=True):
        if callable(mode):  # bare ``@inference_mode``
            return cls()(mode)
        return object.__new__(cls)

    def __init__(self, mode: bool = True) -> None:
        self.mode_on = bool(mode)

    def __enter__(self):
        self.prev = state.grad_enabled
        self.prev_inference = getattr(state, "inference", False)
        if self.mode_on:
            state.grad_enabled = False
            state.inference = True

    def __exit__(self, *exc):
        state.grad_enabled = self.prev
        state.inference = self.prev_inference

    def __call__(self, fn):
        mode = self.mode_on
        return _decorate(fn, lambda: inference_mode(mode))
