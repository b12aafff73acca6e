"""``cr.cuda``: GPU availability and control, as ``torch.cuda`` (CuPy underneath).

Where CuPy sees a GPU these act through CuPy: the current device (``set_device``, ``device``),
its properties, CuPy's memory pool (``memory_allocated``, ``empty_cache``, ...), CuPy's streams
and events, and CuPy's per-device random generators. Without a GPU every function behaves as in
PyTorch's CPU build (``pip install torch`` without CUDA): the queries that PyTorch answers
quietly give ``False``/``0``/``[]``/``None`` (``is_available``, ``device_count``,
``memory_allocated``, ``manual_seed``, ``empty_cache``, ...), and the ones that need a device
raise the error PyTorch's CPU build raises (``AssertionError: Torch not compiled with CUDA
enabled`` for ``current_device``, ``synchronize``, ``get_device_properties``, ...), so a program
fails under ``chainrule run`` where and as it fails on torch.

Differences from PyTorch on a GPU: chainrule's GPU arrays have no bfloat16 (CuPy has none), so
``is_bf16_supported()`` is False; the peak-memory counters (``max_memory_allocated``, ...) are
kept from the first call of ``reset_peak_memory_stats`` or of a peak query on (CuPy's pool keeps
no peak; chainrule then counts through a thin allocator wrapper); CuPy's generator state cannot
be read, so ``get_rng_state`` raises ``NotImplementedError``.
"""

from __future__ import annotations

import contextlib
import warnings

from chainrule import _runtime, devices

__all__ = [
    "is_available", "is_initialized", "init", "device_count", "current_device", "set_device",
    "device", "device_of", "get_device_name", "get_device_capability", "get_device_properties",
    "is_bf16_supported", "is_tf32_supported", "synchronize", "ipc_collect",
    "empty_cache", "memory_allocated", "max_memory_allocated", "memory_reserved",
    "max_memory_reserved", "memory_cached", "max_memory_cached", "reset_peak_memory_stats",
    "reset_max_memory_allocated", "reset_max_memory_cached", "reset_accumulated_memory_stats",
    "memory_stats", "memory_summary", "mem_get_info", "set_per_process_memory_fraction",
    "get_per_process_memory_fraction", "can_device_access_peer",
    "manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed", "get_rng_state",
    "set_rng_state", "get_rng_state_all", "set_rng_state_all",
    "Stream", "Event", "StreamContext", "stream", "current_stream", "default_stream", "set_stream",
    "is_current_stream_capturing", "get_arch_list", "get_gencode_flags", "get_sync_debug_mode",
    "OutOfMemoryError", "nvtx", "amp", "memory_stats_as_nested_dict", "set_sync_debug_mode",
    "ExternalStream", "FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor",
    "LongTensor", "IntTensor", "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor",
]

_NOT_COMPILED = "Torch not compiled with CUDA enabled"  # PyTorch's CPU build says this


def is_available() -> bool:
    """True when CuPy is installed and sees a GPU."""
    return devices.cuda_available()


def is_initialized() -> bool:
    """True once chainrule has started using the GPU (CuPy loaded and a device seen)."""
    return devices.loaded_cupy() is not None


def _lazy_init():
    """CuPy, or torch's CPU-build ``AssertionError`` where there is no GPU."""
    if not is_available():
        raise AssertionError(_NOT_COMPILED)
    return devices.xp("cuda")


def init() -> None:
    """Initialise the GPU state (CuPy); ``AssertionError`` without a GPU, as torch's CPU build."""
    _lazy_init()


def device_count() -> int:
    """How many GPUs CuPy sees (0 without CuPy or a GPU)."""
    if not is_available():
        return 0
    return devices.xp("cuda").cuda.runtime.getDeviceCount()


def current_device() -> int:
    """The index of the current GPU (``set_device``, ``with cr.cuda.device(i)``)."""
    return _lazy_init().cuda.runtime.getDevice()


