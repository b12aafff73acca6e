"""``torch.profiler`` / ``torch.autograd.profiler``: chainrule's CPU profiler (every gate's
forward and backward, optimizer steps, ``record_function`` ranges), against torch 2.13's
interface, table layout, schedule and trace format."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
from chainrule import profiler
from chainrule.autograd import profiler as aprof
from chainrule.ops.elementwise import Relu
from square_gates import GoodSquare


def _step(model, opt, x):
    opt.zero_grad()
    y = model(x).relu().sum()
    y.backward()
    opt.step()


def _model():
    cr.manual_seed(0)
    m = nn.Linear(4, 3)
    return m, cr.optim.SGD(m.parameters(), lr=0.1), cr.randn(5, 4)


def test_profile_records_gates_backward_optimizer_and_ranges():
    m, opt, x = _model()
    forward_before = Relu.__dict__["forward"]
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        with profiler.record_function("train_step"):
            _step(m, opt, x)
            _step(m, opt, x)
    assert Relu.__dict__["forward"] is forward_before  # the originals are back
    avg = {e.key: e for e in prof.key_averages()}
    assert avg["train_step"].count == 1
    assert avg["Relu"].count == 2 and avg["ReluBackward0"].count == 2
    assert avg["Linear"].count == 2 and avg["LinearBackward0"].count == 2
    assert avg["Optimizer.step#SGD.step"].count == 2
    assert avg["Optimizer.zero_grad#SGD.zero_grad"].count == 2
    for e in avg.values():
        assert 0 <= e.self_cpu_time_total <= e.cpu_time_total + 1e-9
        assert e.cpu_time == pytest.approx(e.cpu_time_total / e.count)
    step = avg["train_step"]
    inner = sum(e.cpu_time_total for k, e in avg.items() if k != "train_step"
                and not k.endswith("Backward0") and k not in ("Relu", "Sum"))
    assert step.cpu_time_total >= inner * 0.5  # the range contains the gates it ran
    total = sum(e.self_cpu_time_total for e in avg.values())
    assert total == pytest.approx(step.cpu_time_total, rel=1e-6)  # self times partition it
    events = prof.events()
    relu = [e for e in events if e.name == "Relu"]
    assert all(e.cpu_parent is not None and e.cpu_parent.name == "train_step" for e in relu)


def test_nothing_is_recorded_outside_a_profile():
    m, opt, x = _model()
    with profiler.record_function("outside"):
        _step(m, opt, x)
    with profiler.profile() as prof:
        pass
    assert list(prof.key_averages()) == []
    assert aprof._current[0] is None and not aprof._patched


def test_table_has_torchs_columns_sorting_and_row_limit():
    torch = pytest.importorskip("torch")
    m, opt, x = _model()
    with profiler.profile() as prof:
        _step(m, opt, x)
    text = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=3)
    lines = text.rstrip("\n").split("\n")
    with torch.profiler.profile() as tprof:
        torch.nn.Linear(2, 2)(torch.randn(1, 2)).sum().backward()
    tlines = tprof.key_averages().table(row_limit=1).rstrip("\n").split("\n")
    assert lines[1].split() == tlines[1].split()  # Name  Self CPU %  Self CPU  ... # of Calls
    assert set(lines[0]) == {"-", " "} and lines[0].count("-  ") == 7
    rows = lines[3:-2]
    assert len(rows) == 3
    selfs = [e.self_cpu_time_total for e in sorted(
        prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:3]]
    assert [r.split()[0] for r in rows] == [e.key for e in sorted(
        prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:3]]
    assert selfs == sorted(selfs, reverse=True)
    assert lines[-1].startswith("Self CPU time total: ")
    assert lines[-1].split(": ")[1].endswith(("us", "ms", "s"))
    by_count = prof.key_averages().table(sort_by="count", row_limit=-1)
    assert len(by_count.rstrip("\n").split("\n")) == len(prof.key_averages()) + 5
    with pytest.raises(AttributeError):
        prof.key_averages().table(sort_by="nonsense")
    assert str(prof.key_averages()) == prof.key_averages().table()


def test_input_shapes_and_chrome_trace(tmp_path):
    m, opt, x = _model()
    with profiler.profile(record_shapes=True) as prof:
        with profiler.record_function("fwd"):
            m(x)
    grouped = {e.key: e for e in prof.key_averages(group_by_input_shape=True)}
    assert grouped["Linear"].input_shapes == [[5, 4], [3, 4], [3]]
    assert "Input Shapes" in prof.key_averages(group_by_input_shape=True).table()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    data = json.loads(path.read_text())
    spans = [e for e in data["traceEvents"] if e["ph"] == "X"]
    names = {e["name"]: e for e in spans}
    assert names["fwd"]["cat"] == "user_annotation" and names["Linear"]["cat"] == "cpu_op"
    fwd, lin = names["fwd"], names["Linear"]
    assert fwd["ts"] <= lin["ts"] and lin["ts"] + lin["dur"] <= fwd["ts"] + fwd["dur"] + 1e-3
    assert all(e["pid"] == os.getpid() and e["dur"] >= 0 for e in spans)
    assert data["displayTimeUnit"] == "ms" and data["traceName"] == str(path)


def test_schedule_matches_torch():
    torch = pytest.importorskip("torch")
    for kw in ({"wait": 1, "warmup": 1, "active": 2}, {"wait": 0, "warmup": 0, "active": 1},
               {"wait": 1, "warmup": 1, "active": 2, "repeat": 2, "skip_first": 1},
               {"wait": 2, "warmup": 1, "active": 1, "skip_first_wait": 1}):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ours = profiler.schedule(**kw)
            theirs = torch.profiler.schedule(**kw)
        assert len({str(x.message) for x in w}) == (1 if kw["warmup"] == 0 else 0)
        assert [ours(i).name for i in range(14)] == [theirs(i).name for i in range(14)], kw
    for bad in ({"wait": 1, "warmup": 1, "active": 0}, {"wait": -1, "warmup": 0, "active": 1}):
        with pytest.raises(AssertionError) as te:
            torch.profiler.schedule(**bad)
        with pytest.raises(AssertionError, match="Invalid profiler schedule arguments") as ce:
            profiler.schedule(**bad)
        assert str(ce.value) == str(te.value)


def test_schedule_and_on_trace_ready_with_step(tmp_path):
    m, opt, x = _model()
    traces = []

    def ready(p):
        traces.append({e.key: e.count for e in p.key_averages()})

    sched = profiler.schedule(wait=1, warmup=1, active=2, repeat=2)
    with profiler.profile(schedule=sched, on_trace_ready=ready) as prof:
        for _ in range(10):
            _step(m, opt, x)
            prof.step()
    assert len(traces) == 2  # two cycles of (wait, warmup, active x2)
    for t in traces:  # the two active steps of a cycle (their ranges grouped as torch does)
        assert t["Relu"] == 2 and t["ReluBackward0"] == 2 and t["ProfilerStep*"] == 2
    names = [e.name for e in prof.events() if e.name.startswith("ProfilerStep")]
    assert names == ["ProfilerStep#6", "ProfilerStep#7"]  # the events keep their numbers
    handler = profiler.tensorboard_trace_handler(str(tmp_path / "tb"), worker_name="w0")
    with profiler.profile(schedule=profiler.schedule(wait=0, warmup=1, active=1, repeat=1),
                          on_trace_ready=handler) as prof:
        for _ in range(3):
            _step(m, opt, x)
            prof.step()
    files = os.listdir(tmp_path / "tb")
    assert len(files) == 1 and files[0].startswith("w0.") and files[0].endswith(".pt.trace.json")
    json.loads((tmp_path / "tb" / files[0]).read_text())


def test_autograd_profiler_interface():
    m, opt, x = _model()
    with cr.autograd.profiler.profile(record_shapes=True) as prof:
        with cr.autograd.profiler.record_function("block"):
            m(x).sum().backward()
    assert prof.function_events is not None and prof.self_cpu_time_total > 0
    assert {"block", "Linear", "SumBackward0"} <= {e.key for e in prof.key_averages()}
    assert "Self CPU time total" in prof.table(sort_by="cpu_time_total")
    with cr.autograd.profiler.profile(enabled=False) as off:
        m(x)
    with pytest.raises(RuntimeError, match="didn't finish"):
        off.key_averages()

    @profiler.record_function("decorated")
    def f(t):
        return t * 2

    with profiler.profile() as prof:
        f(cr.ones(2))
    assert {e.key: e.count for e in prof.key_averages()}["decorated"] == 1


def test_profile_of_a_custom_function_and_nested_ranges():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with profiler.profile() as prof:
        with profiler.record_function("outer"):
            with profiler.record_function("inner"):
                GoodSquare.apply(x).sum().backward()
    ev = {e.name: e for e in prof.events()}
    assert ev["inner"].cpu_parent is ev["outer"]
    assert ev["GoodSquare"].cpu_parent is ev["inner"] and "GoodSquareBackward" in ev
    assert np.allclose(x.grad.numpy(), [2.0, 4.0])


def test_chainrule_run_profiles_a_torch_program(tmp_path):
    import subprocess
    import sys
    import textwrap

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prog = tmp_path / "p.py"
    prog.write_text(textwrap.dedent("""
        import torch
        from torch.profiler import profile, record_function, ProfilerActivity
        m = torch.nn.Linear(4, 2)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            with record_function("model_inference"):
                m(torch.randn(3, 4)).sum().backward()
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=2))
    """))
    env = dict(os.environ, PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-m", "chainrule", "run", str(prog)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[3].split()[0] == "model_inference"
