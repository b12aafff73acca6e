"""chainrule's benchmark suite: every workload for every library, side by side in one run.

Each (library, workload) runs in a fresh process, rounds are interleaved (the library order
rotates each round), everything is single-threaded (``--threads default``: no thread variables
set, each library at its own default thread count), and the reported number is the median over
rounds of each process's median. The first step's loss must agree across libraries, so a fast
wrong answer cannot win. Results go to a markdown table (``--write BENCHMARKS.md`` replaces the
section between ``<!-- core:start -->`` and ``<!-- core:end -->``).

    python bench/run.py [--rounds 5] [--workloads W1,W2,...] [--libs chainrule,torch,...]
                        [--threads 1|default] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# workload -> (repeats per process, unit, scale to unit, ops per step or None, goal ratio)
SPEC = {
    "W1": (3, "ms/step", 1e3, None, 0.5),
    "W2": (20, "µs/op", 1e6 / 1000, None, 0.5),
    "W3": (20, "ms/step", 1e3, None, 1.0),
    "W3-raw": (20, "ms/step", 1e3, None, 1.0),
    "W4": (20, "ms/step", 1e3, None, 1.0),
    "W4-mnist": (5, "ms/step", 1e3, None, 1.0),
    "W5-10k": (5, "µs/op", 1e6 / 10_000, None, 0.5),
    "W5-100k": (2, "µs/op", 1e6 / 100_000, None, 0.5),
    "W5-1M": (1, "µs/op", 1e6 / 1_000_000, None, None),
    "W6": (1, "MiB peak", 1.0, None, 1.0),
    "W7-LSTM": (5, "ms/step", 1e3, None, 1.0),
    "W7-transformer": (5, "ms/step", 1e3, None, 1.0),
}
TITLES = {
    "W1": "W1 scalar circuit: moons 2-16-16-1 tanh MLP as 0-d ops, fwd+bwd",
    "W2": "W2 1000 elementwise ops on (8,8) float64 (exp, +c, ×c, tanh), fwd+bwd",
    "W3": "W3 MLP step, batch 256, 784-512-256-10, CE, SGD",
    "W3-raw": "W3 as the lecture writes it: raw tensors, relu(X @ W + b), hand-written SGD",
    "W4": "W4 CNN step, batch 32, conv(8)-pool-conv(16)-pool-linear",
    "W4-mnist": "W4 pytorch/examples' MNIST CNN (conv 32, conv 64, 9216-128-10), batch 64, "
                "Adadelta",
    "W5-10k": "W5 chain of 10k scalar ops, build+bwd",
    "W5-100k": "W5 chain of 100k scalar ops, build+bwd",
    "W5-1M": "W5 chain of 1M scalar ops, build+bwd",
    "W6": "W6 peak memory of the W3 step at batch 1024 (above baseline)",
    "W7-LSTM": "W7 2-layer LSTM (h=128), seq 32, batch 32, step",
    "W7-transformer": "W7 transformer block (d=128, 4 heads), seq 64, batch 16, step",
}
LIBS = ["chainrule", "chainrule-python", "chainrule-openblas", "torch", "numpy", "autograd",
        "mygrad", "micrograd"]
GEMM_WORKLOADS = {"W3", "W3-raw", "W4", "W4-mnist", "W6", "W7-LSTM", "W7-transformer"}
# chainrule run another way: (environment, the workloads it runs on; None: all)
VARIANTS = {
    # the pure-Python engine: the reference the C engine mirrors
    "chainrule-python": ({"CHAINRULE_PURE_PYTHON": "1"}, None),
    # without the optional MKL GEMMs, on the workloads with matrix products (the others never
    # touch BLAS)
    "chainrule-openblas": ({"CHAINRULE_BLAS": "numpy"}, GEMM_WORKLOADS),
    # at more than one thread: products and row loops on chainrule's own thread pool, OpenBLAS
    # on one thread (kernels/openblas.py)
    "chainrule-pool": ({"CHAINRULE_POOL": "1"}, None),
}
OPENBLAS = "chainrule-openblas"
ONE_ROUND = {"W5-1M"}  # long: a single round is enough to show linearity


THREADS = ["1"]  # "1", or "default": no thread variables set (each library's own default)


def run_one(lib: str, workload: str, repeats: int) -> dict:
    args = [sys.executable, os.path.join(HERE, "run_one.py"),
            "chainrule" if lib in VARIANTS else lib,
            "W3" if workload == "W6" else workload, str(repeats)]
    if workload == "W6":
        args.append("--memory")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if THREADS[0] == "default":
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.pop(var)
        env["BENCH_THREADS"] = "default"
    if lib in VARIANTS:
        env.update(VARIANTS[lib][0])
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"lib": lib, "workload": workload,
                "error": f"crashed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}


def collect(workloads: list, libs: list, rounds: int) -> dict:
    results: dict = {}
    for r in range(rounds):
        order = libs[r % len(libs):] + libs[: r % len(libs)]
        for w in workloads:
            if r > 0 and w in ONE_ROUND:
                continue
            for lib in order:
                if lib in VARIANTS and VARIANTS[lib][1] is not None and w not in VARIANTS[lib][1]:
                    continue
                prev = results.get((w, lib))
                if prev and "error" in prev:
                    continue
                res = run_one(lib, w, SPEC[w][0])
                entry = results.setdefault((w, lib), {"values": [], "checks": []})
                if "error" in res:
                    results[(w, lib)] = {"error": res["error"]}
                    continue
                scale = SPEC[w][2]
                value = res["peak_mib"] if w == "W6" else statistics.median(res["times"]) * scale
                entry["values"].append(value)
                entry["checks"].append(res["check"])
                print(f"round {r + 1}/{rounds} {w:15s} {lib:10s} {value:10.3f} {SPEC[w][1]}",
                      file=sys.stderr, flush=True)
    return results


def agreement(results: dict, w: str) -> str:
    checks = {lib: e["checks"][0] for (wl, lib), e in results.items()
              if wl == w and "checks" in e and e["checks"] and lib != "micrograd"}
    if len(checks) < 2:
        return "—"
    ref = checks.get("torch", next(iter(checks.values())))
    scale = abs(ref) if ref else 1e-12  # relative: W2's answer is ~1e-58
    worst = max(abs(v - ref) / scale for v in checks.values())
    return "yes" if worst < 1e-3 else f"NO (rel. diff {worst:.1e})"


def fmt(e: dict | None) -> str:
    if e is None:
        return "—"
    if "error" in e:
        if e["error"].startswith("not implemented"):
            return "n/a"
        return e["error"].split(":")[0] if "not installed" in e["error"] else e["error"][:40]
    v = statistics.median(e["values"])
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def versions() -> str:
    out = []
    for mod in ("numpy", "torch"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    out.append("chainrule's matrix products: " + blas_used())
    code = "import chainrule, chainrule._compiled as c; print(c.engine_compiled())"
    c = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    out.append("chainrule's engine: " + ("compiled (Cython)" if c.stdout.strip() == "True"
                                         else "pure Python (not compiled)"))
    return ", ".join(out)


def blas_used() -> str:
    """Which BLAS the `chainrule` column's matrix products ran on, in this run's threads."""
    code = ("import numpy, chainrule; from chainrule.kernels import mkl, openblas; "
            "cfg = numpy.show_config(mode='dicts')['Build Dependencies']['blas']; "
            "print(mkl.backend_name().split(' (')[0] + ('+pool' if openblas.state['on'] else ''),"
            " cfg['name'], cfg.get('version', ''))")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if THREADS[0] == "default":
        env.pop("OMP_NUM_THREADS")
        env.pop("MKL_NUM_THREADS")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    parts = p.stdout.split()
    if len(parts) < 2:
        return "unknown"
    numpy_blas = f"NumPy's {parts[1]} {' '.join(parts[2:])}".strip()
    if parts[0] == "mkl":
        return f"MKL (the optional `mkl` extra; other BLAS calls: {numpy_blas})"
    if parts[0].endswith("+pool"):
        return (numpy_blas + " on one thread, large products split over chainrule's own thread "
                "pool (the default install: no `mkl` extra)")
    return numpy_blas + " (the default install: no `mkl` extra)"


def table(results: dict, workloads: list, libs: list) -> str:
    variants = [lib for lib in VARIANTS if lib in libs]
    extra = [f"{lib} / torch" for lib in variants]
    head = (["workload", "unit"] + libs + ["chainrule / torch"] + extra
            + ["goal", "met", "answers agree"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in workloads:
        row = [TITLES[w], SPEC[w][1]] + [fmt(results.get((w, lib))) for lib in libs]
        r = _ratio(results, w, "chainrule")
        goal = SPEC[w][4]
        met = "—" if goal is None or r is None else (
            "yes" if r <= goal else f"no (by {r / goal:.2f}×)")
        row.append("—" if r is None else f"{r:.2f}")
        for lib in variants:
            r_v = _ratio(results, w, lib)
            row.append("—" if r_v is None else f"{r_v:.2f}")
        row += ["—" if goal is None else f"≤ {goal}", met, agreement(results, w)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _ratio(results: dict, w: str, lib: str) -> float | None:
    """Median of ``lib`` over median of torch on workload ``w``, or None."""
    mine, th = results.get((w, lib)), results.get((w, "torch"))
    if mine and th and mine.get("values") and th.get("values"):
        return statistics.median(mine["values"]) / statistics.median(th["values"])
    return None




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(SPEC))
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--write", metavar="FILE")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: each process's CPU time (steadier where other jobs share the "
                         "machine; with one thread only)")
    ap.add_argument("--threads", choices=["1", "default"], default="1",
                    help="1 (every library on one thread) or default (no thread variables "
                         "set: each library's own default; written to the core-threads section)")
    args = ap.parse_args()
    THREADS[0] = args.threads
    if args.clock == "cpu":
        if args.threads != "1":
            ap.error("--clock cpu needs --threads 1 (CPU time adds up the threads)")
        os.environ["BENCH_CLOCK"] = "cpu"
    workloads = [w for w in args.workloads.split(",") if w]
    libs = [lib for lib in args.libs.split(",") if lib]
    unknown = [w for w in workloads if w not in SPEC]
    if unknown:
        ap.error(f"unknown workloads {unknown}; choose from {list(SPEC)}")
    results = collect(workloads, libs, args.rounds)
    cmd = "python bench/run.py " + " ".join(sys.argv[1:])
    threads = ("One thread per library" if args.threads == "1" else
               f"Default thread counts (no OMP/OPENBLAS/MKL_NUM_THREADS set: torch "
               f"{_torch_threads()} threads, NumPy's BLAS all {os.cpu_count()} cores)")
    title = "Core workloads (CPU)" + ("" if args.threads == "1" else ", default threads")
    body = (
        f"## {title}\n\nMeasured {datetime.date.today()} on {machine()}; "
        f"{versions()}. Command: `{cmd}`. {threads}, "
        f"{'CPU time, ' if args.clock == 'cpu' else ''}each library in a fresh "
        f"process per round, {args.rounds} interleaved rounds, medians. Lower is better; the "
        f"ratio column is chainrule's time divided by PyTorch's in the same run; "
        f"`chainrule-python` is chainrule with `CHAINRULE_PURE_PYTHON=1` (its pure-Python "
        f"engine, the reference the C engine mirrors); `{OPENBLAS}` is chainrule with "
        f"`CHAINRULE_BLAS=numpy` (no MKL), run on the workloads with matrix products.\n\n"
        + table(results, workloads, libs)
    )
    print(body)
    if args.write:
        sys.path.insert(0, HERE)
        import sections

        name = "core" if args.threads == "1" else "core-threads"
        sections.write_section(args.write, name, body, after="<!-- core:end -->")


def _torch_threads() -> str:
    code = "import torch; print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return p.stdout.strip() or "?"


if __name__ == "__main__":
    main()
