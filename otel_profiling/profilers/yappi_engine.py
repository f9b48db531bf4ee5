"""The yappi CPU engine: exact call counts from yappi's call graph, all threads.

yappi is process-global, so only one yappi capture can run at a time in a
process; a second start is refused with ``ProfilerBusyError`` (the agent logs
it) rather than corrupting the first.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional

import yappi
from opentelemetry.util.types import AttributeValue

from otel_profiling._gcpause import gc_paused
from otel_profiling._threads import is_own_thread, is_own_thread_name, is_own_thread_object
from otel_profiling.formats import ProfileFormat, ProfileTree
from otel_profiling.formats.calltree import CallNode
from otel_profiling.formats.format import CallGraphCapture
from otel_profiling.formats.samples import IDLE
from otel_profiling.profilers import thread_clocks
from otel_profiling.profilers.base import IDLE_ATTRIBUTE, IDLE_CPU_SHARE, ProfilerBusyError
from otel_profiling.profilers.yappi_hooks import ThreadStarts
from otel_profiling.profilers.yappi_stacks import ThreadStack, thread_cpu_time, thread_stacks
from otel_profiling.profilers.yappi_stats import FuncStat, by_context, call_graph, read_func_stats
from otel_profiling.profilers.yappi_tree import ThreadCapture, yappi_call_tree

_yappi_lock = threading.Lock()  # held for the whole capture: one yappi session per process

# A thread yappi saw make no call that used less CPU than this share of the window
# was waiting all along: it did not run, and is left out.
_RAN = 0.01

TREE_ESTIMATED = "profiling.cpu.tree_estimated"
TREE_ESTIMATED_NODES = "profiling.cpu.tree_estimated_nodes"
TREE_ESTIMATED_SECONDS = "profiling.cpu.tree_estimated_seconds"


def _reset_lock_in_child() -> None:
    global _yappi_lock
    _yappi_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def _thread_name() -> Optional[str]:
    """The thread's own name for yappi, read without locks.

    yappi's default names a thread by its class (``Thread``), and a thread that
    ended before the profile stopped is gone from ``threading.enumerate()``.
    ``threading._active`` is what yappi itself reads (``current_thread()``
    could deadlock inside a profiler callback).
    """
    thread = threading._active.get(threading.get_ident())  # type: ignore[attr-defined]
    return None if thread is None else thread.name


class _Moment:
    """The threads' stacks and CPU times at the start or the stop of a capture.

    Taking a moment costs CPU on the calling thread (more with many threads, and yappi
    running). The process CPU clock is read after that work at the start and before it
    at the stop (``at_start``), so the library's cost never makes an idle window busy.
    """

    def __init__(self, *, at_start: bool) -> None:
        self.wall = time.perf_counter()
        self.process_cpu = 0.0 if at_start else time.process_time()
        self.stacks: Dict[int, ThreadStack] = thread_stacks()
        self.cpu: Dict[int, Optional[float]] = {
            ident: thread_cpu_time(ident, stack.thread) for ident, stack in self.stacks.items()
        }
        self.library_cpu = thread_clocks.library_cpu()
        if at_start:
            self.process_cpu = time.process_time()

    def application_cpu(self, since: _Moment) -> float:
        """CPU seconds the process used since ``since``, less what the library's threads used."""
        library = thread_clocks.library_cpu_since(self.library_cpu, since.library_cpu)
        return max(self.process_cpu - since.process_cpu - library, 0.0)

    def used_cpu(self, since: _Moment, ident: int) -> Optional[float]:
        """CPU seconds thread ``ident`` used from ``since`` to this moment (None: unknown)."""
        now, then = self.cpu.get(ident), since.cpu.get(ident)
        return None if now is None or then is None else now - then


def _is_library_context(context: Any) -> bool:
    """A yappi thread context of the library's (by its thread while it lives, else its name)."""
    thread = threading._active.get(int(context.tid))  # type: ignore[attr-defined]
    if thread is None:
        return is_own_thread_name(str(context.name))
    return is_own_thread(int(context.tid)) or is_own_thread_object(thread)


