"""``cr.cuda`` on a machine without a GPU behaves as ``torch.cuda`` in PyTorch's CPU build.

Each call runs on both (torch installed, CPU build) and must give the same result, or raise the
same error type with the same message, and warn the same way: a program then fails under
``chainrule run`` where, and as, it fails on torch. Skipped where a GPU is present (tests/
test_cuda.py covers that side).
"""

from __future__ import annotations

import warnings

import pytest

import chainrule as cr

pytestmark = pytest.mark.skipif(cr.cuda.is_available(), reason="a GPU is present")


# name -> call(lib, cuda): lib is chainrule or torch, cuda its cuda module
CALLS = {
    "is_available()": lambda lib, c: c.is_available(),
    "device_count()": lambda lib, c: c.device_count(),
    "is_initialized()": lambda lib, c: c.is_initialized(),
    "init()": lambda lib, c: c.init(),
    "current_device()": lambda lib, c: c.current_device(),
    "set_device(0)": lambda lib, c: c.set_device(0),
    "set_device('cuda:1')": lambda lib, c: c.set_device("cuda:1"),
    "set_device(device('cuda', 2))": lambda lib, c: c.set_device(lib.device("cuda", 2)),
    "set_device(-1)": lambda lib, c: c.set_device(-1),
    "set_device('cpu')": lambda lib, c: c.set_device("cpu"),
    "set_device('cuda')": lambda lib, c: c.set_device("cuda"),
    "set_device(None)": lambda lib, c: c.set_device(None),
    "set_device(1.5)": lambda lib, c: c.set_device(1.5),
    "get_device_name()": lambda lib, c: c.get_device_name(),
    "get_device_name(0)": lambda lib, c: c.get_device_name(0),
    "get_device_capability()": lambda lib, c: c.get_device_capability(),
    "get_device_properties(0)": lambda lib, c: c.get_device_properties(0),
    "is_bf16_supported()": lambda lib, c: c.is_bf16_supported(),
    "is_bf16_supported(False)": lambda lib, c: c.is_bf16_supported(including_emulation=False),
    "is_tf32_supported()": lambda lib, c: c.is_tf32_supported(),
    "get_arch_list()": lambda lib, c: c.get_arch_list(),
    "get_gencode_flags()": lambda lib, c: c.get_gencode_flags(),
    "synchronize()": lambda lib, c: c.synchronize(),
    "synchronize(0)": lambda lib, c: c.synchronize(0),
    "ipc_collect()": lambda lib, c: c.ipc_collect(),
    "get_sync_debug_mode()": lambda lib, c: c.get_sync_debug_mode(),
    "is_current_stream_capturing()": lambda lib, c: c.is_current_stream_capturing(),
    "can_device_access_peer(0, 1)": lambda lib, c: c.can_device_access_peer(0, 1),
    "empty_cache()": lambda lib, c: c.empty_cache(),
    "memory_allocated()": lambda lib, c: c.memory_allocated(),
    "memory_allocated(5)": lambda lib, c: c.memory_allocated(5),
    "memory_allocated('cpu')": lambda lib, c: c.memory_allocated("cpu"),
    "max_memory_allocated()": lambda lib, c: c.max_memory_allocated(),
    "memory_reserved()": lambda lib, c: c.memory_reserved(),
    "max_memory_reserved()": lambda lib, c: c.max_memory_reserved(),
    "memory_cached()": lambda lib, c: c.memory_cached(),
    "max_memory_cached()": lambda lib, c: c.max_memory_cached(),
    "memory_stats()": lambda lib, c: dict(c.memory_stats()),
    "memory_summary()": lambda lib, c: c.memory_summary(),
    "reset_peak_memory_stats()": lambda lib, c: c.reset_peak_memory_stats(),
    "reset_max_memory_allocated()": lambda lib, c: c.reset_max_memory_allocated(),
    "reset_max_memory_cached()": lambda lib, c: c.reset_max_memory_cached(),
    "mem_get_info()": lambda lib, c: c.mem_get_info(),
    "set_per_process_memory_fraction(0.5)": lambda lib, c: c.set_per_process_memory_fraction(0.5),
    "manual_seed(1)": lambda lib, c: c.manual_seed(1),
    "manual_seed('a')": lambda lib, c: c.manual_seed("a"),
    "manual_seed_all(1)": lambda lib, c: c.manual_seed_all(1),
    "seed()": lambda lib, c: c.seed(),
    "seed_all()": lambda lib, c: c.seed_all(),
    "initial_seed()": lambda lib, c: c.initial_seed(),
    "get_rng_state()": lambda lib, c: c.get_rng_state(),
    "set_rng_state(state)": lambda lib, c: c.set_rng_state(lib.zeros(16, dtype=lib.uint8)),
    "set_rng_state('x')": lambda lib, c: c.set_rng_state("x"),
    "get_rng_state_all()": lambda lib, c: c.get_rng_state_all(),
    "set_rng_state_all([])": lambda lib, c: c.set_rng_state_all([]),
    "current_stream()": lambda lib, c: c.current_stream(),
    "default_stream()": lambda lib, c: c.default_stream(),
    "Stream()": lambda lib, c: c.Stream(),
    "Event()": lambda lib, c: c.Event(),
    "Event(enable_timing=True)": lambda lib, c: c.Event(enable_timing=True),
    "stream(None)": lambda lib, c: c.stream(None).__enter__(),
    "StreamContext(None).idx": lambda lib, c: c.StreamContext(None).idx,
    "set_stream(None)": lambda lib, c: c.set_stream(None),
    "device(0).idx": lambda lib, c: c.device(0).idx,
    "device('cuda').idx": lambda lib, c: c.device("cuda").idx,
    "device('cuda:1').idx": lambda lib, c: c.device("cuda:1").idx,
    "device('cpu')": lambda lib, c: c.device("cpu"),
    "with device(0)": lambda lib, c: c.device(0).__enter__(),
    "with device(-1)": lambda lib, c: c.device(-1).__enter__(),
    "device_of(cpu tensor).idx": lambda lib, c: c.device_of(lib.zeros(1)).idx,
    "with device_of(cpu tensor)": lambda lib, c: c.device_of(lib.zeros(1)).__enter__(),
    "nvtx.range_push('a')": lambda lib, c: c.nvtx.range_push("a"),
    "OutOfMemoryError is a RuntimeError": lambda lib, c: issubclass(c.OutOfMemoryError,
                                                                    RuntimeError),
    "amp.GradScaler().is_enabled()": lambda lib, c: c.amp.GradScaler().is_enabled(),
    "backends.cuda.matmul.allow_tf32": lambda lib, c: lib.backends.cuda.matmul.allow_tf32,
    "backends.cuda.matmul flags": lambda lib, c: (
        lib.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        lib.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
        lib.backends.cuda.matmul.allow_fp16_accumulation),
    "backends.cuda sdp switches": lambda lib, c: tuple(
        getattr(lib.backends.cuda, f"{k}_sdp_enabled")()
        for k in ("flash", "mem_efficient", "math", "cudnn")),
    "backends.cuda.is_built()": lambda lib, c: lib.backends.cuda.is_built(),
    "backends.cudnn.is_available()": lambda lib, c: lib.backends.cudnn.is_available(),
    "memory_stats_as_nested_dict()": lambda lib, c: dict(c.memory_stats_as_nested_dict()),
    "set_sync_debug_mode(0)": lambda lib, c: c.set_sync_debug_mode(0),
    "FloatTensor([1.0])": lambda lib, c: c.FloatTensor([1.0]),
    "LongTensor(2)": lambda lib, c: c.LongTensor(2),
    "isinstance(cpu tensor, FloatTensor)": lambda lib, c: isinstance(lib.ones(2),
                                                                      c.FloatTensor),
    "OutOfMemoryError is the top-level one": lambda lib, c: c.OutOfMemoryError is
    lib.OutOfMemoryError,
}

