"""Gates: ``Function`` (PyTorch's custom-op API) and ``Op``, the same form for built-in ops.

A gate computes its output in ``forward`` and, later, turns the gradient on its output into
gradients on its inputs in ``backward`` (the chain rule, one gate at a time). The gate object
itself is the graph node (``tensor.grad_fn``) and the ``ctx`` both methods receive.
"""

from __future__ import annotations

import sys
from typing import Any

from chainrule.backend import np
from chainrule._state import state
from chainrule.dtypes import FLOAT_KINDS
from chainrule.tensor import Tensor, wrap

_new = object.__new__
_ndarray = np.ndarray

__all__ = ["Function", "Op", "FunctionCtx", "once_differentiable"]

_SAVED_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)
_PACKAGE_DIR = __file__.rsplit("/autograd/", 1)[0]


def caller_site() -> str:
    """``file:line`` of the first frame outside chainrule (where the user created the op)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class Function:
    """A differentiable gate, written by subclassing (exactly like ``torch.autograd.Function``).

    ``forward(ctx, *args)`` receives the input Tensors (graph recording is off inside) and
    returns Tensors; ``backward(ctx, *grads)`` returns one gradient per forward argument
    (``None`` for non-tensors or inputs that need none). Call it as ``MyFn.apply(*args)``.
    """

    # Graph-node state, filled in by apply(); class attributes are the defaults.
    _edges: list = ()        # per input: None | leaf Tensor | node | (node, output_nr)
    _outs: tuple = ()        # per output: (shape, numpy dtype)
    _nin = 0                 # the engine reads _edges (Op keeps one or two edges in slots)
    _shape = None            # the engine reads _outs (Op keeps one output's meta in slots)
    _saved: tuple | None = ()     # None once freed by a backward without retain_graph
    _hooks: dict | None = None    # output_nr -> [hook, ...]  (Tensor.register_hook on non-leaves)
    _retained: dict | None = None  # output_nr -> weakref of the Tensor that retains its grad
    _as_tensors = True            # backward sees Tensors (always true for user Functions)
    _non_differentiable: tuple = ()
    _tensor_args: tuple = ()       # per forward argument: was it a Tensor (user Functions)
    _materialize_grads = True
    site: str | None = None       # file:line of creation (recorded in anomaly/check/trace modes)
    scope: tuple = ()             # enclosing Modules / Functions, outermost first
    differentiable = True

    # ---- the API a gate's author uses -------------------------------------------------------
    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom Function.")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError("You must implement the backward function for custom Function.")

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        raise NotImplementedError

    def save_for_backward(self, *tensors: Any) -> None:
        self._saved = tensors

    @property
    def _released(self) -> bool:
        return self._saved is None

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:
            raise RuntimeError(_SAVED_FREED)
        return self._saved

    @property
    def needs_input_grad(self) -> tuple:
        return tuple(e is not None for e in self._edges)

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self._non_differentiable = tuple(map(id, tensors))

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize_grads = value

    def mark_dirty(self, *tensors: Any) -> None:  # in-place custom ops are not supported
        raise NotImplementedError("chainrule Functions cannot modify their inputs in place")

    # ---- introspection (PyTorch's grad_fn API) ------------------------------------------------
    def name(self) -> str:
        """``MyFnBackward`` for custom Functions (``Op`` gates say ``MulBackward0``, as torch)."""
        return type(self).__name__ + ("Backward0" if isinstance(self, Op) else "Backward")

    @property
    def next_functions(self) -> tuple:
        out = []
        for e in self._edges:
            if e is None:
                out.append((None, 0))
            elif isinstance(e, tuple):
                out.append(e)
            elif isinstance(e, Function):
                out.append((e, 0))
            else:
                out.append((AccumulateGrad(e), 0))
        return tuple(out)

    def register_hook(self, fn) -> None:
        raise NotImplementedError("register hooks on tensors (tensor.register_hook)")

    def __repr__(self) -> str:
        return f"<{self.name()} object>"

    # ---- building the graph -------------------------------------------------------------------
    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        ctx = cls.__new__(cls)
        edges = _edges_of(args) if state.grad_enabled else None
        ctx._edges = edges or [None] * len(args)
        prev = state.grad_enabled
        state.grad_enabled = False
        try:
            if _overrides_setup_context(cls):
                out = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, out)
            else:
                out = cls.forward(ctx, *args, **kwargs)
        finally:
            state.grad_enabled = prev
        if edges is None:
            return out
        ctx._tensor_args = tuple(isinstance(a, Tensor) for a in args)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        input_ids = {id(a) for a in args if isinstance(a, Tensor)}
        wrapped, metas = [], []
        for nr, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                metas.append(None)
                continue
            metas.append((o._data.shape, o._data.dtype))
            if id(o) in ctx._non_differentiable or o._data.dtype.kind not in FLOAT_KINDS:
                wrapped.append(o)
                continue
            if id(o) in input_ids:
                o = wrap(o._data)
            o._grad_fn, o._nr, o._requires_grad = ctx, nr, True
            wrapped.append(o)
        ctx._outs = tuple(metas)
        if state.record_inputs:  # check_gates re-runs the gate on copies of these
            ctx.inputs, ctx.kwargs = args, kwargs
        if state.anomaly:
            from chainrule.autograd.anomaly import check_forward

            check_forward(ctx, tuple(o._data if isinstance(o, Tensor) else o for o in outs),
                          [a._data if isinstance(a, Tensor) else a for a in args])
        _note_creation(ctx)
        return wrapped[0] if single else tuple(wrapped)

    # ---- running the backward (called by the engine) -----------------------------------------
    def _run_backward(self, grads: list, create_graph: bool) -> tuple:
        """Call the author's backward with Tensors; return raw arrays unless create_graph."""
        from chainrule import backend

        given = next((g for g in grads if g is not None), None)
        xp = backend.xp_of(given._data if isinstance(given, Tensor) else given) if (
            given is not None) else backend.np  # zeros for unused outputs, on the same device
        tensors = []
        for g, meta in zip(grads, self._outs):
            if g is None:
                if meta is not None and self._materialize_grads:
                    tensors.append(wrap(xp.zeros(meta[0], meta[1])))
                else:
                    tensors.append(None)
            else:
                tensors.append(g if isinstance(g, Tensor) else wrap(g))
        prev = state.grad_enabled
        state.grad_enabled = create_graph
        try:
            result = type(self).backward(self, *tensors)
        finally:
            state.grad_enabled = prev
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != len(self._edges):
            if len(result) > len(self._edges) and all(r is None for r in result[len(self._edges):]):
                result = result[: len(self._edges)]
            else:
                raise RuntimeError(
                    f"function {self.name()} returned an incorrect number of gradients "
                    f"(expected {len(self._edges)}, got {len(result)})"
                )
        for i, (r, is_tensor) in enumerate(zip(result, self._tensor_args)):
            if r is not None and not is_tensor:
                raise RuntimeError(
                    f"function {self.name()} returned a gradient different than None at position "
                    f"{i + 1}, but the corresponding forward input was not a Tensor"
                )
        if create_graph:
            return tuple(r if r is None or isinstance(r, Tensor) else wrap(r) for r in result)
        return tuple(r._data if isinstance(r, Tensor) else r for r in result)

    def _release(self) -> None:
        if self._saved:
            self._saved = None


