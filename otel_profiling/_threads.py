"""The library's own threads, so profilers can leave them out of the application's profile.

They also block the real-time signals: one sent to the process (the trigger
signal under an application server) then goes to the thread that waits for it
with ``sigwait``, never to one of these. Other signals are left alone, so a
process started from a library thread behaves as usual.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Set

LIBRARY_THREAD_PREFIX = "otel-profiling-"
_own_idents: Set[int] = set()
REALTIME_SIGNALS = (
    set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else set()
)


def is_own_thread(ident: int) -> bool:
    return ident in _own_idents


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
