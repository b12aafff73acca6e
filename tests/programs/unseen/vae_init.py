"""Convolutional VAE on synthetic blobs: model.apply(init_fn), kaiming/xavier init, KL, StepLR."""

import torch
from torch import nn
from torch.nn import functional as F


def init_weights(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)
    elif isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("tanh"))
        nn.init.uniform_(m.bias, -0.01, 0.01)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ConvVAE(nn.Module):
    def __init__(self, latent_dim=4):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, 16, 4, 2, 1, bias=False),  # followed by BatchNorm
            nn.BatchNorm2d(16),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(16 * 3 * 3, latent_dim)
        self.fc_logvar = nn.Linear(16 * 3 * 3, latent_dim)
        self.fc_dec = nn.Linear(latent_dim, 16 * 3 * 3)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (16, 3, 3)),
            nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.ConvTranspose2d(8, 1, 4, 2, 1),
        )

    def encode(self, x):
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        return self.decoder(F.relu(self.fc_dec(z)))

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_logits, x, mu, logvar, beta=1.0):
    bce = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (bce + beta * kld) / x.size(0), bce / x.size(0), kld / x.size(0)


def synthetic_images(n, size=12, generator=None):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centers = torch.randint(3, size - 3, (n, 2), generator=generator)
    radius = torch.rand(n, generator=generator) * 2 + 1.5
    d2 = (yy[None] - centers[:, 0, None, None]) ** 2 + (xx[None] - centers[:, 1, None, None]) ** 2
    return (d2.float() <= radius[:, None, None] ** 2).float().unsqueeze(1)


def main():
    torch.manual_seed(11)
    data = synthetic_images(48, generator=torch.Generator().manual_seed(5))
    model = ConvVAE()
    model.apply(init_weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    for epoch in range(6):
        model.train()
        perm = torch.randperm(data.size(0))
        train_loss = 0.0
        for i in range(0, data.size(0), 16):
            batch = data[perm[i : i + 16]]
            optimizer.zero_grad()
            recon, mu, logvar = model(batch)
            loss, bce, kld = loss_function(
                recon, batch, mu, logvar, beta=min(1.0, 0.25 * (epoch + 1))
            )
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
        scheduler.step()
        print(f"epoch {epoch} loss {train_loss / 3:.6f} bce {bce.item():.6f} kld {kld.item():.6f}")
    model.eval()
    with torch.no_grad():
        z = torch.randn(4, 4)
        samples = torch.sigmoid(model.decode(z))
        recon, mu, logvar = model(data[:8])
        mse = F.mse_loss(torch.sigmoid(recon), data[:8])
        print(f"eval mse {mse.item():.6f} sample mean {samples.mean().item():.6f}")


if __name__ == "__main__":
    main()
