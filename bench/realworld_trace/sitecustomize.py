"""Step tracer for bench/realworld.py: the same start and the same random stream for PyTorch and
chainrule, and each step's loss and time. Does nothing unless CHAINRULE_TRACE_OUT is set.

bench/realworld.py puts this folder on PYTHONPATH, so Python imports this file at start-up
(``sitecustomize``) in the program's process, under PyTorch (``python PROGRAM``) and under
chainrule (``chainrule run PROGRAM``) alike. Once ``torch`` (either) is imported it wraps three
things, none specific to a program:

- ``Module.__call__``: the first call of each outermost module (a model; the order of first
  calls numbers them) records its ``state_dict`` and the RNG state (CHAINRULE_TRACE_OUT); with
  CHAINRULE_TRACE_FROM (a PyTorch run's trace) it first compares its own with the reference's,
  then loads the reference's weights and RNG state: both runs go on from the same start, and as
  chainrule's generator is PyTorch's stream, they draw the same batches, noise and dropout masks.
- ``Tensor.backward``: each call is a step; its loss (one-element tensors) and start time are
  recorded. CHAINRULE_TRACE_STEPS=N ends the process (status 0) when step N+1 starts.
- CHAINRULE_TRACE_DTYPE=float64 sets the default dtype before the program runs.
- CHAINRULE_TRACE_BREAKDOWN=1 (chainrule only): from step 2 on, the steps' CPU time is split into
  gates, GEMMs, optimizer and bookkeeping (``bench/part_timer.py``); written as "breakdown".
- Python's ``random`` and NumPy's global generator are seeded (CHAINRULE_TRACE_SEED, default 0)
  at start-up, so a program that draws its own seed from them (dcgan) draws the same one.

Several processes of one run (nanoGPT's train.py then sample.py) are numbered p0, p1, ...; run
i replays the reference's run i. Files: ``p<i>.json`` (losses, times, notes), ``p<i>_m<k>.npz``
(weights), ``p<i>_m<k>_rng.npy``.
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import sys
import time

_OUT = os.environ.get("CHAINRULE_TRACE_OUT")
_BREAKDOWN_FROM = 2  # steps of warm-up before the breakdown counts


def _claim_index(folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    i = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"p{i}.claim"), os.O_CREAT | os.O_EXCL))
            return i
        except FileExistsError:
            i += 1


class _Tracer:
    def __init__(self, out: str) -> None:
        self.out = out
        self.ref = os.environ.get("CHAINRULE_TRACE_FROM") or None
        self.stop = int(os.environ.get("CHAINRULE_TRACE_STEPS", "0") or 0)
        self.index = _claim_index(out)
        self.losses: list = []
        self.times: list = []
        self.models: list = []  # one entry per outermost module's first call
        self.seen: list = []    # those modules (kept alive, so ids stay theirs)
        self.depth = 0
        self.torch = None
        self.written = False
        self.start = time.perf_counter()
        self.timer = None  # with CHAINRULE_TRACE_BREAKDOWN: a PartTimer from step _BREAKDOWN_FROM
        self.stopped = False

    def path(self, name: str) -> str:
        return os.path.join(self.out, f"p{self.index}{name}")

    # -- hooks --
    def patch(self, torch) -> None:
        self.torch = torch
        dtype = os.environ.get("CHAINRULE_TRACE_DTYPE")
        if dtype:
            torch.set_default_dtype(getattr(torch, dtype))
        tracer = self
        module_call = torch.nn.Module.__call__
        tensor_backward = torch.Tensor.backward

        def __call__(self, *args, **kwargs):
            if tracer.depth == 0 and not any(m is self for m in tracer.seen):
                tracer.seen.append(self)
                tracer.first_call(self)
            tracer.depth += 1
            try:
                return module_call(self, *args, **kwargs)
            finally:
                tracer.depth -= 1

        def backward(self, *args, **kwargs):
            tracer.step(self)
            return tensor_backward(self, *args, **kwargs)

        torch.nn.Module.__call__ = __call__
        torch.Tensor.backward = backward

    def first_call(self, module) -> None:
        import numpy as np

        torch = self.torch
        k = len(self.models)
        own = {n: t.detach().cpu().numpy() for n, t in module.state_dict().items()
               if hasattr(t, "detach")}
        rng = np.asarray(torch.get_rng_state().numpy())
        note = {"module": type(module).__name__, "tensors": len(own)}
        ref_w, ref_rng = self.path(f"_m{k}.npz"), self.path(f"_m{k}_rng.npy")
        if self.ref:
            ref_w = os.path.join(self.ref, f"p{self.index}_m{k}.npz")
            ref_rng = os.path.join(self.ref, f"p{self.index}_m{k}_rng.npy")
            if os.path.exists(ref_w):
                with np.load(ref_w, allow_pickle=False) as f:
                    ref = {n: f[n] for n in f.files}
                if set(ref) != set(own) or any(ref[n].shape != own[n].shape for n in ref):
                    note["replayed"] = False
                    note["layout_differs"] = sorted(set(ref) ^ set(own))[:5] or "shapes"
                else:
                    note["init_max_abs_diff"] = max(
                        (float(np.max(np.abs(own[n].astype(np.float64) - ref[n])))
                         for n in ref if own[n].size), default=0.0)
                    module.load_state_dict({n: torch.from_numpy(np.array(a)).to(
                        module.state_dict()[n].dtype) for n, a in ref.items()})
                    note["replayed"] = True
                ref_state = np.load(ref_rng, allow_pickle=False)
                note["rng_was_equal"] = bool(np.array_equal(ref_state, rng))
                torch.set_rng_state(torch.from_numpy(ref_state.copy()))
        else:
            np.savez(ref_w, **own)
            np.save(ref_rng, rng)
        self.models.append(note)

    def step(self, loss) -> None:
        if len(self.times) == _BREAKDOWN_FROM and os.environ.get("CHAINRULE_TRACE_BREAKDOWN") \
                and getattr(self.torch, "__name__", "").startswith("chainrule"):
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            from part_timer import PartTimer

            self.timer = PartTimer()
        now = time.perf_counter()
        if self.stop and len(self.times) >= self.stop:
            self.times.append(now)
            self.stopped = True
            self.write()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        self.times.append(now)
        try:
            self.losses.append(float(loss.detach().reshape(-1)[0].item())
                               if loss.numel() == 1 else None)
        except Exception:  # noqa: BLE001  (a loss we cannot read is recorded as missing)
            self.losses.append(None)

    def write(self) -> None:
        if self.written or (not self.times and not self.models):
            return
        self.written = True
        data = {"losses": self.losses, "times": self.times, "models": self.models,
                "library": getattr(self.torch, "__name__", None), "argv": sys.argv,
                "wall": time.perf_counter() - self.start}
        if self.timer is not None:
            # steps from _BREAKDOWN_FROM to the stop; a program that ended on its own: to its end
            steps = len(self.times) - _BREAKDOWN_FROM - self.stopped
            data["breakdown"] = {**self.timer.parts(steps, top=8), "steps": steps,
                                 "to_the_end": not self.stopped}
        tmp = self.path(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path(".json"))


def _install(out: str) -> None:
    import random

    seed = int(os.environ.get("CHAINRULE_TRACE_SEED", "0") or 0)
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed)
    tracer = _Tracer(out)
    atexit.register(tracer.write)
    original = builtins.__import__

    def __import__(name, *args, **kwargs):  # noqa: A001  (wraps the builtin until torch loads)
        module = original(name, *args, **kwargs)
        torch = sys.modules.get("torch")
        if torch is None or tracer.torch is not None or \
                getattr(getattr(torch, "__spec__", None), "_initializing", False):
            return module
        builtins.__import__ = original  # before touching torch (its lazy attributes import)
        if hasattr(torch, "nn") and hasattr(torch, "Tensor"):
            tracer.patch(torch)
        else:
            builtins.__import__ = __import__
        return module

    builtins.__import__ = __import__


if _OUT:
    _install(_OUT)
