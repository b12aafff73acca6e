"""In-place changes of layout and memory, as torch 2.13: ``as_strided_``, ``resize_``,
``resize_as_``, ``set_`` (and ``is_set_to``): values, strides, storage offsets, shared memory,
version counters, recorded history, gradients and errors.

chainrule has no Storage objects: a tensor's memory is its base's for a view, the memory an
earlier one of these ops gave it, else its own array. Offsets count elements from its start,
as torch's storage offsets do. Where that memory is not contiguous its logical order is not its
memory order, and these ops refuse it (as ``as_strided`` does).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


def _plain(r):
    """A result, made comparable between the libraries."""
    if isinstance(r, tuple):
        return tuple(_plain(x) for x in r)
    if hasattr(r, "tolist"):
        return r.tolist()
    if isinstance(r, (torch.Size, cr.Size)):
        return list(r)
    if isinstance(r, (torch.dtype, cr.dtype)):
        return str(r).split(".")[-1]
    return r


def _outcome(m, scenario):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _plain(scenario(m))
    except Exception as e:  # noqa: BLE001  (the error is what is compared)
        return (type(e).__name__, str(e).replace("torch.", "chainrule."))


def _grad_of(m, f, n=6):
    """f(m, y) with y = l * 1.0 a non-leaf over arange(n); returns l.grad after f's sum."""
    l = m.arange(float(n), dtype=m.float64, requires_grad=True)
    out = f(m, l * 1.0)
    w = m.arange(1.0, out.numel() + 1, dtype=m.float64).reshape(tuple(out.shape))
    (out * w).sum().backward()
    return l.grad


def _in_no_grad(m, f):
    with m.no_grad():
        return f()


AS_STRIDED = {
    "a plain tensor": lambda m: (lambda x: (x.as_strided_((3, 2), (1, 3), 1), x._version,
                                            x.stride(), x.storage_offset()))(m.arange(12.0)),
    "a view, its offset kept": lambda m: (lambda x: (lambda v: (
        v.as_strided_((2, 2), (1, 2)), v._version, x._version, v.storage_offset()))(x[1:]))(
        m.arange(12.0).reshape(3, 4)),
    "a view, offset 0 of its base's memory, then written": lambda m: (lambda x: (lambda v: (
        v.as_strided_((2, 2), (1, 2), 0), v.mul_(10), x, v.storage_offset()))(x[1:]))(
        m.arange(12.0).reshape(3, 4)),
    "twice: offsets stay absolute": lambda m: (lambda x: (
        x.as_strided_((3,), (1,), 2), x.storage_offset(), x.as_strided_((3,), (1,), 0),
        x.storage_offset()))(m.arange(6.0)),
    "the functional form, keywords": lambda m: m.as_strided_(
        m.arange(6.0), size=(2,), stride=(2,), storage_offset=1),
    "a stride 0 over one element is writable": lambda m: m.arange(6.0).as_strided_(
        (1, 3), (0, 1)).add_(1),
    "a non-contiguous tensor": lambda m: m.arange(12.0).reshape(3, 4).t().contiguous()
    .as_strided_((2, 2), (1, 2)),
    # errors
    "out of bounds": lambda m: m.arange(12.0).as_strided_((3, 5), (5, 1), 0),
    "out of bounds by the offset": lambda m: m.arange(12.0).as_strided_((3,), (1,), 10),
    "a negative stride": lambda m: m.arange(12.0).as_strided_((3,), (-1,), 5),
    "a negative offset": lambda m: m.arange(12.0).as_strided_((3,), (1,), -1),
    "a negative size": lambda m: m.arange(12.0).as_strided_((-1,), (1,)),
    "strides and sizes of different lengths": lambda m: m.arange(12.0).as_strided_((3, 2),
                                                                                   (1,)),
    "writing where elements repeat": lambda m: m.arange(6.0).as_strided_((3,), (0,)).add_(1),
    "a leaf that requires grad": lambda m: m.ones(6, requires_grad=True).as_strided_((2,), (1,)),
    "a leaf that requires grad, no_grad mode": lambda m: (lambda l: (
        _in_no_grad(m, lambda: l.as_strided_((2,), (1,))), l._version, l.requires_grad,
        l.grad_fn is None))(m.ones(6, requires_grad=True)),
    "a view of a leaf that requires grad": lambda m: m.arange(
        6.0, requires_grad=True)[1:].as_strided_((2,), (1,)),
    "one of several views (split)": lambda m: (m.arange(6.0, requires_grad=True) * 1).split(2)[
        0].as_strided_((2,), (1,)),
    # history and gradients
    "a non-leaf": lambda m: _grad_of(m, lambda m, y: y.as_strided_((2, 2), (1, 2))),
    "a non-leaf, elements repeated": lambda m: _grad_of(
        m, lambda m, y: y.as_strided_((3, 2), (1, 1))),
    "a view of a non-leaf": lambda m: _grad_of(m, lambda m, y: y[1:].as_strided_((2, 2),
                                                                                (1, 2))),
    "then multiplied in place": lambda m: _grad_of(m, lambda m, y: y.as_strided_(
        (2, 2), (2, 1)).mul_(3)),
    "then a view of it multiplied in place": lambda m: _grad_of(m, lambda m, y: (
        lambda w: (w[0].mul_(3), w)[1])(y.as_strided_((2, 2), (2, 1)))),
    "a view of a non-leaf, restrided, then written": lambda m: _grad_of(m, lambda m, y: (
        lambda w: (w.as_strided_((2, 2), (1, 2)), w.mul_(m.tensor(
            [[2.0, 3.0], [4.0, 5.0]], dtype=m.float64)), y)[2])(y[1:])),
    "a saved tensor restrided": lambda m: (lambda y: (lambda z: (
        y.as_strided_((2,), (1,)), z.sum().backward()))(y * y))(
        m.arange(6.0, requires_grad=True) * 1.0),
}

