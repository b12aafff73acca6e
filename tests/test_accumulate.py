"""The engine adds a gradient into a fork's buffer in place only when nothing else sees it."""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule import batching
from chainrule import func as F
from chainrule.autograd import engine


def _Node():
    """A one-output gate's node (what ``engine._add`` keys its buffers by)."""
    return cr.ones(4, requires_grad=True).exp().grad_fn


def test_a_sum_only_the_buffer_holds_is_added_in_place() -> None:
    buffers: dict = {}
    node = _Node()
    engine._add(buffers, node, 0, np.ones(4))
    engine._add(buffers, node, 0, np.full(4, 2.0))
    first = id(buffers[node])  # a new array (the first one may be a gate's saved value)
    engine._add(buffers, node, 0, np.full(4, 3.0))
    assert id(buffers[node]) == first  # only the buffer held it: added into it
    np.testing.assert_array_equal(buffers[node], np.full(4, 6.0))


def test_arrays_seen_elsewhere_are_never_written() -> None:
    buffers: dict = {}
    node = _Node()
    mine = np.ones(4)
    engine._add(buffers, node, 0, mine)
    engine._add(buffers, node, 0, np.ones(4))
    assert buffers[node] is not mine
    np.testing.assert_array_equal(mine, np.ones(4))  # a value someone holds stays as it was
    base = np.ones(8)
    other = {}
    engine._add(other, node, 0, base[:4])  # a view: its base is someone else's memory
    engine._add(other, node, 0, np.ones(4))
    np.testing.assert_array_equal(base, np.ones(8))
    ro = {}
    engine._add(ro, node, 0, np.broadcast_to(np.ones(1), (4,)))  # read-only
    engine._add(ro, node, 0, np.ones(4))
    np.testing.assert_array_equal(ro[node], np.full(4, 2.0))
    kept = {}
    engine._add(kept, node, 0, np.ones(4))
    engine._add(kept, node, 0, np.ones(4))
    held = kept[node]  # the sum is now referenced outside the buffer
    engine._add(kept, node, 0, np.ones(4))
    assert kept[node] is not held
    np.testing.assert_array_equal(held, np.full(4, 2.0))


def test_batched_sums_go_in_place_at_one_level_only() -> None:
    lv = batching.push_level(3)
    other = batching.push_level(3)
    try:
        node = _Node()
        buffers: dict = {}
        engine._add(buffers, node, 0, batching.BatchedArray(np.ones((3, 2)), lv))
        engine._add(buffers, node, 0, batching.BatchedArray(np.ones((3, 2)), lv))
        first = id(buffers[node])
        engine._add(buffers, node, 0, batching.BatchedArray(np.ones((3, 2)), lv))
        assert id(buffers[node]) == first
        np.testing.assert_array_equal(buffers[node]._p, np.full((3, 2), 3.0))
        # a gradient batched at another level makes a value batched at both: out of place
        engine._add(buffers, node, 0, batching.BatchedArray(np.ones((3, 2)), other))
        assert buffers[node].shape.levels == (lv, other)
        np.testing.assert_array_equal(batching.deep(buffers[node]), np.full((3, 3, 2), 4.0))
    finally:
        batching.pop_level(other)
        batching.pop_level(lv)


def test_hessian_with_many_forks_matches_torch() -> None:
    """x feeds five products whose gradients meet at x (and at each other's inputs)."""
    import torch

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))

    def f(m, A, x):
        h = m.tanh(A @ x)
        return (h * x).sum() + (h * h).sum() * x.sum() + (A @ h * x).sum()

    x = rng.normal(size=6)
    ours = F.hessian(lambda v: f(cr, cr.tensor(a), v))(cr.tensor(x))
    ref = torch.func.hessian(lambda v: f(torch, torch.tensor(a), v))(torch.tensor(x))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)
