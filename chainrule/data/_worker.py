"""Multi-process data loading: the DataLoader's worker processes (PyTorch's semantics).

The main process draws index batches from the sampler and sends them round-robin to the workers
through one ``multiprocessing`` queue per worker; each worker (its own copy of the dataset, its
random streams seeded with ``base_seed + worker_id``) fetches and collates the batch and puts
``(task index, batch)`` on one shared result queue; the main process hands the batches out in
sampler order (or as they come with ``in_order=False``), keeping ``prefetch_factor`` tasks per
worker in flight. Tensors travel pickled through the queues (a reducer registered with
``multiprocessing``'s own pickler, used only between the loader and its workers).
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import random
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

MP_STATUS_CHECK_INTERVAL = 5.0  # seconds between liveness checks while waiting on a queue

_exiting = False  # set at interpreter exit: the daemon workers are then ended by multiprocessing

# The queues of every live worker pool, held from here so that a loader iterator caught in a
# reference cycle (e.g. through the traceback of a worker's error) still reaches its workers
# when the collector finalizes it: a cycle's weak references are cleared before finalizers run,
# which would close the queues (multiprocessing finalizes a queue through a weak reference).
_live_queues: dict[int, tuple] = {}


def _mark_exiting() -> None:
    global _exiting
    _exiting = True


atexit.register(_mark_exiting)


# ---- what a worker knows about itself -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """The current worker: ``id`` (0 .. num_workers - 1), ``num_workers``, the ``seed`` of its
    random streams and its own copy of the ``dataset``."""

    id: int
    num_workers: int
    seed: int
    dataset: Any
    rng: Any = None
    worker_method: str | None = "multiprocessing"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its :class:`WorkerInfo`; None in the main process."""
    return _worker_info


# ---- messages -----------------------------------------------------------------------------------
def warn_past_length(dataset, len_called: int | None, yielded: int, workers: int,
                     stacklevel: int = 3) -> None:
    """torch's warning when an IterableDataset gave more than the ``len(dataset)`` that
    ``len(loader)`` reported (torch counts the loader's items, batches included, against it)."""
    if len_called is None or yielded <= len_called:
        return
    msg = (f"Length of IterableDataset {dataset} was reported to be {len_called}(when accessing "
           f"len(dataloader)), but {yielded} samples have been fetched. ")
    if workers > 0:
        msg += ("For multiprocessing data-loading, this could be caused by not properly "
                "configuring the IterableDataset replica at each worker. Please see "
                "https://pytorch.org/docs/stable/data.html#torch.utils.data.IterableDataset for "
                "examples.")
    warnings.warn(msg, UserWarning, stacklevel=stacklevel)


@dataclass(frozen=True)
class _IterableStop:
    """A worker's IterableDataset copy is exhausted."""

    worker_id: int


@dataclass(frozen=True)
class _Resume:
    """Start a new epoch with the same (persistent) workers."""

    seed: Any = None


class _KeyErrorMessage(str):
    """A KeyError's message shown as written (KeyError shows its argument's repr)."""

    def __repr__(self) -> str:
        return str(self)


class ExceptionWrapper:
    """An exception caught in a worker, carried to the main process as its type and traceback
    text; ``reraise`` raises the same type there with the worker's traceback in the message."""

    def __init__(self, exc_info=None, where: str = "in background") -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        elif getattr(self.exc_type, "message", None):
            raise self.exc_type(message=msg)
        try:
            exc = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        try:
            raise exc
        finally:
            del exc  # no frame -> exception -> traceback -> frame cycle: the loader's iterator
            # (and its workers) go as soon as the caller drops the exception


# ---- tensors through the queues -----------------------------------------------------------------
def _rebuild_tensor(cls, array, requires_grad: bool, device: str | None):
    from chainrule.tensor import init_leaf

    t = cls.__new__(cls)
    init_leaf(t, array)
    if device is not None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _reduce_tensor(t):
    from chainrule import devices

    if t.requires_grad and not t.is_leaf:
        raise RuntimeError(
            "Cowardly refusing to serialize non-leaf tensor which requires_grad, since autograd "
            "does not support crossing process boundaries.  If you just want to transfer the "
            "data, call detach() on the tensor before serializing (e.g., putting it on the "
            "queue).")
    data = t._data
    device = None
    if not devices.is_cpu_array(data):
        device = str(t.device)
        data = data.get()
    return _rebuild_tensor, (type(t), data, bool(t.requires_grad), device)