RESIZE = {
    "smaller, the same size, larger": lambda m: (lambda x: (
        x.resize_(2, 2).tolist(), x._version, x.stride(), x.resize_(2, 2).tolist(), x._version,
        list(x.resize_(3, 3).shape), x._version, x.reshape(-1)[:6]))(m.arange(6.0)),
    "a list, a tuple, 0, ()": lambda m: (lambda x: (
        list(x.resize_([3, 2]).shape), list(x.resize_((2, 3)).shape), list(x.resize_(0).shape),
        x._version))(m.arange(6.0)),
    "to 0-d": lambda m: (lambda x: (x.resize_(()), x._version))(m.arange(6.0)),
    "a transposed view: its base's memory order": lambda m: (lambda x: (lambda t: (
        t.resize_(2, 3), t.stride(), x._version, t.storage_offset(), t.mul_(10), x))(x.t()))(
        m.arange(12.0).reshape(3, 4)),
    "a row, grown within its base": lambda m: (lambda x: (lambda s: (
        s.resize_(6), s.storage_offset(), x._version))(x[1]))(m.arange(12.0).reshape(3, 4)),
    "another view is not resized": lambda m: (lambda x: (lambda y: (
        x.resize_(2), list(y.shape), y._version))(x[:]))(m.arange(6.0)),
    "a detached copy": lambda m: (lambda l: (lambda d: (
        d.resize_(2), d._version, l._version, list(l.shape)))(l.detach()))(
        m.ones(3, requires_grad=True)),
    "integers": lambda m: m.arange(6).resize_(2, 2),
    "after as_strided_: memory order": lambda m: m.arange(6.0).as_strided_((3, 2), (1, 3))
    .resize_(6),
    "after as_strided_ with an offset": lambda m: (lambda x: (
        x.resize_(3), x.storage_offset(), x.as_strided_((2,), (1,), 0)))(
        m.arange(6.0).as_strided_((2,), (1,), 2)),
    "channels_last (laid out contiguously here)": lambda m: list(
        m.arange(24.0).resize_(1, 2, 3, 4, memory_format=m.channels_last).shape),
    "the same size does not count a version": lambda m: (lambda x: (lambda z: (lambda y: (
        x.resize_(6), x._version, y.backward(), z.grad))((z * x).sum()))(
        m.ones(6, requires_grad=True)))(m.arange(6.0)),
    "a saved tensor resized": lambda m: (lambda x: (lambda z: (lambda y: (
        x.resize_(3), y.backward()))((z * x).sum()))(m.ones(6, requires_grad=True)))(
        m.arange(6.0)),
    # errors
    "a negative size": lambda m: m.ones(3).resize_(-1, 2),
    "preserve_format": lambda m: m.ones(24).resize_(1, 2, 3, 4, memory_format=m.preserve_format),
    "channels_last of rank 3": lambda m: m.ones(24).resize_(2, 3, 4,
                                                           memory_format=m.channels_last),
    "a leaf that requires grad": lambda m: m.ones(3, requires_grad=True).resize_(2),
    "... in no_grad mode too": lambda m: _in_no_grad(
        m, lambda: m.ones(3, requires_grad=True).resize_(2)),
    "a non-leaf, even to its own size": lambda m: (m.ones(3, requires_grad=True) * 2).resize_(3),
    # resize_as_
    "resize_as_": lambda m: (lambda x: (x.resize_as_(m.ones(2, 2)), x._version))(m.arange(6.0)),
    "resize_as_ keeps its dtype": lambda m: m.ones(2).resize_as_(m.ones(3, dtype=m.int64)).dtype,
    "resize_as_, the functional form, preserve_format": lambda m: (
        m.resize_as_(m.ones(2), m.ones(3)).shape,
        m.ones(2).resize_as_(the_template=m.ones(1, 3), memory_format=m.preserve_format).shape),
    "resize_as_ a template that requires grad": lambda m: m.ones(2).resize_as_(
        m.ones(3, requires_grad=True)).requires_grad,
    "resize_as_ on a tensor that requires grad": lambda m: m.ones(
        2, requires_grad=True).resize_as_(m.ones(3)),
}

