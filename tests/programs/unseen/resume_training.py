"""Checkpoint and resume: model/optimizer/scheduler/RNG state saved with torch.save, a fresh
process-like restart that must continue exactly; load_state_dict(strict=False) key reports,
non-persistent buffers, dtype conversion with .double()."""

import io

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 12)
        self.bn = nn.BatchNorm1d(12)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(12, 3)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("scratch", torch.ones(2), persistent=False)

    def forward(self, x):
        self.calls += 1
        return self.fc2(self.drop(F.relu(self.bn(self.fc1(x)))))


def make(seed):
    torch.manual_seed(seed)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return model, opt, sched


def train_steps(model, opt, sched, x, y, steps, tag):
    for step in range(steps):
        idx = torch.randperm(x.size(0))[:8]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        print(f"{tag} step {step} loss {loss.item():.6f} lr {sched.get_last_lr()[0]:.6f}")


def main():
    torch.manual_seed(0)
    x = torch.randn(40, 5)
    y = torch.randint(0, 3, (40,))
    model, opt, sched = make(1)
    train_steps(model, opt, sched, x, y, 3, "first")
    buf = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": torch.get_rng_state(),
        },
        buf,
    )
    train_steps(model, opt, sched, x, y, 3, "continued")
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2, opt2, sched2 = make(2)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    torch.set_rng_state(ckpt["rng"])
    train_steps(model2, opt2, sched2, x, y, 3, "resumed")
    print(
        "same weights", torch.equal(model.fc1.weight, model2.fc1.weight), "calls", int(model2.calls)
    )
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("fc2")}
    sd["extra.weight"] = torch.zeros(1)
    result = Net().load_state_dict(sd, strict=False)
    print("missing", sorted(result.missing_keys), "unexpected", result.unexpected_keys)
    print("keys", "scratch" in model.state_dict(), len(list(model.buffers())))
    m64 = model.double().eval()
    with torch.no_grad():
        out = m64(x.double())
    print(out.dtype, f"{out.sum().item():.10f}", x.shape)


if __name__ == "__main__":
    main()
