"""A batching processor for profiles, modelled on OpenTelemetry's ``BatchSpanProcessor``.

Differences from the span processor, each on purpose:

* the queue is bounded by count *and* by bytes (profiles are large); when
  full, the oldest profile is dropped, counted in ``dropped_profiles``, and
  reported by a rate-limited warning logged from the worker, never from
  ``on_end`` (which only appends under a lock: no I/O, no logging);
* ``force_flush`` and ``shutdown`` honour their timeouts;
* after ``os.fork()`` the child gets a new lock, queue and worker thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Deque, List, Optional

from otel_profiling import _threads
from otel_profiling._env import env_int
from otel_profiling.exporters.base import ProfileExporter
from otel_profiling.processors.base import ProfileProcessor, export_batch
from otel_profiling.profile import Profile

_logger = logging.getLogger(__name__)

DEFAULT_SCHEDULE_DELAY_MILLIS = 1_000
DEFAULT_MAX_QUEUE_SIZE = 256
DEFAULT_MAX_EXPORT_BATCH_SIZE = 32
DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000
DEFAULT_MAX_QUEUE_BYTES = 256 * 1024 * 1024
_DROP_WARNING_INTERVAL_S = 60.0


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
    A single profile larger than ``max_queue_bytes`` is still accepted when the
    queue is otherwise empty, so that no profile is too big to ever be sent.
    """

    def __init__(
        self,
        exporter: ProfileExporter,
        schedule_delay_millis: Optional[float] = None,
        max_queue_size: Optional[int] = None,
        max_export_batch_size: Optional[int] = None,
        export_timeout_millis: Optional[float] = None,
        max_queue_bytes: Optional[int] = None,
    ) -> None:
        self._exporter = exporter
        self.schedule_delay_millis = _pick(
            schedule_delay_millis, "OTEL_BPP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MILLIS
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
            export_timeout_millis, "OTEL_BPP_EXPORT_TIMEOUT", DEFAULT_EXPORT_TIMEOUT_MILLIS
        )
        self.max_queue_bytes = _pick(
            max_queue_bytes, "OTEL_BPP_MAX_QUEUE_BYTES", DEFAULT_MAX_QUEUE_BYTES, 1
        )
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError(
                f"max_export_batch_size ({self.max_export_batch_size}) must not exceed "
                f"max_queue_size ({self.max_queue_size})."
            )
        self.dropped_profiles = 0
        self.exported_profiles = 0
        self.failed_profiles = 0
        self._reported_drops = 0
        self._last_drop_warning = 0.0
        self._init_state()
        ref = weakref.ref(self)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _at_fork(ref))

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: Deque[Profile] = collections.deque()
        self._queue_bytes = 0
        self._enqueued = 0  # sequence number of the last profile queued
        self._taken = 0  # sequence number of the last profile taken for export
        self._flushes: List[_Flush] = []
        self._shutdown = False
        self._worker: Optional[threading.Thread] = None
        self._pid = os.getpid()

    # -- application side ---------------------------------------------------
    @property
    def queued_profiles(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
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
            if self._worker is None:
                self._worker = _threads.start_daemon(self._run, "batch-processor")
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
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = self._take_batch()
                stop = self._shutdown and not self._queue
            if batch:
                self._export(batch)
            self._complete_flushes()
            self._report_drops()
            if stop:
                return

    def _take_batch(self) -> List[Profile]:
        batch: List[Profile] = []
        while self._queue and len(batch) < self.max_export_batch_size:
            profile = self._queue.popleft()
            self._queue_bytes -= len(profile.data)
            batch.append(profile)
        return batch

    def _export(self, batch: List[Profile]) -> None:
        ok = export_batch(self._exporter, batch)
        with self._cond:
            self._taken += len(batch)
            if ok:
                self.exported_profiles += len(batch)
            else:
                self.failed_profiles += len(batch)
        if not ok:
            _logger.warning(
                "Exporting %d profile(s) with %s failed.", len(batch), type(self._exporter).__name__
            )

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
                _logger.warning(
                    "Shutdown timed out after %.1f s with %d profile(s) not exported.",
                    timeout,
                    len(self._queue),
                )
        self._report_drops()
        self._exporter.shutdown()

    def _reinit_after_fork(self) -> None:
        """The child starts empty: queued profiles belong to the parent, which exports them."""
        counters = (self.dropped_profiles, self.exported_profiles, self.failed_profiles)
        self._init_state()
        self.dropped_profiles, self.exported_profiles, self.failed_profiles = counters


def _at_fork(ref: weakref.ref[BatchProfileProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor._reinit_after_fork()


def _pick(value: Optional[float], env: str, default: int, minimum: int = 0) -> int:
    if value is None:
        return env_int(env, default, minimum)
    if value < minimum:
        raise ValueError(
            f"{env.replace('OTEL_BPP_', '').lower()} must be >= {minimum}, got {value}"
        )
    return int(value)
