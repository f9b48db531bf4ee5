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

import sys
import threading
import time
from typing import Optional


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
