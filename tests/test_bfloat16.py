"""cr.bfloat16 (through ml_dtypes) against torch: promotion, creation, printing, ops, gradients."""

import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")
TF = torch.nn.functional

FLOATS = {"bfloat16": (cr.bfloat16, torch.bfloat16), "float16": (cr.float16, torch.float16),
          "float32": (cr.float32, torch.float32), "float64": (cr.float64, torch.float64),
          "int64": (cr.int64, torch.int64), "int32": (cr.int32, torch.int32),
          "uint8": (cr.uint8, torch.uint8), "bool": (cr.bool, torch.bool)}


def _name(d) -> str:
    return str(d).split(".")[-1]


@pytest.mark.parametrize("other", sorted(FLOATS))
def test_promotion_with_bfloat16_follows_torch(other):
    c, t = FLOATS[other]
    assert _name(cr.promote_types(cr.bfloat16, c)) == _name(torch.promote_types(torch.bfloat16, t))
    a = cr.ones(2, dtype=cr.bfloat16) + cr.ones(2, dtype=c)
    b = torch.ones(2, dtype=torch.bfloat16) + torch.ones(2, dtype=t)
    assert _name(a.dtype) == _name(b.dtype)
    # a 0-d tensor of another category only wins across categories, as in torch
    a0 = cr.ones(2, dtype=cr.bfloat16) + cr.ones((), dtype=c)
    b0 = torch.ones(2, dtype=torch.bfloat16) + torch.ones((), dtype=t)
    assert _name(a0.dtype) == _name(b0.dtype)


def test_python_scalars_keep_bfloat16():
    x = cr.ones(3, dtype=cr.bfloat16)
    assert (x * 2.5).dtype is cr.bfloat16 and (x + 1).dtype is cr.bfloat16
    assert (cr.ones(3, dtype=cr.int64) * cr.tensor(1.0, dtype=cr.bfloat16)).dtype is cr.bfloat16


def test_creation_and_casting():
    v = [1.1, -2.2, 3.3]
    expect = torch.tensor(v, dtype=torch.bfloat16).float().numpy()
    for t in (cr.tensor(v, dtype=cr.bfloat16), cr.tensor(v).bfloat16(),
              cr.tensor(v).to(cr.bfloat16), cr.tensor(v).to(dtype=cr.bfloat16),
              cr.tensor(v, dtype="bfloat16"),
              cr.tensor(v).type(cr.bfloat16)):
        assert t.dtype is cr.bfloat16
        np.testing.assert_array_equal(t.float().numpy(), expect)  # round to nearest even
    assert cr.zeros(2, 3, dtype=cr.bfloat16).dtype is cr.bfloat16
    assert cr.randn(4, dtype=cr.bfloat16).dtype is cr.bfloat16
    assert cr.full((2,), 3.0, dtype=cr.bfloat16).dtype is cr.bfloat16
    x = cr.tensor(v).bfloat16()
    assert x.is_floating_point() and x.element_size() == 2
    assert x.type() == "chainrule.BFloat16Tensor"
    assert cr.bfloat16.is_floating_point and cr.bfloat16.itemsize == 2
    import ml_dtypes

    assert cr.from_numpy(np.array([1.0], ml_dtypes.bfloat16)).dtype is cr.bfloat16


@pytest.mark.parametrize("values", [[1.5, 2.25, 3.0], [1e-5, 3e5, 1.0], [[1.0, 2.0], [3.0, 4.0]],
                                    2.5, [1.1, 2.2, 3.3], [float("inf"), -1.0, float("nan")]])
def test_printing_matches_torch(values):
    a = repr(cr.tensor(values, dtype=cr.bfloat16)).replace("chainrule.", "torch.")
    assert a == repr(torch.tensor(values, dtype=torch.bfloat16))


def test_repr_with_grad():
    x = cr.tensor([1.0, 2.0], dtype=cr.bfloat16, requires_grad=True)
    assert repr(x) == "tensor([1., 2.], dtype=chainrule.bfloat16, requires_grad=True)"
    assert "grad_fn=<MulBackward0>" in repr(x * 2)


