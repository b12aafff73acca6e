"""A short run of the differential fuzzer (tests/fuzz_programs.py; ``make fuzz`` runs it longer):
random programs over the op registry against torch, and against chainrule's other engine."""

from __future__ import annotations

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
