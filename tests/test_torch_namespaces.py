"""torch's namespaces that real programs touch in passing: torch.jit, torch.compiler,
torch._dynamo, torch.version, torch.multiprocessing, torch.nn.attention, torch.device("mps"),
torch.hub, torch.nn.utils.prune — each against torch 2.13 where it is installed."""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torch():
    return pytest.importorskip("torch")


def _run(script: str, tmp_path, timeout: float = 180) -> subprocess.CompletedProcess:
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "chainrule", "run", str(path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=timeout)


# ---- torch.jit ----
def test_jit_script_and_trace_return_the_callable_which_runs_eagerly():
    lin = nn.Linear(3, 2)
    with pytest.warns(DeprecationWarning, match="`torch.jit.script` is deprecated"):
        assert cr.jit.script(lin) is lin
    with pytest.warns(DeprecationWarning, match="`torch.jit.trace` is deprecated"):
        assert cr.jit.trace(lin, cr.randn(1, 3)) is lin

    def f(x: cr.Tensor) -> cr.Tensor:
        return x * 2 if bool(x.sum() > 0) else -x  # data-dependent: a trace would freeze it

    with pytest.warns(DeprecationWarning):
        g = cr.jit.script(f)
    assert g(cr.ones(2)).tolist() == [2.0, 2.0] and g(-cr.ones(2)).tolist() == [1.0, 1.0]
    assert cr.jit.ignore(f) is f and cr.jit.ignore(drop=True)(f) is f
    assert cr.jit.unused(f) is f and cr.jit.export(f) is f
    assert cr.jit.is_scripting() is False and cr.jit.is_tracing() is False
    with pytest.warns(DeprecationWarning, match="`torch.jit.fork` is deprecated. Please use"):
        fut = cr.jit.fork(lambda a, b: a + b, 1, b=2)
        bad = cr.jit.fork(lambda: 1 / 0)
    assert cr.jit.wait(fut) == 3
    with pytest.raises(ZeroDivisionError):
        cr.jit.wait(bad)


def _error_and_warnings(call):
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            call()
        except Exception as e:  # noqa: BLE001
            return type(e), str(e), [str(x.message) for x in w]
    return None, "", [str(x.message) for x in w]


def test_jit_errors_and_warnings_match_torch(tmp_path):
    torch = _torch()
    for name, args, same_msg in (("script", (int,), False), ("script", (3,), True),
                                 ("trace", (3, ()), True), ("fork", (lambda: 1,), True)):
        t_err, t_msg, t_warn = _error_and_warnings(lambda n=name, a=args: getattr(torch.jit, n)(*a))
        c_err, c_msg, c_warn = _error_and_warnings(lambda n=name, a=args: getattr(cr.jit, n)(*a))
        assert c_warn == t_warn, name
        assert c_err is t_err or (t_err is not None and issubclass(c_err, t_err)), name
        assert not same_msg or c_msg == t_msg, (name, c_msg, t_msg)
    with pytest.raises(NotImplementedError, match=r"cr.save\(model.state_dict\(\)"):
        cr.jit.save(nn.Linear(2, 2), str(tmp_path / "m.pt"))
    with pytest.warns(DeprecationWarning, match="`torch.jit.load` is deprecated"):
        with pytest.raises(NotImplementedError, match="load_state_dict"):
            cr.jit.load(str(tmp_path / "m.pt"))
    assert cr.jit.Final is torch.jit.Final


