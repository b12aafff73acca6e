"""Progressive unfreezing: optimizer.add_param_group mid-training, OneCycleLR(three_phase) cycling
Adam's beta1, Embedding(max_norm) renormalisation, optimizer.state inspection, gradient clipping
with error_if_nonfinite."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8, max_norm=1.0)
        self.encoder = nn.GRU(8, 12, batch_first=True)
        self.head = nn.Linear(12, 2)

    def forward(self, tokens):
        out, h = self.encoder(self.emb(tokens))
        return self.head(h[-1])


def main():
    torch.manual_seed(77)
    tokens = torch.randint(0, 20, (16, 7))
    labels = (tokens[:, 0] > 9).long()
    model = Model()
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    for p in model.emb.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=1e-2,
        total_steps=20,
        three_phase=True,
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
    )
    for step in range(8):
        if step == 3:
            for p in model.encoder.parameters():
                p.requires_grad_(True)
            opt.add_param_group(
                {
                    "params": model.encoder.parameters(),
                    "lr": 1e-3,
                    "initial_lr": 1e-3,
                    "max_lr": 1e-3,
                    "min_lr": 1e-7,
                    "max_momentum": 0.95,
                    "base_momentum": 0.85,
                }
            )
        if step == 5:
            model.emb.weight.requires_grad_(True)
            opt.add_param_group(
                {
                    "params": [model.emb.weight],
                    "lr": 1e-4,
                    "initial_lr": 1e-4,
                    "max_lr": 1e-4,
                    "min_lr": 1e-8,
                    "max_momentum": 0.95,
                    "base_momentum": 0.85,
                }
            )
        loss = F.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], 1.0, error_if_nonfinite=True
        )
        opt.step()
        sched.step()
        betas = [f"{g['betas'][0]:.4f}" for g in opt.param_groups]
        print(
            f"step {step} loss {loss.item():.6f} norm {norm.item():.6f} "
            f"groups {len(opt.param_groups)} beta1 {' '.join(betas)}"
        )
    state = opt.state[model.head.weight]
    print(f"state step {float(state['step'])} exp_avg {state['exp_avg'].abs().sum().item():.6f}")
    print(f"emb max norm {model.emb.weight.norm(dim=1).max().item():.6f}")
    try:
        nn.utils.clip_grad_norm_([torch.tensor([float("nan")], requires_grad=True)], 1.0)
        bad = torch.tensor([1.0], requires_grad=True)
        bad.grad = torch.tensor([float("inf")])
        nn.utils.clip_grad_norm_([bad], 1.0, error_if_nonfinite=True)
    except RuntimeError as e:
        print("nonfinite error", type(e).__name__)


if __name__ == "__main__":
    main()
