"""`make bench`'s chainrule rows, this checkout against another one, side by side in one run.

Issue 20's "nothing lost" check: the same workload code (this checkout's ``bench/workloads.py``,
run by ``bench/run_one.py``) runs chainrule imported from each checkout in turn, each in a fresh
process, one thread, the checkout order alternating each round; the number per row is the
median over rounds of each process's median step. A row more than 5% slower than the other
checkout is flagged.

    python bench/before_after.py --other /path/to/older/checkout [--rounds 7] [--clock cpu]
                                 [--workloads W1,W2,...] [--write BENCHMARKS.md]

The other checkout must be importable as it stands (its native parts built in place:
``python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import SPEC, TITLES, machine  # noqa: E402  (bench/ is not a package)

# The rows `make bench` had before issue 20 (W3-raw and W4-mnist came later, with issue 16).
ROWS = ["W1", "W2", "W3", "W4", "W5-10k", "W5-100k", "W5-1M", "W6", "W7-LSTM",
        "W7-transformer"]
SLOWER = 1.05


def run_one(checkout: str, workload: str, clock: str) -> float:
    repeats = SPEC[workload][0]
    args = [sys.executable, os.path.join(HERE, "run_one.py"), "chainrule",
            "W3" if workload == "W6" else workload, str(repeats)]
    if workload == "W6":
        args.append("--memory")
    env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", BENCH_CLOCK=clock)
    env.pop("CHAINRULE_PURE_PYTHON", None)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800,
                          cwd=checkout)
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"{workload} crashed in {checkout} (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}") from None
    if "error" in res:
        raise SystemExit(f"{workload} failed in {checkout}: {res['error']}")
    if workload == "W6":
        return res["peak_mib"]
    return statistics.median(res["times"]) * SPEC[workload][2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--other", required=True, help="the checkout to compare with")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--workloads", default=",".join(ROWS))
    p.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                   help="cpu (default): each process's CPU time, steadier on a shared machine")
    p.add_argument("--write", metavar="FILE", help="replace the before-after section of FILE")
    args = p.parse_args()
    workloads = args.workloads.split(",")
    other = os.path.abspath(args.other)
    checkouts = {"this": ROOT, "other": other}
    values: dict = {}
    for r in range(args.rounds):
        order = ["this", "other"] if r % 2 == 0 else ["other", "this"]
        for w in workloads:
            for name in order:
                v = run_one(checkouts[name], w, args.clock)
                values.setdefault((w, name), []).append(v)
                print(f"round {r + 1}/{args.rounds} {w:15s} {name:5s} {v:10.3f} {SPEC[w][1]}",
                      file=sys.stderr, flush=True)
    rev = subprocess.run(["git", "-C", other, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or other
    here = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    lines = ["| workload | unit | before (" + rev + ") | after (" + here + ") | after ÷ before "
             "| within 5% |", "|---|---|---|---|---|---|"]
    flagged = []
    for w in workloads:
        before = statistics.median(values[(w, "other")])
        after = statistics.median(values[(w, "this")])
        ratio = after / before
        ok = ratio <= SLOWER
        if not ok:
            flagged.append(w)
        lines.append(f"| {TITLES[w]} | {SPEC[w][1]} | {before:.3g} | {after:.3g} | {ratio:.2f} "
                     f"| {'yes' if ok else 'no'} |")
    cmd = "python bench/before_after.py --other " + os.path.relpath(other, ROOT) + (
        f" --rounds {args.rounds}" if args.rounds != 7 else "") + (
        "" if args.workloads == ",".join(ROWS) else f" --workloads {args.workloads}") + (
        " --clock wall" if args.clock == "wall" else "")
    body = (f"## Before and after: `make bench`'s chainrule rows against commit {rev}\n\n"
            f"Measured {datetime.date.today()} on {machine()}. Command: `{cmd}`. Both columns "
            f"run this checkout's workload code with chainrule imported from each checkout, one "
            f"thread, {'CPU' if args.clock == 'cpu' else 'wall-clock'} time, a fresh process "
            f"per row and checkout, {args.rounds} rounds alternating which checkout runs first; "
            f"medians. Lower is better (W6: peak MiB).\n\n" + "\n".join(lines) + "\n\n" + (
                "Every row is within 5% of before." if not flagged else
                "More than 5% slower: " + ", ".join(flagged) + "."))
    print(body)
    if args.write:
        import sections

        sections.write_section(args.write, "before-after", body, after="<!-- engine-icount:end -->")


if __name__ == "__main__":
    main()
