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


def timed_pair(step_a, sync_a, step_b, sync_b, rounds=8, per_round=5, warmup=5):
    """Median seconds per step of two steps measured in alternating rounds, so that a drift of
    the machine (GPU clocks ramping, a noisy neighbour) falls on both alike."""
    for _ in range(warmup):
        step_a()
        step_b()
    sync_a()
    sync_b()
    samples_a, samples_b = [], []
    for _ in range(rounds):
        for step, sync, samples in ((step_a, sync_a, samples_a), (step_b, sync_b, samples_b)):
            for _ in range(per_round):
                t0 = time.perf_counter()
                step()
                sync()
                samples.append(time.perf_counter() - t0)
    return statistics.median(samples_a), statistics.median(samples_b)


def warm_up_gpu(seconds=1.0):
    """Bring the GPU's clocks up from idle before anything is timed."""
    import cupy as cp

    a = cp.ones((4096, 4096), cp.float32)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ a
        cp.cuda.Device().synchronize()


def host_time(step, sync, repeats=20):
    """Seconds per step to queue the work (no waiting): near the step time = launch-bound."""
    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    t = time.perf_counter() - t0
    sync()
    return t / repeats


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


def _tests_summary(junit: str | None) -> str:
    """"N passed, M skipped, K failed in S s" from pytest's junit report."""
    if not junit or not os.path.exists(junit):
        return "not run"
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, skipped = int(suite.get("tests")), int(suite.get("skipped"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    return (f"{n - skipped - failed} passed, {skipped} skipped, {failed} failed "
            f"in {float(suite.get('time')):.1f} s")


CASES = [
    ("MLP step, batch 256, 784-512-512-10",
     lambda T: mlp_step(T, "cuda", 256, (784, 512, 512, 10)), 1.3),
    ("MLP step, batch 4096, 4096-4096-4096-10",
     lambda T: mlp_step(T, "cuda", 4096, (4096, 4096, 4096, 10)), 1.05),
    ("CNN step (W4 net), batch 256", lambda T: cnn_step(T, "cuda", 256), 1.3),
    ("CNN step (W4 net), batch 32", lambda T: cnn_step(T, "cuda", 32), None),
    ("tiny-op chain, per op (fwd+bwd)", lambda T: tiny_chain(T, "cuda"), 1.0),
]


def _unfused_times() -> dict:
    """chainrule's step times with CHAINRULE_FUSED_KERNELS=0, from a second process."""
    import json

    env = {**os.environ, "CHAINRULE_FUSED_KERNELS": "0"}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--chainrule-times"],
                          capture_output=True, text=True, env=env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print("fused-off run failed:", proc.stderr[-2000:])
        return {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--junit", metavar="FILE", help="pytest's junit report of "
                    "tests/test_cuda.py (bench/gpu_check.sh runs the tests first); without it "
                    "the tests run here")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--chainrule-times", action="store_true",
                    help="print chainrule's step times as JSON and exit (for the fused-off run)")
    args = ap.parse_args()
    import chainrule as cr

    if args.chainrule_times:
        import json

        warm_up_gpu()
        print(json.dumps({name: timed(make(cr), cr.cuda.synchronize)
                          for name, make, _ in CASES}))
        return 0

    if not cr.cuda.is_available():
        print("no GPU: CuPy with an NVIDIA GPU is needed for the GPU check")
        return 1
    if not (args.junit or args.skip_tests):
        args.junit = os.path.join(os.path.dirname(HERE), "out", "gpu_junit.xml")
        subprocess.run([sys.executable, "-m", "pytest", "tests/test_cuda.py",
                        f"--junitxml={args.junit}"], cwd=os.path.dirname(HERE))
    summary = _tests_summary(args.junit)
    import torch

    rows = []
    cases = CASES
    unfused = _unfused_times()
    warm_up_gpu()
    for name, make, goal in cases:
        scale = 1 / 75 if "tiny" in name else 1.0
        try:
            t_cr, t_th = timed_pair(make(cr), cr.cuda.synchronize, make(torch),
                                    torch.cuda.synchronize)
        except Exception as e:  # report and go on: one broken row must not hide the others
            import traceback

            traceback.print_exc()
            rows.append(f"| {name} | error: {type(e).__name__}: {str(e)[:80]} | | | | | no |")
            continue
        print(f"  {name}: host time per chainrule step, queued without waiting: "
              f"{host_time(make(cr), cr.cuda.synchronize) * 1e3 * scale:.3f} ms", flush=True)
        ratio = t_cr / t_th
        met = "" if goal is None else ("yes" if ratio <= goal else "no")
        t_un = unfused.get(name)
        un = "" if t_un is None else f"{t_un * 1e3 * scale:.3f}"
        rows.append(f"| {name} | {t_cr * 1e3 * scale:.3f} | {un} | {t_th * 1e3 * scale:.3f} | "
                    f"{ratio:.2f} | {'' if goal is None else f'≤ {goal}'} | {met} |")
        print(rows[-1], flush=True)
    t_raw = timed(raw_cupy_op(), cr.cuda.synchronize) / 75
    card = cr.cuda.get_device_name()
    import cupy

    body = (f"## GPU ({card})\n\nCommand: `make gpu-check` (`bench/gpu_check.sh`): CuPy "
            f"{cupy.__version__}, PyTorch {torch.__version__} (CUDA eager, TF32 off in both); "
            f"after 1 s of GPU warm-up, each library's median of 40 synchronized steps, taken "
            "in 8 alternating rounds of 5 (after 5 warm-up steps each), one process. The "
            "fused-off column comes from a second process with `CHAINRULE_FUSED_KERNELS=0`."
            "\n\n"
            f"CUDA tests (`tests/test_cuda.py`): {summary}\n\n"
            "| workload | chainrule ms | chainrule, fused kernels off ms | torch ms | ratio | goal "
            "| met |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
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