_registered = False


def register_tensor_reducer() -> None:
    """Let ``multiprocessing``'s pickler (queues, pipes, spawned process arguments) carry
    chainrule tensors; ordinary ``pickle`` still refuses them."""
    global _registered
    if _registered:
        return
    from multiprocessing.reduction import ForkingPickler

    from chainrule.nn.parameter import Buffer, Parameter
    from chainrule.tensor import Tensor

    for cls in (Tensor, Parameter, Buffer):
        ForkingPickler.register(cls, _reduce_tensor)
    _registered = True


# ---- fetching one batch -------------------------------------------------------------------------
def fetch_map(dataset, auto_collation: bool, fast: bool, collate_fn, index):
    """The batch of a map-style dataset for ``index`` (a list of indices, or one index without
    auto-collation)."""
    if not auto_collation:
        return collate_fn(dataset[index])
    if fast:
        return list(dataset._batch(np.asarray(index, dtype=np.int64)))
    getitems = getattr(dataset, "__getitems__", None)
    if getitems:
        return collate_fn(getitems(index))
    return collate_fn([dataset[i] for i in index])


class _MapFetcher:
    def __init__(self, dataset, auto_collation, fast, collate_fn, drop_last) -> None:
        self.args = (dataset, auto_collation, fast, collate_fn)

    def fetch(self, index):
        return fetch_map(*self.args, index)


class _IterableFetcher:
    """Batches from this worker's own iterator over its IterableDataset copy; StopIteration
    once it is exhausted (or the last batch is short and ``drop_last``)."""

    def __init__(self, dataset, auto_collation, fast, collate_fn, drop_last) -> None:
        self.it = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.it))
        data = []
        for _ in index:
            try:
                data.append(next(self.it))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


# ---- the worker process -------------------------------------------------------------------------
def _seed_worker(base_seed: int, worker_id: int) -> int:
    """Seed this worker's random streams as PyTorch does: Python's ``random`` and chainrule's
    default generator with ``base_seed + worker_id``, NumPy's global RNG with a SeedSequence of
    (worker_id, base_seed's two 32-bit halves)."""
    import chainrule as cr

    seed = base_seed + worker_id
    random.seed(seed)
    cr.manual_seed(seed)
    mask = 0xFFFFFFFF
    np.random.seed(np.random.SeedSequence(
        [worker_id, base_seed & mask, base_seed >> 32, 0]).generate_state(4))
    return seed


def _parent_alive(parent: int) -> bool:
    return os.getppid() == parent


def worker_loop(iterable: bool, dataset, index_queue, data_queue, done_event,
                auto_collation: bool, fast: bool, collate_fn, drop_last: bool, base_seed: int,
                init_fn, worker_id: int, num_workers: int) -> None:
    """The body of worker ``worker_id``: fetch the batches named on ``index_queue`` until told
    to stop (``None``), the main process is gone, or it is interrupted."""
    global _worker_info
    parent = os.getppid()
    try:
        register_tensor_reducer()
        try:
            from chainrule._runtime import set_num_threads

            set_num_threads(1)
        except Exception:  # noqa: BLE001  (a BLAS without thread control: nothing to limit)
            pass
        seed = _seed_worker(base_seed, worker_id)
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed,
                                  dataset=dataset)
        make = _IterableFetcher if iterable else _MapFetcher
        fetcher_args = (dataset, auto_collation, fast, collate_fn, drop_last)
        fetcher = None
        init_error = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make(*fetcher_args)
        except Exception:  # noqa: BLE001  (sent to the main process with the first task)
            init_error = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
        ended = False  # this worker's IterableDataset copy is exhausted: wait for None
        while _parent_alive(parent):
            try:
                task = index_queue.get(timeout=MP_STATUS_CHECK_INTERVAL)
            except queue.Empty:
                continue
            if isinstance(task, _Resume):
                data_queue.put((task, None))
                ended = False
                fetcher = make(*fetcher_args)
                continue
            if task is None:
                break
            if done_event.is_set() or ended:
                continue
            idx, index = task
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    if not iterable:
                        data = ExceptionWrapper(
                            where=f"in DataLoader worker process {worker_id}")
                    else:
                        data = _IterableStop(worker_id)
                        ended = True
                except Exception:  # noqa: BLE001  (re-raised in the main process)
                    data = ExceptionWrapper(where=f"in DataLoader worker process {worker_id}")
            data_queue.put((idx, data))
            del data, idx, index, task
    except KeyboardInterrupt:
        pass  # the main process gets it too
    if done_event.is_set() or not _parent_alive(parent):
        # results nobody will read must not hold up this process's exit (a full pipe whose
        # reading end the other workers keep open would block the queue's feeder thread)
        data_queue.cancel_join_thread()
        data_queue.close()


