"""chainrule dtypes: thin named wrappers over NumPy dtypes, with PyTorch's type promotion."""

from __future__ import annotations

import builtins
import sys

import numpy as np

from chainrule import devices

__all__ = [
    "dtype", "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
    "uint8", "bool", "half", "float", "double", "long", "int", "short",
    "get_default_dtype", "set_default_dtype", "to_numpy_dtype", "from_numpy_dtype",
    "result_type", "promote_types", "FLOAT_KINDS", "is_bfloat16",
]

# NumPy dtype kinds of chainrule's floating dtypes: "f", and "V" for ml_dtypes' bfloat16 (the one
# non-native dtype chainrule admits; from_numpy_dtype refuses every other "V" dtype)
FLOAT_KINDS = "fV"



def shown_prefix() -> str:
    """The package name in reprs (``chainrule.float32``, ``chainrule.Size``): ``torch`` inside
    ``chainrule run``, where the program's ``torch`` is chainrule, so it prints what torch
    prints."""
    alias = sys.modules.get("chainrule.torch_alias")
    return "torch" if alias is not None and alias.installed() else "chainrule"


class dtype:
    """A tensor element type (``cr.float32`` ...); wraps a NumPy dtype."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_category")

    def __init__(self, name: str, np_dtype) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.is_signed = self.np.kind in "fi"
        self.itemsize = self.np.itemsize
        self._category = {"b": 0, "u": 1, "i": 1, "f": 2}[self.np.kind]

    def __repr__(self) -> str:
        return f"{shown_prefix()}.{self.name}"

    def __reduce__(self):
        return (to_dtype, (self.name,))

    def to_real(self):
        return self


float16 = half = dtype("float16", np.float16)
float32 = float = dtype("float32", np.float32)
float64 = double = dtype("float64", np.float64)
int8 = dtype("int8", np.int8)
int16 = short = dtype("int16", np.int16)
int32 = int = dtype("int32", np.int32)
int64 = long = dtype("int64", np.int64)
uint8 = dtype("uint8", np.uint8)
bool = dtype("bool", np.bool_)


class _BFloat16(dtype):
    """``cr.bfloat16``: NumPy has no bfloat16, so its array dtype comes from the optional
    ``ml_dtypes`` package, imported on first use (it costs ~0.5 s to import, chainrule does not
    pay that unless bfloat16 is used). Without ml_dtypes the name exists (programs mention it in
    defaults) and using it raises an error that says how to install it."""

    __slots__ = ()

    def __init__(self) -> None:
        self.name = "bfloat16"
        self.is_floating_point = self.is_signed = True
        self.itemsize = 2
        self._category = 2

    @property
    def np(self):
        return _bfloat16_np()


bfloat16 = _BFloat16()
_BF16_MISSING = (
    "chainrule.bfloat16 needs the ml_dtypes package (NumPy has no bfloat16): "
    "pip install 'chainrule[bfloat16]' (or pip install ml_dtypes)"
)
_bf16_np = None  # numpy.dtype(ml_dtypes.bfloat16) once imported


on_bfloat16_used: list = []  # called once bfloat16 is first used


def _bfloat16_np():
    global _bf16_np
    if _bf16_np is None:
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(_BF16_MISSING) from None
        _bf16_np = np.dtype(ml_dtypes.bfloat16)
        _BY_NP[_bf16_np] = bfloat16
        for hook in on_bfloat16_used:  # chainrule.amp: ops without NumPy bfloat16 math
            hook()
    return _bf16_np


def is_bfloat16(np_dtype) -> builtins.bool:
    """True for ml_dtypes' bfloat16 (without importing ml_dtypes when it is not loaded)."""
    return np_dtype.kind == "V" and np_dtype.name == "bfloat16"


_ALL = (float16, float32, float64, int8, int16, int32, int64, uint8, bool)
_BY_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update(half=float16, float=float32, double=float64, long=int64, int=int32, short=int16,
                bfloat16=bfloat16)

_default_float = float32


def from_numpy_dtype(np_dtype) -> dtype:
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        if is_bfloat16(np.dtype(np_dtype)):  # an ml_dtypes array met before cr.bfloat16 was used
            _bfloat16_np()
            return bfloat16
        raise TypeError(
            f"chainrule does not support the NumPy dtype {np.dtype(np_dtype)}"
        ) from None


_SCALAR_TYPE_NAMES = {  # torch's ScalarType names, as its error messages print them
    "float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16",
    "complex64": "ComplexFloat", "complex128": "ComplexDouble", "int64": "Long", "int32": "Int",
    "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool",
}


def scalar_type_name(np_dtype) -> str:
    """torch's name of a dtype in messages (``Float``, ``Long``, ...); ``Tensor.type()`` adds
    ``Tensor``."""
    name = np.dtype(np_dtype).name if not isinstance(np_dtype, dtype) else np_dtype.name
    return _SCALAR_TYPE_NAMES.get(name, name)


