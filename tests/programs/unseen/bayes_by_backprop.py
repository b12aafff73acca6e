"""Bayes-by-backprop regression: weights as Normal distributions (rsample, log_prob,
kl_divergence against a prior), Independent, a Gaussian likelihood, SequentialLR warm-up."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence


class BayesLinear(nn.Module):
    def __init__(self, in_features, out_features, prior_std=1.0):
        super().__init__()
        self.w_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-0.2, 0.2))
        self.w_rho = nn.Parameter(torch.full((out_features, in_features), -3.0))
        self.b_mu = nn.Parameter(torch.zeros(out_features))
        self.b_rho = nn.Parameter(torch.full((out_features,), -3.0))
        self.prior = Normal(0.0, prior_std)

    def forward(self, x):
        w_post = Normal(self.w_mu, F.softplus(self.w_rho))
        b_post = Normal(self.b_mu, F.softplus(self.b_rho))
        w, b = w_post.rsample(), b_post.rsample()
        self.kl = kl_divergence(w_post, self.prior).sum() + kl_divergence(b_post, self.prior).sum()
        return F.linear(x, w, b)


class BNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = BayesLinear(1, 16)
        self.l2 = BayesLinear(16, 2)

    def forward(self, x):
        out = self.l2(torch.relu(self.l1(x)))
        return out[:, 0], F.softplus(out[:, 1]) + 1e-3

    def kl(self):
        return self.l1.kl + self.l2.kl


def main():
    torch.manual_seed(55)
    x = torch.linspace(-2, 2, 40).unsqueeze(1)
    y = x.squeeze(1) ** 3 * 0.3 + 0.2 * torch.randn(40)
    model = BNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, decay], milestones=[3])
    for step in range(7):
        mean, std = model(x)
        likelihood = Independent(Normal(mean, std), 1)
        nll = -likelihood.log_prob(y) / 40
        loss = nll + model.kl() / (40 * 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        print(
            f"step {step} loss {loss.item():.6f} nll {nll.item():.6f} kl {model.kl().item():.4f} "
            f"lr {sched.get_last_lr()[0]:.6f}"
        )
    with torch.no_grad():
        preds = torch.stack([model(x)[0] for _ in range(5)])
        print(f"pred mean {preds.mean().item():.6f} spread {preds.std(0).mean().item():.6f}")
        d = Normal(torch.zeros(3), torch.ones(3))
        print(
            "entropy",
            f"{d.entropy().sum().item():.6f}",
            "cdf",
            f"{d.cdf(torch.tensor([0.5, 1.0, 2.0])).sum().item():.6f}",
        )


if __name__ == "__main__":
    main()
