"""``cr.func``: composable function transforms with ``torch.func``'s names and semantics.

Every transform is a thin layer over one reverse-mode entry point, ``cr.autograd.grad``:

* **Fresh inputs.** A transform runs ``f`` on its own copies of the differentiated arguments.
  An argument that carries no outer graph becomes a fresh leaf (``detach().requires_grad_()``);
  one that does (we are nested inside another transform, or the caller tracks it with plain
  autograd) becomes an ``Alias`` node: a new identity gate, so this transform differentiates
  with respect to *its own* input while the outer graph stays connected behind it.
* **Connected or not.** If ``f``'s graph reaches anything outside this transform (an aliased
  input, a captured tensor that requires grad), every gradient is taken with
  ``create_graph=True``, so an outer transform can differentiate the result again:
  ``grad(grad(grad(f)))`` gives third derivatives. Otherwise gradients are taken on raw arrays
  (the fast path) and results come back detached, like ``torch.func`` at the top level.
* **Forward mode by double VJP.** chainrule has no dual numbers: every op's backward is written
  with differentiable tensor ops, so ``g(u) = J^T u`` is itself a graph, *linear* in a dummy
  cotangent ``u``. Reversing that linear graph gives ``J v = d<g(u), v>/du`` for any tangent
  ``v``. ``jvp`` is thus one backward-with-graph plus one reverse pass over the linear VJP
  graph, and works for every op in the registry without per-op JVP rules (a dual-number
  design would need a second rule for each op and a second place for it to be wrong).
  ``jacfwd`` builds the VJP graph once and reverses it for the whole tangent basis at once
  (a vmapped batch); ``jacrev`` pushes the whole cotangent basis through one backward pass.
  Since forward mode is two reverse passes here, ``jacfwd`` of a wide Jacobian takes the one
  reverse pass, and ``hessian`` is ``jacrev(jacrev(f))`` (the matrix of torch's
  ``jacfwd(jacrev(f))``).
* ``hvp`` is reverse-over-reverse (``H v = d<grad f, v>/dx``, H symmetric): one gradient with
  graph plus one reverse pass over it, never forming H.
* ``vmap`` (:mod:`chainrule.func_vmap`, :mod:`chainrule.batching`) runs a function once on a
  whole batch; ``jacrev`` and ``jacfwd`` use it to push all their one-hot cotangents / tangents
  through the graph in one pass (``chunk_size`` at a time).

Inputs and outputs may be pytrees: tuples, lists, dicts and namedtuples of tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chainrule import batching as _batching
from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule.autograd.entry import grad as _autograd_grad
from chainrule.autograd.grad_mode import enable_grad, is_grad_enabled
from chainrule.ops.shape import Alias
from chainrule.tensor import Tensor, wrap
from chainrule._pytree import _flatten, _spec_str, _tree_map, _unflatten
from chainrule.func_vmap import functional_call, map_rows, stack_module_state, vmap

__all__ = ["grad", "grad_and_value", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd",
           "hessian", "hvp", "linearize", "vmap", "functional_call", "stack_module_state",
           "replace_all_batch_norm_modules_"]

_GRAD = "grad_and_value(f)(*args)"
_VJP = "vjp(f, *primals)"
_JVP = "jvp(f, primals, tangents)"


# ---- pytrees: chainrule/_pytree.py (shared with vmap) --------------------------------------------

# ---- the shared machinery -------------------------------------------------------------------

def _argnums(argnums: Any, nargs: int) -> tuple[int, ...]:
    """Validate ``argnums`` (int or tuple of ints) and make each index non-negative."""
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if not isinstance(nums, tuple) or not all(isinstance(a, int) for a in nums):
        raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")
    if not nums:
        raise RuntimeError("argnums must be non-empty")
    if len(set(nums)) != len(nums):
        raise RuntimeError(f"argnums elements must be unique, got {argnums}")
    out = []
    for a in nums:
        if not -nargs <= a < nargs:
            raise RuntimeError(f"Got argnum={a}, but only {nargs} positional inputs")
        out.append(a % nargs)
    return tuple(out)


class _Scope:
    """Marks the fresh leaves of one transform run; dead once that run has returned."""

    __slots__ = ("alive",)

    def __init__(self) -> None:
        self.alive = True


def _fresh(data: Any, scope: _Scope) -> Tensor:
    x = wrap(data).requires_grad_()
    x._cr_scope = scope
    return x


def _outside(leaf: Tensor, scope: _Scope) -> bool:
    """A leaf that requires grad and is neither ours nor a finished transform's private leaf."""
    s = getattr(leaf, "_cr_scope", None)
    return s is None or (s is not scope and s.alive)


