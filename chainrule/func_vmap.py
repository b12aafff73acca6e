"""``cr.func.vmap``, ``functional_call`` and ``stack_module_state``.

``vmap(func)(*args)`` runs ``func`` once on the whole batch: each batched argument becomes a
Tensor whose array is a :class:`chainrule.batching.BatchedArray` (logically one example,
physically the batch), every op computes on those through NumPy's protocols, and the outputs
are turned back into plain Tensors with the batch along ``out_dims``. Entering and leaving are
two gates, ``ToBatched`` and ``FromBatched``, each the other's backward, so a graph recorded
outside ``vmap`` flows through it (``grad(vmap(f))``) and one recorded inside flows out
(``vmap(grad(f))`` runs ``grad``'s backward on batched arrays: per-example gradients).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chainrule import batching
from chainrule._pytree import _flatten, _unflatten
from chainrule._state import state
from chainrule.autograd.function import Op
from chainrule.nn.utils.stateless import functional_call
from chainrule.tensor import Tensor, TensorBase, wrap

__all__ = ["vmap", "functional_call", "stack_module_state"]


# ---- entering and leaving a level ---------------------------------------------------------------
class ToBatched(Op):
    """y = the batch of x along ``dim`` as one batched value;  dx = dy laid out along ``dim``"""

    @staticmethod
    def forward(ctx, x, dim, lv):
        ctx.dim, ctx.lv = dim, lv
        return batching.batch(x, dim, lv)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, TensorBase):
            return FromBatched.apply(g, ctx.lv, ctx.dim), None, None
        return batching.unbatch(g, ctx.lv, ctx.dim), None, None


class FromBatched(Op):
    """y = x's batch laid out along ``dim`` (broadcast if x is unbatched);  dx = dy's batch"""

    @staticmethod
    def forward(ctx, x, lv, dim):
        ctx.dim, ctx.lv = dim, lv
        ctx.was_batched = batching.is_batched(x) and x._lv is lv
        return batching.unbatch(x, lv, dim)

    @staticmethod
    def backward(ctx, g):
        if not ctx.was_batched:  # x was broadcast: its gradient sums over the batch
            return (g.sum(ctx.dim) if isinstance(g, TensorBase) else g.sum(axis=ctx.dim)), \
                None, None
        if isinstance(g, TensorBase):
            return ToBatched.apply(g, ctx.dim, ctx.lv), None, None
        return batching.batch(g, ctx.dim, ctx.lv), None, None


class SumLevel(Op):
    """y = x summed over the batch of one (finished) vmap level;  dx = dy broadcast back"""

    @staticmethod
    def forward(ctx, x, lv):
        ctx.lv = lv
        return batching.sum_level(x, lv)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, TensorBase):
            return ExpandLevel.apply(g, ctx.lv), None
        return batching.expand_level(g, ctx.lv, ()), None


class ExpandLevel(Op):
    """y = x broadcast along the batch of level ``lv``;  dx = dy summed over it"""

    @staticmethod
    def forward(ctx, x, lv):
        ctx.lv = lv
        return batching.expand_level(x, lv, ())

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, TensorBase):
            return SumLevel.apply(g, ctx.lv), None
        return batching.sum_level(g, ctx.lv), None


batching.hooks.sum_level_gate = SumLevel


def _to_batched(t: Tensor, dim: int, lv) -> Tensor:
    if state.grad_enabled and (t._requires_grad or t._base is not None):
        return ToBatched.apply(t, dim, lv)
    return wrap(batching.batch(t._data, dim, lv))


def _from_batched(t: Tensor, lv, dim: int) -> Tensor:
    if state.grad_enabled and t._requires_grad:
        return FromBatched.apply(t, lv, dim)
    return wrap(batching.unbatch(t._data, lv, dim))


# ---- pytrees (the same containers as the other transforms) ---------------------------------------
def _is_leaf(node) -> bool:
    return not isinstance(node, (tuple, list, dict))


def _broadcast_dims(dims: Any, tree: Any) -> list | None:
    """``dims`` (an int/None, or a tree prefix of ``tree``) as one entry per leaf of ``tree``;
    None if the structures do not match."""
    if dims is None or isinstance(dims, int):
        return [dims] * len(_flatten(tree)[0])
    if isinstance(dims, (tuple, list)):
        if not isinstance(tree, (tuple, list)) or len(dims) != len(tree) or \
                type(dims) is not type(tree) and not (isinstance(dims, tuple) and
                                                     isinstance(tree, tuple)):
            return None
        out: list = []
        for d, t in zip(dims, tree):
            sub = _broadcast_dims(d, t)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(dims, dict):
        if not isinstance(tree, dict) or set(dims) != set(tree):
            return None
        out = []
        for k in tree:
            sub = _broadcast_dims(dims[k], tree[k])
            if sub is None:
                return None
            out += sub
        return out
    return None


def _spec_text(tree: Any, indent: int = 0) -> str:
    """A pytree's structure as torch's ``TreeSpec`` prints it (in vmap's error messages)."""
    if isinstance(tree, (tuple, list)):
        kind, context, children = type(tree).__name__, None, list(tree)
    elif isinstance(tree, dict):
        kind, context, children = "dict", list(tree), list(tree.values())
    else:
        return "*"
    text = f"TreeSpec({kind}, {context}, ["
    if children:
        indent += 2
        text += _spec_text(children[0], indent)
        text += "," if len(children) > 1 else ""
        text += ",".join("\n" + " " * indent + _spec_text(c, indent) for c in children[1:])
    return text + "])"


def _valid_dims(dims: Any) -> bool:
    if dims is None or isinstance(dims, int):
        return not isinstance(dims, bool)
    if isinstance(dims, (tuple, list)):
        return all(_valid_dims(d) for d in dims)
    if isinstance(dims, dict):
        return all(_valid_dims(d) for d in dims.values())
    return False


# ---- vmap ---------------------------------------------------------------------------------------
def _name(func) -> str:
    return getattr(func, "__name__", type(func).__name__)


class _Where:
    """``vmap(f, in_dims=..., ...)(<inputs>)``, the prefix of vmap's input errors (as text
    only when an error is raised: building it on every call costs more than the checks)."""

    __slots__ = ("name", "in_dims")

    def __init__(self, name: str, in_dims) -> None:
        self.name, self.in_dims = name, in_dims

    def __format__(self, spec: str) -> str:
        return f"vmap({self.name}, in_dims={self.in_dims}, ...)(<inputs>)"


def vmap(func: Callable, in_dims: Any = 0, out_dims: Any = 0, randomness: str = "error", *,
         chunk_size: int | None = None) -> Callable:
    """``func`` mapped over a batch dimension of its inputs, computed in one pass.

    ``in_dims``: per argument (a pytree prefix of the arguments), the dim to map over, or None
    for an argument shared by every example. ``out_dims``: where the batch dim goes in each
    output (None: the output must not depend on the batch). ``chunk_size`` runs the batch in
    chunks of that many examples (less memory), ``randomness`` is as torch.func's ('error':
    random ops inside raise, 'same': one draw shared by all examples; 'different' is refused).
    """
    if randomness not in ("error", "different", "same"):
        raise RuntimeError("Only allowed values for randomness are 'error', 'different', or "
                           f"'same'. Got {randomness}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"vmap: chunk_size should be None or greater than 0. (got {chunk_size})")

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        name = _name(func)
        if not args:
            raise ValueError(
                f"vmap({name})(<inputs>): got no inputs. Maybe you forgot to add inputs, or you "
                "are trying to vmap over a function with no inputs. The latter is unsupported."
            )
        where = _Where(name, in_dims)  # the messages' prefix, formatted only when one is raised
        if not (isinstance(in_dims, int) or isinstance(in_dims, tuple)) or \
                isinstance(in_dims, bool) or not _valid_dims(in_dims):
            raise ValueError(
                f"{where}: expected `in_dims` to be int or a (potentially nested) tuple matching "
                f"the structure of inputs, got: {type(in_dims)}."
            )
        leaves, spec = _flatten(args)
        dims = _broadcast_dims(in_dims, args)
        if dims is None:
            raise ValueError(
                f"{where}: in_dims is not compatible with the structure of `inputs`. in_dims has "
                f"structure {_spec_text(in_dims)} but inputs has structure {_spec_text(args)}."
            )
        sizes = []
        norm = []
        for x, d in zip(leaves, dims):
            if d is None:
                norm.append(None)
                continue
            if not isinstance(x, TensorBase):
                raise ValueError(
                    f"{where}: Got in_dim={d} for an input but the input is of type {type(x)}. "
                    "We cannot vmap over non-Tensor arguments, please use None as the "
                    "respective in_dim"
                )
            nd = x.ndim
            if not -nd <= d < nd:
                raise ValueError(
                    f"{where}: Got in_dim={d} for some input, but that input is a Tensor of "
                    f"dimensionality {nd} so expected in_dim to satisfy -{nd} <= in_dim < {nd}."
                )
            d %= nd
            norm.append(d)
            sizes.append(x.shape[d])
        if not sizes:
            raise ValueError(
                f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): at least one input must be "
                "batched (in_dims were all None)"
            )
        if len(set(sizes)) > 1:
            raise ValueError(
                "vmap: Expected all tensors to have the same size in the mapped dimension, got "
                f"sizes {sizes} for the mapped dimension"
            )
        size = sizes[0]
        if chunk_size is None or chunk_size >= size:
            return _run(func, name, leaves, norm, spec, kwargs, size, out_dims, randomness)
        results = []
        for start in range(0, size, chunk_size):
            stop = min(start + chunk_size, size)
            part = [x if d is None else x.narrow(d, start, stop - start)
                    for x, d in zip(leaves, norm)]
            results.append(_run(func, name, part, norm, spec, kwargs, stop - start, out_dims,
                                randomness))
        return _concat_chunks(results, out_dims, name)

    return wrapped


def _run(func, name, leaves, dims, spec, kwargs, size, out_dims, randomness):
    lv = batching.push_level(size, randomness)
    try:
        inputs = [x if d is None else _to_batched(x, d, lv) for x, d in zip(leaves, dims)]
        out = func(*_unflatten(spec, inputs), **kwargs)
    finally:
        batching.pop_level(lv)
    flat, out_spec = _flatten(out)
    odims = _broadcast_dims(out_dims, out)
    if odims is None:
        raise ValueError(
            f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is not compatible with "
            f"the structure of `outputs`. out_dims has structure {_spec_text(out_dims)} but "
            f"outputs has structure {_spec_text(out)}."
        )
    results = []
    for t, d in zip(flat, odims):
        if not isinstance(t, TensorBase):
            if d is None:
                results.append(t)
                continue
            raise ValueError(
                f"vmap({name}, ...): `{name}` must only return Tensors, got type {type(t)}. Did "
                "you mean to set out_dims= to None for output?"
            )
        batched = batching.is_batched(t._data) and t._data._lv is lv
        if d is None:
            if batched:
                raise ValueError(
                    f"vmap({name}, ...): `{name}` can not return a BatchedTensor when out_dim is "
                    "None"
                )
            results.append(t)
            continue
        nd = t.ndim + 1
        if not -nd <= d < nd:
            raise IndexError(
                f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], but got "
                f"{d})"
            )
        results.append(_from_batched(t, lv, d % nd))
    return _unflatten(out_spec, results)


