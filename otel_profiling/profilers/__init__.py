"""Profilers: what is captured between a trigger's start and stop."""

from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.profilers.cpu import CpuProfiler

__all__ = ["CpuProfiler", "Profiler", "ProfilerBusyError"]
