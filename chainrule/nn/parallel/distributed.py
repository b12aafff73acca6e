"""DistributedDataParallel: one model replica per process, gradients averaged during backward.

At construction rank 0's parameters and buffers are broadcast to every rank. Parameters are
grouped into buckets (reverse registration order, which is roughly the order backward produces
their gradients; at most ``bucket_cap_mb`` each, the first one 1 MiB). Every parameter has a
post-accumulate-grad hook: when the engine has accumulated its ``.grad`` (its last consumer has
run), the hook copies it into its bucket; a full bucket starts a non-blocking all-reduce at
once, while the rest of the backward goes on. When the last bucket is launched, the hook waits
for all of them and writes the averages back into ``.grad``, before ``backward()`` returns.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

import numpy as np

from chainrule import devices
from chainrule.nn.module import Module
from chainrule.tensor import Tensor, wrap

__all__ = ["DistributedDataParallel", "DDP"]

_FIRST_BUCKET_BYTES = 1 << 20
_UNFINISHED = (
    "Expected to have finished reduction in the prior iteration before starting a new one. This "
    "error indicates that your module has parameters that were not used in producing loss. You "
    "can enable unused parameter detection by passing the keyword argument "
    "`find_unused_parameters=True` to `chainrule.nn.parallel.DistributedDataParallel`, and by "
    "making sure all `forward` function outputs participate in calculating loss. Parameters "
    "that did not receive a gradient on rank {rank}: {names}"
)


class _Bucket:
    """Parameters whose gradients travel in one all-reduce (one dtype, one device)."""

    def __init__(self, params: list, names: list) -> None:
        self.params, self.names = params, names
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.buffer = None   # allocated on first use, on the parameters' device
        self.pending = 0     # parameters not yet ready in this iteration
        self.request = None


class DistributedDataParallel(Module):
    """Data parallelism over the processes of the default group (torch's DDP).

    Wrap the model after moving it to its device; ``ddp.module`` is the model. Gradients are
    averaged over ranks during ``backward()``; ``no_sync()`` skips that (accumulation);
    ``find_unused_parameters=True`` lets parameters that a forward did not use take part.
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False, **kwargs: Any) -> None:
        from chainrule.distributed.mpi_backend import MPIBackend
        from chainrule.distributed.process_group import world

        super().__init__()
        self.module = module
        w = world(process_group)
        object.__setattr__(self, "_world", w)
        self.device_ids, self.output_device, self.dim = device_ids, output_device, dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view, self.static_graph = gradient_as_bucket_view, static_graph
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * (1 << 20))
        named, seen = [], set()
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append((name, p))
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have "
                               "any parameter that requires a gradient.")
        object.__setattr__(self, "_params", [p for _, p in named])
        self._param_names = [n for n, _ in named]
        self._verify_same_model()
        self._broadcast_state(list(module.parameters()) + list(module.buffers()))
        # DDP's all-reduces go on a communicator of their own (no ordering against others)
        object.__setattr__(self, "_comm", MPIBackend(w.mpi_comm))
        self._buckets = self._make_buckets(named)
        where = {}
        for bi, b in enumerate(self._buckets):
            for k, p in enumerate(b.params):
                where[id(p)] = (bi, k)
        self._where = where
        self._state = "idle"          # idle | armed (forward done) | reducing | (no_sync)
        self._ready: set = set()
        self._next_bucket = 0
        self._unused: list = []
        self._in_flight: list = []   # MPI requests of the buckets launched in this backward
        self._used_without_sync: set = set()
        self._grad_hooks = [p.register_post_accumulate_grad_hook(self._grad_ready)
                       for p in self._params]

    # ---- construction ------------------------------------------------------------------------
    def _verify_same_model(self) -> None:
        import chainrule.distributed as dist

        layout = repr([(tuple(p.shape), str(p.dtype)) for p in self._params]).encode()
        sig = np.array([len(self._params), sum(p.numel() for p in self._params),
                        zlib.crc32(layout)], np.int64)
        rows = [wrap(np.zeros_like(sig)) for _ in range(self._world.size)]
        dist.all_gather(rows, wrap(sig))
        for r, row in enumerate(rows):
            if not (row._data == sig).all():
                raise RuntimeError(
                    f"DDP expects same model across all ranks, but rank {self._world.rank} has "
                    f"{sig[0]} params ({sig[1]} elements) while rank {r} has {row._data[0]} "
                    f"params ({row._data[1]} elements), or their shapes or dtypes differ")

    def _broadcast_state(self, tensors: list) -> None:
        """Rank 0's values of ``tensors`` on every rank (one broadcast per dtype and device)."""
        import chainrule.distributed as dist

        if self._world.size == 1:
            return
        groups: dict = {}
        for t in tensors:
            groups.setdefault((str(t._data.dtype), devices.is_gpu_array(t._data)), []).append(t)
        for ts in groups.values():
            xp = devices.xp_of(ts[0]._data)
            flat = wrap(xp.concatenate([t._data.reshape(-1) for t in ts]))
            dist.broadcast(flat, 0)
            n = 0
            for t in ts:
                k = t._data.size
                t._data = flat._data[n:n + k].reshape(t._data.shape).copy()
                n += k

    def _make_buckets(self, named: list) -> list:
        buckets: list = []
        open_: dict = {}
        cap = _FIRST_BUCKET_BYTES
        for name, p in reversed(named):
            key = (str(p._data.dtype), devices.is_gpu_array(p._data))
            group = open_.setdefault(key, ([], [], [0]))
            group[0].append(p)
            group[1].append(name)
            group[2][0] += p._data.nbytes
            if group[2][0] >= cap:
                buckets.append(_Bucket(group[0], group[1]))
                del open_[key]
                cap = self.bucket_bytes_cap
        buckets.extend(_Bucket(ps, ns) for ps, ns, _ in open_.values())
        return buckets

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        from chainrule.autograd.grad_mode import is_grad_enabled

        if self._state == "reducing":
            missing = [n for p, n in zip(self._params, self._param_names)
                       if id(p) not in self._ready]
            raise RuntimeError(_UNFINISHED.format(rank=self._world.rank,
                                                  names=", ".join(missing)))
        if self.broadcast_buffers and self.require_forward_param_sync:
            self._broadcast_state(list(self.module.buffers()))
        out = self.module(*inputs, **kwargs)
        if is_grad_enabled() and self.require_backward_grad_sync:
            self._state = "armed"
            self._ready = set()
            self._next_bucket = 0
            self._in_flight = []
            for b in self._buckets:
                b.pending, b.request = len(b.params), None
            if self.find_unused_parameters:
                reached = _leaves_reached(out)
                self._unused = [p for p in self._params if id(p) not in reached]
        elif is_grad_enabled():
            self._state = "no_sync"
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate gradients locally; the first one after syncs."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # ---- backward: the hooks ----------------------------------------------------------------
    def _grad_ready(self, p: Tensor) -> None:
        state = self._state
        if state == "no_sync":
            self._used_without_sync.add(id(p))
            return
        if state == "idle":
            return  # a backward through a forward that did not go through this wrapper
        if state == "armed":
            self._state = "reducing"
            for q in self._unused:  # unused this time: ready now, with what they have
                self._mark(q)
        if id(p) in self._ready:
            raise RuntimeError(
                f"Expected to mark a variable ready only once: parameter "
                f"{self._param_names[self._params.index(p)]} got a second gradient in one "
                f"iteration (two backward passes through one forward need no_sync())")
        self._mark(p)

    def _mark(self, p: Tensor) -> None:
        self._ready.add(id(p))
        bi, k = self._where[id(p)]
        b = self._buckets[bi]
        if b.buffer is None:
            xp = np if self._on_host(p) else devices.xp_of(p._data)
            b.buffer = xp.empty(b.numel, p._data.dtype)
        off, n = b.offsets[k], p.numel()
        g = p._grad
        if g is None:
            b.buffer[off:off + n] = 0
        else:
            data = g._data
            if self._on_host(p) and devices.is_gpu_array(data):
                data = data.get()
            b.buffer[off:off + n] = data.reshape(-1)
        b.pending -= 1
        if b.pending == 0:
            self._launch_ready()
        elif self._in_flight:  # every gradient that comes in lets MPI move the ones in flight
            from mpi4py import MPI

            MPI.Request.Testall(self._in_flight)

    def _on_host(self, p: Tensor) -> bool:
        return not devices.is_gpu_array(p._data) or self._world.backend_for(p._data).name \
            == "mpi"

    def _launch_ready(self) -> None:
        """Start the all-reduces of the full buckets, in bucket order (the same on every rank)."""
        buckets = self._buckets
        while self._next_bucket < len(buckets) and buckets[self._next_bucket].pending == 0:
            b = buckets[self._next_bucket]
            be = self._comm if self._on_host(b.params[0]) else self._world.backend_for(b.buffer)
            with self._world.guard("DDP gradient all-reduce"):
                b.request = be.all_reduce(b.buffer, "sum", True)
            if hasattr(b.request, "Test"):
                self._in_flight.append(b.request)
            self._next_bucket += 1
        if self._next_bucket == len(buckets):
            self._finish()

    def _finish(self) -> None:
        """Wait for every bucket; write the averages into ``.grad``."""
        from chainrule.distributed.process_group import wait_request

        globally_used = self._global_use() if self.find_unused_parameters else None
        scale = 1.0 / self._world.size
        for b in self._buckets:
            req = b.request
            if hasattr(req, "Wait"):
                wait_request(self._world, req, "DDP gradient all-reduce")
            elif req is not None:
                devices.loaded_cupy().cuda.get_current_stream().wait_event(req)
            for p, off in zip(b.params, b.offsets):
                if globally_used is not None and not globally_used[id(p)]:
                    continue  # no rank used it: its .grad stays as it was
                avg = b.buffer[off:off + p.numel()].reshape(p._data.shape)
                _write_average(p, avg, scale)
        self._state = "idle"
        self._used_without_sync = set()
        self._in_flight = []

    def _global_use(self) -> dict:
        import chainrule.distributed as dist

        used = np.array([id(p) not in {id(q) for q in self._unused}
                         or id(p) in self._used_without_sync for p in self._params], np.int32)
        t = wrap(used)
        dist.all_reduce(t)
        return {id(p): bool(u) for p, u in zip(self._params, t._data)}

    def __getstate__(self):
        raise TypeError("DistributedDataParallel cannot be pickled; save ddp.module.state_dict()")


