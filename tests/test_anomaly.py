"""detect_anomaly: the first NaN/Inf names the op, its creation site, the phase and input stats."""

import inspect
import os
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule._state import state

HERE = os.path.basename(__file__)


def _line() -> int:
    """The line number after the caller's line (where the op under test is created)."""
    return inspect.currentframe().f_back.f_lineno + 1


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_forward_nan_from_log_of_negative_names_op_site_and_inputs():
    x = cr.tensor([1.0, -1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            line = _line()
            cr.log(x)
    msg = str(info.value)
    assert "forward of Log" in msg
    assert f"{HERE}:{line}" in msg
    assert "1 NaN" in msg
    assert "min -1, max 2, NaN 0, Inf 0" in msg


def test_backward_nan_from_sqrt_at_zero_times_zero():
    x = cr.tensor([0.0, 4.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            line = _line()
            y = cr.sqrt(x) * 0.0
            y.sum().backward()
    msg = str(info.value)
    assert "backward of Sqrt" in msg
    assert f"{HERE}:{line}" in msg
    assert "gradient for input 0" in msg
    assert "min 0, max 4" in msg


def test_torch_also_raises_for_sqrt_at_zero_times_zero():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.0, 4.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="SqrtBackward0"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autograd.detect_anomaly():
                (torch.sqrt(x) * 0.0).sum().backward()


def test_forward_inf_from_exp_overflow():
    x = cr.tensor([1.0, 200.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            cr.exp(x)
    msg = str(info.value)
    assert "forward of Exp" in msg and "1 Inf" in msg and "0 NaN" in msg


def test_only_the_first_bad_op_is_named():
    x = cr.tensor([-1.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            y = cr.log(x)      # the first NaN
            cr.exp(y) * 2.0    # would also be NaN
    assert "forward of Log" in str(info.value)
    assert "Exp" not in str(info.value).splitlines()[0]


def test_without_detect_anomaly_nan_propagates_silently():
    x = cr.tensor([0.0], requires_grad=True)
    y = (cr.sqrt(x) * 0.0).sum()
    y.backward()
    assert np.isnan(x.grad.numpy()).all()


def test_state_restored_after_exit_and_after_error():
    before = (state.anomaly, state.record_sites, state.record_inputs)
    with cr.autograd.detect_anomaly():
        assert state.anomaly and state.record_sites
    assert (state.anomaly, state.record_sites, state.record_inputs) == before
    with pytest.raises(RuntimeError):
        with cr.autograd.detect_anomaly():
            cr.log(cr.tensor([-1.0], requires_grad=True))
    assert (state.anomaly, state.record_sites, state.record_inputs) == before


def test_check_nan_false_records_sites_but_does_not_raise():
    x = cr.tensor([-1.0], requires_grad=True)
    with cr.autograd.detect_anomaly(check_nan=False):
        line = _line()
        y = cr.log(x)
    assert y.grad_fn.site.endswith(f"{HERE}:{line}")
    assert np.isnan(y.detach().numpy()).all()


def test_set_detect_anomaly_acts_at_once_and_restores_as_context():
    before = state.anomaly
    with cr.autograd.set_detect_anomaly(True):
        assert state.anomaly
        with pytest.raises(RuntimeError, match="Log"):
            cr.log(cr.tensor([-2.0], requires_grad=True))
    assert state.anomaly == before
    cr.autograd.set_detect_anomaly(True)
    try:
        assert state.anomaly
    finally:
        cr.autograd.set_detect_anomaly(False)
    assert not state.anomaly


def test_decorator_form():
    @cr.autograd.detect_anomaly()
    def step(x):
        return cr.log(x)

    with pytest.raises(RuntimeError, match="forward of Log"):
        step(cr.tensor([-1.0], requires_grad=True))


class NanForward(cr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x / 0.0

    @staticmethod
    def backward(ctx, g):
        return g


class NanBackward(cr.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def test_custom_function_forward_is_checked():
    x = cr.tensor([1.0, 0.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            line = _line()
            NanForward.apply(x)
    msg = str(info.value)
    assert "forward of NanForward" in msg and f"{HERE}:{line}" in msg


def test_custom_function_backward_is_checked():
    x = cr.tensor([1.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            line = _line()
            y = NanBackward.apply(x)
            (y * y).sum().backward()
    msg = str(info.value)
    assert "backward of NanBackward" in msg and f"{HERE}:{line}" in msg
    assert "min 1, max 3" in msg


def test_healthy_training_step_passes_and_matches_plain_gradients():
    cr.manual_seed(0)
    w = cr.randn(4, 3, requires_grad=True)
    x = cr.randn(8, 4)

    def loss():
        return ((x @ w).tanh() ** 2).mean()

    loss().backward()
    plain = w.grad.numpy().copy()
    w.grad = None
    with cr.autograd.detect_anomaly():
        loss().backward()
    np.testing.assert_allclose(w.grad.numpy(), plain, rtol=1e-6)


def test_module_scope_is_named_when_nn_is_available():
    nn = pytest.importorskip("chainrule.nn")
    lin = nn.Linear(2, 2)
    with cr.no_grad():
        lin.weight.fill_(float("inf")) if hasattr(lin.weight, "fill_") else None
    if np.isfinite(lin.weight.detach().numpy()).all():
        pytest.skip("Parameter.fill_ not available")
    with pytest.raises(RuntimeError) as info:
        with cr.autograd.detect_anomaly():
            lin(cr.tensor([[1.0, -1.0]]))
    assert "inside Linear" in str(info.value)


def _bench_module():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                        "bench_anomaly.py")
    spec = importlib.util.spec_from_file_location("bench_anomaly", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_writes_only_its_own_section(tmp_path):
    bench = _bench_module()
    path = tmp_path / "BENCHMARKS.md"
    bench.write_section(str(path), "first")
    assert path.read_text() == f"{bench.START}\nfirst\n{bench.END}\n"
    path.write_text(f"# Benchmarks\n\nothers' table\n\n{bench.START}\nold\n{bench.END}\n\ntail\n")
    bench.write_section(str(path), "| new | table |")
    assert path.read_text() == (f"# Benchmarks\n\nothers' table\n\n{bench.START}\n| new | table |\n"
                                f"{bench.END}\n\ntail\n")
    path.write_text("# Benchmarks\nno markers")
    bench.write_section(str(path), "x")
    assert path.read_text() == f"# Benchmarks\nno markers\n\n{bench.START}\nx\n{bench.END}\n"
