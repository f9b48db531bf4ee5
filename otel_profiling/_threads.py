"""The library's own threads and code, which profilers leave out of the application's profiles.

The threads also block the real-time signals: one sent to the process (the
trigger signal under an application server) then goes to the thread that
waits for it with ``sigwait``, never to one of these. Other signals are left
alone, so a process started from a library thread behaves as usual.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from types import CodeType, FrameType
from typing import Any, Callable, Dict, Optional, Set, Tuple, TypeVar

LIBRARY_THREAD_PREFIX = "otel-profiling-"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_PREFIX = PACKAGE_DIR + os.sep
_own_idents: Set[int] = set()
_pass_through: Set[CodeType] = set()
F = TypeVar("F", bound=Callable[..., Any])
REALTIME_SIGNALS = (
    set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else set()
)


def is_own_thread(ident: int) -> bool:
    return ident in _own_idents


def is_own_thread_name(name: str) -> bool:
    """A thread of this library, or fsspec's I/O loop (it runs the uploads), by its name."""
    return name.startswith(LIBRARY_THREAD_PREFIX) or name == "fsspecIO"


def is_own_thread_object(thread: threading.Thread) -> bool:
    """``is_own_thread_name``, or a worker of fsspec's I/O loop's default executor.

    That loop resolves host names in its executor's threads (named
    ``asyncio_N``, like any loop's): they exist because of the exports.
    """
    if is_own_thread_name(thread.name):
        return True
    asyn = sys.modules.get("fsspec.asyn")
    loops = getattr(asyn, "loop", None)
    loop = loops[0] if isinstance(loops, list) and loops else None
    executor = getattr(loop, "_default_executor", None)
    return thread in getattr(executor, "_threads", ())


def thread_frames() -> Dict[int, FrameType]:
    """Each thread's innermost frame, as ``sys._current_frames()`` gives them, but the
    calling thread's is its innermost frame outside the library (what a profile keeps).

    ``sys._current_frames()`` gives the calling thread's own running frame: kept
    in one of that frame's locals, it makes a reference cycle (frame, dict,
    frame) once the function returns, and the cycle keeps every thread's frame,
    and its local variables, alive until the next garbage collection.
    Collecting such cycles crashed CPython 3.12 processes (an ``io.BytesIO``
    freed while its buffer was exported).
    """
    frames = sys._current_frames()
    ident = threading.get_ident()
    del frames[ident]
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None and is_own_code(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is not None:
        frames[ident] = frame
    return frames


def is_own_code(filename: str) -> bool:
    """Code from this package (a code object's ``co_filename``)."""
    return filename.startswith(_PACKAGE_PREFIX)


def pass_through(function: F) -> F:
    """Mark a library wrapper that calls application code (a decorator's inner function).

    Profiles skip over such a frame instead of dropping what it calls: the
    application's function then shows where the wrapper was called.
    """
    _pass_through.add(function.__code__)
    return function


def is_pass_through(code: CodeType) -> bool:
    return code in _pass_through


def in_pass_through(filename: str, lineno: int) -> bool:
    """Whether a ``(file, line)`` frame, as tracemalloc records it, is in a marked wrapper."""
    for code in tuple(_pass_through):
        if code.co_filename == filename:
            first, last = _line_span(code)
            if first <= lineno <= last:
                return True
    return False


@functools.cache
def _line_span(code: CodeType) -> Tuple[int, int]:
    lines = [line for _, _, line in code.co_lines() if line is not None]
    return min(lines), max(lines)


def start_daemon(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that is recorded as the library's own."""

    def run() -> None:
        ident = threading.get_ident()
        _own_idents.add(ident)
        if REALTIME_SIGNALS:
            signal.pthread_sigmask(signal.SIG_BLOCK, REALTIME_SIGNALS)
        try:
            target()
        finally:
            _own_idents.discard(ident)

    thread = threading.Thread(target=run, name=LIBRARY_THREAD_PREFIX + name, daemon=True)
    thread.start()
    return thread


def forget_all() -> None:
    """After fork only the forking thread survives: the recorded idents are stale."""
    _own_idents.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_all)
