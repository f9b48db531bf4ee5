"""What becomes of a batch once it leaves the batch processor's queue.

The processor queues profiles and runs the worker; ``Delivery`` sends each
batch through the exporter, keeps what was not sent in the spool (or counts
it lost), says so in the log, and re-sends the spool once the backend works
again. Every profile it is given ends in exactly one of its counters:
``exported_profiles``, ``spooled_profiles``, ``failed_profiles`` or
``error_profiles``; ``resent_profiles`` counts spooled profiles uploaded later.

Locking: ``lock`` is the processor's condition, shared so that a profile is
counted, settled in the queue and its bytes released under the one lock that
guards the queue. A method takes the lock itself unless its docstring says
"lock held"; nothing is sent, written or logged while it is held. The queue's
``closed`` flag (set once, by shutdown) is read without it, and so are the
counters by the processor's properties (each is one ``int``: a read sees a
whole value).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import List, Optional, Sequence, Tuple

from otel_profiling.exporters.base import ProfileExporter, has_payload
from otel_profiling.processors.base import report_error_profile, suppressed
from otel_profiling.processors.batch_backoff import MAX_INTERVAL_S, BackendHealth
from otel_profiling.processors.batch_queue import ProfileQueue
from otel_profiling.processors.batch_settings import BatchSettings
from otel_profiling.processors.spool import Spool
from otel_profiling.profile import Profile

# the processor's logger: one name to configure for everything the batch processor says
_logger = logging.getLogger("otel_profiling.processors.batch")

_RESEND_BATCHES_PER_ROUND = 4


class Delivery:
    """Sends batches, keeps what was not sent, re-sends it later, and counts each profile.

    One belongs to one processor in one process (a forked child makes its own).
    The worker's batch is *in flight* from ``begin`` until it is settled; the
    thread shutting the processor down may ``reclaim`` it meanwhile, and the
    worker's export, when it ends, then leaves it alone.
    """

    def __init__(
        self,
        exporter: ProfileExporter,
        spool: Optional[Spool],
        queue: ProfileQueue,
        lock: threading.Condition,
        settings: BatchSettings,
    ) -> None:
        self._exporter = exporter
        self._name = type(exporter).__name__  # named in the log lines
        self._spool = spool
        self._queue = queue
        self._lock = lock
        self._settings = settings
        self._health = BackendHealth()
        self._in_flight: Optional[List[Profile]] = None
        self._keeping = 0  # batches out of ``_in_flight`` and not yet settled
        self._spool_pending = False  # the spool holds profiles to re-send
        self.exported_profiles = 0
        self.spooled_profiles = 0
        self.failed_profiles = 0
        self.error_profiles = 0
        self.resent_profiles = 0

    # -- called with the lock held ---------------------------------------------
    def expect_resend(self) -> None:
        """(lock held) The spool holds profiles (of an earlier process) to re-send."""
        self._spool_pending = True

    def next_resend_at(self) -> Optional[float]:
        """(lock held) ``time.monotonic()`` of the next re-send; ``None`` with nothing spooled."""
        return self._health.next_try if self._spool_pending else None

    def resend_due(self, now: float) -> bool:
        """(lock held) Spooled profiles wait and it is time to re-send them."""
        return self._spool_pending and self._health.due(now)

    def begin(self, batch: List[Profile]) -> None:
        """(lock held) ``batch`` is the worker's until it is settled (none if empty)."""
        self._in_flight = batch or None

    # -- sending ---------------------------------------------------------------
    def reclaim(self, batch: Optional[List[Profile]] = None) -> int:
        """Take the worker's batch from it (only if it is ``batch``, when given) and
        settle it as not sent; returns how many profiles it held, 0 if none.

        Taking and settling are one step so that ``wait_kept`` sees the batch
        until it is settled. A profile the worker's export did land is found at
        its key by the re-send, which does not upload it twice.
        """
        with self._lock:
            held = self._in_flight
            if held is None or (batch is not None and held is not batch):
                return 0
            self._in_flight = None
            self._keeping += 1
        try:
            self.settle_unsent(held)
        finally:
            self._kept()
        return len(held)

    def wait_kept(self, timeout: float) -> int:
        """Wait up to ``timeout`` s until every batch taken from the worker is settled.

        The worker settles its batch (writes what was not sent to the spool)
        after it has stopped being in flight: shutdown must not return while
        that write is under way, or the process may exit in the middle of it.
        Returns how many batches are still being kept.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._keeping == 0, timeout)
            return self._keeping

    def _kept(self) -> None:
        with self._lock:
            self._keeping -= 1
            self._lock.notify_all()

    def deliver(
        self,
        batch: List[Profile],
        timeout_millis: float,
        in_flight: bool = False,
        now: bool = False,
    ) -> None:
        """Export ``batch`` and settle each profile in its counter.

        While the backend is down the batch goes straight to the spool, unless
        a probe is due or ``now`` (a flush asks for a try). The worker's batch
        (``in_flight``) is settled only if it has not been taken back meanwhile.
        A ``BaseException`` the exporter raises (``KeyboardInterrupt``) goes on
        to the caller once the batch is settled as not sent.
        """
        errors = [p for p in batch if not has_payload(p)]
        todo = [p for p in batch if has_payload(p)]
        tried = bool(todo) and (now or self._may_try())
        try:
            unsent = self._send(todo, timeout_millis) if tried else todo
        except BaseException:  # noqa: BLE001 - e.g. Ctrl-C in the exporter: settle, then go on
            if in_flight:
                self.reclaim(batch)
            else:
                self.settle_unsent(batch)
            raise
        sent = len(todo) - len(unsent)
        with self._lock:
            if in_flight:
                if self._in_flight is not batch:
                    return  # taken back: settled by the thread that took it
                self._in_flight = None
                self._keeping += 1  # until settled below (``wait_kept``)
            self.exported_profiles += sent
            self.error_profiles += len(errors)
            self._queue.settle(sent + len(errors))
        try:
            self._settle_rest(batch, errors, unsent, bool(sent), tried and not sent)
        finally:
            if in_flight:
                self._kept()

    def settle_unsent(self, batch: Sequence[Profile]) -> None:
        """Settle profiles known not to be sent: errors counted, the rest kept or lost."""
        errors = [p for p in batch if not has_payload(p)]
        with self._lock:
            self.error_profiles += len(errors)
            self._queue.settle(len(errors))
        todo = [p for p in batch if has_payload(p)]
        self._settle_rest(batch, errors, todo, False, False)

    def _settle_rest(
        self,
        batch: Sequence[Profile],
        errors: Sequence[Profile],
        unsent: Sequence[Profile],
        sent: bool,
        probe_failed: bool,
    ) -> None:
        """After the counting step: report ``errors`` (counted already), keep or lose
        ``unsent`` and release ``batch``, whatever raises meanwhile.

        A custom spool or a log handler may raise anything: each profile of
        ``unsent`` not counted yet is then counted in ``failed_profiles`` (one
        error logged), the batch's bytes are released, and the worker goes on.
        """
        left = list(unsent)  # not in a counter yet; ``_keep`` takes out each it counts
        try:
            for profile in errors:
                report_error_profile(profile)
            if sent:
                self._mark_up()
            if left:
                kept, lost = self._keep(left)
                self._report_unsent(kept, lost, probe_failed)
        except Exception:  # noqa: BLE001 - settled below; the worker must go on
            _logger.exception(
                "Unexpected error while keeping the profiles %s did not send: %d not kept "
                "yet are lost (counted in failed_profiles). Fix: a custom Spool must not "
                "raise (Spool.put returns None when it cannot write).",
                self._name,
                len(left),
            )
        finally:
            with self._lock:
                self.failed_profiles += len(left)
                self._queue.settle(len(left))
            self._release(batch)

    def _send(
        self, profiles: Sequence[Profile], timeout_millis: float, resend: bool = False
    ) -> List[Profile]:
        """Export through the exporter without being traced; returns what was not sent."""
        try:
            with suppressed():
                unsent = self._exporter.export_unsent(profiles, timeout_millis, resend=resend)
            ids = {id(p) for p in unsent}
        except Exception:  # noqa: BLE001 - an exporter must not kill the worker
            _logger.exception("Exporter %s raised.", self._name)
            return list(profiles)
        return [p for p in profiles if id(p) in ids]

    def _release(self, batch: Sequence[Profile]) -> None:
        """A settled batch no longer counts against ``max_queue_bytes``.

        Only after it is settled: while its profiles are written to the spool
        they are still held, and the byte bound covers them.
        """
        with self._lock:
            self._queue.release(list(batch))

    def _keep(self, profiles: List[Profile]) -> Tuple[int, int]:
        """Spool ``profiles`` (lost without a spool, or if it cannot be written): (kept, lost).

        Each profile leaves ``profiles`` once counted: if the spool raises, what
        is left there is the caller's to settle.
        """
        kept = lost = 0
        try:
            while profiles:
                if self._spooled(profiles[0]):
                    kept += 1
                else:
                    lost += 1
                del profiles[0]
        finally:
            with self._lock:
                self.spooled_profiles += kept
                self.failed_profiles += lost
                self._queue.settle(kept + lost)
                if kept:
                    self._spool_pending = True
        return kept, lost

    def _spooled(self, profile: Profile) -> bool:
        if self._spool is None:
            return False
        try:
            return self._spool.put(profile) is not None
        except Exception:  # noqa: BLE001 - a custom spool that raises: the profile is lost
            _logger.exception("Spooling %s failed: the profile is lost.", profile.key)
            return False

    # -- the backend's health ----------------------------------------------------
    def back_off(self) -> None:
        """Wait longer before the next try (a round failed: no tight loop if it repeats)."""
        self._health.back_off(time.monotonic())

    def _may_try(self) -> bool:
        """While the backend is down, only one try (a batch or a re-send) per backoff interval."""
        return self._spool is None or self._health.may_try(time.monotonic())

    def _mark_up(self) -> None:
        """Something got through: say so once if the backend had been down with profiles spooled."""
        if not self._health.mark_up():
            return
        with self._lock:
            spooled = self._spool_pending
        if spooled:
            _logger.warning("%s works again; re-sending spooled profiles.", self._name)

    def _report_unsent(self, kept: int, lost: int, probe_failed: bool) -> None:
        """Say what became of profiles not sent: one warning when the backend goes down.

        A profile the spool could not take was reported as lost by the spool.
        """
        if probe_failed and self._spool is not None:
            self._health.mark_down(time.monotonic())
        if self._spool is None:
            _logger.warning(
                "%s could not send %d profile(s); spooling is off, so they are lost "
                "(counted in failed_profiles).",
                self._name,
                lost,
            )
        elif kept and self._queue.closed:  # shut down: kept for the next process
            _logger.warning(
                "%d profile(s) not exported by %s before shutdown are kept in %s; the next "
                "process of this service sends them.",
                kept,
                self._name,
                self._spool.directory,
            )
        elif kept and self._health.first_warning():
            _logger.warning(
                "%s could not send %d profile(s); they are kept in %s and re-sent when the "
                "backend works again (tried every %d s at most).",
                self._name,
                kept,
                self._spool.directory,
                int(MAX_INTERVAL_S),
            )
        elif kept:
            _logger.debug("%d more profile(s) kept in %s.", kept, self._spool.directory)

    # -- re-sending the spool ------------------------------------------------------
    def resend_if_due(self, flushing: bool) -> None:
        """Re-send some spooled profiles when due, or for a flush while the backend is up.

        A flush tries even with nothing spooled by this process: another
        process of the service may have left some. Nothing is re-sent once
        shut down (the next process does it). Backs off while nothing gets through.
        """
        if self._spool is None:
            return
        with self._lock:  # re-sent profiles are held too: up to half the byte bound is theirs
            due = self.resend_due(time.monotonic()) or (flushing and not self._health.down)
            if self._queue.closed or not due:
                return
            budget = self._queue.reserve(self._queue.max_bytes // 2)
        try:
            sent, pending = self._spool.drain(
                lambda ps: self._send(ps, self._settings.export_timeout_millis, resend=True),
                self._settings.max_export_batch_size,
                _RESEND_BATCHES_PER_ROUND,
                max_bytes=budget,
            )
        finally:
            with self._lock:
                self._queue.unreserve(budget)
        with self._lock:
            self.resent_profiles += sent
            self._spool_pending = pending > 0
        now = time.monotonic()
        if sent:
            self._mark_up()
            self._health.try_now(now)
        elif pending:
            self._health.back_off(now)
