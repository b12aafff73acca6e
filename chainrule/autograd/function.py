"""Gates: ``Function``, PyTorch's custom-op API, which every built-in op (``Op``) uses too.

A gate computes its output in ``forward`` and, later, turns the gradient on its output into
gradients on its inputs in ``backward`` (the chain rule, one gate at a time). The gate object
itself is the graph node (``tensor.grad_fn``) and the ``ctx`` both methods receive:
``ctx.save_for_backward``, ``ctx.saved_tensors``, ``ctx.needs_input_grad``,
``ctx.mark_non_differentiable`` and ``ctx.mark_dirty`` mean the same for every gate.

The one difference between a user's ``Function`` and a built-in ``Op`` is what flows through
them: a Function sees Tensors; an Op's ``forward`` sees raw arrays (no wrapper per op: fast), and
its ``backward`` sees whatever the backward pass runs on — raw arrays in a plain pass, Tensors
under ``create_graph=True`` (see :mod:`chainrule.autograd.engine`).
"""

from __future__ import annotations

from typing import Any

from chainrule import devices
from chainrule._state import current
from chainrule.autograd.anomaly import caller_site, check_forward
from chainrule.devices import np
from chainrule.dtypes import FLOAT_KINDS, scalar_type_name
from chainrule.tensor import REBASED, Tensor, TensorBase, version_counter, wrap

__all__ = ["Function", "Op", "FunctionCtx", "once_differentiable", "AccumulateGrad",
           "check_saved_versions", "keep_in_collector"]

_ndarray = np.ndarray
_COMPILED = not __file__.endswith(".py")  # compiled: nodes may leave the cyclic collector
_FLOAT64, _FLOAT32 = np.dtype("float64"), np.dtype("float32")
_last_outs = [(((), _FLOAT64),)]  # the last ``_outs`` of one output (see _one_output)
# ``_outs`` of a NumPy scalar output, by its type (one shared tuple per dtype, no attribute reads);
# the engine compares a gradient's ``_SCALAR_META`` with its node's output metadata the same way
_SCALAR_META = {t: ((), np.dtype(t)) for t in (
    np.float64, np.float32, np.float16, np.complex128, np.complex64, np.int64, np.int32,
    np.int16, np.int8, np.uint8, np.bool_)}
_SCALAR_OUTS = {t: (meta,) for t, meta in _SCALAR_META.items()}
_sources_seen: dict = {}  # each ``_saved_from`` tuple once (a few per gate)
_NEEDS_2 = (((False, False), (False, True)), ((True, False), (True, True)))
_FLOAT_OR_COMPLEX = FLOAT_KINDS + "c"

