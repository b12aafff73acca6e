"""Tensor: an array plus the bookkeeping the backward pass needs (the math is in chainrule.ops).

``TensorBase`` holds what the engine reads on every op — the array, the gate that made it
(``grad_fn``), ``requires_grad``, ``.grad``, hooks, the version counter and, for views, the base
they share memory with — and is compiled to a C type where a compiler is present
(``tensor.pxd``). ``Tensor`` adds the array API: attributes, conversions, operators and methods.
"""

from __future__ import annotations

import builtins
import threading
import warnings
import weakref
from typing import Any

from chainrule import devices
from chainrule import dtypes as _dt
from chainrule._state import current
from chainrule.devices import np

__all__ = ["Tensor", "TensorBase", "Size", "wrap", "tensor_data", "bind"]

_NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead."
)
_FLOAT_OR_COMPLEX = _dt.FLOAT_KINDS + "c"
_CALLER = 2 if __file__.endswith(".py") else 1  # warnings' stacklevel (compiled: no frame here)


class Size(tuple):
    """A tensor's shape: a tuple that prints like ``torch.Size``."""

    def __repr__(self) -> str:
        return f"{_dt.shown_prefix()}.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class TensorBase:
    """The bookkeeping of a tensor: its array and its place in the graph.

    A leaf has no ``grad_fn``; a tensor computed from tensors that require grad has the gate
    (graph node) that produced it, and ``_nr`` says which of the gate's outputs it is. Every
    in-place change bumps a version counter (``_version``), shared by a tensor and its views,
    so that a gate that saved the old value can refuse to backpropagate with a stale one.
    """

    __slots__ = ("_data", "_grad_fn", "_nr", "_requires_grad", "_grad", "_hooks",
                 "_post_hooks", "_vc", "_vholder", "_base", "_view", "_view_src", "__dict__",
                 "__weakref__")
    # _vc: the version count while no one shares it; _vholder: the VersionCounter this tensor
    # shares with its views and with the gates that saved it, made on first need
    # _base: for a view, the tensor whose memory it shares; _view: the steps it was taken from
    # _base by; _view_src: _base's grad_fn when this view's own grad_fn was made from it

    # ---- the autograd state ---------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        if self._requires_grad:
            return True
        base = self._base  # a view of a base that requires grad (made in no_grad mode too, as
        return base is not None and base._requires_grad  # torch's: see edge)

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    @property
    def grad_fn(self):
        if self._base is not None:
            self.edge()  # a view's history follows its base's (see _refresh_view)
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad(self):
        if self._grad is None and self._grad_fn is not None and not self.retains_grad:
            warnings.warn(_NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=_CALLER)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, TensorBase):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {value!r}")
            if value._data.shape != self._data.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: {tuple(value._data.shape)} "
                    f"vs the tensor's {tuple(self._data.shape)}"
                )
            if value._data.dtype != self._data.dtype:
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype {value.dtype} to a tensor with "
                    f"dtype {self.dtype}. The gradient must match the tensor's dtype."
                )
        self._grad = value
        if value is not None and value._grad_fn is not None:
            _late.autograd.function.keep_in_collector(value)  # may lead back here: a cycle

    @grad.deleter
    def grad(self) -> None:
        self._grad = None

    @property
    def retains_grad(self) -> bool:
        fn = self._grad_fn
        return fn is not None and bool(fn._retained) and self._nr in fn._retained and (
            fn._retained[self._nr]() is self
        )

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (shared with its views)."""
        holder = self._vholder
        return self._vc if holder is None else holder._vc

    def _version_holder(self) -> VersionCounter:
        return version_counter(self)

    def _bump_version(self) -> None:
        holder = self._vholder
        if holder is None:
            self._vc += 1
        else:
            holder._vc += 1

    @property
    def _is_view(self) -> bool:
        return self._base is not None

    def edge(self):
        """This tensor's place in the graph, as gates record it for their inputs: the leaf
        itself, its gate (output 0) or (gate, output number); None if it needs no gradient."""
        if self._base is not None and self._base._grad_fn is not self._view_src:
            self._refresh_view()
        if not self._requires_grad:
            base = self._base
            if base is not None and base._requires_grad:
                # a view made in no_grad mode (or before its base required grad): as torch's,
                # ops on it are recorded but its gradient reaches nothing (an unseen leaf)
                unreached = wrap(self._data)
                unreached._requires_grad = True
                return unreached
            return None
        fn = self._grad_fn
        if fn is None:
            return self
        return fn if self._nr == 0 else (fn, self._nr)

    def requires_grad_(self, requires_grad: bool = True) -> TensorBase:
        if self._grad_fn is not None and not requires_grad:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if requires_grad and self._data.dtype.kind not in _FLOAT_OR_COMPLEX:
            raise RuntimeError(
                "only Tensors of floating point and complex dtype can require gradients "
                f"(got {self.dtype})"
            )
        if self._grad_fn is None:
            self._requires_grad = builtins.bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        """The same memory and version counter, outside the graph."""
        t = wrap(self._data)
        t._vholder = self._version_holder()
        return t

    def detach_(self) -> TensorBase:
        if self._base is not None:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead. If you are using "
                "DistributedDataParallel (DDP) for training, and gradient_as_bucket_view is set "
                "as True, gradients are views of DDP buckets, and hence detach_() cannot be "
                "called on these gradients. To fix this error, please refer to the "
                "Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution."
            )
        if self._vholder is not None and self._grad_fn is not None:  # saved: torch refuses it
            self._vholder._rebased = rebased_number(None, 0)
        self._grad_fn, self._nr, self._requires_grad = None, 0, False
        return self

    def retain_grad(self) -> None:
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        fn = self._grad_fn
        if fn is None:
            return
        if fn._retained is None:
            fn._retained = {}
        fn._retained[self._nr] = weakref.ref(self)
        if fn._hooks is None:  # the engine looks at _hooks only: make sure it stops here
            fn._hooks = {}
        fn._hooks.setdefault(self._nr, [])

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        fn = self._grad_fn
        if fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if fn._hooks is None:
                fn._hooks = {}
            hooks = fn._hooks.setdefault(self._nr, [])
        hooks.append(hook)
        # the hook may hold newer tensors than this one (a cycle the collector must see)
        _late.autograd.function.keep_in_collector(hook, fn)
        return RemovableHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` once a backward pass has accumulated this leaf's ``.grad`` (as
        soon as its last consumer has run, while the rest of the backward goes on)."""
        if self._grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        post_hooked_leaves[id(self)] = self
        _late.autograd.function.keep_in_collector(hook)  # (as register_hook)
        return RemovableHandle(self._post_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Backpropagate from this tensor, accumulating into ``.grad`` of the leaves."""
        _late.autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ---- history changes made by in-place ops and views (chainrule.autograd.inplace) -------------
    def _rebase(self, fn, nr: int = 0) -> None:
        """After an in-place op: the same tensor, now output ``nr`` of gate ``fn``."""
        self._grad_fn, self._nr, self._requires_grad = fn, nr, fn is not None
        if self._vholder is not None and self._base is None:  # the name a saved-tensor error uses
            self._vholder._rebased = rebased_number(fn, nr)
        if fn is not None:  # older nodes that saved this tensor now lead to fn: maybe a cycle
            _late.autograd.function.keep_in_collector(fn)

    def _make_view_of(self, source: TensorBase, cls, args: tuple, nr: int) -> None:
        """This tensor, output ``nr`` of view gate ``cls`` applied to ``source`` with ``args``,
        shares ``source``'s memory (and version counter) as torch's views do."""
        base = source if source._base is None else source._base
        self._base = base
        self._vholder = source._version_holder()
        self._view_src = base._grad_fn
        step = (cls, args, nr, current().grad_enabled)
        self._view = (step,) if source._base is None else source._view + (step,)

    def _refresh_view(self) -> None:
        """The base was changed in place (it has a new history): this view's history is the
        view steps replayed on the base's new one (chainrule.autograd.inplace.refresh_view)."""
        _late.inplace.refresh_view(self)


def storage_of(t):
    """The flat memory ``t``'s array lies in, where as_strided_, resize_ or set_ gave it a layout
    over a larger one (``t._storage``); None otherwise, or once ``t`` holds other memory."""
    mem = getattr(t, "_storage", None)
    if mem is None:
        return None
    start = devices.data_address(t._data) - devices.data_address(mem)
    if 0 <= start <= mem.nbytes and devices.device_of(mem) == devices.device_of(t._data):
        return mem
    return None


class VersionCounter:
    """A tensor's in-place version count once it is shared: by its views and detached aliases,
    and by the gates that saved it (which hold this counter, not the tensor: the graph keeps no
    Python object of its tensors alive, nor in the cyclic collector, for the version check).
    ``_rebased``: for that check's error message, the number in ``REBASED`` of the (gate name,
    output number) an in-place op made the tensor (not its views) output of; 0 while unchanged.
    Both fields are ints, so the counter never enters the cyclic collector."""

    __slots__ = ("_vc", "_rebased")


REBASED: list = [None, ()]  # numbered (gate name, output number) pairs; () after detach_()
_REBASED_NUMBER: dict = {(): 1}


def rebased_number(fn, nr: int) -> int:
    """``VersionCounter._rebased`` for a tensor now output ``nr`` of ``fn`` (None: of none)."""
    made_by = (fn.name(), nr) if fn is not None else ()
    n = _REBASED_NUMBER.get(made_by)
    if n is None:
        n = _REBASED_NUMBER[made_by] = len(REBASED)
        REBASED.append(made_by)
    return n


def version_counter(t: TensorBase) -> VersionCounter:
    """``t``'s shared version counter, made (from its count so far) on first need."""
    holder = t._vholder
    if holder is None:
        holder = VersionCounter()
        holder._vc = t._vc
        holder._rebased = 0
        t._vholder = holder
    return holder


def init_leaf(t: TensorBase, data) -> None:
    """Fill a new (sub)class instance as a leaf around ``data``; ``wrap`` below is the same for
    plain Tensors, kept separate because it runs once per op."""
    t._data = data
    t._grad_fn = None
    t._nr = 0
    t._requires_grad = False
    t._grad = t._hooks = t._post_hooks = t._vholder = t._base = t._view = t._view_src = None
    t._vc = 0


def wrap(data, fn=None, nr=0):
    """A Tensor around ``data`` (no copy); with ``fn``, it is output ``nr`` of that graph node."""
    t = _tensor_type.__new__(_tensor_type)  # compiled: the type slot, directly
    t._data = data
    t._grad_fn = fn
    t._nr = nr
    t._requires_grad = fn is not None
    t._grad = t._hooks = t._post_hooks = t._vholder = t._base = t._view = t._view_src = None
    t._vc = 0
    return t



def tensor_data(x):
    """The raw array of a Tensor, or ``x`` itself."""
    return x._data if isinstance(x, TensorBase) else x


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Tensor(TensorBase):
    """An n-dimensional array that can record the ops applied to it and backpropagate."""

    __array_ufunc__ = None  # `ndarray op Tensor` defers to the Tensor's reflected operator
    __array_priority__ = 1000

    def __init__(self, data: Any = None, *sizes: int, dtype=None, device=None,
                 requires_grad: bool = False) -> None:
        """``Tensor(data)`` copies data as the default float dtype; ``Tensor(2, 3)`` is a 2×3
        tensor of zeros (uninitialised in PyTorch)."""
        if dtype is None and not isinstance(data, TensorBase):
            dtype = _dt.get_default_dtype()
        if sizes or (isinstance(data, builtins.int) and not isinstance(data, builtins.bool)):
            data = np.zeros((data, *sizes), _dt.to_numpy_dtype(dtype or _dt.get_default_dtype()))
        init_leaf(self, _late.creation.to_array([] if data is None else data, dtype, None))
        if device is not None:
            self._data = devices.to_device(self._data, device)
        if requires_grad:
            self.requires_grad_(True)

    # ---- attributes ----------------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> _dt.dtype:
        return _dt.from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> devices.device:
        return devices.device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    @property
    def layout(self):
        return _dt.strided

    @property
    def is_sparse(self) -> bool:
        return False

    @property
    def is_quantized(self) -> bool:
        return False

    @property
    def is_meta(self) -> bool:
        return False

    # Devices and layouts chainrule never uses (torch's flags, so device checks in programs run).
    @property
    def is_mps(self) -> bool:
        return False

    @property
    def is_xpu(self) -> bool:
        return False

    @property
    def is_xla(self) -> bool:
        return False

    @property
    def is_mkldnn(self) -> bool:
        return False

    _name = None

    @property
    def name(self) -> str | None:
        """A name for diagrams and explanations (``chainrule.viz``); None unless given with
        ``name=`` or set. PyTorch's ``Tensor.name`` is always None and read-only."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f"name must be a str or None, got {type(value).__name__}")
        self._name = value
        fn = self._grad_fn
        if fn is not None:  # an intermediate: its gate remembers the name for its output wire
            names = fn.__dict__.setdefault("wire_names", {})
            names[self._nr] = value

    @property
    def data(self) -> Tensor:
        """The same memory outside the graph, with a version counter of its own (as torch)."""
        return wrap(self._data)

    @data.setter
    def data(self, value) -> None:
        self._data = value._data if isinstance(value, TensorBase) else np.asarray(value)

    @property
    def T(self) -> Tensor:
        return self.permute(*range(self._data.ndim - 1, -1, -1))

    @property
    def mT(self) -> Tensor:
        if self._data.ndim < 2:
            raise RuntimeError(
                f"tensor.mT is only supported on matrices or batches of matrices. Got "
                f"{self._data.ndim}-D tensor."
            )
        return self.transpose(-2, -1)

    @property
    def H(self) -> Tensor:
        return self.T

    @property
    def mH(self) -> Tensor:
        return self.mT

    @property
    def itemsize(self) -> int:
        return self._data.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_late.ops.normalize_dim(dim, self._data.ndim, "size")]

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind in _dt.FLOAT_KINDS

    def is_complex(self) -> bool:
        return self._data.dtype.kind == "c"

    def is_signed(self) -> bool:
        return self._data.dtype.kind in "fic"

    def stride(self, dim: int | None = None):
        """Steps in elements between neighbours along each dim (NumPy's strides ÷ item size)."""
        size = self._data.dtype.itemsize
        strides = tuple(s // size for s in getattr(self._data, "strides", ()))
        if dim is None:
            return strides
        return strides[_late.ops.normalize_dim(dim, self._data.ndim, "stride")]

    def storage_offset(self) -> int:
        base = self._base
        holder = self if base is None else base
        mem = storage_of(holder)
        if mem is None:
            if base is None:
                return 0
            mem = base._data
        start = devices.data_address(self._data) - devices.data_address(mem)
        return start // self._data.dtype.itemsize

    def is_set_to(self, tensor) -> bool:
        """The same memory seen the same way: start, shape, strides, dtype and device."""
        a, b = self._data, tensor._data
        if a is b:
            return True
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and getattr(a, "strides", None) == getattr(b, "strides", None)
                and devices.device_of(a) == devices.device_of(b)
                and devices.data_address(a) == devices.data_address(b) != 0)

    def data_ptr(self) -> int:
        return devices.data_address(self._data)

    def is_contiguous(self, memory_format=None) -> bool:
        d = self._data
        return d.ndim == 0 or builtins.bool(d.flags.c_contiguous)

    def contiguous(self, memory_format=None) -> Tensor:
        return self if self.is_contiguous() else self.clone()

    def get_device(self) -> int:
        return -1 if self.device.type == "cpu" else (self.device.index or 0)

    # ---- conversion ----------------------------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        if not devices.is_cpu_array(self._data):
            raise TypeError(
                "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                "tensor to host memory first."
            )
        data = self._data
        if not isinstance(data, np.ndarray):  # a NumPy scalar (0-d op results): make it an array
            data = self._data = np.asarray(data)
        return data

    def __array__(self, dtype=None, copy=None):
        a = self.numpy(force=True)  # a cuda tensor refuses, as in torch: call .cpu() first
        a = a if dtype is None else a.astype(dtype, copy=False)
        return a.copy() if copy else a

    def item(self):
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar"
            )
        return self._data.item()

    def tolist(self):
        return devices.to_device(self._data, "cpu").tolist()

    def __float__(self) -> float:
        return builtins.float(self.item())

    def __int__(self) -> int:
        return builtins.int(self.item())

    def __complex__(self) -> complex:
        return builtins.complex(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with more than one value is ambiguous"
                f" (shape {tuple(self._data.shape)})"
            )
        return builtins.bool(self._data)

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return builtins.int(self._data.item())

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __contains__(self, element) -> bool:
        return builtins.bool((self == element).any())

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return _late.printing.tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return format(self.item(), spec)
        return repr(self) if not spec else format(repr(self), spec)

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "chainrule tensors are not pickled (unpickling can run code); use cr.save / cr.load"
        )

    def __deepcopy__(self, memo):
        if self._grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment."
            )
        t = type(self).__new__(type(self))
        init_leaf(t, self._data.copy())
        t._requires_grad = self._requires_grad
        if self._grad is not None:
            t._grad = wrap(self._grad._data.copy())
        if hasattr(self, "__dict__"):
            t.__dict__.update(self.__dict__)
        memo[id(self)] = t
        return t

    # ---- operators: each is the op of the same name in chainrule.ops ---------------------------
    def __add__(self, other):
        return _late.ops.add(self, other)

    def __radd__(self, other):
        return _late.ops.add(other, self)

    def __sub__(self, other):
        return _late.ops.sub(self, other)

    def __rsub__(self, other):
        return _late.ops.sub(other, self)

    def __mul__(self, other):
        return _late.ops.mul(self, other)

    def __rmul__(self, other):
        return _late.ops.mul(other, self)

    def __truediv__(self, other):
        return _late.ops.div(self, other)

    def __rtruediv__(self, other):
        return _late.ops.div(other, self)

    def __floordiv__(self, other):
        return _late.ops.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _late.ops.floor_divide(other, self)

    def __mod__(self, other):
        return _late.ops.remainder(self, other)

    def __rmod__(self, other):
        return _late.ops.remainder(other, self)

    def __pow__(self, other):
        return _late.ops.pow(self, other)

    def __rpow__(self, other):
        return _late.ops.pow(other, self)

    def __matmul__(self, other):
        return _late.ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _late.ops.matmul(other, self)

    def __neg__(self):
        return _late.ops.neg(self)

    def __pos__(self):
        return _late.ops.positive(self)

    def __abs__(self):
        return _late.ops.abs(self)

    def __invert__(self):
        return _late.ops.bitwise_not(self)

    def __and__(self, other):
        return _late.ops.bitwise_and(self, other)

    __rand__ = __and__

    def __or__(self, other):
        return _late.ops.bitwise_or(self, other)

    __ror__ = __or__

    def __xor__(self, other):
        return _late.ops.bitwise_xor(self, other)

    __rxor__ = __xor__

    def __lshift__(self, other):
        return _late.ops.bitwise_left_shift(self, other)

    def __rshift__(self, other):
        return _late.ops.bitwise_right_shift(self, other)

    def __eq__(self, other):
        return _late.ops.eq(self, other)

    def __ne__(self, other):
        return _late.ops.ne(self, other)

    def __lt__(self, other):
        return _late.ops.lt(self, other)

    def __le__(self, other):
        return _late.ops.le(self, other)

    def __gt__(self, other):
        return _late.ops.gt(self, other)

    def __ge__(self, other):
        return _late.ops.ge(self, other)

    def __getitem__(self, key):
        return _late.ops.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        _late.inplace.setitem(self, key, value)

    # in place: `x += y` changes x (recorded in the graph when it takes part in one)
    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def __ifloordiv__(self, other):
        return self.floor_divide_(other)

    def __imod__(self, other):
        return self.remainder_(other)

    def __ipow__(self, other):
        return self.pow_(other)

    def __iand__(self, other):
        return self.bitwise_and_(other)

    def __ior__(self, other):
        return self.bitwise_or_(other)

    def __ixor__(self, other):
        return self.bitwise_xor_(other)

    # ---- methods that are ops under another name or with a tensor argument ----------------------
    def bernoulli(self, p=None, *, generator=None) -> Tensor:
        return _late.creation.bernoulli(self, p, generator=generator)

    def multinomial(self, num_samples: int, replacement: bool = False, *,
                    generator=None) -> Tensor:
        return _late.creation.multinomial(self, num_samples, replacement, generator=generator)

    def view_as(self, other: Tensor) -> Tensor:
        return self.view(other._data.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        return self.reshape(other._data.shape)

    def where(self, condition, other) -> Tensor:
        return _late.ops.where(condition, self, other)

    # ---- device / dtype --------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> Tensor:
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, TensorBase):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, builtins.int, devices.device)) and not (
                isinstance(a, str) and a in _dt._BY_NAME
            ) and not isinstance(a, builtins.bool):
                device = a
            elif a is not None and not isinstance(a, builtins.bool):
                dtype = a
        out = self
        if dtype is not None:
            d = _dt.to_dtype(dtype)
            if d.np != self._data.dtype:
                out = _late.ops.cast(out, d.np)
        if device is not None:
            dev = devices.as_device(device)
            if dev != out.device:
                out = _late.ops.move(out, dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None, non_blocking: bool = False) -> Tensor:
        return self.to(devices.cuda_device(device))  # None: the current GPU

    def float(self) -> Tensor:
        return self.to(_dt.float32)

    def double(self) -> Tensor:
        return self.to(_dt.float64)

    def half(self) -> Tensor:
        return self.to(_dt.float16)

    def bfloat16(self) -> Tensor:
        return self.to(_dt.bfloat16)

    def long(self) -> Tensor:
        return self.to(_dt.int64)

    def int(self) -> Tensor:
        return self.to(_dt.int32)

    def short(self) -> Tensor:
        return self.to(_dt.int16)

    def char(self) -> Tensor:
        return self.to(_dt.int8)

    def byte(self) -> Tensor:
        return self.to(_dt.uint8)

    def bool(self) -> Tensor:
        return self.to(_dt.bool)

    def type(self, dtype=None, non_blocking: bool = False):
        if dtype is None:
            return f"{_dt.shown_prefix()}.{_dt.scalar_type_name(self.dtype)}Tensor"
        return self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def pin_memory(self, device=None) -> Tensor:
        return self

    def is_pinned(self, device=None) -> bool:
        return False

    def share_memory_(self) -> Tensor:
        return self

    def is_shared(self) -> bool:
        return False

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _late.creation.tensor(data, dtype=dtype or self.dtype, device=device or self.device,
                                     requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _late.creation.zeros(*size, dtype=dtype or self.dtype, device=device or self.device,
                                    requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _late.creation.ones(*size, dtype=dtype or self.dtype, device=device or self.device,
                                   requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _late.creation.full(size, fill_value, dtype=dtype or self.dtype,
                                   device=device or self.device, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_empty_strided(self, size, stride, dtype=None, device=None,
                          requires_grad=False) -> Tensor:
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new(self, *args) -> Tensor:
        """Legacy: ``x.new(data)`` or ``x.new(*sizes)`` with x's dtype and device."""
        if len(args) == 1 and not isinstance(args[0], builtins.int):
            return self.new_tensor(args[0])
        return self.new_zeros(*args)

    # ---- methods that are not top-level functions -----------------------------------------------
    def unfold(self, dimension: int, size: int, step: int) -> Tensor:
        """All windows of ``size`` along ``dimension``, ``step`` apart, as a new last dim."""
        return _late.ops.tensor_unfold(self, dimension, size, step)

    def adjoint(self) -> Tensor:
        return self.mT

    def is_nonzero(self) -> bool:
        if self._data.size != 1:
            what = "no values" if self._data.size == 0 else "more than one value"
            raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
        return builtins.bool(self._data.item())

    def is_same_size(self, other: Tensor) -> bool:
        return self._data.shape == other._data.shape

    def is_inference(self) -> bool:
        return False

    @property
    def is_nested(self) -> bool:
        return False

    @property
    def output_nr(self) -> int:
        return self._nr

    def to_dense(self, dtype=None, *, masked_grad=None) -> Tensor:
        return self if dtype is None else self.to(dtype)

    def as_subclass(self, cls):
        """The same tensor (memory and graph) as an instance of subclass ``cls``."""
        t = cls.__new__(cls)
        for slot in ("_data", "_grad_fn", "_nr", "_requires_grad", "_grad", "_hooks",
                     "_post_hooks", "_vc", "_vholder", "_base", "_view", "_view_src"):
            setattr(t, slot, getattr(self, slot))
        return t

    def dim_order(self, *, ambiguity_check=False) -> tuple:
        """The dims from outermost to innermost in memory (contiguous: 0, 1, ...)."""
        strides = self.stride()
        return tuple(sorted(range(self._data.ndim), key=lambda d: -strides[d]))

    def const_data_ptr(self) -> int:
        return self.data_ptr()

    def hardshrink(self, lambd: float = 0.5) -> Tensor:
        """x where |x| > lambd, else 0 (nn.functional.hardshrink)."""
        return _late.ops.where(self.abs() > lambd, self, 0.0)

    def prelu(self, weight: Tensor) -> Tensor:
        """x where x ≥ 0, else weight·x, weight per channel (dim 1) (nn.functional.prelu)."""
        w = weight
        if weight._data.size != 1 and self._data.ndim > 1:
            w = weight.reshape((-1,) + (1,) * (self._data.ndim - 2))
        return _late.ops.where(self >= 0, self, w * self)


# ---- methods that are the op of the same name (Tensor.exp is chainrule.ops.exp) -----------------
OP_METHODS = """
exp exp2 expm1 log log2 log10 log1p sqrt rsqrt abs absolute neg negative sign sin cos tan sinh
cosh asin acos atan tanh sigmoid relu softplus clamp clip reciprocal floor ceil round trunc frac
square erf logit clone isnan isinf isfinite logical_not positive
add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow float_power
maximum minimum masked_fill eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and
bitwise_or bitwise_xor bitwise_not equal allclose isclose atan2 xlogy
sum mean var std prod max min amax amin argmax argmin cumsum cumprod logsumexp softmax
log_softmax norm all any count_nonzero
reshape view flatten unflatten transpose swapaxes swapdims permute movedim squeeze unsqueeze
expand expand_as broadcast_to repeat tile flip fliplr flipud roll split chunk unbind narrow
tril triu diag diagonal ravel t select
gather scatter_add scatter index_select take_along_dim take nonzero masked_select argwhere
matmul mm bmm mv dot vdot inner outer ger
""".split()
OP_METHODS += """
acosh asinh atanh arccos arccosh arcsin arcsinh arctan arctan2 arctanh deg2rad rad2deg sgn fix
signbit isneginf isposinf isreal real imag conj resolve_conj resolve_neg is_conj is_neg angle
frexp nan_to_num clamp_min clamp_max copysign hypot logaddexp logaddexp2 fmax fmin gcd lcm ldexp
nextafter heaviside lerp addcmul addcdiv greater greater_equal less less_equal not_equal
bitwise_left_shift bitwise_right_shift
lgamma digamma polygamma erfinv erfc mvlgamma i0 sinc igamma igammac
sort argsort msort topk kthvalue median nanmedian mode quantile nanquantile cummax cummin unique
unique_consecutive bincount histc histogram
nansum nanmean aminmax logcumsumexp trace diff cov corrcoef renorm dist sum_to_size
moveaxis tensor_split hsplit vsplit dsplit split_with_sizes unsafe_split unsafe_chunk
unsafe_split_with_sizes rot90 diag_embed diagflat select repeat_interleave select_scatter
slice_scatter diagonal_scatter
index_add index_copy index_fill index_put masked_scatter put scatter_reduce
addmm addmv addbmm baddbmm addr inverse det slogdet logdet matrix_power matrix_exp cholesky
cholesky_solve cholesky_inverse qr svd pinverse triangular_solve lu lu_solve kron cross
index_reduce nonzero_static as_strided as_strided_scatter
""".split()
# ... and the in-place variants (Tensor.add_, ...), from chainrule.autograd.inplace
INPLACE_METHODS: list = []


# ---- the one import circle -----------------------------------------------------------------------
class _Late:
    """Tensor's methods call modules that are themselves built on Tensor: the ops, the backward
    engine, the in-place machinery, creation and printing. That is the one import circle of
    the package; it is closed once, by ``chainrule/__init__.py`` calling :func:`bind` after it
    has imported them all (``_late.ops.add`` is then ``chainrule.ops.add``)."""

    def __init__(self) -> None:
        self.ops = self.autograd = self.inplace = self.creation = self.printing = None


_late = _Late()
late = _late  # compiled, _late is a C global: this is its name for the ops' Tensor routes
_tensor_type = Tensor
# leaves with post-accumulate hooks: the engine finishes them early (see register_post_...)
post_hooked_leaves: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_bind_lock = threading.Lock()


def bind(ops, autograd, inplace, creation, printing) -> None:
    """Close the circle: give Tensor its math (see :class:`_Late`)."""
    with _bind_lock:
        _late.ops, _late.autograd, _late.inplace = ops, autograd, inplace
        _late.creation, _late.printing = creation, printing
        for name in OP_METHODS:
            setattr(Tensor, name, getattr(ops, name))
        for name in inplace.METHODS:
            setattr(Tensor, name, getattr(inplace, name))
