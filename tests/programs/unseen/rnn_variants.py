"""Recurrent variants: LSTM with proj_size and given (h0, c0), Elman RNN with relu, GRUCell
loop, pack_sequence of sorted sequences, and PackedSequence fields."""

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence


def main():
    torch.manual_seed(21)
    lstm = nn.LSTM(input_size=5, hidden_size=8, num_layers=2, proj_size=4)
    rnn = nn.RNN(5, 6, nonlinearity="relu", bidirectional=True)
    cell = nn.GRUCell(5, 7)
    head = nn.Linear(4 + 12 + 7, 1)
    params = (
        list(lstm.parameters())
        + list(rnn.parameters())
        + list(cell.parameters())
        + list(head.parameters())
    )
    print("lstm params", [tuple(p.shape) for p in lstm.parameters()][:4])
    opt = torch.optim.Adamax(params, lr=0.01)
    seqs = [torch.randn(n, 5) for n in (7, 5, 4, 2)]  # sorted by length, longest first
    target = torch.randn(4)
    for step in range(5):
        packed = pack_sequence(seqs)
        h0 = torch.zeros(2, 4, 4)
        c0 = torch.zeros(2, 4, 8)
        out, (hn, cn) = lstm(packed, (h0, c0))
        padded, lengths = pad_packed_sequence(out)
        rnn_out, rnn_h = rnn(nn.utils.rnn.pad_sequence(seqs))
        h = torch.zeros(4, 7)
        for t in range(padded.size(0)):
            x_t = nn.utils.rnn.pad_sequence(seqs)[t]
            h = cell(x_t, h)
        feats = torch.cat([hn[-1], rnn_h.transpose(0, 1).reshape(4, -1), h], dim=1)
        pred = head(feats).squeeze(1)
        loss = nn.functional.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f} cn {cn.abs().sum().item():.6f}")
    print(
        "batch sizes",
        packed.batch_sizes.tolist(),
        "lengths",
        lengths.tolist(),
        "padded",
        tuple(padded.shape),
        "rnn out",
        tuple(rnn_out.shape),
    )


if __name__ == "__main__":
    main()
