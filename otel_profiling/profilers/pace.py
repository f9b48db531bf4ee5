"""How long the sampling thread waits before its next sample: longer while nothing moves.

Each sample costs the sampler a wake-up and a look at every thread, whatever
the threads do: at 100 Hz about 1 % of a core even when every thread waits
(see ``benchmarks/README.md``). While the application is still (a service
waiting for requests), every sample finds what the previous one found. A
sample is *still* when it found every thread and task on the stack it was on
before (none new, none ended) and the application used less than
``STILL_CPU_SHARE`` of the step in CPU. After ``STILL_SAMPLES`` still samples
in a row the step is ``MAX_STRETCH`` intervals, until a sample is not still.
Things that last a few intervals (a short thread, a short wait, a burst of
work) are thus sampled every interval, as without this.

Totals stay true: each sample is weighed by the real time since the previous
one. What a long step changes is when the first change after a still stretch
is seen: up to ``MAX_STRETCH`` intervals late instead of one, and that step
is split halfway between the two stacks, like any change of stack.

The application's CPU time is the process's minus the sampling thread's own,
two clock reads per sample.
"""

from __future__ import annotations

import time
from typing import Tuple

MAX_STRETCH = 4
"""The step, in intervals, while the application stays still."""
STILL_SAMPLES = 5
"""Still samples in a row, one interval apart, before the step lengthens."""
STILL_CPU_SHARE = 0.01
"""A sample is still only if the application used less than this share of its step in CPU."""


def _clocks() -> Tuple[int, int, int]:
    """Now, the process's CPU time and the calling thread's CPU time, in ns."""
    return time.monotonic_ns(), time.process_time_ns(), time.thread_time_ns()


class Pace:
    """The sampling thread's steps; ``step()`` is called by that thread after each sample."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.still = 0  # still samples in a row
        self._mark = _clocks()

    def step(self, changed: bool) -> float:
        """Seconds to the next sample; ``changed``: whether the sample just taken found
        anything moved (``Sampler.tick()``'s result)."""
        now, process, own = _clocks()
        then, process_then, own_then = self._mark
        self._mark = (now, process, own)
        application = (process - process_then) - (own - own_then)
        if changed or application >= STILL_CPU_SHARE * (now - then):
            self.still = 0
        else:
            self.still += 1
        return self.interval * (MAX_STRETCH if self.still >= STILL_SAMPLES else 1)
