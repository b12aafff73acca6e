"""``torch.profiler``: ``profile`` (with ``schedule``, ``on_trace_ready`` and ``step()``),
``record_function``, ``ProfilerActivity``, ``tensorboard_trace_handler``. The recording itself is
``chainrule.autograd.profiler`` (CPU times of every gate's forward and backward, optimizer steps
and ``record_function`` ranges); ``ProfilerActivity.CUDA`` is accepted and records the same CPU
events (chainrule measures no device kernels)."""

from __future__ import annotations

import enum
import os
import socket
import time
import warnings

from chainrule.autograd import profiler as _ap
from chainrule.autograd.profiler import EventList, record_function

__all__ = ["profile", "record_function", "schedule", "ProfilerAction", "ProfilerActivity",
           "tensorboard_trace_handler", "supported_activities", "kineto_available",
           "EventList", "DeviceType", "is_fbcode"]


class ProfilerActivity(enum.Enum):
    CPU = 0
    XPU = 1
    MTIA = 2
    CUDA = 3
    HPU = 4
    PrivateUse1 = 5

    def __repr__(self) -> str:
        return f"<ProfilerActivity.{self.name}: {self.value}>"


class DeviceType(enum.Enum):
    CPU = 0
    CUDA = 1


class ProfilerAction(enum.Enum):
    """What a :func:`schedule` asks for at a step."""

    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3

    def __repr__(self) -> str:
        return f"<ProfilerAction.{self.name}: {self.value}>"


def is_fbcode() -> bool:
    return False


def supported_activities() -> set:
    return {ProfilerActivity.CPU}


def kineto_available() -> bool:
    """False: chainrule's profiler is its own (no Kineto)."""
    return False


def schedule(*, wait: int, warmup: int, active: int, repeat: int = 0, skip_first: int = 0,
             skip_first_wait: int = 0):
    """The action at each step: ``skip_first`` steps of NONE, then cycles of ``wait`` (NONE),
    ``warmup`` (WARMUP) and ``active`` steps (RECORD, the cycle's last RECORD_AND_SAVE), at most
    ``repeat`` cycles (0: no limit). ``skip_first_wait`` skips the first cycle's wait."""
    if not (wait >= 0 and warmup >= 0 and active > 0 and repeat >= 0 and skip_first >= 0):
        raise AssertionError(
            f"Invalid profiler schedule arguments. Got wait={wait} (need >= 0), "
            f"warmup={warmup} (need >= 0), active={active} (need > 0), repeat={repeat} "
            f"(need >= 0), skip_first={skip_first} (need >= 0).")
    if warmup == 0:
        warnings.warn("Profiler won't be using warmup, this can skew profiler results",
                      stacklevel=2)
    cycle = wait + warmup + active

    def action(step: int) -> ProfilerAction:
        if step < 0:
            raise AssertionError(f"step must be non-negative, got {step}")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if skip_first_wait:
            step += wait
        if repeat > 0 and step // cycle >= repeat:
            return ProfilerAction.NONE
        pos = step % cycle
        if pos < wait:
            return ProfilerAction.NONE
        if pos < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if pos < cycle - 1 else ProfilerAction.RECORD_AND_SAVE
    return action


def _record_always(step: int) -> ProfilerAction:
    return ProfilerAction.RECORD


def tensorboard_trace_handler(dir_name: str, worker_name: str | None = None,
                              use_gzip: bool = False, use_python_export: bool = False):
    """An ``on_trace_ready`` that writes each trace as
    ``dir_name/<worker>.<ms>.pt.trace.json[.gz]`` (what TensorBoard's profiler plugin reads)."""
    def handler(prof) -> None:
        os.makedirs(dir_name, exist_ok=True)
        worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        name = f"{worker}.{time.time_ns() // 1_000_000}.pt.trace.json"
        if use_gzip:
            name += ".gz"
        prof.export_chrome_trace(os.path.join(dir_name, name))
    return handler


