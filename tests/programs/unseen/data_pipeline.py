"""Data pipeline utilities: a map-style Dataset with a collate_fn, Subset/ConcatDataset,
WeightedRandomSampler, BatchSampler, an IterableDataset, activation checkpointing and a
ParameterList model."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
    WeightedRandomSampler,
)


class PointsDataset(Dataset):
    def __init__(self, n, shift, generator):
        self.x = torch.randn(n, 4, generator=generator) + shift
        self.y = (self.x.sum(1) > shift * 4).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return {"features": self.x[idx], "label": self.y[idx], "index": idx}


def collate(batch):
    return (
        torch.stack([b["features"] for b in batch]),
        torch.tensor([int(b["label"]) for b in batch]),
        [b["index"] for b in batch],
    )


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        g = torch.Generator().manual_seed(99)
        for _ in range(self.n):
            x = torch.rand(4, generator=g)
            yield x, int(x.sum() > 2)


class ResidualMLP(nn.Module):
    def __init__(self, dim=4, hidden=16, depth=3, num_classes=2):
        super().__init__()
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.randn(hidden, dim if i == 0 else hidden) * 0.3)
                for i in range(depth)
            ]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(hidden)) for _ in range(depth)])
        self.head = nn.Linear(hidden, num_classes)

    def block(self, h, i):
        return torch.tanh(F.linear(h, self.weights[i], self.biases[i]))

    def forward(self, x):
        h = self.block(x, 0)
        for i in range(1, len(self.weights)):
            h = h + checkpoint(self.block, h, i, use_reentrant=False)
        return self.head(h)


def main():
    torch.manual_seed(123)
    g = torch.Generator().manual_seed(5)
    a, b = PointsDataset(30, 0.0, g), PointsDataset(20, 1.0, g)
    full = ConcatDataset([a, b])
    train = Subset(full, list(range(0, 50, 2)) + list(range(1, 50, 4)))
    labels = torch.tensor([int(full[i]["label"]) for i in train.indices])
    class_weight = 1.0 / torch.bincount(labels).float()
    sampler = WeightedRandomSampler(class_weight[labels], num_samples=24, replacement=True)
    loader = DataLoader(train, batch_size=8, sampler=sampler, collate_fn=collate, drop_last=True)
    model = ResidualMLP()
    opt = torch.optim.NAdam(model.parameters(), lr=1e-2)
    for epoch in range(2):
        for step, (x, y, idx) in enumerate(loader):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            print(f"epoch {epoch} step {step} loss {loss.item():.6f} first {idx[0]}")
    batches = list(BatchSampler(SequentialSampler(range(10)), batch_size=4, drop_last=False))
    print("batches", batches)
    stream = DataLoader(Stream(10), batch_size=5)
    opt2 = torch.optim.RAdam(
        model.parameters(), lr=1e-2, decoupled_weight_decay=True, weight_decay=0.01
    )
    for x, y in stream:
        x = torch.cat([x, x[:, :0]], 1)
        loss = F.cross_entropy(model(x), y)
        opt2.zero_grad()
        loss.backward()
        opt2.step()
        print(f"stream loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
