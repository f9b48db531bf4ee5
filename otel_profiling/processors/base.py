"""Profile processors, shaped like OpenTelemetry's ``SpanProcessor``."""

from __future__ import annotations

import logging

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.profile import Profile

_logger = logging.getLogger(__name__)


class ProfileProcessor:
    """Hooks called when a profile starts and ends. The base class does nothing."""

    def on_start(self, profile: Profile) -> None:
        """Called when a profile starts (on the thread that starts it)."""

    def on_end(self, profile: Profile) -> None:
        """Called with the ended, read-only profile."""

    def shutdown(self) -> None:
        """Flush and release resources."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _suppressed:
    """Context manager: no instrumentation (e.g. of botocore or urllib3) while exporting."""

    def __enter__(self) -> None:
        self._token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))

    def __exit__(self, *exc: object) -> None:
        detach(self._token)


suppressed = _suppressed


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
    """Exports each profile as soon as it ends, on the thread that ended it."""

    def __init__(self, exporter: ProfileExporter) -> None:
        self._exporter = exporter
        self._shutdown = False

    def on_end(self, profile: Profile) -> None:
        if self._shutdown:
            return
        if not export_batch(self._exporter, [profile]):
            _logger.warning("Export of %s failed.", profile.key)

    def shutdown(self) -> None:
        self._shutdown = True
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)