_SAVED_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you "
    "call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward "
    "through the graph a second time or if you need to access saved tensors after calling "
    "backward."
)
class Function:
    """A differentiable gate, written by subclassing (exactly like ``torch.autograd.Function``).

    ``forward(ctx, *args)`` receives the inputs (graph recording is off inside) and returns the
    output(s); ``backward(ctx, *grads)`` returns one gradient per forward argument (``None`` for
    non-tensors or inputs that need none). Call it as ``MyFn.apply(*args)``.
    """

    # A node's state (set by apply; tensor.pxd's twin, function.pxd, declares the same names):
    #   _edges     per input: None | a leaf Tensor | a node (its output 0) | (node, output_nr)
    #   _outs      per output: (shape, dtype), or None for an output that is not a tensor
    #   _saved     what save_for_backward kept (None once a backward freed it)
    #   _saved_from  Op: per saved value, its input index, -1 for output 0, ("out", k), or None
    #   _versions  per saved tensor, three items of one flat tuple (one object per node for the
    #              garbage collector to visit): the tensor holding its version counter, or a
    #              weak reference to it for a saved output; its version at saving; the saved
    #              tensor, or the output number for a saved output. See check_saved_versions
    #   _hooks, _retained   non-leaf tensor hooks and retain_grad, by output number
    #   _dirty, _non_differentiable, _tensor_args, _materialize_grads: as set through ctx
    #   site, scope  where it was created (recording modes) and the enclosing Modules
    __slots__ = ("_edges", "_outs", "_saved", "_saved_from", "_versions", "_hooks", "_retained",
                 "_dirty", "_non_differentiable", "_tensor_args", "_materialize_grads", "site",
                 "scope", "__dict__", "__weakref__")

    on_arrays = False      # Op: forward computes on raw arrays
    differentiable = True  # False: outputs never require grad (comparisons, argmax, ...)
    is_view = False        # Op: outputs that share input 0's memory are its views
    multi_view = False     # Op: several outputs that are views (split): no in-place on them
    # Op: the backward a create_graph pass runs, where ``backward`` is written for arrays only
    # (the RNN layers' BPTT); None: ``backward`` serves both
    differentiable_backward = None

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

    def save_for_backward(self, *values: Any) -> None:
        self._saved = values

    @property
    def saved_tensors(self) -> tuple:
        saved = self._saved
        if saved is None:
            raise RuntimeError(_SAVED_FREED)
        if self._versions is not None:
            check_saved_versions(self)
        return saved

    @property
    def needs_input_grad(self) -> tuple:
        """Per forward argument: does its gradient reach a tensor that requires grad?"""
        edges = self._edges
        if len(edges) == 2:  # the common case, without building a tuple
            return _NEEDS_2[edges[0] is not None][edges[1] is not None]
        return tuple([e is not None for e in edges])

    def mark_non_differentiable(self, *outputs: Any) -> None:
        """These outputs (tensors, or an Op's arrays) carry no gradient."""
        self._non_differentiable = outputs

    def set_materialize_grads(self, value: bool) -> None:
        self._materialize_grads = value

    def mark_dirty(self, *tensors: Any) -> None:
        """These inputs were modified in place by forward (and are returned as outputs)."""
        self._dirty = tensors

    # ---- introspection (PyTorch's grad_fn API) ------------------------------------------------
    def name(self) -> str:
        """``MyFnBackward`` for custom Functions (``Op`` gates say ``MulBackward0``, as torch)."""
        return type(self).__name__ + ("Backward0" if self.on_arrays else "Backward")

    @property
    def next_functions(self) -> tuple:
        out = []
        for e in self._edges:
            if e is None:
                out.append((None, 0))
            elif type(e) is tuple:
                out.append(e)
            elif isinstance(e, Function):
                out.append((e, 0))
            else:
                out.append((AccumulateGrad(e), 0))
        return tuple(out)

    @property
    def metadata(self) -> dict:
        """A dict for whatever the user wants to keep on this node (as torch's)."""
        try:
            return self._user_metadata
        except AttributeError:
            keep_in_collector(self)  # the user may put anything there
            self._user_metadata = _Metadata()
            return self._user_metadata

    def register_hook(self, fn) -> None:
        raise NotImplementedError("register hooks on tensors (tensor.register_hook)")

    def __repr__(self) -> str:
        return f"<{self.name()} object>"

    def __setattr__(self, name: str, value: Any) -> None:
        """Compiled only (the pure-Python engine deletes it below): an attribute set on a node
        that left the cyclic collector may close a cycle, so the node and what ``value`` leads
        to are put back first (the engine's own writes go to the C fields directly)."""
        if not PyObject_GC_IsTracked(self):  # noqa: F821 (function.pxd: the C API)
            keep_in_collector(self, value)
        PyObject_GenericSetAttr(self, name, value)  # noqa: F821

    # ---- building the graph -------------------------------------------------------------------
    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` and, if an input needs a gradient, record this gate as a graph node."""
        return _apply(cls, args, kwargs)

    @classmethod
    def replay(cls, args: tuple, x):
        """A view gate's output(s) for input ``x`` and the other arguments ``args``: recorded
        for a Tensor, computed for an array (used to rebuild a view from its base)."""
        if isinstance(x, TensorBase):
            return cls.apply(x, *args)
        ctx = cls.__new__(cls)
        ctx._saved = ()
        ctx._non_differentiable = ()
        return cls.forward(ctx, x, *args)


if not _COMPILED:  # nothing leaves the collector: attributes are set as usual
    del Function.__setattr__


def _apply(cls, args, kwargs):
    """Function.apply's body (a C function when compiled, with ``ctx`` a C struct)."""
    ctx = cls.__new__(cls)  # compiled: the type slot, directly
    ctx._saved = ()  # None once a backward has freed it
    ctx._saved_from = ctx._versions = ctx._dirty = ctx._hooks = None
    ctx._retained = ctx._tensor_args = ctx._materialize_grads = ctx.site = None
    ctx._non_differentiable = ctx.scope = ()
    switches = current()
    edges = _edges_of(args) if cls.differentiable and switches.grad_enabled else None
    ctx._edges = edges if edges is not None else (None,) * len(args)
    if not cls.on_arrays:
        out = _forward_tensors(cls, ctx, args, kwargs)
        return out if edges is None else _record_function(ctx, args, out, kwargs)
    values = _values(args)
    forward = cls.forward
    n = len(values)
    try:  # (the common arities called without building an argument tuple)
        if kwargs:
            out = forward(ctx, *values, **kwargs)
        elif n == 1:
            out = forward(ctx, values[0])
        elif n == 2:
            out = forward(ctx, values[0], values[1])
        else:
            out = forward(ctx, *values)
    except TypeError:  # CuPy refuses NumPy operands: say which devices were mixed
        devices.check_same_device(values, cls.__name__.lower())
        raise
    several = type(out) is tuple
    outs = out if several else (out,)
    if edges is None:
        tensors = tuple([wrap(o) for o in outs])
    else:
        tensors = _record_op(ctx, args, values, outs, kwargs, switches.extras)
    if cls.is_view:
        _mark_views(args, outs, tensors, cls)
    return tensors if several else tensors[0]


def _values(args):
    """An Op's view of its arguments (see :func:`_value`)."""
    n = len(args)
    if n == 1:
        return (_value(args[0]),)
    if n == 2:
        return (_value(args[0]), _value(args[1]))
    return tuple([_value(a) for a in args])


def _value(a):
    """The array of a Tensor (a 0-d CPU array as a NumPy scalar: NumPy's scalar arithmetic is
    several times faster than a ufunc on a 0-d array, here and in the backward), anything else
    as it is."""
    if isinstance(a, TensorBase):
        t = a
        d = t._data
        return d[()] if type(d) is _ndarray and not d.ndim else d
    return a


def _forward_tensors(cls, ctx, args, kwargs):
    """A user Function's forward: Tensors in, graph recording off."""
    switches = current()
    prev = switches.grad_enabled
    switches.grad_enabled = False
    try:
        if cls.setup_context is not Function.setup_context:
            out = cls.forward(*args, **kwargs)
            cls.setup_context(ctx, args, out)
            return out
        return cls.forward(ctx, *args, **kwargs)
    finally:
        switches.grad_enabled = prev


def _edges_of(args):
    """The graph edge of each argument; None when no argument needs a gradient."""
    n = len(args)
    if n == 1:
        e = _edge(args[0])
        return None if e is None else (e,)
    if n == 2:
        e = _edge(args[0])
        e1 = _edge(args[1])
        return None if e is None and e1 is None else (e, e1)
    edges = tuple([_edge(a) for a in args])
    for e in edges:
        if e is not None:
            return edges
    return None


def _edge(a):
    """The graph edge of one argument (see ``Tensor.edge``); None for a non-tensor."""
    if isinstance(a, TensorBase):
        t = a
        if t._base is not None:
            return t.edge()  # a view whose base changed in place is brought up to date there
        if t._requires_grad:
            fn = t._grad_fn
            return t if fn is None else (fn if t._nr == 0 else (fn, t._nr))
    return None


def _record_op(ctx, args, values, outs, kwargs, extras):
    """An Op's outputs as Tensors, with ``ctx`` as the node that produced them. The node keeps
    its outputs' metadata, where its saved values came from (so that a create_graph backward can
    rebuild them as graph Tensors) and their versions (so that an in-place change is caught).
    ``extras``: a recording mode is on (see _note_extras)."""
    if len(outs) == 1:  # (the common case, without the loops)
        o = outs[0]
        meta = _SCALAR_OUTS.get(type(o))  # a NumPy scalar: its shape and dtype are its type's
        if meta is None:
            dtype = o.dtype
            ctx._outs = _one_output(o.shape, dtype)
        else:
            ctx._outs = meta
            dtype = meta[0][1]
        saved_out = _note_saved(ctx, args, values, outs) if ctx._saved else False
        if extras:
            _note_extras(ctx, outs, values, kwargs)
        tensors = (_output(ctx, o, 0, dtype),)
    else:
        ctx._outs = tuple([(o.shape, o.dtype) for o in outs])
        saved_out = _note_saved(ctx, args, values, outs) if ctx._saved else False
        if extras:
            _note_extras(ctx, outs, values, kwargs)
        tensors = tuple([_output(ctx, outs[nr], nr, outs[nr].dtype) for nr in range(len(outs))])
    if saved_out:
        _note_output_versions(ctx, tensors)
    if _COMPILED:
        if not extras and _acyclic(ctx):
            _leave_collector(ctx)
        else:
            _keep_parents(ctx)
    return tensors


def _one_output(shape, dtype):
    """``((shape, dtype),)``: the previous node's tuple where it is equal (ops repeat their
    shapes; every object a node keeps is one more for the garbage collector to visit)."""
    if type(shape) is not tuple:  # a vmap's LevelShape: equal to a tuple, but with levels
        return ((shape, dtype),)
    last = _last_outs[0]
    meta = last[0]
    if meta[1] is dtype and meta[0] == shape:
        return last
    last = ((shape, dtype),)
    _last_outs[0] = last
    return last


def _output(ctx, o, nr, dtype):
    """Output ``nr`` of node ``ctx`` as a Tensor: in the graph if it can carry a gradient."""
    if (dtype is _FLOAT64 or dtype is _FLOAT32 or dtype.kind in FLOAT_KINDS) and not (
            ctx._non_differentiable and _marked(o, ctx._non_differentiable)):
        return wrap(o, ctx, nr)
    return wrap(o)


def _record_function(ctx, args, out, kwargs):
    """A user Function's outputs, with ``ctx`` as the node that produced them."""
    single = type(out) is not tuple
    outs = (out,) if single else out
    ctx._tensor_args = tuple([isinstance(a, TensorBase) for a in args])
    ctx._outs = tuple([(o._data.shape, o._data.dtype) if isinstance(o, TensorBase)
                       else None for o in outs])
    _note_user_versions(ctx, outs)
    if current().extras:
        _note_extras(ctx, outs, args, kwargs)
    wrapped = tuple([_function_output(ctx, nr, o, args) for nr, o in enumerate(outs)])
    if _COMPILED:
        _keep_parents(ctx)  # (a Function's node, holding Tensors, stays in the collector)
    return wrapped[0] if single else wrapped


def _function_output(ctx, nr, o, args):
    """Output ``nr`` of a user Function's node ``ctx`` in the graph (if it can carry a
    gradient)."""
    if not isinstance(o, TensorBase):
        return o
    if _marked(o, ctx._non_differentiable) or o._data.dtype.kind not in _FLOAT_OR_COMPLEX:
        return o
    if ctx._dirty is not None and _marked(o, ctx._dirty):
        o._rebase(ctx, nr)  # modified in place: the same tensor, with this gate as its history
        o._bump_version()  # (torch counts the marking as a change too)
        return o
    if _marked(o, args):
        o = o.view_as(o) if o._data.ndim else wrap(o._data)  # an input returned as it is
    o._grad_fn, o._nr, o._requires_grad = ctx, nr, True
    return o


def _marked(o, objects):
    for m in objects:
        if m is o:
            return True
    return False


def _note_saved(ctx, args, values, outs):
    """Per saved value, where it came from: its input index, -1 (output 0), ("out", k), or None;
    and (its version counter, version, -1 - its input index) of every input tensor whose value
    was saved (the tensor itself if it is a view: the error message says of what), so the node
    holds no input Tensor. True if the gate saved one of its outputs (watched once they are
    Tensors)."""
    saved = ctx._saved
    if len(saved) == 1:
        sources = (_source(saved[0], values, outs),)
    elif len(saved) == 2:
        sources = (_source(saved[0], values, outs), _source(saved[1], values, outs))
    else:
        sources = tuple([_source(s, values, outs) for s in saved])
    sources = _sources_seen.setdefault(sources, sources)  # shared, as _one_output's tuples
    versions = None
    saved_out = False
    for src in sources:
        if type(src) is int:
            i = src
            if i >= 0:
                if isinstance(args[i], TensorBase):
                    t = args[i]
                    holder = version_counter(t)
                    what = -1 - i if t._base is None else t
                    versions = ((holder, holder._vc, what) if versions is None
                                else (versions[0], versions[1], versions[2], holder, holder._vc,
                                      what)
                                if len(versions) == 3 else versions + (holder, holder._vc, what))
            else:
                saved_out = True
        elif src is not None:
            saved_out = True
    ctx._saved_from = sources
    ctx._versions = versions
    return saved_out


def _source(s, values, outs):
    for i in range(len(values)):
        if values[i] is s:
            return i
    for k in range(len(outs)):
        if outs[k] is s:
            return -1 if k == 0 else ("out", k)
    return None


def _note_output_versions(ctx, wrapped) -> None:
    """The gate saved an output: watch that tensor's version through its counter (the tensor
    holds the gate, so the gate must not hold the tensor)."""
    for src in ctx._saved_from:
        if src is None or (type(src) is int and src >= 0):
            continue
        nr = 0 if src == -1 else src[1]
        t = wrapped[nr]
        holder = version_counter(t)
        entry = (holder, holder._vc, nr)
        ctx._versions = entry if ctx._versions is None else ctx._versions + entry


def _note_user_versions(ctx, outs) -> None:
    """A user Function saves Tensors: remember each one's version (outputs included)."""
    saved = ctx._saved
    if not saved:
        return
    versions = []
    for s in saved:
        if isinstance(s, TensorBase):
            holder = s._version_holder()
            nr = next((k for k, o in enumerate(outs) if o is s), None)  # an output: torch
            versions += [holder, holder._vc, s if nr is None else nr]  # names this gate
    ctx._versions = tuple(versions) or None


def check_saved_versions(node) -> None:
    """Raise torch's error if a tensor that ``node`` saved was modified in place since."""
    versions = node._versions
    for k in range(0, len(versions), 3):
        holder = versions[k]
        if holder._rebased == 1 and type(versions[k + 2]) is int and versions[k + 2] < 0:
            raise RuntimeError(  # a saved input that detach_() took out of the graph (REBASED[1])
                "Trying to use a saved tensor that has been detached in-place, i.e. with "
                ".detach_().This is not supported, please use out-of-place `.detach()` instead")
        if holder._vc != versions[k + 1]:
            raise RuntimeError(_version_error(node, holder._vc, versions[k + 1], versions[k + 2]))


def _counter_of_input(node, i: int):
    versions = node._versions
    return next(versions[k] for k in range(0, len(versions), 3)
                if type(versions[k + 2]) is int and versions[k + 2] == -1 - i)


def _saved_input(node, i: int):
    """The tensor whose value ``node`` saved as input ``i`` (the one tensor, not a view, that
    shares the counter the node holds and requires grad as the input did), else ``-1 - i``.
    Only for an error message: the graph holds no input tensor, so this searches the
    collector's objects for it."""
    import gc

    counter = _counter_of_input(node, i)
    edge = node._edges[i]
    found = [o for o in gc.get_referrers(counter) if isinstance(o, TensorBase)
             and o._vholder is counter and o._base is None
             and bool(o._requires_grad) == (edge is not None)]
    return found[0] if len(found) == 1 else -1 - i


def _version_error(node, now: int, version: int, what) -> str:
    """torch's message for a saved tensor (``what``: the tensor, output number ``what`` of
    ``node``, or its input number ``-1 - what``) found at version ``now`` instead of ``version``."""
    import re

    def short(fn) -> str:  # torch names the node without "Backward0" ("AsStridedBackward1":
        name = fn if type(fn) is str else fn.name()  # "AsStrided1")
        return re.sub(r"Backward0?$", "", name).replace("Backward", "")

    if type(what) is int and what < 0:  # input i: the tensor if it is still there (torch names
        what = _saved_input(node, -1 - what)  # its present shape and gate), else its number
    if type(what) is int and what >= 0:
        shape, np_dtype = node._outs[what]
        where = f", which is output {what} of {short(node)},"
    elif type(what) is int:  # input i, gone: its saved array; the gate it was last output of
        i = -1 - what
        value = next(v for v, src in zip(node._saved, node._saved_from) if src == i)
        shape, np_dtype = value.shape, value.dtype
        rebased = REBASED[_counter_of_input(node, i)._rebased]
        edge = node._edges[i]
        made_by = (rebased if rebased is not None else edge if type(edge) is tuple
                   else (edge, 0) if isinstance(edge, Function) else ())
        where = f", which is output {made_by[1]} of {short(made_by[0])}," if made_by else ""
    else:
        shape, np_dtype = what._data.shape, what._data.dtype
        base = what._base
        if base is not None and base._requires_grad:
            step = what._view[-1]
            if step[0].multi_view:
                return (f"Output {step[2]} of {step[0].__name__} is a view and its base or another "
                        "view of its base has been modified inplace. This view is the output of "
                        "a function that returns multiple views. Such functions do not allow the "
                        "output views to be modified inplace. You should replace the inplace "
                        "operation by an out-of-place one.")
            where = ", which is output 0 of AsStrided,"  # torch rebuilds such a view so
        elif what._grad_fn is not None:
            where = f", which is output {what._nr} of {short(what._grad_fn)},"
        else:
            where = ""
    dtype = scalar_type_name(np_dtype) + "Tensor"
    return ("one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [chainrule.{dtype} {list(shape)}]{where} is at version {now}; "
            f"expected version {version} instead. Hint: enable anomaly detection to find the "
            "operation that failed to compute its gradient, with "
            "chainrule.autograd.set_detect_anomaly(True, check_nan=False).")


def _mark_views(args, outs, tensors, cls):
    """The outputs of a view gate that share input 0's memory become views of its base."""
    source = args[0]
    if not isinstance(source, TensorBase):
        return
    memory = source._data
    for nr, (o, t) in enumerate(zip(outs, tensors)):
        if _shares_memory(o, memory):
            t._make_view_of(source, cls, args[1:], nr)


def _shares_memory(a, b):
    if isinstance(a, np.generic) or isinstance(b, np.generic):
        return False  # NumPy scalars are copies
    if type(a) is _ndarray and type(b) is _ndarray:
        return np.may_share_memory(a, b)
    return True  # CuPy arrays from a view gate are views


# ---- nodes and the cyclic garbage collector ---------------------------------------------------
# Compiled, a built-in op's node leaves Python's cyclic collector when it is recorded, with the
# edges and versions tuples only it holds: a graph is acyclic by construction (a node holds older
# objects only: parent nodes, leaf inputs, raw saved arrays, watched tensors), so reference counting
# frees it, and the collector need not visit tens of thousands of nodes per training step. Two
# rules keep every cycle through a node collectable:
# - the nodes out of the collector are closed under "parent of": a node that stays in (a user
#   Function's, one recorded under a mode, one whose parent or leaf input is in, ...) puts its
#   ancestors back (_keep_parents), so its children stay in too;
# - where an older object starts to hold a newer one (hooks, a create_graph .grad, an in-place
#   op's new history, a node's metadata), the library calls keep_in_collector, which puts back
#   every node the newer object leads to (stopping at nodes already in: their ancestors are).
# See docs/internals.md, "Nodes and the garbage collector".

def _acyclic(ctx) -> bool:
    """May ``ctx`` leave the collector? Its parent nodes are out, its leaf inputs carry no hooks
    (whose closures may be given newer tensors) and its saved values are plain data."""
    for e in ctx._edges:
        if e is None:
            continue
        if type(e) is tuple:
            e = e[0]
        if isinstance(e, Function):
            if PyObject_GC_IsTracked(e):  # noqa: F821 (function.pxd: the C API)
                return False
        else:  # a leaf
            t = e
            if t._hooks is not None or t._post_hooks is not None:
                return False
    saved = ctx._saved
    if saved:
        for s in saved:
            if PyObject_GC_IsTracked(s):  # noqa: F821 (arrays and numbers are not)
                return False
    return True


def _leave_collector(ctx) -> None:
    """Take ``ctx`` and the containers only it holds out of the cyclic collector (compiled only:
    function.pxd declares the C API)."""
    PyObject_GC_UnTrack(ctx)  # noqa: F821
    edges = ctx._edges
    PyObject_GC_UnTrack(edges)  # noqa: F821
    for e in edges:
        if type(e) is tuple:
            PyObject_GC_UnTrack(e)  # noqa: F821
    versions = ctx._versions
    if versions is not None:
        PyObject_GC_UnTrack(versions)  # noqa: F821
    if ctx._saved:
        PyObject_GC_UnTrack(ctx._saved)  # noqa: F821 (plain data only: see _acyclic)


def _rejoin_collector(node) -> None:
    """Put ``node`` and its containers back into the cyclic collector."""
    PyObject_GC_Track(node)  # noqa: F821
    edges = node._edges
    if not PyObject_GC_IsTracked(edges):  # noqa: F821
        PyObject_GC_Track(edges)  # noqa: F821
    for e in edges:
        if type(e) is tuple and not PyObject_GC_IsTracked(e):  # noqa: F821
            PyObject_GC_Track(e)  # noqa: F821
    versions = node._versions
    if versions is not None and not PyObject_GC_IsTracked(versions):  # noqa: F821
        PyObject_GC_Track(versions)  # noqa: F821


def _keep_parents(ctx) -> None:
    """``ctx`` stays in the collector: so do its ancestors."""
    for e in ctx._edges:
        if e is not None:
            parent = e[0] if type(e) is tuple else e
            if isinstance(parent, Function) and not PyObject_GC_IsTracked(parent):  # noqa: F821
                keep_in_collector(parent)


def keep_in_collector(*objects) -> None:
    """Put back into the cyclic collector every node reachable from ``objects``: Tensors (their
    history), nodes, functions (the values their closure holds, a bound method's object) and
    lists, tuples and dicts of these, two containers deep. Called where an older object starts to
    hold a newer one, which may close a cycle through the graph. A no-op where nothing left the
    collector (the pure-Python engine)."""
    if not _COMPILED:
        return
    todo = []
    for o in objects:
        _nodes_of(o, todo, 2)
    while todo:
        node = todo.pop()
        if PyObject_GC_IsTracked(node):  # noqa: F821 (in, and so are its ancestors)
            continue
        _rejoin_collector(node)
        for e in node._edges:
            if e is not None:
                parent = e[0] if type(e) is tuple else e
                if isinstance(parent, Function):
                    todo.append(parent)


class _Metadata(dict):
    """A node's ``metadata``: what is stored there rejoins the collector with its history."""

    def __setitem__(self, key, value) -> None:
        keep_in_collector(value)
        dict.__setitem__(self, key, value)


def _nodes_of(o, todo: list, depth: int) -> None:
    """The graph nodes ``o`` leads to, followed ``depth`` containers deep."""
    if isinstance(o, TensorBase):
        t = o
        if t._grad_fn is not None:
            todo.append(t._grad_fn)
        if t._base is not None:
            _nodes_of(t._base, todo, depth)
    elif isinstance(o, Function):
        todo.append(o)
    elif depth:
        closure = getattr(o, "__closure__", None)
        if closure:
            for cell in closure:
                try:
                    _nodes_of(cell.cell_contents, todo, depth - 1)
                except ValueError:  # an empty cell
                    pass
        bound = getattr(o, "__self__", None)
        if bound is not None and not isinstance(o, type):
            _nodes_of(bound, todo, depth - 1)
        if type(o) in (list, tuple):
            for item in o:
                _nodes_of(item, todo, depth - 1)
        elif type(o) is dict:
            for item in o.values():
                _nodes_of(item, todo, depth - 1)


def _note_extras(ctx, outs, values, kwargs) -> None:
    """Anomaly checks, creation sites, module scopes and recorded inputs: only when a mode asks
    for them."""
    switches = current()
    if switches._anomaly:
        check_forward(ctx, outs, values)
    if switches._record_inputs:  # check_gates re-runs the gate on copies of these
        ctx.inputs, ctx.kwargs = tuple(values), kwargs
    if switches._scopes:
        ctx.scope = switches._scopes
    if switches._record_sites:
        ctx.site = caller_site()


class Op(Function):
    """A built-in gate: the same contract as :class:`Function`, computing on raw arrays.

    ``forward(ctx, *arrays)`` returns an array or a tuple of arrays; ``backward(ctx, *grads)``
    is written with operators and :mod:`chainrule.ops.either` only, so one text runs on raw
    arrays in a plain backward and on Tensors under ``create_graph=True`` (higher-order
    gradients for free). Saved values are inputs, outputs and constants (masks, indices),
    which lets the engine rebuild them as graph-connected Tensors. ``is_view = True`` marks a
    gate whose output is a view of its first input (transpose, indexing, ...).
    """

    __slots__ = ()
    on_arrays = True


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

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        switches = current()
        prev = switches.grad_enabled
        switches.grad_enabled = False
        try:
            out = fn(ctx, *grads)
        finally:
            switches.grad_enabled = prev
        if not (prev and any(isinstance(g, Tensor) and g._requires_grad for g in grads)):
            return out
        # as in PyTorch: the result stays in the graph, but differentiating it again raises
        outs = out if isinstance(out, tuple) else (out,)
        marked = tuple(
            DelayedError.apply(o.detach().requires_grad_()) if isinstance(o, Tensor) else o
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
