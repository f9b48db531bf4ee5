"""When each thread's part of a yappi capture begins.

yappi hooks every thread at once when it starts. Two kinds of thread need
more care, and get a profile hook of their own that hands the thread over
to yappi at the right moment, recording the time and the stack then:

* the thread that starts profiling from application code (``with
  agent.profile(...)``) is still inside otel-profiling when yappi starts:
  the calls the library makes on its way back (locks, logging) would look
  like calls of the application's frames. yappi gets the thread only once
  no library frame is left on its stack;
* a thread started during the capture: its window begins at its first
  call; otel-profiling's own new threads are not profiled at all.

The hand-over is yappi's own per-thread entry point
(``yappi._profile_thread_callback``, what ``yappi.start`` gives new threads);
without it no hook is installed and yappi's defaults apply.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import yappi

from otel_profiling._threads import is_own_code, is_own_thread_object, is_pass_through
from otel_profiling.profilers.yappi_stacks import StackFrame, stack_of

_hand_over: Optional[Callable[[FrameType, str, Any], None]] = getattr(
    yappi, "_profile_thread_callback", None
)


class ThreadStart(NamedTuple):
    """Where a thread's part of the capture began."""

    wall: float  # time.perf_counter()
    cpu: Optional[float]  # the thread's CPU time then (None: since the thread began)
    stack: List[StackFrame]  # the frames running then, which yappi did not see start


def _in_library(frame: Optional[FrameType]) -> bool:
    """Whether otel-profiling's own code (not a wrapper of application code) is on the stack."""
    while frame is not None:
        code = frame.f_code
        if is_own_code(code.co_filename) and not is_pass_through(code):
            return True
        frame = frame.f_back
    return False


def _running(frame: FrameType, event: str) -> Optional[FrameType]:
    """The innermost frame still running after ``event``, which yappi has not seen start."""
    return frame.f_back if event in ("call", "return") else frame


class ThreadStarts:
    """Hooks that record, per thread ident, where its part of the capture began."""

    def __init__(self) -> None:
        self.starts: Dict[int, ThreadStart] = {}

    @staticmethod
    def available() -> bool:
        return _hand_over is not None

    def deferral(self) -> Callable[[], None]:
        """A call that holds the current thread back from yappi while it is in the library.

        Call it right after ``yappi.start()``: it is a ``functools.partial``,
        which yappi does not time (it times Python functions and C functions
        called directly), so the thread's stack in yappi stays empty.
        """
        return functools.partial(sys.setprofile, self._until_application)

    def watch_new_threads(self) -> None:
        """Threads started from now on come through ``_new_thread`` (after ``yappi.start()``)."""
        threading.setprofile(self._new_thread)

    def _until_application(self, frame: FrameType, event: str, arg: Any) -> None:
        if _in_library(frame):
            return
        self._record(frame, event, time.thread_time())
        _hand_over(frame, event, arg)  # type: ignore[misc]

    def _new_thread(self, frame: FrameType, event: str, arg: Any) -> None:
        thread = threading._active.get(threading.get_ident())  # type: ignore[attr-defined]
        if thread is not None and is_own_thread_object(thread):
            sys.setprofile(None)  # the library's own thread: not profiled
            return
        self._record(frame, event, None)
        _hand_over(frame, event, arg)  # type: ignore[misc]

    def _record(self, frame: FrameType, event: str, cpu: Optional[float]) -> None:
        stack = stack_of(_running(frame, event), own_thread=True)  # a hook runs on its thread
        self.starts[threading.get_ident()] = ThreadStart(time.perf_counter(), cpu, stack)