def _device_index(dev, optional: bool = False, allow_cpu: bool = False):
    """The GPU index ``dev`` names (an int, ``"cuda:1"``, ``cr.device``, a ``cuda.device``), as
    torch's ``_get_device_index``: no index and ``optional`` is the current device (None
    without a GPU); -1 for a CPU device where ``allow_cpu``."""
    if isinstance(dev, device):
        return dev.idx
    if isinstance(dev, str):
        dev = devices.device(dev)
    if isinstance(dev, devices.device):
        if dev.type == "cpu" and allow_cpu:
            return -1
        if dev.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {dev}")
        if dev.index is not None:
            return dev.index
    elif isinstance(dev, int) and not isinstance(dev, bool):
        return dev
    if optional:
        return current_device() if is_available() else None
    raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{dev}")


def _checked_index(dev) -> int:
    """The index of GPU ``dev`` (None: the current one), checked against the GPUs there are."""
    cp = _lazy_init()
    idx = _device_index(dev, optional=True)
    if idx < 0 or idx >= cp.cuda.runtime.getDeviceCount():
        raise AssertionError("Invalid device id")
    return idx


def set_device(device) -> None:
    """Make GPU ``device`` (an index, ``"cuda:1"`` or a ``cr.device``) current: tensors made
    with ``device="cuda"`` go there. A negative index does nothing."""
    idx = _device_index(device)
    if idx < 0:
        return
    if not is_available():  # what torch's CPU build raises (torch._C lacks the binding)
        raise AttributeError("module 'torch._C' has no attribute '_cuda_setDevice'")
    cp = devices.xp("cuda")
    if idx >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"CUDA error: invalid device ordinal (device {idx}; "
                           f"{cp.cuda.runtime.getDeviceCount()} GPU(s) visible)")
    cp.cuda.Device(idx).use()


class device:
    """``with cr.cuda.device(1):`` runs the block with GPU 1 current (a negative index or
    None: nothing changes)."""

    def __init__(self, device) -> None:
        self.idx = _device_index(device, optional=True)
        self.prev_idx = -1

    def __enter__(self):
        if self.idx is None or self.idx < 0:
            return self
        if not is_available():
            raise RuntimeError("PyTorch was compiled without CUDA support")
        self.prev_idx = current_device()
        if self.prev_idx != self.idx:
            set_device(self.idx)
        return self

    def __exit__(self, *exc) -> bool:
        if self.idx is not None and self.idx >= 0 and self.prev_idx != self.idx:
            set_device(self.prev_idx)
        return False


class device_of(device):
    """``with cr.cuda.device_of(t):`` makes tensor ``t``'s GPU current (nothing for a CPU
    tensor)."""

    def __init__(self, obj) -> None:
        super().__init__(obj.get_device() if obj.is_cuda else -1)


# ---- properties -----------------------------------------------------------------------------
class _CudaDeviceProperties:
    """What ``get_device_properties`` returns (torch's field names, from CUDA's properties)."""

    def __init__(self, props: dict) -> None:
        def get(key, default=0):
            return props.get(key, default)

        name = get("name", b"")
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.major, self.minor = int(get("major")), int(get("minor"))
        self.total_memory = int(get("totalGlobalMem"))
        self.multi_processor_count = int(get("multiProcessorCount"))
        self.is_integrated = int(get("integrated"))
        self.is_multi_gpu_board = int(get("isMultiGpuBoard"))
        self.max_threads_per_multi_processor = int(get("maxThreadsPerMultiProcessor"))
        self.warp_size = int(get("warpSize", 32))
        self.L2_cache_size = int(get("l2CacheSize"))
        self.regs_per_multiprocessor = int(get("regsPerMultiprocessor"))
        uuid = get("uuid", b"")
        self.uuid = uuid.hex() if isinstance(uuid, bytes) else str(uuid)
        self.pci_bus_id, self.pci_device_id = int(get("pciBusID")), int(get("pciDeviceID"))
        self.pci_domain_id = int(get("pciDomainID"))

    def __repr__(self) -> str:
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, "
                f"minor={self.minor}, total_memory={self.total_memory // 2**20}MB, "
                f"multi_processor_count={self.multi_processor_count}, uuid={self.uuid}, "
                f"pci_bus_id={self.pci_bus_id}, pci_device_id={self.pci_device_id}, "
                f"pci_domain_id={self.pci_domain_id}, "
                f"L2_cache_size={self.L2_cache_size // 2**20}MB)")


