"""Datasets: indexable collections of samples (PyTorch's ``torch.utils.data`` datasets)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from chainrule import devices
from chainrule.tensor import Tensor, wrap

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
           "IterableDataset", "ChainDataset", "StackDataset"]


class Dataset:
    """An indexable collection of samples: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are rows of tensors that share their first dimension: ``ds[i] == (a[i], b[i])``."""

    def __init__(self, *tensors: Tensor) -> None:
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"TensorDataset: every argument must be a Tensor, got {type(t).__name__}"
                )
            if t.ndim == 0:
                raise ValueError("TensorDataset: tensors must have at least one dimension")
        if tensors and any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(f"TensorDataset: size mismatch between tensors (shapes {shapes})")
        self.tensors = tuple(tensors)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0] if self.tensors else 0

    def _batch(self, indices):
        """One fancy-index per tensor: the collated batch for ``indices`` (an int array)."""
        out = []
        for t in self.tensors:
            idx = indices if devices.is_cpu_array(t._data) else devices.asarray_on(indices, t._data)
            out.append(t[idx] if t.requires_grad else wrap(t._data[idx]))
        return tuple(out)


def _batchable(dataset) -> bool:
    """True if ``dataset`` builds a whole batch with one fancy-index (TensorDataset fast path)."""
    if isinstance(dataset, Subset):
        return _batchable(dataset.dataset)
    # a subclass that overrides __getitem__ (e.g. to transform samples) takes the general path
    return isinstance(dataset, TensorDataset) and \
        type(dataset).__getitem__ is TensorDataset.__getitem__


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices) if not isinstance(indices, list) else indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)

    def _batch(self, indices):
        import numpy as np

        mapped = np.asarray(self.indices, dtype=np.int64)[indices]
        return self.dataset._batch(mapped)


class ConcatDataset(Dataset):
    """The concatenation of several datasets."""

    def __init__(self, datasets) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("ConcatDataset: absolute value of index should not exceed "
                                 f"dataset length {len(self)}")
            idx = len(self) + idx
        if idx >= len(self):
            raise IndexError(f"ConcatDataset: index {idx} out of range for length {len(self)}")
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        return self.datasets[which][idx - start]


def random_split(dataset: Dataset, lengths: Sequence[int | float],
                 generator=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random subsets of the given lengths or fractions."""
    from chainrule.creation import randperm

    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0) \
            and sum(lengths) <= 1 + 1e-9:
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):  # remainder spread round-robin, as PyTorch does
            counts[i % len(counts)] += 1
        lengths = counts
    for x in lengths:
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise ValueError(f"random_split: lengths must be non-negative ints or fractions "
                             f"summing to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError("random_split: sum of input lengths does not equal the length of the "
                         f"input dataset ({sum(lengths)} != {n})")
    perm = randperm(n, generator=generator)._data.tolist()
    out, offset = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[offset:offset + length]))
        offset += length
    return out


class IterableDataset(Dataset):
    """A stream of samples: subclasses define ``__iter__`` (a DataLoader batches what it yields,
    in order; samplers do not apply)."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __add__(self, other: IterableDataset) -> ChainDataset:
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """Iterable datasets one after the other."""

    def __init__(self, datasets) -> None:
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise AssertionError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


class StackDataset(Dataset):
    """Samples of several datasets side by side: ``StackDataset(a, b)[i] == (a[i], b[i])``, or
    a dict with keyword arguments."""

    def __init__(self, *args: Dataset, **kwargs: Dataset) -> None:
        if args and kwargs:
            raise ValueError("Supported either ``tuple``- (via ``args``) or``dict``- (via "
                             "``kwargs``) like input/output, but both types are given.")
        parts = list(args) or list(kwargs.values())
        if not parts:
            raise ValueError("At least one dataset should be passed")
        self._length = len(parts[0])
        if any(len(p) != self._length for p in parts):
            raise ValueError("Size mismatch between datasets")
        self.datasets = args if args else kwargs

    def __getitem__(self, index: int):
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __len__(self) -> int:
        return self._length
