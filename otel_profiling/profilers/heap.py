"""Heap profiler on tracemalloc: what was allocated during the window and is still alive.

Tracing starts with the trigger's start and the profile is taken at its stop,
so the profile holds the memory allocated inside the window that is still
alive, grouped by allocation stack. When tracemalloc was already tracing
(started by the application or ``PYTHONTRACEMALLOC``), the profiler takes a
snapshot at start and keeps, per stack, only the growth since then; it never
stops tracing it did not start.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from typing import List, Optional

from otel_profiling._gcpause import gc_paused
from otel_profiling.formats import ProfileTree
from otel_profiling.formats.calltree import CallNode, Frame, add_stack, new_root
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.profilers.heap_traces import LiveStacks, live_stacks, release
from otel_profiling.profilers.source_names import FunctionNames, enclosing

_lock = threading.Lock()  # one heap profile at a time: tracemalloc is process-global
DEFAULT_FRAMES = 64


def _reset_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


class HeapProfiler(Profiler):
    """Live memory allocated during the window, by allocation stack (tracemalloc).

    ``frames`` is the stack depth recorded per allocation (tracemalloc's
    ``nframe``; deeper costs more). Each node reads ``function (file:line)``:
    function names, which tracemalloc does not record, are recovered from the
    source. Self values are bytes, self counts are live objects (blocks).
    """

    kind = ProfileKind.HEAP_PROFILE

    def __init__(
        self,
        format: Optional[str] = None,  # noqa: A002
        *,
        frames: int = DEFAULT_FRAMES,
    ) -> None:
        super().__init__(format)
        if not isinstance(frames, int) or not 1 <= frames <= 65535:
            raise ValueError(f"frames must be an integer from 1 to 65535, not {frames!r}.")
        self.frames = frames
        self._running = False
        self._we_started = False
        self._baseline: Optional[LiveStacks] = None
        self._start_ns = 0
        self._start_perf = 0.0
        self._names = FunctionNames()

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running:
            raise ProfilerBusyError("this HeapProfiler is already profiling")
        if not _lock.acquire(blocking=False):
            raise ProfilerBusyError("a heap profile is already running in this process")
        try:
            self._we_started = not tracemalloc.is_tracing()
            if self._we_started:
                tracemalloc.start(self.frames)
                self._baseline = None
            else:  # someone else traces: keep only what grows from now on
                with gc_paused():
                    self._baseline = live_stacks(tracemalloc.take_snapshot())
            self._start_ns = time.time_ns()
            self._start_perf = time.perf_counter()
        except BaseException:
            _lock.release()
            raise
        self._running = True

    def stop(self) -> bytes:
        if not self._running:
            raise RuntimeError("HeapProfiler.stop() called while not profiling")
        # The snapshot is the only step that holds the GIL for long (about 1 s per
        # million live blocks); tracing stops right after it, so the grouping below
        # is not traced itself, and the collector stays off while tuples pile up.
        with gc_paused():
            try:
                duration_ns = int((time.perf_counter() - self._start_perf) * 1e9)
                snapshot = tracemalloc.take_snapshot()
                if self._we_started:
                    tracemalloc.stop()
            finally:
                self._running = False
                _lock.release()
            stacks = live_stacks(snapshot)
            release(snapshot)
            del snapshot
            baseline, self._baseline = self._baseline, None
            if baseline is not None:
                stacks = _growth(stacks, baseline)
            return self.encode(self._tree(stacks), duration_ns)

    def after_fork(self) -> None:
        if self._running:  # the parent's window; release so the child can profile
            self._running = False
            self._baseline = None
            if self._we_started and tracemalloc.is_tracing():
                tracemalloc.stop()

    def _tree(self, stacks: LiveStacks) -> CallNode:
        root = new_root()
        for frames, (size, count) in stacks.items():
            path: List[Frame] = []
            inner = ""
            previous = None
            # Innermost first: a frame on the same line as the frame it called is
            # the scope around that frame (a comprehension or lambda called in place).
            for filename, lineno in frames:
                if previous == (filename, lineno):
                    name = enclosing(inner)
                else:
                    name = self._names.name(filename, lineno)
                path.append(Frame(name, filename, lineno))
                inner = name
                previous = (filename, lineno)
            path.reverse()
            add_stack(root, path, float(size), count)
        return root

    def encode(self, tree: CallNode, duration_ns: int = 0) -> bytes:
        """Write the tree (self values in bytes, counts in objects) in this profiler's format."""
        return self.format.encode(
            ProfileTree(
                tree,
                "bytes",
                start_ns=self._start_ns,
                duration_ns=duration_ns,
                measure="inuse_space",
            )
        )

    def attributes(self) -> dict:
        attrs = super().attributes()
        attrs["profiling.heap.frames"] = self.frames
        return attrs

    def __repr__(self) -> str:
        return f"HeapProfiler(format={self.format.name!r}, frames={self.frames})"


def _growth(now: LiveStacks, before: LiveStacks) -> LiveStacks:
    """Per stack, what is alive now beyond what was alive at start (positive growth only)."""
    grown: LiveStacks = {}
    for frames, (size, count) in now.items():
        old_size, old_count = before.get(frames, (0, 0))
        if size > old_size:
            grown[frames] = (size - old_size, max(count - old_count, 0))
    return grown
