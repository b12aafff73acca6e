"""Tiny Vision Transformer: patch embedding, cls token, TransformerEncoder, AdamW, warmup+cosine."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    def __init__(self, img_size=16, patch_size=4, in_chans=3, embed_dim=32):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        x = self.proj(x)  # B, C, H, W
        return x.flatten(2).transpose(1, 2)  # B, N, C


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads, dropout=0.0, batch_first=True)

    def forward(self, x):
        out, weights = self.mha(x, x, x, need_weights=True, average_attn_weights=True)
        return out, weights


class ViT(nn.Module):
    def __init__(
        self, img_size=16, patch_size=4, num_classes=5, dim=32, depth=2, heads=4, mlp_ratio=2.0
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=int(dim * mlp_ratio),
            dropout=0.1,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.extra = Attention(dim, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, num_classes)
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = self.encoder(x)
        y, attn = self.extra(x)
        x = self.norm(x + y)
        return self.head(x[:, 0]), attn


def warmup_cosine(warmup, total):
    def fn(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def main():
    torch.manual_seed(3)
    model = ViT()
    x = torch.randn(24, 3, 16, 16)
    y = torch.randint(0, 5, (24,))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed")) else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.999),
    )
    total_steps = 6
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(2, total_steps))
    for step in range(total_steps):
        model.train()
        idx = torch.randperm(24)[:12]
        logits, attn = model(x[idx])
        loss = F.cross_entropy(logits, y[idx], label_smoothing=0.05)
        optimizer.zero_grad()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        print(
            f"step {step} loss {loss.item():.6f} gnorm {gnorm.item():.6f} "
            f"lr {optimizer.param_groups[0]['lr']:.6e} attn {attn.sum().item():.4f}"
        )
    model.eval()
    with torch.inference_mode():
        logits, _ = model(x)
        acc = (logits.argmax(-1) == y).float().mean().item()
        print(f"eval loss {F.cross_entropy(logits, y).item():.6f} acc {acc:.4f}")


if __name__ == "__main__":
    main()
