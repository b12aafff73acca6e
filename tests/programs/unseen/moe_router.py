"""Mixture-of-experts MLP: top-k routing, load-balancing loss, per-expert dispatch with where/
index_add_, plus a Siamese triplet objective on the pooled output."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class MoE(nn.Module):
    def __init__(self, dim=16, hidden=24, num_experts=4, k=2):
        super().__init__()
        self.k, self.num_experts = k, num_experts
        self.gate = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList([Expert(dim, hidden) for _ in range(num_experts)])

    def forward(self, x):
        B, T, D = x.shape
        flat = x.reshape(-1, D)
        logits = self.gate(flat)
        probs = logits.softmax(dim=-1)
        topk_probs, topk_idx = probs.topk(self.k, dim=-1)
        topk_probs = topk_probs / topk_probs.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(topk_idx == e)
            if token_idx.numel() == 0:
                continue
            y = expert(flat[token_idx]) * topk_probs[token_idx, slot].unsqueeze(-1)
            out.index_add_(0, token_idx, y)
        # Switch-style load balancing: fraction routed x mean gate probability
        counts = F.one_hot(topk_idx[:, 0], self.num_experts).float().mean(0)
        aux = self.num_experts * (counts * probs.mean(0)).sum()
        return out.view(B, T, D), aux


class Model(nn.Module):
    def __init__(self, vocab=20, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.moe = MoE(dim)
        self.head = nn.Linear(dim, 8)

    def forward(self, tokens):
        h = self.embed(tokens)
        m, aux = self.moe(self.norm(h))
        h = h + m
        return F.normalize(self.head(h.mean(1)), dim=-1), aux


def main():
    torch.manual_seed(77)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    triplet = nn.TripletMarginLoss(margin=0.5, p=2)
    for step in range(6):
        anchor = torch.randint(0, 20, (8, 6))
        positive = anchor.clone()
        positive[:, torch.randint(0, 6, (1,))] = torch.randint(0, 20, (8, 1))
        negative = torch.randint(0, 20, (8, 6))
        (a, aux_a), (p, aux_p), (n, aux_n) = model(anchor), model(positive), model(negative)
        loss = triplet(a, p, n) + 0.01 * (aux_a + aux_p + aux_n)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        d_ap = F.pairwise_distance(a, p).mean()
        d_an = torch.cdist(a, n).diagonal().mean()
        print(
            f"step {step} loss {loss.item():.6f} aux {aux_a.item():.6f} "
            f"d_ap {d_ap.item():.6f} d_an {d_an.item():.6f}"
        )
    with torch.no_grad():
        tokens = torch.randint(0, 20, (4, 6))
        flat = model.norm(model.embed(tokens)).reshape(-1, 16)
        usage = torch.bincount(model.moe.gate(flat).argmax(-1), minlength=4)
        print("expert usage", usage.tolist())


if __name__ == "__main__":
    main()
