"""The exporter interface, shaped like OpenTelemetry's ``SpanExporter``."""

from __future__ import annotations

import abc
import enum
from typing import List, Optional, Sequence

from otel_profiling.profile import Profile, ProfileStatus


class ProfileExportResult(enum.Enum):
    SUCCESS = 0
    FAILURE = 1


class ProfileExporter(abc.ABC):
    """Sends finished profiles somewhere. Called from one processor thread at a time."""

    @abc.abstractmethod
    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        """Export a batch; must not raise (return ``FAILURE`` instead)."""

    @property
    def destination(self) -> str:
        """Where this exporter sends profiles (no secrets): it names its spool directory."""
        return type(self).__name__

    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        """Export and return the profiles that were *not* sent, so they can be kept.

        Exporters that know which profiles of a batch failed override this; the
        default is all or nothing from ``export``. ``resend`` marks profiles
        coming back from the spool (an exporter may then recognise one that did
        arrive before).
        """
        if self.export(profiles) is ProfileExportResult.SUCCESS:
            return []
        return list(profiles)

    def shutdown(self) -> None:
        """Release resources; later exports fail."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Exporters here hold no buffer of their own: nothing to flush."""
        return True


class PerProfileExporter(ProfileExporter):
    """An exporter that knows which profiles of a batch it could not send.

    It implements ``export_unsent``; ``export`` follows from it (a batch
    succeeds when nothing is left unsent).
    """

    @abc.abstractmethod
    def export_unsent(
        self,
        profiles: Sequence[Profile],
        timeout_millis: Optional[float] = None,
        *,
        resend: bool = False,
    ) -> List[Profile]:
        """Export and return the profiles that were *not* sent."""

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        unsent = self.export_unsent(profiles)
        return ProfileExportResult.FAILURE if unsent else ProfileExportResult.SUCCESS


def has_payload(profile: Profile) -> bool:
    """Whether ``profile`` has something to write: an ``ERROR`` profile (the profiler
    failed) or an empty one never becomes an object, so no empty file is ever stored."""
    return profile.status is not ProfileStatus.ERROR and bool(profile.data)
