"""Giving freed memory back to the system after bulk work on a big heap.

A heap snapshot allocates, then frees, arrays and tables of tens of bytes
per object. glibc's ``malloc`` keeps much of the freed memory mapped in the
process for reuse, so the host would carry it as resident memory long after
the snapshot. ``malloc_trim(0)`` returns the free pages; elsewhere (musl,
macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache
from typing import Any, Optional


@cache
def _malloc_trim() -> Optional[Any]:
    """glibc's ``malloc_trim``, found among the process's own symbols, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # PyDLL keeps the GIL: a snapshot walk calling this is not opened to other threads
        trim = ctypes.PyDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def return_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc only)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
