"""The op registry, nn modules and optimizers on "cuda" against the CPU results.

Runs only where CuPy sees an NVIDIA GPU (`make gpu-check` on a GPU machine); skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cr.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU"),
]


def _registry():
    from op_registry import REGISTRY

    return REGISTRY


def _cpu(x):
    return np.asarray(x.detach().cpu().numpy()) if isinstance(x, cr.Tensor) else x


@pytest.mark.parametrize("name", sorted({s.name for s in _registry()}) if cr.cuda.is_available()
                         else ["skipped"])
def test_op_on_cuda_matches_cpu(name):
    from op_registry import cases, make_args

    for spec in [s for s in _registry() if s.name == name]:
        for shapes, kw in cases(spec):
            args = make_args(spec, shapes, np.float32)
            diff = spec.diff or tuple(not isinstance(a, float) and a.dtype != bool for a in args)

            cpu_out, cpu_grad = _run(spec, args, diff, kw, "cpu")
            gpu_out, gpu_grad = _run(spec, args, diff, kw, "cuda")
            for a, b in zip(cpu_out + cpu_grad, gpu_out + gpu_grad):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)


def _run(spec, args, diff, kw, device):
    from op_registry import as_outputs

    ts = [a if isinstance(a, float) else
          cr.tensor(a, device=device, requires_grad=bool(d and spec.grad))
          for a, d in zip(args, diff)]
    outs = [o for o in as_outputs(spec.op(*ts, **kw)) if isinstance(o, cr.Tensor)]
    grads = []
    float_outs = [o for o in outs if o.requires_grad]
    if float_outs:
        sum(o.sum() for o in float_outs).backward()
        grads = [t.grad for t in ts if isinstance(t, cr.Tensor) and t.requires_grad]
    return [_cpu(o) for o in outs], [_cpu(g) for g in grads]


def test_mlp_training_on_cuda_matches_cpu():
    nn = cr.nn

    def train(device):
        cr.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3))
        model.to(device)
        opt = cr.optim.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(0)
        x = cr.tensor(rng.standard_normal((64, 20)).astype(np.float32), device=device)
        y = cr.tensor(rng.integers(0, 3, 64), device=device)
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        return float(loss), [p.detach().cpu().numpy() for p in model.parameters()]

    loss_cpu, p_cpu = train("cpu")
    loss_gpu, p_gpu = train("cuda")
    assert abs(loss_cpu - loss_gpu) < 1e-4
    for a, b in zip(p_cpu, p_gpu):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_mixing_devices_names_both():
    a = cr.ones(3)
    b = cr.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        a + b


def test_save_load_to_cuda(tmp_path):
    t = cr.randn(3, 4, device="cuda")
    cr.save({"t": t}, tmp_path / "x.safetensors")
    back = cr.load(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(back["t"].numpy(), t.cpu().numpy())
