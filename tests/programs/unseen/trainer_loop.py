"""Generic training loop: TensorDataset/random_split/DataLoader, grad accumulation, EMA,
checkpoints, early stopping, ReduceLROnPlateau, eval metrics under no_grad."""

import copy
import os
import tempfile
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset, random_split


class MLP(nn.Module):
    def __init__(self, in_features, hidden, num_classes, p=0.1):
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(in_features, hidden)),
                    ("bn1", nn.BatchNorm1d(hidden)),
                    ("act1", nn.SiLU()),
                    ("drop1", nn.Dropout(p)),
                    ("fc2", nn.Linear(hidden, hidden)),
                    ("act2", nn.Mish()),
                    ("fc3", nn.Linear(hidden, num_classes)),
                ]
            )
        )

    def forward(self, x):
        return self.net(x)


class EMA:
    def __init__(self, model, decay=0.9):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        for ema_p, p in zip(self.shadow.parameters(), model.parameters()):
            ema_p.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
        for ema_b, b in zip(self.shadow.buffers(), model.buffers()):
            ema_b.copy_(b)


@torch.no_grad()
def evaluate(model, loader, criterion):
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in loader:
        logits = model(xb)
        total_loss += criterion(logits, yb).item() * xb.size(0)
        correct += (logits.argmax(dim=1) == yb).sum().item()
        count += xb.size(0)
    return total_loss / count, correct / count


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(123)
    n, d, k = 120, 10, 4
    X = torch.randn(n, d, generator=g)
    W = torch.randn(d, k, generator=g)
    y = (X @ W + 0.5 * torch.randn(n, k, generator=g)).argmax(dim=1)
    dataset = TensorDataset(X, y)
    train_set, val_set = random_split(
        dataset, [0.75, 0.25], generator=torch.Generator().manual_seed(42)
    )
    train_loader = DataLoader(
        train_set, batch_size=15, shuffle=True, generator=torch.Generator().manual_seed(7)
    )
    val_loader = DataLoader(val_set, batch_size=64)

    model = MLP(d, 32, k)
    ema = EMA(model, decay=0.8)
    class_counts = torch.bincount(y, minlength=k).float()
    weights = class_counts.sum() / (k * class_counts)
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=0
    )
    accum_steps, best_val, patience, bad_epochs = 2, float("inf"), 2, 0
    ckpt = os.path.join(tempfile.mkdtemp(), "best.pt")
    for epoch in range(4):
        model.train()
        optimizer.zero_grad()
        for i, (xb, yb) in enumerate(train_loader):
            loss = criterion(model(xb), yb) / accum_steps
            loss.backward()
            if (i + 1) % accum_steps == 0 or i + 1 == len(train_loader):
                nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.0, norm_type=2)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                ema.update(model)
            print(f"epoch {epoch} batch {i} loss {loss.item() * accum_steps:.6f}")
        val_loss, val_acc = evaluate(model, val_loader, criterion)
        ema_loss, ema_acc = evaluate(ema.shadow, val_loader, criterion)
        scheduler.step(val_loss)
        print(
            f"epoch {epoch} val_loss {val_loss:.6f} val_acc {val_acc:.4f} ema_loss {ema_loss:.6f} "
            f"lr {optimizer.param_groups[0]['lr']:.4f}"
        )
        if val_loss < best_val - 1e-4:
            best_val, bad_epochs = val_loss, 0
            torch.save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "val_loss": val_loss,
                },
                ckpt,
            )
        else:
            bad_epochs += 1
            if bad_epochs >= patience:
                print("early stopping")
                break
    state = torch.load(ckpt, map_location="cpu")
    restored = MLP(d, 32, k)
    restored.load_state_dict(state["model"])
    opt2 = torch.optim.SGD(restored.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt2.load_state_dict(state["optimizer"])
    val_loss, val_acc = evaluate(restored, val_loader, criterion)
    print(
        f"restored epoch {state['epoch']} val_loss {val_loss:.6f} (saved {state['val_loss']:.6f})"
    )
    xb, yb = next(iter(train_loader))
    restored.train()
    opt2.zero_grad()
    loss = criterion(restored(xb), yb)
    loss.backward()
    opt2.step()
    print(f"resumed loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
