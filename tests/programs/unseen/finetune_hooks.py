"""Fine-tuning a pretrained-style CNN: frozen backbone with discriminative learning rates,
a replaced head, forward/backward hooks (Grad-CAM), parameters_to_vector, a warm restart
schedule and named_buffers bookkeeping."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def make_backbone():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.Hardswish(),
    )


class Classifier(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = make_backbone()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 10))
        self.classifier[-1] = nn.Linear(16, num_classes)  # replace the head

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


def main():
    torch.manual_seed(31)
    model = Classifier(3)
    # "pretrained" backbone: a perturbation saved and restored through a flat vector
    vec = parameters_to_vector(model.features.parameters())
    vector_to_parameters(vec * 1.5, model.features.parameters())
    for name, p in model.features.named_parameters():
        if name.startswith("0."):
            p.requires_grad = False  # freeze the stem
    optimizer = torch.optim.SGD(
        [
            {"params": [p for p in model.features.parameters() if p.requires_grad], "lr": 1e-3},
            {"params": model.classifier.parameters()},
        ],
        lr=1e-2,
        momentum=0.9,
        nesterov=True,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=3, T_mult=2, eta_min=1e-5
    )
    x = torch.randn(24, 3, 12, 12)
    y = torch.randint(0, 3, (24,))
    activations, gradients = {}, {}
    target = model.features[7]
    fh = target.register_forward_hook(lambda m, i, o: activations.__setitem__("value", o.detach()))
    bh = target.register_full_backward_hook(
        lambda m, gi, go: gradients.__setitem__("value", go[0].detach())
    )
    for step in range(6):
        model.train()
        idx = torch.arange(step * 4, step * 4 + 8) % 24
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        lrs = [f"{g['lr']:.6f}" for g in optimizer.param_groups]
        print(f"step {step} loss {loss.item():.6f} lrs {' '.join(lrs)}")
    # Grad-CAM for the first image
    model.eval()
    out = model(x[:1])
    model.zero_grad()
    out[0, out.argmax()].backward()
    weights = gradients["value"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations["value"]).sum(1))
    cam = F.interpolate(cam.unsqueeze(1), size=(12, 12), mode="bilinear", align_corners=False)
    print(f"cam sum {cam.sum().item():.6f} max {cam.max().item():.6f}")
    fh.remove()
    bh.remove()
    nb = {name: b.float().sum().item() for name, b in model.named_buffers()}
    print(
        "buffers",
        len(nb),
        f"{nb['features.1.running_mean']:.6f} {int(nb['features.1.num_batches_tracked'])}",
    )
    print("frozen grad", model.features[0].weight.grad is None)


if __name__ == "__main__":
    main()
