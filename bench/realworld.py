"""Real PyTorch programs, unchanged, on chainrule: do they run, do the losses agree, how fast.

    python bench/realworld.py [--steps 20] [--programs nanogpt,mnist] [--write BENCHMARKS.md]

Runs every program of ``../shared/realworld`` (found in an ancestor folder of the repository, or
at CHAINRULE_REALWORLD) through its own ``run.sh NAME chainrule``, with ``chainrule`` on PATH
resolving to this checkout:

1. in full, untraced: "ran unchanged" is its exit status 0 (skip with ``--no-full``);
2. for ``--steps`` steps under PyTorch (where ``torch`` is importable) and under chainrule, at one
   thread and at the default thread count (OMP/MKL/OPENBLAS_NUM_THREADS = the CPU count), with
   ``bench/realworld_trace`` on PYTHONPATH: the chainrule run starts from the PyTorch run's
   initial weights and RNG state (so both draw the same batches, noise and dropout masks), and
   each ``loss.backward()`` is a step whose loss and start time are recorded (see
   ``bench/realworld_trace/sitecustomize.py``; nothing there is specific to a program);
3. optionally (``--float64``) the same with float64 as the default dtype, one thread;
4. ``--breakdown``: instead of all that, where each program's step goes under chainrule (one
   thread, CPU time, steps 2 to ``--steps``): GEMMs, the gates' other NumPy work, the optimizer,
   the rest (bookkeeping: graph, argument handling, the program's own Python), the top gates
   (``bench/part_timer.py``, the same split as ``bench/gaps.py`` gives the workloads).

The table gives the largest relative loss difference over the steps, whether chainrule's own
initial weights and RNG state already equalled PyTorch's, and the median ms per step of each
(a step: from one backward() to the next: data, forward, backward, optimizer) and their ratio.
``--write FILE`` replaces the ``realworld`` section of FILE. Skips cleanly (status 0) when the
programs' folder is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE_DIR = os.path.join(ROOT, "bench", "realworld_trace")
sys.path.insert(0, os.path.join(ROOT, "bench"))


def realworld_dir() -> str | None:
    """The folder of real programs: CHAINRULE_REALWORLD, else ``shared/realworld`` in an ancestor
    folder of the repository (``../shared/realworld`` from a checkout in the workspace)."""
    env = os.environ.get("CHAINRULE_REALWORLD")
    if env:
        return env if os.path.isfile(os.path.join(env, "run.sh")) else None
    here = ROOT
    while True:
        parent = os.path.dirname(here)
        candidate = os.path.join(parent, "shared", "realworld")
        if os.path.isfile(os.path.join(candidate, "run.sh")):
            return candidate
        if parent == here:
            return None
        here = parent


def program_names(folder: str) -> list[str]:
    """The NAMEs ``run.sh`` accepts (its case labels)."""
    with open(os.path.join(folder, "run.sh"), encoding="utf-8") as f:
        text = f.read()
    names = []
    for labels in re.findall(r"^\s+([a-z0-9_|]+)\)\s*$", text, flags=re.M):
        names += [n for n in labels.split("|") if n]
    return names


def torch_python() -> str | None:
    """An interpreter with PyTorch: this one when it has torch."""
    import importlib.util

    return sys.executable if importlib.util.find_spec("torch") is not None else None


def _chainrule_bin(folder: str) -> str:
    """A ``chainrule`` command that runs this checkout with this interpreter."""
    path = os.path.join(folder, "chainrule")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec '{sys.executable}' -m chainrule \"$@\"\n")
    os.chmod(path, 0o755)
    return folder


def run_program(folder: str, name: str, lib: str, threads: int | None, *, bindir: str,
                trace_out: str | None = None, trace_from: str | None = None, steps: int = 0,
                dtype: str | None = None, timeout: float = 900,
                extra_env: dict | None = None) -> dict:
    """``run.sh NAME lib``; returns ``{"rc", "seconds", "tail"}`` (the output's last lines)."""
    env = dict(os.environ)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    paths = ([TRACE_DIR] if trace_out else []) + [ROOT]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                 else []))
    env.pop("CHAINRULE_TRACE_OUT", None)
    env.pop("CHAINRULE_TRACE_FROM", None)
    if lib == "torch":
        env["PYTHON"] = torch_python() or sys.executable
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    if trace_out:
        env["CHAINRULE_TRACE_OUT"] = trace_out
        env["CHAINRULE_TRACE_STEPS"] = str(steps)
        if trace_from:
            env["CHAINRULE_TRACE_FROM"] = trace_from
        if dtype:
            env["CHAINRULE_TRACE_DTYPE"] = dtype
    env.update(extra_env or {})
    start = time.perf_counter()
    try:
        r = subprocess.run(["bash", os.path.join(folder, "run.sh"), name, lib], env=env,
                           capture_output=True, text=True, timeout=timeout)
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, f"timed out after {timeout:.0f} s\n{e.stderr or ''}"
    return {"rc": rc, "seconds": time.perf_counter() - start,
            "tail": "\n".join(str(out).strip().splitlines()[-8:])}


