"""cr.autocast and cr.amp.GradScaler against torch."""

import threading
import warnings

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.amp import autocast_mode

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")
TF = torch.nn.functional

_rng = np.random.default_rng(0)
X = _rng.standard_normal((4, 8)).astype(np.float32)
Wt = _rng.standard_normal((8, 8)).astype(np.float32)
B = _rng.standard_normal(8).astype(np.float32)
IMG = _rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
CW = (_rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
T = np.array([1, 2, 3, 0])

# op -> fn(m, x, w, b, img, cw, t): each category of torch's CPU lists, and ops on no list
OPS = {
    "matmul": lambda m, x, w, b, i, c, t: x @ w,
    "mm": lambda m, x, w, b, i, c, t: m.mm(x, w),
    "bmm": lambda m, x, w, b, i, c, t: m.bmm(x[None], w[None]),
    "einsum": lambda m, x, w, b, i, c, t: m.einsum("ij,jk->ik", x, w),
    "linear": lambda m, x, w, b, i, c, t: m.nn.functional.linear(x, w, b),
    "conv2d": lambda m, x, w, b, i, c, t: m.nn.functional.conv2d(i, c, padding=1),
    "conv1d": lambda m, x, w, b, i, c, t: m.nn.functional.conv1d(i[:, :, 0], c[:, :, 0]),
    "sdpa": lambda m, x, w, b, i, c, t: m.nn.functional.scaled_dot_product_attention(
        x[None], x[None], x[None]),
    "mv (no list)": lambda m, x, w, b, i, c, t: m.mv(w, b),
    "dot (no list)": lambda m, x, w, b, i, c, t: m.dot(b, b),
    "bilinear (no list)": lambda m, x, w, b, i, c, t: m.nn.functional.bilinear(
        x, x, w.reshape(1, 8, 8)),
    "cross_entropy": lambda m, x, w, b, i, c, t: m.nn.functional.cross_entropy(x @ w, t),
    "nll_loss": lambda m, x, w, b, i, c, t: m.nn.functional.nll_loss(x @ w, t),
    "mse_loss": lambda m, x, w, b, i, c, t: m.nn.functional.mse_loss(x @ w, x),
    "l1_loss": lambda m, x, w, b, i, c, t: m.nn.functional.l1_loss(x @ w, x),
    "bce_with_logits": lambda m, x, w, b, i, c, t: (
        m.nn.functional.binary_cross_entropy_with_logits(x @ w, x.sigmoid())),
    "prod": lambda m, x, w, b, i, c, t: (x @ w).prod(),
    "softmax of lowered": lambda m, x, w, b, i, c, t: (x @ w).softmax(1),
    "log_softmax of lowered": lambda m, x, w, b, i, c, t: m.nn.functional.log_softmax(x @ w, 1),
    "layer_norm of lowered": lambda m, x, w, b, i, c, t: m.nn.functional.layer_norm(
        x @ w, (8,)),
    "relu of lowered": lambda m, x, w, b, i, c, t: (x @ w).relu(),
    "sum of lowered": lambda m, x, w, b, i, c, t: (x @ w).sum(),
    "mixed add": lambda m, x, w, b, i, c, t: (x @ w) + x,
    "cat": lambda m, x, w, b, i, c, t: m.cat([x @ w, x]),
    "stack": lambda m, x, w, b, i, c, t: m.stack([x @ w, x]),
    "smooth_l1_loss": lambda m, x, w, b, i, c, t: m.nn.functional.smooth_l1_loss(x @ w, x),
    "huber_loss": lambda m, x, w, b, i, c, t: m.nn.functional.huber_loss(x @ w, x),
    "kl_div": lambda m, x, w, b, i, c, t: m.nn.functional.kl_div(
        (x @ w).log_softmax(1), x.softmax(1), reduction="batchmean"),
    "binary_cross_entropy": lambda m, x, w, b, i, c, t: m.nn.functional.binary_cross_entropy(
        (x @ w).sigmoid(), x.sigmoid()),
    "conv_transpose2d": lambda m, x, w, b, i, c, t: m.nn.functional.conv_transpose2d(
        i, c.transpose(0, 1)),
    "group_norm of lowered": lambda m, x, w, b, i, c, t: m.nn.functional.group_norm(
        m.nn.functional.conv2d(i, c), 2),
    "avg_pool2d of lowered": lambda m, x, w, b, i, c, t: m.nn.functional.avg_pool2d(
        m.nn.functional.conv2d(i, c), 2),
    "logsumexp of lowered": lambda m, x, w, b, i, c, t: (x @ w).logsumexp(1),
    "cumsum of lowered": lambda m, x, w, b, i, c, t: (x @ w).cumsum(0),
    "norm of lowered": lambda m, x, w, b, i, c, t: (x @ w).norm(),
    "var of lowered": lambda m, x, w, b, i, c, t: (x @ w).var(0),
    "mean of lowered": lambda m, x, w, b, i, c, t: (x @ w).mean(),
    "clamp of lowered": lambda m, x, w, b, i, c, t: (x @ w).clamp(-1, 1),
    "float32 op": lambda m, x, w, b, i, c, t: x.exp(),
    "float64 not cast": lambda m, x, w, b, i, c, t: x.double() @ w.double(),
}


def _inputs(m, requires_grad):
    dt = torch.float32 if m is torch else cr.float32
    arrays = (X, Wt, B, IMG, CW)
    made = [m.tensor(a, dtype=dt, requires_grad=requires_grad) for a in arrays]
    return (*made, m.tensor(T))


@pytest.mark.parametrize("name", sorted(OPS))
def test_cpu_autocast_output_dtype_and_values_match_torch(name):
    fn = OPS[name]
    xs, ts = _inputs(cr, True), _inputs(torch, True)
    with cr.autocast("cpu", dtype=cr.bfloat16):
        y = fn(cr, *xs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yt = fn(torch, *ts)
    assert str(y.dtype).split(".")[-1] == str(yt.dtype).split(".")[-1]
    yv, tv = y.detach().float().numpy(), yt.detach().float().numpy()
    np.testing.assert_allclose(yv, tv, rtol=3e-2, atol=3e-2 * max(1.0, float(np.abs(tv).max())))
    # gradients flow back in the parameters' dtype (float32), close to torch's
    y.float().sum().backward()
    yt.float().sum().backward()
    for x, t in zip(xs[:5], ts[:5]):
        if t.grad is None:
            assert x.grad is None
            continue
        assert x.grad.dtype is cr.float32
        tg = t.grad.numpy()
        np.testing.assert_allclose(x.grad.numpy(), tg, rtol=5e-2,
                                   atol=5e-2 * max(1.0, float(np.abs(tg).max())))


def test_cpu_autocast_float16():
    x, w = cr.tensor(X), cr.tensor(Wt)
    with cr.autocast("cpu", dtype=cr.float16):
        assert (x @ w).dtype is cr.float16
        assert F.cross_entropy(x @ w, cr.tensor(T)).dtype is cr.float32


def test_disabled_nested_and_state_queries():
    x, w = cr.tensor(X), cr.tensor(Wt)
    assert not cr.is_autocast_enabled("cpu") and not cr.is_autocast_enabled()
    assert cr.get_autocast_dtype("cpu") is cr.bfloat16
    assert cr.get_autocast_dtype("cuda") is cr.float16
    with cr.autocast("cpu"):
        assert cr.is_autocast_enabled("cpu") and cr.is_autocast_cpu_enabled()
        assert not cr.is_autocast_enabled()  # no argument: CUDA, as torch
        assert (x @ w).dtype is cr.bfloat16
        with cr.autocast("cpu", enabled=False):
            assert not cr.is_autocast_enabled("cpu")
            assert (x @ w).dtype is cr.float32
        with cr.autocast("cpu", dtype=cr.float16):
            assert cr.get_autocast_dtype("cpu") is cr.float16
            assert (x @ w).dtype is cr.float16
        assert cr.get_autocast_dtype("cpu") is cr.bfloat16
        assert (x @ w).dtype is cr.bfloat16
    assert not cr.is_autocast_enabled("cpu")
    assert (x @ w).dtype is cr.float32
    with cr.autocast("cpu", enabled=False):
        assert (x @ w).dtype is cr.float32


def test_decorator_and_exceptions_restore_state():
    @cr.autocast("cpu")
    def f(a, b):
        return a @ b

    assert f(cr.tensor(X), cr.tensor(Wt)).dtype is cr.bfloat16
    assert not cr.is_autocast_enabled("cpu")
    with pytest.raises(ValueError), cr.autocast("cpu"):
        raise ValueError
    assert not cr.is_autocast_enabled("cpu")
    assert cr.amp.autocast is cr.autocast


def test_autocast_is_thread_local():
    seen = []
    with cr.autocast("cpu"):
        t = threading.Thread(target=lambda: seen.append(
            (cr.is_autocast_enabled("cpu"), (cr.tensor(X) @ cr.tensor(Wt)).dtype)))
        t.start()
        t.join()
    assert seen == [(False, cr.float32)]


def test_unsupported_dtype_and_cuda_without_gpu_warn_and_disable():
    with pytest.warns(UserWarning, match="CPU Autocast only supports"):
        a = cr.autocast("cpu", dtype=cr.float64)
    with a:
        assert not cr.is_autocast_enabled("cpu")
    if not cr.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            c = cr.autocast("cuda")
        with c:
            assert not cr.is_autocast_enabled("cuda")
    with pytest.raises(ValueError, match="device_type"):
        cr.autocast(0)


def test_deprecated_spellings():
    with pytest.warns(FutureWarning, match=r"torch.amp.autocast\('cpu'"):
        ctx = cr.cpu.amp.autocast()
    with ctx:
        assert cr.get_autocast_dtype("cpu") is cr.bfloat16 and cr.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cr.cuda.amp.autocast().fast_dtype is cr.float16
        assert cr.cpu.amp.GradScaler().is_enabled()
    from chainrule.cuda.amp import GradScaler  # noqa: F401  (importable as a module path)


def test_cast_cache_one_cast_per_weight():
    """With cache_enabled, a weight used twice in a region is cast once (as torch's cache);
    the cache empties when the outermost region ends."""
    w = cr.tensor(Wt, requires_grad=True)
    x = cr.tensor(X)
    cache = autocast_mode._local.cache
    with cr.autocast("cpu"):
        x @ w
        first = cache[id(w)][1]
        with cr.autocast("cpu"):
            x @ w
        assert cache[id(w)][1] is first and len(cache) == 1  # x needs no grad: not cached
    assert not cache
    with cr.autocast("cpu", cache_enabled=False):
        x @ w
        assert not cache


def test_module_training_step_under_autocast_matches_torch():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    cm = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    cm.load_state_dict({k: cr.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    with cr.autocast("cpu"):
        loss = F.cross_entropy(cm(cr.tensor(X)), cr.tensor(T))
    with torch.autocast("cpu"):
        lt = TF.cross_entropy(tm(torch.tensor(X)), torch.tensor(T))
    loss.backward()
    lt.backward()
    assert loss.dtype is cr.float32
    np.testing.assert_allclose(loss.item(), lt.item(), rtol=2e-2)
    for (name, p), pt in zip(cm.named_parameters(), tm.parameters()):
        assert p.grad.dtype is cr.float32, name
        np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=5e-2,
                                   atol=5e-2 * float(pt.grad.abs().max()))


def test_autocast_off_calls_no_hook(monkeypatch):
    """With autocast off and no bfloat16 in use, the hook is one flag test: run() is not even
    called."""
    if autocast_mode._bfloat16_used:
        monkeypatch.setattr(autocast_mode, "active", False)
    assert not autocast_mode.active

    def fail(*a, **k):
        raise AssertionError("hook called")

    monkeypatch.setattr(autocast_mode, "run", fail)
    x, w = cr.tensor(X), cr.tensor(Wt)
    F.linear(x, w).softmax(1).sum()
    F.cross_entropy(x @ w, cr.tensor(T))


# ---- GradScaler ---------------------------------------------------------------------------------
def _trajectory(lib, opt_name, inf_steps, nan_steps, growth_interval=3, steps=14):
    """Train a small float32 model with a GradScaler on the CPU, injecting inf/NaN into the
    gradients at the given steps; return the scale, growth tracker and parameters per step."""
    m = torch if lib == "torch" else cr
    g = np.random.default_rng(1)
    w0 = g.standard_normal((3, 5)).astype(np.float32)
    b0 = g.standard_normal(3).astype(np.float32)
    w, b = m.tensor(w0, requires_grad=True), m.tensor(b0, requires_grad=True)
    opts = {"SGD": lambda ps: m.optim.SGD(ps, lr=0.1, momentum=0.9),
            "Adam": lambda ps: m.optim.Adam(ps, lr=0.01),
            "AdamW": lambda ps: m.optim.AdamW(ps, lr=0.01),
            "RMSprop": lambda ps: m.optim.RMSprop(ps, lr=0.01),
            "Adagrad": lambda ps: m.optim.Adagrad(ps, lr=0.1)}
    opt = opts[opt_name]([w, b])
    scaler = m.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=growth_interval)
    out = []
    for step in range(steps):
        x = m.tensor(g.standard_normal((4, 5)).astype(np.float32))
        opt.zero_grad()
        loss = ((x @ w.T + b) ** 2).mean()
        scaler.scale(loss).backward()
        if step in inf_steps:
            w.grad[0, 0] = float("inf")
        if step in nan_steps:
            b.grad[1] = float("nan")
        scaler.step(opt)
        scaler.update()
        out.append((scaler.get_scale(), scaler._get_growth_tracker(),
                    np.array(w.detach().numpy()), np.array(b.detach().numpy())))
    return out


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_grad_scaler_trajectory_matches_torch(opt_name):
    inf, nan = {2, 7, 8}, {11}
    ours = _trajectory("cr", opt_name, inf, nan)
    theirs = _trajectory("torch", opt_name, inf, nan)
    scales = [s for s, *_ in ours]
    assert scales == [s for s, *_ in theirs]  # exactly: same float32 arithmetic
    assert [t for _, t, *_ in ours] == [t for _, t, *_ in theirs]
    assert len(set(scales)) > 3  # it did back off and grow
    for (_, _, w, b), (_, _, wt, bt) in zip(ours, theirs):
        assert np.isfinite(w).all() and np.isfinite(b).all()  # the bad steps were skipped
        np.testing.assert_allclose(w, wt, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, bt, rtol=1e-5, atol=1e-6)


def test_grad_scaler_growth_stops_at_inf():
    s = cr.amp.GradScaler("cpu", init_scale=3e38, growth_interval=1)
    w = cr.tensor([1.0], requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.0)
    s.scale((w * 1e-40).sum()).backward()
    s.step(opt)
    s.update()
    assert s.get_scale() == np.float32(3e38).item()  # growing would overflow: kept, as torch


def test_grad_scaler_api_and_errors():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.1)
    s = cr.amp.GradScaler("cpu")
    assert s.get_scale() == 2.0**16 and s.is_enabled()
    with pytest.raises(AssertionError, match="_scale is None"):
        s.unscale_(opt)
    scaled = s.scale((w * w).sum())
    assert scaled.item() == 5.0 * 2**16
    assert isinstance(s.scale([w, (w,)]), list)
    scaled.backward()
    s.unscale_(opt)
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 4.0])
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    s.update()
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: 0)
    sd = s.state_dict()
    assert sd == {"scale": 2.0**16, "growth_factor": 2.0, "backoff_factor": 0.5,
                  "growth_interval": 2000, "_growth_tracker": 1}
    s2 = cr.amp.GradScaler("cpu")
    s2.load_state_dict(sd)
    assert s2.state_dict() == sd
    s.update(1024.0)
    assert s.get_scale() == 1024.0
    with pytest.raises(AssertionError, match="growth factor"):
        cr.amp.GradScaler("cpu", growth_factor=1.0)
    with pytest.raises(AssertionError, match="backoff factor"):
        cr.amp.GradScaler("cpu", backoff_factor=1.0)
    h = cr.tensor([1.0], dtype=cr.float16, requires_grad=True)
    oh = cr.optim.SGD([h], lr=0.1)
    s.scale(h.float().sum()).backward()
    with pytest.raises(ValueError, match="FP16 gradients"):
        s.unscale_(oh)


