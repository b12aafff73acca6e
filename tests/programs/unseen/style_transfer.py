"""Neural style transfer on tiny images: a frozen random conv feature extractor with forward
hooks, Gram matrices, content/style losses, and the image itself optimised (Adam then L-BFGS)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Normalization(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def forward(self, img):
        return (img - self.mean) / self.std


def gram_matrix(input):
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    G = torch.mm(features, features.t())
    return G.div(a * b * c * d)


def main():
    torch.manual_seed(6)
    cnn = nn.Sequential(
        Normalization([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(inplace=False),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=False),
    ).eval()
    for p in cnn.parameters():
        p.requires_grad_(False)
    features = {}

    def save(name):
        def hook(module, inp, out):
            features[name] = out

        return hook

    handles = [
        cnn[2].register_forward_hook(save("relu1")),
        cnn[4].register_forward_hook(save("relu2")),
        cnn[7].register_forward_hook(save("relu3")),
    ]
    content_img = torch.rand(1, 3, 16, 16)
    style_img = torch.rand(1, 3, 16, 16) ** 2
    cnn(content_img)
    content_target = features["relu2"].detach()
    cnn(style_img)
    style_targets = {k: gram_matrix(v).detach() for k, v in features.items()}
    input_img = content_img.clone().requires_grad_(True)

    def total_loss():
        cnn(input_img)
        c_loss = F.mse_loss(features["relu2"], content_target)
        s_loss = sum(F.mse_loss(gram_matrix(features[k]), style_targets[k]) for k in style_targets)
        return c_loss, s_loss

    opt = torch.optim.Adam([input_img], lr=0.02)
    for step in range(3):
        c_loss, s_loss = total_loss()
        loss = c_loss + 1e3 * s_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            input_img.clamp_(0, 1)
        print(
            f"adam {step} loss {loss.item():.6f} content {c_loss.item():.6f} "
            f"style {s_loss.item():.6f}"
        )
    optimizer = torch.optim.LBFGS([input_img], max_iter=4)
    for step in range(2):

        def closure():
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            c_loss, s_loss = total_loss()
            loss = c_loss + 1e3 * s_loss
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        print(f"lbfgs {step} loss {loss.item():.6f}")
    for h in handles:
        h.remove()
    cnn(input_img)
    print(
        "hooks removed",
        len(features),
        f"pixel mean {input_img.detach().clamp(0, 1).mean().item():.6f}",
    )


if __name__ == "__main__":
    main()
