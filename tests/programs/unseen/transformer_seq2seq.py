"""nn.Transformer encoder-decoder on a copy-with-offset task: sinusoidal positional encoding,
square subsequent mask, key padding masks, greedy decoding, label smoothing, Noam schedule."""

import math

import torch
import torch.nn as nn

PAD, BOS, EOS = 0, 1, 2


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=64):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(0)])


class Seq2SeqTransformer(nn.Module):
    def __init__(self, vocab, d_model=32, nhead=4, layers=2, ff=64):
        super().__init__()
        self.src_emb = nn.Embedding(vocab, d_model)
        self.tgt_emb = nn.Embedding(vocab, d_model)
        self.pos = PositionalEncoding(d_model)
        self.transformer = nn.Transformer(d_model, nhead, layers, layers, ff, dropout=0.1)
        self.generator = nn.Linear(d_model, vocab)
        self.d_model = d_model

    def forward(self, src, tgt, src_pad, tgt_pad):
        tgt_mask = self.transformer.generate_square_subsequent_mask(tgt.size(0))
        s = self.pos(self.src_emb(src) * math.sqrt(self.d_model))
        t = self.pos(self.tgt_emb(tgt) * math.sqrt(self.d_model))
        out = self.transformer(
            s,
            t,
            tgt_mask=tgt_mask,
            src_key_padding_mask=src_pad,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.generator(out)

    def greedy_decode(self, src, max_len):
        memory = self.transformer.encoder(self.pos(self.src_emb(src) * math.sqrt(self.d_model)))
        ys = torch.full((1, src.size(1)), BOS, dtype=torch.long)
        for _ in range(max_len - 1):
            mask = nn.Transformer.generate_square_subsequent_mask(ys.size(0))
            out = self.transformer.decoder(
                self.pos(self.tgt_emb(ys) * math.sqrt(self.d_model)), memory, tgt_mask=mask
            )
            next_word = self.generator(out[-1]).argmax(-1)
            ys = torch.cat([ys, next_word.unsqueeze(0)], dim=0)
        return ys


def make_batch(n, vocab, gen):
    lengths = torch.randint(3, 7, (n,), generator=gen)
    T = int(lengths.max()) + 2
    src = torch.full((T, n), PAD, dtype=torch.long)
    tgt = torch.full((T + 1, n), PAD, dtype=torch.long)
    for j, L in enumerate(lengths.tolist()):
        seq = torch.randint(3, vocab - 1, (L,), generator=gen)
        src[:L, j] = seq
        src[L, j] = EOS
        tgt[0, j] = BOS
        tgt[1 : L + 1, j] = seq + 1
        tgt[L + 1, j] = EOS
    return src, tgt


def main():
    torch.manual_seed(13)
    gen = torch.Generator().manual_seed(13)
    vocab = 16
    model = Seq2SeqTransformer(vocab)
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 32**-0.5 * min((s + 1) ** -0.5, (s + 1) * 4**-1.5)
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    for step in range(6):
        model.train()
        src, tgt = make_batch(8, vocab, gen)
        tgt_in, tgt_out = tgt[:-1], tgt[1:]
        logits = model(src, tgt_in, (src == PAD).t(), (tgt_in == PAD).t())
        loss = loss_fn(logits.reshape(-1, vocab), tgt_out.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        print(f"step {step} loss {loss.item():.6f} lr {scheduler.get_last_lr()[0]:.6f}")
    model.eval()
    with torch.no_grad():
        src, tgt = make_batch(2, vocab, gen)
        ys = model.greedy_decode(src, 5)
        print("decoded", ys.t().tolist())


if __name__ == "__main__":
    main()
