"""Per-thread CPU clocks, read from another thread (the sampler's).

On Linux a thread's CPU-time clock id is derived from its kernel thread id
(``~tid << 3 | 6``, the ``MAKE_THREAD_CPUCLOCK`` encoding glibc and the kernel
share), so it is computed from ``Thread.native_id``. The alternative,
``time.pthread_getcpuclockid(ident)``, dereferences the thread's ``pthread_t``:
if that thread exited in the meantime and its stack was unmapped, the process
crashes. Reading the clock of a thread that has exited only fails with
``OSError``, which is safe. The encoding is checked once against
``pthread_getcpuclockid`` on the importing thread (which is alive); elsewhere
(other POSIX systems) ``pthread_getcpuclockid`` is used. Where neither exists
(macOS, Windows) there are no per-thread CPU clocks.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from typing import Dict, Optional, Tuple

from otel_profiling._threads import is_own_thread, is_own_thread_object


def _linux_clock_id(native_id: int) -> int:
    return ((~native_id) << 3) | 6  # CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD_MASK


def _check_linux_encoding() -> bool:
    if not sys.platform.startswith("linux") or not hasattr(time, "pthread_getcpuclockid"):
        return False
    try:
        expected = time.pthread_getcpuclockid(threading.get_ident())
        return _linux_clock_id(threading.get_native_id()) == expected
    except (OSError, AttributeError):
        return False


_LINUX = _check_linux_encoding()
SUPPORTED = _LINUX or (hasattr(time, "pthread_getcpuclockid") and hasattr(time, "clock_gettime_ns"))
"""Whether this platform has per-thread CPU clocks (``CpuProfiler(clock="cpu")`` needs them)."""


_forked: Tuple[Optional[weakref.ref[threading.Thread]], int] = (None, 0)
"""In a forked child: the thread that forked (it lives on) and its kernel id."""


def _after_fork_in_child() -> None:
    global _forked
    _forked = (weakref.ref(threading.current_thread()), threading.get_native_id())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def native_id(thread: Optional[threading.Thread]) -> Optional[int]:
    """The kernel id of ``thread`` (``None`` if unknown).

    In a forked child Python (3.10 to 3.13 at least) leaves the parent's id on
    the thread that forked, the one that lives on: the main thread of every
    worker a server forks. Its clock would be the parent's, and its CPU time the
    parent's (a busy worker's main thread seen as idle). Corrected here.
    """
    if thread is None:
        return None
    forked, real = _forked
    if forked is not None and forked() is thread:
        return real
    return thread.native_id


def clock_id(ident: int, native_id: Optional[int]) -> Optional[int]:
    """The CPU clock id of a thread, or ``None`` if it cannot be known safely."""
    if _LINUX:
        return None if native_id is None else _linux_clock_id(native_id)
    if not SUPPORTED:
        return None
    try:
        return time.pthread_getcpuclockid(ident)
    except (OSError, OverflowError):
        return None


def read_ns(clock: int) -> Optional[int]:
    """CPU nanoseconds the thread has used, or ``None`` once it has exited."""
    try:
        return time.clock_gettime_ns(clock)
    except OSError:
        return None


def library_cpu() -> Dict[int, float]:
    """CPU seconds used so far by each of the library's live threads, by ident.

    Subtracted from the process's CPU time wherever the library judges the
    application's use (the idle mark, the CPU threshold), so that its own work (a
    sampler, an encoder, an exporter) never counts as the application's.
    """
    found: Dict[int, float] = {}
    for ident, thread in list(threading._active.items()):  # type: ignore[attr-defined]
        if is_own_thread(ident) or is_own_thread_object(thread):
            clock = clock_id(ident, native_id(thread))
            used = None if clock is None else read_ns(clock)
            if used is not None:
                found[ident] = used / 1e9
    return found


def library_cpu_since(now: Dict[int, float], then: Dict[int, float]) -> float:
    """CPU seconds the library's threads used between two ``library_cpu()`` readings.

    A library thread that ended in between is missed: its time counts as the
    application's, an error on the side of a busier application.
    """
    return sum(max(used - then.get(ident, 0.0), 0.0) for ident, used in now.items())