class YappiEngine:
    """One yappi capture at a time, encoded in its ``ProfileFormat``.

    ``pstats`` and ``callgrind`` are written from yappi's exact call graph;
    ``cpuprofile``, ``pprof`` and ``folded`` from the call tree derived from it
    (see ``yappi_tree``; each node with self time counts one sample).
    """

    def __init__(
        self,
        format: ProfileFormat,
        *,
        clock: str,
        builtins: bool,
        max_nodes: int,  # noqa: A002
    ) -> None:
        self.format = format
        self.clock = clock
        self.builtins = builtins
        self.max_nodes = max_nodes
        self._running = False
        self._start_us = 0
        self._duration_ns = 0
        self._starts = ThreadStarts()
        self._start: Optional[_Moment] = None
        self._controller: Optional[int] = None  # an application thread that started the capture
        self._end_attributes: Dict[str, AttributeValue] = {}

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
        starts = ThreadStarts()
        ident = threading.get_ident()
        own = is_own_thread(ident) or is_own_thread_name(threading.current_thread().name)
        deferral = starts.deferral() if starts.available() and not own else None
        try:
            yappi.clear_stats()
            yappi.set_clock_type(self.clock)
            yappi.set_context_name_callback(_thread_name)
            yappi.set_tag_callback(None)
            yappi.start(builtins=self.builtins, profile_threads=True)
            if deferral is not None:
                deferral()  # first: this thread is in the library until it returns
            self._start_us = int(time.time() * 1e6)
            if starts.available():
                starts.watch_new_threads()
            self._start = _Moment(at_start=True)
        except BaseException:
            if yappi.is_running():
                yappi.stop()
            _yappi_lock.release()
            raise
        self._starts = starts
        self._controller = None if deferral is None else ident
        self._end_attributes = {}
        self._running = True

    def stop(self) -> bytes:
        if not self._running:
            raise RuntimeError("CpuProfiler.stop() called while not profiling")
        try:
            try:
                # while yappi runs: what is on these stacks ran in the window
                stop = _Moment(at_start=False)
            finally:
                yappi.stop()
                yappi.set_context_name_callback(None)
            with gc_paused():
                contexts = [t for t in yappi.get_thread_stats() if not _is_library_context(t)]
                kept = {context.id for context in contexts}  # the application's threads
                stats = [stat for stat in read_func_stats() if stat.ctx_id in kept]
        finally:
            yappi.clear_stats()
            self._running = False
            _yappi_lock.release()
        start = self._start
        assert start is not None
        window = stop.wall - start.wall
        self._duration_ns = int(window * 1e9)
        idle = stop.application_cpu(start) < IDLE_CPU_SHARE * window
        self._end_attributes = {IDLE_ATTRIBUTE: idle}
        with gc_paused():
            if self.format.accepts(CallGraphCapture):
                return self.format.encode(
                    CallGraphCapture(
                        call_graph(stats), self.clock, self._start_us * 1000, self._duration_ns
                    )
                )
            tree, estimated = yappi_call_tree(
                self._captures(contexts, stats, start, stop),
                wall=self.clock == "wall",
                max_nodes=self.max_nodes,
            )
            if not tree.children:  # nothing ran: the window's time, as the sampling engine has it
                node = tree.child(IDLE)
                node.self_value, node.self_count = window, 1
            self._end_attributes = {
                **self._end_attributes,
                TREE_ESTIMATED: estimated.nodes > 0,
                TREE_ESTIMATED_NODES: estimated.nodes,
                TREE_ESTIMATED_SECONDS: round(estimated.seconds, 6),
            }
            return self.encode(tree)

    def end_attributes(self) -> Dict[str, AttributeValue]:
        """What the last capture found: whether it was idle, whether parts of its tree are
        estimated (formats written from the tree)."""
        return dict(self._end_attributes)

    def after_fork(self) -> None:
        if self._running:  # the parent's capture: the child's copy is meaningless
            self._running = False
            yappi.stop()
            yappi.clear_stats()

    def _captures(
        self, contexts: List[Any], stats: List[FuncStat], start: _Moment, stop: _Moment
    ) -> List[ThreadCapture]:
        """One capture per application thread that ran: yappi saw it, or it used CPU."""
        groups = by_context(stats)
        captures: Dict[int, ThreadCapture] = {}
        first_to_last: Dict[int, float] = {}  # yappi's time from a thread's first event to its last
        for context in contexts:
            ident = int(context.tid)
            capture = captures.setdefault(ident, ThreadCapture(str(context.name), ident, []))
            capture.stats = [*capture.stats, *groups.get(context.id, [])]
            first_to_last[ident] = first_to_last.get(ident, 0.0) + float(context.ttot)
        window = stop.wall - start.wall
        for ident, stack in stop.stacks.items():  # threads that ran no Python code
            used = stop.used_cpu(start, ident)
            if ident not in captures and used is not None and used >= _RAN * window:
                captures[ident] = ThreadCapture(stack.name, ident, [])  # busy in C
        for capture in captures.values():
            self._place_in_window(capture, start, stop, first_to_last.get(capture.ident))
        return [captures[ident] for ident in sorted(captures)]

    def _place_in_window(
        self, capture: ThreadCapture, start: _Moment, stop: _Moment, first_to_last: Optional[float]
    ) -> None:
        """The thread's stacks at start and at stop, and its time in the window (wall or CPU)."""
        ident = capture.ident
        at_start, at_stop = start.stacks.get(ident), stop.stacks.get(ident)
        if at_start is not None and at_stop is not None and at_start.thread is not at_stop.thread:
            at_start = None  # the ident now belongs to a thread started since
        began = self._starts.starts.get(ident)  # the thread that started profiling, or a new one
        if began is not None:
            capture.start_stack = began.stack
        elif at_start is not None:
            capture.start_stack = at_start.frames
        if at_stop is None:
            return  # ended during the window: its time in it is unknown
        capture.name, capture.stop_stack = at_stop.name, at_stop.frames
        if ident == self._controller and began is None:
            return  # never left the library before the stop
        since: Optional[float]
        if self.clock == "wall":
            since = began.wall if began else start.wall if at_start else None
            capture.total = first_to_last if since is None else stop.wall - since
        else:
            used = stop.cpu.get(ident)
            since = (began.cpu or 0.0) if began else start.cpu.get(ident) if at_start else 0.0
            if used is not None and since is not None:
                capture.total = used - since

    def encode(self, tree: CallNode) -> bytes:
        """Write the call tree (self values in seconds) in this profiler's format.

        Each node with self time counts as one sample, as in the ``.cpuprofile``
        (pprof's ``samples/count``); yappi counts calls, not samples.
        """
        for node, _ in tree.walk():
            node.self_count = 1 if node.self_value > 0 else 0
        return self.format.encode(
            ProfileTree(
                tree,
                "seconds",
                start_ns=self._start_us * 1000,
                duration_ns=self._duration_ns,
                measure=self.clock,
            )
        )
