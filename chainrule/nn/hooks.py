"""Module backward hooks: ``register_full_backward_hook`` and ``register_full_backward_pre_hook``
(PyTorch's ``torch.utils.hooks.BackwardHook`` design).

The module's tensor inputs and outputs each pass through one identity gate. The gate on the
outputs sees the gradients w.r.t. the outputs first (and lets pre-hooks replace them); the gate
on the inputs then sees the gradients w.r.t. the inputs and calls the hooks with both, letting
them replace the input gradients. If no input needs a gradient, the hooks fire at the outputs
with ``grad_input`` all None.
"""

from __future__ import annotations

import warnings
from typing import Any

from chainrule.autograd.function import Function
from chainrule.autograd.grad_mode import state
from chainrule.tensor import Tensor

__all__ = ["BackwardHook"]


class BackwardHookFunction(Function):
    """Identity on its tensor arguments; its backward hands the gradients to a BackwardHook."""

    @staticmethod
    def forward(ctx, hook, side, *tensors):
        ctx.hook, ctx.side = hook, side
        ctx.mark_non_differentiable(*[t for t in tensors if not t.requires_grad])
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        if ctx.side == "output":
            grads = ctx.hook._on_output_grads(grads)
        else:
            grads = ctx.hook._on_input_grads(grads)
        return (None, None) + tuple(grads)


class BackwardHook:
    """Connects one call's input and output gradients and calls the module's hooks."""

    def __init__(self, module: Any, user_hooks: list, user_pre_hooks: list) -> None:
        self.module = module
        self.user_hooks = user_hooks
        self.user_pre_hooks = user_pre_hooks
        self.grad_outputs: tuple | None = None
        self.n_outputs = -1
        self.output_tensors_index: list | None = None
        self.n_inputs = -1
        self.input_tensors_index: list | None = None

    @staticmethod
    def _pack_with_none(indices: list, values: Any, size: int) -> tuple:
        res: list = [None] * size
        for idx, val in zip(indices, values):
            res[idx] = val
        return tuple(res)

    def _apply_on_tensors(self, side: str, args: tuple) -> tuple:
        idx = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        tensors = [args[i] for i in idx]
        if not (state.grad_enabled and any(t.requires_grad for t in tensors)):
            return args, None
        new = BackwardHookFunction.apply(self, side, *tensors)
        out = list(args)
        for i, t in zip(idx, new):
            out[i] = t
        return tuple(out), idx

    def setup_input_hook(self, args: tuple) -> tuple:
        """Route the gradients w.r.t. the tensor ``args`` through the hooks."""
        res, self.input_tensors_index = self._apply_on_tensors("input", args)
        self.n_inputs = len(args)
        return res

    def setup_output_hook(self, result: Any) -> Any:
        """Capture the gradients w.r.t. the tensor outputs in ``result``."""
        is_tuple = isinstance(result, tuple)
        args = result if is_tuple else (result,)
        res, self.output_tensors_index = self._apply_on_tensors("output", args)
        self.n_outputs = len(args)
        return res if is_tuple else res[0]

    def _on_output_grads(self, grads: tuple) -> tuple:
        self.grad_outputs = self._pack_with_none(self.output_tensors_index, grads,
                                                 self.n_outputs)
        for pre_hook in self.user_pre_hooks:
            new = pre_hook(self.module, self.grad_outputs)
            if new is None:
                continue
            if len(new) != len(self.grad_outputs):
                raise RuntimeError(f"Backward pre hook returned an invalid number of grad_output, "
                                   f"got {len(new)}, but expected {len(self.grad_outputs)}")
            self.grad_outputs = tuple(new)
        local = self.grad_outputs
        if self.input_tensors_index is None:
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients. See "
                          "https://docs.pytorch.org/docs/main/generated/torch.nn.Module.html"
                          "#torch.nn.Module.register_full_backward_hook for more details.",
                          stacklevel=2)
            grad_inputs = (None,) * self.n_inputs
            for hook in self.user_hooks:
                res = hook(self.module, grad_inputs, self.grad_outputs)
                if res is not None and not (isinstance(res, tuple)
                                            and all(r is None for r in res)):
                    raise RuntimeError("Backward hook for Modules where no input requires "
                                       "gradient should always return None or None for all "
                                       "gradients.")
            self.grad_outputs = None
        return tuple(local[i] for i in self.output_tensors_index)

    def _on_input_grads(self, grads: tuple) -> tuple:
        if self.grad_outputs is None:
            return grads
        res = self._pack_with_none(self.input_tensors_index, grads, self.n_inputs)
        for hook in self.user_hooks:
            out = hook(self.module, res, self.grad_outputs)
            if out is None:
                continue
            if len(out) != len(res):
                raise RuntimeError(f"Backward hook returned an invalid number of grad_input, got "
                                   f"{len(out)}, but expected {len(res)}")
            res = tuple(out)
        self.grad_outputs = None
        return tuple(res[i] for i in self.input_tensors_index)
