"""The output formats a profiler can write, with their extension and content type.

One table, so that the exporter names objects and sets content types from the
profile alone, and an unknown ``format=`` fails at construction with the list
of what is supported for that kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from otel_profiling.profile import ProfileKind


@dataclass(frozen=True)
class ProfileFormat:
    """An encoding of a profile: the name used in ``format=``, its file extension and MIME type."""

    name: str
    extension: str
    content_type: str


_JSON = "application/json"
_PPROF = ProfileFormat("pprof", "pprof", "application/vnd.google.protobuf+gzip")
_FOLDED = ProfileFormat("folded", "folded", "text/plain; charset=utf-8")

# The first format of each kind is its default (the Chrome DevTools one).
FORMATS: Dict[ProfileKind, Tuple[ProfileFormat, ...]] = {
    ProfileKind.CPU_PROFILE: (
        ProfileFormat("cpuprofile", "cpuprofile", _JSON),
        _PPROF,
        ProfileFormat("pstats", "pstats", "application/octet-stream"),
        ProfileFormat("callgrind", "callgrind", "text/plain; charset=utf-8"),
        _FOLDED,
    ),
    ProfileKind.HEAP_PROFILE: (
        ProfileFormat("heapprofile", "heapprofile", _JSON),
        _PPROF,
        _FOLDED,
    ),
    ProfileKind.HEAP_SNAPSHOT: (ProfileFormat("heapsnapshot", "heapsnapshot", _JSON),),
}


def default_format(kind: ProfileKind) -> ProfileFormat:
    """The default format for ``kind``: the Chrome DevTools one, as OpenProfiling writes."""
    return FORMATS[kind][0]


def get_format(kind: ProfileKind, name: str) -> ProfileFormat:
    """Look up ``name`` for ``kind``; a clear ``ValueError`` lists the valid names."""
    wanted = name.strip().lower()
    for fmt in FORMATS[kind]:
        if fmt.name == wanted:
            return fmt
    valid = ", ".join(f.name for f in FORMATS[kind])
    raise ValueError(f"Unknown format {name!r} for {kind.value}: choose one of {valid}.")