def _reaches_outside(tensors: list, scope: _Scope) -> bool:
    """Whether the graph behind ``tensors`` touches a live tensor that is not ours."""
    stack = []
    for t in tensors:
        if not t._requires_grad:
            continue
        if t._grad_fn is None:
            if _outside(t, scope):
                return True
        else:
            stack.append(t._grad_fn)
    seen: set = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for e in node._edges:
            if e is None:
                continue
            if isinstance(e, Tensor):
                if _outside(e, scope):
                    return True
            else:
                stack.append(e[0] if type(e) is tuple else e)
    return False


class _Trace:
    """One run of ``f`` on a transform's own inputs: what it returned and how to finish."""

    def __init__(self, func: Callable, args: tuple, kwargs: dict, argnums: Any, has_aux: bool,
                 api: str) -> None:
        self.single = isinstance(argnums, int)
        self.nums = _argnums(argnums, len(args))
        outer = is_grad_enabled()
        args = list(args)
        self.inputs: list = []   # flat list of this transform's own inputs
        self.specs: list = []    # (spec, number of leaves) per differentiated argument
        self.scope = scope = _Scope()
        linked = False
        with enable_grad():
            for a in self.nums:
                leaves, spec = _flatten(args[a])
                mine = []
                for t in leaves:
                    if not isinstance(t, Tensor):
                        raise ValueError(
                            f"Thing passed to transform API must be Tensor, got {type(t)}"
                        )
                    if outer and t._requires_grad:
                        mine.append(Alias.apply(t))
                        linked = True
                    else:
                        mine.append(_fresh(t._data, scope))
                self.inputs += mine
                self.specs.append((spec, len(mine)))
                args[a] = _unflatten(spec, mine)
            result = func(*args, **kwargs)
        self.aux = None
        if has_aux:
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(
                    f"{api}: output of function f should be a tuple: (output, aux) if has_aux "
                    "is True"
                )
            result, self.aux = result
            for leaf in _flatten(self.aux)[0]:
                if not isinstance(leaf, Tensor):
                    raise RuntimeError(f"Expected tensors, got unsupported type {type(leaf)}")
        self.out = result
        if outer and not linked:
            watched = [t for t in _flatten((result, self.aux))[0] if isinstance(t, Tensor)]
            linked = _reaches_outside(watched, scope)
        self.linked = linked

    def __enter__(self) -> _Trace:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.scope.alive = False

    def structure(self, flat: list) -> Any:
        """Per-input results shaped like the differentiated arguments (tuple if argnums is)."""
        trees, i = [], 0
        for spec, n in self.specs:
            trees.append(_unflatten(spec, flat[i:i + n]))
            i += n
        return trees[0] if self.single else tuple(trees)

    def finish(self, tree: Any) -> Any:
        """Results handed back: as they are when connected outside, else detached."""
        if self.linked:
            return tree
        return _tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, tree)

    def outputs(self, api: str) -> tuple[list, Any]:
        """``f``'s output leaves (all tensors, or a torch-worded error) and the output spec."""
        leaves, spec = _flatten(self.out)
        for t in leaves:
            if not isinstance(t, Tensor):
                raise RuntimeError(
                    f"{api}: expected f(*primals) to return only tensors, got unsupported type "
                    f"{type(t)}"
                )
        return leaves, spec


def _zeros(t: Tensor) -> Tensor:
    return wrap(np.zeros_like(t._data))


def _grads(outputs: list, inputs: list, cotangents: list, create_graph: bool,
           retain_graph: bool = True) -> list:
    """autograd.grad that skips outputs without a graph and gives zeros for unused inputs."""
    roots, cots = [], []
    for o, c in zip(outputs, cotangents):
        if o is not None and o._requires_grad:
            roots.append(o)
            cots.append(c)
    result: Any = [None] * len(inputs)
    if roots and inputs:
        result = _autograd_grad(roots, inputs, cots, retain_graph=retain_graph,
                                create_graph=create_graph, allow_unused=True)
    return [g if g is not None else _zeros(x) for g, x in zip(result, inputs)]


def _check_floating_outputs(leaves: list) -> None:
    for t in leaves:
        if t._data.dtype.kind not in FLOAT_KINDS:
            raise RuntimeError(
                "vjp(f, ...): All outputs of f must be floating-point or complex Tensors, got "
                f"Tensor with dtype {t.dtype}"
            )


