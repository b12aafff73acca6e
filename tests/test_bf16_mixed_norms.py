"""bfloat16 inputs as torch's CPU kernels take them: layer_norm/group_norm/batch_norm with a
bfloat16 input and float32 parameters return bfloat16 computed in float32 (one rounding), and
gelu on bfloat16 is computed in float32 and rounded once; so an autocast(bfloat16) forward
through Linear -> GELU -> LayerNorm -> Linear gives torch's values bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")


def _bf(t):
    return cr.tensor(t.float().numpy()).to(cr.bfloat16)


def _same(ours, theirs) -> None:
    assert str(ours.dtype).split(".")[-1] == str(theirs.dtype).split(".")[-1]
    np.testing.assert_array_equal(ours.float().detach().numpy(), theirs.float().detach().numpy())


def test_norms_with_bfloat16_input_and_float32_parameters() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 6, 5, generator=g) * 3 + 1).to(torch.bfloat16)
    w, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    cw, cb = cr.tensor(w.numpy()), cr.tensor(b.numpy())
    _same(F.layer_norm(_bf(x), (5,), cw, cb), torch.nn.functional.layer_norm(x, (5,), w, b))
    w6, b6 = torch.randn(6, generator=g), torch.randn(6, generator=g)
    c6w, c6b = cr.tensor(w6.numpy()), cr.tensor(b6.numpy())
    _same(F.group_norm(_bf(x), 3, c6w, c6b), torch.nn.functional.group_norm(x, 3, w6, b6))
    rm, rv = torch.zeros(6), torch.ones(6)
    _same(F.batch_norm(_bf(x), cr.zeros(6), cr.ones(6), c6w, c6b, training=False),
          torch.nn.functional.batch_norm(x, rm, rv, w6, b6, training=False))


def test_gelu_bfloat16_and_autocast_forward_like_torch() -> None:
    x = torch.linspace(-4, 4, 101).to(torch.bfloat16)
    ours, theirs = F.gelu(_bf(x)).float().numpy(), torch.nn.functional.gelu(x).float().numpy()
    # one rounding of a float32 result: only where the two float32 erfs straddle a bfloat16 tie
    assert (ours != theirs).sum() <= 2, np.flatnonzero(ours != theirs)
    np.testing.assert_allclose(ours, theirs, rtol=2.0**-7)  # one bfloat16 ulp
    torch.manual_seed(7)
    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.LayerNorm(16),
                             torch.nn.Linear(16, 4))
    cm = cr.nn.Sequential(cr.nn.Linear(8, 16), cr.nn.GELU(), cr.nn.LayerNorm(16),
                          cr.nn.Linear(16, 4))
    cm.load_state_dict({k: cr.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = torch.randn(32, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        theirs = tm(x)
    with cr.autocast(device_type="cpu", dtype=cr.bfloat16):
        ours = cm(cr.tensor(x.numpy()))
    _same(ours, theirs)
