"""Optimizer: parameter groups, per-parameter state, zero_grad, state_dict / load_state_dict.

Subclasses implement ``step``. Updates work on the raw arrays (``p._data``, ``p._grad._data``) in
place, so a step records no graph and allocates nothing beyond its state buffers and a few
reusable cache-sized work arrays (see :meth:`Optimizer._pieces`).
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule import devices
from chainrule.dtypes import float64, get_default_dtype
from chainrule.autograd.grad_mode import enable_grad
from chainrule.tensor import Tensor, wrap

__all__ = ["Optimizer", "ParamsT"]

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]
_ndarray = np.ndarray
_BLOCK = 1 << 16  # elements per block of an update (256 KiB of float32: stays in L2 cache)


def decayed_grad(d, g, work, weight_decay: float, maximize: bool):
    """The gradient an update uses, ``±g + wd·θ`` (PyTorch's coupled weight decay), written into
    ``work`` when it differs from ``g``; returns ``g`` itself when there is nothing to do."""
    if weight_decay != 0:
        np.multiply(d, weight_decay, out=work)
        (np.subtract if maximize else np.add)(work, g, out=work)
        return work
    if maximize:
        np.negative(g, out=work)
        return work
    return g


def _blocks(arrays: tuple, pool: tuple, n: int):
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    for i in range(0, n, _BLOCK):
        j = min(i + _BLOCK, n)
        k = j - i
        yield [None if a is None else a[i:j] for a in flat], tuple(t[:k] for t in pool)


class _RemovableHandle:
    """Returned by ``register_*_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict) -> None:
        self._hooks = hooks
        self.id = _RemovableHandle._next_id
        _RemovableHandle._next_id += 1

    def remove(self) -> None:
        """Unregister the hook."""
        self._hooks.pop(self.id, None)

    def __enter__(self) -> _RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _wrap_step(step: Callable) -> Callable:
    """Run step pre/post hooks around the outermost ``step`` call and note that it ran."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        self._opt_called = True  # read by lr schedulers to warn about a wrong call order
        if self._in_step:  # a subclass's step calling super().step(): hooks run once
            return step(self, *args, **kwargs)
        pre, post = self._optimizer_step_pre_hooks, self._optimizer_step_post_hooks
        if pre:
            for hook in list(pre.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"{hook} must return None or a tuple of (new_args, new_kwargs), "
                            f"but got {result}."
                        )
                    args, kwargs = result
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        _changed_in_place(self)
        if post:
            for hook in list(post.values()):
                hook(self, args, kwargs)
        return out

    wrapper._wrapped_step = True  # type: ignore[attr-defined]
    return wrapper


def _changed_in_place(opt) -> None:
    """The step wrote new values into the parameters that have a gradient and into their state
    tensors (``exp_avg``, ``momentum_buffer``, ``step``...): bump their version counters, as
    torch's in-place updates do, so that a graph which saved one of them before the step
    refuses to backpropagate after it (instead of using the new values)."""
    state = opt.state if opt._state_in_place else {}
    for group in opt.param_groups:
        for p in group["params"]:
            if p._grad is not None:
                p._bump_version()
                for value in state.get(p, {}).values():
                    if isinstance(value, Tensor):
                        value._bump_version()


def _typename(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return f"chainrule.{obj.dtype.name.capitalize()}Tensor"
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def scalar_dtype():
    """PyTorch's dtype for scalar state (``step``, ``mu_product``, ``eta``...): float64 when the
    default dtype is float64, else float32 (so these scalars round the way torch's do)."""
    return np.float64 if get_default_dtype() is float64 else np.float32


def scalar_state(value: float) -> Tensor:
    """A 0-d CPU Tensor of :func:`scalar_dtype` (torch keeps ``step`` and friends like this)."""
    return wrap(np.array(value, dtype=scalar_dtype()))


def next_step(state: dict[str, Any]) -> float:
    """``state["step"] += 1`` on the 0-d step Tensor; returns the new count as a float."""
    t = state["step"]
    write_scalar(t, t._data + 1)
    return float(t._data)


def write_scalar(t: Tensor, value: Any) -> None:
    """Store ``value`` in the 0-d state Tensor ``t``'s own memory, as torch's in-place update
    (a view of it, or a state dict that shares it, sees the new value); read-only memory (a
    loaded file's) is replaced instead."""
    try:
        t._data[...] = value
    except (ValueError, TypeError):
        t._data = np.array(value, dtype=t._data.dtype)


def to_scalar(x: Any) -> float:
    """A learning rate or beta as a number: a Python float, or for a 1-element Tensor a NumPy
    scalar of its dtype, so that ``lr / (1 - β₁ᵗ)`` rounds as PyTorch's 0-d tensor math does."""
    if type(x) is float:
        return x
    if isinstance(x, Tensor):
        return np.asarray(devices.to_device(x._data, "cpu")).reshape(())[()]
    return float(x)


def check_scalar_tensor(name: str, x: Any) -> None:
    """PyTorch's check that a Tensor hyper-parameter has exactly one element."""
    if isinstance(x, Tensor) and x.numel() != 1:
        raise ValueError(f"Tensor {name} must be 1-element")


_WHAT = {"lr": "learning rate", "eps": "epsilon value"}


def check_nonnegative(**values: Any) -> None:
    """PyTorch's ``Invalid <what>: <value>`` error for the first negative hyper-parameter."""
    for name, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {_WHAT.get(name, name + ' value')}: {value}")


def check_betas(betas: tuple) -> None:
    """PyTorch's range checks of ``betas`` (each in [0, 1))."""
    for i in (0, 1):
        if not 0.0 <= betas[i] < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")


def check_not_differentiable(optimizer: Any, differentiable: bool) -> None:
    if differentiable:
        raise NotImplementedError(
            f"{type(optimizer).__name__}: differentiable=True is not supported by chainrule")


class Optimizer:
    """Base class of optimizers: ``param_groups``, ``defaults`` and per-parameter ``state``."""

    _state_in_place = False  # does step() write the state tensors in place (bump their versions)?

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._in_step = False
        self._opt_called = False
        self._scratch_bufs: dict = {}
        self._pools: dict = {}

        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {_typename(params)}"
            )
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_wrapped_step", False):
            cls.step = _wrap_step(step)

    # ---- groups ----------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``params`` and optional per-group options)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            param_group["params"] = list(params)

        tensors, names = [], []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                names.append(param[0])
                tensors.append(param[1])
            else:
                tensors.append(param)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are "
                    "missing"
                )
            param_group["param_names"] = names

        for param in tensors:
            if not isinstance(param, Tensor):
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    + _typename(param)
                )
            if not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")

        for name, default in self.defaults.items():
            param_group.setdefault(name, default)

        if len(tensors) != len({id(p) for p in tensors}):
            import warnings

            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, this "
                "will cause an error; see github.com/pytorch/pytorch/issues/40967 for more "
                "information",
                stacklevel=3,
            )

        seen: set[int] = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. cannot add param "
                    f"group {which} to the optimizer"
                )
        if not seen.isdisjoint(id(p) for p in tensors):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ---- gradients -------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None, or to zeros in place)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if set_to_none:
                    p._grad = None
                    continue
                if g._grad_fn is not None:
                    g.detach_()
                else:
                    g._requires_grad = False
                g.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step (implemented by each optimizer)."""
        raise NotImplementedError

    @staticmethod
    def _closure(closure: Callable[[], Any] | None) -> Any:
        """Re-evaluate the model with gradients recorded, as PyTorch's optimizers do."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ---- helpers for the in-place updates --------------------------------------------------------
    def _with_grads(self, group: dict[str, Any]):
        """``(p, array, grad array)`` for each parameter of ``group`` that has a gradient."""
        for p in group["params"]:
            if p._grad is not None:
                yield p, self._param_array(p), p._grad._data

    @staticmethod
    def _param_array(p: Tensor):
        """``p``'s raw array, made a writable array first if needed (updates are in place)."""
        d = p._data
        if type(d) is _ndarray:
            if d.flags.writeable:
                return d
            d = p._data = d.copy()
        elif isinstance(d, np.generic):
            d = p._data = np.array(d)
        return d

    def _pieces(self, p: Tensor, arrays: tuple, n_work: int = 2) -> Any:
        """``(views, work)`` pairs that cover ``arrays`` (param, grad, state...) in blocks.

        Updates are chains of elementwise ops, so running the whole chain on one cache-sized
        block at a time gives the same numbers with far less memory traffic than running each
        op over whole arrays; ``work`` holds ``n_work`` work arrays shaped like the views. Small,
        non-contiguous or non-NumPy arrays come back whole, as one piece.
        """
        d = arrays[0]
        n = d.size
        if n <= _BLOCK or type(d) is not _ndarray:
            return ((arrays, self._scratch(p, d, n_work)),)
        for i, a in enumerate(arrays):
            if a is not None and (type(a) is not _ndarray or not a.flags.c_contiguous) and i != 1:
                return ((arrays, self._scratch(p, d, n_work)),)
        return _blocks(arrays, self._pool(d.dtype, n_work), n)

    def _pool(self, dtype, n_work: int = 2) -> tuple:
        """``n_work`` work arrays of ``_BLOCK`` elements per dtype, shared by this optimizer."""
        pool = self._pools.get(dtype, ())
        if len(pool) < n_work:
            pool = self._pools[dtype] = pool + tuple(
                np.empty(_BLOCK, dtype) for _ in range(n_work - len(pool)))
        return pool[:n_work]

    def _scratch(self, p: Tensor, d, n_work: int = 2) -> tuple:
        """``n_work`` work arrays shaped like ``d``: views of a shared pool for small arrays."""
        bufs = self._scratch_bufs.get(p)
        if (bufs is None or len(bufs) != n_work or bufs[0].shape != d.shape
                or bufs[0].dtype != d.dtype):
            if type(d) is _ndarray and d.size <= _BLOCK:
                pool = self._pool(d.dtype, n_work)
                bufs = tuple(t[: d.size].reshape(d.shape) for t in pool)
            else:
                xp = devices.xp_of(d)
                bufs = tuple(xp.empty_like(d) for _ in range(n_work))
            self._scratch_bufs[p] = bufs
        return bufs

    @staticmethod
    def _zeros_like(d, fill: float = 0.0) -> Tensor:
        xp = devices.xp_of(d)
        return wrap(xp.zeros_like(d) if fill == 0 else xp.full_like(d, fill))

    # ---- state dict ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state in PyTorch's format: ``{"state": {index: {...}}, "param_groups": [...]}``.

        Tensors in ``state`` are the live chainrule Tensors (not copies), like PyTorch (step counts
        too: 0-d float Tensors); everything else is plain Python values, so ``cr.save`` can store
        it, and PyTorch's optimizer of the same name loads it once its Tensors are torch's.
        """
        for hook in list(self._optimizer_state_dict_pre_hooks.values()):
            hook(self)
        mapping: dict[int, int] = {}
        start = 0

        def pack_group(group: dict[str, Any]) -> dict[str, Any]:
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {
            (mapping[id(k)] if isinstance(k, Tensor) else k): dict(v)
            for k, v in self.state.items()
            if not isinstance(k, Tensor) or id(k) in mapping
        }
        state_dict = {"state": packed_state, "param_groups": param_groups}
        for hook in list(self._optimizer_state_dict_post_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict` (also after ``cr.save``/``cr.load``).

        Tensors are copied onto each parameter's device and cast to its floating dtype; integer
        keys that came back as strings and tuples that came back as lists are restored.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: expected a dict, got "
                f"{type(state_dict).__name__}"
            )
        state_dict = state_dict.copy()
        for hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(
                    f"{type(self).__name__}.load_state_dict: the state dict has no {key!r} entry "
                    f"(keys: {sorted(map(str, state_dict))})"
                )
        groups = self.param_groups
        saved_groups = [_copy_plain(g) for g in state_dict["param_groups"]]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
        id_map = dict(
            zip(
                (_as_index(i) for i in chain.from_iterable(g["params"] for g in saved_groups)),
                chain.from_iterable(g["params"] for g in groups),
            )
        )
        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            k = _as_index(k)
            if k in id_map:
                param = id_map[k]
                state[param] = {key: _cast(param, key, value) for key, value in v.items()}
            else:
                state[k] = v

        new_groups = []
        for group, saved in zip(groups, saved_groups):
            for key, value in saved.items():
                if isinstance(value, list) and isinstance(group.get(key), tuple):
                    saved[key] = tuple(value)
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            new_groups.append(saved)
        self.state = state
        self.param_groups = new_groups
        for hook in list(self._optimizer_load_state_dict_post_hooks.values()):
            hook(self)

    # ---- hooks -----------------------------------------------------------------------------------
    def register_step_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs before each step; may return (args, kwargs)."""
        return self._register(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs after each step."""
        return self._register(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer)`` runs before :meth:`state_dict`."""
        return self._register(self._optimizer_state_dict_pre_hooks, hook)

    def register_state_dict_post_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer, state_dict)`` runs after :meth:`state_dict`; may return a new one."""
        return self._register(self._optimizer_state_dict_post_hooks, hook)

    def register_load_state_dict_pre_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer, state_dict)`` runs before :meth:`load_state_dict`."""
        return self._register(self._optimizer_load_state_dict_pre_hooks, hook)

    def register_load_state_dict_post_hook(self, hook: Callable) -> _RemovableHandle:
        """``hook(optimizer)`` runs after :meth:`load_state_dict`."""
        return self._register(self._optimizer_load_state_dict_post_hooks, hook)

    @staticmethod
    def _register(hooks: OrderedDict, hook: Callable) -> _RemovableHandle:
        handle = _RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    # ---- misc ------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


