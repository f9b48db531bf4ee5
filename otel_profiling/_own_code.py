"""The library's own code, so heap profiles can leave out what the library allocated.

An allocation is the library's when the innermost frame of the library on its
stack is ordinary library code (exporting, encoding, a trigger's thread, a
signal handler): whatever the standard library or a dependency allocates when
called from there is the library's work too. The exception is the few library
functions that call the application (the ``agent.profile`` decorator's
wrappers): they register with ``calls_application`` and what runs under them is
the application's.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Tuple, TypeVar

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PREFIX = PACKAGE_DIR + os.sep

F = TypeVar("F", bound=Callable[..., object])

_application_calls: Dict[str, List[Tuple[int, int]]] = {}  # file -> line spans
_library_files: Dict[str, bool] = {}


def calls_application(func: F) -> F:
    """Mark ``func`` (a library function) as one that runs application code; returns it."""
    code = func.__code__
    lines = [line for _, _, line in code.co_lines() if line is not None]
    span = (min(lines), max(lines))
    spans = _application_calls.setdefault(code.co_filename, [])
    if span not in spans:
        spans.append(span)
    return func


def is_library_file(filename: str) -> bool:
    """Whether ``filename`` (a code object's file) is part of this package; cached."""
    known = _library_files.get(filename)
    if known is None:
        known = _library_files[filename] = os.path.abspath(filename).startswith(_PREFIX)
    return known


def runs_application(filename: str, lineno: int) -> bool:
    """Whether the line is inside a function registered with ``calls_application``."""
    return any(first <= lineno <= last for first, last in _application_calls.get(filename, ()))