def get_device_properties(device=None) -> _CudaDeviceProperties:
    """Name, compute capability, memory, ... of GPU ``device`` (the current one by default)."""
    idx = _checked_index(device)
    return _CudaDeviceProperties(devices.xp("cuda").cuda.runtime.getDeviceProperties(idx))


def get_device_capability(device=None) -> tuple[int, int]:
    """``(major, minor)`` compute capability of the GPU."""
    p = get_device_properties(device)
    return p.major, p.minor


def get_device_name(device=None) -> str:
    return get_device_properties(device).name


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """False: chainrule's GPU arrays are CuPy's, which have no bfloat16 (False without a GPU,
    as in torch's CPU build)."""
    return False


def is_tf32_supported() -> bool:
    """True on a GPU of compute capability 8.0 or later (TF32 matrix products)."""
    return is_available() and get_device_capability()[0] >= 8


def get_arch_list() -> list[str]:
    """The GPU architectures in use (``sm_XY`` of each visible GPU; CuPy compiles its kernels
    for the GPU it runs on); ``[]`` without a GPU."""
    if not is_available():
        return []
    return sorted({"sm_{}{}".format(*get_device_capability(i)) for i in range(device_count())})


def get_gencode_flags() -> str:
    return " ".join(f"-gencode compute=compute_{a[3:]},code={a}" for a in get_arch_list())


def synchronize(device=None) -> None:
    """Wait for all queued work of GPU ``device`` (the current one)."""
    idx = _checked_index(device)
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        cp.cuda.Device(idx).synchronize()


def ipc_collect() -> None:
    """Nothing to collect (CuPy's IPC handles are freed with their arrays)."""
    _lazy_init()


def get_sync_debug_mode() -> int:
    """0: chainrule does not warn on synchronising calls."""
    _lazy_init()
    return 0


def set_sync_debug_mode(debug_mode) -> None:
    """Only ``0``/``"default"`` (no warnings on synchronising calls) is available."""
    _lazy_init()
    if debug_mode not in (0, "default"):
        raise NotImplementedError("set_sync_debug_mode: chainrule has no warnings or errors on "
                                  "synchronising calls; only 0 ('default') is available")


def is_current_stream_capturing() -> bool:
    """False: chainrule does not capture CUDA graphs."""
    if not is_available():
        raise RuntimeError("Tried to instantiate dummy base class _cuda_isCurrentStreamCapturing")
    return False


def can_device_access_peer(device, peer_device) -> bool:
    """Whether GPU ``device`` can read ``peer_device``'s memory directly."""
    a, b = _checked_index(device), _checked_index(peer_device)
    return a == b or bool(devices.xp("cuda").cuda.runtime.deviceCanAccessPeer(a, b))


# ---- memory: CuPy's pool ----------------------------------------------------------------------
_peak: dict = {}  # device index -> [peak used bytes, peak reserved bytes], once tracked
_tracking = False


def _pool():
    return devices.xp("cuda").get_default_memory_pool()


def _track_peaks() -> None:
    """Count peaks from now on: CuPy's pool keeps none, so every allocation goes through a
    wrapper of the pool's ``malloc`` that notes the pool's use after it."""
    global _tracking
    if _tracking:
        return
    _tracking = True
    cp = devices.xp("cuda")
    pool = _pool()
    for i in range(device_count()):
        with cp.cuda.Device(i):
            _peak[i] = [pool.used_bytes(), pool.total_bytes()]
    inner = cp.cuda.get_allocator()

    def malloc(size):
        mem = inner(size)
        p = _peak.get(cp.cuda.runtime.getDevice())
        if p is not None:
            used, total = pool.used_bytes(), pool.total_bytes()
            if used > p[0]:
                p[0] = used
            if total > p[1]:
                p[1] = total
        return mem

    cp.cuda.set_allocator(malloc)


def _used(idx: int) -> tuple[int, int]:
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        return _pool().used_bytes(), _pool().total_bytes()


