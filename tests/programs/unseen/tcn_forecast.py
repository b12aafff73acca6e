"""Temporal convolutional network forecasting a noisy sine: dilated causal Conv1d, weight_norm,
GroupNorm, depthwise conv, Huber loss, CosineAnnealingLR."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm


class Chomp1d(nn.Module):
    def __init__(self, chomp_size):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, : -self.chomp_size].contiguous()


class TemporalBlock(nn.Module):
    def __init__(self, n_inputs, n_outputs, kernel_size, dilation, dropout=0.1):
        super().__init__()
        padding = (kernel_size - 1) * dilation
        self.conv1 = weight_norm(
            nn.Conv1d(n_inputs, n_outputs, kernel_size, padding=padding, dilation=dilation)
        )
        self.chomp1 = Chomp1d(padding)
        self.norm1 = nn.GroupNorm(2, n_outputs)
        self.dw = nn.Conv1d(n_outputs, n_outputs, 3, padding=0, groups=n_outputs)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None

    def forward(self, x):
        out = self.chomp1(self.conv1(x))
        out = F.relu(self.norm1(out))
        out = self.dw(F.pad(out, (2, 0), mode="replicate"))  # causal depthwise
        out = self.dropout(out)
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(out + res)


class TCN(nn.Module):
    def __init__(self, num_inputs, channels, kernel_size=2):
        super().__init__()
        layers = []
        for i, ch in enumerate(channels):
            layers += [
                TemporalBlock(num_inputs if i == 0 else channels[i - 1], ch, kernel_size, 2**i)
            ]
        self.network = nn.Sequential(*layers)
        self.pool = nn.AvgPool1d(kernel_size=2, stride=2)
        self.head = nn.Linear(channels[-1], 1)

    def forward(self, x):
        h = self.network(x)  # B, C, T
        h = self.pool(h)[:, :, -1]  # last pooled step
        return self.head(h).squeeze(-1)


def make_windows(series, window):
    xs = series.unfold(0, window + 1, 1)
    return xs[:, :window].unsqueeze(1), xs[:, window]


def main():
    torch.manual_seed(99)
    t = torch.linspace(0, 8 * math.pi, 200)
    series = torch.sin(t) + 0.3 * torch.sin(3.1 * t) + 0.05 * torch.randn_like(t)
    mean, std = series.mean(), series.std()
    series = (series - mean) / std
    X, Y = make_windows(series, 24)
    n_train = int(0.8 * len(X))
    model = TCN(1, [8, 8, 8])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6, eta_min=1e-4)
    loss_fn = nn.HuberLoss(delta=0.5)
    for epoch in range(6):
        model.train()
        idx = torch.randperm(n_train)[:32]
        pred = model(X[idx])
        loss = loss_fn(pred, Y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.eval()
            val = F.mse_loss(model(X[n_train:]), Y[n_train:])
        print(
            f"epoch {epoch} loss {loss.item():.6f} val_mse {val.item():.6f} "
            f"lr {scheduler.get_last_lr()[0]:.6f}"
        )
    names = sorted(k for k in model.state_dict() if "parametrizations" in k)
    print("weight_norm keys", names[:2])


if __name__ == "__main__":
    main()
