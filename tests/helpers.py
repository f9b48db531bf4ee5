"""Real building blocks for tests: small profilers, a manual trigger, exporters that fail or hang.

The heap-kind profilers measure for real (tracemalloc statistics, gc object
counts) and write JSON, so triggers can be tested with any kind.
"""

from __future__ import annotations

import collections
import gc
import json
import threading
import time
import tracemalloc
from typing import List, Sequence

from otel_profiling.exporters import ProfileExporter, ProfileExportResult
from otel_profiling.profile import Profile, ProfileKind
from otel_profiling.profilers import Profiler, ProfilerBusyError
from otel_profiling.triggers import Trigger


class WallClockProfiler(Profiler):
    """A real (if trivial) profiler: its payload is the capture's duration in ns, as text."""

    kind = ProfileKind.CPU_PROFILE

    def __init__(self) -> None:
        super().__init__()
        self._t0: float | None = None

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()

    def stop(self) -> bytes:
        assert self._t0 is not None
        elapsed = time.perf_counter_ns() - self._t0
        self._t0 = None
        return str(elapsed).encode()


class RecordingExporter(ProfileExporter):
    """Records each batch it is given (as lists), optionally raising or failing first."""

    def __init__(self, fail_times: int = 0, raise_times: int = 0) -> None:
        self.batches: List[List[Profile]] = []
        self.fail_times = fail_times
        self.raise_times = raise_times
        self.shut_down = False
        self.lock = threading.Lock()

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        with self.lock:
            if self.raise_times:
                self.raise_times -= 1
                raise RuntimeError("exporter exploded")
            if self.fail_times:
                self.fail_times -= 1
                return ProfileExportResult.FAILURE
            self.batches.append(list(profiles))
            return ProfileExportResult.SUCCESS

    @property
    def exported(self) -> List[Profile]:
        with self.lock:
            return [p for batch in self.batches for p in batch]

    def shutdown(self) -> None:
        self.shut_down = True


class HangingExporter(ProfileExporter):
    """Blocks in export until released: a backend that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        self.entered.set()
        self.release.wait(60)
        return ProfileExportResult.SUCCESS


class HangingShutdownExporter(RecordingExporter):
    """Exports at once, but its ``shutdown()`` blocks until released: a client that never closes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.shutting_down = threading.Event()

    def shutdown(self) -> None:
        self.shutting_down.set()
        self.release.wait(60)
        self.shut_down = True


class InterruptedExporter(RecordingExporter):
    """Its first export is interrupted by Ctrl-C (``KeyboardInterrupt``), on any thread."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupts = 1

    def export(self, profiles: Sequence[Profile]) -> ProfileExportResult:
        with self.lock:
            interrupt, self.interrupts = self.interrupts > 0, self.interrupts - 1
        if interrupt:
            raise KeyboardInterrupt
        return super().export(profiles)


class ManualTrigger(Trigger):
    """A trigger driven by the test itself, so a test decides exactly when a profile runs."""

    name = "manual"

    def _bound(self):  # type: ignore[no-untyped-def]
        assert self.target is not None, "agent not started"
        return self.target

    def start(self) -> List[Profile]:
        return self._bound().start("test")

    def stop(self) -> List[Profile]:
        return self._bound().stop("test")

    def fire(self) -> List[Profile]:
        return self._bound().toggle("test fired")


class _FlagProfiler(Profiler):
    """Keeps ``running`` in a flag; subclasses measure something real."""

    def __init__(self) -> None:
        super().__init__()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running


class TracemallocStatsProfiler(_FlagProfiler):
    """``HEAP_PROFILE``: the lines that allocated most between start and stop."""

    kind = ProfileKind.HEAP_PROFILE

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


class GcCountsSnapshotProfiler(_FlagProfiler):
    """``HEAP_SNAPSHOT``: live gc-tracked objects counted by type at stop."""

    kind = ProfileKind.HEAP_SNAPSHOT

    def start(self) -> None:
        self._running = True

    def stop(self) -> bytes:
        self._running = False
        counts = collections.Counter(type(obj).__name__ for obj in gc.get_objects())
        return json.dumps({"types": dict(counts.most_common(50))}).encode()
