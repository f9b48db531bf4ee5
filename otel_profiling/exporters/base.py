"""The exporter interface, shaped like OpenTelemetry's ``SpanExporter``."""

from __future__ import annotations

import abc
import enum
from typing import Sequence

from otel_profiling.profile import Profile


class ProfileExportResult(enum.Enum):
    SUCCESS = 0
    FAILURE = 1


class ProfileExporter(abc.ABC):
    """Sends finished profiles somewhere. Called from one processor thread at a time."""

    @abc.abstractmethod
    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        """Export a batch; must not raise (return ``FAILURE`` instead)."""

    def shutdown(self) -> None:
        """Release resources; later exports fail."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Exporters here hold no buffer of their own: nothing to flush."""
        return True
