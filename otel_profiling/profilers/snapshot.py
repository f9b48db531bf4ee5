"""Heap snapshot profiler: the live object graph as a V8 ``.heapsnapshot``.

A snapshot is an instant, not a window: it is taken when the trigger starts
(the moment someone asked for it), and the trigger's stop only hands it over.
So a signal toggles exactly one snapshot per start, and an interval trigger
takes one per window. The walk holds the GIL for its duration (a few seconds
per million objects, see the benchmarks): the application pauses, as a
Node.js process does for a V8 snapshot.

``roots=`` snapshots what some objects hold instead of the whole heap.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Mapping
from typing import Any, Optional

from otel_profiling._gcpause import gc_paused
from otel_profiling._memory import return_free_memory
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.profilers.heap_graph import walk_heap, walk_roots


class HeapSnapshotProfiler(Profiler):
    """A snapshot of the gc object graph, taken at start and returned at stop.

    ``collect=True`` (default) runs ``gc.collect()`` first, so unreachable
    cycles do not appear as live objects, as DevTools does before a snapshot.
    ``roots``: walk only from these objects (``property`` edges from the
    root, named by the keys), not the whole heap; classes and modules are
    then nodes without edges, and ``collect`` does not apply (unreachable
    objects cannot show).
    """

    kind = ProfileKind.HEAP_SNAPSHOT

    def __init__(
        self,
        format: Optional[str] = None,  # noqa: A002
        *,
        collect: bool = True,
        roots: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(format)
        if roots is not None and not (
            isinstance(roots, Mapping) and all(isinstance(name, str) for name in roots)
        ):
            raise TypeError(
                "HeapSnapshotProfiler(roots=...) takes a mapping of names (str) to objects, "
                'e.g. roots={"cache": cache}'
            )
        self.collect = collect
        self.roots = roots
        self._lock = threading.Lock()
        self._running = False
        self._data: Optional[bytes] = None
        self._error: Optional[BaseException] = None
        self.last_node_count = 0
        self.last_edge_count = 0
        self.last_seconds = 0.0

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        with self._lock:
            if self._running:
                raise ProfilerBusyError("this HeapSnapshotProfiler already holds a snapshot")
            self._running = True
        self._data, self._error = None, None
        try:
            self._data = self.snapshot()
        except Exception as exc:  # reported by stop(), so the profile records the error
            self._error = exc

    def stop(self) -> bytes:
        with self._lock:
            if not self._running:
                raise RuntimeError("HeapSnapshotProfiler.stop() called without a snapshot")
            self._running = False
        data, error = self._data, self._error
        self._data, self._error = None, None
        if error is not None:
            raise error
        assert data is not None
        return data

    def snapshot(self) -> bytes:
        """Walk the heap now and return the encoded snapshot."""
        began = time.perf_counter()
        if self.collect and self.roots is None:
            gc.collect()
        with gc_paused():
            graph = walk_heap() if self.roots is None else walk_roots(self.roots)
            self.last_node_count, self.last_edge_count = graph.node_count, graph.edge_count
            return_free_memory()  # the walk's tables, before the output grows
            data = self.format.encode(graph)  # its arrays are freed as written
            del graph
            return_free_memory()
        self.last_seconds = time.perf_counter() - began
        return data

    def after_fork(self) -> None:
        with self._lock:
            self._running = False
        self._data, self._error = None, None

    def attributes(self) -> dict:
        attrs = super().attributes()
        attrs["profiling.snapshot.gc_collect"] = self.collect
        return attrs

    def __repr__(self) -> str:
        roots = "" if self.roots is None else f", roots=<{len(self.roots)} objects>"
        return f"HeapSnapshotProfiler(format={self.format.name!r}, collect={self.collect}{roots})"
