"""Where the time of a step goes at one thread and at two, side by side in one process.

    python bench/threads_gates.py W7-transformer [--steps 20] [--threads 1,2]

Alternates ``cr.set_num_threads`` every step (so load on a shared machine hits each count
alike) and times every gate's forward/backward, the GEMMs, the optimizer and the rest with wall
time (``bench/part_timer.py``), printing medians per thread count: the gates whose time does
not shrink with more threads are the ones left on one core.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

os.environ["BENCH_THREADS"] = "default"  # torch-style defaults; the counts are set below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402
from part_timer import PartTimer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=sorted(workloads.WORKLOADS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    import chainrule as cr

    counts = [int(t) for t in args.threads.split(",")]
    step = workloads.WORKLOADS[args.workload]("chainrule")
    step()
    timer = PartTimer(clock=time.perf_counter)
    acc = {n: collections.defaultdict(list) for n in counts}
    try:
        for _ in range(args.steps):
            for n in counts:
                cr.set_num_threads(n)
                step()  # the first step after a change warms the new split up
                timer.reset()
                step()
                parts = timer.parts(1, top=40)
                for k in ("step", "gemm", "gates", "optimizer", "bookkeeping"):
                    acc[n][k].append(parts[k])
                for k, v in parts["top"]:
                    acc[n][k].append(v)
    finally:
        timer.remove()
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in acc.items()}
    last = counts[-1]
    print(f"{args.workload}, ms per step (medians of {args.steps}; gates: their NumPy work "
          "besides GEMMs)")
    print(f"  {'':40s}" + "".join(f"{f'{n} thr':>9s}" for n in counts))
    for k in sorted(med[last], key=lambda k: -med[last][k])[:24]:
        print(f"  {k:40s}" + "".join(f"{med[n].get(k, 0.0) * 1e3:9.3f}" for n in counts))


if __name__ == "__main__":
    main()
