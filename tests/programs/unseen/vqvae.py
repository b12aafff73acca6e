"""VQ-VAE with a straight-through vector quantiser (cdist/argmin, commitment loss, EMA codebook
updates with one_hot/index_add_), plus a Gumbel-softmax categorical bottleneck."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class VectorQuantizerEMA(nn.Module):
    def __init__(self, num_embeddings, embedding_dim, commitment_cost=0.25, decay=0.9, eps=1e-5):
        super().__init__()
        self.embedding_dim, self.num_embeddings = embedding_dim, num_embeddings
        self.register_buffer("embedding", torch.randn(num_embeddings, embedding_dim))
        self.register_buffer("ema_cluster_size", torch.zeros(num_embeddings))
        self.register_buffer("ema_w", self.embedding.clone())
        self.commitment_cost, self.decay, self.eps = commitment_cost, decay, eps

    def forward(self, inputs):
        inputs = inputs.permute(0, 2, 3, 1).contiguous()  # BHWC
        flat = inputs.view(-1, self.embedding_dim)
        distances = torch.cdist(flat, self.embedding) ** 2
        encoding_indices = torch.argmin(distances, dim=1)
        encodings = F.one_hot(encoding_indices, self.num_embeddings).type(flat.dtype)
        quantized = self.embedding[encoding_indices].view(inputs.shape)
        if self.training:
            with torch.no_grad():
                self.ema_cluster_size.mul_(self.decay).add_(encodings.sum(0), alpha=1 - self.decay)
                n = self.ema_cluster_size.sum()
                size = (self.ema_cluster_size + self.eps) / (n + self.num_embeddings * self.eps) * n
                dw = torch.zeros_like(self.ema_w).index_add_(0, encoding_indices, flat)
                self.ema_w.mul_(self.decay).add_(dw, alpha=1 - self.decay)
                self.embedding.copy_(self.ema_w / size.unsqueeze(1))
        e_latent_loss = F.mse_loss(quantized.detach(), inputs)
        loss = self.commitment_cost * e_latent_loss
        quantized = inputs + (quantized - inputs).detach()  # straight-through
        avg_probs = encodings.mean(0)
        perplexity = torch.exp(-torch.sum(avg_probs * torch.log(avg_probs + 1e-10)))
        return loss, quantized.permute(0, 3, 1, 2).contiguous(), perplexity


class VQVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, 1, 1))
        self.vq = VectorQuantizerEMA(16, 4)
        self.decoder = nn.Sequential(
            nn.Conv2d(4, 8, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1)
        )

    def forward(self, x):
        vq_loss, q, ppl = self.vq(self.encoder(x))
        return self.decoder(q), vq_loss, ppl


def main():
    torch.manual_seed(66)
    x = (torch.rand(8, 1, 8, 8) > 0.6).float()
    model = VQVAE()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, amsgrad=False)
    for step in range(6):
        recon, vq_loss, ppl = model(x)
        rec = F.binary_cross_entropy_with_logits(recon, x)
        loss = rec + vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f} perplexity {ppl.item():.6f}")
    # Gumbel-softmax bottleneck
    logits = nn.Parameter(torch.zeros(5, 4))
    opt = torch.optim.SGD([logits], lr=0.5)
    target = torch.tensor([0, 1, 2, 3, 0])
    for step in range(4):
        y_soft = F.gumbel_softmax(logits, tau=0.5, hard=False)
        y_hard = F.gumbel_softmax(logits, tau=0.5, hard=True)
        loss = F.nll_loss(torch.log(y_soft + 1e-9), target) + (y_hard * logits).sum() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"gumbel step {step} loss {loss.item():.6f} hard {y_hard.argmax(-1).tolist()}")


if __name__ == "__main__":
    main()
