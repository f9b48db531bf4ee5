"""What the batch processor's worker thread does, one round at a time.

A round waits until a batch is due (full, its oldest profile's delay passed,
a flush asks, or the spool is due for a re-send), hands the batch to
``Delivery``, re-sends from the spool, marks finished flushes done and
reports dropped profiles. An exception that escapes a round is logged and
counted in ``worker_errors``, and the worker goes on. Starting and restarting
the thread is ``RestartingWorker``'s; this is only what it runs.

Locking: ``lock`` is the processor's condition; the worker waits on it, and
``on_end``, ``force_flush`` and ``shutdown`` notify it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Optional

from otel_profiling.processors.batch_delivery import Delivery
from otel_profiling.processors.batch_queue import ProfileQueue
from otel_profiling.processors.batch_settings import BatchSettings
from otel_profiling.profile import Profile

# the processor's logger: one name to configure for everything the batch processor says
_logger = logging.getLogger("otel_profiling.processors.batch")

_DROP_WARNING_INTERVAL_S = 60.0


class WorkerRounds:
    """The worker's rounds over one processor's queue (a forked child makes its own)."""

    def __init__(
        self,
        queue: ProfileQueue,
        delivery: Delivery,
        lock: threading.Condition,
        settings: BatchSettings,
        exporter_name: str,
    ) -> None:
        self._queue = queue
        self._delivery = delivery
        self._lock = lock
        self._settings = settings
        self._name = exporter_name  # named in the log lines
        self.worker_errors = 0
        self._finish_by: Optional[float] = None  # shutdown's deadline, once shutting down
        self._reported_drops = 0
        self._last_drop_warning = -_DROP_WARNING_INTERVAL_S

    def run_once(self) -> bool:
        """Export one batch and re-send from the spool if due; ``False`` once shut down.

        After shutdown the worker goes on exporting what is queued, batch after
        batch, each given no more than what is left of shutdown's deadline; it
        stops once the queue is empty or the deadline has passed (``shutdown``
        then keeps the rest).
        """
        with self._lock:
            self._wait_for_work()
            timeout_millis = self._time_for_export()
            batch = (
                self._queue.take(self._settings.max_export_batch_size) if timeout_millis > 0 else []
            )
            if self._queue.closed and not batch:
                return False
            flushing = self._queue.flushing
            self._delivery.begin(batch)
        try:
            if batch:
                self._delivery.deliver(batch, timeout_millis, in_flight=True, now=flushing)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the worker
            self._recover(batch)
        del batch  # settled: its profiles go before the (slow) re-sends below
        try:
            self._delivery.resend_if_due(flushing)
        except Exception:  # noqa: BLE001 - nor one bad re-send
            self._recover([])
        with self._lock:
            self._queue.complete_flushes()
        self.report_drops()
        return True

    def finish_by(self, deadline: float) -> None:
        """(lock held) Shutdown: export what is queued by ``deadline`` (``time.monotonic()``)."""
        self._finish_by = deadline

    def _time_for_export(self) -> float:
        """(lock held) Milliseconds for one export: the export timeout, or what is left
        of shutdown's deadline if that is less."""
        timeout = float(self._settings.export_timeout_millis)
        if self._finish_by is None:
            return timeout
        return min(timeout, (self._finish_by - time.monotonic()) * 1000)

    def lost(self, exc: BaseException) -> None:
        """The worker is stopping on ``exc`` (logged already): settle its batch."""
        self._delivery.reclaim()
        with self._lock:
            self._queue.complete_flushes()

    def report_drops(self, final: bool = False) -> None:
        """Warn of profiles dropped from a full queue, at most once a minute.

        ``final`` (shutdown): warn of those not reported yet, however soon.
        Called by the worker and by ``shutdown``, which may overlap when the
        worker outlives shutdown's deadline: the count is read and marked
        reported under the lock, the warning logged after it.
        """
        with self._lock:
            now = time.monotonic()
            dropped = self._queue.dropped
            new = dropped - self._reported_drops
            too_soon = now - self._last_drop_warning < _DROP_WARNING_INTERVAL_S
            if not new or (too_soon and not final):
                return
            self._last_drop_warning = now
            self._reported_drops = dropped
        _logger.warning(
            "Dropped %d profile(s) because the export queue was full (%d profiles / %d bytes "
            "max; total dropped: %d). Raise OTEL_BPP_MAX_QUEUE_SIZE or "
            "OTEL_BPP_MAX_QUEUE_BYTES, or check that the exporter keeps up.",
            new,
            self._settings.max_queue_size,
            self._settings.max_queue_bytes,
            dropped,
        )

    def _wait_for_work(self) -> None:
        """Wait (lock held) for a full batch, the oldest profile's delay, a flush,
        a re-send of the spool or shutdown; with nothing queued, no timer runs."""
        delay = self._settings.schedule_delay_millis / 1000.0
        queue = self._queue
        while not (
            queue.closed
            or queue.flushing
            or len(queue) >= self._settings.max_export_batch_size
            or self._delivery.resend_due(time.monotonic())
        ):
            now = time.monotonic()
            timeout: Optional[float] = None
            oldest_at = queue.oldest_at
            if queue and oldest_at is not None:
                if now >= oldest_at + delay:
                    return
                timeout = oldest_at + delay - now
            resend_at = self._delivery.next_resend_at()
            if resend_at is not None:
                until_resend = max(resend_at - now, 0.0)
                timeout = until_resend if timeout is None else min(timeout, until_resend)
            self._lock.wait(timeout)

    def _recover(self, batch: List[Profile]) -> None:
        """An exception escaped one round: log and count it; keep what it left unsettled."""
        with self._lock:
            self.worker_errors += 1
            errors = self.worker_errors
        _logger.exception(
            "The export worker of %s failed on a batch (%d failure(s) so far); it goes on.",
            self._name,
            errors,
        )
        self._delivery.back_off()  # no tight loop if the failure repeats
        if batch:
            self._delivery.reclaim(batch)
