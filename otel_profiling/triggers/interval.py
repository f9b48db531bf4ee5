"""``IntervalTrigger``: continuous profiling in windows, e.g. 10 s of every 60 s."""

from __future__ import annotations

import logging
import random
import time
from typing import Optional

from otel_profiling._limits import MAX_PERIOD_SECONDS, MAX_WINDOW_SECONDS, check_number
from otel_profiling.triggers._windows import run_window
from otel_profiling.triggers.background import BackgroundTrigger

_logger = logging.getLogger(__name__)


class IntervalTrigger(BackgroundTrigger):
    """Profiles for ``duration`` seconds once every ``every`` seconds.

    Windows start at a fixed rate (``every`` from one start to the next) and
    never overlap: a window due while the previous one is still being encoded
    starts as soon as that is done, and slots missed entirely are skipped. So
    ``duration == every`` profiles continuously, window after window. The
    first window starts after a random delay in ``[0, jitter]`` (default
    ``jitter=every``), so a fleet started together does not profile in
    lockstep. Windows run on a daemon thread, which also
    encodes; a start refused because the profiler is busy skips that window.
    """

    name = "interval"

    def __init__(self, every: float, duration: float, jitter: Optional[float] = None) -> None:
        super().__init__()
        self.every = check_number("IntervalTrigger every", every, maximum=MAX_PERIOD_SECONDS)
        self.duration = check_number(
            "IntervalTrigger duration", duration, maximum=MAX_WINDOW_SECONDS
        )
        if self.duration > self.every:
            raise ValueError(
                f"IntervalTrigger duration={duration!r} is longer than every={every!r}: "
                "windows would overlap; use a duration <= every."
            )
        self.jitter = (
            self.every
            if jitter is None
            else check_number(
                "IntervalTrigger jitter", jitter, maximum=MAX_PERIOD_SECONDS, allow_minimum=True
            )
        )
        self.windows = 0

    @property
    def thread_name(self) -> str:
        return "interval"

    def _run(self) -> None:
        stop = self._stop
        next_start = time.monotonic() + random.uniform(0, self.jitter)
        reason = f"{self.duration:g} s window every {self.every:g} s"
        while not stop.wait(max(next_start - time.monotonic(), 0)):
            target = self._target
            if target is None:
                return
            try:
                if run_window(target, target.profilers, self.duration, stop, reason):
                    self.windows += 1
            except Exception:  # keep the schedule whatever happened
                _logger.exception("Interval profiling window failed.")
            now = time.monotonic()
            next_start += self.every
            if next_start < now - self.every:  # the window overran: skip the slots missed
                missed = int((now - next_start) // self.every)
                next_start += missed * self.every
            # Back to back (duration == every): the next window starts once this one
            # is encoded, a little late, rather than a whole slot later.
            next_start = max(next_start, now)

    def __repr__(self) -> str:
        return (
            f"IntervalTrigger(every={self.every:g}, duration={self.duration:g}, "
            f"jitter={self.jitter:g})"
        )
