"""Collectives on host arrays through MPI (mpi4py), each guarded by the watchdog.

Every method takes contiguous NumPy arrays and returns an ``MPI.Request`` (``async_op``) or
``None`` once the blocking call has finished. Blocking calls use MPI's blocking collectives
(their tuned algorithms), non-blocking ones MPI-3's ``I*`` variants.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MPIBackend", "mpi_op"]


_MPI_OPS: dict = {}


def mpi_op(op: str):
    """The MPI reduction for ``op`` ("sum", "product", "min", "max", "band", "bor", "bxor")."""
    if not _MPI_OPS:
        from mpi4py import MPI

        _MPI_OPS.update(sum=MPI.SUM, product=MPI.PROD, min=MPI.MIN, max=MPI.MAX, band=MPI.BAND,
                        bor=MPI.BOR, bxor=MPI.BXOR)
    return _MPI_OPS[op]


class MPIBackend:
    """One MPI communicator (a duplicate of the world's) and the collectives on it."""

    name = "mpi"

    def __init__(self, comm) -> None:
        from mpi4py import MPI

        self.comm = comm.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._in_place = MPI.IN_PLACE
        self._hash = np.empty(1, np.int64)
        self._hashes = np.empty(self.size, np.int64)

    def close(self) -> None:
        self.comm.Free()

    def all_reduce(self, a: np.ndarray, op: str, async_op: bool):
        o = mpi_op(op)
        if async_op:
            return self.comm.Iallreduce(self._in_place, a, o)
        self.comm.Allreduce(self._in_place, a, o)
        return None

    def reduce(self, a: np.ndarray, op: str, dst: int, async_op: bool):
        from mpi4py import MPI

        send = MPI.IN_PLACE if self.rank == dst else a
        recv = a if self.rank == dst else None
        o = mpi_op(op)
        if async_op:
            return self.comm.Ireduce(send, recv, o, root=dst)
        self.comm.Reduce(send, recv, o, root=dst)
        return None

    def broadcast(self, a: np.ndarray, src: int, async_op: bool):
        if async_op:
            return self.comm.Ibcast(a, root=src)
        self.comm.Bcast(a, root=src)
        return None

    def all_gather(self, out: np.ndarray, a: np.ndarray, async_op: bool):
        if async_op:
            return self.comm.Iallgather(a, out)
        self.comm.Allgather(a, out)
        return None

    def reduce_scatter(self, out: np.ndarray, a: np.ndarray, op: str, async_op: bool):
        o = mpi_op(op)
        if async_op:
            return self.comm.Ireduce_scatter_block(a, out, o)
        self.comm.Reduce_scatter_block(a, out, o)
        return None

    def gather(self, out: np.ndarray | None, a: np.ndarray, dst: int, async_op: bool):
        if async_op:
            return self.comm.Igather(a, out, root=dst)
        self.comm.Gather(a, out, root=dst)
        return None

    def scatter(self, out: np.ndarray, a: np.ndarray | None, src: int, async_op: bool):
        if async_op:
            return self.comm.Iscatter(a, out, root=src)
        self.comm.Scatter(a, out, root=src)
        return None

    def send(self, a: np.ndarray, dst: int, tag: int, async_op: bool):
        if async_op:
            return self.comm.Isend(a, dst, tag)
        self.comm.Send(a, dst, tag)
        return None

    def recv(self, a: np.ndarray, src: int | None, tag: int, async_op: bool):
        from mpi4py import MPI

        source = MPI.ANY_SOURCE if src is None else src
        if async_op:
            return self.comm.Irecv(a, source, tag)
        status = MPI.Status()
        self.comm.Recv(a, source, tag, status)
        return status.Get_source()

    def barrier(self, async_op: bool):
        if async_op:
            return self.comm.Ibarrier()
        self.comm.Barrier()
        return None

    def all_gather_hash(self, h: int) -> list:
        """Every rank's ``h`` (a hash, fits int64), as a list: the quick metadata check."""
        self._hash[0] = h
        self.comm.Allgather(self._hash, self._hashes)
        return self._hashes.tolist()

    def all_gather_small(self, row: np.ndarray) -> np.ndarray:
        """Every rank's ``row`` (int64), stacked: the metadata check before each collective."""
        out = np.empty((self.size, row.size), row.dtype)
        self.comm.Allgather(row, out)
        return out