SET = {
    "a tensor: its memory, shared": lambda m: (lambda x, y: (
        x.set_(y), x._version, y._version, x.data_ptr() == y.data_ptr(), x.add_(1), y,
        x._version, y._version))(m.arange(6.0), m.zeros(2, 3)),
    "nothing: empty": lambda m: (lambda x: (x.set_(), x.shape, x._version, x.dtype))(
        m.arange(6.0)),
    "a view: its layout and offset": lambda m: (lambda x: (
        x.set_(m.arange(12.0).reshape(3, 4)[1:, 1:]), x.stride(), x.storage_offset(),
        x._base is None))(m.arange(6.0)),
    "a layout of another tensor's memory": lambda m: (lambda x, y: (
        x.set_(y, 2, (2, 3)), x.stride(), x.storage_offset(), x.set_(y, 1, (2, 2), (1, 2)),
        x.set_(source=y, storage_offset=1, size=(2, 2), stride=(1, 2)), x.mul_(10), y,
        y._version))(m.arange(6.0), m.arange(12.0)),
    "then as_strided_: offsets in the source's memory": lambda m: (lambda x: (
        x.set_(m.arange(12.0)[2:]), x.storage_offset(), x.as_strided_((2,), (1,), 0)))(
        m.zeros(3)),
    "then resize_ within the source's memory": lambda m: (lambda x: (
        x.set_(m.arange(12.0)[2:4]), x.resize_(4), x.storage_offset()))(m.zeros(3)),
    "a view: leaves its base": lambda m: (lambda x: (lambda v: (
        v.set_(m.zeros(2)), v._version, x._version, v.add_(1), x))(x[1:]))(m.arange(6.0)),
    "itself": lambda m: (lambda x: (x.set_(x), x._version))(m.arange(6.0)),
    "is_set_to": lambda m: (lambda x: (
        x.is_set_to(x), m.zeros(2).is_set_to(m.zeros(2)), m.zeros(2).set_(x).is_set_to(x),
        x[1:].is_set_to(x)))(m.arange(6.0)),
    "a saved tensor set": lambda m: (lambda x: (lambda z: (lambda y: (
        x.set_(m.zeros(6)), y.backward()))((z * x).sum()))(m.ones(6, requires_grad=True)))(
        m.arange(6.0)),
    # errors
    "another dtype": lambda m: m.arange(6.0).set_(m.zeros(3, dtype=m.float64)),
    "an integer source": lambda m: m.zeros(3).set_(m.ones(3, dtype=m.int64)),
    "a leaf that requires grad": lambda m: m.ones(3, requires_grad=True).set_(m.zeros(3)),
    "a leaf that requires grad, no_grad mode": lambda m: (lambda l: (
        _in_no_grad(m, lambda: l.set_(m.zeros(2))), l.requires_grad, l._version))(
        m.ones(3, requires_grad=True)),
    # history: torch has no derivative for set_
    "a non-leaf": lambda m: (lambda n: (n.set_(m.zeros(3)), n.requires_grad,
                                        n.grad_fn is not None))(m.ones(3, requires_grad=True) * 2),
    "a non-leaf, backward": lambda m: (m.ones(3, requires_grad=True) * 2).set_(
        m.zeros(3)).sum().backward(),
    "a source that requires grad": lambda m: (lambda x: (
        x.set_(m.ones(3, requires_grad=True)), x.requires_grad))(m.zeros(3)),
    "a source that requires grad, backward": lambda m: (m.zeros(3).set_(
        m.ones(3, requires_grad=True)) * 2).sum().backward(),
    "a source that requires grad, no_grad mode": lambda m: (lambda x: (
        _in_no_grad(m, lambda: x.set_(m.ones(3, requires_grad=True))), x.requires_grad))(
        m.zeros(3)),
}


