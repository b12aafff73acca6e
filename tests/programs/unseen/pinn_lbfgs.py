"""Physics-informed network for u'' = -pi^2 sin(pi x) on [0, 1] (u(0) = u(1) = 0): derivatives
through autograd.grad(create_graph=True), Adam warm-up then L-BFGS with strong Wolfe."""

import math

import torch
import torch.nn as nn


class PINN(nn.Module):
    def __init__(self, width=16, depth=3):
        super().__init__()
        layers = [nn.Linear(1, width), nn.Tanh()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Tanh()]
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.net(x)


def residual_loss(model, x):
    x = x.clone().requires_grad_(True)
    u = model(x)
    du = torch.autograd.grad(u, x, grad_outputs=torch.ones_like(u), create_graph=True)[0]
    d2u = torch.autograd.grad(du.sum(), x, create_graph=True)[0]
    f = -(math.pi**2) * torch.sin(math.pi * x)
    return torch.mean((d2u - f) ** 2)


def boundary_loss(model):
    xb = torch.tensor([[0.0], [1.0]])
    return model(xb).pow(2).mean()


def main():
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    model = PINN()
    x_col = torch.rand(64, 1)
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(5):
        adam.zero_grad()
        loss = residual_loss(model, x_col) + 10 * boundary_loss(model)
        loss.backward()
        adam.step()
        print(f"adam {step} loss {loss.item():.10f}")
    lbfgs = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=5, history_size=10, line_search_fn="strong_wolfe"
    )

    def closure():
        lbfgs.zero_grad()
        loss = residual_loss(model, x_col) + 10 * boundary_loss(model)
        loss.backward()
        return loss

    for step in range(3):
        loss = lbfgs.step(closure)
        print(f"lbfgs {step} loss {loss.item():.10f}")
    x_test = torch.linspace(0, 1, 11).unsqueeze(1)
    with torch.no_grad():
        err = (model(x_test) - torch.sin(math.pi * x_test)).abs().max()
    print(f"max error {err.item():.10f}")


if __name__ == "__main__":
    main()
