"""The library's own threads, so profilers can leave them out of the application's profile."""

from __future__ import annotations

import os
import threading
from typing import Callable, Set

LIBRARY_THREAD_PREFIX = "otel-profiling-"
_own_idents: Set[int] = set()


def is_own_thread(ident: int) -> bool:
    return ident in _own_idents


def start_daemon(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that is recorded as the library's own."""

    def run() -> None:
        ident = threading.get_ident()
        _own_idents.add(ident)
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
