"""Data parallelism on 2 processes (loopback, one thread each): chainrule.distributed and DDP.

    python bench/bench_distributed.py                       # print the tables
    python bench/bench_distributed.py --write BENCHMARKS.md  # also replace our section there

Runs itself under ``chainrule launch --nproc-per-node 2``. Measured:
- scaling efficiency on W7's transformer block (16 samples per process per step): global
  samples/s on 2 processes ÷ (2 × one process's, run on rank 0 while rank 1 sleeps),
  chainrule and torch (goal ≥ 90%);
- ``dist.all_reduce`` of 1, 16 and 256 MiB float32 against raw mpi4py ``Allreduce`` on the same
  buffers (goal ≤ 1.2×);
- overlap: a DDP step ÷ the same step without communication, both on 2 processes at once;
- chainrule's DDP step against torch.distributed (gloo) + torch's DDP, same workload, same
  processes (goal ≤ 1.0×).
Each figure is the best of several rounds (a round: the slowest rank's mean over a few steps),
the variants interleaved round by round so the machine's load hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
import sections  # noqa: E402

SIZES_MIB = (1, 16, 256)


# ---- on every rank ------------------------------------------------------------------------
def _best(fns: dict, steps: int, rounds: int, comm, solo: tuple = ()) -> dict:
    """Per name: the best over ``rounds`` of the slowest rank's mean seconds per call. The
    names in ``solo`` run on rank 0 alone while the other ranks sleep (the 1-process
    baseline, measured in the same rounds as the rest, so under the same machine load)."""
    import numpy as np
    from mpi4py import MPI

    rank = comm.Get_rank()
    for name, fn in fns.items():  # warm up (allocations, BLAS, first buckets)
        if name not in solo or rank == 0:
            fn()
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            comm.Barrier()
            t0 = time.perf_counter()
            if name in solo and rank != 0:
                done = comm.Ibarrier()
                while not done.Test():
                    time.sleep(0.002)
            else:
                for _ in range(steps):
                    fn()
                if name in solo:
                    comm.Ibarrier().Wait()
            dt = np.array([(time.perf_counter() - t0) / steps if rank == 0 or name not in solo
                           else 0.0])
            comm.Allreduce(MPI.IN_PLACE, dt, MPI.MAX)
            best[name] = min(best[name], float(dt[0]))
    return best


def _steps(lib: str, ddp: bool):
    """W7's SGD step on ``lib``, its model wrapped in the library's DDP when ``ddp``."""
    from workloads import _sgd_step, w7_transformer_parts

    T, block, x, target = w7_transformer_parts(lib)
    model = block
    if ddp:
        model = T.nn.parallel.DistributedDataParallel(block)
    return _sgd_step(T, model, lambda: ((model(x) - target) ** 2).mean())


def worker(out: str, steps: int, rounds: int) -> None:
    import numpy as np
    import torch
    import torch.distributed as tdist
    from mpi4py import MPI

    import chainrule as cr
    import chainrule.distributed as dist

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    world = comm.Get_size()
    mpi = MPI.Get_library_version().replace("\x00", "").split(",")[0].strip()  # "Open MPI v5.0.11"
    res: dict = {"world": world, "mpi": mpi,
                 "load": os.getloadavg()[0]}
    if world == 2:
        dist.init_process_group("mpi")
        tdist.init_process_group("gloo")
        fns = {"chainrule_ddp": _steps("chainrule", True), "torch_ddp": _steps("torch", True),
               "chainrule_local": _steps("chainrule", False), "torch_local": _steps("torch", False),
               "chainrule_one": _steps("chainrule", False), "torch_one": _steps("torch", False)}
        res["losses"] = {k: fns[k]() for k in ("chainrule_ddp", "torch_ddp")}
        res["step"] = _best(fns, steps, rounds, comm, solo=("chainrule_one", "torch_one"))
        res["allreduce"] = {}
        for mib in SIZES_MIB:
            a = np.zeros(mib * (1 << 20) // 4, np.float32)
            t = cr.from_numpy(a)
            fns = {"chainrule": lambda t=t: dist.all_reduce(t),
                   "mpi4py": lambda a=a: comm.Allreduce(MPI.IN_PLACE, a, MPI.SUM)}
            res["allreduce"][mib] = _best(fns, max(1, 64 // mib), max(3, rounds // 2), comm)
            del a, t, fns
        tdist.destroy_process_group()
        dist.destroy_process_group()
    if comm.Get_rank() == 0:
        with open(out, "w") as f:
            json.dump(res, f)


# ---- the driver -----------------------------------------------------------------------------
def _launch(n: int, steps: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "chainrule", "launch", "--nproc-per-node", str(n),
               os.path.abspath(__file__), "--worker", out, "--steps", str(steps), "--rounds",
               str(rounds)]
        env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run(cmd, check=True, env=env)
        with open(out) as f:
            return json.load(f)


def table(two: dict) -> str:
    from run import machine, versions

    s2 = two["step"]
    s1 = {lib: s2[f"{lib}_one"] for lib in ("chainrule", "torch")}
    eff = {lib: s1[lib] / s2[f"{lib}_ddp"] for lib in ("chainrule", "torch")}
    overlap = {lib: s2[f"{lib}_ddp"] / s2[f"{lib}_local"] for lib in ("chainrule", "torch")}
    ceiling = {lib: s1[lib] / s2[f"{lib}_local"] for lib in ("chainrule", "torch")}
    ratio = s2["chainrule_ddp"] / s2["torch_ddp"]
    losses = two["losses"]
    agree = abs(losses["chainrule_ddp"] - losses["torch_ddp"]) <= 1e-4 * abs(losses["torch_ddp"])

    def ms(v: float) -> str:
        return f"{1e3 * v:.3g}" if v < 1 else f"{1e3 * v:.0f}"

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "## Data parallelism: chainrule.distributed on 2 processes (CPU, loopback)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {versions()}; "
        f"{two['mpi']} through mpi4py; torch.distributed on gloo. Command: "
        "`python bench/bench_distributed.py --write BENCHMARKS.md` (it starts itself with "
        "`chainrule launch --nproc-per-node 2`, one BLAS thread per process; the 1-process "
        "baseline runs on rank 0 while rank 1 sleeps, in the same rounds as the rest). "
        f"Load average when it started: {two['load']:.1f} (other jobs share this machine). "
        "Workload: W7's transformer block (d=128, 4 heads, MLP 512), 16 samples of 64 tokens "
        "per process per step, SGD. Every figure: the best of several interleaved rounds of the "
        "slowest rank's mean.",
        "",
        "| measure | chainrule | torch | goal | met |",
        "|---|---|---|---|---|",
        f"| step on 1 process alone (no DDP), ms | {ms(s1['chainrule'])} | {ms(s1['torch'])} "
        "| — | — |",
        f"| DDP step on 2 processes, ms | {ms(s2['chainrule_ddp'])} | {ms(s2['torch_ddp'])} | "
        f"chainrule ≤ 1.0× torch (here {ratio:.2f}×) | {yes(ratio <= 1.0)} |",
        f"| scaling efficiency: 2-process samples/s ÷ (2 × 1-process) | "
        f"{100 * eff['chainrule']:.0f}% | {100 * eff['torch']:.0f}% | ≥ 90% | "
        f"{yes(eff['chainrule'] >= 0.9)} |",
        f"| same step on 2 processes without communication, ms | {ms(s2['chainrule_local'])} | "
        f"{ms(s2['torch_local'])} | — | — |",
        f"| the machine's ceiling: scaling efficiency without communication | "
        f"{100 * ceiling['chainrule']:.0f}% | {100 * ceiling['torch']:.0f}% | — | — |",
        f"| overlap: DDP step ÷ step without communication | {overlap['chainrule']:.2f} | "
        f"{overlap['torch']:.2f} | — | — |",
        f"| first DDP loss (the answers agree) | {losses['chainrule_ddp']:.6g} | "
        f"{losses['torch_ddp']:.6g} | equal to 1e-4 | {yes(agree)} |",
        "",
        "| all-reduce, float32, 2 processes | `dist.all_reduce` ms | raw mpi4py `Allreduce` ms "
        "| ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for mib, r in two["allreduce"].items():
        q = r["chainrule"] / r["mpi4py"]
        lines.append(f"| {mib} MiB | {ms(r['chainrule'])} | {ms(r['mpi4py'])} | {q:.2f} | "
                     f"≤ 1.2 | {yes(q <= 1.2)} |")
    lines += [
        "",
        "On this 2-core machine the two ranks use both cores, so anything else running on the "
        "machine lowers the scaling efficiency; the ceiling row shows how far two processes "
        "that never communicate get, and the overlap row what DDP adds to that. "
        "`dist.all_reduce` adds an all-gather of one number before each call (a hash of the "
        "call's shapes and dtypes: every rank checks that the others pass the same) and "
        "otherwise calls MPI's own `Allreduce`. "
        "DDP's gradients go in buckets (1 MiB first, then 25 MiB, as torch) whose non-blocking "
        "all-reduces start from the parameters' post-accumulate-grad hooks while the backward "
        "goes on; W7's block (0.8 MB of gradients) fits one bucket in both libraries.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", metavar="FILE", help="replace the distributed section of FILE")
    p.add_argument("--steps", type=int, default=10, help="steps per round (default 10)")
    p.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.rounds)
        return 0
    body = table(_launch(2, args.steps, args.rounds))
    print(body)
    if args.write:
        sections.write_section(args.write, "distributed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
