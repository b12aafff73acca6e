"""Speech-style recogniser with CTC: Conv1d front-end, bidirectional GRU, log_softmax (T, N, C),
CTCLoss with input/target lengths, greedy decoding with unique_consecutive."""

import torch
import torch.nn as nn
import torch.nn.functional as F

BLANK = 0


class SpeechModel(nn.Module):
    def __init__(self, n_feats=8, hidden=16, n_class=6):
        super().__init__()
        self.frontend = nn.Sequential(
            nn.Conv1d(n_feats, hidden, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
        )
        self.norm = nn.LayerNorm(hidden)
        self.rnn = nn.GRU(hidden, hidden, num_layers=2, bidirectional=True, dropout=0.1)
        self.classifier = nn.Linear(2 * hidden, n_class)

    def forward(self, feats):  # feats: N, F, T
        x = self.frontend(feats)  # N, H, T'
        x = self.norm(x.transpose(1, 2))  # N, T', H
        x, _ = self.rnn(x.transpose(0, 1))  # T', N, 2H
        return F.log_softmax(self.classifier(x), dim=2)


def greedy_decode(log_probs):
    out = []
    for seq in log_probs.argmax(2).t():
        seq = torch.unique_consecutive(seq)
        out.append([int(s) for s in seq if s != BLANK])
    return out


def main():
    torch.manual_seed(9)
    N, T = 6, 24
    feats = torch.randn(N, 8, T)
    target_lengths = torch.randint(2, 5, (N,), dtype=torch.long)
    targets = torch.randint(1, 6, (int(target_lengths.sum()),), dtype=torch.long)
    model = SpeechModel()
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=5e-3, total_steps=6, anneal_strategy="linear"
    )
    for step in range(6):
        model.train()
        log_probs = model(feats)
        input_lengths = torch.full((N,), log_probs.size(0), dtype=torch.long)
        input_lengths[0] -= 2
        loss = ctc(log_probs, targets, input_lengths, target_lengths)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        print(f"step {step} loss {loss.item():.6f}")
    model.eval()
    with torch.no_grad():
        lp = model(feats)
        per_sample = F.ctc_loss(
            lp, targets, torch.full((N,), lp.size(0)), target_lengths, reduction="none"
        )
        print("per-sample", [f"{v:.5f}" for v in per_sample.tolist()])
        print("decoded", greedy_decode(lp)[:2])


if __name__ == "__main__":
    main()
