"""``torch.multiprocessing.spawn``: run ``fn(i, *args)`` for ``i`` in ``range(nprocs)``, each in
its own process, and report the first failure in the parent (torch's semantics)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import sys
import traceback

__all__ = ["spawn", "start_processes", "ProcessContext", "SpawnContext", "ProcessException",
           "ProcessRaisedException", "ProcessExitedException"]


class ProcessException(Exception):
    """A worker process failed: ``error_index`` (its ``i``) and ``pid``."""

    def __init__(self, msg: str, error_index: int, pid: int) -> None:
        super().__init__(msg)
        self.msg, self.error_index, self.pid = msg, error_index, pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """The worker's ``fn`` raised: the message holds its traceback."""


class ProcessExitedException(ProcessException):
    """The worker exited with a non-zero code (``exit_code``) or a signal (``signal_name``)."""

    def __init__(self, msg: str, error_index: int, error_pid: int, exit_code: int,
                 signal_name: str | None = None) -> None:
        super().__init__(msg, error_index, error_pid)
        self.exit_code, self.signal_name = exit_code, signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code,
                            self.signal_name)


def _wrap(fn, i: int, args: tuple, error_queue) -> None:
    """The worker's body: ``fn(i, *args)``; a raised exception goes to the parent as text."""
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass  # the parent is ending the workers
    except Exception:  # noqa: BLE001  (reported to the parent, which raises it)
        error_queue.put(traceback.format_exc())
        sys.exit(1)


class ProcessContext:
    """The running workers (``spawn(..., join=False)`` returns it)."""

    def __init__(self, processes: list, error_queues: list) -> None:
        self.processes, self.error_queues = processes, error_queues
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}

    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.processes]

    def join(self, timeout: float | None = None, grace_period: float | None = None) -> bool:
        """Wait (up to ``timeout`` seconds) for a worker to end. True once all ended cleanly;
        False while some still run; on a failure, ends the others and raises."""
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(self.sentinels.keys(), timeout=timeout)
        error_index = None
        for sentinel in ready:
            index = self.sentinels.pop(sentinel)
            process = self.processes[index]
            process.join()
            if process.exitcode != 0:
                error_index = index
                break
        if error_index is None:
            return not self.sentinels
        for p in self.processes:  # end the others
            if p.is_alive():
                p.terminate()
            p.join(grace_period)
        failed = self.processes[error_index]
        queue = self.error_queues[error_index]
        if queue.empty():
            code = failed.exitcode
            if code < 0:
                name = signal.Signals(-code).name
                raise ProcessExitedException(
                    f"process {error_index} terminated with signal {name}",
                    error_index=error_index, error_pid=failed.pid, exit_code=code,
                    signal_name=name)
            raise ProcessExitedException(
                f"process {error_index} terminated with exit code {code}",
                error_index=error_index, error_pid=failed.pid, exit_code=code)
        original = queue.get()
        msg = f"\n\n-- Process {error_index} terminated with the following error:\n{original}"
        raise ProcessRaisedException(msg, error_index, failed.pid)


class SpawnContext(ProcessContext):
    """torch's older name of :class:`ProcessContext`."""


def start_processes(fn, args=(), nprocs: int = 1, join: bool = True, daemon: bool = False,
                    start_method: str = "spawn"):
    """``fn(i, *args)`` in ``nprocs`` processes made by ``start_method``; with ``join`` waits for
    all (raising the first failure), else returns the :class:`ProcessContext`."""
    if not callable(fn):
        raise TypeError(f"start_processes: fn must be callable, got {type(fn).__name__}")
    if not isinstance(args, tuple):
        raise TypeError(f"start_processes: args must be a tuple, got {type(args).__name__}")
    ctx = multiprocessing.get_context(start_method)
    processes, queues = [], []
    for i in range(nprocs):
        queue = ctx.SimpleQueue()
        p = ctx.Process(target=_wrap, args=(fn, i, args, queue), daemon=daemon)
        p.start()
        processes.append(p)
        queues.append(queue)
    context = ProcessContext(processes, queues)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args=(), nprocs: int = 1, join: bool = True, daemon: bool = False,
          start_method: str = "spawn"):
    """:func:`start_processes` (torch's ``spawn``; ``start_method`` other than "spawn" is
    accepted, as torch does with a warning there)."""
    return start_processes(fn, args, nprocs, join, daemon, start_method=start_method)
