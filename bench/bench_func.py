"""cr.func benchmarks, side by side with torch.func in the same run (one thread each).

* hvp on a ~1000-parameter MLP against one gradient of the same loss (goal: hvp <= 4x grad).
* jacfwd vs jacrev on a 10 -> 1000 and a 1000 -> 10 function (each a vmapped batch of basis
  vectors), and the Hessian of the MLP's loss.
* per-sample gradients (vmap(grad(loss)) over functional_call) of an MLP and of a small CNN,
  batch 64, and the same as a Python loop over the batch; vmap over 1000 evaluations of a small
  MLP; an ensemble of 8 MLPs through stack_module_state.

Every number is the median CPU time over repeats, after a warm-up call; results are checked against
torch before timing. ``--write BENCHMARKS.md`` replaces only the section between
``<!-- func:start -->`` and ``<!-- func:end -->`` (appended at the end if missing).

    python bench/bench_func.py [--repeats 15] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy (and torch) start their thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sections  # noqa: E402
from chainrule import func as F  # noqa: E402

SIZES = (8, 32, 24, 1)  # 1105 parameters


def median_seconds(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median CPU time of each ``fn()`` over ``repeats`` rounds, after one warm-up call each.

    Process CPU time, not wall time: on a shared machine a millisecond-long call is often
    descheduled, which wall time counts and CPU time does not (everything is one thread).
    The calls alternate within every round, so both libraries see the same machine state.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.process_time()
            fn()
            ts.append(time.process_time() - t0)
    return [statistics.median(ts) for ts in times]


def machine() -> str:
    """lscpu's model name (or /proc/cpuinfo's), core count and Python version."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def mlp_loss(m, theta, X, y):
    """MSE of a tanh MLP whose parameters are slices of the flat vector ``theta``."""
    h, i = X, 0
    for k, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        W = theta[i:i + a * b].reshape(a, b)
        i += a * b
        h = h @ W + theta[i:i + b]
        i += b
        if k < len(SIZES) - 2:
            h = m.tanh(h)
    return ((h.squeeze(-1) - y) ** 2).mean()


