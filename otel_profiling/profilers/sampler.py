"""One sampling capture: look at every thread (and suspended task), record weighted samples.

``Sampler.tick()`` is called at start (the baseline: no sample, only each
thread's CPU clock), then at each step of the sampling thread (every interval,
or up to a few while nothing moves: ``profilers/pace.py``), and once more at
stop. Each later tick records, per application thread, one sample
whose weight is the clock's time since the previous tick:

* ``clock="wall"``: the elapsed time, for every thread, waiting ones too;
* ``clock="cpu"``: the CPU time that thread used since the previous tick
  (threads that used none record nothing); the rest of each interval, what
  the application's threads together left unused, is counted as idle.

So a window of T seconds holds T per thread that lived through it (wall).
When a thread's stack (or span) differs from its previous sample, the change
happened somewhere in between: the interval is split halfway between the two
stacks, which halves the error at each change (it matters when a loaded
machine or a busy GIL delays a sample). Likewise a thread or task that
started, and a thread that ended or a task that resumed or ended, since the
previous sample is given half the interval (under the wall clock; a new
thread's CPU clock counts exactly what it used). The thread taking the last
sample from inside ``stop()`` is the exception: its stack there is only
where it called ``stop()``, so its last interval goes to its previous stack.
A thread seen using no CPU time between two ticks is waiting: its innermost
frame object is kept until the next tick, and while that same frame object
is still the innermost one (the same call, still under way), everything
under it is unchanged, so the stack is not walked again. (Kept, the object
cannot be freed and its address reused by another call; a generator's frame
is never kept, as it can be resumed from elsewhere. A function that returned
meanwhile has its locals freed at the next tick, at most one interval late.)
Under the wall clock the weight needs no CPU clock, so per-thread CPU clocks
(one system call each) are read only every ``WALL_CLOCK_READS``-th tick, and at
the start and end: enough for ``application_cpu_ns`` (the idle mark) and to
find waiting threads. Suspended asyncio tasks are sampled under the
wall clock only (a suspended task uses no CPU); above ``max_tasks`` pending
tasks a random subset is sampled each tick, each weighed by the share it
stands for.

Under ``clock="cpu"`` the main thread may instead be sampled by a timer
signal on its own CPU clock (``profilers/main_signal.py``): each tick first
records the samples its handler queued since the previous tick, each on the
stack where the main thread computed and weighed by the CPU time it used
since the previous one (no halfway split: the stack is exact); the main
thread's clock is still read for the idle mark, but it is not weighed again
(until the first signal sample comes, it is sampled here as usual; see
``_drain_signal``). If the signal fails during the window (its handler
replaced, or no signal handled), the rest of it samples the main thread like
any other.

Memory is bounded: at most ``max_stacks`` distinct stacks (later new ones are
recorded as ``(truncated)``), ``max_rows`` rows (later samples are counted as
dropped), ``max_spans`` distinct spans (later ones are recorded without span)
and ``MAX_TRACKS`` thread and task timelines each (later threads share
``(other threads)``, later task names ``(other tasks)``). Consecutive samples
of one thread with the same stack and span share one row.
"""

from __future__ import annotations

import inspect
import random
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Dict, Iterable, List, Optional, Tuple

from otel_profiling._threads import is_own_thread, is_own_thread_object, thread_frames
from otel_profiling.formats.calltree import Frame
from otel_profiling.formats.samples import SampleCapture, SampleThread, Track
from otel_profiling.profilers import thread_clocks
from otel_profiling.profilers.async_tasks import TaskScanner, running_task_ids, still_suspended
from otel_profiling.profilers.main_signal import MainSignal
from otel_profiling.profilers.open_spans import OPEN_SPANS, SpanIds
from otel_profiling.profilers.stack_walk import CodeTable, Stack

TRUNCATED = Frame("(truncated)")
OTHER_TASKS = "(other tasks)"
OTHER_THREADS = "(other threads)"

DEFAULT_MAX_STACKS = 20_000
DEFAULT_MAX_ROWS = 500_000
DEFAULT_MAX_SPANS = 65_536
DEFAULT_MAX_TASKS = 100
MAX_TRACKS = 4096
WALL_CLOCK_READS = 10
"""Under the wall clock, per-thread CPU clocks are read every this many ticks."""
_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_GENERATOR_FLAGS |= inspect.CO_ITERABLE_COROUTINE


def _is_library_thread(ident: int, owner: Optional[threading.Thread]) -> bool:
    """The library's own threads, and fsspec's I/O loop and its workers (used by exporters)."""
    return is_own_thread(ident) or (owner is not None and is_own_thread_object(owner))