def _check_floating(kind: str, t: Tensor) -> None:
    if t._data.dtype.kind not in FLOAT_KINDS:
        raise ValueError(f"Expected {kind} to be floating point or complex, but got: {t.dtype}")


class _Linear:
    """The VJP graph ``g = J^T u`` in dummy cotangents ``u``; reversing it pushes tangents."""

    def __init__(self, outputs: list, inputs: list, scope: _Scope) -> None:
        self.outputs = outputs
        self.us = [_fresh(np.zeros_like(o._data), scope) if o._requires_grad else None
                   for o in outputs]
        self.gs = _grads(outputs, inputs, self.us, create_graph=True)

    def push(self, index: list, tangents: list, create_graph: bool) -> list:
        """J v for tangents on inputs ``index``: one tensor per output (zeros if unrelated)."""
        us = [u for u in self.us if u is not None]
        out = _grads([self.gs[i] for i in index], us, tangents, create_graph)
        it = iter(out)
        return [next(it) if u is not None else _zeros(o) for u, o in zip(self.us, self.outputs)]


# ---- reverse mode -------------------------------------------------------------------------------

def grad_and_value(func: Callable, argnums: int | tuple[int, ...] = 0,
                   has_aux: bool = False) -> Callable:
    """A function returning ``(grad, value)`` of scalar ``func`` w.r.t. the ``argnums`` args."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _Trace(func, args, kwargs, argnums, has_aux, _GRAD) as tr:
            out = tr.out
            if not isinstance(out, Tensor):
                raise RuntimeError(
                    f"{_GRAD}: Expected f(*args) to return a Tensor, got {type(out)}"
                )
            if out.ndim != 0:
                raise RuntimeError(
                    f"{_GRAD}: Expected f(*args) to return a scalar Tensor, got tensor with "
                    f"{out.ndim} dims. Maybe you wanted to use the vjp or jacrev APIs instead?"
                )
            flat = _grads([out], tr.inputs, [None], create_graph=tr.linked, retain_graph=tr.linked)
            grads = tr.structure(flat)
            value = tr.finish(out)
            if has_aux:
                return grads, (value, tr.finish(tr.aux))
            return grads, value

    return wrapper


def grad(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False) -> Callable:
    """A function returning the gradient of scalar ``func`` w.r.t. the ``argnums`` arguments."""
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grads, value = gv(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return wrapper


def value_and_grad(func: Callable, argnums: int | tuple[int, ...] = 0,
                   has_aux: bool = False) -> Callable:
    """``grad_and_value`` in JAX's order: returns ``(value, grad)`` (``((value, aux), grad)``)."""
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grads, value = gv(*args, **kwargs)
        return value, grads

    return wrapper


def vjp(func: Callable, *primals: Any, has_aux: bool = False) -> tuple:
    """``(func(*primals), vjp_fn)``; ``vjp_fn(cotangents)`` gives one ``v^T J`` per primal."""
    with _Trace(func, primals, {}, tuple(range(len(primals))), has_aux, _VJP) as tr:
        tr.single = False
        outs, spec = tr.outputs(_VJP)
        _check_floating_outputs(outs)

        def vjp_fn(cotangents: Any, retain_graph: bool = True, create_graph: bool | None = None):
            """The cotangents (shaped like the output) pulled back to one gradient per primal."""
            cots, cspec = _flatten(cotangents)
            if cspec != spec:
                raise RuntimeError(
                    "Expected pytree structure of cotangents to be the same as pytree structure of "
                    f"outputs to the function. cotangents: {_spec_str(cspec)}, primal output: "
                    f"{_spec_str(spec)}"
                )
            for i, (c, o) in enumerate(zip(cots, outs)):
                if not isinstance(c, Tensor):
                    raise TypeError(
                        f"gradients can be either Tensors or None, but got {type(c).__name__}"
                    )
                if c._data.shape != o._data.shape:
                    raise RuntimeError(
                        f"Mismatch in shape: grad_output[{i}] has a shape of {c.shape} and "
                        f"output[{i}] has a shape of {o.shape}."
                    )
            if create_graph is None:
                create_graph = is_grad_enabled() and (
                    tr.linked or any(c._requires_grad for c in cots)
                )
            flat = _grads(outs, tr.inputs, cots, create_graph, retain_graph)
            return tr.structure(flat)

        out = tr.finish(tr.out)
        if has_aux:
            return out, vjp_fn, tr.finish(tr.aux)
        return out, vjp_fn


