"""The collectives on Tensors (``torch.distributed``'s functions), on every rank of the world.

Each call first checks, with one small all-gather (a hash of the call's signature), that every
rank calls the same collective on tensors of the same shape and dtype (else every rank raises the
same RuntimeError instead of hanging or corrupting memory), then hands contiguous arrays to the
backend and writes the results back into the given tensors (in place, as torch).
"""

from __future__ import annotations

import enum

import numpy as np

from chainrule import devices
from chainrule.distributed.process_group import run, world
from chainrule.tensor import Tensor

__all__ = ["ReduceOp", "all_reduce", "reduce", "broadcast", "all_gather",
           "all_gather_into_tensor", "reduce_scatter_tensor", "gather", "scatter", "send", "recv",
           "isend", "irecv", "barrier"]


class ReduceOp(enum.Enum):
    """Reductions of ``all_reduce``/``reduce``/``reduce_scatter_tensor`` (``ReduceOp.SUM``...)."""

    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3
    BAND = 4
    BOR = 5
    BXOR = 6
    AVG = 7

_OP_NAMES = {op: (op.name.lower(), op.value) for op in ReduceOp}
_OPS = ("all_reduce", "reduce", "broadcast", "all_gather", "all_gather_into_tensor",
        "reduce_scatter_tensor", "gather", "scatter", "barrier")


def _check_tensor(t, param: str = "tensor") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"Invalid function argument. Expected parameter `{param}` of type "
                        f"Tensor but got {type(t)} instead.")


def _op(op) -> tuple[str, int]:
    try:
        return _OP_NAMES[op]
    except (KeyError, TypeError):
        raise TypeError(f"op must be a ReduceOp (e.g. ReduceOp.SUM), got {op!r}") from None


def _describe(row: np.ndarray) -> str:
    parts = []
    for k in range(int(row[3])):
        code, ndim = int(row[4 + 10 * k]), int(row[5 + 10 * k])
        shape = tuple(int(s) for s in row[6 + 10 * k: 6 + 10 * k + min(ndim, 8)])
        parts.append(f"{np.dtype(chr(code)).name} {shape}")
    return ", ".join(parts) or "no tensor"


def _check_same(w, name: str, arrays, root: int = 0, op: int = 0) -> None:
    """Every rank calls collective ``name`` on the same shapes and dtypes, else RuntimeError
    (the same on every rank).

    The ranks swap one number: the hash of a tuple of small integers (which is the same in every
    process of one Python build: only str/bytes hashes are salted). Only when the hashes differ do
    they swap the whole description, to name what differs (or find that nothing does)."""
    if w.size == 1:
        return
    sig = [_OPS.index(name), root, op, len(arrays)]
    for a in arrays[:2]:
        sig.append(a.dtype.num)
        sig.extend(a.shape)
        sig.append(-1)
    with w.guard(name):
        hashes = w.mpi.all_gather_hash(hash(tuple(sig)))
    if hashes.count(hashes[0]) == len(hashes):
        return
    row = np.zeros(4 + 10 * 2, np.int64)
    row[:4] = sig[:4]
    for k, a in enumerate(arrays[:2]):
        row[4 + 10 * k] = ord(np.dtype(a.dtype).char)
        row[5 + 10 * k] = a.ndim
        shape = a.shape if a.ndim <= 8 else (*a.shape[:7], int(np.prod(a.shape[7:])))
        row[6 + 10 * k: 6 + 10 * k + len(shape)] = shape
    with w.guard(name):
        rows = w.mpi.all_gather_small(row)
    if (rows == rows[0]).all():
        return
    if (rows[:, 0] != rows[0, 0]).any():
        calls = ", ".join(f"rank {r} calls {_OPS[int(x[0])]}" for r, x in enumerate(rows))
        raise RuntimeError(f"{name}: the ranks call different collectives ({calls})")
    if (rows[:, 1:3] != rows[0, 1:3]).any():
        same_op = (rows[:, 2] == rows[0, 2]).all()
        args = ", ".join(f"rank {r}: root {int(x[1])}"
                         + ("" if same_op else f", op {ReduceOp(int(x[2])).name}")
                         for r, x in enumerate(rows))
        raise RuntimeError(f"{name}: the ranks pass different arguments ({args})")
    shapes = ", ".join(f"rank {r} has {_describe(x)}" for r, x in enumerate(rows))
    raise RuntimeError(f"{name}: the tensors differ across ranks in shape or dtype ({shapes})")


def _assign(t: Tensor, value) -> None:
    """Write ``value`` (any device, same dtype) into ``t`` in place."""
    a = t._data
    value = devices.asarray_on(value, like=a)
    if value.dtype != a.dtype:
        value = value.astype(a.dtype)
    if devices.is_writable(a) and a.shape == value.shape:
        a[...] = value
    else:
        t._data = value.reshape(a.shape)


