"""Where a small GPU step's time goes, on the GPU machine: launch costs and a host profile.

Prints the cost of single CuPy calls (a ufunc, an ElementwiseKernel, a RawKernel, an
allocation), chainrule's own per-op cost on cuda and cpu, and cProfile's top functions for
the tiny-op chain and the batch-32 CNN step of ``bench/gpu_check.py``. Run by
``bench/gpu_check.sh`` after the benchmark; ``python bench/gpu_profile.py`` alone works too.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu_check  # noqa: E402


def per_call(fn, n=2000):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    import cupy as cp

    import chainrule as cr
    from chainrule.kernels import cuda_raw

    x = cp.ones((8, 8), cp.float32)
    y = cp.ones((8, 8), cp.float32)
    k = cuda_raw.fused("tanh_backward")
    rows = [
        ("cupy.exp(x)", lambda: cp.exp(x)),
        ("x * 0.5", lambda: x * 0.5),
        ("x * y", lambda: x * y),
        *([("ElementwiseKernel tanh_backward(g, y)", lambda: k(x, y))] if k else []),
        ("cupy.empty((8, 8))", lambda: cp.empty((8, 8), cp.float32)),
        ("x.sum()", lambda: x.sum()),
    ]
    try:  # (the CPU stand-in for CuPy has no RawKernel)
        raw_exp = cp.RawKernel(r"""
    extern "C" __global__ void raw_exp(const float* x, float* y, long long n) {
      long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
      if (i < n) y[i] = expf(x[i]);
    }""", "raw_exp")
        n64 = cr.devices.np.int64(64)

        def raw_launch():
            out = cp.empty((8, 8), cp.float32)
            raw_exp((1,), (64,), (x, out, n64))
            return out
        out_buf = cp.empty((8, 8), cp.float32)
        rows += [
            ("RawKernel exp incl. cupy.empty", raw_launch),
            ("RawKernel exp into a kept buffer", lambda: raw_exp((1,), (64,), (x, out_buf, n64))),
            ("cupy.exp(x, out=kept buffer)", lambda: cp.exp(x, out=out_buf)),
        ]
    except NotImplementedError:
        pass
    t = cr.ones(8, 8, device="cuda")
    tg = cr.ones(8, 8, device="cuda", requires_grad=True)
    tc = cr.ones(8, 8)
    tcg = cr.ones(8, 8, requires_grad=True)
    rows += [
        ("cr: t.exp() on cuda, no grad", lambda: t.exp()),
        ("cr: t.exp() on cuda, recorded", lambda: tg.exp()),
        ("cr: t.exp() on cpu, no grad", lambda: tc.exp()),
        ("cr: t.exp() on cpu, recorded", lambda: tcg.exp()),
        ("numpy.exp(8x8)", lambda: cr.devices.np.exp(tc._data)),
    ]
    w1, c1 = cp.ones((8, 9), cp.float32), cp.ones((256, 9, 676), cp.float32)
    w2, c2 = cp.ones((16, 72), cp.float32), cp.ones((256, 72, 121), cp.float32)
    g2 = cp.ones((256, 16, 121), cp.float32)
    for tag, w, c in (("conv1", w1, c1), ("conv2", w2, c2)):
        rows += [
            (f"{tag}: cupy.matmul(w, cols) broadcast", lambda w=w, c=c: cp.matmul(w, c)),
            (f"{tag}: tensordot(w, cols) + transpose copy",
             lambda w=w, c=c: cp.ascontiguousarray(cp.tensordot(w, c, ([1], [1])).transpose(
                 1, 0, 2))),
        ]
    rows += [
        ("conv2 dW: matmul(g, colsT).sum(0)", lambda: cp.matmul(g2, c2.transpose(0, 2, 1)).sum(0)),
        ("conv2 dW: tensordot(g, cols, ([0,2],[0,2]))", lambda: cp.tensordot(g2, c2,
                                                                            ([0, 2], [0, 2]))),
        ("2-d dot 256x784 @ 784x512", lambda: cp.ones((256, 784), cp.float32).dot(
            cp.ones((784, 512), cp.float32))),
    ]
    print("| call | µs per call (host) | µs per call (synced) |\n|---|---|---|")
    for name, fn in rows:
        synced = per_call(lambda fn=fn: (fn(), cp.cuda.Device().synchronize()), n=200)
        print(f"| {name} | {per_call(fn):.2f} | {synced:.2f} |")
    cp.cuda.Device().synchronize()
    for name, step in [("tiny-op chain", gpu_check.tiny_chain(cr, "cuda")),
                       ("CNN step b32", gpu_check.cnn_step(cr, "cuda", 32)),
                       ("MLP step b256", gpu_check.mlp_step(cr, "cuda", 256,
                                                            (784, 512, 512, 10)))]:
        step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            step()
        cp.cuda.Device().synchronize()
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
        print(f"\n### {name}: cProfile, 20 steps, by own time\n")
        print("\n".join(out.getvalue().splitlines()[4:32]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
