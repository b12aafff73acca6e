"""Datasets and data loading (PyTorch's ``torch.utils.data``): ``cr.data.DataLoader`` etc."""

from __future__ import annotations

from chainrule.data import datasets
from chainrule.data.dataloader import (
    BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
    WeightedRandomSampler, default_collate, default_convert, get_worker_info,
)
from chainrule.data.distributed import DistributedSampler
from chainrule.data.dataset import (
    ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset, Subset, TensorDataset,
    random_split,
)

__all__ = [
    "Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "DataLoader",
    "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
    "WeightedRandomSampler", "BatchSampler", "default_collate", "default_convert", "datasets",
    "DistributedSampler", "IterableDataset", "ChainDataset", "StackDataset", "get_worker_info",
]
