"""TransE knowledge-graph embeddings: margin ranking loss on corrupted triples, entity
renormalisation under no_grad, L1 distances, filtered hits@k evaluation."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TransE(nn.Module):
    def __init__(self, n_ent, n_rel, dim=8, p=1):
        super().__init__()
        self.ent = nn.Embedding(n_ent, dim)
        self.rel = nn.Embedding(n_rel, dim)
        bound = 6 / dim**0.5
        nn.init.uniform_(self.ent.weight, -bound, bound)
        nn.init.uniform_(self.rel.weight, -bound, bound)
        with torch.no_grad():
            self.rel.weight.div_(self.rel.weight.norm(p=2, dim=1, keepdim=True))
        self.p = p

    def distance(self, h, r, t):
        return torch.norm(self.ent(h) + self.rel(r) - self.ent(t), p=self.p, dim=-1)


def main():
    torch.manual_seed(4242)
    n_ent, n_rel = 15, 3
    heads = torch.randint(0, n_ent, (60,))
    rels = torch.randint(0, n_rel, (60,))
    tails = (heads + rels + 1) % n_ent
    triples = torch.stack([heads, rels, tails], 1).unique(dim=0)
    model = TransE(n_ent, n_rel)
    criterion = nn.MarginRankingLoss(margin=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(6):
        with torch.no_grad():
            model.ent.weight.data = F.normalize(model.ent.weight.data, p=2, dim=1)
        perm = torch.randperm(len(triples))
        total = 0.0
        for i in range(0, len(triples), 16):
            h, r, t = triples[perm[i : i + 16]].unbind(1)
            corrupt_head = torch.rand(len(h)) < 0.5
            rand_ent = torch.randint(0, n_ent, (len(h),))
            h_neg = torch.where(corrupt_head, rand_ent, h)
            t_neg = torch.where(corrupt_head, t, rand_ent)
            pos = model.distance(h, r, t)
            neg = model.distance(h_neg, r, t_neg)
            loss = criterion(pos, neg, -torch.ones_like(pos))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"epoch {epoch} loss {total:.6f}")
    with torch.no_grad():
        h, r, t = triples.unbind(1)
        d = model.distance(h.unsqueeze(1), r.unsqueeze(1), torch.arange(n_ent).unsqueeze(0))
        known = torch.zeros(len(triples), n_ent, dtype=torch.bool)
        for k, (hh, rr, _tt) in enumerate(triples.tolist()):
            same = (triples[:, 0] == hh) & (triples[:, 1] == rr)
            known[k, triples[same, 2]] = True
        known[torch.arange(len(triples)), t] = False
        d = d.masked_fill(known, float("inf"))
        rank = (d < d.gather(1, t.unsqueeze(1))).sum(1) + 1
        print(
            f"mrr {(1.0 / rank.float()).mean().item():.6f} "
            f"hits@3 {(rank <= 3).float().mean().item():.6f}"
        )


if __name__ == "__main__":
    main()
