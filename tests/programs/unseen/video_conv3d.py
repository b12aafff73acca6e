"""Tiny video classifier: Conv3d/BatchNorm3d/MaxPool3d/AdaptiveAvgPool3d, GroupNorm, trilinear
resizing, orthogonal and dirac initialisation, SGD with dampening, PolynomialLR."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class C3D(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, kernel_size=(3, 3, 3), padding=1)
        self.bn1 = nn.BatchNorm3d(6)
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = nn.Conv3d(6, 8, kernel_size=3, padding=(1, 1, 1), dilation=1)
        self.gn = nn.GroupNorm(4, 8)
        self.pool2 = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(8, num_classes)
        nn.init.dirac_(self.conv2.weight)
        nn.init.orthogonal_(self.fc.weight, gain=nn.init.calculate_gain("relu"))

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = F.leaky_relu(self.gn(self.conv2(x)), 0.01)
        return self.fc(torch.flatten(self.pool2(x), 1))


def main():
    torch.manual_seed(5150)
    clips = torch.randn(6, 3, 4, 10, 10)
    clips = F.interpolate(clips, size=(4, 8, 8), mode="trilinear", align_corners=False)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    model = C3D()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-4
    )
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=6, power=2.0)
    for step in range(6):
        logits = model(clips)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        print(f"step {step} loss {loss.item():.6f} lr {sched.get_last_lr()[0]:.6f}")
    model.eval()
    with torch.no_grad():
        small = F.interpolate(clips, scale_factor=(1, 0.5, 0.5), mode="nearest")
        print(
            f"eval {F.cross_entropy(model(clips), labels).item():.6f} small {tuple(small.shape)} "
            f"area {F.adaptive_max_pool3d(clips, 2).mean().item():.6f}"
        )


if __name__ == "__main__":
    main()
