"""The cr.func examples run, as modules (their main() numbers) and as scripts."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    """Import examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_newton_converges_quadratically_in_a_handful_of_steps() -> None:
    r = load("newton").main()
    assert r["x"] == pytest.approx(math.log(2.0), abs=1e-15)
    assert r["steps"] <= 8
    errors = [e for e in r["errors"] if e > 1e-12]
    assert len(errors) >= 4
    # quadratic convergence: e_{k+1} <= C e_k^2 once close (f'''/2f'' is about 0.5 near ln 2)
    for e0, e1 in zip(errors[2:], errors[3:]):
        assert e1 <= 1.0 * e0 ** 2


def test_hessian_of_the_mlp_loss_matches_finite_differences() -> None:
    r = load("hessian_mlp").main()
    assert r["shape"] == (17, 17)
    assert r["max_abs_error"] < 1e-6 * max(1.0, r["max_abs_entry"])
    assert r["asymmetry"] < 1e-12
    assert r["eig_min"] < r["eig_max"]


def test_hvp_matches_the_full_hessian_and_finite_differences() -> None:
    r = load("hvp").main()
    assert r["hvp_vs_hessian"] < 1e-12
    assert r["power_iteration"] == pytest.approx(r["eigvalsh"], rel=1e-8)
    assert r["n_big"] > 1000
    assert r["hvp_vs_fd_rel"] < 1e-6


@pytest.mark.parametrize("name", ["newton", "hessian_mlp", "hvp"])
def test_examples_run_as_scripts(name: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent))
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
