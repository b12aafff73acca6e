"""GRU encoder-decoder with Bahdanau attention and teacher forcing on a toy reversal task."""

import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import optim

SOS, EOS, PAD = 0, 1, 2
VOCAB = 12
MAX_LEN = 7


class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(
        self, encoder_outputs, encoder_hidden, target_tensor=None, teacher_forcing_ratio=0.5
    ):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long).fill_(SOS)
        decoder_hidden = encoder_hidden
        decoder_outputs, attentions = [], []
        for i in range(MAX_LEN):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)
            if target_tensor is not None and random.random() < teacher_forcing_ratio:
                decoder_input = target_tensor[:, i].unsqueeze(1)  # teacher forcing
            else:
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()
        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        return decoder_outputs, decoder_hidden, torch.cat(attentions, dim=1)

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        return self.out(output), hidden, attn_weights


def random_pairs(n):
    src = torch.full((n, MAX_LEN), PAD, dtype=torch.long)
    tgt = torch.full((n, MAX_LEN), PAD, dtype=torch.long)
    for k in range(n):
        length = random.randint(2, MAX_LEN - 1)
        seq = [random.randint(3, VOCAB - 1) for _ in range(length)]
        src[k, :length] = torch.tensor(seq)
        src[k, length] = EOS
        tgt[k, :length] = torch.tensor(seq[::-1])
        tgt[k, length] = EOS
    return src, tgt


def main():
    random.seed(7)
    torch.manual_seed(7)
    hidden_size = 16
    encoder = EncoderRNN(VOCAB, hidden_size)
    decoder = AttnDecoderRNN(hidden_size, VOCAB)
    enc_opt = optim.Adam(encoder.parameters(), lr=0.01)
    dec_opt = optim.Adam(decoder.parameters(), lr=0.01)
    criterion = nn.NLLLoss(ignore_index=PAD)
    src, tgt = random_pairs(32)
    for step in range(5):
        total = 0.0
        for b in range(0, 32, 16):
            s, t = src[b : b + 16], tgt[b : b + 16]
            enc_opt.zero_grad()
            dec_opt.zero_grad()
            encoder_outputs, encoder_hidden = encoder(s)
            decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, t)
            loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), t.view(-1))
            loss.backward()
            enc_opt.step()
            dec_opt.step()
            total += loss.item()
        print(f"step {step} loss {total / 2:.6f}")
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        encoder_outputs, encoder_hidden = encoder(src[:4])
        decoder_outputs, _, attn = decoder(encoder_outputs, encoder_hidden)
        decoded = decoder_outputs.argmax(-1)
        print(
            "eval loss", f"{criterion(decoder_outputs.flatten(0, 1), tgt[:4].flatten()).item():.6f}"
        )
        print("attn rows sum", f"{attn.sum(-1).mean().item():.6f}", "decoded", decoded[0].tolist())


if __name__ == "__main__":
    main()
