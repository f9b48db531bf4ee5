"""When the batch processor tries its backend again after failures.

While the backend is down, new batches go straight to the spool and one try
(a batch, or a re-send from the spool) per interval probes it; the interval
doubles after each failed probe, from ``MIN_INTERVAL_S`` to ``MAX_INTERVAL_S``,
and starts again from the minimum once something gets through.

Not thread-safe on its own: only the thread that delivers batches changes it
(the worker, or the thread flushing or shutting down when no worker runs);
the worker reads it with the processor's lock held.
"""

from __future__ import annotations

MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 30.0


class BackendHealth:
    """Whether the backend is down, and when the next try is due."""

    def __init__(self) -> None:
        self.down = False
        self.next_try = 0.0  # time.monotonic() of the next probe or re-send
        self._interval = MIN_INTERVAL_S
        self._said_down = False  # the warning that profiles go to the spool was given

    def may_try(self, now: float) -> bool:
        """Up: always. Down: only once the next probe is due."""
        return not (self.down and now < self.next_try)

    def due(self, now: float) -> bool:
        return now >= self.next_try

    def mark_down(self, now: float) -> None:
        """A probe (or the first try) failed."""
        if self.down:
            if now >= self.next_try:  # a probe failed: wait longer before the next
                self.back_off(now)
            return
        self.down = True
        self._interval = MIN_INTERVAL_S
        self.next_try = now + self._interval

    def mark_up(self) -> bool:
        """Something got through; returns whether the backend had been down."""
        was_down, self.down = self.down, False
        self._said_down = False
        self._interval = MIN_INTERVAL_S
        return was_down

    def try_now(self, now: float) -> None:
        """Re-sends get through: the next round need not wait."""
        self.next_try = now

    def back_off(self, now: float) -> None:
        self._interval = min(self._interval * 2, MAX_INTERVAL_S)
        self.next_try = now + self._interval

    def first_warning(self) -> bool:
        """``True`` once per outage: the moment to say profiles go to the spool."""
        if self._said_down:
            return False
        self._said_down = True
        return True
