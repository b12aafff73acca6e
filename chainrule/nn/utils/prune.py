"""``torch.nn.utils.prune``: zeroing parts of a parameter through a mask, torch's layout.

Pruning ``module.weight`` moves the Parameter to ``module.weight_orig``, stores the mask as the
buffer ``module.weight_mask`` and makes ``module.weight`` a plain attribute,
``weight_orig * weight_mask``, recomputed before each forward by a forward pre-hook (the pruning
method object itself): gradients reach ``weight_orig`` through the product, masked entries get
zero. Pruning the same parameter again combines the masks (a ``PruningContainer``): the new
amount counts among the entries (or channels) still unpruned. :func:`remove` makes it permanent:
``weight`` becomes a Parameter again holding the masked values.

Ties in magnitude may pick different entries than torch's ``topk``; ``random_unstructured``
draws from chainrule's generator, which follows torch's stream (the same seed prunes the same
entries).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

from chainrule.autograd.grad_mode import no_grad

__all__ = ["BasePruningMethod", "PruningContainer", "Identity", "RandomUnstructured",
           "L1Unstructured", "RandomStructured", "LnStructured", "CustomFromMask", "identity",
           "random_unstructured", "l1_unstructured", "random_structured", "ln_structured",
           "global_unstructured", "custom_from_mask", "remove", "is_pruned"]


def _cr():
    import chainrule

    return chainrule


# ---- amounts -------------------------------------------------------------------------------
def _validate_pruning_amount_init(amount) -> None:
    if not isinstance(amount, numbers.Real) or isinstance(amount, bool):
        raise TypeError(f"Invalid type for amount: {amount}. Must be int or float.")
    if (isinstance(amount, numbers.Integral) and amount < 0) or (
            not isinstance(amount, numbers.Integral) and (float(amount) > 1.0
                                                          or float(amount) < 0.0)):
        raise ValueError(f"amount={amount} should either be a float in the range [0, 1] or a "
                         "non-negative integer")


def _validate_pruning_amount(amount, tensor_size: int) -> None:
    if isinstance(amount, numbers.Integral) and amount > tensor_size:
        raise ValueError(f"amount={amount} should be smaller than the number of parameters to "
                         f"prune={tensor_size}")


def _compute_nparams_toprune(amount, tensor_size: int) -> int:
    if isinstance(amount, numbers.Integral):
        return int(amount)
    return round(amount * tensor_size)  # Python's round, as torch


def _validate_structured_pruning(t) -> None:
    if len(t.shape) <= 1:
        raise ValueError("Structured pruning can only be applied to multidimensional tensors. "
                         f"Found tensor of shape {t.shape} with {len(t.shape)} dims")


def _validate_pruning_dim(t, dim: int) -> None:
    if dim >= t.dim():
        raise IndexError(f"Invalid index {dim} for tensor of size {t.shape}")


# ---- the methods -----------------------------------------------------------------------------
class BasePruningMethod(ABC):
    """A way to compute a mask; an instance is also the forward pre-hook that applies it."""

    _tensor_name: str
    PRUNING_TYPE: str

    def __call__(self, module, inputs) -> None:
        setattr(module, self._tensor_name, self.apply_mask(module))

    @abstractmethod
    def compute_mask(self, t, default_mask):
        """The new mask for tensor ``t``, given the mask already in place."""

    def apply_mask(self, module):
        if getattr(self, "_tensor_name", None) is None:
            raise AssertionError(f"Module {module} has to be pruned")
        orig = getattr(module, self._tensor_name + "_orig")
        mask = getattr(module, self._tensor_name + "_mask")
        return mask.to(dtype=orig.dtype) * orig

    @classmethod
    def apply(cls, module, name: str, *args, importance_scores=None, **kwargs):
        """Prune ``module.<name>`` with a new ``cls(*args, **kwargs)`` (combined with an earlier
        pruning of the same parameter); returns the method now in place."""
        old, keys = None, []
        for k, hook in module._forward_pre_hooks.items():
            if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
                old = hook
                keys.append(k)
        if len(keys) > 1:
            raise AssertionError(f"Avoid adding multiple pruning hooks to the same tensor {name} "
                                 f"of module {module}. Use a PruningContainer.")
        for k in keys:
            del module._forward_pre_hooks[k]
        method = cls(*args, **kwargs)
        method._tensor_name = name
        if isinstance(old, PruningContainer):
            old.add_pruning_method(method)
            method = old
        elif old is not None:
            container = PruningContainer(old)
            container.add_pruning_method(method)
            method = container
        orig = getattr(module, name)
        if importance_scores is not None:
            if tuple(importance_scores.shape) != tuple(orig.shape):
                raise AssertionError(f"importance_scores should have the same shape as "
                                     f"parameter {name} of {module}")
        else:
            importance_scores = orig
        fresh = not isinstance(method, PruningContainer)
        if fresh:
            module.register_parameter(name + "_orig", orig)
            del module._parameters[name]
            default_mask = _cr().ones_like(orig)
        else:
            default_mask = getattr(module, name + "_mask").detach().clone()
        try:
            with no_grad():
                mask = method.compute_mask(importance_scores.detach(), default_mask=default_mask)
            module.register_buffer(name + "_mask", mask)
            setattr(module, name, method.apply_mask(module))
            module.register_forward_pre_hook(method)
        except Exception:
            if fresh:
                orig = getattr(module, name + "_orig")
                module.register_parameter(name, orig)
                del module._parameters[name + "_orig"]
            raise
        return method

    def prune(self, t, default_mask=None, importance_scores=None):
        """``t`` times the mask this method computes (the module is not changed)."""
        scores = importance_scores if importance_scores is not None else t
        if tuple(scores.shape) != tuple(t.shape):
            raise AssertionError("importance_scores should have the same shape as tensor t")
        mask = default_mask if default_mask is not None else _cr().ones_like(t)
        with no_grad():
            mask = self.compute_mask(scores.detach(), default_mask=mask)
        return t * mask

    def remove(self, module) -> None:
        """Make the pruning permanent: ``module.<name>`` becomes a Parameter holding the masked
        values; ``<name>_orig``, ``<name>_mask`` and the hook go."""
        name = getattr(self, "_tensor_name", None)
        if name is None:
            raise AssertionError(f"Module {module} has to be pruned before pruning can be "
                                 "removed")
        with no_grad():
            weight = self.apply_mask(module)
        if hasattr(module, name):
            delattr(module, name)
        orig = module._parameters[name + "_orig"]
        orig.data = weight.data
        del module._parameters[name + "_orig"]
        del module._buffers[name + "_mask"]
        setattr(module, name, orig)


class PruningContainer(BasePruningMethod):
    """Several prunings of one parameter, applied in turn (each on what the others left)."""

    def __init__(self, *args) -> None:
        self._pruning_methods: tuple = ()
        if len(args) == 1 and not isinstance(args[0], BasePruningMethod):
            args = tuple(args[0])
        for method in args:
            self.add_pruning_method(method)

    def add_pruning_method(self, method) -> None:
        if not isinstance(method, BasePruningMethod) and method is not None:
            raise TypeError(f"{type(method)} is not a BasePruningMethod subclass")
        if method is not None and getattr(self, "_tensor_name", None) is None:
            self._tensor_name = method._tensor_name
        elif method is not None and self._tensor_name != method._tensor_name:
            raise ValueError("Can only add pruning methods acting on the parameter named "
                             f"'{self._tensor_name}' to PruningContainer {self}. Found "
                             f"'{method._tensor_name}'")
        self._pruning_methods += (method,)

    def __len__(self) -> int:
        return len(self._pruning_methods)

    def __iter__(self):
        return iter(self._pruning_methods)

    def __getitem__(self, idx):
        return self._pruning_methods[idx]

    def compute_mask(self, t, default_mask):
        method = self._pruning_methods[-1]
        new_mask = default_mask.clone()
        kind = method.PRUNING_TYPE
        if kind == "unstructured":
            keep = default_mask == 1
            new_mask[keep] = method.compute_mask(t[keep], default_mask=default_mask[keep]).to(
                dtype=new_mask.dtype)
        elif kind == "structured":
            if not hasattr(method, "dim"):
                raise AttributeError("Pruning methods of PRUNING_TYPE 'structured' need to have "
                                     "the attribute `dim` defined.")
            dim = method.dim if method.dim >= 0 else method.dim + t.dim()
            others = [d for d in range(t.dim()) if d != dim]
            keep = default_mask.sum(dim=others) != 0
            index = [slice(None)] * t.dim()
            index[dim] = keep
            index = tuple(index)
            new_mask[index] = method.compute_mask(t[index], default_mask=default_mask[index]).to(
                dtype=new_mask.dtype)
        elif kind == "global":
            new_mask = method.compute_mask(t, default_mask=default_mask)
        else:
            raise ValueError(f"Unrecognized PRUNING_TYPE {kind}")
        return new_mask


class Identity(BasePruningMethod):
    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t, default_mask):
        return default_mask

    @classmethod
    def apply(cls, module, name: str):  # noqa: D102
        return super().apply(module, name)


def _unstructured_mask(t, default_mask, amount, chosen):
    """``default_mask`` with the entries ``chosen(k)`` names (flat indices of ``t``) set to 0,
    k the count ``amount`` asks for; ``chosen`` is not called when k is 0 (no random draw)."""
    size = t.numel()
    _validate_pruning_amount(amount, size)
    k = _compute_nparams_toprune(amount, size)
    mask = default_mask.clone()
    if k:
        flat = mask.reshape(-1)
        flat[chosen(k)] = 0
        mask = flat.reshape(mask.shape)
    return mask


class RandomUnstructured(BasePruningMethod):
    """Prune ``amount`` entries (a count, or a fraction) chosen at random."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount) -> None:
        _validate_pruning_amount_init(amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        return _unstructured_mask(t, default_mask, self.amount,
                                  lambda k: _cr().rand_like(t).reshape(-1).topk(k).indices)

    @classmethod
    def apply(cls, module, name: str, amount):  # noqa: D102
        return super().apply(module, name, amount=amount)


class L1Unstructured(BasePruningMethod):
    """Prune the ``amount`` entries (a count, or a fraction) of smallest absolute value."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, amount) -> None:
        _validate_pruning_amount_init(amount)
        self.amount = amount

    def compute_mask(self, t, default_mask):
        return _unstructured_mask(t, default_mask, self.amount,
                                  lambda k: t.abs().reshape(-1).topk(k, largest=False).indices)

    @classmethod
    def apply(cls, module, name: str, amount, importance_scores=None):  # noqa: D102
        return super().apply(module, name, amount=amount, importance_scores=importance_scores)


def _channel_mask(t, default_mask, dim: int, keep_idx):
    """Ones on the kept channels along ``dim`` (others zero), times ``default_mask``."""
    cr = _cr()
    mask = cr.zeros_like(t)
    index = [slice(None)] * t.dim()
    index[dim] = keep_idx
    mask[tuple(index)] = 1
    return mask * default_mask.to(dtype=mask.dtype)


class RandomStructured(BasePruningMethod):
    """Prune ``amount`` whole channels along ``dim``, chosen at random."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount, dim: int = -1) -> None:
        _validate_pruning_amount_init(amount)
        self.amount, self.dim = amount, dim

    def compute_mask(self, t, default_mask):
        _validate_structured_pruning(t)
        _validate_pruning_dim(t, self.dim)
        size = t.shape[self.dim]
        _validate_pruning_amount(self.amount, size)
        k = _compute_nparams_toprune(self.amount, size)
        if k == 0:
            return default_mask
        keep = size - k
        prob = _cr().rand(size)
        threshold = prob.kthvalue(k).values
        keep_idx = (prob > threshold).nonzero().reshape(-1)
        if keep_idx.numel() != keep:
            raise RuntimeError("random_structured: ties among the random draws")
        return _channel_mask(t, default_mask, self.dim, keep_idx)

    @classmethod
    def apply(cls, module, name: str, amount, dim: int = -1):  # noqa: D102
        return super().apply(module, name, amount=amount, dim=dim)


class LnStructured(BasePruningMethod):
    """Prune the ``amount`` channels along ``dim`` of smallest ``n``-norm."""

    PRUNING_TYPE = "structured"

    def __init__(self, amount, n, dim: int = -1) -> None:
        _validate_pruning_amount_init(amount)
        self.amount, self.n, self.dim = amount, n, dim

    def compute_mask(self, t, default_mask):
        _validate_structured_pruning(t)
        _validate_pruning_dim(t, self.dim)
        size = t.shape[self.dim]
        _validate_pruning_amount(self.amount, size)
        k = _compute_nparams_toprune(self.amount, size)
        keep = size - k
        if k == 0:
            return default_mask
        dim = self.dim if self.dim >= 0 else self.dim + t.dim()
        others = [d for d in range(t.dim()) if d != dim]
        norm = _ln_norm(t, self.n, others)
        keep_idx = norm.topk(keep, largest=True).indices
        return _channel_mask(t, default_mask, dim, keep_idx)

    @classmethod
    def apply(cls, module, name: str, amount, n, dim, importance_scores=None):  # noqa: D102
        return super().apply(module, name, amount=amount, n=n, dim=dim,
                             importance_scores=importance_scores)


def _ln_norm(t, n, dims: list):
    """``torch.norm(t, p=n, dim=dims)`` for the norms pruning uses."""
    a = t.abs()
    if n == "fro" or n == 2:
        return (a * a).sum(dim=dims).sqrt()
    if n == math.inf:
        return a.amax(dim=dims)
    if n == -math.inf:
        return a.amin(dim=dims)
    if n == 0:
        return (a != 0).to(dtype=t.dtype).sum(dim=dims)
    if n == 1:
        return a.sum(dim=dims)
    if isinstance(n, numbers.Real):
        return (a ** float(n)).sum(dim=dims) ** (1.0 / float(n))
    raise ValueError(f"ln_structured: n must be a number, inf, -inf or 'fro', got {n!r}")


class CustomFromMask(BasePruningMethod):
    PRUNING_TYPE = "global"

    def __init__(self, mask) -> None:
        self.mask = mask

    def compute_mask(self, t, default_mask):
        if tuple(default_mask.shape) != tuple(self.mask.shape):
            raise AssertionError("custom_from_mask: the mask's shape differs from the tensor's")
        return default_mask * self.mask.to(dtype=default_mask.dtype)

    @classmethod
    def apply(cls, module, name: str, mask):  # noqa: D102
        return super().apply(module, name, mask=mask)


# ---- the functional forms --------------------------------------------------------------------
def identity(module, name: str):
    Identity.apply(module, name)
    return module


def random_unstructured(module, name: str, amount):
    RandomUnstructured.apply(module, name, amount)
    return module


def l1_unstructured(module, name: str, amount, importance_scores=None):
    L1Unstructured.apply(module, name, amount=amount, importance_scores=importance_scores)
    return module


def random_structured(module, name: str, amount, dim: int):
    RandomStructured.apply(module, name, amount, dim)
    return module


def ln_structured(module, name: str, amount, n, dim: int, importance_scores=None):
    LnStructured.apply(module, name, amount, n, dim, importance_scores=importance_scores)
    return module


def custom_from_mask(module, name: str, mask):
    CustomFromMask.apply(module, name, mask)
    return module


def global_unstructured(parameters, pruning_method, importance_scores=None, **kwargs) -> None:
    """Prune the ``(module, name)`` pairs together: ``pruning_method`` (an unstructured method
    class, e.g. ``L1Unstructured`` with ``amount=``) sees them as one flat tensor."""
    cr = _cr()
    if isinstance(parameters, dict) or not hasattr(parameters, "__iter__"):
        raise TypeError("global_unstructured(): parameters is not an Iterable")
    parameters = list(parameters)
    importance_scores = importance_scores if importance_scores is not None else {}
    if not isinstance(importance_scores, dict):
        raise TypeError("global_unstructured(): importance_scores must be of type dict")
    scores = cr.cat([
        importance_scores.get((m, n), getattr(m, n)).detach().reshape(-1)
        for m, n in parameters])
    default_mask = cr.cat([
        getattr(m, n + "_mask", cr.ones_like(getattr(m, n))).detach().reshape(-1)
        for m, n in parameters])
    container = PruningContainer()
    container._tensor_name = "temp"
    method = pruning_method(**kwargs)
    method._tensor_name = "temp"
    if method.PRUNING_TYPE != "unstructured":
        raise TypeError('Only "unstructured" PRUNING_TYPE supported for the `pruning_method`. '
                        f"Found method {pruning_method} of type {method.PRUNING_TYPE}")
    container.add_pruning_method(method)
    with no_grad():
        final = container.compute_mask(scores, default_mask)
    pointer = 0
    for m, n in parameters:
        param = getattr(m, n)
        k = param.numel()
        custom_from_mask(m, n, mask=final[pointer:pointer + k].reshape(param.shape))
        pointer += k


def remove(module, name: str):
    """Make the pruning of ``module.<name>`` permanent (see the module docstring)."""
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, BasePruningMethod) and hook._tensor_name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            return module
    raise ValueError(f"Parameter '{name}' of module {module} has to be pruned before pruning "
                     "can be removed")


def is_pruned(module) -> bool:
    """True if ``module`` or a submodule has a pruning hook."""
    for _, sub in module.named_modules():
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, BasePruningMethod):
                return True
    return False

