"""cr.linspace gives torch.linspace's values bit for bit (torch's two-ended formula, fused
multiply-adds where its kernel fuses them, half rounding for float16, truncation for integers),
and so does affine_grid's base grid: a grid point on a pixel centre lands on the same side of it
as in torch, where grid_sample's gradient changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")

DTYPES = [
    (cr.float32, torch.float32),
    (cr.float64, torch.float64),
    (cr.float16, torch.float16),
    (cr.int64, torch.int64),
    (cr.int32, torch.int32),
    (None, None),
]


@pytest.mark.parametrize("cd,td", DTYPES)
def test_linspace_equals_torch_bit_for_bit(cd, td) -> None:
    for a, b in [(-1, 1), (0, 1), (0, 8 * math.pi), (-3.3, 7.1), (2, -5), (0.1, 0.2), (5, 5)]:
        for n in list(range(0, 40)) + [97, 1000, 40001]:
            ours, theirs = cr.linspace(a, b, n, dtype=cd).numpy(), torch.linspace(a, b, n, dtype=td)
            assert ours.dtype == theirs.numpy().dtype, (cd, a, b, n)
            np.testing.assert_array_equal(ours, theirs.numpy(), err_msg=f"{cd} {a} {b} {n}")
    assert cr.linspace(cr.tensor(0.0), cr.tensor(2.0), 3).tolist() == [0.0, 1.0, 2.0]


def test_affine_grid_and_grid_sample_gradient_at_pixel_centres_like_torch() -> None:
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], requires_grad=True)
    x = torch.randn(1, 2, 14, 14, generator=torch.Generator().manual_seed(0))
    ct = cr.tensor(theta.detach().numpy(), requires_grad=True)
    for ac in (False, True):
        g = torch.nn.functional.affine_grid(theta, (1, 2, 14, 14), align_corners=ac)
        cg = cr.nn.functional.affine_grid(ct, (1, 2, 14, 14), align_corners=ac)
        np.testing.assert_array_equal(cg.detach().numpy(), g.detach().numpy())
        out = torch.nn.functional.grid_sample(x, g, align_corners=ac)
        cout = cr.nn.functional.grid_sample(cr.tensor(x.numpy()), cg, align_corners=ac)
        (gt,) = torch.autograd.grad(out.square().sum(), theta)
        (gc,) = cr.autograd.grad(cout.square().sum(), ct)
        np.testing.assert_allclose(gc.numpy(), gt.numpy(), rtol=1e-4, atol=1e-4)
