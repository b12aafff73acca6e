"""Exact Gaussian-process regression in float64: RBF kernel through cdist, Cholesky,
cholesky_solve / solve_triangular, log marginal likelihood optimised over softplus parameters."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GP(nn.Module):
    def __init__(self):
        super().__init__()
        self.raw_lengthscale = nn.Parameter(torch.tensor(0.0))
        self.raw_outputscale = nn.Parameter(torch.tensor(0.0))
        self.raw_noise = nn.Parameter(torch.tensor(-2.0))

    def kernel(self, a, b):
        ls = F.softplus(self.raw_lengthscale)
        d2 = torch.cdist(a / ls, b / ls).pow(2)
        return F.softplus(self.raw_outputscale) * torch.exp(-0.5 * d2)

    def neg_mll(self, x, y):
        n = x.size(0)
        K = self.kernel(x, x) + (F.softplus(self.raw_noise) + 1e-6) * torch.eye(n)
        L = torch.linalg.cholesky(K)
        alpha = torch.cholesky_solve(y.unsqueeze(1), L)
        return (
            0.5 * (y @ alpha.squeeze(1))
            + torch.log(torch.diagonal(L)).sum()
            + 0.5 * n * math.log(2 * math.pi)
        )

    def predict(self, x, y, xt):
        n = x.size(0)
        K = self.kernel(x, x) + (F.softplus(self.raw_noise) + 1e-6) * torch.eye(n)
        L = torch.linalg.cholesky(K)
        Ks = self.kernel(x, xt)
        v = torch.linalg.solve_triangular(L, Ks, upper=False)
        alpha = torch.linalg.solve(K, y)
        mean = Ks.t() @ alpha
        var = torch.diagonal(self.kernel(xt, xt)) - (v * v).sum(0)
        return mean, var


def main():
    torch.manual_seed(2)
    torch.set_default_dtype(torch.float64)
    x = torch.rand(20, 1) * 6
    y = torch.sin(x).squeeze(1) + 0.1 * torch.randn(20)
    gp = GP()
    opt = torch.optim.Adam(gp.parameters(), lr=0.1)
    for step in range(8):
        opt.zero_grad()
        loss = gp.neg_mll(x, y)
        loss.backward()
        opt.step()
        print(
            f"step {step} loss {loss.item():.10f} "
            f"lengthscale {F.softplus(gp.raw_lengthscale).item():.10f}"
        )
    with torch.no_grad():
        xt = torch.linspace(0, 6, 7).unsqueeze(1)
        mean, var = gp.predict(x, y, xt)
        print("mean", [f"{m:.8f}" for m in mean.tolist()])
        print(
            f"var max {var.max().item():.10f} "
            f"logdet {torch.logdet(gp.kernel(x, x) + torch.eye(20)).item():.10f}"
        )


if __name__ == "__main__":
    main()