# ---- torch.compiler / torch._dynamo / torch.version ----
def test_compiler_and_dynamo_guards_leave_code_as_is():
    import chainrule._dynamo as dynamo

    f = lambda x: x + 1  # noqa: E731
    assert cr.compiler.compile is cr.compile and cr.compile(f) is f
    assert cr.compiler.disable(f) is f and cr.compiler.disable(recursive=False)(f) is f
    assert cr.compiler.is_compiling() is False and cr.compiler.is_dynamo_compiling() is False
    assert cr.compiler.allow_in_graph(f) is f and cr.compiler.reset() is None
    assert "inductor" in cr.compiler.list_backends()
    assert cr._dynamo is dynamo and dynamo.disable(f) is f and dynamo.is_compiling() is False
    assert dynamo.config.suppress_errors is False and dynamo.config.cache_size_limit == 8
    dynamo.config.suppress_errors = True
    try:
        assert dynamo.config.suppress_errors is True
        with dynamo.config.patch(verbose=True):
            assert dynamo.config.verbose is True
        assert dynamo.config.verbose is False
    finally:
        dynamo.config.suppress_errors = False
    x = cr.zeros(2, 3)
    dynamo.mark_dynamic(x, 0)
    dynamo.mark_dynamic(x, [0, 1])
    with pytest.raises(IndexError, match="mark_dynamic"):
        dynamo.mark_dynamic(x, 2)
    assert dynamo.reset() is None and dynamo.optimize("inductor")(f) is f


def test_dynamo_config_defaults_match_torch():
    torch = _torch()
    import torch._dynamo as tdyn

    import chainrule._dynamo as dynamo

    for name in ("suppress_errors", "verbose", "cache_size_limit", "recompile_limit",
                 "accumulated_cache_size_limit", "optimize_ddp", "capture_scalar_outputs",
                 "automatic_dynamic_shapes", "capture_dynamic_output_shape_ops",
                 "assume_static_by_default"):
        assert getattr(dynamo.config, name) == getattr(tdyn.config, name), name
    assert cr.compiler.is_compiling() == torch.compiler.is_compiling()


def test_version_module_matches_torch_cpu_build():
    torch = _torch()
    v = cr.version
    assert v.__version__ == cr.__version__
    assert v.cuda is None and v.hip is None and v.debug is False
    assert isinstance(v.git_version, str)
    for name in ("cuda", "hip", "debug", "git_version"):
        assert hasattr(torch.version, name)


# ---- torch.multiprocessing ----
def _worker_ok(i, path):
    with open(os.path.join(path, f"out{i}"), "w") as f:
        f.write(str(cr.ones(2).sum().item() + i))


def _worker_raises(i, path):
    if i == 1:
        raise ValueError("worker one fails")


def _worker_exits(i):
    sys.exit(3)


def test_multiprocessing_reexports_and_sharing_strategy():
    mp = importlib.import_module("chainrule.multiprocessing")
    import multiprocessing

    assert mp.Queue is multiprocessing.Queue and mp.Process is multiprocessing.Process
    assert mp.get_start_method is multiprocessing.get_start_method
    assert mp.get_all_sharing_strategies() == {"file_descriptor", "file_system"}
    assert mp.get_sharing_strategy() == "file_descriptor"
    mp.set_sharing_strategy("file_system")
    try:
        assert mp.get_sharing_strategy() == "file_system"
    finally:
        mp.set_sharing_strategy("file_descriptor")
    with pytest.raises(AssertionError):
        mp.set_sharing_strategy("shm")


def test_multiprocessing_spawn_runs_each_rank_and_reports_failures(tmp_path):
    mp = importlib.import_module("chainrule.multiprocessing")
    assert mp.spawn(_worker_ok, args=(str(tmp_path),), nprocs=2) is None
    assert sorted(os.listdir(tmp_path)) == ["out0", "out1"]
    assert (tmp_path / "out1").read_text() == "3.0"
    with pytest.raises(mp.ProcessRaisedException, match="worker one fails") as e:
        mp.spawn(_worker_raises, args=(str(tmp_path),), nprocs=2)
    assert e.value.error_index == 1
    assert "-- Process 1 terminated with the following error:" in str(e.value)
    assert isinstance(e.value, mp.ProcessException)
    with pytest.raises(mp.ProcessExitedException, match="terminated with exit code 3") as e:
        mp.spawn(_worker_exits, nprocs=1)
    assert e.value.exit_code == 3
    ctx = mp.spawn(_worker_ok, args=(str(tmp_path),), nprocs=1, join=False)
    assert isinstance(ctx, mp.ProcessContext) and len(ctx.pids()) == 1
    while not ctx.join():
        pass