def _write_average(p: Tensor, total, scale: float) -> None:
    """``p.grad`` = ``total * scale``: into the gradient's own memory when it is a plain array of
    this backward (as torch copies the bucket into ``.grad``), else a new gradient."""
    g = p._grad
    xp = devices.xp_of(p._data)
    if (g is not None and g._grad_fn is None and g._base is None and xp is devices.xp_of(g._data)
            and g._data.shape == total.shape and g._data.dtype == total.dtype
            and g._data.flags.c_contiguous and devices.is_writable(g._data)):
        xp.multiply(devices.asarray_on(total, like=g._data), scale, out=g._data)
        g._bump_version()
    else:
        p._grad = wrap(devices.asarray_on(total * scale, like=p._data))


def _leaves_reached(out) -> set:
    """ids of the leaf Tensors that the graph behind ``out`` (nested Tensors) reaches."""
    from chainrule.autograd.graph import nodes_in_order, parents

    roots, todo = [], [out]
    while todo:
        x = todo.pop()
        if isinstance(x, Tensor):
            if x._grad_fn is not None:
                roots.append(x._grad_fn)
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
        elif isinstance(x, dict):
            todo.extend(x.values())
    reached = set()
    for node in nodes_in_order(roots):
        for e in parents(node):
            if e is not None and e[0] == "leaf":
                reached.add(id(e[1]))
    return reached


DDP = DistributedDataParallel
