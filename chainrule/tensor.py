"""Tensor: an array plus the bookkeeping the backward pass needs (the math is in chainrule.ops)."""

from __future__ import annotations

import builtins
import warnings
import weakref
from typing import Any

import numpy as np

from chainrule import backend
from chainrule import dtypes as _dt
from chainrule._state import state

__all__ = ["Tensor", "Size", "wrap", "tensor_data"]

_NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead."
)
_TYPE_NAMES = {  # Tensor.type() names, as torch's
    "float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
    "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor",
    "uint8": "ByteTensor", "bool": "BoolTensor",
}
_LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."


class Size(tuple):
    """A tensor's shape: a tuple that prints like ``torch.Size``."""

    def __repr__(self) -> str:
        return f"chainrule.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class Tensor:
    """An n-dimensional array that can record the ops applied to it and backpropagate."""

    __slots__ = ("_data", "_grad_fn", "_nr", "_requires_grad", "_grad", "_hooks", "__weakref__",
                 "__dict__")
    __array_ufunc__ = None  # `ndarray op Tensor` defers to the Tensor's reflected operator
    __array_priority__ = 1000

    def __init__(self, data: Any = None, *sizes: int, dtype=None,
                 requires_grad: bool = False) -> None:
        """``Tensor(data)`` copies data as the default float dtype; ``Tensor(2, 3)`` is a 2×3
        tensor of zeros (uninitialised in PyTorch)."""
        from chainrule.creation import _to_array

        if dtype is None and not isinstance(data, Tensor):
            dtype = _dt.get_default_dtype()
        if sizes or (isinstance(data, builtins.int) and not isinstance(data, builtins.bool)):
            data = np.zeros((data, *sizes), _dt.to_numpy_dtype(dtype or _dt.get_default_dtype()))
        init_leaf(self, _to_array([] if data is None else data, dtype, None))
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
    def device(self) -> backend.device:
        return backend.device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad(self):
        if self._grad is None and self._grad_fn is not None and not self.retains_grad:
            warnings.warn(_NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {value!r}")
            if value._data.shape != self._data.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: {tuple(value.shape)} "
                    f"vs the tensor's {tuple(self.shape)}"
                )
            if value._data.dtype != self._data.dtype:
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype {value.dtype} to a tensor with "
                    f"dtype {self.dtype}. The gradient must match the tensor's dtype."
                )
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        fn = self._grad_fn
        return fn is not None and bool(fn._retained) and self._nr in fn._retained and (
            fn._retained[self._nr]() is self
        )

    @property
    def data(self) -> Tensor:
        return wrap(self._data)

    @data.setter
    def data(self, value) -> None:
        self._data = value._data if isinstance(value, Tensor) else np.asarray(value)

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

    def size(self, dim: int | None = None):
        if dim is None:
            return Size(self._data.shape)
        from chainrule.ops.shape import normalize_dim

        return self._data.shape[normalize_dim(dim, self._data.ndim, "size")]

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return True

    def contiguous(self) -> Tensor:
        return self

    # ---- conversion ----------------------------------------------------------------------------
    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        if not backend.is_cpu_array(self._data):
            raise TypeError(
                "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                "tensor to host memory first."
            )
        data = self._data
        if not isinstance(data, np.ndarray):
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
        return backend.to_device(self._data, "cpu").tolist()

    def __float__(self) -> float:
        return builtins.float(self.item())

    def __int__(self) -> int:
        return builtins.int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with more than one value is ambiguous"
                f" (shape {tuple(self._data.shape)})"
            )
        return builtins.bool(self._data.item())

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

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        from chainrule.printing import tensor_repr

        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0 and spec:
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

    # ---- autograd --------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._grad_fn is not None and not requires_grad:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(
                "only Tensors of floating point dtype can require gradients "
                f"(got {self.dtype})"
            )
        if self._grad_fn is None:
            self._requires_grad = builtins.bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        return wrap(self._data)

    def detach_(self) -> Tensor:
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
        return _RemovableHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` once a backward pass has accumulated this leaf's ``.grad`` (as
        soon as its last consumer has run, while the rest of the backward goes on)."""
        from chainrule.autograd.engine import post_accumulate_leaves

        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors"
            )
        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", [])
        hooks.append(hook)
        post_accumulate_leaves[id(self)] = self
        return _RemovableHandle(hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Backpropagate from this tensor, accumulating into ``.grad`` of the leaves."""
        from chainrule.autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ---- in place (data only; refused where it would corrupt the graph) -------------------------
    def _check_inplace(self) -> None:
        if self._requires_grad and state.grad_enabled:
            if self._grad_fn is None:
                raise RuntimeError(_LEAF_INPLACE)
            raise RuntimeError(
                "in-place operations on tensors that are part of a recorded graph are not "
                "supported by chainrule; use the out-of-place op (e.g. x = x + y)"
            )
        if not isinstance(self._data, (np.ndarray,)) and backend.is_cpu_array(self._data):
            self._data = np.asarray(self._data).copy()

    def _set_inplace(self, value) -> Tensor:
        self._check_inplace()
        value = value._data if isinstance(value, Tensor) else value
        if self._data.shape == ():
            self._data = backend.xp_of(self._data).asarray(value, dtype=self._data.dtype).copy()
        else:
            self._data[...] = value
        return self

    def __setitem__(self, key, value) -> None:
        from chainrule.ops.index import normalize_index

        self._check_inplace()
        if isinstance(value, Tensor) and value._requires_grad and state.grad_enabled:
            raise RuntimeError(
                "__setitem__: assigning a tensor that requires grad would silently drop its "
                "gradient (chainrule does not record in-place ops); build the result out of place "
                "(cr.where, cr.cat, masked_fill) or assign value.detach()"
            )
        value = value._data if isinstance(value, Tensor) else value
        if backend.is_array(value) and backend.device_of(value) != self.device:
            value = backend.to_device(value, self.device)
        try:
            self._data[normalize_index(key, self._data)] = value
        except (ValueError, IndexError) as e:
            shape = tuple(self._data.shape)
            kind = IndexError if isinstance(e, IndexError) else RuntimeError  # torch's types
            raise kind(f"__setitem__ on a tensor of shape {shape}: {e}") from None

    def zero_(self) -> Tensor:
        return self._set_inplace(0)

    def fill_(self, value) -> Tensor:
        return self._set_inplace(value)

    def copy_(self, src) -> Tensor:
        src = src._data if isinstance(src, Tensor) else src
        return self._set_inplace(backend.to_device(src, self.device).astype(self._data.dtype))

    def uniform_(self, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
        from chainrule.creation import _random

        return self._set_inplace(_random("uniform", self._data.shape, self._data.dtype,
                                         self.device, generator, a, b))

    def normal_(self, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
        from chainrule.creation import _random

        return self._set_inplace(_random("normal", self._data.shape, self._data.dtype,
                                         self.device, generator, mean, std))

    def add_(self, other, *, alpha=1) -> Tensor:
        other = other._data if isinstance(other, Tensor) else other
        return self._set_inplace(self._data + (other if alpha == 1 else alpha * other))

    def sub_(self, other, *, alpha=1) -> Tensor:
        other = other._data if isinstance(other, Tensor) else other
        return self._set_inplace(self._data - (other if alpha == 1 else alpha * other))

    def mul_(self, other) -> Tensor:
        return self._set_inplace(self._data * (other._data if isinstance(other, Tensor) else other))

    def div_(self, other) -> Tensor:
        return self._set_inplace(self._data / (other._data if isinstance(other, Tensor) else other))

    def clamp_(self, min=None, max=None) -> Tensor:
        return self._set_inplace(np.clip(self._data, min, max))

    def masked_fill_(self, mask, value) -> Tensor:
        mask = mask._data if isinstance(mask, Tensor) else mask
        return self._set_inplace(np.where(mask, value, self._data))

    def __iadd__(self, other):
        return self._inplace_or_new(other, "__add__", "add_")

    def __isub__(self, other):
        return self._inplace_or_new(other, "__sub__", "sub_")

    def __imul__(self, other):
        return self._inplace_or_new(other, "__mul__", "mul_")

    def __itruediv__(self, other):
        return self._inplace_or_new(other, "__truediv__", "div_")

    def _inplace_or_new(self, other, op: str, inplace: str):
        """``x += y``: in place when no graph is involved, else recorded out of place."""
        other_grad = isinstance(other, Tensor) and other._requires_grad
        if state.grad_enabled and (self._grad_fn is not None or other_grad):
            return getattr(self, op)(other)
        return getattr(self, inplace)(other)

    # ---- device / dtype --------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> Tensor:
        from chainrule.ops.elementwise import cast

        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, backend.device)) and not (
                isinstance(a, str) and a in _dt._BY_NAME
            ):
                device = a
            elif a is not None:
                dtype = a
        out = self
        if dtype is not None:
            d = _dt.to_dtype(dtype)
            if d.np != self._data.dtype:
                out = cast(out, d.np)
        if device is not None:
            from chainrule.ops.elementwise import move

            dev = backend.as_device(device)
            if dev != out.device:
                out = move(out, dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None) -> Tensor:
        return self.to(backend.device("cuda", device if isinstance(device, int) else 0))

    def float(self) -> Tensor:
        return self.to(_dt.float32)

    def double(self) -> Tensor:
        return self.to(_dt.float64)

    def half(self) -> Tensor:
        return self.to(_dt.float16)

    def long(self) -> Tensor:
        return self.to(_dt.int64)

    def int(self) -> Tensor:
        return self.to(_dt.int32)

    def bool(self) -> Tensor:
        return self.to(_dt.bool)

    def type(self, dtype=None):
        if dtype is None:
            return f"chainrule.{_TYPE_NAMES.get(self.dtype.name, 'Tensor')}"
        return self.to(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def new_tensor(self, data, dtype=None, requires_grad=False) -> Tensor:
        from chainrule.creation import tensor

        return tensor(data, dtype=dtype or self.dtype, device=self.device,
                      requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None) -> Tensor:
        from chainrule.creation import zeros

        return zeros(*size, dtype=dtype or self.dtype, device=self.device)

    def new_ones(self, *size, dtype=None) -> Tensor:
        from chainrule.creation import ones

        return ones(*size, dtype=dtype or self.dtype, device=self.device)

    def new_full(self, size, fill_value, dtype=None) -> Tensor:
        from chainrule.creation import full

        return full(size, fill_value, dtype=dtype or self.dtype, device=self.device)

    def new_empty(self, *size, dtype=None) -> Tensor:
        return self.new_zeros(*size, dtype=dtype)


def init_leaf(t: Tensor, data) -> None:
    """Fill a new (sub)class instance's slots as a leaf around ``data``; ``wrap`` below is the
    same for plain Tensors, kept separate because it runs once per op."""
    t._data = data
    t._grad_fn = None
    t._nr = 0
    t._requires_grad = False
    t._grad = None
    t._hooks = None


_new = object.__new__


def wrap(data, fn=None, nr: int = 0) -> Tensor:
    """A Tensor around ``data`` (no copy); with ``fn``, it is output ``nr`` of that graph node."""
    t = _new(Tensor)
    t._data = data
    t._grad_fn = fn
    t._nr = nr
    t._requires_grad = fn is not None
    t._grad = None
    t._hooks = None
    return t


def tensor_data(x):
    """The raw array of a Tensor, or ``x`` itself."""
    return x._data if isinstance(x, Tensor) else x



class _RemovableHandle:
    def __init__(self, hooks: list, hook) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

