"""Instructions per training step of a bench/ workload, counted by valgrind's callgrind.

Wall-clock times on a shared 2-core machine move by tens of percent; instruction counts do not,
so the engine's bookkeeping is compared here (before/after a change, or against another
checkout). Each workload runs N1 and N2 steps in fresh processes; the difference divided by
N2 - N1 is the cost of one step without the import and set-up.

    python bench/engine_icount.py --workloads W1,W2 [--other /path/to/other/checkout]

Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {"W1": (1, 2), "W2": (2, 6), "W5-10k": (1, 3)}
_RUN = """
import sys
sys.path.insert(0, {bench!r})
import workloads
step = workloads.WORKLOADS[{w!r}]("chainrule")
step()
for _ in range({n}):
    step()
"""

# Counted instructions move with the string-hash seed (dict layouts) and with OpenBLAS's idle
# threads spinning beside the step (callgrind counts them too): by up to 10% between runs of the
# same code. Both are fixed unless the caller sets them.
_ENV = {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"} | dict(os.environ)


def instructions(checkout: str, workload: str, n: int) -> int:
    """Instructions callgrind counts for ``n`` steps (after one warm-up) in ``checkout``."""
    code = _RUN.format(bench=os.path.join(checkout, "bench"), w=workload, n=n)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-c", code],
            env=_ENV | {"PYTHONPATH": checkout}, capture_output=True, text=True,
            check=True, cwd=tmp)  # (not the caller's folder: `-c` puts it first on sys.path)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if not found:
        raise RuntimeError(f"callgrind printed no count:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_step(checkout: str, workload: str) -> float:
    n1, n2 = STEPS.get(workload, (1, 3))
    return (instructions(checkout, workload, n2) - instructions(checkout, workload, n1)) / (
        n2 - n1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W1,W2")
    p.add_argument("--other", help="another checkout (e.g. a git worktree of an older commit, "
                                   "built with `python setup.py build_ext --inplace`)")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("engine_icount: valgrind is not installed (apt-get install valgrind)")
    print("| workload | this checkout (instructions/step) | other | this ÷ other |")
    print("|---|---:|---:|---:|")
    for w in args.workloads.split(","):
        here = per_step(ROOT, w)
        if args.other:
            there = per_step(args.other, w)
            print(f"| {w} | {here / 1e6:,.1f} M | {there / 1e6:,.1f} M | {here / there:.2f} |")
        else:
            print(f"| {w} | {here / 1e6:,.1f} M | | |")


if __name__ == "__main__":
    main()
