"""The yappi CPU engine: exact call counts from yappi's call graph, all threads.

yappi is process-global, so only one yappi capture can run at a time in a
process; a second start is refused with ``ProfilerBusyError`` (the agent logs
it) rather than corrupting the first.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any, Dict, List, Optional, Tuple

import yappi

from otel_profiling._gcpause import gc_paused
from otel_profiling._threads import LIBRARY_THREAD_PREFIX
from otel_profiling.formats.callgrind import encode_callgrind
from otel_profiling.formats.calltree import CallNode, Frame
from otel_profiling.formats.cpuprofile import encode_cpuprofile
from otel_profiling.formats.folded import encode_folded
from otel_profiling.formats.pprof import encode_pprof
from otel_profiling.formats.pstats import encode_pstats
from otel_profiling.profilers.base import ProfilerBusyError
from otel_profiling.profilers.span_tags import current_span_tag, span_frame, tags_by_context
from otel_profiling.profilers.yappi_stats import FuncStat, by_context, call_graph, read_func_stats
from otel_profiling.profilers.yappi_tree import yappi_call_tree

_yappi_lock = threading.Lock()  # held for the whole capture: one yappi session per process


def _reset_lock_in_child() -> None:
    global _yappi_lock
    _yappi_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)
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


class YappiEngine:
    """One yappi capture at a time, encoded in the format named ``format_name``.

    ``pstats`` and ``callgrind`` are written from yappi's exact call graph;
    ``cpuprofile``, ``pprof`` and ``folded`` from the call tree derived from it
    (each node with self time counts one sample).
    """

    def __init__(
        self, format_name: str, *, clock: str, builtins: bool, max_nodes: int, by_span: bool
    ) -> None:
        self.format_name = format_name
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
                contexts = list(yappi.get_thread_stats())
                own = {t.id for t in contexts if _is_library_thread(t)}
                threads = [t for t in contexts if t.id not in own]
                stats = [stat for stat in read_func_stats() if stat.ctx_id not in own]
                yappi.clear_stats()
            finally:
                self._running = False
                _yappi_lock.release()
            if self.format_name == "pstats":
                return encode_pstats(call_graph(stats))
            if self.format_name == "callgrind":
                return encode_callgrind(call_graph(stats), self.clock, f"{self.clock} time")
            tree = yappi_call_tree(self._per_thread(threads, stats), max_nodes=self.max_nodes)
            return self.encode(tree)

    def after_fork(self) -> None:
        if self._running:  # the parent's capture: the child's copy is meaningless
            self._running = False
            yappi.stop()
            yappi.clear_stats()

    def _per_thread(
        self, threads: List[Any], stats: List[FuncStat]
    ) -> List[Tuple[str, int, List[FuncStat], List[Frame], Optional[Frame]]]:
        """Per thread (and per span with ``by_span``): its name, stats and start stack."""
        groups = by_context(stats)
        span_tags = tags_by_context(groups) if self.by_span else {}
        result = []
        for thread in threads:
            name, ident = str(thread.name), int(thread.tid)
            stack = self._start_stacks.get(ident, [])
            for tag in span_tags.get(thread.id, [0]):
                scope = span_frame(tag) if tag else None
                result.append((name, ident, groups.get((thread.id, tag), []), stack, scope))
        return result

    def encode(self, tree: CallNode) -> bytes:
        """Write the call tree (self values in seconds) in this profiler's format."""
        name = self.format_name
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
        if name in ("pstats", "callgrind"):
            raise ValueError(f"{name} is written from the exact call graph, not from a call tree")
        return encode_cpuprofile(tree, self._start_us)
