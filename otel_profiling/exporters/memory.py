"""An exporter that keeps profiles in a list, for tests (like ``InMemorySpanExporter``)."""

from __future__ import annotations

import threading
from typing import List, Sequence

from otel_profiling.exporters.base import ProfileExporter, ProfileExportResult
from otel_profiling.profile import Profile


class InMemoryProfileExporter(ProfileExporter):
    def __init__(self) -> None:
        self._profiles: List[Profile] = []
        self._lock = threading.Lock()
        self._stopped = False

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        if self._stopped:
            return ProfileExportResult.FAILURE
        with self._lock:
            self._profiles.extend(profiles)
        return ProfileExportResult.SUCCESS

    def get_finished_profiles(self) -> tuple:
        with self._lock:
            return tuple(self._profiles)

    def clear(self) -> None:
        with self._lock:
            self._profiles.clear()

    def shutdown(self) -> None:
        self._stopped = True
