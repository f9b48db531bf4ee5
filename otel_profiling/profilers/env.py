"""Profilers chosen by ``OTEL_PROFILING_PROFILERS`` (and their ``OTEL_PROFILING_*`` settings).

Each profiler reads its own variables: an invalid value logs one warning
naming the variable and the default is used, so a typo never stops the host.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

from otel_profiling._env import _invalid, env_bool, env_int, env_list, env_str
from otel_profiling.formats import FORMATS, get_format
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.cpu import CpuProfiler
from otel_profiling.profilers.heap import DEFAULT_FRAMES, HeapProfiler
from otel_profiling.profilers.snapshot import HeapSnapshotProfiler

_logger = logging.getLogger(__name__)


def _format_from_env(name: str, kind: ProfileKind) -> Optional[str]:
    value = env_str(name)
    if value is None:
        return None
    try:
        return get_format(kind, value).name
    except ValueError:
        default = FORMATS[kind][0].name
        _invalid(name, value, "one of " + ", ".join(f.name for f in FORMATS[kind]), default)
        return None


def cpu_profiler_from_env() -> CpuProfiler:
    """``OTEL_PROFILING_CPU_FORMAT``, ``_CPU_CLOCK``, ``_CPU_BUILTINS`` and ``_CPU_BY_SPAN``."""
    clock = (env_str("OTEL_PROFILING_CPU_CLOCK", "wall") or "wall").lower()
    if clock not in ("wall", "cpu"):
        _invalid("OTEL_PROFILING_CPU_CLOCK", clock, "wall or cpu", "wall")
        clock = "wall"
    by_span = env_bool("OTEL_PROFILING_CPU_BY_SPAN", False)
    if by_span:  # the yappi engine records no span per call
        _invalid("OTEL_PROFILING_CPU_BY_SPAN", "true", "false with the yappi engine", "false")
    return CpuProfiler(
        _format_from_env("OTEL_PROFILING_CPU_FORMAT", ProfileKind.CPU_PROFILE),
        clock=clock,
        builtins=env_bool("OTEL_PROFILING_CPU_BUILTINS", True),
    )


def heap_profiler_from_env() -> HeapProfiler:
    """``OTEL_PROFILING_HEAP_FORMAT``, ``OTEL_PROFILING_HEAP_FRAMES``."""
    frames = env_int("OTEL_PROFILING_HEAP_FRAMES", DEFAULT_FRAMES, minimum=1, maximum=65535)
    return HeapProfiler(
        _format_from_env("OTEL_PROFILING_HEAP_FORMAT", ProfileKind.HEAP_PROFILE), frames=frames
    )


def snapshot_profiler_from_env() -> HeapSnapshotProfiler:
    """``OTEL_PROFILING_SNAPSHOT_GC_COLLECT``."""
    return HeapSnapshotProfiler(collect=env_bool("OTEL_PROFILING_SNAPSHOT_GC_COLLECT", True))


PROFILER_FACTORIES: Dict[str, Callable[[], Profiler]] = {
    "cpu": cpu_profiler_from_env,
    "heap": heap_profiler_from_env,
    "snapshot": snapshot_profiler_from_env,
}


def profilers_from_env() -> List[Profiler]:
    """One profiler per name in ``OTEL_PROFILING_PROFILERS`` (default ``cpu``)."""
    profilers: List[Profiler] = []
    for name in env_list("OTEL_PROFILING_PROFILERS", ["cpu"]):
        factory = PROFILER_FACTORIES.get(name.lower())
        if factory is None:
            _logger.warning(
                "Unknown profiler %r in OTEL_PROFILING_PROFILERS (known: %s); ignored.",
                name,
                ", ".join(sorted(PROFILER_FACTORIES)),
            )
            continue
        profilers.append(factory())
    return profilers
