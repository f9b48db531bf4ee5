"""Profilers chosen by ``OTEL_PROFILING_PROFILERS`` (and their ``OTEL_PROFILING_*`` settings).

Each profiler reads its own variables: an invalid value logs one warning
naming the variable and the default is used, so a typo never stops the host.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

from otel_profiling._env import env_bool, env_float, env_int, env_list, env_str, warn_invalid
from otel_profiling.environment_variables import (
    OTEL_PROFILING_CPU_BUILTINS,
    OTEL_PROFILING_CPU_BY_SPAN,
    OTEL_PROFILING_CPU_CLOCK,
    OTEL_PROFILING_CPU_ENGINE,
    OTEL_PROFILING_CPU_FORMAT,
    OTEL_PROFILING_CPU_INTERVAL,
    OTEL_PROFILING_HEAP_FORMAT,
    OTEL_PROFILING_HEAP_FRAMES,
    OTEL_PROFILING_PROFILERS,
    OTEL_PROFILING_SNAPSHOT_GC_COLLECT,
)
from otel_profiling.formats import formats_for, get_format
from otel_profiling.profile import ProfileKind
from otel_profiling.profilers import main_signal
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.cpu import ENGINES, CpuProfiler, resolve_engine
from otel_profiling.profilers.heap import DEFAULT_FRAMES, HeapProfiler
from otel_profiling.profilers.sampling_engine import (
    DEFAULT_INTERVAL,
    MAX_INTERVAL,
    MIN_INTERVAL,
    check_clock,
)
from otel_profiling.profilers.snapshot import HeapSnapshotProfiler

_logger = logging.getLogger(__name__)


def _format_from_env(name: str, kind: ProfileKind) -> Optional[str]:
    value = env_str(name)
    if value is None:
        return None
    try:
        return get_format(kind, value).name
    except ValueError:
        default = formats_for(kind)[0].name
        warn_invalid(name, value, "one of " + ", ".join(f.name for f in formats_for(kind)), default)
        return None


def cpu_profiler_from_env() -> CpuProfiler:
    """``OTEL_PROFILING_CPU_ENGINE``, ``_CPU_INTERVAL``, ``_CPU_FORMAT``, ``_CPU_CLOCK``,
    ``_CPU_BUILTINS``, ``_CPU_BY_SPAN`` and ``_CPU_SIGNAL``.

    A value that does not fit the others (``engine=sampling`` with a call-graph
    format, ``by_span`` with yappi, the ``cpu`` clock where threads have no CPU
    clock) is reported like an invalid one and its default is used.
    """
    fmt = _format_from_env(OTEL_PROFILING_CPU_FORMAT, ProfileKind.CPU_PROFILE)
    format_name = fmt or formats_for(ProfileKind.CPU_PROFILE)[0].name
    engine = _engine_from_env(format_name)
    given_clock = env_str(OTEL_PROFILING_CPU_CLOCK, "wall") or "wall"
    clock = given_clock.lower()
    if clock not in ("wall", "cpu"):
        warn_invalid(OTEL_PROFILING_CPU_CLOCK, given_clock, "wall or cpu", "wall")
        clock = "wall"
    if clock == "cpu" and resolve_engine(engine, format_name) == "sampling":
        try:
            check_clock(clock)
        except ValueError as exc:
            warn_invalid(OTEL_PROFILING_CPU_CLOCK, clock, str(exc), "wall")
            clock = "wall"
    by_span = env_bool(OTEL_PROFILING_CPU_BY_SPAN, False)
    if by_span and resolve_engine(engine, format_name) == "yappi":
        warn_invalid(OTEL_PROFILING_CPU_BY_SPAN, "true", "false with the yappi engine", False)
        by_span = False
    return CpuProfiler(
        fmt,
        engine=engine,
        interval=_interval_from_env(),
        clock=clock,
        builtins=env_bool(OTEL_PROFILING_CPU_BUILTINS, True),
        by_span=by_span,
        main_thread_signal=main_signal.enabled_from_env() if clock == "cpu" else False,
    )


def _engine_from_env(format_name: str) -> Optional[str]:
    value = env_str(OTEL_PROFILING_CPU_ENGINE)
    if value is None:
        return None
    engine = value.lower()
    try:
        resolve_engine(engine, format_name)
    except ValueError as exc:
        default = resolve_engine(None, format_name)
        expected = f"one of {', '.join(ENGINES)} ({exc})"
        warn_invalid(OTEL_PROFILING_CPU_ENGINE, value, expected, default)
        return None
    return engine


def _interval_from_env() -> float:
    """Read as every number variable is (ASCII, finite); out of range: the nearest bound."""
    interval = env_float(
        OTEL_PROFILING_CPU_INTERVAL,
        DEFAULT_INTERVAL,
        MIN_INTERVAL,
        maximum=MAX_INTERVAL,
        unit="seconds",
    )
    return DEFAULT_INTERVAL if interval is None else interval


def heap_profiler_from_env() -> HeapProfiler:
    """``OTEL_PROFILING_HEAP_FORMAT``, ``OTEL_PROFILING_HEAP_FRAMES``."""
    frames = env_int(OTEL_PROFILING_HEAP_FRAMES, DEFAULT_FRAMES, minimum=1, maximum=65535)
    return HeapProfiler(
        _format_from_env(OTEL_PROFILING_HEAP_FORMAT, ProfileKind.HEAP_PROFILE), frames=frames
    )


def snapshot_profiler_from_env() -> HeapSnapshotProfiler:
    """``OTEL_PROFILING_SNAPSHOT_GC_COLLECT``."""
    return HeapSnapshotProfiler(collect=env_bool(OTEL_PROFILING_SNAPSHOT_GC_COLLECT, True))


PROFILER_FACTORIES: Dict[str, Callable[[], Profiler]] = {
    "cpu": cpu_profiler_from_env,
    "heap": heap_profiler_from_env,
    "snapshot": snapshot_profiler_from_env,
}


def profilers_from_env() -> List[Profiler]:
    """One profiler per name in ``OTEL_PROFILING_PROFILERS`` (default ``cpu``).

    A name given twice (``cpu,CPU``) is one profiler: two would profile each window
    twice, or refuse to start beside each other (heap, yappi).
    """
    profilers: List[Profiler] = []
    names = env_list(OTEL_PROFILING_PROFILERS, ["cpu"])
    for name in dict.fromkeys(name.lower() for name in names):
        factory = PROFILER_FACTORIES.get(name)
        if factory is None:
            _logger.warning(
                "Unknown profiler %r in OTEL_PROFILING_PROFILERS (known: %s); ignored.",
                name,
                ", ".join(sorted(PROFILER_FACTORIES)),
            )
            continue
        profilers.append(factory())
    if not profilers:
        _logger.warning(
            "OTEL_PROFILING_PROFILERS names no known profiler: nothing will be profiled. "
            "Fix: name one or more of %s.",
            ", ".join(sorted(PROFILER_FACTORIES)),
        )
    return profilers
