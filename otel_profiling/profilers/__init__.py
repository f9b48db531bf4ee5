"""Profilers: what is captured between a trigger's start and stop."""

from otel_profiling.profilers.base import Profiler, ProfilerBusyError
from otel_profiling.profilers.cpu import CpuProfiler
from otel_profiling.profilers.heap import HeapProfiler
from otel_profiling.profilers.snapshot import HeapSnapshotProfiler

__all__ = ["CpuProfiler", "HeapProfiler", "HeapSnapshotProfiler", "Profiler", "ProfilerBusyError"]
