"""Stochastic weight averaging (AveragedModel, SWALR, update_bn) over an MLP that uses many
activation modules (RReLU, CELU, GLU, Softplus, Hardtanh, ...), nn.Bilinear, ChainedScheduler."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.acts = nn.ModuleList(
            [
                nn.RReLU(0.1, 0.3),
                nn.CELU(0.5),
                nn.Softplus(beta=2.0),
                nn.Hardtanh(-2, 2),
                nn.LogSigmoid(),
                nn.Softsign(),
                nn.Threshold(0.1, -1.0),
                nn.Hardsigmoid(),
            ]
        )
        self.glu = nn.GLU(dim=1)
        self.bil = nn.Bilinear(8, 6, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        h = self.bn(self.fc1(x))
        chunks = h.chunk(8, dim=1)
        h = torch.cat([act(c) for act, c in zip(self.acts, chunks)], dim=1)
        return self.out(torch.tanh(self.bil(self.glu(h), x)))


def main():
    torch.manual_seed(42)
    x = torch.randn(48, 6)
    y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    loader = [(x[i : i + 12], y[i : i + 12]) for i in range(0, 48, 12)]
    model = Net()
    swa_model = AveragedModel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm = torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2)
    mult = torch.optim.lr_scheduler.MultiplicativeLR(opt, lr_lambda=lambda e: 0.95)
    sched = torch.optim.lr_scheduler.ChainedScheduler([warm, mult])
    swa_sched = SWALR(opt, swa_lr=0.05, anneal_epochs=2, anneal_strategy="cos")
    for epoch in range(5):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch >= 2:
            swa_model.update_parameters(model)
            swa_sched.step()
        else:
            sched.step()
        print(
            f"epoch {epoch} loss {loss.item():.6f} lr {opt.param_groups[0]['lr']:.6f} "
            f"n_averaged {int(swa_model.n_averaged)}"
        )
    update_bn(loader, swa_model)
    swa_model.eval()
    model.eval()
    with torch.no_grad():
        print(
            f"swa loss {F.cross_entropy(swa_model(x), y).item():.6f} "
            f"model loss {F.cross_entropy(model(x), y).item():.6f}"
        )
        print(f"bn mean {swa_model.module.bn.running_mean.sum().item():.6f}")


if __name__ == "__main__":
    main()
