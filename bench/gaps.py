"""Where the time goes in the workloads (the "where the time goes" of BENCHMARKS.md).

    python bench/gaps.py [--write BENCHMARKS.md]

Measures, in this process, one thread: (1) W1 with Python's cyclic garbage collector on and off,
and the time of each GC generation during one step, and W5's cost per op at 10k/100k/1M with
and without the collector; (2) W2's per-op cost split into forward and backward against the
NumPy floor, with the C engine and the pure-Python one; (3) the share of matrix multiplies in
the W3 and W7-transformer steps (every gate timed by wrapping its forward/backward); (4) for
each training workload (``--workloads``), the top gates by time and the step's shares in GEMMs,
in the gates' other NumPy work, in the optimizer and in the engine's bookkeeping, next to
torch's step (``--only-breakdown``: just that table; :func:`breakdown` serves other scripts,
e.g. for real programs). Replaces
the section between ``<!-- gaps:start -->`` and ``<!-- gaps:end -->`` with --write.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import statistics
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import workloads  # noqa: E402
from part_timer import shares_row  # noqa: E402



def best(step, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def w1_gc() -> list:
    step = workloads.w1_scalar_mlp("chainrule")
    step()
    with_gc = best(step, 3)
    per_gen = {g: [0, 0.0] for g in range(3)}
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            per_gen[info["generation"]][0] += 1
            per_gen[info["generation"]][1] += time.perf_counter() - started[0]

    gc.callbacks.append(callback)
    step()
    gc.callbacks.remove(callback)
    gc.disable()
    try:
        without_gc = best(step, 3)
    finally:
        gc.enable()
    torch_step = workloads.w1_scalar_mlp("torch")
    torch_step()
    t_torch = best(torch_step, 3)
    gens = ", ".join(f"gen {g}: {n} collections, {dt * 1e3:.0f} ms" for g, (n, dt) in
                     per_gen.items())
    return [
        f"- **W1** (66k scalar gates per step): {with_gc * 1e3:.0f} ms with Python's cyclic GC, "
        f"{without_gc * 1e3:.0f} ms with `gc.disable()` (torch: {t_torch * 1e3:.0f} ms, so "
        f"{with_gc / t_torch:.2f}× vs {without_gc / t_torch:.2f}×). During one step: {gens}. "
        "The collector's full (generation 2) collections walk every live container, and a "
        "growing graph triggers them; PyTorch's graph lives in C++, out of the collector's "
        "sight. chainrule keeps it to one tracked object per gate (a gate's edges and output "
        "shape/dtype live in slots, not tuples; that took W1 from 0.71× to under 0.5×), and "
        "scalar (0-d) leaves enter binary gates as NumPy scalars, whose arithmetic costs a "
        "fraction of a ufunc call on a 0-d array. Scripts that build very large scalar graphs "
        "can still wrap the step in `gc.disable()`/`gc.enable()` (chainrule's graphs are "
        "acyclic and freed by reference counting); the library does not change the global "
        "collector setting for you.",
    ]


def w5_linearity() -> list:
    rows, per_op = [], []
    for n in (10_000, 100_000, 1_000_000):
        step = workloads.w5_chain("chainrule", n)
        with_gc = best(step, 1 if n == 1_000_000 else 3)
        gc.disable()
        try:
            without_gc = best(step, 1 if n == 1_000_000 else 3)
        finally:
            gc.enable()
        per_op.append((with_gc / n, without_gc / n))
        rows.append(f"{n:,} ops: {with_gc / n * 1e6:.2f} µs/op ({without_gc / n * 1e6:.2f} "
                    "without GC)")
    growth = per_op[-1][1] / per_op[0][1]
    return [
        "- **W5 linearity**: " + "; ".join(rows) + f". Without the collector the cost per op "
        f"changes by {growth:.2f}× from 10k to 1M ops (a 1M-op graph outgrows the caches); "
        "with it, the cyclic GC's full collections over the growing graph add the rest (see "
        "W1).",
    ]


def _w2_per_op() -> tuple:
    """(forward, backward) µs per op of W2 in this process."""
    import chainrule as cr

    x0 = np.random.default_rng(0).standard_normal((8, 8)) * 0.1  # float64, as W2
    n = workloads.W2_OPS
    fwd, bwd = [], []
    for _ in range(15):
        x = cr.tensor(x0, requires_grad=True)
        t0 = time.perf_counter()
        h = x
        for _ in range(n // 4):
            h = (h.exp() + 0.5) * 0.5
            h = h.tanh()
        loss = h.sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    return statistics.median(fwd) / n * 1e6, statistics.median(bwd) / n * 1e6


def w2_split() -> list:
    import json
    import subprocess

    from chainrule._compiled import engine_compiled

    n = workloads.W2_OPS
    f, b = _w2_per_op()
    code = "import json, gaps; print(json.dumps(gaps._w2_per_op()))"
    env = dict(os.environ, CHAINRULE_PURE_PYTHON="1")
    pure = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True,
                                     cwd=os.path.dirname(os.path.abspath(__file__))).stdout)
    floor = workloads.w2_elementwise("numpy")
    t_floor = best(floor, 15) / n * 1e6
    torch_step = workloads.w2_elementwise("torch")
    torch_step()
    t_torch = best(torch_step, 15) / n * 1e6
    engine = "the compiled engine" if engine_compiled() else "the pure-Python engine"
    return [
        f"- **W2** (tiny 8×8 ops), with {engine}: per op {f:.2f} µs forward + {b:.2f} µs "
        f"backward, against {t_floor:.2f} µs for the same NumPy calls without a graph and "
        f"{t_torch:.2f} µs in PyTorch; the graph's bookkeeping costs {f + b - t_floor:.2f} µs "
        f"per op. With `CHAINRULE_PURE_PYTHON=1` (the Python reference of the same engine): "
        f"{pure[0]:.2f} + {pure[1]:.2f} µs, bookkeeping {sum(pure) - t_floor:.2f} µs. What "
        "remains is the gates' own Python rules (each `forward`/`backward` is a Python "
        "function) and NumPy's per-call cost on tiny arrays.",
    ]


def gate_shares(make_step, label: str) -> str:
    from chainrule.autograd.function import Op

    totals: dict = collections.defaultdict(float)
    patched = []

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    def timed(fn, key):
        def run(ctx, *args):
            t0 = time.perf_counter()
            out = fn(ctx, *args)
            totals[key] += time.perf_counter() - t0
            return out
        return staticmethod(run)

    step = make_step("chainrule")
    for cls in set(subclasses(Op)):
        for name in ("forward", "backward"):
            fn = cls.__dict__.get(name)
            if isinstance(fn, staticmethod):
                patched.append((cls, name, fn))
                setattr(cls, name, timed(fn.__func__, cls.__name__))
    try:
        step()
        totals.clear()
        repeats = 10
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        total = (time.perf_counter() - t0) / repeats
    finally:
        for cls, name, fn in patched:
            setattr(cls, name, fn)
    gemm = sum(v for k, v in totals.items() if k in ("Linear", "MatMul")) / repeats
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:4]
    parts = ", ".join(f"{k} {v / repeats * 1e3:.2f} ms" for k, v in top)
    return (f"{label}: {total * 1e3:.2f} ms per step (timed gates), of which matrix-multiply "
            f"gates {gemm * 1e3:.2f} ms ({gemm / total:.0%}); largest gates: {parts}")


def gemm_gap() -> list:
    import torch

    from chainrule.kernels import mkl
    from chainrule.kernels.matmul import matmul

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 784)).astype(np.float32)
    w = rng.standard_normal((512, 784)).astype(np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    t_np = best(lambda: x @ w.T, 30)
    t_cr = best(lambda: matmul(x, w.T), 30)
    t_th = best(lambda: tx @ tw.T, 30)
    backend = mkl.backend_name().split(" (")[0]
    return [
        "- **W3 / W7** are matrix-multiply bound. "
        + gate_shares(workloads.w3_mlp, "W3") + ". "
        + gate_shares(workloads.w7_transformer, "Transformer block") + ". "
        f"The (256×784)·(784×512)ᵀ product of W3's first layer takes {t_np * 1e3:.2f} ms in "
        f"NumPy's OpenBLAS, {t_cr * 1e3:.2f} ms through chainrule's `kernels.matmul` (here: "
        f"{backend}) and {t_th * 1e3:.2f} ms in PyTorch. With the optional `mkl` extra "
        "chainrule's GEMMs run MKL's kernels, the ones PyTorch uses, "
        "so these rows come down to everything around the products (the `chainrule-openblas` "
        "column above shows the same steps on NumPy's BLAS). Around them, the C engine runs "
        "ReLU, layer norm, float32 GELU (y and dy/dx from one rational erf) and the LSTM's "
        "per-step elementwise work as one vectorized loop each, where NumPy needs several "
        "passes; SGD's plain step is one MKL `?axpy` per parameter.",
    ]


# ---- per workload: the top gates, and the step split into GEMMs, NumPy in gates, bookkeeping --
BREAKDOWN = ["W3", "W3-raw", "W4", "W4-mnist", "W7-LSTM", "W7-transformer"]
def breakdown(make_step, repeats: int = 10) -> dict:
    """Time one workload's step in this process, one thread, CPU time, by parts (see
    ``bench/part_timer.py``): ``make_step()`` returns a step function. Returns {"step", "gemm",
    "gates", "optimizer", "bookkeeping", "top": [(gate, seconds), ...]}, seconds per step."""
    from part_timer import PartTimer

    import chainrule  # noqa: F401  (its modules must be loaded for the timer to find them)

    timer = PartTimer()
    try:
        step = make_step()
        step()
        timer.reset()
        for _ in range(repeats):
            step()
        return timer.parts(repeats)
    finally:
        timer.remove()


def _torch_step_time(name: str, repeats: int = 10) -> float:
    step = workloads.WORKLOADS[name]("torch")
    step()
    t0 = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - t0) / repeats


def breakdowns(names: list) -> list:
    lines = ["- **Per workload** (CPU time per step, one thread; GEMM: the matrix products; "
             "NumPy in gates: the gates' own array work besides GEMMs; optimizer: its step "
             "besides GEMMs; bookkeeping: the rest — graph building and traversal, the ops' "
             "argument handling, the step's own Python):", ""]
    lines += ["| workload | chainrule ms | torch ms | ratio | GEMM | NumPy in gates | optimizer "
              "| bookkeeping | top gates (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        b = breakdown(lambda name=name: workloads.WORKLOADS[name]("chainrule"))
        row = shares_row(name, b, _torch_step_time(name))
        print(row, file=sys.stderr, flush=True)
        lines.append(row)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--only-breakdown", action="store_true",
                    help="only the per-workload table (W1/W2/W5/GEMM sections skipped)")
    ap.add_argument("--workloads", default=",".join(BREAKDOWN))
    args = ap.parse_args()
    if args.only_breakdown:
        print("\n".join(breakdowns(args.workloads.split(","))))
        return
    lines = ["## Where the time goes",
             "",
             "Command: `python bench/gaps.py --write BENCHMARKS.md` (one thread, same machine).",
             ""]
    lines += w1_gc() + w5_linearity() + w2_split() + gemm_gap()
    lines += [""] + breakdowns(args.workloads.split(","))
    body = "\n".join(lines)
    print(body)
    if args.write:
        import sections

        sections.write_section(args.write, "gaps", body, after=sections.markers("core")[1])


if __name__ == "__main__":
    main()