_rng = np.random.default_rng(0)
A = _rng.standard_normal((3, 4)).astype(np.float32)
B = _rng.standard_normal((4, 5)).astype(np.float32)
P = np.abs(A) + 0.5
X = _rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
W = _rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
T = np.array([1, 0, 3])

CASES = {
    "add": (lambda m, a, b: a + b, [A, A[::-1].copy()]),
    "mul scalar": (lambda m, a: a * 0.5, [A]),
    "div": (lambda m, a, b: a / b, [A, P]),
    "exp": (lambda m, a: a.exp(), [A]),
    "log": (lambda m, a: m.log(a), [P]),
    "tanh": (lambda m, a: a.tanh(), [A]),
    "gelu": (lambda m, a: m.nn.functional.gelu(a), [A]),
    "clamp": (lambda m, a: a.clamp(-0.5, 0.5), [A]),
    "sum": (lambda m, a: a.sum(), [A]),
    "sum dim": (lambda m, a: a.sum(1), [A]),
    "mean": (lambda m, a: a.mean(0), [A]),
    "var": (lambda m, a: a.var(1), [A]),
    "norm": (lambda m, a: a.norm(), [A]),
    "softmax": (lambda m, a: a.softmax(1), [A]),
    "log_softmax": (lambda m, a: m.nn.functional.log_softmax(a, 1), [A]),
    "logsumexp": (lambda m, a: a.logsumexp(1), [A]),
    "cumsum": (lambda m, a: a.cumsum(1), [A]),
    "matmul": (lambda m, a, b: a @ b, [A, B]),
    "bmm": (lambda m, a, b: m.bmm(a[None], b[None]), [A, B]),
    "einsum": (lambda m, a, b: m.einsum("ij,jk->ik", a, b), [A, B]),
    "linear": (lambda m, a, b: m.nn.functional.linear(a, b.T), [A, B]),
    "layer_norm": (lambda m, a: m.nn.functional.layer_norm(a, (4,)), [A]),
    "conv2d": (lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [X, W]),
    "max_pool2d": (lambda m, x: m.nn.functional.max_pool2d(x, 2), [X]),
    "avg_pool2d": (lambda m, x: m.nn.functional.avg_pool2d(x, 2), [X]),
    "cross_entropy": (lambda m, a: m.nn.functional.cross_entropy(a, m.tensor(T)), [A]),
    "mse_loss": (lambda m, a, b: m.nn.functional.mse_loss(a, b), [A, A[::-1].copy()]),
    "sdpa": (lambda m, q: m.nn.functional.scaled_dot_product_attention(q[None], q[None], q[None]),
             [A]),
    "batch_norm": (lambda m, x: m.nn.functional.batch_norm(x, None, None, training=True), [X]),
    "getitem + cat": (lambda m, a: m.cat([a[[0, 2], 1:], a[:1, :3]]), [A]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_in_bfloat16_matches_torch(name):
    """Output dtype bfloat16, values within one bfloat16 rounding of torch's (which computes in
    float32 and rounds), gradients in bfloat16 close to torch's."""
    fn, arrays = CASES[name]
    xs = [cr.tensor(a, dtype=cr.bfloat16, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.bfloat16, requires_grad=True) for a in arrays]
    y, yt = fn(cr, *xs), fn(torch, *ts)
    assert y.dtype is cr.bfloat16 and yt.dtype == torch.bfloat16
    np.testing.assert_allclose(y.detach().float().numpy(), yt.detach().float().numpy(),
                               rtol=2 ** -7, atol=1e-2)
    g = _rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    y.backward(cr.tensor(g, dtype=cr.bfloat16))
    yt.backward(torch.tensor(g, dtype=torch.bfloat16))
    for x, t in zip(xs, ts):
        assert x.grad.dtype is cr.bfloat16
        np.testing.assert_allclose(x.grad.float().numpy(), t.grad.float().numpy(),
                                   rtol=0.05, atol=0.05 * float(t.grad.float().abs().max()))


def test_long_sums_accumulate_in_float32():
    """bfloat16 has 8 significant bits: summing 4096 ones in bfloat16 sticks at 256; torch sums
    in float32 and rounds once, and so does chainrule."""
    x = cr.ones(4096, dtype=cr.bfloat16)
    assert x.sum().item() == torch.ones(4096, dtype=torch.bfloat16).sum().item() == 4096.0
    assert x.mean().item() == 1.0
    assert (x.reshape(64, 64) @ cr.ones(64, 1, dtype=cr.bfloat16)).float().max().item() == 64.0


def test_module_bfloat16_trains():
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)).bfloat16()
    assert all(p.dtype is cr.bfloat16 for p in model.parameters())
    opt = cr.optim.Adam(model.parameters(), lr=5e-2)
    x = cr.tensor(A, dtype=cr.bfloat16)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), cr.tensor(T))
        loss.backward()
        assert all(p.grad.dtype is cr.bfloat16 for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype is cr.bfloat16 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


def test_batchnorm_module_updates_its_bfloat16_running_stats():
    x = _rng.standard_normal((8, 3, 5, 5)).astype(np.float32) * 2 + 1
    m, tm = nn.BatchNorm2d(3).bfloat16(), torch.nn.BatchNorm2d(3).bfloat16()
    for _ in range(3):
        m(cr.tensor(x, dtype=cr.bfloat16))
        tm(torch.tensor(x, dtype=torch.bfloat16))
    assert m.running_mean.dtype is cr.bfloat16 and m.running_var.dtype is cr.bfloat16
    for ours, theirs in ((m.running_mean, tm.running_mean), (m.running_var, tm.running_var)):
        np.testing.assert_allclose(ours.float().numpy(), theirs.float().numpy(), rtol=2 ** -6)
    m.eval(), tm.eval()
    y = m(cr.tensor(x, dtype=cr.bfloat16))
    yt = tm(torch.tensor(x, dtype=torch.bfloat16))
    assert y.dtype is cr.bfloat16
    np.testing.assert_allclose(y.detach().float().numpy(), yt.detach().float().numpy(),
                               rtol=2 ** -6, atol=2e-2)


def test_save_load_bfloat16_as_safetensors_bf16(tmp_path):
    """cr.save writes bfloat16 as safetensors' BF16: torch reads chainrule's file and chainrule
    reads torch's, bit for bit."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    m = nn.Linear(3, 2).bfloat16()
    path = str(tmp_path / "m.safetensors")
    cr.save(m.state_dict(), path)
    back = cr.load(path)
    theirs = safetensors_torch.load_file(path)
    for k, v in m.state_dict().items():
        assert back[k].dtype is cr.bfloat16 and theirs[k].dtype == torch.bfloat16
        np.testing.assert_array_equal(back[k].float().numpy(), v.float().numpy())
        np.testing.assert_array_equal(theirs[k].float().numpy(), v.float().numpy())
    t = torch.randn(5, dtype=torch.bfloat16)
    safetensors_torch.save_file({"w": t}, path)
    np.testing.assert_array_equal(cr.load(path)["w"].float().numpy(), t.float().numpy())


def test_bfloat16_name_without_ml_dtypes():
    """chainrule imports and works without ml_dtypes; cr.bfloat16 exists and using it says what
    to install."""
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import chainrule as cr\n"
        "x = (cr.ones(2) * 2).sum(); assert x.item() == 4.0\n"
        "assert repr(cr.bfloat16) == 'chainrule.bfloat16'\n"
        "try:\n"
        "    cr.ones(2, dtype=cr.bfloat16)\n"
        "except TypeError as e:\n"
        "    assert 'ml_dtypes' in str(e), e\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_import_chainrule_does_not_import_ml_dtypes():
    code = "import sys, chainrule; print('ml_dtypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
