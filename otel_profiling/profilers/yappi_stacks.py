"""Threads' stacks around a yappi capture, named as yappi names functions.

yappi times a call from the moment it sees it start to the moment it
returns. Frames already running when it starts, and calls still running
when it stops, are invisible to it; the threads' stacks at those moments
(``sys._current_frames()``) tell the call tree where they were.
"""

from __future__ import annotations

import threading
import time
from types import CodeType, FrameType
from typing import Dict, List, NamedTuple, Optional, Tuple

from otel_profiling._threads import (
    is_own_code,
    is_own_thread,
    is_own_thread_name,
    is_own_thread_object,
    is_pass_through,
    thread_frames,
)
from otel_profiling.formats.calltree import Frame
from otel_profiling.profilers import thread_clocks

_NO_SELF = object()


class StackFrame(NamedTuple):
    """One frame of a captured stack."""

    frame: Frame  # named as yappi would name the function
    key: Tuple[str, int, str]  # (file, first line, code name), as ``FuncStat.key``
    code: CodeType


class ThreadStack(NamedTuple):
    """A thread's stack, outermost frame first, cut where otel-profiling's code begins."""

    name: str
    thread: Optional[threading.Thread]  # to tell a thread from a later one with the same ident
    frames: List[StackFrame]


def yappi_name(frame: FrameType) -> str:
    """``Class.method`` when the first argument is named ``self`` (its class), as yappi names it."""
    code = frame.f_code
    if code.co_argcount and code.co_varnames[0] == "self":
        try:
            obj = frame.f_locals.get("self", _NO_SELF)
        except Exception:  # a frame whose locals cannot be read: its plain name
            obj = _NO_SELF
        if obj is not _NO_SELF:
            return f"{type(obj).__name__}.{code.co_name}"
    return code.co_name


def stack_of(top: Optional[FrameType]) -> List[StackFrame]:
    """The stack ending at ``top``, outermost first.

    It stops where otel-profiling's own code begins (what the library runs
    is not the application's); the library's wrappers of application code
    are skipped over.
    """
    chain: List[FrameType] = []
    frame = top
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    stack: List[StackFrame] = []
    for frame in reversed(chain):
        code = frame.f_code
        if is_own_code(code.co_filename):
            if is_pass_through(code):
                continue
            break
        name, filename, line = yappi_name(frame), code.co_filename, code.co_firstlineno
        stack.append(StackFrame(Frame(name, filename, line), (filename, line, code.co_name), code))
    return stack


def thread_stacks() -> Dict[int, ThreadStack]:
    """Every application thread's stack, by thread ident."""
    active = threading._active  # type: ignore[attr-defined]  # what yappi reads, lock-free
    stacks: Dict[int, ThreadStack] = {}
    for ident, top in thread_frames().items():
        thread = active.get(ident)
        name = thread.name if thread is not None else f"Thread-{ident}"
        own = is_own_thread_object(thread) if thread is not None else is_own_thread_name(name)
        if own or is_own_thread(ident):
            continue
        stacks[ident] = ThreadStack(name, thread, stack_of(top))
    return stacks


def thread_cpu_time(ident: int, thread: Optional[threading.Thread]) -> Optional[float]:
    """CPU seconds used by thread ``ident`` so far (None where the OS cannot tell).

    The clock id comes from ``thread_clocks``, which never touches the
    ``pthread_t`` of a thread that may have exited meanwhile (that crashes
    the process).
    """
    clock = thread_clocks.clock_id(ident, thread.native_id if thread is not None else None)
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None  # the thread has exited
