"""Triggers that profile the incident by themselves: resident memory or CPU use too high.

A daemon thread samples the process every ``poll_interval`` seconds (reading
``/proc/self/statm`` and ``time.process_time()``: no dependency, negligible
cost) and, when the condition holds, runs one window of the registered
profilers of the right kind: a heap snapshot is taken at once, a heap or CPU
profile runs for ``duration`` seconds. After a window, the trigger waits
``cooldown`` seconds before it may fire again.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Dict, Iterable, Optional, Tuple

from opentelemetry.util.types import AttributeValue

from otel_profiling._limits import MAX_PERIOD_SECONDS, MAX_WINDOW_SECONDS, check_number
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import thread_clocks
from otel_profiling.triggers._windows import run_window
from otel_profiling.triggers.background import BackgroundTrigger
from otel_profiling.triggers.base import PROFILER_FOR_KIND, TriggerTarget, profilers_of

_logger = logging.getLogger(__name__)

HEAP_KINDS = (ProfileKind.HEAP_PROFILE, ProfileKind.HEAP_SNAPSHOT)
CPU_KINDS = (ProfileKind.CPU_PROFILE,)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """Current resident set size; the peak where ``/proc`` is missing (macOS, BSD)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _PollingTrigger(BackgroundTrigger):
    """Samples on a daemon thread; fires a profiling window when ``_check`` says so."""

    def __init__(
        self,
        *,
        cooldown: float,
        duration: float,
        poll_interval: float,
        kinds: Optional[Iterable[ProfileKind]],
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.cooldown = check_number(
            f"{owner} cooldown", cooldown, maximum=MAX_PERIOD_SECONDS, allow_minimum=True
        )
        self.duration = check_number(f"{owner} duration", duration, maximum=MAX_WINDOW_SECONDS)
        self.poll_interval = check_number(
            f"{owner} poll_interval", poll_interval, maximum=MAX_WINDOW_SECONDS
        )
        self.kinds: Optional[Tuple[ProfileKind, ...]] = (
            None if kinds is None else tuple(ProfileKind(k) for k in kinds)
        )
        self.fired = 0

    def install(self, target: TriggerTarget) -> None:
        if not profilers_of(target, self.kinds):
            kinds = ", ".join(k.value for k in self.kinds or ())
            examples = " or ".join(PROFILER_FOR_KIND[k] for k in self.kinds or tuple(ProfileKind))
            _logger.warning(
                "%r has no profiler of kind %s registered with it and will never profile; "
                "register one (e.g. %s).",
                self,
                kinds,
                examples,
            )
        super().install(target)

    def _check(self, now: float) -> Optional[Tuple[str, Dict[str, AttributeValue]]]:
        """The reason and attributes for a profile now, or ``None``."""
        raise NotImplementedError

    def _run(self) -> None:
        stop = self._stop
        quiet_until = 0.0
        self._reset()
        while not stop.wait(self.poll_interval):
            now = time.monotonic()
            try:
                fire = self._check(now)
            except Exception:
                _logger.exception("%r could not sample the process.", self)
                continue
            target = self._target
            if fire is None or now < quiet_until or target is None:
                continue
            reason, attributes = fire
            try:
                started = run_window(
                    target,
                    profilers_of(target, self.kinds),
                    self.duration,
                    stop,
                    reason,
                    attributes,
                )
            except Exception:
                _logger.exception("%r failed to profile.", self)
                continue
            if started:
                self.fired += 1
                quiet_until = time.monotonic() + self.cooldown
            self._reset()  # what the window itself cost is not the application's

    def _reset(self) -> None:
        """Forget samples taken before now."""


class MemoryThresholdTrigger(_PollingTrigger):
    """Profiles the heap when resident memory reaches ``rss_bytes``, at most once per ``cooldown``.

    While memory stays above the threshold it fires again after each
    cooldown, so successive snapshots show what keeps growing. By default it
    drives the heap profilers (``HEAP_PROFILE``, ``HEAP_SNAPSHOT``) registered
    with it; ``kinds=None`` drives every registered profiler.
    """

    name = "memory-threshold"

    def __init__(
        self,
        rss_bytes: int,
        cooldown: float = 300.0,
        *,
        duration: float = 10.0,
        poll_interval: float = 1.0,
        kinds: Optional[Iterable[ProfileKind]] = HEAP_KINDS,
    ) -> None:
        if isinstance(rss_bytes, bool) or not isinstance(rss_bytes, int) or rss_bytes <= 0:
            raise ValueError(
                f"MemoryThresholdTrigger rss_bytes={rss_bytes!r}: use a positive integer "
                "number of bytes, e.g. 512 * 1024 * 1024."
            )
        super().__init__(
            cooldown=cooldown, duration=duration, poll_interval=poll_interval, kinds=kinds
        )
        self.rss_bytes = rss_bytes

    def _check(self, now: float) -> Optional[Tuple[str, Dict[str, AttributeValue]]]:
        rss = resident_bytes()
        if rss < self.rss_bytes:
            return None
        reason = f"resident memory {rss} bytes >= threshold {self.rss_bytes} bytes"
        return reason, {
            "process.memory.rss_bytes": rss,
            "profiling.threshold.rss_bytes": self.rss_bytes,
        }

    def __repr__(self) -> str:
        return f"MemoryThresholdTrigger(rss_bytes={self.rss_bytes}, cooldown={self.cooldown:g})"


class CpuThresholdTrigger(_PollingTrigger):
    """Profiles the CPU when the process stays at or above ``percent`` for ``for_seconds``.

    ``percent`` is of one core, as ``top`` shows it (a process using two
    cores fully is at 200). CPU time is the whole process's less what the
    library's own threads used (a heap snapshot or an encoder must not fire it),
    sampled every ``poll_interval``; the condition must hold in every sample for
    ``for_seconds``. By default it drives the ``CPU_PROFILE`` profilers
    registered with it.
    """

    name = "cpu-threshold"

    def __init__(
        self,
        percent: float,
        for_seconds: float = 30.0,
        *,
        duration: float = 10.0,
        cooldown: float = 300.0,
        poll_interval: float = 1.0,
        kinds: Optional[Iterable[ProfileKind]] = CPU_KINDS,
    ) -> None:
        super().__init__(
            cooldown=cooldown, duration=duration, poll_interval=poll_interval, kinds=kinds
        )
        self.percent = check_number("CpuThresholdTrigger percent", percent, unit="percent")
        self.for_seconds = check_number(
            "CpuThresholdTrigger for_seconds",
            for_seconds,
            maximum=MAX_WINDOW_SECONDS,
            allow_minimum=True,
        )
        self._last: Tuple[float, float, Dict[int, float]] = (0.0, 0.0, {})
        self._above_since: Optional[float] = None

    def _reset(self) -> None:
        self._last = (time.monotonic(), time.process_time(), thread_clocks.library_cpu())
        self._above_since = None

    def _check(self, now: float) -> Optional[Tuple[str, Dict[str, AttributeValue]]]:
        cpu, library = time.process_time(), thread_clocks.library_cpu()
        last_wall, last_cpu, last_library = self._last
        self._last = (now, cpu, library)
        elapsed = now - last_wall
        if elapsed <= 0:
            return None
        used = cpu - last_cpu - thread_clocks.library_cpu_since(library, last_library)
        percent = 100.0 * used / elapsed
        if percent < self.percent:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = last_wall
        if now - self._above_since < self.for_seconds:
            return None
        held = now - self._above_since
        reason = f"CPU use {percent:.0f}% >= {self.percent:g}% for {held:.1f} s"
        return reason, {
            "process.cpu.percent": round(percent, 1),
            "profiling.threshold.cpu_percent": self.percent,
        }

    def __repr__(self) -> str:
        return f"CpuThresholdTrigger(percent={self.percent:g}, for_seconds={self.for_seconds:g})"
