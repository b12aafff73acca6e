"""cr.func.vmap: every registry op batched equals the stacked per-example results (values and
gradients), composition with the other transforms, torch.func's errors, functional_call."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import func as F

import op_registry as R

B = 3  # examples per batch


def _examples(spec, shapes):
    """B argument lists for one registry case (different arrays, the same Python scalars: vmap
    maps over tensors only)."""
    out = [R.make_args(spec, shapes, seed=s) for s in range(B)]
    for ex in out[1:]:
        for i, a in enumerate(out[0]):
            if not isinstance(a, np.ndarray):
                ex[i] = a
    return out


def _outputs(out) -> list:
    return [o for o in R.as_outputs(out) if isinstance(o, cr.Tensor)]


def _close(a, b, err: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{err}: shape {a.shape} != {b.shape}"
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, equal_nan=True, err_msg=err)
    else:
        np.testing.assert_array_equal(a, b, err_msg=err)


def _batched_case(spec, shapes, kw):
    """(per-example outputs stacked, vmapped outputs, batched tensor args, per-example args)."""
    examples = _examples(spec, shapes)
    tensor_pos = [i for i, a in enumerate(examples[0]) if isinstance(a, np.ndarray)]
    per = [_outputs(spec.op(*R.cr_args(ex), **kw)) for ex in examples]
    stacked = [np.stack([np.asarray(p[k].detach()) for p in per]) for k in range(len(per[0]))]
    args = list(R.cr_args(examples[0]))
    for i in tensor_pos:
        args[i] = cr.tensor(np.stack([ex[i] for ex in examples]))
    dims = tuple(0 if i in tensor_pos else None for i in range(len(args)))
    got = F.vmap(lambda *a: tuple(_outputs(spec.op(*a, **kw))), in_dims=dims)(*args)
    return stacked, list(got), args, tensor_pos, examples


# Ops whose gates do what vmap cannot batch yet (each raises an error naming the gate):
# indexing a plain array with batched indices inside the pooling/unpooling gates, masks whose
# size depends on the values, in-place scatter into a plain buffer, matmul's empty-size path.
KNOWN_GAPS = {
    "x[x > 0]", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "fractional_max_pool2d", "fractional_max_pool3d", "max_unpool1d",
    "max_unpool2d", "max_unpool3d", "lp_pool1d", "lp_pool2d", "local_response_norm",
    "embedding_bag", "embedding_bag(per_sample_weights)", "linear_cross_entropy", "conv_tbc",
    "instance_norm(affine)", "conv3d", "conv3d(same)",
}


def _gap(spec):
    return pytest.mark.xfail(spec.name in KNOWN_GAPS, reason="no batching rule yet",
                             raises=(RuntimeError, AttributeError, AssertionError))


def _params(pred):
    return [pytest.param(*p.values, id=p.id, marks=_gap(p.values[0])) for p in R.params(pred)]


_CASES = _params(lambda s: s.out != "python")


@pytest.mark.parametrize("spec, shapes, kw", _CASES)
def test_vmap_of_every_registry_op_equals_the_stacked_examples(spec, shapes, kw) -> None:
    stacked, got, *_ = _batched_case(spec, shapes, kw)
    assert len(got) == len(stacked), spec.name
    for k, (g, s) in enumerate(zip(got, stacked)):
        _close(g.detach(), s, f"{spec.name} output {k}")


@pytest.mark.parametrize("spec, shapes, kw", _params(lambda s: s.grad and s.out == "same"))
def test_gradients_through_vmap_of_every_registry_op(spec, shapes, kw) -> None:
    """grad(vmap(op)) per example equals grad(op) of that example, for every input (including
    the unbatched Python scalars' neighbours), with the same random cotangents."""
    examples = _examples(spec, shapes)
    mask = R.diff_mask(spec, examples[0])
    if not any(mask):
        pytest.skip("no differentiable input")
    rng = np.random.default_rng(7)
    outs0 = _outputs(spec.op(*R.cr_args(examples[0]), **kw))
    floats = [k for k, o in enumerate(outs0) if o.dtype.is_floating_point]
    cots = [rng.standard_normal((B,) + tuple(outs0[k].shape)) for k in floats]
    expected = []
    for b, ex in enumerate(examples):
        leaves = R.cr_args(ex, mask)
        outs = _outputs(spec.op(*leaves, **kw))
        loss = sum((outs[k] * cr.tensor(c[b])).sum() for k, c in zip(floats, cots))
        loss.backward()
        expected.append([t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
                         for t, m in zip(leaves, mask) if m])
    tensor_pos = [i for i, a in enumerate(examples[0]) if isinstance(a, np.ndarray)]
    args = list(R.cr_args(examples[0]))
    for i in tensor_pos:
        args[i] = cr.tensor(np.stack([ex[i] for ex in examples]), requires_grad=mask[i])
    dims = tuple(0 if i in tensor_pos else None for i in range(len(args)))
    got = F.vmap(lambda *a: tuple(_outputs(spec.op(*a, **kw))), in_dims=dims)(*args)
    loss = sum((got[k] * cr.tensor(c)).sum() for k, c in zip(floats, cots))
    loss.backward()
    leaves = [a for a, m in zip(args, mask) if m]
    for j, leaf in enumerate(leaves):
        want = np.stack([e[j] for e in expected])
        have = leaf.grad.numpy() if leaf.grad is not None else np.zeros(want.shape)
        _close(have, want, f"{spec.name} gradient {j}")


@pytest.mark.parametrize("spec, shapes, kw", _params(lambda s: s.grad and s.out == "same"
                                                    and "nn" not in s.tags
                                                    and s.name != "matmul(empty)"))
def test_per_example_gradients_vmap_of_grad_for_every_registry_op(spec, shapes, kw) -> None:
    """vmap(grad(op)) with the first differentiable input batched and the others shared: the
    gradient of a shared input comes out per example (torch.func's per-sample gradients)."""
    examples = _examples(spec, shapes)
    mask = R.diff_mask(spec, examples[0])
    if not any(mask):
        pytest.skip("no differentiable input")
    first = mask.index(True)
    diff_pos = [i for i, m in enumerate(mask) if m]

    def loss(*ts, rest):
        a = list(rest)
        for i, t in zip(diff_pos, ts):
            a[i] = t
        outs = [o for o in _outputs(spec.op(*a, **kw)) if o.dtype.is_floating_point]
        return sum((o * o.detach().cos()).sum() for o in outs)

    shared = R.cr_args(examples[0])
    expected = []
    for ex in examples:
        rest = list(shared)
        rest[first] = cr.tensor(ex[first])
        ts = [rest[i] for i in diff_pos]
        expected.append(F.grad(lambda *t, _r=rest: loss(*t, rest=_r), argnums=tuple(
            range(len(ts))))(*ts))
    batched = cr.tensor(np.stack([ex[first] for ex in examples]))
    ts = [batched if i == first else shared[i] for i in diff_pos]
    dims = tuple(0 if i == first else None for i in diff_pos)
    got = F.vmap(F.grad(lambda *t: loss(*t, rest=shared), argnums=tuple(range(len(ts)))),
                 in_dims=dims)(*ts)
    for j in range(len(ts)):
        want = np.stack([e[j].numpy() for e in expected])
        _close(got[j], want, f"{spec.name} per-example gradient {j}")


def test_every_registry_op_is_covered() -> None:
    """A new registry op gets the vmap tests automatically; python-valued ops refuse vmap."""
    names = {s.name for s in R.REGISTRY if s.out != "python"}
    assert names == {p.values[0].name for p in _CASES}
    for spec in R.REGISTRY:
        if spec.out == "python":
            args = [cr.tensor(np.stack([a] * B)) if isinstance(a, np.ndarray) else a
                    for a in R.make_args(spec, spec.shapes[0])]
            with pytest.raises(RuntimeError):
                F.vmap(lambda *a, _s=spec: _s.op(*a))(*args)


def test_the_examples_of_docs_func_md_run() -> None:
    """Every ```python block of docs/func.md runs, in order, in one namespace (they assert)."""
    import os
    import re

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "func.md")
    with open(path, encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)
    assert len(blocks) >= 5
    scope: dict = {}
    for code in blocks:
        exec(compile(code, path, "exec"), scope)  # noqa: S102  (our own documentation)
    assert scope["per_sample"]["0.weight"].shape == (16, 8, 4)