class _Track:
    """A timeline being recorded: its track index and its last row (for runs)."""

    __slots__ = ("index", "row", "stack", "span")

    def __init__(self, index: int) -> None:
        self.index = index
        self.row = -1
        self.stack = -1
        self.span = -1


class _Thread(_Track):
    """An application thread: its identity, CPU clock and last walked stack."""

    __slots__ = (
        "ident",
        "owner",
        "thread",
        "clock",
        "cpu",
        "waiting",
        "walked",
        "library",
        "fresh",
        "skipped",
    )

    def __init__(self, ident: int, owner: Optional[threading.Thread], library: bool) -> None:
        super().__init__(-1)
        self.ident = ident
        self.owner = owner  # the Thread object: an ident reused by a new thread is a new one
        self.library = library
        self.thread = -1
        self.clock: Optional[int] = None
        self.cpu = 0
        self.waiting: Optional[FrameType] = None  # its innermost frame, seen waiting
        self.walked = -1  # the stack id of its last walk
        self.fresh = False  # first seen since the previous sample (not at the start)
        self.skipped = (0, 0)  # the skipped-sample totals when it was last seen waiting


class _SignalFeed:
    """The main thread's samples from its timer signal in this window (see ``_drain_signal``)."""

    __slots__ = ("source", "heard", "ended", "before")

    def __init__(self, source: MainSignal) -> None:
        self.source = source
        self.heard = False  # a signal sample has come
        self.ended = False  # the signal failed: from the next tick, sampled like the others
        self.before = 0  # the main thread's CPU ns recorded by ticks before the first one


