"""Profile processors, shaped like OpenTelemetry's ``SpanProcessor``.

A profile without payload (status ``ERROR``: the profiler failed) is never
handed to an exporter, so no empty object is ever stored: processors count it
in ``error_profiles`` and log the profiler's error.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Optional

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from otel_profiling._fork import renew_after_fork
from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult, has_payload
from otel_profiling.processors.batch_settings import DEFAULT_EXPORT_TIMEOUT_MILLIS
from otel_profiling.processors.batch_worker import RestartingWorker
from otel_profiling.profile import Profile

_logger = logging.getLogger(__name__)


class ProfileProcessor:
    """Hooks called when a profile starts and ends. The base class does nothing."""

    @property
    def exporter(self) -> Optional[ProfileExporter]:
        """The exporter this processor hands profiles to; ``None`` if it exports nothing."""
        return None

    def on_start(self, profile: Profile) -> None:
        """Called when a profile starts (on the thread that starts it)."""

    def on_end(self, profile: Profile) -> None:
        """Called with the ended, read-only profile."""

    def shutdown(self, timeout_millis: Optional[float] = None) -> None:
        """Flush and release resources, within about ``timeout_millis`` when given."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def shutdown_processor(processor: ProfileProcessor, timeout_millis: float) -> None:
    """``processor.shutdown``, bounded by ``timeout_millis`` when the processor takes one.

    A processor written to the ``SpanProcessor`` shape (``shutdown()`` with no
    argument) is still shut down, without a bound.
    """
    try:
        bounded = "timeout_millis" in inspect.signature(processor.shutdown).parameters
    except (TypeError, ValueError):  # a callable without a signature
        bounded = False
    if bounded:
        processor.shutdown(timeout_millis=timeout_millis)
    else:
        processor.shutdown()


def shut_exporter_down(exporter: ProfileExporter, logger: logging.Logger = _logger) -> None:
    """``exporter.shutdown()``; an ``Exception`` it raises is logged (to the processor's
    ``logger``), not propagated."""
    try:
        exporter.shutdown()
    except Exception:  # noqa: BLE001 - a processor's shutdown must not fail on it
        logger.exception("Exporter %s raised in shutdown().", type(exporter).__name__)


def warn_exporter_shutdown_abandoned(
    exporter: ProfileExporter, timeout: float, logger: logging.Logger = _logger
) -> None:
    """The one warning when an exporter's ``shutdown()`` outlives its processor's bound."""
    logger.warning(
        "%s.shutdown() did not return within %.1f s; left running on a daemon thread.",
        type(exporter).__name__,
        timeout,
    )


def shut_exporter_down_within(exporter: ProfileExporter, timeout: float) -> None:
    """``exporter.shutdown()`` on a library daemon thread, waited for ``timeout`` seconds at most.

    The batch processor's worker is the same kind of thread, and a hung
    ``shutdown()`` is left to it the same way. When no thread can run (the
    interpreter is exiting), the calling thread calls it.
    """
    lock = threading.Condition()
    worker = RestartingWorker(
        "exporter-shutdown",
        lock,
        lambda: False,  # no rounds: only the last act
        lambda exc: None,  # nothing held to settle
        type(exporter).__name__,
        last=lambda: shut_exporter_down(exporter),
    )
    with lock:
        thread = worker.thread if worker.ensure(stopped=False) else None
    if thread is None:
        shut_exporter_down(exporter)
        return
    thread.join(timeout)
    if thread.is_alive():
        warn_exporter_shutdown_abandoned(exporter, timeout)


class _suppressed:
    """Context manager: no instrumentation (e.g. of botocore or urllib3) while exporting."""

    def __enter__(self) -> None:
        self._token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))

    def __exit__(self, *exc: object) -> None:
        detach(self._token)


suppressed = _suppressed


def report_error_profile(profile: Profile) -> None:
    """Log a profile that is counted in ``error_profiles`` instead of being exported."""
    _logger.warning(
        "%s has no payload: the profiler failed (%s). Not exported; counted in error_profiles.",
        profile.key,
        profile.error or "no data",
    )


def export_batch(exporter: ProfileExporter, batch: list) -> bool:
    """Export without raising and without being traced; ``True`` on success."""
    try:
        with _suppressed():
            result = exporter.export(batch)
    except Exception:  # an exporter must not kill its caller
        _logger.exception(
            "Exporter %s raised while exporting %d profile(s).", type(exporter).__name__, len(batch)
        )
        return False
    return result is ProfileExportResult.SUCCESS


class SimpleProfileProcessor(ProfileProcessor):
    """Exports each profile as soon as it ends, on the thread that ended it.

    It keeps nothing: a profile the exporter could not send is counted in
    ``failed_profiles`` and logged (``BatchProfileProcessor`` spools it
    instead). Every profile ends in one counter: ``exported_profiles``,
    ``failed_profiles``, ``error_profiles`` or, after shutdown, ``dropped_profiles``.
    """

    def __init__(self, exporter: ProfileExporter) -> None:
        self._exporter = exporter
        self._shutdown = False
        self._renew()
        renew_after_fork(self, SimpleProfileProcessor._renew)

    def _renew(self) -> None:
        self._lock = threading.Lock()
        self.exported_profiles = 0
        self.failed_profiles = 0
        self.error_profiles = 0
        self.dropped_profiles = 0

    @property
    def exporter(self) -> ProfileExporter:
        return self._exporter

    def on_end(self, profile: Profile) -> None:
        if self._shutdown:
            with self._lock:
                self.dropped_profiles += 1
            return
        if not has_payload(profile):
            with self._lock:
                self.error_profiles += 1
            report_error_profile(profile)
            return
        try:
            ok = export_batch(self._exporter, [profile])
        except BaseException:  # noqa: BLE001 - e.g. Ctrl-C in the exporter: counted, then on
            with self._lock:
                self.failed_profiles += 1
            raise
        with self._lock:
            if ok:
                self.exported_profiles += 1
            else:
                self.failed_profiles += 1
        if not ok:
            _logger.warning(
                "Export of %s failed; the profile is lost (counted in failed_profiles). "
                "BatchProfileProcessor keeps such profiles in a spool.",
                profile.key,
            )

    def shutdown(self, timeout_millis: Optional[float] = None) -> None:
        """Stop taking profiles and shut the exporter down (nothing is queued here).

        Returns within ``timeout_millis`` (default: the batch processor's export
        timeout): an exporter whose ``shutdown()`` has not returned by then is
        left running on a daemon thread (logged).
        """
        self._shutdown = True
        timeout = DEFAULT_EXPORT_TIMEOUT_MILLIS if timeout_millis is None else timeout_millis
        shut_exporter_down_within(self._exporter, timeout / 1000)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)