def _stage(a, be):
    """``a`` as the backend takes it: a contiguous array of a dtype it reduces, on its device.
    Returns (buffer, whether it is a copy)."""
    if be.name == "mpi" and devices.is_gpu_array(a):
        a = a.get()
        copied = True
    else:
        copied = False
    if a.dtype == np.bool_:
        return a.astype(np.uint8), True
    if not a.flags.c_contiguous or not devices.is_writable(a):
        return a.copy(order="C"), True
    return a, copied


def _empty_like(a, shape, be):
    xp = np if be.name == "mpi" else devices.loaded_cupy()
    return xp.empty(shape, np.uint8 if a.dtype == np.bool_ else a.dtype)


def _reduce_finish(w, be, buf, op_name: str):
    """AVG where the backend has none: a sum divided by the world size."""
    if op_name != "avg" or be.name == "nccl" and be.supports("avg"):
        return op_name, None

    def divide():
        if buf.dtype.kind == "f":
            buf[...] = buf / w.size
        else:
            buf[...] = buf // w.size
    return "sum", divide


def _then(*steps):
    steps = [s for s in steps if s is not None]
    return (lambda: [s() for s in steps]) if steps else None


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` over every rank, in place (every rank gets the result)."""
    _check_tensor(tensor)
    w = world(group)
    name, code = _op(op)
    _check_same(w, "all_reduce", [tensor._data], op=code)
    be = w.backend_for(tensor._data)
    buf, copied = _stage(tensor._data, be)
    mpi_name, divide = _reduce_finish(w, be, buf, name)
    back = (lambda: _assign(tensor, buf)) if copied else None
    return run(w, "all_reduce", lambda a: be.all_reduce(buf, mpi_name, a), _then(divide, back),
               async_op)


def reduce(tensor: Tensor, dst: int, op: ReduceOp = ReduceOp.SUM, group=None,
           async_op: bool = False):
    """Reduce ``tensor`` over every rank into rank ``dst``'s tensor."""
    _check_tensor(tensor)
    w = world(group)
    _check_rank(w, dst, "dst")
    name, code = _op(op)
    _check_same(w, "reduce", [tensor._data], root=dst, op=code)
    be = w.backend_for(tensor._data)
    buf, copied = _stage(tensor._data, be)
    mpi_name, divide = _reduce_finish(w, be, buf, name)
    mine = w.rank == dst
    back = (lambda: _assign(tensor, buf)) if copied and mine else None
    return run(w, "reduce", lambda a: be.reduce(buf, mpi_name, dst, a),
               _then(divide if mine else None, back), async_op)


def broadcast(tensor: Tensor, src: int, group=None, async_op: bool = False):
    """Copy rank ``src``'s tensor into every rank's ``tensor``."""
    _check_tensor(tensor)
    w = world(group)
    _check_rank(w, src, "src")
    _check_same(w, "broadcast", [tensor._data], root=src)
    be = w.backend_for(tensor._data)
    buf, copied = _stage(tensor._data, be)
    back = (lambda: _assign(tensor, buf)) if copied else None
    return run(w, "broadcast", lambda a: be.broadcast(buf, src, a), back, async_op)


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """``tensor_list[r]`` = rank r's ``tensor``, on every rank."""
    _check_tensor(tensor)
    w = world(group)
    _check_list(tensor_list, w.size, "tensor_list")
    _check_same(w, "all_gather", [tensor._data])
    be = w.backend_for(tensor._data)
    buf, _ = _stage(tensor._data, be)
    out = _empty_like(buf, (w.size, *buf.shape), be)

    def back():
        for r, t in enumerate(tensor_list):
            _assign(t, out[r].astype(t._data.dtype, copy=False))
    return run(w, "all_gather", lambda a: be.all_gather(out, buf, a), back, async_op)


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False):
    """Rank r's ``input_tensor`` into slice r of ``output_tensor`` (concatenated on dim 0, or
    stacked on a new dim 0), on every rank."""
    _check_tensor(output_tensor, "output_tensor")
    _check_tensor(input_tensor, "input_tensor")
    w = world(group)
    x, y = input_tensor._data, output_tensor._data
    if y.size != w.size * x.size or y.dtype != x.dtype:
        raise ValueError(f"all_gather_into_tensor: output_tensor must hold world_size "
                         f"({w.size}) x input_tensor's {tuple(x.shape)} {x.dtype} elements, got "
                         f"{tuple(y.shape)} {y.dtype}")
    _check_same(w, "all_gather_into_tensor", [x, y])
    be = w.backend_for(x)
    buf, _ = _stage(x, be)
    out, copied = _stage(y, be)
    back = (lambda: _assign(output_tensor, out)) if copied else None
    return run(w, "all_gather_into_tensor", lambda a: be.all_gather(out, buf, a), back, async_op)


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM,
                          group=None, async_op: bool = False):
    """Reduce ``input`` over every rank; rank r keeps slice r (dim 0) in ``output``."""
    _check_tensor(output, "output")
    _check_tensor(input, "input")
    w = world(group)
    name, code = _op(op)
    x, y = input._data, output._data
    if x.size != w.size * y.size or y.dtype != x.dtype:
        raise ValueError(f"reduce_scatter_tensor: input must hold world_size ({w.size}) x "
                         f"output's {tuple(y.shape)} {y.dtype} elements, got {tuple(x.shape)} "
                         f"{x.dtype}")
    _check_same(w, "reduce_scatter_tensor", [x, y], op=code)
    be = w.backend_for(x)
    buf, _ = _stage(x, be)
    out, copied = _stage(y, be)
    mpi_name, divide = _reduce_finish(w, be, out, name)
    back = (lambda: _assign(output, out)) if copied else None
    return run(w, "reduce_scatter_tensor", lambda a: be.reduce_scatter(out, buf, mpi_name, a),
               _then(divide, back), async_op)


def gather(tensor: Tensor, gather_list: list | None = None, dst: int = 0, group=None,
           async_op: bool = False):
    """``gather_list[r]`` on rank ``dst`` = rank r's ``tensor``."""
    _check_tensor(tensor)
    w = world(group)
    _check_rank(w, dst, "dst")
    mine = w.rank == dst
    if mine:
        _check_list(gather_list, w.size, "gather_list")
    elif gather_list:
        raise ValueError("Argument ``gather_list`` must NOT be specified on non-destination ranks.")
    _check_same(w, "gather", [tensor._data], root=dst)
    be = w.backend_for(tensor._data)
    buf, _ = _stage(tensor._data, be)
    out = _empty_like(buf, (w.size, *buf.shape), be) if mine else None

    def back():
        for r, t in enumerate(gather_list):
            _assign(t, out[r].astype(t._data.dtype, copy=False))
    return run(w, "gather", lambda a: be.gather(out, buf, dst, a), back if mine else None,
               async_op)


def scatter(tensor: Tensor, scatter_list: list | None = None, src: int = 0, group=None,
            async_op: bool = False):
    """Rank r's ``tensor`` = ``scatter_list[r]`` of rank ``src``."""
    _check_tensor(tensor)
    w = world(group)
    _check_rank(w, src, "src")
    mine = w.rank == src
    if mine:
        _check_list(scatter_list, w.size, "scatter_list")
    elif scatter_list:
        raise ValueError("Argument ``scatter_list`` must NOT be specified on non-source ranks.")
    _check_same(w, "scatter", [tensor._data], root=src)
    be = w.backend_for(tensor._data)
    out, copied = _stage(tensor._data, be)
    send = None
    if mine:
        xp = np if be.name == "mpi" else devices.loaded_cupy()
        send = xp.stack([_stage(t._data, be)[0] for t in scatter_list])
    back = (lambda: _assign(tensor, out)) if copied else None
    return run(w, "scatter", lambda a: be.scatter(out, send, src, a), back, async_op)


def _p2p(kind: str, tensor: Tensor, peer: int | None, group, tag: int, async_op: bool):
    _check_tensor(tensor)
    w = world(group)
    if peer is not None:
        _check_rank(w, peer, "dst" if kind == "send" else "src")
        if peer == w.rank:
            raise ValueError(f"Invalid {'destination' if kind == 'send' else 'source'} rank: "
                             f"should not be the same as the rank of the current process.")
    be = w.backend_for(tensor._data)
    buf, copied = _stage(tensor._data, be)
    if kind == "send":
        return run(w, "send", lambda a: be.send(buf, peer, tag, a), None, async_op)
    back = (lambda: _assign(tensor, buf)) if copied else None
    if async_op:
        return run(w, "recv", lambda a: be.recv(buf, peer, tag, a), back, True)
    with w.guard("recv"):
        sender = be.recv(buf, peer, tag, False)
    if back is not None:
        back()
    return sender


def send(tensor: Tensor, dst: int, group=None, tag: int = 0) -> None:
    """Send ``tensor`` to rank ``dst`` (blocking)."""
    _p2p("send", tensor, dst, group, tag, False)


def recv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0) -> int:
    """Receive into ``tensor`` from rank ``src`` (any rank when None); returns the sender."""
    return _p2p("recv", tensor, src, group, tag, False)


def isend(tensor: Tensor, dst: int, group=None, tag: int = 0):
    """Start sending ``tensor`` to rank ``dst``; returns a Work."""
    return _p2p("send", tensor, dst, group, tag, True)


def irecv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0):
    """Start receiving into ``tensor`` from rank ``src``; returns a Work."""
    return _p2p("recv", tensor, src, group, tag, True)


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Wait until every rank has called ``barrier``."""
    w = world(group)
    _check_same(w, "barrier", [])
    return run(w, "barrier", lambda a: w.mpi.barrier(a), None, async_op)


def _check_rank(w, r, what: str) -> None:
    if not isinstance(r, int) or not 0 <= r < w.size:
        raise ValueError(f"Invalid {what} rank {r!r}: the world has ranks 0..{w.size - 1}")


def _check_list(tensors, n: int, what: str) -> None:
    if not isinstance(tensors, (list, tuple)) or len(tensors) != n:
        raise ValueError(f"{what} must be a list of world_size ({n}) tensors, got "
                         f"{type(tensors).__name__} of length {len(tensors or ())}")
    for t in tensors:
        _check_tensor(t, what)
