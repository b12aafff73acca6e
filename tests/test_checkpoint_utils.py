"""torch.utils.checkpoint's API (cr.utils.checkpoint): values, gradients and random draws equal
torch's, and torch's warnings and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.utils.checkpoint import checkpoint, checkpoint_sequential

torch = pytest.importorskip("torch")
from torch.utils import checkpoint as tcp  # noqa: E402


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Tanh(),
                             torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    cm = cr.nn.Sequential(cr.nn.Linear(4, 8), cr.nn.Dropout(0.3), cr.nn.Tanh(),
                          cr.nn.Linear(8, 8), cr.nn.ReLU(), cr.nn.Linear(8, 2))
    cm.load_state_dict({k: cr.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return cm, tm


@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpoint_values_grads_and_random_stream_like_torch(reentrant) -> None:
    cm, tm = _pair()
    x = torch.randn(5, 4, requires_grad=True)
    cx = cr.tensor(x.detach().numpy(), requires_grad=True)
    torch.manual_seed(3)
    cr.manual_seed(3)
    ty = tcp.checkpoint(tm, x, use_reentrant=reentrant)
    cy = checkpoint(cm, cx, use_reentrant=reentrant)
    ty.square().sum().backward()
    cy.square().sum().backward()
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(cx.grad.numpy(), x.grad.numpy(), rtol=1e-5, atol=1e-7)
    for cp, tp in zip(cm.parameters(), tm.parameters()):
        np.testing.assert_allclose(cp.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(cr.get_rng_state().numpy(), torch.get_rng_state().numpy())


def test_checkpoint_sequential_and_keyword_arguments_like_torch() -> None:
    cm, tm = _pair(1)
    cm.eval()
    tm.eval()
    x = torch.randn(3, 4)
    ty = tcp.checkpoint_sequential(tm, 2, x, use_reentrant=False)
    cy = checkpoint_sequential(cm, 2, cr.tensor(x.numpy()), use_reentrant=False)
    np.testing.assert_allclose(cy.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
    assert cy.requires_grad and ty.requires_grad
    out = checkpoint(lambda a, scale=1.0: a * scale, cr.ones(2), use_reentrant=False, scale=3.0)
    assert out.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="Unexpected keyword arguments: scale"):
        checkpoint(lambda a, scale=1.0: a * scale, cr.ones(2), use_reentrant=True, scale=3.0)
    with pytest.raises(ValueError, match="Unexpected keyword arguments: foo"):
        checkpoint_sequential(cm, 2, cr.ones(3, 4), use_reentrant=False, foo=1)


def test_reentrant_without_grad_inputs_and_missing_use_reentrant_warn_like_torch() -> None:
    cm, tm = _pair(2)
    for mod, ck, t in ((cm, checkpoint, cr.ones(2, 4)), (tm, tcp.checkpoint, torch.ones(2, 4))):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out = ck(mod, t, use_reentrant=True)
        assert not out.requires_grad  # parameters get no gradient through it, as in torch
        assert any("None of the inputs have requires_grad=True" in str(m.message) for m in w)
        with pytest.warns(UserWarning, match="use_reentrant parameter should be passed"):
            ck(mod, t)
    assert cr.utils.checkpoint.checkpoint is checkpoint
