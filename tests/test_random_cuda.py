"""Random draws on "cuda": CuPy's generator, on the device (not PyTorch's CUDA streams).

Runs where CuPy sees a GPU, and in `make test` on tests/fakecupy.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cr.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU"),
]

FILLS = (("uniform_", (-2.0, 3.0), lambda v: (v >= -2).all() and (v < 3).all()),
         ("normal_", (1.0, 0.5), lambda v: abs(v.mean() - 1) < 0.2),
         ("random_", (3, 9), lambda v: set(np.unique(v)) <= set(range(3, 9))),
         ("random_", (), lambda v: (v >= 0).all() and (v <= 2**24).all()),
         ("exponential_", (2.0,), lambda v: (v >= 0).all()),
         ("cauchy_", (), lambda v: np.isfinite(v).all()),
         ("log_normal_", (), lambda v: (v > 0).all()),
         ("geometric_", (0.5,), lambda v: (v >= 1).all()),
         ("bernoulli_", (0.25,), lambda v: set(np.unique(v)) <= {0.0, 1.0}))


@pytest.mark.parametrize("name,args,ok", FILLS)
def test_in_place_fills_stay_on_the_device_and_follow_the_cuda_seed(name, args, ok):
    outs = []
    for _ in range(2):
        cr.cuda.manual_seed(7)
        t = cr.zeros(400, device="cuda")
        assert getattr(t, name)(*args) is t
        assert t.is_cuda and t.dtype == cr.float32
        outs.append(t.cpu().numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert ok(outs[0])


def test_a_cuda_generator_seeds_draws_and_a_cpu_one_is_refused():
    g = cr.Generator(device="cuda")
    a = cr.randn(50, device="cuda", generator=g.manual_seed(3)).cpu().numpy()
    b = cr.randn(50, device="cuda", generator=g.manual_seed(3)).cpu().numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator"):
        cr.randn(5, device="cuda", generator=cr.Generator())
    perm = cr.randperm(20, device="cuda", generator=g)
    assert perm.is_cuda and sorted(perm.cpu().numpy().tolist()) == list(range(20))


def test_creation_functions_on_the_device():
    for t in (cr.rand(3, 4, device="cuda"), cr.randint(0, 5, (6,), device="cuda"),
              cr.normal(0.0, 1.0, (4,), device="cuda"),
              cr.bernoulli(cr.full((8,), 0.5, device="cuda")),
              cr.randn_like(cr.zeros(3, device="cuda"))):
        assert t.is_cuda
    assert cr.randint(0, 5, (6,), device="cuda").dtype == cr.int64
