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
* ``shutdown`` lets the worker export what is still queued, then shut the
  exporter down, and waits for it until its deadline (the calling thread
  exports only when no thread can run: at exit some Pythons start none); what
  is not exported in time goes to the spool, once, and an exporter whose own
  shutdown does not return in time is left to the worker, a daemon thread;
* a ``KeyboardInterrupt`` (or ``SystemExit``) raised by the exporter on the
  calling thread goes on to the caller once the batch, and at shutdown
  everything still held, is counted;
* the worker survives any exception (logged, counted in ``worker_errors``)
  and a worker that died anyway is started again by the next profile;
* after ``os.fork()`` the child gets a new lock, queue, counters and worker
  (a processor shut down before the fork stays shut down).

Every profile given to ``on_end`` ends in exactly one counter:
``exported_profiles``, ``spooled_profiles`` (kept for a later re-send),
``failed_profiles`` (lost: no spool, the spool could not be written, or it raised),
``dropped_profiles`` (queue full, or after shutdown) or ``error_profiles``
(the profiler failed: no payload, never exported). ``resent_profiles``
counts spooled profiles uploaded later, by this or an earlier process.

The processor keeps the public API, the queue and the worker's lifecycle; the
rest has a module each: ``batch_queue`` (the bounded queue, its drops and
flushes), ``batch_delivery`` (sending a batch, keeping what was not sent in
the spool, re-sending it, and the counters of each outcome), ``batch_rounds``
(what the worker does each round), ``batch_worker`` (the thread, started
again if it dies), ``batch_backoff`` and ``batch_settings``. They share one
lock, the processor's condition, made anew with them in a forked child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional, Union