def _overrides_setup_context(cls) -> bool:
    return cls.setup_context is not Function.setup_context


def _edges_of(args) -> list | None:
    """The graph edge of each argument; None when no argument needs a gradient."""
    edges = []
    found = False
    for a in args:
        if isinstance(a, Tensor) and a._requires_grad:
            fn = a._grad_fn
            edges.append(a if fn is None else (fn if a._nr == 0 else (fn, a._nr)))
            found = True
        else:
            edges.append(None)
    return edges if found else None


def _note_creation(ctx: Function) -> None:
    """The enclosing modules and, in the recording modes, the user's file:line."""
    if state._scopes:
        ctx.scope = state._scopes
    if state._record_sites:
        ctx.site = caller_site()


class Op(Function):
    """A built-in gate. Same form as :class:`Function`, but faster: ``forward`` receives raw
    arrays and returns an array (or a tuple of arrays); ``backward`` receives raw arrays in a
    plain backward pass and Tensors under ``create_graph=True``. Backward rules are written with
    operators and :mod:`chainrule.ops.either`, so one text serves both cases and higher-order
    gradients come for free. Saved values are restricted to inputs, outputs and constants
    (masks, indices), which lets the engine rebuild them as graph-connected Tensors.
    """

    # Slots for what every recorded gate sets, and no container objects of its own: Python's
    # cyclic GC walks every container alive, and a big scalar graph is mostly gates. So the
    # edges of a one- or two-input gate live in _e0/_e1 (_nin says how many; 0: the tuple in
    # _en), a one-output gate's (shape, dtype) in _shape/_dtype (None: the tuple in _metas).
    # _saved_from is, per saved value, its input index, -1 for the output, None for a constant.
    __slots__ = ("_e0", "_e1", "_nin", "_en", "_saved", "_saved_from", "_shape", "_dtype",
                 "_metas")
    _as_tensors = False

    @property
    def _edges(self) -> tuple:
        try:
            n = self._nin
        except AttributeError:  # a gate run without recording (apply_unary/apply_binary)
            return ()
        return (self._e0,) if n == 1 else (self._e0, self._e1) if n == 2 else self._en

    @_edges.setter
    def _edges(self, edges) -> None:
        n = len(edges)
        self._nin = n if n in (1, 2) else 0
        if n == 1:
            self._e0 = edges[0]
        elif n == 2:
            self._e0, self._e1 = edges
        else:
            self._en = tuple(edges)

    @property
    def _outs(self) -> tuple:
        shape = self._shape
        return ((shape, self._dtype),) if shape is not None else self._metas

    @_outs.setter
    def _outs(self, metas) -> None:
        if len(metas) == 1:
            self._shape, self._dtype = metas[0]
        else:
            self._shape, self._metas = None, tuple(metas)

    @classmethod
    def apply(cls, *args: Any) -> Any:
        ctx = _new(cls)
        ctx._saved = ()
        ctx._nin, ctx._en = 0, _NO_EDGES
        edges = _edges_of(args) if state.grad_enabled and cls.differentiable else None
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        try:
            if edges is None:
                out = cls.forward(ctx, *arrays)
                if type(out) is tuple:
                    return tuple(wrap(o) for o in out)
                return wrap(out)
            ctx._edges = edges
            out = cls.forward(ctx, *arrays)
        except TypeError:  # CuPy refuses NumPy operands: say which devices were mixed
            from chainrule import backend

            backend.check_same_device(arrays, cls.__name__.lower())
            raise
        saved = ctx._saved
        if saved:
            ctx._saved_from = _sources(saved, arrays, out)
        if type(out) is not tuple:
            return _finish_one(ctx, out, arrays)
        return _finish_many(ctx, out, arrays)

    # Specialised copies of apply for the hottest calls (one tensor; a tensor and a tensor or
    # Python scalar), without argument loops: the per-op overhead decides small-op speed.
    @classmethod
    def apply_unary(cls, x: Tensor) -> Tensor:
        ctx = _new(cls)
        ctx._saved = ()
        data = x._data
        if not (x._requires_grad and state.grad_enabled):
            return wrap(cls.forward(ctx, data))
        fn = x._grad_fn
        ctx._e0 = x if fn is None else (fn if x._nr == 0 else (fn, x._nr))
        ctx._nin = 1
        out = cls.forward(ctx, data)
        saved = ctx._saved
        if saved:
            s = saved[0]
            if len(saved) == 1 and s is data:
                ctx._saved_from = _FROM_INPUT0
            elif len(saved) == 1 and s is out:
                ctx._saved_from = _FROM_OUTPUT
            else:
                ctx._saved_from = _sources(saved, (data,), out)
        return _finish_one(ctx, out, (data,))

    @classmethod
    def apply_binary(cls, a: Tensor, b) -> Tensor:
        """For float operands: ``a`` a Tensor, ``b`` a Tensor of the same dtype or a scalar."""
        ctx = _new(cls)
        ctx._saved = ()
        # A 0-d array operand (a scalar leaf) goes in as a NumPy scalar: NumPy's scalar
        # arithmetic is several times faster than a ufunc call, here and in the backward.
        da = a._data
        if type(da) is _ndarray and not da.ndim:
            da = da[()]
        if type(b) is Tensor or isinstance(b, Tensor):
            db = b._data
            if type(db) is _ndarray and not db.ndim:
                db = db[()]
            eb = None
            if b._requires_grad:
                fn = b._grad_fn
                eb = b if fn is None else (fn if b._nr == 0 else (fn, b._nr))
        else:
            db, eb = b, None
        ea = None
        if a._requires_grad:
            fn = a._grad_fn
            ea = a if fn is None else (fn if a._nr == 0 else (fn, a._nr))
        if (ea is None and eb is None) or not state.grad_enabled:
            return wrap(cls.forward(ctx, da, db))
        ctx._e0, ctx._e1, ctx._nin = ea, eb, 2
        out = cls.forward(ctx, da, db)
        saved = ctx._saved
        if saved:
            if len(saved) == 2 and saved[0] is da and saved[1] is db:
                ctx._saved_from = _FROM_INPUTS01
            else:
                ctx._saved_from = _sources(saved, (da, db), out)
        return _finish_one(ctx, out, (da, db))

    @property
    def saved_tensors(self) -> tuple:
        if not self._as_tensors:
            saved = self._saved
            if saved is None:
                raise RuntimeError(_SAVED_FREED)
            return saved
        saved = self._saved
        if saved is None:
            raise RuntimeError(_SAVED_FREED)
        if not saved:
            return ()
        return tuple(self._saved_as_tensor(s, src) for s, src in zip(saved, self._saved_from))

    def _saved_as_tensor(self, value, src):
        """Rebuild a saved array as the graph-connected Tensor it was (for create_graph)."""
        if value is None or not hasattr(value, "dtype"):
            return value  # None or a Python scalar argument
        if src is None:
            return wrap(value)
        if src == -1:
            return wrap(value, self, 0)
        if isinstance(src, tuple):  # output number src[1]
            return wrap(value, self, src[1])
        edge = self._edges[src]
        if edge is None:
            return wrap(value)
        if isinstance(edge, tuple):
            return wrap(value, edge[0], edge[1])
        if isinstance(edge, Function):
            return wrap(value, edge, 0)
        return edge  # a leaf Tensor

    def mark_non_differentiable(self, *output_numbers: int) -> None:
        """For built-ins: the output numbers (not arrays) that carry no gradient."""
        self._non_differentiable = output_numbers

    def _run_backward(self, grads: list, create_graph: bool) -> tuple:
        if create_graph:
            self._as_tensors = True
            try:
                result = type(self).backward(self, *grads)
            finally:
                self._as_tensors = False
        else:
            result = type(self).backward(self, *grads)
        return result if type(result) is tuple else (result,)


