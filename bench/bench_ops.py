"""Per-op micro-benchmark: each op family's forward and backward against PyTorch, three sizes.

    python bench/bench_ops.py [--repeats 7] [--only NAME] [--real] [--threads N]
                              [--write BENCHMARKS.md]

One thread for both libraries (OMP/OPENBLAS/MKL_NUM_THREADS=1, torch.set_num_threads(1)), the
process's CPU time (robust to other load on a shared machine), chainrule and torch alternating
within each repeat, medians. For every op: forward time, backward time (forward+backward minus
forward) and chainrule ÷ torch for each; ``SLOW`` marks a ratio above 1.5×. Before timing, the
forward values and the input gradients are checked against torch's.

``--real``: only the ops at the sizes the programs of ``shared/realworld`` give them (the
``real:`` rows: word_language_model's log-softmax over an 11145-word vocabulary, makemore's
joins and rolls, ...). ``--threads N``: N threads for both libraries (the thread variables,
``torch.set_num_threads``; chainrule's row loops follow its own default policy, see
``chainrule.kernels.cpu.default_threads``) and wall-clock time, since CPU time adds the threads
up; only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

THREADS = (sys.argv[sys.argv.index("--threads") + 1]
           if "--threads" in sys.argv[:-1] else "1")  # read before NumPy and torch load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)
import chainrule as cr  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
CLOCK = time.process_time if THREADS == "1" else time.perf_counter
FLAG = 1.5
LIBS = {"chainrule": cr, "torch": torch}


def _arr(rng, shape, kind="normal", dtype=np.float32):
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape).astype(dtype)
    if kind == "index":
        return shape  # (high, shape): built per case
    return rng.standard_normal(shape).astype(dtype)


# Each case: name -> (family, [three sizes], builder). builder(size, rng) returns
# (inputs: list of (array, needs_grad)), f(m, F, *tensors) -> output tensor
def _unary(fn, kind="normal"):
    def build(size, rng):
        return [(_arr(rng, size, kind), True)], fn
    return build


EW = [(1000,), (64, 6, 192), (1024, 1024)]


def _case_table():
    def emb(size, rng):
        v, n, d = size
        return [(_arr(rng, (v, d)), True), (rng.integers(0, v, n), False)], \
            lambda m, F, w, i: F.embedding(i, w)

    def gather(size, rng):
        r, c = size
        return [(_arr(rng, (r, c)), True), (rng.integers(0, c, (r, c // 2)), False)], \
            lambda m, F, x, i: m.gather(x, 1, i)

    def index_rows(size, rng):
        r, c = size
        return [(_arr(rng, (r, c)), True), (rng.integers(0, r, 2 * r), False)], \
            lambda m, F, x, i: x[i]

    def matmul(size, rng):
        n, k, o = size
        return [(_arr(rng, (n, k)), False), (_arr(rng, (k, o)), True), (_arr(rng, (o,)), True)], \
            lambda m, F, x, w, b: x @ w + b

    def linear(size, rng):
        n, k, o = size
        return [(_arr(rng, (n, k)), False), (_arr(rng, (o, k)), True), (_arr(rng, (o,)), True)], \
            lambda m, F, x, w, b: F.linear(x, w, b)

    def bmm(size, rng):
        b, n, k = size
        return [(_arr(rng, (b, n, k)), True), (_arr(rng, (b, k, n)), True)], \
            lambda m, F, x, y: m.bmm(x, y)

    def conv(size, rng):
        n, c, o, hw = size
        return [(_arr(rng, (n, c, hw, hw)), c > 1), (_arr(rng, (o, c, 3, 3)) * 0.3, True),
                (_arr(rng, (o,)), True)], lambda m, F, x, w, b: F.conv2d(x, w, b)

    def pool(fn):
        def build(size, rng):
            return [(_arr(rng, size), True)], fn
        return build

    def layer_norm(size, rng):
        return [(_arr(rng, size), True), (_arr(rng, size[-1:]), True),
                (_arr(rng, size[-1:]), True)], \
            lambda m, F, x, w, b: F.layer_norm(x, x.shape[-1:], w, b)

    def cross_entropy(size, rng):
        n, c = size
        return [(_arr(rng, (n, c)), True), (rng.integers(0, c, n), False)], \
            lambda m, F, x, t: F.cross_entropy(x, t)

    def mse(size, rng):
        return [(_arr(rng, size), True), (_arr(rng, size), False)], \
            lambda m, F, x, y: F.mse_loss(x, y)

    def binary(fn, kind="normal"):
        def build(size, rng):
            return [(_arr(rng, size, kind), True), (_arr(rng, size, kind), True)], fn
        return build

    def cat(size, rng):
        return [(_arr(rng, size), True), (_arr(rng, size), True)], \
            lambda m, F, x, y: m.cat([x, y], -1)

    def transpose(size, rng):
        return [(_arr(rng, size), True)], lambda m, F, x: x.transpose(-1, -2).contiguous() * 2

    def log_softmax_nll(size, rng):
        n, c = size
        return [(_arr(rng, (n, c)), True), (rng.integers(0, c, n), False)], \
            lambda m, F, x, t: F.nll_loss(F.log_softmax(x, 1), t)

    def cross_entropy_ignore(size, rng):
        n, c = size
        t = rng.integers(0, c, n)
        t[::7] = -1  # makemore pads its targets with -1
        return [(_arr(rng, (n, c)), True), (t, False)], \
            lambda m, F, x, t: F.cross_entropy(x, t, ignore_index=-1)

    def cat_many(size, rng):
        k, shape = size[0], size[1:]
        return [(_arr(rng, shape), True) for _ in range(k)], lambda m, F, *xs: m.cat(xs, -1)

    def roll_int(size, rng):
        return [(rng.integers(0, 27, size), False)], lambda m, F, i: m.roll(i, 1, 1)

    def heads_copy(size, rng):  # nanoGPT's y.transpose(1, 2).contiguous()
        return [(_arr(rng, size), True)], lambda m, F, x: x.transpose(1, 2).contiguous() * 2

    mats = [(32, 64, 64), (256, 784, 512), (1024, 1024, 1024)]
    real = {  # the sizes of shared/realworld's programs (run.sh's settings)
        "real: log_softmax+nll (word_language_model, 700 words x 11145)":
            ("real", [(700, 11145)], log_softmax_nll),
        "real: log_softmax (word_language_model)":
            ("real", [(700, 11145)], _unary(lambda m, F, x: F.log_softmax(x, 1))),
        "real: cross_entropy (word_language_model's vocabulary)":
            ("real", [(700, 11145)], cross_entropy),
        "real: cross_entropy (nanogpt)": ("real", [(384, 65)], cross_entropy),
        "real: cross_entropy ignore -1 (makemore)": ("real", [(512, 27)], cross_entropy_ignore),
        "real: softmax (makemore_transformer attention)":
            ("real", [(32, 4, 16, 16)], _unary(lambda m, F, x: F.softmax(x, -1))),
        "real: cat of 16 (makemore_mlp)": ("real", [(16, 32, 16, 32)], cat_many),
        "real: cat of 2 (makemore_rnn/gru)": ("real", [(2, 32, 32)], cat_many),
        "real: roll int64 (makemore_mlp)": ("real", [(32, 16)], roll_int),
        "real: embedding (makemore)": ("real", [(28, 512, 32)], emb),
        "real: transpose(1,2).contiguous (nanogpt heads)": ("real", [(12, 2, 32, 32)],
                                                             heads_copy),
    }
    return real | {
        # elementwise
        "exp": ("elementwise", EW, _unary(lambda m, F, x: m.exp(x))),
        "tanh": ("elementwise", EW, _unary(lambda m, F, x: m.tanh(x))),
        "sigmoid": ("elementwise", EW, _unary(lambda m, F, x: m.sigmoid(x))),
        "relu": ("elementwise", EW, _unary(lambda m, F, x: F.relu(x))),
        "gelu": ("elementwise", EW, _unary(lambda m, F, x: F.gelu(x))),
        "gelu_tanh": ("elementwise", EW, _unary(lambda m, F, x: F.gelu(x, approximate="tanh"))),
        "pow 3.0": ("elementwise", EW, _unary(lambda m, F, x: m.pow(x, 3.0))),
        "pow 2": ("elementwise", EW, _unary(lambda m, F, x: x**2)),
        "pow 0.5": ("elementwise", EW, _unary(lambda m, F, x: x**0.5, "positive")),
        "pow 2.7": ("elementwise", EW, _unary(lambda m, F, x: x**2.7, "positive")),
        "sqrt": ("elementwise", EW, _unary(lambda m, F, x: m.sqrt(x), "positive")),
        "log": ("elementwise", EW, _unary(lambda m, F, x: m.log(x), "positive")),
        "x*c+c": ("elementwise", EW, _unary(lambda m, F, x: x * 2.0 + 1.0)),
        # binary
        "add": ("binary", EW, binary(lambda m, F, x, y: x + y)),
        "mul": ("binary", EW, binary(lambda m, F, x, y: x * y)),
        "div": ("binary", EW, binary(lambda m, F, x, y: x / y, "positive")),
        "maximum": ("binary", EW, binary(lambda m, F, x, y: m.maximum(x, y))),
        "where": ("binary", EW, binary(lambda m, F, x, y: m.where(x > 0, x, y))),
        # reductions and softmax
        "sum(-1)": ("reduce", EW, _unary(lambda m, F, x: x.sum(-1))),
        "mean()": ("reduce", EW, _unary(lambda m, F, x: x.mean())),
        "softmax(-1)": ("reduce", EW, _unary(lambda m, F, x: m.softmax(x, -1))),
        "log_softmax(-1)": ("reduce", EW, _unary(lambda m, F, x: F.log_softmax(x, -1))),
        "logsumexp(-1)": ("reduce", EW, _unary(lambda m, F, x: m.logsumexp(x, -1))),
        # shape
        "cat": ("shape", EW, cat),
        "transpose+copy": ("shape", [(32, 32), (64, 192, 64), (1024, 1024)], transpose),
        # indexing
        "embedding": ("index", [(27, 512, 32), (65, 384, 64), (1000, 4096, 128)], emb),
        "gather": ("index", [(32, 64), (512, 256), (2048, 1024)], gather),
        "x[rows]": ("index", [(32, 64), (512, 256), (2048, 1024)], index_rows),
        # matrix products
        "X @ W + b": ("linalg", mats, matmul),
        "linear": ("linalg", mats, linear),
        "bmm": ("linalg", [(8, 32, 32), (64, 64, 64), (16, 256, 256)], bmm),
        # convolution and pooling
        "conv2d": ("conv", [(8, 1, 32, 28), (64, 1, 32, 28), (64, 32, 64, 26)], conv),
        "max_pool2d": ("conv", [(8, 8, 16, 16), (64, 32, 26, 26), (64, 64, 24, 24)],
                       pool(lambda m, F, x: F.max_pool2d(x, 2))),
        "avg_pool2d": ("conv", [(8, 8, 16, 16), (64, 32, 26, 26), (64, 64, 24, 24)],
                       pool(lambda m, F, x: F.avg_pool2d(x, 2))),
        # normalization and losses
        "layer_norm": ("norm", [(32, 64), (64, 6, 192), (1024, 1024)], layer_norm),
        "cross_entropy": ("loss", [(32, 10), (512, 65), (4096, 1000)], cross_entropy),
        "mse_loss": ("loss", EW, mse),
    }


def _tensors(m, inputs):
    out = []
    for a, grad in inputs:
        t = m.tensor(a)
        if grad:
            t.requires_grad_(True)
        out.append(t)
    return out


def _grads(ts):
    return [None if t.grad is None else t.grad.numpy() for t in ts]


def _timer(m, f, ts, g, backward: bool):
    F = m.nn.functional

    def run():
        for t in ts:
            t.grad = None
        y = f(m, F, *ts)
        if backward:
            y.backward(g)
    return run


def _calibrate(fns) -> int:
    """Calls per sample so that a sample takes >= ~3 ms of CPU time."""
    n = 1
    while True:
        t0 = CLOCK()
        for _ in range(n):
            for f in fns:
                f()
        if CLOCK() - t0 > 3e-3 * len(fns) or n >= 4096:
            return n
        n *= 2


def measure(name, size, build, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    inputs, f = build(size, rng)
    ts = {lib: _tensors(m, inputs) for lib, m in LIBS.items()}
    outs = {lib: f(m, m.nn.functional, *ts[lib]) for lib, m in LIBS.items()}
    y_t = outs["torch"].detach().numpy()
    g = np.random.default_rng(1).standard_normal(y_t.shape).astype(y_t.dtype)
    gs = {"chainrule": cr.tensor(g), "torch": torch.tensor(g)}
    tol = dict(rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(outs["chainrule"].detach().numpy(), y_t, **tol, err_msg=name)
    backward = any(grad for _, grad in inputs)
    for lib in LIBS:
        if backward:
            outs[lib].backward(gs[lib])
    for a, b in zip(_grads(ts["chainrule"]), _grads(ts["torch"])):
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b, **tol, err_msg=f"{name} gradient")
    runs = {(lib, bw): _timer(m, f, ts[lib], gs[lib], bw) for lib, m in LIBS.items()
            for bw in ((False, True) if backward else (False,))}
    n = _calibrate(list(runs.values()))
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            t0 = CLOCK()
            for _ in range(n):
                run()
            times[k].append((CLOCK() - t0) / n)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {}
    for lib in LIBS:
        fwd = med[(lib, False)]
        res[lib] = (fwd, max(med[(lib, True)] - fwd, 0.0) if backward else float("nan"))
    return res


def _fmt(t: float) -> str:
    return f"{t * 1e6:.0f}" if t >= 1e-4 else f"{t * 1e6:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", help="comma-separated op names")
    ap.add_argument("--real", action="store_true",
                    help="only the ops at the sizes of shared/realworld's programs")
    ap.add_argument("--threads", default="1",
                    help="threads for both libraries (read at start-up; wall clock if not 1)")
    ap.add_argument("--write", metavar="MD", help="replace the ops section of this file")
    args = ap.parse_args(argv)
    table = _case_table()
    names = (args.only.split(",") if args.only
             else [n for n in table if n.startswith("real:")] if args.real else list(table))
    rows, slow = [], []
    header = ("| family | op | size | fwd µs (cr / torch) | fwd ratio | bwd µs (cr / torch) "
              "| bwd ratio |")
    print(header)
    print("|---|---|---|---|---|---|---|")
    for name in names:
        family, sizes, build = table[name]
        for size in sizes:
            r = measure(name, size, build, args.repeats)
            (cf, cb), (tf, tb) = r["chainrule"], r["torch"]
            fr, br = cf / tf, (cb / tb if tb > 0 else float("nan"))
            flag = lambda x: f"**{x:.2f} SLOW**" if x > FLAG else f"{x:.2f}"  # noqa: E731
            bwd = (f"{_fmt(cb)} / {_fmt(tb)} | {flag(br)}" if cb == cb
                   else "— | —")  # nothing to differentiate
            row = (f"| {family} | {name} | {'x'.join(map(str, size))} | {_fmt(cf)} / {_fmt(tf)} "
                   f"| {flag(fr)} | {bwd} |")
            print(row, flush=True)
            rows.append(row)
            if fr > FLAG or br > FLAG:
                slow.append(f"{name} {size}")
    print(f"\nslower than {FLAG}x torch: {', '.join(slow) if slow else 'none'}")
    if args.write:
        _write(args.write, [header, "|---|---|---|---|---|---|---|"] + rows, slow, args.repeats,
               args)
    return 0


def _write(path: str, rows: list, slow: list, repeats: int, args) -> None:
    import platform

    import sections

    flags = "".join([" --real" if args.real else "", f" --only {args.only}" if args.only else "",
                     f" --threads {THREADS}" if THREADS != "1" else ""])
    how = ("one thread for both libraries, process CPU time" if THREADS == "1" else
           f"{THREADS} threads for both libraries, wall-clock time")
    body = "\n".join([
        "## Per-op forward and backward vs PyTorch", "",
        f"Command: `python bench/bench_ops.py{flags} --write BENCHMARKS.md` ({how}, "
        f"medians of {repeats} alternating repeats; "
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"chainrule's products: {_blas()}). Ratios are chainrule ÷ torch; **SLOW** marks "
        f"above {FLAG}×.", "", *rows, "",
        f"Slower than {FLAG}× torch: {', '.join(slow) if slow else 'none'}."])
    sections.write_section(path, "ops", body)


def _blas() -> str:
    from chainrule.kernels import mkl

    return mkl.backend_name() if hasattr(mkl, "backend_name") else "numpy"


if __name__ == "__main__":
    raise SystemExit(main())
