"""A batching processor for profiles, modelled on OpenTelemetry's ``BatchSpanProcessor``.

Differences from the span processor, each on purpose:

* the queue is bounded by count *and* by bytes (profiles are large); when
  full, the oldest profile is dropped, counted in ``dropped_profiles``, and
  reported by a rate-limited warning logged from the worker, never from
  ``on_end`` (which only appends under a lock: no I/O, no logging);
* ``force_flush`` and ``shutdown`` honour their timeouts;
* after ``os.fork()`` the child gets a new lock, queue and worker thread;
* what the exporter could not send goes to a local ``Spool`` and is re-sent
  from the worker when the backend works again (and by the next process of
  the same service); while the backend is down, new batches go straight to the
  spool and one re-send per backoff interval probes the backend. A shutdown
  that times out spools what is still queued or in flight.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
import weakref
from typing import Deque, List, Optional, Sequence, Union

from otel_profiling import _threads
from otel_profiling._env import env_int
from otel_profiling._limits import ENV_MIN_EXPORT_TIMEOUT_MILLIS, MAX_EXPORT_TIMEOUT_MILLIS
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.processors.base import ProfileProcessor, suppressed
from otel_profiling.profile import Profile
from otel_profiling.spool import Spool

_logger = logging.getLogger(__name__)

DEFAULT_SCHEDULE_DELAY_MILLIS = 1_000
DEFAULT_MAX_QUEUE_SIZE = 256
DEFAULT_MAX_EXPORT_BATCH_SIZE = 32
DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000
DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
MAX_SCHEDULE_DELAY_MILLIS = 3_600_000
ENV_MIN_SCHEDULE_DELAY_MILLIS = 100  # from the environment: a delay of 0 would spin a core
_DROP_WARNING_INTERVAL_S = 60.0
_DRAIN_INTERVAL_MIN_S = 1.0
_DRAIN_INTERVAL_MAX_S = 30.0
_DRAIN_BATCHES_PER_ROUND = 4


class _Flush:
    """A flush request: done once everything queued before it has been exported."""

    __slots__ = ("upto", "done")

    def __init__(self, upto: int) -> None:
        self.upto = upto
        self.done = threading.Event()


class BatchProfileProcessor(ProfileProcessor):
    """Queues ended profiles and exports them in batches from a worker thread.

    Arguments left as ``None`` come from ``OTEL_BPP_SCHEDULE_DELAY``,
    ``OTEL_BPP_MAX_QUEUE_SIZE``, ``OTEL_BPP_MAX_EXPORT_BATCH_SIZE``,
    ``OTEL_BPP_EXPORT_TIMEOUT`` and ``OTEL_BPP_MAX_QUEUE_BYTES``, else the defaults.
    The byte bound covers the batch being exported too, so memory stays bounded
    while the backend is slow. A single profile larger than ``max_queue_bytes``
    is still accepted when the queue is otherwise empty, so that no profile is
    too big to ever be sent.

    ``spool``: ``True`` (default) uses ``Spool.from_env()`` (a per-user cache
    directory per service and exporter destination, or under
    ``OTEL_PROFILING_SPOOL_DIR``; ``none`` there disables it), ``False``
    disables spooling, or pass a ``Spool``.
    """

    _worker: Optional[threading.Thread]

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
        self.schedule_delay_millis = _pick(
            schedule_delay_millis,
            "OTEL_BPP_SCHEDULE_DELAY",
            DEFAULT_SCHEDULE_DELAY_MILLIS,
            1,
            MAX_SCHEDULE_DELAY_MILLIS,
            ENV_MIN_SCHEDULE_DELAY_MILLIS,
            unit="ms",
        )
        self.max_queue_size = _pick(
            max_queue_size, "OTEL_BPP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE, 1
        )
        self.max_export_batch_size = _pick(
            max_export_batch_size,
            "OTEL_BPP_MAX_EXPORT_BATCH_SIZE",
            DEFAULT_MAX_EXPORT_BATCH_SIZE,
            1,
        )
        self.export_timeout_millis = _pick(
            export_timeout_millis,
            "OTEL_BPP_EXPORT_TIMEOUT",
            DEFAULT_EXPORT_TIMEOUT_MILLIS,
            1,
            MAX_EXPORT_TIMEOUT_MILLIS,
            ENV_MIN_EXPORT_TIMEOUT_MILLIS,
            unit="ms",
        )
        self.max_queue_bytes = _pick(
            max_queue_bytes, "OTEL_BPP_MAX_QUEUE_BYTES", DEFAULT_MAX_QUEUE_BYTES, 1
        )
        if self.max_export_batch_size > self.max_queue_size:
            if max_export_batch_size is not None and max_queue_size is not None:
                raise ValueError(
                    f"max_export_batch_size ({self.max_export_batch_size}) must not exceed "
                    f"max_queue_size ({self.max_queue_size})."
                )
            _logger.warning(  # one at least came from the environment or a default
                "The export batch size %d (OTEL_BPP_MAX_EXPORT_BATCH_SIZE) exceeds the queue "
                "size %d (OTEL_BPP_MAX_QUEUE_SIZE); using batches of %d.",
                self.max_export_batch_size,
                self.max_queue_size,
                self.max_queue_size,
            )
            self.max_export_batch_size = self.max_queue_size
        self.dropped_profiles = 0
        self.exported_profiles = 0
        self.failed_profiles = 0
        self.spooled_profiles = 0
        self.resent_profiles = 0
        self._reported_drops = 0
        self._last_drop_warning = -_DROP_WARNING_INTERVAL_S
        self._init_state()
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _at_fork(ref))
        if self.spool is not None and self.spool.pending():
            # left by an earlier process of this service: re-send in the background
            self._spool_pending = True
            with self._cond:
                self._start_worker()

    def _start_worker(self) -> None:
        """Called with ``_cond`` held."""
        if self._worker is None:
            self._worker = _threads.start_daemon(self._run, "batch-processor")

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: Deque[Profile] = collections.deque()
        self._queue_bytes = 0
        self._enqueued = 0  # sequence number of the last profile queued
        self._taken = 0  # sequence number of the last profile taken for export
        self._flushes: List[_Flush] = []
        self._shutdown = False
        self._worker = None
        self._pid = os.getpid()
        self._in_flight: List[Profile] = []
        self._backend_down = False
        self._spool_pending = False
        self._drain_interval = _DRAIN_INTERVAL_MIN_S
        self._next_drain = 0.0

    # -- application side ---------------------------------------------------
    @property
    def queued_profiles(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes held: queued profiles plus the batch being exported."""
        return self._queue_bytes

    def on_end(self, profile: Profile) -> None:
        """Append to the queue; never blocks on I/O, never logs."""
        if self._shutdown:
            self.dropped_profiles += 1
            return
        size = len(profile.data)
        if self._pid != os.getpid():  # forked without the at-fork hook running
            self._reinit_after_fork()
        with self._cond:
            while self._queue and (
                len(self._queue) >= self.max_queue_size
                or self._queue_bytes + size > self.max_queue_bytes
            ):
                old = self._queue.popleft()
                self._queue_bytes -= len(old.data)
                self._taken += 1  # the dropped profile counts as handled for flushes
                self.dropped_profiles += 1
            self._queue.append(profile)
            self._queue_bytes += size
            self._enqueued += 1
            self._start_worker()
            if len(self._queue) >= self.max_export_batch_size:
                self._cond.notify_all()

    # -- worker ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self.schedule_delay_millis / 1000.0
        while True:
            with self._cond:
                deadline = time.monotonic() + delay
                while not (
                    self._shutdown
                    or self._flushes
                    or len(self._queue) >= self.max_export_batch_size
                    or self._drain_due()
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, self._drain_wait()))
                batch = self._take_batch()
                flushing = bool(self._flushes)
                stop = self._shutdown and not self._queue
                self._in_flight = batch
            if batch:
                self._export(batch)
            if not stop and (flushing or self._drain_due()):
                self._drain(force=flushing)
            with self._cond:
                self._in_flight = []
                self._queue_bytes -= sum(len(p.data) for p in batch)
            self._complete_flushes()
            self._report_drops()
            if stop:
                return

    def _take_batch(self) -> List[Profile]:
        batch: List[Profile] = []
        while self._queue and len(batch) < self.max_export_batch_size:
            batch.append(self._queue.popleft())  # its bytes count until it is handled
        return batch

    def _send(self, profiles: Sequence[Profile], resend: bool = False) -> List[Profile]:
        """Export through the exporter without being traced; returns what was not sent."""
        try:
            with suppressed():
                return list(
                    self._exporter.export_unsent(
                        profiles, self.export_timeout_millis, resend=resend
                    )
                )
        except Exception:  # an exporter must not kill the worker
            _logger.exception("Exporter %s raised.", type(self._exporter).__name__)
            return list(profiles)

    def _export(self, batch: List[Profile]) -> None:
        if self.spool is not None and self._backend_down and time.monotonic() < self._next_drain:
            unsent = list(batch)  # down: only one try (batch or re-send) per backoff interval
        else:
            unsent = self._send(batch)
        sent = len(batch) - len(unsent)
        with self._cond:
            self._taken += len(batch)
            self.exported_profiles += sent
            self._in_flight = []  # from here on, the worker itself keeps what was not sent
        if sent:
            self._mark_up()
        if not unsent:
            return
        if self.spool is None:
            self.failed_profiles += len(unsent)
            _logger.warning(
                "Exporting %d profile(s) with %s failed; spooling is off, so they are lost.",
                len(unsent),
                type(self._exporter).__name__,
            )
            return
        self._keep(unsent)
        if not sent:
            self._mark_down(len(unsent))

    def _keep(self, profiles: Sequence[Profile]) -> None:
        assert self.spool is not None
        for profile in profiles:
            if self.spool.put(profile) is None:
                self.failed_profiles += 1
            else:
                self.spooled_profiles += 1
                self._spool_pending = True

    def _mark_down(self, count: int) -> None:
        now = time.monotonic()
        if self._backend_down:
            if now >= self._next_drain:  # a probe failed: wait longer before the next
                self._backoff(now)
            return
        self._backend_down = True
        self._drain_interval = _DRAIN_INTERVAL_MIN_S
        self._next_drain = now + self._drain_interval
        _logger.warning(
            "%s could not send %d profile(s); they are kept in %s and re-sent when the "
            "backend works again (tried every %d s at most).",
            type(self._exporter).__name__,
            count,
            self.spool.directory if self.spool else "nowhere",
            int(_DRAIN_INTERVAL_MAX_S),
        )

    def _mark_up(self) -> None:
        if self._backend_down:
            self._backend_down = False
            _logger.warning(
                "%s works again; re-sending spooled profiles.", type(self._exporter).__name__
            )
        self._drain_interval = _DRAIN_INTERVAL_MIN_S

    def _drain_due(self) -> bool:
        return self._spool_pending and time.monotonic() >= self._next_drain

    def _drain_wait(self) -> float:
        if not self._spool_pending:
            return _DRAIN_INTERVAL_MAX_S
        return max(self._next_drain - time.monotonic(), 0.0)

    def _drain(self, force: bool = False) -> None:
        """Re-send some spooled profiles; back off while nothing gets through."""
        if self.spool is None or not (self._spool_pending or force):
            return
        sent, pending = self.spool.drain(
            lambda ps: self._send(ps, resend=True),
            self.max_export_batch_size,
            _DRAIN_BATCHES_PER_ROUND,
        )
        self.resent_profiles += sent
        self._spool_pending = pending > 0
        now = time.monotonic()
        if sent:
            self._mark_up()
            self._next_drain = now
        elif pending:
            self._backoff(now)

    def _backoff(self, now: float) -> None:
        self._drain_interval = min(self._drain_interval * 2, _DRAIN_INTERVAL_MAX_S)
        self._next_drain = now + self._drain_interval

    def _complete_flushes(self) -> None:
        with self._cond:
            pending = []
            for flush in self._flushes:
                if self._taken >= flush.upto:
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
        """Export everything queued now; ``False`` if that did not finish in time."""
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        with self._cond:
            if self._enqueued == self._taken or self._worker is None:
                return not self._queue
            flush = _Flush(self._enqueued)
            self._flushes.append(flush)
            self._cond.notify_all()
        return flush.done.wait(timeout)

    def shutdown(self, timeout_millis: Optional[float] = None) -> None:
        """Export what is queued, then stop; returns within the timeout whatever happens."""
        timeout = (self.export_timeout_millis if timeout_millis is None else timeout_millis) / 1000
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._shutdown:
                return
            self._shutdown = True
            worker = self._worker
            self._cond.notify_all()
        if worker is not None:
            worker.join(max(deadline - time.monotonic(), 0))
            if worker.is_alive():
                self._abandon(timeout)
        self._report_drops()
        self._exporter.shutdown()

    def _abandon(self, timeout: float) -> None:
        """Shutdown timed out: keep what is queued or in flight in the spool.

        The worker may still finish the in-flight batch; a profile then both
        arrives and waits in the spool, and its re-send finds it there and
        does not upload it twice.
        """
        with self._cond:
            left = list(self._in_flight) + list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
        if self.spool is not None and left:
            self._keep(left)
            _logger.warning(
                "Shutdown timed out after %.1f s; %d profile(s) not exported are kept in %s "
                "and will be sent by the next process of this service.",
                timeout,
                len(left),
                self.spool.directory,
            )
        elif left:
            self.failed_profiles += len(left)
            _logger.warning(
                "Shutdown timed out after %.1f s with %d profile(s) not exported.",
                timeout,
                len(left),
            )

    def _reinit_after_fork(self) -> None:
        """The child starts empty: queued profiles belong to the parent, which exports them."""
        self._init_state()


def _destination(exporter: ProfileExporter) -> str:
    try:
        return str(exporter.destination)
    except Exception:  # an exporter without a usable destination: one spool per class
        return type(exporter).__name__


def _at_fork(ref: weakref.ref[BatchProfileProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor._reinit_after_fork()


def _pick(
    value: Optional[float],
    env: str,
    default: int,
    minimum: int,
    maximum: Optional[int] = None,
    env_minimum: Optional[int] = None,
    unit: str = "",
) -> int:
    """An argument, checked (``ValueError``); else the variable, clamped into its range."""
    if value is None:
        floor = minimum if env_minimum is None else env_minimum
        return env_int(env, default, floor, maximum=maximum, unit=unit)
    high = math.inf if maximum is None else maximum
    if isinstance(value, bool) or not (minimum <= value <= high):  # also refuses nan
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{env.replace('OTEL_BPP_', '').lower()} must be {bound}, got {value}")
    return int(value)
