"""Cost of anomaly detection: an MLP training step under detect_anomaly vs a plain step.

    python bench/bench_anomaly.py                       # print a markdown table
    python bench/bench_anomaly.py --write BENCHMARKS.md  # also replace our section of that file

chainrule and PyTorch side by side (the goal: chainrule's anomaly step ≤ 1.5× its plain step).
Only the text between ``<!-- anomaly:start -->`` and ``<!-- anomaly:end -->`` is rewritten; the
markers are appended to the file if missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread for both frameworks: a fair, quiet run

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sections  # noqa: E402

START, END = sections.markers("anomaly")
BATCH, SIZES = 64, (64, 128, 128, 10)
REPEATS = [5]


def _time_pair(plain, anomaly, steps: int, repeats: int) -> tuple[float, float]:
    """Best seconds per step of each, timing the two alternately (so load affects both)."""
    for _ in range(3):
        plain()
        anomaly()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, step in enumerate((plain, anomaly)):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    return best[0], best[1]


def chainrule_steps():
    import chainrule as cr
    import chainrule.nn as nn
    import chainrule.nn.functional as F

    cr.manual_seed(0)
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    opt = cr.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = cr.tensor(rng.integers(0, SIZES[-1], BATCH))

    def plain():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def anomaly():
        with cr.autograd.detect_anomaly():
            plain()

    return plain, anomaly


def torch_steps():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = torch.tensor(rng.integers(0, SIZES[-1], BATCH))

    def plain():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def anomaly():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that anomaly mode is slow
            with torch.autograd.detect_anomaly():
                plain()

    return plain, anomaly


def measure(steps: int, repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    rows.append(("chainrule", *_time_pair(*chainrule_steps(), steps, repeats)))
    try:
        pair = torch_steps()
    except ImportError:
        return rows
    rows.append(("torch (CPU, 1 thread)", *_time_pair(*pair, steps, repeats)))
    return rows


def table(rows) -> str:
    mlp = " → ".join(map(str, SIZES))
    lines = [
        f"### Anomaly detection overhead (MLP {mlp}, batch {BATCH}, SGD step)",
        "",
        "| framework | plain step | under detect_anomaly() | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, plain, anom in rows:
        lines.append(f"| {name} | {plain * 1e3:.3f} ms | {anom * 1e3:.3f} ms | "
                     f"{anom / plain:.2f}× |")
    lines += ["", f"Best of {REPEATS[0]} alternating runs per mode; Python "
              f"{platform.python_version()}, NumPy {np.__version__}, {platform.machine()}. "
              "Goal: chainrule ≤ 1.5×. Reproduce with "
              "`python bench/bench_anomaly.py`."]
    return "\n".join(lines)


def write_section(path: str, body: str) -> None:
    """Replace only the text between the anomaly markers (append the markers if missing)."""
    sections.write_section(path, "anomaly", body)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write it into a markdown file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", metavar="FILE", help="replace the anomaly section of FILE")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    REPEATS[0] = args.repeats
    body = table(measure(args.steps, args.repeats))
    print(body)
    if args.write:
        write_section(args.write, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