_BUFFER_KEYS = frozenset([
    "momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum",
    "acc_delta", "exp_inf", "ax", "prev", "step_size",
])


def _as_index(k: Any) -> Any:
    """A parameter index that a serializer turned into a string ("3") back to an int."""
    if isinstance(k, str) and k.lstrip("-").isdigit():
        return int(k)
    return k


def _copy_plain(value: Any) -> Any:
    """Deep copy of plain containers; Tensors are copied by value."""
    if isinstance(value, dict):
        return {k: _copy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_plain(v) for v in value)
    if isinstance(value, Tensor):
        return wrap(devices.xp_of(value._data).array(value._data, copy=True))
    return copy.deepcopy(value)


def _cast(param: Tensor, key: Any, value: Any) -> Any:
    """A loaded state value for ``param``: Tensors copied to its device (and floating dtype).

    Arrays of other libraries (a state dict saved by PyTorch) come in through ``__array__``;
    ``step`` stays a 0-d CPU Tensor (a plain number becomes one), as PyTorch keeps it.
    """
    if not isinstance(value, (Tensor, np.ndarray, int, float, bool, str)) and hasattr(
            value, "__array__") and hasattr(value, "shape"):
        value = np.asarray(value)
    if key == "step":
        if isinstance(value, Tensor):
            value = devices.to_device(value._data, "cpu")
        if isinstance(value, (np.ndarray, np.generic)) and np.asarray(value).dtype.kind == "f":
            return wrap(np.array(value, copy=True))
        if isinstance(value, (int, float, np.ndarray, np.generic)):
            return scalar_state(float(value))
        return value
    if isinstance(value, np.ndarray):
        value = wrap(value)
    if isinstance(value, Tensor):
        a = devices.to_device(value._data, param.device)
        xp = devices.xp_of(a)
        pd = param._data.dtype
        if pd.kind in FLOAT_KINDS:
            if key in _BUFFER_KEYS and a.shape != param._data.shape:
                raise ValueError(
                    f"Optimizer.load_state_dict: state {key!r} has shape {tuple(a.shape)} but "
                    f"its parameter has shape {tuple(param._data.shape)}"
                )
            return wrap(xp.array(a, dtype=pd, copy=True))
        return wrap(xp.array(a, copy=True))
    if isinstance(value, dict):
        return {k: _cast(param, k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(param, None, v) for v in value)
    return value
