"""Model ensembling with torch.func: stack_module_state, functional_call under vmap, per-model
predictions, and an ensemble trained with grad over the stacked parameters."""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap


class SimpleMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def main():
    torch.manual_seed(9)
    num_models = 4
    models = [SimpleMLP() for _ in range(num_models)]
    params, buffers = stack_module_state(models)
    base_model = copy.deepcopy(models[0])  # the tutorial moves it to "meta" (not in chainrule)

    def fmodel(params, buffers, x):
        return functional_call(base_model, (params, buffers), (x,))

    x = torch.randn(32, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    minibatches = x.view(num_models, 8, 6)
    preds_diff = vmap(fmodel)(params, buffers, minibatches)
    preds_same = vmap(fmodel, in_dims=(0, 0, None))(params, buffers, x)
    print("shapes", tuple(preds_diff.shape), tuple(preds_same.shape))
    print(f"match {torch.allclose(preds_same[1], models[1](x), atol=1e-6)}")

    def loss_fn(p, b, xb, yb):
        return F.cross_entropy(fmodel(p, b, xb), yb)

    step_fn = vmap(grad_and_value(loss_fn), in_dims=(0, 0, None, None))
    lr = 0.1
    for step in range(5):
        grads, losses = step_fn(params, buffers, x, y)
        params = {k: v - lr * grads[k] for k, v in params.items()}
        print(f"step {step} losses {' '.join(f'{l:.6f}' for l in losses.tolist())}")
    ens = vmap(fmodel, in_dims=(0, 0, None))(params, buffers, x).softmax(-1).mean(0)
    print(
        f"ensemble acc {(ens.argmax(1) == y).float().mean().item():.4f} "
        f"nll {F.nll_loss(ens.log(), y).item():.6f}"
    )


if __name__ == "__main__":
    main()
