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
from otel_profiling.profilers.stack_walk import qualified_name

_NO_SELF = object()


class StackFrame(NamedTuple):
    """One frame of a captured stack."""

    name: Optional[str]  # yappi's name, read on the frame's own thread; None: from ``code``
    key: Tuple[str, int, str]  # (file, first line, code name), as ``FuncStat.key``
    code: CodeType

    @property
    def frame(self) -> Frame:
        """Named as yappi would name the function.

        A name from the code alone is resolved when read, after the capture
        (on 3.10 that parses the source: not while the window's clock runs).
        """
        name = self.name if self.name is not None else _name_from_code(self.code)
        return Frame(name, self.key[0], self.key[1])


class ThreadStack(NamedTuple):
    """A thread's stack, outermost frame first, cut where otel-profiling's code begins."""

    name: str
    thread: Optional[threading.Thread]  # to tell a thread from a later one with the same ident
    frames: List[StackFrame]


def yappi_name(frame: FrameType, own_thread: bool) -> Optional[str]:
    """``Class.method`` when the first argument is named ``self``, as yappi names it;
    ``None``: to be named from the code (``_name_from_code``) once the capture is over.

    yappi takes the class of ``self`` from the frame's locals, which only the
    calling thread's own frames (``own_thread``) are read for: reading
    ``f_locals`` of another thread's running frame copies its locals into a
    dict the frame keeps (Python 3.12 and before), which holds on to objects
    the code has deleted since; on 3.13 it makes a proxy.
    """
    code = frame.f_code
    if not (code.co_argcount and code.co_varnames[0] == "self"):
        return code.co_name
    if not own_thread:
        return None
    try:
        obj = frame.f_locals.get("self", _NO_SELF)
    except Exception:  # a frame whose locals cannot be read: its plain name
        obj = _NO_SELF
    return code.co_name if obj is _NO_SELF else f"{type(obj).__name__}.{code.co_name}"


def _name_from_code(code: CodeType) -> str:
    """A method named by the class it is defined in (``co_qualname``; the source on 3.10):
    yappi's name unless ``self`` is of a subclass. Any other function: its plain name."""
    parts = qualified_name(code).split(".")
    if len(parts) >= 2 and parts[-1] == code.co_name and parts[-2] != "<locals>":
        return f"{parts[-2]}.{code.co_name}"
    return code.co_name  # a function taking ``self`` that is not defined in a class


def stack_of(top: Optional[FrameType], own_thread: bool) -> List[StackFrame]:
    """The stack ending at ``top``, outermost first; ``own_thread``: the calling thread's.

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
        key = (code.co_filename, code.co_firstlineno, code.co_name)
        stack.append(StackFrame(yappi_name(frame, own_thread), key, code))
    return stack


def thread_stacks() -> Dict[int, ThreadStack]:
    """Every application thread's stack, by thread ident."""
    active = threading._active  # type: ignore[attr-defined]  # what yappi reads, lock-free
    me = threading.get_ident()
    stacks: Dict[int, ThreadStack] = {}
    for ident, top in thread_frames().items():
        thread = active.get(ident)
        name = thread.name if thread is not None else f"Thread-{ident}"
        own = is_own_thread_object(thread) if thread is not None else is_own_thread_name(name)
        if own or is_own_thread(ident):
            continue
        stacks[ident] = ThreadStack(name, thread, stack_of(top, own_thread=ident == me))
    return stacks


def thread_cpu_time(ident: int, thread: Optional[threading.Thread]) -> Optional[float]:
    """CPU seconds used by thread ``ident`` so far (None where the OS cannot tell).

    The clock id comes from ``thread_clocks``, which never touches the
    ``pthread_t`` of a thread that may have exited meanwhile (that crashes
    the process).
    """
    clock = thread_clocks.clock_id(ident, thread_clocks.native_id(thread))
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None  # the thread has exited
