"""Small real profilers of the heap kinds, so the triggers can be tested with any kind.

They measure for real (tracemalloc statistics, gc object counts) and write
JSON; they stand in for whichever heap profilers are registered in production.
"""

from __future__ import annotations

import collections
import gc
import json
import tracemalloc

from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler, ProfilerBusyError


class TracemallocStatsProfiler(Profiler):
    """``HEAP_PROFILE``: the lines that allocated most between start and stop."""

    kind = ProfileKind.HEAP_PROFILE

    def __init__(self) -> None:
        super().__init__()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running or tracemalloc.is_tracing():
            raise ProfilerBusyError("tracemalloc is already tracing")
        tracemalloc.start(1)
        self._running = True

    def stop(self) -> bytes:
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        self._running = False
        stats = snapshot.statistics("lineno")[:20]
        top = [
            {"file": s.traceback[0].filename, "line": s.traceback[0].lineno, "size": s.size}
            for s in stats
        ]
        return json.dumps({"total": sum(s.size for s in stats), "top": top}).encode()


class GcCountsSnapshotProfiler(Profiler):
    """``HEAP_SNAPSHOT``: live gc-tracked objects counted by type at stop."""

    kind = ProfileKind.HEAP_SNAPSHOT

    def __init__(self) -> None:
        super().__init__()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        self._running = True

    def stop(self) -> bytes:
        self._running = False
        counts = collections.Counter(type(obj).__name__ for obj in gc.get_objects())
        return json.dumps({"types": dict(counts.most_common(50))}).encode()
