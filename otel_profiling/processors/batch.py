"""A batching processor for profiles, modelled on OpenTelemetry's ``BatchSpanProcessor``.

Differences from the span processor, each on purpose:

* the queue is bounded by count *and* by bytes (profiles are large); when
  full, the oldest profile is dropped, counted in ``dropped_profiles``, and
  reported by a rate-limited warning logged from the worker, never from
  ``on_end`` (which only appends under a lock: no I/O, no logging);
* ``force_flush`` and ``shutdown`` honour their timeouts;
* what the exporter could not send goes to a local ``Spool`` and is re-sent
  from the worker when the backend works again (and by the next process of
  the same service); while the backend is down, new batches go straight to the
  spool and one try (a batch or a re-send) per backoff interval probes it;
* ``shutdown`` exports what is still queued on the calling thread (at exit
  some Pythons start no thread), and what it cannot finish in time goes to the
  spool, once;
* the worker survives any exception (logged, counted in ``worker_errors``)
  and a worker that died anyway is started again by the next profile;
* after ``os.fork()`` the child gets a new lock, queue, counters and worker.

Every profile given to ``on_end`` ends in exactly one counter:
``exported_profiles``, ``spooled_profiles`` (kept for a later re-send),
``failed_profiles`` (lost: no spool, or the spool could not be written),
``dropped_profiles`` (queue full, or after shutdown) or ``error_profiles``
(the profiler failed: no payload, never exported). ``resent_profiles``
counts spooled profiles uploaded later, by this or an earlier process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import List, Optional, Sequence, Tuple, Union

from otel_profiling._fork import renew_after_fork
from otel_profiling.exporters.base import ProfileExporter, has_payload
from otel_profiling.processors.base import ProfileProcessor, report_error_profile, suppressed
from otel_profiling.processors.batch_backoff import MAX_INTERVAL_S, BackendHealth
from otel_profiling.processors.batch_queue import FlushRequest, ProfileQueue
from otel_profiling.processors.batch_settings import (
    DEFAULT_EXPORT_TIMEOUT_MILLIS,
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULE_DELAY_MILLIS,
    batch_settings,
)
from otel_profiling.processors.batch_worker import RestartingWorker
from otel_profiling.processors.spool import Spool
from otel_profiling.profile import Profile

__all__ = [
    "DEFAULT_EXPORT_TIMEOUT_MILLIS",
    "DEFAULT_MAX_EXPORT_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_SCHEDULE_DELAY_MILLIS",
    "BatchProfileProcessor",
]

_logger = logging.getLogger(__name__)

_DROP_WARNING_INTERVAL_S = 60.0
_DRAIN_BATCHES_PER_ROUND = 4


class BatchProfileProcessor(ProfileProcessor):
    """Queues ended profiles and exports them in batches from a worker thread.

    Arguments left as ``None`` come from ``OTEL_BPP_SCHEDULE_DELAY``,
    ``OTEL_BPP_MAX_QUEUE_SIZE``, ``OTEL_BPP_MAX_EXPORT_BATCH_SIZE``,
    ``OTEL_BPP_EXPORT_TIMEOUT`` and ``OTEL_BPP_MAX_QUEUE_BYTES``, else the defaults.
    A batch leaves ``schedule_delay_millis`` after its first profile was
    queued, or at once when it is full. The byte bound covers the batch being
    exported and the profiles being re-sent from the spool too (those take at
    most half of it), so memory stays bounded while the backend is slow. A single
    profile larger than ``max_queue_bytes`` is still accepted when the queue is
    otherwise empty, so that no profile is too big to ever be sent.

    ``spool``: ``True`` (default) uses ``Spool.from_env()`` (a per-user cache
    directory per service and exporter destination, or under
    ``OTEL_PROFILING_SPOOL_DIR``; ``none`` there disables it), ``False``
    disables spooling, or pass a ``Spool``.
    """

    def __init__(
        self,
        exporter: ProfileExporter,
        schedule_delay_millis: Optional[float] = None,
        max_queue_size: Optional[int] = None,
        max_export_batch_size: Optional[int] = None,
        export_timeout_millis: Optional[float] = None,
        max_queue_bytes: Optional[int] = None,
        spool: Union[Spool, bool] = True,
    ) -> None:
        self._exporter = exporter
        self.spool: Optional[Spool] = (
            Spool.from_env(destination=_destination(exporter))
            if spool is True
            else (spool if isinstance(spool, Spool) else None)
        )
        settings = batch_settings(
            schedule_delay_millis,
            max_queue_size,
            max_export_batch_size,
            export_timeout_millis,
            max_queue_bytes,
        )
        self.schedule_delay_millis = settings.schedule_delay_millis
        self.max_queue_size = settings.max_queue_size
        self.max_export_batch_size = settings.max_export_batch_size
        self.export_timeout_millis = settings.export_timeout_millis
        self.max_queue_bytes = settings.max_queue_bytes
        self._init_state()
        renew_after_fork(self, BatchProfileProcessor._init_state)
        if self.spool is not None and self.spool.pending():
            # left by an earlier process of this service: re-send in the background
            with self._cond:
                self._spool_pending = True
                self._ensure_worker()

    def _init_state(self) -> None:
        """Everything that belongs to one process: made here, and again in a forked child.

        A child starts empty: profiles queued in the parent are the parent's to export.
        """
        self._cond = threading.Condition(threading.Lock())
        self._queue = ProfileQueue(self.max_queue_size, self.max_queue_bytes)
        self._flushes: List[FlushRequest] = []
        self._shutdown = False
        self._worker = RestartingWorker(
            "batch-processor",
            self._cond,
            self._work_once,
            self._worker_lost,
            type(self._exporter).__name__,
        )
        self._pid = os.getpid()
        self._in_flight: Optional[List[Profile]] = None  # the worker's batch, until settled
        self._health = BackendHealth()
        self._spool_pending = False
        self.exported_profiles = 0
        self.spooled_profiles = 0
        self.failed_profiles = 0
        self.dropped_profiles = 0
        self.error_profiles = 0
        self.resent_profiles = 0
        self.worker_errors = 0
        self._reported_drops = 0
        self._last_drop_warning = -_DROP_WARNING_INTERVAL_S

    # -- application side ---------------------------------------------------
    @property
    def exporter(self) -> ProfileExporter:
        return self._exporter

    @property
    def queued_profiles(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes held: queued profiles plus the batch being exported."""
        return self._queue.bytes

    def on_end(self, profile: Profile) -> None:
        """Append to the queue; never blocks on I/O, never logs."""
        if not isinstance(profile, Profile):
            raise TypeError(f"on_end() takes a Profile, not {type(profile).__name__}")
        if self._pid != os.getpid():  # forked without the at-fork hook running
            self._init_state()
        with self._cond:
            if self._shutdown:
                self.dropped_profiles += 1
                return
            self.dropped_profiles += self._queue.put(profile)
            self._ensure_worker()
            if len(self._queue) == 1 or len(self._queue) >= self.max_export_batch_size:
                self._cond.notify_all()

    @property
    def worker_restarts(self) -> int:
        """Workers started again after one stopped on an exception."""
        return self._worker.restarts

    def _ensure_worker(self) -> bool:
        """A live worker (``_cond`` held); ``False`` after shutdown or once Python exits."""
        return self._worker.ensure(self._shutdown)

    # -- worker ---------------------------------------------------------------
    def _work_once(self) -> bool:
        """Export one batch and re-send from the spool if due; ``False`` once shut down."""
        with self._cond:
            self._wait_for_work()
            if self._shutdown:
                return False  # ``shutdown`` exports the rest on its own thread
            batch = self._take_batch()
            flushing = bool(self._flushes)
            self._in_flight = batch or None
        try:
            if batch:
                self._export(batch, self.export_timeout_millis, worker=True, now=flushing)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the worker
            self._recover(batch)
        del batch  # settled: its profiles go before the (slow) re-sends below
        try:
            if (flushing and not self._health.down) or self._drain_due():
                self._drain(force=flushing)
        except Exception:  # noqa: BLE001 - nor one bad re-send
            self._recover([])
        self._complete_flushes()
        self._report_drops()
        return True

    def _wait_for_work(self) -> None:
        """Wait (``_cond`` held) for a full batch, the oldest profile's delay, a flush,
        a re-send of the spool or shutdown; with nothing queued, no timer runs."""
        delay = self.schedule_delay_millis / 1000.0
        while not (
            self._shutdown
            or self._flushes
            or len(self._queue) >= self.max_export_batch_size
            or self._drain_due()
        ):
            now = time.monotonic()
            timeout: Optional[float] = None
            oldest_at = self._queue.oldest_at
            if self._queue and oldest_at is not None:
                if now >= oldest_at + delay:
                    return
                timeout = oldest_at + delay - now
            if self._spool_pending:
                until_drain = max(self._health.next_try - now, 0.0)
                timeout = until_drain if timeout is None else min(timeout, until_drain)
            self._cond.wait(timeout)

    def _take_batch(self) -> List[Profile]:
        """Up to one batch from the queue (``_cond`` held); its bytes count until it is settled."""
        return self._queue.take(self.max_export_batch_size)

    def _send(
        self, profiles: Sequence[Profile], timeout_millis: float, resend: bool = False
    ) -> List[Profile]:
        """Export through the exporter without being traced; returns what was not sent."""
        try:
            with suppressed():
                unsent = self._exporter.export_unsent(profiles, timeout_millis, resend=resend)
            ids = {id(p) for p in unsent}
        except Exception:  # noqa: BLE001 - an exporter must not kill the worker
            _logger.exception("Exporter %s raised.", type(self._exporter).__name__)
            return list(profiles)
        return [p for p in profiles if id(p) in ids]

    def _export(
        self, batch: List[Profile], timeout_millis: float, worker: bool, now: bool = False
    ) -> None:
        """Export ``batch`` and settle each profile in its counter.

        While the backend is down the batch goes straight to the spool, unless
        a probe is due or ``now`` (a flush asks for a try). The worker's batch
        is settled only if ``shutdown`` has not taken it over meanwhile (it
        then is in the spool already).
        """
        errors = [p for p in batch if not has_payload(p)]
        todo = [p for p in batch if has_payload(p)]
        tried = bool(todo) and (now or self._may_try())
        unsent = self._send(todo, timeout_millis) if tried else todo
        sent = len(todo) - len(unsent)
        with self._cond:
            if worker:
                if self._in_flight is not batch:
                    return
                self._in_flight = None
            self.exported_profiles += sent
            self.error_profiles += len(errors)
            self._queue.settle(sent + len(errors))
        for profile in errors:
            report_error_profile(profile)
        if sent:
            self._mark_up()
        if unsent:
            kept, lost = self._keep(unsent)
            self._report_unsent(kept, lost, tried and not sent)
        self._release(batch)

    def _release(self, batch: Sequence[Profile]) -> None:
        """A settled batch no longer counts against ``max_queue_bytes``.

        Only after it is settled: while its profiles are written to the spool
        they are still held, and the byte bound covers them.
        """
        with self._cond:
            self._queue.release(list(batch))

    def _may_try(self) -> bool:
        """While the backend is down, only one try (a batch or a re-send) per backoff interval."""
        return self.spool is None or self._health.may_try(time.monotonic())

    def _keep(self, profiles: Sequence[Profile]) -> Tuple[int, int]:
        """Spool ``profiles`` (lost without a spool, or if it cannot be written): (kept, lost)."""
        kept = 0
        for profile in profiles:
            if self.spool is not None and self._spooled(profile):
                kept += 1
        lost = len(profiles) - kept
        with self._cond:
            self.spooled_profiles += kept
            self.failed_profiles += lost
            self._queue.settle(kept + lost)
            if kept:
                self._spool_pending = True
        return kept, lost

    def _spooled(self, profile: Profile) -> bool:
        assert self.spool is not None
        try:
            return self.spool.put(profile) is not None
        except Exception:  # noqa: BLE001 - a custom spool that raises: the profile is lost
            _logger.exception("Spooling %s failed: the profile is lost.", profile.key)
            return False

    def _report_unsent(self, kept: int, lost: int, probe_failed: bool) -> None:
        """Say what became of profiles not sent: one warning when the backend goes down.

        A profile the spool could not take was reported as lost by the spool.
        """
        name = type(self._exporter).__name__
        if probe_failed and self.spool is not None:
            self._health.mark_down(time.monotonic())
        if self.spool is None:
            _logger.warning(
                "%s could not send %d profile(s); spooling is off, so they are lost "
                "(counted in failed_profiles).",
                name,
                lost,
            )
        elif kept and self._shutdown:
            _logger.warning(
                "%d profile(s) not exported by %s before shutdown are kept in %s; the next "
                "process of this service sends them.",
                kept,
                name,
                self.spool.directory,
            )
        elif kept and self._health.first_warning():
            _logger.warning(
                "%s could not send %d profile(s); they are kept in %s and re-sent when the "
                "backend works again (tried every %d s at most).",
                name,
                kept,
                self.spool.directory,
                int(MAX_INTERVAL_S),
            )
        elif kept:
            _logger.debug("%d more profile(s) kept in %s.", kept, self.spool.directory)

    def _mark_up(self) -> None:
        if self._health.mark_up() and self._spool_pending:  # mark_up always runs first
            _logger.warning(
                "%s works again; re-sending spooled profiles.", type(self._exporter).__name__
            )

    def _drain_due(self) -> bool:
        return self._spool_pending and self._health.due(time.monotonic())

    def _drain(self, force: bool = False) -> None:
        """Re-send some spooled profiles; back off while nothing gets through."""
        if self.spool is None or self._shutdown or not (self._spool_pending or force):
            return
        with self._cond:  # re-sent profiles are held too: up to half the byte bound is theirs
            budget = self._queue.reserve(self.max_queue_bytes // 2)
        try:
            sent, pending = self.spool.drain(
                lambda ps: self._send(ps, self.export_timeout_millis, resend=True),
                self.max_export_batch_size,
                _DRAIN_BATCHES_PER_ROUND,
                max_bytes=budget,
            )
        finally:
            with self._cond:
                self._queue.unreserve(budget)
        with self._cond:
            self.resent_profiles += sent
            self._spool_pending = pending > 0
        now = time.monotonic()
        if sent:
            self._mark_up()
            self._health.try_now(now)
        elif pending:
            self._health.back_off(now)

    def _recover(self, batch: List[Profile]) -> None:
        """An exception escaped one round: log and count it; keep what it left unsettled."""
        with self._cond:
            self.worker_errors += 1
            owned = bool(batch) and self._in_flight is batch
            if owned:
                self._in_flight = None
        _logger.exception(
            "The export worker of %s failed on a batch (%d failure(s) so far); it goes on.",
            type(self._exporter).__name__,
            self.worker_errors,
        )
        self._health.back_off(time.monotonic())  # no tight loop if the failure repeats
        if owned:
            self._settle_unsent(batch)
            self._release(batch)

    def _settle_unsent(self, batch: Sequence[Profile]) -> None:
        """Settle profiles known not to be sent: errors counted, the rest kept or lost."""
        errors = [p for p in batch if not has_payload(p)]
        with self._cond:
            self.error_profiles += len(errors)
            self._queue.settle(len(errors))
        for profile in errors:
            report_error_profile(profile)
        todo = [p for p in batch if has_payload(p)]
        if todo:
            kept, lost = self._keep(todo)
            self._report_unsent(kept, lost, False)

    def _worker_lost(self, exc: BaseException) -> None:
        """The worker is stopping on ``exc`` (logged): settle its batch."""
        with self._cond:
            batch = self._in_flight or []
            self._in_flight = None
        self._settle_unsent(batch)
        self._release(batch)
        self._complete_flushes()

    def _complete_flushes(self) -> None:
        with self._cond:
            pending = []
            for flush in self._flushes:
                if self._queue.flush_done(flush):
                    flush.done.set()
                else:
                    pending.append(flush)
            self._flushes = pending

    def _report_drops(self) -> None:
        now = time.monotonic()
        new = self.dropped_profiles - self._reported_drops
        if new and now - self._last_drop_warning >= _DROP_WARNING_INTERVAL_S:
            self._last_drop_warning = now
            self._reported_drops = self.dropped_profiles
            _logger.warning(
                "Dropped %d profile(s) because the export queue was full (%d profiles / %d bytes "
                "max; total dropped: %d). Raise OTEL_BPP_MAX_QUEUE_SIZE or "
                "OTEL_BPP_MAX_QUEUE_BYTES, or check that the exporter keeps up.",
                new,
                self.max_queue_size,
                self.max_queue_bytes,
                self.dropped_profiles,
            )

    # -- control ----------------------------------------------------------------
    def force_flush(self, timeout_millis: Optional[float] = None) -> bool:
        """Export everything queued now; ``False`` if that did not finish in time.

        After shutdown it does nothing and answers ``False``, as the SDK's processors do.
        """
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._shutdown:
                return False
            if self._queue.all_settled:
                return True
            flush = self._queue.flush_request()
            self._flushes.append(flush)
            if self._ensure_worker():
                self._cond.notify_all()
                worker = True
            else:
                self._flushes.remove(flush)
                worker = False
        if worker:
            return flush.done.wait(timeout)
        self._export_queue_here(deadline)  # no thread may start now: this one does the work
        return self._queue.all_settled

    def shutdown(self, timeout_millis: Optional[float] = None) -> None:
        """Export what is queued, then stop; returns within the timeout whatever happens.

        The worker finishes the batch it is exporting; what is still queued is
        exported on the calling thread. Whatever is not exported by the
        deadline goes to the spool, once.
        """
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._shutdown:
                return
            self._shutdown = True
            worker = self._worker.thread
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(deadline - time.monotonic(), 0))
        self._take_over_in_flight(timeout)
        self._export_queue_here(deadline)
        with self._cond:
            for flush in self._flushes:
                flush.done.set()
            self._flushes = []
        self._report_drops()
        self._exporter.shutdown()

    def _take_over_in_flight(self, timeout: float) -> None:
        """The worker did not finish its batch in time: keep it in the spool, exactly once.

        The worker's export may still end, even successfully; it then finds
        its batch taken and leaves it alone. A profile that did land is found
        at its key by the re-send, which does not upload it twice.
        """
        with self._cond:
            batch = self._in_flight
            self._in_flight = None
        if batch:
            _logger.warning(
                "Shutdown timed out after %.1f s while %s was exporting %d profile(s).",
                timeout,
                type(self._exporter).__name__,
                len(batch),
            )
            self._settle_unsent(batch)
            self._release(batch)

    def _export_queue_here(self, deadline: float) -> None:
        """Export the queue on the calling thread until ``deadline``; keep the rest."""
        while True:
            with self._cond:
                batch = self._take_batch()
            if not batch:
                return
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                with self._cond:
                    left = batch + self._queue.take_all()
                _logger.warning("No time left to export %d queued profile(s).", len(left))
                self._settle_unsent(left)
                self._release(left)
                return
            self._export(batch, min(remaining_ms, self.export_timeout_millis), worker=False)


def _destination(exporter: ProfileExporter) -> str:
    try:
        return str(exporter.destination)
    except Exception:  # an exporter without a usable destination: one spool per class
        return type(exporter).__name__
