"""Neural ODE fitted to a spiral with a hand-written RK4 solver over a linspace time grid,
backpropagating through the solver; float64, L-BFGS fine-tuning."""

import torch
import torch.nn as nn


class ODEFunc(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 24), nn.Tanh(), nn.Linear(24, 2))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0, std=0.1)
                nn.init.constant_(m.bias, val=0)

    def forward(self, t, y):
        return self.net(y**3)


def odeint_rk4(func, y0, t):
    ys = [y0]
    y = y0
    for t0, t1 in zip(t[:-1], t[1:]):
        dt = t1 - t0
        k1 = func(t0, y)
        k2 = func(t0 + dt / 2, y + dt * k1 / 2)
        k3 = func(t0 + dt / 2, y + dt * k2 / 2)
        k4 = func(t1, y + dt * k3)
        y = y + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        ys.append(y)
    return torch.stack(ys)


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    true_A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])
    t = torch.linspace(0.0, 2.0, 21)
    y0 = torch.tensor([[2.0, 0.0]])
    with torch.no_grad():
        true_y = odeint_rk4(lambda t, y: torch.mm(y**3, true_A), y0, t)
    func = ODEFunc()
    opt = torch.optim.RMSprop(func.parameters(), lr=1e-3)
    for itr in range(5):
        idx = torch.randperm(16)[:4]
        batch_y0 = true_y[idx]
        batch_t = t[:6]
        batch_y = torch.stack([true_y[idx + i] for i in range(6)], dim=0)
        pred_y = odeint_rk4(func, batch_y0, batch_t)
        loss = torch.mean(torch.abs(pred_y - batch_y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"iter {itr} loss {loss.item():.10f}")
    lbfgs = torch.optim.LBFGS(func.parameters(), lr=0.5, max_iter=3)

    def closure():
        lbfgs.zero_grad()
        loss = (odeint_rk4(func, y0, t) - true_y).pow(2).mean()
        loss.backward()
        return loss

    for itr in range(2):
        print(f"lbfgs {itr} loss {lbfgs.step(closure).item():.10f}")


if __name__ == "__main__":
    main()
