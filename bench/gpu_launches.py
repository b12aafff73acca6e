"""Count the GPU kernel launches of the GPU benchmark's steps, without a GPU.

Runs each step of ``bench/gpu_check.py`` on ``tests/fakecupy`` (the CPU stand-in for CuPy) and
prints the launches per step and where they come from. On small GPU work the launch count sets
the time (a few µs of host time each), so this is the number to bring down.

    PYTHONPATH=tests/fakecupy python bench/gpu_launches.py [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu_check  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    import cupy

    import chainrule as cr

    if not getattr(cupy, "IS_FAKE", False):
        print("run with PYTHONPATH=tests/fakecupy (the counting CPU stand-in for CuPy)")
        return 1
    cases = {
        "MLP b256": lambda: gpu_check.mlp_step(cr, "cuda", 256, (784, 512, 512, 10)),
        "CNN b256": lambda: gpu_check.cnn_step(cr, "cuda", 32),
        "tiny chain (75 ops)": lambda: gpu_check.tiny_chain(cr, "cuda"),
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name, make in cases.items():
        step = make()
        step()
        cupy.launch_log = []
        before = cupy.launches
        step()
        n = cupy.launches - before
        sites = collections.Counter()
        for kernel, site in cupy.launch_log:
            sites[f"{os.path.relpath(site, root) if site != '?' else site} {kernel}"] += 1
        cupy.launch_log = None
        print(f"{name}: {n} launches per step")
        for site, k in sites.most_common(args.top):
            print(f"  {k:4d}  {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