def test_spawned_children_of_chainrule_run_see_torch_as_chainrule(tmp_path):
    r = _run("""
        import sys
        import torch
        import torch.multiprocessing as mp

        def work(i, out):
            import chainrule
            assert torch is chainrule, torch
            with open(f"{out}/rank{i}", "w") as f:
                f.write(str(torch.ones(3).sum().item()))

        if __name__ == "__main__":
            mp.spawn(work, args=(sys.argv[0].rsplit("/", 1)[0],), nprocs=2)
            print("done")
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
    assert (tmp_path / "rank0").read_text() == "3.0" == (tmp_path / "rank1").read_text()


# ---- torch.nn.attention ----
def test_sdpa_kernel_validates_and_switches_backends():
    from chainrule.nn.attention import SDPBackend, sdpa_kernel

    torch = _torch()
    from torch.nn.attention import SDPBackend as TB

    assert {k: int(v) for k, v in TB.__members__.items()} == {
        b.name: b.value for b in SDPBackend}
    q = cr.randn(1, 2, 3, 4)
    ref = cr.nn.functional.scaled_dot_product_attention(q, q, q)
    with sdpa_kernel(SDPBackend.MATH):
        assert cr.backends.cuda.math_sdp_enabled() and not cr.backends.cuda.flash_sdp_enabled()
        out = cr.nn.functional.scaled_dot_product_attention(q, q, q)
    assert np.array_equal(out.numpy(), ref.numpy())
    assert cr.backends.cuda.flash_sdp_enabled()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], set_priority=True):
        cr.nn.functional.scaled_dot_product_attention(q, q, q)
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        with pytest.raises(RuntimeError, match="No viable backend"):
            cr.nn.functional.scaled_dot_product_attention(q, q, q)
    with pytest.raises(AssertionError, match="Backend must be an instance of SDPBackend"):
        with sdpa_kernel("math"):
            pass
    with pytest.raises(AssertionError):
        with sdpa_kernel(["math"]):
            pass
    tq = torch.randn(1, 2, 3, 4)
    with torch.nn.attention.sdpa_kernel(TB.EFFICIENT_ATTENTION):
        with pytest.raises(RuntimeError, match="No viable backend"):
            torch.nn.functional.scaled_dot_product_attention(tq, tq, tq)


# ---- torch.device("mps") ----
def test_mps_device_can_be_named_but_holds_no_tensor():
    torch = _torch()
    d = cr.device("mps")
    assert repr(d) == repr(torch.device("mps")) and str(cr.device("mps:0")) == "mps:0"
    assert cr.backends.mps.is_available() is False and torch.backends.mps.is_available() is False
    with pytest.raises(NotImplementedError, match="mps"):
        cr.randn(2, device="mps")
    with pytest.raises(RuntimeError, match="mps"):  # torch: RuntimeError from .to("mps")
        cr.zeros(2).to("mps")
    with pytest.raises(RuntimeError):
        torch.zeros(2).to("mps")
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda, mps"):
        cr.device("foo")


# ---- torch.hub ----
def test_hub_dir_follows_torch_home(monkeypatch, tmp_path):
    torch = _torch()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cr.hub.get_dir() == torch.hub.get_dir() == str(tmp_path / "th" / "hub")
    cr.hub.set_dir(str(tmp_path / "elsewhere"))
    try:
        assert cr.hub.get_dir() == str(tmp_path / "elsewhere")
    finally:
        cr.hub._hub_dir[0] = None


def test_hub_loads_a_cached_safetensors_file_and_refuses_pickles(tmp_path):
    lin = nn.Linear(3, 2)
    ckpt = tmp_path / "ckpts"
    ckpt.mkdir()
    cr.save(lin.state_dict(), str(ckpt / "lin-abc.safetensors"))
    sd = cr.hub.load_state_dict_from_url("https://example.invalid/x/lin-abc.safetensors",
                                         model_dir=str(ckpt))
    assert np.array_equal(sd["weight"].numpy(), lin.weight.detach().numpy())
    src = tmp_path / "src.safetensors"
    cr.save({"w": cr.ones(2)}, str(src))
    out = tmp_path / "dl"
    out.mkdir()
    sd = cr.hub.load_state_dict_from_url(src.as_uri(), model_dir=str(out))
    assert sd["w"].tolist() == [1.0, 1.0] and (out / "src.safetensors").exists()
    (tmp_path / "pick.pth").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(Exception, match="(?i)pickle|safetensors"):
        cr.hub.load_state_dict_from_url("https://example.invalid/pick.pth",
                                        model_dir=str(tmp_path))


def test_hub_download_failures_are_clear(tmp_path):
    with pytest.raises(OSError, match="could not download .* put the file at"):
        cr.hub.download_url_to_file("http://127.0.0.1:9/none.safetensors",
                                    str(tmp_path / "none.safetensors"))
    assert not list(tmp_path.iterdir())  # no partial file left behind
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    with pytest.raises(RuntimeError, match="invalid hash value"):
        cr.hub.download_url_to_file(src.as_uri(), str(tmp_path / "b.bin"), hash_prefix="ffff")
    cr.hub.download_url_to_file(src.as_uri(), str(tmp_path / "c.bin"), hash_prefix="ba78")
    assert (tmp_path / "c.bin").read_bytes() == b"abc"
    with pytest.raises(NotImplementedError, match="hubconf"):
        cr.hub.load("pytorch/vision", "resnet18")


# ---- torch.nn.utils.prune ----
def _pair(seed: int, make):
    torch = _torch()
    torch.manual_seed(seed)
    tm = make(torch.nn)
    cm = make(nn)
    cm.load_state_dict({k: cr.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return torch, tm, cm


def test_prune_l1_layout_masks_and_gradients_match_torch():
    import torch.nn.utils.prune as tprune

    import chainrule.nn.utils.prune as prune

    torch, tm, cm = _pair(0, lambda m: m.Linear(5, 4))
    for lib, m, amount in ((tprune, tm, 0.4), (prune, cm, 0.4)):
        lib.l1_unstructured(m, "weight", amount)
    assert list(cm.state_dict()) == list(tm.state_dict()) == ["bias", "weight_orig",
                                                               "weight_mask"]
    assert [n for n, _ in cm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert np.array_equal(cm.weight_mask.numpy(), tm.weight_mask.numpy())
    assert prune.is_pruned(cm) and isinstance(cm.weight, cr.Tensor)
    tprune.l1_unstructured(tm, "weight", 3)  # again: counts among what is left
    prune.l1_unstructured(cm, "weight", 3)
    assert isinstance(next(iter(cm._forward_pre_hooks.values())), prune.PruningContainer)
    assert np.array_equal(cm.weight_mask.numpy(), tm.weight_mask.numpy())
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    tm(torch.tensor(x)).pow(2).sum().backward()
    cm(cr.tensor(x)).pow(2).sum().backward()
    np.testing.assert_allclose(cm.weight_orig.grad.numpy(), tm.weight_orig.grad.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert float((cm.weight_orig.grad * (1 - cm.weight_mask)).abs().sum()) == 0.0
    tprune.remove(tm, "weight")
    prune.remove(cm, "weight")
    assert list(cm.state_dict()) == list(tm.state_dict()) == ["bias", "weight"]
    assert isinstance(cm.weight, nn.Parameter) and not prune.is_pruned(cm)
    np.testing.assert_array_equal(cm.weight.detach().numpy(), tm.weight.detach().numpy())


def test_prune_structured_random_and_global_match_torch():
    import torch.nn.utils.prune as tprune

    import chainrule.nn.utils.prune as prune

    torch, tc, cc = _pair(1, lambda m: m.Conv2d(3, 6, 3))
    tprune.ln_structured(tc, "weight", 0.5, n=2, dim=0)
    prune.ln_structured(cc, "weight", 0.5, n=2, dim=0)
    assert np.array_equal(cc.weight_mask.numpy(), tc.weight_mask.numpy())
    tprune.ln_structured(tc, "weight", 1, n=math.inf, dim=1)
    prune.ln_structured(cc, "weight", 1, n=math.inf, dim=1)
    assert np.array_equal(cc.weight_mask.numpy(), tc.weight_mask.numpy())
    torch.manual_seed(5)
    cr.manual_seed(5)
    tprune.random_unstructured(tc, "bias", 0.5)
    prune.random_unstructured(cc, "bias", 0.5)
    assert np.array_equal(cc.bias_mask.numpy(), tc.bias_mask.numpy())
    torch, (ta, tb), (ca, cb) = _torch(), *zip(_pair(2, lambda m: m.Linear(3, 3))[1:],
                                               _pair(3, lambda m: m.Linear(3, 2))[1:])
    tprune.global_unstructured([(ta, "weight"), (tb, "weight")],
                               pruning_method=tprune.L1Unstructured, amount=5)
    prune.global_unstructured([(ca, "weight"), (cb, "weight")],
                              pruning_method=prune.L1Unstructured, amount=5)
    assert np.array_equal(ca.weight_mask.numpy(), ta.weight_mask.numpy())
    assert np.array_equal(cb.weight_mask.numpy(), tb.weight_mask.numpy())


@pytest.mark.parametrize("call", [
    lambda p, m: p.l1_unstructured(m.Linear(2, 2), "weight", 1.5),
    lambda p, m: p.l1_unstructured(m.Linear(2, 2), "weight", 5),
    lambda p, m: p.l1_unstructured(m.Linear(2, 2), "weight", "a"),
    lambda p, m: p.remove(m.Linear(2, 2), "weight"),
    lambda p, m: p.ln_structured(m.Linear(2, 2), "bias", 1, 2, 0),
    lambda p, m: p.global_unstructured([(m.Linear(2, 2), "bias")], p.RandomStructured,
                                       amount=1),
])
def test_prune_errors_match_torch(call):
    _torch()
    import torch.nn as tnn
    import torch.nn.utils.prune as tprune

    import chainrule.nn.utils.prune as prune

    with pytest.raises(Exception) as te:
        call(tprune, tnn)
    with pytest.raises(type(te.value)) as ce:
        call(prune, nn)
    assert str(ce.value).split(" ")[:3] == str(te.value).split(" ")[:3]


def test_namespaces_resolve_under_chainrule_run(tmp_path):
    r = _run("""
        import torch, torch.jit, torch.compiler, torch._dynamo, torch.version
        import torch.multiprocessing, torch.profiler, torch.autograd.profiler, torch.hub
        import torch.nn.utils.prune
        from torch.nn.attention import sdpa_kernel, SDPBackend
        torch._dynamo.config.suppress_errors = True
        f = torch.jit.script(lambda x: x + 1)
        assert f(torch.ones(1)).item() == 2.0
        assert torch.version.cuda is None and torch.device("mps").type == "mps"
        with sdpa_kernel([SDPBackend.MATH]):
            pass
        print("ok", torch.multiprocessing.get_start_method(allow_none=True) in (None, "fork",
              "spawn", "forkserver"))
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok True"


def test_jit_isinstance_matches_torch():
    from typing import Optional

    torch = _torch()
    cases = [([1, 2], list[int]), ([1, "a"], list[int]), ({"a": 1}, dict[str, int]),
             ((1, "a"), tuple[int, str]), (None, Optional[int]), (3, Optional[int]),
             ("x", Optional[int]), ([[1], [2]], list[list[int]]), (1.0, float)]
    for obj, typ in cases:
        assert cr.jit.isinstance(obj, typ) == torch.jit.isinstance(obj, typ), (obj, typ)
