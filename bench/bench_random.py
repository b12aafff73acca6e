"""Drawing random numbers: chainrule's PyTorch-identical streams against PyTorch itself.

    python bench/bench_random.py                       # print a markdown table
    python bench/bench_random.py --write BENCHMARKS.md  # also replace our section of that file

10M float32 normals (``randn``), 10M float32 uniforms (``rand``) and ``randperm(1_000_000)``,
each from a generator seeded the same way in both libraries; every result is checked to be
bit-identical to PyTorch's before it is timed. Goal: chainrule ≤ 2× PyTorch. A third column
times chainrule without its optional C loops (``chainrule._crandom``), the NumPy/``math``
fallback that installs without a C compiler run. Only the text between
``<!-- random:start -->`` and ``<!-- random:end -->`` is rewritten.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread for both frameworks: a fair, quiet run

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sections  # noqa: E402

N, PERM = 10_000_000, 1_000_000
CASES = (  # (label, call with module m and generator g)
    (f"randn({N // 1_000_000}M) float32", lambda m, g: m.randn(N, generator=g)),
    (f"rand({N // 1_000_000}M) float32", lambda m, g: m.rand(N, generator=g)),
    (f"randperm({PERM:_})", lambda m, g: m.randperm(PERM, generator=g)),
)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(repeats: int) -> list[tuple[str, float, float | None, float]]:
    """(case, chainrule s, torch s or None, chainrule-without-C s) per case."""
    import chainrule as cr
    from chainrule import random as crandom

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rows = []
    for label, call in CASES:
        ours = call(cr, cr.Generator().manual_seed(0)).numpy()
        if torch is not None:
            theirs = call(torch, torch.Generator().manual_seed(0)).numpy()
            if not np.array_equal(ours, theirs):
                raise SystemExit(f"{label}: chainrule's numbers differ from torch's")
        t_cr, t_torch = float("inf"), float("inf")
        for _ in range(repeats):  # alternate, so load on the machine affects both alike
            t_cr = min(t_cr, _best(lambda c=call: c(cr, cr.Generator().manual_seed(0)), 1))
            if torch is not None:
                t_torch = min(t_torch, _best(
                    lambda c=call: c(torch, torch.Generator().manual_seed(0)), 1))
        c_loops, crandom._c = crandom._c, None
        try:
            fallback = call(cr, cr.Generator().manual_seed(0)).numpy()
            assert np.array_equal(fallback, ours), label
            t_py = _best(lambda c=call: c(cr, cr.Generator().manual_seed(0)), 2)
        finally:
            crandom._c = c_loops
        rows.append((label, t_cr, t_torch if torch is not None else None, t_py))
    return rows


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows, repeats: int) -> str:
    from chainrule import random as crandom

    lines = [
        "### Random numbers (PyTorch's CPU streams, bit for bit)",
        "",
        "| draw | chainrule | torch (CPU, 1 thread) | chainrule ÷ torch | without the C loops |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, ours, theirs, py in rows:
        ratio = f"{ours / theirs:.2f}×" if theirs else "–"
        theirs_s = f"{theirs * 1e3:.1f} ms" if theirs else "–"
        lines.append(f"| {label} | {ours * 1e3:.1f} ms | {theirs_s} | {ratio} | "
                     f"{py * 1e3:.0f} ms |")
    kernels = "AVX2 (polynomial log/sincos, fused multiply-adds)" if crandom.KERNELS == "avx2" \
        else "baseline (C library)"
    load = f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: the ratios, " \
        "timed alternately, are the result)" if hasattr(os, "getloadavg") else ""
    lines += ["", f"Best of {repeats} alternating runs, each from a freshly seeded generator; "
              f"every result equals PyTorch's bit for bit (checked first). {_cpu()}{load}, "
              f"PyTorch's {kernels} kernels; Python {platform.python_version()}, "
              f"NumPy {np.__version__}, one thread. Goal: chainrule ≤ 2× PyTorch. Reproduce "
              "with `python bench/bench_random.py`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write it into a markdown file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", metavar="FILE", help="replace the random section of FILE")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    body = table(measure(args.repeats), args.repeats)
    print(body)
    if args.write:
        sections.write_section(args.write, "random", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