def _source(s, arrays: list, out):
    """Where saved value ``s`` came from: input index, -1 (output), ("out", nr), or None."""
    i = 0
    for a in arrays:
        if s is a:
            return i
        i += 1
    if s is out:
        return -1
    if type(out) is tuple:
        for nr, o in enumerate(out):
            if s is o:
                return -1 if nr == 0 else ("out", nr)
    return None


_NO_EDGES = ()
_FROM_INPUT0 = (0,)
_FROM_OUTPUT = (-1,)
_FROM_INPUTS01 = (0, 1)


def _finish_one(ctx, out, arrays) -> Tensor:
    """Wrap the single output of a recorded gate (``wrap``'s body inlined: one call less on
    every recorded op)."""
    if state.extras:
        _note_extras(ctx, out, arrays)
    dtype = out.dtype
    ctx._shape, ctx._dtype = out.shape, dtype
    if dtype.kind not in FLOAT_KINDS:
        return wrap(out)
    t = _new(Tensor)
    t._data = out
    t._grad_fn = ctx
    t._nr = 0
    t._requires_grad = True
    t._grad = None
    t._hooks = None
    return t


def _finish_many(ctx, out: tuple, arrays) -> tuple:
    """Wrap the outputs of a recorded gate with several."""
    if state.extras:
        _note_extras(ctx, out, arrays)
    ctx._shape, ctx._metas = None, tuple((o.shape, o.dtype) for o in out)
    nd = ctx._non_differentiable
    return tuple(
        wrap(o) if nr in nd or o.dtype.kind not in FLOAT_KINDS else wrap(o, ctx, nr)
        for nr, o in enumerate(out)
    )