def map_rows(func: Callable, rows: list, out_dim: int, chunk_size: int | None = None,
             randomness: str = "error") -> tuple:
    """``vmap(func, out_dims=out_dim, chunk_size=chunk_size)(*rows)`` for jacrev/jacfwd: the
    rows are plain Tensors without a graph, batched along dim 0, and ``func`` returns a tuple of
    Tensors; no pytrees or in_dims to check, so none of vmap's per-call argument work."""
    size = rows[0].shape[0]
    step = size if chunk_size is None else chunk_size
    parts = []
    for start in range(0, size, step):
        stop = min(start + step, size)
        lv = batching.push_level(stop - start, randomness)
        try:
            inputs = [wrap(batching.batch(r._data if stop - start == size
                                          else r._data[start:stop], 0, lv)) for r in rows]
            out = func(*inputs)
        finally:
            batching.pop_level(lv)
        parts.append(tuple(_from_batched(t, lv, out_dim % (t.ndim + 1)) for t in out))
    if len(parts) == 1:
        return parts[0]
    from chainrule.ops.shape import cat

    return tuple(cat(list(ts), out_dim) for ts in zip(*parts))


def _concat_chunks(results: list, out_dims, name: str):
    from chainrule.ops.shape import cat

    flats = [_flatten(r)[0] for r in results]
    spec = _flatten(results[0])[1]
    odims = _broadcast_dims(out_dims, results[0])
    joined = []
    for i, d in enumerate(odims):
        parts = [f[i] for f in flats]
        if d is None or not isinstance(parts[0], TensorBase):
            joined.append(parts[0])
        else:
            joined.append(cat(parts, d))
    return _unflatten(spec, joined)


# ---- modules as functions -----------------------------------------------------------------------
def stack_module_state(models) -> tuple[dict, dict]:
    """``(params, buffers)``: each model's parameters (and buffers) stacked along a new first
    dim, for ``vmap(functional_call)`` over an ensemble, as ``torch.func.stack_module_state``."""
    from chainrule.ops.shape import stack

    models = list(models)
    if not models:
        raise RuntimeError("stack_module_state: Expected at least one model, got 0.")
    first = models[0]
    if not (all(m.training for m in models) or all(not m.training for m in models)):
        raise RuntimeError("stack_module_state: Expected all models to have the same training/"
                           "eval mode.")
    kind = type(first)
    if not all(type(m) is kind for m in models):
        raise RuntimeError("stack_module_state: Expected all models to be of the same class.")
    params = {}
    for name, p in first.named_parameters():
        group = [dict(m.named_parameters())[name] for m in models]
        params[name] = stack([g.detach() for g in group]).requires_grad_(p.requires_grad)
    buffers = {}
    for name, _ in first.named_buffers():
        buffers[name] = stack([dict(m.named_buffers())[name] for m in models])
    return params, buffers
