"""Skip-gram with negative sampling (unigram^0.75 multinomial, logsigmoid, bmm) and a BPR
matrix-factorisation recommender with Adagrad and SparseAdam-free embeddings."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SkipGram(nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.in_embed = nn.Embedding(vocab, dim)
        self.out_embed = nn.Embedding(vocab, dim)
        init = 0.5 / dim
        self.in_embed.weight.data.uniform_(-init, init)
        self.out_embed.weight.data.zero_()

    def forward(self, center, context, negatives):
        v = self.in_embed(center)  # B, D
        u = self.out_embed(context)  # B, D
        neg = self.out_embed(negatives)  # B, K, D
        pos_score = F.logsigmoid((v * u).sum(-1))
        neg_score = F.logsigmoid(-torch.bmm(neg, v.unsqueeze(2)).squeeze(2)).sum(1)
        return -(pos_score + neg_score).mean()


class BPR(nn.Module):
    def __init__(self, users, items, dim):
        super().__init__()
        self.user = nn.Embedding(users, dim)
        self.item = nn.Embedding(items, dim)
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, u, i, j):
        pu = self.user(u)
        x_uij = (pu * self.item(i)).sum(1) - (pu * self.item(j)).sum(1)
        reg = pu.norm(dim=1).pow(2).mean() + self.item(i).norm(dim=1).pow(2).mean()
        return -F.logsigmoid(x_uij).mean(), reg


def main():
    torch.manual_seed(2718)
    vocab = 25
    corpus = torch.randint(0, vocab, (200,))
    corpus = torch.where(torch.rand(200) < 0.3, corpus % 5, corpus)  # skewed frequencies
    counts = torch.bincount(corpus, minlength=vocab).float()
    noise = counts.pow(0.75)
    noise = noise / noise.sum()
    window = 2
    pairs = [
        (int(corpus[i]), int(corpus[j]))
        for i in range(len(corpus))
        for j in range(max(0, i - window), min(len(corpus), i + window + 1))
        if i != j
    ]
    pairs = torch.tensor(pairs)
    model = SkipGram(vocab, 8)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(5):
        batch = pairs[torch.randint(0, len(pairs), (64,))]
        negatives = torch.multinomial(noise, 64 * 5, replacement=True).view(64, 5)
        loss = model(batch[:, 0], batch[:, 1], negatives)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"sgns step {step} loss {loss.item():.6f}")
    emb = F.normalize(model.in_embed.weight.detach(), dim=1)
    sims = emb @ emb[0]
    print("nearest to 0", sims.topk(3).indices.tolist())

    users, items = 10, 15
    interactions = torch.rand(users, items) < 0.3
    pos = interactions.nonzero()
    mf = BPR(users, items, 6)
    opt = torch.optim.Adagrad(mf.parameters(), lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)
    for step in range(5):
        idx = torch.randint(0, len(pos), (32,))
        u, i = pos[idx, 0], pos[idx, 1]
        j = torch.randint(0, items, (32,))
        loss, reg = mf(u, i, j)
        total = loss + 1e-3 * reg
        opt.zero_grad()
        total.backward()
        opt.step()
        print(f"bpr step {step} loss {total.item():.6f}")
    with torch.no_grad():
        scores = mf.user.weight @ mf.item.weight.t()
        scores[interactions] = -float("inf")
        print("recommend user 0", scores[0].argsort(descending=True)[:3].tolist())


if __name__ == "__main__":
    main()
