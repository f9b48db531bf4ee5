"""CPU profiler on yappi: all threads, wall or CPU clock.

yappi is process-global, so only one CPU profile can run at a time in a
process; a second start is refused with ``ProfilerBusyError`` (the agent logs
it) rather than corrupting the first.
"""

from __future__ import annotations

import marshal
import os
import sys
import tempfile
import threading
import time
from types import CodeType, FrameType
from typing import Any, Dict, List, Optional, Tuple

import yappi

from otel_profiling._gcpause import gc_paused
from otel_profiling._threads import LIBRARY_THREAD_PREFIX
from otel_profiling.formats.calltree import CallNode, Frame
from otel_profiling.formats.cpuprofile import encode_cpuprofile
from otel_profiling.formats.folded import encode_folded
from otel_profiling.formats.pprof import encode_pprof
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.profilers.span_tags import current_span_tag, span_frame, tags_by_context
from otel_profiling.profilers.yappi_tree import yappi_call_tree

_yappi_lock = threading.Lock()  # held for the whole capture: one yappi session per process


def _reset_lock_in_child() -> None:
    global _yappi_lock
    _yappi_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)
_CLOCKS = ("wall", "cpu")
_YAPPI_FILES = {"pstats": "pstat", "callgrind": "callgrind"}  # format → yappi's save type
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _thread_name() -> Optional[str]:
    """The thread's own name for yappi, read without locks.

    yappi's default names a thread by its class (``Thread``), and a thread that
    ended before the profile stopped is gone from ``threading.enumerate()``.
    ``threading._active`` is what yappi itself reads (``current_thread()``
    could deadlock inside a profiler callback).
    """
    thread = threading._active.get(threading.get_ident())  # type: ignore[attr-defined]
    return None if thread is None else thread.name


def _is_library_thread(thread: Any) -> bool:
    """This library's threads and fsspec's I/O loop, by the name yappi recorded.

    The name is the one the thread had when yappi first saw it (``_thread_name``),
    so an ident reused by a later thread cannot hide an application thread.
    """
    return str(thread.name).startswith(LIBRARY_THREAD_PREFIX) or thread.name == "fsspecIO"


def _code_name(code: CodeType) -> str:
    """``Class.method`` like yappi; nested functions without their ``outer.<locals>.`` path."""
    return str(getattr(code, "co_qualname", code.co_name)).rsplit("<locals>.", 1)[-1]


def running_stacks() -> Dict[int, List[Frame]]:
    """Every thread's stack (outermost first), cut where otel-profiling's own frames begin."""
    stacks: Dict[int, List[Frame]] = {}
    for ident, top in sys._current_frames().items():
        frames: List[Frame] = []
        frame: Optional[FrameType] = top
        while frame is not None:
            code = frame.f_code
            frames.append(
                Frame(
                    _code_name(code),
                    code.co_filename,
                    code.co_firstlineno,
                )
            )
            frame = frame.f_back
        frames.reverse()
        for index, item in enumerate(frames):
            if item.filename.startswith(_PACKAGE_DIR):
                del frames[index:]
                break
        stacks[ident] = frames
    return stacks