class profile:  # noqa: N801  (torch's name)
    """``with torch.profiler.profile(...) as prof:``: records gates, optimizer steps and
    ``record_function`` ranges. With ``schedule``, ``prof.step()`` advances the step and only
    the WARMUP/RECORD steps record (each step a ``ProfilerStep#N`` range); at the end of each
    active span ``on_trace_ready(prof)`` is called, and ``prof.key_averages()`` /
    ``prof.export_chrome_trace(path)`` give that span."""

    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None,
                 record_shapes: bool = False, profile_memory: bool = False,
                 with_stack: bool = False, with_flops: bool = False, with_modules: bool = False,
                 experimental_config=None, execution_trace_observer=None,
                 acc_events: bool = False, use_cuda: bool | None = None,
                 custom_trace_id_callback=None, post_processing_timeout_s=None) -> None:
        acts = set(activities) if activities is not None else supported_activities()
        for a in acts:
            if not isinstance(a, ProfilerActivity):
                raise TypeError(f"profile: activities must be ProfilerActivity members, got "
                                f"{a!r}")
        self.activities = acts
        self.record_steps = schedule is not None
        self.schedule = schedule if schedule is not None else _record_always
        self.on_trace_ready = on_trace_ready
        self.record_shapes = record_shapes
        self.step_num = 0
        self.current_action = self.schedule(0)
        self._rec = None
        self._prev = None
        self._step_range = None
        self._events: EventList | None = None
        self._running = False

    # -- recording on/off ----------------------------------------------------------------------
    def _begin_recording(self) -> None:
        self._rec = _ap._Recorder(self.record_shapes)
        self._prev = _ap._start(self._rec)

    def _end_recording(self) -> None:
        if self._rec is None:
            return
        self._close_step_range()
        _ap._stop(self._prev)
        self._events = self._rec.function_events()
        self._wall0 = self._rec.wall0_ns
        self._rec = None

    def _open_step_range(self) -> None:
        if self.record_steps and self._rec is not None:
            self._step_range = record_function(f"ProfilerStep#{self.step_num}")
            self._step_range.__enter__()

    def _close_step_range(self) -> None:
        if self._step_range is not None:
            self._step_range.__exit__(None, None, None)
            self._step_range = None

    @staticmethod
    def _records(action: ProfilerAction) -> bool:
        # WARMUP records nothing: torch discards its warm-up events, and chainrule's recording
        # has no start-up cost to warm up
        return action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)

    def start(self) -> None:
        if self._running:
            raise RuntimeError("Profiler is already running")
        self._running = True
        if self._records(self.current_action):
            self._begin_recording()
            self._open_step_range()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        saving = self.current_action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)
        if self._rec is not None:
            self._end_recording()
            if saving and self.on_trace_ready is not None:
                self.on_trace_ready(self)

    def step(self) -> None:
        """The next training step: close this step's range, follow the schedule."""
        if not self._running:
            return
        prev = self.current_action
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        self._close_step_range()
        if prev is ProfilerAction.RECORD_AND_SAVE or (
                self._records(prev) and not self._records(self.current_action)):
            self._end_recording()
            if prev is ProfilerAction.RECORD_AND_SAVE and self.on_trace_ready is not None:
                self.on_trace_ready(self)
        if self._records(self.current_action):
            if self._rec is None:
                self._begin_recording()
            self._open_step_range()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- results -------------------------------------------------------------------------------
    def events(self) -> EventList:
        if self._events is None:
            raise RuntimeError("Profiler didn't finish running: no trace recorded yet "
                               "(leave the `with` block, or reach a RECORD_AND_SAVE step)")
        return self._events

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0,
                     group_by_overload_name: bool = False) -> EventList:
        return self.events().key_averages(group_by_input_shape, group_by_stack_n)

    def export_chrome_trace(self, path: str) -> None:
        _ap._write_chrome_trace(self.events(), path, self._wall0)

    def export_stacks(self, path: str, metric: str = "self_cpu_time_total") -> None:
        raise NotImplementedError("export_stacks: chainrule's profiler records no stacks "
                                  "(use export_chrome_trace)")

    def add_metadata(self, key: str, value: str) -> None:
        """Accepted; not written to the trace."""

    def add_metadata_json(self, key: str, value: str) -> None:
        """Accepted; not written to the trace."""
