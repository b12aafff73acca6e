"""MAML on sine regression with torch.func.functional_call and a differentiable inner loop,
plus per-sample gradient norms with torch.func.vmap(grad(...))."""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap


def sample_task(gen):
    amp = torch.rand(1, generator=gen).item() * 4.9 + 0.1
    phase = torch.rand(1, generator=gen).item() * math.pi

    def draw(n):
        x = torch.rand(n, 1, generator=gen) * 10 - 5
        return x, amp * torch.sin(x + phase)

    return draw


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        OrderedDict(
            [
                ("l1", nn.Linear(1, 32)),
                ("r1", nn.ReLU()),
                ("l2", nn.Linear(32, 32)),
                ("r2", nn.ReLU()),
                ("out", nn.Linear(32, 1)),
            ]
        )
    )
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    inner_lr, inner_steps, tasks_per_batch = 0.01, 2, 3
    for it in range(4):
        meta_opt.zero_grad()
        meta_loss = 0.0
        for _ in range(tasks_per_batch):
            draw = sample_task(gen)
            xs, ys = draw(10)
            xq, yq = draw(10)
            params = dict(model.named_parameters())
            for _ in range(inner_steps):
                loss = F.mse_loss(functional_call(model, params, (xs,)), ys)
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
                params = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads)}
            q_loss = F.mse_loss(functional_call(model, params, (xq,)), yq)
            (q_loss / tasks_per_batch).backward()
            meta_loss += q_loss.item() / tasks_per_batch
        meta_opt.step()
        print(f"meta iter {it} loss {meta_loss:.6f}")

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss_fn(p, b, x, y):
        pred = functional_call(model, (p, b), (x.unsqueeze(0),))
        return F.mse_loss(pred, y.unsqueeze(0))

    xs, ys = sample_task(gen)(8)
    per_sample = vmap(grad(loss_fn), in_dims=(None, None, 0, 0))(params, buffers, xs, ys)
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_sample.values()]).norm(dim=0)
    print("per-sample grad norms", [f"{v:.6f}" for v in norms.tolist()[:4]])


if __name__ == "__main__":
    main()
