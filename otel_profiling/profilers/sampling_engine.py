"""The sampling CPU engine (the default): exact stacks and a real timeline, about 1 % cost.

A library thread wakes every ``interval`` seconds (with ±20 % random jitter,
so a program doing something periodically is not always caught at the same
phase; less often while the application is still, see ``profilers/pace.py``)
and hands the work to a ``Sampler``, which reads every thread's stack with
``sys._current_frames()`` and weighs each sample by the real time since the
previous one (see ``profilers/sampler.py``). A sample is also taken when
the window starts (the baseline) and when it stops, so a window of T seconds
holds T seconds per thread that lived through it.

It takes the GIL like any thread: samples land where the interpreter lets
other threads run (``sys.getswitchinterval()``, 5 ms by default), and a long
call into C code that keeps the GIL is seen, once it returns, on the Python
frame that called it. C functions are not frames of their own here.
Under ``clock="cpu"`` the main thread is sampled by a timer signal on its own
CPU clock instead (``profilers/main_signal.py``), so its short bursts of work
before a wait keep their time; ``main_thread_signal=False`` turns that off.
"""

from __future__ import annotations

import _thread
import logging
import math
import random
import threading
import time
from typing import Any, Dict, Optional

from opentelemetry.util.types import AttributeValue

from otel_profiling import _threads
from otel_profiling.formats import ProfileFormat, formats_for, get_format
from otel_profiling.formats.samples import SampleCapture
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import main_signal, thread_clocks
from otel_profiling.profilers.base import IDLE_ATTRIBUTE, IDLE_CPU_SHARE, ProfilerBusyError
from otel_profiling.profilers.main_signal import MODE_ATTRIBUTE, REASON_ATTRIBUTE, MainSignal
from otel_profiling.profilers.pace import Pace
from otel_profiling.profilers.sampler import (
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_STACKS,
    DEFAULT_MAX_TASKS,
    Sampler,
)

_logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.01
MIN_INTERVAL = 0.001
MAX_INTERVAL = 60.0
JITTER = 0.2
"""Each sleep lasts ``interval × uniform(1 - JITTER, 1 + JITTER)``."""


def sampling_formats() -> list:
    """Names of the CPU formats written from samples (every format holding a call tree)."""
    return [f.name for f in formats_for(ProfileKind.CPU_PROFILE) if f.accepts(SampleCapture)]


_JOIN_TIMEOUT = 5.0


def check_interval(interval: float) -> float:
    """``interval`` as a float if it is a valid sampling interval, else a clear ``ValueError``."""
    try:
        value = float(interval)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and MIN_INTERVAL <= value <= MAX_INTERVAL):
        raise ValueError(
            f"Invalid sampling interval {interval!r}: give seconds from {MIN_INTERVAL} to "
            f"{MAX_INTERVAL}, e.g. interval={DEFAULT_INTERVAL} (100 samples a second)."
        )
    return value


def check_clock(clock: str) -> None:
    """Refuse ``clock="cpu"`` where threads have no CPU clock of their own."""
    if clock == "cpu" and not thread_clocks.SUPPORTED:
        raise ValueError(
            "clock='cpu' needs per-thread CPU clocks (time.pthread_getcpuclockid), which this "
            "platform lacks: use clock='wall', or engine='yappi' for CPU time."
        )


