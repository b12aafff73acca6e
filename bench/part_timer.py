"""Where a chainrule step's time goes: every gate's forward and backward, the matrix products, the
optimizers' ``step``, and the rest (the engine's bookkeeping and the program's own Python).

    timer = PartTimer()      # wraps the gates, GEMM handles and optimizers of loaded modules
    ...                      # warm-up
    timer.reset()
    ...                      # the steps to measure
    parts = timer.parts(steps)
    timer.remove()

Used by ``bench/gaps.py`` (the workloads of ``bench/``) and by ``bench/realworld_trace`` (real
programs under ``chainrule run``, ``bench/realworld.py --breakdown``). CPU time of the process.
"""

from __future__ import annotations

import collections
import importlib
import sys
import time

_GEMM_NAMES = ("_mm", "_matmul", "matmul")


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


class PartTimer:
    """Times gates (outermost only), GEMMs and optimizer steps until :meth:`remove`."""

    def __init__(self, clock=time.process_time) -> None:
        from chainrule.autograd.function import Op
        from chainrule.kernels import matmul as mm
        from chainrule.optim.optimizer import Optimizer

        self.clock = clock
        self.gates: dict = collections.defaultdict(float)
        self.acc = {"gemm": 0.0, "gemm_in_gates": 0.0, "optimizer": 0.0, "gemm_in_opt": 0.0}
        self.depth = [0, 0]  # [gates, optimizer] nesting
        self.patched: list = []
        self.t0 = clock()
        for cls in set(_subclasses(Op)):
            for name in ("forward", "backward"):
                fn = cls.__dict__.get(name)
                if isinstance(fn, staticmethod):
                    self.patched.append((cls, name, fn))
                    setattr(cls, name, self._timed_gate(fn.__func__, f"{cls.__name__}.{name}"))
        for cls in set(_subclasses(Optimizer)):
            fn = cls.__dict__.get("step")
            if fn is not None:
                self.patched.append((cls, "step", fn))
                cls.step = self._timed_opt(fn)
        real_mm, timed_mm = mm.matmul, self._timed_mm(mm.matmul)
        for modname in list(sys.modules):
            if modname.startswith("chainrule"):
                mod = importlib.import_module(modname)
                for attr in _GEMM_NAMES:
                    if getattr(mod, attr, None) is real_mm:
                        self.patched.append((mod, attr, real_mm))
                        setattr(mod, attr, timed_mm)

    def _timed_gate(self, fn, key):
        gates, depth, clock = self.gates, self.depth, self.clock

        def run(ctx, *args):
            if depth[0]:
                return fn(ctx, *args)
            depth[0] += 1
            t0 = clock()
            try:
                return fn(ctx, *args)
            finally:
                gates[key] += clock() - t0
                depth[0] -= 1
        return staticmethod(run)

    def _timed_mm(self, real_mm):
        acc, depth, clock = self.acc, self.depth, self.clock

        def timed_mm(*args, **kwargs):
            t0 = clock()
            try:
                return real_mm(*args, **kwargs)
            finally:
                dt = clock() - t0
                acc["gemm"] += dt
                if depth[0]:
                    acc["gemm_in_gates"] += dt
                if depth[1]:
                    acc["gemm_in_opt"] += dt
        return timed_mm

    def _timed_opt(self, fn):
        acc, depth, clock = self.acc, self.depth, self.clock

        def step(opt, *args, **kwargs):
            depth[1] += 1
            t0 = clock()
            try:
                return fn(opt, *args, **kwargs)
            finally:
                acc["optimizer"] += clock() - t0
                depth[1] -= 1
        return step

    def reset(self) -> None:
        """Start counting from now (after a warm-up)."""
        self.gates.clear()
        self.acc.update(dict.fromkeys(self.acc, 0.0))
        self.t0 = self.clock()

    def parts(self, steps: int, top: int = 5) -> dict:
        """Seconds per step since :meth:`reset`: {"step", "gemm", "gates" (the gates' NumPy work
        besides GEMMs), "optimizer" (besides GEMMs), "bookkeeping" (the rest), "top": [(gate,
        seconds), ...]}."""
        steps = max(steps, 1)
        total = (self.clock() - self.t0) / steps
        acc = self.acc
        gemm = acc["gemm"] / steps
        opt = (acc["optimizer"] - acc["gemm_in_opt"]) / steps
        numpy_gates = (sum(self.gates.values()) - acc["gemm_in_gates"]) / steps
        ranked = sorted(((k, v / steps) for k, v in self.gates.items()), key=lambda kv: -kv[1])
        return {"step": total, "gemm": gemm, "gates": numpy_gates, "optimizer": opt,
                "bookkeeping": total - gemm - numpy_gates - opt, "top": ranked[:top]}

    def remove(self) -> None:
        for owner, name, fn in reversed(self.patched):
            setattr(owner, name, fn)
        self.patched = []


def shares_row(label: str, parts: dict, torch_step: float | None = None) -> str:
    """One markdown row: label, ms per step, (torch ms, ratio,) each part in ms and %, top gates."""
    st = parts["step"]

    def share(k: str) -> str:
        return f"{parts[k] * 1e3:.2f} ({parts[k] / st:.0%})"
    top = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in parts["top"])
    vs = "" if torch_step is None else f"{torch_step * 1e3:.2f} | {st / torch_step:.2f} | "
    return (f"| {label} | {st * 1e3:.2f} | {vs}{share('gemm')} | {share('gates')} | "
            f"{share('optimizer')} | {share('bookkeeping')} | {top} |")