def test_disabled_grad_scaler_is_a_no_op():
    w = cr.tensor([1.0], requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.5)
    s = cr.amp.GradScaler("cpu", enabled=False)
    loss = (w * 3).sum()
    assert s.scale(loss) is loss
    loss.backward()
    s.unscale_(opt)
    s.step(opt)
    s.update()
    assert w.item() == -0.5 and s.get_scale() == 1.0 and s.state_dict() == {}
    s.load_state_dict({})  # no error when disabled
    if not cr.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert not cr.amp.GradScaler().is_enabled()


@pytest.mark.cuda
def test_cuda_autocast_float16_lists():
    if not cr.cuda.is_available():
        pytest.skip("needs a GPU with CuPy")
    x, w = cr.tensor(X, device="cuda"), cr.tensor(Wt, device="cuda", requires_grad=True)
    with cr.autocast("cuda"):
        h = x @ w
        assert h.dtype is cr.float16 and cr.mv(w, x[0]).dtype is cr.float16
        assert h.softmax(1).dtype is cr.float32 and F.layer_norm(h, (8,)).dtype is cr.float32
        assert (h + x).dtype is cr.float32
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            F.binary_cross_entropy(h.sigmoid(), x.sigmoid())
        loss = F.cross_entropy(h, cr.tensor(T, device="cuda"))
    assert loss.dtype is cr.float32
    loss.backward()
    assert w.grad.dtype is cr.float32
