"""Comparing a chainrule layer with the same torch layer: parameter names and state_dict layout,
repr, outputs, input gradients and parameter gradients (float64)."""

from __future__ import annotations

import numpy as np

import chainrule as cr


def load_from_torch(c_mod, t_mod) -> None:
    """Give the chainrule module the torch module's parameters and buffers (same keys, shapes
    and dtypes required)."""
    t_sd, c_sd = t_mod.state_dict(), c_mod.state_dict()
    assert list(c_sd) == list(t_sd), f"state_dict keys {list(c_sd)} != torch {list(t_sd)}"
    for k in t_sd:
        assert tuple(c_sd[k].shape) == tuple(t_sd[k].shape), k
        assert str(c_sd[k].dtype).split(".")[-1] == str(t_sd[k].dtype).split(".")[-1], k
    c_mod.load_state_dict({k: cr.tensor(v.detach().numpy().copy()) for k, v in t_sd.items()})


def as_list(out) -> list:
    if isinstance(out, (tuple, list)):
        return [o for o in out]
    return [out]


def compare(c_mod, t_mod, inputs: list, *, diff: list | None = None, rtol: float = 1e-10,
            atol: float = 1e-12, seed: int = 0, kwargs: dict | None = None) -> None:
    """Same outputs, and after backward of Σ w·output the same input and parameter
    gradients. ``inputs``: NumPy arrays (float ones get requires_grad unless ``diff`` says)."""
    import torch

    kwargs = kwargs or {}
    diff = diff if diff is not None else [np.asarray(a).dtype.kind == "f" for a in inputs]
    c_in = [cr.tensor(np.array(a), requires_grad=bool(g)) for a, g in zip(inputs, diff)]
    t_in = [torch.tensor(np.array(a), requires_grad=bool(g)) for a, g in zip(inputs, diff)]
    c_out = as_list(c_mod(*c_in, **kwargs))
    t_out = as_list(t_mod(*t_in, **kwargs))
    assert len(c_out) == len(t_out)
    rng = np.random.default_rng(seed)
    c_loss = t_loss = 0
    for c, t in zip(c_out, t_out):
        if t is None or not isinstance(t, torch.Tensor):
            continue
        assert tuple(c.shape) == tuple(t.shape), (tuple(c.shape), tuple(t.shape))
        np.testing.assert_allclose(c.detach().numpy(), t.detach().numpy(), rtol=rtol, atol=atol)
        if t.requires_grad:
            w = rng.standard_normal(tuple(t.shape))
            c_loss = c_loss + (c * cr.tensor(w)).sum()
            t_loss = t_loss + (t * torch.tensor(w)).sum()
    if isinstance(t_loss, int):
        return
    c_loss.backward()
    t_loss.backward()
    for i, (c, t) in enumerate(zip(c_in, t_in)):
        if t.requires_grad:
            want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
            got = np.zeros(c.shape) if c.grad is None else c.grad.numpy()
            np.testing.assert_allclose(got, want, rtol=rtol * 100, atol=atol * 100,
                                       err_msg=f"gradient of input {i}")
    t_params = dict(t_mod.named_parameters())
    for name, p in c_mod.named_parameters():
        t = t_params[name]
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        got = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=rtol * 100, atol=atol * 100,
                                   err_msg=f"gradient of parameter {name}")


def same_repr(c_mod, t_mod) -> None:
    """The reprs agree (``torch`` spelled ``chainrule``)."""
    assert repr(c_mod) == repr(t_mod).replace("torch.", "chainrule."), (repr(c_mod),
                                                                         repr(t_mod))
