"""The real programs of ``shared/realworld`` under ``chainrule run``: a short version of
bench/realworld.py (a few steps each), so that a regression shows.

Each program runs for a few steps with the step tracer; where PyTorch is installed it runs first
and chainrule replays its initial weights and RNG state, and the float32 losses must agree to
1e-4 relative (the issue's goal over the first 5 steps). Skips where the programs' folder or the
tensorboard package (makemore logs through torch.utils.tensorboard) is absent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import realworld  # noqa: E402

FOLDER = realworld.realworld_dir()
pytestmark = [
    pytest.mark.skipif(FOLDER is None, reason="no shared/realworld folder"),
    pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                       reason="the tensorboard package is not installed"),
]
NAMES = realworld.program_names(FOLDER) if FOLDER else []
STEPS = 3


@pytest.fixture(scope="module")
def work():
    folder = tempfile.mkdtemp(prefix="test_realworld_")
    bindir = os.path.join(folder, "bin")
    os.mkdir(bindir)
    yield folder, realworld._chainrule_bin(bindir)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name", NAMES)
def test_program_runs_and_matches_pytorch(work, name):
    folder, bindir = work
    res = realworld.measure(FOLDER, name, bindir=bindir, work=folder, steps=STEPS, threads=1,
                            timeout=600)
    run = res["chainrule"]["run"]
    # (a run ends when step STEPS + 1 starts, so a later part of it, such as nanoGPT's
    # sample.py reading the checkpoint, may fail: the full runs are bench/realworld.py's)
    assert res["chainrule"]["steps"] > 0, f"{name}: no step recorded\n{run['tail']}"
    assert "chainrule run:" not in run["tail"], run["tail"]
    if "compare" in res:
        c = res["compare"]
        assert not c["length_differs"], f"{name}: PyTorch and chainrule ran different steps"
        assert c["replayed"], f"{name}: PyTorch's initial state did not fit chainrule's model"
        assert c["max_rel_diff"] <= 1e-4, f"{name}: losses differ by {c['max_rel_diff']:.2e}"


def test_program_list_and_the_table():
    assert {"nanogpt", "mnist", "makemore_mlp"} <= set(NAMES)
    fake = {"x": {"full": {"rc": 0}, "one": {
        "torch": {"ms": 2.0}, "chainrule": {"ms": 3.0},
        "compare": {"max_rel_diff": 1e-7, "max_rel_diff_first": 1e-8, "steps": 5,
                    "length_differs": False,
                    "init_equal": True, "rng_equal": True, "replayed": True}}}}
    row = realworld.table(fake, 5, 4).splitlines()[-3]
    assert row.startswith("| x | yes | 1.0e-08 / 1.0e-07 (5) | — | yes | 2.0 | 3.0 | 1.50× |")


def test_breakdown_splits_a_programs_step(work):
    """``--breakdown``: the parts of chainrule's step add up to it, the gates are named."""
    folder, bindir = work
    text = realworld.breakdown_table(FOLDER, ["makemore_mlp"], bindir=bindir, work=folder,
                                     steps=6, timeout=600)
    row = text.splitlines()[-1]
    assert row.startswith("| makemore_mlp (4) |"), row
    cells = [c.strip() for c in row.strip("|").split("|")]
    step = float(cells[1])
    parts = [float(c.split()[0]) for c in cells[2:6]]
    assert step > 0 and abs(sum(parts) - step) <= 0.02 * step + 0.02, (step, parts)
    assert "Embedding.backward" in cells[6] and "Linear.forward" in cells[6]
