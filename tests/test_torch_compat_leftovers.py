"""Small torch-compat leftovers of issues 13/14, each checked against torch 2.13: embedding_bag's
per_sample_weights dtype, views made in no_grad mode of tensors that require grad, optimizer
state versions, resize_ of a view, DataLoader's length warning, bicubic + normalization."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")


def _raises_as_torch(ours, theirs, exc=RuntimeError):
    with pytest.raises(exc) as a:
        ours()
    with pytest.raises(exc) as b:
        theirs()
    assert str(a.value).replace("chainrule.", "torch.") == str(b.value)


# ---- (a) embedding_bag ---------------------------------------------------------------------------
@pytest.mark.parametrize("wdt,pdt", [("float32", "float64"), ("float32", "float16"),
                                     ("float64", "float32"), ("float32", "int64")])
def test_embedding_bag_per_sample_weights_of_another_dtype_raises_as_torch(wdt, pdt):
    def call(m):
        w = m.ones(10, 3, dtype=getattr(m, wdt))
        idx, off = m.tensor([1, 2, 4, 5, 4, 3, 2, 9]), m.tensor([0, 4])
        return lambda: m.nn.functional.embedding_bag(
            idx, w, off, mode="sum", per_sample_weights=m.ones(8, dtype=getattr(m, pdt)))
    _raises_as_torch(call(cr), call(torch))


def test_embedding_bag_per_sample_weights_of_the_same_dtype_still_weighs():
    w = np.arange(30, dtype=np.float64).reshape(10, 3)
    psw = np.linspace(0.5, 2.0, 8)
    out = []
    for m in (cr, torch):
        out.append(m.nn.functional.embedding_bag(
            m.tensor([1, 2, 4, 5, 4, 3, 2, 9]), m.tensor(w), m.tensor([0, 4]), mode="sum",
            per_sample_weights=m.tensor(psw)).numpy())
    np.testing.assert_allclose(*out, rtol=1e-15)


# ---- (b) views made in no_grad mode --------------------------------------------------------------
def _no_grad_view(m, leaf: bool):
    x = m.tensor([1.0, 2.0, 3.0], requires_grad=True)
    base = x if leaf else x * 1
    with m.no_grad():
        v = base[1:]
    return x, v


@pytest.mark.parametrize("leaf", [True, False], ids=["of a leaf", "of a non-leaf"])
def test_no_grad_view_requires_grad_and_its_backward_reaches_nothing_as_torch(leaf):
    for m in (cr, torch):
        x, v = _no_grad_view(m, leaf)
        assert (v.requires_grad, v.is_leaf, v.grad_fn) == (True, True, None)
        z = (v * 2).sum()
        assert z.requires_grad and z.grad_fn is not None
        z.backward()  # recorded, but nothing is reached
        assert x.grad is None and v.grad is None
        with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
            m.autograd.grad((v * 2).sum(), x)
        with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
            m.autograd.grad((v * 2).sum(), v)


def test_view_taken_before_its_base_required_grad_as_torch():
    for m in (cr, torch):
        x = m.tensor([1.0, 2.0, 3.0])
        v = x[1:]
        x.requires_grad_()
        assert v.requires_grad and v.grad_fn is None
        (v * 2).sum().backward()
        assert x.grad is None


def test_no_grad_view_still_refuses_in_place_with_grad_mode_on():
    _raises_as_torch(lambda: _no_grad_view(cr, True)[1].mul_(2),
                     lambda: _no_grad_view(torch, True)[1].mul_(2))


def test_view_in_grad_mode_still_carries_the_gradient():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[1:] * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 2.0, 2.0])


# ---- (c) optimizer state versions ----------------------------------------------------------------
OPTIMIZERS = [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1, amsgrad=True)),
              ("AdamW", dict(lr=0.1)), ("RMSprop", dict(lr=0.1, momentum=0.5, centered=True)),
              ("Adagrad", dict(lr=0.1)), ("Adadelta", dict()), ("Adamax", dict()),
              ("NAdam", dict()), ("RAdam", dict()), ("ASGD", dict()), ("Rprop", dict()),
              ("Adafactor", dict())]


def _optimizer(m, name, kw):
    p = m.nn.Parameter(m.tensor([1.0, -2.0, 3.0]))
    return p, getattr(m.optim, name)([p], **kw)


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizer_state_moves_its_versions_in_place_as_torch(name, kw):
    """Each state tensor torch updates in place moves its version at every step (torch may count
    two in-place ops in one step: compared as 'moved'), keeps its identity and memory (an array
    taken earlier by .numpy() sees the new values)."""
    moved = {}
    for m in (cr, torch):
        p, opt = _optimizer(m, name, kw)
        p.grad = m.tensor([0.1, 0.2, -0.3])
        opt.step()
        state = opt.state[p]
        tensors = {k: v for k, v in state.items() if isinstance(v, m.Tensor)}
        before = {k: v._version for k, v in tensors.items()}
        arrays = {k: v.numpy() for k, v in tensors.items()}  # torch's share the memory
        p.grad = m.tensor([-0.2, 0.3, 0.1])
        opt.step()
        for k, t in tensors.items():
            assert opt.state[p][k] is t, k
            np.testing.assert_array_equal(arrays[k], t.numpy(), err_msg=k)
        moved[m.__name__] = {k: t._version > before[k] for k, t in tensors.items()}
    assert moved["chainrule"] == moved["torch"]
    assert all(moved["chainrule"].values())


def test_a_graph_that_saved_optimizer_state_refuses_after_the_step():
    for m in (cr, torch):
        p, opt = _optimizer(m, "Adam", dict(lr=0.1))
        p.grad = m.tensor([0.1, 0.2, -0.3])
        opt.step()
        w = m.tensor([1.0, 1.0, 1.0], requires_grad=True)
        y = (w * opt.state[p]["exp_avg"]).sum()
        opt.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_lbfgs_state_is_not_bumped():
    p = cr.nn.Parameter(cr.tensor([1.0, -2.0]))
    opt = cr.optim.LBFGS([p], max_iter=3)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    opt.step(closure)
    versions = {k: v._version for k, v in opt.state[p].items() if isinstance(v, cr.Tensor)}
    assert set(versions.values()) <= {0}


# ---- (e) DataLoader over an IterableDataset longer than its __len__ ------------------------------
def _stream_class(m):
    data = m.utils.data

    class Stream(data.IterableDataset):
        def __init__(self, n, claim):
            self.n, self.claim = n, claim

        def __iter__(self):
            info = data.get_worker_info()
            start, step = (0, 1) if info is None else (info.id, info.num_workers)
            return iter(range(start, self.n, step))

        def __len__(self):
            return self.claim

        def __repr__(self):
            return "Stream"

    return Stream


def _length_warnings(m, n, claim, ask_len=True, **kw):
    import warnings

    loader = m.utils.data.DataLoader(_stream_class(m)(n, claim), **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ask_len:
            len(loader)
        items = [b for b in loader]
    return len(items), [(w.category, str(w.message), w.filename) for w in caught
                        if "Length of IterableDataset" in str(w.message)]


@pytest.mark.parametrize("n,claim,kw,ask_len", [
    (7, 5, dict(batch_size=None), True), (7, 5, dict(batch_size=None), False),
    (7, 5, dict(batch_size=2), True),        # torch counts batches against len(dataset): quiet
    (12, 5, dict(batch_size=2, drop_last=True), True), (5, 5, dict(batch_size=None), True),
])
def test_iterable_dataset_past_its_length_warns_as_torch(n, claim, kw, ask_len):
    ours, theirs = _length_warnings(cr, n, claim, ask_len, **kw), \
        _length_warnings(torch, n, claim, ask_len, **kw)
    assert ours == theirs
    assert all(w[2] == __file__ for w in ours[1])


def test_iterable_dataset_past_its_length_with_workers_warns_as_torch():
    kw = dict(batch_size=None, num_workers=2)
    ours, theirs = _length_warnings(cr, 6, 4, **kw), _length_warnings(torch, 6, 4, **kw)
    assert ours == theirs and len(ours[1]) == 2
    assert "For multiprocessing data-loading" in ours[1][0][1]


# ---- (f) the ±∞-norm of NaN input (fuzz seed 60088578: bicubic, then norm) -----------------------
@pytest.mark.parametrize("p", [float("inf"), float("-inf")])
@pytest.mark.parametrize("kw", [{}, {"dim": 1}, {"dim": (0, 2), "keepdim": True}])
def test_inf_norm_of_nan_input_gradients_as_torch(p, kw):
    """A NaN norm's gradient goes to the NaNs (sign(NaN) = 0: zeros, signed), not NaN
    everywhere as amax's; infinities and ties as torch's."""
    x = np.random.default_rng(5).standard_normal((2, 3, 4))
    x[0, 1, 2], x[1, 0, 0], x[1, 2, 3], x[0, 2, 1] = np.nan, np.inf, -np.inf, np.nan
    x[1, 1, :2] = [2.5, -2.5]  # a tie
    out = []
    for m in (cr, torch):
        t = m.tensor(x, requires_grad=True)
        y = t.norm(p, **kw)
        g = m.tensor(np.linspace(0.5, 1.5, y.numel()).reshape(tuple(y.shape)))
        y.backward(g)
        out.append((y.detach().numpy(), t.grad.numpy()))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def test_inf_norm_gradcheck_and_through_bicubic():
    x = cr.tensor(np.random.default_rng(6).standard_normal((2, 5)), requires_grad=True)
    assert cr.autograd.gradcheck(lambda a: a.norm(float("inf"), dim=1), (x,))
    assert cr.autograd.gradcheck(lambda a: a.norm(float("-inf")), (x,))
    img = np.random.default_rng(7).standard_normal((1, 1, 3, 3))
    img[0, 0, 1, 1] = np.nan
    out = []
    for m in (cr, torch):
        t = m.tensor(img, requires_grad=True)
        up = m.nn.functional.interpolate(t, scale_factor=2, mode="bicubic", align_corners=False)
        up.norm(float("inf")).backward()
        out.append(t.grad.numpy())
    np.testing.assert_allclose(*out, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(0).norm(float("inf")), lambda m: m.zeros(0, 3).norm(float("inf"), dim=0),
    lambda m: m.zeros(2, 0).norm(float("-inf"), dim=-1),
    lambda m: m.linalg.vector_norm(m.zeros(0, 2), float("inf"), keepdim=True),
    lambda m: m.linalg.vector_norm(m.zeros(0), float("-inf"))])
def test_inf_norm_over_nothing_raises_as_torch(call):
    _raises_as_torch(lambda: call(cr), lambda: call(torch))


# ---- (d) resize_ growing a view past its base ----------------------------------------------------
def test_resize_growing_a_view_past_its_base_refuses_and_within_it_shares_as_torch():
    """torch reallocates the storage shared by the base and every view; chainrule's base does not
    know its views, so it refuses rather than leave a sibling view on stale memory."""
    b = cr.arange(6.0)
    v, sibling = b[2:4], b[3:]
    with pytest.raises(RuntimeError, match="cannot grow past the end of its base's memory"):
        v.resize_(5)
    assert v.shape == (2,) and v._version == 0
    v[1] = 100.0  # still shared with the base and the sibling
    assert b[3].item() == sibling[0].item() == 100.0
    for m in (cr, torch):  # growing within the base's memory shares it, as torch's
        b = m.arange(6.0)
        w = b[0:2]
        w.resize_(4)
        w.fill_(-1.0)
        assert b.tolist() == [-1.0, -1.0, -1.0, -1.0, 4.0, 5.0]