class SamplingEngine:
    """Samples every application thread every ``interval`` seconds; encodes at stop."""

    def __init__(
        self,
        format: str | ProfileFormat,  # noqa: A002 - the profilers' name for it
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: str = "wall",
        by_span: bool = False,
        max_stacks: int = DEFAULT_MAX_STACKS,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_tasks: int = DEFAULT_MAX_TASKS,
        main_thread_signal: bool = True,
    ) -> None:
        fmt = get_format(ProfileKind.CPU_PROFILE, format) if isinstance(format, str) else format
        if not fmt.accepts(SampleCapture):
            raise ValueError(
                f"The sampling engine writes {', '.join(sampling_formats())}; {fmt.name} is "
                "written from an exact call graph by engine='yappi'."
            )
        check_clock(clock)
        self.format = fmt
        self.interval = check_interval(interval)
        self.clock = clock
        self.by_span = by_span
        self.limits = {"max_stacks": max_stacks, "max_rows": max_rows, "max_tasks": max_tasks}
        self._sampler: Optional[Sampler] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = _new_stop()
        self._thread_cpu_ns = 0
        self._end_attributes: Dict[str, AttributeValue] = {}
        self.main_thread_signal = main_thread_signal and clock == "cpu"
        self._signal: Optional[MainSignal] = None
        if self.main_thread_signal:
            main_signal.install()  # only possible on the main thread: made there, most often

    @property
    def running(self) -> bool:
        return self._sampler is not None

    def start(self) -> None:
        if self._sampler is not None:
            raise ProfilerBusyError("this CpuProfiler is already profiling")
        sampler = Sampler(interval=self.interval, clock=self.clock, **self.limits)
        sampler.tick()  # the baseline: each thread's CPU clock at the start
        if self.main_thread_signal:
            self._signal = MainSignal(self.interval)
            if self._signal.arm():
                sampler.sample_main_thread_from(self._signal)
        self._stop = _new_stop()
        self._thread_cpu_ns = 0
        self._end_attributes = {}
        self._sampler = sampler
        try:
            self._thread = _threads.start_daemon(lambda: self._run(sampler), "cpu-sampler")
        except BaseException:
            self._sampler = None
            if self._signal is not None:
                self._signal.disarm()
                self._signal = None
            raise

    def _run(self, sampler: Sampler) -> None:
        """Tick on a schedule of deadlines, so waiting for the GIL does not slow the rate."""
        began = time.thread_time_ns()
        jitter = random.Random()
        pace = Pace(self.interval)
        stop, step = self._stop, self.interval
        failed = False
        deadline = time.monotonic()
        while True:
            step *= jitter.uniform(1 - JITTER, 1 + JITTER)
            now = time.monotonic()
            # Late (the GIL was busy, the machine loaded): the next tick is a step from
            # now, never at once, which would only add a sample of almost no time.
            deadline = deadline + step if deadline + step > now else now + step
            if stop.acquire(timeout=deadline - now):  # released by stop_capture()
                break
            changed = True
            try:
                changed = sampler.tick()
            except Exception:  # never let one bad sample end the window
                if not failed:
                    _logger.exception("CPU sampling failed; the profile may miss samples.")
                failed = True
            step = pace.step(changed)  # longer while the application is still
        self._thread_cpu_ns = time.thread_time_ns() - began

    def stop_capture(self) -> SampleCapture:
        """End the window and return its samples (see ``formats/samples.py``)."""
        sampler = self._sampler
        if sampler is None:
            raise RuntimeError("CpuProfiler.stop() called while not profiling")
        source, self._signal = self._signal, None
        if source is not None:
            source.disarm()  # before the last tick, which records what it queued
        self._stop.release()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT)
        began = time.thread_time_ns()
        try:
            capture = sampler.finish()
        finally:
            self._sampler = None
            self._thread = None
        sampler_cpu_ns = self._thread_cpu_ns + time.thread_time_ns() - began
        self._end_attributes = _end_attributes(capture, sampler_cpu_ns)
        if self.clock == "cpu":
            self._end_attributes.update(_signal_attributes(source))
        return capture

    def stop(self) -> bytes:
        return self.encode(self.stop_capture())

    def encode(self, capture: SampleCapture) -> bytes:
        """Write ``capture`` in this engine's format."""
        capture.by_span = self.by_span
        return self.format.encode(capture)

    def end_attributes(self) -> Dict[str, AttributeValue]:
        """What the last window found, known only after it stopped (``profiling.idle`` ...)."""
        return dict(self._end_attributes)

    def after_fork(self) -> None:
        """In a forked child the sampling thread does not exist: drop the parent's window."""
        self._sampler = None
        self._thread = None
        self._stop = _new_stop()
        if self._signal is not None:
            self._signal.forget()  # timers are not inherited: the child has none to delete
            self._signal = None


def _signal_attributes(source: Optional[MainSignal]) -> Dict[str, AttributeValue]:
    """How the main thread's CPU time was sampled in the window, and if not by signal, why."""
    if source is not None and not source.reason:
        return {MODE_ATTRIBUTE: "signal"}
    reason = "turned off (main_thread_signal=False or OTEL_PROFILING_CPU_SIGNAL=false)"
    if source is not None:
        reason = source.reason
    return {MODE_ATTRIBUTE: "thread", REASON_ATTRIBUTE: reason}


def _new_stop() -> Any:
    """A held lock: the sampling thread waits on it between samples; releasing it stops it.

    A bare lock's timed ``acquire`` is one system call, where ``Event.wait``
    runs a ``Condition`` in Python: at 100 Hz the difference is a measurable
    share of the sampler's own CPU time.
    """
    lock = _thread.allocate_lock()
    lock.acquire()
    return lock


def _end_attributes(capture: SampleCapture, sampler_cpu_ns: int) -> Dict[str, AttributeValue]:
    attributes: Dict[str, AttributeValue] = {
        "profiling.cpu.samples": capture.sample_total,
        "profiling.cpu.sampler_cpu_seconds": round(sampler_cpu_ns / 1e9, 6),
    }
    if capture.application_cpu_ns >= 0:
        attributes["profiling.cpu.application_cpu_seconds"] = round(
            capture.application_cpu_ns / 1e9, 6
        )
        attributes[IDLE_ATTRIBUTE] = capture.application_cpu_ns < (
            IDLE_CPU_SHARE * capture.duration_ns
        )
    if capture.dropped_samples:
        attributes["profiling.cpu.samples_dropped"] = capture.dropped_samples
    if capture.truncated_stacks:
        attributes["profiling.cpu.stacks_truncated"] = capture.truncated_stacks
    return attributes
