"""Attention masks in every form: MultiheadAttention with kdim/vdim, bool key_padding_mask and a
3-D float attn_mask, per-head weights; a batch_first TransformerDecoder with memory masks; the
encoder's eval fast path with a padding mask; scaled_dot_product_attention with a bool mask."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    torch.manual_seed(2)
    B, L, S, E, H = 3, 4, 6, 8, 2
    mha = nn.MultiheadAttention(E, H, kdim=5, vdim=7, batch_first=True, dropout=0.0)
    q = torch.randn(B, L, E)
    k = torch.randn(B, S, 5)
    v = torch.randn(B, S, 7)
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[0, -2:] = True
    kpm[2, -1] = True
    attn_mask = torch.randn(B * H, L, S) * 0.1
    layer = nn.TransformerDecoderLayer(E, H, 16, dropout=0.1, batch_first=True)
    decoder = nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(E))
    enc_layer = nn.TransformerEncoderLayer(E, H, 16, dropout=0.1, batch_first=True)
    encoder = nn.TransformerEncoder(enc_layer, 2, enable_nested_tensor=True)
    params = list(mha.parameters()) + list(decoder.parameters()) + list(encoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    target = torch.randn(B, L, E)
    for step in range(4):
        out, w = mha(q, k, v, key_padding_mask=kpm, attn_mask=attn_mask, average_attn_weights=False)
        memory = encoder(
            torch.randn(B, S, E) if step == 0 else out.detach().repeat(1, 2, 1)[:, :S],
            src_key_padding_mask=kpm,
        )
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(L)
        dec = decoder(
            out, memory, tgt_mask=tgt_mask, memory_key_padding_mask=kpm, tgt_is_causal=True
        )
        loss = F.mse_loss(dec, target) + w[0, :, :, -2:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f} w {tuple(w.shape)} {w.sum().item():.4f}")
    encoder.eval()
    with torch.no_grad():
        src = torch.randn(B, S, E)
        enc = encoder(src, src_key_padding_mask=kpm)
        print(
            f"eval enc {enc[1].sum().item():.6f} padded rows {enc[0, -2:].abs().sum().item():.6f}"
        )
        qh, kh, vh = (torch.randn(B, H, L, 4) for _ in range(3))
        mask = torch.ones(L, L, dtype=torch.bool).tril()
        a = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
        b = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True)
        print(f"sdpa {a.sum().item():.6f} same {torch.allclose(a, b, atol=1e-6)}")


if __name__ == "__main__":
    main()