def jacrev(func: Callable, argnums: int | tuple[int, ...] = 0, *, has_aux: bool = False,
           chunk_size: int | None = None, _preallocate_and_copy: bool = False) -> Callable:
    """A function returning the Jacobian of ``func``: the VJPs of every output element at once,
    one backward pass of a batch of one-hot cotangents (``vmap``; ``chunk_size`` at a time)."""
    _check_chunk_size("jacrev", chunk_size)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _Trace(func, args, kwargs, argnums, has_aux, _VJP) as tr:
            outs, spec = tr.outputs(_VJP)
            _check_floating_outputs(outs)
            jac = _reverse_jacobian(tr, outs, spec, chunk_size)
            return (jac, tr.finish(tr.aux)) if has_aux else jac

    return wrapper


def _check_chunk_size(api: str, chunk_size: Any) -> None:
    if not (chunk_size is None or isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"{api}: `chunk_size` should be greater than 0.")


def _reverse_jacobian(tr: _Trace, outs: list, spec: Any, chunk_size: int | None) -> Any:
    """The Jacobian of ``outs`` w.r.t. the trace's inputs: one backward pass of the batch of
    one-hot cotangents (every output element's row at once)."""
    sizes = [o.numel() for o in outs]
    total = sum(sizes)
    if total == 0:
        return _unflatten(spec, [tr.structure([_zeros_jac(o, x) for x in tr.inputs])
                                 for o in outs])
    bases = _bases(outs, sizes, total)

    def pull(*cots):
        return tuple(_grads(outs, tr.inputs, list(cots), tr.linked))

    if total == 1:  # one output element: one plain backward pass, nothing to batch
        rows = [g.unsqueeze(0) for g in pull(*[b[0] for b in bases])]
    else:
        rows = map_rows(pull, bases, 0, chunk_size)
    per_output, start = [], 0
    for o, n in zip(outs, sizes):
        blocks = [_shaped(r if n == total else r[start:start + n],
                          tuple(o.shape) + tuple(x.shape)) for r, x in zip(rows, tr.inputs)]
        per_output.append(tr.structure(blocks))
        start += n
    return _unflatten(spec, per_output)


def _shaped(t: Tensor, shape: tuple) -> Tensor:
    """``t.reshape(shape)``, or ``t`` itself when it has that shape already."""
    return t if tuple(t.shape) == shape else t.reshape(shape)


def _bases(tensors: list, sizes: list, total: int) -> list:
    """One-hot rows of the identity of size ``total``, split by tensor: tensor k's part has
    shape ``(total,) + tensors[k].shape`` (the k-th block of columns)."""
    out, start = [], 0
    for t, n in zip(tensors, sizes):
        block = np.zeros((total, n), dtype=t._data.dtype)
        block[np.arange(start, start + n), np.arange(n)] = 1
        out.append(wrap(block.reshape((total,) + tuple(t.shape))))
        start += n
    return out


def _zeros_jac(o: Tensor, x: Tensor) -> Tensor:
    from chainrule.creation import zeros

    return zeros(tuple(o.shape) + tuple(x.shape), dtype=x.dtype, device=x.device)


# ---- forward mode (double VJP) ------------------------------------------------------------------

def jvp(func: Callable, primals: tuple, tangents: tuple, *, strict: bool = False,
        has_aux: bool = False) -> tuple:
    """``(func(*primals), J @ tangents)``: a forward-mode product, computed by double VJP."""
    if not isinstance(primals, tuple):
        raise RuntimeError(
            f"{_JVP}: Expected primals to be a tuple. E.g. it should be valid to call f(*primals)."
        )
    p_leaves, p_spec = _flatten(primals)
    t_leaves, t_spec = _flatten(tangents)
    if p_spec != t_spec:
        raise RuntimeError(
            f"{_JVP}: Expected primals and tangents to have the same python structure. For "
            "example, if primals is a tuple of 3 tensors, tangents also must be. Got primals "
            f"with structure {_spec_str(p_spec)} and tangents with structure {_spec_str(t_spec)}"
        )
    for p, t in zip(p_leaves, t_leaves):
        if not isinstance(p, Tensor):
            raise RuntimeError(f"{_JVP}: Expected primals to only contain Tensors, got {type(p)}")
        if not isinstance(t, Tensor):
            raise RuntimeError(f"{_JVP}: Expected tangents to only contain Tensors, got {type(t)}")
        _check_floating("primal", p)
        _check_floating("tangent", t)
        if p._data.shape != t._data.shape:
            raise RuntimeError(
                "Trying to set a forward gradient that has a different size than that of the "
                f"original Tensor, this is not supported. Tensor is of size {list(p.shape)} while "
                f"the given forward gradient is of size {list(t.shape)}."
            )
    with _Trace(func, primals, {}, tuple(range(len(primals))), has_aux, _JVP) as tr:
        outs, spec = tr.outputs(_JVP)
        create = is_grad_enabled() and (tr.linked or any(t._requires_grad for t in t_leaves))
        lin = _Linear(outs, tr.inputs, tr.scope)
        jv = lin.push(list(range(len(tr.inputs))), t_leaves, create)
        jv = [j if create else j.detach() for j in jv]
        result = (tr.finish(tr.out), _unflatten(spec, jv))
        return result + (tr.finish(tr.aux),) if has_aux else result


