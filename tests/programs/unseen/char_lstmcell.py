"""Character LSTM with nn.LSTMCell: truncated BPTT with detach, ExponentialLR, perplexity."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CharLSTM(nn.Module):
    def __init__(self, vocab, emb=12, hidden=24, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.cells = nn.ModuleList(
            [nn.LSTMCell(emb if i == 0 else hidden, hidden) for i in range(layers)]
        )
        self.proj = nn.Linear(hidden, vocab)
        self.hidden = hidden

    def init_state(self, batch):
        z = torch.zeros(batch, self.hidden)
        return [(z.clone(), z.clone()) for _ in self.cells]

    def forward(self, tokens, state):
        outs = []
        emb = self.embed(tokens)
        for t in range(tokens.size(1)):
            x = emb[:, t]
            new_state = []
            for cell, (h, c) in zip(self.cells, state):
                h, c = cell(x, (h, c))
                new_state.append((h, c))
                x = h
            state = new_state
            outs.append(x)
        out = torch.stack(outs, dim=1)
        return self.proj(out), state


def detach_state(state):
    return [tuple(s.detach() for s in hc) for hc in state]


def main():
    torch.manual_seed(5)
    text = "hello world, hello torch. " * 12
    vocab = sorted(set(text))
    data = torch.tensor([vocab.index(c) for c in text])
    batch, bptt = 4, 10
    nbatch = data.size(0) // batch
    data = data[: nbatch * batch].view(batch, -1)  # B, L
    model = CharLSTM(len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    for epoch in range(2):
        state = model.init_state(batch)
        total, count = 0.0, 0
        for i, start in enumerate(range(0, data.size(1) - 1 - bptt, bptt)):
            if i >= 4:
                break
            inp = data[:, start : start + bptt]
            tgt = data[:, start + 1 : start + 1 + bptt]
            state = detach_state(state)
            logits, state = model(inp, state)
            log_probs = F.log_softmax(logits, dim=-1)
            loss = -log_probs.gather(2, tgt.unsqueeze(-1)).squeeze(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
            optimizer.step()
            total += loss.item()
            count += 1
            print(f"epoch {epoch} step {i} loss {loss.item():.6f}")
        scheduler.step()
        print(f"epoch {epoch} ppl {math.exp(total / count):.4f}")
    with torch.no_grad():
        model.eval()
        state = model.init_state(1)
        tok = torch.tensor([[vocab.index("h")]])
        out = []
        for _ in range(12):
            logits, state = model(tok, state)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            out.append(vocab[tok.item()])
        print("greedy", repr("".join(out)))


if __name__ == "__main__":
    main()