def workloads(torch) -> list[tuple[str, Callable, Callable, float | None]]:
    """(name, chainrule call, torch call, goal) for every measured workload."""
    rng = np.random.default_rng(0)
    n = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))
    theta = rng.normal(0, 0.3, n).astype(np.float32)
    v = rng.normal(size=n).astype(np.float32)
    X = rng.normal(size=(64, SIZES[0])).astype(np.float32)
    y = rng.normal(size=64).astype(np.float32)
    A = rng.normal(0, 0.3, (1000, 10)).astype(np.float32)
    B = rng.normal(0, 0.05, (10, 1000)).astype(np.float32)
    x10 = rng.normal(size=10).astype(np.float32)
    x1000 = rng.normal(size=1000).astype(np.float32)

    def both(arrays):
        return [cr.tensor(a) for a in arrays], [torch.from_numpy(a.copy()) for a in arrays]

    (c_theta, c_v, c_X, c_y, c_A, c_B, c_x10, c_x1000), \
        (t_theta, t_v, t_X, t_y, t_A, t_B, t_x10, t_x1000) = both(
            [theta, v, X, y, A, B, x10, x1000])

    def c_loss(p):
        return mlp_loss(cr, p, c_X, c_y)

    def t_loss(p):
        return mlp_loss(torch, p, t_X, t_y)

    def c_wide(x):   # 10 -> 1000
        return cr.tanh(c_A @ x) * x.sum()

    def t_wide(x):
        return torch.tanh(t_A @ x) * x.sum()

    def c_narrow(x):  # 1000 -> 10
        return cr.tanh(c_B @ x) * (x * x).mean()

    def t_narrow(x):
        return torch.tanh(t_B @ x) * (x * x).mean()

    tf = torch.func
    c_psg, t_psg, c_loop = per_sample_mlp(torch, rng)
    c_cnn, t_cnn, c_cnn_loop = per_sample_cnn(torch, rng)
    c_many, t_many = many_mlps(torch, rng)
    c_ens, t_ens = ensemble(torch, rng)
    return [
        ("grad, MLP 1105 params (batch 64)", lambda: F.grad(c_loss)(c_theta),
         lambda: tf.grad(t_loss)(t_theta), None),
        ("hvp, same MLP", lambda: F.hvp(c_loss, c_theta, c_v)[1],
         lambda: tf.jvp(tf.grad(t_loss), (t_theta,), (t_v,))[1], None),
        ("jacfwd, 10 -> 1000", lambda: F.jacfwd(c_wide)(c_x10),
         lambda: tf.jacfwd(t_wide)(t_x10), None),
        ("jacrev, 10 -> 1000", lambda: F.jacrev(c_wide)(c_x10),
         lambda: tf.jacrev(t_wide)(t_x10), None),
        ("jacfwd, 1000 -> 10", lambda: F.jacfwd(c_narrow)(c_x1000),
         lambda: tf.jacfwd(t_narrow)(t_x1000), None),
        ("jacrev, 1000 -> 10", lambda: F.jacrev(c_narrow)(c_x1000),
         lambda: tf.jacrev(t_narrow)(t_x1000), None),
        ("hessian, MLP loss (1105 params)", lambda: F.hessian(c_loss)(c_theta),
         lambda: tf.hessian(t_loss)(t_theta), None),
        ("per-sample grads, MLP (batch 64)", c_psg, t_psg, None),
        ("per-sample grads, MLP: Python loop", c_loop, t_psg, None),
        ("per-sample grads, small CNN (batch 64)", c_cnn, t_cnn, None),
        ("per-sample grads, small CNN: Python loop", c_cnn_loop, t_cnn, None),
        ("vmap over 1000 small-MLP evaluations", c_many, t_many, None),
        ("ensemble of 8 MLPs (stack_module_state)", c_ens, t_ens, None),
    ]


def _twins(torch, build, rng):
    """The same module in chainrule and torch (torch's weights copied from chainrule's)."""
    c, t = build(cr), build(torch)
    for (_, p), (_, q) in zip(c.named_parameters(), t.named_parameters()):
        q.data = torch.from_numpy(p.detach().numpy().copy())
    return c, t


def _per_sample(torch, cm, tm, X, y, loss_name):
    """(chainrule per-sample gradients, torch's, chainrule's Python loop over the batch)."""
    tf = torch.func
    cX, cy, tX, ty = cr.tensor(X), cr.tensor(y), torch.from_numpy(X), torch.from_numpy(y)
    cp = {k: v.detach() for k, v in cm.named_parameters()}
    tp = {k: v.detach() for k, v in tm.named_parameters()}

    def loss(m, model, fc, p, x, t):
        out = fc(model, p, (x.unsqueeze(0),))
        if loss_name == "mse":
            return ((out - t.unsqueeze(0)) ** 2).mean()
        return m.nn.functional.cross_entropy(out, t.unsqueeze(0))

    def c_loss(p, x, t):
        return loss(cr, cm, F.functional_call, p, x, t)

    def t_loss(p, x, t):
        return loss(torch, tm, tf.functional_call, p, x, t)

    def c_call():
        return stacked(F.vmap(F.grad(c_loss), in_dims=(None, 0, 0))(cp, cX, cy))

    def t_call():
        return stacked(tf.vmap(tf.grad(t_loss), in_dims=(None, 0, 0))(tp, tX, ty))

    def c_loop():
        grads = [F.grad(c_loss)(cp, cX[i], cy[i]) for i in range(len(X))]
        return stacked({k: cr.stack([g[k] for g in grads]) for k in grads[0]})

    return c_call, t_call, c_loop


