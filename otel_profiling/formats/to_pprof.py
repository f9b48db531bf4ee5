"""Any CPU or heap profile's payload as gzipped pprof, for Go's ``/debug/pprof`` paths.

A pprof payload is returned as is (the sampling engine's keeps its labels).
Another format is read back as a call tree and written as pprof: CPU time as
``samples/count`` and ``wall|cpu/nanoseconds`` (the clock and sampling period
come from the profile's ``profiling.cpu.*`` attributes), heap as
``inuse_objects/count`` and ``inuse_space/bytes``, as Go names them. A format
that keeps no counts (``.heapprofile``, folded, speedscope) gives the value
only: no ``samples`` or ``inuse_objects`` that the profile never held.
"""

from __future__ import annotations

from typing import Tuple

from otel_profiling.formats.folded import SCALES as FOLDED_SCALES
from otel_profiling.formats.pprof import encode_pprof
from otel_profiling.formats.registry import read_profile
from otel_profiling.profile import Profile, ProfileKind


def as_pprof(profile: Profile) -> bytes:
    """``profile``'s payload as gzipped pprof; ``ValueError`` if it cannot be read."""
    if profile.format == "pprof":
        return profile.data
    if profile.kind is ProfileKind.HEAP_SNAPSHOT:
        raise ValueError("a heap snapshot is an object graph, not a pprof profile")
    tree = read_profile(profile.data, fmt=profile.format)
    duration = profile.duration  # the window: a .cpuprofile's span is its threads' sum
    common = {
        "time_nanos": tree.start_ns or int(profile.start_time.timestamp() * 1e9),
        "duration_nanos": int(duration.total_seconds() * 1e9) if duration else tree.duration_ns,
    }
    if profile.kind is ProfileKind.HEAP_PROFILE:
        objects = [("inuse_objects", "count")] if tree.has_counts else []
        return encode_pprof(
            tree.root,
            sample_types=[*objects, ("inuse_space", "bytes")],
            value_scale=1.0,
            period_type=("space", "bytes"),
            period=1,
            **common,
        )
    period_type, period = cpu_period(profile)
    clock = period_type[0]
    samples = [("samples", "count")] if tree.has_counts else []
    if profile.format == "folded":  # read back as counts: this library writes time there in µs
        value_scale = 1e9 / FOLDED_SCALES["seconds"]
    else:
        value_scale = 1e9 if tree.unit == "seconds" else 1.0
    return encode_pprof(
        tree.root,
        sample_types=[*samples, (clock, "nanoseconds")],
        value_scale=value_scale,
        period_type=period_type,
        period=period,
        **common,
    )


def cpu_period(profile: Profile) -> Tuple[Tuple[str, str], int]:
    """A CPU profile's period type (its clock's nanoseconds) and period: the sampling
    interval, from its ``profiling.cpu.*`` attributes, or 0 when it was not sampled (yappi)."""
    clock = str(profile.attributes.get("profiling.cpu.clock", "cpu"))
    interval = profile.attributes.get("profiling.cpu.interval", 0)
    period = round(float(interval) * 1e9) if isinstance(interval, (int, float)) else 0
    return (clock, "nanoseconds"), period