# results that are objects of each library: compared by what they are, not by identity
_SHAPES = {"with device(-1)": lambda r: r is None or r.idx == -1,
           "with device_of(cpu tensor)": lambda r: r is None or r.idx == -1}


def _outcome(lib, name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("ok", CALLS[name](lib, lib.cuda))
        except Exception as e:  # noqa: BLE001  (the error is what is compared)
            result = ("raises", type(e).__name__, str(e).strip("'"))
    kinds = sorted({w.category.__name__ for w in caught
                    if issubclass(w.category, (FutureWarning, DeprecationWarning))})
    return result, kinds


@pytest.mark.parametrize("name", sorted(CALLS))
def test_cuda_call_matches_torchs_cpu_build(name):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("the installed torch sees a GPU")
    (ours, our_warnings), (theirs, their_warnings) = _outcome(cr, name), _outcome(torch, name)
    if name in _SHAPES and ours[0] == theirs[0] == "ok":
        assert _SHAPES[name](ours[1]) and _SHAPES[name](theirs[1])
    else:
        assert ours == theirs, name
    assert our_warnings == their_warnings, name


def test_the_cpu_build_answers_without_torch():
    """The same facts, for machines without torch to compare with."""
    c = cr.cuda
    assert (c.is_available(), c.device_count(), c.is_initialized(), c.is_bf16_supported()) == \
        (False, 0, False, False)
    assert c.memory_allocated() == 0 and c.memory_stats() == {} and c.get_rng_state_all() == []
    assert c.manual_seed(3) is None and c.empty_cache() is None
    for call in (c.current_device, c.synchronize, c.get_device_name, c.init, c.initial_seed):
        with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
            call()
    with pytest.raises(AttributeError, match="has no attribute '_cuda_setDevice'"):
        c.set_device("cuda:0")
    with pytest.raises(RuntimeError, match="torch.cuda.Stream requires CUDA support"):
        c.Stream()


def test_sdp_switches_are_recorded_as_torchs():
    torch = pytest.importorskip("torch")
    for lib in (cr, torch):
        b = lib.backends.cuda
        b.enable_flash_sdp(False)
        try:
            assert b.flash_sdp_enabled() is False and b.math_sdp_enabled() is True
        finally:
            b.enable_flash_sdp(True)
        with pytest.warns(FutureWarning, match="sdp_kernel"), \
                b.sdp_kernel(enable_math=False, enable_cudnn=False):
            assert (b.math_sdp_enabled(), b.cudnn_sdp_enabled()) == (False, False)
        assert b.math_sdp_enabled() is True and b.cudnn_sdp_enabled() is True


def test_set_device_error_reads_as_torchs_under_run():
    """`chainrule run` reports a torch name chainrule lacks as "not implemented"; set_device's
    CPU-build error is torch's own, so it is shown as the traceback torch would show."""
    from chainrule import run_command

    try:
        cr.cuda.set_device(0)
    except AttributeError as e:
        assert run_command._missing_torch_name(e) is None
    else:
        raise AssertionError("set_device did not raise")
