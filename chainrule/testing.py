"""``cr.testing``: ``assert_close`` with PyTorch's default tolerances and messages."""

from __future__ import annotations

import builtins
import collections.abc
import math

import numpy

__all__ = ["assert_close", "assert_allclose", "make_tensor"]

# (rtol, atol) by dtype name, as torch.testing
_TOLERANCES = {"float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5), "float32": (1.3e-6, 1e-5),
               "float64": (1e-7, 1e-7)}


def _tolerances(dtype_name: str, rtol, atol) -> tuple:
    if (rtol is None) != (atol is None):
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but got "
                         f"no {'rtol' if rtol is None else 'atol'}.")
    if rtol is not None:
        return rtol, atol
    return _TOLERANCES.get(dtype_name, (0.0, 0.0))


def _fmt(v) -> str:
    return repr(v.item() if hasattr(v, "item") else v)


def _compare_arrays(actual, expected, rtol, atol, equal_nan, is_scalar, exact, msg, path):
    a = numpy.asarray(actual, dtype=numpy.float64) if actual.dtype.kind != "b" else actual
    e = numpy.asarray(expected, dtype=numpy.float64) if expected.dtype.kind != "b" else expected
    if a.dtype.kind == "b":
        bad = a != e
    else:
        with numpy.errstate(all="ignore"):
            close = numpy.abs(a - e) <= atol + rtol * numpy.abs(e)
            close |= a == e  # infinities of the same sign
            if equal_nan:
                close |= numpy.isnan(a) & numpy.isnan(e)
        bad = ~close
    if not bad.any():
        return
    # the differences in the compared dtype (integers: float32), as torch reports them
    work = numpy.promote_types(actual.dtype, expected.dtype)
    work = work if work.kind == "f" else numpy.dtype(numpy.float32)
    with numpy.errstate(all="ignore"):
        diff = numpy.abs(actual.astype(work) - expected.astype(work))
        rel = diff / numpy.abs(expected.astype(work))
    what = "equal" if exact else "close"
    if is_scalar:
        text = (f"Scalars are not {what}!\n\nExpected {_fmt(expected.reshape(()))} but got "
                f"{_fmt(actual.reshape(()))}.\nAbsolute difference: "
                f"{_num(diff.reshape(()), actual)}"
                + ("" if exact else f" (up to {atol} allowed)")
                + f"\nRelative difference: {float(rel.reshape(()))!r}"
                + ("" if exact else f" (up to {rtol} allowed)"))
    else:
        n_bad, n = int(bad.sum()), bad.size
        d = numpy.where(numpy.isnan(diff), -1, diff)
        r = numpy.where(numpy.isnan(rel), -1, rel)
        i_abs = numpy.unravel_index(int(numpy.argmax(d)), bad.shape)
        i_rel = numpy.unravel_index(int(numpy.argmax(r)), bad.shape)
        text = (f"Tensor-likes are not {what}!\n\nMismatched elements: {n_bad} / {n} "
                f"({100 * n_bad / n:.1f}%)\nGreatest absolute difference: "
                f"{_num(diff[i_abs], actual)} at index {tuple(int(i) for i in i_abs)}"
                + ("" if exact else f" (up to {atol} allowed)")
                + f"\nGreatest relative difference: {float(rel[i_rel])!r} at index "
                f"{tuple(int(i) for i in i_rel)}" + ("" if exact else f" (up to {rtol} allowed)"))
    _fail(text, msg, path)


def _num(v, like) -> str:
    v = float(v)
    return repr(int(v)) if like.dtype.kind in "iub" and math.isfinite(v) else repr(v)


def _fail(text: str, msg, path) -> None:
    if path:
        text += "\n\nThe failure occurred for item " + "".join(f"[{p!r}]" for p in path)
    if msg is not None:
        text = msg(text) if callable(msg) else msg
    raise AssertionError(text)


