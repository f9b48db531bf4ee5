"""How long the sampling thread waits before its next sample: longer while nothing moves.

Each sample costs the sampler a wake-up and a look at every thread, whatever
the threads do: at 100 Hz about 1 % of a core even when every thread waits
(see ``benchmarks/README.md``). While the application is still (a service
waiting for requests), every sample finds what the previous one found. So
after each sample that found every thread and task on the stack it was on
before, following a step in which the application used less than
``STILL_CPU_SHARE`` of the elapsed time in CPU, the next step is twice as
long, up to ``MAX_STRETCH`` intervals; a sample that finds a stack changed,
or a step in which the application used more CPU, brings the step back to one
interval.

Totals stay true: each sample is weighed by the real time since the previous
one. What a long step changes is when work or a new wait that starts during
it is first seen: up to ``MAX_STRETCH`` intervals late instead of one, and
that step is split halfway between the two stacks, like any change of stack.

The application's CPU time is the process's minus the sampling thread's own,
two clock reads per sample.
"""

from __future__ import annotations

import time
from typing import Tuple

MAX_STRETCH = 4
"""The longest step, in intervals."""
STILL_CPU_SHARE = 0.01
"""A step is still when the application used less than this share of it in CPU."""


def _clocks() -> Tuple[int, int, int]:
    """Now, the process's CPU time and the calling thread's CPU time, in ns."""
    return time.monotonic_ns(), time.process_time_ns(), time.thread_time_ns()


class Pace:
    """The sampling thread's steps; ``step()`` is called by that thread after each sample."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stretch = 1
        self._mark = _clocks()

    def step(self, changed: bool) -> float:
        """Seconds to the next sample; ``changed``: whether the sample just taken found a
        stack other than the one before (``Sampler.tick()``'s result)."""
        now, process, own = _clocks()
        then, process_then, own_then = self._mark
        self._mark = (now, process, own)
        application = (process - process_then) - (own - own_then)
        if changed or application >= STILL_CPU_SHARE * (now - then):
            self.stretch = 1
        else:
            self.stretch = min(self.stretch * 2, MAX_STRETCH)
        return self.interval * self.stretch