def load_traces(folder: str) -> list[dict]:
    """The traces of a run's processes, in order (p0, p1, ...)."""
    out, i = [], 0
    while os.path.exists(os.path.join(folder, f"p{i}.claim")):
        path = os.path.join(folder, f"p{i}.json")
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
        else:
            out.append({"losses": [], "times": [], "models": []})
        i += 1
    return out


def ms_per_step(trace: dict) -> float | None:
    """Median time between consecutive backward() starts, after the first step, in ms."""
    t = trace.get("times") or []
    gaps = [b - a for a, b in zip(t[1:], t[2:])] or [b - a for a, b in zip(t, t[1:])]
    return 1000.0 * statistics.median(gaps) if gaps else None


def compare(ref: list[dict], own: list[dict], first: int = 5) -> dict:
    """Loss agreement of two runs' traces (process by process, step by step); ``worst_first``
    is over each process's first ``first`` steps (the issue's float32 goal)."""
    worst, worst_first, steps, missing = 0.0, 0.0, 0, False
    for a, b in zip(ref, own):
        la, lb = a.get("losses") or [], b.get("losses") or []
        for i, (x, y) in enumerate(zip(la, lb)):
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                missing = missing or (x is None) != (y is None)
                continue
            rel = abs(x - y) / max(abs(x), 1e-30)
            worst = max(worst, rel)
            if i < first:
                worst_first = max(worst_first, rel)
            steps += 1
        missing = missing or len(la) != len(lb)
    models = [m for t in own for m in t.get("models", [])]
    return {
        "max_rel_diff": worst, "max_rel_diff_first": worst_first, "steps": steps,
        "length_differs": missing,
        "replayed": bool(models) and all(m.get("replayed") for m in models),
        "init_equal": bool(models) and all(m.get("init_max_abs_diff") == 0.0 for m in models),
        "rng_equal": bool(models) and all(m.get("rng_was_equal") for m in models),
    }


def measure(folder: str, name: str, *, bindir: str, work: str, steps: int,
            threads: int | None, dtype: str | None = None, with_torch: bool = True,
            timeout: float = 900) -> dict:
    """Traced runs of ``name`` for ``steps`` steps: PyTorch's (when available), then chainrule's
    replaying PyTorch's start. Returns both traces' summaries and their comparison."""
    tag = f"{name}_{threads or 'default'}_{dtype or 'default'}"
    ref_dir = os.path.join(work, f"{tag}_torch")
    own_dir = os.path.join(work, f"{tag}_chainrule")
    out: dict = {}
    ref = None
    if with_torch and torch_python():
        r = run_program(folder, name, "torch", threads, bindir=bindir, trace_out=ref_dir,
                        steps=steps, dtype=dtype, timeout=timeout)
        ref = load_traces(ref_dir)
        out["torch"] = {"run": r, "ms": ms_per_step(ref[0]) if ref else None,
                        "steps": len(ref[0]["losses"]) if ref else 0}
        if not ref or not ref[0]["losses"]:
            ref = None
    r = run_program(folder, name, "chainrule", threads, bindir=bindir, trace_out=own_dir,
                    trace_from=ref_dir if ref else None, steps=steps, dtype=dtype,
                    timeout=timeout)
    own = load_traces(own_dir)
    out["chainrule"] = {"run": r, "ms": ms_per_step(own[0]) if own else None,
                        "steps": len(own[0]["losses"]) if own else 0}
    if ref and own:
        out["compare"] = compare(ref, own)
    return out