def linearize(func: Callable, *primals: Any) -> tuple:
    """``(func(*primals), jvp_fn)``: ``jvp_fn(*tangents)`` is J @ tangents at ``primals``,
    pushed through one recorded VJP graph that every call reuses."""
    api = "linearize(func, *primals)"
    p_leaves, p_spec = _flatten(primals)
    for p in p_leaves:
        if not isinstance(p, Tensor):
            raise RuntimeError(f"{api}: Expected primals to only contain Tensors, got {type(p)}")
        _check_floating("primal", p)
    with _Trace(func, primals, {}, tuple(range(len(primals))), False, api) as tr:
        outs, out_spec = tr.outputs(api)
        lin = _Linear(outs, tr.inputs, tr.scope)
        output = tr.finish(tr.out)
    metas = [(p.shape, p.device, p.dtype) for p in p_leaves]

    def jvp_fn(*tangents: Any) -> Any:
        t_leaves, t_spec = _flatten(tangents)
        if t_spec != p_spec:
            raise RuntimeError(f"Expected the tangents {_spec_str(t_spec)} to have the same "
                               f"argspec as the primals {_spec_str(p_spec)}")
        for idx, (t, meta) in enumerate(zip(t_leaves, metas)):
            for what, mine, theirs in zip(("shape", "device", "dtype"), meta,
                                          (t.shape, t.device, t.dtype)):
                if mine != theirs:
                    raise RuntimeError(
                        f"tangent:{idx} with {what} {theirs} in flattened pytree doesn't match "
                        f"the {what} {mine} of the corresponding primal."
                    )
        jv = lin.push(list(range(len(t_leaves))), t_leaves, False)
        return _unflatten(out_spec, [j.detach() for j in jv])

    return output, jvp_fn


def jacfwd(func: Callable, argnums: int | tuple[int, ...] = 0, has_aux: bool = False, *,
           randomness: str = "error", chunk_size: int | None = None) -> Callable:
    """A function returning the Jacobian of ``func``: the JVPs of every input element at once,
    one reverse pass of a batch of one-hot tangents over the VJP graph (``vmap``)."""
    _check_chunk_size("jacfwd", chunk_size)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args))
        for a in nums:
            for t in _flatten(args[a])[0]:
                if isinstance(t, Tensor):
                    _check_floating("primal", t)
        # func runs once (forward mode is a double VJP here), under a stand-in for the vmap of
        # torch's jacfwd: its random ops raise in "error" mode and draw once otherwise
        if randomness not in ("error", "different", "same"):
            raise RuntimeError("Only allowed values for randomness are 'error', 'different', or "
                               f"'same'. Got {randomness}")
        guard = _batching.push_level(1, "same" if randomness == "different" else randomness)
        try:
            trace = _Trace(func, args, kwargs, argnums, has_aux, _JVP)
        finally:
            _batching.pop_level(guard)
        with trace as tr:
            outs, spec = tr.outputs(_JVP)
            sizes = [x.numel() for x in tr.inputs]
            total = sum(sizes)
            if sum(o.numel() for o in outs) < total and all(
                    o._data.dtype.kind in FLOAT_KINDS for o in outs):
                # fewer output than input elements: the same matrix from one batched
                # backward pass (forward mode here is itself two reverse passes)
                jac = _reverse_jacobian(tr, outs, spec, chunk_size)
                return (jac, tr.finish(tr.aux)) if has_aux else jac
            if total == 0:
                per_output = [tr.structure([_zeros_jac(o, x) for x in tr.inputs]) for o in outs]
                jac = _unflatten(spec, per_output)
                return (jac, tr.finish(tr.aux)) if has_aux else jac
            lin = _Linear(outs, tr.inputs, tr.scope)
            index = list(range(len(tr.inputs)))

            def push(*tangents):
                return tuple(lin.push(index, list(tangents), tr.linked))

            bases = _bases(tr.inputs, sizes, total)
            if total == 1:  # one input element: one pass, nothing to batch
                cols = [c.unsqueeze(-1) for c in push(*[b[0] for b in bases])]
            else:
                cols = map_rows(push, bases, -1, chunk_size, randomness)
            per_output = []
            for o, c in zip(outs, cols):
                blocks, start = [], 0
                for x, n in zip(tr.inputs, sizes):
                    part = c if n == total else c[..., start:start + n]
                    blocks.append(_shaped(part, tuple(o.shape) + tuple(x.shape)))
                    start += n
                per_output.append(tr.structure(blocks))
            jac = _unflatten(spec, per_output)
            return (jac, tr.finish(tr.aux)) if has_aux else jac

    return wrapper