class CpuProfiler(Profiler):
    """CPU profile of every thread through yappi.

    ``clock="wall"`` (default) measures elapsed time, including time blocked on
    I/O or suspended in ``await``; ``clock="cpu"`` measures thread CPU time
    (costlier per call: see the benchmarks). ``builtins=True`` also records C
    functions. The library's own threads are left out of the profile.

    ``format``: ``cpuprofile`` (default), ``pprof`` and ``folded`` are written
    from the derived call tree (each node with self time counts one sample);
    ``pstats`` and ``callgrind`` are written by yappi from its exact call graph.
    """

    kind = ProfileKind.CPU_PROFILE

    def __init__(
        self,
        format: Optional[str] = None,  # noqa: A002
        *,
        clock: str = "wall",
        builtins: bool = True,
        max_nodes: int = 200_000,
        by_span: bool = False,
    ) -> None:
        super().__init__(format)
        if clock not in _CLOCKS:
            raise ValueError(f"Unknown clock {clock!r}: choose 'wall' or 'cpu'.")
        self.clock = clock
        self.builtins = builtins
        self.max_nodes = max_nodes
        self.by_span = by_span
        self._running = False
        self._start_us = 0
        self._start_perf = 0.0
        self._duration_ns = 0
        self._start_stacks: Dict[int, List[Frame]] = {}

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if self._running:
            raise ProfilerBusyError("this CpuProfiler is already profiling")
        if not _yappi_lock.acquire(blocking=False):
            raise ProfilerBusyError(
                "a CPU profile is already running in this process (yappi allows one at a time)"
            )
        if yappi.is_running():
            _yappi_lock.release()
            raise ProfilerBusyError("yappi was started outside otel-profiling; not interfering")
        try:
            yappi.clear_stats()
            yappi.set_clock_type(self.clock)
            yappi.set_context_name_callback(_thread_name)
            yappi.set_tag_callback(current_span_tag if self.by_span else None)
            self._start_us = int(time.time() * 1e6)
            self._start_perf = time.perf_counter()
            yappi.start(builtins=self.builtins, profile_threads=True)
            self._start_stacks = running_stacks()
        except BaseException:
            _yappi_lock.release()
            raise
        self._running = True

    def stop(self) -> bytes:
        if not self._running:
            raise RuntimeError("CpuProfiler.stop() called while not profiling")
        with gc_paused():
            try:
                yappi.stop()
                yappi.set_context_name_callback(None)
                yappi.set_tag_callback(None)
                self._duration_ns = int((time.perf_counter() - self._start_perf) * 1e9)
                if self.format.name in _YAPPI_FILES:
                    data = self._yappi_file(_YAPPI_FILES[self.format.name])
                else:
                    threads = self._collect()
                yappi.clear_stats()
            finally:
                self._running = False
                _yappi_lock.release()
            if self.format.name in _YAPPI_FILES:
                return data
            tree = yappi_call_tree(threads, max_nodes=self.max_nodes)
            return self.encode(tree)

    def after_fork(self) -> None:
        if self._running:  # the parent's capture: the child's copy is meaningless
            self._running = False
            yappi.stop()
            yappi.clear_stats()

    def _yappi_file(self, kind: str) -> bytes:
        """The application threads' call graph written by yappi itself (exact, not a tree)."""
        own = {t.id for t in yappi.get_thread_stats() if _is_library_thread(t)}
        stats = yappi.get_func_stats(filter_callback=lambda stat: stat.ctx_id not in own)
        handle, path = tempfile.mkstemp(prefix="otel-profiling-", suffix="." + kind)
        os.close(handle)
        try:
            stats.save(path, type=kind)
            with open(path, "rb") as file:
                data = file.read()
        finally:
            os.unlink(path)
        return _fix_pstats_counts(data) if kind == "pstat" else data

    def _collect(self) -> List[Tuple[str, int, Any, List[Frame], Optional[Frame]]]:
        """Per thread (and per span with ``by_span``): its name, stats and start stack."""
        span_tags = tags_by_context() if self.by_span else {}
        threads = []
        for thread in yappi.get_thread_stats():
            if _is_library_thread(thread):
                continue
            name, ident = str(thread.name), int(thread.tid)
            stack = self._start_stacks.get(ident, [])
            for tag in span_tags.get(thread.id, [0]):
                stats = yappi.get_func_stats(filter={"ctx_id": thread.id, "tag": tag})
                scope = span_frame(tag) if tag else None
                threads.append((name, ident, list(stats), stack, scope))
        return threads

    def encode(self, tree: CallNode) -> bytes:
        """Write the call tree (self values in seconds) in this profiler's format."""
        name = self.format.name
        if name == "pprof":
            return encode_pprof(
                tree,
                sample_types=[("samples", "count"), (self.clock, "nanoseconds")],
                value_scale=1e9,
                period_type=(self.clock, "nanoseconds"),
                period=1,
                time_nanos=self._start_us * 1000,
                duration_nanos=self._duration_ns,
            )
        if name == "folded":
            return encode_folded(tree, 1e6)  # microseconds
        if name in _YAPPI_FILES:
            raise ValueError(f"{name} is written from yappi's call graph, not from a call tree")
        return encode_cpuprofile(tree, self._start_us)

    def attributes(self) -> dict:
        attrs = super().attributes()
        attrs["profiling.cpu.clock"] = self.clock
        if self.by_span:
            attrs["profiling.cpu.by_span"] = True
        return attrs

    def __repr__(self) -> str:
        return f"CpuProfiler(format={self.format.name!r}, clock={self.clock!r})"


def _fix_pstats_counts(data: bytes) -> bytes:
    """Swap yappi's top-level ``(ncall, nactualcall)`` into pstats' ``(primitive, total)``.

    ``pstats`` reads ``cc, nc, tt, ct, callers`` with ``cc`` the primitive
    (non-recursive) calls; yappi writes the total first, which would show a
    recursive function's counts reversed. Caller entries already follow pstats.
    """
    stats = marshal.loads(data)
    fixed = {
        func: (actual, total, tsub, ttot, callers)
        for func, (total, actual, tsub, ttot, callers) in stats.items()
    }
    return marshal.dumps(fixed)