def breakdown_table(folder: str, names: list, *, bindir: str, work: str, steps: int,
                    timeout: float) -> str:
    """Markdown: per program, chainrule's step split into parts (see the module's docstring)."""
    from part_timer import shares_row

    lines = ["| program (steps timed) | chainrule ms/step (CPU, timed) | GEMM | NumPy in gates | "
             "optimizer | bookkeeping | top gates (ms) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        out = os.path.join(work, f"{name}_breakdown")
        r = run_program(folder, name, "chainrule", 1, bindir=bindir, trace_out=out, steps=steps,
                        timeout=timeout, extra_env={"CHAINRULE_TRACE_BREAKDOWN": "1"})
        parts = [t["breakdown"] for t in load_traces(out) if t.get("breakdown")]
        if not parts:
            lines.append(f"| {name} | no steps traced (exit {r['rc']}) | | | | | |")
            continue
        b = max(parts, key=lambda b: b["steps"])
        label = f"{name} ({b['steps']}{', to the end' if b['to_the_end'] else ''})"
        row = shares_row(label, b)
        print(row, flush=True)
        lines.append(row)
    return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def _diff(m: dict, first: bool = False) -> str:
    c = m.get("compare")
    if not c:
        return "—" if "torch" not in m else "n/a (no PyTorch trace)"
    text = f"{c['max_rel_diff']:.1e} ({c['steps']})"
    if first:
        text = f"{c.get('max_rel_diff_first', c['max_rel_diff']):.1e} / " + text
    if c["length_differs"]:
        text += " ‡"
    return text


def table(results: dict, steps: int, default_threads: int) -> str:
    lines = [
        "## Real programs under `chainrule run`",
        "",
        f"Programs of `shared/realworld`, unedited, through their `run.sh`. Losses over the first "
        f"{steps} steps (one step: one `backward()`), chainrule started from PyTorch's initial "
        f"weights and RNG state; max relative loss difference over the first 5 steps / over all "
        f"(steps compared); float64: PyTorch's and chainrule's default dtype set to float64 "
        f"(n/a: the program does not run so under PyTorch either); ms per step is "
        f"the median; ratio = chainrule / PyTorch. Threads: 1, and {default_threads} (the CPU "
        f"count). \"init\": chainrule's own initial weights and RNG state already equal "
        f"PyTorch's. Command: `python bench/realworld.py --steps {steps} --write BENCHMARKS.md`.",
        "",
        "| program | ran unchanged | max rel. loss diff, float32: first 5 / all | float64 | init | "
        "PyTorch ms/step (1 thr) | chainrule | ratio | PyTorch ms/step "
        f"({default_threads} thr) | chainrule | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        full = res.get("full")
        ran = "—" if full is None else ("yes" if full["rc"] == 0 else f"no (exit {full['rc']})")
        one, many, f64 = res.get("one", {}), res.get("many", {}), res.get("float64")
        c = one.get("compare") or {}
        init = "—" if not c else ("yes" if c["init_equal"] and c["rng_equal"] else
                                  ("weights" if c["init_equal"] else "no"))
        cells = [name, ran, _diff(one, first=True), _diff(f64) if f64 else "—", init]
        for m in (one, many):
            t = m.get("torch", {}).get("ms")
            cr_ms = m.get("chainrule", {}).get("ms")
            cells += [_fmt(t), _fmt(cr_ms), _ratio(cr_ms, t)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "‡: the runs recorded different numbers of steps (one of them failed early). "
              "\"init\" yes: chainrule's own initial weights and RNG state were already PyTorch's; "
              "weights: only the weights."]
    return "\n".join(lines)


BREAKDOWN_HEAD = (
    "## Real programs: where chainrule's step goes\n\n"
    "Command: `python bench/realworld.py --breakdown --steps {steps} --write BENCHMARKS.md`. "
    "Each program of `shared/realworld` under `chainrule run`, one thread, steps 2 to {steps} "
    "(a step: from one backward() to the next), CPU time with every gate, GEMM and optimizer "
    "step timed (the timing itself adds a little to each gate call, so the step is slower than "
    "in the table above). GEMM: the matrix products; NumPy in gates: the gates' own array work "
    "besides GEMMs; optimizer: its step besides GEMMs; bookkeeping: the rest — graph building and "
    "traversal, the ops' argument handling, data loading and the program's own Python. \"to the "
    "end\": the program stopped on its own before the last step, whose time runs to its exit "
    "(dcgan's `--dry-run` is one iteration, three backward() calls).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="steps traced per run (default 20)")
    p.add_argument("--programs", help="comma-separated NAMEs of run.sh (default: all)")
    p.add_argument("--no-full", action="store_true", help="skip the full untraced runs")
    p.add_argument("--float64", action="store_true",
                   help="also compare with float64 as the default dtype (one thread)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run")
    p.add_argument("--breakdown", action="store_true",
                   help="only: where each program's step goes under chainrule (GEMM, NumPy in "
                        "gates, optimizer, bookkeeping, top gates)")
    p.add_argument("--write", metavar="FILE", help="replace the realworld section of FILE "
                   "(with --breakdown: the realworld-breakdown section)")
    args = p.parse_args(argv)
    folder = realworld_dir()
    if folder is None:
        print("bench/realworld.py: no shared/realworld folder found; skipping")
        return 0
    names = program_names(folder)
    if args.programs:
        wanted = args.programs.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            p.error(f"unknown programs {unknown}; run.sh knows {names}")
        names = [n for n in names if n in wanted]
    cpus = os.cpu_count() or 1
    results: dict = {}
    work = tempfile.mkdtemp(prefix="realworld_")
    try:
        bindir = _chainrule_bin(tempfile.mkdtemp(dir=work))
        if args.breakdown:
            text = breakdown_table(folder, names, bindir=bindir, work=work, steps=args.steps,
                                   timeout=args.timeout)
            text = (BREAKDOWN_HEAD.format(steps=args.steps) + "\n\n" + text)
            print(text)
            if args.write:
                from sections import write_section

                write_section(args.write, "realworld-breakdown", text,
                              after="<!-- realworld:end -->")
            return 0
        for name in names:
            res: dict = {}
            if not args.no_full:
                res["full"] = run_program(folder, name, "chainrule", 1, bindir=bindir,
                                          timeout=args.timeout)
            res["one"] = measure(folder, name, bindir=bindir, work=work, steps=args.steps,
                                 threads=1, timeout=args.timeout)
            res["many"] = measure(folder, name, bindir=bindir, work=work, steps=args.steps,
                                  threads=cpus, timeout=args.timeout)
            if args.float64:
                res["float64"] = measure(folder, name, bindir=bindir, work=work,
                                         steps=args.steps, threads=1, dtype="float64",
                                         timeout=args.timeout)
            results[name] = res
            print(table({name: res}, args.steps, cpus).splitlines()[-3], flush=True)
            if res.get("full") and res["full"]["rc"]:
                print(res["full"]["tail"], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(results, args.steps, cpus)
    print(text)
    if args.write:
        from sections import write_section

        write_section(args.write, "realworld", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