@pytest.mark.parametrize("name", list(AS_STRIDED))
def test_as_strided_(name):
    assert _outcome(cr, AS_STRIDED[name]) == _outcome(torch, AS_STRIDED[name])


@pytest.mark.parametrize("name", list(RESIZE))
def test_resize_(name):
    assert _outcome(cr, RESIZE[name]) == _outcome(torch, RESIZE[name])


@pytest.mark.parametrize("name", list(SET))
def test_set_(name):
    assert _outcome(cr, SET[name]) == _outcome(torch, SET[name])


def test_as_strided_gradients_by_finite_differences():
    """float64 gradcheck and gradgradcheck through as_strided_ on a non-leaf and on a view
    (with repeated elements: their gradients add up)."""
    for size, stride, offset, view in (((2, 2), (1, 2), 0, False), ((3, 2), (1, 1), 1, False),
                                       ((2, 3), (0, 1), 2, True)):
        def f(x, size=size, stride=stride, offset=offset, view=view):
            y = x * 1.0
            target = y[1:] if view else y
            return target.as_strided_(size, stride, offset) * 1.0

        x = cr.tensor(np.linspace(-1.0, 1.0, 7), requires_grad=True)
        assert cr.autograd.gradcheck(f, (x,))
        assert cr.autograd.gradgradcheck(f, (x,))