def memory_stats(device=None) -> dict:
    """``allocated_bytes.all.{current,peak}`` and ``reserved_bytes.all.{current,peak}`` of
    the GPU (CuPy's pool); ``{}`` without a GPU, as torch's CPU build."""
    if not is_initialized():
        return {}
    idx = _checked_index(device)
    _track_peaks()
    used, total = _used(idx)
    peak = _peak.setdefault(idx, [used, total])
    peak[0], peak[1] = max(peak[0], used), max(peak[1], total)
    return {"allocated_bytes.all.current": used, "allocated_bytes.all.peak": peak[0],
            "reserved_bytes.all.current": total, "reserved_bytes.all.peak": peak[1],
            "active_bytes.all.current": used, "active_bytes.all.peak": peak[0]}


def memory_allocated(device=None) -> int:
    """Bytes held by live arrays on the GPU (CuPy's pool); 0 without a GPU."""
    if not is_initialized():
        return 0
    return _used(_checked_index(device))[0]


def memory_reserved(device=None) -> int:
    """Bytes the pool holds from the GPU (used and cached); 0 without a GPU."""
    if not is_initialized():
        return 0
    return _used(_checked_index(device))[1]


def max_memory_allocated(device=None) -> int:
    """The peak of ``memory_allocated`` since ``reset_peak_memory_stats`` (or since the first
    peak query)."""
    return memory_stats(device).get("allocated_bytes.all.peak", 0)


def max_memory_reserved(device=None) -> int:
    return memory_stats(device).get("reserved_bytes.all.peak", 0)


def memory_cached(device=None) -> int:
    """Deprecated name of ``memory_reserved``."""
    warnings.warn("`torch.cuda.memory_cached` has been renamed to `torch.cuda.memory_reserved`",
                  FutureWarning, stacklevel=2)
    return memory_reserved(device)


def max_memory_cached(device=None) -> int:
    """Deprecated name of ``max_memory_reserved``."""
    warnings.warn("`torch.cuda.max_memory_cached` has been renamed to "
                  "`torch.cuda.max_memory_reserved`", FutureWarning, stacklevel=2)
    return max_memory_reserved(device)


def reset_peak_memory_stats(device=None) -> None:
    """Start the peaks afresh at the current use."""
    if not is_available():
        raise AttributeError("module 'torch._C' has no attribute '_cuda_resetPeakMemoryStats'")
    idx = _checked_index(device)
    _track_peaks()
    _peak[idx] = list(_used(idx))


def reset_max_memory_allocated(device=None) -> None:
    warnings.warn("torch.cuda.reset_max_memory_allocated now calls "
                  "torch.cuda.reset_peak_memory_stats, which resets /all/ peak memory stats.",
                  FutureWarning, stacklevel=2)
    reset_peak_memory_stats(device)


def reset_max_memory_cached(device=None) -> None:
    warnings.warn("torch.cuda.reset_max_memory_cached now calls "
                  "torch.cuda.reset_peak_memory_stats, which resets /all/ peak memory stats.",
                  FutureWarning, stacklevel=2)
    reset_peak_memory_stats(device)


def reset_accumulated_memory_stats(device=None) -> None:
    """Nothing accumulates (CuPy's pool counts no allocations)."""
    if not is_available():
        raise AttributeError(
            "module 'torch._C' has no attribute '_cuda_resetAccumulatedMemoryStats'")
    _checked_index(device)


def memory_summary(device=None, abbreviated: bool = False) -> str:
    """A short table of the GPU's memory counters."""
    stats = memory_stats(device)
    if not stats:  # torch's CPU build fails the same way (its table reads a missing key)
        raise KeyError("allocated_bytes.all.current")
    rows = [("Allocated memory", "allocated_bytes"), ("Reserved memory", "reserved_bytes")]
    lines = [f"chainrule CUDA memory summary, device {_checked_index(device)} (CuPy's pool)",
             f"{'Metric':<24}{'Cur Usage':>16}{'Peak Usage':>16}"]
    for label, key in rows:
        lines.append(f"{label:<24}{stats[key + '.all.current']:>16,}"
                     f"{stats[key + '.all.peak']:>16,}")
    return "\n".join(lines) + "\n"