def stacked(grads: dict):
    """Every per-sample gradient flattened and side by side (one array to compare)."""
    import torch

    parts = [g.reshape(g.shape[0], -1) for g in grads.values()]
    return torch.cat(parts, 1) if isinstance(parts[0], torch.Tensor) else cr.cat(parts, 1)


def per_sample_mlp(torch, rng):
    """Per-sample gradients of an MLP's MSE loss, batch 64 (the torch.func tutorial's recipe)."""
    cm, tm = _twins(torch, lambda m: m.nn.Sequential(
        m.nn.Linear(8, 32), m.nn.Tanh(), m.nn.Linear(32, 24), m.nn.Tanh(), m.nn.Linear(24, 1)),
        rng)
    X = rng.normal(size=(64, 8)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    return _per_sample(torch, cm, tm, X, y, "mse")


def per_sample_cnn(torch, rng):
    """Per-sample gradients of a small CNN's cross-entropy, batch 64 of 1x12x12 images."""
    cm, tm = _twins(torch, lambda m: m.nn.Sequential(
        m.nn.Conv2d(1, 8, 3), m.nn.ReLU(), m.nn.MaxPool2d(2), m.nn.Flatten(),
        m.nn.Linear(8 * 5 * 5, 10)), rng)
    X = rng.normal(size=(64, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    return _per_sample(torch, cm, tm, X, y, "ce")


def many_mlps(torch, rng):
    """vmap of one small MLP's evaluation over 1000 inputs."""
    cm, tm = _twins(torch, lambda m: m.nn.Sequential(
        m.nn.Linear(8, 32), m.nn.Tanh(), m.nn.Linear(32, 1)), rng)
    X = rng.normal(size=(1000, 8)).astype(np.float32)
    cX, tX = cr.tensor(X), torch.from_numpy(X)
    with torch.no_grad():
        return (lambda: F.vmap(cm)(cX).detach()), (lambda: torch.func.vmap(tm)(tX).detach())


def ensemble(torch, rng):
    """8 MLPs with their own weights, each on its own minibatch: vmap over stacked weights."""
    cms, tms = zip(*[_twins(torch, lambda m: m.nn.Sequential(
        m.nn.Linear(8, 32), m.nn.Tanh(), m.nn.Linear(32, 4)), rng) for _ in range(8)])
    cp, cb = F.stack_module_state(cms)
    tp, tb = torch.func.stack_module_state(tms)
    X = rng.normal(size=(8, 16, 8)).astype(np.float32)
    cX, tX = cr.tensor(X), torch.from_numpy(X)

    def c_call():
        return F.vmap(lambda p, b, x: F.functional_call(cms[0], (p, b), (x,)))(cp, cb, cX)

    def t_call():
        return torch.func.vmap(lambda p, b, x: torch.func.functional_call(tms[0], (p, b), (x,)))(
            tp, tb, tX)

    return c_call, t_call


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 10 else f"{seconds:.1f} s"


def run(repeats: int, only: str | None = None) -> str:
    """Measure everything and return the markdown section."""
    import torch

    torch.set_num_threads(1)
    rows = []
    times: dict = {}
    beside: dict = {}  # loop row -> chainrule's vmap, timed in the same rounds as the loop
    calls = {name: c_call for name, c_call, _, _ in workloads(torch)}
    for name, c_call, t_call, _ in workloads(torch):
        if only and only not in name:
            continue
        ours, ref = c_call(), t_call()
        np.testing.assert_allclose(np.asarray(ours.detach()), ref.detach().numpy(), rtol=2e-3,
                                   atol=2e-4, err_msg=f"{name}: chainrule and torch disagree")
        slow = "Python loop" in name
        reps = max(1, repeats // 3) if slow else repeats
        if slow:
            vm = calls[name.replace(": Python loop", " (batch 64)")]
            tc, tt, beside[name] = median_seconds([c_call, t_call, vm], reps)
        else:
            tc, tt = median_seconds([c_call, t_call], reps)
        times[name] = (tc, tt)
        rows.append(f"| {name} | {fmt(tc)} | {fmt(tt)} | {tc / tt:.1f}x |")
        print(rows[-1], flush=True)

    if only:
        return "\n".join(rows)
    g, h = times["grad, MLP 1105 params (batch 64)"], times["hvp, same MLP"]
    goal = "met" if h[0] <= 4 * g[0] else "NOT met"
    goals = []
    for name in ("jacfwd, 10 -> 1000", "jacrev, 10 -> 1000", "jacfwd, 1000 -> 10",
                 "jacrev, 1000 -> 10", "hessian, MLP loss (1105 params)",
                 "per-sample grads, MLP (batch 64)", "per-sample grads, small CNN (batch 64)",
                 "vmap over 1000 small-MLP evaluations"):
        ours, ref = times[name]
        goals.append(f"{name} {ours / ref:.2f}x ({'met' if ours <= ref else 'NOT met'})")
    loops = []
    for name in ("MLP", "small CNN"):
        vm = beside[f"per-sample grads, {name}: Python loop"]
        lp = times[f"per-sample grads, {name}: Python loop"][0]
        loops.append(f"{name} {lp / vm:.0f}x ({'met' if lp >= 10 * vm else 'NOT met'})")
    lines = [
        "## cr.func: function transforms",
        "",
        f"Command: `python bench/bench_func.py --repeats {repeats} --write BENCHMARKS.md` "
        "(one thread: OMP_NUM_THREADS=1, torch.set_num_threads(1); process CPU time, median of "
        "the repeats, a third as many on the Python-loop rows, after a warm-up, chainrule and "
        "torch alternating within each repeat; results checked against torch first; the "
        "Python-loop rows put chainrule's loop over the 64 examples beside torch.func's vmap)  ",
        f"Machine: {machine()}; numpy {np.__version__}, torch {torch.__version__}",
        "",
        "| workload | chainrule (ms) | torch.func (ms) | chainrule / torch |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"- hvp / one gradient: chainrule {h[0] / g[0]:.2f}x (goal <= 4x: {goal}), "
        f"torch.func {h[1] / g[1]:.2f}x. chainrule's hvp is reverse-over-reverse "
        "(gradient with graph, then one backward pass over it); torch's is jvp(grad(f)).",
        "- Goals <= 1.0x torch.func: " + "; ".join(goals) + ".",
        "- Per-sample gradients, vmap(grad) against a Python loop of grad over the batch "
        "(goal >= 10x; the vmap call timed again in the loop row's rounds, so both see the "
        "same machine): " + "; ".join(loops) + ".",
        "- jacrev pushes all its one-hot cotangents through one backward pass as a vmapped "
        "batch, jacfwd all its one-hot tangents through one pass over the VJP graph; jacfwd of "
        "a wide Jacobian (fewer output than input elements, the 1000 -> 10 row) takes the "
        "single batched reverse pass instead (the same matrix: chainrule's forward mode is "
        "itself two reverse passes). hessian is jacrev(jacrev(f)) for the same reason "
        "(torch's is jacfwd(jacrev(f))); its backward adds the gradients meeting at a fork "
        "into the first sum's own array (autograd/accumulate.py). Under vmap, pooling, "
        "im2col, the convolution's input gradient and cross-entropy run once on the batch "
        "folded into N (kernels/batched.py).",
    ]
    return "\n".join(lines)


def write_section(path: str, body: str) -> None:
    """Replace the text between the func markers in ``path`` (append them if missing)."""
    sections.write_section(path, "func", body)


def main(argv: list[str] | None = None) -> None:
    """Command line: run the benchmarks, print the table, optionally write BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--write", metavar="PATH", help="update the func section of PATH")
    parser.add_argument("--only", help="run only the workloads whose name contains this")
    args = parser.parse_args(argv)
    body = run(args.repeats, args.only)
    print()
    print(body)
    if args.write:
        write_section(args.write, body)
        print(f"\nwrote the func section of {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
