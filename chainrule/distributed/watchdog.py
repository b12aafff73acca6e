"""The watchdog: a failed, dead or hung rank becomes a clear error on every rank, never a hang.

One thread per process owns a private MPI communicator for control messages (short UTF-8 texts):

* a rank that raises (``sys.excepthook``) or whose collective outlives the timeout sends
  ``ABORT`` with its reason to every other rank, waits (a few seconds at most) until each has
  answered, then ends the whole job with ``MPI_Abort``;
* a rank that receives ``ABORT`` prints ``rank R failed: ...`` on its stderr and answers ``ACK``;
* before a timeout is reported, the waiting rank asks the others where they are (``QUERY``):
  their watchdogs answer (``REPLY``) even while their main thread computes, so the error names
  the rank that has not joined the collective (or that does not answer at all: dead or stuck).

A rank killed outright (a signal) is reported by the MPI launcher, which stops the others.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

__all__ = ["Watchdog"]

ABORT, ACK, QUERY, REPLY = 1, 2, 3, 4
_POLL_S = 0.02   # how often the thread looks at the control communicator
_GRACE_S = 5.0   # how long a failing rank waits for the others to print their error


class Watchdog:
    """Guards the collectives of one process (see the module docstring)."""

    def __init__(self, comm, timeout: float) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.ctrl = comm.Dup()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout)
        self.current: tuple | None = None   # (sequence number, op name, start time)
        self.seq = 0
        self._failing: str | None = None    # this rank's reason to stop the job
        self._failed_peers: dict[int, str] = {}
        self._answered: set[int] = set()
        self._replies: dict[int, str] = {}
        self._pending: list = []            # outstanding Isend requests and their buffers
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._prev_hook = sys.excepthook
        sys.excepthook = self._excepthook
        self._thread = threading.Thread(target=self._run, name="chainrule-watchdog", daemon=True)
        self._thread.start()

    # ---- the main thread's side -------------------------------------------------------------
    def enter(self, name: str) -> None:
        """The main thread starts waiting on collective ``name``."""
        self.seq += 1
        self.current = (self.seq, name, time.monotonic())

    def leave(self) -> None:
        self.current = None

    def fail(self, reason: str) -> None:
        """Stop the job: tell every rank why, then abort (never returns)."""
        with self._lock:
            if self._failing is None:
                self._failing = reason
        if threading.current_thread() is self._thread or self._stop.is_set():
            return
        self._thread.join(_GRACE_S + 1.0)  # the thread aborts the job; this is a fallback
        os._exit(1)

    def close(self) -> None:
        """Stop the thread (destroy_process_group); the control communicator is freed."""
        self._stop.set()
        self._thread.join()
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._prev_hook
        self._complete_sends(block=False)
        self.ctrl.Free()

    def _excepthook(self, exc_type, exc, tb) -> None:
        self._prev_hook(exc_type, exc, tb)
        if issubclass(exc_type, KeyboardInterrupt):
            return  # the launcher forwards Ctrl-C to every rank
        text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        self.fail(f"rank {self.rank} failed: {text}")

    # ---- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        failing_since = stopping_since = query_sent = None
        while not self._stop.wait(_POLL_S):
            self._receive()
            now = time.monotonic()
            if self._failing is not None:
                if failing_since is None:
                    failing_since = now
                    print(f"chainrule.distributed: {self._failing}; stopping all "
                          f"{self.size} ranks", file=sys.stderr, flush=True)
                    self._send_all(ABORT, self._failing)
                others = set(range(self.size)) - {self.rank}
                done = others <= (self._answered | set(self._failed_peers))
                if done or now - failing_since > _GRACE_S:
                    self._complete_sends(block=False)
                    self._MPI.COMM_WORLD.Abort(1)
                continue
            if self._failed_peers:  # answered in _receive; the failing rank aborts the job
                if stopping_since is None:
                    stopping_since = now
                elif now - stopping_since > 3 * _GRACE_S:
                    os._exit(1)  # it did not: leave on our own
                continue
            cur = self.current
            if cur is None or now - cur[2] < self.timeout:
                query_sent = None
                continue
            if query_sent is None:
                self._replies.clear()
                self._send_all(QUERY, "")
                query_sent = now
            elif len(self._replies) == self.size - 1 or now - query_sent > 2.0:
                self._fail_timeout(cur)

    def _fail_timeout(self, cur: tuple) -> None:
        seq, name, _ = cur
        late = []
        for r in range(self.size):
            if r == self.rank:
                continue
            where = self._replies.get(r)
            if where is None:
                late.append(f"rank {r} does not answer (it died, exited or is stuck)")
                self._answered.add(r)  # nor will it acknowledge the abort: do not wait for it
            elif where != f"{name} #{seq}":
                late.append(f"rank {r} is {where}" if where.startswith("not ")
                            else f"rank {r} waits in {where}")
        culprit = "; ".join(late) or "every rank has joined (a slow network?)"
        self._failing = (f"rank {self.rank}: {name} (collective #{seq}) timed out after "
                         f"{self.timeout:g} s: {culprit}")

    def _receive(self) -> None:
        MPI = self._MPI
        status = MPI.Status()
        while self.ctrl.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            src, tag = status.Get_source(), status.Get_tag()
            buf = bytearray(status.Get_count(MPI.BYTE))
            self.ctrl.Recv([buf, MPI.BYTE], src, tag)
            text = buf.decode("utf-8", "replace")
            if tag == ABORT:
                self._failed_peers[src] = text
                if self._failing is None:
                    print(f"chainrule.distributed: rank {self.rank} stops: {text}",
                          file=sys.stderr, flush=True)
                    self._send(src, ACK, "")
            elif tag == ACK:
                self._answered.add(src)
            elif tag == QUERY:
                cur = self.current
                where = "not in a collective (running its own code)" if cur is None \
                    else f"{cur[1]} #{cur[0]}"
                self._send(src, REPLY, where)
            elif tag == REPLY:
                self._replies[src] = text
        self._complete_sends(block=False)

    def _send(self, dst: int, tag: int, text: str) -> None:
        buf = bytearray(text.encode())
        self._pending.append((self.ctrl.Isend([buf, self._MPI.BYTE], dst, tag), buf))

    def _send_all(self, tag: int, text: str) -> None:
        for r in range(self.size):
            if r != self.rank:
                self._send(r, tag, text)

    def _complete_sends(self, block: bool) -> None:
        self._pending = [(req, buf) for req, buf in self._pending if not req.Test()]
