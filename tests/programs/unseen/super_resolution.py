"""ESPCN-style super-resolution with PixelShuffle, reflection padding, an SSIM loss through a
grouped Gaussian convolution, unfold-based patch statistics, PSNR and a CyclicLR."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ESPCN(nn.Module):
    def __init__(self, scale=2, channels=1):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(2),
            nn.Conv2d(channels, 16, 5),
            nn.Tanh(),
            nn.ReplicationPad2d(1),
            nn.Conv2d(16, 8, 3),
            nn.Tanh(),
            nn.ZeroPad2d(1),
            nn.Conv2d(8, channels * scale**2, 3),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.body(x))


def gaussian_window(size=5, sigma=1.5, channels=1):
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2).float() / (2 * sigma**2))
    g = (g / g.sum()).unsqueeze(1)
    w = (g @ g.t()).expand(channels, 1, size, size).contiguous()
    return w


def ssim(x, y, window, c1=0.01**2, c2=0.03**2):
    ch = x.size(1)
    mu_x = F.conv2d(x, window, padding=2, groups=ch)
    mu_y = F.conv2d(y, window, padding=2, groups=ch)
    sxx = F.conv2d(x * x, window, padding=2, groups=ch) - mu_x**2
    syy = F.conv2d(y * y, window, padding=2, groups=ch) - mu_y**2
    sxy = F.conv2d(x * y, window, padding=2, groups=ch) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def main():
    torch.manual_seed(44)
    hr = torch.rand(6, 1, 16, 16)
    hr = F.avg_pool2d(F.pad(hr, (1, 1, 1, 1), mode="reflect"), 3, stride=1)  # smoother images
    lr = F.interpolate(hr, scale_factor=0.5, mode="bicubic", align_corners=False).clamp(0, 1)
    model = ESPCN()
    window = gaussian_window()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0.01, max_lr=0.1, step_size_up=2, mode="triangular2"
    )
    for step in range(6):
        sr = model(lr)
        mse = F.mse_loss(sr, hr)
        loss = mse + 0.1 * (1 - ssim(sr, hr, window))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        psnr = 10 * math.log10(1 / mse.item())
        print(f"step {step} loss {loss.item():.6f} psnr {psnr:.4f} lr {sched.get_last_lr()[0]:.4f}")
    with torch.no_grad():
        patches = F.unfold(model(lr), kernel_size=4, stride=4)  # N, 16, L
        var = patches.var(dim=1).mean()
        folded = F.fold(patches, output_size=(16, 16), kernel_size=4, stride=4)
        up = F.interpolate(lr, scale_factor=2, mode="nearest")
        print(
            f"patch var {var.item():.6f} fold ok {torch.allclose(folded, model(lr))} "
            f"nearest mse {F.mse_loss(up, hr).item():.6f}"
        )


if __name__ == "__main__":
    main()