def test_the_refusals_name_the_op_and_say_what_to_do():
    t = cr.arange(12.0).reshape(3, 4).t()
    base = cr.arange(12.0).reshape(3, 4)
    with pytest.raises(RuntimeError, match=r"as_strided_\(\).*not contiguous.*contiguous\(\)"):
        base.t().t().t().as_strided_((2,), (1,))  # a view of a contiguous base is fine ...
        cr.tensor(np.asfortranarray(np.ones((3, 4)))).as_strided_((2,), (1,))  # ... not this
    with pytest.raises(RuntimeError, match=r"resize_\(\): a view .* cannot grow"):
        base[2].resize_(8)  # torch would reallocate the memory the view and its base share
    with pytest.raises(RuntimeError, match=r"set_\(\).*not contiguous"):
        cr.zeros(2, dtype=cr.float64).set_(cr.tensor(np.asfortranarray(np.ones((3, 4)))), 0,
                                           (2,))
    with pytest.raises(TypeError, match="set_.*Tensor"):
        cr.zeros(2).set_(np.ones(2))
    assert t.shape == (4, 3)


def test_a_tensor_of_its_own_grows_into_new_memory_the_old_elements_first():
    x = cr.arange(6.0)
    old = x.data_ptr()
    x.resize_(2, 5)
    assert x._version == 1 and x.is_contiguous() and x.storage_offset() == 0
    assert x.data_ptr() != old
    assert x.reshape(-1)[:6].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    x[1, 4] = 7.0  # its own memory, writable
    assert x[1, 4].item() == 7.0


def test_as_strided_storage_offsets_are_absolute_as_torchs():
    """torch's storage_offset counts from the start of the memory a view shares with its base
    (None: the input's own); chainrule used to count from the input's first element, a silent
    difference for views."""
    out = []
    for m in (cr, torch):
        v = m.arange(12.0)[4:]
        out.append((m.as_strided(v, (2,), (1,)).tolist(), m.as_strided(v, (2,), (1,), 5).tolist(),
                    v.as_strided((2,), (1,), 4).tolist(),
                    m.as_strided_scatter(v, m.zeros(2), (2,), (1,), 6).tolist()))
    assert out[0] == out[1]
    with pytest.raises(RuntimeError, match=r"as_strided\(\): storage offset 0 lies before"):
        cr.as_strided(cr.arange(12.0)[4:], (2,), (1,), 0)  # torch reads the base there


def _no_grad_view(m):
    n = m.arange(6.0, requires_grad=True) * 1.0
    with m.no_grad():
        v = n[1:]
    return v


VIEWS = {
    "as_strided_ on a view made in no_grad mode": lambda m: _no_grad_view(m).as_strided_(
        (2,), (1,)),
    "set_ on a view made in no_grad mode": lambda m: _no_grad_view(m).set_(m.zeros(2)),
    "resize_ on a view made in no_grad mode (torch: it requires grad)": lambda m:
        _no_grad_view(m).resize_(2),
    "a view's requires_grad once its base was written with a gradient": lambda m: (
        lambda x: (lambda v: (x.mul_(m.ones(6, requires_grad=True)), v.requires_grad))(x[1:]))(
        m.arange(6.0)),
    "a resized view, then its base written with a gradient": lambda m: (
        lambda x: (lambda v: (v.resize_(2), x.mul_(m.ones(6, requires_grad=True)),
                              v.requires_grad, v.grad_fn is not None))(x[1:]))(m.arange(6.0)),
    "a restrided view, then its base written with a gradient": lambda m: (
        lambda x: (lambda v: (v.as_strided_((2, 2), (1, 2)), x.mul_(m.arange(
            6.0, requires_grad=True)), v, v.requires_grad))(x[1:]))(m.arange(6.0)),
    "a restrided view of a non-leaf, then the base multiplied in place": lambda m: (
        lambda l: (lambda n: (lambda v: (v.as_strided_((2, 2), (1, 2)), n.mul_(2), v,
                                         (v.sum().backward(), l.grad)[1]))(n[1:]))(l * 1.0))(
        m.arange(6.0, requires_grad=True)),
}


@pytest.mark.parametrize("name", list(VIEWS))
def test_views_and_grad_mode(name):
    assert _outcome(cr, VIEWS[name]) == _outcome(torch, VIEWS[name])