def to_dtype(d) -> dtype:
    """Accept a chainrule dtype, a NumPy dtype/type or a name such as ``"float32"``."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str):
        if d in _BY_NAME:
            return _BY_NAME[d]
        raise TypeError(f"unknown dtype name {d!r}")
    if d is builtins.bool:
        return bool
    if d is builtins.float:
        return _default_float
    if d is builtins.int:
        return int64
    return from_numpy_dtype(np.dtype(d))


def to_numpy_dtype(d):
    return to_dtype(d).np


def get_default_dtype() -> dtype:
    """The dtype Python floats become (``float32`` unless changed)."""
    return _default_float


def set_default_dtype(d) -> None:
    global _default_float
    d = to_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating point types are allowed, got {d}")
    _default_float = d


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both ``a`` and ``b`` convert to safely (``torch.promote_types``)."""
    return from_numpy_dtype(_promote_np(to_numpy_dtype(a), to_numpy_dtype(b)))


def _category_of_np(np_dtype) -> builtins.int:
    return {"b": 0, "u": 1, "i": 1, "f": 2, "V": 2}.get(np_dtype.kind, 3)


def _promote_np(a, b):
    """PyTorch's table: across categories the higher category's dtype wins (int64 + float16 ->
    float16, where NumPy says float64); within one category NumPy's rule agrees (ml_dtypes
    registers bfloat16's: with float16 float32, as in torch)."""
    ca, cb = _category_of_np(a), _category_of_np(b)
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def result_type(*operands):
    """PyTorch's promotion for raw arrays and Python scalars; returns a NumPy dtype.

    Three priority classes: dimensioned arrays, zero-dim arrays, Python scalars. A lower class
    only wins when its category (bool < int < float) is higher; Python floats then become the
    default float dtype and Python ints ``int64``.
    """
    dim_t = zero_t = None
    scalar_cat = -1
    for x in operands:
        if isinstance(x, np.generic) or devices.is_array(x):
            # tensor data; a 0-d op result is a NumPy scalar (np.float64 is a Python float
            # subclass, but here it is a zero-dim tensor, not a weak Python number)
            if x.ndim == 0:
                zero_t = x.dtype if zero_t is None else _promote_np(zero_t, x.dtype)
            else:
                dim_t = x.dtype if dim_t is None else _promote_np(dim_t, x.dtype)
        elif isinstance(x, builtins.bool):
            scalar_cat = max(scalar_cat, 0)
        elif isinstance(x, builtins.int):
            scalar_cat = max(scalar_cat, 1)
        elif isinstance(x, builtins.float):
            scalar_cat = max(scalar_cat, 2)
        else:
            raise TypeError(f"result_type: unsupported operand {type(x).__name__}")
    result = dim_t
    if zero_t is not None:
        if result is None or _category_of_np(zero_t) > _category_of_np(result):
            result = zero_t
    if scalar_cat >= 0 and (result is None or scalar_cat > _category_of_np(result)):
        result = (np.dtype(np.bool_), np.dtype(np.int64), _default_float.np)[scalar_cat]
    return result


# ---- layouts, memory formats and numeric limits (as torch.layout / torch.finfo) ----------------
class layout:
    """A tensor's memory layout: chainrule's tensors are all ``strided`` (dense)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{shown_prefix()}.{self.name}"


strided = layout("strided")


class memory_format:
    """A memory-format request (``x.to(memory_format=cr.channels_last)``); chainrule keeps its
    arrays contiguous whatever is asked."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{shown_prefix()}.{self.name}"


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")
legacy_contiguous_format = memory_format("legacy_contiguous_format")


class finfo:
    """Machine limits of a float dtype: bits, eps, max, min, tiny (smallest_normal),
    resolution, dtype."""

    def __init__(self, type=None) -> None:  # noqa: A002  (torch's argument name)
        d = get_default_dtype() if type is None else to_dtype(type)
        if d.np.kind != "f" and not is_bfloat16(d.np):
            raise TypeError(f"torch.finfo() requires a floating point input type. Use "
                            f"torch.iinfo to handle '{d.name}'")
        info = np.finfo(d.np)
        self.bits = info.bits
        self.eps = builtins.float(info.eps)
        self.max = builtins.float(info.max)
        self.min = builtins.float(info.min)
        self.tiny = self.smallest_normal = builtins.float(info.tiny)
        self.resolution = 10.0 ** -builtins.int(info.precision)  # torch's: 1e-06 for float32
        self.dtype = d.name

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.tiny:g}, tiny={self.tiny:g}, "
                f"dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype: bits, min, max, dtype."""

    def __init__(self, type) -> None:  # noqa: A002
        d = to_dtype(type)
        if d.np.kind not in "iub":
            raise TypeError(f"torch.iinfo() requires an integer input type. Use torch.finfo "
                            f"to handle '{d.name}'")
        info = np.iinfo(np.uint8 if d.np.kind == "b" else d.np)
        self.bits, self.dtype = info.bits, d.name
        self.min, self.max = builtins.int(info.min), builtins.int(info.max)

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"


__all__ += ["layout", "strided", "memory_format", "contiguous_format", "channels_last",
            "channels_last_3d", "preserve_format", "legacy_contiguous_format", "finfo", "iinfo"]
