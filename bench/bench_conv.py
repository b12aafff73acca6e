"""Convolution-heavy training steps and their layers, chainrule against PyTorch, at one thread
and at two.

    python bench/bench_conv.py [--threads 1,2] [--repeats 30] [--parts] [--only dcgan,mnist]

Rows: the DCGAN iteration of pytorch/examples (``shared/realworld``'s settings: 64×64 images,
batch 16, ngf = ndf = nz = 16; D on real, G, D on fake, G through D, two Adam steps) and the MNIST
CNN (W4-mnist of ``workloads.py``), then (``--parts``) each layer kind at the sizes those programs
use, forward + backward. Each row is the median over ``--repeats`` runs of both libraries,
interleaved in this process; threads set by ``torch.set_num_threads`` and threadpoolctl (NumPy's
BLAS). Same weights and inputs in both libraries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BENCH_THREADS", "default")  # workloads.py: leave torch's threads to us

import numpy as np  # noqa: E402

import workloads  # noqa: E402

SEED = 0


def _lib(lib: str):
    if lib == "torch":
        import torch

        return torch
    import chainrule

    return chainrule


def _copy_weights(T, model, rng) -> None:
    with T.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                continue  # BatchNorm: weight 1, bias 0
            p.copy_(T.tensor((rng.standard_normal(tuple(p.shape)) * 0.02).astype(np.float32)))


def dcgan(lib: str, batch: int = 16, nz: int = 16, ngf: int = 16, ndf: int = 16, nc: int = 3):
    """One iteration of pytorch/examples' DCGAN (its ``main.py`` loop body, three backward()s)."""
    T = _lib(lib)
    nn = T.nn
    rng = np.random.default_rng(SEED)
    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())
    _copy_weights(T, G, rng)
    _copy_weights(T, D, rng)
    real = T.tensor(rng.uniform(-1, 1, (batch, nc, 64, 64)).astype(np.float32))
    noise = T.tensor(rng.standard_normal((batch, nz, 1, 1)).astype(np.float32))
    ones, zeros = T.ones(batch), T.zeros(batch)
    criterion = nn.BCELoss()
    opt_d = T.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = T.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step():
        D.zero_grad()
        err_real = criterion(D(real).view(-1), ones)
        err_real.backward()
        fake = G(noise)
        err_fake = criterion(D(fake.detach()).view(-1), zeros)
        err_fake.backward()
        opt_d.step()
        G.zero_grad()
        err_g = criterion(D(fake).view(-1), ones)
        err_g.backward()
        opt_g.step()
        return err_g.item()
    return step


def _part(lib: str, make, shape):
    """forward + backward of ``make(nn)`` on an input of ``shape`` (sum of the output)."""
    T = _lib(lib)
    rng = np.random.default_rng(SEED)
    layer = make(T.nn)
    _copy_weights(T, layer, rng)
    x = T.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    def step():
        y = layer(x)
        y.backward(T.ones_like(y))
        return 0.0
    return step


PARTS = {
    "convT 16→128 k4 s1 (1→4)": (lambda nn: nn.ConvTranspose2d(16, 128, 4, 1, 0, bias=False),
                                 (16, 16, 1, 1)),
    "convT 128→64 k4 s2 (4→8)": (lambda nn: nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
                                 (16, 128, 4, 4)),
    "convT 64→32 k4 s2 (8→16)": (lambda nn: nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False),
                                 (16, 64, 8, 8)),
    "convT 32→16 k4 s2 (16→32)": (lambda nn: nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False),
                                  (16, 32, 16, 16)),
    "convT 16→3 k4 s2 (32→64)": (lambda nn: nn.ConvTranspose2d(16, 3, 4, 2, 1, bias=False),
                                 (16, 16, 32, 32)),
    "conv 3→16 k4 s2 (64→32)": (lambda nn: nn.Conv2d(3, 16, 4, 2, 1, bias=False),
                                (16, 3, 64, 64)),
    "conv 16→32 k4 s2 (32→16)": (lambda nn: nn.Conv2d(16, 32, 4, 2, 1, bias=False),
                                 (16, 16, 32, 32)),
    "conv 32→64 k4 s2 (16→8)": (lambda nn: nn.Conv2d(32, 64, 4, 2, 1, bias=False),
                                (16, 32, 16, 16)),
    "conv 64→128 k4 s2 (8→4)": (lambda nn: nn.Conv2d(64, 128, 4, 2, 1, bias=False),
                                (16, 64, 8, 8)),
    "batchnorm2d 16×32×32": (lambda nn: nn.BatchNorm2d(32), (16, 32, 16, 16)),
    "batchnorm2d 16×16×32²": (lambda nn: nn.BatchNorm2d(16), (16, 16, 32, 32)),
    "conv 1→32 k3 (28→26), b64": (lambda nn: nn.Conv2d(1, 32, 3), (64, 1, 28, 28)),
    "conv 32→64 k3 (26→24), b64": (lambda nn: nn.Conv2d(32, 64, 3), (64, 32, 26, 26)),
    "max_pool2d 2, 64×64×24²": (lambda nn: nn.MaxPool2d(2), (64, 64, 24, 24)),
}


def _set_threads(n: int):
    import torch
    from threadpoolctl import threadpool_limits

    import chainrule

    torch.set_num_threads(n)
    chainrule.set_num_threads(n)  # also what chainrule's kernels plan for (conv chunk sizes)
    return threadpool_limits(n)


def measure(make, repeats: int, stat=statistics.median, clock=time.perf_counter) -> tuple:
    """(torch ms, chainrule ms): medians (or ``stat``), the two libraries' runs interleaved."""
    steps = {lib: make(lib) for lib in ("torch", "chainrule")}
    for s in steps.values():
        s()
        s()
    times = {lib: [] for lib in steps}
    for _ in range(repeats):
        for lib, s in steps.items():
            t0 = clock()
            s()
            times[lib].append(clock() - t0)
    return tuple(stat(times[lib]) * 1e3 for lib in ("torch", "chainrule"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--parts", action="store_true", help="also each layer kind")
    p.add_argument("--min", action="store_true",
                   help="the fastest run instead of the median (on a busy machine)")
    p.add_argument("--cpu-time", action="store_true",
                   help="the process's CPU time instead of wall time (one thread on a busy "
                        "machine: the work done, not the waiting)")
    p.add_argument("--only", help="comma-separated row names (programs or parts) to run")
    args = p.parse_args(argv)
    rows = {"dcgan": dcgan, "mnist": workloads.w4_mnist}
    if args.parts:
        rows.update({name: (lambda lib, m=m, s=s: _part(lib, m, s))
                     for name, (m, s) in PARTS.items()})
    if args.only:
        keep = args.only.split(",")
        rows = {k: v for k, v in rows.items() if any(k.startswith(w) for w in keep)}
    threads = [int(t) for t in args.threads.split(",")]
    print("| row | " + " | ".join(f"torch ms ({t} thr) | chainrule | ratio" for t in threads)
          + " |")
    print("|---|" + "---|---|---|" * len(threads))
    for name, make in rows.items():
        cells = []
        for t in threads:
            with _set_threads(t):
                ref, own = measure(make, args.repeats,
                                   min if args.min else statistics.median,
                                   time.process_time if args.cpu_time else time.perf_counter)
            cells.append(f"{ref:.2f} | {own:.2f} | {own / ref:.2f}×")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
