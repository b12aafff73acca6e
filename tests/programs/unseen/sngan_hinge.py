"""Small SNGAN: spectral-normalised discriminator (power iteration), ConvTranspose2d generator,
hinge loss, TTUR Adam, EMA of the generator weights with lerp_."""

import copy

import torch
import torch.nn as nn
from torch.nn.utils import spectral_norm


class Generator(nn.Module):
    def __init__(self, nz=8, ngf=8):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, ndf=8):
        super().__init__()
        self.main = nn.Sequential(
            spectral_norm(nn.Conv2d(1, ndf, 4, 2, 1)),
            nn.LeakyReLU(0.1, inplace=True),
            spectral_norm(nn.Conv2d(ndf, ndf * 2, 4, 2, 1)),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Flatten(),
            spectral_norm(nn.Linear(ndf * 2 * 4 * 4, 1)),
        )

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def main():
    torch.manual_seed(999)
    netG = Generator()
    netG.apply(weights_init)
    netD = Discriminator()
    ema = copy.deepcopy(netG)
    optD = torch.optim.Adam(netD.parameters(), lr=4e-4, betas=(0.0, 0.9))
    optG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real = torch.tanh(torch.randn(16, 1, 16, 16))
    fixed_noise = torch.randn(4, 8, 1, 1)
    for it in range(5):
        netD.zero_grad()
        noise = torch.randn(16, 8, 1, 1)
        fake = netG(noise)
        errD = torch.relu(1.0 - netD(real)).mean() + torch.relu(1.0 + netD(fake.detach())).mean()
        errD.backward()
        optD.step()
        netG.zero_grad()
        errG = -netD(fake).mean()
        errG.backward()
        optG.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), netG.parameters()):
                pe.lerp_(p, 0.1)
            for be, b in zip(ema.buffers(), netG.buffers()):
                be.copy_(b)
        print(f"iter {it} loss_d {errD.item():.6f} loss_g {errG.item():.6f}")
    ema.eval()
    with torch.no_grad():
        print(f"ema sample mean {ema(fixed_noise).mean().item():.6f}")
        sd = netD.state_dict()
        print(
            "sn keys",
            sorted(k for k in sd if k.endswith(("weight_u", "weight_orig")))[:2],
            f"u norm {sd['main.0.weight_u'].norm().item():.6f}",
        )


if __name__ == "__main__":
    main()
