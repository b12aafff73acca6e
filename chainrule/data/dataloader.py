"""DataLoader: iterate over a dataset in (shuffled) mini-batches, with PyTorch's samplers and
collation rules."""

from __future__ import annotations

import collections.abc
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from chainrule.data import _worker
from chainrule.data._worker import get_worker_info
from chainrule.data.dataset import Dataset, _batchable
from chainrule.tensor import Tensor

__all__ = [
    "DataLoader", "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
    "WeightedRandomSampler", "BatchSampler", "default_collate", "default_convert",
    "get_worker_info",
]


# ---- samplers -----------------------------------------------------------------------------------
class Sampler:
    """Yields dataset indices; subclasses define ``__iter__`` (and usually ``__len__``)."""

    def __init__(self, data_source: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., len(data_source) - 1 in order."""

    def __init__(self, data_source: Sequence) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _draw_seed(generator) -> int:
    """``torch.empty((), dtype=torch.int64).random_(generator=generator).item()``: a seed in
    [0, 2⁶³) from one 64-bit draw."""
    from chainrule import random

    return int(random.random_default(random.generator_of(generator), 1, np.int64)[0])


class RandomSampler(Sampler):
    """A random permutation of the indices each epoch (or ``num_samples`` draws with
    replacement, 32 at a time, so that any ``num_samples`` costs no memory). Without a
    ``generator`` each epoch seeds a fresh one from the default generator, as PyTorch does."""

    def __init__(self, data_source: Sequence, replacement: bool = False,
                 num_samples: int | None = None, generator=None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError("replacement should be a boolean value, but got replacement="
                            f"{replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError("num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        from chainrule.creation import randint, randperm
        from chainrule.random import Generator

        n = len(self.data_source)
        g = self.generator
        if g is None:
            g = Generator().manual_seed(_draw_seed(None))
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from randint(0, n, (32,), generator=g)._data.tolist()
            yield from randint(0, n, (self.num_samples % 32,), generator=g)._data.tolist()
            return
        for _ in range(self.num_samples // n):
            yield from randperm(n, generator=g)._data.tolist()
        yield from randperm(n, generator=g)._data.tolist()[: self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch (drawn from ``generator``, or the default
    generator)."""

    def __init__(self, indices: Sequence[int], generator=None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        from chainrule.creation import randperm

        for i in randperm(len(self.indices), generator=self.generator)._data.tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices drawn with probabilities proportional to ``weights``
    (``torch.multinomial`` on float64 weights)."""

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True,
                 generator=None) -> None:
        from chainrule.creation import as_tensor

        if (not isinstance(num_samples, int) or isinstance(num_samples, bool)
                or num_samples <= 0):
            raise ValueError("num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError("replacement should be a boolean value, but got "
                             f"replacement={replacement}")
        weights_tensor = as_tensor(weights, dtype="float64")
        if weights_tensor.ndim != 1:
            raise ValueError("weights should be a 1d sequence but given weights have shape "
                             f"{tuple(weights_tensor.shape)}")
        self.weights = weights_tensor
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        from chainrule.creation import multinomial

        drawn = multinomial(self.weights, self.num_samples, self.replacement,
                            generator=self.generator)
        yield from drawn._data.tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError("batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ---- collation ----------------------------------------------------------------------------------
_COLLATE_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or "
                  "lists; found {}")


def _stack_samples(batch: list) -> Tensor:
    """``cr.stack(batch)``; samples on the CPU of one dtype and shape that need no gradient (the
    usual case) are stacked with one NumPy call on their arrays."""
    import chainrule as cr
    from chainrule.tensor import wrap

    first = batch[0]._data
    if type(first) is np.ndarray:
        dtype, shape = first.dtype, first.shape
        arrays = [t._data for t in batch]
        if (all(type(t) is Tensor and not t.requires_grad for t in batch)
                and all(type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
                        for a in arrays)):
            if not shape:
                return wrap(np.stack(arrays))
            return wrap(np.concatenate(arrays).reshape((len(arrays),) + shape))  # (faster)
    return cr.stack(batch, 0)


def default_collate(batch: list) -> Any:
    """Stack a list of samples into a batch: tensors/arrays/numbers become stacked Tensors;
    tuples, lists and dicts are collated element-wise (tuples come back as lists, as in PyTorch)."""
    import chainrule as cr

    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_samples(batch)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind not in "biuf":
            raise TypeError(_COLLATE_ERROR.format(elem.dtype))
        return cr.from_numpy(np.stack(batch))
    if isinstance(elem, np.generic):
        return cr.as_tensor(np.array(batch))
    if isinstance(elem, float):
        return cr.tensor(batch, dtype=cr.float64)
    if isinstance(elem, (bool, numbers.Integral)):
        return cr.tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        out = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        cols = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return cols
        try:
            return type(elem)(cols)
        except TypeError:
            return cols
    raise TypeError(_COLLATE_ERROR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """Convert NumPy arrays inside ``data`` to Tensors (used when batching is disabled)."""
    import chainrule as cr

    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        return cr.from_numpy(data)
    if isinstance(data, np.generic) and data.dtype.kind in "biuf":
        return cr.as_tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return [default_convert(d) for d in data]
    return data


# ---- the loader ---------------------------------------------------------------------------------
class DataLoader:
    """Iterate over ``dataset`` in batches: ``for x, y in DataLoader(ds, batch_size=32,
    shuffle=True, generator=cr.Generator().manual_seed(0))``.

    With ``num_workers=0`` batches are built in this process; with ``num_workers > 0`` by that
    many worker processes (``multiprocessing``, PyTorch's semantics: ``prefetch_factor`` batches
    in flight per worker, results in sampler order unless ``in_order=False``,
    ``persistent_workers``, ``worker_init_fn``, ``get_worker_info()``, seeds
    ``base_seed + worker_id``, worker errors re-raised here with the worker's traceback).
    A ``TensorDataset`` (or a ``Subset`` of one) with the default collation is batched with one
    fancy-index per tensor instead of stacking samples one by one.
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True) -> None:
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        from chainrule.data.dataset import IterableDataset

        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle:
                raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler "
                                 "and batch_sampler options")
            sampler = _Endless()
        if sampler is None:
            sampler = (RandomSampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.multiprocessing_context = multiprocessing_context
        self._iterator = None  # the persistent workers' iterator
        self._IterableDataset_len_called = None  # len(dataset) when len(self) was asked
        self._auto_collation = batch_sampler is not None
        self._fast = collate_fn is None and self._auto_collation and _batchable(dataset)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn
        _worker.check_worker_number(num_workers)

    @property
    def multiprocessing_context(self):
        """The ``multiprocessing`` context the workers start in (None: the default one, 'fork'
        on Linux)."""
        return self._mp_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, context) -> None:
        import multiprocessing

        if context is not None:
            if self.num_workers == 0:
                raise ValueError("multiprocessing_context can only be used with multi-process "
                                 "loading (num_workers > 0), but got "
                                 f"num_workers={self.num_workers}")
            if isinstance(context, str):
                methods = multiprocessing.get_all_start_methods()
                if context not in methods:
                    raise ValueError("multiprocessing_context option should specify a valid "
                                     f"start method in {methods!r}, but got "
                                     f"multiprocessing_context={context!r}")
                context = multiprocessing.get_context(context)
            if not isinstance(context, multiprocessing.context.BaseContext):
                raise TypeError("multiprocessing_context option should be a valid context "
                                "object or a string specifying the start method, but got "
                                f"multiprocessing_context={context}")
        self._mp_context = context

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers > 0:
            if self.persistent_workers:
                if self._iterator is None:
                    self._iterator = self._start_workers()
                else:
                    self._iterator._reset(self)  # same workers and base seed, as PyTorch
                return self._iterator
            return self._start_workers()
        self._base_seed = _draw_seed(self.generator)  # PyTorch draws it for its workers
        return self._batches(self._IterableDataset_len_called)

    def _start_workers(self):
        _worker.check_worker_number(self.num_workers)
        return _worker.MultiProcessingIter(self, _draw_seed(self.generator))

    def _index_source(self):
        """What the workers' tasks are drawn from: the batch sampler (auto-collation), the
        sampler, or for an IterableDataset endless placeholders of the batch's length."""
        import itertools

        if self._iterable:
            return itertools.repeat([None] * self.batch_size if self._auto_collation else None)
        return self.batch_sampler if self._auto_collation else self.sampler

    def _batches(self, len_called: int | None = None) -> Iterator[Any]:
        if self._iterable:
            yielded = 0
            for batch in self._stream():
                yielded += 1
                _worker.warn_past_length(self.dataset, len_called, yielded, 0)
                yield batch
            return
        fetch = _worker.fetch_map
        args = (self.dataset, self._auto_collation, self._fast, self.collate_fn)
        for index in (self.batch_sampler if self._auto_collation else self.sampler):
            yield fetch(*args, index)

    def _stream(self) -> Iterator[Any]:
        """An IterableDataset's samples, batched in the order they come."""
        it = iter(self.dataset)
        if not self._auto_collation:
            for sample in it:
                yield self.collate_fn(sample)
            return
        batch = []
        for sample in it:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError when the stream has no length, as in torch
            self._IterableDataset_len_called = n  # torch then warns past it (per batch!)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler) if self._auto_collation else len(self.sampler)


class _Endless(Sampler):
    """The placeholder sampler of an IterableDataset (never iterated)."""

    def __init__(self) -> None:
        pass

    def __iter__(self):
        raise TypeError("an IterableDataset has no sampler")

