"""Contrastive (NT-Xent) pre-training then knowledge distillation with KL divergence."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    def __init__(self, in_dim=16, hidden=32, proj=8):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.projector = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, proj)
        )

    def forward(self, x):
        h = self.backbone(x)
        return h, self.projector(h)


def augment(x):
    noise = 0.1 * torch.randn_like(x)
    mask = torch.bernoulli(torch.full_like(x, 0.9))
    return (x + noise) * mask


def nt_xent(z1, z2, temperature=0.5):
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    n = z1.size(0)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def distillation_loss(student_logits, teacher_logits, labels, T=2.0, alpha=0.7):
    soft = F.kl_div(
        F.log_softmax(student_logits / T, dim=1),
        F.log_softmax(teacher_logits / T, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (T * T)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


def main():
    torch.manual_seed(8)
    x = torch.randn(64, 16)
    labels = (x[:, :4].sum(1) > 0).long() + (x[:, 4:8].sum(1) > 0).long()
    enc = Encoder()
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for step in range(4):
        perm = torch.randperm(64)[:32]
        _, z1 = enc(augment(x[perm]))
        _, z2 = enc(augment(x[perm]))
        loss = nt_xent(z1, z2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"contrastive step {step} loss {loss.item():.6f}")
    # linear probe teacher on frozen features
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    teacher_head = nn.Linear(32, 3)
    opt = torch.optim.SGD(teacher_head.parameters(), lr=0.5)
    with torch.no_grad():
        feats, _ = enc(x)
    for step in range(4):
        loss = F.cross_entropy(teacher_head(feats), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"probe step {step} loss {loss.item():.6f}")
    student = nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    with torch.no_grad():
        teacher_logits = teacher_head(feats)
    for step in range(5):
        loss = distillation_loss(student(x), teacher_logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"distill step {step} loss {loss.item():.6f}")
    with torch.no_grad():
        agree = (student(x).argmax(1) == teacher_logits.argmax(1)).float().mean()
        cos = F.cosine_similarity(student(x), teacher_logits, dim=1).mean()
        print(f"agreement {agree.item():.4f} cos {cos.item():.6f}")


if __name__ == "__main__":
    main()
