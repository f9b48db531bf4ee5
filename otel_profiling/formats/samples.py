"""``SampleCapture``: what a sampling CPU profile holds, before any format is chosen.

A sampler looks at every thread's stack (and every suspended asyncio task's
await chain) every ``interval``. Each look is a *sample*: the thread, its
exact stack, the time, a weight (the clock's nanoseconds since the previous
look: elapsed time for ``clock="wall"``, the thread's CPU time for
``clock="cpu"``) and the ids of the OpenTelemetry span current there.

The capture is columnar and interned so it stays small:

* ``frames`` is the frame table (``Frame(qualified name, file, first line)``);
* ``stacks`` the stack table: tuples of frame indexes, outermost first;
* ``spans`` the span table: ``(trace id, span id)``, index 0 being "no span";
* ``threads`` the thread table and ``tracks`` the timelines: a thread's own
  stack, or an asyncio task placed under the thread that runs its loop;
* one row per run of consecutive samples of one track with the same stack
  and span: ``sample_track``, ``sample_stack``, ``sample_span``,
  ``sample_time`` (unix ns of the run's first sample), ``sample_count``
  (samples in the run) and ``sample_value`` (their summed weights, ns).

Every format is written from this object (``cpuprofile`` as a timeline,
``pprof`` with per-sample labels, ``folded`` from the call tree below).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, NamedTuple, Tuple

from otel_profiling.formats.calltree import CallNode, Frame, new_root

IDLE = Frame("(idle)")
"""Under ``clock="cpu"``: the part of each interval the application's threads left unused."""


class SampleThread(NamedTuple):
    ident: int  # threading.get_ident()
    name: str
    native_id: int  # the kernel's thread id, 0 when unknown


class Track(NamedTuple):
    """A timeline: a thread's own stack (``task == ""``) or one asyncio task on that thread."""

    thread: int  # index into ``threads``
    task: str


def _int64() -> array:
    return array("q")


@dataclass
class SampleCapture:
    """The samples of one profiling window (see the module docstring)."""

    start_ns: int  # unix ns
    end_ns: int
    interval_ns: int
    clock: str  # "wall" or "cpu"
    frames: List[Frame] = field(default_factory=list)
    stacks: List[Tuple[int, ...]] = field(default_factory=list)
    spans: List[Tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    threads: List[SampleThread] = field(default_factory=list)
    tracks: List[Track] = field(default_factory=list)
    sample_track: array = field(default_factory=_int64)
    sample_stack: array = field(default_factory=_int64)
    sample_span: array = field(default_factory=_int64)
    sample_time: array = field(default_factory=_int64)
    sample_count: array = field(default_factory=_int64)
    sample_value: array = field(default_factory=_int64)
    idle_ns: int = 0
    """``clock="cpu"``: per interval, the time the application's threads together left unused."""
    idle_count: int = 0
    """Intervals with some idle time."""
    application_cpu_ns: int = 0
    """CPU time the application's threads used in the window (-1 when unknown)."""
    dropped_samples: int = 0
    """Samples not kept because the window reached its row limit."""
    truncated_stacks: int = 0
    """Samples whose stack was new after the stack limit was reached (kept as ``(truncated)``)."""
    by_span: bool = False
    """Whether tree formats add a ``span <id>`` level under each thread (``by_span=True``)."""

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)

    @property
    def sample_total(self) -> int:
        """Samples taken (each row counts the samples of its run)."""
        return int(sum(self.sample_count))

    def rows(self) -> Iterator[Tuple[int, int, int, int, int, int]]:
        """``(track, stack, span, time, count, value)`` per row, in the order taken."""
        return zip(
            self.sample_track,
            self.sample_stack,
            self.sample_span,
            self.sample_time,
            self.sample_count,
            self.sample_value,
            strict=True,
        )

    def thread_frame(self, thread: int) -> Frame:
        """The node a thread's subtree hangs from: ``name (thread ident)``."""
        info = self.threads[thread]
        return named_thread_frame(info.name, info.ident)


def named_thread_frame(name: str, ident: int) -> Frame:
    """The node a thread's subtree hangs from: ``name (thread ident)``."""
    return Frame(f"{name} (thread {ident})")


def task_frame(name: str) -> Frame:
    """The node a suspended task's await chain hangs from."""
    return Frame(f"(task) {name}")


def span_frame(span_id: int) -> Frame:
    """The node grouping a span's samples (``by_span``): ``span <16 hex digits>``."""
    return Frame(f"span {span_id:016x}")


def call_tree(capture: SampleCapture, by_span: bool = False) -> Tuple[CallNode, List[CallNode]]:
    """The call tree (values in seconds) and each row's leaf node, in row order.

    Under the root: one subtree per thread, ``name (thread ident)``; with
    ``by_span``, a ``span <id>`` level under the thread for samples taken in a
    span; a suspended task's chain under ``(task) <name>``; under
    ``clock="cpu"``, the window's unused time on ``(idle)``.
    """
    root = new_root()
    leaves: List[CallNode] = []
    known: Dict[Tuple[int, int, int], CallNode] = {}
    frames, stacks, spans, tracks = capture.frames, capture.stacks, capture.spans, capture.tracks
    for track, stack, span, _, count, value in capture.rows():
        key = (track, stack, span if by_span else 0)
        node = known.get(key)
        if node is None:
            where = tracks[track]
            node = root.child(capture.thread_frame(where.thread))
            if by_span and span:
                node = node.child(span_frame(spans[span][1]))
            if where.task:
                node = node.child(task_frame(where.task))
            for index in stacks[stack]:
                node = node.child(frames[index])
            known[key] = node
        node.self_value += value / 1e9
        node.self_count += count
        leaves.append(node)
    if capture.idle_ns > 0:
        idle = root.child(IDLE)
        idle.self_value += capture.idle_ns / 1e9
        idle.self_count += capture.idle_count
    return root, leaves
