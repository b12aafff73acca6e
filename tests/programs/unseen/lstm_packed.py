"""Bidirectional LSTM text classifier over variable-length sequences (pad/pack/unpack)."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

PAD = 0


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_dim, num_classes, num_layers=2, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout,
        )
        self.attn = nn.Linear(2 * hidden_dim, 1)
        self.fc = nn.Linear(4 * hidden_dim, num_classes)

    def forward(self, tokens, lengths):
        emb = self.embedding(tokens)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, (h_n, c_n) = self.lstm(packed)
        out, out_lengths = pad_packed_sequence(packed_out, batch_first=True, padding_value=0.0)
        # attention pooling over the valid timesteps
        mask = torch.arange(out.size(1))[None, :] < out_lengths[:, None]
        scores = self.attn(out).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        pooled = torch.bmm(weights.unsqueeze(1), out).squeeze(1)
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return self.fc(torch.cat([pooled, last], dim=-1))


def make_batch(gen, batch_size, vocab_size):
    lengths = torch.randint(2, 9, (batch_size,), generator=gen)
    seqs = [torch.randint(1, vocab_size, (int(n),), generator=gen) for n in lengths]
    labels = torch.stack([(s % 3 == 0).sum() % 2 for s in seqs])
    return pad_sequence(seqs, batch_first=True, padding_value=PAD), lengths, labels


def main():
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(42)
    model = LSTMClassifier(vocab_size=20, embed_dim=8, hidden_dim=12, num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(6):
        tokens, lengths, labels = make_batch(gen, 8, 20)
        model.train()
        logits = model(tokens, lengths)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        acc = (logits.argmax(dim=1) == labels).float().mean()
        print(f"step {step} loss {loss.item():.6f} acc {acc.item():.3f}")
    model.eval()
    with torch.no_grad():
        tokens, lengths, labels = make_batch(gen, 16, 20)
        probs = model(tokens, lengths).softmax(-1)
        print(f"eval loss {nn.functional.nll_loss(probs.log(), labels).item():.6f}")
    print("padding row", model.embedding.weight[PAD].abs().sum().item())


if __name__ == "__main__":
    main()
