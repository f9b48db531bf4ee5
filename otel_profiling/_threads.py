"""The library's own threads and code, which profilers leave out of the application's profiles."""

from __future__ import annotations

import os
import threading
from types import CodeType
from typing import Any, Callable, Set, TypeVar

LIBRARY_THREAD_PREFIX = "otel-profiling-"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_PREFIX = PACKAGE_DIR + os.sep
_own_idents: Set[int] = set()
_pass_through: Set[CodeType] = set()
F = TypeVar("F", bound=Callable[..., Any])


def is_own_thread(ident: int) -> bool:
    return ident in _own_idents


def is_own_thread_name(name: str) -> bool:
    """A thread of this library, or fsspec's I/O loop (it runs the uploads), by its name."""
    return name.startswith(LIBRARY_THREAD_PREFIX) or name == "fsspecIO"


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
