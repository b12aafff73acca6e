"""One prepared GPU check (`make gpu-check`): the CUDA tests, then the GPU benchmark vs PyTorch.

Designed to finish in a few minutes on an H100/H200. Prints the test summary and a markdown
table; with --write BENCHMARKS.md replaces the section between <!-- gpu:start --> and
<!-- gpu:end -->.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(step, sync, repeats=30, warmup=5):
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mlp_step(T, device, batch, sizes):
    rng = np.random.default_rng(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(T.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(T.nn.ReLU())
    model = T.nn.Sequential(*layers).to(device)
    opt = T.optim.SGD(model.parameters(), lr=0.01)
    x = T.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32)).to(device)
    y = T.tensor(rng.integers(0, sizes[-1], batch)).to(device)

    def step():
        opt.zero_grad()
        loss = T.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def tiny_chain(T, device):
    x0 = T.tensor(np.ones((8, 8), np.float32)).to(device)

    def step():
        x = x0.clone().requires_grad_(True)
        h = x
        for _ in range(25):
            h = (h.exp() * 0.5).tanh()
        h.sum().backward()
    return step


def cnn_step(T, device, batch):
    nn = T.nn
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 10)).to(device)
    opt = T.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = T.tensor(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)).to(device)
    y = T.tensor(rng.integers(0, 10, batch)).to(device)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def raw_cupy_op():
    """Reference: one tiny CuPy elementwise op (launch cost alone)."""
    import cupy as cp

    x = cp.ones((8, 8), cp.float32)

    def step():
        for _ in range(75):
            cp.exp(x)
    return step


def _tests_summary(log: str | None) -> str:
    if not log or not os.path.exists(log):
        return "not run"
    lines = [ln.strip() for ln in open(log).read().splitlines() if ln.strip()]
    done = [ln for ln in lines if (" passed" in ln or " failed" in ln) and " in " in ln]
    return done[-1].strip("= ") if done else (lines[-1] if lines else "no output")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--tests-log", metavar="FILE", help="pytest log of tests/test_cuda.py "
                    "(bench/gpu_check.sh runs the tests first); without it the tests run here")
    ap.add_argument("--skip-tests", action="store_true")
    args = ap.parse_args()
    import chainrule as cr

    if not cr.cuda.is_available():
        print("no GPU: CuPy with an NVIDIA GPU is needed for the GPU check")
        return 1
    if args.tests_log or args.skip_tests:
        summary = _tests_summary(args.tests_log)
    else:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py"],
                              capture_output=True, text=True, cwd=os.path.dirname(HERE))
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
        print(proc.stdout[-3000:])
    import torch

    rows = []
    cases = [
        ("MLP step, batch 256, 784-512-512-10", lambda T: mlp_step(T, "cuda", 256,
                                                                   (784, 512, 512, 10)), 1.3),
        ("MLP step, batch 4096, 4096-4096-4096-10", lambda T: mlp_step(
            T, "cuda", 4096, (4096, 4096, 4096, 10)), 1.05),
        ("CNN step (W4 net), batch 256", lambda T: cnn_step(T, "cuda", 256), 1.3),
        ("CNN step (W4 net), batch 32", lambda T: cnn_step(T, "cuda", 32), None),
        ("tiny-op chain, per op (fwd+bwd)", lambda T: tiny_chain(T, "cuda"), 1.0),
    ]
    for name, make, goal in cases:
        scale = 1 / 75 if "tiny" in name else 1.0
        try:
            t_cr = timed(make(cr), cr.cuda.synchronize)
        except Exception as e:  # report and go on: one broken row must not hide the others
            import traceback

            traceback.print_exc()
            rows.append(f"| {name} | error: {type(e).__name__}: {str(e)[:80]} | | | | no |")
            continue
        t_th = timed(make(torch), torch.cuda.synchronize)
        ratio = t_cr / t_th
        met = "" if goal is None else ("yes" if ratio <= goal else "no")
        rows.append(f"| {name} | {t_cr * 1e3 * scale:.3f} | {t_th * 1e3 * scale:.3f} | "
                    f"{ratio:.2f} | {'' if goal is None else f'≤ {goal}'} | {met} |")
        print(rows[-1], flush=True)
    t_raw = timed(raw_cupy_op(), cr.cuda.synchronize) / 75
    card = cr.cuda.get_device_name()
    import cupy

    body = (f"## GPU ({card})\n\nCommand: `make gpu-check` (`bench/gpu_check.sh`): CuPy "
            f"{cupy.__version__}, PyTorch {torch.__version__} (CUDA eager, TF32 off in both), "
            f"median of 30 steps after 5 warm-ups, one process.\n\n"
            f"CUDA tests (`tests/test_cuda.py`): {summary}\n\n"
            "| workload | chainrule ms | torch ms | ratio | goal | met |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) +
            f"\n\nFor scale: one raw `cupy.exp` on an 8×8 array takes {t_raw * 1e3:.4f} ms "
            "(forward only, no autograd).")
    print(body)
    if args.write:
        sys.path.insert(0, HERE)
        import sections

        sections.write_section(args.write, "gpu", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