def _sources(saved: tuple, arrays, out) -> tuple:
    if len(saved) == 1:
        return (_source(saved[0], arrays, out),)
    if len(saved) == 2:
        return (_source(saved[0], arrays, out), _source(saved[1], arrays, out))
    return tuple([_source(s, arrays, out) for s in saved])


def _note_extras(ctx, out, arrays) -> None:
    """Anomaly checks, creation sites and module scopes: only when a mode asks for them."""
    if state._anomaly:
        from chainrule.autograd.anomaly import check_forward

        check_forward(ctx, out, arrays)
    if state._record_inputs:
        ctx.inputs = tuple(arrays)
    _note_creation(ctx)


class AccumulateGrad:
    """Stand-in node for a leaf in ``next_functions`` (as PyTorch shows it)."""

    def __init__(self, tensor) -> None:
        self.variable = tensor

    def name(self) -> str:
        return "AccumulateGrad"

    next_functions = ()

    def __repr__(self) -> str:
        return "<AccumulateGrad object>"


FunctionCtx = Function


def once_differentiable(fn):
    """Backward runs without recording; differentiating its result again raises (as PyTorch)."""
    import functools

    from chainrule.autograd.grad_mode import no_grad

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        with no_grad():
            out = fn(ctx, *grads)
        if not (state.grad_enabled and any(getattr(g, "_requires_grad", False) for g in grads)):
            return out
        # as in PyTorch: the result stays in the graph, but differentiating it again raises
        outs = out if isinstance(out, tuple) else (out,)
        marked = tuple(
            DelayedError.apply(o.detach().requires_grad_()) if hasattr(o, "_data") else o
            for o in outs
        )
        return marked if isinstance(out, tuple) else marked[0]

    return wrapper


class DelayedError(Function):
    """Identity whose backward raises: marks the output of a once_differentiable backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError(
            "trying to differentiate twice a function that was marked with @once_differentiable"
        )


from chainrule.autograd import accel  # noqa: E402,F401  (installs the C engine, if built)
