"""A short run of the differential fuzzer (tests/fuzz_programs.py; ``make fuzz`` runs it longer):
random programs over the op registry against torch, and against chainrule's other engine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")

import fuzz_programs as FP  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ENTRIES = FP.catalog()


def _report(prog, verdict, diffs) -> str:
    names = " -> ".join(s["name"] for s in prog["steps"])
    return f"{verdict}: {names}\n" + "\n".join(diffs[:6]) + f"\nprogram: {prog}"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data())
def test_random_programs_match_torch(data):
    torch.set_num_threads(1)
    prog = FP.generate(FP.HypothesisChooser(data.draw), ENTRIES, max_steps=4)
    verdict, diffs = FP.check(prog, torch)
    assert verdict in ("ok", "torch-limit"), _report(prog, verdict, diffs)


def test_the_two_engines_give_identical_results():
    """The same programs on the compiled and the pure-Python engine: bit-identical values and
    gradients (and against torch as well)."""
    worker = FP.EngineWorker()
    if not worker.available:
        worker.close()
        pytest.skip("only one engine is available (no compiled modules)")
    try:
        for seed in range(150):
            prog = FP.generate(FP.RandomChooser(seed), ENTRIES)
            verdict, diffs = FP.check(prog, torch, worker)
            assert verdict in ("ok", "torch-limit"), _report(prog, verdict, diffs)
    finally:
        worker.close()


def test_the_fuzzer_notices_a_wrong_gradient(monkeypatch):
    """The harness itself: a gate whose backward is off by a factor is reported."""
    from chainrule.ops import elementwise

    prog = {"dtype": "float64", "double": False, "loss_seed": 1, "leaves": [
        {"shape": [2, 3], "dtype": "float64", "layout": "transposed", "domain": "real",
         "seed": 3, "grad": True}],
        "steps": [{"entry": next(e.index for e in ENTRIES
                                 if FP.R.REGISTRY[e.index].name == "exp"),
                   "name": "exp", "case": 0, "args": [["leaf", 0]]}]}
    assert FP.check(prog, torch)[0] == "ok"
    backward = elementwise.Exp.backward
    monkeypatch.setattr(elementwise.Exp, "backward",
                        staticmethod(lambda ctx, g: backward(ctx, g) * 1.001))
    verdict, diffs = FP.check(prog, torch)
    assert verdict == "mismatch" and any(d.startswith("grad 0") for d in diffs), diffs


def test_the_special_cases_name_catalog_entries():
    """The fuzzer's per-op rules (tie-free inputs, torch's layout bugs, ...) name real entries
    (a renamed entry would silently lose its rule)."""
    names = {FP.R.REGISTRY[e.index].name for e in ENTRIES}
    for rule in (FP.TIE_SENSITIVE, FP.ZERO_VARIANCE_NOISE, FP.DISTINCT_OPERANDS,
                 FP.UNFED_OUTPUTS, FP.NAN_GRADIENT_VARIES, FP.CANCELS_NEAR_ZERO,
                 FP.TORCH_CONTIGUOUS):
        assert rule <= names, rule - names


def test_tie_sensitive_ops_get_inputs_without_ties():
    special = FP.TIE_SENSITIVE | FP.ZERO_VARIANCE_NOISE
    seen = 0
    for seed in range(3000):
        prog = FP.generate(FP.RandomChooser(seed), ENTRIES)
        for step in prog["steps"]:
            if step["name"] not in special:
                continue
            for ref in step["args"]:
                assert ref[0] in ("leaf", "scalar"), step
                if ref[0] == "leaf":
                    leaf = prog["leaves"][ref[1]]
                    assert leaf["layout"] != "expanded", (step, leaf)
                    assert leaf["domain"] in FP.TIE_FREE_DOMAINS, (step, leaf)
                    seen += 1
    assert seen > 50


def _two_step_program():
    def index(name):
        return next(e.index for e in ENTRIES if FP.R.REGISTRY[e.index].name == name)

    return {"dtype": "float64", "double": False, "loss_seed": 1, "leaves": [
        {"shape": [2, 3], "dtype": "float64", "layout": "transposed", "domain": "real",
         "seed": 3, "grad": True}],
        "steps": [{"entry": index("exp"), "name": "exp", "case": 0, "args": [["leaf", 0]]},
                  {"entry": index("sin"), "name": "sin", "case": 0, "args": [["step", 0, 0]]}]}


def test_torch_runs_on_chainrules_values_but_a_wrong_step_is_still_reported(monkeypatch):
    """Torch's steps take chainrule's values from earlier steps (where equal within the
    tolerance): a wrong forward value is reported at its own step, a wrong backward of an
    earlier step in the gradient."""
    from chainrule.ops import elementwise

    prog = _two_step_program()
    assert FP.check(prog, torch)[0] == "ok"
    forward, backward = elementwise.Exp.forward, elementwise.Exp.backward
    with monkeypatch.context() as mp:
        mp.setattr(elementwise.Exp, "forward",
                   staticmethod(lambda ctx, x: forward(ctx, x) * 1.001))
        verdict, diffs = FP.check(prog, torch)
        assert verdict == "mismatch" and any(d.startswith("step 0 (exp)") for d in diffs), diffs
    with monkeypatch.context() as mp:
        mp.setattr(elementwise.Exp, "backward",
                   staticmethod(lambda ctx, g: backward(ctx, g) * 1.001))
        verdict, diffs = FP.check(prog, torch)
        assert verdict == "mismatch" and any(d.startswith("grad 0") for d in diffs), diffs


def test_ops_with_a_vector_width_nan_gradient_get_fresh_inputs_of_their_domain():
    seen = 0
    for seed in range(3000):
        prog = FP.generate(FP.RandomChooser(seed), ENTRIES)
        for step in prog["steps"]:
            if step["name"] not in FP.FRESH_INPUTS:
                continue
            spec = FP.R.REGISTRY[step["entry"]]
            doms = spec.domains(len(step["args"]))
            if step["name"] in FP.CANCELS_NEAR_ZERO:
                doms = tuple("real" if d == "any" else d for d in doms)
            for ref, dom in zip(step["args"], doms):
                if ref[0] != "scalar":
                    assert ref[0] == "leaf" and prog["leaves"][ref[1]]["domain"] == dom, step
                    seen += 1
    assert seen > 20


def test_anchoring_takes_chainrules_values_and_keeps_torchs_graph_and_signed_zeros():
    t = torch.tensor([-0.0, 1.0 + 1e-12, 5.0, 2.0], dtype=torch.float64, requires_grad=True)
    seen = FP._encode(np.array([-0.0, 1.0, 7.0, np.nan]))  # (7 and NaN: not equal, kept)
    out = FP._anchored(t * 1.0, seen, torch, 1e-6, 1e-9)
    assert out.tolist()[:3] == [-0.0, 1.0, 5.0] and out[0].item() == 0.0
    assert torch.signbit(out[0]) and out[3].item() == 2.0
    out.sum().backward()
    assert t.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