def hessian(func: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """A function returning the Hessian of ``func``: ``jacrev(jacrev(func))``, the same matrix
    as torch's ``jacfwd(jacrev(func))``. Here forward mode is itself two reverse passes (the
    double VJP), so reverse over reverse is the cheaper order: one batched backward pass
    through the gradient's graph."""
    return jacrev(jacrev(func, argnums), argnums)


def hvp(func: Callable, primals: Any, tangents: Any = None) -> tuple:
    """``(func(*primals), H @ tangents)`` for scalar ``func`` without forming H.

    Follows ``torch.autograd.functional.hvp``: ``primals`` is a Tensor or a tuple of Tensors,
    ``tangents`` has the same structure (``None`` only for a single one-element input), and the
    product comes back in that structure. Computed reverse-over-reverse: ``d<grad f, v>/dx``.
    """
    single = isinstance(primals, Tensor)
    args = (primals,) if single else tuple(primals)
    if tangents is None:
        if not (len(args) == 1 and isinstance(args[0], Tensor) and args[0].numel() == 1):
            raise RuntimeError(
                "The vector v can only be None if the input to the user-provided function is a "
                "single Tensor with a single element."
            )
        vs = (wrap(np.ones_like(args[0]._data)),)
    else:
        vs = (tangents,) if isinstance(tangents, Tensor) else tuple(tangents)
    if len(vs) != len(args):
        raise RuntimeError(
            f"hvp: v has {len(vs)} elements but the inputs have {len(args)}; they must match."
        )
    for a, v in zip(args, vs):
        if not isinstance(a, Tensor) or not isinstance(v, Tensor):
            raise TypeError(
                "hvp: the inputs and v must be Tensors or tuples of Tensors, got "
                f"{type(a).__name__} and {type(v).__name__}"
            )
        if a._data.shape != v._data.shape:
            raise RuntimeError(
                f"v has invalid size: should be {a.shape} but got {v.shape}."
            )
    with _Trace(func, args, {}, tuple(range(len(args))), False, "hvp(f, primals, tangents)") as tr:
        out = tr.out
        if isinstance(out, tuple) and len(out) == 1:
            out = out[0]
        if isinstance(out, tuple):
            raise RuntimeError("The function given to hvp should return a single Tensor")
        if not isinstance(out, Tensor):
            raise TypeError(
                "The outputs of the user-provided function given to hvp must be either a Tensor "
                "or a tuple of Tensors but the given outputs of the user-provided function has "
                f"type {type(out)}."
            )
        if out.numel() != 1:
            raise RuntimeError(
                "The Tensor returned by the function given to hvp should contain a single element"
            )
        g = _grads([out], tr.inputs, [None], create_graph=True)
        create = is_grad_enabled() and (tr.linked or any(v._requires_grad for v in vs))
        hv = _grads(g, tr.inputs, list(vs), create, retain_graph=tr.linked)
        hv = [h if create else h.detach() for h in hv]
        value = tr.finish(tr.out)
        return (value, hv[0]) if single else (value, tuple(hv))


def replace_all_batch_norm_modules_(root: Any) -> Any:
    """Batch norm without running statistics, in place, in ``root`` and every submodule (so that
    vmap over a batch norm needs no in-place update of shared buffers); returns ``root``."""
    from chainrule.nn.modules.normalization import _BatchNorm

    for module in root.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            module.running_mean = module.running_var = module.num_batches_tracked = None
            module.track_running_stats = False
    return root
