"""Collectives on CuPy arrays through NCCL (``cupy.cuda.nccl``).

Each collective runs on the backend's own CUDA stream after the caller's current stream (so
it sees the inputs the caller computed) and returns an event; waiting on it makes the caller's
current stream wait (no host synchronisation), as torch's NCCL backend does. The communicator
is set up from a unique id that rank 0 draws and MPI broadcasts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NCCLBackend"]


class NCCLBackend:
    """One NCCL communicator over every rank, one process per GPU."""

    name = "nccl"

    def __init__(self, mpi_comm) -> None:
        import cupy
        from cupy.cuda import nccl

        self._cupy, self._nccl = cupy, nccl
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        uid = np.zeros(128, np.int64)  # NCCL_UNIQUE_ID_BYTES
        if self.rank == 0:
            uid[:] = nccl.get_unique_id()
        mpi_comm.Bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(self.size, tuple(int(v) for v in uid), self.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._dtypes = {np.dtype(k): getattr(nccl, v) for k, v in (
            ("int8", "NCCL_INT8"), ("uint8", "NCCL_UINT8"), ("int32", "NCCL_INT32"),
            ("int64", "NCCL_INT64"), ("float16", "NCCL_FLOAT16"), ("float32", "NCCL_FLOAT32"),
            ("float64", "NCCL_FLOAT64"))}
        self._ops = {"sum": nccl.NCCL_SUM, "product": nccl.NCCL_PROD, "min": nccl.NCCL_MIN,
                     "max": nccl.NCCL_MAX}
        if hasattr(nccl, "NCCL_AVG"):
            self._ops["avg"] = nccl.NCCL_AVG

    def close(self) -> None:
        self.stream.synchronize()
        self.comm.destroy()

    def supports(self, op: str) -> bool:
        return op in self._ops

    # ---- plumbing ---------------------------------------------------------------------------
    def _dtype(self, a):
        try:
            return self._dtypes[np.dtype(a.dtype)]
        except KeyError:
            raise TypeError(f"the NCCL backend cannot communicate {a.dtype} arrays") from None

    def _op(self, op: str):
        try:
            return self._ops[op]
        except KeyError:
            raise ValueError(f"the NCCL backend has no {op.upper()} reduction") from None

    def _launch(self, run):
        """Run ``run(stream_ptr)`` on our stream after the current stream; return its event."""
        cuda = self._cupy.cuda
        ready = cuda.Event(disable_timing=True)
        ready.record(cuda.get_current_stream())
        self.stream.wait_event(ready)
        run(self.stream.ptr)
        done = cuda.Event(disable_timing=True)
        done.record(self.stream)
        return done

    def _ordered(self, done, async_op: bool):
        if async_op:
            return done
        self._cupy.cuda.get_current_stream().wait_event(done)
        return None

    # ---- collectives (the same signatures as MPIBackend) ------------------------------------
    def all_reduce(self, a, op: str, async_op: bool):
        p, n, t, o = a.data.ptr, a.size, self._dtype(a), self._op(op)
        return self._ordered(self._launch(lambda s: self.comm.allReduce(p, p, n, t, o, s)),
                             async_op)

    def reduce(self, a, op: str, dst: int, async_op: bool):
        p, n, t, o = a.data.ptr, a.size, self._dtype(a), self._op(op)
        return self._ordered(self._launch(lambda s: self.comm.reduce(p, p, n, t, o, dst, s)),
                             async_op)

    def broadcast(self, a, src: int, async_op: bool):
        p, n, t = a.data.ptr, a.size, self._dtype(a)
        return self._ordered(self._launch(lambda s: self.comm.broadcast(p, p, n, t, src, s)),
                             async_op)

    def all_gather(self, out, a, async_op: bool):
        src, dst, n, t = a.data.ptr, out.data.ptr, a.size, self._dtype(a)
        return self._ordered(self._launch(lambda s: self.comm.allGather(src, dst, n, t, s)),
                             async_op)

    def reduce_scatter(self, out, a, op: str, async_op: bool):
        src, dst, n, t, o = a.data.ptr, out.data.ptr, out.size, self._dtype(a), self._op(op)
        return self._ordered(
            self._launch(lambda s: self.comm.reduceScatter(src, dst, n, t, o, s)), async_op)

    def _grouped(self, pairs, async_op: bool):
        """Point-to-point transfers ``(kind, array, peer)`` as one NCCL group."""
        nccl = self._nccl

        def run(s):
            nccl.groupStart()
            try:
                for kind, x, peer in pairs:
                    call = self.comm.send if kind == "send" else self.comm.recv
                    call(x.data.ptr, x.size, self._dtype(x), peer, s)
            finally:
                nccl.groupEnd()
        return self._ordered(self._launch(run), async_op)

    def gather(self, out, a, dst: int, async_op: bool):
        if self.rank != dst:
            return self._grouped([("send", a, dst)], async_op)
        out[dst][...] = a
        return self._grouped([("recv", out[r], r) for r in range(self.size) if r != dst],
                             async_op)

    def scatter(self, out, a, src: int, async_op: bool):
        if self.rank != src:
            return self._grouped([("recv", out, src)], async_op)
        out[...] = a[src]
        return self._grouped([("send", a[r], r) for r in range(self.size) if r != src],
                             async_op)

    def send(self, a, dst: int, tag: int, async_op: bool):
        return self._grouped([("send", a, dst)], async_op)

    def recv(self, a, src: int | None, tag: int, async_op: bool):
        if src is None:
            raise ValueError("the NCCL backend needs recv's src (it cannot receive from any rank)")
        w = self._grouped([("recv", a, src)], async_op)
        return w if async_op else src

    def barrier(self, async_op: bool):
        one = self._cupy.ones(1, self._cupy.float32)
        done = self.all_reduce(one, "sum", True)
        if async_op:
            return done
        done.synchronize()
        return None
