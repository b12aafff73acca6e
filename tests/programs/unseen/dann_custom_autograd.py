"""Domain-adversarial training (DANN) with a custom autograd.Function gradient reversal layer,
a straight-through binariser, tensor hooks, retain_grad and autograd.functional.jacobian."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Function


class GradReverse(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


class BinarizeST(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        out = torch.sign(x)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad = grad_output.clone()
        grad[x.abs() > 1] = 0
        return grad


class DANN(nn.Module):
    def __init__(self):
        super().__init__()
        self.feature = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))
        self.label_head = nn.Linear(8, 3)
        self.domain_head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x, alpha):
        f = self.feature(x)
        fb = BinarizeST.apply(f) * 0.5 + f * 0.5
        return self.label_head(fb), self.domain_head(GradReverse.apply(fb, alpha)).squeeze(1)


def main():
    torch.manual_seed(314)
    xs = torch.randn(32, 6)
    ys = (xs[:, 0] > 0).long() + (xs[:, 1] > 0.5).long()
    xt = torch.randn(32, 6) * 1.3 + 0.4
    model = DANN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    grad_norms = []
    h = model.feature[2].weight.register_hook(lambda g: grad_norms.append(g.norm().item()))
    for step in range(6):
        p = step / 6
        alpha = 2.0 / (1.0 + torch.exp(torch.tensor(-10.0 * p)).item()) - 1
        cls_s, dom_s = model(xs, alpha)
        _, dom_t = model(xt, alpha)
        loss_cls = F.cross_entropy(cls_s, ys)
        dom_logits = torch.cat([dom_s, dom_t])
        dom_labels = torch.cat([torch.zeros(32), torch.ones(32)])
        loss_dom = F.binary_cross_entropy_with_logits(dom_logits, dom_labels)
        loss = loss_cls + loss_dom
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(
            f"step {step} loss {loss.item():.6f} cls {loss_cls.item():.6f} "
            f"dom {loss_dom.item():.6f} hook {grad_norms[-1]:.6f}"
        )
    h.remove()
    x = torch.randn(4, 6, requires_grad=True)
    f = model.feature(x)
    f.retain_grad()
    out = model.label_head(f).logsumexp(1).sum()
    out.backward(retain_graph=True)
    g1 = x.grad.clone()
    out.backward()
    print(f"retain {f.grad.abs().sum().item():.6f} twice {torch.allclose(x.grad, 2 * g1)}")
    J = torch.autograd.functional.jacobian(
        lambda v: model.label_head(model.feature(v)), x[0].detach()
    )
    print("jacobian", tuple(J.shape), f"{J.abs().sum().item():.6f}")
    gx, gu = torch.autograd.grad(
        model.feature(x).sum(), [x, model.label_head.weight], allow_unused=True
    )
    print("unused is None", gu is None, f"{gx.sum().item():.6f}")


if __name__ == "__main__":
    main()