def empty_cache() -> None:
    """Return the pool's cached, unused blocks to the GPU (nothing without a GPU)."""
    if not is_initialized():
        return
    cp = devices.xp("cuda")
    _pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()


def mem_get_info(device=None) -> tuple[int, int]:
    """``(free, total)`` bytes of the GPU, as the driver reports them."""
    idx = _checked_index(device)
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)


def set_per_process_memory_fraction(fraction, device=None) -> None:
    """Cap CuPy's pool on the GPU at ``fraction`` of its memory."""
    idx = _checked_index(device)
    if not isinstance(fraction, float):
        raise TypeError("Invalid type for fraction argument, must be `float`")
    if fraction < 0 or fraction > 1:
        raise ValueError(f"Invalid fraction value: {fraction}. Allowed range: 0~1")
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        _pool().set_limit(fraction=fraction)


def get_per_process_memory_fraction(device=None) -> float:
    idx = _checked_index(device)
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        limit = _pool().get_limit()
    return 1.0 if limit == 0 else limit / get_device_properties(idx).total_memory


OutOfMemoryError = _runtime.OutOfMemoryError  # torch.cuda's is torch's (CuPy raises its own
# cupy.cuda.memory.OutOfMemoryError, a MemoryError)


def memory_stats_as_nested_dict(device=None) -> dict:
    """``memory_stats`` as nested dicts (``{"allocated_bytes": {"all": {"current": ...}}}``)."""
    out: dict = {}
    for key, value in memory_stats(device).items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


# ---- random: CuPy's generator on each GPU -----------------------------------------------------


def manual_seed(seed) -> None:
    """Seed the current GPU's generator (nothing without a GPU)."""
    seed = int(seed)
    if is_available():
        devices.seed_gpu(current_device(), seed)


def manual_seed_all(seed) -> None:
    """Seed every GPU's generator (nothing without a GPU)."""
    devices.seed_all_gpus(int(seed))


def seed() -> None:
    """Seed the current GPU's generator from the operating system's entropy."""
    if is_available():
        import os

        devices.seed_gpu(current_device(), int.from_bytes(os.urandom(8), "little"))


def seed_all() -> None:
    """One seed from the operating system's entropy for every GPU."""
    if is_available():
        import os

        s = int.from_bytes(os.urandom(8), "little")
        for i in range(device_count()):
            devices.seed_gpu(i, s)


def initial_seed() -> int:
    """The seed of the current GPU's generator (one is drawn and set if none was)."""
    idx = current_device()
    if idx not in devices.gpu_seeds:
        import os

        devices.seed_gpu(idx, int.from_bytes(os.urandom(8), "little"))
    return devices.gpu_seeds[idx]


_NO_RNG_STATE = ("{}: CuPy's GPU generator (cuRAND) cannot report its position, so chainrule "
                 "has no GPU generator state; reseed with cr.cuda.manual_seed instead")


def get_rng_state(device="cuda"):
    """Not available on GPUs (see the module's notes); ``AssertionError`` without a GPU."""
    _lazy_init()
    raise NotImplementedError(_NO_RNG_STATE.format("get_rng_state"))


def set_rng_state(new_state, device="cuda") -> None:
    """Not available on GPUs; without a GPU, as torch's CPU build, nothing happens."""
    if not hasattr(new_state, "clone"):
        raise AttributeError(f"'{type(new_state).__name__}' object has no attribute 'clone'")
    if is_available():
        raise NotImplementedError(_NO_RNG_STATE.format("set_rng_state"))


def get_rng_state_all() -> list:
    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states) -> None:
    for i, state in enumerate(new_states):
        set_rng_state(state, i)


