"""Profile formats: each an object with its names and both directions, in one registry.

``ProfileFormat`` (``format.py``) is the interface; each format has its own
module (``cpuprofile``, ``heapprofile``, ``heapsnapshot``, ``pprof``,
``pstats``, ``callgrind``, ``folded``, ``speedscope``); ``registry`` lists them
and loads third-party ones from the ``otel_profiling_format`` entry point
group. An unknown ``format=`` fails at construction with the list of what is
supported for that kind.
"""

from __future__ import annotations

from otel_profiling.formats.format import ProfileFormat, ProfileFormatError, ProfileTree
from otel_profiling.formats.registry import (
    all_formats,
    default_format,
    formats_for,
    get_format,
    read_profile,
    write_profile,
)

__all__ = [
    "ProfileFormat",
    "ProfileFormatError",
    "ProfileTree",
    "all_formats",
    "default_format",
    "formats_for",
    "get_format",
    "read_profile",
    "write_profile",
]
