"""Profilers chosen by ``OTEL_PROFILING_PROFILERS`` (and their ``OTEL_PROFILING_*`` settings)."""

from __future__ import annotations

import logging
from typing import Callable, Dict, List

from otel_profiling._env import env_list
from otel_profiling.profilers.base import Profiler
from otel_profiling.profilers.cpu import CpuProfiler

_logger = logging.getLogger(__name__)

PROFILER_FACTORIES: Dict[str, Callable[[], Profiler]] = {
    "cpu": CpuProfiler,
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
