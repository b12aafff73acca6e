"""RealNVP normalizing flow on 2-D two-moons-like data: affine coupling layers with masks,
log-determinants, a MultivariateNormal base distribution, sampling through the inverse."""

import math

import torch
import torch.nn as nn
from torch.distributions import MultivariateNormal


class CouplingLayer(nn.Module):
    def __init__(self, dim, hidden, mask):
        super().__init__()
        self.register_buffer("mask", mask)
        self.s = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, dim), nn.Tanh()
        )
        self.t = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x_masked = x * self.mask
        s = self.s(x_masked) * (1 - self.mask)
        t = self.t(x_masked) * (1 - self.mask)
        y = x_masked + (1 - self.mask) * (x * torch.exp(s) + t)
        return y, s.sum(dim=1)

    def inverse(self, y):
        y_masked = y * self.mask
        s = self.s(y_masked) * (1 - self.mask)
        t = self.t(y_masked) * (1 - self.mask)
        return y_masked + (1 - self.mask) * ((y - t) * torch.exp(-s))


class RealNVP(nn.Module):
    def __init__(self, dim=2, hidden=16, n_layers=4):
        super().__init__()
        masks = [torch.tensor([i % 2, (i + 1) % 2], dtype=torch.float32) for i in range(n_layers)]
        self.layers = nn.ModuleList([CouplingLayer(dim, hidden, m) for m in masks])
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("cov", torch.eye(dim))

    @property
    def prior(self):
        return MultivariateNormal(self.loc, covariance_matrix=self.cov)

    def log_prob(self, x):
        log_det = torch.zeros(x.size(0))
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return self.prior.log_prob(x) + log_det

    def sample(self, n):
        z = self.prior.sample((n,))
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


def moons(n, noise=0.1):
    t = torch.rand(n) * math.pi
    upper = torch.rand(n) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    return torch.stack([x, y], 1) + noise * torch.randn(n, 2)


def main():
    torch.manual_seed(10)
    flow = RealNVP()
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    data = moons(128)
    for step in range(6):
        batch = data[torch.randint(0, 128, (32,))]
        loss = -flow.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}")
    with torch.no_grad():
        samples = flow.sample(64)
        print(
            f"sample mean {samples.mean().item():.6f} nll {-flow.log_prob(data).mean().item():.6f}"
        )
        z = flow.prior.rsample((3,))
        print(
            "prior entropy", f"{flow.prior.entropy().item():.6f}", f"z {z.abs().sum().item():.6f}"
        )


if __name__ == "__main__":
    main()