# ---- streams and events: CuPy's ---------------------------------------------------------------
class Stream:
    """A CUDA stream (a ``cupy.cuda.Stream``): GPU work queued while it is current runs in its
    order. ``with cr.cuda.stream(s):`` makes it current."""

    def __new__(cls, device=None, priority: int = 0, **kwargs):
        if not is_available():
            raise RuntimeError("torch.cuda.Stream requires CUDA support")
        return super().__new__(cls)

    def __init__(self, device=None, priority: int = 0, **kwargs) -> None:
        cp = devices.xp("cuda")
        self.device_index = _device_index(device, optional=True)
        self.priority = priority
        with cp.cuda.Device(self.device_index):
            given = kwargs.get("_cupy")
            self._cp = given if given is not None else (
                cp.cuda.Stream(non_blocking=True) if priority == 0
                else cp.cuda.Stream(non_blocking=True, priority=priority))

    @classmethod
    def _wrap(cls, cp_stream, idx: int) -> Stream:
        return cls(idx, _cupy=cp_stream)

    @property
    def device(self) -> devices.device:
        return devices.device("cuda", self.device_index)

    @property
    def cuda_stream(self) -> int:
        return int(self._cp.ptr)

    def synchronize(self) -> None:
        self._cp.synchronize()

    def query(self) -> bool:
        return bool(self._cp.done)

    def wait_event(self, event: Event) -> None:
        self._cp.wait_event(event._cp)

    def wait_stream(self, stream: Stream) -> None:
        self.wait_event(stream.record_event())

    def record_event(self, event: Event | None = None) -> Event:
        event = Event() if event is None else event
        event.record(self)
        return event

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and self.cuda_stream == other.cuda_stream \
            and self.device_index == other.device_index

    def __hash__(self) -> int:
        return hash((self.cuda_stream, self.device_index))

    def __enter__(self) -> Stream:
        self._ctx = stream(self)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return self._ctx.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<torch.cuda.Stream device={self.device} cuda_stream={self.cuda_stream:#x}>"


class ExternalStream(Stream):
    """A stream made elsewhere, from its ``cudaStream_t`` pointer (``cupy.cuda.ExternalStream``)."""

    def __init__(self, stream_ptr: int, device=None, **kwargs) -> None:
        cp = devices.xp("cuda")
        idx = _device_index(device, optional=True)
        super().__init__(idx, _cupy=cp.cuda.ExternalStream(int(stream_ptr), idx))


class Event:
    """A CUDA event (a ``cupy.cuda.Event``): marks a point in a stream; ``elapsed_time``
    between two recorded events, in milliseconds."""

    def __new__(cls, enable_timing: bool = False, blocking: bool = False,
                interprocess: bool = False, external: bool = False):
        if not is_available():
            raise RuntimeError("Tried to instantiate dummy base class Event")
        return super().__new__(cls)

    def __init__(self, enable_timing: bool = False, blocking: bool = False,
                 interprocess: bool = False, external: bool = False) -> None:
        self.enable_timing = enable_timing
        self._cp = devices.xp("cuda").cuda.Event(block=blocking, disable_timing=not enable_timing,
                                                 interprocess=interprocess)

    def record(self, stream: Stream | None = None) -> None:
        self._cp.record(None if stream is None else stream._cp)

    def wait(self, stream: Stream | None = None) -> None:
        (current_stream() if stream is None else stream).wait_event(self)

    def query(self) -> bool:
        return bool(self._cp.done)

    def synchronize(self) -> None:
        self._cp.synchronize()

    def elapsed_time(self, end_event: Event) -> float:
        """Milliseconds from this event to ``end_event`` (both recorded, with timing)."""
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        return float(devices.xp("cuda").cuda.get_elapsed_time(self._cp, end_event._cp))


class StreamContext:
    """``with StreamContext(s):`` makes stream ``s`` (and its GPU) current; None: nothing."""

    def __init__(self, stream: Stream | None) -> None:
        self.stream = stream
        self.idx = -1 if stream is None else stream.device_index

    def __enter__(self):
        if self.stream is None:
            return None
        self._device = device(self.stream.device_index)
        self._device.__enter__()
        self._prev = devices.xp("cuda").cuda.get_current_stream()
        self.stream._cp.use()
        return self.stream

    def __exit__(self, *exc) -> bool:
        if self.stream is not None:
            self._prev.use()
            self._device.__exit__(*exc)
        return False


def stream(stream: Stream | None) -> StreamContext:
    """``with cr.cuda.stream(s):`` queues the block's GPU work on ``s``."""
    return StreamContext(stream)


def current_stream(device=None) -> Stream:
    """The stream GPU work is queued on now (CuPy's current stream)."""
    idx = _checked_index(device)
    cp = devices.xp("cuda")
    with cp.cuda.Device(idx):
        return Stream._wrap(cp.cuda.get_current_stream(), idx)


def default_stream(device=None) -> Stream:
    """The GPU's default (null) stream."""
    idx = _checked_index(device)
    return Stream._wrap(devices.xp("cuda").cuda.Stream.null, idx)


def set_stream(stream: Stream | None) -> None:
    """Make ``stream`` current (prefer ``with cr.cuda.stream(s):``); None does nothing."""
    if stream is None:
        return
    set_device(stream.device_index)
    stream._cp.use()


# ---- NVTX ranges (profiler markers) -----------------------------------------------------------
class _Nvtx:
    """``cr.cuda.nvtx.range_push/range_pop/mark/range``: CuPy's NVTX markers."""

    def _nvtx(self):
        if not is_available():
            raise RuntimeError("NVTX functions not installed. Are you sure you have a CUDA build?")
        return getattr(devices.xp("cuda").cuda, "nvtx", None)

    def range_push(self, msg: str) -> int:
        nv = self._nvtx()
        if nv is not None:
            nv.RangePush(msg)
        return 0

    def range_pop(self) -> int:
        nv = self._nvtx()
        if nv is not None:
            nv.RangePop()
        return 0

    def mark(self, msg: str) -> None:
        nv = self._nvtx()
        if nv is not None:
            nv.Mark(msg)

    @contextlib.contextmanager
    def range(self, msg: str, *args, **kwargs):
        self.range_push(msg.format(*args, **kwargs))
        try:
            yield
        finally:
            self.range_pop()


nvtx = _Nvtx()


# ---- legacy typed constructors: cr.cuda.FloatTensor([1, 2]) ----------------------------------
def _legacy_cuda_type(name: str, dtype_name: str):
    """``torch.cuda.FloatTensor(data)`` / ``(*sizes)``: a tensor of that dtype on the current
    GPU; ``isinstance(t, cr.cuda.FloatTensor)`` for float32 GPU tensors."""

    def __new__(cls, *args):
        if not is_available():
            raise TypeError(f"type torch.cuda.{name} not available. {_NOT_COMPILED}.")
        from chainrule import dtypes
        from chainrule.creation import tensor, zeros

        d, dev = getattr(dtypes, dtype_name), devices.cuda_device()
        if len(args) == 1 and not isinstance(args[0], int):
            return tensor(args[0], dtype=d, device=dev)
        return zeros(*args, dtype=d, device=dev)

    def __instancecheck__(cls, obj):
        from chainrule.tensor import Tensor

        return isinstance(obj, Tensor) and obj.is_cuda and obj.dtype.name == dtype_name

    meta = type(f"{name}Meta", (type,), {"__instancecheck__": __instancecheck__})
    return meta(name, (), {"__new__": __new__, "__module__": __name__,
                           "__doc__": f"torch.cuda.{name}: {dtype_name} GPU tensors (legacy)."})


FloatTensor = _legacy_cuda_type("FloatTensor", "float32")
DoubleTensor = _legacy_cuda_type("DoubleTensor", "float64")
HalfTensor = _legacy_cuda_type("HalfTensor", "float16")
BFloat16Tensor = _legacy_cuda_type("BFloat16Tensor", "bfloat16")
LongTensor = _legacy_cuda_type("LongTensor", "int64")
IntTensor = _legacy_cuda_type("IntTensor", "int32")
ShortTensor = _legacy_cuda_type("ShortTensor", "int16")
CharTensor = _legacy_cuda_type("CharTensor", "int8")
ByteTensor = _legacy_cuda_type("ByteTensor", "uint8")
BoolTensor = _legacy_cuda_type("BoolTensor", "bool")


from chainrule.amp.deprecated import namespace as _amp_namespace  # noqa: E402

amp = _amp_namespace("cuda")  # cr.cuda.amp.autocast / GradScaler, as torch.cuda.amp
