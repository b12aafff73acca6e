"""``torch.utils.checkpoint``: ``checkpoint`` and ``checkpoint_sequential`` with torch's
arguments, values, gradients and random streams.

chainrule runs the checkpointed function once, keeping its graph: the results, the gradients
(through ``backward`` or ``autograd.grad``) and the random numbers drawn equal torch's (torch
recomputes the forward in backward with the random state it stashed, so its stream moves as if
the function ran once). What is not done is the recomputation itself, so memory is what it
would be without checkpointing (as ``cr.compile`` runs eagerly until graph capture exists).
Torch's behaviours that a program can see are kept: the warning when ``use_reentrant`` is not
passed, keyword arguments refused with ``use_reentrant=True``, and with ``use_reentrant=True``
an output that does not require grad (and a warning) when no input tensor requires grad.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from chainrule.autograd.grad_mode import no_grad
from chainrule.tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential", "noop_context_fn"]


def noop_context_fn() -> tuple:
    """The default ``context_fn``: two no-op context managers."""
    from contextlib import nullcontext
    return nullcontext(), nullcontext()


def _use_reentrant(use_reentrant: bool | None) -> bool:
    if use_reentrant is None:
        warnings.warn(
            "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. "
            "Starting in PyTorch 2.9, calling checkpoint without use_reentrant will raise an "
            "exception. use_reentrant=False is recommended, but if you need to preserve the "
            "current default behavior, you can pass use_reentrant=True. Refer to docs for more "
            "details on the differences between the two variants.", stacklevel=3)
        return True
    return bool(use_reentrant)


def checkpoint(function: Callable, *args: Any, use_reentrant: bool | None = None,
               context_fn: Callable = noop_context_fn, determinism_check: str = "default",
               debug: bool = False, early_stop: bool = True, preserve_rng_state: bool = True,
               **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` as torch's activation checkpointing computes it (same
    values, gradients and random draws; no recomputation here, see the module docstring)."""
    if determinism_check not in ("default", "none"):
        raise ValueError(f"determinism_check should be one of ['default', 'none'], but got "
                         f"{determinism_check}")
    reentrant = _use_reentrant(use_reentrant)
    if reentrant:
        if context_fn is not noop_context_fn or debug:
            raise ValueError("Passing `context_fn` or `debug` is only supported when "
                             "use_reentrant=False.")
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
        if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
            warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                          stacklevel=2)
            with no_grad():
                return function(*args)
        return function(*args)
    forward_ctx, _ = context_fn()
    with forward_ctx:
        return function(*args, **kwargs)


def checkpoint_sequential(functions: Any, segments: int, input: Any,
                          use_reentrant: bool | None = None, **kwargs: Any) -> Any:
    """Run the modules (an ``nn.Sequential`` or a list) in ``segments`` checkpointed chunks,
    the last one plainly, as torch does."""
    reentrant = _use_reentrant(use_reentrant)
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    from chainrule.nn import Sequential
    if isinstance(functions, Sequential):
        functions = list(functions.children())
    size = len(functions) // segments
    end = -1

    def run(start: int, stop: int) -> Callable:
        def forward(x: Any) -> Any:
            for j in range(start, stop + 1):
                x = functions[j](x)
            return x
        return forward

    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end), input, use_reentrant=reentrant,
                           preserve_rng_state=preserve)
    return run(end + 1, len(functions) - 1)(input)
