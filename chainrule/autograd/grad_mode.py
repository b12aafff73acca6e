"""Thread-local switch for recording the graph: no_grad, enable_grad, set_grad_enabled."""

from __future__ import annotations

import functools

from chainrule._state import state

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "state"]


def is_grad_enabled() -> bool:
    return state.grad_enabled


class _GradMode:
    """Base for the context managers; each also works as a decorator."""

    mode = True

    def __enter__(self):
        self.prev = state.grad_enabled
        state.grad_enabled = self.mode

    def __exit__(self, *exc):
        state.grad_enabled = self.prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Ops inside do not record the graph (inference, optimizer updates)."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` acts at once (like PyTorch) and as a context manager."""

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

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper
