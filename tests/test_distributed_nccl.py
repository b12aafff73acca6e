"""The NCCL backend's plumbing, without a GPU: two ranks in two threads of this process talk
through a stand-in for ``cupy.cuda.nccl`` that follows NCCL's documented semantics (device
pointers, element counts, dtypes, grouped point-to-point calls). On a GPU machine the same
backend runs against the real library (docs/distributed.md; multi-rank NCCL needs 2 GPUs)."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from chainrule.distributed.nccl_backend import NCCLBackend

WORLD = 2


class DeviceArray(np.ndarray):
    """A host array that shows a device pointer as CuPy's arrays do (``a.data.ptr``)."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])


_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
           7: np.float64}


class _Rendezvous:
    """What the ranks' communicators share: a barrier and the posted buffers of each call."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(WORLD)
        self.posted: dict = {}
        self.mailbox: dict = {}
        self.ids: list = []


def _view(ptr: int, count: int, dtype_code: int) -> np.ndarray:
    dt = np.dtype(_DTYPES[dtype_code])
    buf = (np.ctypeslib.ctypes.c_char * (count * dt.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dt, count)


class FakeComm:
    """``cupy.cuda.nccl.NcclCommunicator``: collectives by device pointer."""

    def __init__(self, ndev: int, comm_id: tuple, rank: int) -> None:
        assert ndev == WORLD and len(comm_id) == 128
        self.rank, self.rv = rank, RV
        RV.ids.append(comm_id)

    def _exchange(self, item):
        rv = self.rv
        rv.barrier.wait()
        rv.posted[self.rank] = item
        rv.barrier.wait()
        items = [rv.posted[r] for r in range(WORLD)]
        rv.barrier.wait()
        return items

    def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802
        vals = self._exchange(_view(send, count, dtype).copy())
        _view(recv, count, dtype)[:] = _REDUCE[op](np.stack(vals))

    def reduce(self, send, recv, count, dtype, op, root, stream):
        vals = self._exchange(_view(send, count, dtype).copy())
        if self.rank == root:
            _view(recv, count, dtype)[:] = _REDUCE[op](np.stack(vals))

    def broadcast(self, send, recv, count, dtype, root, stream):
        vals = self._exchange(_view(send, count, dtype).copy())
        _view(recv, count, dtype)[:] = vals[root]

    def allGather(self, send, recv, count, dtype, stream):  # noqa: N802
        vals = self._exchange(_view(send, count, dtype).copy())
        _view(recv, count * WORLD, dtype)[:] = np.concatenate(vals)

    def reduceScatter(self, send, recv, count, dtype, op, stream):  # noqa: N802
        vals = self._exchange(_view(send, count * WORLD, dtype).copy())
        total = _REDUCE[op](np.stack(vals))
        _view(recv, count, dtype)[:] = total[self.rank * count:(self.rank + 1) * count]

    def send(self, buf, count, dtype, peer, stream):
        self.rv.mailbox.setdefault((self.rank, peer), []).append(_view(buf, count, dtype).copy())

    def recv(self, buf, count, dtype, peer, stream):
        PENDING.setdefault(self.rank, []).append((buf, count, dtype, peer))

    def destroy(self) -> None:
        pass


PENDING: dict = {}


def _group_end() -> None:
    """ncclGroupEnd: the group's sends and receives complete together (one exchange)."""
    rank = int(threading.current_thread().name)
    RV.barrier.wait()
    for buf, count, dtype, peer in PENDING.pop(rank, []):
        _view(buf, count, dtype)[:] = RV.mailbox[(peer, rank)].pop(0)
    RV.barrier.wait()


_REDUCE = {0: lambda a: a.sum(0), 1: lambda a: a.prod(0), 2: lambda a: a.max(0),
           3: lambda a: a.min(0), 4: lambda a: a.mean(0)}


def _fake_cupy():
    nccl = types.ModuleType("cupy.cuda.nccl")
    for code, dt in _DTYPES.items():
        setattr(nccl, f"NCCL_{np.dtype(dt).name.upper()}", code)
    nccl.NCCL_SUM, nccl.NCCL_PROD, nccl.NCCL_MAX, nccl.NCCL_MIN, nccl.NCCL_AVG = 0, 1, 2, 3, 4
    nccl.get_unique_id = lambda: tuple(range(128))
    nccl.NcclCommunicator = FakeComm
    nccl.groupStart = lambda: None
    nccl.groupEnd = _group_end

    class Event:
        def __init__(self, **kwargs):
            self.done = False

        def record(self, stream=None):
            self.done = True

        def synchronize(self):
            pass

    class Stream:
        ptr = 0

        def __init__(self, **kwargs):
            pass

        def wait_event(self, event):
            assert event.done

        def synchronize(self):
            pass

    cuda = types.SimpleNamespace(Event=Event, Stream=Stream, nccl=nccl,
                                 get_current_stream=lambda: Stream())
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    cupy.float32 = np.float32
    cupy.ones = lambda n, dt: np.ones(n, dt).view(DeviceArray)
    return cupy, nccl


class FakeMPI:
    def __init__(self, rank: int) -> None:
        self.rank = rank

    def Get_rank(self):  # noqa: N802
        return self.rank

    def Get_size(self):  # noqa: N802
        return WORLD

    def Bcast(self, buf, root=0):  # noqa: N802
        RV.barrier.wait()
        if self.rank == root:
            RV.posted["bcast"] = buf.copy()
        RV.barrier.wait()
        buf[:] = RV.posted["bcast"]
        RV.barrier.wait()


RV = _Rendezvous()


def dev(values, dtype=np.float32) -> DeviceArray:
    return np.array(values, dtype).view(DeviceArray)


def _run_ranks(fn) -> list:
    global RV
    RV = _Rendezvous()
    results, errors = [None] * WORLD, []

    def body(rank):
        try:
            results[rank] = fn(NCCLBackend(FakeMPI(rank)), rank)
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)
            RV.barrier.abort()

    threads = [threading.Thread(target=body, args=(r,), name=str(r)) for r in range(WORLD)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


@pytest.fixture(autouse=True)
def fake_cupy(monkeypatch):
    cupy, nccl = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)


def test_rank0_unique_id_reaches_every_rank():
    _run_ranks(lambda be, r: None)
    assert RV.ids == [tuple(range(128))] * WORLD


def test_collectives_by_pointer():
    def body(be, r):
        out = {}
        a = dev([1, 2]) * (r + 1)
        be.all_reduce(a, "sum", False)
        out["sum"] = a.tolist()
        a = dev([1, 2]) * (r + 1)
        be.all_reduce(a, "max", True)  # async: an event the caller's stream waits on
        out["max"] = a.tolist()
        b = dev([r, r], np.int64)
        be.broadcast(b, 1, False)
        out["bcast"] = b.tolist()
        g = dev(np.zeros((WORLD, 2)), np.float64)
        be.all_gather(g, dev([r, r + 0.5], np.float64), False)
        out["all_gather"] = g.tolist()
        o = dev([0.0])
        be.reduce_scatter(o, dev([1.0, 2.0]) * (r + 1), "sum", False)
        out["reduce_scatter"] = o.tolist()
        gathered = dev(np.zeros((WORLD, 1)))
        be.gather(gathered, dev([r + 5.0]), 0, False)
        out["gather"] = gathered.tolist()
        s = dev([0.0])
        be.scatter(s, dev([[7.0], [8.0]]) if r == 0 else None, 0, False)
        out["scatter"] = s.tolist()
        if r == 0:
            be.send(dev([3.0, 4.0]), 1, 0, False)
        else:
            x = dev([0.0, 0.0])
            out["recv_from"] = be.recv(x, 0, 0, False)
            out["recv"] = x.tolist()
        be.barrier(False)
        return out

    r0, r1 = _run_ranks(body)
    for r, got in enumerate((r0, r1)):
        assert got["sum"] == [3.0, 6.0] and got["max"] == [2.0, 4.0]
        assert got["bcast"] == [1, 1]
        assert got["all_gather"] == [[0.0, 0.5], [1.0, 1.5]]
        assert got["reduce_scatter"] == [[3.0], [6.0]][r]
        assert got["scatter"] == [7.0 + r]
    assert r0["gather"] == [[5.0], [6.0]]
    assert r1["recv"] == [3.0, 4.0] and r1["recv_from"] == 0


def test_unsupported_dtype_and_op_and_any_source_are_clear_errors():
    def body(be, r):
        with pytest.raises(TypeError, match="cannot communicate bool"):
            be.all_reduce(dev([True], np.bool_), "sum", False)
        with pytest.raises(ValueError, match="no BXOR reduction"):
            be.all_reduce(dev([1], np.int32), "bxor", False)
        with pytest.raises(ValueError, match="needs recv's src"):
            be.recv(dev([0.0]), None, 0, False)
        assert be.supports("avg")

    _run_ranks(body)