def assert_close(actual, expected, *, allow_subclasses: bool = True, rtol=None, atol=None,
                 equal_nan: bool = False, check_device: bool = True, check_dtype: bool = True,
                 check_layout: bool = True, check_stride: bool = False, msg=None,
                 _path: tuple = ()) -> None:
    """Raise AssertionError unless ``actual`` and ``expected`` are close: elementwise
    ``|actual - expected| <= atol + rtol·|expected|`` with torch's defaults per dtype (float32:
    rtol 1.3e-6, atol 1e-5; float64: 1e-7, 1e-7; integers and bool: exact). Tensors, NumPy
    arrays, numbers, and (nested) sequences and mappings of them."""
    from chainrule.tensor import Tensor

    if (rtol is None) != (atol is None):
        _tolerances("", rtol, atol)
    if isinstance(actual, collections.abc.Mapping) and isinstance(
            expected, collections.abc.Mapping):
        if set(actual) != set(expected):
            _fail(f"The keys of the mappings do not match:\nactual: {sorted(map(str, actual))}"
                  f"\nexpected: {sorted(map(str, expected))}", msg, _path)
        for k in expected:
            assert_close(actual[k], expected[k], rtol=rtol, atol=atol, equal_nan=equal_nan,
                         check_device=check_device, check_dtype=check_dtype, msg=msg,
                         _path=_path + (k,))
        return
    seq = (collections.abc.Sequence,)
    if isinstance(actual, seq) and isinstance(expected, seq) and not isinstance(
            actual, str) and not isinstance(expected, str):
        if len(actual) != len(expected):
            _fail(f"The length of the sequences mismatch: {len(actual)} != {len(expected)}",
                  msg, _path)
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan,
                         check_device=check_device, check_dtype=check_dtype, msg=msg,
                         _path=_path + (i,))
        return
    numbers = (builtins.int, builtins.float, builtins.bool)
    if isinstance(actual, numbers) and isinstance(expected, numbers):
        if check_dtype and type(actual) is not type(expected):
            _fail(f"The values for attribute 'dtype' do not match: {type(actual)} != "
                  f"{type(expected)}.", msg, _path)
        a, e = numpy.asarray(actual), numpy.asarray(expected)
        name = "float64" if isinstance(expected, builtins.float) else "int64"
        r, t = _tolerances(name, rtol, atol)
        _compare_arrays(a, e, r, t, equal_nan, True, (r, t) == (0.0, 0.0), msg, _path)
        return
    if not isinstance(actual, (Tensor, numpy.ndarray)) or not isinstance(
            expected, (Tensor, numpy.ndarray)):
        _fail(f"No comparison pair was able to handle inputs of type {type(actual)} and "
              f"{type(expected)}.", msg, _path)
    if type(actual) is not type(expected) and not allow_subclasses:
        _fail(f"The values for attribute 'type' do not match: {type(actual)} != "
              f"{type(expected)}.", msg, _path)
    if tuple(actual.shape) != tuple(expected.shape):
        _fail(f"The values for attribute 'shape' do not match: {_size(actual)} != "
              f"{_size(expected)}.", msg, _path)
    if check_device and isinstance(actual, Tensor) and isinstance(expected, Tensor) and (
            actual.device != expected.device):
        _fail(f"The values for attribute 'device' do not match: {actual.device} != "
              f"{expected.device}.", msg, _path)
    if check_dtype and _dtype(actual) != _dtype(expected):
        _fail(f"The values for attribute 'dtype' do not match: {_dtype(actual, True)} != "
              f"{_dtype(expected, True)}.", msg, _path)
    a = actual.detach().cpu().numpy() if isinstance(actual, Tensor) else actual
    e = expected.detach().cpu().numpy() if isinstance(expected, Tensor) else expected
    dt = numpy.promote_types(a.dtype, e.dtype)
    r, t = _tolerances(str(dt), rtol, atol)
    _compare_arrays(a, e, r, t, equal_nan, a.size == 1 and a.ndim == 0,
                    (r, t) == (0.0, 0.0) and rtol is None, msg, _path)


def _size(x) -> str:
    return f"chainrule.Size({list(x.shape)})"


def _dtype(x, text: bool = False):
    from chainrule.dtypes import from_numpy_dtype
    from chainrule.tensor import Tensor

    d = x.dtype if isinstance(x, Tensor) else from_numpy_dtype(x.dtype)
    return repr(d) if text else d


def assert_allclose(actual, expected, rtol=None, atol=None, equal_nan=True, msg="") -> None:
    """Deprecated in torch: ``assert_close`` without the dtype check."""
    assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=False,
                 msg=msg or None)


def make_tensor(*shape, dtype, device=None, low=None, high=None, requires_grad: bool = False,
                noncontiguous: bool = False, exclude_zero: bool = False, memory_format=None):
    """A tensor of ``shape`` with values drawn uniformly from [low, high) (torch's defaults:
    [-9, 9] for floats and integers, [0, 10) for uint8, bool: random)."""
    from chainrule import creation
    from chainrule.dtypes import to_dtype

    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = tuple(shape[0])
    d = to_dtype(dtype)
    if d.is_floating_point:
        lo, hi = (-9.0 if low is None else low), (9.0 if high is None else high)
        t = creation.rand(*shape, dtype=d) * (hi - lo) + lo
    elif d.name == "bool":
        t = creation.randint(0, 2, shape).to(d)
    else:
        lo = (0 if d.name == "uint8" else -9) if low is None else int(math.ceil(low))
        hi = (10 if d.name == "uint8" else 10) if high is None else int(math.ceil(high))
        t = creation.randint(lo, hi, shape, dtype=d)
    if exclude_zero:
        t = t.masked_fill(t == 0, 1 if not d.is_floating_point else float(numpy.finfo(
            d.np).tiny))
    if device is not None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t