from otel_profiling._fork import renew_after_fork, renewal_lock
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.processors.base import (
    ProfileProcessor,
    shut_exporter_down,
    warn_exporter_shutdown_abandoned,
)
from otel_profiling.processors.batch_delivery import Delivery
from otel_profiling.processors.batch_queue import ProfileQueue
from otel_profiling.processors.batch_rounds import WorkerRounds
from otel_profiling.processors.batch_settings import (
    DEFAULT_EXPORT_TIMEOUT_MILLIS,
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULE_DELAY_MILLIS,
    KEEP_GRACE_MILLIS,
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
        self._spool: Optional[Spool] = (
            Spool.for_exporter(exporter)
            if spool is True
            else (spool if isinstance(spool, Spool) else None)
        )
        self._settings = batch_settings(
            schedule_delay_millis,
            max_queue_size,
            max_export_batch_size,
            export_timeout_millis,
            max_queue_bytes,
        )
        self._init_state()
        renew_after_fork(self, BatchProfileProcessor._init_state)
        if self._spool is not None and self._spool.pending():
            # left by an earlier process of this service: re-send in the background
            with self._cond:
                self._delivery.expect_resend()
                self._ensure_worker()

    def _init_state(self) -> None:
        """Everything that belongs to one process: made here, and again in a forked child.

        A child starts empty: profiles queued in the parent are the parent's to export.
        A processor shut down before the fork stays shut down in the child (its
        exporter is shut down too). The lock is shared by the queue, the
        delivery and the worker's rounds.
        """
        previous: Optional[ProfileQueue] = getattr(self, "_queue", None)  # None when made
        shut_down = previous is not None and previous.closed
        self._cond = threading.Condition(threading.Lock())
        self._queue = ProfileQueue(self.max_queue_size, self.max_queue_bytes)
        if shut_down:
            self._queue.close()
        # the exporter's shutdown, begun by the worker once its rounds end (or by
        # ``shutdown`` when no thread can run); done already in a child of a processor shut down
        self._exporter_shutdown_begun = shut_down
        self._exporter_shut_down = shut_down
        self._delivery = Delivery(
            self._exporter, self._spool, self._queue, self._cond, self._settings
        )
        name = type(self._exporter).__name__
        self._rounds = WorkerRounds(self._queue, self._delivery, self._cond, self._settings, name)
        self._worker = RestartingWorker(
            "batch-processor",
            self._cond,
            self._rounds.run_once,
            self._rounds.lost,
            name,
            last=self._shut_exporter_down,
        )
        self._pid = os.getpid()

    # -- settings ----------------------------------------------------------------
    @property
    def schedule_delay_millis(self) -> int:
        return self._settings.schedule_delay_millis

    @property
    def max_queue_size(self) -> int:
        return self._settings.max_queue_size

    @property
    def max_export_batch_size(self) -> int:
        return self._settings.max_export_batch_size

    @property
    def export_timeout_millis(self) -> int:
        return self._settings.export_timeout_millis

    @property
    def max_queue_bytes(self) -> int:
        return self._settings.max_queue_bytes

    # -- state and counters ------------------------------------------------------
    @property
    def exporter(self) -> ProfileExporter:
        return self._exporter

    @property
    def spool(self) -> Optional[Spool]:
        """Where profiles not sent are kept for a re-send; ``None`` when spooling is off."""
        return self._spool

    @property
    def queued_profiles(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes held: queued profiles plus the batch being exported."""
        return self._queue.bytes

    @property
    def exported_profiles(self) -> int:
        return self._delivery.exported_profiles

    @property
    def spooled_profiles(self) -> int:
        return self._delivery.spooled_profiles

    @property
    def failed_profiles(self) -> int:
        return self._delivery.failed_profiles

    @property
    def dropped_profiles(self) -> int:
        return self._queue.dropped

    @property
    def error_profiles(self) -> int:
        return self._delivery.error_profiles

    @property
    def resent_profiles(self) -> int:
        return self._delivery.resent_profiles

    @property
    def worker_errors(self) -> int:
        """Exceptions that escaped a round of the worker (it went on)."""
        return self._rounds.worker_errors

    @property
    def worker_restarts(self) -> int:
        """Workers started again after one stopped on an exception."""
        return self._worker.restarts

    # -- application side ---------------------------------------------------
    def on_end(self, profile: Profile) -> None:
        """Append to the queue; never blocks on I/O, never logs."""
        if not isinstance(profile, Profile):
            raise TypeError(f"on_end() takes a Profile, not {type(profile).__name__}")
        self._renew_if_forked()
        with self._cond:
            if not self._queue.put(profile):
                return  # shut down: dropped
            self._ensure_worker()
            if len(self._queue) == 1 or len(self._queue) >= self.max_export_batch_size:
                self._cond.notify_all()

    def _renew_if_forked(self) -> None:
        """A child forked without Python's at-fork hooks (uWSGI forks so by default)
        still holds the parent's queue and worker: start afresh, as the hook would.

        Once, however many threads of the child come here at the same time: a
        second renewal would throw away what the first thread queued. Not under
        ``_cond``, which another thread of the parent may have held at the fork.
        """
        pid = os.getpid()
        if self._pid == pid:
            return
        with renewal_lock(pid):
            if self._pid != pid:  # ``_init_state`` sets it last, once all is new
                self._init_state()

    def _ensure_worker(self) -> bool:
        """A live worker (``_cond`` held); ``False`` after shutdown or once Python exits."""
        return self._worker.ensure(self._queue.closed)

    # -- control ----------------------------------------------------------------
    def force_flush(self, timeout_millis: Optional[float] = None) -> bool:
        """Export everything queued now; ``False`` if that did not finish in time.

        After shutdown it does nothing and answers ``False``, as the SDK's processors do.
        """
        self._renew_if_forked()
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._queue.closed:
                return False
            if self._queue.all_settled:
                return True
            flush = self._queue.add_flush()
            worker = self._ensure_worker()
            if worker:
                self._cond.notify_all()
            else:
                self._queue.cancel_flush(flush)
        if worker:
            return flush.done.wait(timeout)
        self._export_queue_here(deadline)  # no thread may start now: this one does the work
        with self._cond:
            return self._queue.all_settled

    def shutdown(self, timeout_millis: Optional[float] = None) -> None:
        """Export what is queued, then stop; returns within the timeout whatever happens.

        The worker exports what is queued, then shuts the exporter down, while
        this waits for it until the deadline; when no thread can run (the
        interpreter is exiting), the calling thread does both instead. Whatever
        is not exported by the deadline goes to the spool, once; a spool write
        the worker has already begun is waited for up to ``KEEP_GRACE_MILLIS``
        more, so that an exit right after does not cut it short. An exporter
        whose ``shutdown()`` has not returned by then is left running on the
        worker, a daemon thread (it holds up neither the caller nor the exit).

        A ``KeyboardInterrupt`` (or any ``BaseException``) raised meanwhile on
        the calling thread goes on to the caller once every profile held is
        counted; the processor is shut down all the same.
        """
        self._renew_if_forked()
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._queue.closed:
                return
            self._queue.close()
            self._rounds.finish_by(deadline)
            # the worker exports the rest and shuts the exporter down (started if it had died)
            self._worker.ensure(stopped=False)
            worker = self._worker.thread
            self._cond.notify_all()
        try:
            if worker is not None and worker is not threading.current_thread():
                worker.join(max(deadline - time.monotonic(), 0))
            # the queue first: once it is empty, the worker cannot take another batch
            self._export_queue_here(deadline)
        except BaseException:  # noqa: BLE001 - e.g. Ctrl-C: count what is held, then go on
            self._keep_held(None)
            raise
        self._keep_held(timeout)
        self._rounds.report_drops(final=True)
        self._finish_exporter_shutdown(deadline, timeout)

    def _keep_held(self, timed_out_after: Optional[float]) -> None:
        """Spool what shutdown did not export: the queue left, then the worker's batch.

        ``timed_out_after``: the timeout that ran out, ``None`` when interrupted.
        The worker's export may still end, even successfully; it then finds
        its batch taken and leaves it alone.
        """
        with self._cond:
            left = self._queue.take_all()  # none unless interrupted: the queue was exported
        if left:
            self._delivery.settle_unsent(left)
        reclaimed = self._delivery.reclaim()
        if reclaimed:
            name = type(self._exporter).__name__
            if timed_out_after is None:
                _logger.warning(
                    "Shutdown was interrupted while %s was exporting %d profile(s).",
                    name,
                    reclaimed,
                )
            else:
                _logger.warning(
                    "Shutdown timed out after %.1f s while %s was exporting %d profile(s).",
                    timed_out_after,
                    name,
                    reclaimed,
                )
        still = self._delivery.wait_kept(KEEP_GRACE_MILLIS / 1000)
        if still:
            _logger.warning(
                "Shutdown returns while the export worker of %s is still writing %d batch(es) "
                "it could not send to the spool; they are lost if the process exits now.",
                type(self._exporter).__name__,
                still,
            )
        with self._cond:
            self._queue.end_flushes()

    def _finish_exporter_shutdown(self, deadline: float, timeout: float) -> None:
        """Wait until ``deadline`` for the worker to shut the exporter down; warn if it hangs.

        A worker that stopped on an exception is started again to do it; when
        no thread can run, the calling thread does it. A worker still in its
        last export (warned already) shuts the exporter down once that returns.
        """
        with self._cond:
            if not self._exporter_shutdown_begun:
                self._worker.ensure(stopped=False)
            worker = self._worker.thread
        if worker is None:
            self._shut_exporter_down()  # no thread can run: this one does it
            return
        if worker is threading.current_thread():
            return  # shut down from within an export: the worker does it after this round
        worker.join(max(deadline - time.monotonic(), 0))
        with self._cond:
            hung = self._exporter_shutdown_begun and not self._exporter_shut_down
        if hung:
            warn_exporter_shutdown_abandoned(self._exporter, timeout, _logger)

    def _shut_exporter_down(self) -> None:
        """Shut the exporter down, once (the worker's last act, or the caller's)."""
        with self._cond:
            if self._exporter_shutdown_begun:
                return
            self._exporter_shutdown_begun = True
        try:
            shut_exporter_down(self._exporter, _logger)
        finally:
            with self._cond:
                self._exporter_shut_down = True

    def _export_queue_here(self, deadline: float) -> None:
        """Export the queue on the calling thread until ``deadline``; keep the rest."""
        while True:
            with self._cond:
                batch = self._queue.take(self.max_export_batch_size)
            if not batch:
                return
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                with self._cond:
                    left = batch + self._queue.take_all()
                _logger.warning("No time left to export %d queued profile(s).", len(left))
                self._delivery.settle_unsent(left)
                return
            self._delivery.deliver(batch, min(remaining_ms, self.export_timeout_millis))
