"""WGAN-GP on a 2-D Gaussian mixture: gradient penalty through autograd.grad(create_graph=True)."""

import math

import torch
import torch.nn as nn
from torch import autograd


class Generator(nn.Module):
    def __init__(self, nz=4, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(nz, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 2),
        )

    def forward(self, z):
        return self.net(z)


class Critic(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, hidden),
            nn.LayerNorm(hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.net(x).view(-1)


def sample_mixture(n, modes=8, radius=2.0, std=0.05):
    k = torch.randint(0, modes, (n,))
    angle = k.float() * (2 * math.pi / modes)
    centers = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return centers + std * torch.randn(n, 2)


def gradient_penalty(critic, real, fake):
    alpha = torch.rand(real.size(0), 1)
    alpha = alpha.expand_as(real)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    disc_interpolates = critic(interpolates)
    gradients = autograd.grad(
        outputs=disc_interpolates,
        inputs=interpolates,
        grad_outputs=torch.ones_like(disc_interpolates),
        create_graph=True,
        retain_graph=True,
        only_inputs=True,
    )[0]
    gradients = gradients.view(gradients.size(0), -1)
    return ((gradients.norm(2, dim=1) - 1) ** 2).mean()


def main():
    torch.manual_seed(2024)
    netG, netD = Generator(), Critic()
    optD = torch.optim.Adam(netD.parameters(), lr=1e-3, betas=(0.5, 0.9))
    optG = torch.optim.Adam(netG.parameters(), lr=1e-3, betas=(0.5, 0.9))
    lambda_gp, critic_iters, batch = 10.0, 3, 32
    one = torch.tensor(1.0)
    mone = one * -1
    for it in range(5):
        for p in netD.parameters():
            p.requires_grad = True
        for _ in range(critic_iters):
            real = sample_mixture(batch)
            netD.zero_grad()
            d_real = netD(real).mean()
            d_real.backward(mone)
            noise = torch.randn(batch, 4)
            with torch.no_grad():
                fake = netG(noise)
            d_fake = netD(fake).mean()
            d_fake.backward(one)
            gp = gradient_penalty(netD, real, fake) * lambda_gp
            gp.backward()
            d_cost = d_fake - d_real + gp
            wasserstein = d_real - d_fake
            optD.step()
        for p in netD.parameters():
            p.requires_grad = False
        netG.zero_grad()
        g_cost = -netD(netG(torch.randn(batch, 4))).mean()
        g_cost.backward()
        optG.step()
        print(
            f"iter {it} loss_d {d_cost.item():.6f} loss_g {g_cost.item():.6f} "
            f"w {wasserstein.item():.6f} gp {gp.item():.6f}"
        )
    with torch.no_grad():
        samples = netG(torch.randn(256, 4))
        print(f"sample mean {samples.mean(0).tolist()[0]:.6f} std {samples.std().item():.6f}")


if __name__ == "__main__":
    main()