# ---- the main process's side --------------------------------------------------------------------
class MultiProcessingIter:
    """The iterator of a DataLoader with ``num_workers > 0``."""

    def __init__(self, loader, base_seed: int) -> None:
        import multiprocessing

        register_tensor_reducer()
        self._iterable = loader._iterable
        self._index_source = loader._index_source()
        self._auto_collation = loader._auto_collation
        self._num_workers = loader.num_workers
        self._prefetch = loader.prefetch_factor
        self._in_order = loader.in_order
        self._persistent = loader.persistent_workers
        self._timeout = loader.timeout
        self._base_seed = base_seed
        self._num_yielded = 0
        self._shutdown = False
        self._workers: list = []
        self._index_queues: list = []
        self._active = [True] * self._num_workers
        ctx = loader.multiprocessing_context or multiprocessing.get_context()
        self._result_queue = ctx.Queue()
        self._done_event = ctx.Event()
        for i in range(self._num_workers):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()  # never block the program's exit on a feeder
            w = ctx.Process(target=worker_loop, args=(
                self._iterable, loader.dataset, index_queue, self._result_queue,
                self._done_event, self._auto_collation, loader._fast, loader.collate_fn,
                loader.drop_last, base_seed, loader.worker_init_fn, i, self._num_workers))
            w.daemon = True
            w.start()
            self._index_queues.append(index_queue)
            self._workers.append(w)
        _live_queues[id(self)] = (self._index_queues, self._result_queue)
        self._reset(loader, first=True)

    def _reset(self, loader, first: bool = False) -> None:
        """A new epoch: a fresh pass of the sampler, the task counters back to 0 and (with
        persistent workers) each worker told to start over; then the first tasks sent."""
        self._sampler_iter = iter(self._index_source) if first else \
            iter(loader._index_source())
        self._num_yielded = 0
        self._dataset, self._len_called = loader.dataset, loader._IterableDataset_len_called
        self._send_idx = 0  # the next task to send
        self._rcvd_idx = 0  # the next task to hand out
        self._task_info: dict[int, tuple] = {}  # task -> (worker,) or (worker, data)
        self._outstanding = 0
        self._active = [True] * self._num_workers
        self._worker_tasks = [0] * self._num_workers
        self._cycle = itertools.cycle(range(self._num_workers))
        if not first:
            for q in self._index_queues:
                q.put(_Resume())
            pending = self._num_workers
            while pending:
                idx, _ = self._get()
                if isinstance(idx, _Resume):
                    pending -= 1
        for _ in range(self._prefetch * self._num_workers):
            self._put_task()

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self._index_source)

    def __getstate__(self):
        raise NotImplementedError(f"{type(self).__name__} cannot be pickled")

    def __next__(self):
        data = self._next_data()
        self._num_yielded += 1
        if self._iterable:
            warn_past_length(self._dataset, self._len_called, self._num_yielded,
                             self._num_workers, stacklevel=3)
        return data

    def _next_data(self):
        while True:
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info is not None:
                    if len(info) == 2 or self._active[info[0]]:
                        break
                    del self._task_info[self._rcvd_idx]  # its worker is exhausted
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self._shutdown_workers()
                raise StopIteration
            info = self._task_info[self._rcvd_idx]
            if len(info) == 2:  # arrived earlier, out of order
                del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
                return self._process(info[1], info[0])
            idx, data = self._get()
            self._outstanding -= 1
            if isinstance(data, _IterableStop):
                self._active[data.worker_id] = False
                if not self._persistent:
                    self._index_queues[data.worker_id].put(None)
                self._put_task()
                continue
            if idx != self._rcvd_idx:
                if not self._in_order:
                    worker = self._task_info.pop(idx)[0]
                    return self._process(data, worker)
                self._task_info[idx] += (data,)
                continue
            worker = self._task_info.pop(idx)[0]
            self._rcvd_idx += 1
            return self._process(data, worker)

    def _process(self, data, worker: int):
        self._worker_tasks[worker] -= 1
        self._put_task()
        if isinstance(data, ExceptionWrapper):
            data.reraise()
        return data

    def _put_task(self) -> None:
        """Send the sampler's next index batch to the next active worker (round-robin; with
        ``in_order=False`` skipping workers that already hold their share of tasks)."""
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        share = self._prefetch * self._num_workers
        for _ in range(self._num_workers):
            worker = next(self._cycle)
            if self._active[worker] and (
                    self._in_order or self._worker_tasks[worker] < share // sum(self._active)):
                break
        else:
            return
        self._index_queues[worker].put((self._send_idx, index))
        self._task_info[self._send_idx] = (worker,)
        self._worker_tasks[worker] += 1
        self._outstanding += 1
        self._send_idx += 1

    def _try_get(self, timeout: float):
        try:
            return True, self._result_queue.get(timeout=timeout)
        except queue.Empty as e:
            dead = [w for i, w in enumerate(self._workers)
                    if self._active[i] and not w.is_alive()]
            if dead:
                for i, w in enumerate(self._workers):
                    if w in dead:
                        self._active[i] = False
                pids = ", ".join(str(w.pid) for w in dead)
                raise RuntimeError(
                    f"DataLoader worker (pid(s) {pids}) exited unexpectedly") from e
            return False, None

    def _get(self):
        if self._timeout > 0:
            ok, data = self._try_get(self._timeout)
            if not ok:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            return data
        while True:
            ok, data = self._try_get(MP_STATUS_CHECK_INTERVAL)
            if ok:
                return data

    def _shutdown_workers(self) -> None:
        """Tell every worker to stop, wait for it, and end any that does not."""
        if _exiting or self._shutdown:
            return
        self._shutdown = True
        try:
            self._done_event.set()
            for i, q in enumerate(self._index_queues):
                if self._persistent or self._active[i]:
                    q.put(None)
                    self._active[i] = False
            for w in self._workers:
                w.join(timeout=MP_STATUS_CHECK_INTERVAL)
            for q in self._index_queues:
                q.cancel_join_thread()
                q.close()
        finally:
            for w in self._workers:
                if w.is_alive():
                    w.terminate()
                    w.join(timeout=MP_STATUS_CHECK_INTERVAL)
            _live_queues.pop(id(self), None)

    def __del__(self) -> None:
        if getattr(self, "_workers", None) is not None:
            self._shutdown_workers()


def check_worker_number(num_workers: int) -> None:
    """Warn, as PyTorch does, when more workers are asked for than this process has CPUs."""
    if not num_workers:
        return
    try:
        cpus = len(os.sched_getaffinity(0))
        checked = True
    except AttributeError:
        cpus = os.cpu_count()
        checked = False
    if cpus is not None and num_workers <= cpus:
        return
    if cpus is None:
        suggestion = ("DataLoader is not able to compute a suggested max number of worker in "
                      "current system.")
    else:
        suggestion = (f"Our suggested max number of worker in current system is {cpus}"
                      f"{'' if checked else ' (`cpuset` is not taken into account)'}, which is "
                      "smaller than what this DataLoader is going to create.")
    warnings.warn(
        f"This DataLoader will create {num_workers} worker processes in total. {suggestion} "
        "Please be aware that excessive worker creation might get DataLoader running slow or "
        "even freeze, lower the worker number to avoid potential slowness/freeze if necessary.",
        stacklevel=3)
