"""Spatial transformer network (affine_grid + grid_sample) in front of a small CNN classifier."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=3)
        self.conv2 = nn.Conv2d(6, 8, kernel_size=3)
        self.conv2_drop = nn.Dropout2d(0.2)
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 4)
        self.localization = nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=5),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
            nn.Conv2d(4, 6, kernel_size=3),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(True),
        )
        self.fc_loc = nn.Sequential(nn.Linear(6 * 1 * 1, 16), nn.ReLU(True), nn.Linear(16, 3 * 2))
        self.fc_loc[2].weight.data.zero_()
        self.fc_loc[2].bias.data.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def stn(self, x):
        xs = self.localization(x)
        xs = xs.view(-1, 6 * 1 * 1)
        theta = self.fc_loc(xs).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros", mode="bilinear")

    def forward(self, x):
        x = self.stn(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc1(x)), training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def make_batch(n, gen):
    """Bars at 4 orientations, randomly shifted and rotated."""
    labels = torch.randint(0, 4, (n,), generator=gen)
    img = torch.zeros(n, 1, 14, 14)
    for i, lab in enumerate(labels.tolist()):
        if lab == 0:
            img[i, 0, 6:8, 2:12] = 1
        elif lab == 1:
            img[i, 0, 2:12, 6:8] = 1
        elif lab == 2:
            img[i, 0].fill_diagonal_(1)
        else:
            img[i, 0] = torch.flip(torch.eye(14), dims=[1])
    angle = (torch.rand(n, generator=gen) - 0.5) * 0.6
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.3
    theta = torch.stack(
        [
            torch.stack([angle.cos(), -angle.sin(), shift[:, 0]], 1),
            torch.stack([angle.sin(), angle.cos(), shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    img = F.grid_sample(img, grid, align_corners=False, padding_mode="border")
    return img + 0.05 * torch.randn(img.shape, generator=gen), labels


def main():
    torch.manual_seed(17)
    gen = torch.Generator().manual_seed(17)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    for step in range(6):
        model.train()
        data, target = make_batch(16, gen)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}")
    model.eval()
    with torch.no_grad():
        data, target = make_batch(32, gen)
        output = model(data)
        test_loss = F.nll_loss(output, target, reduction="sum").item() / 32
        correct = (
            output.argmax(dim=1, keepdim=True).eq(target.view_as(output.argmax(1, True))).sum()
        )
        print(f"test loss {test_loss:.6f} correct {correct.item()}")


if __name__ == "__main__":
    main()
