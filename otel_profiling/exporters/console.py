"""An exporter that prints one line per profile, for trying things out."""

from __future__ import annotations

import json
import sys
from typing import IO, Callable, Optional, Sequence

from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.profile import Profile, iso_millis


def _summary(profile: Profile) -> str:
    duration = profile.duration.total_seconds() if profile.duration is not None else None
    return json.dumps(
        {
            "key": profile.key,
            "kind": profile.kind.value,
            "name": profile.name,
            "start_time": iso_millis(profile.start_time),
            "duration_s": duration,
            "status": profile.status.value,
            "error": profile.error,
            "format": profile.format,
            "size": len(profile.data),
            "service.name": profile.resource.attributes.get("service.name"),
            "attributes": {k: str(v) for k, v in profile.attributes.items()},
        }
    )


class ConsoleProfileExporter(ProfileExporter):
    """Writes a JSON summary line per profile (not the payload) to ``out``."""

    def __init__(
        self,
        out: Optional[IO[str]] = None,
        formatter: Callable[[Profile], str] = _summary,
    ) -> None:
        self._out = out
        self._formatter = formatter

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        out = self._out or sys.stdout
        try:
            for profile in profiles:
                out.write(self._formatter(profile) + "\n")
            out.flush()
        except (OSError, ValueError):
            return ProfileExportResult.FAILURE
        return ProfileExportResult.SUCCESS