class Sampler:
    """Collects a ``SampleCapture`` over one window (see the module docstring)."""

    def __init__(
        self,
        *,
        interval: float,
        clock: str,
        max_stacks: int = DEFAULT_MAX_STACKS,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_tasks: int = DEFAULT_MAX_TASKS,
    ) -> None:
        self.clock = clock
        self.max_stacks = max_stacks
        self.max_rows = max_rows
        self.max_spans = max_spans
        self.max_tasks = max_tasks
        self._random = random.Random()
        self._scanner = TaskScanner(max_tasks, self._random)
        self._codes = CodeTable()
        self._stack_ids: Dict[Stack, int] = {}
        self._span_ids: Dict[Tuple[int, int], int] = {}
        self._threads: Dict[int, _Thread] = {}
        self._tasks: Dict[Tuple[int, str], _Track] = {}
        self._last_tasks: List[Tuple[weakref.ref, _Track, float]] = []  # sampled last tick
        self._truncated = -1
        self._overflow: Optional[Tuple[int, int]] = None
        self._baseline = True
        self._ticks = 0
        self._waiting: Dict[int, FrameType] = {}  # threads seen waiting: their innermost frame
        self._skipped_ticks = 0  # ticks that left the waiting threads out, and their elapsed ns
        self._skipped_ns = 0
        self._lock = threading.Lock()
        self._signal: Optional[_SignalFeed] = None
        self._mono0 = time.perf_counter_ns()
        self._last = self._mono0
        self.capture = SampleCapture(
            start_ns=time.time_ns(),
            end_ns=0,
            interval_ns=round(interval * 1e9),
            clock=clock,
        )
        if not thread_clocks.SUPPORTED:
            self.capture.application_cpu_ns = -1

    def sample_main_thread_from(self, source: MainSignal) -> None:
        """Take the main thread's samples from ``source``'s signal (armed), not from ticks."""
        self._signal = _SignalFeed(source)

    # -- the tick -------------------------------------------------------------------
    def tick(self, last: bool = False) -> bool:
        """Sample every application thread (and, under the wall clock, suspended tasks).

        Return whether anything moved: a sample differs from that thread's or task's
        previous one (its stack or span), a thread or task was sampled for the first
        time, or a thread has ended.
        """
        with self._lock:
            rows = len(self.capture.sample_count)
            baseline = self._baseline
            if self._signal is not None and not baseline:
                # first: a failing signal logs a warning, during which (I/O, the GIL
                # released) frames read before it could go stale
                self._drain_signal(self._signal)
            frames = thread_frames()
            now = time.perf_counter_ns()
            elapsed = now - self._last
            self._last = now
            when = self.capture.start_ns + (now - self._mono0)
            self._ticks += 1
            clocks = last or baseline or self.clock == "cpu"
            clocks = clocks or self._ticks % WALL_CLOCK_READS == 0
            spans = len(OPEN_SPANS) > 0
            running = running_task_ids() if spans and not baseline else {}
            # Without clocks, the threads still waiting are left as they are (a set
            # difference, in C): they are added to their runs later, in one go.
            pairs = frames.items() if clocks else frames.items() - self._waiting.items()
            stopper = threading.get_ident() if last else 0
            used = self._sample_threads(
                pairs, elapsed, when, baseline, clocks, spans, running, stopper
            )
            if self._signal is not None and self._signal.ended:
                self._signal = None
            # only now: a thread seen at the baseline was there all along, not a new one
            self._baseline = False
            ended = False
            if len(self._threads) > len(frames):
                wall_ns = elapsed if self.clock == "wall" and not baseline else 0
                ended = self._forget_ended(frames, wall_ns)
            if not clocks:  # after the threads that ended: they were not waiting all along
                self._skipped_ticks += 1
                self._skipped_ns += elapsed
            if baseline:
                if self.clock == "wall" and "asyncio" in sys.modules:
                    self._scanner.prime()
                return False
            capture = self.capture
            if capture.application_cpu_ns >= 0:
                capture.application_cpu_ns += used
            if self.clock == "cpu" and elapsed > used:
                capture.idle_ns += elapsed - used
                capture.idle_count += 1
            if self.clock == "wall" and "asyncio" in sys.modules:
                self._sample_tasks(elapsed, when, spans)
            return ended or len(capture.sample_count) != rows

    def _sample_threads(
        self,
        frames: Iterable[Tuple[int, FrameType]],
        elapsed: int,
        when: int,
        baseline: bool,
        clocks: bool,
        spans: bool,
        running: Dict[int, int],
        stopper: int = 0,
    ) -> int:
        """Record one sample per application thread; return the CPU ns they used.

        CPU clocks are read only when ``clocks`` is true; a thread whose CPU
        clock cannot be read counts as having used none. ``stopper`` is the
        thread taking the last sample from inside ``stop()``: its stack there is
        only where it called ``stop()``, entered just now, so its last interval
        goes to its previous sample's stack, which ran until then.
        """
        threads = self._threads
        active = threading._active  # type: ignore[attr-defined]
        wall = self.clock == "wall"
        clock_ns = time.clock_gettime_ns if thread_clocks.SUPPORTED and clocks else None
        counts, values = self.capture.sample_count, self.capture.sample_value
        feed = self._signal
        signalled = feed.source.ident if feed is not None else 0
        used = 0
        for ident, top in frames:
            owner = active.get(ident)
            state = threads.get(ident)
            waiting = None
            if state is not None and state.waiting is not None:
                waiting = state.waiting
                self._stop_waiting(state)
            if state is None or state.owner is not owner:
                ended = elapsed // 2 if wall and not baseline else 0
                state = threads[ident] = self._thread_state(ident, owner, state, ended)
            if state.library:
                continue
            cpu_delta = -1
            if state.clock is not None and clock_ns is not None:
                try:
                    cpu = clock_ns(state.clock)
                except OSError:  # the thread has just ended
                    cpu = -1
                if cpu >= 0:
                    cpu_delta = cpu - state.cpu if cpu >= state.cpu else cpu
                    state.cpu = cpu
                    used += cpu_delta
            if baseline:
                continue
            value = elapsed if wall else cpu_delta
            if ident == signalled and feed is not None:  # its CPU time comes with the signal
                if feed.heard:
                    continue
                feed.before += max(value, 0)  # none yet: sampled here meanwhile
            if state.fresh:  # started since the previous sample: halfway through, on average
                state.fresh = False
                if wall:
                    value //= 2
            if value <= 0:
                continue
            row = state.row
            if ident == stopper and row >= 0:
                counts[row] += 1
                values[row] += value
                continue
            if top is waiting:
                stack = state.walked  # the same call still under way: the same stack
            else:
                stack = state.walked = self._intern(self._codes.thread_stack(top))
            span = self._span(ident, running.get(ident, 0)) if spans else 0
            if row >= 0 and state.stack == stack and state.span == span:
                counts[row] += 1  # the same as its previous sample: one more in that run
                values[row] += value
            else:
                self._record(state, stack, span, when, value)
            if wall and cpu_delta == 0 and not top.f_code.co_flags & _GENERATOR_FLAGS:
                self._start_waiting(state, ident, top)
        return used

    def _start_waiting(self, state: _Thread, ident: int, top: FrameType) -> None:
        """A thread seen waiting: its innermost frame is kept (see the module docstring)."""
        state.waiting = self._waiting[ident] = top
        state.skipped = (self._skipped_ticks, self._skipped_ns)

    def _stop_waiting(self, state: _Thread) -> None:
        """Add the samples a waiting thread was left out of to its row, and forget its frame."""
        ticks, ns = state.skipped
        if state.row >= 0:
            self.capture.sample_count[state.row] += self._skipped_ticks - ticks
            self.capture.sample_value[state.row] += self._skipped_ns - ns
        state.waiting = None
        self._waiting.pop(state.ident, None)

    def _forget_ended(self, frames: Dict[int, FrameType], elapsed: int) -> bool:
        """Threads that ended since the previous tick: halfway through it, on average.

        Under the wall clock half the interval goes to each one's last stack
        (its CPU clock can no longer be read once it has ended). Return whether
        any thread had ended.
        """
        capture = self.capture
        ended = [ident for ident in self._threads if ident not in frames]
        for ident in ended:
            state = self._threads.pop(ident)
            if state.waiting is not None:
                self._stop_waiting(state)
            if elapsed and state.row >= 0 and not state.library:
                capture.sample_value[state.row] += elapsed // 2
        return bool(ended)

    def _thread_state(
        self,
        ident: int,
        owner: Optional[threading.Thread],
        known: Optional[_Thread],
        ended: int,
    ) -> _Thread:
        """A thread seen for the first time, or a known one whose ``Thread`` object changed.

        A thread is sampled a little before ``threading`` registers it and a
        little after it forgets it: the same thread. Another ``Thread`` object
        under a known ident is a new thread that reuses the ident (as threads
        started one after another often do): the known one has ended, and gets
        ``ended`` ns, half the interval, like any thread that ended.
        """
        if known is not None and owner is None:
            return known  # ending: threading has already forgotten it
        if known is not None and known.owner is None and not known.library and owner is not None:
            known.owner = owner  # it was sampled while starting, before threading knew it
            if _is_library_thread(ident, owner):
                known.library = True  # from now on left out, as from its start
                return known
            native_id = thread_clocks.native_id(owner)
            if known.thread >= 0:
                entry = SampleThread(ident, owner.name, native_id or 0)
                self.capture.threads[known.thread] = entry
            if known.clock is None:
                known.clock = thread_clocks.clock_id(ident, native_id)
            return known
        if known is not None and not known.library and known.row >= 0:
            self.capture.sample_value[known.row] += ended
        return self._new_thread(ident, owner)

    def _new_thread(self, ident: int, owner: Optional[threading.Thread]) -> _Thread:
        name = owner.name if owner is not None else "(unnamed)"
        state = _Thread(ident, owner, _is_library_thread(ident, owner))
        if state.library:
            return state
        native_id = thread_clocks.native_id(owner)
        capture = self.capture
        if len(capture.tracks) < MAX_TRACKS:
            state.thread = len(capture.threads)
            capture.threads.append(SampleThread(ident, name, native_id or 0))
            state.index = len(capture.tracks)
            capture.tracks.append(Track(state.thread, ""))
        else:  # thousands of threads in one window: the later ones share one timeline
            state.thread, state.index = self._other_threads()
        state.clock = thread_clocks.clock_id(ident, native_id)
        if not self._baseline:
            state.cpu = 0  # started since the previous tick: all its CPU time is new
            state.fresh = True
        return state

    def _other_threads(self) -> Tuple[int, int]:
        """The thread and track entries shared by threads beyond ``MAX_TRACKS``."""
        if self._overflow is None:
            capture = self.capture
            capture.threads.append(SampleThread(0, OTHER_THREADS, 0))
            capture.tracks.append(Track(len(capture.threads) - 1, ""))
            self._overflow = (len(capture.threads) - 1, len(capture.tracks) - 1)
        return self._overflow

    def _sample_tasks(self, elapsed: int, when: int, spans: bool) -> None:
        """Sample suspended tasks. Those created since the previous sample, and those
        sampled then that have resumed or ended since, are given half the interval
        (as threads that start or end)."""
        values = self.capture.sample_value
        for reference, track, weight in self._last_tasks:
            if track.row >= 0 and not still_suspended(reference):
                values[track.row] += round(elapsed * weight) // 2
        self._last_tasks = []
        tasks, scale = self._scanner.scan()
        weight = round(elapsed * scale)
        for task in tasks:
            thread = self._threads.get(task.thread)
            if thread is None or thread.library:
                continue
            track = self._task_track(thread, task.name)
            stack = self._intern(self._codes.coroutine_stack(task.coro))
            span = self._span(task.thread, task.ident) if spans else 0
            # a task created since the previous sample started halfway through, on average
            self._record(track, stack, span, when, weight // 2 if task.new else weight)
            self._last_tasks.append((task.task, track, scale))

    def _task_track(self, thread: _Thread, name: str) -> _Track:
        key = (thread.thread, name)
        track = self._tasks.get(key)
        if track is None:
            if len(self._tasks) >= MAX_TRACKS:
                return self._task_track(thread, OTHER_TASKS) if name != OTHER_TASKS else thread
            track = self._tasks[key] = _Track(len(self.capture.tracks))
            self.capture.tracks.append(Track(thread.thread, name))
        return track

    # -- interning and rows ---------------------------------------------------------
    def _intern(self, stack: Stack) -> int:
        found = self._stack_ids.get(stack)
        if found is not None:
            return found
        stacks = self.capture.stacks
        if len(stacks) >= self.max_stacks:
            self.capture.truncated_stacks += 1
            if self._truncated < 0:
                self._truncated = len(stacks)
                stacks.append(())  # its frame is added at the end of the capture
            return self._truncated
        found = self._stack_ids[stack] = len(stacks)
        stacks.append(stack)
        return found

    def _span(self, thread: int, task: int) -> int:
        return self._span_index(OPEN_SPANS.current(thread, task))

    def _span_index(self, ids: Optional[SpanIds]) -> int:
        if ids is None:
            return 0
        found = self._span_ids.get(ids)
        if found is None:
            spans = self.capture.spans
            if len(spans) > self.max_spans:
                return 0
            found = self._span_ids[ids] = len(spans)
            spans.append(ids)
        return found

    def _drain_signal(self, feed: _SignalFeed) -> None:
        """Record the main thread's signal samples queued since the previous tick.

        Until the first one comes, the main thread is sampled here as usual, and
        the first samples' weight (its CPU time since the timer was armed) is
        reduced by what was recorded meanwhile: no time is counted twice, and
        none is lost if no signal ever comes. If the signal fails (``check``),
        the samples queued until then are kept and the main thread is sampled
        like the others from the next tick on.
        """
        source = feed.source
        if not source.check():  # the timer is deleted; its CPU time up to now is queued
            feed.ended = True  # its next tick is the sampling thread's
        state = self._threads.get(source.ident)
        pending = source.pending
        capture = self.capture
        while pending:
            codes, value, at, ids = pending.popleft()
            if feed.before > 0:
                taken = min(value, feed.before)
                value -= taken
                feed.before -= taken
            if codes is not None:
                feed.heard = True
            if value <= 0 or state is None or state.library:
                continue
            if codes is None:  # the last stretch, up to the disarm: on the last stack
                if state.row >= 0:
                    capture.sample_value[state.row] += value
                continue
            stack = self._intern(self._codes.code_stack(codes))
            when = capture.start_ns + (at - self._mono0)
            self._record(state, stack, self._span_index(ids), when, value, split=False)

    def _record(
        self, track: _Track, stack: int, span: int, when: int, value: int, split: bool = True
    ) -> None:
        capture = self.capture
        row = track.row
        if row >= 0 and track.stack == stack and track.span == span:
            capture.sample_count[row] += 1
            capture.sample_value[row] += value
            return
        if len(capture.sample_count) >= self.max_rows:
            capture.dropped_samples += 1
            return
        if row >= 0 and split:  # the stack (or span) changed between samples: halfway, on average
            half = value // 2
            capture.sample_value[row] += half
            value -= half
        track.row, track.stack, track.span = len(capture.sample_count), stack, span
        capture.sample_track.append(track.index)
        capture.sample_stack.append(stack)
        capture.sample_span.append(span)
        capture.sample_time.append(when)
        capture.sample_count.append(1)
        capture.sample_value.append(value)

    # -- the end --------------------------------------------------------------------
    def finish(self) -> SampleCapture:
        """Take the last sample and return the capture (frames named, code released)."""
        self.tick(last=True)
        with self._lock:
            capture = self.capture
            capture.end_ns = capture.start_ns + (self._last - self._mono0)
            capture.frames = self._codes.frames()
            if self._truncated >= 0:
                capture.stacks[self._truncated] = (len(capture.frames),)
                capture.frames.append(TRUNCATED)
            self._codes = CodeTable()
            self._threads = {}
            self._waiting = {}
            self._tasks = {}
            self._last_tasks = []
            self._stack_ids = {}
            self._span_ids = {}
            return capture
