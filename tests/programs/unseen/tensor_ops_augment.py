"""Tensor manipulation as data-augmentation and feature code does it: roll/flip/rot90, narrow,
chunk/split/tensor_split, repeat/tile, movedim, masked_select, nonzero, sort/kthvalue/median/
mode, cummax/cumprod/diff, bucketize/searchsorted/histc, then a small model trained on them."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def augment(img, gen):
    k = int(torch.randint(0, 4, (1,), generator=gen))
    img = torch.rot90(img, k, dims=(1, 2))
    if torch.rand(1, generator=gen) < 0.5:
        img = torch.flip(img, dims=[2])
    shift = int(torch.randint(-2, 3, (1,), generator=gen))
    img = torch.roll(img, shifts=shift, dims=1)
    top = int(torch.randint(0, 3, (1,), generator=gen))
    img = img.narrow(1, top, 6).narrow(2, 1, 6)
    return img


def features(x):
    parts = torch.chunk(x, 3, dim=1)
    a, b = torch.split(x, [4, 8], dim=1)
    c = torch.tensor_split(x, (2, 5), dim=1)[1]
    srt, idx = torch.sort(x, dim=1, stable=True)
    kth = torch.kthvalue(x, 3, dim=1).values
    med = x.median(dim=1).values
    cmax = torch.cummax(x, dim=1).values[:, -1]
    cprod = torch.cumprod(torch.sigmoid(x), dim=1)[:, -1]
    dif = torch.diff(x, dim=1).abs().mean(1)
    return torch.stack(
        [p.mean(1) for p in parts]
        + [a.std(1), b.amax(1), c.sum(1), srt[:, 1], idx.float()[:, 0], kth, med, cmax, cprod, dif],
        dim=1,
    )


def main():
    torch.manual_seed(8080)
    gen = torch.Generator().manual_seed(3)
    imgs = torch.randn(20, 8, 8)
    labels = (imgs[:, :4, :4].mean((1, 2)) > 0).long()
    aug = torch.stack([augment(im.unsqueeze(0), gen).squeeze(0) for im in imgs])
    aug = aug.movedim(0, -1).movedim(-1, 0).reshape(20, -1)[:, :12]
    x = torch.cat([features(aug), aug.repeat(1, 2)[:, :4], aug[:, :2].tile((1, 2))], dim=1)
    mask = x > 0
    print(
        "positive",
        int(mask.sum()),
        f"{torch.masked_select(x, mask).mean().item():.6f}",
        "nz rows",
        torch.nonzero(mask.all(1), as_tuple=True)[0].tolist()[:3],
    )
    bounds = torch.tensor([-1.0, 0.0, 1.0])
    buck = torch.bucketize(x[:, 0].contiguous(), bounds)
    ss = torch.searchsorted(bounds, x[:, 1].contiguous(), right=True)
    hist = torch.histc(x[:, 2], bins=4, min=-2, max=2)
    print(
        "bucket",
        buck.tolist()[:6],
        "ss",
        ss.tolist()[:6],
        "hist",
        hist.tolist(),
        "mode",
        torch.mode(buck).values.item(),
    )
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    model = nn.Sequential(
        nn.Linear(x.size(1), 16), nn.SELU(), nn.AlphaDropout(0.1), nn.Linear(16, 2)
    )
    opt = torch.optim.Rprop(model.parameters(), lr=0.01)
    for step in range(6):
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step} loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
