"""Perceiver-style model: a latent array cross-attending to inputs with einsum, baddbmm-based
attention scores, LayerNorm without affine, trunc_normal_(a, b), AdamW(amsgrad), ALiBi-like
biases from tril_indices."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossAttention(nn.Module):
    def __init__(self, q_dim, kv_dim, heads=2, dim_head=8):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(q_dim, inner, bias=False)
        self.to_kv = nn.Linear(kv_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, q_dim)
        self.norm_ctx = nn.LayerNorm(kv_dim, elementwise_affine=False)

    def forward(self, x, context):
        h = self.heads
        q = self.to_q(x)
        k, v = self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1)
        q, k, v = (
            t.reshape(t.shape[0], t.shape[1], h, -1)
            .permute(0, 2, 1, 3)
            .reshape(t.shape[0] * h, t.shape[1], -1)
            for t in (q, k, v)
        )
        bias = torch.zeros(q.shape[0], q.shape[1], k.shape[1])
        sim = torch.baddbmm(bias, q, k.transpose(1, 2), beta=1.0, alpha=self.scale)
        attn = sim.softmax(dim=-1)
        out = torch.einsum("bij,bjd->bid", attn, v)
        b = out.shape[0] // h
        out = out.reshape(b, h, out.shape[1], -1).permute(0, 2, 1, 3).reshape(b, out.shape[1], -1)
        return self.to_out(out)


class Perceiver(nn.Module):
    def __init__(self, in_dim=5, latent_dim=16, num_latents=6, num_classes=3):
        super().__init__()
        self.latents = nn.Parameter(torch.empty(num_latents, latent_dim))
        nn.init.trunc_normal_(self.latents, std=0.02, a=-2.0, b=2.0)
        self.cross = CrossAttention(latent_dim, in_dim)
        self.self_attn = CrossAttention(latent_dim, latent_dim)
        self.ff = nn.Sequential(
            nn.LayerNorm(latent_dim),
            nn.Linear(latent_dim, 32),
            nn.GELU(),
            nn.Linear(32, latent_dim),
        )
        self.head = nn.Linear(latent_dim, num_classes)
        n = num_latents
        rows, cols = torch.tril_indices(n, n, offset=-1)
        slopes = torch.zeros(n, n)
        slopes[rows, cols] = -(rows - cols).float() * 0.1
        self.register_buffer("alibi", slopes + slopes.t())

    def forward(self, data):
        b = data.shape[0]
        x = self.latents.unsqueeze(0).expand(b, -1, -1)
        x = x + self.cross(x, data)
        x = x + self.self_attn(x, x) + 0.0 * self.alibi.sum()
        x = x + self.ff(x)
        return self.head(x.mean(dim=1))


def main():
    torch.manual_seed(1984)
    data = torch.randn(10, 12, 5)
    labels = (data[:, :, 0].mean(1) > 0).long() + (data[:, :, 1].std(1) > 1).long()
    model = Perceiver()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, amsgrad=True, weight_decay=0.02)
    for step in range(6):
        loss = F.cross_entropy(model(data), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f}")
    dists = torch.einsum("bnd,bmd->bnm", data, data).diagonal(dim1=1, dim2=2)
    print(
        f"einsum diag {dists.sum().item():.6f} trace {torch.einsum('ii', torch.eye(4) * 2).item()}"
    )
    addmm = torch.addmm(torch.ones(2, 2), torch.eye(2), torch.eye(2), beta=0.5, alpha=2)
    outer = torch.outer(torch.arange(3.0), torch.arange(2.0))
    print(f"addmm {addmm.sum().item()} outer {math.isclose(outer.sum().item(), 3.0)}")


if __name__ == "__main__":
    main()
