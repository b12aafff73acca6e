"""A small CPU profiler with torch's interface: ``torch.autograd.profiler`` (``profile``,
``record_function``) and the classes behind ``torch.profiler``.

While a profile records, every gate's ``forward`` and ``backward`` (built-in ``Op`` gates and the
program's own ``Function`` subclasses), every optimizer ``step``/``zero_grad`` and every
``record_function`` range becomes an event with its wall-clock start and end (CPU time, as
torch's CPU events). Nothing in the engine knows about it: starting a profile wraps those methods
on their classes and stopping puts the originals back, so the engine runs exactly as before when
no profile is active (the same technique as ``bench/part_timer.py``).

Event names: a gate's forward is its class name (``Linear``, ``Relu``: the file that holds it is
found with ``grep -rn "class Relu("``), its backward is the graph node's name
(``ReluBackward0``, as torch's), an optimizer's ``Optimizer.step#SGD.step``, and a
``record_function`` range its own name. ``key_averages()`` groups events by name (and input
shapes with ``group_by_input_shape=True``) with counts, self and total times;
``table(sort_by=..., row_limit=...)`` prints torch's columns; ``export_chrome_trace(path)`` writes
Chrome's trace-event JSON (chrome://tracing, Perfetto).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time

__all__ = ["profile", "record_function", "EventList", "FunctionEvent", "FunctionEventAvg",
           "emit_nvtx", "emit_itt"]

_clock = time.perf_counter_ns


class _Recorder:
    """The events of one recording: ``[name, cat, start_ns, end_ns, tid, parent, shapes]``."""

    def __init__(self, record_shapes: bool = False) -> None:
        self.record_shapes = record_shapes
        self.events: list[list] = []
        self._local = threading.local()
        self.wall0_ns = time.time_ns()
        self.t0_ns = _clock()

    def _stack(self) -> list:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def begin(self, name: str, cat: str, args=None) -> list:
        stack = self._stack()
        shapes = None
        if self.record_shapes and args is not None:
            shapes = [list(a.shape) if hasattr(a, "shape") else [] for a in args]
        ev = [name, cat, _clock(), 0, threading.get_ident(), stack[-1] if stack else None,
              shapes]
        stack.append(ev)
        self.events.append(ev)
        return ev

    def end(self, ev: list) -> None:
        ev[3] = _clock()
        stack = self._stack()
        if stack and stack[-1] is ev:
            stack.pop()
        elif ev in stack:  # a range closed out of order (record_function's __exit__ skipped)
            stack.remove(ev)

    def function_events(self) -> EventList:
        """The finished events as :class:`FunctionEvent` s, with self times (total minus the
        direct children's totals) and parent/children links."""
        out, made = EventList(), {}
        for i, ev in enumerate(self.events):
            if not ev[3]:
                continue  # still open (a range that never ended)
            fe = FunctionEvent(i, ev[0], ev[1], (ev[2] - self.t0_ns) / 1e3,
                               (ev[3] - self.t0_ns) / 1e3, ev[4], ev[6] or [])
            made[id(ev)] = fe
            out.append(fe)
        for ev in self.events:
            fe = made.get(id(ev))
            parent = made.get(id(ev[5])) if ev[5] is not None else None
            if fe is not None and parent is not None:
                fe.cpu_parent = parent
                parent.cpu_children.append(fe)
        return out


_current: list = [None]  # the recorder that receives events now (one at a time; nested restores)
_patched: list = []      # (owner, attribute, original) while some profile records
_depth = [0]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _wrap(fn, name_of, cat: str = "cpu_op", cache: bool = True):
    """``fn`` recording one event per call while a profile is active (``name_of(args)`` names
    it; with ``cache``, once)."""
    names: dict = {}

    @functools.wraps(fn)
    def recorded(*args, **kwargs):
        rec = _current[0]
        if rec is None:
            return fn(*args, **kwargs)
        name = names.get(None)
        if name is None:
            name = name_of(args)
            if cache:
                names[None] = name
        ev = rec.begin(name, cat, args[1:] if cat == "cpu_op" else None)
        try:
            return fn(*args, **kwargs)
        finally:
            rec.end(ev)
    return recorded


def _class_name(cls, args) -> str:
    return cls.__name__


def _node_name(args) -> str:
    """A backward's event name: the graph node's (``ReluBackward0``), as torch's."""
    return args[0].name() if args and hasattr(args[0], "name") else "Backward"


def _optimizer_name(attr: str, args) -> str:
    """``Optimizer.step#SGD.step``, as torch names an optimizer's step."""
    return f"Optimizer.{attr}#{type(args[0]).__name__}.{attr}"


def _patch_all() -> None:
    """Wrap every gate's forward/backward and every optimizer's step/zero_grad."""
    import sys

    from chainrule.autograd.function import Function

    for cls in set(_subclasses(Function)):
        for attr in ("forward", "backward"):
            fn = cls.__dict__.get(attr)
            if not isinstance(fn, staticmethod):
                continue
            name_of = (functools.partial(_class_name, cls) if attr == "forward"
                       else _node_name)
            try:
                setattr(cls, attr, staticmethod(_wrap(fn.__func__, name_of)))
            except TypeError:  # a compiled (extension) class: its own methods stay as they are
                continue
            _patched.append((cls, attr, fn))
    optim = sys.modules.get("chainrule.optim.optimizer")
    if optim is not None:
        for cls in {optim.Optimizer, *_subclasses(optim.Optimizer)}:
            for attr in ("step", "zero_grad"):
                fn = cls.__dict__.get(attr)
                if fn is None or not callable(fn):
                    continue
                _patched.append((cls, attr, fn))
                setattr(cls, attr, _wrap(fn, functools.partial(_optimizer_name, attr),
                                         "cpu_op_optim", cache=False))


def _unpatch_all() -> None:
    while _patched:
        owner, attr, fn = _patched.pop()
        setattr(owner, attr, fn)


def _start(rec: _Recorder):
    """Make ``rec`` the receiving recorder; returns the previous one (for :func:`_stop`)."""
    if _depth[0] == 0:
        _patch_all()
    _depth[0] += 1
    prev, _current[0] = _current[0], rec
    return prev


def _stop(prev) -> None:
    _current[0] = prev
    _depth[0] -= 1
    if _depth[0] == 0:
        _unpatch_all()


# ---- events and their averages --------------------------------------------------------------
def _format_time(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class FunctionEvent:
    """One recorded call: ``name``, start/end in µs since the profile began (``time_range``),
    ``cpu_time_total`` and ``self_cpu_time_total`` (µs), its parent and children."""

    def __init__(self, id: int, name: str, cat: str, start_us: float, end_us: float,  # noqa: A002
                 thread: int, input_shapes: list) -> None:
        self.id, self.name, self.cat = id, name, cat
        self.start_us, self.end_us = start_us, end_us
        self.thread, self.input_shapes = thread, input_shapes
        self.cpu_parent = None
        self.cpu_children: list[FunctionEvent] = []
        self.count = 1
        self.device_type = "CPU"
        self.is_user_annotation = cat == "user_annotation"

    key = property(lambda self: self.name)

    @property
    def time_range(self):
        return (self.start_us, self.end_us)

    @property
    def cpu_time_total(self) -> float:
        return self.end_us - self.start_us

    @property
    def self_cpu_time_total(self) -> float:
        return self.cpu_time_total - sum(c.cpu_time_total for c in self.cpu_children)

    cpu_time = cpu_time_total
    device_time_total = self_device_time_total = cuda_time_total = 0.0
    cpu_memory_usage = self_cpu_memory_usage = 0

    def __repr__(self) -> str:
        return (f"<FunctionEvent id={self.id} name={self.name} cpu_time="
                f"{_format_time(self.cpu_time_total)} start_us={self.start_us:.3f} "
                f"end_us={self.end_us:.3f} input_shapes={self.input_shapes}>")


class FunctionEventAvg:
    """The events of one name (and shapes): ``key``, ``count``, ``cpu_time_total``,
    ``self_cpu_time_total`` (µs, summed) and ``cpu_time`` (the average per call)."""

    def __init__(self, key: str, input_shapes=None) -> None:
        self.key, self.input_shapes = key, input_shapes
        self.count = 0
        self.cpu_time_total = 0.0
        self.self_cpu_time_total = 0.0
        self.is_user_annotation = False

    device_time_total = self_device_time_total = cuda_time_total = 0.0
    cpu_memory_usage = self_cpu_memory_usage = 0

    def add(self, other) -> FunctionEventAvg:
        self.count += other.count
        self.cpu_time_total += other.cpu_time_total
        self.self_cpu_time_total += other.self_cpu_time_total
        self.is_user_annotation = other.is_user_annotation
        return self

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / self.count if self.count else 0.0

    def __repr__(self) -> str:
        return (f"<FunctionEventAvg key={self.key} self_cpu_time="
                f"{_format_time(self.self_cpu_time_total)} cpu_time="
                f"{_format_time(self.cpu_time)} input_shapes={self.input_shapes}>")


_COLUMNS = ("Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls")


class EventList(list):
    """A list of events (``prof.events()``, ``prof.key_averages()``) with torch's helpers."""

    def key_averages(self, group_by_input_shape: bool = False,
                     group_by_stack_n: int = 0) -> EventList:
        groups: dict = {}
        for ev in self:
            shapes = str(ev.input_shapes) if group_by_input_shape else None
            name = "ProfilerStep*" if ev.key.startswith("ProfilerStep#") else ev.key  # as torch
            key = (name, shapes)
            avg = groups.get(key)
            if avg is None:
                avg = groups[key] = FunctionEventAvg(
                    name, ev.input_shapes if group_by_input_shape else None)
            avg.add(ev)
        out = EventList(groups.values())
        out._shapes = group_by_input_shape
        return out

    @property
    def self_cpu_time_total(self) -> float:
        return sum(ev.self_cpu_time_total for ev in self)

    def table(self, sort_by: str | None = None, row_limit: int = 100,
              max_src_column_width: int = 75, max_name_column_width: int = 55,
              max_shapes_column_width: int = 80, header: str | None = None,
              top_level_events_only: bool = False) -> str:
        """torch's table: one row per entry, sorted (descending) by ``sort_by``, at most
        ``row_limit`` rows (negative: all), then the total self CPU time."""
        events = list(self)
        if top_level_events_only:
            events = [e for e in events if getattr(e, "cpu_parent", None) is None]
        if sort_by is not None:
            if not events or not hasattr(events[0], sort_by):
                valid = ("cpu_time", "cuda_time", "xpu_time", "cpu_time_total",
                         "cuda_time_total", "xpu_time_total", "cpu_memory_usage",
                         "cuda_memory_usage", "self_cpu_memory_usage", "self_cuda_memory_usage",
                         "self_cpu_time_total", "self_cuda_time_total", "count")
                if sort_by not in valid:
                    raise AttributeError(f"table: sort_by={sort_by!r} is not one of "
                                         f"{', '.join(valid)}")
            else:
                events.sort(key=lambda e: getattr(e, sort_by), reverse=True)
        if row_limit is not None and row_limit >= 0:
            events = events[:row_limit]
        total = self.self_cpu_time_total
        name_w = max_name_column_width
        if events:
            name_w = min(max(len(e.key) for e in events) + 4, max_name_column_width)
            name_w = max(name_w, 4)
        shapes = getattr(self, "_shapes", False)
        widths = [name_w] + [12] * len(_COLUMNS) + ([max_shapes_column_width] if shapes else [])
        titles = ["Name", *_COLUMNS] + (["Input Shapes"] if shapes else [])
        line = "".join("-" * w + "  " for w in widths)
        fmt = "".join(f"{{:>{w}}}  " for w in widths)
        rows = [] if header is None else ["=" * len(line), header]
        rows += [line, fmt.format(*titles), line]

        def pct(v: float) -> str:
            return f"{100.0 * v / total:.2f}%" if total else "0.00%"

        for e in events:
            name = e.key if len(e.key) <= name_w else e.key[:name_w - 3] + "..."
            cells = [name, pct(e.self_cpu_time_total), _format_time(e.self_cpu_time_total),
                     pct(e.cpu_time_total), _format_time(e.cpu_time_total),
                     _format_time(e.cpu_time), str(e.count)]
            if shapes:
                cells.append(str(e.input_shapes)[:max_shapes_column_width])
            rows.append(fmt.format(*cells))
        rows.append(line)
        rows.append(f"Self CPU time total: {_format_time(total)}")
        return "\n".join(rows) + "\n"

    def __str__(self) -> str:
        return self.table()

    def export_chrome_trace(self, path: str) -> None:
        _write_chrome_trace(self, path, time.time_ns())

    def total_average(self) -> FunctionEventAvg:
        avg = FunctionEventAvg("Total")
        for ev in self:
            avg.add(ev)
        return avg


def _chrome_events(events, base_wall_ns: int) -> dict:
    pid = os.getpid()
    out = [{"ph": "M", "name": "process_name", "ts": 0, "pid": pid, "tid": 0,
            "args": {"name": "python"}},
           {"ph": "M", "name": "process_labels", "ts": 0, "pid": pid, "tid": 0,
            "args": {"labels": "CPU"}}]
    for ev in sorted(events, key=lambda e: e.start_us):
        cat = "cpu_op" if ev.cat == "cpu_op_optim" else ev.cat
        out.append({"ph": "X", "cat": cat, "name": ev.name, "pid": pid, "tid": ev.thread,
                    "ts": round(ev.start_us, 3), "dur": round(ev.cpu_time_total, 3),
                    "args": {"External id": ev.id, "Input Dims": ev.input_shapes}
                    if ev.input_shapes else {"External id": ev.id}})
    return {"schemaVersion": 1, "deviceProperties": [], "traceEvents": out,
            "displayTimeUnit": "ms", "baseTimeNanoseconds": base_wall_ns}


def _write_chrome_trace(events, path: str, base_wall_ns: int) -> None:
    data = _chrome_events(events, base_wall_ns)
    data["traceName"] = str(path)
    if str(path).endswith(".gz"):
        import gzip

        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(data, f)
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)


# ---- record_function ------------------------------------------------------------------------
class record_function:  # noqa: N801  (torch's name)
    """A named range in the profile (``with record_function("forward"):`` or as a decorator);
    costs one check when no profile records."""

    def __init__(self, name: str, args: str | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"record_function(): name must be a str, got {type(name).__name__}")
        self.name, self.args = name, args
        self._ev = None
        self._rec = None

    def __enter__(self):
        rec = _current[0]
        if rec is not None:
            self._rec, self._ev = rec, rec.begin(self.name, "user_annotation")
        return self

    def __exit__(self, *exc) -> None:
        if self._ev is not None:
            self._rec.end(self._ev)
            self._ev = self._rec = None

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with record_function(self.name, self.args):
                return fn(*args, **kwargs)
        return wrapped


# ---- torch.autograd.profiler.profile --------------------------------------------------------
class profile:  # noqa: N801
    """``with torch.autograd.profiler.profile() as prof:`` records the block; then
    ``prof.key_averages().table(...)``, ``prof.export_chrome_trace(path)``,
    ``prof.function_events``. ``use_cuda``/``use_device`` are accepted: CPU times only."""

    def __init__(self, enabled: bool = True, *, use_cuda: bool = False, use_device=None,
                 record_shapes: bool = False, with_flops: bool = False,
                 profile_memory: bool = False, with_stack: bool = False,
                 with_modules: bool = False, use_kineto: bool = False, use_cpu: bool = True,
                 experimental_config=None, acc_events: bool = False,
                 custom_trace_id_callback=None, post_processing_timeout_s=None,
                 activity_filters=None) -> None:
        self.enabled, self.record_shapes = enabled, record_shapes
        self.entered = False
        self._rec: _Recorder | None = None
        self._prev = None
        self.function_events: EventList | None = None

    def __enter__(self):
        if not self.enabled:
            return self
        if self.entered:
            raise RuntimeError("Profiler context manager is not reentrant")
        self.entered = True
        self._rec = _Recorder(self.record_shapes)
        self._prev = _start(self._rec)
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled or self._rec is None:
            return
        _stop(self._prev)
        self.function_events = self._rec.function_events()
        self.entered = False

    def _events(self) -> EventList:
        if self.function_events is None:
            raise RuntimeError("Profiler didn't finish running")
        return self.function_events

    def events(self) -> EventList:
        return self._events()

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0,
                     group_by_overload_name: bool = False) -> EventList:
        return self._events().key_averages(group_by_input_shape, group_by_stack_n)

    def table(self, sort_by=None, row_limit: int = 100, max_src_column_width: int = 75,
              max_name_column_width: int = 55, max_shapes_column_width: int = 80,
              header=None, top_level_events_only: bool = False) -> str:
        return self._events().table(sort_by, row_limit, max_src_column_width,
                                    max_name_column_width, max_shapes_column_width, header,
                                    top_level_events_only)

    def export_chrome_trace(self, path: str) -> None:
        _write_chrome_trace(self._events(), path, self._rec.wall0_ns)

    def total_average(self) -> FunctionEventAvg:
        return self._events().total_average()

    @property
    def self_cpu_time_total(self) -> float:
        return self._events().self_cpu_time_total

    def __str__(self) -> str:
        return self.table() if self.function_events is not None else "<unfinished profile>"


class emit_nvtx:  # noqa: N801
    """Accepted; chainrule emits no NVTX ranges."""

    def __init__(self, enabled: bool = True, record_shapes: bool = False) -> None:
        self.enabled = enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


emit_itt = emit_nvtx
